//! The backfill's pace beside a running application, decided after every batch from
//! what the batch saw just before it committed ([`BatchEnd`]):
//!
//! - **the wait the application can see**: an application statement that needs a row
//!   of the running batch waits until the batch commits. The batch's target duration
//!   never exceeds `max_app_wait`; when sessions were seen waiting on the batch
//!   (`pg_blocking_pids`), the target halves (down to [`Pace::FLOOR`]) and grows back
//!   by a quarter after each batch nobody waited on.
//! - **the application's load**: with `yield_to_load` (a factor `k`), the backfill
//!   sleeps after each batch for the batch's duration times `k` times the number of
//!   other client sessions running a statement (a moving average of the samples taken
//!   at each batch's end, at most [`Pace::MAX_SHARE`]): with `n` sessions busy, the
//!   backfill takes about `1/(1 + k·n)` of the time, and on an idle database it runs
//!   back to back.
//!
//! Pure: no I/O, unit-tested below; [`super::backfill`] and the batched verification
//! scan feed it.

use std::time::Duration;

/// What a batch saw just before it committed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchEnd {
    /// Sessions waiting on a lock the batch holds.
    pub waiters: i64,
    /// The longest of their waits so far (PostgreSQL 14+: `pg_locks.waitstart`).
    pub longest_wait: Option<Duration>,
    /// Other client sessions running a statement (`pg_stat_activity`; pgphase's own,
    /// by its `application_name`, not counted), as far as this role can see them.
    pub active: i64,
}

/// One query, run in the batch's transaction just before its commit.
pub fn batch_end_sql(server_version_num: i32) -> &'static str {
    if server_version_num >= 140000 {
        "SELECT count(*)::int8,
                (extract(epoch FROM clock_timestamp() - min(w.waitstart)) * 1000)::float8,
                (SELECT count(*) FROM pg_stat_activity
                  WHERE state = 'active' AND backend_type = 'client backend'
                    AND pid <> pg_backend_pid()
                    AND application_name IS DISTINCT FROM current_setting('application_name'))::int8
           FROM (SELECT pid, waitstart FROM pg_locks WHERE NOT granted OFFSET 0) w
          WHERE pg_backend_pid() = ANY (pg_blocking_pids(w.pid))"
    } else {
        "SELECT count(*)::int8, NULL::float8,
                (SELECT count(*) FROM pg_stat_activity
                  WHERE state = 'active' AND backend_type = 'client backend'
                    AND pid <> pg_backend_pid()
                    AND application_name IS DISTINCT FROM current_setting('application_name'))::int8
           FROM (SELECT pid FROM pg_locks WHERE NOT granted OFFSET 0) w
          WHERE pg_backend_pid() = ANY (pg_blocking_pids(w.pid))"
    }
}

/// Whether this role sees the state of every session in `pg_stat_activity` (else the
/// other roles' sessions count as idle and the backfill cannot yield to them).
pub const SEES_ALL_SESSIONS_SQL: &str = "SELECT r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') FROM pg_roles r WHERE r.rolname = current_user";

#[derive(Clone, Debug)]
pub struct Pace {
    max_app_wait: Option<Duration>,
    /// The cap on the batch's target duration, halved while sessions wait on batches.
    app_wait_target: Option<Duration>,
    /// Moving average of the other active sessions at batch ends.
    load: f64,
    /// Batches some application session waited on, and the longest wait seen.
    pub waited_batches: u64,
    pub waiters_seen: i64,
    pub longest_wait: Option<Duration>,
    /// Time slept to yield to the application's load.
    pub yielded: Duration,
}

impl Pace {
    /// The smallest batch target when sessions keep waiting on batches.
    pub const FLOOR: Duration = Duration::from_millis(2);
    /// The most sessions the backfill yields to: it keeps at least 1/10 of the time.
    pub const MAX_SHARE: f64 = 9.0;
    /// Weight of the newest sample in the moving average of the load.
    const ALPHA: f64 = 0.2;

    pub fn new(max_app_wait: Option<Duration>) -> Pace {
        Pace {
            max_app_wait,
            app_wait_target: max_app_wait,
            load: 0.0,
            waited_batches: 0,
            waiters_seen: 0,
            longest_wait: None,
            yielded: Duration::ZERO,
        }
    }

    /// The target duration of the next batch, given the configured one (zero: fixed
    /// batch sizes, left alone).
    pub fn batch_target(&self, configured: Duration) -> Duration {
        match self.app_wait_target {
            Some(cap) if !configured.is_zero() => configured.min(cap),
            _ => configured,
        }
    }

