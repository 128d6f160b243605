//! Test harness: one throwaway cluster per test process (or `PGPHASE_TEST_DATABASE_URL`),
//! a fresh database per test so tests run in parallel.
#![allow(dead_code)]

pub mod cells;
pub mod cli;
pub mod terminal;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pgphase::catalog::Catalog;
use pgphase::conn::ConnInfo;
use pgphase::exec::Silent;
use pgphase::pgserver::{BouncerOptions, PgBouncer, PgServer, PoolMode, ServerOptions};
use pgphase::plan::{self, PlanFile};
use pgphase::run::Session;
use pgphase::sql::QualifiedName;
use tokio_postgres::Client;

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The admin URL of the server the tests use.
fn admin_url() -> String {
    if let Some(url) = std::env::var("PGPHASE_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        return url;
    }
    let server = SERVER
        .get_or_init(|| PgServer::start(&ServerOptions::default()).map_err(|e| format!("{e:#}")));
    match server {
        Ok(s) => s.url("postgres"),
        Err(e) => panic!("cannot start a throwaway PostgreSQL for the tests: {e}"),
    }
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_options("").await
    }
    /// A database created with these `CREATE DATABASE` options (e.g. `ENCODING …`).
    pub async fn with_options(options: &str) -> TestDb {
        TestDb::on(&admin_url(), options).await
    }
    /// A database of its own on another server (its superuser's URL), for tests that
    /// need a server configured otherwise.
    pub async fn on(admin_url: &str, options: &str) -> TestDb {
        let admin = connect(admin_url).await;
        let name = format!(
            "pgphase_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .await
            .expect("create database");
        let url = replace_dbname(admin_url, &name);
        TestDb { url, name }
    }
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
    pub fn conn(&self) -> ConnInfo {
        ConnInfo::parse(&self.url).unwrap()
    }
    /// A session that confirms everything and prints nothing.
    pub fn session(&self) -> Session {
        Session {
            conn: self.conn(),
            actor: "test".into(),
            observer: Arc::new(Silent),
            confirm: Arc::new(|_| true),
            failpoint: None,
        }
    }
}

fn replace_dbname(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("test URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A PgBouncer in `mode` in front of the test database's server, for the database owner
/// and `role`; returns it (stopped when dropped) and the URL of the test database
/// through it, as the owner.
pub fn pgbouncer(db: &TestDb, mode: PoolMode, role: Option<&str>) -> (PgBouncer, String) {
    let url = url::Url::parse(&db.url).expect("test URL");
    let owner = url.username().to_string();
    let mut users = vec![owner.clone()];
    users.extend(role.map(str::to_string));
    let b = PgBouncer::start(
        url.port().unwrap_or(5432),
        &BouncerOptions {
            pool_mode: mode,
            users,
            extra_conf: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("cannot start PgBouncer: {e:#}"));
    let through = b.url(&owner, &db.name);
    (b, through)
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A plan from YAML text, as if loaded from `plans/<name>.yaml`.
pub fn plan_from(yaml: &str, name: &str) -> PlanFile {
    // a path that exists nowhere, so `advance` by name does not find a file to compare
    let path = format!("test-plans/{name}.yaml");
    PlanFile {
        plan: plan::parse(yaml, &path, name).unwrap_or_else(|e| panic!("{e}")),
        path: path.into(),
        checksum: plan::checksum(yaml),
        source: yaml.to_string(),
    }
}

/// The repository's rename plan with test-friendly settings.
pub fn rename_plan(lock_timeout: &str, retries: u32, batch: u32) -> PlanFile {
    plan_from(
        &format!(
            "name: rename-comments-contents-to-body
settings:
  lock_timeout: {lock_timeout}
  lock_retries: {retries}
  backfill: {{ batch_size: {batch}, target_batch_time: 0s }}
changes:
  - rename_column: {{ table: comments, from: contents, to: body }}
"
        ),
        "rename-comments-contents-to-body",
    )
}

/// The name of the repository's rename plan.
pub const RENAME_PLAN: &str = "rename-comments-contents-to-body";

/// The rename plan as a file in `dir` (for the binary), with `settings` (YAML lines
/// indented by two spaces) under `settings:`.
pub fn write_rename_plan(dir: &std::path::Path, settings: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{RENAME_PLAN}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {RENAME_PLAN}\nsettings:\n{settings}\nchanges:\n  - rename_column: {{ table: comments, from: contents, to: body }}\n"
        ),
    )
    .unwrap();
    path
}

/// Waits until the plan's first backfill has done at least `rows` rows (panics after a
/// generous minute: the backfill did not progress).
pub async fn wait_for_backfill(client: &Client, plan: &str, rows: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = pgphase::state::store::progress(client, plan)
            .await
            .ok()
            .and_then(|p| p.first().map(|p| p.rows_done));
        if let Some(d) = done.filter(|&d| d >= rows) {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill did not reach {rows} rows: {done:?}"
        );
        sleep_ms(20).await;
    }
}

/// Polls `sql` (one boolean) until it is true; panics after `secs` seconds.
pub async fn wait_until(client: &Client, sql: &str, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "still not true after {secs} s: {sql}"
        );
        sleep_ms(50).await;
    }
}

