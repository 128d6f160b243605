//! Pure rendering of a [`Screen`] into a ratatui buffer: no I/O, no clock (the caller
//! passes `now`), so tests render real snapshots into a `TestBackend`. Text is wrapped
//! here (continuation lines indented under their item), so a pane knows its exact
//! length and scrolls by lines.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::app::{App, Drawn, Mode};
use super::model::{FenceSnap, PlanSnap, Screen, Snapshot};
use crate::report::checklist::ItemKind;
use crate::report::{self, PlanView};
use crate::state::machine::{PhaseStatus, PlanStatus};

/// Width from which the selected plan and the live side sit side by side.
const WIDE: u16 = 120;
/// Events shown under a plan's details (the history pane has them all).
const DETAIL_EVENTS: usize = 8;
/// Width of an event's kind (`interrupted`, the longest).
const KIND_W: usize = 11;

/// Styles, or none at all with colour off (`NO_COLOR`): then only bold and reverse
/// video mark things.
#[derive(Clone, Copy)]
struct Paint {
    color: bool,
}

impl Paint {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn bold(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    fn status(self, v: &PlanView) -> Style {
        if v.interrupted {
            return self.fg(Color::Red);
        }
        self.fg(match v.status {
            PlanStatus::Running => Color::Cyan,
            PlanStatus::AwaitingDeploy => Color::Yellow,
            PlanStatus::Completed => Color::Green,
            PlanStatus::RollingBack | PlanStatus::RolledBack => Color::Magenta,
            PlanStatus::Failed => Color::Red,
        })
    }
}

/// Draws the screen; returns how far the pane on screen can scroll.
pub fn render(
    screen: &Screen,
    app: &App,
    color: bool,
    now: DateTime<Utc>,
    area: Rect,
    buf: &mut Buffer,
) -> Drawn {
    let p = Paint { color };
    // the banner wraps (the reason matters), up to three rows
    let banner = screen.lost.as_ref().map_or(Vec::new(), |l| {
        let mut lines = wrap(
            vec![Span::raw(format!(
                "connection lost {} ago, reconnecting every {}: {}",
                ago(l.since, now),
                humantime::format_duration(screen.interval),
                l.error
            ))],
            area.width.saturating_sub(1) as usize,
            0,
        );
        lines.truncate(3);
        lines
    });
    let [head, ban, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner.len() as u16),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header(screen, p, now, head, buf);
    if !banner.is_empty() {
        let style = if color {
            Style::default().fg(Color::White).bg(Color::Red)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        };
        let lines: Vec<Line> = banner
            .into_iter()
            .map(|l| {
                let mut spans = vec![Span::raw(" ")];
                spans.extend(l.spans);
                Line::from(spans)
            })
            .collect();
        Paragraph::new(lines)
            .style(style.add_modifier(Modifier::BOLD))
            .render(ban, buf);
    }
    footer(app.mode, p, foot, buf);

    let Some(snap) = &screen.snapshot else {
        Paragraph::new(" no data yet: waiting for the database").render(body, buf);
        return Drawn::default();
    };
    let selected = snap.plans.get(app.selected);
    let w = body.width as usize;
    let (title, lines) = match (app.mode, selected) {
        (Mode::Help, _) => (" help (?: back) ".to_string(), help_lines(p, w)),
        (Mode::Details, Some(s)) => (
            format!(" {} — details (Enter: back) ", s.view.plan),
            details_lines(s, p, now, w),
        ),
        (Mode::Checklist, Some(s)) => (
            format!(" {} — release checklist (c: back) ", s.view.plan),
            checklist_lines(s, p, w),
        ),
        (Mode::History, Some(s)) => (
            format!(" {} — events, newest first (h: back) ", s.view.plan),
            history_lines(s, p, w),
        ),
        _ => {
            overview(screen, snap, app.selected, p, now, body, buf);
            return Drawn::default();
        }
    };
    pane(title, lines, app.scroll, p, body, buf)
}

fn titled<'a>(title: impl Into<Line<'a>>) -> Block<'a> {
    Block::default().borders(Borders::TOP).title(title)
}

