//! Pure rendering of a [`Screen`] into a ratatui buffer: no I/O, no clock (the caller
//! passes `now`), so tests render real snapshots into a `TestBackend`.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use super::app::{App, Mode};
use super::model::{PlanSnap, Screen, Snapshot};
use crate::report::checklist::ItemKind;
use crate::report::{self, PlanView};
use crate::state::machine::{PhaseStatus, PlanStatus};

/// Width from which the selected plan and the live side sit side by side.
const WIDE: u16 = 120;

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

pub fn render(
    screen: &Screen,
    app: &App,
    color: bool,
    now: DateTime<Utc>,
    area: Rect,
    buf: &mut Buffer,
) {
    let p = Paint { color };
    let banner = screen.lost.is_some() as u16;
    let [head, ban, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header(screen, p, now, head, buf);
    if let Some(l) = &screen.lost {
        let style = if color {
            Style::default().fg(Color::White).bg(Color::Red)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        };
        Paragraph::new(format!(
            " connection lost {} ago, reconnecting every {}: {}",
            ago(l.since, now),
            humantime::format_duration(screen.interval),
            l.error
        ))
        .style(style.add_modifier(Modifier::BOLD))
        .render(ban, buf);
    }
    Paragraph::new(Line::from(vec![
        Span::styled(" ↑↓/jk", p.bold()),
        Span::raw(" plan  "),
        Span::styled("Enter", p.bold()),
        Span::raw(" details  "),
        Span::styled("c", p.bold()),
        Span::raw(" checklist  "),
        Span::styled("h", p.bold()),
        Span::raw(" history  "),
        Span::styled("?", p.bold()),
        Span::raw(" help  "),
        Span::styled("q", p.bold()),
        Span::raw(" quit"),
    ]))
    .style(p.dim())
    .render(foot, buf);

    let Some(snap) = &screen.snapshot else {
        Paragraph::new(" no data yet: waiting for the database").render(body, buf);
        return;
    };
    if app.mode == Mode::Help {
        return help(p, body, buf);
    }
    let selected = snap.plans.get(app.selected);
    match (app.mode, selected) {
        (Mode::Details, Some(s)) => return details(s, p, now, body, buf),
        (Mode::Checklist, Some(s)) => return checklist(s, p, body, buf),
        (Mode::History, Some(s)) => return history(s, p, body, buf),
        _ => {}
    }
    let list_height = (snap.plans.len().max(1) as u16 + 2).min(body.height / 3 + 1);
    let [list, rest] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(body);
    plans(snap, app.selected, p, list, buf);
    let (left, right) = if rest.width >= WIDE {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(rest);
        (l, r)
    } else {
        let [l, r] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(rest);
        (l, r)
    };
    match selected {
        Some(s) => summary(s, p, now, left, buf),
        None => {
            Paragraph::new(" no plans in this database yet (start one with `pgphase start FILE`)")
                .block(titled(" plan "))
                .render(left, buf)
        }
    }
    live(snap, selected, p, right, buf);
}

fn titled(title: &str) -> Block<'_> {
    Block::default().borders(Borders::TOP).title(title)
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

/// `3s`, `2m05s`.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    report::short_duration((now - t).num_milliseconds() as f64 / 1000.0)
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
    let mut lines = Vec::new();
    for (i, s) in snap.plans.iter().enumerate() {
        let v = &s.view;
        let mut spans = vec![
            Span::raw(if i == selected { "▸ " } else { "  " }),
            Span::styled(
                format!("{:<name_w$.name_w$} ", v.plan),
                if i == selected {
                    p.bold().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                },
            ),
            Span::styled(format!("{:<16}", report::status_label(v)), p.status(v)),
        ];
        spans.extend(phase_bar(v, p));
        lines.push(Line::from(spans));
    }
    Paragraph::new(lines)
        .block(titled(" plans "))
        .render(area, buf);
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

/// The selected plan in a few lines: where it stands, who confirmed which gate, what to do next.
fn summary(s: &PlanSnap, p: Paint, now: DateTime<Utc>, area: Rect, buf: &mut Buffer) {
    let v = &s.view;
    let mut lines = vec![Line::from(vec![
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
    ])];
    if let Some(w) = &v.waiting_for {
        lines.push(Line::from(vec![
            Span::styled(
                "waiting for: ",
                p.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::raw(w.clone()),
        ]));
    }
    lines.extend(gate_lines(v, p, now));
    for f in &s.fences {
        lines.push(fence_line(f, p));
    }
    if let Some(e) = &v.last_error {
        lines.push(Line::from(vec![
            Span::styled(
                "last error: ",
                p.fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(e.clone()),
        ]));
    }
    if let Some(c) = &v.next_command {
        lines.push(Line::from(vec![
            Span::styled("next: ", p.bold()),
            Span::raw(c.clone()),
        ]));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(titled(&format!(" {} ", v.plan)))
        .render(area, buf);
}

fn gate_lines(v: &PlanView, p: Paint, now: DateTime<Utc>) -> Vec<Line<'static>> {
    v.phases
        .iter()
        .filter_map(|ph| {
            let at = ph.gate_confirmed_at?;
            Some(Line::from(vec![
                Span::styled("✓ gate after ", p.fg(Color::Green)),
                Span::raw(format!(
                    "{}: {} by {}, {} ago",
                    ph.phase,
                    ph.gate_deployed_ref.as_deref().unwrap_or("?"),
                    ph.gate_confirmed_by.as_deref().unwrap_or("?"),
                    ago(at, now)
                )),
            ]))
        })
        .collect()
}

fn fence_line(f: &super::model::FenceSnap, p: Paint) -> Line<'static> {
    let (mark, style) = if f.sessions == 0 {
        ("✓", p.fg(Color::Green))
    } else {
        ("✗", p.fg(Color::Red))
    };
    Line::from(vec![
        Span::styled(format!("{mark} fence "), style),
        Span::raw(format!(
            "before the gate after {}: {} session(s) LIKE '{}'",
            f.at_gate_after, f.sessions, f.pattern
        )),
    ])
}

/// Live work (backfill, pgphase's statements, lock waits) and the application side.
fn live(snap: &Snapshot, selected: Option<&PlanSnap>, p: Paint, area: Rect, buf: &mut Buffer) {
    let mut lines = Vec::new();
    if let Some(s) = selected {
        for b in s
            .view
            .backfill
            .iter()
            .filter(|b| b.progress.finished_at.is_none())
        {
            lines.push(Line::from(vec![
                Span::styled("backfill ", p.fg(Color::Cyan).add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    "{}, {} batches",
                    report::backfill_label(b),
                    b.progress.batches
                )),
            ]));
            if let Some(pct) = b.percent() {
                lines.push(bar(pct, area.width.saturating_sub(2) as usize, p));
            }
        }
    }
    let width = area.width as usize;
    for w in &snap.work {
        let st = &w.statement;
        lines.push(Line::from(vec![
            Span::styled("running ", p.bold()),
            Span::raw(one_line(
                &format!(
                    "{}s pid {} {}: {}",
                    st.running_secs.map_or("?".into(), |s| format!("{s:.1}")),
                    st.pid,
                    st.state.as_deref().unwrap_or("?"),
                    st.query
                ),
                width.saturating_sub(8),
            )),
        ]));
        if let Some(wait) = &st.lock_wait {
            lines.push(Line::from(vec![Span::styled(
                format!("  waits for a {wait} lock, held by:"),
                p.fg(Color::Red).add_modifier(Modifier::BOLD),
            )]));
            for b in &w.blockers {
                lines.push(Line::from(one_line(&format!("    {b}"), width)));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::styled("nothing running", p.dim()));
    }
    lines.push(Line::styled("sessions per application_name", p.bold()));
    for a in &snap.apps {
        lines.push(Line::from(format!(
            "  {:<24} {:>4} ({} active, {} idle in transaction)",
            if a.application_name.is_empty() {
                "(none)"
            } else {
                &a.application_name
            },
            a.total,
            a.active,
            a.idle_in_transaction
        )));
    }
    for h in &snap.health {
        lines.push(Line::from(format!("{}: {}", h.what, h.value)));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(titled(" live "))
        .render(area, buf);
}

fn bar(pct: f64, width: usize, p: Paint) -> Line<'static> {
    let inner = width.saturating_sub(7);
    let full = ((pct / 100.0) * inner as f64).round() as usize;
    Line::from(vec![
        Span::styled("█".repeat(full.min(inner)), p.fg(Color::Cyan)),
        Span::styled("░".repeat(inner - full.min(inner)), p.dim()),
        Span::raw(format!(" {pct:>3.0}%")),
    ])
}

/// Phases and steps, gates, fences and the last events of the selected plan.
fn details(s: &PlanSnap, p: Paint, now: DateTime<Utc>, area: Rect, buf: &mut Buffer) {
    let v = &s.view;
    let mut lines = vec![Line::from(phase_bar(v, p))];
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
            lines.push(Line::from(vec![
                Span::styled(format!("  {mark} "), style),
                Span::raw(step.clone()),
            ]));
        }
        if let Some(g) = &ph.gate {
            let text = match (&ph.gate_confirmed_at, &ph.gate_confirmed_by) {
                (Some(at), by) => format!(
                    "  ║ gate: {} — confirmed: {} by {}, {} ago",
                    g,
                    ph.gate_deployed_ref.as_deref().unwrap_or("?"),
                    by.as_deref().unwrap_or("?"),
                    ago(*at, now)
                ),
                (None, _) => format!("  ║ gate: {g}"),
            };
            lines.push(Line::styled(text, p.fg(Color::Yellow)));
        }
    }
    for f in &s.fences {
        lines.push(fence_line(f, p));
    }
    if let Some(e) = &v.last_error {
        lines.push(Line::styled(format!("last error: {e}"), p.fg(Color::Red)));
    }
    lines.push(Line::styled("last events", p.bold()));
    lines.extend(event_lines(s, p, 8, area.width as usize));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(titled(&format!(" {} — details (Enter: back) ", v.plan)))
        .render(area, buf);
}

