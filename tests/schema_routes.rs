//! The routes pgphase takes around schema features, end to end under application
//! traffic (the lifecycle of tests/lifecycle: rollbacks to the exact schema, every
//! gate, zero failed queries): a published table whose REPLICA IDENTITY is an index on
//! the renamed column, and declaratively partitioned tables (indexes built partition by
//! partition, then attached to the parent index; a column renamed across partitions).

mod common;
mod lifecycle;

use common::cells::{run_all, Cell, Expect};
use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use std::time::Duration;

fn rename(table: &str, from: &str, to: &str) -> pgphase::plan::PlanFile {
    plan_from(
        &format!(
            "settings: {{ lock_timeout: 200ms, backfill: {{ batch_size: 300, target_batch_time: 0s }} }}\nchanges:\n  - rename_column: {{ table: {table}, from: {from}, to: {to} }}\n"
        ),
        &format!("rename-{table}-{from}"),
    )
}

/// `REPLICA IDENTITY USING INDEX` on the renamed column of a published table: the copy
/// of the index becomes the replica identity before contract drops the original, so
/// every UPDATE and DELETE keeps working (they fail on a published table without one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_keeps_the_replica_identity_of_a_published_table() {
    let setup = "
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, visits int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX accounts_email_key ON accounts (email);
ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_email_key;
CREATE PUBLICATION accounts_pub FOR TABLE accounts;
INSERT INTO accounts SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
";
    // each version and client inserts its own ids, and deletes the row it inserted last
    let app = |column: &'static str, base: u64| {
        sql(move |c, i| {
            let id = 1 + (i * 13 + c as u64 * 101) % 2000;
            let mine = base + c as u64 * 100_000_000 + i;
            match i % 4 {
                0 => format!("UPDATE accounts SET visits = visits + 1 WHERE id = {id}"),
                1 => format!(
                    "INSERT INTO accounts (id, {column}) VALUES ({mine}, '{column}{mine}@example.com')"
                ),
                2 => format!("DELETE FROM accounts WHERE id = {}", mine - 1),
                _ => format!("SELECT {column} FROM accounts WHERE id = {id}"),
            }
        })
    };
    let r = lifecycle(Scenario {
        plan: rename("accounts", "email", "login"),
        setup: setup.into(),
        tables: vec!["accounts".into()],
        old: app("email", 1_000_000_000),
        new: app("login", 2_000_000_000),
        clients: 2,
        stage: Duration::from_millis(300),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "accounts").await;
    let t = cat.tables.values().next().unwrap();
    assert_eq!(t.replica_identity, "i");
    assert_eq!(t.replica_identity_index(), Some("accounts_login_key"));
    r.client
        .batch_execute(
            "UPDATE accounts SET visits = 0 WHERE id = 1; DELETE FROM accounts WHERE id = 2",
        )
        .await
        .unwrap();
}

const PARTITIONED: &str = "
CREATE TABLE events (
  id bigint NOT NULL,
  region text NOT NULL,
  payload text NOT NULL,
  score int NOT NULL DEFAULT 0,
  note text,
  PRIMARY KEY (id, region)
) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
CREATE INDEX events_payload_idx ON events (payload);
ALTER TABLE events ADD CONSTRAINT events_payload_not_empty CHECK (length(payload) > 0);
INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'p' || g FROM generate_series(1, 2000) g;
";

/// `base`: where this version's inserted ids start (each client has its own range).
fn events_app(column: &'static str, base: u64) -> lifecycle::ClientSql {
    sql(move |c, i| {
        let region = if i % 2 == 0 { "eu" } else { "us" };
        match i % 3 {
            0 => format!(
                "INSERT INTO events (id, region, {column}) VALUES ({}, '{region}', '{column} {c} {i}')",
                base + c as u64 * 100_000_000 + i
            ),
            1 => format!(
                "UPDATE events SET {column} = {column} || '.', score = score + 1 WHERE id = {} AND region = '{region}'",
                1 + (i * 7 + c as u64) % 2000
            ),
            _ => format!("SELECT id FROM events WHERE {column} = 'p{}'", 1 + i % 2000),
        }
    })
}