/// A scrolling pane: `lines` (already wrapped to the width) from line `scroll`, and
/// where it is (`12–33 of 45`) on the right of its title when it does not fit.
fn pane(
    title: String,
    lines: Vec<Line<'static>>,
    scroll: usize,
    p: Paint,
    area: Rect,
    buf: &mut Buffer,
) -> Drawn {
    let page = area.height.saturating_sub(1) as usize;
    let scroll_max = lines.len().saturating_sub(page);
    let scroll = scroll.min(scroll_max);
    let mut block = titled(title);
    if scroll_max > 0 {
        block = block.title(
            Line::styled(
                format!(
                    " {}–{} of {} ",
                    scroll + 1,
                    (scroll + page).min(lines.len()),
                    lines.len()
                ),
                p.bold(),
            )
            .right_aligned(),
        );
    }
    Paragraph::new(lines)
        .scroll((scroll.min(u16::MAX as usize) as u16, 0))
        .block(block)
        .render(area, buf);
    Drawn { scroll_max, page }
}

/// A box of `lines` cut to its height, the last row saying how much is cut and where
/// to see it.
fn boxed(
    title: String,
    mut lines: Vec<Line<'static>>,
    more: &str,
    p: Paint,
    area: Rect,
    buf: &mut Buffer,
) {
    let rows = area.height.saturating_sub(1) as usize;
    if lines.len() > rows && rows > 0 {
        let cut = lines.len() - (rows - 1);
        lines.truncate(rows - 1);
        lines.push(Line::styled(format!("… {cut} more line(s){more}"), p.dim()));
    }
    Paragraph::new(lines).block(titled(title)).render(area, buf);
}

fn header(screen: &Screen, p: Paint, now: DateTime<Utc>, area: Rect, buf: &mut Buffer) {
    let refreshed = match &screen.snapshot {
        Some(s) => format!("refreshed {} ago", ago(s.taken_at, now)),
        None => "not read yet".into(),
    };
    Paragraph::new(Line::from(vec![
        Span::styled(" pgphase ", p.bold()),
        Span::raw(format!("{}  ", screen.target)),
        Span::styled(
            format!(
                "{refreshed} (every {})",
                humantime::format_duration(screen.interval)
            ),
            p.dim(),
        ),
    ]))
    .render(area, buf);
}

