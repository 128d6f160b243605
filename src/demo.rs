//! `pgphase demo`: the whole story on a throwaway local Postgres.
//!
//! An old API (writes `contents`) runs while the rename plan starts; at the first gate a
//! rolling deploy brings in the new API (writes `body`); at the second the old one is
//! drained; contract drops `contents`. Every client query is counted, every write
//! verified. Then the naive `ALTER TABLE … RENAME COLUMN` is run under the same old API,
//! for contrast.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::pgserver::{PgServer, ServerOptions};
use crate::plan::{self, PlanFile};
use crate::report::{self, progress::StderrObserver};
use crate::run::{self, Outcome, Session};
use crate::workload::{create_comments_table, AppVersion, Workload, WorkloadStats};

/// The plan the demo runs: the real file from `plans/`.
pub const RENAME_PLAN: &str = include_str!("../plans/rename-comments-contents-to-body.yaml");
pub const RENAME_PLAN_PATH: &str = "plans/rename-comments-contents-to-body.yaml";

pub struct DemoOptions {
    pub rows: i64,
    pub clients: usize,
    pub stage: Duration,
    pub json: bool,
}

fn say(json: bool, text: &str) {
    if !json {
        println!("{text}");
    }
}

pub async fn run(o: DemoOptions) -> Result<i32, CmdError> {
    let server = tokio::task::spawn_blocking(|| PgServer::start(&ServerOptions::default()))
        .await
        .map_err(|e| CmdError::Failed(e.into()))??;
    say(
        o.json,
        &format!(
            "▶ started a throwaway PostgreSQL {} on 127.0.0.1:{} (removed when the demo ends)",
            server.major_version(),
            server.port()
        ),
    );
    let result = story(&server, &o).await;
    drop(server);
    result
}

async fn story(server: &PgServer, o: &DemoOptions) -> Result<i32, CmdError> {
    let admin = ConnInfo::parse(&server.url("postgres"))?.connect().await?;
    admin.batch_execute("CREATE DATABASE demo").await?;
    let url = server.url("demo");
    let conn = ConnInfo::parse(&url)?;
    let db = conn.connect().await?;
    create_comments_table(&db, "comments", o.rows).await?;
    say(
        o.json,
        &format!(
            "▶ created comments ({} rows; contents text NOT NULL)",
            o.rows
        ),
    );

    let source = RENAME_PLAN.to_string();
    let file = PlanFile {
        path: RENAME_PLAN_PATH.into(),
        checksum: plan::checksum(&source),
        plan: plan::parse(
            &source,
            RENAME_PLAN_PATH,
            "rename-comments-contents-to-body",
        )
        .map_err(|e| CmdError::Invalid(e.to_string()))?,
        source,
    };
    let name = file.plan.name.clone();
    let session = Session {
        conn: conn.clone(),
        actor: "demo".into(),
        observer: Arc::new(StderrObserver::new(o.json)),
        confirm: Arc::new(|_| true),
        failpoint: None,
    };

    let wl = Workload::new(&url, "comments");
    let n = o.clients.max(1);
    wl.start_clients(AppVersion::Old, n).await?;
    say(
        o.json,
        &format!("▶ {n} clients of the OLD api (reads and writes `contents`) are running"),
    );
    tokio::time::sleep(o.stage).await;

    say(o.json, &format!("\n$ pgphase start {RENAME_PLAN_PATH}"));
    let out = run::start(&session, &file).await?;
    say(o.json, report::outcome_text(&name, &out).trim_end());
    tokio::time::sleep(o.stage).await;

    say(o.json, &format!("\n▶ rolling deploy: {n} clients of the NEW api (reads and writes `body`) join the old ones"));
    wl.start_clients(AppVersion::New, n).await?;
    tokio::time::sleep(o.stage).await;
    say(
        o.json,
        &format!("\n$ pgphase phase advance {name} --gate backfill --deployed api@v2"),
    );
    let out = run::advance_with(
        &session,
        &name,
        "api@v2",
        Some(&file),
        run::AdvanceOptions {
            gate: Some("backfill".into()),
            ..Default::default()
        },
    )
    .await?;
    say(o.json, report::outcome_text(&name, &out).trim_end());
    tokio::time::sleep(o.stage).await;

    say(
        o.json,
        "\n▶ the rolling deploy finishes: the old api instances are drained",
    );
    wl.stop_clients(AppVersion::Old).await;
    tokio::time::sleep(o.stage).await;
    say(
        o.json,
        &format!("\n$ pgphase phase advance {name} --gate switch_reads --deployed api@v2-drained"),
    );
    let out = run::advance_with(
        &session,
        &name,
        "api@v2-drained",
        Some(&file),
        run::AdvanceOptions {
            gate: Some("switch_reads".into()),
            ..Default::default()
        },
    )
    .await?;
    say(o.json, report::outcome_text(&name, &out).trim_end());
    tokio::time::sleep(o.stage).await;
    wl.stop_all().await;

    let phased = wl.stats();
    let verify = wl.verify("body").await?;
    let views = crate::report::status_views(&db, Some(&name)).await?;
    if let Some(v) = views.first() {
        say(
            o.json,
            &format!(
                "\n$ pgphase status {name}\n{}",
                report::status_detail(v).trim_end()
            ),
        );
    }

    // Contrast: the one-statement rename under the same old API.
    say(o.json, "\n▶ for contrast, the naive way on a copy: ALTER TABLE comments_naive RENAME COLUMN contents TO body");
    create_comments_table(&db, "comments_naive", o.rows.min(10_000)).await?;
    let naive = Workload::new(&url, "comments_naive");
    naive.start_clients(AppVersion::Old, n).await?;
    tokio::time::sleep(o.stage).await;
    db.batch_execute("ALTER TABLE comments_naive RENAME COLUMN contents TO body")
        .await?;
    tokio::time::sleep(o.stage).await;
    naive.stop_all().await;
    let naive_stats = naive.stats();

    let ok = phased.failed() == 0
        && verify.is_clean()
        && verify.checked > 0
        && out == Outcome::Completed;
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "pgphase": { "stats": phased, "verify": verify },
                "naive_rename": { "stats": naive_stats },
                "zero_downtime": ok,
            }))
            .unwrap_or_default()
        );
    } else {
        println!("\n══ result ══");
        print_stats("with pgphase ", &phased);
        println!(
            "  writes verified through `body`: {} rows, {} missing, {} wrong",
            verify.checked, verify.missing, verify.wrong
        );
        print_stats("naive rename ", &naive_stats);
        if let Some(s) = naive_stats.samples.first() {
            println!("  e.g. {s}");
        }
        println!(
            "\n{}",
            if ok {
                "Zero failed queries and zero lost writes with pgphase; the naive rename broke the old API at once."
            } else {
                "pgphase run was NOT clean — see the counts above."
            }
        );
    }
    Ok(if ok { 0 } else { 1 })
}

fn print_stats(label: &str, s: &WorkloadStats) {
    println!(
        "  {label}: old api {} ok / {} failed, new api {} ok / {} failed",
        s.old_ok, s.old_failed, s.new_ok, s.new_failed
    );
}