/// The last `last` events, one line each (cut to `width`), newest at the bottom.
fn event_lines(s: &PlanSnap, p: Paint, last: usize, width: usize) -> Vec<Line<'static>> {
    let skip = s.events.len().saturating_sub(last);
    s.events[skip..]
        .iter()
        .map(|e| {
            let style = match e.kind.as_str() {
                k if k.contains("fail") || k.contains("error") => p.fg(Color::Red),
                k if k.contains("refus") || k.contains("retry") || k.contains("force") => {
                    p.fg(Color::Yellow)
                }
                _ => Style::default(),
            };
            Line::from(vec![
                Span::styled(format!("{} ", e.at.format("%H:%M:%S")), p.dim()),
                Span::styled(format!("{:<16} ", e.kind), style),
                Span::raw(one_line(&e.message, width.saturating_sub(26))),
            ])
        })
        .collect()
}

fn checklist(s: &PlanSnap, p: Paint, area: Rect, buf: &mut Buffer) {
    let c = &s.checklist;
    let mut lines = Vec::new();
    for sec in &c.sections {
        lines.push(Line::styled(sec.title.clone(), p.bold()));
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
                spans.push(Span::styled(format!(": {cmd}"), p.dim()));
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
            lines.push(Line::from(spans));
        }
    }
    lines.push(Line::from(format!("rollback: {}", c.rollback)));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(titled(&format!(
            " {} — release checklist (c: back) ",
            c.plan
        )))
        .render(area, buf);
}

