//! Backfill rates over the last seconds, measured between successive readings of the
//! progress (`status --watch` and the dashboard keep one [`RecentRates`] across their
//! refreshes): rows/s, rows per batch and time per batch over a window, and the ETA at
//! that rate. The stored `rows_per_sec` is the average since the backfill began; a
//! backfill that slows down or stalls behind a lock shows here at once.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

use super::PlanView;

/// A backfill: its plan, phase index and step index.
pub type BackfillKey = (String, i32, i32);

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: DateTime<Utc>,
    rows: i64,
    batches: i64,
}

/// What a backfill did over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recent {
    pub rows_per_sec: f64,
    /// Seconds between the first and the last reading the rate is measured over.
    pub over_secs: f64,
    /// Average rows per batch over the window (None when no batch ended in it).
    pub rows_per_batch: Option<f64>,
    /// Average seconds per batch (pauses included) over the window.
    pub secs_per_batch: Option<f64>,
}

/// Readings per backfill over the last `window`.
#[derive(Clone, Debug)]
pub struct RecentRates {
    window: chrono::Duration,
    samples: HashMap<BackfillKey, VecDeque<Sample>>,
}

impl Default for RecentRates {
    fn default() -> Self {
        RecentRates::new(std::time::Duration::from_secs(10))
    }
}

impl RecentRates {
    pub fn new(window: std::time::Duration) -> RecentRates {
        RecentRates {
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::seconds(10)),
            samples: HashMap::new(),
        }
    }

    /// Records every backfill of `views` as read at `at`. Readings older than the
    /// window go (the newest of them stays, as the start of the window); a backfill
    /// that went backwards (rolled back and run again) starts over; backfills no longer
    /// in `views` are forgotten.
    pub fn observe(&mut self, views: &[PlanView], at: DateTime<Utc>) {
        let mut seen = Vec::new();
        for v in views {
            for b in &v.backfill {
                let key = (v.plan.clone(), b.progress.phase, b.progress.step);
                let s = self.samples.entry(key.clone()).or_default();
                if s.back().is_some_and(|l| {
                    b.progress.rows_done < l.rows || b.progress.batches < l.batches || at < l.at
                }) {
                    s.clear();
                }
                s.push_back(Sample {
                    at,
                    rows: b.progress.rows_done,
                    batches: b.progress.batches,
                });
                while s.len() > 2 && s[1].at <= at - self.window {
                    s.pop_front();
                }
                seen.push(key);
            }
        }
        self.samples.retain(|k, _| seen.contains(k));
    }

    /// The backfill's recent rate: None until two readings some time apart.
    pub fn recent(&self, key: &BackfillKey) -> Option<Recent> {
        let s = self.samples.get(key)?;
        let (first, last) = (s.front()?, s.back()?);
        let secs = (last.at - first.at).num_milliseconds() as f64 / 1000.0;
        if secs <= 0.0 {
            return None;
        }
        let rows = (last.rows - first.rows) as f64;
        let batches = (last.batches - first.batches) as f64;
        Some(Recent {
            rows_per_sec: rows / secs,
            over_secs: secs,
            rows_per_batch: (batches > 0.0).then(|| rows / batches),
            secs_per_batch: (batches > 0.0).then(|| secs / batches),
        })
    }

    /// Sets each unfinished backfill's `rows_per_sec` and `eta_seconds` from its recent
    /// rate. Without one yet, `keep_average` keeps the average since the start; else
    /// both become None (shown as not measured yet). A rate of 0 (a stall) has no ETA.
    pub fn apply(&self, views: &mut [PlanView], keep_average: bool) {
        for v in views {
            for b in &mut v.backfill {
                if b.progress.finished_at.is_some() {
                    continue;
                }
                let key = (v.plan.clone(), b.progress.phase, b.progress.step);
                match self.recent(&key) {
                    Some(r) => {
                        b.rows_per_sec = Some(r.rows_per_sec);
                        b.eta_seconds = match (b.progress.rows_total, r.rows_per_sec > 0.0) {
                            (Some(t), true) => {
                                Some((t - b.progress.rows_done).max(0) as f64 / r.rows_per_sec)
                            }
                            _ => None,
                        };
                    }
                    None if keep_average => {}
                    None => {
                        b.rows_per_sec = None;
                        b.eta_seconds = None;
                    }
                }
            }
        }
    }
}
