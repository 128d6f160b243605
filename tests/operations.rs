//! What operators and pipelines do to a running plan: Ctrl-C and SIGTERM (at every
//! step, during a CONCURRENTLY build, during a backfill), a CONCURRENTLY build stuck
//! behind an old transaction, a retried `start`, two plan files with one name, a
//! `pgphase` schema tampered with or upgraded by a newer pgphase, and a rollback that
//! finds the schema changed behind its back. The binary as users run it, on a real
//! PostgreSQL.

mod common;

use common::cli::{pgphase_on, run_guarded, Run, Running};
use common::*;
use pgphase::state::store;
use serde_json::Value;
use std::time::Duration;

/// Against hangs only: every command here ends in seconds.
const GUARD: Duration = Duration::from_secs(120);

async fn on(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--quiet"];
    full.extend_from_slice(args);
    run_guarded(pgphase_on(url, &full), GUARD).await
}

/// With a failpoint (`PGPHASE_FAILPOINT`).
async fn on_with(url: &str, failpoint: &str, args: &[&str]) -> Run {
    let mut full = vec!["--quiet"];
    full.extend_from_slice(args);
    let mut cmd = pgphase_on(url, &full);
    cmd.env("PGPHASE_FAILPOINT", failpoint);
    run_guarded(cmd, GUARD).await
}

async fn events(url: &str, kind: &str) -> Vec<Value> {
    on(url, &["history", RENAME_PLAN, "--output", "json"])
        .await
        .expect(0)
        .json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// Ctrl-C or SIGTERM right before each of the rename's 11 steps (a failpoint makes the
/// process signal itself there): exit 130 / 143, an `interrupted` event naming the
/// step, the command that resumes on stderr; that command converges to the complete
/// rename. A signal before an undo step of a rollback, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signal_at_every_step_is_recorded_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(
        dir.path(),
        "  lock_timeout: 500ms\n  backfill: { batch_size: 300 }",
    );
    let plan = plan.to_str().unwrap();
    let start = vec!["start", plan, "--yes"];
    let advance = vec![
        "phase",
        "advance",
        RENAME_PLAN,
        "--gate",
        "backfill",
        "--deployed",
        "v2",
    ];
    let contract = vec![
        "phase",
        "advance",
        RENAME_PLAN,
        "--gate",
        "switch_reads",
        "--deployed",
        "v2-drained",
        "--yes",
    ];
    let commands: [(&Vec<&str>, &[&str]); 3] = [
        (
            &start,
            &[
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
        (&advance, &["switch_reads.1"]),
        (&contract, &["contract.1"]),
    ];
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 1_000).await;
    let mut n = 0;
    for (args, steps) in commands {
        for (i, point) in steps.iter().enumerate() {
            let (prefix, code, name) = if i % 2 == 0 {
                ("term", 143, "SIGTERM")
            } else {
                ("int", 130, "SIGINT")
            };
            let r = on_with(&db.url, &format!("{prefix}:{point}"), args).await;
            assert_eq!(r.code, code, "{point}: {r:#?}");
            let (phase, step) = point.split_once('.').unwrap();
            assert!(
                r.stderr.contains(&format!("interrupted by {name}"))
                    && r.stderr
                        .contains(&format!("during phase {phase}, step {step}/"))
                    && r.stderr.contains(&format!("Re-run `pgphase {}", args[0])),
                "{point}: {}",
                r.stderr
            );
            n += 1;
            let recorded = events(&db.url, "interrupted").await;
            assert_eq!(recorded.len(), n, "{point}: {recorded:#?}");
            let last = recorded.last().unwrap();
            assert_eq!(last["phase"], phase, "{point}");
            let st = on(&db.url, &["status", RENAME_PLAN, "--output", "json"]).await;
            assert_eq!(st.json()["interrupted"], true, "{point}: {}", st.stdout);
        }
        on(&db.url, args).await.expect(0);
    }
    let st = store::load_plan(&client, RENAME_PLAN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_str(), "completed");
    let (cat, _) = schema_of(&client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("contents").is_none() && t.indexes.iter().all(|i| i.valid));

    // and in a rollback
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 500).await;
    let before = schema_of(&client, "comments").await;
    on(&db.url, &start).await.expect(0);
    let r = on_with(
        &db.url,
        "term:rollback-dual_write.1",
        &["phase", "rollback", RENAME_PLAN, "--yes"],
    )
    .await;
    assert_eq!(r.code, 143, "{r:#?}");
    assert!(
        r.stderr
            .contains("during phase rollback dual_write, step 1/")
            && r.stderr.contains("Re-run `pgphase phase rollback"),
        "{}",
        r.stderr
    );
    on(&db.url, &["phase", "rollback", RENAME_PLAN, "--yes"])
        .await
        .expect(0);
    assert_eq!(schema_of(&client, "comments").await, before);
}

