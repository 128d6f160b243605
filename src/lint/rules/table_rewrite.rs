use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "table-rewrite",
    why: "VACUUM FULL, CLUSTER, SET TABLESPACE, SET LOGGED/UNLOGGED and SET ACCESS METHOD copy the whole table (and rebuild its indexes) under an ACCESS EXCLUSIVE lock: the table is unavailable for the whole copy",
    fix: "avoid on a live table: pg_repack or pg_squeeze rebuild online; a new table filled by batched copy with a sync trigger otherwise",
    summary: "VACUUM FULL, CLUSTER, SET TABLESPACE, SET LOGGED/UNLOGGED, SET ACCESS METHOD",
    kinds: &[],
    bad: "VACUUM FULL comments;\nSET lock_timeout = '1s';\nALTER TABLE comments SET TABLESPACE fast_ssd;",
    good: "VACUUM (ANALYZE) comments;",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    match k {
        Kind::RewriteTable { what, table } if !table.as_ref().is_some_and(|t| ctx.is_new(t)) => {
            super::at_statement(
                s,
                format!(
                    "{what} rewrites {}",
                    table
                        .as_ref()
                        .map(|t| format!("`{}`", t.display()))
                        .unwrap_or_else(|| "every table it covers".into())
                ),
            )
        }
        _ => super::each_action(k, ctx, |t, a| match a {
            ActionKind::Rewrite(what) => Some(format!("{what} rewrites `{}`", t.display())),
            _ => None,
        }),
    }
}
