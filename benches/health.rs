//! The OLTP impact of a backfill, measured with PostgreSQL's own `pgbench` (TPC-B-like
//! script) as the application, on a throwaway durable primary (fsync on) with a
//! streaming standby, side by side in one run:
//!
//!   cargo bench --bench health                     # scale 10 (1M accounts), 4 clients
//!   cargo bench --bench health -- --scale 20 --clients 4
//!
//! 1. baseline: pgbench alone;
//! 2. defaults: during `pgphase start` of `change_type pgbench_accounts.abalance
//!    int → bigint` with the default settings (`max_replica_lag: 2s`, `max_slot_lag: 1GB`);
//! 3. throttled: the same with `max_replica_lag: 100ms` and `pause: 10ms`;
//! 4. naive ALTER: during `ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint`.
//!
//! And, on the quiet primary first, the WAL bytes per row of `pgphase start` against one
//! `UPDATE` that fills a new bigint column.
//!
//! Per run: tps, p50/p99/max transaction latency (pgbench's per-transaction log, only
//! the transactions inside the backfill's window), the backfill's time and time spent
//! waiting, and the standby's worst replay lag sampled every 50 ms
//! (`now() - pg_last_xact_replay_timestamp()` on the standby while it is behind).

use std::path::Path;
use std::process::{Command, Stdio};
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

struct Row {
    name: &'static str,
    secs: f64,
    tps: f64,
    p50: f64,
    p99: f64,
    max: f64,
    waited_ms: i64,
    standby_lag_ms: f64,
}

/// What runs beside pgbench in one measurement.
enum Beside {
    Nothing,
    /// `pgphase start` of this plan (expand, dual-write, backfill); rolled back after the
    /// window closes.
    Start(String),
    /// One statement, e.g. the naive `ALTER TABLE … TYPE bigint`.
    Sql(&'static str),
}

async fn measure(
    name: &'static str,
    primary: &PgServer,
    standby_url: &str,
    clients: u32,
    beside: Beside,
) -> Row {
    let url = primary.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("tx");
    let mut bench = pgbench(primary)
        .args(["-n", "-T", "600", "-l", "--log-prefix"])
        .arg(&prefix)
        .args(["-c", &clients.to_string(), "-j", "2", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench");
    tokio::time::sleep(Duration::from_secs(2)).await; // warm up
                                                      // the standby's lag, sampled while the run lasts
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
    let mut waited_ms = 0;
    let mut undo = None;
    match &beside {
        Beside::Nothing => tokio::time::sleep(Duration::from_secs(10)).await,
        Beside::Sql(sql) => connect(&url).await.batch_execute(sql).await.unwrap(),
        Beside::Start(yaml) => {
            let s = session(&url);
            run::start(&s, &plan_file(name, yaml)).await.expect("start");
            let c = connect(&url).await;
            waited_ms = c
                .query_one(
                    "SELECT coalesce(sum(waited_ms), 0)::int8 FROM pgphase.backfill_progress WHERE plan_name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            undo = Some(s);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let to = now_us();
    stop.store(true, Ordering::Relaxed);
    let standby_lag_ms = sampler.await.unwrap();
    // SAFETY: kill(2) on our own child
    unsafe { libc::kill(bench.id() as i32, libc::SIGINT) };
    let _ = bench.wait();
    if let Some(s) = undo {
        run::rollback_to(&s, name, None).await.expect("rollback");
    }
    let lat = latencies(dir.path(), from, to);
    Row {
        name,
        secs,
        tps: lat.len() as f64 / secs,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        max: pct(&lat, 1.0),
        waited_ms,
        standby_lag_ms,
    }
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

/// WAL bytes per row, on the quiet primary: `pgphase start` (expand, dual-write,
/// backfill; rolled back after) against one `UPDATE` that fills a new bigint column.
async fn wal_per_row(primary: &PgServer, rows: f64) -> (f64, f64) {
    let url = primary.url("postgres");
    let c = connect(&url).await;
    let s = session(&url);
    let yaml = plan_yaml("wal", "");
    let before = wal_lsn(&c).await;
    run::start(&s, &plan_file("wal", &yaml))
        .await
        .expect("start");
    let backfill = (wal_lsn(&c).await - before) as f64 / rows;
    run::rollback_to(&s, "wal", None).await.expect("rollback");
    each(
        &c,
        &[
            "VACUUM pgbench_accounts",
            "ALTER TABLE pgbench_accounts ADD COLUMN wal_probe bigint",
            "CHECKPOINT",
        ],
    )
    .await;
    let before = wal_lsn(&c).await;
    c.batch_execute("UPDATE pgbench_accounts SET wal_probe = abalance")
        .await
        .unwrap();
    let update = (wal_lsn(&c).await - before) as f64 / rows;
    each(
        &c,
        &[
            "ALTER TABLE pgbench_accounts DROP COLUMN wal_probe",
            "VACUUM pgbench_accounts",
            "CHECKPOINT",
        ],
    )
    .await;
    (backfill, update)
}

fn plan_yaml(name: &str, backfill: &str) -> String {
    format!(
        "name: {name}\nsettings:\n  backfill: {{ {backfill} }}\nchanges:\n  - change_type: {{ table: pgbench_accounts, column: abalance, type: bigint }}\n"
    )
}

#[tokio::main]
async fn main() {
    let mut scale = 10u32;
    let mut clients = 4u32;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scale" => scale = it.next().unwrap().parse().unwrap(),
            "--clients" => clients = it.next().unwrap().parse().unwrap(),
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
    let c = connect(&primary.url("postgres")).await;
    each(&c, &["VACUUM ANALYZE pgbench_accounts", "CHECKPOINT"]).await;
    let standby_url = standby.url("postgres");
    let (wal_backfill, wal_update) = wal_per_row(&primary, (scale * 100_000) as f64).await;
    let rows = vec![
        measure("baseline", &primary, &standby_url, clients, Beside::Nothing).await,
        measure(
            "defaults",
            &primary,
            &standby_url,
            clients,
            Beside::Start(plan_yaml("defaults", "")),
        )
        .await,
        measure(
            "throttled",
            &primary,
            &standby_url,
            clients,
            Beside::Start(plan_yaml(
                "throttled",
                "max_replica_lag: 100ms, pause: 10ms",
            )),
        )
        .await,
        measure(
            "naive ALTER",
            &primary,
            &standby_url,
            clients,
            Beside::Sql("ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint"),
        )
        .await,
    ];
    println!(
        "pgbench TPC-B, scale {scale} ({} accounts), -c {clients} -j 2, fsync on, one streaming standby; change_type abalance int -> bigint (start: expand, dual_write, backfill)",
        scale * 100_000
    );
    println!(
        "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>15}",
        "run", "secs", "tps", "p50 ms", "p99 ms", "max ms", "waited ms", "standby lag ms"
    );
    let base = rows[0].tps;
    for r in &rows {
        println!(
            "{:<12} {:>8.1} {:>8.0} {:>9.2} {:>9.2} {:>9.1} {:>10} {:>15.0}   ({:.2}x baseline tps)",
            r.name, r.secs, r.tps, r.p50, r.p99, r.max, r.waited_ms, r.standby_lag_ms, r.tps / base
        );
    }
    println!(
        "WAL per row: pgphase start {wal_backfill:.0} B, single UPDATE of a new bigint column {wal_update:.0} B ({:.2}x)",
        wal_backfill / wal_update
    );
    drop(standby);
}
