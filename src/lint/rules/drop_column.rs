use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "drop-column",
    why: "application instances (and ORM caches of the column list) still reading or writing the column fail as soon as it is gone, and the data cannot be brought back",
    fix: "deploy the application that no longer uses the column first, confirm the old version is drained, then drop it under a short lock_timeout (pgphase change kind `drop_column`, in its contract phase after a deploy gate)",
    summary: "`DROP COLUMN` while code may still use it",
    kinds: &["drop_column"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments DROP COLUMN IF EXISTS legacy;",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments DROP CONSTRAINT IF EXISTS legacy_check;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| match a {
        ActionKind::DropColumn { column } => {
            Some(format!("drops column `{column}` of `{}`", t.display()))
        }
        _ => None,
    })
}
