//! Batched keyset backfill: one short transaction per batch, the checkpoint written in
//! the same transaction, so an interrupted run resumes after the last committed batch.
//!
//! Rows are visited in key ranges: the batch's upper key is found by `ORDER BY key
//! OFFSET n-1 LIMIT 1` after the previous batch's last key (row comparison for composite
//! keys), then one `UPDATE … WHERE key > last AND key <= bound` (an index range scan)
//! touches only rows that still need work. The batch size adapts toward a target batch
//! duration. Rows written while the backfill runs are kept in sync by the triggers, so
//! they never add work and cannot keep it from finishing.

use std::time::{Duration, Instant};
use tokio_postgres::Client;

use super::keyset::{range_params, Bounds, Key, Ranged};
use super::pace::{self, BatchEnd, Pace};
use super::throttle::Throttle;
use super::{
    backoff, is_lock_conflict, CheckpointKey, ExecError, Observer, StepOutcome, StepSettings,
};
use crate::program::{BackfillSpec, BACKFILL_GUC};
use crate::sql::quote_literal;
use futures_util::future::{try_join, try_join3};

pub(super) async fn run(
    work: &mut Client,
    spec: &BackfillSpec,
    settings: &StepSettings,
    cp: &CheckpointKey,
    observer: &dyn Observer,
) -> Result<StepOutcome, ExecError> {
    let db = |what: &'static str| move |e| ExecError::db(what, e);
    // Resume from the checkpoint, if any.
    let saved = cp
        .backfill(work)
        .await
        .map_err(db("reading the backfill checkpoint"))?
        .unwrap_or_default();
    let (mut last_key, mut rows_done, mut batches, finished) = (
        saved.last_key.and_then(key_from_json),
        saved.rows_done,
        saved.batches,
        saved.finished,
    );
    if finished {
        return Ok(StepOutcome::Skipped);
    }
    let total = estimate_rows(work, spec).await?;
    cp.backfill_started(work, total)
        .await
        .map_err(db("recording the backfill"))?;
    observer.backfill_started(&spec.table, rows_done, total);

    let work: &Client = work;
    let prepared = async {
        Ok::<_, tokio_postgres::Error>((
            Bounds::prepare(work, spec.key.len(), |resume| spec.bound_sql(resume)).await?,
            Ranged::prepare(work, |lower, upper| spec.update_sql(lower, upper)).await?,
            // only the lower bound applies to counting what the last batch has left
            Ranged::prepare(work, |lower, _| spec.remaining_sql(lower)).await?,
            cp.prepare_backfill_batch(work).await?,
        ))
    };
    let (bounds, update, remaining, save) = prepared.await.map_err(db("preparing the backfill"))?;
    let started = Instant::now();
    let start_rows = rows_done;
    let mut last_report = Instant::now();
    let mut lock_failures = 0u32;
    let mut size = BatchSize::new(spec.batch_size, settings.target_batch_time);
    let mut throttle = Throttle::start(work, settings, cp).await?;
    let mut pace = Pace::new(settings.max_app_wait);
    let batch_end = prepare_batch_end(work, settings, observer).await?;
    // Each batch is one transaction opened with its settings. Row locks held by the
    // application must not make us wait long (lock_timeout): a batch that cannot lock
    // its rows in time is rolled back and retried. synchronous_commit off: a batch
    // does not wait for its WAL flush (nor make the application's commits queue
    // behind it); safe, as the checkpoint commits with its batch, so a crash loses
    // both together and the resumed run redoes that batch. force_custom_plan: a generic
    // plan does not know the batch's OFFSET and key range and falls back to scanning
    // and sorting the whole table on every batch.
    let begin = format!(
        "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL {BACKFILL_GUC} = 'on'; SET LOCAL synchronous_commit = off; SET LOCAL plan_cache_mode = force_custom_plan",
        quote_literal(&format!("{}ms", settings.lock_timeout.as_millis().max(1)))
    );
    // Statements sent together are pipelined: a batch is three round trips (BEGIN
    // with the bound query; the UPDATE; who waits, the checkpoint and COMMIT), and
    // `try_join` polls its futures in order, so they reach the server in that order.
    loop {
        // no batch while paused or while the database's health holds it
        let tuning = throttle.clear(work, observer).await?;
        size.set_target(if tuning.batch_time_set {
            tuning.target_batch_time
        } else {
            pace.batch_target(tuning.target_batch_time)
        });
        let t0 = Instant::now();
        let n = size.rows() as i64;
        let last = last_key.as_ref();
        let (_, bound) = match try_join(work.batch_execute(&begin), bounds.next(work, last, n))
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(rollback(work, ExecError::db("finding the next batch", e)).await),
        };
        let visited = match &bound {
            Some(_) => n,
            // the last batch: fewer than `n` rows are left; count them for progress
            None => match work
                .query_one(remaining.pick(last, None), &range_params(last, None))
                .await
            {
                Ok(r) => r.get(0),
                Err(e) => {
                    return Err(rollback(work, ExecError::db("counting the last batch", e)).await)
                }
            },
        };
        let params = range_params(last, bound.as_ref());
        match work
            .execute(update.pick(last, bound.as_ref()), &params)
            .await
        {
            Ok(_) => {}
            Err(e) if is_lock_conflict(&e) => {
                let _ = work.batch_execute("ROLLBACK").await;
                lock_failures += 1;
                if lock_failures >= settings.lock_retries.max(1) {
                    return Err(ExecError::db(
                        format!("backfill batch could not lock its rows {lock_failures} times"),
                        e,
                    ));
                }
                // smaller batches are less likely to meet a locked row
                size.shrink();
                tokio::time::sleep(backoff(lock_failures)).await;
                continue;
            }
            Err(e) => return Err(rollback(work, ExecError::db("backfill batch", e)).await),
        };
        lock_failures = 0;
        let (new_rows, new_batches) = (rows_done + visited, batches + (visited > 0) as i64);
        // who waits on this batch's locks, and how busy the application is; the
        // checkpoint; COMMIT (after an error in the first two it only rolls back)
        let key_json = bound.as_ref().map(|b| key_to_json(b));
        let end = try_join3(
            read_batch_end(work, &batch_end),
            async {
                cp.save_backfill_batch(work, &save, key_json.as_ref(), new_rows, new_batches)
                    .await
                    .map_err(db("saving the backfill checkpoint"))
            },
            async {
                work.batch_execute("COMMIT")
                    .await
                    .map_err(db("committing a backfill batch"))
            },
        )
        .await;
        let end = match end {
            Ok((end, _, _)) => end,
            Err(e) => return Err(rollback(work, e).await),
        };
        // the closing batch may find nothing left
        (rows_done, batches) = (new_rows, new_batches);
        let took = t0.elapsed();
        size.observe(took);
        let yielding = pace.after_batch(took, &end, tuning.yield_to_load);
        match bound {
            Some(b) => last_key = Some(b),
            None => break,
        }
        if last_report.elapsed() >= Duration::from_millis(200) {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            observer.backfill_progress(rows_done, total, (rows_done - start_rows) as f64 / secs);
            last_report = Instant::now();
        }
        let sleep = tuning.pause + yielding;
        if !sleep.is_zero() {
            tokio::time::sleep(sleep).await;
        }
    }
    observer.backfill_finished(rows_done, started.elapsed());
    Ok(StepOutcome::Backfilled {
        rows: rows_done,
        batches,
        pace: pace.summary(),
    })
}

