//! rename_column end to end on a real Postgres, under an old-app and a new-app workload.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use pgphase::run::{self, Outcome};
use pgphase::state::store;
use pgphase::workload::{AppVersion, Workload};
use std::time::Duration;

const STAGE: Duration = Duration::from_millis(700);

fn assert_clean(stats: &pgphase::workload::WorkloadStats, what: &str) {
    assert_eq!(
        stats.failed(),
        0,
        "{what}: {} application queries failed: {:#?}",
        stats.failed(),
        stats.samples
    );
}

/// The shared lifecycle (rollbacks from every depth, a rolling deploy at each gate)
/// under the driver-like clients: cached prepared statements with explicit columns and
/// RETURNING, the `SELECT *` variant, and clients through PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_lifecycle_under_old_and_new_traffic() {
    let app = |col: &'static str| {
        sql(move |c, i| match i % 4 {
            0 => format!(
                "INSERT INTO comments (post_id, user_id, {col}) VALUES ({}, {c}, '{col} {c} {i}')",
                1 + i % 100
            ),
            1 => format!(
                "UPDATE comments SET {col} = '{col} {c} {i}' WHERE id = {} RETURNING id, {col}",
                1 + (i * 7 + c as u64) % 2000
            ),
            2 => format!("SELECT id, {col} FROM comments WHERE id = {}", 1 + i % 2000),
            _ => format!(
                "SELECT id, {col} FROM comments WHERE post_id = {} ORDER BY id DESC LIMIT 20",
                1 + i % 100
            ),
        })
    };
    let r = lifecycle(Scenario {
        plan: rename_plan("200ms", 30, 500),
        setup: "CREATE TABLE comments (
                  id bigserial PRIMARY KEY,
                  post_id bigint NOT NULL,
                  user_id bigint NOT NULL,
                  contents text NOT NULL DEFAULT 'n/a' CONSTRAINT contents_not_empty CHECK (length(contents) > 0),
                  created_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX comments_contents_idx ON comments (contents);
                INSERT INTO comments (post_id, user_id, contents)
                  SELECT g % 100 + 1, g % 1000 + 1, 'seed comment ' || g FROM generate_series(1, 2000) g;"
            .into(),
        tables: vec!["comments".into()],
        old: app("contents"),
        new: app("body"),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 2, "{:#?}", r.outcomes);
}

/// The core proof: old clients from before `start`, a rolling deploy mixing old and new
/// at the first gate, only new clients after the second, contract at the end. Zero failed
/// queries, every write by either version present and correct through `body`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_downtime_rename_under_old_and_new_traffic() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 5_000).await;
    let plan = rename_plan("500ms", 30, 500);
    let s = db.session();
    let wl = Workload::new(&db.url, "comments");

    wl.start_clients(AppVersion::Old, 3).await.unwrap();
    tokio::time::sleep(STAGE).await;
    let out = run::start(&s, &plan).await.unwrap();
    assert!(
        matches!(&out, Outcome::AwaitingDeploy { phase, .. } if phase == "backfill"),
        "{out:?}"
    );
    tokio::time::sleep(STAGE).await;

    // rolling deploy: new instances come up beside the old ones
    wl.start_clients(AppVersion::New, 3).await.unwrap();
    tokio::time::sleep(STAGE).await;
    let out = run::advance(&s, &plan.plan.name, "api@v42", Some(&plan))
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::AwaitingDeploy { phase, .. } if phase == "switch_reads"),
        "{out:?}"
    );
    tokio::time::sleep(STAGE).await;

    // the old instances are drained
    wl.stop_clients(AppVersion::Old).await;
    tokio::time::sleep(STAGE).await;
    let out = run::advance(&s, &plan.plan.name, "api@v42-drained", Some(&plan))
        .await
        .unwrap();
    assert_eq!(out, Outcome::Completed);
    tokio::time::sleep(STAGE).await;
    wl.stop_all().await;

    let stats = wl.stats();
    assert_clean(&stats, "rename");
    assert!(
        stats.old_ok > 100 && stats.new_ok > 100,
        "workload too small to prove anything: {stats:?}"
    );
    let v = wl.verify("body").await.unwrap();
    assert!(
        v.checked > 100 && v.is_clean(),
        "lost or wrong writes: {v:?}"
    );

    // The final schema: `body` has everything `contents` had; nothing of pgphase is left on the table.
    let (cat, functions) = schema_of(&client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("contents").is_none());
    let body = t.column("body").expect("body exists");
    assert!(body.not_null, "NOT NULL carried over");
    assert_eq!(
        body.default.as_deref(),
        Some("'n/a'::text"),
        "default carried over"
    );
    assert!(
        t.indexes
            .iter()
            .any(|i| i.name == "comments_body_idx" && i.valid && i.key_parts == ["body"]),
        "{:?}",
        t.indexes
    );
    assert!(
        t.constraints.iter().any(|c| c.name == "body_not_empty"
            && c.validated
            && c.definition.contains("length(body)")),
        "{:?}",
        t.constraints
    );
    assert!(t.triggers.is_empty(), "{:?}", t.triggers);
    assert!(
        functions.iter().all(|f| !f.starts_with("sync_")),
        "{functions:?}"
    );

    // The audit trail records who confirmed which deploy.
    let events = store::events(&client, Some(&plan.plan.name)).await.unwrap();
    let gates: Vec<_> = events.iter().filter(|e| e.kind == "gate").collect();
    assert_eq!(gates.len(), 2);
    assert_eq!(gates[0].deployed_ref.as_deref(), Some("api@v42"));
    assert_eq!(gates[1].deployed_ref.as_deref(), Some("api@v42-drained"));
    assert!(gates.iter().all(|g| g.actor == "test"));
}

