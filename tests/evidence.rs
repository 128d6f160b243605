//! Evidence before contract, on real PostgreSQL servers: one started with
//! `shared_preload_libraries = 'pg_stat_statements'` (and the extension created in
//! each test's database), and the harness's plain one for the degraded behaviour. The
//! old application is a caching prepared-statement client like JDBC or pgx
//! (`lifecycle::driver`), still running the old version's statements at the drain gate.

mod common;
mod lifecycle;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::cli::{pgphase_on, run, Run};
use common::*;
use lifecycle::driver::{Conn, Protocol};
use pgphase::pgserver::{PgServer, ServerOptions};
use pgphase::state::store;
use tokio_postgres::Client;

static PSS: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// A database on the server with pg_stat_statements loaded, the extension created.
async fn db_with_statements() -> TestDb {
    let server = PSS.get_or_init(|| {
        PgServer::start(&ServerOptions {
            extra_conf: vec![(
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            )],
            ..ServerOptions::default()
        })
        .map_err(|e| format!("{e:#}"))
    });
    let admin = match server {
        Ok(s) => s.url("postgres"),
        Err(e) => panic!("cannot start PostgreSQL with pg_stat_statements: {e}"),
    };
    let db = TestDb::on(&admin, "").await;
    db.client()
        .await
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    db
}

const OLD_READ: &str = "SELECT id, contents FROM comments WHERE id = 1";

/// A small comments table, and a login role for the old application (`<db>_old`) with
/// DML on it; returns that role's URL.
async fn setup(db: &TestDb) -> String {
    let role = format!("{}_old", db.name);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE comments (id bigserial PRIMARY KEY, contents text NOT NULL DEFAULT '');
             INSERT INTO comments (contents) SELECT 'c' || g FROM generate_series(1, 50) g;
             CREATE ROLE {role} LOGIN;
             GRANT SELECT, INSERT, UPDATE, DELETE ON comments TO {role};"
        ))
        .await
        .unwrap();
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_username(&role).unwrap();
    u.to_string()
}

/// Starts the rename plan and confirms its first gate: the plan waits at the drain
/// gate (before contract), where the first snapshot is taken.
async fn to_drain_gate(db: &TestDb) {
    to_drain_gate_with(db, EXACT).await
}

/// Settings that count every call since the previous check, however old it is (no
/// fresh window), so that the tests can add the calls up exactly.
const EXACT: &str = "  lock_timeout: 500ms\n  contract: { evidence_window: 0s }";

/// [`to_drain_gate`] with the plan's `settings:` lines.
async fn to_drain_gate_with(db: &TestDb, settings: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_rename_plan(dir.path(), settings);
    let file = file.to_str().unwrap();
    cli(db, &["start", file, "--yes"]).await.expect(0);
    cli(
        db,
        &[
            "phase",
            "advance",
            RENAME_PLAN,
            "--gate",
            "backfill",
            "--deployed",
            "v2",
        ],
    )
    .await
    .expect(0);
}

async fn cli(db: &TestDb, args: &[&str]) -> Run {
    let mut full = vec!["--actor", "alice"];
    full.extend_from_slice(args);
    run(pgphase_on(&db.url, &full)).await
}

async fn advance_contract(db: &TestDb, extra: &[&str]) -> Run {
    let mut args = vec![
        "phase",
        "advance",
        RENAME_PLAN,
        "--gate",
        "switch_reads",
        "--deployed",
        "v2-drained",
        "--yes",
    ];
    args.extend_from_slice(extra);
    cli(db, &args).await
}

