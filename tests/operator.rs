//! The operator's view, end to end on real PostgreSQL through the binary: `check`
//! (exit 0 / 4), deploy fences against the workload's real `comments-api-old`
//! sessions, the audit log, the release checklist ticked from the database, the status
//! dashboard's rate / ETA / last gate, and `status --watch` without a terminal and on one
//! (tmux).

mod common;

use common::cli::{pgphase, run, Run};

use std::path::Path;
use std::process::Stdio;

use pgphase::pgserver::PoolMode;
use pgphase::state::store;
use pgphase::workload::{AppVersion, Workload};
use serde_json::Value;
use tokio_postgres::Client;

const PLAN: &str = "rename-comments-contents-to-body";
const PLAN_FILE: &str = "plans/rename-comments-contents-to-body.yaml";

async fn run_on(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--database-url", url, "--actor", "alice", "--quiet"];
    full.extend_from_slice(args);
    run(pgphase(&full)).await
}

async fn column_exists(client: &Client, column: &str) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.comments'::regclass
                AND attname = $1 AND attnum > 0 AND NOT attisdropped)",
            &[&column],
        )
        .await
        .unwrap()
        .get(0)
}

async fn events(url: &str) -> Vec<Value> {
    run_on(url, &["history", PLAN, "--output", "json"])
        .await
        .expect(0)
        .json()["events"]
        .as_array()
        .unwrap()
        .clone()
}

// ---------------------------------------------------------------- check

#[tokio::test]
async fn check_exits_0_when_reached_and_4_when_not() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    let check = |phase: &'static str| {
        let url = db.url.clone();
        async move { run_on(&url, &["check", "--plan", PLAN, "--at-least", phase]).await }
    };

    // before the plan exists: not reached, and says why
    let r = check("backfill").await;
    r.expect(4);
    assert_eq!(
        r.stdout,
        format!("NOT reached: plan `{PLAN}` has not been started in this database, so `backfill` is not reached\n")
    );
    // a phase that does not exist is a usage error
    let r = check("drain").await;
    r.expect(2);
    assert!(r.stderr.contains("`drain` is not a phase; phases are: expand, dual_write, backfill, switch_reads, contract"), "{}", r.stderr);

    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    let r = check("backfill").await;
    r.expect(0);
    assert!(
        r.stdout.starts_with(&format!(
            "reached: plan `{PLAN}` has reached `backfill`: completed at "
        )),
        "{}",
        r.stdout
    );
    let r = check("switch_reads").await;
    r.expect(4);
    assert_eq!(
        r.stdout,
        format!("NOT reached: plan `{PLAN}` has not reached `switch_reads`: the plan is awaiting_deploy at phase `backfill`, and `switch_reads` is pending\n")
    );
    let r = run_on(
        &db.url,
        &[
            "check",
            "--plan",
            PLAN,
            "--at-least",
            "switch_reads",
            "--output",
            "json",
        ],
    )
    .await;
    r.expect(4);
    let v = r.json();
    assert_eq!(v["reached"], false);
    assert_eq!(v["plan_status"], "awaiting_deploy");
    assert_eq!(v["phase_status"], "pending");
    assert_eq!(v["current_phase"], "backfill");

    // rolled back: what was reached is no longer
    run_on(&db.url, &["phase", "rollback", PLAN, "--yes"])
        .await
        .expect(0);
    let r = check("expand").await;
    r.expect(4);
    assert!(r.stdout.contains("`expand` is rolled_back"), "{}", r.stdout);
}

// ---------------------------------------------------------------- deploy fence

