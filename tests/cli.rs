//! The `pgphase` binary as an operator runs it: exit codes, what goes to stdout and
//! stderr, JSON output, refusals that change nothing, and secrets that never show.
//!
//! Exit codes (src/error.rs): 0 ok, 1 failed, 2 invalid input, 3 refused.

mod common;

use common::cli::{pgphase, run, Run};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tokio_postgres::Client;

const PLAN: &str = "rename-comments-contents-to-body";
const PLAN_FILE: &str = "plans/rename-comments-contents-to-body.yaml";

/// `pgphase --database-url URL --actor alice ARGS…`
async fn run_on(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--database-url", url, "--actor", "alice"];
    full.extend_from_slice(args);
    run(pgphase(&full)).await
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The repository's plan file, copied to a scratch directory so a test may edit it.
fn plan_copy(dir: &Path) -> PathBuf {
    let path = dir.join(format!("{PLAN}.yaml"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(PLAN_FILE);
    std::fs::copy(src, &path).unwrap();
    path
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

async fn pgphase_schema_exists(client: &Client) -> bool {
    !client
        .query_one("SELECT to_regclass('pgphase.plans') IS NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
}

/// The plan's status and its event count, to show a refused command changed nothing
/// (refusals themselves are recorded in the log, as `refused` events: not counted here).
async fn plan_state(client: &Client, plan: &str) -> (Option<String>, i64, i64) {
    if !pgphase_schema_exists(client).await {
        return (None, 0, 0);
    }
    let status: Option<String> = client
        .query_opt("SELECT status FROM pgphase.plans WHERE name = $1", &[&plan])
        .await
        .unwrap()
        .map(|r| r.get(0));
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM pgphase.events WHERE kind <> 'refused'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let gates: i64 = client
        .query_one(
            "SELECT count(*) FROM pgphase.phases WHERE gate_confirmed_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (status, events, gates)
}

/// The story's table with the plan started (stopped at the first gate), through the
/// library so the test is about the command that follows.
async fn started(rows: i64) -> (common::TestDb, Client, pgphase::plan::PlanFile) {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, rows).await;
    let file = pgphase::plan::PlanFile::load(Path::new(PLAN_FILE)).unwrap();
    let out = pgphase::run::start(&db.session(), &file).await.unwrap();
    assert!(
        matches!(out, pgphase::run::Outcome::AwaitingDeploy { .. }),
        "{out:?}"
    );
    (db, client, file)
}

// ---------------------------------------------------------------- Citus

/// `plan` (and so `start`) refuses a change to a Citus distributed or reference table,
/// naming it, and expands the same change on a table Citus does not manage. Citus is
/// not installable here: its catalog table `pg_catalog.pg_dist_partition` is a stand-in
/// with Citus's columns, created in `pg_catalog` (as the extension does) under
/// `allow_system_table_mods`; pgphase reads only that table (docs/citus.md).
#[tokio::test]
async fn plan_refuses_a_citus_distributed_or_reference_table() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "SET allow_system_table_mods = on;
             CREATE TABLE pg_catalog.pg_dist_partition (
               logicalrelid regclass NOT NULL, partmethod \"char\" NOT NULL, partkey text,
               colocationid int NOT NULL DEFAULT 0, repmodel \"char\" NOT NULL DEFAULT 's');
             RESET allow_system_table_mods;
             CREATE TABLE events (id bigint PRIMARY KEY, contents text);
             CREATE TABLE countries (id bigint PRIMARY KEY, contents text);
             CREATE TABLE notes (id bigint PRIMARY KEY, contents text);
             INSERT INTO pg_catalog.pg_dist_partition (logicalrelid, partmethod, partkey, repmodel)
               VALUES ('events', 'h', '{VAR :varattno 1}', 's'), ('countries', 'n', NULL, 't');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (table, kind) in [
        ("events", "distributed"),
        ("countries", "reference"),
        ("notes", ""),
    ] {
        let plan = dir.path().join(format!("{table}.yaml"));
        std::fs::write(
            &plan,
            format!(
                "changes:\n  - rename_column: {{ table: {table}, from: contents, to: body }}\n"
            ),
        )
        .unwrap();
        let r = run_on(&db.url, &["plan", plan.to_str().unwrap()]).await;
        if kind.is_empty() {
            r.expect(0);
            continue;
        }
        r.expect(2);
        assert!(
            r.stderr
                .contains(&format!("`{table}` is a Citus {kind} table"))
                && r.stderr.contains("docs/citus.md")
                && r.stderr.contains(":2:"),
            "{r:#?}"
        );
    }
}

// ---------------------------------------------------------------- plan, offline

#[tokio::test]
async fn plan_offline_prints_the_five_phases_and_both_gates() {
    let r = run(pgphase(&["plan", PLAN_FILE])).await;
    r.expect(0);
    let out = &r.stdout;
    for phase in [
        "phase 1/5: expand",
        "phase 2/5: dual_write",
        "phase 3/5: backfill",
        "phase 4/5: switch_reads",
        "phase 5/5: contract  (POINT OF NO RETURN",
    ] {
        assert!(out.contains(phase), "missing `{phase}` in:\n{out}");
    }
    assert_eq!(out.matches("⏸ GATE").count(), 2, "{out}");
    assert!(
        out.contains("deploy the application version that reads and writes `body`"),
        "{out}"
    );
    assert!(
        out.contains("confirm no running instance of the application still uses `contents`"),
        "{out}"
    );
    assert!(out.contains("note: expanded offline"), "{out}");
    assert!(out.contains(&format!(
        "pgphase phase advance {PLAN} --gate backfill --deployed <REF>"
    )));

    // The same as JSON.
    let r = run(pgphase(&["plan", PLAN_FILE, "--output", "json"])).await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["plan"], PLAN);
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "expand",
            "dual_write",
            "backfill",
            "switch_reads",
            "contract"
        ]
    );
    let gates = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["gate"].is_null())
        .count();
    assert_eq!(gates, 2);
}

// ---------------------------------------------------------------- bad plan files

/// (file name, text, expected line:column, words the message must contain)
type BadFile = (
    &'static str,
    &'static str,
    (usize, usize),
    &'static [&'static str],
);

