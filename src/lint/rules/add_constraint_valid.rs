use super::super::{
    lexer::Statement, stmt::ActionKind, stmt::ConstraintKind, stmt::Kind, Ctx, Hit, Rule,
};

pub const RULE: Rule = Rule {
    name: "add-constraint-valid",
    why: "adding a CHECK or FOREIGN KEY constraint without NOT VALID checks every existing row while holding the lock (ACCESS EXCLUSIVE for CHECK; SHARE ROW EXCLUSIVE on both tables for a FOREIGN KEY): writes, and for CHECK reads too, wait for the whole scan",
    fix: "ADD CONSTRAINT … NOT VALID (enforced for new writes at once, no scan), then VALIDATE CONSTRAINT in its own transaction, which only takes SHARE UPDATE EXCLUSIVE (pgphase change kinds `add_check`, `add_foreign_key`)",
    summary: "CHECK / FOREIGN KEY added without NOT VALID (scan under the lock)",
    kinds: &["add_check", "add_foreign_key"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments ADD CONSTRAINT comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id);",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments ADD CONSTRAINT comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) NOT VALID;\nALTER TABLE comments VALIDATE CONSTRAINT comments_post_fk;",
};

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| {
        match a {
        ActionKind::AddConstraint {
            kind: kind @ (ConstraintKind::Check(_) | ConstraintKind::ForeignKey),
            not_valid: false,
            name,
            ..
        } => Some(format!(
            "adds {} {}on `{}` and validates it under the lock",
            if matches!(kind, ConstraintKind::ForeignKey) { "FOREIGN KEY" } else { "CHECK" },
            name.as_ref().map(|n| format!("`{n}` ")).unwrap_or_default(),
            t.display()
        )),
        ActionKind::AddColumn {
            column,
            inline_constraint: Some(ConstraintKind::ForeignKey),
            default: Some(_),
            ..
        } => Some(format!(
            "adds `{column}` with a default and a FOREIGN KEY on `{}`: every row is checked under the lock",
            t.display()
        )),
        _ => None,
    }
    })
}
