//! pgphase's own connections against what production servers and networks do: a
//! connection pooler in front of it, timeouts set on the role or database, a lost
//! plan lock, a server that accepts TCP and never answers, a server restart mid-command.
//! Real PostgreSQL and a real PgBouncer (Debian's `pgbouncer`; `.ci/run` installs it).

mod common;

use common::cli::{pgphase, pgphase_on, run_guarded, Running};
use common::*;
use pgphase::pgserver::{BouncerOptions, PgBouncer, PgServer, PoolMode, ServerOptions};
use pgphase::state::store;
use std::time::Duration;

/// Against hangs only: every command here ends in seconds.
const GUARD: Duration = Duration::from_secs(120);

/// A PgBouncer in `mode` in front of the test server.
fn bouncer(db: &TestDb, mode: PoolMode) -> PgBouncer {
    let port = url::Url::parse(&db.url).unwrap().port().unwrap();
    PgBouncer::start(
        port,
        &BouncerOptions {
            pool_mode: mode,
            ..BouncerOptions::default()
        },
    )
    .expect("PgBouncer (apt-get install pgbouncer) in front of the test server")
}

async fn pgphase_schema_exists(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT to_regnamespace('pgphase') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

/// Through PgBouncer in transaction mode pgphase used to fail halfway (`prepared
/// statement "s1" already exists`, after creating its schema); now every command that
/// changes a plan refuses at once, naming the cause and the fix, and nothing changes —
/// not even the `pgphase` schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_pooling_is_refused_before_anything_changes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 500).await;
    let before = schema_of(&client, "comments").await;
    let pool = bouncer(&db, PoolMode::Transaction);
    let url = pool.url("postgres", &db.name);
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    for args in [
        vec!["start", plan, "--yes"],
        vec!["phase", "advance", RENAME_PLAN, "--deployed", "v2", "--yes"],
        vec!["phase", "rollback", RENAME_PLAN, "--yes"],
    ] {
        let r = run_guarded(pgphase_on(&url, &args), GUARD).await;
        r.expect(3);
        assert!(
            r.stderr
                .contains("connection pooler in transaction (or statement) pooling mode")
                && r.stderr.contains("same server session")
                && r.stderr.contains("nothing was changed")
                && r.stderr.contains("pool_mode = session"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!pgphase_schema_exists(&client).await);
    assert_eq!(schema_of(&client, "comments").await, before);
}

/// Through PgBouncer in session mode (one server session per client connection) a
/// whole plan runs: start, both gates, completed; `status` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_pooling_runs_a_whole_plan() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 2_000).await;
    let pool = bouncer(&db, PoolMode::Session);
    let url = pool.url("postgres", &db.name);
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    for args in [
        vec!["start", plan, "--yes"],
        vec![
            "phase",
            "advance",
            RENAME_PLAN,
            "--gate",
            "backfill",
            "--deployed",
            "v2",
        ],
        vec![
            "phase",
            "advance",
            RENAME_PLAN,
            "--gate",
            "switch_reads",
            "--deployed",
            "v2-drained",
            "--yes",
        ],
    ] {
        run_guarded(pgphase_on(&url, &args), GUARD).await.expect(0);
    }
    let r = run_guarded(
        pgphase_on(&url, &["status", RENAME_PLAN, "--output", "json"]),
        GUARD,
    )
    .await;
    r.expect(0);
    assert_eq!(r.json()["status"], "completed", "{}", r.stdout);
    let (cat, _) = schema_of(&client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("contents").is_none() && t.column("body").is_some_and(|c| c.not_null));
}

/// `statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`,
/// `idle_session_timeout` (PostgreSQL 14+) and `transaction_timeout` (17+) of 100 ms on
/// the database: pgphase's own
/// statements run under its own limits and the plan finishes. Every long statement of
/// this plan takes longer than 100 ms (its expressions call a function that sleeps):
/// the probe of the forward expression, the backfill batch, the switch_reads verify;
/// and the control connection idles longer than that while they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_of_the_database_do_not_stop_a_plan() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE scores (id int PRIMARY KEY, score int NOT NULL);
             INSERT INTO scores SELECT g, g % 100 FROM generate_series(1, 400) g;
             CREATE FUNCTION slow_numeric(v int) RETURNS numeric LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.0005); RETURN v::numeric; END $$;",
        )
        .await
        .unwrap();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let mut settings = vec![
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
    ];
    if version >= 140000 {
        settings.push("idle_session_timeout");
    }
    if version >= 170000 {
        settings.push("transaction_timeout");
    }
    for s in &settings {
        client
            .batch_execute(&format!("ALTER DATABASE {} SET {s} = '100ms'", db.name))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("scores.yaml");
    std::fs::write(
        &plan,
        "name: scores\nsettings:\n  lock_timeout: 500ms\n  backfill: { batch_size: 400, target_batch_time: 0s }\nchanges:\n  - change_type: { table: scores, column: score, type: numeric, using: slow_numeric(score), reverse: round(score)::int }\n",
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    for args in [
        vec!["start", plan, "--yes"],
        vec!["phase", "advance", "scores", "--deployed", "v2"],
        vec![
            "phase",
            "advance",
            "scores",
            "--deployed",
            "v2-drained",
            "--yes",
        ],
    ] {
        let r = run_guarded(pgphase_on(&db.url, &args), GUARD).await;
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let typ: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'scores'::regclass AND attname = 'score'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(typ, "numeric");
    // the settings really were in force for other sessions
    let fresh = db.client().await;
    let st: String = fresh
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "100ms");
}

/// The plan's lock lives on the control connection, which idles while the work
/// connection runs a long step. With `idle_session_timeout` on the database the server
/// used to close it: the lock went with it, and a second operator's `start` went ahead
/// while the first was still backfilling. pgphase turns the timeout off for its own
/// sessions: the second operator is refused, the first finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_session_timeout_cannot_take_the_plan_lock_away() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    if version < 140000 {
        eprintln!("idle_session_timeout is PostgreSQL 14+: nothing to test on {version}");
        return;
    }
    rich_comments(&client, 40_000).await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET idle_session_timeout = '300ms'",
            db.name
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(
        dir.path(),
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 20ms }",
    );
    let plan = plan.to_str().unwrap();
    let first = Running::spawn(pgphase_on(&db.url, &["start", plan, "--yes", "--quiet"]));
    wait_for_backfill(&client, RENAME_PLAN, 1_000).await;
    // the control connection has now been idle for far longer than 300 ms
    sleep_ms(1_000).await;
    let done = wait_for_backfill(&client, RENAME_PLAN, 0).await;
    assert!(done < 40_000, "the backfill must still be running: {done}");
    let second = run_guarded(
        pgphase_on(&db.url, &["start", plan, "--yes", "--quiet"]),
        GUARD,
    )
    .await;
    second.expect(3);
    assert!(
        second
            .stderr
            .contains("another pgphase command is working on plan"),
        "{}",
        second.stderr
    );
    let first = first.finish(GUARD).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let st = store::load_plan(&client, RENAME_PLAN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_str(), "awaiting_deploy");
}

