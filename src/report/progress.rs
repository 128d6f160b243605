//! Live progress on stderr: indicatif bars on a terminal, plain lines elsewhere.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exec::{LockRetry, Observer, StepOutcome};
use crate::program::Step;
use crate::sql::QualifiedName;

/// Reports executor events on stderr.
pub struct StderrObserver {
    terminal: bool,
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    last_line: Mutex<Instant>,
    /// Put before every line: the target's name when a fleet runs several at once.
    prefix: String,
}

impl StderrObserver {
    pub fn new(quiet: bool) -> StderrObserver {
        StderrObserver {
            terminal: std::io::stderr().is_terminal(),
            quiet,
            bar: Mutex::new(None),
            last_line: Mutex::new(Instant::now()),
            prefix: String::new(),
        }
    }
    /// Plain lines, each starting with `[name]`: one database of a fleet, whose lines
    /// interleave with the others' (no bars, which would fight over the terminal).
    pub fn for_target(quiet: bool, name: &str) -> StderrObserver {
        StderrObserver {
            terminal: false,
            prefix: format!("[{name}] "),
            ..StderrObserver::new(quiet)
        }
    }
    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let prefix = &self.prefix;
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.println(format!("{prefix}{text}")),
            None => eprintln!("{prefix}{text}"),
        }
    }
}

impl Observer for StderrObserver {
    fn step_started(&self, phase: &str, index: usize, total: usize, step: &Step) {
        self.line(&format!(
            "[{phase} {}/{}] {} …",
            index + 1,
            total,
            step.description
        ));
    }
    fn step_finished(&self, _phase: &str, _step: &Step, outcome: &StepOutcome, elapsed: Duration) {
        let what = match outcome {
            StepOutcome::Ran => "done".to_string(),
            StepOutcome::Skipped => "already in effect, skipped".to_string(),
            StepOutcome::Backfilled { rows, batches } => {
                format!("{rows} rows in {batches} batches")
            }
            StepOutcome::Verified => "verified".to_string(),
        };
        self.line(&format!("    {what} ({} ms)", elapsed.as_millis()));
    }
    fn lock_retry(&self, step: &Step, r: &LockRetry) {
        let who = if r.blockers.is_empty() {
            "another session".to_string()
        } else {
            r.blockers
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        self.line(&format!(
            "    waiting for the {} lock on {}: held by {who}; attempt {}/{} timed out, retrying in {} ms",
            step.lock,
            step.table.as_ref().map(|t| t.display_short()).unwrap_or_default(),
            r.attempt,
            r.max_attempts,
            r.wait.as_millis()
        ));
    }
    fn backfill_started(&self, table: &QualifiedName, done: i64, total: Option<i64>) {
        if done > 0 {
            self.line(&format!(
                "    resuming the backfill of {} after {done} rows",
                table.display_short()
            ));
        }
        if self.terminal && !self.quiet {
            let bar = ProgressBar::with_draw_target(
                total.map(|t| t.max(done) as u64),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "    {bar:40.cyan/blue} {pos}/{len} rows  {msg}  eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(done as u64);
            *self.bar.lock().unwrap() = Some(bar);
        }
    }
    fn backfill_progress(&self, done: i64, total: Option<i64>, rows_per_sec: f64) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            if let Some(t) = total {
                if (t as u64) < done as u64 {
                    b.set_length(done as u64);
                }
            }
            b.set_position(done as u64);
            b.set_message(format!("{:.0} rows/s", rows_per_sec));
            return;
        }
        let mut last = self.last_line.lock().unwrap();
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            drop(last);
            self.line(&format!(
                "    backfill: {done}{} rows, {rows_per_sec:.0} rows/s",
                total.map(|t| format!("/{t}")).unwrap_or_default()
            ));
        }
    }
    fn backfill_finished(&self, _done: i64, _elapsed: Duration) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
    fn note(&self, message: &str) {
        self.line(&format!("    {message}"));
    }
}
