//! The "comments API" as concurrent database clients: the proof of zero downtime.
//!
//! Two versions of one small application talk to the `comments` table:
//!
//! * the OLD app reads and writes the text through `contents`;
//! * the NEW app reads and writes it through `body` (its INSERT names only `body`).
//!
//! Each client has its own connection and loops over a mix of single-statement,
//! autocommit operations (about 30 % insert, 30 % update of its own rows, 40 % reads).
//! Every acknowledged write goes into a shared ledger (row id → last value written by
//! its owner), and reads are checked against that ledger:
//!
//! * reading one of its own rows must return exactly the last value it wrote
//!   (anything else is a "stale read" or a lost write);
//! * every 5th insert is *frozen* (never updated afterwards); clients of one version
//!   read the other version's frozen rows through their own column, which proves the
//!   two columns are kept in sync across versions;
//! * a page read (`ORDER BY id DESC LIMIT 20`) must not error, and no ledger row in it
//!   may read as NULL (frozen ones must also carry the right value).
//!
//! Any query error (with its SQLSTATE and the SQL that failed) or failed check counts as
//! a failure for that version; the client carries on, reconnecting if its connection
//! closed. After [`Workload::stop_all`], [`Workload::verify`] reads every ledger row back
//! through a given column and reports missing or wrong rows.
//!
//! Statements are prepared once per connection and reused, as an application with a
//! statement cache would; a statement that failed is re-prepared on its next use.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// Default pause between two operations of one client.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(3);
/// How many sample error messages [`WorkloadStats::samples`] keeps.
pub const MAX_SAMPLES: usize = 10;
/// Every `FROZEN_EVERY`-th insert of a client is frozen (never updated afterwards).
pub const FROZEN_EVERY: u64 = 5;
/// Rows per `WHERE id = ANY($1)` query in [`Workload::verify`].
const VERIFY_CHUNK: usize = 1000;
/// Pause between two reconnection attempts of one client.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Which version of the comments API a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AppVersion {
    Old,
    New,
}

impl AppVersion {
    /// The column this version reads and writes the comment text through.
    pub fn column(self) -> &'static str {
        match self {
            AppVersion::Old => "contents",
            AppVersion::New => "body",
        }
    }

    /// Short lowercase tag: "old" / "new".
    pub fn tag(self) -> &'static str {
        match self {
            AppVersion::Old => "old",
            AppVersion::New => "new",
        }
    }

    /// The `application_name` its connections use: "comments-api-old" / "comments-api-new".
    pub fn application_name(self) -> &'static str {
        match self {
            AppVersion::Old => "comments-api-old",
            AppVersion::New => "comments-api-new",
        }
    }

    /// The other version.
    pub fn other(self) -> AppVersion {
        match self {
            AppVersion::Old => AppVersion::New,
            AppVersion::New => AppVersion::Old,
        }
    }

    fn idx(self) -> usize {
        match self {
            AppVersion::Old => 0,
            AppVersion::New => 1,
        }
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl FromStr for AppVersion {
    type Err = anyhow::Error;

    /// Accepts "old" or "new" (any case).
    fn from_str(s: &str) -> Result<AppVersion> {
        match s.to_ascii_lowercase().as_str() {
            "old" => Ok(AppVersion::Old),
            "new" => Ok(AppVersion::New),
            other => bail!("unknown app version {other:?} (expected \"old\" or \"new\")"),
        }
    }
}

/// Counters so far. `samples` holds up to [`MAX_SAMPLES`] distinct failure messages,
/// each naming the client, the operation, the error (SQLSTATE and server message for
/// database errors) and the SQL that failed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkloadStats {
    pub old_ok: u64,
    pub old_failed: u64,
    pub new_ok: u64,
    pub new_failed: u64,
    pub samples: Vec<String>,
    /// Slowest single operation (including any wait for locks) of an old client, in ms.
    pub old_max_latency_ms: u64,
    /// Slowest single operation (including any wait for locks) of a new client, in ms.
    pub new_max_latency_ms: u64,
    /// Times a client (either version) found its connection closed and opened a new one.
    pub reconnects: u64,
}

impl WorkloadStats {
    /// Failures of both versions.
    pub fn failed(&self) -> u64 {
        self.old_failed + self.new_failed
    }