/// The old application: one caching client running [`OLD_READ`] until stopped.
struct OldApp {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl OldApp {
    async fn start(url: &str) -> OldApp {
        let mut conn = Conn::connect(url, "app-old", Protocol::Cached)
            .await
            .unwrap();
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let task = tokio::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    match conn.run(OLD_READ).await {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    tokio::task::yield_now().await;
                }
            }
        });
        OldApp {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops and disconnects it; returns (ok, failed) and waits until its session left.
    async fn stop(self, admin: &Client) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap(); // drops the connection
        wait_until(
            admin,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'app-old')",
            60,
        )
        .await;
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// `statement run N time(s) since the last check by role ROLE`: N, for the old read.
fn calls_in(run: &Run, role: &str) -> u64 {
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("SELECT id, contents FROM comments WHERE id = $1"))
        .unwrap_or_else(|| panic!("no statement line: {run:#?}"));
    assert!(line.contains(&format!("by role {role} (mean ")), "{line}");
    line.split("statement run ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

async fn has_contents(client: &Client) -> bool {
    client
        .query_one(
            "SELECT count(*) = 1 FROM pg_attribute WHERE attrelid = 'comments'::regclass AND attname = 'contents' AND NOT attisdropped",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// An old-version client still running at the drain gate: contract is refused (exit 3,
/// nothing changed) naming its statement, the calls since the last check and its
/// role. Stopped, the retry counts only what ran since the refused attempt (the two
/// refusals add up to exactly its calls); `check-drain --wait` exits 0 once a check is
/// clean, and contract then proceeds, recorded as an `evidence` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_client_refuses_contract_until_it_stops() {
    let db = db_with_statements().await;
    let admin = db.client().await;
    let old_url = setup(&db).await;
    let role = format!("{}_old", db.name);
    to_drain_gate(&db).await;
    let app = OldApp::start(&old_url).await;
    wait_until(
        &admin,
        "SELECT coalesce(sum(calls), 0) >= 20 FROM pg_stat_statements WHERE query = 'SELECT id, contents FROM comments WHERE id = $1'",
        60,
    )
    .await;

    let first = advance_contract(&db, &[]).await;
    let total = |n: u64| {
        format!("SELECT sum(calls) > {n} FROM pg_stat_statements WHERE query = 'SELECT id, contents FROM comments WHERE id = $1'")
    };
    first.expect(3);
    assert!(
        first
            .stderr
            .contains("pgphase: refused: plan `rename-comments-contents-to-body`: something still uses what contract drops (comments.contents)"),
        "{first:#?}"
    );
    assert!(
        first.stderr.contains("time(s) since the last check"),
        "{first:#?}"
    );
    let n1 = calls_in(&first, &role);
    assert!(has_contents(&admin).await, "nothing changed");
    let st = store::load_plan(&admin, RENAME_PLAN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_str(), "awaiting_deploy");

    // the client goes on after the refusal, then stops
    wait_until(&admin, &total(n1), 60).await;
    let (ok, failed) = app.stop(&admin).await;
    assert_eq!(failed, 0, "the old client failed queries");
    // the retry counts only the calls since the refused attempt
    let second = advance_contract(&db, &[]).await;
    second.expect(3);
    let n2 = calls_in(&second, &role);
    assert!(n2 < ok, "{n2} of {ok}");
    assert_eq!(
        n1 + n2,
        ok,
        "every call counted once, across the two checks"
    );

    let drained = cli(
        &db,
        &[
            "check-drain",
            RENAME_PLAN,
            "--wait",
            "60s",
            "--interval",
            "200ms",
        ],
    )
    .await;
    drained.expect(0);
    assert!(drained.stdout.starts_with("drained: "), "{drained:#?}");

    advance_contract(&db, &[]).await.expect(0);
    assert!(!has_contents(&admin).await);
    let events = store::events(&admin, Some(RENAME_PLAN)).await.unwrap();
    let refused = events.iter().filter(|e| e.kind == "refused").count();
    assert_eq!(refused, 2, "{events:#?}");
    let ev: Vec<_> = events.iter().filter(|e| e.kind == "evidence").collect();
    assert_eq!(ev.len(), 1, "{events:#?}");
    assert_eq!(
        ev[0].message,
        "evidence before contract: nothing uses comments.contents"
    );
}

/// `check-drain --wait` exits 4 while a session of the old version sits in a
/// transaction whose last query named the column; `--force` then runs contract over a
/// statement that ran since, and records it in the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_drain_exits_4_while_used_and_force_records_the_statements() {
    let db = db_with_statements().await;
    let admin = db.client().await;
    let old_url = setup(&db).await;
    to_drain_gate(&db).await;
    let mut old = Conn::connect(&old_url, "app-old", Protocol::Cached)
        .await
        .unwrap();
    old.run("BEGIN").await.unwrap();
    old.run(OLD_READ).await.unwrap();

    let waited = cli(
        &db,
        &[
            "--output",
            "json",
            "check-drain",
            RENAME_PLAN,
            "--wait",
            "1s",
            "--interval",
            "300ms",
        ],
    )
    .await;
    waited.expect(4);
    let j = waited.json();
    assert_eq!(j["sessions"][0]["application_name"], "app-old", "{j:#}");
    assert_eq!(j["sessions"][0]["state"], "idle in transaction", "{j:#}");
    assert!(
        j["sessions"][0]["query"]
            .as_str()
            .unwrap()
            .contains("contents"),
        "{j:#}"
    );

    old.run("COMMIT").await.unwrap();
    old.run(OLD_READ).await.unwrap();
    drop(old);
    let forced = advance_contract(&db, &["--force"]).await;
    forced.expect(0);
    assert!(!has_contents(&admin).await);
    let events = store::events(&admin, Some(RENAME_PLAN)).await.unwrap();
    let ev = events
        .iter()
        .find(|e| e.kind == "evidence")
        .expect("an evidence event");
    assert!(
        ev.message
            .starts_with("evidence before contract OVERRIDDEN with --force: "),
        "{ev:#?}"
    );
    let detail = ev.detail.as_ref().unwrap();
    let stmts = detail["statements"].as_array().unwrap();
    assert!(
        stmts.iter().any(
            |s| s["query"] == "SELECT id, contents FROM comments WHERE id = $1"
                && s["calls_since"].as_i64() >= Some(1)
        ),
        "{detail:#}"
    );
}

/// A statement that names `contents` only in a string literal, or a longer
/// identifier, is not evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_or_a_longer_name_is_not_a_reference() {
    let db = db_with_statements().await;
    let old_url = setup(&db).await;
    db.client()
        .await
        .batch_execute("ALTER TABLE comments ADD COLUMN contents_v2 text")
        .await
        .unwrap();
    to_drain_gate(&db).await;
    // simple queries: pg_stat_activity keeps their literals, pg_stat_statements their comments
    let app = connect(&old_url).await;
    for _ in 0..3 {
        app.batch_execute(
            "SELECT contents_v2 FROM comments WHERE id = 1;
             SELECT id FROM comments /* contents */ WHERE id = 2;
             SELECT id FROM comments WHERE body = 'contents'",
        )
        .await
        .unwrap();
    }
    let r = cli(&db, &["check-drain", RENAME_PLAN]).await;
    r.expect(0);
    assert!(r.stdout.starts_with("drained: 0 statement(s)"), "{r:#?}");
}

