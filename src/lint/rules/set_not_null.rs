use super::super::{lexer::Statement, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "set-not-null",
    why: "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock to prove there is no NULL, unless a validated CHECK (column IS NOT NULL) already proves it (PostgreSQL 12+); no such check is validated earlier in this file",
    fix: "ADD CONSTRAINT … CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE), then SET NOT NULL (no scan) and drop the check (pgphase change kind `set_not_null`)",
    summary: "SET NOT NULL without a CHECK (col IS NOT NULL) validated earlier in the file",
    kinds: &["set_not_null"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments ALTER COLUMN body SET NOT NULL;",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments ADD CONSTRAINT body_nn CHECK ((body IS NOT NULL)) NOT VALID;\nALTER TABLE comments VALIDATE CONSTRAINT body_nn;\nALTER TABLE public.comments ALTER COLUMN body SET NOT NULL;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| match a {
        ActionKind::SetNotNull { column }
            if !ctx
                .not_null_checks
                .iter()
                .any(|(ct, c)| ct.matches(t) && c == column) =>
        {
            Some(format!(
                "sets `{column}` NOT NULL on `{}` with a full scan under ACCESS EXCLUSIVE",
                t.display()
            ))
        }
        _ => None,
    })
}
