//! `drop_not_null`: gate (readers tolerate NULL), then DROP NOT NULL; the undo puts NOT
//! NULL back through a validated check.

use super::kind::{ChangeKind, Context};
use super::shared::column::live_column;
use super::shared::common;
use super::shared::footprint;
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, RecipeOutput};
use crate::sql::Ident;
use crate::sql::QualifiedName;

/// `drop_not_null: { table, column }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropNotNull {
    pub table: At<String>,
    pub column: At<String>,
}

impl DropNotNull {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for DropNotNull {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        drop_not_null(self, cx.knowledge)
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

pub(super) fn drop_not_null(
    c: &DropNotNull,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = c.table_name();
    let col = Ident::new(c.column.value.clone());
    let short = table.display_short();
    if let Knowledge::Live(cat) = knowledge {
        let live = live_column(cat, &table, &c.table.value, c.table.pos, &c.column)?;
        let t = cat.table(&table).expect("found");
        let mut problems = Vec::new();
        if !live.not_null {
            problems.push(format!(
                "`{short}.{}` is already nullable: nothing to do",
                c.column.value
            ));
        }
        if live.inherited && live.not_null {
            let parents: Vec<String> = t
                .partition_of
                .iter()
                .chain(&t.inherits)
                .map(|p| format!("`{}`", p.display_short()))
                .collect();
            problems.push(format!(
                "`{}` is inherited from {}, whose NOT NULL it may carry (PostgreSQL then refuses to drop it here); drop it on the parent",
                c.column.value,
                parents.join(", ")
            ));
        }
        if let Some(ri) = t
            .dependents_of(&c.column.value)
            .find(|d| d.kind == crate::catalog::DependentKind::ReplicaIdentity)
        {
            problems.push(format!(
                "`{}` is in index `{}`, the REPLICA IDENTITY of `{short}`, which PostgreSQL keeps NOT NULL; set another replica identity first",
                c.column.value, ri.name
            ));
        }
        if t.primary_key
            .as_ref()
            .is_some_and(|k| k.contains(&c.column.value))
        {
            problems.push(format!(
                "`{}` is part of the primary key of `{short}`, which is always NOT NULL",
                c.column.value
            ));
        }
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|message| Precondition {
                    pos: c.column.pos,
                    message,
                })
                .collect());
        }
    }
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            gate_after: Some(format!(
                "deploy the application version whose readers tolerate NULL in `{}` on {short}",
                col.as_str()
            )),
            ..Default::default()
        },
    ));
    let tag = object_tag("drop_not_null", &[&table.to_string(), col.as_str()]);
    let mut undo = Contribution::default();
    common::set_not_null(
        &mut undo,
        &table,
        &col,
        &Ident::new(format!("pgphase_not_null_{tag}")),
        knowledge,
        String::new(),
    );
    out.phases.push((
        PhaseKind::Backfill,
        Contribution {
            steps: vec![common::drop_not_null(
                &table,
                &col,
                format!("DROP NOT NULL on {col} (catalog only)"),
            )],
            // NOT NULL again through a validated check (fails if NULLs were written since)
            rollback: undo.steps,
            gate_after: None,
        },
    ));
    Ok(out)
}
