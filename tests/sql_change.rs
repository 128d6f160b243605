//! The `sql` escape hatch end to end on a real Postgres: the example plan under an old
//! reporting job (reads `legacy_comment_stats`) and a new one (reads `comment_stats`),
//! with comment writes throughout; rollback restores the exact schema; a part that
//! fails leaves nothing behind; the plan output flags the SQL and shows lint findings.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use pgphase::plan::PlanFile;
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL,
  contents text NOT NULL
);
INSERT INTO comments (post_id, contents) SELECT g % 20 + 1, 'seed comment ' || g FROM generate_series(1, 2000) g;
CREATE VIEW legacy_comment_stats AS SELECT post_id, count(*) AS comments FROM comments GROUP BY post_id;
";

fn plan() -> PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/sql-comments-stats-view.yaml");
    let mut file = PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    file.plan.settings.lock_timeout = Duration::from_millis(200);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_change_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(Scenario {
        plan: plan(),
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: sql(|c, i| match i % 2 {
            0 => format!(
                "INSERT INTO comments (post_id, contents) VALUES ({}, 'old {c} {i}')",
                i % 20 + 1
            ),
            _ => format!(
                "SELECT comments FROM legacy_comment_stats WHERE post_id = {}",
                i % 20 + 1
            ),
        }),
        new: sql(|c, i| match i % 2 {
            0 => format!(
                "INSERT INTO comments (post_id, contents) VALUES ({}, 'new {c} {i} words')",
                i % 20 + 1
            ),
            _ => format!(
                "SELECT comments, words FROM comment_stats WHERE post_id = {}",
                i % 20 + 1
            ),
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let c = &r.client;
    let legacy: Option<String> = c
        .query_one("SELECT to_regclass('legacy_comment_stats')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(legacy, None, "contract did not drop the legacy view");
    // the new view counts every row, and words as the function says
    let (rows, words): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT (SELECT sum(comments)::bigint FROM comment_stats),
                        (SELECT sum(words)::bigint FROM comment_stats)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (direct_rows, direct_words): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT count(*), sum(array_length(regexp_split_to_array(btrim(contents), '\\s+'), 1))::bigint FROM comments",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((rows, words), (direct_rows, direct_words));
    assert!(rows > 2000, "no comment written during the plan: {rows}");
    // the step was recorded done in its own transaction
    let done: i32 = c
        .query_one(
            "SELECT steps_done FROM pgphase.phases WHERE plan_name = 'sql-comments-stats-view' AND kind = 'expand'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 1);
}

/// A part that fails rolls back as a whole (one transaction): nothing of it is left,
/// the plan is failed, and a rollback returns to the exact original schema.
#[tokio::test]
async fn a_failing_part_leaves_nothing_behind() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(SETUP).await.unwrap();
    let before = schema_of(&c, "comments").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-sql.yaml");
    std::fs::write(
        &path,
        "changes:
  - sql:
      expand: |
        CREATE VIEW comment_totals AS SELECT count(*) FROM comments;
        ALTER TABLE comments ADD COLUMN nope integer REFERENCES no_such_table (id);
      rollback: DROP VIEW IF EXISTS comment_totals;
",
    )
    .unwrap();
    let file = PlanFile::load(&path).unwrap();
    let s = db.session();
    let err = pgphase::run::start(&s, &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such_table"), "{err}");
    let view: Option<String> = c
        .query_one("SELECT to_regclass('comment_totals')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(view, None, "half of the part was left behind");
    pgphase::run::rollback(&s, "bad-sql").await.unwrap();
    assert_eq!(schema_of(&c, "comments").await, before);
}