/// The pids of the workload's old-version sessions in this database.
async fn old_pids(client: &Client) -> Vec<i32> {
    client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = 'comments-api-old' ORDER BY pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fence_refuses_while_old_clients_are_connected_then_passes_once_drained() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 500).await;
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    wl.start_clients(AppVersion::New, 2).await.unwrap();
    // the first gate has no fence: old clients may still run
    run_on(&db.url, &["phase", "advance", PLAN, "--deployed", "api@v2"])
        .await
        .expect(0);

    let pids = old_pids(&client).await;
    assert_eq!(pids.len(), 2);
    let r = run_on(
        &db.url,
        &[
            "phase",
            "advance",
            PLAN,
            "--deployed",
            "api@v2-drained",
            "--yes",
        ],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.starts_with(
            "pgphase: refused: deploy fence at the gate after `switch_reads`: 2 session(s) of this database with an application_name like 'comments-api-old%' are still connected:\n    pid "
        ),
        "{}",
        r.stderr
    );
    for pid in &pids {
        assert!(
            r.stderr.contains(&format!(
                "pid {pid} comments-api-old from 127.0.0.1, connected since "
            )),
            "{pid}: {}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert!(column_exists(&client, "contents").await, "contract ran");
    let status = run_on(&db.url, &["status", PLAN, "--output", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(status["status"], "awaiting_deploy");
    assert!(
        status["phases"][3]["gate_confirmed_at"].is_null(),
        "gate confirmed: {status:#}"
    );

    // drained: the same command goes through, and the log says the fence passed
    wl.stop_clients(AppVersion::Old).await;
    let r = run_on(
        &db.url,
        &[
            "phase",
            "advance",
            PLAN,
            "--deployed",
            "api@v2-drained",
            "--yes",
        ],
    )
    .await;
    r.expect(0);
    assert!(r.stdout.contains("completed"), "{}", r.stdout);
    wl.stop_all().await;
    assert_eq!(wl.stats().new_failed, 0, "{:#?}", wl.stats().samples);
    let ev = events(&db.url).await;
    let refused: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0]["message"]
        .as_str()
        .unwrap()
        .contains("deploy fence"));
    let fence: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "fence").collect();
    assert_eq!(fence.len(), 1, "{ev:#?}");
    assert_eq!(
        fence[0]["message"],
        "deploy fence passed: no session has an application_name like 'comments-api-old%'"
    );
    assert_eq!(fence[0]["deployed_ref"], "api@v2-drained");
    assert_eq!(fence[0]["actor"], "alice");
}

/// Behind a transaction pooler a fence sees the pooler's server connections, not the
/// application's: a server connection keeps the application_name of the last client
/// that ran a transaction on it and takes the next client's with its next transaction.
/// So an old instance still connected to PgBouncer can be invisible (the fence would
/// pass), and a drained one can still show (the fence would refuse). docs/guarantees.md ›
/// Application drivers and poolers says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_behind_a_transaction_pooler_see_server_connections_not_clients() {
    let db = common::TestDb::new().await;
    let (_bouncer, through) = common::pgbouncer(&db, PoolMode::Transaction, None);
    let admin = db.client().await;
    let connect = |name: &'static str| {
        let through = through.clone();
        async move {
            let mut config: tokio_postgres::Config = through.parse().unwrap();
            config.application_name(name);
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
        }
    };
    let stragglers = || async {
        store::fence_stragglers(&admin, "comments-api-old%")
            .await
            .unwrap()
            .len()
    };
    let old = connect("comments-api-old").await;
    old.simple_query("SELECT 1").await.unwrap();
    assert_eq!(stragglers().await, 1, "the server connection it used");
    // the new version's next transaction gets the idle server connection, renamed
    let new = connect("comments-api-new").await;
    new.simple_query("SELECT 1").await.unwrap();
    assert!(!old.is_closed());
    assert_eq!(
        stragglers().await,
        0,
        "an old client still connected to the pooler, invisible to the fence"
    );
    // and the reverse: the old client's last transaction names the server connection,
    // which keeps the name once the client is gone
    old.simple_query("SELECT 1").await.unwrap();
    drop(old);
    drop(new);
    assert_eq!(
        stragglers().await,
        1,
        "a drained version still seen through an idle server connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fence_force_overrides_and_is_recorded_with_the_sessions() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 300).await;
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    run_on(&db.url, &["phase", "advance", PLAN, "--deployed", "v2"])
        .await
        .expect(0);
    let wl = Workload::new(&db.url, "comments");
    wl.start_clients(AppVersion::Old, 1).await.unwrap();
    let pids = old_pids(&client).await;

    let r = run_on(
        &db.url,
        &[
            "phase",
            "advance",
            PLAN,
            "--deployed",
            "v2-forced",
            "--yes",
            "--force",
        ],
    )
    .await;
    r.expect(0);
    wl.stop_all().await;
    assert!(!column_exists(&client, "contents").await);
    let ev = events(&db.url).await;
    let fence: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "fence").collect();
    assert_eq!(fence.len(), 1, "{ev:#?}");
    let msg = fence[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("deploy fence OVERRIDDEN with --force: 1 session(s) with an application_name like 'comments-api-old%' still connected: pid "), "{msg}");
    assert_eq!(fence[0]["phase"], "switch_reads");
    let sessions = fence[0]["detail"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["pid"], pids[0]);
    assert_eq!(sessions[0]["application_name"], "comments-api-old");
    assert_eq!(sessions[0]["client_addr"], "127.0.0.1");
    assert!(sessions[0]["backend_start"].is_string());
}

