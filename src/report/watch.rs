//! `pgphase status --watch`: a live view refreshed from the database, so it works from
//! any terminal. On a terminal, one line per plan and an indicatif bar per running
//! backfill; elsewhere one plain line per refresh; with `--output json`, one JSON
//! object per refresh (JSON Lines).

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;

use super::rate::RecentRates;
use super::style::{self, paint};
use super::{backfill_label, short_count, short_duration, status_label, PlanView};
use crate::state::machine::PlanStatus;

/// How results are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Live lines and bars on a terminal (stdout).
    Terminal,
    /// One plain line per refresh.
    Lines,
    /// One JSON object per refresh.
    Json,
}

type BarKey = (String, i32, i32);

/// The live view; feed it every refresh with [`Watch::update`].
pub struct Watch {
    mode: WatchMode,
    color: bool,
    /// Only this plan, else every plan that is not completed or rolled back.
    plan: Option<String>,
    multi: Option<MultiProgress>,
    header: Option<ProgressBar>,
    lines: HashMap<String, ProgressBar>,
    bars: HashMap<BarKey, ProgressBar>,
    /// Each backfill's rate over the last seconds, from the refreshes.
    rates: RecentRates,
}

impl Watch {
    pub fn new(mode: WatchMode, color: bool, plan: Option<String>) -> Watch {
        let multi = (mode == WatchMode::Terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Watch {
            mode,
            color,
            plan,
            multi,
            header: None,
            lines: HashMap::new(),
            bars: HashMap::new(),
            rates: RecentRates::default(),
        }
    }

    fn shown<'a>(&self, views: &'a [PlanView]) -> Vec<&'a PlanView> {
        views
            .iter()
            .filter(|v| match &self.plan {
                Some(p) => &v.plan == p,
                None => !matches!(v.status, PlanStatus::Completed | PlanStatus::RolledBack),
            })
            .collect()
    }

    /// One refresh.
    pub fn update(&mut self, views: &[PlanView], now: DateTime<Utc>) {
        self.rates.observe(views, now);
        let mut views = views.to_vec();
        self.rates.apply(&mut views, true);
        let shown = self.shown(&views);
        match self.mode {
            WatchMode::Json => println!("{}", serde_json::json!({ "at": now, "plans": shown })),
            WatchMode::Lines => println!("{}", line(&shown, now)),
            WatchMode::Terminal => self.draw(&shown, now),
        }
    }

    fn draw(&mut self, shown: &[&PlanView], now: DateTime<Utc>) {
        let Some(multi) = self.multi.clone() else {
            return;
        };
        let text_style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let header = self
            .header
            .get_or_insert_with(|| multi.add(ProgressBar::new(0).with_style(text_style.clone())));
        header.set_message(paint(
            &format!(
                "pgphase status --watch · {} · Ctrl-C to stop",
                now.format("%H:%M:%S UTC")
            ),
            style::dim(),
            self.color,
        ));
        if shown.is_empty() {
            header.set_message(format!("{}  {}", header.message(), "no plan in progress"));
        }
        // a plan that left the view (completed while watched): its line and bars go
        let gone = |plan: &String| !shown.iter().any(|v| &v.plan == plan);
        for (_, bar) in self.lines.iter().filter(|(p, _)| gone(p)) {
            bar.finish_and_clear();
        }
        for (_, bar) in self.bars.iter().filter(|(k, _)| gone(&k.0)) {
            bar.finish_and_clear();
        }
        self.lines.retain(|p, _| !gone(p));
        self.bars.retain(|k, _| !gone(&k.0));
        for v in shown {
            let line = self
                .lines
                .entry(v.plan.clone())
                .or_insert_with(|| multi.add(ProgressBar::new(0).with_style(text_style.clone())));
            line.set_message(plan_line(v, self.color));
            for b in &v.backfill {
                let key = (v.plan.clone(), b.progress.phase, b.progress.step);
                if b.progress.finished_at.is_some() && !self.bars.contains_key(&key) {
                    continue;
                }
                let bar = self.bars.entry(key).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "    {prefix} {bar:40.cyan/blue} {pos}/{len} rows  {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("█▉▊▋▌▍▎▏ "),
                    );
                    bar
                });
                let total = b.progress.rows_total.unwrap_or(0).max(b.progress.rows_done);
                bar.set_length(total as u64);
                bar.set_position(b.progress.rows_done as u64);
                bar.set_prefix(b.phase_name.clone().unwrap_or_default());
                let mut msg = String::new();
                if let Some(r) = b.rows_per_sec {
                    msg.push_str(&format!("{} rows/s", short_count(r)));
                }
                if b.progress.finished_at.is_some() {
                    msg.push_str(", done");
                } else if let Some(e) = b.eta_seconds {
                    msg.push_str(&format!(", ETA {}", short_duration(e)));
                } else if !b.running {
                    msg.push_str(", not running");
                }
                bar.set_message(msg.trim_start_matches(", ").to_string());
            }
        }
    }

    /// Ends the live view; on a terminal, leaves the final status table.
    pub fn finish(mut self, views: &[PlanView]) {
        if let Some(multi) = self.multi.take() {
            let _ = multi.clear();
            let views: Vec<PlanView> = match &self.plan {
                Some(p) => views.iter().filter(|v| &v.plan == p).cloned().collect(),
                None => views.to_vec(),
            };
            print!("{}", super::status_table(&views, self.color));
        }
    }
}

fn plan_line(v: &PlanView, color: bool) -> String {
    let status = paint(&status_label(v), status_style(v), color);
    let mut o = format!(
        "{}  {}  phase {}",
        paint(&v.plan, style::bold(), color),
        status,
        v.current_phase.clone().unwrap_or_default()
    );
    if let Some(w) = &v.waiting_for {
        o.push_str(&format!("  ⏸ {w}"));
    }
    if let Some(e) = &v.last_error {
        o.push_str(&format!(
            "  error: {}",
            e.lines().next().unwrap_or_default()
        ));
    }
    o
}

fn status_style(v: &PlanView) -> anstyle::Style {
    if v.interrupted {
        return style::red();
    }
    match v.status {
        PlanStatus::Running => style::cyan(),
        PlanStatus::AwaitingDeploy => style::yellow(),
        PlanStatus::Completed => style::green(),
        PlanStatus::RollingBack | PlanStatus::RolledBack => style::magenta(),
        PlanStatus::Failed => style::red(),
    }
}

/// One refresh as one line: `10:30:06 UTC  plan: running backfill 45000/100000 rows …`.
pub fn line(shown: &[&PlanView], now: DateTime<Utc>) -> String {
    let plans: Vec<String> = shown
        .iter()
        .map(|v| {
            let mut o = format!(
                "{}: {} {}",
                v.plan,
                status_label(v),
                v.current_phase.clone().unwrap_or_default()
            );
            for b in v
                .backfill
                .iter()
                .filter(|b| b.progress.finished_at.is_none())
            {
                o.push_str(&format!(" [backfill {}]", backfill_label(b)));
            }
            o
        })
        .collect();
    format!(
        "{}  {}",
        now.format("%Y-%m-%d %H:%M:%S UTC"),
        if plans.is_empty() {
            "no plan in progress".to_string()
        } else {
            plans.join(" | ")
        }
    )
}
