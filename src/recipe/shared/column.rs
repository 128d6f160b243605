//! A column the change names, read from the live catalog, and default steps.

use super::common;
use crate::catalog::{Catalog, Column};
use crate::plan::Pos;
use crate::program::{LockLevel, Step};
use crate::recipe::Precondition;
use crate::sql::{Ident, QualifiedName};

/// The live column, or a refusal at the YAML position.
pub(in crate::recipe) fn live_column<'a>(
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
pub(in crate::recipe) fn default_step(
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