#[tokio::test]
async fn a_fence_on_a_phase_without_a_gate_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "name: p\nchanges:\n  - rename_column: { table: comments, from: contents, to: body }\nfences:\n  - at_gate_after: expand\n    no_application_name_like: old%\n",
    )
    .unwrap();
    let f = path.display().to_string();
    let r = run(pgphase(&["plan", &f])).await;
    r.expect(2);
    assert!(
        r.stderr.starts_with(&format!("pgphase: error: {f}:5:20: this plan has no deploy gate after phase `expand`; its gates follow: backfill, switch_reads")),
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------- history

#[tokio::test]
async fn history_records_every_command_with_outcome_duration_actor_and_deploy() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 1500).await;
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    // a refused command is in the log too
    run_on(
        &db.url,
        &[
            "phase",
            "advance",
            PLAN,
            "--gate",
            "switch_reads",
            "--deployed",
            "v2",
        ],
    )
    .await
    .expect(3);
    run_on(&db.url, &["phase", "advance", PLAN, "--deployed", "v2"])
        .await
        .expect(0);
    // back to the first gate, then the rest
    for _ in 0..2 {
        run_on(&db.url, &["phase", "rollback", PLAN, "--yes"])
            .await
            .expect(0);
    }
    let ev = events(&db.url).await;
    let ends: Vec<(&str, Option<&str>)> = ev
        .iter()
        .filter(|e| {
            e["kind"] == "command" && e["message"].as_str().unwrap().contains(" finished: ")
        })
        .map(|e| (e["message"].as_str().unwrap(), e["deployed_ref"].as_str()))
        .collect();
    assert_eq!(
        ends,
        vec![
            (
                "start finished: waiting at the deploy gate after backfill",
                None
            ),
            (
                "phase advance finished: waiting at the deploy gate after switch_reads",
                Some("v2")
            ),
            (
                "phase rollback finished: rolled back to the deploy gate after backfill",
                None
            ),
            ("phase rollback finished: rolled back", None),
        ]
    );
    for e in ev.iter().filter(|e| {
        e["kind"] == "command" && e["message"].as_str().unwrap().contains(" finished: ")
    }) {
        assert!(e["duration_ms"].as_i64().unwrap() >= 0, "{e:#}");
    }
    assert!(ev.iter().all(|e| e["actor"] == "alice"));
    // every event of the advance carries the deploy it ran under
    let advance: Vec<&Value> = ev
        .iter()
        .filter(|e| e["phase"] == "switch_reads" && (e["kind"] == "step" || e["kind"] == "phase"))
        .collect();
    assert_eq!(advance.len(), 3, "{ev:#?}");
    assert!(
        advance.iter().all(|e| e["deployed_ref"] == "v2"),
        "{advance:#?}"
    );
    // steps and undo steps have durations
    assert!(ev
        .iter()
        .filter(|e| e["kind"] == "step" || e["kind"] == "rollback")
        .all(|e| e["duration_ms"].is_i64()));
    assert_eq!(ev.iter().filter(|e| e["kind"] == "refused").count(), 1);
    assert_eq!(ev.iter().filter(|e| e["kind"] == "gate").count(), 1);

    let r = run_on(&db.url, &["history", PLAN]).await;
    r.expect(0);
    assert!(r.stdout.contains("alice      command                phase advance finished: waiting at the deploy gate after switch_reads  [deployed v2]  ("), "{}", r.stdout);
}