/// A CONCURRENTLY build waits for an old transaction (a virtual-xid wait): pgphase
/// names the blocker on the terminal and in the event log. Then SIGTERM: the build is
/// cancelled on the server (it used to go on waiting there after pgphase died), the
/// interruption is recorded with the step, exit 143; once the blocker ends, the same
/// command drops the invalid index the cancelled build left and builds it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_cancels_a_concurrent_index_build_waiting_for_an_old_transaction() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 1_000).await;
    client
        .batch_execute("CREATE TABLE elsewhere (id int)")
        .await
        .unwrap();
    // a transaction that holds a snapshot and no lock on comments: every step but the
    // CONCURRENTLY build (backfill.6), which waits for older snapshots, goes through
    let old = LockHolder::hold(
        &db.url,
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM elsewhere",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    let run = Running::spawn(pgphase_on(&db.url, &["start", plan, "--yes"]));
    let building = "EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                      AND query LIKE 'CREATE INDEX CONCURRENTLY comments_body_idx%' AND state = 'active')";
    wait_until(&client, &format!("SELECT {building}"), 60).await;
    // the blocker is named in the event log
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let wait = loop {
        if let Some(w) = events(&db.url, "wait").await.pop() {
            break w;
        }
        assert!(std::time::Instant::now() < deadline, "no wait event");
        sleep_ms(100).await;
    };
    let msg = wait["message"].as_str().unwrap();
    assert!(
        msg.contains("waiting for older transactions to end")
            && msg.contains("long-transaction, idle in transaction, transaction open")
            && msg.contains("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            && msg.contains("build comments_body_idx"),
        "{msg}"
    );
    assert_eq!(wait["phase"], "backfill");
    run.signal(libc::SIGTERM);
    let r = run.finish(GUARD).await;
    assert_eq!(r.code, 143, "{r:#?}");
    assert!(
        r.stderr.contains("waiting for older transactions to end") // on the terminal too
            // the step numbers differ between versions (PostgreSQL 18's NOT NULL NOT VALID)
            && r.stderr.contains("interrupted by SIGTERM: it stopped during phase backfill, step ")
            && r.stderr.contains("(build comments_body_idx on body concurrently")
            && r.stderr.contains("the statement running on the server was cancelled")
            && r.stderr.contains(&format!("Re-run `pgphase start {plan}`")),
        "{}",
        r.stderr
    );
    // gone from the server while the old transaction is still open
    wait_until(&client, &format!("SELECT NOT {building}"), 10).await;
    let recorded = events(&db.url, "interrupted").await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["phase"], "backfill");
    old.release().await;
    let r = on(&db.url, &["start", plan, "--yes"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (cat, _) = schema_of(&client, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(
        t.indexes
            .iter()
            .any(|i| i.name == "comments_body_idx" && i.valid)
            && t.indexes.iter().all(|i| i.valid),
        "{:?}",
        t.indexes
    );
}

/// Ctrl-C in the middle of a backfill: exit 130, the batch running is cancelled, the
/// interruption recorded; the same command resumes from the checkpoint, no batch twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_during_a_backfill_stops_and_resumes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 30_000).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(
        dir.path(),
        "  backfill: { batch_size: 500, target_batch_time: 0s, pause: 20ms }",
    );
    let plan = plan.to_str().unwrap();
    let run = Running::spawn(pgphase_on(&db.url, &["start", plan, "--yes", "--quiet"]));
    wait_for_backfill(&client, RENAME_PLAN, 2_000).await;
    run.signal(libc::SIGINT);
    let r = run.finish(GUARD).await;
    assert_eq!(r.code, 130, "{r:#?}");
    assert!(
        r.stderr
            .contains("interrupted by SIGINT: it stopped during phase backfill, step 1/")
            && r.stderr.contains(&format!("Re-run `pgphase start {plan}`")),
        "{}",
        r.stderr
    );
    let p = store::progress(&client, RENAME_PLAN).await.unwrap()[0].clone();
    assert!(p.finished_at.is_none() && p.rows_done < 30_000, "{p:?}");
    wait_until(
        &client,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
           WHERE application_name = 'pgphase' AND datname = current_database())",
        10,
    )
    .await;
    assert_eq!(events(&db.url, "interrupted").await.len(), 1);
    let r = on(&db.url, &["start", plan, "--yes"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = store::progress(&client, RENAME_PLAN).await.unwrap()[0].clone();
    assert_eq!((p.rows_done, p.batches), (30_000, 60), "no batch twice");
}

/// A pipeline job retried: `start` again with the same file once the plan waits at (or
/// is past) its first gate exits 0 and says where the plan stands, at every stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_start_exits_0_and_says_where_the_plan_stands() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    on(&db.url, &["start", plan, "--yes"]).await.expect(0);
    let r = on(&db.url, &["start", plan, "--yes"]).await;
    r.expect(0);
    assert!(
        r.stdout
            .contains("phase backfill done; waiting at a deploy gate")
            && r.stdout.contains(
                "then: pgphase phase advance rename-comments-contents-to-body --gate backfill"
            ),
        "{}",
        r.stdout
    );
    // a failed advance after the first gate: start is still not the command to run
    let r = on_with(
        &db.url,
        "switch_reads.1",
        &["phase", "advance", RENAME_PLAN, "--deployed", "v2"],
    )
    .await;
    r.expect(1);
    let r = on(&db.url, &["start", plan, "--yes", "--output", "json"]).await;
    r.expect(0);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "outcome": "underway", "plan": RENAME_PLAN, "status": "failed", "phase": "switch_reads",
            "next_command": "pgphase phase advance rename-comments-contents-to-body --deployed <REF>"
        })
    );
    on(
        &db.url,
        &["phase", "advance", RENAME_PLAN, "--deployed", "v2"],
    )
    .await
    .expect(0);
    let r = on(&db.url, &["start", plan, "--yes"]).await;
    r.expect(0);
    assert!(r
        .stdout
        .contains("phase switch_reads done; waiting at a deploy gate"));
    on(
        &db.url,
        &[
            "phase",
            "advance",
            RENAME_PLAN,
            "--deployed",
            "v2-drained",
            "--yes",
        ],
    )
    .await
    .expect(0);
    let r = on(&db.url, &["start", plan, "--yes"]).await;
    r.expect(0);
    assert_eq!(r.stdout, format!("plan {RENAME_PLAN}: completed.\n"));
    // nothing ran again: one start event, one of each phase
    let starts: Vec<Value> = events(&db.url, "command")
        .await
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("start {plan} ("))
        })
        .collect();
    assert_eq!(starts.len(), 1, "{starts:#?}");
}

