//! Fleets on real servers: three throwaway clusters, several databases each and a
//! schema-per-tenant database, driven through the `pgphase fleet` commands as a release
//! pipeline would: waves, every gate to completed under old and new application
//! versions on a sample, a database whose table a long transaction holds, an
//! unreachable target, a fleet command killed mid-wave then run again, a fleet listed by
//! a query on a control database, SIGTERM and Ctrl-C mid-wave, and the bars on a
//! terminal.

mod common;
mod lifecycle;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::cli::{pgphase, run_guarded, Run, Running};
use common::terminal::Terminal;
use common::{connect, LockHolder, TestDb, RENAME_PLAN};
use lifecycle::{sql, App, ClientSql};
use pgphase::pgserver::{PgServer, ServerOptions};
use serde_json::Value;

const GUARD: Duration = Duration::from_secs(120);

/// Three clusters for the whole binary, started side by side.
fn servers() -> &'static [PgServer] {
    static SERVERS: OnceLock<Vec<PgServer>> = OnceLock::new();
    SERVERS.get_or_init(|| {
        std::thread::scope(|s| {
            let started: Vec<_> = (0..3)
                .map(|_| s.spawn(|| PgServer::start(&ServerOptions::default())))
                .collect();
            started
                .into_iter()
                .map(|h| h.join().unwrap().expect("start a throwaway PostgreSQL"))
                .collect()
        })
    })
}

/// A database of its own on cluster `server`, with a small comments table in each of
/// `schemas` (`public` for a database-per-tenant target).
async fn tenant_db(server: usize, schemas: &[&str]) -> TestDb {
    let db = TestDb::on(&servers()[server].url("postgres"), "").await;
    let c = db.client().await;
    for s in schemas {
        c.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE {s}.comments (
               id bigserial PRIMARY KEY, post_id bigint NOT NULL, user_id bigint NOT NULL,
               contents text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO {s}.comments (post_id, user_id, contents)
               SELECT g % 20 + 1, g % 50 + 1, 'seed ' || g FROM generate_series(1, 300) g;"
        ))
        .await
        .unwrap();
    }
    db
}

/// The rename plan, lean for tests: no evidence window before contract, small batches.
fn write_plan(dir: &Path, lock: &str) -> PathBuf {
    let path = dir.join(format!("{RENAME_PLAN}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {RENAME_PLAN}
settings:
  {lock}
  backfill: {{ batch_size: 100, target_batch_time: 0s }}
  contract: {{ evidence: off }}
changes:
  - rename_column: {{ table: comments, from: contents, to: body }}
"
        ),
    )
    .unwrap();
    path
}

/// A targets-file line for a database (optionally one schema of it).
fn target(db: &TestDb, extra: &str) -> String {
    format!("  - url: {}\n{extra}", db.url)
}

fn write_targets(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    p
}

async fn fleet(args: &[&str]) -> Run {
    run_guarded(pgphase(&[&["fleet"], args].concat()), GUARD).await
}

