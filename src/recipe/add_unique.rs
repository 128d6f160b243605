//! `add_unique`: build the unique index concurrently, then attach it as the constraint
//! (`ADD CONSTRAINT … UNIQUE USING INDEX`, catalog only).

use super::shared::common;
use super::{Knowledge, Precondition};
use crate::plan::AddUnique;
use crate::program::{Contribution, RecipeOutput};
use crate::sql::{Ident, QualifiedName};

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
