use super::super::{lexer::Statement, stmt::Kind};
use super::super::{stmt::ActionKind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "alter-column-type",
    why: "changing a column's type rewrites the whole table and rebuilds its indexes under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole rewrite (unless the change is binary-coercible, e.g. varchar(n) → text or a larger n; `--trace` shows whether it rewrote), and running code may not expect the new type",
    fix: "add a column of the new type, keep both in sync with a trigger, backfill in batches, switch the application at a deploy gate, then drop the old column (pgphase change kind `change_type`)",
    summary: "`ALTER COLUMN … TYPE` (rewrite under ACCESS EXCLUSIVE unless binary-coercible)",
    kinds: &["change_type"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments ALTER COLUMN post_id TYPE bigint;",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments ALTER COLUMN post_id SET DEFAULT 0;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| match a {
        ActionKind::AlterColumnType { column } => Some(format!(
            "changes the type of `{column}` on `{}`",
            t.display()
        )),
        _ => None,
    })
}
