//! set_not_null, add_check and add_foreign_key end to end on a real Postgres, under an
//! old-app and a new-app workload: rollback to the exact original schema, then every
//! gate to completion, zero failed application queries.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL);
INSERT INTO posts SELECT g, 'post ' || g FROM generate_series(1, 50) g;
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL,
  contents text NOT NULL,
  author_name text
);
INSERT INTO comments (post_id, contents, author_name)
  SELECT 1 + g % 50, 'c' || g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'user ' || g END
    FROM generate_series(1, 4000) g;
";

fn example(file: &str) -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    let mut f = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    f.plan.settings.lock_timeout = Duration::from_millis(200);
    f.plan.settings.backfill.batch_size = 300;
    f.plan.settings.backfill.target_batch_time = Duration::ZERO;
    f
}

fn scenario(file: &str, old_author: &'static str) -> Scenario {
    Scenario {
        plan: example(file),
        setup: SETUP.into(),
        tables: vec!["comments".into(), "posts".into()],
        // the old version leaves author_name NULL (when old_author is NULL)
        old: sql(move |c, i| {
            match i % 3 {
            0 => format!(
                "INSERT INTO comments (post_id, contents, author_name) VALUES ({}, 'old {c} {i}', {old_author})",
                1 + i % 50
            ),
            1 => format!("UPDATE comments SET contents = 'old edit {i}' WHERE id = {}", 1 + (i * 7 + c as u64) % 4000),
            _ => format!("SELECT id, post_id, contents, author_name FROM comments WHERE post_id = {} LIMIT 5", 1 + i % 50),
        }
        }),
        new: sql(|c, i| {
            match i % 3 {
            0 => format!(
                "INSERT INTO comments (post_id, contents, author_name) VALUES ({}, 'new {c} {i}', 'user {c}')",
                1 + i % 50
            ),
            1 => format!("UPDATE comments SET author_name = 'renamed {i}' WHERE id = {}", 1 + (i * 11 + c as u64) % 4000),
            _ => format!("SELECT id, author_name FROM comments WHERE id = {}", 1 + i % 4000),
        }
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_not_null_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(scenario("set-comments-author-not-null.yaml", "NULL")).await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("author_name").unwrap().not_null);
    assert!(
        t.constraints
            .iter()
            .all(|c| !c.name.starts_with("pgphase_")),
        "{:#?}",
        t.constraints
    );
    let filled: i64 = r
        .client
        .query_one(
            "SELECT count(*) FROM comments WHERE author_name = 'anonymous'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(filled >= 1000, "the NULL rows were filled: {filled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_check_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(scenario(
        "add-check-comments-contents-length.yaml",
        "'someone'",
    ))
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(
        t.constraints
            .iter()
            .any(|c| c.name == "comments_contents_length" && c.kind == "c" && c.validated),
        "{:#?}",
        t.constraints
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_foreign_key_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(scenario("add-foreign-key-comments-post.yaml", "'someone'")).await;
    r.assert_clean();
    assert_eq!(
        r.gates, 0,
        "stopped by a failpoint on the VALIDATE step for the rollback"
    );
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(
        t.constraints
            .iter()
            .any(|c| c.name == "comments_post_id_fkey" && c.kind == "f" && c.validated),
        "{:#?}",
        t.constraints
    );
    assert!(t
        .indexes
        .iter()
        .any(|i| i.name == "comments_post_id_fkey_idx" && i.valid));
    // the foreign key works: deleting a post deletes its comments
    r.client
        .batch_execute("DELETE FROM posts WHERE id = 7")
        .await
        .unwrap();
    let left: i64 = r
        .client
        .query_one("SELECT count(*) FROM comments WHERE post_id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Refused before anything runs: the referenced key does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_foreign_key_refused_without_a_unique_target() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let file = plan_from(
        "changes:\n  - add_foreign_key: { table: comments, name: fk, columns: [post_id], references: { table: posts, columns: [title] } }\n",
        "bad-fk",
    );
    let err = pgphase::run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-plans/bad-fk.yaml:2:")
            && err.contains("no primary key or unique constraint on (title)"),
        "{err}"
    );
}

const WITH_CONSTRAINTS: &str = "
ALTER TABLE comments ADD CONSTRAINT comments_contents_not_empty CHECK (contents <> '');
ALTER TABLE comments ADD CONSTRAINT comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id);
ALTER TABLE comments ADD CONSTRAINT comments_contents_key UNIQUE (contents);
";

fn drop_three() -> pgphase::plan::PlanFile {
    plan_from(
        "name: drop-three
settings: { lock_timeout: 200ms }
changes:
  - drop_constraint: { table: comments, name: comments_contents_not_empty }
  - drop_constraint: { table: comments, name: comments_post_fk }
  - drop_constraint: { table: comments, name: comments_contents_key }
",
        "drop-three",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_constraint_lifecycle_under_old_and_new_traffic() {
    let mut sc = scenario("add-check-comments-contents-length.yaml", "'someone'");
    sc.plan = drop_three();
    sc.setup = format!("{SETUP}{WITH_CONSTRAINTS}");
    // both versions write unique, non-empty contents with existing posts
    let app = |v: &'static str| {
        sql(move |c, i| match i % 3 {
            0 => format!(
                "INSERT INTO comments (post_id, contents) VALUES ({}, '{v} {c} {i}')",
                1 + i % 50
            ),
            1 => format!(
                "UPDATE comments SET contents = '{v} edit {c} {i}' WHERE id = {}",
                1 + (i * 7 + c as u64) % 4000
            ),
            _ => format!(
                "SELECT * FROM comments WHERE post_id = {} LIMIT 5",
                1 + i % 50
            ),
        })
    };
    sc.old = app("old");
    sc.new = app("new");
    let r = lifecycle(sc).await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(
        // PostgreSQL 18 also lists the columns' NOT NULL as constraints (kind `n`)
        t.constraints.iter().all(|c| c.kind == "p" || c.kind == "n"),
        "{:#?}",
        t.constraints
    );
    assert_eq!(t.indexes.len(), 1, "{:#?}", t.indexes);
}

/// Stopped after two of the three drops: the undo re-adds the check (NOT VALID, then
/// validated) and the foreign key, and the schema is exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_constraint_rollback_re_adds_them_exactly() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(&format!("{SETUP}{WITH_CONSTRAINTS}"))
        .await
        .unwrap();
    let before = schema_of(&client, "comments").await;
    let plan = drop_three();
    let mut s = db.session();
    pgphase::run::start(&s, &plan).await.unwrap();
    s.failpoint = Some("switch_reads.3".into());
    pgphase::run::advance(&s, "drop-three", "app@v2", Some(&plan))
        .await
        .unwrap_err();
    s.failpoint = None;
    let mid = schema_of(&client, "comments").await;
    let kinds: Vec<&str> = mid
        .0
        .tables
        .values()
        .next()
        .unwrap()
        .constraints
        .iter()
        .map(|c| c.kind.as_str())
        .filter(|k| *k != "n") // PostgreSQL 18 lists NOT NULL too
        .collect();
    assert_eq!(kinds.len(), 2, "pkey and unique left: {kinds:?}");
    // back to the deploy gate first (the constraints are back), then the rest
    assert!(matches!(
        pgphase::run::rollback(&s, "drop-three").await.unwrap(),
        pgphase::run::Outcome::RolledBackToGate { .. }
    ));
    assert_eq!(
        pgphase::run::rollback(&s, "drop-three").await.unwrap(),
        pgphase::run::Outcome::RolledBack
    );
    assert_eq!(schema_of(&client, "comments").await, before);
}
