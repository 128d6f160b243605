//! add_comment: its plan against a real catalog (snapshot), its refusals before start,
//! and its lifecycle under old- and new-version traffic (rollback restores the previous
//! comments exactly, none included; then completion).

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use pgphase::recipe::{self, Knowledge};
use pgphase::report;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE comments (id bigserial PRIMARY KEY, contents text NOT NULL, author_name text);
COMMENT ON TABLE comments IS 'what readers wrote (it''s old)';
INSERT INTO comments (contents) SELECT 'c' || g FROM generate_series(1, 500) g;
";

const PLAN: &str = "name: comment-comments
changes:
  - add_comment: { table: comments, comment: 'Reader comments, one per row' }
  - add_comment: { table: comments, column: author_name, comment: \"shown as 'anonymous' when NULL\" }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_comment_plan_and_refusals() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let (cat, _) = schema_of(&client, "comments").await;
    let p = plan_from(PLAN, "comment-comments");
    let program = recipe::expand(&p.plan, Knowledge::Live(&cat))
        .unwrap_or_else(|p| panic!("refused: {p:#?}"));
    insta::assert_snapshot!("add_comment", report::plan_text(&program));

    for (yaml, line_col, says) in [
        (
            "changes:\n  - add_comment: { table: nope, comment: x }\n",
            (2, 27),
            "nope",
        ),
        (
            "changes:\n  - add_comment: { table: comments, column: nope, comment: x }\n",
            (2, 45),
            "has no column `nope`",
        ),
    ] {
        let p = plan_from(yaml, "x");
        let problems = recipe::expand(&p.plan, Knowledge::Live(&cat)).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            (problems[0].pos.line, problems[0].pos.column),
            line_col,
            "{problems:#?}"
        );
        assert!(problems[0].message.contains(says), "{problems:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_comment_lifecycle_under_traffic() {
    let app = || {
        sql(|c, i| match i % 2 {
            0 => format!("INSERT INTO comments (contents) VALUES ('app {c} {i}') RETURNING id"),
            _ => format!(
                "SELECT id, contents, author_name FROM comments WHERE id = {}",
                1 + i % 500
            ),
        })
    };
    let mut plan = plan_from(PLAN, "comment-comments");
    plan.plan.settings.lock_timeout = Duration::from_millis(200);
    // the harness checks that the rollback restored the exact original schema, the
    // comments (the table's, and the column's NULL) included
    let r = lifecycle(Scenario {
        plan,
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: app(),
        new: app(),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 0);
    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert_eq!(t.comment.as_deref(), Some("Reader comments, one per row"));
    assert_eq!(
        t.column("author_name").unwrap().comment.as_deref(),
        Some("shown as 'anonymous' when NULL")
    );
}
