//! `add_index`: `CREATE [UNIQUE] INDEX CONCURRENTLY` (reads and writes continue); an
//! invalid index left by an interrupted build is dropped and rebuilt by the executor.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, RecipeOutput};
use crate::sql::{Ident, QualifiedName};

/// Index access methods an `add_index` may name.
pub const INDEX_METHODS: [&str; 6] = ["btree", "hash", "gist", "spgist", "gin", "brin"];

/// `add_index: { table, name, columns: [..], unique, where, method }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddIndex {
    pub table: At<String>,
    /// The index name (created in the table's schema).
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
    #[serde(default)]
    pub unique: bool,
    /// Partial-index predicate, an SQL expression passed through as written.
    #[serde(rename = "where")]
    pub predicate: Option<At<String>>,
    /// Access method; `btree` when omitted.
    pub method: Option<At<String>>,
}

impl AddIndex {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    pub fn method(&self) -> &str {
        self.method.as_ref().map_or("btree", |m| m.value.as_str())
    }
}

impl ChangeKind for AddIndex {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge, cx.added)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ai = self;
        QualifiedName::parse(&ai.table).map_err(|m| err(ai.table.pos, m))?;
        check::check_ident(&ai.name).map_err(|m| err(ai.name.pos, m))?;
        if ai.columns.value.is_empty() {
            return Err(err(
                ai.columns.pos,
                "`columns` is empty: list the columns to index".into(),
            ));
        }
        for c in &ai.columns.value {
            check::check_ident(c).map_err(|m| err(c.pos, m))?;
        }
        if let Some(p) = &ai.predicate {
            check::check_sql_text(p, "where").map_err(|m| err(p.pos, m))?;
        }
        if let Some(m) = &ai.method {
            if !INDEX_METHODS.contains(&m.value.as_str()) {
                return Err(err(
                    m.pos,
                    format!(
                        "`{}` is not an index method; use one of: {}",
                        m.value,
                        INDEX_METHODS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let ai = self;
        vec![ai.table_name()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let ai = self;
        let t = ai.table_name();
        let mut u: Vec<footprint::Use> = ai
            .columns
            .value
            .iter()
            .map(|c| footprint::col(&t, c))
            .collect();
        if let Some(p) = &ai.predicate {
            u.extend(footprint::in_expression(cat, &t, p));
        }
        u
    }

    fn builds_on_new_columns(&self) -> bool {
        true
    }

    fn apply(&self, cat: &mut Catalog) {
        let ai = self;
        let cols: Vec<String> = ai.columns.value.iter().map(|c| c.value.clone()).collect();
        planned::add_index(
            cat,
            &ai.table_name(),
            &ai.name.value,
            ai.unique,
            ai.predicate.is_some(),
            &cols,
            None,
        );
    }

    fn needs_column(&self, table: &QualifiedName, column: &str) -> bool {
        self.table_name() == *table && self.columns.value.iter().any(|c| c.value == column)
    }

    fn index_changed(&self) -> Option<(QualifiedName, Pos)> {
        Some((
            QualifiedName::new(self.table_name().schema.as_str(), self.name.value.clone()),
            self.name.pos,
        ))
    }
}

/// The phase an index is built in: after expand, so a column added by the same plan
/// exists (and is backfilled) before an index on it.
pub(super) const PHASE: PhaseKind = PhaseKind::Backfill;

pub(super) fn expand(
    ai: &AddIndex,
    knowledge: Knowledge<'_>,
    added: &[(QualifiedName, String)],
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ai.table_name();
    let live = match knowledge {
        Knowledge::Live(cat) => {
            check(ai, cat, added)?;
            cat.table(&table)
        }
        Knowledge::Offline => None,
    };
    let name = Ident::new(ai.name.value.clone());
    let cols: Vec<String> = ai
        .columns
        .value
        .iter()
        .map(|c| Ident::new(c.value.clone()).to_string())
        .collect();
    let mut tail = format!("USING {} ({})", Ident::new(ai.method()), cols.join(", "));
    if let Some(p) = &ai.predicate {
        tail.push_str(&format!(" WHERE {}", p.value.trim()));
    }
    let build = common::IndexBuild {
        table: &table,
        live,
        name: &ai.name.value,
        unique: ai.unique,
        tail,
        description: format!(
            "build {}index {name} on {} ({}) concurrently (reads and writes continue; an invalid leftover of an interrupted build is dropped first)",
            if ai.unique { "unique " } else { "" },
            table.display_short(),
            cols.join(", ")
        ),
    };
    let mut rollback = build.undo(false);
    rollback.reverse();
    let mut out = RecipeOutput::default();
    out.phases.push((
        PHASE,
        Contribution {
            steps: build.steps(false),
            rollback,
            gate_after: None,
        },
    ));
    Ok(out)
}

fn check(
    ai: &AddIndex,
    cat: &Catalog,
    added: &[(QualifiedName, String)],
) -> Result<(), Vec<Precondition>> {
    let table = ai.table_name();
    let Some(t) = cat.table(&table) else {
        return Err(vec![Precondition {
            pos: ai.table.pos,
            message: common::missing_table(&ai.table.value),
        }]);
    };
    let short = t.name.display_short();
    let mut problems = Vec::new();
    if let Some(m) = common::concurrent_index_refusal(cat) {
        problems.push(Precondition {
            pos: ai.name.pos,
            message: m,
        });
    }
    // an invalid index of that name is a leftover of an interrupted build: rebuilt
    if t.indexes.iter().any(|i| i.name == ai.name.value && i.valid) {
        problems.push(Precondition {
            pos: ai.name.pos,
            message: format!(
                "`{short}` already has an index `{}`; choose another name",
                ai.name.value
            ),
        });
    }
    for c in &ai.columns.value {
        let added_here = added.iter().any(|(t, n)| *t == table && *n == c.value);
        if t.column(c).is_none() && !added_here {
            let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            problems.push(Precondition {
                pos: c.pos,
                message: format!(
                    "`{short}` has no column `{}` (and no add_column of this plan adds it); its columns are: {}",
                    c.value,
                    cols.join(", ")
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