async fn status(plan: &Path, targets: &Path) -> Vec<Value> {
    let r = fleet(&[
        "status",
        plan.to_str().unwrap(),
        "--targets",
        targets.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    r.json()["targets"].as_array().unwrap().clone()
}

/// The application of the story against `table` (a schema-qualified name for a
/// schema-per-tenant target), writing and reading `col`.
fn app(table: &'static str, col: &'static str) -> ClientSql {
    sql(move |c, i| match i % 3 {
        0 => format!(
            "INSERT INTO {table} (post_id, user_id, {col}) VALUES ({}, {c}, '{col} {c} {i}')",
            1 + i % 20
        ),
        1 => format!(
            "UPDATE {table} SET {col} = '{col} {c} {i}' WHERE id = {} RETURNING id, {col}",
            1 + (i * 7 + c as u64) % 300
        ),
        _ => format!("SELECT id, {col} FROM {table} WHERE id = {}", 1 + i % 300),
    })
}

/// Seven targets on three clusters (one database holding two tenants' schemas), in three
/// waves, through both gates to completed with `fleet start` and `fleet advance`, under
/// the old application from before the start and the new one from the first gate on a
/// sample (the canary and one schema tenant): zero failed queries; the gate is
/// confirmed once per command for the fleet, and a repeated command changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_moves_through_every_gate_in_waves_under_old_and_new_applications() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, b1, b2, c1) = (
        tenant_db(0, &["public"]).await,
        tenant_db(0, &["public"]).await,
        tenant_db(1, &["public"]).await,
        tenant_db(1, &["public"]).await,
        tenant_db(2, &["public"]).await,
    );
    let shared = tenant_db(2, &["tenant_x", "tenant_y"]).await;
    let plan = write_plan(dir.path(), "lock_timeout: 200ms");
    let targets = write_targets(
        dir.path(),
        "targets.yaml",
        &format!(
            "targets:\n{}{}{}{}{}{}{}waves:\n  - match: {{ tier: canary }}\n  - percent: 30\n  - rest: true\nconcurrency: 3\non_error: stop\n",
            target(&a1, "    labels: { tier: canary }\n"),
            target(&a2, ""),
            target(&b1, ""),
            target(&b2, ""),
            target(&shared, "    schema: tenant_x\n"),
            target(&shared, "    schema: tenant_y\n"),
            target(&c1, ""),
        ),
    );
    let (p, t) = (plan.to_str().unwrap(), targets.to_str().unwrap());

    let sample = [(&a1.url, "comments"), (&shared.url, "tenant_x.comments")];
    let mut old = Vec::new();
    for (url, table) in sample {
        old.push(App::start(url, "app-old", &app(table, "contents"), 1).await);
    }
    let mut commands = Vec::new();

    let r = fleet(&["start", p, "--targets", t]).await;
    commands.push(r.stdout.clone());
    r.expect(0);
    assert!(
        r.stdout.contains("wave 1") && r.stdout.contains("wave 3"),
        "{r:#?}"
    );
    let st = status(&plan, &targets).await;
    assert_eq!(st.len(), 7);
    for s in &st {
        assert_eq!(s["waiting_at_gate"], "backfill", "{st:#?}");
    }
    // the schema tenants' plans are recorded under their own names in the shared database
    let names: Vec<String> = connect(&shared.url)
        .await
        .query("SELECT name FROM pgphase.plans ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names,
        [
            format!("{RENAME_PLAN}@tenant_x"),
            format!("{RENAME_PLAN}@tenant_y")
        ]
    );

    // gate 1: the new version is deployed beside the old one, then confirmed for the fleet
    let mut new = Vec::new();
    for (url, table) in sample {
        new.push(App::start(url, "app-new", &app(table, "body"), 1).await);
    }
    let r = fleet(&[
        "advance",
        p,
        "--gate",
        "backfill",
        "--deployed",
        "v2",
        "--targets",
        t,
    ])
    .await;
    commands.push(r.stdout.clone());
    r.expect(0);
    let checklist = fleet(&["checklist", p, "--targets", t]).await;
    checklist.expect(0);
    assert!(
        checklist.stdout.contains("--gate backfill --deployed REF")
            && checklist.stdout.contains("confirmed on 7/7"),
        "{checklist:#?}"
    );

    // gate 2: the old version drained, then contract on every database
    for a in old {
        a.stop().await.assert_no_failures("old", true, &commands);
    }
    let args = [
        "advance",
        p,
        "--gate",
        "switch_reads",
        "--deployed",
        "v2",
        "--targets",
        t,
        "--yes",
    ];
    let r = fleet(&args).await;
    commands.push(r.stdout.clone());
    r.expect(0);
    for s in status(&plan, &targets).await {
        assert_eq!(s["status"], "completed", "{s:#?}");
    }
    // the same command again (a retried pipeline job): nothing to do anywhere
    let again = fleet(&args).await;
    again.expect(0);
    assert_eq!(
        again.stdout.matches("nothing to do").count(),
        7,
        "{again:#?}"
    );

    for a in new {
        let c = a.stop().await;
        c.assert_no_failures("new", true, &commands);
        assert!(c.cached.ok() > 10, "too few new queries: {}", c.summary());
    }
    for (url, table) in [
        (&a1.url, "public.comments"),
        (&c1.url, "public.comments"),
        (&shared.url, "tenant_x.comments"),
        (&shared.url, "tenant_y.comments"),
    ] {
        let cols: Vec<String> = connect(url)
            .await
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            cols.contains(&"body".to_string()) && !cols.contains(&"contents".to_string()),
            "{table}: {cols:?}"
        );
    }
}

