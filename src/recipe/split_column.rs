//! `split_column`: one old column → several new (see shared/derived_columns.rs).

use super::shared::derived_columns::derived;
use super::{Knowledge, Precondition};
use crate::plan::{DerivedColumn, SplitColumn};
use crate::program::RecipeOutput;

pub(super) fn split(
    plan: &str,
    batch_size: u32,
    sc: &SplitColumn,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let new: Vec<&DerivedColumn> = sc.into.value.iter().collect();
    derived(
        plan,
        batch_size,
        "split_column",
        (&sc.table, sc.table_name()),
        &[&sc.from],
        &new,
        vec![sc.reverse.value.trim().to_string()],
        knowledge,
    )
}