// ---------------------------------------------------------------- checklist

#[tokio::test]
async fn checklist_offline_snapshot() {
    let r = run(pgphase(&["checklist", PLAN_FILE])).await;
    r.expect(0);
    insta::assert_snapshot!("checklist_offline_markdown", r.stdout);
    let r = run(pgphase(&["checklist", PLAN_FILE, "--format", "text"])).await;
    r.expect(0);
    insta::assert_snapshot!("checklist_offline_text", r.stdout);
    // a name without a database cannot be looked up
    let r = run(pgphase(&["checklist", PLAN])).await;
    r.expect(2);
}

#[tokio::test]
async fn checklist_ticks_what_the_database_says_is_done() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 300).await;
    // not started: expanded against the live catalog, nothing ticked
    let r = run_on(&db.url, &["checklist", PLAN_FILE]).await;
    r.expect(0);
    assert!(!r.stdout.contains("- [x]"), "{}", r.stdout);
    assert!(!r.stdout.contains("expanded offline"), "{}", r.stdout);
    assert!(
        r.stdout.contains("build comments_body_idx"),
        "live carry-over steps: {}",
        r.stdout
    );

    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    run_on(&db.url, &["phase", "advance", PLAN, "--deployed", "v2"])
        .await
        .expect(0);
    let r = run_on(&db.url, &["checklist", PLAN]).await;
    r.expect(0);
    let md = &r.stdout;
    assert!(
        md.contains(&format!("- [x] **Run:** `pgphase start {PLAN_FILE}`")),
        "{md}"
    );
    assert!(
        md.contains(
            "- [x] **Deploy gate:** deploy the application version that reads and writes `body`"
        ),
        "{md}"
    );
    assert!(md.contains(" — done (v2) by alice, "), "{md}");
    assert!(
        md.contains("- [ ] **Deploy gate:** confirm no running instance"),
        "{md}"
    );
    assert!(md.contains("- [ ] **Deploy fence:** no session of the database with an application_name like `comments-api-old%`"), "{md}");
    assert!(
        md.contains("- [ ] ⚠️ **POINT OF NO RETURN: `contract`"),
        "{md}"
    );
    assert!(
        md.contains("state: **awaiting_deploy**, started by alice at "),
        "{md}"
    );

    let v = run_on(&db.url, &["checklist", PLAN, "--output", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(v["plan"], PLAN);
    assert_eq!(v["started"], true);
    assert_eq!(v["point_of_no_return"], "contract");
    let s = v["sections"].as_array().unwrap();
    assert_eq!(s.len(), 3);
    let deploy = &s[1]["items"][0];
    assert_eq!(deploy["kind"], "deploy");
    assert_eq!(deploy["done"], true);
    assert_eq!(deploy["done_by"], "alice");
    assert_eq!(deploy["deployed_ref"], "v2");
    assert_eq!(s[2]["items"][0]["done"], false);

    run_on(
        &db.url,
        &["phase", "advance", PLAN, "--deployed", "v3", "--yes"],
    )
    .await
    .expect(0);
    let r = run_on(&db.url, &["checklist", PLAN, "--format", "text"]).await;
    r.expect(0);
    assert!(
        !r.stdout.contains("[ ]"),
        "completed: everything ticked:\n{}",
        r.stdout
    );
}

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_shows_backfill_rate_and_the_last_gate() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 5000).await;
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    let v = run_on(&db.url, &["status", "--output", "json"])
        .await
        .expect(0)
        .json();
    let p = &v["plans"][0];
    let b = &p["backfill"][0];
    assert_eq!(b["phase_name"], "backfill");
    assert_eq!(b["rows_done"], 5000);
    assert_eq!(b["running"], false);
    assert!(b["eta_seconds"].is_null());
    assert!(b.get("rows_per_sec").is_some());
    assert!(b["step_description"]
        .as_str()
        .unwrap()
        .starts_with("copy contents into body"));
    assert!(p["last_gate"].is_null());

    run_on(
        &db.url,
        &["phase", "advance", PLAN, "--deployed", "api@v42"],
    )
    .await
    .expect(0);
    let v = run_on(&db.url, &["status", "--output", "json"])
        .await
        .expect(0)
        .json();
    let g = &v["plans"][0]["last_gate"];
    assert_eq!(g["phase"], "backfill");
    assert_eq!(g["confirmed_by"], "alice");
    assert_eq!(g["deployed_ref"], "api@v42");
    let r = run_on(&db.url, &["status"]).await;
    r.expect(0);
    assert!(r.stdout.contains("by alice, "), "{}", r.stdout);
    assert!(
        !r.stdout.contains('\x1b'),
        "colour without a terminal: {}",
        r.stdout
    );

    // the colour rendering, as a terminal gets it
    let views = pgphase::report::status_views(&client, None).await.unwrap();
    let coloured = pgphase::report::status_table(&views, true);
    assert!(
        coloured.contains("\x1b[38;5;11m")
            || coloured.contains("\x1b[33m")
            || coloured.contains('\x1b'),
        "{coloured}"
    );
    assert!(!pgphase::report::status_table(&views, false).contains('\x1b'));
}