fn footer(mode: Mode, p: Paint, area: Rect, buf: &mut Buffer) {
    let keys: &[(&str, &str)] = if mode == Mode::Overview {
        &[
            ("↑↓/jk", "plan"),
            ("Enter", "details"),
            ("c", "checklist"),
            ("h", "history"),
            ("?", "help"),
            ("q", "quit"),
        ]
    } else {
        &[
            ("↑↓/jk", "scroll"),
            ("PgUp/PgDn", "page"),
            ("Enter/c/h", "switch"),
            ("Esc", "back"),
            ("q", "quit"),
        ]
    };
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in keys {
        spans.push(Span::styled(*k, p.bold()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Paragraph::new(Line::from(spans))
        .style(p.dim())
        .render(area, buf);
}

/// `3s`, `2m05s`.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    report::short_duration((now - t).num_milliseconds() as f64 / 1000.0)
}

/// Word-wraps `spans` (their styles kept) to `width` columns; continuation lines start
/// with `indent` spaces. A word longer than a line is cut.
fn wrap(spans: Vec<Span<'static>>, width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = indent.min(width / 2);
    let mut lines = Vec::new();
    let mut cur: Vec<Span<'static>> = Vec::new();
    let mut used = 0usize;
    for span in spans {
        let style = span.style;
        let content = span.content.replace('\n', " ");
        for piece in content.split_inclusive(' ') {
            let word = piece.trim_end_matches(' ');
            let word_w = Span::raw(word).width();
            if used + word_w > width && used > indent {
                lines.push(Line::from(std::mem::take(&mut cur)));
                cur.push(Span::raw(" ".repeat(indent)));
                used = indent;
            }
            let mut rest = piece.to_string();
            // a word wider than the line: cut it across lines
            while used + Span::raw(rest.trim_end_matches(' ')).width() > width {
                let room = width.saturating_sub(used).max(1);
                let head: String = rest.chars().take(room).collect();
                rest = rest.chars().skip(room).collect();
                cur.push(Span::styled(head, style));
                lines.push(Line::from(std::mem::take(&mut cur)));
                cur.push(Span::raw(" ".repeat(indent)));
                used = indent;
            }
            used += Span::raw(rest.as_str()).width();
            cur.push(Span::styled(rest, style));
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(Line::from(cur));
    }
    lines
}

/// The phases as `exp✓ dw✓ ║bf▶ sr· ║ct·`: a mark per phase, `║` a deploy gate
/// (`⏸` the one the plan waits at).
fn phase_bar(v: &PlanView, p: Paint) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    for (i, ph) in v.phases.iter().enumerate() {
        let (mark, style) = match ph.status {
            PhaseStatus::Completed => ("✓", p.fg(Color::Green)),
            PhaseStatus::Running => ("▶", p.fg(Color::Cyan).add_modifier(Modifier::BOLD)),
            PhaseStatus::Failed => ("✗", p.fg(Color::Red).add_modifier(Modifier::BOLD)),
            PhaseStatus::RolledBack => ("↺", p.fg(Color::Magenta)),
            _ => ("·", p.dim()),
        };
        out.push(Span::styled(format!("{}{mark}", short(&ph.phase)), style));
        if i + 1 < v.phases.len() {
            out.push(match (&ph.gate, ph.gate_confirmed_at) {
                (Some(_), Some(_)) => Span::styled(" ║", p.fg(Color::Green)),
                (Some(_), None)
                    if v.waiting_for.is_some() && ph.status == PhaseStatus::Completed =>
                {
                    Span::styled(" ⏸", p.fg(Color::Yellow).add_modifier(Modifier::BOLD))
                }
                (Some(_), None) => Span::styled(" ║", p.dim()),
                (None, _) => Span::raw(" "),
            });
        }
    }
    out
}

fn short(phase: &str) -> &str {
    match phase {
        "expand" => "exp",
        "dual_write" => "dw",
        "backfill" => "bf",
        "switch_reads" => "sr",
        "contract" => "ct",
        other => other,
    }
}

/// The overview: every plan, then the selected plan's summary and the live side (side
/// by side from [`WIDE`] columns, else one above the other, each given the rows it
/// needs as far as they go).
fn overview(
    screen: &Screen,
    snap: &Snapshot,
    selected: usize,
    p: Paint,
    now: DateTime<Utc>,
    body: Rect,
    buf: &mut Buffer,
) {
    let wanted = snap.plans.len().max(1) as u16 + 1;
    let list_h = wanted.min((body.height / 3).max(2));
    let [list, rest] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(0)]).areas(body);
    plans(snap, selected, p, list, buf);
    let plan = snap.plans.get(selected);
    let title = plan.map_or(" plan ".to_string(), |s| format!(" {} ", s.view.plan));
    let summary = |w: usize| match plan {
        Some(s) => summary_lines(s, p, now, w),
        None => wrap(
            vec![Span::raw(
                "no plans in this database yet (start one with `pgphase start FILE`)",
            )],
            w,
            0,
        ),
    };
    if rest.width >= WIDE {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(rest);
        // room for more: the plan's phases and steps under its summary, its last
        // events under the live side (a column's gap between the two)
        let lw = l.width.saturating_sub(2) as usize;
        let mut left = summary(lw);
        let mut right = live_lines(screen, snap, plan, p, r.width as usize);
        if let Some(s) = plan {
            left.push(Line::raw(""));
            left.extend(phase_lines(s, p, now, lw));
            right.push(Line::raw(""));
            right.extend(last_events(s, p, r.width as usize));
        }
        boxed(title, left, ": Enter for details", p, l, buf);
        boxed(" live ".into(), right, "", p, r, buf);
        return;
    }
    let w = rest.width as usize;
    let (s, l) = (summary(w), live_lines(screen, snap, plan, p, w));
    let rows = rest.height as usize;
    let (s_need, l_need) = (s.len() + 1, l.len() + 1);
    let s_h = if s_need + l_need <= rows {
        s_need
    } else {
        s_need.min(rows.saturating_sub(l_need).max(rows / 2))
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(s_h as u16), Constraint::Min(0)]).areas(rest);
    boxed(title, s, ": Enter for details", p, top, buf);
    boxed(" live ".into(), l, "", p, bottom, buf);
}

