use super::super::{
    lexer::Statement, stmt::ActionKind, stmt::ConstraintKind, stmt::Kind, Ctx, Hit, Rule,
};

pub const RULE: Rule = Rule {
    name: "add-unique-constraint",
    why: "adding a UNIQUE, PRIMARY KEY or EXCLUDE constraint builds its index under an ACCESS EXCLUSIVE lock: all reads and writes of the table wait for the whole build",
    fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE (or PRIMARY KEY) USING INDEX, which is instant (pgphase change kind `add_unique`)",
    summary: "UNIQUE / PRIMARY KEY / EXCLUDE built under ACCESS EXCLUSIVE instead of `USING INDEX`",
    kinds: &["add_unique"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments ADD CONSTRAINT comments_token_key UNIQUE (token);",
    good: "CREATE UNIQUE INDEX CONCURRENTLY comments_token_key ON comments (token);\nSET lock_timeout = '1s';\nALTER TABLE comments ADD CONSTRAINT comments_token_key UNIQUE USING INDEX comments_token_key;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| {
        match a {
        ActionKind::AddConstraint {
            kind: kind @ (ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclude),
            using_index: false,
            ..
        } => Some(format!(
            "builds the index of a {} constraint on `{}` under ACCESS EXCLUSIVE",
            match kind {
                ConstraintKind::Unique => "UNIQUE",
                ConstraintKind::PrimaryKey => "PRIMARY KEY",
                _ => "EXCLUDE",
            },
            t.display()
        )),
        ActionKind::AddColumn {
            column,
            inline_constraint: Some(ConstraintKind::Unique | ConstraintKind::PrimaryKey),
            ..
        } => Some(format!(
            "adds `{column}` with an inline UNIQUE/PRIMARY KEY on `{}`: its index is built under ACCESS EXCLUSIVE",
            t.display()
        )),
        _ => None,
    }
    })
}
