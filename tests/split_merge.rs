//! split_column and merge_columns end to end on a real Postgres, under an old-app
//! workload that reads and writes only the old columns and a new-app workload that
//! reads and writes only the new ones. Every row written by either is checked at the
//! end: no lost rows, and the new columns hold what the last writer meant.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use pgphase::run;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROWS: u64 = 3000;

fn example(file: &str) -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    let mut file = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    file.plan.settings.lock_timeout = Duration::from_millis(200);
    file.plan.settings.backfill.batch_size = 300;
    file.plan.settings.backfill.target_batch_time = Duration::ZERO;
    file
}

// ---------------------------------------------------------------- split_column

/// `author_name` is "<Word><client> N<n>" where `contents` is "<word> <client> <n>".
const SPLIT_SETUP: &str = "
CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL);
INSERT INTO posts SELECT g, 'post ' || g FROM generate_series(1, 50) g;
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL REFERENCES posts (id),
  contents text NOT NULL,
  author_name text
);
CREATE INDEX comments_author_name_idx ON comments (author_name);
INSERT INTO comments (post_id, contents, author_name)
  SELECT 1 + g % 50, 'seed 0 ' || g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'Seed0 N' || g END
    FROM generate_series(1, 3000) g;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_column_lifecycle_under_old_and_new_traffic() {
    let (old_inserts, new_inserts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (oi, ni) = (old_inserts.clone(), new_inserts.clone());
    let r = lifecycle(Scenario {
        plan: example("split-comments-author-name.yaml"),
        setup: SPLIT_SETUP.into(),
        tables: vec!["comments".into(), "posts".into()],
        old: sql(move |c, i| match i % 3 {
            0 => {
                oi.fetch_add(1, Ordering::Relaxed);
                format!("INSERT INTO comments (post_id, contents, author_name) VALUES ({}, 'old {c} {i}', 'Old{c} N{i}')", 1 + i % 50)
            }
            1 => format!(
                "UPDATE comments SET contents = 'old {c} {i}', author_name = 'Old{c} N{i}' WHERE id = {} RETURNING id, author_name",
                1 + (i * 7 + c as u64) % ROWS
            ),
            _ => format!("SELECT author_name FROM comments WHERE id = {}", 1 + i % ROWS),
        }),
        new: sql(move |c, i| match i % 3 {
            0 => {
                ni.fetch_add(1, Ordering::Relaxed);
                format!("INSERT INTO comments (post_id, contents, author_first_name, author_last_name) VALUES ({}, 'new {c} {i}', 'New{c}', 'N{i}')", 1 + i % 50)
            }
            1 => format!(
                "UPDATE comments SET contents = 'new {c} {i}', author_first_name = 'New{c}', author_last_name = 'N{i}' WHERE id = {} RETURNING author_first_name, author_last_name",
                1 + (i * 11 + c as u64) % ROWS
            ),
            _ => format!(
                "SELECT author_first_name, author_last_name FROM comments WHERE id = {}",
                1 + i % ROWS
            ),
        }),
        clients: 2,
        stage: Duration::from_millis(500),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 2, "{:#?}", r.outcomes);
    eprintln!(
        "split_column lifecycle: old app {} ok / {} failed, new app {} ok / {} failed; inserts old {} new {}",
        r.old_ok(),
        r.old.failed.load(Ordering::Relaxed),
        r.new_ok(),
        r.new.failed.load(Ordering::Relaxed),
        old_inserts.load(Ordering::Relaxed),
        new_inserts.load(Ordering::Relaxed)
    );
    let row = r
        .client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE author_first_name || ' ' || author_last_name
                      IS DISTINCT FROM initcap(split_part(contents, ' ', 1)) || split_part(contents, ' ', 2) || ' N' || split_part(contents, ' ', 3)
                      AND NOT (contents LIKE 'seed %' AND split_part(contents, ' ', 3)::int % 10 = 0)),
                    count(*) FILTER (WHERE contents LIKE 'seed %' AND split_part(contents, ' ', 3)::int % 10 = 0
                      AND (author_first_name IS NOT NULL OR author_last_name IS NOT NULL))
               FROM comments",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as u64,
        ROWS + old_inserts.load(Ordering::Relaxed) + new_inserts.load(Ordering::Relaxed),
        "rows lost or duplicated"
    );
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "names that differ from what was written"
    );
    assert_eq!(row.get::<_, i64>(2), 0, "NULL names must stay NULL");
    let (cat, functions) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("author_name").is_none());
    assert!(t.triggers.is_empty(), "{:?}", t.triggers);
    assert!(
        functions.iter().all(|f| !f.starts_with("sync_")),
        "{functions:?}"
    );
}

