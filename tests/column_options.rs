//! drop_not_null, set_default, drop_default and add_unique end to end on a real Postgres,
//! under an old-app and a new-app workload: rollback to the exact original schema, then
//! every gate to completion, zero failed application queries.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, ClientSql, Scenario};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE posts (id bigserial PRIMARY KEY, title text NOT NULL);
INSERT INTO posts (title) SELECT 'post ' || g FROM generate_series(1, 500) g;
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL,
  contents text NOT NULL,
  legacy_score integer NOT NULL,
  author_name text,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO comments (post_id, contents, legacy_score)
  SELECT 1 + g % 50, 'c' || g, g % 5 FROM generate_series(1, 3000) g;
";

fn scenario(file: &str, old: ClientSql, new: ClientSql) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    let mut plan = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    plan.plan.settings.lock_timeout = Duration::from_millis(200);
    Scenario {
        plan,
        setup: SETUP.into(),
        tables: vec!["comments".into(), "posts".into()],
        old,
        new,
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    }
}

fn reads(i: u64) -> String {
    format!(
        "SELECT id, legacy_score, author_name, created_at FROM comments WHERE id = {}",
        1 + i % 3000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_not_null_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(scenario(
        "drop-comments-legacy-score-not-null.yaml",
        sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (post_id, contents, legacy_score) VALUES (1, 'old {c} {i}', 1)"),
            _ => reads(i),
        }),
        // the new version's readers tolerate NULL (COALESCE); it may stop writing the
        // column only once the plan completed
        sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (post_id, contents, legacy_score) VALUES (1, 'new {c} {i}', 2)"),
            _ => format!("SELECT id, COALESCE(legacy_score, 0) FROM comments WHERE id = {}", 1 + i % 3000),
        }),
    ))
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comments").await;
    assert!(
        !cat.tables
            .values()
            .next()
            .unwrap()
            .column("legacy_score")
            .unwrap()
            .not_null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_default_lifecycle_under_traffic() {
    let app = || {
        sql(|c, i| {
            match i % 2 {
            0 => format!("INSERT INTO comments (post_id, contents, legacy_score) VALUES (1, 'app {c} {i}', 1) RETURNING id, author_name"),
            _ => reads(i),
        }
        })
    };
    let r = lifecycle(scenario("set-default-comments-author.yaml", app(), app())).await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "comments").await;
    let col = cat
        .tables
        .values()
        .next()
        .unwrap()
        .column("author_name")
        .cloned()
        .unwrap();
    assert_eq!(col.default.as_deref(), Some("'anonymous'::text"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_default_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(scenario(
        "drop-default-comments-created-at.yaml",
        // the old version relies on the default
        sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (post_id, contents, legacy_score) VALUES (1, 'old {c} {i}', 1) RETURNING id, created_at"),
            _ => reads(i),
        }),
        sql(|c, i| match i % 2 {
            0 => format!(
                "INSERT INTO comments (post_id, contents, legacy_score, created_at) VALUES (1, 'new {c} {i}', 1, clock_timestamp()) RETURNING id, created_at"
            ),
            _ => reads(i),
        }),
    ))
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comments").await;
    assert_eq!(
        cat.tables
            .values()
            .next()
            .unwrap()
            .column("created_at")
            .unwrap()
            .default,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_unique_lifecycle_under_traffic() {
    let app = |v: &'static str| {
        sql(move |c, i| match i % 2 {
            0 => format!("INSERT INTO posts (title) VALUES ('{v} {c} {i}')"),
            _ => format!("SELECT id FROM posts WHERE title = 'post {}'", 1 + i % 500),
        })
    };
    let r = lifecycle(scenario(
        "add-unique-posts-title.yaml",
        app("old"),
        app("new"),
    ))
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "posts").await;
    let t = cat.tables.values().next().unwrap();
    assert!(
        t.constraints
            .iter()
            .any(|c| c.name == "posts_title_key" && c.kind == "u"),
        "{:#?}",
        t.constraints
    );
    let dup = r
        .client
        .batch_execute("INSERT INTO posts (title) VALUES ('post 1')")
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}