/// A role that is not superuser: without `pg_read_all_stats` the other role's
/// statement and session are hidden, and the check says so (it cannot see them);
/// granted only `pg_read_all_stats`, it sees the statement, its calls and its role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_read_all_stats_is_enough_and_its_absence_is_said() {
    let db = db_with_statements().await;
    let admin = db.client().await;
    let old_url = setup(&db).await;
    to_drain_gate(&db).await;
    let watcher = format!("{}_watch", db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {watcher} LOGIN NOSUPERUSER;
             GRANT USAGE ON SCHEMA pgphase TO {watcher};
             GRANT SELECT ON ALL TABLES IN SCHEMA pgphase TO {watcher};
             GRANT INSERT ON pgphase.evidence_snapshots TO {watcher};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgphase TO {watcher};"
        ))
        .await
        .unwrap();
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_username(&watcher).unwrap();
    let watcher_url = u.to_string();
    let mut old = Conn::connect(&old_url, "app-old", Protocol::Cached)
        .await
        .unwrap();
    old.run("BEGIN").await.unwrap();
    old.run(OLD_READ).await.unwrap();

    let blind = run(pgphase_on(
        &watcher_url,
        &["--output", "json", "check-drain", RENAME_PLAN],
    ))
    .await;
    blind.expect(0);
    let limits = blind.json()["limits"].to_string();
    assert!(
        limits.contains(
            "statement(s) of other roles is hidden from this role; grant it pg_read_all_stats"
        ) && limits.contains(
            "session(s) of other roles are hidden from this role; grant it pg_read_all_stats"
        ),
        "{blind:#?}"
    );

    admin
        .batch_execute(&format!("GRANT pg_read_all_stats TO {watcher}"))
        .await
        .unwrap();
    let seen = run(pgphase_on(
        &watcher_url,
        &["--output", "json", "check-drain", RENAME_PLAN],
    ))
    .await;
    seen.expect(4);
    let j = seen.json();
    assert_eq!(j["sessions"][0]["application_name"], "app-old", "{j:#}");
    assert!(
        j["limits"].to_string().contains("statement(s) of other roles were hidden from the role of the last check (no pg_read_all_stats): their calls are counted from this check on"),
        "{j:#}"
    );
    old.run("COMMIT").await.unwrap();
    old.run(OLD_READ).await.unwrap();
    let seen = run(pgphase_on(
        &watcher_url,
        &["--output", "json", "check-drain", RENAME_PLAN],
    ))
    .await;
    seen.expect(4);
    let j = seen.json();
    assert_eq!(j["limits"], serde_json::json!([]), "{j:#}");
    let s = &j["statements"];
    assert_eq!(s.as_array().unwrap().len(), 1, "{j:#}");
    assert_eq!(
        s[0]["query"],
        "SELECT id, contents FROM comments WHERE id = $1"
    );
    assert_eq!(s[0]["role"], format!("{}_old", db.name));
    // both calls ran since the blind check; the one inside the transaction is counted
    // when its portal closes (at COMMIT, for a driver's unnamed portal), so it may show
    // only now: either way every call is counted once
    let calls = s[0]["calls_since"].as_i64();
    assert!(matches!(calls, Some(1 | 2)), "{j:#}");
}

