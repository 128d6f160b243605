//! The compatibility matrix (docs/compatibility.md): every change kind that replaces or
//! drops a column — rename_column, change_type (shadow route and in place),
//! split_column, merge_columns, drop_column — against every object that can live
//! around that column, on a real server. Each cell either completes with the object
//! carried over (or left as it was, or dropped by design and said so in `plan`), or is
//! refused by `start` before anything runs, naming the object, with the catalog left
//! exactly as it was.

mod common;

use common::cells::{all_ok, run_all, Cell, Expect, Task};
use common::*;
use pgphase::run;

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

/// Every kind's cell of each case, on the base table.
async fn matrix(cases: Vec<Case>) {
    let mut list = Vec::new();
    for case in &cases {
        for (kind, expect) in &case.expect {
            list.push(cell(
                &format!("{} × {kind:?}", case.object),
                case.since,
                case.setup,
                kind.change(),
                *expect,
            ));
        }
    }
    run_all(list).await;
}

/// A cell on the base table plus `setup`.
fn cell(what: &str, since: i32, setup: &str, changes: &str, expect: Expect) -> Cell {
    Cell {
        what: what.to_string(),
        since,
        setup: format!("{BASE}{setup}"),
        changes: changes.to_string(),
        tables: ["t", "t_child", "tp", "r"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        expect,
    }
}

use Expect::{Done, Dropped, Refused};
use Kind::*;

const NO_INDEX_LEFT: &str = "SELECT count(*) = 1 FROM pg_index WHERE indrelid = 't'::regclass";

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
            // still published; `plan` says subscribers need the new columns first
            expect: vec![
                (Rename, Dropped("`t` is published (t_pub)", PUBLISHED)),
                (Shadow, Dropped("`t` is published (t_pub)", PUBLISHED)),
                (InPlace, Done(PUBLISHED)),
                (Split, Dropped("`t` is published (t_pub)", PUBLISHED)),
                (Merge, Dropped("`t` is published (t_pub)", PUBLISHED)),
                (Drop, Done(PUBLISHED)),
            ],
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
                (
                    Shadow,
                    Done(identity_check!(
                        "CREATE UNIQUE INDEX t_contents_ri ON public.t USING btree (contents)"
                    )),
                ),
                (
                    InPlace,
                    Done(identity_check!(
                        "CREATE UNIQUE INDEX t_contents_ri ON public.t USING btree (contents)"
                    )),
                ),
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
    const ROLE: &str =
        "DO $$ BEGIN CREATE ROLE compat_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";
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

/// Everything around `contents` that the kinds below must leave alone.
const AROUND: &str = "
CREATE TABLE tgt (c varchar(100) PRIMARY KEY);
INSERT INTO tgt SELECT 'c' || g FROM generate_series(1, 20) g;
INSERT INTO tgt VALUES ('x');
CREATE VIEW v AS SELECT id, contents FROM t;
CREATE MATERIALIZED VIEW mv AS SELECT id, contents FROM t;
ALTER TABLE t ADD CONSTRAINT t_contents_key UNIQUE (contents);
CREATE TABLE r (id int PRIMARY KEY, c varchar(100) REFERENCES t (contents));
ALTER TABLE t ADD CONSTRAINT t_contents_short CHECK (length(contents) < 90);
CREATE INDEX t_partial ON t (other) WHERE contents <> '';
CREATE INDEX t_lower ON t (lower(contents));
CREATE INDEX t_covering ON t (other) INCLUDE (contents);
CREATE INDEX t_multi ON t (contents, other);
CREATE FUNCTION t_norm() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.contents := trim(NEW.contents); RETURN NEW; END $$;
CREATE TRIGGER t_norm BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_norm();
CREATE TRIGGER t_of BEFORE UPDATE OF contents ON t FOR EACH ROW EXECUTE FUNCTION t_norm();
CREATE TRIGGER t_when BEFORE UPDATE ON t FOR EACH ROW WHEN (NEW.contents IS DISTINCT FROM OLD.contents) EXECUTE FUNCTION t_norm();
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY t_visible ON t USING (contents <> 'secret');
CREATE TABLE t_log (c text);
CREATE RULE t_audit AS ON DELETE TO t DO ALSO INSERT INTO t_log VALUES (OLD.contents);
CREATE UNIQUE INDEX t_contents_ri ON t (contents);
ALTER TABLE t REPLICA IDENTITY USING INDEX t_contents_ri;
CREATE PUBLICATION t_pub FOR TABLE t;
ALTER TABLE t ADD COLUMN len int GENERATED ALWAYS AS (length(contents)) STORED;
ALTER TABLE t ADD COLUMN hits serial;
ALTER TABLE t ALTER COLUMN contents SET DEFAULT md5(random()::text);
COMMENT ON COLUMN t.contents IS 'what the user wrote';
COMMENT ON TABLE t IS 'what users wrote';
DO $$ BEGIN CREATE ROLE compat_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT (contents) ON t TO compat_reader;
GRANT SELECT ON t TO compat_reader;
CREATE STATISTICS t_stats ON contents, other FROM t;
ALTER TABLE t ALTER COLUMN contents SET STATISTICS 500, ALTER COLUMN contents SET STORAGE EXTERNAL;
CREATE TYPE t_mood AS ENUM ('ok');
";

/// Dependents, column properties and table properties, by kind and name (the table's
/// name left out of descriptions, so rename_table compares too).
async fn around(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let (cat, _) = schema_of(client, table).await;
    let t = cat.tables.values().next().expect("the table");
    let mut out: Vec<String> = t
        .dependents
        .iter()
        .map(|d| format!("{} {} ({})", d.kind.as_str(), d.name, d.columns.join(", ")))
        .collect();
    for c in &t.columns {
        out.push(format!(
            "column {} {} not_null={} default={:?} comment={:?} grants={} target={:?} storage={:?}",
            c.name,
            c.type_sql,
            c.not_null,
            c.default,
            c.comment,
            c.grants.len(),
            c.statistics_target,
            c.storage
        ));
    }
    out.push(format!(
        "table persistence={} replica_identity={} comment={:?} publications={:?}",
        t.persistence, t.replica_identity, t.comment, t.publications
    ));
    out.sort();
    out
}

/// The change kinds that do not replace or drop a column, each on a table where
/// everything that can live around a column lives around `contents`: each completes,
/// and what lives around the column is exactly as before except the one object the
/// change adds or drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_kinds_leave_what_lives_around_the_column_alone() {
    // (change, what it adds to or removes from the list, as substrings)
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("  - add_index: { table: t, name: t_contents_n, columns: [contents, n] }", &["index t_contents_n"], &[]),
        ("  - add_unique: { table: t, name: t_contents_n_key, columns: [contents, n] }", &["index t_contents_n_key", "constraint t_contents_n_key"], &[]),
        // (on PostgreSQL 18 a NOT NULL is a constraint too)
        ("  - set_not_null: { table: t, column: other, backfill: \"'o'\" }", &["column other text not_null=true", "constraint t_other_not_null"], &["column other text not_null=false"]),
        ("  - drop_not_null: { table: t, column: hits }", &["column hits integer not_null=false"], &["column hits integer not_null=true", "constraint t_hits_not_null"]),
        ("  - set_default: { table: t, column: contents, default: \"'y'\" }", &["default=Some(\"'y'::character varying\")"], &["default=Some(\"md5"]),
        ("  - drop_default: { table: t, column: contents }", &["default=None comment=Some(\"what"], &["default=Some(\"md5"]),
        ("  - add_check: { table: t, name: t_contents_nonempty, check: \"contents <> ''\" }", &["constraint t_contents_nonempty"], &[]),
        ("  - add_foreign_key: { table: t, name: t_contents_tgt, columns: [contents], references: { table: tgt, columns: [c] } }", &["constraint t_contents_tgt"], &[]),
        ("  - drop_index: { name: t_multi }", &[], &["index t_multi"]),
        ("  - drop_constraint: { table: t, name: t_contents_short }", &[], &["constraint t_contents_short"]),
        ("  - add_column: { table: t, column: { name: mood, type: t_mood, default: \"'ok'\" } }", &["column mood"], &[]),
        ("  - create_table: { name: fresh, columns: [ { name: id, type: bigint, primary_key: true } ] }", &[], &[]),
        ("  - add_enum_value: { type: t_mood, value: great }", &[], &[]),
        ("  - sql: { expand: \"CREATE TABLE side (id int)\", rollback: \"DROP TABLE IF EXISTS side\" }", &[], &[]),
        ("  - rename_table: { from: t, to: t2 }", &[], &[]),
    ];
    let probe = TestDb::new().await;
    let major = major_version(&probe.client().await).await;
    let mut tasks: Vec<Task> = Vec::new();
    for (change, added, removed) in cases {
        // the table has row-level security: rename_table needs security_invoker views
        // (PostgreSQL 15+) and is refused before (tests/rename_table.rs)
        if change.contains("rename_table") && major < 15 {
            continue;
        }
        tasks.push(Box::pin(async move {
            let db = TestDb::new().await;
            let client = db.client().await;
            client
                .batch_execute(&format!("{BASE}{AROUND}"))
                .await
                .unwrap();
            let before = around(&client, "t").await;
            let file = plan_from(
                &format!("settings: {{ lock_timeout: 1s }}\nchanges:\n{change}\n"),
                "other",
            );
            match run_to_completion(&db.session(), &file).await {
                Ok(run::Outcome::Completed) => {}
                other => return Err(format!("{change}: did not complete: {other:?}")),
            }
            let table = if change.contains("rename_table") {
                "t2"
            } else {
                "t"
            };
            let after = around(&client, table).await;
            let gone: Vec<&String> = before.iter().filter(|b| !after.contains(b)).collect();
            let new: Vec<&String> = after.iter().filter(|a| !before.contains(a)).collect();
            let unexpected_gone: Vec<&&String> = gone
                .iter()
                .filter(|g| !removed.iter().any(|r| g.contains(r)))
                .collect();
            let unexpected_new: Vec<&&String> = new
                .iter()
                .filter(|n| !added.iter().any(|a| n.contains(a)))
                .collect();
            let missing =
                (!removed.is_empty() && gone.is_empty()) || (!added.is_empty() && new.is_empty());
            if !unexpected_gone.is_empty() || !unexpected_new.is_empty() || missing {
                return Err(format!("{change}:\n  gone: {gone:?}\n  new: {new:?}"));
            }
            Ok(())
        }));
    }
    all_ok(tasks).await;
}