/// Ends a failed batch's transaction (the connection goes on serving the run), and
/// returns the error.
async fn rollback(work: &Client, e: ExecError) -> ExecError {
    let _ = work.batch_execute("ROLLBACK").await;
    e
}

/// The statement run at the end of every batch ([`pace::batch_end_sql`]); says once
/// when the application's sessions of other roles cannot be seen.
pub(super) async fn prepare_batch_end(
    work: &Client,
    settings: &StepSettings,
    observer: &dyn Observer,
) -> Result<tokio_postgres::Statement, ExecError> {
    let db = |what: &'static str| move |e| ExecError::db(what, e);
    let version: i32 = work
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(db("reading the server version"))?
        .get(0);
    if settings.yield_to_load > 0.0 {
        let sees_all: Option<bool> = work
            .query_opt(pace::SEES_ALL_SESSIONS_SQL, &[])
            .await
            .map_err(db("reading the role's privileges"))?
            .and_then(|r| r.get(0));
        if sees_all != Some(true) {
            observer.note(
                "this role sees only its own sessions' state in pg_stat_activity: the backfill yields only to them; grant it pg_read_all_stats (or pg_monitor) to yield to the whole application",
            );
        }
    }
    work.prepare(pace::batch_end_sql(version))
        .await
        .map_err(db("preparing the backfill"))
}