/// `add_index` on a partitioned table: PostgreSQL cannot build one concurrently, so
/// each partition's index is built concurrently, then the parent index is created ON
/// ONLY and each one attached (valid with the last); the undo drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_index_on_a_partitioned_table_partition_by_partition() {
    let plan = plan_from(
        "settings: { lock_timeout: 200ms }\nchanges:\n  - add_index: { table: events, name: events_score_idx, columns: [score, id] }\n",
        "events-score-idx",
    );
    let r = lifecycle(Scenario {
        plan,
        setup: PARTITIONED.into(),
        tables: vec!["events".into(), "events_eu".into(), "events_us".into()],
        old: events_app("payload", 1_000_000_000),
        new: events_app("payload", 2_000_000_000),
        clients: 2,
        stage: Duration::from_millis(500),
        role: None,
    })
    .await;
    r.assert_clean();
    let valid: Vec<(String, bool)> = r
        .client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE c.relname LIKE '%events_score_idx' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        valid,
        [
            ("events_eu_events_score_idx".to_string(), true),
            ("events_score_idx".to_string(), true),
            ("events_us_events_score_idx".to_string(), true)
        ]
    );
}

/// `rename_column` on a partitioned table: the sync triggers reach every partition
/// (row triggers on a partitioned table are cloned to its partitions), the index on
/// the column is rebuilt partition by partition, its CHECK and NOT NULL carried over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_column_of_a_partitioned_table() {
    let r = lifecycle(Scenario {
        plan: rename("events", "payload", "body"),
        setup: PARTITIONED.into(),
        tables: vec!["events".into(), "events_eu".into(), "events_us".into()],
        old: events_app("payload", 1_000_000_000),
        new: events_app("body", 2_000_000_000),
        clients: 2,
        stage: Duration::from_millis(300),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "events").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("payload").is_none());
    assert!(t.column("body").is_some_and(|c| c.not_null));
    assert!(
        t.indexes
            .iter()
            .any(|i| i.name == "events_body_idx" && i.valid && i.key_parts == ["body"]),
        "{:?}",
        t.indexes
    );
    assert!(
        t.constraints
            .iter()
            .any(|c| c.kind == "c" && c.definition.contains("length(body)")),
        "{:?}",
        t.constraints
    );
    let (part, _) = schema_of(&r.client, "events_eu").await;
    let p = part.tables.values().next().unwrap();
    assert!(
        p.indexes.iter().any(|i| i.key_parts == ["body"] && i.valid),
        "{:?}",
        p.indexes
    );
    let bad: i64 = r
        .client
        .query_one("SELECT count(*) FROM events WHERE body IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
}

