//! The executor's handle on its checkpoints in the `pgphase` schema: a forward step
//! recorded done in its own transaction (`pgphase.phases.steps_done`), and a backfill's
//! progress (`pgphase.backfill_progress`), written in the same transaction as each batch.

use tokio_postgres::{Client, Error, Statement, Transaction};

/// Identifies a step's checkpoints: its plan, phase position and step index.
#[derive(Clone, Debug)]
pub struct CheckpointKey {
    pub plan: String,
    pub phase: i32,
    pub step: i32,
    /// A forward step of a stored plan: a transactional step also records itself done
    /// (`pgphase.phases.steps_done`) in its own transaction, so a crash between its
    /// commit and the bookkeeping cannot run it twice.
    pub record_done: bool,
}

/// Where a backfill stands, as its last committed batch recorded it.
#[derive(Clone, Debug, Default)]
pub struct BackfillCheckpoint {
    /// The last key done (the executor's own encoding), None before the first batch.
    pub last_key: Option<serde_json::Value>,
    pub rows_done: i64,
    pub batches: i64,
    pub finished: bool,
}

impl CheckpointKey {
    /// Whether running the step records it done in its own transaction.
    pub fn records_done(&self) -> bool {
        self.record_done && self.step >= 0
    }

    /// Records the step done inside `tx`, the step's own transaction (when
    /// [`records_done`](Self::records_done)).
    pub async fn record_step_done(&self, tx: &Transaction<'_>) -> Result<(), Error> {
        if self.records_done() {
            tx.execute(
                "UPDATE pgphase.phases SET steps_done = GREATEST(steps_done, $3)
                  WHERE plan_name = $1 AND position = $2",
                &[&self.plan, &self.phase, &(self.step + 1)],
            )
            .await?;
        }
        Ok(())
    }

    /// The backfill's checkpoint, if it ever started.
    pub async fn backfill(&self, c: &Client) -> Result<Option<BackfillCheckpoint>, Error> {
        let row = c
            .query_opt(
                "SELECT last_key, rows_done, batches, finished_at IS NOT NULL FROM pgphase.backfill_progress
                  WHERE plan_name = $1 AND phase = $2 AND step = $3",
                &[&self.plan, &self.phase, &self.step],
            )
            .await?;
        Ok(row.map(|r| BackfillCheckpoint {
            last_key: r.get(0),
            rows_done: r.get(1),
            batches: r.get(2),
            finished: r.get(3),
        }))
    }

    /// Records that the backfill (re)starts with `rows_total` rows estimated (None: unknown).
    pub async fn backfill_started(&self, c: &Client, rows_total: Option<i64>) -> Result<(), Error> {
        c.execute(
            "INSERT INTO pgphase.backfill_progress (plan_name, phase, step, rows_total)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (plan_name, phase, step) DO UPDATE SET rows_total = EXCLUDED.rows_total, updated_at = now()",
            &[&self.plan, &self.phase, &self.step, &rows_total],
        )
        .await?;
        Ok(())
    }

    /// Prepares [`save_backfill_batch`](Self::save_backfill_batch)'s statement, once
    /// per backfill.
    pub async fn prepare_backfill_batch(&self, c: &Client) -> Result<Statement, Error> {
        c.prepare(
            "UPDATE pgphase.backfill_progress SET last_key = coalesce($4, last_key), rows_done = $5, batches = $6,
                    updated_at = now(), finished_at = CASE WHEN $4 IS NULL THEN now() END
              WHERE plan_name = $1 AND phase = $2 AND step = $3",
        )
        .await
    }

    /// Records a batch in the batch's own transaction (`c` is inside it): the last key
    /// done (None: the backfill is finished) and the totals so far.
    pub async fn save_backfill_batch(
        &self,
        c: &Client,
        stmt: &Statement,
        last_key: Option<&serde_json::Value>,
        rows_done: i64,
        batches: i64,
    ) -> Result<(), Error> {
        c.execute(
            stmt,
            &[
                &self.plan,
                &self.phase,
                &self.step,
                &last_key,
                &rows_done,
                &batches,
            ],
        )
        .await?;
        Ok(())
    }
}
