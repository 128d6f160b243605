//! Live progress on stderr: indicatif bars on a terminal, plain lines elsewhere.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exec::{LockRetry, Observer, StepOutcome};
use crate::fleet::{FleetObserver, Target, TargetResult};
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
    /// One database of a fleet on a terminal: its bar in the fleet's [`FleetProgress`]
    /// shows its step and its backfill; lock waits and notes are lines above the bars.
    fleet_bar: Option<ProgressBar>,
}

impl StderrObserver {
    pub fn new(quiet: bool) -> StderrObserver {
        StderrObserver {
            terminal: std::io::stderr().is_terminal(),
            quiet,
            bar: Mutex::new(None),
            last_line: Mutex::new(Instant::now()),
            prefix: String::new(),
            fleet_bar: None,
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
        if let Some(b) = &self.fleet_bar {
            b.println(format!("{prefix}{text}"));
            return;
        }
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.println(format!("{prefix}{text}")),
            None => eprintln!("{prefix}{text}"),
        }
    }
}

impl Observer for StderrObserver {
    fn step_started(&self, phase: &str, index: usize, total: usize, step: &Step) {
        if let Some(b) = &self.fleet_bar {
            b.set_message(format!(
                "[{phase} {}/{}] {}",
                index + 1,
                total,
                step.description
            ));
            return;
        }
        self.line(&format!(
            "[{phase} {}/{}] {} …",
            index + 1,
            total,
            step.description
        ));
    }
    fn step_finished(&self, _phase: &str, _step: &Step, outcome: &StepOutcome, elapsed: Duration) {
        if self.fleet_bar.is_some() {
            return;
        }
        let what = match outcome {
            StepOutcome::Ran => "done".to_string(),
            StepOutcome::Skipped => "already in effect, skipped".to_string(),
            StepOutcome::Backfilled {
                rows,
                batches,
                pace,
            } => format!(
                "{rows} rows in {batches} batches{}",
                pace.as_ref().map(|p| format!("; {p}")).unwrap_or_default()
            ),
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
        if let Some(b) = &self.fleet_bar {
            b.set_style(fleet_style(FLEET_BACKFILL));
            b.set_length(total.map(|t| t.max(done) as u64).unwrap_or(0));
            b.set_position(done as u64);
            return;
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
        let fleet_bar = self.fleet_bar.as_ref();
        if let Some(b) = fleet_bar.or(self.bar.lock().unwrap().as_ref()) {
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
        if let Some(b) = &self.fleet_bar {
            b.set_style(fleet_style(FLEET_STEP));
            return;
        }
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
    fn note(&self, message: &str) {
        self.line(&format!("    {message}"));
    }
}

const FLEET_STEP: &str = "{spinner} {prefix}  {wide_msg}";
const FLEET_BACKFILL: &str = "{spinner} {prefix}  {bar:30.cyan/blue} {pos}/{len} rows  {msg}";
const FLEET_WAVE: &str = "{prefix}  {bar:30.green/white} {pos}/{len} databases  {msg}";

fn fleet_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A fleet command's progress on stderr. On a terminal (indicatif multi-progress): a
/// bar for the wave (databases finished of the wave's) and one per database running
/// (its step, or its backfill's rows), each database's result a line above them.
/// Elsewhere, or with `--quiet` (nothing then), plain lines prefixed with the
/// database's name, as they come.
pub struct FleetProgress {
    quiet: bool,
    multi: Option<MultiProgress>,
    wave: Mutex<Option<ProgressBar>>,
    /// The bars of the databases running now, by target name.
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// The widest target name, so the bars line up.
    width: usize,
}

impl FleetProgress {
    pub fn new(quiet: bool, names: &[&str]) -> FleetProgress {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        FleetProgress {
            quiet,
            multi,
            wave: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
            width: names.iter().map(|n| n.chars().count()).max().unwrap_or(0),
        }
    }

    /// The observer of one database's command: its bar on a terminal (made when it
    /// started), else lines prefixed with its name.
    pub fn observer(&self, name: &str) -> StderrObserver {
        let mut o = StderrObserver::for_target(self.quiet, name);
        if self.multi.is_some() {
            o.fleet_bar = self.bars.lock().unwrap().get(name).cloned();
        }
        o
    }

    /// A line on stderr, above the bars on a terminal.
    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Clears the bars (the command's result follows on stdout).
    pub fn finish(&self) {
        if let Some(w) = self.wave.lock().unwrap().take() {
            w.finish_and_clear();
        }
        for (_, b) in self.bars.lock().unwrap().drain() {
            b.finish_and_clear();
        }
    }
}

impl FleetObserver for FleetProgress {
    fn wave_started(&self, wave: usize, waves: usize, members: usize) {
        let Some(m) = &self.multi else {
            return;
        };
        let bar = m.insert(0, ProgressBar::new(members as u64));
        bar.set_style(fleet_style(FLEET_WAVE));
        bar.set_prefix(format!("wave {wave}/{waves}"));
        if let Some(old) = self.wave.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }
    fn target_started(&self, target: &Target, _wave: usize) {
        let Some(m) = &self.multi else {
            return;
        };
        let bar = m.add(ProgressBar::new(0));
        bar.set_style(fleet_style(FLEET_STEP));
        bar.set_prefix(format!("{:w$}", target.name, w = self.width));
        bar.set_message("connecting …");
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars.lock().unwrap().insert(target.name.clone(), bar);
    }
    fn target_finished(&self, target: &Target, wave: usize, result: &TargetResult) {
        if let Some(b) = self.bars.lock().unwrap().remove(&target.name) {
            b.finish_and_clear();
        }
        if let Some(w) = self.wave.lock().unwrap().as_ref() {
            w.inc(1);
        }
        self.line(format!(
            "[{}] wave {wave}: {}",
            target.name,
            super::fleet::result_words(result).replace('\n', "\n    ")
        ));
    }
}
