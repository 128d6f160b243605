//! The OLTP impact of a backfill, measured with PostgreSQL's own `pgbench` as the
//! application, on a throwaway durable primary (fsync on) with a streaming standby, side
//! by side in one run:
//!
//!   cargo bench --bench health                     # scale 10 (1M accounts), 4 clients
//!   cargo bench --bench health -- --scale 20 --clients 4
//!
//! 1. On the quiet primary: WAL bytes and time per row of `pgphase start` (change_type
//!    `pgbench_accounts.abalance` int → bigint, defaults) against one `UPDATE` that
//!    fills a new bigint column.
//! 2. The trade-off curve, beside pgbench's TPC-B-like script: 15 s windows of the
//!    backfill with batches aiming at 100, 50 and 20 ms without yielding to the load,
//!    `yield_to_load` 1 and 2, the defaults (20 ms, `max_app_wait: 25ms`,
//!    `yield_to_load: 4`), and the defaults with `max_replica_lag: 100ms`; each from a
//!    vacuumed table, rolled back after its window. `BENCH_CURVE='name=settings;…'`
//!    replaces the list (and skips 3 and 4).
//! 3. change_type with the defaults through every phase (`start`, `switch_reads`'
//!    verification, `contract`), with pgbench before and after.
//! 4. rename_column `abalance` → `balance` through every phase, beside a custom script
//!    that reads and writes the column: the old name until the gate after the backfill,
//!    then the new one (the deploy).
//! 5. The naive `ALTER TABLE … ALTER COLUMN abalance TYPE bigint`.
//!
//! Per window: tps, p50/p99/max transaction latency (pgbench's per-transaction log, only
//! the transactions that ended inside the window), the backfill's rows per second, and
//! the standby's worst replay lag sampled every 50 ms (`now() -
//! pg_last_xact_replay_timestamp()` on the standby while it is behind).

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgphase::conn::ConnInfo;
use pgphase::pgserver::{PgServer, ServerOptions};
use pgphase::plan;
use pgphase::run::{self, Session};
use tokio_postgres::Client;

async fn connect(url: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

fn pgbench(server: &PgServer) -> Command {
    let mut c = Command::new(server.bindir().join("pgbench"));
    c.args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(server.port().to_string());
    c
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Latencies (µs) of the transactions that ended in [from, to] (epoch µs).
fn latencies(dir: &Path, from: u64, to: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                continue;
            }
            let (Ok(lat), Ok(s), Ok(us)) = (
                f[2].parse::<u64>(),
                f[4].parse::<u64>(),
                f[5].parse::<u64>(),
            ) else {
                continue;
            };
            let end = s * 1_000_000 + us;
            if end >= from && end <= to {
                out.push(lat);
            }
        }
    }
    out.sort_unstable();
    out
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// pgbench running as the application, logging every transaction.
struct App {
    child: Child,
    dir: tempfile::TempDir,
}

impl App {
    /// The built-in TPC-B-like script, or `script` (a file for `-f`).
    async fn start(server: &PgServer, clients: u32, script: Option<&Path>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = pgbench(server);
        cmd.args(["-n", "-T", "3600", "-l", "--log-prefix"])
            .arg(dir.path().join("tx"))
            .args(["-c", &clients.to_string(), "-j", "2"]);
        if let Some(f) = script {
            cmd.arg("-f").arg(f);
        }
        let child = cmd
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbench");
        tokio::time::sleep(Duration::from_secs(2)).await; // warm up
        App { child, dir }
    }

    /// Stops pgbench and reads each window. pgbench buffers its log: killed, it loses
    /// the last few transactions, so it runs on for a moment after the last window.
    /// SIGTERM: a background shell starts its jobs with SIGINT ignored.
    fn stop(mut self, windows: Vec<Window>, rows: &mut Vec<Row>) {
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: kill(2) on our own child
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        for w in windows {
            let lat = latencies(self.dir.path(), w.from, w.to);
            rows.push(Row {
                name: w.name,
                secs: w.secs,
                tps: lat.len() as f64 / w.secs,
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                max: pct(&lat, 1.0),
                rows_per_s: w.rows_per_s,
                standby_lag_ms: w.standby_lag_ms,
            });
        }
    }
}

struct Window {
    name: String,
    from: u64,
    to: u64,
    secs: f64,
    rows_per_s: Option<f64>,
    standby_lag_ms: f64,
}

