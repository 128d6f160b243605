//! `add_check`: `ADD CONSTRAINT … CHECK … NOT VALID` (new writes checked, no scan), a
//! gate for the application to comply and existing rows to be fixed, then `VALIDATE`
//! (scan under SHARE UPDATE EXCLUSIVE).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::Ident;
use crate::sql::QualifiedName;

/// `add_check: { table, name, check }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCheck {
    pub table: At<String>,
    pub name: At<String>,
    /// SQL boolean expression, passed through as written.
    pub check: At<String>,
}

impl AddCheck {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for AddCheck {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ck = self;
        QualifiedName::parse(&ck.table).map_err(|m| err(ck.table.pos, m))?;
        check::check_ident(&ck.name).map_err(|m| err(ck.name.pos, m))?;
        check::check_sql_text(&ck.check, "check").map_err(|m| err(ck.check.pos, m))?;
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let ck = self;
        vec![ck.table_name()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let ck = self;
        let t = ck.table_name();
        let u = footprint::in_expression(cat, &t, &ck.check);
        if u.is_empty() {
            vec![footprint::whole(t, ck.check.pos)]
        } else {
            u
        }
    }

    fn builds_on_new_columns(&self) -> bool {
        true
    }

    fn apply(&self, cat: &mut Catalog) {
        let ck = self;
        planned::add_constraint(cat, &ck.table_name(), &ck.name.value, "c", &[]);
    }

    fn needs_column(&self, table: &QualifiedName, column: &str) -> bool {
        self.table_name() == *table && crate::catalog::names_word(&self.check.value, column)
    }
}

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