/// Runs ad-hoc cells (what, since, setup, change, expect) on the base table.
async fn cells(list: Vec<(&'static str, i32, &'static str, &'static str, Expect)>) {
    run_all(
        list.into_iter()
            .map(|(what, since, setup, changes, expect)| cell(what, since, setup, changes, expect))
            .collect(),
    )
    .await;
}

/// `serial` (a sequence the column owns) and identity columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serial_and_identity_columns() {
    const SETUP: &str = "ALTER TABLE t ADD COLUMN hits serial, ADD COLUMN ident int GENERATED BY DEFAULT AS IDENTITY;";
    cells(vec![
        (
            "serial column renamed",
            13,
            SETUP,
            "  - rename_column: { table: t, from: hits, to: visits }",
            Done("WITH i AS (INSERT INTO t (id, contents) VALUES (100, 'new') RETURNING visits) SELECT (SELECT visits FROM i) = 21 AND pg_get_serial_sequence('t', 'visits') = 'public.t_hits_seq'"),
        ),
        (
            "serial column retyped",
            13,
            SETUP,
            "  - change_type: { table: t, column: hits, type: bigint }",
            Refused("sequence t_hits_seq is owned by `hits`"),
        ),
        (
            "serial column split",
            13,
            SETUP,
            "  - split_column: { table: t, from: hits, into: [ { name: h1, type: int, using: hits }, { name: h2, type: int, using: hits } ], reverse: h1 }",
            Refused("sequence t_hits_seq is owned by `hits`"),
        ),
        (
            "serial column dropped",
            13,
            SETUP,
            "  - drop_column: { table: t, column: hits }",
            Dropped("sequence t_hits_seq", "SELECT to_regclass('t_hits_seq') IS NULL"),
        ),
        (
            "identity column renamed",
            13,
            SETUP,
            "  - rename_column: { table: t, from: ident, to: ident2 }",
            Refused("is an identity or generated column"),
        ),
        (
            "identity column retyped",
            13,
            SETUP,
            "  - change_type: { table: t, column: ident, type: bigint }",
            Refused("is an identity or generated column"),
        ),
        (
            "identity column split",
            13,
            SETUP,
            "  - split_column: { table: t, from: ident, into: [ { name: i1, type: int, using: ident }, { name: i2, type: int, using: ident } ], reverse: i1 }",
            Refused("is an identity or generated column"),
        ),
        (
            "identity column dropped",
            13,
            SETUP,
            "  - drop_column: { table: t, column: ident }",
            Done("SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'ident' AND NOT attisdropped)"),
        ),
    ])
    .await;
}