/// An administrator terminates the session holding the plan's lock mid-backfill: the
/// command stops at once ("lost the plan lock; nothing more runs"), cancelling the
/// batch running on the work connection, instead of backfilling on unlocked; the same
/// command resumes from the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_plan_lock_stops_the_command_at_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 40_000).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(
        dir.path(),
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 20ms }",
    );
    let plan = plan.to_str().unwrap();
    let run = Running::spawn(pgphase_on(&db.url, &["start", plan, "--yes", "--quiet"]));
    wait_for_backfill(&client, RENAME_PLAN, 2_000).await;
    let terminated: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
              WHERE locktype = 'advisory' AND classid = $1::int8::oid AND objid = $2::int8::oid
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[
                &(store::LOCK_CLASS as i64),
                &(store::lock_key(RENAME_PLAN) as i64),
            ],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1, "the control connection holds the lock");
    let r = run.finish(GUARD).await;
    r.expect(1);
    assert!(
        r.stderr.contains("lost the plan lock")
            && r.stderr.contains("nothing more runs")
            && r.stderr.contains("during phase backfill, step 1/")
            && r.stderr.contains("was cancelled")
            && r.stderr.contains(&format!("`pgphase start {plan}`")),
        "{}",
        r.stderr
    );
    // it stopped: the backfill did not run on to its end, and nothing of it is left
    let p = store::progress(&client, RENAME_PLAN).await.unwrap()[0].clone();
    assert!(p.finished_at.is_none() && p.rows_done < 40_000, "{p:?}");
    wait_until(
        &client,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
           WHERE application_name = 'pgphase' AND datname = current_database())",
        10,
    )
    .await;
    let r = run_guarded(
        pgphase_on(&db.url, &["start", plan, "--yes", "--quiet"]),
        GUARD,
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = store::progress(&client, RENAME_PLAN).await.unwrap()[0].clone();
    assert_eq!((p.rows_done, p.batches), (40_000, 80), "no batch twice");
}