fn history(s: &PlanSnap, p: Paint, area: Rect, buf: &mut Buffer) {
    let rows = area.height.saturating_sub(1) as usize;
    Paragraph::new(event_lines(s, p, rows, area.width as usize))
        .block(titled(&format!(
            " {} — last events (h: back) ",
            s.view.plan
        )))
        .render(area, buf);
}

fn help(p: Paint, area: Rect, buf: &mut Buffer) {
    let k = |key: &'static str, what: &'static str| {
        Line::from(vec![
            Span::styled(format!("  {key:<8}"), p.bold()),
            Span::raw(what),
        ])
    };
    Paragraph::new(vec![
        k("↑ ↓ j k", "select a plan"),
        k("Enter", "the plan's phases, steps, gates and last events"),
        k(
            "c",
            "the plan's release checklist, ticked from the database",
        ),
        k("h", "the plan's last events"),
        k("Esc", "back to the overview"),
        k("q", "quit (Ctrl-C too)"),
        Line::raw(""),
        Line::raw("  Phase bar: exp dw bf sr ct = expand, dual_write, backfill,"),
        Line::raw("  switch_reads, contract; ✓ done ▶ running ✗ failed · pending;"),
        Line::raw("  ║ a deploy gate (green: confirmed), ⏸ the gate the plan waits at."),
        Line::raw("  The dashboard only reads: advancing stays a `pgphase phase advance`."),
    ])
    .wrap(Wrap { trim: false })
    .block(titled(" help (?: back) "))
    .render(area, buf);
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