/// A free loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `on_error: continue`: a database whose table a long transaction holds fails its
/// start (lock_timeout, retries) and an unreachable target fails with an error naming
/// it and no password; the others reach their gate, and `fleet advance` moves them on
/// while the failed database stays behind, untouched, before the gate. `on_error: stop`:
/// the held database stops its wave, the database after it is not started; once the
/// transaction ends, the same command resumes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_follow_the_policy_and_the_same_command_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2, held, d4) = (
        tenant_db(0, &["public"]).await,
        tenant_db(1, &["public"]).await,
        tenant_db(2, &["public"]).await,
        tenant_db(2, &["public"]).await,
    );
    let plan = write_plan(dir.path(), "lock_timeout: 50ms\n  lock_retries: 2");
    let gone = format!(
        "postgres://fleet@127.0.0.1:{}/gone?connect_timeout=2",
        closed_port()
    );
    let targets = write_targets(
        dir.path(),
        "continue.yaml",
        &format!(
            "targets:\n{}{}{}  - url: {gone}\n    name: tenant-gone\nconcurrency: 2\non_error: continue\n",
            target(&d1, ""),
            target(&held, ""),
            target(&d2, ""),
        ),
    );
    let (p, t) = (plan.to_str().unwrap(), targets.to_str().unwrap());
    let lock = LockHolder::hold(&held.url, "LOCK TABLE comments IN SHARE MODE").await;

    let secret = "fleet-secret-4711";
    let mut cmd = pgphase(&["fleet", "start", p, "--targets", t]);
    cmd.env("PGPASSWORD", secret);
    let r = run_guarded(cmd, GUARD).await;
    r.expect(1);
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "{r:#?}"
    );
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}: {r:#?}"))
            .to_string()
    };
    assert!(
        line("tenant-gone").contains("FAILED") && line("tenant-gone").contains("cannot connect"),
        "{r:#?}"
    );
    assert!(line(&held.name).contains("FAILED"), "{r:#?}");
    assert!(
        line(&d1.name).contains("awaits the deploy after backfill"),
        "{r:#?}"
    );
    assert!(
        line(&d2.name).contains("awaits the deploy after backfill"),
        "{r:#?}"
    );
    assert!(r.stdout.contains("2 of 4 databases done"), "{r:#?}");

    let r = fleet(&[
        "advance",
        p,
        "--gate",
        "backfill",
        "--deployed",
        "v2",
        "--targets",
        t,
    ])
    .await;
    r.expect(1);
    let st = status(&plan, &targets).await;
    let of = |db: &TestDb| {
        st.iter()
            .find(|s| s["target"].as_str().unwrap().ends_with(&db.name))
            .unwrap()
            .clone()
    };
    assert_eq!(of(&d1)["waiting_at_gate"], "switch_reads", "{st:#?}");
    assert_eq!(of(&d2)["waiting_at_gate"], "switch_reads", "{st:#?}");
    // never past a gate whose deploy it did not reach: still failed before it, nothing confirmed
    assert_eq!(of(&held)["status"], "failed", "{st:#?}");
    assert_eq!(
        of(&held)["gates_confirmed"],
        serde_json::json!([]),
        "{st:#?}"
    );
    let gone_status = st.iter().find(|s| s["target"] == "tenant-gone").unwrap();
    assert_eq!(gone_status["status"], "unreachable");

    // on_error: stop, one at a time: the held database stops the wave before d4
    let stop = write_targets(
        dir.path(),
        "stop.yaml",
        &format!(
            "targets:\n{}{}concurrency: 1\non_error: stop\n",
            target(&held, ""),
            target(&d4, "")
        ),
    );
    let s = stop.to_str().unwrap();
    let r = fleet(&["start", p, "--targets", s]).await;
    r.expect(1);
    assert!(r.stdout.contains("skipped"), "{r:#?}");
    let st = status(&plan, &stop).await;
    assert_eq!(st[1]["status"], "not_started", "{st:#?}");

    lock.release().await;
    let r = fleet(&["start", p, "--targets", s]).await;
    r.expect(0);
    for s in status(&plan, &stop).await {
        assert_eq!(s["waiting_at_gate"], "backfill", "{s:#?}");
    }
}

