//! What a change touches — tables and columns — and what it replaces or removes. Used
//! to order and check the changes of one plan against each other (a later change sees
//! the table as the earlier ones leave it) and to keep two active plans off the same
//! columns (`start` refuses the second one).

use crate::catalog::{names_word, Catalog};
use crate::plan::{At, Pos};
use crate::program::Touch;
use crate::recipe::Change;
use crate::sql::QualifiedName;

/// A column (or, with `column: None`, a whole table) a change names, and where.
#[derive(Clone, Debug)]
pub struct Use {
    pub table: QualifiedName,
    pub column: Option<String>,
    pub pos: Pos,
}

pub(in crate::recipe) fn col(table: &QualifiedName, c: &At<String>) -> Use {
    Use {
        table: table.clone(),
        column: Some(c.value.clone()),
        pos: c.pos,
    }
}

pub(in crate::recipe) fn whole(table: QualifiedName, pos: Pos) -> Use {
    Use {
        table,
        column: None,
        pos,
    }
}

/// Columns of `table` an SQL expression names (as words), read against the catalog.
pub(in crate::recipe) fn in_expression(
    cat: Option<&Catalog>,
    table: &QualifiedName,
    expr: &At<String>,
) -> Vec<Use> {
    let Some(t) = cat.and_then(|c| c.table(table)) else {
        return Vec::new();
    };
    t.columns
        .iter()
        .filter(|c| names_word(&expr.value, &c.name))
        .map(|c| Use {
            table: table.clone(),
            column: Some(c.name.clone()),
            pos: expr.pos,
        })
        .collect()
}

/// Every table and column a change names (expressions are read against `cat`).
pub(in crate::recipe) fn uses(change: &Change, pos: Pos, cat: Option<&Catalog>) -> Vec<Use> {
    change
        .as_kind()
        .uses(cat)
        .into_iter()
        .map(|mut u| {
            if u.pos == Pos::default() {
                u.pos = pos;
            }
            u
        })
        .collect()
}

/// What a change does to a column that no other change of its plan may also use:
/// replaces or removes it (contract drops it) or retypes it.
pub struct Replaced {
    pub table: QualifiedName,
    pub column: String,
    /// `renamed to `body`` …, for messages.
    pub how: String,
    /// What to write instead, for messages.
    pub fix: String,
}

/// The columns a change replaces, removes or retypes.
pub(in crate::recipe) fn replaced(change: &Change) -> Vec<Replaced> {
    change.as_kind().replaced()
}

/// The columns a change creates and keeps in sync with others until contract.
pub(in crate::recipe) fn synced(change: &Change) -> Vec<(QualifiedName, String)> {
    change.as_kind().synced()
}

/// Changes that may name a column another change of the plan creates in sync (they
/// only add an index or a constraint on it, after that change's backfill).
pub(in crate::recipe) fn builds_on_new_columns(change: &Change) -> bool {
    change.as_kind().builds_on_new_columns()
}

/// The plan's footprint: every table and column its changes name, for the check that
/// keeps two active plans off the same columns.
pub(in crate::recipe) fn touches(plan: &crate::plan::Plan, cat: Option<&Catalog>) -> Vec<Touch> {
    let mut out: Vec<Touch> = Vec::new();
    for c in &plan.changes {
        let kind = c.value.kind().to_string();
        for u in uses(&c.value, c.pos, cat) {
            let entry = match out.iter_mut().find(|t| t.table == u.table) {
                Some(e) => e,
                None => {
                    out.push(Touch {
                        table: u.table.clone(),
                        columns: Some(Vec::new()),
                        kinds: Vec::new(),
                    });
                    out.last_mut().expect("pushed")
                }
            };
            if !entry.kinds.contains(&kind) {
                entry.kinds.push(kind.clone());
            }
            match (&mut entry.columns, u.column) {
                (Some(cols), Some(c)) => {
                    if !cols.contains(&c) {
                        cols.push(c);
                    }
                }
                (cols, None) => *cols = None,
                (None, Some(_)) => {}
            }
        }
    }
    out
}
