//! drop_column end to end on a real Postgres, under an old-app (reads and writes the
//! column) and a new-app (never mentions it) workload.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  contents text NOT NULL,
  legacy_score integer NOT NULL CHECK (legacy_score >= 0)
);
CREATE INDEX comments_legacy_score_idx ON comments (legacy_score);
CREATE INDEX comments_contents_score_idx ON comments (contents) WHERE legacy_score > 10;
INSERT INTO comments (contents, legacy_score) SELECT 'c' || g, g % 100 FROM generate_series(1, 3000) g;
";

fn plan() -> pgphase::plan::PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/drop-comments-legacy-score.yaml");
    let mut file = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    file.plan.settings.lock_timeout = Duration::from_millis(200);
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_column_lifecycle_under_old_and_new_traffic() {
    let r = lifecycle(Scenario {
        plan: plan(),
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: sql(|c, i| match i % 3 {
            0 => format!(
                "INSERT INTO comments (contents, legacy_score) VALUES ('old {c} {i}', {})",
                i % 100
            ),
            1 => format!(
                "UPDATE comments SET legacy_score = legacy_score + 1 WHERE id = {} RETURNING id, legacy_score",
                1 + (i * 7 + c as u64) % 3000
            ),
            _ => format!(
                "SELECT id, contents, legacy_score FROM comments WHERE legacy_score = {}",
                i % 100
            ),
        }),
        new: sql(|c, i| match i % 3 {
            0 => format!("INSERT INTO comments (contents) VALUES ('new {c} {i}')"),
            1 => format!(
                "UPDATE comments SET contents = contents || '.' WHERE id = {}",
                1 + (i * 11 + c as u64) % 3000
            ),
            _ => format!("SELECT id, contents FROM comments WHERE id = {}", 1 + i % 3000),
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
    assert!(t.column("legacy_score").is_none());
    assert_eq!(
        t.indexes.len(),
        1,
        "only the primary key is left: {:#?}",
        t.indexes
    );
    assert!(
        // PostgreSQL 18 lists NOT NULL as constraints (kind `n`) of the remaining columns
        t.constraints.iter().all(|c| c.kind == "p"
            || (c.kind == "n" && !c.columns.contains(&"legacy_score".to_string()))),
        "{:#?}",
        t.constraints
    );
}

/// Refused before anything runs, each problem at the column's position: a primary key
/// column, a column another table's foreign key references, a column a view uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_column_refuses_keys_referenced_columns_and_view_columns() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, email text UNIQUE, nickname text);
             CREATE TABLE logins (id bigint PRIMARY KEY, email text REFERENCES accounts (email));
             CREATE VIEW account_names AS SELECT id, nickname FROM accounts;",
        )
        .await
        .unwrap();
    let before = schema_of(&client, "accounts").await;
    let file = plan_from(
        "changes:\n  - drop_column: { table: accounts, column: id }\n  - drop_column: { table: accounts, column: email }\n  - drop_column: { table: accounts, column: nickname }\n  - drop_column: { table: accounts, column: nope }\n",
        "bad-drop",
    );
    let err = pgphase::run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "test-plans/bad-drop.yaml:2:45: `id` is part of the primary key of `accounts`",
        "test-plans/bad-drop.yaml:3:45: foreign key `logins_email_fkey` on `logins` references `accounts.email`",
        "test-plans/bad-drop.yaml:4:45: view `account_names` uses `accounts.nickname`",
        "test-plans/bad-drop.yaml:5:45: `accounts` has no column `nope`",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    assert_eq!(schema_of(&client, "accounts").await, before);
}