struct Row {
    name: String,
    secs: f64,
    tps: f64,
    p50: f64,
    p99: f64,
    max: f64,
    rows_per_s: Option<f64>,
    standby_lag_ms: f64,
}

/// Runs `work` as a measured window, sampling the standby's lag meanwhile.
async fn window<F: Future>(name: &str, standby_url: &str, work: F) -> (F::Output, Window) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let standby_url = standby_url.to_string();
        tokio::spawn(async move {
            let s = connect(&standby_url).await;
            let mut worst = 0f64;
            while !stop.load(Ordering::Relaxed) {
                let lag: Option<f64> = s
                    .query_one(
                        "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 END::float8",
                        &[],
                    )
                    .await
                    .ok()
                    .and_then(|r| r.get(0));
                worst = worst.max(lag.unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        })
    };
    let from = now_us();
    let t0 = Instant::now();
    let out = work.await;
    let secs = t0.elapsed().as_secs_f64();
    let to = now_us();
    stop.store(true, Ordering::Relaxed);
    let standby_lag_ms = sampler.await.unwrap();
    (
        out,
        Window {
            name: name.to_string(),
            from,
            to,
            secs,
            rows_per_s: None,
            standby_lag_ms,
        },
    )
}

fn session(url: &str) -> Session {
    Session {
        conn: ConnInfo::parse(url).unwrap(),
        actor: "bench".into(),
        observer: Arc::new(pgphase::exec::Silent),
        confirm: Arc::new(|_| true),
        failpoint: None,
    }
}

fn plan_file(name: &str, yaml: &str) -> plan::PlanFile {
    plan::PlanFile {
        plan: plan::parse(yaml, "bench.yaml", name).unwrap(),
        path: "bench.yaml".into(),
        checksum: plan::checksum(yaml),
        source: yaml.to_string(),
    }
}

async fn rows_done(c: &Client, plan: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(rows_done), 0)::int8 FROM pgphase.backfill_progress WHERE plan_name = $1",
        &[&plan],
    )
    .await
    .unwrap()
    .get(0)
}

/// `pgphase start` of `yaml` for `secs`, then stopped (as a crash would) and rolled
/// back: the backfill's rows per second beside the application.
async fn backfill_window(
    url: &str,
    standby_url: &str,
    name: &str,
    yaml: String,
    secs: u64,
) -> Window {
    let c = connect(url).await;
    let s = session(url);
    let file = plan_file(name, &yaml);
    let task = {
        let s = session(url);
        tokio::spawn(async move { run::start(&s, &file).await })
    };
    // the window opens when the backfill's first batch committed
    while rows_done(&c, name).await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = rows_done(&c, name).await;
    let (done, mut w) = window(name, standby_url, async {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        rows_done(&c, name).await
    })
    .await;
    task.abort();
    let _ = task.await;
    w.rows_per_s = Some((done - first) as f64 / w.secs);
    for attempt in 0.. {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match run::rollback_to(&s, name, None).await {
            Ok(_) => break,
            Err(e) if attempt < 20 => eprintln!("rollback of {name} not yet: {e}"),
            Err(e) => panic!("rollback of {name}: {e}"),
        }
    }
    w
}

/// Each statement on its own (VACUUM cannot run in the implicit transaction of a
/// multi-statement query).
async fn each(c: &Client, sql: &[&str]) {
    for q in sql {
        c.batch_execute(q).await.unwrap();
    }
}

async fn wal_lsn(c: &Client) -> i64 {
    c.query_one("SELECT (pg_current_wal_lsn() - '0/0')::int8", &[])
        .await
        .unwrap()
        .get(0)
}

struct Quiet {
    wal_backfill: f64,
    us_backfill: f64,
    /// The backfill step with batches of 100 ms and no `max_app_wait`.
    us_backfill_100ms: f64,
    wal_update: f64,
    us_update: f64,
    /// One UPDATE filling the plan's new column with its sync triggers in place (and
    /// `pgphase.backfill` on, as in a batch): what a one-statement backfill would cost
    /// under the same dual write.
    us_update_triggers: f64,
    rounds: usize,
}

