//! Recipes: one file per change kind, each turning a change into phase contributions.
//! Pure: a recipe reads the plan and a catalog snapshot, never a connection.

mod kind;
mod shared;

pub use kind::{ChangeKind, Context};
use shared::{footprint, planned};

include!("registry.rs");

use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::plan::{Plan, Pos};
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
    problems.extend(citus_tables(plan, live_cat));
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
        let cx = Context {
            plan: &plan.name,
            batch_size,
            knowledge,
            live,
            added: &added,
            changes: &plan.changes,
            pos: plan.changes[i].pos,
        };
        let result = plan.changes[i].value.as_kind().expand(&cx);
        // later changes see the table as this one leaves it (a new column, index,
        // constraint, enum value…)
        if let (Ok(_), Some(cat)) = (&result, planned.as_mut()) {
            plan.changes[i].value.as_kind().apply(cat);
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

/// Refusals for changes that touch a Citus table: pgphase's steps run on the node it is
/// connected to, and what they rely on (row triggers on every write, a keyset backfill
/// over one table, DDL under one lock) does not hold across a distributed table's
/// shards or a reference table's replicas. docs/citus.md says what each change kind
/// would need there.
fn citus_tables(plan: &Plan, cat: Option<&Catalog>) -> Vec<Precondition> {
    let Some(cat) = cat else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &plan.changes {
        for name in tables_of(&c.value) {
            if let Some(kind) = cat.table(&name).and_then(|t| t.citus.as_deref()) {
                out.push(Precondition {
                    pos: c.pos,
                    message: format!(
                        "`{}` is a Citus {kind} table (pg_dist_partition): pgphase's sync triggers, batched backfill and DDL run on this node only and do not follow its shards or replicas, so the change would half-work; change it with Citus's own DDL propagation in a maintenance window (docs/citus.md says what each change kind would need)",
                        name.display_short()
                    ),
                });
            }
        }
    }
    out
}

/// The tables a change reads from the catalog (its own, and the ones it references).
pub fn tables_of(change: &Change) -> Vec<QualifiedName> {
    change.as_kind().tables()
}

/// Relations of any kind a change needs to know about (kind, owner, grants): the
/// catalog loader reads them into [`Catalog::relations`].
pub fn relations_of(change: &Change) -> Vec<QualifiedName> {
    change.as_kind().relations()
}

/// Types a change names: the catalog loader reads them into [`Catalog::types`].
pub fn types_of(change: &Change) -> Vec<QualifiedName> {
    change.as_kind().types()
}

/// Column types a change writes into a table, as written: the catalog loader reads
/// which refuse NULL into [`Catalog::null_rejecting_types`].
pub fn column_types_of(change: &Change) -> Vec<String> {
    change.as_kind().column_types()
}

/// Indexes a change names without its table: the catalog loader adds their tables.
pub fn indexes_of(change: &Change) -> Vec<QualifiedName> {
    change.as_kind().indexes()
}

/// The live catalog plus the tables the plan's `create_table` changes create (those not
/// there yet), as the catalog will show them.
fn with_planned_tables(cat: &Catalog, plan: &Plan) -> Catalog {
    let mut out = cat.clone();
    for c in &plan.changes {
        let Some(table) = c.value.as_kind().planned_table() else {
            continue;
        };
        if out.table(&table.name).is_some() {
            continue;
        }
        out.tables.insert(table.name.to_string(), table);
    }
    out
}

/// Columns the plan's `add_column` changes add, as (table, column).
fn added_columns(plan: &Plan) -> Vec<(QualifiedName, String)> {
    plan.changes
        .iter()
        .filter_map(|c| c.value.as_kind().added_column())
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
    let depends = |i: usize, j: usize| {
        let (this, other) = (
            plan.changes[i].value.as_kind(),
            plan.changes[j].value.as_kind(),
        );
        other
            .creates_table()
            .is_some_and(|t| this.tables().contains(&t))
            || other
                .creates_columns()
                .iter()
                .any(|(t, c)| this.needs_column(t, c))
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
