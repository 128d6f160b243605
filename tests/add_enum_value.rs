//! add_enum_value end to end on a real Postgres: the old application writes and reads
//! the existing values of `comment_status` throughout; the new one, deployed at the gate,
//! writes `flagged` only once the plan completed (it asks pgphase's state, as a deploy
//! pipeline would with `pgphase check`). Start → rollback (the value stays: PostgreSQL
//! cannot drop it) → start (finds it in place) → gate → complete, nothing fails. Also
//! the refusals, and two values of one plan placed next to each other.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SETUP: &str = "
CREATE TYPE comment_status AS ENUM ('pending', 'published', 'hidden');
CREATE TABLE posts (id bigserial PRIMARY KEY, title text NOT NULL);
INSERT INTO posts (title) SELECT 'post ' || g FROM generate_series(1, 20) g;
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL REFERENCES posts (id),
  contents text NOT NULL,
  status comment_status NOT NULL DEFAULT 'pending',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_status_idx ON comments (status);
INSERT INTO comments (post_id, contents, status)
  SELECT 1 + g % 20, 'seed ' || g, (ARRAY['pending', 'published', 'hidden']::comment_status[])[1 + g % 3]
    FROM generate_series(1, 1000) g;
";

const PLAN: &str = "add-enum-value-comment-status-flagged";

