//! A verification that reads a whole table ([`KeyedScan`]) in key-ordered batches,
//! each its own short statement, so that it holds no snapshot for the whole scan and
//! leaves room for the application: batch sizes adapt toward the backfill's target
//! batch time and the scan yields to the application's load like the backfill does
//! ([`super::pace`]). Read-only, so neither the health limits (it writes no WAL to
//! replicate) nor row locks apply.

use std::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::backfill::{prepare_batch_end, read_batch_end, BatchSize};
use super::pace::Pace;
use super::{ExecError, Observer, StepSettings};
use crate::program::KeyedScan;

/// Adds up the batches' counts.
pub(super) async fn count(
    work: &Client,
    scan: &KeyedScan,
    settings: &StepSettings,
    observer: &dyn Observer,
) -> Result<i64, ExecError> {
    let db = |what: &'static str| move |e| ExecError::db(what, e);
    let prepare = |sql: String| async move {
        work.prepare(&sql)
            .await
            .map_err(|e| ExecError::db("preparing the verification", e))
    };
    let bound_first = prepare(scan.bound_sql(false)).await?;
    let bound_next = prepare(scan.bound_sql(true)).await?;
    let first = prepare(scan.batch_sql(false, true)).await?;
    let next = prepare(scan.batch_sql(true, true)).await?;
    let last_first = prepare(scan.batch_sql(false, false)).await?;
    let last_next = prepare(scan.batch_sql(true, false)).await?;
    let batch_end = prepare_batch_end(work, settings, observer).await?;
    // a generic plan knows neither the OFFSET nor the key range
    work.batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
        .map_err(db("setting up the verification"))?;
    let mut size = BatchSize::new(1000, settings.target_batch_time);
    let mut pace = Pace::new(settings.max_app_wait);
    let mut last_key: Option<Vec<Vec<u8>>> = None;
    let mut total = 0i64;
    let result = async {
        loop {
            size.set_target(pace.batch_target(settings.target_batch_time));
            let t0 = Instant::now();
            let n = size.rows() as i64;
            let mut params: Vec<&(dyn ToSql + Sync)> = match &last_key {
                Some(k) => k.iter().map(|s| s as &(dyn ToSql + Sync)).collect(),
                None => Vec::new(),
            };
            params.push(&n);
            let bound_stmt = if last_key.is_some() {
                &bound_next
            } else {
                &bound_first
            };
            let bound: Option<Vec<Vec<u8>>> = work
                .query_opt(bound_stmt, &params)
                .await
                .map_err(db("finding the next batch to verify"))?
                .map(|r| {
                    (0..scan.key.len())
                        .map(|i| r.get::<_, Vec<u8>>(i))
                        .collect()
                });
            params.pop();
            let stmt = match (&bound, last_key.is_some()) {
                (Some(b), resume) => {
                    params.extend(b.iter().map(|s| s as &(dyn ToSql + Sync)));
                    if resume {
                        &next
                    } else {
                        &first
                    }
                }
                (None, true) => &last_next,
                (None, false) => &last_first,
            };
            let c: Option<i64> = work
                .query_one(stmt, &params)
                .await
                .map_err(db("verifying"))?
                .get(0);
            total += c.unwrap_or(0);
            let end = read_batch_end(work, &batch_end).await?;
            let took = t0.elapsed();
            size.observe(took);
            let yielding = pace.after_batch(took, &end, settings.yield_to_load);
            match bound {
                Some(b) => last_key = Some(b),
                None => return Ok(total),
            }
            let sleep = settings.batch_pause + yielding;
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
        }
    }
    .await;
    work.batch_execute("RESET plan_cache_mode")
        .await
        .map_err(db("setting up the verification"))?;
    result
}