/// drop_table: what belongs to the table goes with it; what lives elsewhere and uses
/// it (another table's policy or rule, a BEGIN ATOMIC function, a view, a foreign key)
/// would keep DROP TABLE from running at contract: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_table_and_what_uses_the_table() {
    const DROP: &str = "  - drop_table: { name: t }";
    cells(vec![
        (
            "another table's policy that reads it",
            13,
            "CREATE TABLE r (id int PRIMARY KEY);
             CREATE POLICY r_visible ON r USING (EXISTS (SELECT 1 FROM t WHERE t.id = r.id));",
            DROP,
            Refused("policy r_visible on table r uses `t`"),
        ),
        (
            "another table's rule that writes it",
            13,
            "CREATE TABLE r (id int PRIMARY KEY);
             CREATE RULE r_copy AS ON INSERT TO r DO ALSO INSERT INTO t (id, contents) VALUES (NEW.id, 'copy');",
            DROP,
            Refused("rule r_copy on table r uses `t`"),
        ),
        (
            "a BEGIN ATOMIC function that reads it",
            14,
            "CREATE FUNCTION t_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END;",
            DROP,
            Refused("function t_count() uses `t`"),
        ),
    ])
    .await;
    // what belongs to the table goes with it
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "{BASE}
             CREATE INDEX t_lower ON t (lower(contents));
             CREATE FUNCTION t_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER t_of BEFORE UPDATE OF contents ON t FOR EACH ROW EXECUTE FUNCTION t_noop();
             CREATE POLICY t_visible ON t USING (contents <> 'secret');
             CREATE STATISTICS t_stats ON contents, other FROM t;
             CREATE PUBLICATION t_pub FOR TABLE t;"
        ))
        .await
        .unwrap();
    let file = plan_from(&format!("changes:\n{DROP}\n"), "drop-t");
    let out = run_to_completion(&db.session(), &file).await;
    assert!(matches!(out, Ok(run::Outcome::Completed)), "{out:?}");
    let gone: bool = client
        .query_one(
            "SELECT to_regclass('t') IS NULL AND NOT EXISTS (SELECT 1 FROM pg_statistic_ext)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(gone);
}

