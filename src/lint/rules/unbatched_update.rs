use super::super::{lexer::Statement, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "unbatched-update",
    why: "an UPDATE of every row in one statement locks every row until it commits (concurrent writers of any row wait), holds back vacuum, and doubles the table's size in dead rows",
    fix: "backfill in batches of ~1000 rows by key, one short transaction each, resumable from a checkpoint (pgphase's backfill phase, e.g. change kinds `add_column` with a value or `rename_column`)",
    summary: "UPDATE without WHERE (every row locked in one transaction)",
    kinds: &["add_column", "rename_column"],
    bad: "UPDATE comments SET body = contents;",
    good: "UPDATE comments SET body = contents WHERE id BETWEEN 1 AND 1000;",
};

pub fn check(s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    match k {
        Kind::Update {
            table,
            has_where: false,
        } if !ctx.is_new(table) => super::at_statement(
            s,
            format!(
                "updates every row of `{}` in one transaction",
                table.display()
            ),
        ),
        _ => Vec::new(),
    }
}
