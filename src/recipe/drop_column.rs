//! `drop_column`: make the column optional for the application (DROP NOT NULL when it
//! has no default), wait for the application that no longer reads or writes it, drop
//! its indexes concurrently, and drop the column at contract (point of no return).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::{Catalog, Column, DependentKind, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{quote_ident, Ident, QualifiedName};

/// `drop_column: { table, column }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    pub table: At<String>,
    pub column: At<String>,
}

impl DropColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for DropColumn {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let dc = self;
        QualifiedName::parse(&dc.table).map_err(|m| err(dc.table.pos, m))?;
        check::check_ident(&dc.column).map_err(|m| err(dc.column.pos, m))?;
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let dc = self;
        vec![(dc.table_name(), &dc.column)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let dc = self;
        vec![dc.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let dc = self;
        vec![footprint::col(&dc.table_name(), &dc.column)]
    }

    fn replaced(&self) -> Vec<footprint::Replaced> {
        let dc = self;
        vec![footprint::Replaced {
            table: dc.table_name(),
            column: dc.column.value.clone(),
            how: "dropped".into(),
            fix: "leave the column out".into(),
        }]
    }

    fn apply(&self, cat: &mut Catalog) {
        let dc = self;
        if let Some(t) = planned::table(cat, &dc.table_name()) {
            t.columns.retain(|c| c.name != dc.column.value);
        };
    }
}

pub(super) fn expand(
    dc: &DropColumn,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = dc.table_name();
    let col = Ident::new(dc.column.value.clone());
    let short = table.display_short();
    let found = match knowledge {
        Knowledge::Live(cat) => Some(check(dc, cat)?),
        Knowledge::Offline => None,
    };
    let mut out = RecipeOutput::default();

    // 1. expand: the new application will omit the column in its inserts, so a NOT NULL
    // without a default must go first (undo: NOT NULL again, through a validated check).
    let mut expand = Contribution {
        gate_after: Some(format!(
            "deploy the application version that no longer reads or writes `{}` on {short} (and drain the old version: the column is dropped after this gate)",
            col.as_str()
        )),
        ..Default::default()
    };
    let needs_nullable = match found {
        // identity and generated columns fill themselves in
        Some((_, c)) => {
            c.not_null && c.default.is_none() && c.identity.is_none() && c.generated.is_none()
        }
        None => false,
    };
    if needs_nullable {
        expand.steps.push(common::drop_not_null(
            &table,
            &col,
            format!(
                "make {col} nullable: the new application's inserts omit it and it has no default"
            ),
        ));
        let tag = super::object_tag("drop_column", &[&table.to_string(), col.as_str()]);
        let mut undo = Contribution::default();
        common::set_not_null(
            &mut undo,
            &table,
            &col,
            &Ident::new(format!("pgphase_not_null_{tag}")),
            knowledge,
            format!("make {col} nullable again"),
        );
        // the undo of this phase is the forward NOT NULL recipe
        expand.rollback = undo.steps;
    }
    out.phases.push((PhaseKind::Expand, expand));

    // 2. after the gate: drop the column's own indexes concurrently (undo: rebuild them
    // concurrently, as they were). Indexes backing a constraint go with the column.
    // (on a partitioned table they go with the column at contract: PostgreSQL cannot
    // drop a partitioned index concurrently)
    if let Some((t, _)) = found.filter(|(t, _)| !t.is_partitioned()) {
        let mut c = Contribution::default();
        for idx in t
            .indexes
            .iter()
            .filter(|i| i.constraint.is_none() && i.columns.iter().any(|c| c == col.as_str()))
        {
            let index = QualifiedName::new(table.schema.as_str(), idx.name.clone());
            let n = quote_ident(&idx.name);
            c.steps.push(common::drop_index(
                format!("drop index {n} on {col} concurrently (reads and writes continue)"),
                &table,
                index,
            ));
            let build = common::IndexBuild {
                table: &table,
                live: Some(t),
                name: &idx.name,
                unique: idx.unique,
                tail: common::index_tail(&idx.definition).to_string(),
                description: format!("rebuild index {n} concurrently, as it was"),
            };
            c.rollback.extend(build.steps(false));
        }
        c.rollback.reverse();
        if !c.steps.is_empty() {
            out.phases.push((PhaseKind::SwitchReads, c));
        }
    }

    if let Some((t, _)) = found {
        out.drops
            .push(super::shared::around::contract_drop(t, Some(col.as_str())));
        let goes: Vec<String> = t
            .dependents_of(col.as_str())
            .filter(|d| {
                matches!(
                    d.kind,
                    DependentKind::Constraint | DependentKind::Statistics | DependentKind::Sequence
                )
            })
            .map(|d| d.description.clone())
            .collect();
        if !goes.is_empty() {
            out.notes.push(format!(
                "drop_column {short}.{}: contract drops with it {}",
                col.as_str(),
                goes.join(", ")
            ));
        }
    }

    // 3. contract: the column goes.
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                format!("drop {col} from {short} (catalog only; its space is reclaimed as rows are rewritten)"),
                &table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {col};"),
            )
            .changes_row_type()],
            ..Default::default()
        },
    ));
    Ok(out)
}

fn check<'a>(
    dc: &DropColumn,
    cat: &'a Catalog,
) -> Result<(&'a Table, &'a Column), Vec<Precondition>> {
    let p = |pos: Pos, message: String| vec![Precondition { pos, message }];
    let Some(t) = cat.table(&dc.table_name()) else {
        return Err(p(dc.table.pos, common::missing_table(&dc.table.value)));
    };
    let short = t.name.display_short();
    let name = &dc.column.value;
    let Some(col) = t.column(name) else {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(p(
            dc.column.pos,
            format!(
                "`{short}` has no column `{name}`; its columns are: {}",
                cols.join(", ")
            ),
        ));
    };
    let mut problems = Vec::new();
    let mut refuse = |message: String| {
        problems.push(Precondition {
            pos: dc.column.pos,
            message,
        })
    };
    if t.primary_key.as_ref().is_some_and(|k| k.contains(name)) {
        refuse(format!(
            "`{name}` is part of the primary key of `{short}`; give the table another primary key first"
        ));
    }
    for fk in t
        .referenced_by
        .iter()
        .filter(|fk| fk.columns.contains(name))
    {
        refuse(format!(
            "foreign key `{}` on `{}` references `{short}.{name}`; drop that foreign key first",
            fk.name,
            fk.table.display_short()
        ));
    }
    for v in t.views.iter().filter(|v| v.columns.contains(name)) {
        refuse(format!(
            "view `{}` uses `{short}.{name}`; change or drop the view first",
            v.view.display_short()
        ));
    }
    // triggers, policies, rules, publications, generated columns, functions, the
    // replica identity… that the column's drop would fail on or break
    for m in super::shared::around::refusals(t, name, super::shared::around::Fate::Dropped) {
        refuse(m);
    }
    if problems.is_empty() {
        Ok((t, col))
    } else {
        Err(problems)
    }
}
