use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "reindex-non-concurrent",
    why: "REINDEX without CONCURRENTLY blocks writes to the table, and reads that use the index, for the whole rebuild",
    fix: "REINDEX … CONCURRENTLY (PostgreSQL 12+), outside any transaction block",
    summary: "`REINDEX` without CONCURRENTLY",
    kinds: &[],
    bad: "REINDEX INDEX comments_post_idx;",
    good: "REINDEX INDEX CONCURRENTLY comments_post_idx;",
};

pub fn check(s: &Statement, k: &Kind, _ctx: &Ctx) -> Vec<Hit> {
    match k {
        Kind::Reindex {
            concurrently: false,
        } => super::at_statement(s, "rebuilds an index while blocking writes".into()),
        _ => Vec::new(),
    }
}