/// A fleet start killed (SIGKILL) in the middle of its wave, two databases at a time:
/// the same command again resumes each database from its own state and brings all to
/// the first gate. Then `fleet rollback` (no `--to`: every database waits at the same
/// gate) takes every database, two schema tenants of one database among them, back to
/// before the plan, and again does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_command_killed_mid_wave_resumes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = Vec::new();
    for s in [0, 1, 2] {
        dbs.push(tenant_db(s, &["public"]).await);
    }
    let shared = tenant_db(0, &["tenant_p", "tenant_q"]).await;
    let plan = write_plan(dir.path(), "lock_timeout: 200ms");
    let mut lines: String = dbs.iter().map(|d| target(d, "")).collect();
    lines.push_str(&target(&shared, "    schema: tenant_p\n"));
    lines.push_str(&target(&shared, "    schema: tenant_q\n"));
    dbs.push(shared);
    let targets = write_targets(
        dir.path(),
        "targets.yaml",
        &format!("targets:\n{lines}concurrency: 2\n"),
    );
    let (p, t) = (plan.to_str().unwrap(), targets.to_str().unwrap());
    let mut cmd = pgphase(&["fleet", "start", p, "--targets", t]);
    cmd.env("PGPHASE_FAILPOINT", "kill:backfill.1");
    let r = run_guarded(cmd, GUARD).await;
    assert_eq!(r.code, 128 + libc::SIGKILL, "{r:#?}");
    let st = status(&plan, &targets).await;
    assert!(
        st.iter().all(|s| s["waiting_at_gate"].is_null()),
        "killed before any database reached its gate: {st:#?}"
    );
    // the killed process's sessions are gone before the plans' locks are asked for again
    for d in &dbs {
        common::wait_until(
            &d.client().await,
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'pgphase%'",
            60,
        )
        .await;
    }
    let r = fleet(&["start", p, "--targets", t]).await;
    r.expect(0);
    for s in status(&plan, &targets).await {
        assert_eq!(s["waiting_at_gate"], "backfill", "{s:#?}");
    }

    let r = fleet(&["rollback", p, "--targets", t, "--yes"]).await;
    r.expect(0);
    for s in status(&plan, &targets).await {
        assert_eq!(s["status"], "rolled_back", "{s:#?}");
    }
    let shared = connect(&dbs[3].url).await;
    let left: i64 = shared
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('tenant_p.comments'::regclass, 'tenant_q.comments'::regclass) AND attname = 'body' AND NOT attisdropped",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the tenants' new columns were not rolled back");
    fleet(&["rollback", p, "--targets", t, "--yes"])
        .await
        .expect(0);
}

