//! What production does to a migration: crashes at every step, a lock held by a long
//! transaction, a lost connection, a failed CONCURRENTLY build, heavy write load.
//! Each test injects the fault on a real Postgres and asserts the outcome.

mod common;

use common::*;
use pgphase::run::{self, Outcome};
use pgphase::state::store;
use pgphase::workload::{AppVersion, Workload};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PLAN_NAME: &str = RENAME_PLAN;

/// The rename plan with `settings`, without the check before contract: these tests
/// kill and resume every step, and that check's 12 s window before each contract would
/// double their time (tests/evidence.rs and every lifecycle test run it).
fn write_plan(dir: &tempfile::TempDir, settings: &str) -> PathBuf {
    write_rename_plan(
        dir.path(),
        &format!("{settings}\n  contract: {{ evidence: off }}"),
    )
}

fn cli(url: &str, args: &[&str], failpoint: Option<&str>) -> Command {
    let mut c = Command::new(pgphase_bin());
    c.args(["--database-url", url, "--quiet"]).args(args);
    c.env_remove("PGPHASE_FAILPOINT");
    if let Some(fp) = failpoint {
        c.env("PGPHASE_FAILPOINT", fp);
    }
    c.stdin(Stdio::null());
    c
}

async fn run_cli(url: &str, args: &[&str], failpoint: Option<&str>) -> Output {
    let mut c = cli(url, args, failpoint);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal() == Some(9)
}

async fn status_json(url: &str) -> serde_json::Value {
    let o = run_cli(url, &["status", PLAN_NAME, "--output", "json"], None).await;
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Status after a killed command: `interrupted` once the server has noticed the dead
/// session (its advisory lock goes with it).
async fn interrupted_status(url: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status_json(url).await;
        if st["interrupted"] == true || Instant::now() > deadline {
            assert_eq!(st["interrupted"], true, "status must say interrupted: {st}");
            return st;
        }
        sleep_ms(50).await;
    }
}

/// The commands of a full run, each with the failpoint names of the steps it runs.
fn commands(plan: &str) -> Vec<(Vec<String>, Vec<&'static str>)> {
    vec![
        (
            vec!["start".into(), plan.into(), "--yes".into()],
            vec![
                "expand.1",
                "dual_write.1",
                "dual_write.2",
                "backfill.1",
                "backfill.2",
                "backfill.3",
                "backfill.4",
                "backfill.5",
                "backfill.6",
            ],
        ),
        (
            vec![
                "phase".into(),
                "advance".into(),
                PLAN_NAME.into(),
                "--deployed".into(),
                "v2".into(),
                "--yes".into(),
            ],
            vec!["switch_reads.1"],
        ),
        (
            vec![
                "phase".into(),
                "advance".into(),
                PLAN_NAME.into(),
                "--deployed".into(),
                "v2-drained".into(),
                "--yes".into(),
            ],
            vec!["contract.1"],
        ),
    ]
}

