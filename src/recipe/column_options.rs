//! Small column changes: `drop_not_null` (gate: readers tolerate NULL, then DROP NOT
//! NULL), `set_default` (catalog only), `drop_default` (gate: writers set the column,
//! then DROP DEFAULT). Every undo restores what the catalog said before.

use super::common;
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::{Catalog, Column};
use crate::plan::{ColumnRef, Pos, SetDefault};
use crate::phase::PhaseKind;
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{Ident, QualifiedName};

/// The live column, or a refusal at the YAML position.
fn live_column<'a>(
    cat: &'a Catalog,
    table: &QualifiedName,
    written: &str,
    table_pos: Pos,
    column: &crate::plan::At<String>,
) -> Result<&'a Column, Vec<Precondition>> {
    let Some(t) = cat.table(table) else {
        return Err(vec![Precondition {
            pos: table_pos,
            message: common::missing_table(written),
        }]);
    };
    t.column(column).ok_or_else(|| {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        vec![Precondition {
            pos: column.pos,
            message: format!(
                "`{}` has no column `{}`; its columns are: {}",
                t.name.display_short(),
                column.value,
                cols.join(", ")
            ),
        }]
    })
}

/// `ALTER COLUMN … SET DEFAULT <expr>` or `DROP DEFAULT` when there is none.
fn default_step(
    table: &QualifiedName,
    col: &Ident,
    default: Option<&str>,
    description: String,
) -> Step {
    let sql = match default {
        Some(d) => format!("ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {d};"),
        None => format!("ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT;"),
    };
    Step::sql(description, table, LockLevel::AccessExclusive, sql)
}

pub(super) fn drop_not_null(
    c: &ColumnRef,
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
