//! add_column end to end on a real Postgres: the Transifex procedure under an old-app
//! (does not know the new columns) and a new-app (writes and reads them) workload.

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
  post_id bigint NOT NULL REFERENCES posts (id),
  contents text NOT NULL
);
INSERT INTO comments (post_id, contents)
  SELECT 1 + g % 50, CASE WHEN g % 3 = 0 THEN 'bonjour ' ELSE 'hello ' END || g
    FROM generate_series(1, 4000) g;
";

fn plan() -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/add-comments-language.yaml");
    let mut file = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    file.plan.settings.lock_timeout = Duration::from_millis(200);
    file.plan.settings.backfill.batch_size = 300;
    file.plan.settings.backfill.target_batch_time = Duration::ZERO;
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_column_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(Scenario {
        plan: plan(),
        setup: SETUP.into(),
        tables: vec!["comments".into(), "posts".into()],
        old: sql(|c, i| match i % 3 {
            0 => format!("INSERT INTO comments (post_id, contents) VALUES ({}, 'old {c} {i}')", 1 + i % 50),
            1 => format!("UPDATE comments SET contents = contents WHERE id = {}", 1 + (i * 7 + c as u64) % 4000),
            _ => format!("SELECT id, post_id, contents FROM comments WHERE id = {}", 1 + i % 4000),
        }),
        new: sql(|c, i| match i % 3 {
            0 => format!(
                "INSERT INTO comments (post_id, contents, lang, thread_id) VALUES ({p}, 'bonjour new {c} {i}', 'fr', {p})",
                p = 1 + i % 50
            ),
            1 => format!("UPDATE comments SET lang = 'de' WHERE id = {} RETURNING id, lang, thread_id", 1 + (i * 11 + c as u64) % 4000),
            _ => format!("SELECT id, lang, token, thread_id FROM comments WHERE id = {}", 1 + i % 4000),
        }),
        clients: 2,
        stage: Duration::from_millis(500),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1, "{:#?}", r.outcomes);

    let (cat, _) = schema_of(&r.client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    let lang = t.column("lang").unwrap();
    assert!(lang.not_null);
    assert_eq!(lang.default.as_deref(), Some("'en'::text"));
    let token = t.column("token").unwrap();
    assert!(token.not_null);
    assert_eq!(token.default.as_deref(), Some("gen_random_uuid()"));
    assert!(!t.column("thread_id").unwrap().not_null);
    for (name, kind) in [
        ("comments_lang_check", "c"),
        ("comments_token_key", "u"),
        ("comments_thread_id_fkey", "f"),
    ] {
        assert!(
            t.constraints
                .iter()
                .any(|c| c.name == name && c.kind == kind && c.validated),
            "{name}: {:#?}",
            t.constraints
        );
    }
    assert!(
        t.constraints
            .iter()
            .all(|c| !c.name.starts_with("pgphase_")),
        "{:#?}",
        t.constraints
    );
    assert!(t.indexes.iter().all(|i| i.valid));
    // existing rows were backfilled with the expression, per row
    let row = r
        .client
        .query_one(
            "SELECT count(*) FILTER (WHERE lang IS NULL OR token IS NULL),
                    count(*) FILTER (WHERE id <= 4000 AND id % 3 = 0 AND lang NOT IN ('fr', 'de')),
                    count(*) FILTER (WHERE thread_id IS DISTINCT FROM post_id AND id <= 4000),
                    count(DISTINCT token) = count(*)
               FROM comments",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "rows without a value");
    assert_eq!(row.get::<_, i64>(1), 0, "backfill expression not applied");
    assert_eq!(
        row.get::<_, i64>(2),
        0,
        "thread_id not backfilled from post_id"
    );
    assert!(
        row.get::<_, bool>(3),
        "tokens are per row (volatile default evaluated per row)"
    );
}

/// Refused before anything runs, with the plan position: a column that already exists,
/// a foreign key to a column that is not unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_preconditions_are_checked_against_the_live_catalog() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let before = schema_of(&client, "comments").await;
    let file = plan_from(
        "changes:\n  - add_column: { table: comments, column: { name: contents, type: text } }\n  - add_column: { table: comments, column: { name: x, type: text, references: { table: posts, column: title } } }\n",
        "bad-add",
    );
    let err = pgphase::run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-plans/bad-add.yaml:2:52: `comments` already has a column `contents`"),
        "{err}"
    );
    assert!(err.contains("test-plans/bad-add.yaml:3:"), "{err}");
    assert!(
        err.contains("`posts.title` is neither the primary key nor unique"),
        "{err}"
    );
    assert_eq!(schema_of(&client, "comments").await, before);
}