/// A plan file whose backfill takes a couple of seconds, so there is something to watch.
fn slow_plan(dir: &Path) -> String {
    let path = dir.join(format!("{PLAN}.yaml"));
    std::fs::write(
        &path,
        format!("name: {PLAN}\nsettings:\n  backfill: {{ batch_size: 500, pause: 40ms, target_batch_time: 0s }}\nchanges:\n  - rename_column: {{ table: comments, from: contents, to: body }}\n"),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_a_line_per_refresh_and_exits_when_nothing_runs() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 20_000).await;
    // idle: one line, exit 0
    let r = run_on(&db.url, &["status", "--watch", "--interval", "200ms"]).await;
    r.expect(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout.ends_with("UTC  no plan in progress\n"),
        "{}",
        r.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let file = slow_plan(dir.path());
    let mut start = pgphase(&["--database-url", &db.url, "--quiet", "start", &file]);
    start.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = start.spawn().unwrap();
    // wait until the backfill has begun
    for _ in 0..200 {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('pgphase.backfill_progress') IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let n: i64 = if exists {
            client
                .query_one(
                    "SELECT count(*) FROM pgphase.backfill_progress WHERE rows_done > 0",
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        } else {
            0
        };
        if n > 0 {
            break;
        }
        common::sleep_ms(25).await;
    }
    let r = run_on(&db.url, &["status", "--watch", "--interval", "200ms"]).await;
    r.expect(0);
    assert!(tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.len() >= 3, "{}", r.stdout);
    let running: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(": running backfill [backfill "))
        .collect();
    assert!(running.len() >= 2, "{}", r.stdout);
    assert!(
        running.iter().any(|l| l.contains(" rows/s, ETA ")),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("{PLAN}: awaiting_deploy backfill")),
        "{}",
        r.stdout
    );

    // JSON Lines
    let r = run_on(&db.url, &["status", "--watch", "--output", "json"]).await;
    r.expect(0);
    let v: Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert!(v["at"].is_string());
    assert_eq!(v["plans"][0]["status"], "awaiting_deploy");
}