// ---------------------------------------------------------------- merge_columns

/// `published_at` = 2024-01-01 + (n % 300) days + (n % 1440) minutes where `title` is
/// "<word> <client> <n>"; both old columns NOT NULL (the new app never writes them).
const MERGE_SETUP: &str = "
CREATE TABLE posts (
  id bigserial PRIMARY KEY,
  title text NOT NULL,
  published_date date NOT NULL,
  published_time time NOT NULL DEFAULT '12:00'
);
INSERT INTO posts (title, published_date, published_time)
  SELECT 'seed 0 ' || g, date '2024-01-01' + g % 300, time '00:00' + (g % 1440) * interval '1 minute'
    FROM generate_series(1, 3000) g;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_columns_lifecycle_under_old_and_new_traffic() {
    let (old_inserts, new_inserts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (oi, ni) = (old_inserts.clone(), new_inserts.clone());
    let r = lifecycle(Scenario {
        plan: example("merge-posts-published-at.yaml"),
        setup: MERGE_SETUP.into(),
        tables: vec!["posts".into()],
        old: sql(move |c, i| match i % 3 {
            0 => {
                oi.fetch_add(1, Ordering::Relaxed);
                format!("INSERT INTO posts (title, published_date, published_time) VALUES ('old {c} {i}', date '2024-01-01' + {}, time '00:00' + {} * interval '1 minute')", i % 300, i % 1440)
            }
            1 => format!(
                "UPDATE posts SET title = 'old {c} {i}', published_date = date '2024-01-01' + {}, published_time = time '00:00' + {} * interval '1 minute' WHERE id = {} RETURNING published_date, published_time",
                i % 300,
                i % 1440,
                1 + (i * 7 + c as u64) % ROWS
            ),
            _ => format!("SELECT published_date, published_time FROM posts WHERE id = {}", 1 + i % ROWS),
        }),
        new: sql(move |c, i| match i % 3 {
            0 => {
                ni.fetch_add(1, Ordering::Relaxed);
                format!("INSERT INTO posts (title, published_at) VALUES ('new {c} {i}', timestamp '2024-01-01' + {} * interval '1 day' + {} * interval '1 minute')", i % 300, i % 1440)
            }
            1 => format!(
                "UPDATE posts SET title = 'new {c} {i}', published_at = timestamp '2024-01-01' + {} * interval '1 day' + {} * interval '1 minute' WHERE id = {} RETURNING id, published_at",
                i % 300,
                i % 1440,
                1 + (i * 11 + c as u64) % ROWS
            ),
            _ => format!("SELECT published_at FROM posts WHERE id = {}", 1 + i % ROWS),
        }),
        clients: 2,
        stage: Duration::from_millis(500),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 2, "{:#?}", r.outcomes);
    eprintln!(
        "merge_columns lifecycle: old app {} ok / {} failed, new app {} ok / {} failed; inserts old {} new {}",
        r.old_ok(),
        r.old.failed.load(Ordering::Relaxed),
        r.new_ok(),
        r.new.failed.load(Ordering::Relaxed),
        old_inserts.load(Ordering::Relaxed),
        new_inserts.load(Ordering::Relaxed)
    );
    let row = r
        .client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE published_at IS DISTINCT FROM timestamp '2024-01-01'
                      + (split_part(title, ' ', 3)::int % 300) * interval '1 day'
                      + (split_part(title, ' ', 3)::int % 1440) * interval '1 minute')
               FROM posts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as u64,
        ROWS + old_inserts.load(Ordering::Relaxed) + new_inserts.load(Ordering::Relaxed),
        "rows lost or duplicated"
    );
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "timestamps that differ from what was written"
    );
    let (cat, _) = schema_of(&r.client, "posts").await;
    let t = cat.tables.values().next().unwrap();
    let at = t.column("published_at").unwrap();
    assert!(
        at.not_null,
        "NOT NULL carried over: both old columns were NOT NULL"
    );
    assert!(t.column("published_date").is_none() && t.column("published_time").is_none());
    assert!(t
        .constraints
        .iter()
        .all(|c| !c.name.starts_with("pgphase_")));
}

