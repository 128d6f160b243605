//! `drop_table`: gate (nothing uses the table), then `DROP TABLE` at contract, the
//! point of no return.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::footprint;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::catalog::DependentKind;
use crate::phase::PhaseKind;
use crate::plan::{At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::QualifiedName;

/// `drop_table: { name }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    pub name: At<String>,
}

impl DropTable {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
}

impl ChangeKind for DropTable {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        drop_table(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let dt = self;
        QualifiedName::parse(&dt.name).map_err(|m| err(dt.name.pos, m))?;
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let dt = self;
        vec![dt.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let dt = self;
        vec![footprint::whole(dt.table_name(), dt.name.pos)]
    }
}

pub(super) fn drop_table(
    dt: &DropTable,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = dt.table_name();
    let short = table.display_short();
    let mut drops = Vec::new();
    if let Knowledge::Live(cat) = knowledge {
        let Some(t) = cat.table(&table) else {
            return Err(vec![Precondition {
                pos: dt.name.pos,
                message: common::missing_table(&dt.name.value),
            }]);
        };
        let mut problems = Vec::new();
        for fk in t.referenced_by.iter().filter(|fk| fk.table != table) {
            problems.push(format!(
                "foreign key `{}` on `{}` references `{short}`; drop it first (a separate plan, or drop_column of its column)",
                fk.name,
                fk.table.display_short()
            ));
        }
        for v in &t.views {
            problems.push(format!(
                "view `{}` uses `{short}`; drop the view first",
                v.view.display_short()
            ));
        }
        // functions, other tables' policies and rules… that DROP TABLE would fail on
        for d in t.dependents.iter().filter(|d| {
            !d.own
                && d.deptype == "n"
                && !matches!(d.kind, DependentKind::View | DependentKind::Constraint)
        }) {
            problems.push(format!(
                "{} uses `{short}`: contract could not drop the table (after the point of no return); drop it first",
                d.description
            ));
        }
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|message| Precondition {
                    pos: dt.name.pos,
                    message,
                })
                .collect());
        }
        drops.push(super::shared::around::contract_drop(t, None));
    }
    let mut out = RecipeOutput {
        drops,
        ..Default::default()
    };
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            gate_after: Some(format!(
                "deploy the application version that no longer uses {short} (and drain the old version: the table is dropped after this gate)"
            )),
            ..Default::default()
        },
    ));
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                format!("drop {short} (its own foreign keys to other tables go with it)"),
                &table,
                LockLevel::AccessExclusive,
                format!("DROP TABLE IF EXISTS {table};"),
            )],
            ..Default::default()
        },
    ));
    Ok(out)
}
