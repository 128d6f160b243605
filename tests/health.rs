//! Backfills that watch the database's health, on real replication: a streaming
//! standby made by `pg_basebackup -R` from the test's own primary, and a real logical
//! replication slot. Each test starts its own primary (the signals are cluster-wide)
//! and drives the `pgphase` binary as an operator would, from a second process.
//!
//! Determinism without timing thresholds: every backfill starts paused
//! (`pgphase backfill pause`), the test builds the condition (replay paused, standby
//! stopped, slot retaining WAL) and waits until `status` shows the backfill holding on
//! it; only then does it resume the backfill, which must keep waiting (no batch runs:
//! rows_done stays 0) until the condition is cleared.

mod common;

use std::time::Duration;

use common::cli::{pgphase_on, run, Run, Running};
use pgphase::pgserver::{PgServer, ServerOptions};
use serde_json::Value;
use tokio_postgres::Client;

const PLAN: &str = common::RENAME_PLAN;
/// Kill-guard against hangs only.
const GUARD: Duration = Duration::from_secs(30);

struct Cluster {
    /// Its standby, if the test asked for one.
    standby: Option<PgServer>,
    /// Held so that the primary lives as long as the test (dropping it stops the server).
    _primary: PgServer,
    url: String,
    client: Client,
    dir: tempfile::TempDir,
}

/// A primary (and a standby named `standby`, made before any session connects: where the
/// server folder has no `pg_basebackup`, the standby is a copy taken while the primary
/// is stopped for a moment).
async fn cluster(extra_conf: &[(&str, &str)], settings: &str, standby: Option<&str>) -> Cluster {
    let primary = PgServer::start(&ServerOptions {
        extra_conf: extra_conf
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ServerOptions::default()
    })
    .expect("start the primary");
    let standby = standby.map(|name| {
        PgServer::standby_of(&primary, name, &ServerOptions::default()).expect("start the standby")
    });
    let url = primary.url("postgres");
    let client = common::connect(&url).await;
    common::rich_comments(&client, 2_000).await;
    let dir = tempfile::tempdir().unwrap();
    common::write_rename_plan(dir.path(), settings);
    Cluster {
        standby,
        _primary: primary,
        url,
        client,
        dir,
    }
}

