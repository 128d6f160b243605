//! Benchmarks of where pgphase spends the database's time, measured side by side in one
//! run on a throwaway (durable: fsync on) PostgreSQL, printed as ratios.
//!
//!   cargo bench --bench backfill                      # 100k and 1M rows
//!   cargo bench --bench backfill -- --rows 100000,1000000,10000000
//!   cargo bench --bench backfill -- --quick           # 20k and 100k rows, short latency run
//!
//! 1. backfill throughput vs a single `UPDATE … SET body = contents` on an identical table;
//! 2. scaling: rows/s of the backfill at each size;
//! 3. sync-trigger overhead: UPDATE throughput with and without the triggers;
//! 4. impact on live traffic: p50/p99/max latency of an application workload with no
//!    migration, during the backfill, and during each DDL step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgphase::conn::ConnInfo;
use pgphase::exec::{Observer, StepOutcome};
use pgphase::pgserver::{PgServer, ServerOptions};
use pgphase::plan::{self, PlanFile};
use pgphase::program::Step;
use pgphase::run::{self, Session};
use rand::Rng;
use tokio_postgres::Client;

struct Args {
    sizes: Vec<i64>,
    latency_rows: i64,
    latency_secs: f64,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![100_000, 1_000_000],
        latency_rows: 1_000_000,
        latency_secs: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rows" => {
                a.sizes = it
                    .next()
                    .expect("--rows N[,N…]")
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().expect("a row count"))
                    .collect()
            }
            "--quick" => {
                a.sizes = vec![20_000, 100_000];
                a.latency_rows = 100_000;
                a.latency_secs = 2.0;
            }
            "--bench" => {} // passed by cargo
            other => eprintln!("ignoring argument {other}"),
        }
    }
    a
}

async fn connect(url: &str) -> Client {
    ConnInfo::parse(url).unwrap().connect().await.unwrap()
}

async fn create_table(c: &Client, name: &str, rows: i64) {
    c.batch_execute(&format!(
        "CREATE TABLE {name} (id bigserial PRIMARY KEY, post_id bigint NOT NULL, user_id bigint NOT NULL,
                              contents text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO {name} (post_id, user_id, contents)
              SELECT g % 1000, g % 7919, 'comment number ' || g || ' with some text to copy over' FROM generate_series(1, {rows}) g;"
    ))
    .await
    .unwrap();
    each(c, &[&format!("VACUUM ANALYZE {name}")]).await;
}

/// Runs statements one by one (VACUUM cannot run in the implicit transaction of a batch).
async fn each(c: &Client, sqls: &[&str]) {
    for sql in sqls {
        c.batch_execute(sql).await.unwrap();
    }
}

fn plan_for(table: &str, batch: u32) -> PlanFile {
    let yaml = format!(
        "name: bench-{table}\nsettings:\n  backfill: {{ batch_size: {batch} }}\nchanges:\n  - rename_column: {{ table: {table}, from: contents, to: body }}\n"
    );
    PlanFile {
        path: format!("bench/{table}.yaml").into(),
        checksum: plan::checksum(&yaml),
        plan: plan::parse(&yaml, "bench.yaml", "bench").unwrap(),
        source: yaml,
    }
}

/// Labels latency samples with the step pgphase is running.
#[derive(Default)]
struct Labeler {
    label: Mutex<String>,
}

impl Observer for Labeler {
    fn step_started(&self, phase: &str, index: usize, _total: usize, step: &Step) {
        let what = match &step.action {
            pgphase::program::Action::Backfill(_) => "backfill (batched copy)".to_string(),
            _ => format!("{phase} {}: {}", index + 1, step.lock),
        };
        *self.label.lock().unwrap() = what;
    }
    fn step_finished(&self, _: &str, _: &Step, _: &StepOutcome, _: Duration) {
        *self.label.lock().unwrap() = "between steps".into();
    }
}

fn session(url: &str, observer: Arc<dyn Observer>) -> Session {
    Session {
        conn: ConnInfo::parse(url).unwrap(),
        actor: "bench".into(),
        observer,
        confirm: Arc::new(|_| true),
        failpoint: None,
    }
}

async fn backfill_ms(c: &Client, plan: &str) -> f64 {
    c.query_one(
        "SELECT duration_ms FROM pgphase.events WHERE plan_name = $1 AND kind = 'step' AND message LIKE 'backfilled%'",
        &[&plan],
    )
    .await
    .unwrap()
    .get::<_, i64>(0) as f64
}

