use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "missing-lock-timeout",
    why: "no `SET lock_timeout` is in effect before a statement that needs an ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) lock on an existing table: if a long transaction holds the table, the statement waits in the lock queue and every later query on the table queues behind it — a full outage of the table for as long as it waits",
    fix: "SET lock_timeout = '500ms' (or SET LOCAL inside the transaction) before it, and retry on 55P03 with backoff; pgphase runs every such step that way (any pgphase plan)",
    summary: "an ACCESS EXCLUSIVE / SHARE ROW EXCLUSIVE statement on an existing table with no `SET [LOCAL] lock_timeout` (or `set_config`) in effect",
    kinds: &[],
    bad: "ALTER TABLE comments ALTER COLUMN body DROP NOT NULL;\nBEGIN;\nSET LOCAL lock_timeout = '1s';\nCOMMIT;\nALTER TABLE comments ALTER COLUMN body SET DEFAULT '';",
    good: "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE comments ALTER COLUMN body DROP NOT NULL;\nCOMMIT;\nSELECT set_config('lock_timeout', '2s', false);\nALTER TABLE comments ALTER COLUMN body SET DEFAULT '';",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    if ctx.lock_timeout() {
        return Vec::new();
    }
    let what = match k {
        Kind::AlterTable { table, actions }
            if !ctx.is_new(table)
                && actions.iter().any(|a| {
                    !matches!(
                        a.what,
                        ActionKind::ValidateConstraint { .. } | ActionKind::Weak
                    )
                }) =>
        {
            format!("ALTER TABLE `{}`", table.display())
        }
        Kind::DropTable { tables } if tables.iter().any(|t| !ctx.is_new(t)) => "DROP TABLE".into(),
        Kind::DropIndex {
            concurrently: false,
        } => "DROP INDEX".into(),
        Kind::Locking { what, table } if !table.as_ref().is_some_and(|t| ctx.is_new(t)) => {
            what.clone()
        }
        _ => return Vec::new(),
    };
    super::at_statement(s, format!("{what} without a lock_timeout"))
}
