//! A verification that reads a whole table ([`KeyedScan`]) in key-ordered batches,
//! each its own short statement, so that it holds no snapshot for the whole scan and
//! leaves room for the application: batch sizes adapt toward the backfill's target
//! batch time and the scan yields to the application's load like the backfill does
//! ([`super::pace`]). Read-only, so neither the health limits (it writes no WAL to
//! replicate) nor row locks apply.

use futures_util::future::try_join;
use std::time::Instant;
use tokio_postgres::Client;

use super::backfill::{prepare_batch_end, read_batch_end, BatchSize};
use super::keyset::{range_params, Bounds, Key, Ranged};
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
    let prepared = async {
        Ok::<_, tokio_postgres::Error>((
            Bounds::prepare(work, scan.key.len(), |resume| scan.bound_sql(resume)).await?,
            Ranged::prepare(work, |lower, upper| scan.batch_sql(lower, upper)).await?,
        ))
    };
    let (bounds, batch) = prepared.await.map_err(db("preparing the verification"))?;
    let batch_end = prepare_batch_end(work, settings, observer).await?;
    // a generic plan knows neither the OFFSET nor the key range
    work.batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
        .map_err(db("setting up the verification"))?;
    let mut size = BatchSize::new(1000, settings.target_batch_time);
    let mut pace = Pace::new(settings.max_app_wait);
    let mut last_key: Option<Key> = None;
    let mut total = 0i64;
    let result = async {
        loop {
            size.set_target(pace.batch_target(settings.target_batch_time));
            let t0 = Instant::now();
            let last = last_key.as_ref();
            let bound = bounds
                .next(work, last, size.rows() as i64)
                .await
                .map_err(db("finding the next batch to verify"))?;
            let params = range_params(last, bound.as_ref());
            // the batch and the question who waits, pipelined
            let (c, end) = try_join(
                async {
                    work.query_one(batch.pick(last, bound.as_ref()), &params)
                        .await
                        .map_err(db("verifying"))
                },
                read_batch_end(work, &batch_end),
            )
            .await?;
            total += c.get::<_, Option<i64>>(0).unwrap_or(0);
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
