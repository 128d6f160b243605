//! Recipes: one file per change kind, each turning a change into phase contributions.
//! Pure: a recipe reads the plan and a catalog snapshot, never a connection.

mod add_check;
mod add_column;
mod add_enum_value;
mod add_foreign_key;
mod add_index;
mod add_unique;
mod change_type;
mod create_table;
mod drop_column;
mod drop_constraint;
mod drop_default;
mod drop_index;
mod drop_not_null;
mod drop_table;
mod merge_columns;
mod rename_column;
mod rename_table;
mod set_default;
mod set_not_null;
mod shared;
mod split_column;
mod sql;

use shared::{footprint, planned};

use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::plan::{Change, Plan, Pos};
use crate::program::Program;
use crate::sql::QualifiedName;

/// A change that does not fit the live database, with what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Precondition {
    pub pos: Pos,
    pub message: String,
}

/// What the recipes know about the database: a live snapshot, or nothing (offline).
#[derive(Clone, Copy)]
pub enum Knowledge<'a> {
    Live(&'a Catalog),
    Offline,
}

/// Expands a plan into its program. `Offline` expansion shows the shape and the SQL
/// that does not depend on the catalog; carry-over steps are decided at `start`.
///
/// Changes contribute to shared phases in dependency order (see [`order`]), which is
/// plan order unless a change needs another that comes later in the file.
pub fn expand(plan: &Plan, knowledge: Knowledge<'_>) -> Result<Program, Vec<Precondition>> {
    let mut outputs = Vec::new();
    let live_cat = match knowledge {
        Knowledge::Live(cat) => Some(cat),
        Knowledge::Offline => None,
    };
    let mut problems = planned::conflicts(plan, live_cat);
    if !problems.is_empty() {
        return Err(problems);
    }
    let added = added_columns(plan);
    let batch_size = plan.settings.backfill.batch_size;
    // Changes on a table the plan creates check against the table as it will be.
    let mut planned = match knowledge {
        Knowledge::Live(cat) => Some(with_planned_tables(cat, plan)),
        Knowledge::Offline => None,
    };
    let live = knowledge;
    for i in order(plan) {
        let knowledge = match &planned {
            Some(cat) => Knowledge::Live(cat),
            None => Knowledge::Offline,
        };
        let result = match &plan.changes[i].value {
            Change::RenameColumn(rc) => {
                rename_column::expand(&plan.name, batch_size, rc, knowledge)
            }
            Change::AddColumn(ac) => add_column::expand(&plan.name, batch_size, ac, knowledge),
            Change::DropColumn(dc) => drop_column::expand(dc, knowledge),
            Change::AddIndex(ai) => add_index::expand(ai, knowledge, &added),
            Change::DropIndex(di) => drop_index::expand(di, knowledge),
            Change::SetNotNull(sn) => set_not_null::expand(&plan.name, batch_size, sn, knowledge),
            Change::AddCheck(ck) => add_check::expand(ck, knowledge),
            Change::AddForeignKey(fk) => add_foreign_key::expand(fk, knowledge, &added),
            Change::DropNotNull(c) => drop_not_null::drop_not_null(c, knowledge),
            Change::SetDefault(sd) => set_default::set_default(sd, knowledge),
            Change::DropDefault(c) => drop_default::drop_default(c, knowledge),
            Change::AddUnique(au) => add_unique::expand(au, knowledge, &added),
            Change::CreateTable(ct) => create_table::create_table(ct, live),
            Change::DropTable(dt) => drop_table::drop_table(dt, knowledge),
            Change::DropConstraint(dc) => drop_constraint::expand(dc, knowledge),
            Change::Sql(sc) => sql::expand(sc, plan.changes[i].pos),
            Change::RenameTable(rt) => rename_table::expand(&plan.name, rt, knowledge),
            Change::AddEnumValue(ev) => {
                let same_type: Vec<&str> = plan
                    .changes
                    .iter()
                    .filter_map(|c| match &c.value {
                        Change::AddEnumValue(o) if o.type_qname() == ev.type_qname() => {
                            Some(o.value.value.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                add_enum_value::add_enum_value(ev, &same_type, knowledge)
            }
            Change::ChangeType(ct) => change_type::expand(&plan.name, batch_size, ct, knowledge),
            Change::SplitColumn(sc) => split_column::split(&plan.name, batch_size, sc, knowledge),
            Change::MergeColumns(mc) => merge_columns::merge(&plan.name, batch_size, mc, knowledge),
        };
        // later changes see the table as this one leaves it (a new column, index,
        // constraint, enum value…)
        if let (Ok(_), Some(cat)) = (&result, planned.as_mut()) {
            planned::apply(cat, &plan.changes[i].value);
        }
        match result {
            Ok(out) => outputs.push(out),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut program = Program::assemble(plan, outputs);
    program.footprint = footprint::touches(plan, live_cat);
    if matches!(knowledge, Knowledge::Offline) {
        program.notes.insert(
            0,
            "expanded offline: types, keys, and the NOT NULL, default, index and constraint carry-over are read from the live catalog at `start` (give --database-url to see them now)".into(),
        );
    }
    Ok(program)
}

/// The tables a change reads from the catalog (its own, and the ones it references).
pub fn tables_of(change: &Change) -> Vec<QualifiedName> {
    match change {
        Change::RenameColumn(rc) => vec![rc.table_name()],
        Change::AddColumn(ac) => {
            let mut t = vec![ac.table_name()];
            if let Some(r) = &ac.column.references {
                t.push(r.table_name());
            }
            t
        }
        Change::DropColumn(dc) => vec![dc.table_name()],
        Change::AddIndex(ai) => vec![ai.table_name()],
        Change::DropIndex(_) => Vec::new(),
        Change::SetNotNull(sn) => vec![sn.table_name()],
        Change::AddCheck(ck) => vec![ck.table_name()],
        Change::AddForeignKey(fk) => vec![fk.table_name(), fk.target_name()],
        Change::DropNotNull(c) | Change::DropDefault(c) => vec![c.table_name()],
        Change::SetDefault(sd) => vec![sd.table_name()],
        Change::AddUnique(au) => vec![au.table_name()],
        Change::CreateTable(ct) => vec![ct.table_name()],
        Change::DropTable(dt) => vec![dt.table_name()],
        Change::DropConstraint(dc) => vec![dc.table_name()],
        Change::Sql(_) => Vec::new(),
        Change::RenameTable(rt) => vec![rt.from_name(), rt.to_name()],
        Change::AddEnumValue(_) => Vec::new(),
        Change::ChangeType(ct) => vec![ct.table_name()],
        Change::SplitColumn(sc) => vec![sc.table_name()],
        Change::MergeColumns(mc) => vec![mc.table_name()],
    }
}

/// Relations of any kind a change needs to know about (kind, owner, grants): the
/// catalog loader reads them into [`Catalog::relations`].
pub fn relations_of(change: &Change) -> Vec<QualifiedName> {
    match change {
        Change::RenameTable(rt) => vec![rt.from_name(), rt.to_name()],
        _ => Vec::new(),
    }
}

/// Types a change names: the catalog loader reads them into [`Catalog::types`].
pub fn types_of(change: &Change) -> Vec<QualifiedName> {
    match change {
        // the table's row type takes the new name too
        Change::RenameTable(rt) => vec![rt.to_name()],
        Change::AddEnumValue(ev) => vec![ev.type_qname()],
        _ => Vec::new(),
    }
}

/// Column types a change writes into a table, as written: the catalog loader reads
/// which refuse NULL into [`Catalog::null_rejecting_types`].
pub fn column_types_of(change: &Change) -> Vec<String> {
    match change {
        Change::AddColumn(ac) => vec![ac.column.type_sql.value.clone()],
        Change::ChangeType(ct) => vec![ct.type_sql.value.clone()],
        Change::SplitColumn(sc) => sc
            .into
            .value
            .iter()
            .map(|c| c.type_sql.value.clone())
            .collect(),
        Change::MergeColumns(mc) => vec![mc.into.type_sql.value.clone()],
        _ => Vec::new(),
    }
}

/// Indexes a change names without its table: the catalog loader adds their tables.
pub fn indexes_of(change: &Change) -> Vec<QualifiedName> {
    match change {
        Change::DropIndex(di) => vec![di.index_name()],
        _ => Vec::new(),
    }
}

/// The live catalog plus the tables the plan's `create_table` changes create (those not
/// there yet), as the catalog will show them.
fn with_planned_tables(cat: &Catalog, plan: &Plan) -> Catalog {
    let mut out = cat.clone();
    for c in &plan.changes {
        let Change::CreateTable(ct) = &c.value else {
            continue;
        };
        let name = ct.table_name();
        if out.table(&name).is_some() {
            continue;
        }
        let key = ct.key();
        let columns = ct
            .columns
            .value
            .iter()
            .map(|c| crate::catalog::Column {
                name: c.name.value.clone(),
                type_sql: c.type_sql.value.trim().to_string(),
                collation: None,
                not_null: c.nullable == Some(false) || key.contains(&c.name.value),
                default: c.default.as_ref().map(|d| d.value.trim().to_string()),
                identity: None,
                generated: None,
                has_equality: true,
                ..Default::default()
            })
            .collect();
        let pkey = format!("{}_pkey", name.name.as_str());
        let parts: Vec<String> = key.iter().map(|k| crate::sql::quote_ident(k)).collect();
        let (indexes, constraints) = if key.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (
                vec![crate::catalog::Index {
                    name: pkey.clone(),
                    unique: true,
                    primary: true,
                    valid: true,
                    method: "btree".into(),
                    key_parts: parts.clone(),
                    include: Vec::new(),
                    predicate: None,
                    columns: key.clone(),
                    constraint: Some(pkey.clone()),
                    definition: String::new(),
                }],
                vec![crate::catalog::Constraint {
                    name: pkey,
                    kind: "p".into(),
                    definition: format!("PRIMARY KEY ({})", parts.join(", ")),
                    columns: key.clone(),
                    validated: true,
                    table: name.clone(),
                }],
            )
        };
        out.tables.insert(
            name.to_string(),
            crate::catalog::Table {
                name: name.clone(),
                columns,
                primary_key: (!key.is_empty()).then_some(key),
                unique_not_null_keys: Vec::new(),
                indexes,
                constraints,
                referenced_by: Vec::new(),
                triggers: Vec::new(),
                estimated_rows: 0,
                views: Vec::new(),
                kind: "r".into(),
                persistence: "p".into(),
                ..Default::default()
            },
        );
    }
    out
}

/// Columns the plan's `add_column` changes add, as (table, column).
fn added_columns(plan: &Plan) -> Vec<(QualifiedName, String)> {
    plan.changes
        .iter()
        .filter_map(|c| match &c.value {
            Change::AddColumn(ac) => Some((ac.table_name(), ac.column.name.value.clone())),
            _ => None,
        })
        .collect()
}

/// The order changes contribute to each phase: a change comes after the changes it
/// depends on (an index, unique constraint, check or foreign key after the change that
/// creates its column: `add_column`, `rename_column`, `split_column`, `merge_columns`;
/// anything on a table after the `create_table` of it), otherwise in plan order.
/// Kahn's algorithm taking the earliest ready change each time; a `create_table`
/// depends on nothing, a column's creator only on a `create_table`, so there is no cycle.
pub fn order(plan: &Plan) -> Vec<usize> {
    let n = plan.changes.len();
    // the columns of `table` that change `i` needs to exist
    let uses = |i: usize, table: &QualifiedName, column: &str| {
        let named = |t: QualifiedName, cols: &[crate::plan::At<String>]| {
            t == *table && cols.iter().any(|c| c.value == column)
        };
        match &plan.changes[i].value {
            Change::AddIndex(ai) => named(ai.table_name(), &ai.columns.value),
            Change::AddUnique(au) => named(au.table_name(), &au.columns.value),
            Change::AddForeignKey(fk) => named(fk.table_name(), &fk.columns.value),
            Change::AddCheck(ck) => {
                ck.table_name() == *table && crate::catalog::names_word(&ck.check.value, column)
            }
            _ => false,
        }
    };
    let depends = |i: usize, j: usize| match &plan.changes[j].value {
        Change::AddColumn(ac) => uses(i, &ac.table_name(), &ac.column.name.value),
        Change::CreateTable(ct) => tables_of(&plan.changes[i].value).contains(&ct.table_name()),
        // a column another change creates (rename_column's new name, split_column's or
        // merge_columns' new columns) exists, backfilled, before what builds on it
        other => footprint::synced(other).iter().any(|(t, c)| uses(i, t, c)),
    };
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = (0..n)
            .find(|&i| !done[i] && (0..n).all(|j| done[j] || j == i || !depends(i, j)))
            .expect("no dependency cycle");
        done[next] = true;
        out.push(next);
    }
    out
}

/// A short, stable tag for objects pgphase creates for one change (8 hex digits).
pub(crate) fn object_tag(plan: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(plan.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    h.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