/// Without pg_stat_statements: `plan` and the drain gate say contract is checked
/// without statements, and the check before contract still finds the old version's
/// session (its open transaction's query names the column); once it ends, contract
/// proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pg_stat_statements_sessions_are_still_checked() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let old_url = setup(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let file = file.to_str().unwrap();
    let plan = cli(&db, &["plan", file]).await;
    plan.expect(0);
    assert!(
        plan.stdout.contains("note: evidence before contract: pg_stat_statements is not installed in this database: contract will be checked with sessions and index/table usage only; install pg_stat_statements"),
        "{plan:#?}"
    );
    cli(&db, &["start", file, "--yes"]).await.expect(0);
    let gate = cli(
        &db,
        &[
            "phase",
            "advance",
            RENAME_PLAN,
            "--gate",
            "backfill",
            "--deployed",
            "v2",
        ],
    )
    .await;
    gate.expect(0);
    assert!(
        gate.stderr.contains(
            "evidence before contract: pg_stat_statements is not installed in this database"
        ),
        "{gate:#?}"
    );

    let mut old = Conn::connect(&old_url, "app-old", Protocol::Cached)
        .await
        .unwrap();
    old.run("BEGIN").await.unwrap();
    old.run(OLD_READ).await.unwrap();
    let refused = advance_contract(&db, &[]).await;
    refused.expect(3);
    assert!(
        refused.stderr.contains("session pid ")
            && refused.stderr.contains(" app-old (user ")
            && refused.stderr.contains("idle in transaction")
            && refused
                .stderr
                .contains("not checked: pg_stat_statements is not installed"),
        "{refused:#?}"
    );
    assert!(has_contents(&admin).await);

    old.run("COMMIT").await.unwrap();
    drop(old);
    wait_until(
        &admin,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'app-old')",
        60,
    )
    .await;
    advance_contract(&db, &[]).await.expect(0);
    assert!(!has_contents(&admin).await);
}

