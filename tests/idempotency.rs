//! Every step of every example plan converges when it runs again after it already took
//! effect (a crash after the step's commit, before its state was recorded), forward and
//! in rollback; the doubled rollback still restores the exact original schema.

mod common;

use common::*;
use pgphase::exec::{self, CheckpointKey, Silent, StepSettings};
use pgphase::program::{Action, PhaseKind, Program, Step};
use std::path::Path;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL, published_date date, published_time time);
INSERT INTO posts SELECT g, 'post ' || g, date '2024-01-01' + g, CASE WHEN g % 2 = 0 THEN time '08:30' END FROM generate_series(1, 20) g;
CREATE TYPE comment_status AS ENUM ('pending', 'published', 'hidden');
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL,
  contents text NOT NULL,
  legacy_score integer NOT NULL,
  author_name text,
  created_at timestamptz NOT NULL DEFAULT now(),
  status comment_status NOT NULL DEFAULT 'published',
  CONSTRAINT comments_contents_not_empty CHECK (contents <> '')
);
CREATE INDEX comments_contents_idx ON comments (contents);
CREATE TABLE comment_drafts (id bigserial PRIMARY KEY, comment_id bigint REFERENCES comments (id), body text);
CREATE INDEX comments_legacy_score_idx ON comments (legacy_score);
INSERT INTO comments (post_id, contents, legacy_score, author_name)
  SELECT 1 + g % 20, 'c' || g, g % 5, CASE WHEN g % 3 = 0 THEN NULL ELSE 'u' END
    FROM generate_series(1, 500) g;
-- `start` creates it; the sync functions of the trigger-based recipes live there
CREATE SCHEMA pgphase;
";

const PLANS: [&str; 21] = [
    "rename-comments-contents-to-body.yaml",
    "drop-table-comment-drafts.yaml",
    "sql-comments-stats-view.yaml",
    "drop-constraint-comments-contents-not-empty.yaml",
    "create-table-comment-reactions.yaml",
    "drop-comments-legacy-score-not-null.yaml",
    "set-default-comments-author.yaml",
    "drop-default-comments-created-at.yaml",
    "add-unique-posts-title.yaml",
    "add-comments-language.yaml",
    "drop-comments-legacy-score.yaml",
    "add-index-comments-post-created.yaml",
    "drop-index-comments-contents.yaml",
    "set-comments-author-not-null.yaml",
    "add-check-comments-contents-length.yaml",
    "add-foreign-key-comments-post.yaml",
    "rename-table-comments-to-post-comments.yaml",
    "add-enum-value-comment-status-flagged.yaml",
    "change-comments-legacy-score-type.yaml",
    "split-comments-author-name.yaml",
    "merge-posts-published-at.yaml",
];

fn settings() -> StepSettings {
    StepSettings {
        lock_timeout: Duration::from_secs(2),
        lock_retries: 3,
        batch_pause: Duration::ZERO,
        target_batch_time: Duration::ZERO,
        ..StepSettings::default()
    }
}

/// Runs a step twice. A backfill runs as one UPDATE of the rows that need work (the
/// batching engine and its checkpoints have their own tests).
async fn twice(work: &mut tokio_postgres::Client, step: &Step, what: &str) {
    for attempt in 1..=2 {
        match &step.action {
            Action::Backfill(b) => {
                work.batch_execute(&format!(
                    "UPDATE {} SET {} WHERE {}",
                    b.table, b.set, b.needs_work
                ))
                .await
                .unwrap_or_else(|e| panic!("{what} (attempt {attempt}): {e}"));
            }
            _ => {
                let key = CheckpointKey {
                    plan: "x".into(),
                    phase: 0,
                    step: 0,
                    record_done: false,
                };
                exec::run_step(work, step, &settings(), &key, &Silent)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{what} (attempt {attempt}): {}: {e}", step.description)
                    });
            }
        }
    }
}

async fn program(db: &TestDb, file: &str) -> Program {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(file);
    let plan = pgphase::plan::PlanFile::load(&path).unwrap();
    pgphase::run::expand(Some(&db.conn()), &plan)
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_converges_when_run_twice() {
    for file in PLANS {
        let db = TestDb::new().await;
        let mut work = db.client().await;
        work.batch_execute(SETUP).await.unwrap();
        let p = program(&db, file).await;
        for ph in &p.phases {
            for st in &ph.steps {
                twice(&mut work, st, file).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_undo_step_converges_when_run_twice_and_restores_the_schema() {
    for file in PLANS {
        let db = TestDb::new().await;
        let mut work = db.client().await;
        work.batch_execute(SETUP).await.unwrap();
        let before = (
            schema_of(&work, "comments").await,
            schema_of(&work, "posts").await,
        );
        let p = program(&db, file).await;
        let undoable: Vec<_> = p
            .phases
            .iter()
            .filter(|ph| ph.kind != PhaseKind::Contract)
            .collect();
        for ph in &undoable {
            for st in &ph.steps {
                twice(&mut work, st, file).await;
            }
        }
        for ph in undoable.iter().rev() {
            for st in &ph.rollback {
                twice(&mut work, st, file).await;
            }
        }
        let after = (
            schema_of(&work, "comments").await,
            schema_of(&work, "posts").await,
        );
        assert_eq!(before, after, "{file}: the undo did not restore the schema");
    }
}
