//! `create_table` (expand: `CREATE TABLE`, undo: drop it) and `drop_table` (gate: nothing
//! uses it, then `DROP TABLE` at contract, the point of no return).

use super::common;
use super::{Knowledge, Precondition};
use crate::catalog::DependentKind;
use crate::plan::{CreateTable, DropTable};
use crate::phase::PhaseKind;
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::Ident;

pub(super) fn create_table(
    ct: &CreateTable,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ct.table_name();
    if let Knowledge::Live(cat) = knowledge {
        if cat.table(&table).is_some() {
            return Err(vec![Precondition {
                pos: ct.name.pos,
                message: format!(
                    "table `{}` already exists; choose another name",
                    ct.name.value
                ),
            }]);
        }
    }
    let key = ct.key();
    let mut defs: Vec<String> = ct
        .columns
        .value
        .iter()
        .map(|c| {
            let mut d = format!(
                "{} {}",
                Ident::new(c.name.value.clone()),
                c.type_sql.value.trim()
            );
            if c.nullable == Some(false) || key.contains(&c.name.value) {
                d.push_str(" NOT NULL");
            }
            if let Some(default) = &c.default {
                d.push_str(&format!(" DEFAULT {}", default.value.trim()));
            }
            d
        })
        .collect();
    if !key.is_empty() {
        let cols: Vec<String> = key
            .iter()
            .map(|k| Ident::new(k.clone()).to_string())
            .collect();
        defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "create {} (a new table: no application query waits on it)",
                    table.display_short()
                ),
                &table,
                LockLevel::AccessExclusive,
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (\n  {}\n);",
                    defs.join(",\n  ")
                ),
            )],
            rollback: vec![Step::sql(
                format!("drop {}", table.display_short()),
                &table,
                LockLevel::AccessExclusive,
                format!("DROP TABLE IF EXISTS {table};"),
            )],
            gate_after: None,
        },
    ));
    Ok(out)
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
        drops.push(super::around::contract_drop(t, None));
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