impl Cluster {
    fn plan_file(&self) -> String {
        self.dir
            .path()
            .join(format!("{PLAN}.yaml"))
            .to_string_lossy()
            .into_owned()
    }
    async fn cli(&self, args: &[&str]) -> Run {
        let mut full = vec!["--actor", "ops", "--quiet"];
        full.extend_from_slice(args);
        run(pgphase_on(&self.url, &full)).await
    }
    fn start(&self) -> Running {
        let file = self.plan_file();
        Running::spawn(pgphase_on(
            &self.url,
            &["--actor", "ci", "--quiet", "start", &file, "--yes"],
        ))
    }
    /// The running backfill's holds (kinds and names), as `status` shows them.
    async fn holds(&self) -> Vec<String> {
        let r = self.cli(&["--output", "json", "status", PLAN]).await;
        if r.code != 0 {
            return Vec::new(); // not started yet
        }
        let v = r.json();
        v["backfill"][0]["waiting"]
            .as_array()
            .map(|a| a.iter().map(hold_key).collect())
            .unwrap_or_default()
    }
    /// Waits until the backfill holds on exactly `keys` (panics after the guard).
    async fn wait_for_holds(&self, keys: &[&str]) {
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            let h = self.holds().await;
            if h == keys {
                return;
            }
            if std::time::Instant::now() > deadline {
                let status = self.cli(&["--output", "json", "status", PLAN]).await;
                panic!("the backfill never held on {keys:?}; last: {h:?}; status: {status:?}");
            }
            common::sleep_ms(100).await;
        }
    }
    async fn rows_done(&self) -> i64 {
        self.client
            .query_one(
                "SELECT rows_done FROM pgphase.backfill_progress WHERE plan_name = $1",
                &[&PLAN],
            )
            .await
            .unwrap()
            .get(0)
    }
    async fn events(&self, kind: &str) -> Vec<(String, String, Option<Value>)> {
        self.client
            .query(
                "SELECT actor, message, detail FROM pgphase.events WHERE plan_name = $1 AND kind = $2 ORDER BY id",
                &[&PLAN, &kind],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
    async fn standby_streaming(&self, name: &str) {
        common::wait_until(
            &self.client,
            &format!("SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming')"),
            GUARD.as_secs(),
        )
        .await;
    }
}

fn hold_key(h: &Value) -> String {
    let kind = h["kind"].as_str().unwrap_or_default();
    match h.get("standby").or(h.get("slot")).and_then(|n| n.as_str()) {
        Some(name) => format!("{kind}:{name}"),
        None => kind.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_holds_the_backfill_until_the_standby_replays() {
    let c = cluster(
        &[],
        "  backfill: { batch_size: 100, target_batch_time: 0s, max_replica_lag: 200ms }",
        Some("standby_a"),
    )
    .await;
    let standby = c.standby.as_ref().unwrap();
    c.standby_streaming("standby_a").await;
    let on_standby = common::connect(&standby.url("postgres")).await;

    c.cli(&["backfill", "pause", &c.plan_file()])
        .await
        .expect(0);
    let first = c.start();
    c.wait_for_holds(&["paused"]).await;
    // replay stops; the primary writes on (the backfill's own bookkeeping included)
    on_standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    c.client
        .batch_execute("CREATE TABLE after_the_pause (x int)")
        .await
        .unwrap();
    c.wait_for_holds(&["paused", "replica_lag:standby_a"]).await;
    c.cli(&["backfill", "resume", PLAN]).await.expect(0);
    c.wait_for_holds(&["replica_lag:standby_a"]).await;

    // what the operator sees: which standby, how far behind, since when
    let status = c.cli(&["--output", "json", "status", PLAN]).await;
    let b = &status.json()["backfill"][0];
    assert!(b["waiting_since"].is_string(), "{b}");
    let hold = &b["waiting"][0];
    assert!(hold["lag_ms"].as_u64().unwrap() > 200, "{hold}");
    assert!(hold["behind_bytes"].as_i64().unwrap() > 0, "{hold}");
    let text = c.cli(&["status", PLAN]).await;
    assert!(
        text.stdout.contains("waiting") && text.stdout.contains("standby standby_a replays"),
        "{}",
        text.stdout
    );
    let waits = c.events("backfill_waiting").await;
    let last = waits.last().expect("a wait event");
    assert_eq!(last.0, "ci", "the running command's actor");
    assert!(
        last.1.contains("standby standby_a replays") && last.1.contains("max_replica_lag 200ms"),
        "{last:?}"
    );
    // held: not one batch ran while the standby is behind
    assert_eq!(c.rows_done().await, 0);

    on_standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    first.finish(GUARD).await.expect(0);
    assert_eq!(c.rows_done().await, 2_000);
    let resumed = c.events("backfill_resumed").await;
    assert!(
        resumed.last().unwrap().1.contains("after waiting"),
        "{resumed:?}"
    );
    let controls = c.events("backfill_control").await;
    assert_eq!(
        controls
            .iter()
            .map(|(a, m, _)| format!("{a}: {m}"))
            .collect::<Vec<_>>(),
        ["ops: backfill controls: resumed"],
        "the pause came before the start: the controls row says who paused it"
    );
    // the standby has the backfilled table
    common::wait_until(
        &on_standby,
        "SELECT count(*) = 0 FROM comments WHERE body IS DISTINCT FROM contents",
        GUARD.as_secs(),
    )
    .await;
    let done = c.cli(&["--output", "json", "status", PLAN]).await.json();
    assert!(done["backfill"][0]["waiting"].is_null(), "{done}");
    assert!(done["backfill"][0]["waited_ms"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_disappears_holds_the_backfill_until_it_is_back_or_forgotten() {
    let c = cluster(
        &[],
        "  backfill: { batch_size: 100, target_batch_time: 0s }",
        Some("standby_b"),
    )
    .await;
    let standby = c.standby.as_ref().unwrap();
    c.standby_streaming("standby_b").await;

    c.cli(&["backfill", "pause", &c.plan_file()])
        .await
        .expect(0);
    let first = c.start();
    c.wait_for_holds(&["paused"]).await;

    standby.halt().unwrap();
    c.wait_for_holds(&["paused", "standby_gone:standby_b"])
        .await;
    let waits = c.events("backfill_waiting").await;
    assert!(
        waits.last().unwrap().1.contains(
            "standby standby_b was streaming when the backfill started and is not connected now"
        ),
        "{waits:?}"
    );
    // back: the hold ends by itself
    standby.start_again().unwrap();
    c.wait_for_holds(&["paused"]).await;

    // gone again, and the operator decides to go on without it
    standby.halt().unwrap();
    c.wait_for_holds(&["paused", "standby_gone:standby_b"])
        .await;
    c.cli(&["backfill", "resume", PLAN]).await.expect(0);
    c.wait_for_holds(&["standby_gone:standby_b"]).await;
    assert_eq!(c.rows_done().await, 0);
    c.cli(&["backfill", "set", PLAN, "--forget-standbys"])
        .await
        .expect(0);
    first.finish(GUARD).await.expect(0);
    assert_eq!(c.rows_done().await, 2_000);
    let controls = c.events("backfill_control").await;
    assert!(
        controls
            .last()
            .unwrap()
            .1
            .contains("forget standbys that are not connected"),
        "{controls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_slot_retaining_wal_holds_the_backfill_until_it_is_dropped() {
    let c = cluster(
        &[("wal_level", "logical")],
        "  backfill: { batch_size: 100, target_batch_time: 0s, max_slot_lag: 1MB }",
        None,
    )
    .await;
    c.cli(&["backfill", "pause", &c.plan_file()])
        .await
        .expect(0);
    let first = c.start();
    c.wait_for_holds(&["paused"]).await;
    // the pause survives the running process: killed, and started again
    first.signal(libc::SIGKILL);
    first.finish(GUARD).await;
    let second = c.start();
    common::wait_until(
        &c.client,
        "SELECT count(*) = 2 FROM pgphase.events WHERE kind = 'backfill_waiting'",
        GUARD.as_secs(),
    )
    .await;
    c.wait_for_holds(&["paused"]).await;

    // a subscriber that does not consume: its slot retains every byte written from now
    c.client
        .batch_execute(
            "SELECT pg_create_logical_replication_slot('lagging_sub', 'pgoutput');
             CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    c.wait_for_holds(&["paused", "slot_lag:lagging_sub"]).await;
    c.cli(&["backfill", "resume", PLAN]).await.expect(0);
    c.wait_for_holds(&["slot_lag:lagging_sub"]).await;
    let waits = c.events("backfill_waiting").await;
    assert!(
        waits
            .last()
            .unwrap()
            .1
            .contains("logical replication slot lagging_sub retains")
            && waits
                .last()
                .unwrap()
                .1
                .contains("more than max_slot_lag 1.0MB"),
        "{waits:?}"
    );
    assert_eq!(c.rows_done().await, 0);

    // a live limit change is picked up by the running backfill: off, then the plan's again
    c.cli(&["backfill", "set", PLAN, "--max-slot-lag", "off"])
        .await
        .expect(0);
    c.wait_for_holds(&[]).await;
    // …it may run a few batches now; the plan's limit holds it again until the drop
    c.cli(&["backfill", "set", PLAN, "--max-slot-lag", "plan"])
        .await
        .expect(0);
    c.client
        .batch_execute("SELECT pg_drop_replication_slot('lagging_sub')")
        .await
        .unwrap();
    second.finish(GUARD).await.expect(0);
    assert_eq!(c.rows_done().await, 2_000);

    // refused before anything: an unknown plan name, and nothing to set
    c.cli(&["backfill", "pause", "no-such-plan"])
        .await
        .expect(3);
    c.cli(&["backfill", "set", PLAN]).await.expect(2);
}

/// A logical subscriber in a second cluster: while its subscription is disabled, its
/// slot on the primary retains WAL and holds the backfill at `max_slot_lag`; enabled
/// again, it catches up, the hold ends, and after the backfill its copy of the table
/// equals the primary's. (DDL is not replicated: the subscriber's table has the new
/// column before `start`, as an operator of a subscriber adds it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_subscriber_that_falls_behind_holds_the_backfill_until_it_catches_up() {
    let c = cluster(
        &[("wal_level", "logical")],
        "  backfill: { batch_size: 100, target_batch_time: 0s, max_slot_lag: 1MB }",
        None,
    )
    .await;
    let subscriber = PgServer::start(&ServerOptions::default()).expect("start the subscriber");
    let sub = common::connect(&subscriber.url("postgres")).await;
    c.client
        .batch_execute("CREATE PUBLICATION comments_pub FOR TABLE comments")
        .await
        .unwrap();
    sub.batch_execute(
        "CREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint NOT NULL, user_id bigint NOT NULL,
                                contents text, created_at timestamptz NOT NULL, body text)",
    )
    .await
    .unwrap();
    sub.batch_execute(&format!(
        "CREATE SUBSCRIPTION comments_sub CONNECTION '{}' PUBLICATION comments_pub",
        c.url
    ))
    .await
    .unwrap();
    // the initial copy done, and its table-sync slots gone
    common::wait_until(
        &sub,
        "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        GUARD.as_secs(),
    )
    .await;
    common::wait_until(
        &c.client,
        "SELECT count(*) = 1 FROM pg_replication_slots",
        GUARD.as_secs(),
    )
    .await;

    c.cli(&["backfill", "pause", &c.plan_file()])
        .await
        .expect(0);
    let first = c.start();
    c.wait_for_holds(&["paused"]).await;
    // the subscriber stops applying: its slot retains every byte written from now
    sub.batch_execute("ALTER SUBSCRIPTION comments_sub DISABLE")
        .await
        .unwrap();
    c.client
        .batch_execute(
            "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g",
        )
        .await
        .unwrap();
    c.wait_for_holds(&["paused", "slot_lag:comments_sub"]).await;
    c.cli(&["backfill", "resume", PLAN]).await.expect(0);
    c.wait_for_holds(&["slot_lag:comments_sub"]).await;
    assert_eq!(c.rows_done().await, 0);

    // applying again: the slot advances at the next running-transactions record, which a
    // checkpoint writes (else the background writer's, within 15 s)
    sub.batch_execute("ALTER SUBSCRIPTION comments_sub ENABLE")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + GUARD;
    while c.holds().await == ["slot_lag:comments_sub"] && c.rows_done().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber caught up, and the backfill still holds on its slot"
        );
        c.client.batch_execute("CHECKPOINT").await.unwrap();
        common::sleep_ms(200).await;
    }
    first.finish(GUARD * 2).await.expect(0);
    assert_eq!(c.rows_done().await, 2_000);

    // the subscriber's copy equals the primary's
    let primary_rows = comment_rows(&c.client).await;
    assert_eq!(primary_rows.len(), 2_000);
    assert!(primary_rows.iter().all(|(_, a, b)| a == b));
    let deadline = std::time::Instant::now() + GUARD;
    while comment_rows(&sub).await != primary_rows {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber's copy never matched the primary's"
        );
        common::sleep_ms(100).await;
    }
    sub.batch_execute("DROP SUBSCRIPTION comments_sub")
        .await
        .unwrap();
}

/// `comments` (id, contents, body) in key order.
async fn comment_rows(client: &Client) -> Vec<(i64, Option<String>, Option<String>)> {
    client
        .query("SELECT id, contents, body FROM comments ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// `max_app_wait` and `yield_to_load` with the defaults: application sessions that wait
/// on a batch's row locks are seen (in the batch's own transaction, before it commits)
/// and counted, other busy sessions make the backfill sleep between batches, and the
/// step's event says both. The batches are made slow (1 ms per row, only inside the
/// backfill) and the application keeps updating rows of the running batch, so it keeps
/// meeting batches; its writes all succeed and none is lost, and `switch_reads`'
/// batched verification finds every row in agreement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_waiting_on_batches_is_seen_and_the_backfill_yields_to_busy_sessions() {
    const ROWS: i64 = 600;
    let c = cluster(&[], "  backfill: { batch_size: 100 }", None).await;
    c.client
        .batch_execute(&format!(
            "CREATE TABLE scores (id int PRIMARY KEY, score int NOT NULL, hits int NOT NULL DEFAULT 0);
             INSERT INTO scores SELECT g, g FROM generate_series(1, {ROWS}) g;
             CREATE FUNCTION slow_score(v int) RETURNS bigint LANGUAGE plpgsql AS
               $$ BEGIN
                    IF current_setting('pgphase.backfill', true) = 'on' THEN
                      PERFORM pg_sleep(0.001);
                    END IF;
                    RETURN v;
                  END $$;"
        ))
        .await
        .unwrap();
    let plan = c.dir.path().join("scores.yaml");
    std::fs::write(
        &plan,
        "name: scores\nsettings:\n  backfill: { batch_size: 20 }\n  contract: { evidence: off }\nchanges:\n  - change_type: { table: scores, column: score, type: bigint, using: slow_score(score) }\n",
    )
    .unwrap();
    let plan = plan.to_str().unwrap().to_string();

    // two sessions busy all along: the load the backfill yields to
    let mut busy = Vec::new();
    for _ in 0..2 {
        let s = common::connect(&c.url).await;
        busy.push(tokio::spawn(async move {
            let _ = s.batch_execute("SELECT pg_sleep(120)").await;
        }));
    }
    // the application: prepared statements on one connection, updating another column
    // (so the sync trigger leaves the row to the batch) of any of the 100 rows after the
    // last checkpoint, i.e. of the running batch, until the backfill is done
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let stop = stop.clone();
        let url = c.url.clone();
        tokio::spawn(async move {
            let a = common::connect(&url).await;
            // (not prepared: the state tables appear with the start)
            let next = "SELECT coalesce((SELECT least(rows_done + 1 + floor(random() * 100)::int, $1::int) FROM pgphase.backfill_progress WHERE plan_name = 'scores'), 1)::int4";
            let bump = a
                .prepare("UPDATE scores SET hits = hits + 1 WHERE id = $1")
                .await
                .unwrap();
            let (mut writes, mut failed) = (0i64, 0i64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id: i32 = match a.query_one(next, &[&(ROWS as i32)]).await {
                    Ok(r) => r.get(0),
                    Err(_) => 1, // the state tables do not exist before the start
                };
                match a.execute(&bump, &[&id]).await {
                    Ok(1) => writes += 1,
                    _ => failed += 1,
                }
            }
            (writes, failed)
        })
    };
    let started = c.cli(&["start", &plan, "--yes"]).await;
    assert_eq!(started.code, 0, "{}", started.stderr);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (writes, failed) = app.await.unwrap();
    assert_eq!(failed, 0, "no application write failed");
    assert!(writes > 0);
    c.client
        .batch_execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)'",
        )
        .await
        .unwrap();
    for b in busy {
        b.await.unwrap();
    }

    let steps: Vec<String> = c
        .client
        .query(
            "SELECT message FROM pgphase.events WHERE plan_name = 'scores' AND kind = 'step' AND message LIKE 'backfilled%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(steps.len(), 1, "{steps:?}");
    eprintln!("the backfill's step: {}", steps[0]);
    assert!(
        steps[0].contains("application sessions waited on") && steps[0].contains("batch(es)"),
        "{steps:?}"
    );
    assert!(steps[0].contains("to the application's load"), "{steps:?}");
    // every write kept: the old column has them all, the new one agrees on every row
    let sum: i64 = c
        .client
        .query_one("SELECT sum(hits)::int8 FROM scores", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, writes);
    let advanced = c
        .cli(&["phase", "advance", "scores", "--deployed", "v2"])
        .await;
    assert_eq!(advanced.code, 0, "{}", advanced.stderr);
    let verified: i64 = c
        .client
        .query_one(
            "SELECT count(*) FROM pgphase.events WHERE plan_name = 'scores' AND kind = 'step' AND message LIKE 'verified:%agree%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verified, 1);
    c.cli(&["phase", "rollback", "scores", "--yes"])
        .await
        .expect(0);
}