fn plans(snap: &Snapshot, selected: usize, p: Paint, area: Rect, buf: &mut Buffer) {
    let bar_w = snap
        .plans
        .iter()
        .map(|s| Line::from(phase_bar(&s.view, p)).width())
        .max()
        .unwrap_or(0);
    // the name gets what the marker, the status and the phase bar leave
    let room = (area.width as usize).saturating_sub(2 + 17 + bar_w).max(8);
    let name_w = snap
        .plans
        .iter()
        .map(|s| s.view.plan.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, room);
    // more plans than rows: the window that keeps the selected one in view
    let rows = area.height.saturating_sub(1).max(1) as usize;
    let first = selected.saturating_sub(rows - 1);
    let mut lines = Vec::new();
    for (i, s) in snap.plans.iter().enumerate().skip(first).take(rows) {
        let v = &s.view;
        let name = if v.plan.chars().count() > name_w {
            one_line(&v.plan, name_w)
        } else {
            v.plan.clone()
        };
        let mut spans = vec![
            Span::raw(if i == selected { "▸ " } else { "  " }),
            Span::styled(
                format!("{name:<name_w$} "),
                if i == selected {
                    p.bold().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                },
            ),
            Span::styled(format!("{:<16} ", report::status_label(v)), p.status(v)),
        ];
        spans.extend(phase_bar(v, p));
        lines.push(Line::from(spans));
    }
    let title = if snap.plans.len() > rows {
        format!(" plans ({} of {}) ", selected + 1, snap.plans.len())
    } else {
        " plans ".to_string()
    };
    Paragraph::new(lines).block(titled(title)).render(area, buf);
}

fn duration_of(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    match start {
        Some(s) => {
            report::short_duration((end.unwrap_or(now) - s).num_milliseconds() as f64 / 1000.0)
        }
        None => String::new(),
    }
}

/// The selected plan, what matters first (a short box cuts the end): where it stands,
/// the next command, the last error, who confirmed which gate, the fences, what the
/// open gate waits for.
fn summary_lines(s: &PlanSnap, p: Paint, now: DateTime<Utc>, w: usize) -> Vec<Line<'static>> {
    let v = &s.view;
    let mut lines = wrap(
        vec![
            Span::styled(
                report::status_label(v),
                p.status(v).add_modifier(Modifier::BOLD),
            ),
            Span::raw(match &v.current_phase {
                Some(ph) if v.status != PlanStatus::Completed => format!(" in {ph}"),
                _ => String::new(),
            }),
            Span::styled(
                format!(
                    ", started by {} {} ago",
                    v.started_by,
                    ago(v.started_at, now)
                ),
                p.dim(),
            ),
        ],
        w,
        2,
    );
    lines.extend(next_and_error(v, p, w));
    lines.extend(gate_lines(v, p, now, w));
    for f in &s.fences {
        lines.extend(fence_lines(f, v, p, w));
    }
    lines.extend(evidence_lines(v, p, w));
    lines.extend(waiting_lines(v, p, w));
    lines
}

/// The latest check before contract (`crate::evidence`), until contract has run.
fn evidence_lines(v: &PlanView, p: Paint, w: usize) -> Vec<Line<'static>> {
    let Some(e) = &v.evidence else {
        return Vec::new();
    };
    if matches!(v.status, PlanStatus::Completed | PlanStatus::RolledBack) {
        return Vec::new();
    }
    let (mark, style) = match e.clean {
        Some(true) => ("✓", p.fg(Color::Green)),
        Some(false) => ("✗", p.fg(Color::Red).add_modifier(Modifier::BOLD)),
        None => ("·", p.dim()),
    };
    wrap(
        vec![
            Span::styled(format!("{mark} evidence "), style),
            Span::raw(report::evidence_check_label(e)),
        ],
        w,
        2,
    )
}

