//! `add_check`: `ADD CONSTRAINT … CHECK … NOT VALID` (new writes checked, no scan), a
//! gate for the application to comply and existing rows to be fixed, then `VALIDATE`
//! (scan under SHARE UPDATE EXCLUSIVE).

use super::shared::common;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::AddCheck;
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::Ident;

pub(super) fn expand(
    ck: &AddCheck,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ck.table_name();
    if let Knowledge::Live(cat) = knowledge {
        check(ck, cat)?;
    }
    let name = Ident::new(ck.name.value.clone());
    let short = table.display_short();
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!("add check {name} NOT VALID: enforced for new writes, existing rows not scanned"),
                &table,
                LockLevel::AccessExclusive,
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({}) NOT VALID;",
                    ck.check.value.trim()
                ),
            )
            .skip_if(common::constraint_exists(&table, name.as_str()))],
            rollback: vec![common::drop_constraint(&table, &name)],
            gate_after: Some(format!(
                "confirm the application's writes satisfy {} on {short} and existing rows that do not are fixed (the next phase validates every row)",
                name
            )),
        },
    ));
    out.phases.push((
        PhaseKind::Backfill,
        Contribution {
            steps: vec![Step::sql(
                format!("validate {name} (scans {short}; reads and writes continue)"),
                &table,
                LockLevel::ShareUpdateExclusive,
                format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name};"),
            )],
            ..Default::default()
        },
    ));
    Ok(out)
}

fn check(ck: &AddCheck, cat: &Catalog) -> Result<(), Vec<Precondition>> {
    let Some(t) = cat.table(&ck.table_name()) else {
        return Err(vec![Precondition {
            pos: ck.table.pos,
            message: common::missing_table(&ck.table.value),
        }]);
    };
    if t.constraints.iter().any(|c| c.name == ck.name.value) {
        return Err(vec![Precondition {
            pos: ck.name.pos,
            message: format!(
                "`{}` already has a constraint `{}`; choose another name",
                t.name.display_short(),
                ck.name.value
            ),
        }]);
    }
    Ok(())
}