/// A fleet listed by `--targets-from-query` on a control database (the server's
/// `postgres`, given as every command's database is): each row's database reached with
/// the control connection, a `tier` column as a label that a `match` wave of a targets
/// file without `targets` takes; `start`, `status`, `checklist` and `rollback` on it.
/// Refused before anything runs: no rows, a first column that is not a name, a database
/// twice, a statement that is not a SELECT, a write inside one (read-only transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_listed_by_a_query_on_a_control_database() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = [
        tenant_db(1, &["public"]).await,
        tenant_db(1, &["public"]).await,
        tenant_db(1, &["public"]).await,
    ];
    let control = servers()[1].url("postgres");
    let plan = write_plan(dir.path(), "lock_timeout: 200ms");
    let waves = write_targets(
        dir.path(),
        "waves.yaml",
        "waves:\n  - match: { tier: canary }\n  - rest: true\nconcurrency: 2\n",
    );
    let names = dbs
        .iter()
        .map(|d| format!("'{}'", d.name))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT datname, CASE WHEN datname = '{}' THEN 'canary' END AS tier FROM pg_database WHERE datname IN ({names}) ORDER BY datname",
        dbs[2].name
    );
    let (p, w) = (plan.to_str().unwrap(), waves.to_str().unwrap());
    let secret = "query-secret-4711";
    let by_query = |args: &[&str]| {
        let mut cmd = pgphase(
            &[
                &["--database-url", &control, "fleet"],
                args,
                &["--targets", w, "--targets-from-query", &query],
            ]
            .concat(),
        );
        cmd.env("PGPASSWORD", secret);
        run_guarded(cmd, GUARD)
    };

    let r = by_query(&["start", p]).await;
    r.expect(0);
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let canary = format!("wave 1  127.0.0.1:{}/{}", servers()[1].port(), dbs[2].name);
    assert!(r.stdout.contains(&canary), "{r:#?}");
    assert!(r.stdout.contains("3 of 3 databases done"), "{r:#?}");
    for d in &dbs {
        let st = connect(&d.url)
            .await
            .query_one("SELECT status FROM pgphase.plans", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        assert_eq!(st, "awaiting_deploy", "{}", d.name);
    }

    // the same query through libpq's variables instead of --database-url
    let mut cmd = pgphase(&[
        "fleet",
        "status",
        p,
        "--targets-from-query",
        &query,
        "--output",
        "json",
    ]);
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", servers()[1].port().to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres");
    let st = run_guarded(cmd, GUARD).await;
    st.expect(0);
    let targets = st.json()["targets"].as_array().unwrap().clone();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[2]["labels"]["tier"], "canary", "{targets:#?}");
    assert!(targets[0]["labels"].get("tier").is_none(), "{targets:#?}");
    for t in &targets {
        assert_eq!(t["waiting_at_gate"], "backfill", "{t:#?}");
    }

    let c = by_query(&["checklist", p]).await;
    c.expect(0);
    assert!(
        c.stdout.contains("--targets-from-query 'SELECT datname") && c.stdout.contains("3/3"),
        "{c:#?}"
    );
    by_query(&["rollback", p, "--to", "start", "--yes"])
        .await
        .expect(0);

    // refused before anything runs, exit 2, each saying why
    for (q, why) in [
        (
            format!("SELECT datname FROM pg_database WHERE datname = 'nope_{}'", dbs[0].name),
            "returned no rows",
        ),
        (
            "SELECT oid FROM pg_database".to_string(),
            "not a database's name",
        ),
        (
            format!(
                "SELECT datname FROM pg_database, generate_series(1, 2) WHERE datname = '{}'",
                dbs[0].name
            ),
            "twice",
        ),
        (
            format!("DROP DATABASE {}", dbs[0].name),
            "must be a SELECT",
        ),
        (
            "WITH gone AS (DELETE FROM pg_class WHERE false RETURNING relname::text) SELECT * FROM gone".to_string(),
            "read-only transaction",
        ),
    ] {
        let mut cmd = pgphase(&[
            "--database-url",
            &control,
            "fleet",
            "start",
            p,
            "--targets-from-query",
            &q,
        ]);
        cmd.env("PGPASSWORD", secret);
        let r = run_guarded(cmd, GUARD).await;
        r.expect(2);
        assert!(r.stderr.contains(why) && !r.stderr.contains(secret), "{q}: {r:#?}");
    }
    // a targets file that lists targets too
    let both = write_targets(
        dir.path(),
        "both.yaml",
        &format!("targets:\n{}", target(&dbs[0], "")),
    );
    let mut cmd = pgphase(&[
        "--database-url",
        &control,
        "fleet",
        "start",
        p,
        "--targets",
        both.to_str().unwrap(),
        "--targets-from-query",
        &query,
    ]);
    cmd.env("PGPASSWORD", secret);
    let r = run_guarded(cmd, GUARD).await;
    r.expect(2);
    assert!(r.stderr.contains("lists them too"), "{r:#?}");
}

