//! Recipes: one file per change kind, each turning a change into phase contributions.
//! Pure: a recipe reads the plan and a catalog snapshot, never a connection.

mod rename_column;

use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::plan::{Change, Plan, Pos};
use crate::program::Program;

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
pub fn expand(plan: &Plan, knowledge: Knowledge<'_>) -> Result<Program, Vec<Precondition>> {
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for change in &plan.changes {
        let result = match &change.value {
            Change::RenameColumn(rc) => {
                rename_column::expand(&plan.name, plan.settings.backfill.batch_size, rc, knowledge)
            }
        };
        match result {
            Ok(out) => outputs.push(out),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut program = Program::assemble(plan, outputs);
    if matches!(knowledge, Knowledge::Offline) {
        program.notes.insert(
            0,
            "expanded offline: types, keys, and the NOT NULL, default, index and constraint carry-over are read from the live catalog at `start` (give --database-url to see them now)".into(),
        );
    }
    Ok(program)
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