/// Two active plans on one column undo each other's work (plan A renames `contents`,
/// plan B adds an index and a CHECK on it: A's contract would drop both silently):
/// `start` refuses the second, naming both plans; one on another column starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_active_plan_on_the_same_column_is_refused() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(BASE).await.unwrap();
    let s = db.session();
    let a = plan_from(
        "changes:\n  - rename_column: { table: t, from: contents, to: body }\n",
        "plan-a",
    );
    let out = run::start(&s, &a).await.unwrap();
    assert!(
        matches!(out, run::Outcome::AwaitingDeploy { .. }),
        "{out:?}"
    );
    let before = schema_of(&client, "t").await;
    let b = plan_from(
        "changes:\n  - add_index: { table: t, name: t_contents_idx, columns: [contents] }\n  - add_check: { table: t, name: t_contents_short, check: \"length(contents) < 90\" }\n",
        "plan-b",
    );
    let err = run::start(&s, &b).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), pgphase::error::exit::REFUSED, "{text}");
    for needle in [
        "plan `plan-b` touches",
        "`t.contents`",
        "`plan-a`",
        "awaiting_deploy",
        "depends_on",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(schema_of(&client, "t").await, before, "nothing ran");
    // ordered by depends_on: refused until plan-a completed
    let b_after = plan_from(
        "depends_on: [plan-a]\nchanges:\n  - add_index: { table: t, name: t_body_idx, columns: [body] }\n",
        "plan-b-after",
    );
    let err = run::start(&s, &b_after).await.unwrap_err().to_string();
    assert!(err.contains("depends on `plan-a`"), "{err}");
    // another column of the same table is fine
    let c = plan_from(
        "changes:\n  - add_index: { table: t, name: t_n_idx, columns: [n] }\n",
        "plan-c",
    );
    assert_eq!(run::start(&s, &c).await.unwrap(), run::Outcome::Completed);
    // once plan-a completed, the plan written on its new name starts
    run::advance(&s, "plan-a", "v1", Some(&a)).await.unwrap();
    let out = run::advance(&s, "plan-a", "v2", Some(&a)).await.unwrap();
    assert_eq!(out, run::Outcome::Completed);
    assert_eq!(
        run::start(&s, &b_after).await.unwrap(),
        run::Outcome::Completed
    );
}