    /// Successful operations of both versions.
    pub fn ok(&self) -> u64 {
        self.old_ok + self.new_ok
    }
}

/// Result of [`Workload::verify`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Ledger rows read back.
    pub checked: u64,
    /// Ledger rows not found in the table.
    pub missing: u64,
    /// Ledger rows whose value is NULL or not the last value their owner wrote.
    pub wrong: u64,
    /// Up to [`MAX_SAMPLES`] descriptions of missing or wrong rows.
    pub samples: Vec<String>,
}

impl VerifyReport {
    /// No missing and no wrong row. (A report with `checked == 0` is clean too: check
    /// that separately if the workload must have written something.)
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.wrong == 0
    }
}

/// Create the comments table `table` (an unquoted simple identifier, optionally
/// schema-qualified) and fill it with `rows` seed rows in one `INSERT … SELECT
/// generate_series`, then ANALYZE it. Fails if the table already exists.
pub async fn create_comments_table(client: &Client, table: &str, rows: i64) -> Result<()> {
    check_ident(table, "table name")?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (
                id bigserial PRIMARY KEY,
                post_id bigint NOT NULL,
                user_id bigint NOT NULL,
                contents text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )"
        ))
        .await
        .map_err(|e| anyhow::anyhow!("creating table {table}: {}", describe_error(&e)))?;
    client
        .execute(
            &format!(
                "INSERT INTO {table} (post_id, user_id, contents)
                 SELECT g % 100 + 1, g % 1000 + 1, 'seed comment ' || g
                 FROM generate_series(1::bigint, $1::bigint) AS g"
            ),
            &[&rows],
        )
        .await
        .map_err(|e| anyhow::anyhow!("seeding table {table}: {}", describe_error(&e)))?;
    client
        .batch_execute(&format!("ANALYZE {table}"))
        .await
        .map_err(|e| anyhow::anyhow!("analyzing table {table}: {}", describe_error(&e)))?;
    Ok(())
}

/// A set of comments-API clients of both versions sharing one ledger.
///
/// Cheap to clone: clones share the clients, counters and ledger. `Send + Sync`.
/// Clients are tokio tasks, so `start_clients` must run inside a tokio runtime; stop
/// them with [`Workload::stop_all`] before dropping the last handle (otherwise they run
/// until the runtime shuts down).
#[derive(Clone)]
pub struct Workload {
    inner: Arc<Inner>,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("table", &self.inner.table)
            .field("old_running", &self.running(AppVersion::Old))
            .field("new_running", &self.running(AppVersion::New))
            .field("ledger_rows", &self.ledger_rows())
            .finish()
    }
}

struct Inner {
    url: String,
    table: String,
    pause_us: AtomicU64,
    next_client: AtomicU64,
    counters: [Counters; 2],
    samples: Mutex<Vec<String>>,
    ledger: Mutex<Ledger>,
    clients: tokio::sync::Mutex<Vec<ClientHandle>>,
    reconnects: AtomicU64,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    max_latency_us: AtomicU64,
    running: AtomicU64,
}

struct ClientHandle {
    version: AppVersion,
    id: u64,
    stop: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

#[derive(Default)]
struct Ledger {
    rows: HashMap<i64, Entry>,
    /// Frozen row ids per version (index = `AppVersion::idx`).
    frozen: [Vec<i64>; 2],
}

struct Entry {
    owner: u64,
    version: AppVersion,
    /// The last value the owner wrote and the server acknowledged.
    value: String,
    /// Values of later updates whose outcome is unknown (the connection broke before
    /// the answer came): the row may hold any of these instead.
    maybe: Vec<String>,
    frozen: bool,
}

impl Entry {
    fn accepts(&self, v: &str) -> bool {
        self.value == v || self.maybe.iter().any(|m| m == v)
    }
}

impl Workload {
    /// A workload against `url` (a libpq-style URL or key=value string) and `table`.
    /// Nothing connects until [`Workload::start_clients`].
    pub fn new(url: &str, table: &str) -> Workload {
        Workload {
            inner: Arc::new(Inner {
                url: url.to_string(),
                table: table.to_string(),
                pause_us: AtomicU64::new(DEFAULT_PAUSE.as_micros() as u64),
                next_client: AtomicU64::new(1),
                counters: Default::default(),
                samples: Mutex::new(Vec::new()),
                ledger: Mutex::new(Ledger::default()),
                clients: tokio::sync::Mutex::new(Vec::new()),
                reconnects: AtomicU64::new(0),
            }),
        }
    }

