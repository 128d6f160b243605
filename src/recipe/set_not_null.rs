//! `set_not_null`: wait for the application that never writes NULL, fill the NULL rows
//! in batches (with `backfill`), then NOT NULL without a long lock (validated check).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::footprint;
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::{Catalog, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Action, BackfillSpec, Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::Ident;
use crate::sql::QualifiedName;

/// `set_not_null: { table, column, backfill }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNotNull {
    pub table: At<String>,
    pub column: At<String>,
    /// SQL expression over the row, written into the rows where the column is NULL.
    pub backfill: Option<At<String>>,
}

impl SetNotNull {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for SetNotNull {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let sn = self;
        QualifiedName::parse(&sn.table).map_err(|m| err(sn.table.pos, m))?;
        check::check_ident(&sn.column).map_err(|m| err(sn.column.pos, m))?;
        if let Some(b) = &sn.backfill {
            check::check_sql_text(b, "backfill").map_err(|m| err(b.pos, m))?;
        }
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let sn = self;
        vec![(sn.table_name(), &sn.column)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let sn = self;
        vec![sn.table_name()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let sn = self;
        let t = sn.table_name();
        let mut u = vec![footprint::col(&t, &sn.column)];
        if let Some(b) = &sn.backfill {
            u.extend(footprint::in_expression(cat, &t, b));
        }
        u
    }
}

pub(super) fn expand(
    plan: &str,
    batch_size: u32,
    sn: &SetNotNull,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = sn.table_name();
    let col = Ident::new(sn.column.value.clone());
    let short = table.display_short();
    let t = match knowledge {
        Knowledge::Live(cat) => Some(check(sn, cat)?),
        Knowledge::Offline => None,
    };
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            gate_after: Some(format!(
                "deploy the application version that never writes NULL into `{}` on {short} (and drain the old version: NULL is refused after this gate)",
                col.as_str()
            )),
            ..Default::default()
        },
    ));
    let mut c = Contribution::default();
    if let Some(expr) = &sn.backfill {
        let key = super::shared::common::backfill_key(t);
        c.steps.push(Step {
            description: format!(
                "fill the rows where {col} is NULL with {}, in key order, one short transaction per batch with a checkpoint (not undone by rollback)",
                expr.value.trim()
            ),
            action: Action::Backfill(BackfillSpec {
                table: table.clone(),
                key,
                set: format!("{col} = {}", expr.value.trim()),
                needs_work: format!("{col} IS NULL"),
                batch_size,
            }),
            lock: LockLevel::RowExclusive,
            table: Some(table.clone()),
            changes_row_type: false,
        });
    }
    let tag = object_tag(plan, &[&table.to_string(), col.as_str(), "set_not_null"]);
    common::set_not_null(
        &mut c,
        &table,
        &col,
        &Ident::new(format!("pgphase_not_null_{tag}")),
        knowledge,
        format!("make {col} nullable again"),
    );
    c.rollback.reverse();
    out.phases.push((PhaseKind::Backfill, c));
    Ok(out)
}

fn check<'a>(sn: &SetNotNull, cat: &'a Catalog) -> Result<&'a Table, Vec<Precondition>> {
    let p = |pos: Pos, message: String| vec![Precondition { pos, message }];
    let Some(t) = cat.table(&sn.table_name()) else {
        return Err(p(sn.table.pos, common::missing_table(&sn.table.value)));
    };
    let short = t.name.display_short();
    let name = &sn.column.value;
    let Some(col) = t.column(name) else {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(p(
            sn.column.pos,
            format!(
                "`{short}` has no column `{name}`; its columns are: {}",
                cols.join(", ")
            ),
        ));
    };
    let mut problems = Vec::new();
    if col.not_null {
        problems.push(Precondition {
            pos: sn.column.pos,
            message: format!("`{short}.{name}` is already NOT NULL: nothing to do"),
        });
    }
    if sn.backfill.is_some() && t.backfill_key().is_none() {
        problems.push(Precondition {
            pos: sn.table.pos,
            message: format!(
                "`{short}` has no primary key or unique NOT NULL key to page the backfill by; add a primary key first"
            ),
        });
    }
    if problems.is_empty() {
        Ok(t)
    } else {
        Err(problems)
    }
}