/// Hand-written DDL between `start` and contract: an index and a CHECK on the column
/// the contract drops. Contract is refused before it begins (exit 3, nothing run,
/// naming both); once they are dropped, it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_is_refused_when_something_came_to_depend_on_the_dropped_column() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(BASE).await.unwrap();
    let s = db.session();
    let a = plan_from(
        "changes:\n  - rename_column: { table: t, from: contents, to: body }\n",
        "rename-contents",
    );
    run::start(&s, &a).await.unwrap();
    let out = run::advance(&s, "rename-contents", "v1", Some(&a))
        .await
        .unwrap();
    assert!(
        matches!(&out, run::Outcome::AwaitingDeploy { phase, .. } if phase == "switch_reads"),
        "{out:?}"
    );
    client
        .batch_execute(
            "CREATE INDEX t_contents_by_hand ON t (contents);
             ALTER TABLE t ADD CONSTRAINT t_by_hand CHECK (length(contents) < 99);",
        )
        .await
        .unwrap();
    let before = schema_of(&client, "t").await;
    let err = run::advance(&s, "rename-contents", "v2", Some(&a))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), pgphase::error::exit::REFUSED, "{text}");
    for needle in [
        "`t.contents`",
        "index t_contents_by_hand",
        "constraint t_by_hand on table t",
        "nothing was run",
        "phase rollback rename-contents",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(schema_of(&client, "t").await, before, "nothing ran");
    let status: String = client
        .query_one(
            "SELECT status FROM pgphase.plans WHERE name = 'rename-contents'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "awaiting_deploy");
    client
        .batch_execute("DROP INDEX t_contents_by_hand; ALTER TABLE t DROP CONSTRAINT t_by_hand;")
        .await
        .unwrap();
    let out = run::advance(&s, "rename-contents", "v2", Some(&a))
        .await
        .unwrap();
    assert_eq!(out, run::Outcome::Completed);
}

/// Changes within one plan: a later change sees what an earlier one creates (an
/// index and a check on rename_column's new name); a change that names a column
/// another replaces is refused, saying what to write. (Two changes that both change
/// one column are refused when the plan is read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_in_one_plan_see_each_other() {
    let e = pgphase::plan::parse(
        "changes:\n  - rename_column: { table: t, from: contents, to: body }\n  - set_default: { table: t, column: body, default: \"'y'\" }\n",
        "p.yaml",
        "p",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("column `body` of `t` is already changed by the change at line 2"),
        "{e}"
    );
    cells(vec![
        (
            "rename, then an index, a unique constraint and a check on the new name",
            13,
            "",
            "  - add_check: { table: t, name: t_body_short, check: \"length(body) < 99\" }
  - rename_column: { table: t, from: contents, to: body }
  - add_index: { table: t, name: t_body_n, columns: [body, n] }
  - add_unique: { table: t, name: t_body_key, columns: [body] }",
            Done("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = 't_body_n'::regclass) AND EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 't_body_short' AND convalidated) AND EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 't_body_key' AND contype = 'u')"),
        ),
        (
            "an index on the old name of a renamed column",
            13,
            "",
            "  - add_index: { table: t, name: t_contents_n, columns: [contents, n] }
  - rename_column: { table: t, from: contents, to: body }",
            Refused("`t.contents` is renamed to `body` by the rename_column at line 4 of this plan, so this add_index cannot use it (contract drops it, and what is built on it with it); name `body`"),
        ),
    ])
    .await;
}

