//! Carrying a column's surroundings over to the column that replaces it (`rename_column`'s
//! new column, `change_type`'s shadow): what `carry_over` in `rename_column` does not —
//! the column's comment, grants, statistics target, storage and compression; the
//! table's extended statistics on it; the sequence it owns; the replica identity.

use crate::catalog::{Column, Table};
use crate::program::{Contribution, LockLevel, Step};
use crate::sql::{quote_ident, quote_literal, rename_column_refs, Ident, QualifiedName};

/// Catalog-only statements giving `to` what the column `col` has: its comment, column
/// grants, statistics target and (when `storage` is true, the type being alike)
/// storage and compression. Meant to run with the `ADD COLUMN` of `to`, so the new
/// application version finds its grants there from the start; dropping `to` undoes them.
pub(in crate::recipe) fn column_properties(
    table: &QualifiedName,
    col: &Column,
    to: &Ident,
    storage: bool,
) -> String {
    let mut sql = String::new();
    if let Some(c) = &col.comment {
        sql.push_str(&format!(
            "\nCOMMENT ON COLUMN {table}.{to} IS {};",
            quote_literal(c)
        ));
    }
    for g in &col.grants {
        sql.push_str(&format!(
            "\nGRANT {} ({to}) ON {table} TO {}{};",
            g.privilege,
            g.grantee
                .as_deref()
                .map_or("PUBLIC".to_string(), quote_ident),
            if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    if let Some(n) = col.statistics_target {
        sql.push_str(&format!(
            "\nALTER TABLE {table} ALTER COLUMN {to} SET STATISTICS {n};"
        ));
    }
    if storage {
        sql.push_str(&storage_sql(table, col, to));
    }
    sql
}

/// `SET STORAGE` / `SET COMPRESSION` giving `to` the column's, when set (an `ALTER
/// COLUMN … TYPE` resets the storage to the type's default).
pub(in crate::recipe) fn storage_sql(table: &QualifiedName, col: &Column, to: &Ident) -> String {
    let mut sql = String::new();
    if let Some(s) = &col.storage {
        let word = match s.as_str() {
            "p" => "PLAIN",
            "e" => "EXTERNAL",
            "m" => "MAIN",
            _ => "EXTENDED",
        };
        sql.push_str(&format!(
            "\nALTER TABLE {table} ALTER COLUMN {to} SET STORAGE {word};"
        ));
    }
    if let Some(c) = &col.compression {
        let method = if c == "l" { "lz4" } else { "pglz" };
        sql.push_str(&format!(
            "\nALTER TABLE {table} ALTER COLUMN {to} SET COMPRESSION {method};"
        ));
    }
    sql
}

/// What the column has that [`column_properties`] carries, in words, for step
/// descriptions; None when there is nothing.
pub(in crate::recipe) fn column_properties_text(col: &Column) -> Option<String> {
    let mut what = Vec::new();
    if col.comment.is_some() {
        what.push("comment");
    }
    if !col.grants.is_empty() {
        what.push("column grants");
    }
    if col.statistics_target.is_some() {
        what.push("statistics target");
    }
    if col.storage.is_some() || col.compression.is_some() {
        what.push("storage");
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// Copies of the table's extended statistics on `from`, built on `to` (catalog only;
/// the next ANALYZE fills them). Pushes the steps and undo into `c`, returns
/// (original, copy) names. `name` derives each copy's name from the original's.
pub(in crate::recipe) fn statistics(
    c: &mut Contribution,
    t: &Table,
    table: &QualifiedName,
    (from, to): (&str, &str),
    name: &mut dyn FnMut(&str) -> String,
) -> Vec<(QualifiedName, QualifiedName)> {
    let mut copies = Vec::new();
    for s in t
        .statistics
        .iter()
        .filter(|s| s.columns.iter().any(|c| c == from))
    {
        let copy = QualifiedName::new(s.name.schema.as_str(), name(s.name.name.as_str()));
        let kinds = if s.kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.kinds.join(", "))
        };
        let mut sql = format!(
            "CREATE STATISTICS IF NOT EXISTS {copy}{kinds} ON {} FROM {table};",
            rename_column_refs(&s.on, from, to)
        );
        if let Some(n) = s.target {
            sql.push_str(&format!("\nALTER STATISTICS {copy} SET STATISTICS {n};"));
        }
        c.steps.push(Step::sql(
            format!(
                "create the extended statistics {} on {}, like {} (catalog only; ANALYZE fills them)",
                copy.name,
                quote_ident(to),
                s.name.name
            ),
            table,
            LockLevel::ShareUpdateExclusive,
            sql,
        ));
        c.rollback.push(Step::sql(
            format!("drop the statistics {}", copy.name),
            table,
            LockLevel::ShareUpdateExclusive,
            format!("DROP STATISTICS IF EXISTS {copy};"),
        ));
        copies.push((s.name.clone(), copy));
    }
    copies
}

/// `ALTER STATISTICS copy RENAME TO original` for each copy, for after the original
/// went with its column.
pub(in crate::recipe) fn statistics_renames(copies: &[(QualifiedName, QualifiedName)]) -> String {
    copies
        .iter()
        .map(|(orig, copy)| format!("ALTER STATISTICS {copy} RENAME TO {};\n", orig.name))
        .collect()
}

/// The copy of the replica identity index, when the replica identity is an index on
/// the column being replaced and `copies` (original, copy) has its copy.
pub(in crate::recipe) fn replica_identity_copy<'a>(
    t: &Table,
    copies: &'a [(String, String)],
) -> Option<(&'a str, &'a str)> {
    let ri = t.replica_identity_index()?;
    copies
        .iter()
        .find(|(orig, _)| orig == ri)
        .map(|(o, c)| (o.as_str(), c.as_str()))
}