#[tokio::test]
async fn bad_plan_files_exit_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[BadFile] = &[
        (
            "unknown-field.yaml",
            "name: r\nchanges:\n  - rename_column: { table: comments, form: contents, to: body }\n",
            (3, 39),
            &["unknown field `form`", "from"],
        ),
        (
            "unknown-kind.yaml",
            "name: r\nchanges:\n  - rename_colum: { table: comments, from: contents, to: body }\n",
            (3, 5),
            &["rename_colum", "rename_column"],
        ),
        (
            "wrong-type.yaml",
            "name: r\nsettings:\n  lock_retries: lots\nchanges:\n  - rename_column: { table: comments, from: contents, to: body }\n",
            (3, 17),
            &["whole number"],
        ),
        (
            "malformed.yaml",
            "name: r\nchanges:\n  - rename_column: { table: comments, from: contents, to: body\n",
            (3, 20),
            &["unclosed", "{"],
        ),
        (
            "bad-duration.yaml",
            "name: r\nsettings:\n  backfill:\n    pause: soon\nchanges:\n  - rename_column: { table: comments, from: contents, to: body }\n",
            (4, 12),
            &["invalid duration `soon`", "500ms"],
        ),
        (
            "same-name.yaml",
            "name: r\nchanges:\n  - rename_column:\n      table: comments\n      from: contents\n      to: contents\n",
            (6, 11),
            &["nothing to rename"],
        ),
    ];
    for (name, text, (line, col), words) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let file = path.display().to_string();
        let r = run(pgphase(&["plan", &file])).await;
        assert_eq!(r.code, 2, "{name}: {r:#?}");
        let prefix = format!("pgphase: error: {file}:{line}:{col}: ");
        assert!(
            r.stderr.starts_with(&prefix),
            "{name}: expected `{prefix}…`, got:\n{}",
            r.stderr
        );
        for w in *words {
            assert!(r.stderr.contains(w), "{name}: no `{w}` in:\n{}", r.stderr);
        }
        assert!(r.stdout.is_empty(), "{name}: {r:#?}");

        // `start` reads the file before it connects: same error, no database needed.
        let r = run(pgphase(&["start", &file, "--yes"])).await;
        assert_eq!(r.code, 2, "{name}: {r:#?}");
        assert!(r.stderr.starts_with(&prefix), "{name}: {}", r.stderr);
    }

    // With --output json the error is also a JSON object on stdout.
    let file = dir.path().join("unknown-kind.yaml").display().to_string();
    let r = run(pgphase(&["plan", &file, "--output", "json"])).await;
    r.expect(2);
    let v = r.json();
    assert_eq!(v["error"], "invalid");
    assert_eq!(v["exit_code"], 2);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{file}:3:5: ")));

    // A file that does not exist.
    let r = run(pgphase(&["plan", "plans/no-such-plan.yaml"])).await;
    r.expect(2);
    assert!(
        r.stderr
            .starts_with("pgphase: error: plans/no-such-plan.yaml: cannot read the plan file"),
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------- plan, live

#[tokio::test]
async fn plan_against_a_table_without_the_column_is_invalid_and_changes_nothing() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint NOT NULL, text_body text)",
        )
        .await
        .unwrap();
    let r = run_on(&db.url, &["plan", PLAN_FILE]).await;
    r.expect(2);
    let source = std::fs::read_to_string(PLAN_FILE).unwrap();
    let (line, col) = position_of(&source, "contents, to:");
    let expected = format!(
        "pgphase: error: {PLAN_FILE}:{line}:{col}: `comments` has no column `contents`; its columns are: id, post_id, text_body\n"
    );
    assert!(
        r.stderr.starts_with(&expected),
        "expected `{expected}`, got:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{r:#?}");
    assert!(
        !pgphase_schema_exists(&client).await,
        "`plan` created the pgphase schema"
    );

    // …and with the column present, the live plan shows the carry-over.
    client
        .batch_execute("ALTER TABLE comments RENAME COLUMN text_body TO contents")
        .await
        .unwrap();
    let r = run_on(&db.url, &["plan", PLAN_FILE]).await;
    r.expect(0);
    assert!(
        r.stdout
            .contains("ALTER TABLE public.comments ADD COLUMN IF NOT EXISTS body text;"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("expanded offline"), "{}", r.stdout);
    assert!(!pgphase_schema_exists(&client).await);
}