/// A SQL_ASCII database whose text key holds bytes that are not UTF-8: the backfill's
/// keys travel as bytes in the database encoding, so every batch finds its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_ascii_keys_round_trip() {
    let db =
        TestDb::with_options("ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
            .await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE k (code text PRIMARY KEY, contents text NOT NULL);
             INSERT INTO k SELECT 'caf' || E'\\xe9' || E'\\xff' || g, 'v' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    let file = plan_from(
        "settings: { backfill: { batch_size: 37, target_batch_time: 0s } }\nchanges:\n  - rename_column: { table: k, from: contents, to: body }\n",
        "rename-k",
    );
    let out = run_to_completion(&db.session(), &file).await;
    assert!(matches!(out, Ok(run::Outcome::Completed)), "{out:?}");
    let ok: bool = client
        .query_one(
            "SELECT count(*) = 500 AND bool_and(body = 'v' || substr(code, 6)) AND bool_and(octet_length(code) > 5) FROM k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ok);
}

/// A table in a schema the database's search_path leaves out, names that need
/// quoting, and TOASTed values (96 kB each): every kind that replaces or drops a
/// column keeps every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quoted_names_outside_the_search_path_with_toasted_values() {
    const SETUP: &str = r#"
CREATE SCHEMA "App Data";
CREATE TABLE "App Data"."Odd ""Docs""" (id serial PRIMARY KEY, "Con tents" text NOT NULL DEFAULT '', other text, digest text);
CREATE INDEX "Odd prefix" ON "App Data"."Odd ""Docs""" (left("Con tents", 10));
INSERT INTO "App Data"."Odd ""Docs""" ("Con tents")
  SELECT (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 3000) i) FROM generate_series(1, 30) g;
UPDATE "App Data"."Odd ""Docs""" SET digest = md5("Con tents");
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = pg_catalog', current_database()); END $$;
"#;
    const TABLE: &str = r#""App Data"."Odd ""Docs""""#;
    let t = r#"table: '"App Data"."Odd ""Docs"""'"#;
    let list: Vec<(&str, String, &'static str)> = vec![
        (
            "rename_column",
            format!("  - rename_column: {{ {t}, from: Con tents, to: Bo dy }}"),
            r#"SELECT count(*) = 30 AND bool_and(pg_catalog.md5("Bo dy") = digest) FROM "App Data"."Odd ""Docs""""#,
        ),
        (
            "change_type (shadow)",
            format!("  - change_type: {{ {t}, column: Con tents, type: varchar(100000) }}"),
            r#"SELECT count(*) = 30 AND bool_and(pg_catalog.md5("Con tents") = digest) FROM "App Data"."Odd ""Docs""""#,
        ),
        (
            "change_type (in place)",
            format!("  - change_type: {{ {t}, column: Con tents, type: varchar }}"),
            r#"SELECT count(*) = 30 AND bool_and(pg_catalog.md5("Con tents") = digest) FROM "App Data"."Odd ""Docs""""#,
        ),
        (
            "split_column",
            format!(
                r#"  - split_column: {{ {t}, from: Con tents, into: [ {{ name: c 1, type: text, using: '"Con tents"' }}, {{ name: c 2, type: int, using: 'length("Con tents")' }} ], reverse: '"c 1"' }}"#
            ),
            r#"SELECT count(*) = 30 AND bool_and(pg_catalog.md5("c 1") = digest AND "c 2" = 96000) FROM "App Data"."Odd ""Docs""""#,
        ),
        (
            "merge_columns",
            format!(
                r#"  - merge_columns: {{ {t}, from: [Con tents, other], into: {{ name: w, type: text, using: '"Con tents" || ''|'' || coalesce(other, '''')' }}, reverse: {{ Con tents: 'split_part(w, ''|'', 1)', other: 'nullif(split_part(w, ''|'', 2), '''')' }} }}"#
            ),
            r#"SELECT count(*) = 30 AND bool_and(pg_catalog.md5(pg_catalog.split_part(w, '|', 1)) = digest) FROM "App Data"."Odd ""Docs""""#,
        ),
        (
            "drop_column",
            format!("  - drop_column: {{ {t}, column: Con tents }}"),
            r#"SELECT count(*) = 30 FROM "App Data"."Odd ""Docs""""#,
        ),
    ];
    run_all(
        list.into_iter()
            .map(|(what, changes, check)| Cell {
                tables: vec![TABLE.into()],
                ..cell(what, 13, SETUP, &changes, Done(check))
            })
            .collect(),
    )
    .await;
}

