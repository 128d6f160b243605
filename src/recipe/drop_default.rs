//! `drop_default`: gate (writers set the column), then DROP DEFAULT; the undo restores
//! it.

use super::kind::{ChangeKind, Context};
use super::shared::column::{default_step, live_column};
use super::shared::footprint;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, RecipeOutput};
use crate::sql::Ident;
use crate::sql::QualifiedName;

/// `drop_default: { table, column }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropDefault {
    pub table: At<String>,
    pub column: At<String>,
}

impl DropDefault {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for DropDefault {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        drop_default(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let c = self;
        QualifiedName::parse(&c.table).map_err(|m| err(c.table.pos, m))?;
        check::check_ident(&c.column).map_err(|m| err(c.column.pos, m))?;
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let c = self;
        vec![(c.table_name(), &c.column)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let c = self;
        vec![c.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let c = self;
        vec![footprint::col(&c.table_name(), &c.column)]
    }
}

pub(super) fn drop_default(
    c: &DropDefault,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = c.table_name();
    let col = Ident::new(c.column.value.clone());
    let short = table.display_short();
    let previous = match knowledge {
        Knowledge::Live(cat) => {
            let live = live_column(cat, &table, &c.table.value, c.table.pos, &c.column)?;
            match &live.default {
                Some(d) => Some(d.clone()),
                None => {
                    return Err(vec![Precondition {
                        pos: c.column.pos,
                        message: format!(
                            "`{short}.{}` has no default: nothing to drop",
                            c.column.value
                        ),
                    }])
                }
            }
        }
        Knowledge::Offline => None,
    };
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            gate_after: Some(format!(
                "deploy the application version that writes `{}` on {short} in every insert (and drain the old version: inserts that omit it get NULL after this gate)",
                col.as_str()
            )),
            ..Default::default()
        },
    ));
    let mut step = Contribution {
        steps: vec![default_step(
            &table,
            &col,
            None,
            format!("drop the default of {col} (catalog only)"),
        )],
        ..Default::default()
    };
    if let Some(d) = previous {
        step.rollback.push(default_step(
            &table,
            &col,
            Some(&d),
            format!("restore the default of {col}"),
        ));
    }
    out.phases.push((PhaseKind::Backfill, step));
    Ok(out)
}
