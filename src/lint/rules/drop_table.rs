use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "drop-table",
    why: "code still using the table fails at once, the data cannot be brought back, and dropping it locks every table its foreign keys point to",
    fix: "deploy the application that no longer uses the table, confirm it is drained, drop its foreign keys one at a time under a short lock_timeout, then drop it (pgphase change kind `drop_table`)",
    summary: "`DROP TABLE` while code may still use it",
    kinds: &["drop_table"],
    bad: "SET lock_timeout = '1s';\nDROP TABLE IF EXISTS comments_archive, sessions;",
    good: "CREATE TABLE scratch (id int);\nDROP TABLE scratch;",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    let Kind::DropTable { tables } = k else {
        return Vec::new();
    };
    let old: Vec<String> = tables
        .iter()
        .filter(|t| !ctx.is_new(t))
        .map(|t| format!("`{}`", t.display()))
        .collect();
    if old.is_empty() {
        return Vec::new();
    }
    super::at_statement(s, format!("drops {}", old.join(", ")))
}