/// WAL bytes and time per row, on the quiet primary: `pgphase start` (expand,
/// dual-write, backfill; rolled back after) against one `UPDATE` that fills a new
/// bigint column, bare and under the plan's sync triggers. This VM's disk makes single
/// runs vary by ±15 %: the measurements are interleaved, `rounds` times, and each
/// figure is its best round.
async fn quiet_per_row(primary: &PgServer, rows: f64) -> Quiet {
    let url = primary.url("postgres");
    let c = connect(&url).await;
    let s = session(&url);
    let backfill_secs = |plan: String| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM pgphase.backfill_progress WHERE plan_name = $1",
                &[&plan],
            )
            .await
            .unwrap()
            .get::<_, f64>(0)
        }
    };
    // each run from the same compact table, as freshly loaded: its UPDATEs find no free
    // space in their pages (no HOT update) and leave the same WAL
    let compact = ["VACUUM FULL pgbench_accounts", "CHECKPOINT"];
    let timed = |sql: String| {
        let c = &c;
        async move {
            let before = wal_lsn(c).await;
            let t0 = Instant::now();
            c.batch_execute(&sql).await.unwrap();
            let us = t0.elapsed().as_secs_f64() * 1e6 / rows;
            (us, (wal_lsn(c).await - before) as f64 / rows)
        }
    };
    let rounds = 2;
    let mut q = Quiet {
        wal_backfill: f64::MAX,
        us_backfill: f64::MAX,
        us_backfill_100ms: f64::MAX,
        wal_update: f64::MAX,
        us_update: f64::MAX,
        us_update_triggers: f64::MAX,
        rounds,
    };
    for round in 0..rounds {
        // pgphase with the defaults; then, with its triggers still in place, the same
        // column filled by one UPDATE
        each(&c, &compact).await;
        let name = format!("wal{round}");
        let before = wal_lsn(&c).await;
        run::start(&s, &plan_file(&name, &plan_yaml(&name, "", CHANGE_TYPE)))
            .await
            .expect("start");
        q.us_backfill = q
            .us_backfill
            .min(backfill_secs(name.clone()).await * 1e6 / rows);
        q.wal_backfill = q
            .wal_backfill
            .min((wal_lsn(&c).await - before) as f64 / rows);
        let column: String = c
            .query_one(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = 'pgbench_accounts'::regclass AND attname LIKE 'abalance_new%' AND NOT attisdropped",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let unfill = format!("SET pgphase.backfill = 'on'; UPDATE pgbench_accounts SET {column} = NULL; RESET pgphase.backfill");
        each(&c, &[&unfill, compact[0], compact[1]]).await;
        let fill = format!("SET pgphase.backfill = 'on'; UPDATE pgbench_accounts SET {column} = abalance; RESET pgphase.backfill");
        let (us, _) = timed(fill).await;
        q.us_update_triggers = q.us_update_triggers.min(us);
        run::rollback_to(&s, &name, None).await.expect("rollback");

        // one bare UPDATE
        each(&c, &compact).await;
        each(
            &c,
            &[
                "ALTER TABLE pgbench_accounts ADD COLUMN wal_probe bigint",
                "CHECKPOINT",
            ],
        )
        .await;
        let (us, wal) = timed("UPDATE pgbench_accounts SET wal_probe = abalance".into()).await;
        q.us_update = q.us_update.min(us);
        q.wal_update = q.wal_update.min(wal);
        each(&c, &["ALTER TABLE pgbench_accounts DROP COLUMN wal_probe"]).await;

        // pgphase with the old defaults: batches of 100 ms, no max_app_wait
        each(&c, &compact).await;
        let name = format!("wal100_{round}");
        let yaml = plan_yaml(
            &name,
            "target_batch_time: 100ms, max_app_wait: off",
            CHANGE_TYPE,
        );
        run::start(&s, &plan_file(&name, &yaml))
            .await
            .expect("start");
        q.us_backfill_100ms = q
            .us_backfill_100ms
            .min(backfill_secs(name.clone()).await * 1e6 / rows);
        run::rollback_to(&s, &name, None).await.expect("rollback");
    }
    each(&c, &compact).await;
    q
}

fn plan_yaml(name: &str, backfill: &str, change: &str) -> String {
    format!(
        "name: {name}\nsettings:\n  backfill: {{ {backfill} }}\n  contract: {{ evidence: off }}\nchanges:\n  - {change}\n"
    )
}

const CHANGE_TYPE: &str =
    "change_type: { table: pgbench_accounts, column: abalance, type: bigint }";
const RENAME: &str = "rename_column: { table: pgbench_accounts, from: abalance, to: balance }";