/// A server that accepts TCP connections and never answers (a hung server, a
/// blackholed proxy): every command gives up after `connect_timeout`, from the URL, a
/// `key=value` string or `PGCONNECT_TIMEOUT`, instead of hanging forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_never_answers_times_out() {
    // never accepted: the kernel completes the TCP handshake, nobody answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/app?connect_timeout=2");
    let keywords = format!("host=127.0.0.1 port={port} user=app dbname=app");
    let mut by_env = pgphase_on(&keywords, &["start", plan, "--yes"]);
    by_env.env("PGCONNECT_TIMEOUT", "2");
    for cmd in [
        pgphase_on(&url, &["status"]),
        pgphase_on(&url, &["start", plan, "--yes"]),
        by_env,
    ] {
        let r = run_guarded(cmd, GUARD).await;
        r.expect(1);
        assert!(
            r.stderr.contains(&format!(
                "cannot connect to postgres://app@127.0.0.1:{port}/app"
            )) && r.stderr.contains("no answer within 2 s (connect_timeout"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("s3cret"));
    }
    drop(silent);
    // the usage error for a bad value names it
    let r = run_guarded(
        pgphase(&["--database-url", &format!("{url}x"), "status"]),
        GUARD,
    )
    .await;
    r.expect(2);
    assert!(
        r.stderr
            .contains("invalid integer value \"2x\" for connection option \"connect_timeout\""),
        "{}",
        r.stderr
    );
}

/// The server restarts (an operator, a failover) in the middle of a backfill: the error
/// names the step that was running and the command that resumes, although the state
/// tables cannot be written at that moment; that command then finishes the backfill.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_mid_backfill_names_the_step_and_the_resume_command() {
    let server = tokio::task::spawn_blocking(|| PgServer::start(&ServerOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let url = server.url("postgres");
    let client = connect(&url).await;
    rich_comments(&client, 40_000).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(
        dir.path(),
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 20ms }",
    );
    let plan = plan.to_str().unwrap().to_string();
    let run = Running::spawn(pgphase_on(&url, &["start", &plan, "--yes", "--quiet"]));
    wait_for_backfill(&client, RENAME_PLAN, 2_000).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    let r = run.finish(GUARD).await;
    r.expect(1);
    assert!(
        r.stderr.contains("phase backfill, step 1/")
            && r.stderr.contains(&format!("`pgphase start {plan}`")),
        "{}",
        r.stderr
    );
    let r = run_guarded(
        pgphase_on(&url, &["start", &plan, "--yes", "--quiet"]),
        GUARD,
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let client = connect(&url).await;
    let p = store::progress(&client, RENAME_PLAN).await.unwrap()[0].clone();
    assert_eq!(p.rows_done, 40_000, "{p:?}");
    drop(server);
}