fn next_and_error(v: &PlanView, p: Paint, w: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(c) = &v.next_command {
        lines.extend(wrap(
            vec![Span::styled("next: ", p.bold()), Span::raw(c.clone())],
            w,
            6,
        ));
    }
    if let Some(e) = &v.last_error {
        lines.extend(wrap(
            vec![
                Span::styled(
                    "last error: ",
                    p.fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(e.clone()),
            ],
            w,
            2,
        ));
    }
    lines
}

fn waiting_lines(v: &PlanView, p: Paint, w: usize) -> Vec<Line<'static>> {
    match &v.waiting_for {
        Some(text) => wrap(
            vec![
                Span::styled(
                    "waiting for: ",
                    p.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::raw(text.clone()),
            ],
            w,
            2,
        ),
        None => Vec::new(),
    }
}

fn gate_lines(v: &PlanView, p: Paint, now: DateTime<Utc>, w: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for ph in &v.phases {
        let Some(at) = ph.gate_confirmed_at else {
            continue;
        };
        lines.extend(wrap(
            vec![
                Span::styled("✓ gate after ", p.fg(Color::Green)),
                Span::raw(format!(
                    "{}: {} by {}, {} ago",
                    ph.phase,
                    ph.gate_deployed_ref.as_deref().unwrap_or("?"),
                    ph.gate_confirmed_by.as_deref().unwrap_or("?"),
                    ago(at, now)
                )),
            ],
            w,
            2,
        ));
    }
    lines
}

/// A deploy fence and the sessions it matches now: a failure only at its gate (where
/// `phase advance` would refuse); before, sessions still connected are expected.
fn fence_lines(f: &FenceSnap, v: &PlanView, p: Paint, w: usize) -> Vec<Line<'static>> {
    if matches!(v.status, PlanStatus::Completed | PlanStatus::RolledBack) {
        return Vec::new();
    }
    let at_gate =
        v.waiting_for.is_some() && v.current_phase.as_deref() == Some(f.at_gate_after.as_str());
    let (mark, style, tail) = match (f.sessions, at_gate) {
        (0, _) => ("✓", p.fg(Color::Green), String::new()),
        (_, true) => (
            "✗",
            p.fg(Color::Red).add_modifier(Modifier::BOLD),
            ": `phase advance` refuses until they are gone".to_string(),
        ),
        (_, false) => ("·", p.dim(), " (to be drained by then)".to_string()),
    };
    let sessions = match f.sessions {
        0 => "no session".to_string(),
        1 => "1 session".to_string(),
        n => format!("{n} sessions"),
    };
    wrap(
        vec![
            Span::styled(format!("{mark} fence "), style),
            Span::raw(format!(
                "before the gate after {}: {sessions} LIKE '{}' connected{tail}",
                f.at_gate_after, f.pattern
            )),
        ],
        w,
        2,
    )
}

/// Live work (backfill, pgphase's statements, lock waits) and the application side.
fn live_lines(
    screen: &Screen,
    snap: &Snapshot,
    selected: Option<&PlanSnap>,
    p: Paint,
    width: usize,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(s) = selected {
        for b in s
            .view
            .backfill
            .iter()
            .filter(|b| b.progress.finished_at.is_none())
        {
            let mut label = report::backfill_label(b);
            if b.rows_per_sec.is_none() && b.running {
                label.push_str(", rate: measuring");
            }
            lines.extend(wrap(
                vec![
                    Span::styled("backfill ", p.fg(Color::Cyan).add_modifier(Modifier::BOLD)),
                    Span::raw(label),
                ],
                width,
                2,
            ));
            if let Some(pct) = b.percent() {
                lines.push(bar(pct, width, p));
            }
            let mut batches = format!("  {} batches", b.progress.batches);
            if let Some(r) = screen.recent(&s.view.plan, b.progress.phase, b.progress.step) {
                if let (Some(rows), Some(secs)) = (r.rows_per_batch, r.secs_per_batch) {
                    batches.push_str(&format!(
                        "; last {}: {} rows, {:.2}s a batch",
                        report::short_duration(r.over_secs),
                        report::short_count(rows),
                        secs
                    ));
                }
            }
            lines.push(Line::styled(batches, p.dim()));
        }
    }
    // a statement and its blockers wrap over a few rows: the query says what it is
    let cut = |mut l: Vec<Line<'static>>, rows: usize, p: Paint| {
        if l.len() > rows {
            l.truncate(rows);
            if let Some(last) = l.last_mut() {
                last.spans.push(Span::styled("…", p.dim()));
            }
        }
        l
    };
    for w in &snap.work {
        let st = &w.statement;
        let running = wrap(
            vec![
                Span::styled("running ", p.bold()),
                Span::raw(format!(
                    "{}s pid {} {}: {}",
                    st.running_secs.map_or("?".into(), |s| format!("{s:.1}")),
                    st.pid,
                    st.state.as_deref().unwrap_or("?"),
                    st.query
                )),
            ],
            width.saturating_sub(1),
            2,
        );
        lines.extend(cut(running, 2, p));
        if let Some(wait) = &st.lock_wait {
            lines.push(Line::styled(
                format!("  waits for a {wait} lock, held by:"),
                p.fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
            for b in &w.blockers {
                let blocker = wrap(
                    vec![Span::raw(format!("    {b}"))],
                    width.saturating_sub(1),
                    6,
                );
                lines.extend(cut(blocker, 3, p));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::styled("nothing running", p.dim()));
    }
    lines.push(Line::styled("sessions per application_name", p.bold()));
    let name_w = width.saturating_sub(42).clamp(8, 32);
    for a in &snap.apps {
        let name = if a.application_name.is_empty() {
            "(none)"
        } else {
            &a.application_name
        };
        lines.push(Line::from(one_line(
            &format!(
                "  {:<name_w$} {:>4} ({} active, {} idle in transaction)",
                one_line(name, name_w),
                a.total,
                a.active,
                a.idle_in_transaction
            ),
            width,
        )));
    }
    for h in &snap.health {
        lines.extend(wrap(
            vec![Span::raw(format!("{}: {}", h.what, h.value))],
            width,
            2,
        ));
    }
    lines
}

fn bar(pct: f64, width: usize, p: Paint) -> Line<'static> {
    let inner = width.saturating_sub(6);
    let full = ((pct / 100.0) * inner as f64).floor() as usize;
    Line::from(vec![
        Span::styled("█".repeat(full.min(inner)), p.fg(Color::Cyan)),
        Span::styled("░".repeat(inner - full.min(inner)), p.dim()),
        Span::raw(format!(" {:>3.0}%", pct.floor())),
    ])
}

/// Phases and steps, gates, fences and the last events of the selected plan.
fn details_lines(s: &PlanSnap, p: Paint, now: DateTime<Utc>, w: usize) -> Vec<Line<'static>> {
    let v = &s.view;
    let mut lines = vec![Line::from(phase_bar(v, p))];
    lines.extend(next_and_error(v, p, w));
    lines.extend(waiting_lines(v, p, w));
    lines.extend(phase_lines(s, p, now, w));
    for f in &s.fences {
        lines.extend(fence_lines(f, v, p, w));
    }
    lines.extend(evidence_lines(v, p, w));
    lines.extend(last_events(s, p, w));
    lines
}

