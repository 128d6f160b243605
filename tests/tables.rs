//! create_table and drop_table end to end on a real Postgres under an old-app and a
//! new-app workload.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE comments (id bigserial PRIMARY KEY, contents text NOT NULL);
INSERT INTO comments (contents) SELECT 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE comment_drafts (id bigserial PRIMARY KEY, comment_id bigint REFERENCES comments (id), body text);
INSERT INTO comment_drafts (comment_id, body) SELECT g, 'draft' FROM generate_series(1, 100) g;
";

fn plan(file: &str) -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    let mut plan = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    plan.plan.settings.lock_timeout = Duration::from_millis(200);
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_lifecycle_under_traffic() {
    let r = lifecycle(Scenario {
        plan: plan("create-table-comment-reactions.yaml"),
        setup: SETUP.into(),
        tables: vec!["comments".into(), "comment_reactions".into()],
        old: sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (contents) VALUES ('old {c} {i}')"),
            _ => format!(
                "SELECT id, contents FROM comments WHERE id = {}",
                1 + i % 1000
            ),
        }),
        new: sql(|_, i| match i % 2 {
            0 => format!(
                "INSERT INTO comment_reactions (comment_id) VALUES ({})",
                1 + i % 1000
            ),
            _ => format!(
                "SELECT kind, count(*) FROM comment_reactions WHERE comment_id = {} GROUP BY kind",
                1 + i % 1000
            ),
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "comment_reactions").await;
    let t = cat.tables.values().next().expect("created");
    assert_eq!(t.primary_key.as_deref(), Some(&["id".to_string()][..]));
    assert_eq!(
        t.column("kind").unwrap().default.as_deref(),
        Some("'like'::text")
    );
    assert!(t.column("comment_id").unwrap().not_null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_table_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(Scenario {
        plan: plan("drop-table-comment-drafts.yaml"),
        setup: SETUP.into(),
        tables: vec!["comments".into(), "comment_drafts".into()],
        old: sql(|c, i| match i % 2 {
            0 => format!(
                "INSERT INTO comment_drafts (comment_id, body) VALUES ({}, 'old {c} {i}')",
                1 + i % 1000
            ),
            _ => format!(
                "SELECT body FROM comment_drafts WHERE comment_id = {}",
                1 + i % 100
            ),
        }),
        new: sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (contents) VALUES ('new {c} {i}')"),
            _ => format!(
                "SELECT id, contents FROM comments WHERE id = {}",
                1 + i % 1000
            ),
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let (cat, _) = schema_of(&r.client, "comment_drafts").await;
    assert!(cat.tables.is_empty(), "dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_table_refuses_a_referenced_table_and_create_table_an_existing_one() {
    let db = TestDb::new().await;
    db.client().await.batch_execute(SETUP).await.unwrap();
    let file = plan_from(
        "changes:\n  - drop_table: { name: comments }\n  - create_table: { name: comment_drafts, columns: [ { name: id, type: int } ] }\n",
        "bad-tables",
    );
    let err = pgphase::run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("test-plans/bad-tables.yaml:2:") && err.contains("foreign key `comment_drafts_comment_id_fkey` on `comment_drafts` references `comments`"), "{err}");
    assert!(
        err.contains("test-plans/bad-tables.yaml:3:")
            && err.contains("table `comment_drafts` already exists"),
        "{err}"
    );
}

/// A table created with a foreign key to an existing one and an index, written in the
/// wrong order: the plan orders them (create, then index and foreign key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_with_foreign_key_and_index_in_dependency_order() {
    let plan = plan_from(
        "name: reactions
changes:
  - add_foreign_key: { table: comment_reactions, name: reactions_comment_fkey, columns: [comment_id], references: { table: comments, columns: [id] }, on_delete: cascade }
  - add_index: { table: comment_reactions, name: reactions_kind_idx, columns: [kind] }
  - create_table: { name: comment_reactions, columns: [ { name: id, type: bigserial, primary_key: true }, { name: comment_id, type: bigint, nullable: false }, { name: kind, type: text, nullable: false, default: \"'like'\" } ] }
",
        "reactions",
    );
    let r = lifecycle(Scenario {
        plan,
        setup: SETUP.into(),
        tables: vec!["comments".into(), "comment_reactions".into()],
        old: sql(|c, i| format!("INSERT INTO comments (contents) VALUES ('old {c} {i}')")),
        new: sql(|_, i| {
            format!(
                "INSERT INTO comment_reactions (comment_id) VALUES ({})",
                1 + i % 1000
            )
        }),
        clients: 2,
        stage: Duration::from_millis(300),
        role: None,
    })
    .await;
    r.assert_clean();
    let (cat, _) = schema_of(&r.client, "comment_reactions").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t
        .constraints
        .iter()
        .any(|c| c.name == "reactions_comment_fkey" && c.validated));
    assert!(t
        .indexes
        .iter()
        .any(|i| i.name == "reactions_kind_idx" && i.valid));
}
