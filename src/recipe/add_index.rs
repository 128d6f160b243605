//! `add_index`: `CREATE [UNIQUE] INDEX CONCURRENTLY` (reads and writes continue); an
//! invalid index left by an interrupted build is dropped and rebuilt by the executor.

use super::shared::common;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::AddIndex;
use crate::program::{Contribution, RecipeOutput};
use crate::sql::{Ident, QualifiedName};

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