/// `settings.contract.evidence: warn`: `plan` says what will be checked, the checklist
/// has the check at the drain gate, `status` shows the latest check; contract runs over
/// a session that still names the column, and the event log records what it ignored.
/// `off`: not checked, said in the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_and_off_are_per_plan_and_the_check_shows_in_plan_checklist_and_status() {
    for mode in ["warn", "off"] {
        let db = db_with_statements().await;
        let admin = db.client().await;
        let old_url = setup(&db).await;
        let settings = format!(
            "  lock_timeout: 500ms\n  contract: {{ evidence: {mode}, evidence_window: 0s }}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = write_rename_plan(dir.path(), &settings);
        let planned = cli(&db, &["plan", file.to_str().unwrap()]).await;
        planned.expect(0);
        if mode == "warn" {
            assert!(
                planned.stdout.contains("evidence before contract: `phase advance` into contract reports and records, without refusing, statements (pg_stat_statements), sessions or index/table usage that still name comments.contents"),
                "{planned:#?}"
            );
        } else {
            assert!(
                !planned.stdout.contains("evidence before contract"),
                "{planned:#?}"
            );
        }
        to_drain_gate_with(&db, &settings).await;
        let checklist = cli(&db, &["checklist", RENAME_PLAN]).await;
        checklist.expect(0);
        assert_eq!(
            checklist
                .stdout
                .contains(&format!("pgphase check-drain {RENAME_PLAN} --wait 10m")),
            mode == "warn",
            "{checklist:#?}"
        );
        let mut old = Conn::connect(&old_url, "app-old", Protocol::Cached)
            .await
            .unwrap();
        // idle, its last query (after the gate's snapshot) naming the column
        old.run(OLD_READ).await.unwrap();
        if mode == "warn" {
            cli(&db, &["check-drain", RENAME_PLAN]).await.expect(4);
            let status = cli(&db, &["status", RENAME_PLAN]).await;
            status.expect(0);
            assert!(
                status
                    .stdout
                    .contains("  evidence before contract: STILL USED at ")
                    && status
                        .stdout
                        .contains("(check-drain): 1 statement(s), 1 session(s)"),
                "{status:#?}"
            );
            let j = cli(&db, &["--output", "json", "status", RENAME_PLAN])
                .await
                .json();
            assert_eq!(j["evidence"]["clean"], false, "{j:#}");
            old.run(OLD_READ).await.unwrap(); // and again after that check
        }
        let adv = advance_contract(&db, &[]).await;
        adv.expect(0);
        assert!(!has_contents(&admin).await);
        let events = store::events(&admin, Some(RENAME_PLAN)).await.unwrap();
        let ev = events
            .iter()
            .find(|e| e.kind == "evidence")
            .expect("an evidence event");
        let expected = match mode {
            "warn" => "evidence before contract IGNORED (settings.contract.evidence: warn): ",
            _ => "evidence before contract: not checked (settings.contract.evidence: off)",
        };
        assert!(ev.message.starts_with(expected), "{ev:#?}");
        assert!(adv.stderr.contains(expected), "{adv:#?}");
    }
}

/// The old version ran after the gate was reached (the drain), then stopped: with the
/// default window, `phase advance` watches for 12 s from a fresh snapshot instead of
/// counting the drain, and proceeds; the wait is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_before_the_check_does_not_count() {
    let db = db_with_statements().await;
    let admin = db.client().await;
    let old_url = setup(&db).await;
    to_drain_gate_with(&db, "  lock_timeout: 500ms").await;
    let app = OldApp::start(&old_url).await;
    wait_until(
        &admin,
        "SELECT coalesce(sum(calls), 0) >= 20 FROM pg_stat_statements WHERE query = 'SELECT id, contents FROM comments WHERE id = $1'",
        60,
    )
    .await;
    let (_, failed) = app.stop(&admin).await;
    assert_eq!(failed, 0);
    let adv = advance_contract(&db, &[]).await;
    adv.expect(0);
    assert!(
        adv.stderr.contains(
            "evidence before contract: watching comments.contents for 12s (no check ran since the gate was reached)"
        ),
        "{adv:#?}"
    );
    assert!(!has_contents(&admin).await);
}