/// A script that reads and writes the changed column, under its old or new name.
fn script(dir: &Path, column: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{column}.sql"));
    std::fs::write(
        &path,
        format!(
            "\\set aid random(1, 100000 * :scale)\n\\set delta random(-5000, 5000)\nBEGIN;\nUPDATE pgbench_accounts SET {column} = {column} + :delta WHERE aid = :aid;\nSELECT {column} FROM pgbench_accounts WHERE aid = :aid;\nEND;\nSELECT aid, {column} FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 9;\n"
        ),
    )
    .unwrap();
    path
}

/// A plan through every phase beside `app`: start, (the deploy: `deploy` restarts the
/// application with another script), switch_reads, contract. Windows per phase.
async fn lifecycle(
    primary: &PgServer,
    standby_url: &str,
    clients: u32,
    name: &str,
    change: &str,
    scripts: (Option<&Path>, Option<&Path>),
    rows: &mut Vec<Row>,
) {
    let url = primary.url("postgres");
    let c = connect(&url).await;
    let s = session(&url);
    let file = plan_file(name, &plan_yaml(name, "", change));
    let app = App::start(primary, clients, scripts.0).await;
    let mut windows = Vec::new();
    let ((), w) = window(
        &format!("{name}: before"),
        standby_url,
        tokio::time::sleep(Duration::from_secs(10)),
    )
    .await;
    windows.push(w);
    let (r, mut w) = window(
        &format!("{name}: start (backfill)"),
        standby_url,
        run::start(&s, &file),
    )
    .await;
    r.expect("start");
    w.rows_per_s = Some(rows_done(&c, name).await as f64 / w.secs);
    windows.push(w);
    let app = if scripts.1 != scripts.0 {
        app.stop(std::mem::take(&mut windows), rows);
        App::start(primary, clients, scripts.1).await
    } else {
        app
    };
    let (r, w) = window(
        &format!("{name}: switch_reads (verify)"),
        standby_url,
        run::advance(&s, name, "v2", None),
    )
    .await;
    r.expect("advance into switch_reads");
    windows.push(w);
    let (r, w) = window(
        &format!("{name}: contract"),
        standby_url,
        run::advance(&s, name, "v2", None),
    )
    .await;
    r.expect("advance into contract");
    windows.push(w);
    let ((), w) = window(
        &format!("{name}: after"),
        standby_url,
        tokio::time::sleep(Duration::from_secs(10)),
    )
    .await;
    windows.push(w);
    app.stop(windows, rows);
}

async fn print_rows(scale: u32, clients: u32, c: &Client, quiet: &Quiet, rows: &[Row]) {
    println!(
        "pgbench, scale {scale} ({} accounts), -c {clients} -j 2, fsync on, one streaming standby; PostgreSQL {}",
        scale * 100_000,
        c.query_one("SHOW server_version", &[]).await.unwrap().get::<_, String>(0)
    );
    println!(
        "quiet primary, per row, best of {} interleaved rounds: pgphase start (change_type, defaults) {:.0} B of WAL, its backfill step {:.2} us ({:.2} us with batches of 100ms); one UPDATE filling a new bigint column {:.0} B, {:.2} us ({:.2} us under the plan's sync triggers); WAL {:.2}x; speed {:.2}x the bare UPDATE's ({:.2}x with batches of 100ms), {:.2}x the UPDATE's under the same triggers ({:.2}x)",
        quiet.rounds, quiet.wal_backfill, quiet.us_backfill, quiet.us_backfill_100ms, quiet.wal_update, quiet.us_update,
        quiet.us_update_triggers,
        quiet.wal_backfill / quiet.wal_update, quiet.us_update / quiet.us_backfill, quiet.us_update / quiet.us_backfill_100ms,
        quiet.us_update_triggers / quiet.us_backfill, quiet.us_update_triggers / quiet.us_backfill_100ms
    );
    println!(
        "{:<34} {:>7} {:>7} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "window", "secs", "tps", "x base", "p50 ms", "p99 ms", "max ms", "rows/s", "lag ms"
    );
    let mut base = rows.first().map_or((1.0, 1.0), |r| (r.tps, r.p99));
    for r in rows {
        if r.name.ends_with(": before") {
            base = (r.tps, r.p99);
        }
        println!(
            "{:<34} {:>7.1} {:>7.0} {:>6.2} {:>8.2} {:>8.2} {:>8.1} {:>9} {:>9.0}   (p99 {:.2}x)",
            r.name,
            r.secs,
            r.tps,
            r.tps / base.0,
            r.p50,
            r.p99,
            r.max,
            r.rows_per_s
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
            r.standby_lag_ms,
            r.p99 / base.1
        );
    }
}

