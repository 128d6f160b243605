//! The `ChangeKind` trait: what every change kind implements, in its own file named after
//! its YAML key (src/recipe/<yaml_key>.rs), registered with one line in `registry.rs`.
//! A kind calls the shared machinery in `shared/`, never a sibling kind.

use super::shared::footprint::{Replaced, Use};
use super::{Change, Knowledge, Precondition};
use crate::catalog::{Catalog, Table};
use crate::plan::{At, Pos};
use crate::program::RecipeOutput;
use crate::sql::QualifiedName;

/// What a kind's expansion sees besides its own change.
pub struct Context<'a> {
    /// The plan's name (object names pgphase creates are derived from it).
    pub plan: &'a str,
    pub batch_size: u32,
    /// The catalog as the changes before this one leave it (or offline).
    pub knowledge: Knowledge<'a>,
    /// The live catalog as it is (or offline).
    pub live: Knowledge<'a>,
    /// Columns the plan's `add_column` changes add, as (table, column).
    pub added: &'a [(QualifiedName, String)],
    /// Every change of the plan, in file order.
    pub changes: &'a [At<Change>],
    /// Where this change is written.
    pub pos: Pos,
}

/// One change kind: its load-time validation, the catalog facts it needs, what it
/// touches and creates, and its pure expansion into phase contributions.
pub trait ChangeKind {
    /// Checks of the change as written, at load (no catalog): a refusal at a position.
    fn validate(&self, pos: Pos) -> Result<(), (Pos, String)>;

    /// Checks against the other changes of the plan, at load (`i`: this change's index).
    fn validate_in_plan(&self, _i: usize, _changes: &[At<Change>]) -> Result<(), (Pos, String)> {
        Ok(())
    }

    /// The index the change creates or drops (one change per index in a plan).
    fn index_changed(&self) -> Option<(QualifiedName, Pos)> {
        None
    }

    /// The tables it reads from the catalog (its own, and the ones it references).
    fn tables(&self) -> Vec<QualifiedName> {
        Vec::new()
    }

    /// Relations of any kind it needs to know about (kind, owner, grants).
    fn relations(&self) -> Vec<QualifiedName> {
        Vec::new()
    }

    /// Types it names.
    fn types(&self) -> Vec<QualifiedName> {
        Vec::new()
    }

    /// Column types it writes into a table, as written (which refuse NULL is loaded).
    fn column_types(&self) -> Vec<String> {
        Vec::new()
    }

    /// Indexes it names without their table (the loader adds their tables).
    fn indexes(&self) -> Vec<QualifiedName> {
        Vec::new()
    }

    /// The columns it adds, renames or removes: two changes on one column cannot share
    /// phases.
    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        Vec::new()
    }

    /// Every table and column it names (expressions read against `cat`).
    fn uses(&self, _cat: Option<&Catalog>) -> Vec<Use> {
        Vec::new()
    }

    /// The columns it replaces, removes or retypes.
    fn replaced(&self) -> Vec<Replaced> {
        Vec::new()
    }

    /// The columns it creates and keeps in sync with others until contract.
    fn synced(&self) -> Vec<(QualifiedName, String)> {
        Vec::new()
    }

    /// Whether it may build on a column another change creates in sync (only adds an
    /// index or a constraint, after that change's backfill).
    fn builds_on_new_columns(&self) -> bool {
        false
    }

    /// Whether it needs `column` of `table` to exist first (dependency order).
    fn needs_column(&self, _table: &QualifiedName, _column: &str) -> bool {
        false
    }

    /// The columns it creates that later changes may build on (dependency order).
    fn creates_columns(&self) -> Vec<(QualifiedName, String)> {
        self.synced()
    }

    /// The column an `add_column` adds (indexes and constraints may name it).
    fn added_column(&self) -> Option<(QualifiedName, String)> {
        None
    }

    /// The table it creates: every change on that table comes after it.
    fn creates_table(&self) -> Option<QualifiedName> {
        None
    }

    /// The table it creates, as the catalog will show it.
    fn planned_table(&self) -> Option<Table> {
        None
    }

    /// What it leaves in the catalog, applied to `cat` (later changes see it).
    fn apply(&self, _cat: &mut Catalog) {}

    /// Its phase contributions, or why it does not fit the database.
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>>;
}