    /// Pause between two operations of one client (default [`DEFAULT_PAUSE`]; each
    /// pause is this plus up to half of it again at random). `Duration::ZERO` runs flat
    /// out. Shared by all clones; takes effect from each client's next pause.
    pub fn with_pause(self, pause: Duration) -> Self {
        self.inner
            .pause_us
            .store(pause.as_micros() as u64, Ordering::Relaxed);
        self
    }

    /// The table the clients use.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Start `n` clients of one version. Each opens its own connection (application_name
    /// "comments-api-old" / "comments-api-new") before this returns, then loops until
    /// stopped. Fails if a connection cannot be opened (clients already started keep
    /// running).
    pub async fn start_clients(&self, version: AppVersion, n: usize) -> Result<()> {
        check_ident(&self.inner.table, "table name")?;
        for _ in 0..n {
            let id = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
            let client = connect(&self.inner.url, version.application_name())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} client {id}: connecting: {}",
                        version.tag(),
                        describe_error(&e)
                    )
                })?;
            let stop = Arc::new(AtomicBool::new(false));
            let task = ClientTask::new(self.inner.clone(), version, id, stop.clone(), client);
            self.inner.counters[version.idx()]
                .running
                .fetch_add(1, Ordering::SeqCst);
            let join = tokio::spawn(task.run());
            self.inner.clients.lock().await.push(ClientHandle {
                version,
                id,
                stop,
                join,
            });
        }
        Ok(())
    }

    /// Stop all clients of `version` and wait for them: each finishes its current
    /// operation first (like a rolling deploy taking those instances away).
    pub async fn stop_clients(&self, version: AppVersion) {
        self.stop_where(|v| v == version).await
    }

    /// Stop every client of both versions and wait for them.
    pub async fn stop_all(&self) {
        self.stop_where(|_| true).await
    }

    async fn stop_where(&self, pick: impl Fn(AppVersion) -> bool) {
        let stopping: Vec<ClientHandle> = {
            let mut clients = self.inner.clients.lock().await;
            let (stop, keep): (Vec<_>, Vec<_>) = clients.drain(..).partition(|c| pick(c.version));
            *clients = keep;
            stop
        };
        for c in &stopping {
            c.stop.store(true, Ordering::SeqCst);
        }
        for c in stopping {
            if let Err(e) = c.join.await {
                // A panicking client is a bug in the workload; make it impossible to miss.
                self.inner.counters[c.version.idx()]
                    .running
                    .fetch_sub(1, Ordering::SeqCst);
                self.inner.record_failure(
                    c.version,
                    format!("[{} client {}] task ended abnormally: {e}", c.version, c.id),
                );
            }
        }
    }

    /// Clients of `version` currently running.
    pub fn running(&self, version: AppVersion) -> usize {
        self.inner.counters[version.idx()]
            .running
            .load(Ordering::SeqCst) as usize
    }

    /// Rows in the ledger (acknowledged inserts of all clients so far).
    pub fn ledger_rows(&self) -> usize {
        self.inner.ledger.lock().unwrap().rows.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkloadStats {
        let c = &self.inner.counters;
        let ms = |v: AppVersion| c[v.idx()].max_latency_us.load(Ordering::Relaxed) / 1000;
        WorkloadStats {
            old_ok: c[0].ok.load(Ordering::Relaxed),
            old_failed: c[0].failed.load(Ordering::Relaxed),
            new_ok: c[1].ok.load(Ordering::Relaxed),
            new_failed: c[1].failed.load(Ordering::Relaxed),
            samples: self.inner.samples.lock().unwrap().clone(),
            old_max_latency_ms: ms(AppVersion::Old),
            new_max_latency_ms: ms(AppVersion::New),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Read every ledger row back through `column` ("contents" or "body") and check it
    /// exists and holds the last value its owner wrote. Call after
    /// [`Workload::stop_all`]: it refuses to run while clients are running, since their
    /// in-flight updates would make the comparison meaningless.
    pub async fn verify(&self, column: &str) -> Result<VerifyReport> {
        check_ident(column, "column name")?;
        check_ident(&self.inner.table, "table name")?;
        let running = self.running(AppVersion::Old) + self.running(AppVersion::New);
        if running > 0 {
            bail!("verify called while {running} clients are still running: call stop_all first");
        }
        // Snapshot the ledger: (id, accepted values, description of the writer).
        let mut expected: Vec<(i64, Vec<String>, String)> = {
            let ledger = self.inner.ledger.lock().unwrap();
            ledger
                .rows
                .iter()
                .map(|(id, e)| {
                    let mut accept = vec![e.value.clone()];
                    accept.extend(e.maybe.iter().cloned());
                    let who = format!(
                        "{} client {}{}",
                        e.version,
                        e.owner,
                        if e.frozen { ", frozen" } else { "" }
                    );
                    (*id, accept, who)
                })
                .collect()
        };
        expected.sort_by_key(|(id, _, _)| *id);

        let client = connect(&self.inner.url, "comments-api-verify")
            .await
            .map_err(|e| anyhow::anyhow!("verify: connecting: {}", describe_error(&e)))?;
        let table = &self.inner.table;
        let sql = format!("SELECT id, {column} FROM {table} WHERE id = ANY($1)");
        let mut report = VerifyReport::default();
        for chunk in expected.chunks(VERIFY_CHUNK) {
            let ids: Vec<i64> = chunk.iter().map(|(id, _, _)| *id).collect();
            let rows = client
                .query(sql.as_str(), &[&ids])
                .await
                .map_err(|e| anyhow::anyhow!("verify: {} -- SQL: {sql}", describe_error(&e)))?;
            let mut found: HashMap<i64, Option<String>> = HashMap::with_capacity(rows.len());
            for row in &rows {
                let id: i64 = row.try_get(0).context("verify: reading id")?;
                let v: Option<String> = row
                    .try_get(1)
                    .with_context(|| format!("verify: reading {column} of id {id}"))?;
                found.insert(id, v);
            }
            for (id, accept, who) in chunk {
                report.checked += 1;
                let problem = match found.get(id) {
                    None => {
                        report.missing += 1;
                        format!("id {id} ({who}): row missing")
                    }
                    Some(None) => {
                        report.wrong += 1;
                        format!(
                            "id {id} ({who}): {column} is NULL, expected {:?}",
                            accept[0]
                        )
                    }
                    Some(Some(v)) if accept.iter().any(|a| a == v) => continue,
                    Some(Some(v)) => {
                        report.wrong += 1;
                        format!(
                            "id {id} ({who}): {column} = {v:?}, expected {:?}",
                            accept[0]
                        )
                    }
                };
                if report.samples.len() < MAX_SAMPLES {
                    report.samples.push(problem);
                }
            }
        }
        Ok(report)
    }
}

impl Inner {
    fn pause(&self) -> Duration {
        Duration::from_micros(self.pause_us.load(Ordering::Relaxed))
    }

    fn record_ok(&self, version: AppVersion) {
        self.counters[version.idx()]
            .ok
            .fetch_add(1, Ordering::Relaxed);
    }

    fn record_failure(&self, version: AppVersion, message: String) {
        self.counters[version.idx()]
            .failed
            .fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < MAX_SAMPLES && !samples.contains(&message) {
            samples.push(message);
        }
    }

    fn record_latency(&self, version: AppVersion, took: Duration) {
        self.counters[version.idx()]
            .max_latency_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Accept `name` or `schema.name` made of ASCII letters, digits and underscores,
/// not starting with a digit: it is pasted into SQL unquoted.
fn check_ident(s: &str, what: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.split('.').count() <= 2
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !ok {
        bail!("{what} {s:?} is not a simple identifier");
    }
    Ok(())
}

/// The server's message with SQLSTATE for database errors, the error chain otherwise.
pub fn describe_error(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" (detail: {detail})"));
        }
        s
    } else {
        let mut s = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(e) = source {
            s.push_str(&format!(": {e}"));
            source = e.source();
        }
        s
    }
}