/// The last events of a plan, under a title.
fn last_events(s: &PlanSnap, p: Paint, w: usize) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled("last events (h: all)", p.bold())];
    let skip = s.events.len().saturating_sub(DETAIL_EVENTS);
    for e in &s.events[skip..] {
        lines.extend(event_lines(e, p, "%H:%M:%S", w));
    }
    lines
}

/// Each phase (status, steps done, duration), its steps marked, its gate.
fn phase_lines(s: &PlanSnap, p: Paint, now: DateTime<Utc>, w: usize) -> Vec<Line<'static>> {
    let v = &s.view;
    let mut lines = Vec::new();
    for (i, ph) in v.phases.iter().enumerate() {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<13}", ph.phase), p.bold()),
            Span::raw(format!(
                "{:<12} {}/{} steps  {}",
                ph.status.as_str(),
                ph.steps_done,
                ph.steps_total,
                duration_of(ph.started_at, ph.finished_at, now)
            )),
        ]));
        for (j, step) in s.steps.get(i).into_iter().flatten().enumerate() {
            let done = (j as i32) < ph.steps_done;
            let (mark, style) = if done {
                ("✓", p.fg(Color::Green))
            } else if j as i32 == ph.steps_done && ph.status == PhaseStatus::Running {
                ("▶", p.fg(Color::Cyan))
            } else if j as i32 == ph.steps_done && ph.status == PhaseStatus::Failed {
                ("✗", p.fg(Color::Red))
            } else {
                ("·", p.dim())
            };
            lines.extend(wrap(
                vec![
                    Span::styled(format!("  {mark} "), style),
                    Span::raw(step.clone()),
                ],
                w,
                4,
            ));
        }
        if let Some(g) = &ph.gate {
            let text = match (&ph.gate_confirmed_at, &ph.gate_confirmed_by) {
                (Some(at), by) => format!(
                    "gate: {} — confirmed: {} by {}, {} ago",
                    g,
                    ph.gate_deployed_ref.as_deref().unwrap_or("?"),
                    by.as_deref().unwrap_or("?"),
                    ago(*at, now)
                ),
                (None, _) => format!("gate: {g}"),
            };
            lines.extend(wrap(
                vec![
                    Span::styled("  ║ ", p.fg(Color::Yellow)),
                    Span::styled(text, p.fg(Color::Yellow)),
                ],
                w,
                4,
            ));
        }
    }
    lines
}