/// SIGKILL before every step of every phase: status tells the truth (interrupted, with
/// the command that resumes), re-running the same command converges, the old
/// application never fails, and the end state is the complete rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_at_every_step_resumes_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        &dir,
        "  lock_timeout: 500ms\n  backfill: { batch_size: 300 }",
    );
    let plan = plan.to_str().unwrap().to_string();
    let all: Vec<&str> = commands(&plan)
        .iter()
        .flat_map(|(_, s)| s.clone())
        .collect();
    assert_eq!(
        all.len(),
        11,
        "the rename plan of rich_comments has 11 steps"
    );
    for point in all {
        let db = TestDb::new().await;
        let client = db.client().await;
        rich_comments(&client, 2_000).await;
        let wl = Workload::new(&db.url, "comments");
        wl.start_clients(AppVersion::Old, 2).await.unwrap();
        for (args, steps) in commands(&plan) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if args.contains(&"v2-drained") {
                wl.stop_clients(AppVersion::Old).await; // drained before the second gate
            }
            if steps.contains(&point) {
                let fp = format!("kill:{point}");
                let o = run_cli(&db.url, &args, Some(&fp)).await;
                assert!(
                    killed(&o),
                    "{point}: the process should have been killed: {o:?}"
                );
                let st = interrupted_status(&db.url).await;
                let next = st["next_command"].as_str().unwrap_or_default().to_string();
                assert!(
                    next.contains(args[0]),
                    "{point}: status proposes `{next}` to resume `{}`",
                    args.join(" ")
                );
            }
            let o = run_cli(&db.url, &args, None).await;
            assert!(
                o.status.success(),
                "{point}: re-running `{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        wl.stop_all().await;
        let stats = wl.stats();
        assert_eq!(stats.failed(), 0, "{point}: {:?}", stats.samples);
        let v = wl.verify("body").await.unwrap();
        assert!(v.is_clean() && v.checked > 0, "{point}: {v:?}");
        let (cat, functions) = schema_of(&client, "comments").await;
        let t = cat.tables.values().next().unwrap();
        assert!(
            t.column("contents").is_none() && t.column("body").is_some_and(|c| c.not_null),
            "{point}"
        );
        assert!(
            t.triggers.is_empty() && functions.iter().all(|f| !f.starts_with("sync_")),
            "{point}"
        );
        assert!(
            t.indexes.iter().all(|i| i.valid),
            "{point}: {:?}",
            t.indexes
        );
        let st = store::load_plan(&client, PLAN_NAME).await.unwrap().unwrap();
        assert_eq!(st.status.as_str(), "completed", "{point}");
    }
}

/// SIGKILL in the middle of a long backfill: the resumed run continues from the last
/// committed checkpoint; no batch is done twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_during_a_long_backfill_resumes_from_the_checkpoint() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 60_000).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        &dir,
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 10ms }",
    );
    let mut child = cli(&db.url, &["start", plan.to_str().unwrap(), "--yes"], None)
        .spawn()
        .unwrap();
    // wait until the backfill is well under way, then kill the process
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let done = store::progress(&client, PLAN_NAME)
            .await
            .ok()
            .and_then(|p| p.first().map(|p| p.rows_done));
        if done.is_some_and(|d| d >= 15_000) || Instant::now() > deadline {
            break done;
        }
        sleep_ms(20).await;
    };
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let at_kill = at_kill.expect("the backfill did not progress");
    let before = store::progress(&client, PLAN_NAME).await.unwrap()[0].clone();
    assert!(
        before.rows_done >= at_kill && before.rows_done < 60_000,
        "{before:?}"
    );
    assert!(before.finished_at.is_none());
    let st = interrupted_status(&db.url).await;
    assert_eq!(st["current_phase"], "backfill", "{st}");

    let o = run_cli(&db.url, &["start", plan.to_str().unwrap(), "--yes"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = store::progress(&client, PLAN_NAME).await.unwrap()[0].clone();
    assert_eq!(after.rows_done, 60_000, "{after:?}");
    assert_eq!(
        after.batches, 120,
        "every batch of 500 counted once: none redone, none skipped"
    );
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

/// A long transaction holds the table while pgphase needs ACCESS EXCLUSIVE: application
/// queries never wait longer than lock_timeout (each attempt gives up and lets them
/// through), pgphase reports whom it waits for, retries, and finishes once the blocker
/// ends. Without lock_timeout the application would queue for the blocker's 2 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_contention_never_stalls_the_application_beyond_lock_timeout() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 2_000).await;
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 3).await.unwrap();
    sleep_ms(300).await;
    let blocker = LockHolder::hold(&db.url, "SELECT count(*) FROM comments").await;
    let held_since = Instant::now();
    let s = db.session();
    let plan = rename_plan("100ms", 50, 500);
    let task = tokio::spawn(async move { run::start(&s, &plan).await });
    // once pgphase's lock request is queued behind the blocker (a kill guard against a
    // hang, not a timing expectation), hold the table 2 s more: several attempts
    let guard = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'comments'::regclass AND mode = 'AccessExclusiveLock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < guard, "pgphase never asked for the lock");
        sleep_ms(10).await;
    }
    sleep_ms(2_000).await;
    assert!(
        !task.is_finished(),
        "pgphase must wait while the blocker holds the table"
    );
    blocker.release().await;
    let held_ms = held_since.elapsed().as_millis() as u64;
    let out = task.await.unwrap().unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }));
    sleep_ms(200).await;
    wl.stop_all().await;
    let stats = wl.stats();
    assert_eq!(stats.failed(), 0, "{:?}", stats.samples);
    // The worst stall, side by side with how long the blocker held the table: behind
    // a lock request without lock_timeout, the application would have queued for all
    // of it; with it, each request gives up after 100 ms and lets the queue through.
    let worst = stats.old_max_latency_ms;
    assert!(
        worst < held_ms / 2,
        "an application query waited {worst} ms behind pgphase's lock request, while the blocker held the table {held_ms} ms"
    );
    let events = store::events(&client, Some(PLAN_NAME)).await.unwrap();
    let retries: Vec<_> = events.iter().filter(|e| e.kind == "retry").collect();
    assert!(retries.len() >= 3, "{events:#?}");
    assert!(
        retries[0].message.contains("long-transaction") && retries[0].message.contains("pid "),
        "the retry names the blocker: {}",
        retries[0].message
    );
    eprintln!(
        "worst application stall during contention: {worst} ms, {} retries",
        retries.len()
    );
}