#[tokio::main]
async fn main() {
    let mut scale = 10u32;
    let mut clients = 4u32;
    let mut curve_secs = 15u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scale" => scale = it.next().unwrap().parse().unwrap(),
            "--clients" => clients = it.next().unwrap().parse().unwrap(),
            "--window" => curve_secs = it.next().unwrap().parse().unwrap(),
            _ => {} // cargo bench passes --bench
        }
    }
    let primary = PgServer::start(&ServerOptions {
        durable: true,
        ..ServerOptions::default()
    })
    .expect("primary");
    let standby = PgServer::standby_of(&primary, "bench_standby", &ServerOptions::default())
        .expect("standby");
    let st = pgbench(&primary)
        .args(["-i", "-q", "-s", &scale.to_string(), "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pgbench -i");
    assert!(st.success(), "pgbench -i failed");
    let url = primary.url("postgres");
    let c = connect(&url).await;
    each(&c, &["VACUUM ANALYZE pgbench_accounts", "CHECKPOINT"]).await;
    let standby_url = standby.url("postgres");
    let accounts = (scale * 100_000) as f64;
    let quiet = quiet_per_row(&primary, accounts).await;
    if std::env::var("BENCH_QUIET_ONLY").is_ok() {
        print_rows(scale, clients, &c, &quiet, &[]).await;
        return;
    }
    let mut rows = Vec::new();

    // the trade-off curve
    let app = App::start(&primary, clients, None).await;
    let mut windows = Vec::new();
    let ((), w) = window(
        "baseline",
        &standby_url,
        tokio::time::sleep(Duration::from_secs(10)),
    )
    .await;
    windows.push(w);
    let variants: Vec<(String, String)> = match std::env::var("BENCH_CURVE") {
        Ok(v) => v
            .split(';')
            .map(|x| {
                let (n, b) = x.split_once('=').unwrap();
                (n.to_string(), b.to_string())
            })
            .collect(),
        Err(_) => [
            (
                "batch 100ms, no yield",
                "target_batch_time: 100ms, max_app_wait: off, yield_to_load: 0",
            ),
            (
                "batch 50ms, no yield",
                "target_batch_time: 50ms, max_app_wait: off, yield_to_load: 0",
            ),
            ("batch 20ms, no yield", "yield_to_load: 0"),
            ("yield_to_load 1", "yield_to_load: 1"),
            ("yield_to_load 2", "yield_to_load: 2"),
            ("defaults (yield_to_load 4)", ""),
            ("defaults, lag 100ms", "max_replica_lag: 100ms"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
    };
    for (name, backfill) in variants {
        let (name, backfill) = (name.as_str(), backfill.as_str());
        // each run starts from a vacuumed table, outside the windows
        each(&c, &["VACUUM pgbench_accounts", "CHECKPOINT"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let plan: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut w = backfill_window(
            &url,
            &standby_url,
            &plan,
            plan_yaml(&plan, backfill, CHANGE_TYPE),
            curve_secs,
        )
        .await;
        w.name = name.to_string();
        windows.push(w);
    }
    let (_, w) = window("naive ALTER", &standby_url, async {
        c.batch_execute("ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint")
            .await
            .unwrap()
    })
    .await;
    windows.push(w);
    app.stop(windows, &mut rows);
    each(
        &c,
        &[
            "ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE int",
            "VACUUM ANALYZE pgbench_accounts",
            "CHECKPOINT",
        ],
    )
    .await;
    if std::env::var("BENCH_CURVE").is_ok() {
        print_rows(scale, clients, &c, &quiet, &rows).await;
        return;
    }

    // every phase, with the defaults
    lifecycle(
        &primary,
        &standby_url,
        clients,
        "change_type",
        CHANGE_TYPE,
        (None, None),
        &mut rows,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        script(dir.path(), "abalance"),
        script(dir.path(), "balance"),
    );
    each(&c, &["VACUUM ANALYZE pgbench_accounts", "CHECKPOINT"]).await;
    lifecycle(
        &primary,
        &standby_url,
        clients,
        "rename_column",
        RENAME,
        (Some(&old), Some(&new)),
        &mut rows,
    )
    .await;

    print_rows(scale, clients, &c, &quiet, &rows).await;
    drop(standby);
}
