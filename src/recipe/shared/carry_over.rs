//! Carry-over of what sits on a column to its replacement: NOT NULL, indexes and the
//! unique/primary constraints they back, CHECK and FOREIGN KEY constraints. Used by
//! `rename_column` and `change_type`.

use crate::catalog::{Column, Index, Table};
use crate::program::{Contribution, LockLevel, Step};
use crate::recipe::Knowledge;
use crate::sql::{quote_ident, rename_column_refs, Ident, QualifiedName};

/// Rebuilds on column `to` what column `from` has: NOT NULL (through a validated check
/// named `not_null_check`), indexes and the unique/primary constraints they back
/// (CONCURRENTLY), CHECK and FOREIGN KEY constraints (NOT VALID, then VALIDATE), each
/// under the name `new_name` gives for the original's. Returns (original, copy) name
/// pairs of the indexes and constraints, in creation order. Shared with `change_type`,
/// which swaps the names once the copy takes over.
#[allow(clippy::too_many_arguments)]
pub(in crate::recipe) fn carry_over(
    c: &mut Contribution,
    t: &Table,
    col: &Column,
    table: &QualifiedName,
    (from, to): (&Ident, &Ident),
    not_null_check: &Ident,
    new_name: &mut dyn FnMut(&str) -> String,
    knowledge: Knowledge<'_>,
) -> Vec<(String, String)> {
    let constraint_exists = |name: &str| super::common::constraint_exists(table, name);
    let mut copies = Vec::new();

    if col.not_null {
        // Undone before the trigger goes: old clients' inserts leave `to` NULL once
        // nothing copies `from` into it.
        super::common::set_not_null(
            c,
            table,
            to,
            not_null_check,
            knowledge,
            format!("make {to} nullable again, before the sync trigger is removed"),
        );
    }

    // Indexes (and the unique constraints they back), rebuilt concurrently on the new column.
    for idx in t
        .indexes
        .iter()
        .filter(|i| i.columns.iter().any(|c| c == from.as_str()))
    {
        if idx.primary {
            continue; // refused in check()
        }
        let backs = idx
            .constraint
            .as_ref()
            .and_then(|n| t.constraints.iter().find(|c| &c.name == n));
        if backs.is_some_and(|c| c.kind == "x") {
            continue; // refused in check()
        }
        let name = new_name(&idx.name);
        copies.push((idx.name.clone(), name.clone()));
        let build = super::common::IndexBuild {
            table,
            live: Some(t),
            name: &name,
            unique: idx.unique,
            tail: index_tail(idx, from.as_str(), to.as_str()),
            description: format!(
                "build {} on {to} concurrently (reads and writes continue), like {}",
                quote_ident(&name),
                quote_ident(&idx.name)
            ),
        };
        // a unique or primary key constraint owns its index: attached as a UNIQUE
        // constraint (primary keys are refused in check())
        let constraint = backs.is_some();
        c.steps.extend(build.steps(constraint));
        // undo runs in reverse: the constraint (which owns the index) first, then the
        // index in case the constraint was never attached
        c.rollback.extend(build.undo(constraint));
    }

    // CHECK and FOREIGN KEY constraints: added NOT VALID, then validated.
    for con in t.constraints.iter().filter(|k| {
        (k.kind == "c" || k.kind == "f") && k.columns.iter().any(|c| c == from.as_str())
    }) {
        let name = new_name(&con.name);
        copies.push((con.name.clone(), name.clone()));
        let def = if con.kind == "f" {
            rename_fk_columns(&con.definition, from.as_str(), to.as_str())
        } else {
            rename_column_refs(&con.definition, from.as_str(), to.as_str())
        };
        let def = def.trim_end_matches(" NOT VALID").to_string();
        let what = if con.kind == "f" {
            "foreign key"
        } else {
            "check"
        };
        c.steps.push(
            Step::sql(
                format!(
                    "add {what} {} on {to} NOT VALID (new writes checked, no scan), like {}",
                    quote_ident(&name),
                    quote_ident(&con.name)
                ),
                table,
                LockLevel::AccessExclusive,
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {def} NOT VALID;",
                    quote_ident(&name)
                ),
            )
            .skip_if(constraint_exists(&name)),
        );
        if con.validated {
            c.steps.push(Step::sql(
                format!(
                    "validate {} (scan; reads and writes continue)",
                    quote_ident(&name)
                ),
                table,
                LockLevel::ShareUpdateExclusive,
                format!(
                    "ALTER TABLE {table} VALIDATE CONSTRAINT {};",
                    quote_ident(&name)
                ),
            ));
        }
        c.rollback.push(Step::sql(
            format!("drop constraint {}", quote_ident(&name)),
            table,
            LockLevel::AccessExclusive,
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};",
                quote_ident(&name)
            ),
        ));
    }
    // Rollback undoes in reverse order of creation.
    c.rollback.reverse();
    copies
}

/// Derives a new object name: `comments_contents_idx` → `comments_body_idx`. Replaces
/// the column name where it stands as a whole word (not inside a longer word, so `id`
/// in `idx_comments_id` changes only at the end); appends `_<to>` when it does not occur.
pub(in crate::recipe) fn rename_name_part(old: &str, from: &str, to: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::new();
    let mut rest = old;
    let mut replaced = false;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().last().or(prev);
        let after = rest[i + from.len()..].chars().next();
        if !is_word(before) && !is_word(after) {
            out.push_str(&rest[..i]);
            out.push_str(to);
            replaced = true;
        } else {
            out.push_str(&rest[..i + from.len()]);
        }
        prev = out.chars().last();
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    if replaced {
        out
    } else {
        format!("{old}_{to}")
    }
}

/// The index's definition after its table (`USING …`, with opclasses, ordering,
/// INCLUDE, NULLS NOT DISTINCT, storage parameters and predicate as they are), with
/// `from` renamed to `to` in everything after the access method.
fn index_tail(idx: &Index, from: &str, to: &str) -> String {
    let tail = super::common::index_tail(&idx.definition);
    let method = format!("USING {} ", quote_ident(&idx.method));
    match tail.strip_prefix(&method) {
        Some(rest) => format!("{method}{}", rename_column_refs(rest, from, to)),
        None => rename_column_refs(tail, from, to),
    }
}

/// Renames the referencing columns of `FOREIGN KEY (a, b) REFERENCES t(x) …` only.
fn rename_fk_columns(def: &str, from: &str, to: &str) -> String {
    match def.find(')') {
        Some(end) => format!(
            "{}{}",
            rename_column_refs(&def[..end], from, to),
            &def[end..]
        ),
        None => def.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_replace_whole_parts() {
        assert_eq!(
            rename_name_part("comments_contents_idx", "contents", "body"),
            "comments_body_idx"
        );
        assert_eq!(
            rename_name_part("idx_comments_id", "id", "key"),
            "idx_comments_key"
        );
        assert_eq!(rename_name_part("ix1", "id", "key"), "ix1_key");
        assert_eq!(
            rename_name_part("Contents it's long", "Contents", "select"),
            "select it's long"
        );
        assert_eq!(rename_name_part("id_id_x", "id", "k"), "k_k_x");
    }

    #[test]
    fn fk_rename_touches_referencing_side_only() {
        assert_eq!(
            rename_fk_columns(
                "FOREIGN KEY (contents) REFERENCES other(contents) ON DELETE CASCADE",
                "contents",
                "body"
            ),
            "FOREIGN KEY (body) REFERENCES other(contents) ON DELETE CASCADE"
        );
    }
}
