//! `create_table`: expand `CREATE TABLE`; the undo drops it.

use super::{Knowledge, Precondition};
use crate::phase::PhaseKind;
use crate::plan::CreateTable;
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