fn labels_sql() -> &'static str {
    "SELECT string_agg(enumlabel::text, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'comment_status'::regtype"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_enum_value_lifecycle_under_old_and_new_traffic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(format!("{PLAN}.yaml"));
    let mut plan = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    plan.plan.settings.lock_timeout = Duration::from_millis(200);
    let (old_inserts, new_inserts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (oi, ni) = (old_inserts.clone(), new_inserts.clone());
    let r = lifecycle(Scenario {
        plan,
        setup: SETUP.into(),
        tables: vec!["comments".into()],
        old: sql(move |c, i| match i % 4 {
            0 => {
                oi.fetch_add(1, Ordering::Relaxed);
                let status = ["pending", "published", "hidden"][(i / 4 % 3) as usize];
                format!(
                    "INSERT INTO comments (post_id, contents, status) VALUES ({}, 'old {c} {i}', '{status}') RETURNING id, status",
                    1 + i % 20
                )
            }
            1 => format!(
                "UPDATE comments SET status = 'published' WHERE id = {} AND status = 'pending' RETURNING id",
                1 + i % 1000
            ),
            2 => "SELECT status, count(*) FROM comments GROUP BY status ORDER BY status".into(),
            _ => format!(
                "SELECT id, status FROM comments WHERE status = 'hidden' AND post_id = {} LIMIT 5",
                1 + i % 20
            ),
        }),
        new: sql(move |c, i| match i % 3 {
            0 => {
                ni.fetch_add(1, Ordering::Relaxed);
                // writes `flagged` only once the plan completed
                format!(
                    "INSERT INTO comments (post_id, contents, status)
                     SELECT {}, 'new {c} {i}', CASE WHEN EXISTS (SELECT 1 FROM pgphase.plans WHERE name = '{PLAN}' AND status = 'completed')
                                                  THEN 'flagged'::comment_status ELSE 'pending' END
                     RETURNING id, status",
                    1 + i % 20
                )
            }
            1 => format!(
                "UPDATE comments SET status = 'flagged' WHERE id = {} AND status = 'hidden'
                    AND EXISTS (SELECT 1 FROM pgphase.plans WHERE name = '{PLAN}' AND status = 'completed') RETURNING id",
                1 + i % 1000
            ),
            _ => "SELECT status, count(*) FROM comments GROUP BY status ORDER BY status".into(),
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 1);
    let one = |q: &'static str| {
        let client = &r.client;
        async move { client.query_one(q, &[]).await.unwrap() }
    };
    let labels: String = one(labels_sql()).await.get(0);
    assert_eq!(labels, "pending,published,flagged,hidden");
    let (oi, ni) = (
        old_inserts.load(Ordering::Relaxed),
        new_inserts.load(Ordering::Relaxed),
    );
    let old_rows: i64 = one("SELECT count(*) FROM comments WHERE contents LIKE 'old %'")
        .await
        .get(0);
    let new_rows: i64 = one("SELECT count(*) FROM comments WHERE contents LIKE 'new %'")
        .await
        .get(0);
    let flagged: i64 = one("SELECT count(*) FROM comments WHERE status = 'flagged'")
        .await
        .get(0);
    let old_flagged: i64 =
        one("SELECT count(*) FROM comments WHERE contents LIKE 'old %' AND status = 'flagged'")
            .await
            .get(0);
    eprintln!(
        "app queries ok: old {} new {}, failed: 0; inserts old {oi} new {ni}; rows with 'flagged': {flagged}",
        r.old_ok(),
        r.new_ok()
    );
    assert_eq!(
        (old_rows as u64, new_rows as u64),
        (oi, ni),
        "no lost writes"
    );
    assert!(oi > 10 && ni > 10);
    assert!(
        flagged > 0,
        "the new version wrote the value after the plan completed"
    );
    assert_eq!(old_flagged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_enum_value_refusals_and_values_placed_next_to_each_other() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute("CREATE DOMAIN score AS int CHECK (VALUE >= 0);")
        .await
        .unwrap();
    let file = plan_from(
        "changes:
  - add_enum_value: { type: comment_state, value: x }
  - add_enum_value: { type: score, value: x }
  - add_enum_value: { type: comment_status, value: x, before: deleted }
  - add_enum_value: { type: comment_status, value: hidden, after: pending }
",
        "bad-enums",
    );
    let err = pgphase::run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    for (line, text) in [
        (2, "type `comment_state` does not exist"),
        (3, "`score` is a domain, not an enum"),
        (4, "`comment_status` has no value 'deleted' to place 'x' next to; its values are 'pending', 'published', 'hidden'"),
        (5, "`comment_status` already has the value 'hidden', elsewhere than the plan puts it"),
    ] {
        assert!(
            err.contains(&format!("test-plans/bad-enums.yaml:{line}:")) && err.contains(text),
            "{text}: {err}"
        );
    }
    // two values of one plan, the second placed next to the first; `hidden` already
    // where the plan puts it (last) is accepted and skipped
    let file = plan_from(
        "changes:
  - add_enum_value: { type: comment_status, value: flagged, before: hidden }
  - add_enum_value: { type: comment_status, value: spam, after: flagged }
  - add_enum_value: { type: comment_status, value: hidden }
",
        "two-values",
    );
    let s = db.session();
    let out = pgphase::run::start(&s, &file).await.unwrap();
    assert!(
        matches!(out, pgphase::run::Outcome::AwaitingDeploy { .. }),
        "{out:?}"
    );
    let labels: String = client.query_one(labels_sql(), &[]).await.unwrap().get(0);
    assert_eq!(labels, "pending,published,flagged,spam,hidden");
    // rollback leaves the values (and says so); a new start finds them in place
    let out = pgphase::run::rollback(&s, "two-values").await.unwrap();
    assert_eq!(out, pgphase::run::Outcome::RolledBack);
    let labels2: String = client.query_one(labels_sql(), &[]).await.unwrap().get(0);
    assert_eq!(labels2, labels);
    let out = pgphase::run::start(&s, &file).await.unwrap();
    assert!(
        matches!(out, pgphase::run::Outcome::AwaitingDeploy { .. }),
        "{out:?}"
    );
    let out = pgphase::run::advance(&s, "two-values", "v2", Some(&file))
        .await
        .unwrap();
    assert_eq!(out, pgphase::run::Outcome::Completed);
    let events: Vec<String> = client
        .query(
            "SELECT message FROM pgphase.events WHERE plan_name = 'two-values' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e
                .contains("leave 'spam' in comment_status: PostgreSQL cannot drop an enum value")),
        "{events:#?}"
    );
}