/// Another session's temporary table is not visible to pgphase: refused as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_are_refused_as_missing() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TEMP TABLE scratch (id int PRIMARY KEY, contents text)")
        .await
        .unwrap();
    for table in ["scratch", "pg_temp.scratch"] {
        let file = plan_from(
            &format!(
                "changes:\n  - rename_column: {{ table: {table}, from: contents, to: body }}\n"
            ),
            "rename-scratch",
        );
        let err = run::start(&db.session(), &file)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist in the database"), "{err}");
    }
}

/// What the other kinds refuse around a column: dropping the replica identity's
/// index, its unique constraint or its NOT NULL; a column of a domain that refuses NULL
/// without a constant default; retyping into such a domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_other_kinds_refuse() {
    const IDENTITY: &str = "CREATE UNIQUE INDEX t_contents_ri ON t (contents);
        ALTER TABLE t REPLICA IDENTITY USING INDEX t_contents_ri;
        ALTER TABLE t ADD CONSTRAINT t_n_key UNIQUE (id, contents);";
    const NN: &str = "CREATE DOMAIN t_nn AS text NOT NULL;";
    cells(vec![
        ("drop_index of the replica identity", 13, IDENTITY, "  - drop_index: { name: t_contents_ri }", Refused("is the REPLICA IDENTITY of `t`")),
        ("drop_not_null of a replica identity column", 13, IDENTITY, "  - drop_not_null: { table: t, column: contents }", Refused("the REPLICA IDENTITY of `t`, which PostgreSQL keeps NOT NULL")),
        (
            "drop_constraint of the replica identity's unique constraint",
            13,
            "ALTER TABLE t ADD CONSTRAINT t_contents_key UNIQUE (contents);
             ALTER TABLE t REPLICA IDENTITY USING INDEX t_contents_key;",
            "  - drop_constraint: { table: t, name: t_contents_key }",
            Refused("is the REPLICA IDENTITY of `t`"),
        ),
        ("add_column of a domain refusing NULL", 13, NN, "  - add_column: { table: t, column: { name: note, type: t_nn, default: \"md5(random()::text)\" } }", Refused("type t_nn refuses NULL")),
        ("add_column of a domain refusing NULL, constant default", 13, NN, "  - add_column: { table: t, column: { name: note, type: t_nn, default: \"'-'\" } }", Done("SELECT count(*) = 20 FROM t WHERE note = '-'")),
        ("change_type into a domain refusing NULL", 13, NN, "  - change_type: { table: t, column: other, type: t_nn, using: \"coalesce(other, '')\" }", Refused("type t_nn refuses NULL")),
        ("split_column into a domain refusing NULL", 13, NN, "  - split_column: { table: t, from: other, into: [ { name: o1, type: t_nn, using: other }, { name: o2, type: text, using: other } ], reverse: o1 }", Refused("type t_nn refuses NULL")),
    ])
    .await;
}

