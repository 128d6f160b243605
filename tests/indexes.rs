//! add_index and drop_index end to end on a real Postgres, under application traffic:
//! CONCURRENTLY builds and drops, rollback to the exact original schema, and an invalid
//! index left by a failed build rebuilt on resume.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, ClientSql, Scenario};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL,
  contents text NOT NULL,
  legacy_score integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_contents_idx ON comments (contents);
CREATE INDEX comments_created_idx ON comments (created_at DESC) WHERE legacy_score > 0;
INSERT INTO comments (post_id, contents, legacy_score)
  SELECT 1 + g % 50, 'c' || g, g % 3 FROM generate_series(1, 5000) g;
";

/// The same application before and after: an index changes no query's result.
fn app(version: &'static str) -> ClientSql {
    sql(move |c, i| match i % 3 {
        0 => format!(
            "INSERT INTO comments (post_id, contents) VALUES ({}, '{version} {c} {i}')",
            1 + i % 50
        ),
        1 => format!(
            "UPDATE comments SET legacy_score = legacy_score + 1 WHERE id = {}",
            1 + (i * 7 + c as u64) % 5000
        ),
        _ => format!(
            "SELECT id FROM comments WHERE post_id = {} ORDER BY created_at DESC LIMIT 10",
            1 + i % 50
        ),
    })
}

fn example(file: &str) -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_index_lifecycle_under_traffic() {
    let r = lifecycle(Scenario {
        plan: example("add-index-comments-post-created.yaml"),
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: app("old"),
        new: app("new"),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    let idx = t
        .indexes
        .iter()
        .find(|i| i.name == "comments_post_created_idx")
        .expect("built");
    assert!(
        idx.valid && idx.key_parts == ["post_id", "created_at"],
        "{idx:?}"
    );
    let idx = t
        .indexes
        .iter()
        .find(|i| i.name == "comments_recent_unscored_idx")
        .expect("built");
    assert!(
        idx.valid && idx.predicate.as_deref() == Some("(legacy_score = 0)"),
        "{idx:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_index_lifecycle_under_traffic() {
    let plan = plan_from(
        "name: drop-two-indexes\nchanges:\n  - drop_index: { name: comments_contents_idx }\n  - drop_index: { name: public.comments_created_idx }\n",
        "drop-two-indexes",
    );
    let r = lifecycle(Scenario {
        plan,
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: app("old"),
        new: app("new"),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "comments").await;
    let names: Vec<&str> = cat
        .tables
        .values()
        .next()
        .unwrap()
        .indexes
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["comments_pkey"]);
}

/// A unique build that fails on duplicates removes its invalid index (which would still
/// enforce uniqueness); an invalid index left by an interrupted build (here, one built by
/// hand that failed) is dropped and rebuilt once the duplicates are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_interrupted_unique_builds() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let plan = plan_from(
        "name: unique-contents\nchanges:\n  - add_index: { table: comments, name: comments_contents_key, columns: [contents], unique: true }\n",
        "unique-contents",
    );
    client
        .batch_execute("UPDATE comments SET contents = 'dup' WHERE id IN (10, 20)")
        .await
        .unwrap();
    let s = db.session();
    let err = pgphase::run::start(&s, &plan)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phase backfill") && err.contains("the invalid index was removed"),
        "{err}"
    );
    let index_state = || async {
        client
            .query_opt(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'comments_contents_key'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, bool>(0))
    };
    assert_eq!(index_state().await, None);

    // an interrupted build: an invalid index of that name is left behind
    client
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY comments_contents_key ON comments (contents)",
        )
        .await
        .unwrap_err();
    assert_eq!(index_state().await, Some(false));
    client
        .batch_execute("UPDATE comments SET contents = 'dup 2' WHERE id = 20")
        .await
        .unwrap();
    assert_eq!(
        pgphase::run::start(&s, &plan).await.unwrap(),
        pgphase::run::Outcome::Completed
    );
    assert_eq!(index_state().await, Some(true));
}