/// The same workload must see the naive rename break it: proof the workload can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn naive_rename_breaks_the_old_application() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 1_000).await;
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 3).await.unwrap();
    tokio::time::sleep(STAGE).await;
    assert_eq!(wl.stats().failed(), 0);
    client
        .batch_execute("ALTER TABLE comments RENAME COLUMN contents TO body")
        .await
        .unwrap();
    tokio::time::sleep(STAGE).await;
    wl.stop_all().await;
    let stats = wl.stats();
    assert!(
        stats.old_failed > 10,
        "the naive rename should break the old API: {stats:?}"
    );
    assert!(
        stats.samples.iter().any(|s| s.contains("42703")),
        "{:?}",
        stats.samples
    );
}

/// Where a rollback starts from, and how the plan is brought there.
#[derive(Debug, Clone, Copy)]
enum StopAt {
    /// A long transaction keeps ADD COLUMN from its lock: failed in expand, nothing changed.
    ExpandLocked,
    /// Injected failure before the trigger step: the function exists, the trigger not.
    Failpoint(&'static str),
    /// A row stays locked by the application: the backfill fails half-way.
    BackfillLocked,
    /// Stopped at the first gate.
    FirstGate,
    /// First gate confirmed, stopped at the second.
    SecondGate,
}

async fn rollback_from(stop: StopAt) {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 3_000).await;
    let before = schema_of(&client, "comments").await;
    let plan = rename_plan("100ms", 2, 100);
    let mut s = db.session();
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let name = plan.plan.name.clone();
    match stop {
        StopAt::ExpandLocked | StopAt::BackfillLocked => {
            let (hold, phase) = match stop {
                // an open transaction that read the table: ACCESS SHARE blocks ADD COLUMN
                StopAt::ExpandLocked => ("SELECT count(*) FROM comments", "expand"),
                // a row locked in the middle of the table stops the backfill's batch there
                _ => (
                    "UPDATE comments SET post_id = post_id WHERE id = 1500",
                    "backfill",
                ),
            };
            if matches!(stop, StopAt::BackfillLocked) {
                // the row lock would also keep expand from its lock: get to the backfill first
                s.failpoint = Some("backfill.1".into());
                run::start(&s, &plan).await.unwrap_err();
                s.failpoint = None;
            }
            let holder = LockHolder::hold(&db.url, hold).await;
            let err = run::start(&s, &plan).await.unwrap_err();
            assert!(
                err.to_string().contains(&format!("phase {phase}")),
                "{phase}: {err}"
            );
            let st = store::load_plan(&client, &name).await.unwrap().unwrap();
            assert_eq!(st.status.as_str(), "failed");
            if matches!(stop, StopAt::BackfillLocked) {
                let p = store::progress(&client, &name).await.unwrap();
                assert!(
                    p[0].rows_done >= 1_000 && p[0].rows_done < 3_000,
                    "the backfill stopped at the locked row: {p:?}"
                );
            }
            holder.release().await;
        }
        StopAt::Failpoint(fp) => {
            s.failpoint = Some(fp.to_string());
            let err = run::start(&s, &plan).await.unwrap_err();
            assert!(err.to_string().contains("failpoint"), "{err}");
            s.failpoint = None;
        }
        StopAt::FirstGate => {
            run::start(&s, &plan).await.unwrap();
        }
        StopAt::SecondGate => {
            run::start(&s, &plan).await.unwrap();
            run::advance(&s, &name, "v2", None).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = run::rollback(&s, &name).await.unwrap();
    if matches!(stop, StopAt::SecondGate) {
        // back to the first gate (the version deployed there keeps working), then the rest
        assert!(matches!(out, Outcome::RolledBackToGate { .. }), "{out:?}");
        out = run::rollback(&s, &name).await.unwrap();
    }
    assert_eq!(out, Outcome::RolledBack);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wl.stop_all().await;
    assert_clean(&wl.stats(), &format!("rollback from {stop:?}"));
    let v = wl.verify("contents").await.unwrap();
    assert!(v.checked > 10 && v.is_clean(), "{v:?}");
    let after = schema_of(&client, "comments").await;
    assert_eq!(
        before, after,
        "rollback from {stop:?} must restore the exact original schema"
    );
    let st = store::load_plan(&client, &name).await.unwrap().unwrap();
    assert_eq!(st.status.as_str(), "rolled_back");
    // a rolled-back plan can start again, and goes through
    let out = run::start(&s, &plan).await.unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_after_expand_could_not_lock() {
    rollback_from(StopAt::ExpandLocked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_from_dual_write() {
    rollback_from(StopAt::Failpoint("dual_write.2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_after_backfill_could_not_lock_a_row() {
    rollback_from(StopAt::BackfillLocked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_from_backfill_carry_over() {
    // the NOT NULL helper check is in place, not yet validated
    rollback_from(StopAt::Failpoint("backfill.3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_at_the_first_gate() {
    rollback_from(StopAt::FirstGate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_at_the_second_gate() {
    rollback_from(StopAt::SecondGate).await;
}

/// A backfill interrupted half-way resumes from its checkpoint without redoing batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_resumes_from_its_checkpoint() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 3_000).await;
    let plan = rename_plan("100ms", 2, 100);
    let mut s = db.session();
    // stop just before the backfill (a row lock would also keep expand from its lock)
    s.failpoint = Some("backfill.1".into());
    run::start(&s, &plan).await.unwrap_err();
    s.failpoint = None;
    let holder = LockHolder::hold(
        &db.url,
        "UPDATE comments SET post_id = post_id WHERE id = 2001",
    )
    .await;
    let err = run::start(&s, &plan).await.unwrap_err();
    assert!(err.to_string().contains("backfill"), "{err}");
    let first = store::progress(&client, &plan.plan.name).await.unwrap()[0].clone();
    assert_eq!(first.rows_done, 2_000, "{first:?}");
    assert_eq!(first.batches, 20);
    holder.release().await;
    let out = run::start(&s, &plan).await.unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }));
    let done = store::progress(&client, &plan.plan.name).await.unwrap()[0].clone();
    assert_eq!(done.rows_done, 3_000, "resumed, not restarted: {done:?}");
    assert_eq!(done.batches, 30);
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM comments WHERE body IS DISTINCT FROM contents",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0);
}

/// Two operators at once: exactly one proceeds, the other is told who holds the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_operators_cannot_move_one_plan() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 5_000).await;
    let plan = rename_plan("500ms", 5, 200);
    // Each operator pauses a second inside its run, holding the plan; the second one
    // arrives 300 ms after the first, while the first is still at work.
    let with_pause = |point: &str| {
        let mut s = db.session();
        s.failpoint = Some(format!("pause:{point}"));
        s
    };
    let later = || sleep_ms(300);
    let s = with_pause("expand.1");
    let (a, b) = tokio::join!(run::start(&s, &plan), async {
        later().await;
        run::start(&s, &plan).await
    });
    let refused = b.expect_err("the second start is refused");
    assert!(matches!(a, Ok(Outcome::AwaitingDeploy { .. })), "{a:?}");
    let msg = refused.to_string();
    assert!(
        msg.contains("another pgphase command") && msg.contains("held by pid"),
        "{msg}"
    );

    let s = with_pause("switch_reads.1");
    let (a, b) = tokio::join!(run::advance(&s, &plan.plan.name, "v1", None), async {
        later().await;
        run::advance(&s, &plan.plan.name, "v1", None).await
    });
    assert!(
        a.is_ok() && b.is_err(),
        "exactly one advance proceeds: {a:?} / {b:?}"
    );
    let events = store::events(&client, Some(&plan.plan.name)).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "gate").count(),
        1,
        "the gate was confirmed once"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.message == "phase switch_reads started")
            .count(),
        1,
        "no phase runs twice"
    );

    // back to the first gate (switch_reads has nothing to undo), then the rest, twice at once
    assert!(matches!(
        run::rollback(&db.session(), &plan.plan.name).await.unwrap(),
        Outcome::RolledBackToGate { .. }
    ));
    let s = with_pause("rollback-backfill.1");
    let (a, b) = tokio::join!(run::rollback(&s, &plan.plan.name), async {
        later().await;
        run::rollback(&s, &plan.plan.name).await
    });
    assert!(
        a.is_ok() && b.is_err(),
        "exactly one rollback proceeds: {a:?} / {b:?}"
    );
    let events = store::events(&client, Some(&plan.plan.name)).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.message == "rollback started")
            .count(),
        2,
        "the rollback to the gate, then exactly one of the two"
    );
}

/// Half-way through a rollback (sync trigger gone, `body` still there) the old
/// application must still be able to insert: `body` must not keep its NOT NULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_rollback_keeps_the_old_application_working() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 500).await;
    let plan = rename_plan("500ms", 5, 100);
    let mut s = db.session();
    run::start(&s, &plan).await.unwrap();
    s.failpoint = Some("rollback-expand.1".into());
    let err = run::rollback(&s, &plan.plan.name).await.unwrap_err();
    assert!(err.to_string().contains("rollback-expand.1"), "{err}");
    // what the old API does, with the trigger gone and `body` still present
    client
        .execute(
            "INSERT INTO comments (post_id, user_id, contents) VALUES (1, 1, 'old api')",
            &[],
        )
        .await
        .expect("old application insert during an interrupted rollback");
    s.failpoint = None;
    assert_eq!(
        run::rollback(&s, &plan.plan.name).await.unwrap(),
        Outcome::RolledBack
    );
}

/// Composite keys and hostile names: a schema with a space, a table with capitals and a
/// quote, a key of (bigint, text), and a rename to a reserved word.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn composite_key_and_hostile_identifiers() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            r#"CREATE SCHEMA "App Data";
               CREATE TABLE "App Data"."Order ""Items""" (
                   tenant bigint NOT NULL, sku text NOT NULL, "Note" varchar(40) COLLATE "C" NOT NULL DEFAULT 'none',
                   PRIMARY KEY (tenant, sku));
               CREATE INDEX ON "App Data"."Order ""Items""" ("Note") WHERE tenant > 0;
               INSERT INTO "App Data"."Order ""Items""" SELECT g % 7, 'sku-' || g, 'note ' || g FROM generate_series(1, 2500) g;"#,
        )
        .await
        .unwrap();
    let plan = plan_from(
        r#"name: hostile
settings: { backfill: { batch_size: 97, target_batch_time: 0s } }
changes:
  - rename_column: { table: '"App Data"."Order ""Items"""', from: Note, to: select }
"#,
        "hostile",
    );
    let s = db.session();
    run::start(&s, &plan).await.unwrap();
    // an old writer and a new writer between the gates
    client
        .execute(r#"INSERT INTO "App Data"."Order ""Items""" (tenant, sku, "Note") VALUES (1, 'old', 'from old')"#, &[])
        .await
        .unwrap();
    client
        .execute(r#"INSERT INTO "App Data"."Order ""Items""" (tenant, sku, "select") VALUES (1, 'new', 'from new')"#, &[])
        .await
        .unwrap();
    run::advance(&s, "hostile", "v2", None).await.unwrap();
    assert_eq!(
        run::advance(&s, "hostile", "v2-drained", None)
            .await
            .unwrap(),
        Outcome::Completed
    );
    let (cat, _) = schema_of(&client, r#""App Data"."Order ""Items""""#).await;
    let t = cat.tables.values().next().unwrap();
    let col = t.column("select").unwrap();
    assert_eq!(col.type_sql, "character varying(40)");
    assert_eq!(col.collation.as_deref(), Some("\"C\""));
    assert!(col.not_null);
    assert_eq!(col.default.as_deref(), Some("'none'::character varying"));
    assert!(
        t.indexes.iter().any(
            |i| i.key_parts == ["\"select\""] && i.predicate.as_deref() == Some("(tenant > 0)")
        ),
        "{:?}",
        t.indexes
    );
    let rows: Vec<(String, String)> = client
        .query(r#"SELECT sku, "select"::text FROM "App Data"."Order ""Items""" WHERE sku IN ('old', 'new', 'sku-2500') ORDER BY sku"#, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("new".to_string(), "from new".to_string()),
            ("old".to_string(), "from old".to_string()),
            ("sku-2500".to_string(), "note 2500".to_string())
        ]
    );
    let progress = pgphase::state::store::progress(&client, "hostile")
        .await
        .unwrap();
    assert_eq!(progress[0].rows_done, 2500);
    assert_eq!(progress[0].batches, 26, "2500 rows in batches of 97");
}
