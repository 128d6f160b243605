use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "concurrently-in-transaction",
    why: "CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and VACUUM cannot run inside a transaction block: the migration fails at this statement (25001), after the statements before it in the transaction",
    fix: "run it on its own, outside BEGIN … COMMIT (pgphase runs CONCURRENTLY steps outside transactions: change kinds `add_index`, `drop_index`)",
    summary: "CONCURRENTLY or VACUUM inside `BEGIN … COMMIT` (fails with 25001)",
    kinds: &["add_index", "drop_index"],
    bad: "BEGIN;\nCREATE INDEX CONCURRENTLY comments_post_idx ON comments (post_id);\nCOMMIT;",
    good: "BEGIN;\nCOMMIT;\nCREATE INDEX CONCURRENTLY comments_post_idx ON comments (post_id);",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    if !ctx.in_transaction {
        return Vec::new();
    }
    let what = match k {
        Kind::CreateIndex {
            concurrently: true, ..
        } => "CREATE INDEX CONCURRENTLY",
        Kind::DropIndex { concurrently: true } => "DROP INDEX CONCURRENTLY",
        Kind::Reindex { concurrently: true } => "REINDEX CONCURRENTLY",
        Kind::Vacuum => "VACUUM",
        _ => return Vec::new(),
    };
    super::at_statement(s, format!("{what} inside BEGIN … COMMIT"))
}
