//! The compatibility matrix (docs/compatibility.md): every change kind that replaces or
//! drops a column — rename_column, change_type (shadow route and in place),
//! split_column, merge_columns, drop_column — against every object that can live
//! around that column, on a real server. Each cell either completes with the object
//! carried over (or left as it was, or dropped by design and said so in `plan`), or is
//! refused by `start` before anything runs, naming the object, with the catalog left
//! exactly as it was.

mod common;

use common::*;
use pgphase::run;
use std::sync::Arc;

/// The table every case starts from: `contents` is the column the plans change.
const BASE: &str = "
CREATE TABLE t (id bigint PRIMARY KEY, contents varchar(100) NOT NULL DEFAULT 'x', other text, n int);
INSERT INTO t SELECT g, 'c' || g, 'o' || g, g FROM generate_series(1, 20) g;
";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rename,
    Shadow,
    InPlace,
    Split,
    Merge,
    Drop,
}

const KINDS: [Kind; 6] = [
    Kind::Rename,
    Kind::Shadow,
    Kind::InPlace,
    Kind::Split,
    Kind::Merge,
    Kind::Drop,
];

impl Kind {
    fn change(self) -> &'static str {
        match self {
            Kind::Rename => "  - rename_column: { table: t, from: contents, to: body }",
            Kind::Shadow => "  - change_type: { table: t, column: contents, type: varchar(50) }",
            Kind::InPlace => "  - change_type: { table: t, column: contents, type: varchar(200) }",
            Kind::Split => "  - split_column:
      table: t
      from: contents
      into:
        - { name: c1, type: text, using: contents }
        - { name: c2, type: int, using: length(contents::text) }
      reverse: c1",
            Kind::Merge => "  - merge_columns:
      table: t
      from: [contents, other]
      into: { name: whole, type: text, using: \"contents || '|' || coalesce(other, '')\" }
      reverse: { contents: \"split_part(whole, '|', 1)\", other: \"nullif(split_part(whole, '|', 2), '')\" }",
            Kind::Drop => "  - drop_column: { table: t, column: contents }",
        }
    }
}

/// What a cell must do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `start` refuses, the message containing this, the catalog unchanged.
    Refused(&'static str),
    /// The plan completes; then this query returns true.
    Done(&'static str),
    /// The plan completes, its `plan` output names this (the object goes with the
    /// column, by design), then this query returns true.
    Dropped(&'static str, &'static str),
}

struct Case {
    object: &'static str,
    setup: &'static str,
    /// Oldest PostgreSQL major the object exists on.
    since: i32,
    expect: Vec<(Kind, Expect)>,
}

fn all(e: Expect) -> Vec<(Kind, Expect)> {
    KINDS.iter().map(|k| (*k, e)).collect()
}

/// One cell: a database of its own, the base table, the object, the plan.
async fn cell(case: &Case, kind: Kind, expect: Expect) -> Result<(), String> {
    let db = TestDb::new().await;
    let client = db.client().await;
    if major_version(&client).await < case.since {
        return Ok(());
    }
    client
        .batch_execute(&format!("{BASE}{}", case.setup))
        .await
        .map_err(|e| format!("setup: {e}"))?;
    let file = plan_from(
        &format!(
            "settings: {{ lock_timeout: 1s }}\nchanges:\n{}\n",
            kind.change()
        ),
        "cell",
    );
    let fail = |what: String| Err(format!("{} × {kind:?}: {what}", case.object));
    match expect {
        Expect::Refused(needle) => {
            let before = schema_of(&client, "t").await;
            match run::start(&db.session(), &file).await {
                Ok(o) => return fail(format!("expected a refusal, got {o:?}")),
                Err(e) if !e.to_string().contains(needle) => {
                    return fail(format!("refused without `{needle}`: {e}"))
                }
                Err(_) => {}
            }
            if schema_of(&client, "t").await != before {
                return fail("the refusal changed the catalog".into());
            }
        }
        Expect::Done(check) | Expect::Dropped(_, check) => {
            if let Expect::Dropped(named, _) = expect {
                let program = run::expand(Some(&db.conn()), &file)
                    .await
                    .map_err(|e| format!("{} × {kind:?}: {e}", case.object))?;
                let text = pgphase::report::plan_text(&program);
                if !text.contains(named) {
                    return fail(format!("`plan` does not name `{named}`:\n{text}"));
                }
            }
            match run_to_completion(&db.session(), &file).await {
                Ok(run::Outcome::Completed) => {}
                other => return fail(format!("did not complete: {other:?}")),
            }
            let ok: bool = client
                .query_one(check, &[])
                .await
                .map_err(|e| format!("{} × {kind:?}: check: {e}", case.object))?
                .get(0);
            if !ok {
                return fail(format!("check failed: {check}"));
            }
            let rows: i64 = client
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            if rows < 20 {
                return fail(format!("{rows} rows left"));
            }
        }
    }
    Ok(())
}

/// Runs every cell of the cases, three at a time, and reports every failing one.
async fn matrix(cases: Vec<Case>) {
    let cases = Arc::new(cases);
    let permits = Arc::new(tokio::sync::Semaphore::new(3));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..cases.len() {
        for j in 0..cases[i].expect.len() {
            let (cases, permits) = (cases.clone(), permits.clone());
            set.spawn(async move {
                let _p = permits.acquire().await.unwrap();
                let case = &cases[i];
                let (kind, expect) = case.expect[j];
                cell(case, kind, expect).await
            });
        }
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

use Expect::{Done, Dropped, Refused};
use Kind::*;

const NO_INDEX_LEFT: &str =
    "SELECT count(*) = 1 FROM pg_index WHERE indrelid = 't'::regclass";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexes_and_constraints() {
    matrix(vec![
        Case {
            object: "view",
            setup: "CREATE VIEW v AS SELECT id, contents FROM t;",
            since: 13,
            expect: all(Refused("view `v` uses")),
        },
        Case {
            object: "materialized view",
            setup: "CREATE MATERIALIZED VIEW mv AS SELECT id, contents FROM t;",
            since: 13,
            expect: all(Refused("view `mv` uses")),
        },
        Case {
            object: "foreign key in",
            setup: "ALTER TABLE t ADD CONSTRAINT t_contents_key UNIQUE (contents);
                    CREATE TABLE r (id int PRIMARY KEY, c varchar(100) REFERENCES t (contents));",
            since: 13,
            expect: all(Refused("foreign key `r_c_fkey` on `r` references")),
        },
        Case {
            object: "foreign key out",
            setup: "CREATE TABLE tgt (c varchar(100) PRIMARY KEY);
                    INSERT INTO tgt SELECT 'c' || g FROM generate_series(1, 20) g;
                    ALTER TABLE t ADD CONSTRAINT t_contents_fkey FOREIGN KEY (contents) REFERENCES tgt (c);",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'f' AND convalidated AND pg_get_constraintdef(oid) LIKE 'FOREIGN KEY (body) REFERENCES tgt(c)%')")),
                (Shadow, Refused("foreign key `t_contents_fkey` uses")),
                (InPlace, Refused("foreign key `t_contents_fkey` uses")),
                (Split, Refused("foreign key `t_contents_fkey` uses")),
                (Merge, Refused("foreign key `t_contents_fkey` uses")),
                (Drop, Dropped("t_contents_fkey", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'f')")),
            ],
        },
        Case {
            object: "unique constraint",
            setup: "ALTER TABLE t ADD CONSTRAINT t_contents_key UNIQUE (contents);",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u' AND pg_get_constraintdef(oid) = 'UNIQUE (body)')")),
                (Shadow, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND conname = 't_contents_key' AND pg_get_constraintdef(oid) = 'UNIQUE (contents)') AND (SELECT format_type(atttypid, atttypmod) = 'character varying(50)' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents')")),
                (InPlace, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND conname = 't_contents_key' AND pg_get_constraintdef(oid) = 'UNIQUE (contents)')")),
                (Split, Dropped("t_contents_key", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u')")),
                (Merge, Dropped("t_contents_key", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u')")),
                (Drop, Dropped("t_contents_key", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u')")),
            ],
        },
        Case {
            object: "exclusion constraint",
            setup: "ALTER TABLE t ADD CONSTRAINT t_contents_excl EXCLUDE USING btree (contents WITH =);",
            since: 13,
            expect: vec![
                (Rename, Refused("exclusion constraint `t_contents_excl`")),
                (Shadow, Refused("exclusion constraint `t_contents_excl`")),
                (InPlace, Refused("exclusion constraint `t_contents_excl`")),
                (Split, Dropped("t_contents_excl", NO_INDEX_LEFT)),
                (Merge, Dropped("t_contents_excl", NO_INDEX_LEFT)),
                (Drop, Dropped("t_contents_excl", NO_INDEX_LEFT)),
            ],
        },
        Case {
            object: "check constraint",
            setup: "ALTER TABLE t ADD CONSTRAINT t_contents_short CHECK (length(contents) < 90);",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c' AND convalidated AND pg_get_constraintdef(oid) LIKE '%length((body)::text) < 90%')")),
                (Shadow, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND conname = 't_contents_short' AND convalidated AND pg_get_constraintdef(oid) LIKE '%contents%')")),
                (InPlace, Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND conname = 't_contents_short' AND convalidated)")),
                (Split, Dropped("t_contents_short", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c')")),
                (Merge, Dropped("t_contents_short", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c')")),
                (Drop, Dropped("t_contents_short", "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c')")),
            ],
        },
        Case {
            object: "indexes: partial, expression, covering, multi-column, opclass and ordering",
            setup: "CREATE INDEX t_partial ON t (other) WHERE contents <> '';
                    CREATE INDEX t_lower ON t (lower(contents));
                    CREATE INDEX t_covering ON t (other) INCLUDE (contents);
                    CREATE INDEX t_multi ON t (contents, other);
                    CREATE INDEX t_pattern ON t (contents varchar_pattern_ops DESC NULLS LAST) WITH (fillfactor = 70);",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT count(*) = 5 AND bool_and(indisvalid) AND bool_or(pg_get_indexdef(indexrelid) LIKE '%(body varchar_pattern_ops DESC NULLS LAST) WITH (fillfactor=''70'')%') FROM pg_index WHERE indrelid = 't'::regclass AND pg_get_indexdef(indexrelid) LIKE '%body%' AND pg_get_indexdef(indexrelid) NOT LIKE '%contents%'")),
                (Shadow, Done("SELECT count(*) = 5 AND bool_and(i.indisvalid) AND bool_or(pg_get_indexdef(i.indexrelid) LIKE '%(contents varchar_pattern_ops DESC NULLS LAST)%') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 't'::regclass AND c.relname IN ('t_partial', 't_lower', 't_covering', 't_multi', 't_pattern')")),
                (InPlace, Done("SELECT count(*) = 5 AND bool_and(i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 't'::regclass AND c.relname IN ('t_partial', 't_lower', 't_covering', 't_multi', 't_pattern')")),
                (Split, Dropped("t_pattern", NO_INDEX_LEFT)),
                (Merge, Dropped("t_pattern", NO_INDEX_LEFT)),
                (Drop, Dropped("t_pattern", NO_INDEX_LEFT)),
            ],
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn triggers_policies_rules_and_functions() {
    const NOOP: &str =
        "CREATE FUNCTION t_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;";
    const TRIMMED: &str = "WITH i AS (INSERT INTO t (id, contents) VALUES (100, '  y  ') RETURNING contents) SELECT (SELECT contents FROM i) = 'y'";
    matrix(vec![
        Case {
            object: "the application's BEFORE trigger that writes the column",
            setup: "CREATE FUNCTION t_norm() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.contents := trim(NEW.contents); RETURN NEW; END $$;
                    CREATE TRIGGER t_norm BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_norm();",
            since: 13,
            expect: vec![
                (Rename, Refused("t_norm() (called by trigger t_norm) names `contents` in its source")),
                (Shadow, Done(TRIMMED)),
                (InPlace, Done(TRIMMED)),
                (Split, Refused("t_norm() (called by trigger t_norm) names `contents` in its source")),
                (Merge, Refused("t_norm() (called by trigger t_norm) names `contents` in its source")),
                (Drop, Refused("t_norm() (called by trigger t_norm) names `contents` in its source")),
            ],
        },
        Case {
            object: "trigger UPDATE OF the column",
            setup: cat(NOOP, "CREATE TRIGGER t_of BEFORE UPDATE OF contents ON t FOR EACH ROW EXECUTE FUNCTION t_noop();"),
            since: 13,
            expect: all(Refused("trigger `t_of` names `contents`")),
        },
        Case {
            object: "trigger WHEN naming the column",
            setup: cat(NOOP, "CREATE TRIGGER t_when BEFORE UPDATE ON t FOR EACH ROW WHEN (NEW.contents IS DISTINCT FROM OLD.contents) EXECUTE FUNCTION t_noop();"),
            since: 13,
            expect: all(Refused("trigger `t_when` names `contents`")),
        },
        Case {
            object: "row-level security policy",
            setup: "ALTER TABLE t ENABLE ROW LEVEL SECURITY;
                    CREATE POLICY t_visible ON t USING (contents <> 'secret');",
            since: 13,
            expect: all(Refused("policy t_visible uses `contents`")),
        },
        Case {
            object: "rule",
            setup: "CREATE TABLE t_log (c text);
                    CREATE RULE t_audit AS ON DELETE TO t DO ALSO INSERT INTO t_log VALUES (OLD.contents);",
            since: 13,
            expect: all(Refused("rule t_audit uses `contents`")),
        },
        Case {
            object: "function with a BEGIN ATOMIC body",
            setup: "CREATE FUNCTION t_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(contents) FROM t; END;",
            since: 14,
            expect: all(Refused("function t_count (a BEGIN ATOMIC body) uses `contents`")),
        },
    ])
    .await;
}

/// Two setup fragments as one (leaked: a test's lifetime).
fn cat(a: &str, b: &str) -> &'static str {
    Box::leak(format!("{a}\n{b}").into_boxed_str())
}

/// An UPDATE and a DELETE work (a published table without a replica identity refuses
/// them), and the replica identity is an index whose definition matches `like`.
macro_rules! identity_check {
    ($like:literal) => {
        concat!(
            "WITH u AS (UPDATE t SET n = n + 1 WHERE id = 1 RETURNING 1), d AS (DELETE FROM t WHERE id = -1 RETURNING 1) ",
            "SELECT (SELECT count(*) FROM u) = 1 AND (SELECT count(*) FROM d) = 0 AND EXISTS (SELECT 1 FROM pg_index ",
            "WHERE indrelid = 't'::regclass AND indisreplident AND pg_get_indexdef(indexrelid) LIKE '",
            $like,
            "')"
        )
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publications_and_replica_identity() {
    const PUBLISHED: &str = "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 't_pub' AND tablename = 't')";
    const FULL: &str = "WITH u AS (UPDATE t SET n = n + 1 WHERE id = 1 RETURNING 1) SELECT (SELECT count(*) FROM u) = 1 AND (SELECT relreplident = 'f' FROM pg_class WHERE oid = 't'::regclass)";
    matrix(vec![
        Case {
            object: "publication of the table",
            setup: "CREATE PUBLICATION t_pub FOR TABLE t;",
            since: 13,
            expect: all(Done(PUBLISHED)),
        },
        Case {
            object: "publication column list",
            setup: "CREATE PUBLICATION t_cols FOR TABLE t (id, contents);",
            since: 15,
            expect: all(Refused("publication t_cols publishes `contents`")),
        },
        Case {
            object: "publication row filter",
            setup: "CREATE PUBLICATION t_filtered FOR TABLE t WHERE (contents <> '');",
            since: 15,
            expect: all(Refused("publication t_filtered publishes `contents`")),
        },
        Case {
            object: "REPLICA IDENTITY FULL",
            setup: "ALTER TABLE t REPLICA IDENTITY FULL; CREATE PUBLICATION t_pub FOR TABLE t;",
            since: 13,
            expect: all(Done(FULL)),
        },
        Case {
            object: "REPLICA IDENTITY USING INDEX on the column",
            setup: "CREATE UNIQUE INDEX t_contents_ri ON t (contents);
                    ALTER TABLE t REPLICA IDENTITY USING INDEX t_contents_ri;
                    CREATE PUBLICATION t_pub FOR TABLE t;",
            since: 13,
            expect: vec![
                (Rename, Done(identity_check!("%USING btree (body)"))),
                (Shadow, Done(identity_check!("CREATE UNIQUE INDEX t_contents_ri ON public.t USING btree (contents)"))),
                (InPlace, Done(identity_check!("CREATE UNIQUE INDEX t_contents_ri ON public.t USING btree (contents)"))),
                (Split, Refused("is the table's REPLICA IDENTITY")),
                (Merge, Refused("is the table's REPLICA IDENTITY")),
                (Drop, Refused("is the table's REPLICA IDENTITY")),
            ],
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_columns_defaults_domains_and_enums() {
    const DEFAULT_ON_BODY: &str = "WITH i AS (INSERT INTO t (id) VALUES (100) RETURNING body) SELECT length((SELECT body FROM i)) = 32";
    const DEFAULT_ON_CONTENTS: &str = "WITH i AS (INSERT INTO t (id) VALUES (100) RETURNING contents) SELECT length((SELECT contents FROM i)) = 32";
    matrix(vec![
        Case {
            object: "generated column",
            setup: "ALTER TABLE t ADD COLUMN len int GENERATED ALWAYS AS (length(contents)) STORED;",
            since: 13,
            expect: all(Refused("generated column `len` is computed from `contents`")),
        },
        Case {
            object: "default that calls a function",
            setup: "ALTER TABLE t ALTER COLUMN contents SET DEFAULT md5(random()::text);",
            since: 13,
            expect: vec![
                (Rename, Done(DEFAULT_ON_BODY)),
                (Shadow, Done(DEFAULT_ON_CONTENTS)),
                (InPlace, Done(DEFAULT_ON_CONTENTS)),
                (Split, Dropped("`contents`'s default md5(", "SELECT true")),
                (Merge, Dropped("`contents`'s default md5(", "SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
        Case {
            object: "domain with NOT NULL",
            setup: "CREATE DOMAIN t_nn AS varchar(100) NOT NULL;
                    ALTER TABLE t ALTER COLUMN contents TYPE t_nn;",
            since: 13,
            expect: vec![
                (Rename, Refused("a domain that refuses NULL")),
                (Shadow, Done("SELECT true")),
                (InPlace, Done("SELECT true")),
                (Split, Done("SELECT true")),
                (Merge, Done("SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
        Case {
            object: "domain with a CHECK",
            setup: "CREATE DOMAIN t_ck AS varchar(100) CHECK (VALUE <> 'forbidden');
                    ALTER TABLE t ALTER COLUMN contents TYPE t_ck;",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT format_type(atttypid, atttypmod) = 't_ck' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'body'")),
                (Shadow, Done("SELECT true")),
                (InPlace, Done("SELECT true")),
                (Split, Done("SELECT true")),
                (Merge, Done("SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
        Case {
            object: "enum",
            setup: "DO $$ BEGIN
                      EXECUTE 'CREATE TYPE t_label AS ENUM (''x'', ' || (SELECT string_agg(quote_literal('c' || g), ', ') FROM generate_series(1, 20) g) || ')';
                    END $$;
                    ALTER TABLE t ALTER COLUMN contents DROP DEFAULT,
                                  ALTER COLUMN contents TYPE t_label USING contents::t_label,
                                  ALTER COLUMN contents SET DEFAULT 'x';",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT format_type(atttypid, atttypmod) = 't_label' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'body'")),
                (Shadow, Done("SELECT true")),
                (InPlace, Done("SELECT true")),
                (Split, Done("SELECT true")),
                (Merge, Done("SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn comments_grants_statistics_and_storage() {
    const ROLE: &str = "DO $$ BEGIN CREATE ROLE compat_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";
    matrix(vec![
        Case {
            object: "column comment",
            setup: "COMMENT ON COLUMN t.contents IS 'what the user wrote';",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT col_description('t'::regclass, attnum) = 'what the user wrote' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'body'")),
                (Shadow, Done("SELECT col_description('t'::regclass, attnum) = 'what the user wrote' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents'")),
                (InPlace, Done("SELECT col_description('t'::regclass, attnum) = 'what the user wrote' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents'")),
                (Split, Dropped("`contents`'s comment", "SELECT true")),
                (Merge, Dropped("`contents`'s comment", "SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
        Case {
            object: "table comment",
            setup: "COMMENT ON TABLE t IS 'what users wrote';",
            since: 13,
            expect: all(Done("SELECT obj_description('t'::regclass, 'pg_class') = 'what users wrote'")),
        },
        Case {
            object: "column grants",
            setup: cat(ROLE, "GRANT SELECT (contents), UPDATE (contents) ON t TO compat_reader;"),
            since: 13,
            expect: vec![
                (Rename, Done("SELECT has_column_privilege('compat_reader', 't', 'body', 'SELECT') AND has_column_privilege('compat_reader', 't', 'body', 'UPDATE')")),
                (Shadow, Done("SELECT has_column_privilege('compat_reader', 't', 'contents', 'SELECT') AND has_column_privilege('compat_reader', 't', 'contents', 'UPDATE')")),
                (InPlace, Done("SELECT has_column_privilege('compat_reader', 't', 'contents', 'SELECT') AND has_column_privilege('compat_reader', 't', 'contents', 'UPDATE')")),
                (Split, Dropped("`contents`'s column grants", "SELECT true")),
                (Merge, Dropped("`contents`'s column grants", "SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
        Case {
            object: "table grants",
            setup: cat(ROLE, "GRANT SELECT, INSERT ON t TO compat_reader;"),
            since: 13,
            expect: all(Done("SELECT has_table_privilege('compat_reader', 't', 'SELECT') AND has_table_privilege('compat_reader', 't', 'INSERT')")),
        },
        Case {
            object: "extended statistics",
            setup: "CREATE STATISTICS t_stats (ndistinct) ON contents, other FROM t;",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT EXISTS (SELECT 1 FROM pg_statistic_ext WHERE stxname = 't_stats_body' AND stxkind = '{d}' AND stxkeys::int2[] @> ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'body')])")),
                (Shadow, Done("SELECT EXISTS (SELECT 1 FROM pg_statistic_ext WHERE stxname = 't_stats' AND stxkind = '{d}' AND stxkeys::int2[] @> ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents')])")),
                (InPlace, Done("SELECT EXISTS (SELECT 1 FROM pg_statistic_ext WHERE stxname = 't_stats')")),
                (Split, Dropped("statistics t_stats", "SELECT NOT EXISTS (SELECT 1 FROM pg_statistic_ext)")),
                (Merge, Dropped("statistics t_stats", "SELECT NOT EXISTS (SELECT 1 FROM pg_statistic_ext)")),
                (Drop, Dropped("statistics object t_stats", "SELECT NOT EXISTS (SELECT 1 FROM pg_statistic_ext)")),
            ],
        },
        Case {
            object: "statistics target and storage",
            setup: "ALTER TABLE t ALTER COLUMN contents SET STATISTICS 500, ALTER COLUMN contents SET STORAGE EXTERNAL;",
            since: 13,
            expect: vec![
                (Rename, Done("SELECT attstattarget = 500 AND attstorage = 'e' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'body'")),
                (Shadow, Done("SELECT attstattarget = 500 AND attstorage = 'e' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents'")),
                (InPlace, Done("SELECT attstattarget = 500 AND attstorage = 'e' FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contents'")),
                (Split, Dropped("`contents`'s statistics target, storage", "SELECT true")),
                (Merge, Dropped("`contents`'s statistics target, storage", "SELECT true")),
                (Drop, Done("SELECT true")),
            ],
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlogged_inheritance_and_partitions() {
    matrix(vec![
        Case {
            object: "unlogged table",
            setup: "ALTER TABLE t SET UNLOGGED;",
            since: 13,
            expect: all(Done("SELECT relpersistence = 'u' FROM pg_class WHERE oid = 't'::regclass")),
        },
        Case {
            object: "inheritance children",
            setup: "CREATE TABLE t_child (extra int) INHERITS (t);
                    INSERT INTO t_child (id, contents) VALUES (1000, 'child');",
            since: 13,
            expect: vec![
                (Rename, Refused("has inheritance children (`t_child`)")),
                (Shadow, Refused("has inheritance children (`t_child`)")),
                (InPlace, Done("SELECT format_type(atttypid, atttypmod) = 'character varying(200)' FROM pg_attribute WHERE attrelid = 't_child'::regclass AND attname = 'contents'")),
                (Split, Refused("has inheritance children (`t_child`)")),
                (Merge, Refused("has inheritance children (`t_child`)")),
                (Drop, Done("SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 't_child'::regclass AND attname = 'contents' AND NOT attisdropped)")),
            ],
        },
        Case {
            object: "inheritance child (the column comes from a parent)",
            setup: "CREATE TABLE t_parent (contents varchar(100));
                    ALTER TABLE t INHERIT t_parent;",
            since: 13,
            expect: all(Refused("is inherited from `t_parent`")),
        },
        Case {
            object: "partition (the column comes from the partitioned table)",
            setup: "CREATE TABLE tp (id bigint NOT NULL, contents varchar(100) NOT NULL DEFAULT 'x', other text, n int) PARTITION BY RANGE (id);
                    ALTER TABLE tp ATTACH PARTITION t FOR VALUES FROM (0) TO (1000);",
            since: 13,
            expect: all(Refused("is inherited from `tp`")),
        },
    ])
    .await;
}