/// A table without a primary key or unique NOT NULL key: the kinds that backfill
/// (page by a key) refuse; a change in place and a drop need none. A key column
/// changes in place (binary-coercible) only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_and_tables_without_one() {
    const NOKEY: &str = "CREATE TABLE nokey (a text, contents varchar(100), other text);
        INSERT INTO nokey SELECT 'a' || g, 'c' || g, 'o' || g FROM generate_series(1, 20) g;";
    const NO_KEY: Expect =
        Refused("has no primary key or unique NOT NULL key to page the backfill by");
    cells(vec![
        ("rename_column", 13, NOKEY, "  - rename_column: { table: nokey, from: contents, to: body }", NO_KEY),
        ("change_type (shadow)", 13, NOKEY, "  - change_type: { table: nokey, column: contents, type: varchar(50) }", NO_KEY),
        ("change_type (in place)", 13, NOKEY, "  - change_type: { table: nokey, column: contents, type: varchar(200) }", Done("SELECT count(*) = 20 FROM nokey")),
        ("split_column", 13, NOKEY, "  - split_column: { table: nokey, from: contents, into: [ { name: c1, type: text, using: contents }, { name: c2, type: text, using: contents } ], reverse: c1 }", NO_KEY),
        ("merge_columns", 13, NOKEY, "  - merge_columns: { table: nokey, from: [contents, other], into: { name: w, type: text, using: contents }, reverse: { contents: w, other: w } }", NO_KEY),
        ("drop_column", 13, NOKEY, "  - drop_column: { table: nokey, column: contents }", Done("SELECT count(*) = 20 FROM nokey")),
        (
            "change_type in place of a primary key column",
            13,
            "CREATE TABLE vk (code varchar(10) PRIMARY KEY, contents text); INSERT INTO vk VALUES ('a', 'b');",
            "  - change_type: { table: vk, column: code, type: varchar(20) }",
            Done("SELECT format_type(atttypid, atttypmod) = 'character varying(20)' FROM pg_attribute WHERE attrelid = 'vk'::regclass AND attname = 'code'"),
        ),
        (
            "change_type of a primary key column by the shadow route",
            13,
            "CREATE TABLE vk (code varchar(10) PRIMARY KEY, contents text); INSERT INTO vk VALUES ('a', 'b');",
            "  - change_type: { table: vk, column: code, type: varchar(5) }",
            Refused("is part of the key of `vk`"),
        ),
    ])
    .await;
}

/// The other kinds on a table with inheritance children (what PostgreSQL recurses to
/// the children, it does) and on a child (what it allows only on the parent is
/// refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_kinds_on_inheritance_parents_and_children() {
    const FAMILY: &str = "CREATE TABLE t_child (extra int) INHERITS (t);
        INSERT INTO t_child (id, contents, other) VALUES (1000, 'child', 'o');
        ALTER TABLE t ADD CONSTRAINT t_n_positive CHECK (n > 0) NOT VALID;";
    const CHILD_NOT_NULL: &str = "SELECT attnotnull FROM pg_attribute WHERE attrelid = 't_child'::regclass AND attname = 'other'";
    cells(vec![
        ("add_index on the parent", 13, FAMILY, "  - add_index: { table: t, name: t_other_idx, columns: [other] }", Done("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_other_idx'::regclass")),
        ("add_column on the parent", 13, FAMILY, "  - add_column: { table: t, column: { name: note, type: text, default: \"'-'\", nullable: false } }", Done("SELECT count(*) = 1 FROM t_child WHERE note = '-'")),
        ("set_not_null on the parent", 13, FAMILY, "  - set_not_null: { table: t, column: other, backfill: \"'o'\" }", Done(CHILD_NOT_NULL)),
        ("add_check on the parent", 13, FAMILY, "  - add_check: { table: t, name: t_other_short, check: \"length(other) < 50\" }", Done("SELECT convalidated FROM pg_constraint WHERE conname = 't_other_short' AND conrelid = 't_child'::regclass")),
        ("set_default and drop_default on the child", 13, FAMILY, "  - set_default: { table: t_child, column: other, default: \"'c'\" }\n  - drop_default: { table: t_child, column: contents }", Done("SELECT true")),
        ("add_index on the child", 13, FAMILY, "  - add_index: { table: t_child, name: t_child_other_idx, columns: [other] }", Done("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_child_other_idx'::regclass")),
        ("drop_not_null of an inherited NOT NULL on the child", 13, FAMILY, "  - drop_not_null: { table: t_child, column: contents }", Refused("is inherited from `t`, whose NOT NULL it may carry")),
        ("drop_constraint of an inherited check on the child", 13, FAMILY, "  - drop_constraint: { table: t_child, name: t_n_positive }", Refused("is inherited from a parent of `t_child`")),
    ])
    .await;
}