/// On a terminal `status --watch` keeps refreshing through a deploy gate (that is when
/// the operator looks) until Ctrl-C; with `--until-done` it stops there as a pipe does.
/// The binary in a real terminal (tmux); "keeps refreshing" is its clock moving on
/// while nothing runs, where without a terminal it has already exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_on_a_terminal_stays_through_a_gate_unless_until_done() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    let env = [("DATABASE_URL", db.url.as_str())];
    let args = ["--quiet", "status", "--watch", "--interval", "100ms"];

    let t = common::terminal::Terminal::spawn(120, 30, &args, &env);
    let first = t.wait_for_text("awaiting_deploy").await;
    let clock = |s: &str| {
        s.lines()
            .find(|l| l.contains("pgphase status --watch · "))
            .map(str::to_string)
    };
    let shown = clock(&first);
    let second = t
        .wait_for("a later refresh", |s| {
            clock(s).is_some() && clock(s) != shown
        })
        .await;
    assert!(second.contains(PLAN), "{second}");
    assert_eq!(t.exit_code(), None, "still watching at the gate:\n{second}");
    t.keys(&["C-c"]);
    assert_eq!(t.wait_exit().await, 0);
    drop(t);

    let mut until_done = args.to_vec();
    until_done.push("--until-done");
    let t = common::terminal::Terminal::spawn(120, 30, &until_done, &env);
    assert_eq!(t.wait_exit().await, 0, "stops by itself: nothing runs");
    let last = t.screen();
    assert!(
        last.contains(PLAN) && last.contains("awaiting_deploy"),
        "the final status table:\n{last}"
    );
}

#[test]
fn no_color_turns_colour_off() {
    std::env::set_var("NO_COLOR", "1");
    assert!(!pgphase::report::style::color_allowed());
    std::env::set_var("NO_COLOR", "");
    std::env::remove_var("TERM");
    assert!(pgphase::report::style::color_allowed());
    std::env::set_var("TERM", "dumb");
    assert!(!pgphase::report::style::color_allowed());
}

// ---------------------------------------------------------------- advance --gate

/// A retried pipeline job must not confirm the next gate: `--gate PHASE` names the gate
/// the deploy is for; the same command again does nothing, the wrong gate is refused.
#[tokio::test]
async fn advance_with_gate_refuses_the_wrong_gate_and_a_repeat_does_nothing() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    run_on(&db.url, &["start", PLAN_FILE]).await.expect(0);
    let advance = |gate: &'static str, deployed: &'static str| {
        let url = db.url.clone();
        async move {
            run_on(
                &url,
                &[
                    "phase",
                    "advance",
                    PLAN,
                    "--deployed",
                    deployed,
                    "--gate",
                    gate,
                    "--yes",
                ],
            )
            .await
        }
    };
    let revision = || async {
        client
            .query_one(
                "SELECT revision FROM pgphase.plans WHERE name = $1",
                &[&PLAN],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // the plan waits after backfill: naming the next gate is refused and changes nothing
    let before = revision().await;
    let r = advance("switch_reads", "api@v2").await;
    r.expect(3);
    assert!(
        r.stderr.contains("waits at the gate after phase `backfill`, not at the gate after `switch_reads`; nothing was confirmed"),
        "{}",
        r.stderr
    );
    assert_eq!(revision().await, before);
    // a phase without a gate is a usage error naming the gates
    let r = advance("contract", "api@v2").await;
    r.expect(3);
    assert!(
        r.stderr
            .contains("its gates follow: backfill, switch_reads"),
        "{}",
        r.stderr
    );

    // the right gate: confirmed, runs on to the next gate
    advance("backfill", "api@v2").await.expect(0);
    assert!(column_exists(&client, "contents").await);
    let before = revision().await;
    // the same job again (a pipeline retry): nothing happens, exit 0
    let r = advance("backfill", "api@v2").await;
    r.expect(0);
    assert_eq!(
        revision().await,
        before,
        "a repeated advance changed the plan"
    );
    let v = run_on(&db.url, &["status", PLAN, "--output", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(v["status"], "awaiting_deploy", "{v:#}");
    assert_eq!(v["phases"][2]["gate_deployed_ref"], "api@v2", "{v:#}");
    assert!(v["phases"][3]["gate_confirmed_at"].is_null(), "{v:#}");
    assert!(column_exists(&client, "contents").await, "contract ran");

    // the gate it now waits at goes through and completes the plan
    advance("switch_reads", "api@v3").await.expect(0);
    assert!(!column_exists(&client, "contents").await);
    // and a late repeat of either is still harmless
    advance("switch_reads", "api@v3").await.expect(0);
    advance("backfill", "api@v2").await.expect(0);
}
