//! `drop_default`: gate (writers set the column), then DROP DEFAULT; the undo restores
//! it.

use super::shared::column::{default_step, live_column};
use super::{Knowledge, Precondition};
use crate::phase::PhaseKind;
use crate::plan::ColumnRef;
use crate::program::{Contribution, RecipeOutput};
use crate::sql::Ident;

pub(super) fn drop_default(
    c: &ColumnRef,
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
