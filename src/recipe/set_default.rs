//! `set_default`: catalog only; the undo restores the previous default.

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

/// `set_default: { table, column, default }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    pub table: At<String>,
    pub column: At<String>,
    /// SQL expression, passed through as written.
    pub default: At<String>,
}

impl SetDefault {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for SetDefault {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        set_default(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let sd = self;
        QualifiedName::parse(&sd.table).map_err(|m| err(sd.table.pos, m))?;
        check::check_ident(&sd.column).map_err(|m| err(sd.column.pos, m))?;
        check::check_sql_text(&sd.default, "default").map_err(|m| err(sd.default.pos, m))?;
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let sd = self;
        vec![(sd.table_name(), &sd.column)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let sd = self;
        vec![sd.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let sd = self;
        vec![footprint::col(&sd.table_name(), &sd.column)]
    }
}

pub(super) fn set_default(
    sd: &SetDefault,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = sd.table_name();
    let col = Ident::new(sd.column.value.clone());
    let previous = match knowledge {
        Knowledge::Live(cat) => Some(
            live_column(cat, &table, &sd.table.value, sd.table.pos, &sd.column)?
                .default
                .clone(),
        ),
        Knowledge::Offline => None,
    };
    let mut c = Contribution {
        steps: vec![default_step(
            &table,
            &col,
            Some(sd.default.value.trim()),
            format!(
                "set the default of {col} for new rows (catalog only; existing rows unchanged)"
            ),
        )],
        ..Default::default()
    };
    if let Some(previous) = previous {
        c.rollback.push(default_step(
            &table,
            &col,
            previous.as_deref(),
            format!("restore the previous default of {col}"),
        ));
    }
    let mut out = RecipeOutput::default();
    out.phases.push((PhaseKind::Expand, c));
    Ok(out)
}