/// The blocker never goes away: after the configured attempts pgphase gives up cleanly,
/// nothing half-done, the application unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_contention_gives_up_cleanly_after_the_configured_attempts() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 1_000).await;
    let before = schema_of(&client, "comments").await;
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    let blocker = LockHolder::hold(&db.url, "SELECT count(*) FROM comments").await;
    let err = run::start(&db.session(), &rename_plan("100ms", 3, 500))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gave up after 3 attempts") && msg.contains("long-transaction"),
        "{msg}"
    );
    assert!(msg.contains("nothing was changed by this step"), "{msg}");
    blocker.release().await;
    wl.stop_all().await;
    assert_eq!(wl.stats().failed(), 0);
    let mut after = schema_of(&client, "comments").await;
    after.1.retain(|f| before.1.contains(f));
    assert_eq!(before, after, "nothing half-done");
    let st = store::load_plan(&client, PLAN_NAME).await.unwrap().unwrap();
    assert_eq!(st.status.as_str(), "failed");
    assert!(st.last_error.unwrap().contains("gave up"));
}

/// Another session terminates pgphase's backends mid-backfill: a clear error, the state
/// says where it stopped, and the same command resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_connection_mid_backfill_is_resumable() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 40_000).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        &dir,
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 10ms }",
    );
    let child = cli(&db.url, &["start", plan.to_str().unwrap(), "--yes"], None)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        let done = store::progress(&client, PLAN_NAME)
            .await
            .ok()
            .and_then(|p| p.first().map(|p| p.rows_done));
        if done.is_some_and(|d| d >= 5_000) {
            break;
        }
        sleep_ms(20).await;
    }
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgphase' AND datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a lost connection is a failure (exit 1): {o:?}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("terminat") || stderr.contains("connection"),
        "a clear error: {stderr}"
    );
    let st = status_json(&db.url).await;
    assert!(
        st["status"] == "failed" || st["interrupted"] == true,
        "{st}"
    );
    let o = run_cli(&db.url, &["start", plan.to_str().unwrap(), "--yes"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = store::progress(&client, PLAN_NAME).await.unwrap()[0].clone();
    assert_eq!(p.rows_done, 40_000);
    assert_eq!(p.batches, 80);
}

/// A unique index built CONCURRENTLY on duplicate data fails: the invalid index is
/// removed at once; one left behind by a crash is detected, dropped and rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_concurrent_index_build_never_leaves_an_invalid_index() {
    use pgphase::exec::{run_step, CheckpointKey, Silent, StepSettings};
    use pgphase::program::{Action, LockLevel, Step};
    use pgphase::sql::QualifiedName;
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g % 10 FROM generate_series(1, 1000) g;")
        .await
        .unwrap();
    let index = QualifiedName::new("public", "t_v_key");
    let step = Step {
        description: "unique index on v".into(),
        action: Action::CreateIndexConcurrently {
            index: index.clone(),
            sql: "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON public.t (v)".into(),
        },
        lock: LockLevel::ShareUpdateExclusive,
        table: Some(QualifiedName::new("public", "t")),
        changes_row_type: false,
    };
    let settings = StepSettings {
        lock_timeout: Duration::from_millis(500),
        lock_retries: 3,
        batch_pause: Duration::ZERO,
        target_batch_time: Duration::ZERO,
        ..StepSettings::default()
    };
    let cp = CheckpointKey {
        plan: "x".into(),
        phase: 0,
        step: 0,
        record_done: false,
    };
    let mut work = db.client().await;
    let count_index = || async {
        client
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 't_v_key'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let err = run_step(&mut work, &step, &settings, &cp, &Silent)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("could not create unique index"),
        "{err}"
    );
    assert_eq!(
        count_index().await,
        0,
        "the failed build's invalid index was removed"
    );

    // A crash after a failed build leaves an invalid index behind.
    let _ = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON public.t (v)")
        .await
        .unwrap_err();
    let invalid: bool = client
        .query_one(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 't_v_key'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(invalid);
    client.batch_execute("UPDATE t SET v = id").await.unwrap();
    run_step(&mut work, &step, &settings, &cp, &Silent)
        .await
        .unwrap();
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v_key'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid, "the invalid index was dropped and rebuilt");
}

/// Writers hammering the table during the backfill cannot keep it from finishing: rows
/// they write are synced by the triggers and never become work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_finishes_under_heavy_write_load() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 30_000).await;
    let wl = Workload::new(&db.url, "comments").with_pause(Duration::ZERO);
    wl.start_clients(AppVersion::Old, 6).await.unwrap();
    sleep_ms(300).await;
    let out = run::start(&db.session(), &rename_plan("500ms", 30, 1000))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }));
    wl.stop_all().await;
    let stats = wl.stats();
    assert_eq!(stats.failed(), 0, "{:?}", stats.samples);
    let p = store::progress(&client, PLAN_NAME).await.unwrap()[0].clone();
    // it visited what existed when each batch ran, not an ever-growing table
    let rows: i64 = client
        .query_one("SELECT count(*) FROM comments", &[])
        .await
        .unwrap()
        .get(0);
    assert!(p.rows_done <= rows, "{p:?}");
    let mismatched: i64 = client
        .query_one(
            "SELECT count(*) FROM comments WHERE body IS DISTINCT FROM contents",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0);
    eprintln!(
        "backfill under load: {} rows visited, {} application writes/reads ok",
        p.rows_done,
        stats.ok()
    );
}

/// The plan lock is per database: a session holding the same plan's lock in another
/// database on the same server does not hide that this plan's run was interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reads_the_plan_lock_of_its_own_database_only() {
    let other = TestDb::new().await;
    let other_client = other.client().await;
    other_client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&store::LOCK_CLASS, &store::lock_key(PLAN_NAME)],
        )
        .await
        .unwrap();
    let db = TestDb::new().await;
    rich_comments(&db.client().await, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(&dir, "  lock_timeout: 500ms");
    let o = run_cli(
        &db.url,
        &["start", plan.to_str().unwrap(), "--yes"],
        Some("kill:dual_write.1"),
    )
    .await;
    assert!(killed(&o));
    interrupted_status(&db.url).await;
    // and the other database's holder does not block this database's resume
    let o = run_cli(&db.url, &["start", plan.to_str().unwrap(), "--yes"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