pub(super) async fn read_batch_end(
    c: &impl tokio_postgres::GenericClient,
    stmt: &tokio_postgres::Statement,
) -> Result<BatchEnd, ExecError> {
    let r = c
        .query_one(stmt, &[])
        .await
        .map_err(|e| ExecError::db("reading who waits on the batch", e))?;
    Ok(BatchEnd {
        waiters: r.get(0),
        longest_wait: r
            .get::<_, Option<f64>>(1)
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
        active: r.get(2),
    })
}

/// The checkpoint's key: `{"hex": ["…", …]}`, the bytes of each key column's text form.
fn key_to_json(key: &[Vec<u8>]) -> serde_json::Value {
    let hex: Vec<String> = key
        .iter()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    serde_json::json!({ "hex": hex })
}

/// Reads a checkpoint's key; an array of strings is the text form of earlier versions.
fn key_from_json(v: serde_json::Value) -> Option<Key> {
    if let Some(hex) = v.get("hex").and_then(|h| h.as_array()) {
        return hex
            .iter()
            .map(|h| {
                let h = h.as_str()?;
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .collect();
    }
    let text: Vec<String> = serde_json::from_value(v).ok()?;
    Some(text.into_iter().map(String::into_bytes).collect())
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

/// Batch size that adapts toward a target batch duration: grows at most 2× and
/// shrinks at most 4× per batch, between 10 and 100 000 rows (as few as 10, so that a
/// batch of slow rows can stay under `max_app_wait`).
#[derive(Debug, Clone)]
pub struct BatchSize {
    rows: f64,
    target: Duration,
}

impl BatchSize {
    const MIN: f64 = 10.0;
    const MAX: f64 = 100_000.0;

    pub fn new(initial: u32, target: Duration) -> BatchSize {
        BatchSize {
            rows: (initial as f64).max(1.0),
            target,
        }
    }
    pub fn rows(&self) -> u32 {
        self.rows.round() as u32
    }
    /// Adjusts after a batch that took `took`.
    pub fn observe(&mut self, took: Duration) {
        if self.target.is_zero() {
            return;
        }
        let ratio = self.target.as_secs_f64() / took.as_secs_f64().max(1e-4);
        self.rows = (self.rows * ratio.clamp(0.25, 2.0)).clamp(Self::MIN, Self::MAX);
    }
    /// A new target (the operator's `pgphase backfill set --batch-time`).
    pub fn set_target(&mut self, target: Duration) {
        self.target = target;
    }
    pub fn shrink(&mut self) {
        if !self.target.is_zero() {
            self.rows = (self.rows / 2.0).max(Self::MIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_round_trip_as_bytes() {
        let key = vec![vec![0x63, 0xe9, 0x00, 0xff], b"42".to_vec()];
        assert_eq!(key_from_json(key_to_json(&key)), Some(key));
        // the text form earlier versions wrote
        assert_eq!(
            key_from_json(serde_json::json!(["17", "x"])),
            Some(vec![b"17".to_vec(), b"x".to_vec()])
        );
    }

    #[test]
    fn batch_size_converges_to_the_target() {
        let mut b = BatchSize::new(1000, Duration::from_millis(100));
        // a table where a row costs 10 µs: the ideal batch is 10 000 rows
        for _ in 0..20 {
            let took = Duration::from_secs_f64(b.rows() as f64 * 10e-6);
            b.observe(took);
        }
        assert!((9_000..=11_000).contains(&b.rows()), "{}", b.rows());
        b.observe(Duration::from_secs(10));
        assert_eq!(b.rows(), 2_500, "shrinks at most 4x at once");
        let mut fixed = BatchSize::new(500, Duration::ZERO);
        fixed.observe(Duration::from_millis(1));
        assert_eq!(fixed.rows(), 500);
    }
}
