//! `merge_columns`: several old columns → one new (see shared/derived_columns.rs).

use super::shared::derived_columns::derived;
use super::{Knowledge, Precondition};
use crate::plan::{At, MergeColumns};
use crate::program::RecipeOutput;

pub(super) fn merge(
    plan: &str,
    batch_size: u32,
    mc: &MergeColumns,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let old: Vec<&At<String>> = mc.from.value.iter().collect();
    let reverse = mc
        .from
        .value
        .iter()
        .map(|f| mc.reverse.value[&f.value].value.trim().to_string())
        .collect();
    derived(
        plan,
        batch_size,
        "merge_columns",
        (&mc.table, mc.table_name()),
        &old,
        &[&mc.into.value],
        reverse,
        knowledge,
    )
}
