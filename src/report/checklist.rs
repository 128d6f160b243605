//! `pgphase checklist`: the release checklist of a plan, per deploy gate — what to
//! deploy, the command to run after it, what to verify, the point of no return and
//! how to roll back before it. For a started plan, done items are ticked with who and
//! when. Markdown (paste-able into a pull request) or plain text.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Write;

use crate::plan::Fence;
use crate::program::{Action, Program};
use crate::state::machine::{PhaseStatus, PlanStatus};
use crate::state::store::StoredPlan;

#[derive(Clone, Debug, Serialize)]
pub struct Checklist {
    pub plan: String,
    pub description: Option<String>,
    /// The plan file, as given or as recorded at start.
    pub file: Option<String>,
    pub checksum: Option<String>,
    /// Whether the plan has been started in the database the checklist was made from.
    pub started: bool,
    pub status: Option<PlanStatus>,
    pub started_by: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub sections: Vec<Section>,
    /// The phase after which `phase rollback` is refused.
    pub point_of_no_return: Option<String>,
    pub rollback: String,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub title: String,
    /// The phases this section's command runs.
    pub phases: Vec<String>,
    pub items: Vec<Item>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// An application deploy (a gate's text).
    Deploy,
    /// A deploy fence pgphase checks at the gate.
    Fence,
    /// A pgphase command to run.
    Run,
    /// Something to check.
    Verify,
    /// The point of no return.
    Warning,
}

#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub kind: ItemKind,
    pub text: String,
    pub command: Option<String>,
    /// Steps the command runs (for `run` items).
    pub steps: Vec<String>,
    pub done: bool,
    pub done_by: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
    pub deployed_ref: Option<String>,
}

impl Item {
    fn new(kind: ItemKind, text: impl Into<String>) -> Item {
        Item {
            kind,
            text: text.into(),
            command: None,
            steps: Vec::new(),
            done: false,
            done_by: None,
            done_at: None,
            deployed_ref: None,
        }
    }
    fn command(mut self, c: impl Into<String>) -> Item {
        self.command = Some(c.into());
        self
    }
    fn done(mut self, by: Option<String>, at: Option<DateTime<Utc>>) -> Item {
        self.done = true;
        self.done_by = by;
        self.done_at = at;
        self
    }
}

/// What the checklist is made from.
pub struct Source<'a> {
    pub program: &'a Program,
    pub file: Option<String>,
    pub checksum: Option<String>,
    pub fences: &'a [Fence],
    /// The plan as recorded in the database, when started there.
    pub stored: Option<&'a StoredPlan>,
}