/// One event: its time, kind and message, wrapped under the message.
fn event_lines(
    e: &crate::state::store::EventRow,
    p: Paint,
    time_format: &str,
    w: usize,
) -> Vec<Line<'static>> {
    let style = match e.kind.as_str() {
        "error" | "interrupted" => p.fg(Color::Red),
        "refused" | "retry" | "wait" | "fence" | "evidence" => p.fg(Color::Yellow),
        _ => Style::default(),
    };
    let time = e.at.format(time_format).to_string();
    let indent = time.chars().count() + 1 + KIND_W + 1;
    wrap(
        vec![
            Span::styled(format!("{time} "), p.dim()),
            Span::styled(format!("{:<KIND_W$} ", e.kind), style),
            Span::raw(e.message.clone()),
        ],
        w,
        indent,
    )
}

fn checklist_lines(s: &PlanSnap, p: Paint, w: usize) -> Vec<Line<'static>> {
    let c = &s.checklist;
    let mut lines = Vec::new();
    for sec in &c.sections {
        lines.extend(wrap(vec![Span::styled(sec.title.clone(), p.bold())], w, 2));
        for i in &sec.items {
            let mark = if i.done { "[x]" } else { "[ ]" };
            let mut spans = vec![
                Span::styled(
                    format!("{mark} "),
                    if i.done {
                        p.fg(Color::Green)
                    } else {
                        Style::default()
                    },
                ),
                Span::styled(
                    i.text.clone(),
                    if i.kind == ItemKind::Warning {
                        p.fg(Color::Red)
                    } else {
                        Style::default()
                    },
                ),
            ];
            if let Some(cmd) = &i.command {
                spans.push(Span::raw(": "));
                spans.push(Span::styled(cmd.clone(), p.bold()));
            }
            if let (true, Some(by)) = (i.done, &i.done_by) {
                spans.push(Span::styled(
                    format!(
                        " ({}by {by}{})",
                        i.deployed_ref
                            .as_ref()
                            .map(|r| format!("{r} "))
                            .unwrap_or_default(),
                        i.done_at
                            .map(|t| t.format(", %Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default()
                    ),
                    p.dim(),
                ));
            }
            lines.extend(wrap(spans, w, 4));
        }
    }
    lines.extend(wrap(
        vec![
            Span::styled("rollback: ", p.bold()),
            Span::raw(c.rollback.clone()),
        ],
        w,
        2,
    ));
    lines
}

fn history_lines(s: &PlanSnap, p: Paint, w: usize) -> Vec<Line<'static>> {
    if s.events.is_empty() {
        return vec![Line::styled("no events", p.dim())];
    }
    s.events
        .iter()
        .rev()
        .flat_map(|e| event_lines(e, p, "%m-%d %H:%M:%S", w))
        .collect()
}

fn help_lines(p: Paint, w: usize) -> Vec<Line<'static>> {
    let k = |key: &'static str, what: &'static str| {
        wrap(
            vec![
                Span::styled(format!("  {key:<11}"), p.bold()),
                Span::raw(what),
            ],
            w,
            13,
        )
    };
    let text = |t: &'static str| wrap(vec![Span::raw(t)], w, 2);
    [
        k("↑ ↓ j k", "select a plan (in a pane: scroll it by a line)"),
        k("PgUp PgDn", "scroll a pane by a page (Space too); Home/End or g/G: top, bottom"),
        k("Enter", "the plan's phases, steps, gates, fences and last events"),
        k("c", "the plan's release checklist, ticked from the database"),
        k("h", "the plan's events, newest first"),
        k("Esc", "back to the overview (or the pane's key again)"),
        k("q", "quit (Ctrl-C too)"),
        vec![Line::raw("")],
        text("Phase bar: exp dw bf sr ct = expand, dual_write, backfill, switch_reads, contract; ✓ done ▶ running ✗ failed ↺ rolled back · pending; ║ a deploy gate (green: confirmed), ⏸ the gate the plan waits at."),
        text("The backfill's rate and ETA are measured over the last seconds of refreshes."),
        text("The dashboard only reads (its session is read-only): advancing stays a `pgphase phase advance`."),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `text` cut to `width` characters, `…` marking the cut (a statement stays on its line).
fn one_line(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}
