//! Batched keyset backfill: one short transaction per batch, the checkpoint written in
//! the same transaction, so an interrupted run resumes after the last committed batch.
//!
//! Rows are visited in key order (`(a, b) > ($1, $2) ORDER BY a, b LIMIT n`); only rows
//! that still need work are updated. Rows written while the backfill runs are kept in
//! sync by the triggers, so they never add work and cannot keep it from finishing.

use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{backoff, CheckpointKey, ExecError, Observer, StepOutcome, StepSettings};
use crate::program::BackfillSpec;
use crate::sql::quote_literal;

pub(super) async fn run(
    work: &mut Client,
    spec: &BackfillSpec,
    settings: &StepSettings,
    cp: &CheckpointKey,
    observer: &dyn Observer,
) -> Result<StepOutcome, ExecError> {
    let db = |what: &'static str| move |e| ExecError::db(what, e);
    // Resume from the checkpoint, if any.
    let row = work
        .query_opt(
            "SELECT last_key, rows_done, batches, finished_at IS NOT NULL FROM pgphase.backfill_progress
              WHERE plan_name = $1 AND phase = $2 AND step = $3",
            &[&cp.plan, &cp.phase, &cp.step],
        )
        .await
        .map_err(db("reading the backfill checkpoint"))?;
    let (mut last_key, mut rows_done, mut batches, finished): (
        Option<Vec<String>>,
        i64,
        i64,
        bool,
    ) = match row {
        Some(r) => {
            let key: Option<serde_json::Value> = r.get(0);
            (
                key.and_then(|k| serde_json::from_value(k).ok()),
                r.get(1),
                r.get(2),
                r.get(3),
            )
        }
        None => (None, 0, 0, false),
    };
    if finished {
        return Ok(StepOutcome::Skipped);
    }
    let total = estimate_rows(work, spec).await?;
    work.execute(
        "INSERT INTO pgphase.backfill_progress (plan_name, phase, step, rows_total)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (plan_name, phase, step) DO UPDATE SET rows_total = EXCLUDED.rows_total, updated_at = now()",
        &[&cp.plan, &cp.phase, &cp.step, &total],
    )
    .await
    .map_err(db("recording the backfill"))?;
    observer.backfill_started(&spec.table, rows_done, total);

    let first_sql = spec.batch_sql(false);
    let next_sql = spec.batch_sql(true);
    let first = work
        .prepare(&first_sql)
        .await
        .map_err(db("preparing the backfill batch"))?;
    let next = work
        .prepare(&next_sql)
        .await
        .map_err(db("preparing the backfill batch"))?;
    let started = Instant::now();
    let start_rows = rows_done;
    let mut last_report = Instant::now();
    let mut lock_failures = 0u32;
    loop {
        let tx = work
            .transaction()
            .await
            .map_err(db("beginning a backfill batch"))?;
        // Row locks held by the application must not make us wait long: a batch that
        // cannot lock its rows in time is retried.
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            quote_literal(&format!("{}ms", settings.lock_timeout.as_millis().max(1)))
        ))
        .await
        .map_err(db("setting lock_timeout"))?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = match &last_key {
            Some(k) => k
                .iter()
                .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect(),
            None => Vec::new(),
        };
        let stmt = if last_key.is_some() { &next } else { &first };
        let row = match tx.query_opt(stmt, &params).await {
            Ok(r) => r,
            Err(e) if matches!(e.code(), Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                drop(tx);
                lock_failures += 1;
                if lock_failures >= settings.lock_retries.max(1) {
                    return Err(ExecError::db("backfill batch could not lock its rows", e));
                }
                tokio::time::sleep(backoff(lock_failures)).await;
                continue;
            }
            Err(e) => return Err(ExecError::db("backfill batch", e)),
        };
        lock_failures = 0;
        let Some(row) = row else {
            tx.execute(
                "UPDATE pgphase.backfill_progress SET finished_at = now(), updated_at = now()
                  WHERE plan_name = $1 AND phase = $2 AND step = $3",
                &[&cp.plan, &cp.phase, &cp.step],
            )
            .await
            .map_err(db("recording the end of the backfill"))?;
            tx.commit().await.map_err(db("committing the backfill"))?;
            break;
        };
        let visited: i64 = row.get(0);
        let key: Vec<String> = (0..spec.key.len())
            .map(|i| row.get::<_, String>(2 + i))
            .collect();
        rows_done += visited;
        batches += 1;
        tx.execute(
            "UPDATE pgphase.backfill_progress SET last_key = $4, rows_done = $5, batches = $6, updated_at = now()
              WHERE plan_name = $1 AND phase = $2 AND step = $3",
            &[&cp.plan, &cp.phase, &cp.step, &serde_json::json!(key), &rows_done, &batches],
        )
        .await
        .map_err(db("saving the backfill checkpoint"))?;
        tx.commit()
            .await
            .map_err(db("committing a backfill batch"))?;
        last_key = Some(key);
        if last_report.elapsed() >= Duration::from_millis(200) {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            observer.backfill_progress(rows_done, total, (rows_done - start_rows) as f64 / secs);
            last_report = Instant::now();
        }
        if !settings.batch_pause.is_zero() {
            tokio::time::sleep(settings.batch_pause).await;
        }
    }
    observer.backfill_finished(rows_done, started.elapsed());
    Ok(StepOutcome::Backfilled {
        rows: rows_done,
        batches,
    })
}

/// Planner estimate when the table was analyzed, an exact count otherwise.
async fn estimate_rows(work: &Client, spec: &BackfillSpec) -> Result<Option<i64>, ExecError> {
    let est: i64 = work
        .query_one(
            "SELECT reltuples::int8 FROM pg_class WHERE oid = to_regclass($1)",
            &[&spec.table.to_string()],
        )
        .await
        .map_err(|e| ExecError::db("estimating rows", e))?
        .get(0);
    if est > 0 {
        return Ok(Some(est));
    }
    let n: i64 = work
        .query_one(&format!("SELECT count(*) FROM {}", spec.table), &[])
        .await
        .map_err(|e| ExecError::db("counting rows", e))?
        .get(0);
    Ok(Some(n))
}