/// A plan whose expand waits on `held` for as long as a test holds its table: a long
/// `lock_timeout`, many retries.
fn held_plan(dir: &Path) -> PathBuf {
    write_plan(dir, "lock_timeout: 2s\n  lock_retries: 1000")
}

/// SIGTERM to `fleet start` while a database of its wave waits for a lock, one database
/// at a time: exit 143; the waiting database's statement cancelled and its interruption
/// recorded, the database before it at its gate, the one after it not started. Once
/// the lock is gone, the same command brings the other two to the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_wave_exits_143_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, held, d3) = (
        tenant_db(2, &["public"]).await,
        tenant_db(2, &["public"]).await,
        tenant_db(2, &["public"]).await,
    );
    let plan = held_plan(dir.path());
    let targets = write_targets(
        dir.path(),
        "targets.yaml",
        &format!(
            "targets:\n{}{}{}concurrency: 1\n",
            target(&d1, ""),
            target(&held, ""),
            target(&d3, "")
        ),
    );
    let (p, t) = (plan.to_str().unwrap(), targets.to_str().unwrap());
    let lock = LockHolder::hold(&held.url, "LOCK TABLE comments IN SHARE MODE").await;
    let run = Running::spawn(pgphase(&["fleet", "start", p, "--targets", t]));
    common::wait_until(
        &held.client().await,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name LIKE 'pgphase%' AND wait_event_type = 'Lock'",
        60,
    )
    .await;
    run.signal(libc::SIGTERM);
    let r = run.finish(GUARD).await;
    r.expect(143);
    let line = |db: &TestDb| {
        r.stdout
            .lines()
            .find(|l| l.contains(&db.name))
            .unwrap_or_else(|| panic!("no line for {}: {r:#?}", db.name))
            .to_string()
    };
    assert!(
        line(&d1).contains("awaits the deploy after backfill"),
        "{r:#?}"
    );
    assert!(
        line(&held).contains("INTERRUPTED: interrupted by SIGTERM")
            && line(&held).contains("the statement running on the server was cancelled"),
        "{r:#?}"
    );
    assert!(
        line(&d3).contains("skipped: not started: stopped by SIGTERM"),
        "{r:#?}"
    );
    let c = held.client().await;
    let recorded: i64 = c
        .query_one(
            "SELECT count(*) FROM pgphase.events WHERE kind = 'interrupted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1);
    let st = status(&plan, &targets).await;
    assert_eq!(st[2]["status"], "not_started", "{st:#?}");

    lock.release().await;
    fleet(&["start", p, "--targets", t]).await.expect(0);
    for s in status(&plan, &targets).await {
        assert_eq!(s["waiting_at_gate"], "backfill", "{s:#?}");
    }
}

