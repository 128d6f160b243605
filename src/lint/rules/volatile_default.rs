use super::super::{lexer::Statement, lexer::Tok, stmt::ActionKind, stmt::Kind, Ctx, Hit, Rule};

pub const RULE: Rule = Rule {
    name: "volatile-default",
    why: "adding a column whose default is volatile (random(), clock_timestamp(), gen_random_uuid(), nextval(): serial types), or an identity or stored generated column, rewrites the whole table under an ACCESS EXCLUSIVE lock; a constant or now() default is only stored in the catalog (PostgreSQL 11+)",
    fix: "add the column nullable without the default, SET DEFAULT (new rows), backfill existing rows in batches, then add NOT NULL through a validated CHECK (pgphase change kind `add_column`)",
    summary: "ADD COLUMN with a volatile default, a serial type, identity or stored generated column",
    kinds: &["add_column"],
    bad: "SET lock_timeout = '1s';\nALTER TABLE comments ADD COLUMN token uuid DEFAULT gen_random_uuid();\nALTER TABLE comments ADD COLUMN seq bigserial;",
    good: "SET lock_timeout = '1s';\nALTER TABLE comments ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\nALTER TABLE comments ADD COLUMN flag boolean DEFAULT false;",
};

const VOLATILE: &[&str] = &[
    "random",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "nextval",
    "setseed",
];

const SERIAL: &[&str] = &[
    "serial",
    "bigserial",
    "smallserial",
    "serial2",
    "serial4",
    "serial8",
];

pub fn check(_s: &Statement, k: &Kind, ctx: &Ctx) -> Vec<Hit> {
    super::each_action(k, ctx, |t, a| {
        let ActionKind::AddColumn {
            column,
            type_words,
            default,
            generated_stored,
            identity,
            ..
        } = a
        else {
            return None;
        };
        let why = if let Some(f) = default.as_ref().and_then(|d| {
            d.windows(2).find_map(|w| match (&w[0], &w[1]) {
                (Tok::Word(f), Tok::LParen) if VOLATILE.contains(&f.as_str()) => Some(f.clone()),
                _ => None,
            })
        }) {
            format!("the volatile default {f}()")
        } else if let Some(s) = type_words.iter().find(|w| SERIAL.contains(&w.as_str())) {
            format!("type {s} (a nextval() default)")
        } else if *identity {
            "GENERATED … AS IDENTITY".to_string()
        } else if *generated_stored {
            "GENERATED ALWAYS AS … STORED".to_string()
        } else {
            return None;
        };
        Some(format!(
            "adds `{column}` to `{}` with {why}: a full rewrite",
            t.display()
        ))
    })
}