/// The comments table of the story, with an index, a check and a default on `contents`
/// so the rename has something to carry over.
pub async fn rich_comments(client: &Client, rows: i64) {
    pgphase::workload::create_comments_table(client, "comments", rows)
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE INDEX comments_contents_idx ON comments (contents);
             ALTER TABLE comments ADD CONSTRAINT contents_not_empty CHECK (length(contents) > 0);
             ALTER TABLE comments ALTER COLUMN contents SET DEFAULT 'n/a';",
        )
        .await
        .unwrap();
}

/// Everything the schema says about a table, minus statistics, plus pgphase's leftovers
/// in other places (functions), for before/after comparisons.
pub async fn schema_of(client: &Client, table: &str) -> (Catalog, Vec<String>) {
    let name = QualifiedName::parse(table).unwrap();
    let mut cat = Catalog::load(client, &[name]).await.unwrap();
    for t in cat.tables.values_mut() {
        t.estimated_rows = 0;
    }
    let functions: Vec<String> = client
        .query(
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND p.proname NOT IN ('events_append_only') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (cat, functions)
}

/// Starts a plan and confirms every gate until it completes (no application: for
/// tests of what a plan does to the schema). Without the check before contract: no
/// application runs, and its 12 s window before each contract would be all these tests
/// wait for (tests/evidence.rs and the lifecycle tests run it).
pub async fn run_to_completion(
    s: &Session,
    file: &PlanFile,
) -> Result<pgphase::run::Outcome, pgphase::error::CmdError> {
    use pgphase::run::{self, Outcome};
    let mut file = file.clone();
    file.plan.settings.contract.evidence = pgphase::plan::EvidenceMode::Off;
    let file = &file;
    let mut out = run::start(s, file).await?;
    let mut n = 0;
    while let Outcome::AwaitingDeploy { .. } = out {
        n += 1;
        out = run::advance(s, &file.plan.name, &format!("app@v{n}"), Some(file)).await?;
    }
    Ok(out)
}

/// The server's major version.
pub async fn major_version(client: &Client) -> i32 {
    let v: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    v.parse::<i32>().unwrap() / 10000
}

/// Holds a lock from another session until dropped (or `release`d).
pub struct LockHolder {
    client: Client,
}

impl LockHolder {
    /// Opens a transaction that runs `sql` and stays open.
    pub async fn hold(url: &str, sql: &str) -> LockHolder {
        let client = connect(url).await;
        client
            .batch_execute("SET application_name = 'long-transaction'")
            .await
            .unwrap();
        client
            .batch_execute(&format!("BEGIN; {sql}"))
            .await
            .unwrap();
        LockHolder { client }
    }
    pub async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Path of a binary cargo built for the tests (the CLI), or of an example.
pub fn pgphase_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_pgphase"))
}

pub fn example_bin(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}