/// Every change kind on a partitioned table and on its partitions, on each
/// PostgreSQL version: what PostgreSQL allows works (indexes and unique constraints
/// partition by partition, a partitioned index dropped in one short statement, NOT
/// VALID foreign keys on 18), what it does not is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_on_partitioned_tables_and_partitions() {
    use Expect::{Done, Refused};
    let probe = TestDb::new().await;
    let major = major_version(&probe.client().await).await;
    let setup = format!(
        "{PARTITIONED}
         CREATE TABLE scores (v int PRIMARY KEY); INSERT INTO scores VALUES (0);
         CREATE TYPE mood AS ENUM ('ok');"
    );
    let cell = |what: &str, changes: &str, expect: Expect| Cell {
        what: what.to_string(),
        since: 13,
        setup: setup.clone(),
        changes: changes.to_string(),
        tables: vec!["events".into(), "events_eu".into(), "events_us".into()],
        expect,
    };
    run_all(vec![
        cell(
            "add_foreign_key",
            "  - add_foreign_key: { table: events, name: events_score_fkey, columns: [score], references: { table: scores, columns: [v] } }",
            if major >= 18 {
                Done("SELECT convalidated FROM pg_constraint WHERE conname = 'events_score_fkey' AND conrelid = 'events'::regclass")
            } else {
                Refused("cannot add a foreign key NOT VALID to a partitioned table")
            },
        ),
        cell(
            "add_column with references",
            "  - add_column: { table: events, column: { name: best, type: int, references: { table: scores, column: v } } }",
            if major >= 18 {
                Done("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'f')")
            } else {
                Refused("cannot add a foreign key NOT VALID to a partitioned table")
            },
        ),
        cell(
            "add_unique without the partition key",
            "  - add_unique: { table: events, name: events_payload_key, columns: [payload] }",
            Refused("is partitioned by (region)"),
        ),
        cell(
            "add_unique with the partition key",
            "  - add_unique: { table: events, name: events_payload_key, columns: [payload, region] }",
            Done("SELECT count(*) = 3 FROM pg_constraint WHERE contype = 'u' AND conrelid IN ('events'::regclass, 'events_eu'::regclass, 'events_us'::regclass)"),
        ),
        cell(
            "add_column unique",
            "  - add_column: { table: events, column: { name: code, type: text, unique: true } }",
            Refused("cannot be enforced across partitions"),
        ),
        cell(
            "add_column",
            "  - add_column: { table: events, column: { name: feeling, type: mood, default: \"'ok'\", nullable: false } }",
            Done("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'feeling'"),
        ),
        cell(
            "add_column on a partition",
            "  - add_column: { table: events_eu, column: { name: extra, type: int } }",
            Refused("is a partition of `events`"),
        ),
        cell(
            "drop_index of the partitioned index",
            "  - drop_index: { name: events_payload_idx }",
            Done("SELECT to_regclass('events_payload_idx') IS NULL AND to_regclass('events_eu_payload_idx') IS NULL"),
        ),
        cell(
            "drop_index of a partition's index",
            "  - drop_index: { name: events_eu_payload_idx }",
            Refused("belongs to a partitioned index"),
        ),
        cell(
            "set_not_null",
            "  - set_not_null: { table: events, column: note, backfill: \"'n'\" }",
            Done("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'events_us'::regclass AND attname = 'note'"),
        ),
        cell(
            "drop_not_null",
            "  - drop_not_null: { table: events, column: score }",
            Done("SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'events_us'::regclass AND attname = 'score'"),
        ),
        cell(
            "set_default and drop_default",
            "  - set_default: { table: events, column: note, default: \"'-'\" }\n  - drop_default: { table: events, column: score }",
            Done("SELECT NOT atthasdef FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'score'"),
        ),
        cell(
            "add_check",
            "  - add_check: { table: events, name: events_score_positive, check: \"score >= 0\" }",
            Done("SELECT bool_and(convalidated) AND count(*) = 3 FROM pg_constraint WHERE conname = 'events_score_positive'"),
        ),
        cell(
            "drop_constraint",
            "  - drop_constraint: { table: events, name: events_payload_not_empty }",
            Done("SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'events_payload_not_empty')"),
        ),
        cell(
            "drop_constraint of a partition's inherited constraint",
            "  - drop_constraint: { table: events_eu, name: events_payload_not_empty }",
            Refused("is inherited from a parent"),
        ),
        cell(
            "change_type (shadow route)",
            "  - change_type: { table: events, column: payload, type: varchar(50) }",
            Done("SELECT format_type(atttypid, atttypmod) = 'character varying(50)' FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'payload'"),
        ),
        cell(
            "change_type (in place)",
            "  - change_type: { table: events, column: note, type: varchar }",
            Done("SELECT format_type(atttypid, atttypmod) = 'character varying' FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'note'"),
        ),
        cell(
            "rename_column of a partition's column",
            "  - rename_column: { table: events_eu, from: payload, to: body }",
            Refused("is inherited from `events`"),
        ),
        cell(
            "split_column",
            "  - split_column: { table: events, from: note, into: [ { name: n1, type: text, using: note }, { name: n2, type: int, using: length(note) } ], reverse: n1 }",
            Done("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'events_us'::regclass AND attname = 'n2')"),
        ),
        cell(
            "merge_columns",
            "  - merge_columns: { table: events, from: [payload, note], into: { name: combined, type: text, using: \"payload || '|' || coalesce(note, '')\" }, reverse: { payload: \"split_part(combined, '|', 1)\", note: \"nullif(split_part(combined, '|', 2), '')\" } }",
            Done("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'combined') AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'payload' AND NOT attisdropped)"),
        ),
        cell(
            "drop_column",
            "  - drop_column: { table: events, column: payload }",
            Done("SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'events_eu'::regclass AND attname = 'payload' AND NOT attisdropped)"),
        ),
        cell(
            "rename_table",
            "  - rename_table: { from: events, to: happenings }",
            Done("SELECT to_regclass('happenings') IS NOT NULL AND to_regclass('events') IS NULL"),
        ),
        cell(
            "drop_table",
            "  - drop_table: { name: events }",
            Done("SELECT to_regclass('events') IS NULL"),
        ),
    ])
    .await;
}