async fn throughput(server: &PgServer, rows: i64) -> (f64, f64, f64) {
    let db = format!("bench_{rows}");
    connect(&server.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = server.url(&db);
    let c = connect(&url).await;
    create_table(&c, "single", rows).await;
    create_table(&c, "phased", rows).await;
    c.batch_execute("CHECKPOINT").await.unwrap();

    // The limit: one statement, no trigger, no batching (a live system cannot afford it).
    c.batch_execute("ALTER TABLE single ADD COLUMN body text")
        .await
        .unwrap();
    let t0 = Instant::now();
    c.batch_execute("UPDATE single SET body = contents")
        .await
        .unwrap();
    let single = t0.elapsed().as_secs_f64();
    c.batch_execute("CHECKPOINT").await.unwrap();

    let plan = plan_for("phased", 1000);
    run::start(&session(&url, Arc::new(pgphase::exec::Silent)), &plan)
        .await
        .unwrap();
    let phased = backfill_ms(&c, &plan.plan.name).await / 1000.0;
    let batches: i64 = c
        .query_one(
            "SELECT batches FROM pgphase.backfill_progress WHERE plan_name = $1",
            &[&plan.plan.name],
        )
        .await
        .unwrap()
        .get(0);
    (
        rows as f64 / single,
        rows as f64 / phased,
        rows as f64 / batches as f64,
    )
}

/// UPDATE throughput with and without the sync triggers: of the synced column (the
/// trigger must run) and of another column (the WHEN clause skips it).
async fn trigger_overhead(server: &PgServer, rows: i64) -> [(f64, f64); 2] {
    let db = "bench_trigger";
    connect(&server.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = server.url(db);
    let c = connect(&url).await;
    create_table(&c, "plain", rows).await;
    create_table(&c, "synced", rows).await;
    each(
        &c,
        &[
            "ALTER TABLE plain ADD COLUMN body text",
            "UPDATE plain SET body = contents",
            "VACUUM ANALYZE plain",
        ],
    )
    .await;
    run::start(
        &session(&url, Arc::new(pgphase::exec::Silent)),
        &plan_for("synced", 5000),
    )
    .await
    .unwrap();
    each(&c, &["VACUUM ANALYZE synced", "CHECKPOINT"]).await;
    let mut out = [(0.0, 0.0); 2];
    for (i, set) in ["contents = contents || '!'", "post_id = post_id + 1"]
        .iter()
        .enumerate()
    {
        let mut rates = Vec::new();
        for t in ["plain", "synced"] {
            let t0 = Instant::now();
            c.batch_execute(&format!("UPDATE {t} SET {set}"))
                .await
                .unwrap();
            rates.push(rows as f64 / t0.elapsed().as_secs_f64());
            each(&c, &[&format!("VACUUM {t}"), "CHECKPOINT"]).await;
        }
        out[i] = (rates[0], rates[1]);
    }
    out
}

#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Old-app clients (read by id, update by id, insert) while pgphase runs the plan.
async fn latency(
    server: &PgServer,
    rows: i64,
    secs: f64,
) -> BTreeMap<String, (usize, f64, f64, f64)> {
    let db = "bench_latency";
    connect(&server.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = server.url(db);
    let c = connect(&url).await;
    create_table(&c, "comments", rows).await;
    let labeler = Arc::new(Labeler::default());
    *labeler.label.lock().unwrap() = "no migration (baseline)".into();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (url, samples, stop, labeler) =
            (url.clone(), samples.clone(), stop.clone(), labeler.clone());
        handles.push(tokio::spawn(async move {
            let c = connect(&url).await;
            let read = c
                .prepare("SELECT contents FROM comments WHERE id = $1")
                .await
                .unwrap();
            let update = c
                .prepare("UPDATE comments SET contents = $1 WHERE id = $2")
                .await
                .unwrap();
            let insert = c
                .prepare("INSERT INTO comments (post_id, user_id, contents) VALUES (1, 2, $1)")
                .await
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id: i64 = rand::thread_rng().gen_range(1..=rows);
                let label = labeler.label.lock().unwrap().clone();
                let t0 = Instant::now();
                let r = match n % 10 {
                    0..=5 => c.query_opt(&read, &[&id]).await.map(|_| ()),
                    6..=8 => c
                        .execute(&update, &[&format!("edited {n}"), &id])
                        .await
                        .map(|_| ()),
                    _ => c.execute(&insert, &[&format!("new {n}")]).await.map(|_| ()),
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                r.expect("application query failed during the benchmark");
                samples.lock().unwrap().0.entry(label).or_default().push(ms);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let plan = plan_for("comments", 1000);
    let s = session(&url, labeler.clone());
    let out = run::start(&s, &plan).await.unwrap();
    *labeler.label.lock().unwrap() = "between steps".into();
    assert!(matches!(out, run::Outcome::AwaitingDeploy { .. }));
    run::advance(&s, &plan.plan.name, "bench", None)
        .await
        .unwrap();
    // the application switches to `body` here in real life; this workload keeps using
    // `contents` until contract, which drops it: stop just before.
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    let mut out = BTreeMap::new();
    for (label, mut v) in std::mem::take(&mut samples.lock().unwrap().0) {
        let n = v.len();
        out.insert(
            label,
            (n, pct(&mut v, 0.5), pct(&mut v, 0.99), pct(&mut v, 1.0)),
        );
    }
    out
}

#[tokio::main]
async fn main() {
    let a = args();
    let opts = ServerOptions {
        durable: true,
        extra_conf: vec![
            ("shared_buffers".into(), "1GB".into()),
            ("max_wal_size".into(), "8GB".into()),
            ("checkpoint_timeout".into(), "30min".into()),
        ],
        ..ServerOptions::default()
    };
    let server = PgServer::start(&opts).expect("start a throwaway PostgreSQL");
    println!(
        "pgphase benchmarks — PostgreSQL {} (fsync on, shared_buffers 1GB), {} cores",
        server.major_version(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    println!("\n1+2. backfill throughput vs a single UPDATE, and scaling");
    println!(
        "{:>11} {:>14} {:>14} {:>8} {:>12}",
        "rows", "single UPDATE", "pgphase", "ratio", "rows/batch"
    );
    let mut rates = Vec::new();
    for &n in &a.sizes {
        let (single, phased, per_batch) = throughput(&server, n).await;
        rates.push(phased);
        println!(
            "{n:>11} {:>10.0} r/s {:>10.0} r/s {:>7.2}x {per_batch:>12.0}",
            single,
            phased,
            phased / single
        );
    }
    if rates.len() > 1 {
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        println!(
            "   scaling: backfill rows/s varies by {:.0}% across sizes (max/min {:.2})",
            (hi / lo - 1.0) * 100.0,
            hi / lo
        );
    }

    let trig_rows = *a.sizes.iter().min().unwrap_or(&100_000);
    let [(plain, synced), (plain_other, synced_other)] = trigger_overhead(&server, trig_rows).await;
    println!("\n3. sync-trigger overhead: UPDATE of {trig_rows} rows in one statement, rows/s");
    println!(
        "   of the synced column:  without triggers {plain:.0}, with {synced:.0}: {:.2}x of trigger-free throughput",
        synced / plain
    );
    println!(
        "   of another column:     without triggers {plain_other:.0}, with {synced_other:.0}: {:.2}x",
        synced_other / plain_other
    );

    println!(
        "\n4. application latency (3 clients: 60% read, 30% update, 10% insert by id), {} rows, ms",
        a.latency_rows
    );
    let lat = latency(&server, a.latency_rows, a.latency_secs).await;
    let base = lat
        .get("no migration (baseline)")
        .map(|x| x.2)
        .unwrap_or(f64::NAN);
    println!(
        "   {:<40} {:>7} {:>8} {:>8} {:>8} {:>10}",
        "while", "queries", "p50", "p99", "max", "p99/base"
    );
    let mut stall: (f64, String) = (0.0, String::new());
    for (label, (n, p50, p99, max)) in &lat {
        println!(
            "   {label:<40} {n:>7} {p50:>8.2} {p99:>8.2} {max:>8.2} {:>9.2}x",
            p99 / base
        );
        if *max > stall.0 && label != "no migration (baseline)" {
            stall = (*max, label.clone());
        }
    }
    println!(
        "   longest stall of an application query during the migration: {:.1} ms ({})",
        stall.0, stall.1
    );
    server.stop();
}