async fn connect(url: &str, application_name: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    config.application_name(application_name);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Errors show up on the client side as failed queries / is_closed().
        let _ = connection.await;
    });
    Ok(client)
}

// ---------------------------------------------------------------------------------
// One client

#[derive(Clone, Copy)]
enum Sql {
    Insert = 0,
    Update = 1,
    ReadOne = 2,
    Page = 3,
}

/// A connection with its prepared-statement cache.
struct Session {
    client: Client,
    stmts: [Option<Statement>; 4],
}

impl Session {
    fn new(client: Client) -> Session {
        Session {
            client,
            stmts: Default::default(),
        }
    }

    async fn stmt(&mut self, which: Sql, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = &self.stmts[which as usize] {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql).await?;
        self.stmts[which as usize] = Some(st.clone());
        Ok(st)
    }

    async fn query(
        &mut self,
        which: Sql,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.stmt(which, sql).await?;
        let res = self.client.query(&st, params).await;
        if res.is_err() {
            // Re-prepare next time (e.g. after "cached plan must not change result type").
            self.stmts[which as usize] = None;
        }
        res
    }

    async fn execute(
        &mut self,
        which: Sql,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.stmt(which, sql).await?;
        let res = self.client.execute(&st, params).await;
        if res.is_err() {
            self.stmts[which as usize] = None;
        }
        res
    }
}

