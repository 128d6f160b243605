//! What a change touches — tables and columns — and what it replaces or removes. Used
//! to order and check the changes of one plan against each other (a later change sees
//! the table as the earlier ones leave it) and to keep two active plans off the same
//! columns (`start` refuses the second one).

use crate::catalog::{names_word, Catalog};
use crate::plan::{At, Change, Pos};
use crate::program::Touch;
use crate::sql::QualifiedName;

/// A column (or, with `column: None`, a whole table) a change names, and where.
#[derive(Clone, Debug)]
pub(in crate::recipe) struct Use {
    pub table: QualifiedName,
    pub column: Option<String>,
    pub pos: Pos,
}

fn col(table: &QualifiedName, c: &At<String>) -> Use {
    Use {
        table: table.clone(),
        column: Some(c.value.clone()),
        pos: c.pos,
    }
}

fn whole(table: QualifiedName, pos: Pos) -> Use {
    Use {
        table,
        column: None,
        pos,
    }
}

/// Columns of `table` an SQL expression names (as words), read against the catalog.
fn in_expression(cat: Option<&Catalog>, table: &QualifiedName, expr: &At<String>) -> Vec<Use> {
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
    match change {
        Change::RenameColumn(rc) => {
            let t = rc.table_name();
            vec![col(&t, &rc.from), col(&t, &rc.to)]
        }
        Change::AddColumn(ac) => {
            let t = ac.table_name();
            let mut u = vec![col(&t, &ac.column.name)];
            if let Some(b) = &ac.backfill {
                u.extend(in_expression(cat, &t, b));
            }
            if let Some(r) = &ac.column.references {
                u.push(col(&r.table_name(), &r.column));
            }
            u
        }
        Change::DropColumn(dc) => vec![col(&dc.table_name(), &dc.column)],
        Change::AddIndex(ai) => {
            let t = ai.table_name();
            let mut u: Vec<Use> = ai.columns.value.iter().map(|c| col(&t, c)).collect();
            if let Some(p) = &ai.predicate {
                u.extend(in_expression(cat, &t, p));
            }
            u
        }
        Change::DropIndex(di) => {
            let index = di.index_name();
            let found = cat.and_then(|c| {
                c.tables.values().find_map(|t| {
                    (t.name.schema == index.schema)
                        .then(|| t.indexes.iter().find(|i| i.name == index.name.as_str()))
                        .flatten()
                        .map(|i| (t, i))
                })
            });
            match found {
                Some((t, i)) => i
                    .columns
                    .iter()
                    .map(|c| Use {
                        table: t.name.clone(),
                        column: Some(c.clone()),
                        pos: di.name.pos,
                    })
                    .collect(),
                None => Vec::new(),
            }
        }
        Change::SetNotNull(sn) => {
            let t = sn.table_name();
            let mut u = vec![col(&t, &sn.column)];
            if let Some(b) = &sn.backfill {
                u.extend(in_expression(cat, &t, b));
            }
            u
        }
        Change::AddCheck(ck) => {
            let t = ck.table_name();
            let u = in_expression(cat, &t, &ck.check);
            if u.is_empty() {
                vec![whole(t, ck.check.pos)]
            } else {
                u
            }
        }
        Change::AddForeignKey(fk) => {
            let t = fk.table_name();
            let rt = fk.target_name();
            let mut u: Vec<Use> = fk.columns.value.iter().map(|c| col(&t, c)).collect();
            u.extend(fk.references.columns.value.iter().map(|c| col(&rt, c)));
            u
        }
        Change::DropNotNull(c) | Change::DropDefault(c) => vec![col(&c.table_name(), &c.column)],
        Change::SetDefault(sd) => vec![col(&sd.table_name(), &sd.column)],
        Change::AddUnique(au) => {
            let t = au.table_name();
            au.columns.value.iter().map(|c| col(&t, c)).collect()
        }
        Change::CreateTable(ct) => vec![whole(ct.table_name(), ct.name.pos)],
        Change::DropTable(dt) => vec![whole(dt.table_name(), dt.name.pos)],
        Change::DropConstraint(dc) => {
            let t = dc.table_name();
            let cols = cat
                .and_then(|c| c.table(&t))
                .and_then(|tt| tt.constraints.iter().find(|k| k.name == dc.name.value))
                .map(|k| k.columns.clone())
                .unwrap_or_default();
            if cols.is_empty() {
                vec![whole(t, dc.name.pos)]
            } else {
                cols.into_iter()
                    .map(|c| Use {
                        table: t.clone(),
                        column: Some(c),
                        pos: dc.name.pos,
                    })
                    .collect()
            }
        }
        // what hand-written SQL touches is not known
        Change::Sql(_) => Vec::new(),
        Change::RenameTable(rt) => vec![
            whole(rt.from_name(), rt.from.pos),
            whole(rt.to_name(), rt.to.pos),
        ],
        Change::AddEnumValue(_) => Vec::new(),
        Change::ChangeType(ct) => {
            let t = ct.table_name();
            let mut u = vec![col(&t, &ct.column)];
            for e in ct.using.iter().chain(&ct.reverse) {
                u.extend(in_expression(cat, &t, e));
            }
            u
        }
        Change::SplitColumn(sc) => {
            let t = sc.table_name();
            let mut u = vec![col(&t, &sc.from)];
            u.extend(sc.into.value.iter().map(|c| col(&t, &c.name)));
            u
        }
        Change::MergeColumns(mc) => {
            let t = mc.table_name();
            let mut u: Vec<Use> = mc.from.value.iter().map(|c| col(&t, c)).collect();
            u.push(col(&t, &mc.into.name));
            u
        }
    }
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
pub(in crate::recipe) struct Replaced {
    pub table: QualifiedName,
    pub column: String,
    /// `renamed to `body`` …, for messages.
    pub how: String,
    /// What to write instead, for messages.
    pub fix: String,
}

/// The columns a change replaces, removes or retypes.
pub(in crate::recipe) fn replaced(change: &Change) -> Vec<Replaced> {
    let later = "put that change in a plan that depends_on this one".to_string();
    match change {
        Change::RenameColumn(rc) => vec![Replaced {
            table: rc.table_name(),
            column: rc.from.value.clone(),
            how: format!("renamed to `{}`", rc.to.value),
            fix: format!(
                "name `{}`: a change later in the plan sees the table as the rename leaves it",
                rc.to.value
            ),
        }],
        Change::DropColumn(dc) => vec![Replaced {
            table: dc.table_name(),
            column: dc.column.value.clone(),
            how: "dropped".into(),
            fix: "leave the column out".into(),
        }],
        Change::ChangeType(ct) => vec![Replaced {
            table: ct.table_name(),
            column: ct.column.value.clone(),
            how: "retyped (replaced by a copy of the new type)".into(),
            fix: later,
        }],
        Change::SplitColumn(sc) => vec![Replaced {
            table: sc.table_name(),
            column: sc.from.value.clone(),
            how: "split".into(),
            fix: "name the new columns".into(),
        }],
        Change::MergeColumns(mc) => mc
            .from
            .value
            .iter()
            .map(|f| Replaced {
                table: mc.table_name(),
                column: f.value.clone(),
                how: format!("merged into `{}`", mc.into.name.value),
                fix: format!("name `{}`", mc.into.name.value),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The columns a change creates and keeps in sync with others until contract.
pub(in crate::recipe) fn synced(change: &Change) -> Vec<(QualifiedName, String)> {
    match change {
        Change::RenameColumn(rc) => vec![(rc.table_name(), rc.to.value.clone())],
        Change::SplitColumn(sc) => sc
            .into
            .value
            .iter()
            .map(|c| (sc.table_name(), c.name.value.clone()))
            .collect(),
        Change::MergeColumns(mc) => vec![(mc.table_name(), mc.into.name.value.clone())],
        _ => Vec::new(),
    }
}

/// Changes that may name a column another change of the plan creates in sync (they
/// only add an index or a constraint on it, after that change's backfill).
pub(in crate::recipe) fn builds_on_new_columns(change: &Change) -> bool {
    matches!(
        change,
        Change::AddIndex(_) | Change::AddUnique(_) | Change::AddCheck(_) | Change::AddForeignKey(_)
    )
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
