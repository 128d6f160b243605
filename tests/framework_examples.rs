//! The application examples of docs/frameworks.md, run for real.
//!
//! `examples/python-psycopg/app.py` (psycopg 3, every statement prepared on the server
//! at its first use) goes through the rename plan's gates: the new version refuses to
//! start while `pgphase check --at-least backfill` says no, starts once it says yes;
//! both versions run side by side through every phase, and every query of both
//! succeeds, every write is found. Skipped, saying so, where python3 or psycopg is
//! missing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::cli::{pgphase_on, run_guarded};
use pgphase::workload::create_comments_table;
use serde_json::Value;
use tokio_postgres::Client;

const PLAN: &str = "rename-comments-contents-to-body";
const GUARD: Duration = Duration::from_secs(120);

/// Why the Python example cannot run here, if it cannot.
fn python_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
    {
        Err(e) => Some(format!("python3 is not installed ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "psycopg is not installed for python3 (pip install \"psycopg[binary]\"): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

fn app_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-psycopg/app.py")
}

fn app(url: &str, version: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(app_path())
        .arg(version)
        .env("DATABASE_URL", url)
        .env("PGPHASE", common::pgphase_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running version of the app: it printed `ready`.
struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl App {
    fn start(url: &str, version: &str) -> App {
        let mut child = app(url, version).spawn().expect("start python3");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.trim() != "ready" {
            let out = child.wait_with_output().unwrap();
            panic!(
                "app {version} did not start: {line}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        App {
            child,
            stdin,
            stdout,
        }
    }

    /// Closes its standard input (its stop signal) and returns its JSON summary.
    fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "app exited with {status}: {line}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// The rows an app wrote (its text starts with `prefix`), read through `column`.
async fn written(client: &Client, column: &str, prefix: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM comments WHERE {column} LIKE $1 || '%'"),
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits until the app has written `more` rows beyond what it had, so each phase
/// really runs under its traffic.
async fn traffic(client: &Client, column: &str, prefix: &str, more: i64) {
    let start = written(client, column, prefix).await;
    let deadline = std::time::Instant::now() + GUARD;
    while written(client, column, prefix).await < start + more {
        assert!(
            std::time::Instant::now() < deadline,
            "{prefix} wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The app's prefix, read from the database: the one row pattern of that version.
async fn prefix_of(client: &Client, column: &str, version: &str) -> String {
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let row = client
            .query_opt(
                &format!(
                    "SELECT substring({column} from '^{version}-[0-9]+-') FROM comments \
                     WHERE {column} LIKE '{version}-%' LIMIT 1"
                ),
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{version} wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_psycopg_app_runs_through_a_rename_with_zero_failed_queries() {
    if let Some(why) = python_missing() {
        eprintln!(
            "SKIPPED python_psycopg_app_runs_through_a_rename_with_zero_failed_queries: {why}"
        );
        return;
    }
    let db = common::TestDb::new().await;
    let client = db.client().await;
    create_comments_table(&client, "comments", 1000)
        .await
        .unwrap();
    // The plan from plans/, without the evidence window (not what this test is about).
    let plan_dir = tempfile::tempdir().unwrap();
    let plan_file = plan_dir.path().join("rename.yaml");
    let plan = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/rename-comments-contents-to-body.yaml"),
    )
    .unwrap()
    .replace("settings:\n", "settings:\n  contract: { evidence: off }\n");
    std::fs::File::create(&plan_file)
        .unwrap()
        .write_all(plan.as_bytes())
        .unwrap();
    let plan_file = plan_file.to_str().unwrap();
    let pgphase = |args: &[&str]| pgphase_on(&db.url, args);

    // v2 needs `body`: before the plan it refuses to start, saying why.
    let early = app(&db.url, "v2").stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "schema not ready for v2: NOT reached: plan `rename-comments-contents-to-body` \
             has not been started in this database, so `backfill` is not reached"
        ),
        "{stderr}"
    );

    let v1 = App::start(&db.url, "v1");
    let p1 = prefix_of(&client, "contents", "v1").await;
    run_guarded(pgphase(&["start", plan_file, "--yes"]), GUARD)
        .await
        .expect(0);
    traffic(&client, "contents", &p1, 20).await;

    // At the first gate `check --at-least backfill` says yes: v2 starts beside v1.
    let v2 = App::start(&db.url, "v2");
    let p2 = prefix_of(&client, "body", "v2").await;
    run_guarded(
        pgphase(&["phase", "advance", PLAN, "--deployed", "v2", "--yes"]),
        GUARD,
    )
    .await
    .expect(0);
    traffic(&client, "contents", &p1, 20).await;
    traffic(&client, "body", &p2, 20).await;

    // Drain v1 (the plan's fence checks it is gone), then contract under v2's traffic.
    let s1 = v1.stop();
    run_guarded(
        pgphase(&[
            "phase",
            "advance",
            PLAN,
            "--deployed",
            "v2-drained",
            "--yes",
        ]),
        GUARD,
    )
    .await
    .expect(0);
    traffic(&client, "body", &p2, 20).await;
    let s2 = v2.stop();

    for (summary, prefix) in [(&s1, &p1), (&s2, &p2)] {
        assert_eq!(summary["failed"], 0, "failed queries: {summary}");
        assert!(summary["ok"].as_i64().unwrap() > 0, "{summary}");
        assert_eq!(summary["prefix"].as_str(), Some(prefix.as_str()));
        // Every write is there, through `body`, with the text it was written with.
        assert_eq!(
            Some(written(&client, "body", prefix).await),
            summary["written"].as_i64(),
            "{summary}"
        );
    }
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM comments WHERE body LIKE 'v_-%' \
             AND body !~ '^v[12]-[0-9]+-[0-9]+$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
    let done = run_guarded(
        pgphase(&["check", "--plan", PLAN, "--at-least", "contract"]),
        GUARD,
    )
    .await;
    done.expect(0);
}