// ---------------------------------------------------------------- the whole walk

#[tokio::test]
async fn full_walk_with_json_output() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 3000).await;
    let json = ["--output", "json", "--quiet"];

    // start: runs expand, dual_write, backfill and stops at the first gate.
    let mut args = vec!["start", PLAN_FILE];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["outcome"], "awaiting_deploy", "{v}");
    assert_eq!(v["plan"], PLAN);
    assert_eq!(v["phase"], "backfill");
    assert!(v["gate"]
        .as_str()
        .unwrap()
        .contains("`body` instead of `contents`"));
    assert!(column_exists(&client, "body").await);
    assert!(column_exists(&client, "contents").await);

    // status, all plans
    let mut args = vec!["status"];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    let v = r.json();
    let plans = v["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{v}");
    let p = &plans[0];
    assert_eq!(p["plan"], PLAN);
    assert_eq!(p["status"], "awaiting_deploy");
    assert_eq!(p["interrupted"], false);
    assert_eq!(p["started_by"], "alice");
    assert_eq!(
        p["next_command"],
        format!("pgphase phase advance {PLAN} --gate backfill --deployed <REF>")
    );
    let phases = p["phases"].as_array().unwrap();
    let statuses: Vec<&str> = phases
        .iter()
        .map(|ph| ph["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["completed", "completed", "completed", "pending", "pending"]
    );
    assert!(p["waiting_for"].as_str().unwrap().contains("`body`"));

    // status of one plan: the same view, not wrapped
    let mut args = vec!["status", PLAN];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    assert_eq!(r.json()["status"], "awaiting_deploy");

    // advance past the deploy gate: switch_reads runs, stops at the drain gate
    let mut args = vec!["phase", "advance", PLAN, "--deployed", "v2", "--yes"];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["outcome"], "awaiting_deploy", "{v}");
    assert_eq!(v["phase"], "switch_reads");
    assert!(column_exists(&client, "contents").await);

    // advance past the drain gate: contract, completed
    let mut args = vec![
        "phase",
        "advance",
        PLAN,
        "--deployed",
        "v2-drained",
        "--yes",
    ];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["outcome"], "completed", "{v}");
    assert_eq!(v["plan"], PLAN);
    assert!(column_exists(&client, "body").await);
    assert!(!column_exists(&client, "contents").await);
    // data, default, index and check carried over
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE body LIKE 'seed comment %'), count(*),
                    (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef d JOIN pg_attribute a
                       ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                      WHERE d.adrelid = 'comments'::regclass AND a.attname = 'body'),
                    to_regclass('comments_body_idx') IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'body_not_empty')
               FROM comments",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3000);
    assert_eq!(row.get::<_, i64>(1), 3000);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("'n/a'::text")
    );
    assert!(row.get::<_, bool>(3));
    assert!(row.get::<_, bool>(4));

    let mut args = vec!["status", PLAN];
    args.extend(json);
    let v = run_on(&db.url, &args).await.expect(0).json();
    assert_eq!(v["status"], "completed");
    assert!(v["next_command"].is_null());

    // history: both gate confirmations, with the deployed refs and the actor
    let mut args = vec!["history", PLAN];
    args.extend(json);
    let r = run_on(&db.url, &args).await;
    r.expect(0);
    let v = r.json();
    let events = v["events"].as_array().unwrap();
    let gates: Vec<&Value> = events.iter().filter(|e| e["kind"] == "gate").collect();
    assert_eq!(gates.len(), 2, "{v:#}");
    assert_eq!(gates[0]["deployed_ref"], "v2");
    assert_eq!(gates[0]["phase"], "backfill");
    assert_eq!(gates[1]["deployed_ref"], "v2-drained");
    assert_eq!(gates[1]["phase"], "switch_reads");
    for g in &gates {
        assert_eq!(g["actor"], "alice");
        assert_eq!(g["plan"], PLAN);
        assert!(g["message"]
            .as_str()
            .unwrap()
            .starts_with("gate confirmed: "));
    }
    assert!(events.iter().all(|e| e["actor"] == "alice"), "{v:#}");
    // the log ends with the plan's completion and the command's outcome
    let n = events.len();
    assert_eq!(events[n - 2]["message"], "plan completed");
    assert_eq!(
        events[n - 1]["message"],
        "phase advance finished: plan completed"
    );

    // the same history as text
    let r = run_on(&db.url, &["history", PLAN]).await;
    r.expect(0);
    assert!(r.stdout.contains("[deployed v2]"), "{}", r.stdout);
    assert!(r.stdout.contains("[deployed v2-drained]"), "{}", r.stdout);
    assert!(r.stdout.contains("alice"), "{}", r.stdout);
}

