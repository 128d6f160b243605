use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "drop-index-non-concurrent",
    why: "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the index's table: queued behind any long transaction, it stops all reads and writes of the table while it waits",
    fix: "DROP INDEX CONCURRENTLY, outside any transaction block (pgphase change kind `drop_index`)",
    summary: "`DROP INDEX` without CONCURRENTLY",
    kinds: &["drop_index"],
    bad: "SET lock_timeout = '1s';\nDROP INDEX comments_post_idx;",
    good: "DROP INDEX CONCURRENTLY IF EXISTS comments_post_idx;",
};

pub fn check(s: &Statement, k: &Kind, _ctx: &Ctx) -> Vec<Hit> {
    match k {
        Kind::DropIndex {
            concurrently: false,
        } => super::at_statement(
            s,
            "drops an index under ACCESS EXCLUSIVE on its table".into(),
        ),
        _ => Vec::new(),
    }
}
