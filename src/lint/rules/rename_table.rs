use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "rename-table",
    why: "renaming a table is instant, and every running application instance that still uses the old name fails at once (42P01) until the deploy finishes everywhere",
    fix: "rename it and create a view with the old name in one transaction (the view is updatable), deploy the application that uses the new name, then drop the view (pgphase change kind `rename_table`)",
    summary: "`RENAME` of a table: breaks running code at once",
    kinds: &["rename_table"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments RENAME TO remarks;",
    good: "CREATE TABLE remarks (id int);\nALTER TABLE remarks RENAME TO notes;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| match a {
        ActionKind::RenameTable { to } => {
            Some(format!("renames table `{}` to `{to}`", t.display()))
        }
        _ => None,
    })
}