/// Why one operation failed.
struct Failure {
    op: &'static str,
    message: String,
    sql: Option<String>,
}

impl Failure {
    fn db(op: &'static str, err: &tokio_postgres::Error, sql: &str) -> Failure {
        Failure {
            op,
            message: describe_error(err),
            sql: Some(sql.to_string()),
        }
    }

    fn check(op: &'static str, message: String, sql: &str) -> Failure {
        Failure {
            op,
            message,
            sql: Some(sql.to_string()),
        }
    }
}

struct ClientTask {
    inner: Arc<Inner>,
    version: AppVersion,
    id: u64,
    stop: Arc<AtomicBool>,
    rng: StdRng,
    counter: u64,
    /// All rows this client inserted (acknowledged).
    own: Vec<i64>,
    /// Its rows that may be updated (not frozen).
    own_mutable: Vec<i64>,
    /// SQL text per `Sql` variant.
    sql: [String; 4],
    session: Option<Session>,
}

impl ClientTask {
    fn new(
        inner: Arc<Inner>,
        version: AppVersion,
        id: u64,
        stop: Arc<AtomicBool>,
        client: Client,
    ) -> ClientTask {
        let t = &inner.table;
        let col = version.column();
        let sql = [
            format!("INSERT INTO {t} (post_id, user_id, {col}) VALUES ($1, $2, $3) RETURNING id"),
            format!("UPDATE {t} SET {col} = $1 WHERE id = $2"),
            format!("SELECT {col} FROM {t} WHERE id = $1"),
            format!("SELECT id, {col} FROM {t} ORDER BY id DESC LIMIT 20"),
        ];
        ClientTask {
            inner,
            version,
            id,
            stop,
            rng: StdRng::from_entropy(),
            counter: 0,
            own: Vec::new(),
            own_mutable: Vec::new(),
            sql,
            session: Some(Session::new(client)),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    async fn run(mut self) {
        while !self.stopped() {
            if self.session.as_ref().is_none_or(|s| s.client.is_closed()) {
                self.session = None;
                match connect(&self.inner.url, self.version.application_name()).await {
                    Ok(c) => {
                        self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.session = Some(Session::new(c));
                    }
                    Err(e) => {
                        self.fail(Failure {
                            op: "connect",
                            message: describe_error(&e),
                            sql: None,
                        });
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
            let started = Instant::now();
            let outcome = self.one_op().await;
            self.inner.record_latency(self.version, started.elapsed());
            match outcome {
                Ok(()) => self.inner.record_ok(self.version),
                Err(f) => self.fail(f),
            }
            let pause = self.inner.pause();
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                let jitter = self.rng.gen_range(0..=pause.as_micros() as u64 / 2);
                tokio::time::sleep(pause + Duration::from_micros(jitter)).await;
            }
        }
        self.inner.counters[self.version.idx()]
            .running
            .fetch_sub(1, Ordering::SeqCst);
    }

    fn fail(&self, f: Failure) {
        let mut msg = format!(
            "[{} client {}] {}: {}",
            self.version, self.id, f.op, f.message
        );
        if let Some(sql) = f.sql {
            msg.push_str(" -- SQL: ");
            msg.push_str(&sql);
        }
        self.inner.record_failure(self.version, msg);
    }

    async fn one_op(&mut self) -> Result<(), Failure> {
        let roll = self.rng.gen_range(0..100);
        if roll < 30 || (roll < 60 && self.own_mutable.is_empty()) {
            self.insert().await
        } else if roll < 60 {
            self.update().await
        } else if roll < 75 && !self.own.is_empty() {
            self.read_own().await
        } else if (75..88).contains(&roll) {
            match self.pick_frozen_of_other() {
                Some((id, value)) => self.read_frozen(id, value).await,
                None => self.read_page().await,
            }
        } else {
            self.read_page().await
        }
    }

    fn next_value(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{}-c{}-{}{}", self.version, self.id, kind, self.counter)
    }

    async fn insert(&mut self) -> Result<(), Failure> {
        let value = self.next_value("i");
        let frozen = self.counter % FROZEN_EVERY == 0;
        let post_id: i64 = self.rng.gen_range(1..=100);
        let user_id: i64 = self.rng.gen_range(1..=1000);
        let sql = &self.sql[Sql::Insert as usize];
        let sess = self.session.as_mut().expect("connected");
        let rows = sess
            .query(Sql::Insert, sql, &[&post_id, &user_id, &value])
            .await
            .map_err(|e| Failure::db("insert", &e, sql))?;
        let id: i64 = match rows.first().map(|r| r.try_get(0)) {
            Some(Ok(id)) => id,
            Some(Err(e)) => {
                return Err(Failure::check(
                    "insert",
                    format!("bad RETURNING id: {e}"),
                    sql,
                ))
            }
            None => return Err(Failure::check("insert", "no id returned".into(), sql)),
        };
        {
            let mut ledger = self.inner.ledger.lock().unwrap();
            ledger.rows.insert(
                id,
                Entry {
                    owner: self.id,
                    version: self.version,
                    value,
                    maybe: Vec::new(),
                    frozen,
                },
            );
            if frozen {
                ledger.frozen[self.version.idx()].push(id);
            }
        }
        self.own.push(id);
        if !frozen {
            self.own_mutable.push(id);
        }
        Ok(())
    }

    async fn update(&mut self) -> Result<(), Failure> {
        let id = self.own_mutable[self.rng.gen_range(0..self.own_mutable.len())];
        let value = self.next_value("u");
        let sql = &self.sql[Sql::Update as usize];
        let sess = self.session.as_mut().expect("connected");
        match sess.execute(Sql::Update, sql, &[&value, &id]).await {
            Ok(1) => {
                let mut ledger = self.inner.ledger.lock().unwrap();
                let e = ledger.rows.get_mut(&id).expect("own row in ledger");
                e.value = value;
                e.maybe.clear();
                Ok(())
            }
            Ok(n) => Err(Failure::check(
                "update",
                format!("update of own row id {id} changed {n} rows (expected 1: write lost?)"),
                sql,
            )),
            Err(err) => {
                if err.as_db_error().is_none() {
                    // No answer from the server: the update may or may not have committed.
                    let mut ledger = self.inner.ledger.lock().unwrap();
                    if let Some(e) = ledger.rows.get_mut(&id) {
                        e.maybe.push(value);
                    }
                }
                Err(Failure::db("update", &err, sql))
            }
        }
    }

    async fn read_own(&mut self) -> Result<(), Failure> {
        let id = self.own[self.rng.gen_range(0..self.own.len())];
        let sql = &self.sql[Sql::ReadOne as usize];
        let sess = self.session.as_mut().expect("connected");
        let rows = sess
            .query(Sql::ReadOne, sql, &[&id])
            .await
            .map_err(|e| Failure::db("read own row", &e, sql))?;
        let got = read_text(&rows, 0).map_err(|m| Failure::check("read own row", m, sql))?;
        let mut ledger = self.inner.ledger.lock().unwrap();
        let e = ledger.rows.get_mut(&id).expect("own row in ledger");
        let col = self.version.column();
        match got {
            None => Err(Failure::check(
                "read own row",
                format!("own row id {id} missing (expected {col} = {:?})", e.value),
                sql,
            )),
            Some(None) => Err(Failure::check(
                "read own row",
                format!("own row id {id}: {col} is NULL (expected {:?})", e.value),
                sql,
            )),
            Some(Some(v)) if e.accepts(&v) => {
                if !e.maybe.is_empty() {
                    // The outcome of an unanswered update is now known.
                    e.value = v;
                    e.maybe.clear();
                }
                Ok(())
            }
            Some(Some(v)) => Err(Failure::check(
                "read own row",
                format!(
                    "stale read of own row id {id}: {col} = {v:?}, expected {:?}",
                    e.value
                ),
                sql,
            )),
        }
    }

    fn pick_frozen_of_other(&mut self) -> Option<(i64, String)> {
        let ledger = self.inner.ledger.lock().unwrap();
        let list = &ledger.frozen[self.version.other().idx()];
        if list.is_empty() {
            return None;
        }
        let id = list[self.rng.gen_range(0..list.len())];
        Some((id, ledger.rows[&id].value.clone()))
    }

    async fn read_frozen(&mut self, id: i64, expected: String) -> Result<(), Failure> {
        let op = "read other version's row";
        let sql = &self.sql[Sql::ReadOne as usize];
        let sess = self.session.as_mut().expect("connected");
        let rows = sess
            .query(Sql::ReadOne, sql, &[&id])
            .await
            .map_err(|e| Failure::db(op, &e, sql))?;
        let got = read_text(&rows, 0).map_err(|m| Failure::check(op, m, sql))?;
        let col = self.version.column();
        let other = self.version.other();
        match got {
            Some(Some(v)) if v == expected => Ok(()),
            None => Err(Failure::check(
                op,
                format!("row id {id} written by the {other} app is missing"),
                sql,
            )),
            Some(None) => Err(Failure::check(
                op,
                format!("row id {id} written by the {other} app: {col} is NULL (expected {expected:?})"),
                sql,
            )),
            Some(Some(v)) => Err(Failure::check(
                op,
                format!(
                    "row id {id} written by the {other} app: {col} = {v:?}, expected {expected:?} (columns out of sync)"
                ),
                sql,
            )),
        }
    }

    async fn read_page(&mut self) -> Result<(), Failure> {
        let op = "read page";
        let sql = &self.sql[Sql::Page as usize];
        let sess = self.session.as_mut().expect("connected");
        let rows = sess
            .query(Sql::Page, sql, &[])
            .await
            .map_err(|e| Failure::db(op, &e, sql))?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row
                .try_get(0)
                .map_err(|e| Failure::check(op, format!("reading id: {e}"), sql))?;
            let v: Option<String> = row
                .try_get(1)
                .map_err(|e| Failure::check(op, format!("reading text of id {id}: {e}"), sql))?;
            page.push((id, v));
        }
        let col = self.version.column();
        let ledger = self.inner.ledger.lock().unwrap();
        let mut problems = Vec::new();
        for (id, v) in page {
            let Some(e) = ledger.rows.get(&id) else {
                continue;
            };
            match v {
                None => problems.push(format!("id {id} ({} app's row): {col} is NULL", e.version)),
                // Only frozen rows (and this client's own) can be compared: others may be
                // updated concurrently by their owner.
                Some(v) if (e.frozen || e.owner == self.id) && !e.accepts(&v) => {
                    problems.push(format!(
                        "id {id} ({} app's row): {col} = {v:?}, expected {:?}",
                        e.version, e.value
                    ))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut message = problems[..problems.len().min(3)].join("; ");
        if problems.len() > 3 {
            message.push_str(&format!("; and {} more rows", problems.len() - 3));
        }
        Err(Failure::check(op, message, sql))
    }
}

/// The text column of a 0/1-row result: `None` = no row, `Some(None)` = NULL.
fn read_text(rows: &[Row], col: usize) -> Result<Option<Option<String>>, String> {
    match rows.first() {
        None => Ok(None),
        Some(r) => r
            .try_get::<_, Option<String>>(col)
            .map(Some)
            .map_err(|e| format!("reading text column: {e}")),
    }
}