// ---------------------------------------------------------------- refusals (exit 3)

#[tokio::test]
async fn advance_of_an_unknown_plan_is_refused() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 10).await;
    let r = run_on(
        &db.url,
        &[
            "phase",
            "advance",
            "no-such-plan",
            "--deployed",
            "v2",
            "--yes",
        ],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.starts_with(
            "pgphase: refused: plan `no-such-plan` has not been started in this database"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("pgphase start <FILE>"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{r:#?}");
    assert_eq!(plan_state(&client, "no-such-plan").await, (None, 0, 0));
    assert!(!column_exists(&client, "body").await);

    // status of an unknown plan is refused the same way
    let r = run_on(&db.url, &["status", "no-such-plan"]).await;
    r.expect(3);
}

#[tokio::test]
async fn rollback_of_a_completed_plan_is_refused() {
    let (db, client, _) = started(100).await;
    let s = db.session();
    pgphase::run::advance(&s, PLAN, "v2", None).await.unwrap();
    let out = pgphase::run::advance(&s, PLAN, "v2-drained", None)
        .await
        .unwrap();
    assert_eq!(out, pgphase::run::Outcome::Completed);
    let before = plan_state(&client, PLAN).await;
    assert_eq!(before.0.as_deref(), Some("completed"));

    let r = run_on(&db.url, &["phase", "rollback", PLAN, "--yes"]).await;
    r.expect(3);
    assert!(r.stderr.starts_with("pgphase: refused: "), "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with(&format!("pgphase: refused: plan `{PLAN}` is completed")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("\n  → "),
        "a refusal says what to do: {}",
        r.stderr
    );
    assert_eq!(plan_state(&client, PLAN).await, before);
    assert!(column_exists(&client, "body").await);
    assert!(!column_exists(&client, "contents").await);
}

#[tokio::test]
async fn start_again_after_the_file_was_edited_is_refused() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let path = plan_copy(dir.path());
    let file = path.display().to_string();

    let r = run_on(&db.url, &["start", &file, "--quiet"]).await;
    r.expect(0);
    assert!(
        r.stdout
            .contains(&format!("plan {PLAN}: phase backfill done")),
        "{}",
        r.stdout
    );
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = format!("{original}# reviewed again\n");
    std::fs::write(&path, &edited).unwrap();
    let before = plan_state(&client, PLAN).await;

    let r = run_on(&db.url, &["start", &file, "--quiet"]).await;
    r.expect(3);
    let was = pgphase::plan::checksum(&original);
    let now = pgphase::plan::checksum(&edited);
    assert!(
        r.stderr.starts_with(&format!(
            "pgphase: refused: {file} changed since plan `{PLAN}` started"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(pgphase::plan::short_checksum(&was)),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(pgphase::plan::short_checksum(&now)),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("sha256:").count(), 2, "{}", r.stderr);
    assert_eq!(plan_state(&client, PLAN).await, before);

    // `phase advance FILE` checks the checksum too
    let r = run_on(
        &db.url,
        &["phase", "advance", &file, "--deployed", "v2", "--yes"],
    )
    .await;
    r.expect(3);
    assert!(r.stderr.contains("changed since plan"), "{}", r.stderr);
    assert_eq!(plan_state(&client, PLAN).await, before);
}

#[tokio::test]
async fn advance_while_another_session_holds_the_plan_is_refused() {
    let (db, client, _) = started(100).await;
    let holder = common::connect(&db.url).await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    holder
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[
                &pgphase::state::store::LOCK_CLASS,
                &pgphase::state::store::lock_key(PLAN),
            ],
        )
        .await
        .unwrap();
    let before = plan_state(&client, PLAN).await;

    let r = run_on(
        &db.url,
        &["phase", "advance", PLAN, "--deployed", "v2", "--yes"],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.starts_with(&format!(
            "pgphase: refused: another pgphase command is working on plan `{PLAN}` right now (held by pid {pid},"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(plan_state(&client, PLAN).await, before);
    assert!(column_exists(&client, "contents").await);

    // once released, the same command goes through
    holder
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[
                &pgphase::state::store::LOCK_CLASS,
                &pgphase::state::store::lock_key(PLAN),
            ],
        )
        .await
        .unwrap();
    run_on(
        &db.url,
        &["phase", "advance", PLAN, "--deployed", "v2", "--yes"],
    )
    .await
    .expect(0);
}

#[tokio::test]
async fn contract_needs_a_confirmation() {
    let (db, client, _) = started(100).await;
    pgphase::run::advance(&db.session(), PLAN, "v2", None)
        .await
        .unwrap();
    let before = plan_state(&client, PLAN).await;
    assert_eq!(before.0.as_deref(), Some("awaiting_deploy"));

    // no --yes, and stdin is not a terminal (pgphase() sets Stdio::null())
    let r = run_on(
        &db.url,
        &["phase", "advance", PLAN, "--deployed", "v2-drained"],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr
            .contains("Phase `contract` is the point of no return"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("not a terminal: pass --yes to confirm."),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("pgphase: refused: not confirmed: nothing was run"),
        "{}",
        r.stderr
    );
    assert!(column_exists(&client, "contents").await, "contents dropped");
    assert_eq!(plan_state(&client, PLAN).await, before);
}

// ---------------------------------------------------------------- usage errors

#[tokio::test]
async fn advance_without_deployed_is_a_usage_error() {
    let r = run(pgphase(&[
        "--database-url",
        "postgres://postgres@127.0.0.1:1/x",
        "phase",
        "advance",
        PLAN,
    ]))
    .await;
    r.expect(2);
    assert!(r.stderr.contains("--deployed"), "{}", r.stderr);
    assert!(r.stderr.contains("Usage:"), "{}", r.stderr);

    // an empty reference is not a reference either
    let r = run(pgphase(&[
        "--database-url",
        "postgres://postgres@127.0.0.1:1/x",
        "phase",
        "advance",
        PLAN,
        "--deployed",
        " ",
    ]))
    .await;
    r.expect(2);
    assert!(
        r.stderr.contains("--deployed needs the deploy's reference"),
        "{}",
        r.stderr
    );

    // start without a database says how to give one
    let r = run(pgphase(&["start", PLAN_FILE])).await;
    r.expect(2);
    assert!(r.stderr.contains("no database given"), "{}", r.stderr);
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn the_password_is_never_printed() {
    let url = "postgres://postgres:hunter2@127.0.0.1:1/x";
    let check = |what: &str, r: &Run| {
        assert!(
            !r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"),
            "{what} printed the password: {r:#?}"
        );
    };

    // connection refused
    let r = run(pgphase(&["--database-url", url, "status"])).await;
    check("status", &r);
    r.expect(1);
    assert!(
        r.stderr
            .starts_with("pgphase: failed: cannot connect to postgres://postgres@127.0.0.1:1/x"),
        "{}",
        r.stderr
    );
    let r = run(pgphase(&[
        "--database-url",
        url,
        "status",
        "--output",
        "json",
    ]))
    .await;
    check("status --output json", &r);
    r.expect(1);
    assert_eq!(r.json()["error"], "failed");

    // the same through DATABASE_URL, for every command that connects
    for args in [
        vec!["plan", PLAN_FILE],
        vec!["start", PLAN_FILE, "--yes"],
        vec!["phase", "advance", PLAN, "--deployed", "v2", "--yes"],
        vec!["phase", "rollback", PLAN, "--yes"],
        vec!["history"],
    ] {
        let mut cmd = pgphase(&args);
        cmd.env("DATABASE_URL", url);
        let r = run(cmd).await;
        check(&args.join(" "), &r);
        assert_eq!(r.code, 1, "{args:?}: {r:#?}");
    }

    // an unparseable URL
    let r = run(pgphase(&[
        "--database-url",
        "postgres://postgres:hunter2@127.0.0.1:notaport/x",
        "status",
    ]))
    .await;
    check("bad URL", &r);
    r.expect(2);

    // help and usage errors with DATABASE_URL set
    for args in [vec!["status", "--help"], vec!["phase", "advance", PLAN]] {
        let mut cmd = pgphase(&args);
        cmd.env("DATABASE_URL", url);
        let r = run(cmd).await;
        check(&args.join(" "), &r);
    }
}

// ---------------------------------------------------------------- the example

#[tokio::test]
async fn comments_api_example_runs_against_a_test_database() {
    let bin = common::example_bin("comments_api");
    assert!(
        bin.exists(),
        "{} is missing: build the examples first (`cargo build --examples`, or plain `cargo test`)",
        bin.display()
    );
    let db = common::TestDb::new().await;
    let mut cmd = Command::new(bin);
    cmd.args([
        "--url",
        &db.url,
        "--version",
        "old",
        "--setup",
        "1000",
        "--seconds",
        "1",
    ])
    .stdin(Stdio::null());
    let r = run(cmd).await;
    r.expect(0);
    let v = r.json();
    assert_eq!(v["version"], "old", "{v:#}");
    assert_eq!(v["table"], "comments");
    assert_eq!(v["clients"], 4);
    assert!(v["seconds"].as_f64().unwrap() >= 1.0, "{v:#}");
    assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(v["stats"].is_object(), "{v:#}");
    assert!(v["verify"].is_object(), "{v:#}");
    assert!(
        r.stderr.contains("created table comments with 1000 rows"),
        "{}",
        r.stderr
    );

    let client = db.client().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM comments", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1000, "{n}");
}
