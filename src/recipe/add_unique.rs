//! `add_unique`: build the unique index concurrently, then attach it as the constraint
//! (`ADD CONSTRAINT … UNIQUE USING INDEX`, catalog only).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, RecipeOutput};
use crate::sql::{Ident, QualifiedName};

/// `add_unique: { table, name, columns: [..] }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUnique {
    pub table: At<String>,
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
}

impl AddUnique {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for AddUnique {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge, cx.added)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let au = self;
        QualifiedName::parse(&au.table).map_err(|m| err(au.table.pos, m))?;
        check::check_ident(&au.name).map_err(|m| err(au.name.pos, m))?;
        if au.columns.value.is_empty() {
            return Err(err(
                au.columns.pos,
                "`columns` is empty: list the key columns".into(),
            ));
        }
        for c in &au.columns.value {
            check::check_ident(c).map_err(|m| err(c.pos, m))?;
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let au = self;
        vec![au.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let au = self;
        let t = au.table_name();
        au.columns
            .value
            .iter()
            .map(|c| footprint::col(&t, c))
            .collect()
    }

    fn builds_on_new_columns(&self) -> bool {
        true
    }

    fn apply(&self, cat: &mut Catalog) {
        let au = self;
        let cols: Vec<String> = au.columns.value.iter().map(|c| c.value.clone()).collect();
        let t = au.table_name();
        planned::add_index(
            cat,
            &t,
            &au.name.value,
            true,
            false,
            &cols,
            Some(&au.name.value),
        );
        planned::add_constraint(cat, &t, &au.name.value, "u", &cols);
    }

    fn needs_column(&self, table: &QualifiedName, column: &str) -> bool {
        self.table_name() == *table && self.columns.value.iter().any(|c| c.value == column)
    }
}

pub(super) fn expand(
    au: &AddUnique,
    knowledge: Knowledge<'_>,
    added: &[(QualifiedName, String)],
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = au.table_name();
    let mut live = None;
    if let Knowledge::Live(cat) = knowledge {
        let Some(t) = cat.table(&table) else {
            return Err(vec![Precondition {
                pos: au.table.pos,
                message: common::missing_table(&au.table.value),
            }]);
        };
        let short = t.name.display_short();
        let mut problems = Vec::new();
        if let Some(m) = common::concurrent_index_refusal(cat) {
            problems.push(Precondition {
                pos: au.name.pos,
                message: m,
            });
        }
        if t.constraints.iter().any(|c| c.name == au.name.value)
            || t.indexes.iter().any(|i| i.name == au.name.value && i.valid)
        {
            problems.push(Precondition {
                pos: au.name.pos,
                message: format!(
                    "`{short}` already has a constraint or index `{}`; choose another name",
                    au.name.value
                ),
            });
        }
        for c in &au.columns.value {
            if t.column(c).is_none() && !added.iter().any(|(at, n)| *at == table && *n == c.value) {
                problems.push(Precondition {
                    pos: c.pos,
                    message: format!(
                        "`{short}` has no column `{}` (and no add_column of this plan adds it)",
                        c.value
                    ),
                });
            }
        }
        if t.is_partitioned() {
            let missing: Vec<&String> = t
                .partition_key
                .iter()
                .filter(|k| !au.columns.value.iter().any(|c| c.value == **k))
                .collect();
            if !missing.is_empty() {
                problems.push(Precondition {
                    pos: au.columns.pos,
                    message: format!(
                        "`{short}` is partitioned by ({}): PostgreSQL enforces a unique constraint on a partitioned table only when it includes every partition key column; add {} to the columns",
                        t.partition_key.join(", "),
                        missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        live = Some(t);
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    let name = Ident::new(au.name.value.clone());
    let cols: Vec<String> = au
        .columns
        .value
        .iter()
        .map(|c| Ident::new(c.value.clone()).to_string())
        .collect();
    let build = common::IndexBuild {
        table: &table,
        live,
        name: &au.name.value,
        unique: true,
        tail: format!("USING btree ({})", cols.join(", ")),
        description: format!(
            "build the unique index {name} on ({}) concurrently (reads and writes continue)",
            cols.join(", ")
        ),
    };
    // the constraint owns the index: it goes first, then the index if never attached
    let mut rollback = build.undo(true);
    rollback.reverse();
    let c = Contribution {
        steps: build.steps(true),
        rollback,
        gate_after: None,
    };
    let mut out = RecipeOutput::default();
    out.phases.push((super::add_index::PHASE, c));
    Ok(out)
}