/// Refused before anything runs, with the reason and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_preconditions() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SPLIT_SETUP).await.unwrap();
    client
        .batch_execute(
            "CREATE VIEW authors AS SELECT DISTINCT author_name FROM comments;
             CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER contents_audit BEFORE UPDATE OF contents, post_id ON comments
               FOR EACH ROW EXECUTE FUNCTION noop();",
        )
        .await
        .unwrap();
    for (yaml, needle) in [
        ("  - split_column: { table: comments, from: author_name, into: [ { name: a, type: text, using: author_name }, { name: b, type: text, using: author_name } ], reverse: a }", "view `authors` uses"),
        ("  - split_column: { table: comments, from: post_id, into: [ { name: a, type: bigint, using: post_id }, { name: contents, type: text, using: 'x' } ], reverse: a }", "already has a column `contents`"),
        ("  - merge_columns: { table: comments, from: [id, contents], into: { name: x, type: text, using: contents }, reverse: { id: '1', contents: x } }", "part of the key"),
        ("  - merge_columns: { table: comments, from: [post_id, contents], into: { name: x, type: text, using: contents }, reverse: { post_id: '1', contents: x } }", "foreign key `comments_post_id_fkey`"),
        ("  - merge_columns: { table: comments, from: [author_name, contents], into: { name: x, type: text, using: contents }, reverse: { author_name: x, contents: x } }", "trigger `contents_audit` names `contents`"),
        ("  - merge_columns: { table: posts, from: [id, title], into: { name: x, type: text, using: title }, reverse: { id: '1', title: x } }", "references `posts.id`"),
    ] {
        let file = plan_from(&format!("changes:\n{yaml}\n"), "bad-derived");
        let err = run::start(&db.session(), &file).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // an expression that does not type-check fails in its probe, before any trigger
    client.batch_execute("DROP VIEW authors").await.unwrap();
    let file = plan_from(
        "settings: { lock_timeout: 200ms }\nchanges:\n  - split_column: { table: comments, from: author_name, into: [ { name: a, type: text, using: author_name }, { name: b, type: integer, using: author_name } ], reverse: a }\n",
        "bad-expr",
    );
    let err = run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot cast type text to integer") || err.contains("invalid input"),
        "{err}"
    );
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'comments'::regclass AND tgname LIKE 'zz_pgphase%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
}

/// Rollback at the second gate (the new application has been writing only the new
/// columns): the old column holds what it wrote, through `reverse`; the schema is the
/// original one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_rollback_at_the_second_gate_keeps_new_writes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SPLIT_SETUP).await.unwrap();
    let before = (
        schema_of(&client, "comments").await,
        schema_of(&client, "posts").await,
    );
    let file = example("split-comments-author-name.yaml");
    let s = db.session();
    let name = file.plan.name.clone();
    run::start(&s, &file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    run::advance(&s, &name, "app@v1", Some(&file))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .batch_execute(
            "UPDATE comments SET author_first_name = 'Grace', author_last_name = 'Hopper' WHERE id = 1;
             UPDATE comments SET author_last_name = NULL WHERE id = 2;
             INSERT INTO comments (id, post_id, contents, author_first_name, author_last_name)
               VALUES (100001, 1, 'new', 'Alan', 'Turing');",
        )
        .await
        .unwrap();
    // back to the first gate, then (the application rolled back) the rest
    let out = run::rollback(&s, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(out, run::Outcome::RolledBackToGate { .. }),
        "{out:?}"
    );
    let out = run::rollback(&s, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, run::Outcome::RolledBack);
    let after = (
        schema_of(&client, "comments").await,
        schema_of(&client, "posts").await,
    );
    assert_eq!(
        before, after,
        "the rollback did not restore the exact original schema"
    );
    let rows = client
        .query(
            "SELECT author_name FROM comments WHERE id IN (1, 2, 100001) ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<Option<String>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        vec![
            Some("Grace Hopper".into()),
            Some("Seed0".into()),
            Some("Alan Turing".into())
        ]
    );
}
