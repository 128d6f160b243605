//! `add_unique`: build the unique index concurrently, then attach it as the constraint
//! (`ADD CONSTRAINT … UNIQUE USING INDEX`, catalog only).

use super::common;
use super::{Knowledge, Precondition};
use crate::plan::AddUnique;
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{Ident, QualifiedName};

pub(super) fn expand(
    au: &AddUnique,
    knowledge: Knowledge<'_>,
    added: &[(QualifiedName, String)],
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = au.table_name();
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
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    let name = Ident::new(au.name.value.clone());
    let index = QualifiedName::new(table.schema.as_str(), au.name.value.clone());
    let cols: Vec<String> = au
        .columns
        .value
        .iter()
        .map(|c| Ident::new(c.value.clone()).to_string())
        .collect();
    let c = Contribution {
        steps: vec![
            common::create_index(
                format!("build the unique index {name} on ({}) concurrently (reads and writes continue)", cols.join(", ")),
                &table,
                index.clone(),
                format!("CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} USING btree ({});", cols.join(", ")),
            ),
            Step::sql(
                format!("attach {name} as a UNIQUE constraint (catalog only)"),
                &table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name};"),
            )
            .skip_if(common::constraint_exists(&table, name.as_str())),
        ],
        // the constraint owns the index: it goes first, then the index if never attached
        rollback: vec![
            common::drop_constraint(&table, &name),
            common::drop_index(format!("drop index {name} concurrently"), &table, index),
        ],
        gate_after: None,
    };
    let mut out = RecipeOutput::default();
    out.phases.push((super::add_index::PHASE, c));
    Ok(out)
}