    /// After a batch that took `took` and saw `end`: adapts, and returns how long to
    /// sleep before the next batch to yield to the application (zero when
    /// `yield_to_load` is off or nobody else is busy).
    pub fn after_batch(&mut self, took: Duration, end: &BatchEnd, yield_to_load: f64) -> Duration {
        if end.waiters > 0 {
            self.waited_batches += 1;
            self.waiters_seen += end.waiters;
            if let Some(w) = end.longest_wait {
                self.longest_wait = Some(self.longest_wait.map_or(w, |l| l.max(w)));
            }
        }
        if let (Some(max), Some(t)) = (self.max_app_wait, self.app_wait_target) {
            self.app_wait_target = Some(if end.waiters > 0 {
                (t / 2).max(Self::FLOOR.min(max))
            } else {
                t.mul_f64(1.25).min(max)
            });
        }
        self.load = self.load * (1.0 - Self::ALPHA) + end.active.max(0) as f64 * Self::ALPHA;
        if yield_to_load <= 0.0 {
            return Duration::ZERO;
        }
        let sleep = took.mul_f64(self.load.min(Self::MAX_SHARE) * yield_to_load);
        self.yielded += sleep;
        sleep
    }

    /// The moving average of the application's active sessions.
    pub fn load(&self) -> f64 {
        self.load
    }

    /// One line for the end of the backfill, when the application met it.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.waited_batches > 0 {
            let longest = self
                .longest_wait
                .map(|w| {
                    format!(
                        ", the longest wait seen {}",
                        crate::health::fmt_ms(w.as_millis() as u64)
                    )
                })
                .unwrap_or_default();
            parts.push(format!(
                "application sessions waited on {} batch(es) ({} wait(s){longest}); batches shrank to keep such waits short",
                self.waited_batches, self.waiters_seen
            ));
        }
        if !self.yielded.is_zero() {
            parts.push(format!(
                "yielded {} to the application's load",
                crate::health::fmt_ms(self.yielded.as_millis() as u64)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn end(waiters: i64, active: i64) -> BatchEnd {
        BatchEnd {
            waiters,
            longest_wait: None,
            active,
        }
    }

    #[test]
    fn the_batch_target_never_exceeds_max_app_wait_and_halves_while_sessions_wait() {
        const YIELD: f64 = 0.0;
        let mut p = Pace::new(Some(25 * MS));
        assert_eq!(p.batch_target(100 * MS), 25 * MS);
        assert_eq!(p.batch_target(20 * MS), 20 * MS);
        assert_eq!(
            p.batch_target(Duration::ZERO),
            Duration::ZERO,
            "fixed sizes"
        );
        p.after_batch(20 * MS, &end(2, 0), YIELD);
        assert_eq!(p.batch_target(20 * MS), 12500 * Duration::from_micros(1));
        for _ in 0..10 {
            p.after_batch(5 * MS, &end(1, 0), YIELD);
        }
        assert_eq!(p.batch_target(20 * MS), Pace::FLOOR);
        assert_eq!(p.waited_batches, 11);
        // grows back by a quarter per batch nobody waited on, up to the limit
        p.after_batch(2 * MS, &end(0, 0), YIELD);
        assert_eq!(p.batch_target(20 * MS), 2500 * Duration::from_micros(1));
        for _ in 0..30 {
            p.after_batch(2 * MS, &end(0, 0), YIELD);
        }
        assert_eq!(p.batch_target(100 * MS), 25 * MS);
        // off: the configured target
        let p = Pace::new(None);
        assert_eq!(p.batch_target(100 * MS), 100 * MS);
    }

    #[test]
    fn it_yields_in_proportion_to_the_active_sessions_and_runs_back_to_back_when_idle() {
        const YIELD: f64 = 1.0;
        let mut p = Pace::new(Some(25 * MS));
        assert_eq!(p.after_batch(20 * MS, &end(0, 0), YIELD), Duration::ZERO);
        // four busy sessions, steadily: about 4 × the batch's time
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = p.after_batch(20 * MS, &end(0, 4), YIELD);
        }
        assert!((79 * MS..=80 * MS).contains(&last), "{last:?}");
        // never more than MAX_SHARE × the batch
        for _ in 0..60 {
            last = p.after_batch(20 * MS, &end(0, 50), YIELD);
        }
        assert_eq!(last, 180 * MS);
        // idle again: the pause fades out
        for _ in 0..60 {
            last = p.after_batch(20 * MS, &end(0, 0), YIELD);
        }
        assert!(last < MS, "{last:?}");
        // yield_to_load off: never sleeps, still tracks the load
        let mut off = Pace::new(Some(25 * MS));
        for _ in 0..10 {
            assert_eq!(off.after_batch(20 * MS, &end(0, 4), 0.0), Duration::ZERO);
        }
        assert!(off.load() > 1.0);
        assert!(off.summary().is_none());
    }
}
