//! The catalog as a plan leaves it, change by change: a change is expanded against the
//! live catalog plus what the changes before it (in dependency order) create — a
//! table, a column (added, renamed, split, merged), an index, a constraint. And the
//! rule that keeps changes of one plan from stepping on each other: a column one change
//! replaces, drops or retypes is named by no other change, and a column one change
//! creates and keeps in sync until contract only gets indexes and constraints.

use super::footprint;
use crate::catalog::{Catalog, Column, Constraint, Index, Table};
use crate::plan::Plan;
use crate::recipe::Precondition;
use crate::sql::{quote_ident, QualifiedName};

/// Refusals for changes of `plan` that name what another change of it replaces, or
/// build more than indexes and constraints on a column another keeps in sync.
pub(in crate::recipe) fn conflicts(plan: &Plan, cat: Option<&Catalog>) -> Vec<Precondition> {
    let mut out = Vec::new();
    for (j, other) in plan.changes.iter().enumerate() {
        let line = other.pos.line;
        let kind = other.value.kind();
        for r in footprint::replaced(&other.value) {
            for (i, c) in plan.changes.iter().enumerate() {
                if i == j {
                    continue;
                }
                for u in footprint::uses(&c.value, c.pos, cat) {
                    if u.table == r.table && u.column.as_deref() == Some(r.column.as_str()) {
                        out.push(Precondition {
                            pos: u.pos,
                            message: format!(
                                "`{}.{}` is {} by the {kind} at line {line} of this plan, so this {} cannot use it (contract drops it, and what is built on it with it); {}",
                                r.table.display_short(),
                                r.column,
                                r.how,
                                c.value.kind(),
                                r.fix
                            ),
                        });
                    }
                }
            }
        }
        for (table, column) in footprint::synced(&other.value) {
            for (i, c) in plan.changes.iter().enumerate() {
                if i == j || footprint::builds_on_new_columns(&c.value) {
                    continue;
                }
                for u in footprint::uses(&c.value, c.pos, cat) {
                    if u.table == table && u.column.as_deref() == Some(column.as_str()) {
                        out.push(Precondition {
                            pos: u.pos,
                            message: format!(
                                "`{}.{column}` is created by the {kind} at line {line} of this plan and kept in sync with the old column until contract, so this {} cannot change it in the same plan (only add_index, add_unique, add_check and add_foreign_key can build on it); put it in a plan that depends_on this one",
                                table.display_short(),
                                c.value.kind()
                            ),
                        });
                    }
                }
            }
        }
    }
    out.sort_by_key(|p| (p.pos.line, p.pos.column));
    out.dedup();
    out
}

pub(in crate::recipe) fn table<'a>(
    cat: &'a mut Catalog,
    name: &QualifiedName,
) -> Option<&'a mut Table> {
    cat.tables.get_mut(&name.to_string())
}

pub(in crate::recipe) fn new_column(name: &str, type_sql: &str) -> Column {
    Column {
        name: name.to_string(),
        type_sql: type_sql.trim().to_string(),
        has_equality: true,
        ..Default::default()
    }
}

pub(in crate::recipe) fn add_index(
    cat: &mut Catalog,
    table_name: &QualifiedName,
    name: &str,
    unique: bool,
    partial: bool,
    cols: &[String],
    constraint: Option<&str>,
) {
    let Some(t) = table(cat, table_name) else {
        return;
    };
    if t.indexes.iter().any(|i| i.name == name) {
        return;
    }
    let parts: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    t.indexes.push(Index {
        name: name.to_string(),
        unique,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: parts.clone(),
        include: Vec::new(),
        // a partial index is no key for a foreign key; its predicate is not needed here
        predicate: partial.then(|| "(planned)".to_string()),
        columns: cols.to_vec(),
        constraint: constraint.map(str::to_string),
        definition: format!(
            "CREATE {}INDEX {} ON {table_name} USING btree ({})",
            if unique { "UNIQUE " } else { "" },
            quote_ident(name),
            parts.join(", ")
        ),
    });
}

pub(in crate::recipe) fn add_constraint(
    cat: &mut Catalog,
    table_name: &QualifiedName,
    name: &str,
    kind: &str,
    cols: &[String],
) {
    let Some(t) = table(cat, table_name) else {
        return;
    };
    if t.constraints.iter().any(|c| c.name == name) {
        return;
    }
    t.constraints.push(Constraint {
        name: name.to_string(),
        kind: kind.to_string(),
        definition: String::new(),
        columns: cols.to_vec(),
        validated: true,
        table: table_name.clone(),
    });
}
