use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "create-index-non-concurrent",
    why: "CREATE INDEX without CONCURRENTLY holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE on the table waits until the index is built",
    fix: "CREATE INDEX CONCURRENTLY, outside any transaction block, dropping an INVALID leftover before a retry (pgphase change kind `add_index`)",
    summary: "`CREATE INDEX` without CONCURRENTLY (SHARE lock: writes wait)",
    kinds: &["add_index"],
    bad: "CREATE INDEX comments_post_idx ON comments (post_id);",
    good: "CREATE INDEX CONCURRENTLY comments_post_idx ON comments (post_id);",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    match k {
        Kind::CreateIndex {
            concurrently: false,
            table,
        } if !table.as_ref().is_some_and(|t| ctx.is_new(t)) => super::at_statement(
            s,
            format!(
                "builds an index on `{}` while blocking writes",
                table.as_ref().map(|t| t.display()).unwrap_or_default()
            ),
        ),
        _ => Vec::new(),
    }
}
