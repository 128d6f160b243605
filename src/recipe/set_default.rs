//! `set_default`: catalog only; the undo restores the previous default.

use super::shared::column::{default_step, live_column};
use super::{Knowledge, Precondition};
use crate::phase::PhaseKind;
use crate::plan::SetDefault;
use crate::program::{Contribution, RecipeOutput};
use crate::sql::Ident;

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
