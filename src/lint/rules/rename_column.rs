use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "rename-column",
    why: "renaming a column is instant, and every running application instance that still uses the old name fails at once (42703) until the deploy finishes everywhere",
    fix: "add the new column, sync both with a trigger, backfill, deploy the application that uses the new name, drain the old one, then drop the old column (pgphase change kind `rename_column`)",
    summary: "`RENAME COLUMN`: breaks running code at once",
    kinds: &["rename_column"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments RENAME COLUMN contents TO body;",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments RENAME CONSTRAINT a TO b;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| match a {
        ActionKind::RenameColumn { from, to } => {
            Some(format!("renames `{}.{from}` to `{to}`", t.display()))
        }
        _ => None,
    })
}