/// Phases grouped by the command that runs them: `start` up to the first gate, then one
/// `phase advance` per gate.
fn segments(p: &Program) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, ph) in p.phases.iter().enumerate() {
        if ph.gate.is_some() && i + 1 < p.phases.len() {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < p.phases.len() {
        out.push(start..p.phases.len());
    }
    out
}

pub fn build(src: &Source<'_>) -> Checklist {
    let p = src.program;
    let name = &p.plan;
    let stored = src.stored;
    let file_arg = src.file.clone().unwrap_or_else(|| "<FILE>".into());
    let phase_done = |i: usize| {
        stored
            .and_then(|s| s.phases.get(i))
            .filter(|ph| ph.status == PhaseStatus::Completed)
            .map(|ph| ph.finished_at)
    };
    let completed = stored.is_some_and(|s| s.status == PlanStatus::Completed);
    let pnr = p.phases.iter().position(|ph| ph.point_of_no_return);
    let mut sections = Vec::new();
    let segs = segments(p);
    for (n, seg) in segs.iter().enumerate() {
        let phases: Vec<String> = p.phases[seg.clone()]
            .iter()
            .map(|ph| ph.kind.to_string())
            .collect();
        let last = seg.end - 1;
        let seg_done = completed || seg.clone().all(|i| phase_done(i).is_some());
        let seg_done_at = phase_done(last).flatten();
        let mut items = Vec::new();
        let title;
        let runner: Option<String>;
        if n == 0 {
            title = format!("Start: {}", phases.join(" → "));
            let mut review = Item::new(
                ItemKind::Verify,
                "review every statement, its lock and its rollback against the production catalog (changes nothing)",
            )
            .command(format!("pgphase plan {file_arg}"));
            if let Some(s) = stored {
                review = review.done(Some(s.started_by.clone()), Some(s.started_at));
            }
            items.push(review);
            runner = stored.map(|s| s.started_by.clone());
        } else {
            let g = seg.start - 1;
            let gate = p.phases[g].gate.as_ref().expect("segments end at gates");
            let confirmed = stored
                .and_then(|s| s.phases.get(g))
                .filter(|ph| ph.gate_confirmed_at.is_some());
            title = format!("Gate {n}: deploy, then {}", phases.join(" → "));
            for text in &gate.items {
                let mut it = Item::new(ItemKind::Deploy, text.clone());
                if let Some(c) = confirmed {
                    it = it.done(c.gate_confirmed_by.clone(), c.gate_confirmed_at);
                    it.deployed_ref = c.gate_deployed_ref.clone();
                }
                items.push(it);
            }
            for w in &gate.warnings {
                let mut it = Item::new(ItemKind::Warning, format!("Before confirming: {w}"));
                if let Some(c) = confirmed {
                    it = it.done(c.gate_confirmed_by.clone(), c.gate_confirmed_at);
                }
                items.push(it);
            }
            for f in src
                .fences
                .iter()
                .filter(|f| f.at_gate_after.value == p.phases[g].kind.as_str())
            {
                let pattern = &f.no_application_name_like.value;
                let mut it = Item::new(
                    ItemKind::Fence,
                    format!(
                        "no session of the database with an application_name like `{pattern}` is still connected (`phase advance` checks pg_stat_activity and refuses, listing them; `--force` overrides and is recorded)"
                    ),
                )
                .command(format!(
                    "psql -c \"SELECT pid, application_name, client_addr, backend_start FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE '{}'\"",
                    pattern.replace('\'', "''")
                ));
                if let Some(c) = confirmed {
                    it = it.done(c.gate_confirmed_by.clone(), c.gate_confirmed_at);
                }
                items.push(it);
            }
            let checked = crate::evidence::checked_names(p);
            if pnr.is_some_and(|i| seg.contains(&i)) && !checked.is_empty() {
                let mut it = Item::new(
                    ItemKind::Fence,
                    format!(
                        "nothing still uses {} since this gate was reached: statements (pg_stat_statements), sessions' queries and index/table usage (`phase advance` checks and refuses, listing them; `--force` overrides and is recorded; `settings.contract.evidence` turns it to warn or off)",
                        checked.join(", ")
                    ),
                )
                .command(format!("pgphase check-drain {name} --wait 10m"));
                if let Some(c) = confirmed {
                    it = it.done(c.gate_confirmed_by.clone(), c.gate_confirmed_at);
                }
                items.push(it);
            }
            let mut healthy = Item::new(
                ItemKind::Verify,
                "the deploy is complete on every instance and healthy (error rate, latency, logs) before going on",
            );
            if let Some(c) = confirmed {
                healthy = healthy.done(c.gate_confirmed_by.clone(), c.gate_confirmed_at);
            }
            items.push(healthy);
            runner = confirmed.and_then(|c| c.gate_confirmed_by.clone());
        }
        // (a gate's own text says it for the phases after it)
        let start_warning = (n == 0)
            .then(|| crate::program::row_type_warning(&p.phases[seg.clone()], false))
            .flatten();
        if let Some(w) = start_warning {
            let mut it = Item::new(
                ItemKind::Warning,
                format!("Under the running version, the phases `start` runs {w}"),
            );
            if seg_done {
                it = it.done(runner.clone(), seg_done_at);
            }
            items.push(it);
        }
        if let Some(i) = pnr.filter(|i| seg.contains(i)) {
            let ph = &p.phases[i];
            let what: Vec<&str> = ph.steps.iter().map(|s| s.description.as_str()).collect();
            let mut it = Item::new(
                ItemKind::Warning,
                format!(
                    "POINT OF NO RETURN: `{}` ({}). Once it begins, `pgphase phase rollback` is refused; this is the last moment to roll back with `pgphase phase rollback {name}` (it goes back one deploy gate at a time: roll the application back to the version before that gate's deploy, then roll back again)",
                    ph.kind,
                    what.join("; ")
                ),
            );
            if seg_done || stored.is_some_and(|s| s.state().contract_begun()) {
                it = it.done(runner.clone(), phase_done(i).flatten());
            }
            items.push(it);
        }
        let cmd = if n == 0 {
            format!("pgphase start {file_arg}")
        } else {
            format!(
                "pgphase phase advance {name} --gate {} --deployed <REF>{}",
                p.phases[seg.start - 1].kind,
                if pnr.is_some_and(|i| seg.contains(&i)) {
                    " --yes"
                } else {
                    ""
                }
            )
        };
        let mut run = Item::new(
            ItemKind::Run,
            match segs.get(n + 1) {
                Some(_) => format!(
                    "runs {}, then stops at the next deploy gate",
                    phases.join(", ")
                ),
                None => format!("runs {} and completes the plan", phases.join(", ")),
            },
        )
        .command(cmd);
        run.steps = p.phases[seg.clone()]
            .iter()
            .flat_map(|ph| {
                ph.steps
                    .iter()
                    .map(move |s| format!("{}: {} [{}]", ph.kind, s.description, s.lock))
            })
            .collect();
        if seg_done {
            run = run.done(runner.clone(), seg_done_at);
            if n > 0 {
                run.deployed_ref = stored
                    .and_then(|s| s.phases.get(seg.start - 1))
                    .and_then(|ph| ph.gate_deployed_ref.clone());
            }
        }
        items.push(run);
        for i in seg.clone() {
            for s in &p.phases[i].steps {
                if let Action::Verify { .. } = s.action {
                    let mut it = Item::new(
                        ItemKind::Verify,
                        format!("(checked by pgphase) {}", s.description),
                    );
                    if let Some(at) = phase_done(i) {
                        it = it.done(runner.clone(), at);
                    }
                    items.push(it);
                }
            }
        }
        let after = match segs.get(n + 1) {
            Some(next) => {
                let g = next.start - 1;
                format!(
                    "`pgphase status {name}` says awaiting_deploy after `{}`; a pipeline can gate the next deploy on `pgphase check --plan {name} --at-least {}` (exit 0)",
                    p.phases[g].kind, p.phases[g].kind
                )
            }
            None => format!(
                "`pgphase status {name}` says completed; `pgphase check --plan {name} --at-least {}` exits 0",
                p.phases[last].kind
            ),
        };
        let mut verify = Item::new(ItemKind::Verify, after);
        if seg_done {
            verify = verify.done(runner.clone(), seg_done_at);
        }
        items.push(verify);
        sections.push(Section {
            title,
            phases,
            items,
        });
    }
    let rollback = match pnr {
        Some(i) => format!(
            "Until `{}` begins: `pgphase phase rollback {name}` undoes the phases run since the last confirmed deploy gate, last first, while the version deployed there keeps working, and reopens that gate; then roll the application back to the version before that deploy and run it again, until the original schema is restored. Once `{}` has begun there is no rollback: finish the plan, and undo the change with a new plan.",
            p.phases[i].kind, p.phases[i].kind
        ),
        None => format!(
            "`pgphase phase rollback {name}` undoes every phase run so far, last first, one deploy gate at a time (roll the application back at each reopened gate), at any point before the plan completes."
        ),
    };
    let rollback = match crate::program::row_type_warning(&p.phases, true) {
        Some(w) => format!("{rollback} Rolling back may {w}."),
        None => rollback,
    };
    Checklist {
        plan: name.clone(),
        description: p.description.clone(),
        file: src.file.clone(),
        checksum: src.checksum.clone(),
        started: stored.is_some(),
        status: stored.map(|s| s.status),
        started_by: stored.map(|s| s.started_by.clone()),
        started_at: stored.map(|s| s.started_at),
        sections,
        point_of_no_return: pnr.map(|i| p.phases[i].kind.to_string()),
        rollback,
        notes: p.notes.clone(),
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn done_note(it: &Item) -> String {
    if !it.done {
        return String::new();
    }
    let mut o = String::from(" — done");
    if let Some(r) = &it.deployed_ref {
        let _ = write!(o, " ({r})");
    }
    if let Some(b) = &it.done_by {
        let _ = write!(o, " by {b}");
    }
    if let Some(t) = &it.done_at {
        let _ = write!(o, ", {}", ts(t));
    }
    o
}

fn header_line(c: &Checklist) -> String {
    let mut o = String::new();
    if let Some(f) = &c.file {
        let _ = write!(o, "Plan file `{f}`");
        if let Some(sum) = &c.checksum {
            let _ = write!(o, " ({})", crate::plan::short_checksum(sum));
        }
        o.push_str(" · ");
    }
    match (&c.status, &c.started_by, &c.started_at) {
        (Some(s), Some(by), Some(at)) => {
            let _ = write!(o, "state: **{s}**, started by {by} at {}", ts(at));
        }
        _ => o.push_str("not started yet"),
    }
    o
}

/// Markdown, paste-able into a pull request or a release ticket.
pub fn markdown(c: &Checklist) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Release checklist: `{}`\n", c.plan);
    if let Some(d) = &c.description {
        let _ = writeln!(o, "> {d}\n");
    }
    let _ = writeln!(o, "{}\n", header_line(c));
    for (n, s) in c.sections.iter().enumerate() {
        let _ = writeln!(o, "## {}. {}\n", n + 1, s.title);
        for it in &s.items {
            let mark = if it.done { "x" } else { " " };
            let label = match it.kind {
                ItemKind::Deploy => "**Deploy gate:** ",
                ItemKind::Fence => "**Deploy fence:** ",
                ItemKind::Run => "**Run:** ",
                ItemKind::Verify => "**Verify:** ",
                ItemKind::Warning => "⚠️ **",
            };
            let close = if it.kind == ItemKind::Warning {
                "**"
            } else {
                ""
            };
            let text = match (it.kind, &it.command) {
                (ItemKind::Run, Some(cmd)) => format!("`{cmd}` — {}", it.text),
                (_, Some(cmd)) => format!("{} — `{cmd}`", it.text),
                _ => it.text.clone(),
            };
            let _ = writeln!(o, "- [{mark}] {label}{text}{close}{}", done_note(it));
            for st in &it.steps {
                let _ = writeln!(o, "  - {st}");
            }
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## Rollback\n\n{}\n", c.rollback);
    for n in &c.notes {
        let _ = writeln!(o, "_Note: {n}_\n");
    }
    o.truncate(o.trim_end().len());
    o.push('\n');
    o
}

/// Plain text for a terminal.
pub fn text(c: &Checklist) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Release checklist: {}", c.plan);
    if let Some(d) = &c.description {
        let _ = writeln!(o, "  {d}");
    }
    let _ = writeln!(o, "  {}", header_line(c).replace("**", "").replace('`', ""));
    for (n, s) in c.sections.iter().enumerate() {
        let _ = writeln!(o, "\n{}. {}", n + 1, s.title);
        for it in &s.items {
            let mark = if it.done { "[x]" } else { "[ ]" };
            let label = match it.kind {
                ItemKind::Deploy => "deploy gate: ",
                ItemKind::Fence => "deploy fence: ",
                ItemKind::Run => "run: ",
                ItemKind::Verify => "verify: ",
                ItemKind::Warning => "⚠ ",
            };
            let _ = writeln!(
                o,
                "  {mark} {label}{}{}",
                it.text.replace('`', ""),
                done_note(it)
            );
            if let Some(cmd) = &it.command {
                let _ = writeln!(o, "        $ {cmd}");
            }
            for st in &it.steps {
                let _ = writeln!(o, "        · {st}");
            }
        }
    }
    let _ = writeln!(o, "\nRollback: {}", c.rollback.replace('`', ""));
    for n in &c.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}