/// `fleet start` on a terminal (tmux): a bar for the wave and one per database running
/// (its step), each database's result a line above them. Ctrl-C while one database
/// waits for a lock: exit 130, that database interrupted. The same command again, the
/// lock gone: exit 0, both at their gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_terminal_a_bar_per_database_and_one_for_the_wave_and_ctrl_c_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, held) = (
        tenant_db(0, &["public"]).await,
        tenant_db(0, &["public"]).await,
    );
    let plan = held_plan(dir.path());
    let targets = write_targets(
        dir.path(),
        "targets.yaml",
        &format!(
            "targets:\n{}{}concurrency: 2\n",
            target(&d1, ""),
            target(&held, ""),
        ),
    );
    let (p, t) = (plan.to_str().unwrap(), targets.to_str().unwrap());
    let lock = LockHolder::hold(&held.url, "LOCK TABLE comments IN SHARE MODE").await;
    let args = ["fleet", "start", p, "--targets", t];
    let term = Terminal::spawn(200, 30, &args, &[]);
    let screen = term
        .wait_for("the wave's bar and the held database's bar", |s| {
            s.contains("wave 1/1")
                && s.contains("1/2 databases")
                && s.lines()
                    .any(|l| l.contains(&held.name) && l.contains("[expand "))
        })
        .await;
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&d1.name) && l.contains("awaits the deploy after backfill")),
        "{screen}"
    );
    term.keys(&["C-c"]);
    assert_eq!(term.wait_exit().await, 130, "{}", term.screen());
    let screen = term.screen();
    assert!(screen.contains("interrupted by SIGINT"), "{screen}");
    assert!(screen.contains("1 of 2 databases done"), "{screen}");

    lock.release().await;
    let again = Terminal::spawn(200, 30, &args, &[]);
    assert_eq!(again.wait_exit().await, 0, "{}", again.screen());
    let screen = again.screen();
    assert!(screen.contains("2 of 2 databases done"), "{screen}");
    for s in status(&plan, &targets).await {
        assert_eq!(s["waiting_at_gate"], "backfill", "{s:#?}");
    }
}

/// Samples how many sessions pgphase has open on the three clusters together (by
/// `application_name`) until stopped; returns the largest count seen.
fn sample_connections(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for s in servers() {
            clients.push(connect(&s.url("postgres")).await);
        }
        let mut max = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut n = 0;
            for c in &clients {
                n += c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgphase%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
            }
            max = max.max(n);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        max
    })
}

/// The measured run of docs/fleets.md: 36 databases on the three clusters (12 each),
/// `fleet start` then both `fleet advance`s to completed, at concurrency 1, 4 and 8;
/// prints the time of each command and the most pgphase sessions seen open at once.
/// A measurement, not a check: `cargo test --profile test-release --test fleet -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn measure_a_fleet_of_36_databases() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), "lock_timeout: 200ms");
    let p = plan.to_str().unwrap();
    for concurrency in [1, 4, 8] {
        let mut lines = String::new();
        for i in 0..36 {
            lines.push_str(&target(&tenant_db(i % 3, &["public"]).await, ""));
        }
        let targets = write_targets(
            dir.path(),
            &format!("c{concurrency}.yaml"),
            &format!("targets:\n{lines}concurrency: {concurrency}\n"),
        );
        let t = targets.to_str().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = sample_connections(stop.clone());
        let mut times = Vec::new();
        for args in [
            vec!["start", p, "--targets", t],
            vec![
                "advance",
                p,
                "--gate",
                "backfill",
                "--deployed",
                "v2",
                "--targets",
                t,
            ],
            vec![
                "advance",
                p,
                "--gate",
                "switch_reads",
                "--deployed",
                "v2",
                "--targets",
                t,
                "--yes",
            ],
        ] {
            let t0 = std::time::Instant::now();
            fleet(&[&args[..], &["--quiet"]].concat()).await.expect(0);
            times.push(t0.elapsed().as_secs_f64());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let max = sampler.await.unwrap();
        eprintln!(
            "fleet of 36 databases, concurrency {concurrency}: start {:.1} s, advance backfill {:.1} s, advance switch_reads (contract) {:.1} s, total {:.1} s; at most {max} pgphase sessions open at once",
            times[0],
            times[1],
            times[2],
            times.iter().sum::<f64>()
        );
    }
}
