//! One rule per file: `RULE` (name, why, fix) and `check`.

use super::lexer::Statement;
use super::stmt::Kind;
use super::{Ctx, Hit, Rule};

mod add_constraint_valid;
mod add_unique_constraint;
mod alter_column_type;
mod concurrently_in_transaction;
mod create_index_non_concurrent;
mod drop_column;
mod drop_index_non_concurrent;
mod drop_table;
mod missing_lock_timeout;
mod reindex_non_concurrent;
mod rename_column;
mod rename_table;
mod set_not_null;
mod table_rewrite;
mod unbatched_update;
mod volatile_default;

pub type Check = fn(&Statement, &Kind, &Ctx) -> Vec<Hit>;

/// Every rule, in the order findings are reported for one statement.
pub const ALL: &[(&Rule, Check)] = &[
    (&alter_column_type::RULE, alter_column_type::check),
    (&rename_column::RULE, rename_column::check),
    (&rename_table::RULE, rename_table::check),
    (
        &create_index_non_concurrent::RULE,
        create_index_non_concurrent::check,
    ),
    (
        &drop_index_non_concurrent::RULE,
        drop_index_non_concurrent::check,
    ),
    (&reindex_non_concurrent::RULE, reindex_non_concurrent::check),
    (
        &concurrently_in_transaction::RULE,
        concurrently_in_transaction::check,
    ),
    (&add_constraint_valid::RULE, add_constraint_valid::check),
    (&add_unique_constraint::RULE, add_unique_constraint::check),
    (&set_not_null::RULE, set_not_null::check),
    (&volatile_default::RULE, volatile_default::check),
    (&drop_column::RULE, drop_column::check),
    (&drop_table::RULE, drop_table::check),
    (&table_rewrite::RULE, table_rewrite::check),
    (&unbatched_update::RULE, unbatched_update::check),
    (&missing_lock_timeout::RULE, missing_lock_timeout::check),
];

/// The rules, for `pgphase lint --rules` and `docs/lint/` (`super::docs`).
pub fn list() -> Vec<Rule> {
    ALL.iter().map(|(r, _)| **r).collect()
}

/// Hits for each `ALTER TABLE` action on an existing table that `f` picks.
pub(crate) fn each_action(
    k: &Kind,
    ctx: &Ctx,
    f: impl Fn(&super::stmt::Name, &super::stmt::ActionKind) -> Option<String>,
) -> Vec<Hit> {
    let Kind::AlterTable { table, actions } = k else {
        return Vec::new();
    };
    if ctx.is_new(table) {
        return Vec::new();
    }
    actions
        .iter()
        .filter_map(|a| {
            f(table, &a.what).map(|message| Hit {
                line: a.line,
                col: a.col,
                message,
            })
        })
        .collect()
}

pub(crate) fn at_statement(s: &Statement, message: String) -> Vec<Hit> {
    vec![Hit {
        line: s.line,
        col: s.col,
        message,
    }]
}
