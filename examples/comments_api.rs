//! Run the comments API (old or new version) against a database for a while, then
//! verify every write and print a JSON summary.
//!
//! ```text
//! cargo run --example comments_api -- --url URL --version old|new --clients N --seconds S \
//!     [--table comments] [--setup ROWS] [--pause-ms MS]
//! ```
//!
//! `--setup ROWS` first creates the table (it must not exist) with ROWS seed rows.
//! Exits 1 if any query failed, if verification is not clean, or if nothing succeeded.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pgphase::workload::{create_comments_table, AppVersion, Workload};

const USAGE: &str = "usage: comments_api --url URL --version old|new [--clients N] [--seconds S] \
                     [--table NAME] [--setup ROWS] [--pause-ms MS]";

struct Args {
    url: String,
    version: AppVersion,
    clients: usize,
    seconds: f64,
    table: String,
    setup: Option<i64>,
    pause_ms: Option<f64>,
}

fn parse_args() -> Result<Args> {
    let mut url = None;
    let mut version = None;
    let mut clients = 4usize;
    let mut seconds = 10f64;
    let mut table = "comments".to_string();
    let mut setup = None;
    let mut pause_ms = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--version" => version = Some(value()?.parse::<AppVersion>()?),
            "--clients" => clients = value()?.parse().context("--clients")?,
            "--seconds" => seconds = value()?.parse().context("--seconds")?,
            "--table" => table = value()?,
            "--setup" => setup = Some(value()?.parse().context("--setup")?),
            "--pause-ms" => pause_ms = Some(value()?.parse().context("--pause-ms")?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let url = match url.or_else(|| std::env::var("DATABASE_URL").ok()) {
        Some(u) => u,
        None => bail!("--url is required (or DATABASE_URL)\n{USAGE}"),
    };
    let Some(version) = version else {
        bail!("--version old|new is required\n{USAGE}");
    };
    if !(seconds >= 0.0 && seconds.is_finite()) {
        bail!("--seconds must be a non-negative number");
    }
    Ok(Args {
        url,
        version,
        clients,
        seconds,
        table,
        setup,
        pause_ms,
    })
}

async fn run(args: Args) -> Result<bool> {
    if let Some(rows) = args.setup {
        let (client, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls)
            .await
            .context("connecting for --setup")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        create_comments_table(&client, &args.table, rows).await?;
        eprintln!("created table {} with {rows} rows", args.table);
    }

    let mut workload = Workload::new(&args.url, &args.table);
    if let Some(ms) = args.pause_ms {
        workload = workload.with_pause(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let started = Instant::now();
    if let Err(e) = workload.start_clients(args.version, args.clients).await {
        workload.stop_all().await;
        return Err(e);
    }
    eprintln!(
        "running {} {} clients on {} for {}s",
        args.clients, args.version, args.table, args.seconds
    );
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    workload.stop_all().await;
    let elapsed = started.elapsed().as_secs_f64();

    let stats = workload.stats();
    let verify = workload.verify(args.version.column()).await?;
    let ops = stats.ok() + stats.failed();
    let per_sec = ops as f64 / elapsed.max(1e-9);
    let summary = serde_json::json!({
        "version": args.version.tag(),
        "table": args.table,
        "clients": args.clients,
        "seconds": elapsed,
        "ops_per_sec": per_sec,
        "ops_per_sec_per_client": per_sec / (args.clients.max(1) as f64),
        "stats": stats,
        "verify": verify,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let good = stats.failed() == 0 && verify.is_clean() && (args.clients == 0 || stats.ok() > 0);
    Ok(good)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