/// Two plan files that share a name (the second file's `name:`, or the same file name
/// in two folders): `start` of the second says so plainly, not "the file changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_plan_files_with_one_name_are_named_as_such() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 200).await;
    client
        .batch_execute("CREATE TABLE posts (id int PRIMARY KEY, title text)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(
        &a,
        "name: shared\nchanges:\n  - add_index: { table: comments, name: comments_post_idx, columns: [post_id] }\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "name: shared\nchanges:\n  - add_index: { table: posts, name: posts_title_idx, columns: [title] }\n",
    )
    .unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    on(&db.url, &["start", a, "--yes"]).await.expect(0);
    let r = on(&db.url, &["start", b, "--yes"]).await;
    r.expect(3);
    assert!(
        r.stderr.contains(&format!(
            "two plan files share the name `shared`: the plan of that name was started from {a}"
        )) && r.stderr.contains(&format!("and {b}"))
            && r.stderr.contains(&format!("give {b} a `name:` of its own")),
        "{}",
        r.stderr
    );
}

/// The `pgphase` schema tampered with: a phase row deleted, steps_done edited, the
/// program unreadable, the plan's row deleted. Every command names what is wrong
/// (exit 1) — never a panic (exit 101), never a report built on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_state_is_named_never_a_panic() {
    let tamperings = [
        (
            "DELETE FROM pgphase.phases WHERE position = 4",
            "its program has 5 phases, pgphase.phases holds 4 rows for it",
        ),
        (
            "DELETE FROM pgphase.phases WHERE position = 1",
            "its program has 5 phases, pgphase.phases holds 4 rows for it",
        ),
        (
            "UPDATE pgphase.phases SET steps_done = 7 WHERE position = 0",
            "phase 0 (expand) has 1 steps, pgphase.phases says 7 of 1 are done",
        ),
        (
            "UPDATE pgphase.plans SET program = '{\"phases\": 1}'",
            "its program (pgphase.plans.program) cannot be read",
        ),
        (
            "DELETE FROM pgphase.backfill_progress; DELETE FROM pgphase.phases; DELETE FROM pgphase.plans",
            "the event log records it, but pgphase.plans has no row for it",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    for (tamper, what) in tamperings {
        let db = TestDb::new().await;
        let client = db.client().await;
        rich_comments(&client, 200).await;
        on(&db.url, &["start", plan, "--yes"]).await.expect(0);
        client.batch_execute(tamper).await.unwrap();
        for args in [
            vec!["status"],
            vec!["status", RENAME_PLAN],
            vec!["check", "--plan", RENAME_PLAN, "--at-least", "expand"],
            vec!["checklist", RENAME_PLAN],
            vec!["start", plan, "--yes"],
            vec!["phase", "advance", RENAME_PLAN, "--deployed", "v2"],
            vec!["phase", "rollback", RENAME_PLAN, "--yes"],
        ] {
            let r = on(&db.url, &args).await;
            assert_eq!(r.code, 1, "{tamper} / {args:?}: {r:#?}");
            assert!(
                r.stderr.contains(&format!(
                    "the state of plan `{RENAME_PLAN}` in the pgphase tables is inconsistent: {what}"
                )) && r.stderr.contains("changes nothing"),
                "{tamper} / {args:?}: {}",
                r.stderr
            );
        }
    }
}

/// A `pgphase` schema upgraded by a newer pgphase: refused, "upgrade pgphase", and
/// nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_schema_version_is_refused() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    // a database this pgphase installed, then a newer one upgraded
    on(&db.url, &["status"]).await.expect(0);
    on(&db.url, &["start", plan, "--yes"]).await.expect(0);
    on(&db.url, &["phase", "rollback", RENAME_PLAN, "--yes"])
        .await
        .expect(0);
    client
        .batch_execute("INSERT INTO pgphase.schema_version (version) VALUES (99)")
        .await
        .unwrap();
    let before = schema_of(&client, "comments").await;
    for args in [
        vec!["start", plan, "--yes"],
        vec!["status"],
        vec!["history"],
        vec!["phase", "rollback", RENAME_PLAN, "--yes"],
    ] {
        let r = on(&db.url, &args).await;
        r.expect(3);
        assert!(
            r.stderr.contains(
                "the pgphase schema in this database is version 99, newer than this pgphase knows"
            ) && r.stderr.contains("upgrade pgphase"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(schema_of(&client, "comments").await, before);
}

/// A full rollback says "the schema is as before the plan" only when it compared the
/// catalog with the snapshot taken at start. An index someone added by hand meanwhile
/// is reported (exit 1), the plan being rolled back all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_reports_a_schema_that_is_not_as_before() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    on(&db.url, &["start", plan, "--yes"]).await.expect(0);
    let r = on(&db.url, &["phase", "rollback", RENAME_PLAN, "--yes"]).await;
    r.expect(0);
    assert!(
        r.stdout.contains("the schema is as it was before the plan (compared with the catalog snapshot taken at start)"),
        "{}",
        r.stdout
    );
    on(&db.url, &["start", plan, "--yes"]).await.expect(0);
    client
        .batch_execute("CREATE INDEX by_hand ON comments (created_at)")
        .await
        .unwrap();
    let r = on(&db.url, &["phase", "rollback", RENAME_PLAN, "--yes"]).await;
    r.expect(1);
    assert!(
        r.stderr.contains("every undo step ran and the plan is rolled back, but the schema is not as before the plan")
            && r.stderr.contains("+ tables.public.comments.indexes: {")
            && r.stderr.contains("by_hand"),
        "{}",
        r.stderr
    );
    let st = store::load_plan(&client, RENAME_PLAN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_str(), "rolled_back");
    let recorded = events(&db.url, "command").await;
    assert!(
        recorded.iter().any(|e| {
            let m = e["message"].as_str().unwrap();
            m.starts_with(
                "rollback completed, but the schema differs from the catalog snapshot taken at start:\n",
            ) && m.contains("\n    + tables.public.comments.indexes: {")
        }),
        "{recorded:#?}"
    );
}

/// A retried `phase rollback` job: each rollback crosses one deploy gate, and the next
/// is right only once the application was rolled back. With `--to` a repeat does
/// nothing (the new column the still-deployed version reads stays), a rollback that
/// would go elsewhere is refused, and `--to start` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_rollback_does_not_roll_back_past_its_gate() {
    let db = TestDb::new().await;
    let client = db.client().await;
    rich_comments(&client, 500).await;
    let before = schema_of(&client, "comments").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = write_rename_plan(dir.path(), "  lock_timeout: 500ms");
    let plan = plan.to_str().unwrap();
    on(&db.url, &["start", plan, "--yes"]).await.expect(0);
    on(
        &db.url,
        &["phase", "advance", RENAME_PLAN, "--deployed", "v2"],
    )
    .await
    .expect(0);
    let back = [
        "phase",
        "rollback",
        RENAME_PLAN,
        "--yes",
        "--to",
        "backfill",
    ];
    let r = on(&db.url, &back).await;
    r.expect(0);
    assert!(
        r.stdout
            .contains("rolled back to the deploy gate after backfill")
            && r.stdout.contains(
                "then: pgphase phase rollback rename-comments-contents-to-body --to start"
            ),
        "{}",
        r.stdout
    );
    let at_gate = schema_of(&client, "comments").await;
    // the same job again: nothing happens; `body`, which v2 reads, stays
    let r = on(&db.url, &back).await;
    r.expect(0);
    assert!(r
        .stdout
        .contains("rolled back to the deploy gate after backfill"));
    assert_eq!(schema_of(&client, "comments").await, at_gate);
    assert!(at_gate
        .0
        .tables
        .values()
        .next()
        .unwrap()
        .column("body")
        .is_some());
    let r = on(
        &db.url,
        &[
            "phase",
            "rollback",
            RENAME_PLAN,
            "--yes",
            "--to",
            "switch_reads",
        ],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.contains("now goes back to before the plan (`--to start`), not to the deploy gate after `switch_reads`"),
        "{}",
        r.stderr
    );
    let to_start = ["phase", "rollback", RENAME_PLAN, "--yes", "--to", "start"];
    on(&db.url, &to_start).await.expect(0);
    assert_eq!(schema_of(&client, "comments").await, before);
    let r = on(&db.url, &to_start).await;
    r.expect(0);
    assert!(r.stdout.contains("rolled back"), "{}", r.stdout);
}
