//! The dashboard's keys (pure state) and its event loop: refresh every interval,
//! reconnect after a lost connection, redraw on keys and resizes.

use std::io::Stdout;
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio_postgres::Client;

use super::model::{Screen, Snapshot, APPLICATION_NAME};
use crate::conn::ConnInfo;

/// What the main area shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// All plans, the selected plan's summary, live work and the application side.
    #[default]
    Overview,
    /// The selected plan's phases and steps, gates and last events.
    Details,
    /// The selected plan's release checklist, ticked from the database.
    Checklist,
    /// The selected plan's event log.
    History,
    Help,
}

/// A key the dashboard understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Char(char),
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Option<Key> {
        if e.kind == KeyEventKind::Release {
            return None;
        }
        Some(match e.code {
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::PageUp => Key::PageUp,
            KeyCode::PageDown => Key::PageDown,
            KeyCode::Home => Key::Home,
            KeyCode::End => Key::End,
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Char('c') if e.modifiers.contains(KeyModifiers::CONTROL) => Key::Char('q'),
            KeyCode::Char(c) => Key::Char(c),
            _ => return None,
        })
    }
}

/// What the last drawing of a scrolling pane (details, checklist, history, help) found:
/// how far it can scroll and how many lines it shows at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drawn {
    /// The largest scroll offset (lines beyond one screenful); 0 in the overview.
    pub scroll_max: usize,
    /// Lines the pane shows at once.
    pub page: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    pub selected: usize,
    pub mode: Mode,
    pub quit: bool,
    /// The first line shown of the pane (details, checklist, history, help).
    pub scroll: usize,
    /// The pane as last drawn, for the scrolling keys.
    pub drawn: Drawn,
}

impl App {
    /// Applies a key, with `plans` plans on screen. In the overview ↑/↓ (j/k) select a
    /// plan; in a pane they scroll it, PgUp/PgDn a page, Home/End (g/G) to either end.
    pub fn key(&mut self, key: Key, plans: usize) {
        let before = self.mode;
        let toggle = |current: Mode, m: Mode| {
            if current == m {
                Mode::Overview
            } else {
                m
            }
        };
        let page = self.drawn.page.saturating_sub(1).max(1);
        let pane = self.mode != Mode::Overview;
        match key {
            Key::Char('q') => self.quit = true,
            Key::Up | Key::Char('k') if pane => self.scroll = self.scroll.saturating_sub(1),
            Key::Down | Key::Char('j') if pane => self.scroll += 1,
            Key::PageUp => self.scroll = self.scroll.saturating_sub(page),
            Key::PageDown | Key::Char(' ') => self.scroll += page,
            Key::Home | Key::Char('g') => self.scroll = 0,
            Key::End | Key::Char('G') => self.scroll = self.drawn.scroll_max,
            Key::Up | Key::Char('k') => self.selected = self.selected.saturating_sub(1),
            Key::Down | Key::Char('j') => {
                self.selected = (self.selected + 1).min(plans.saturating_sub(1))
            }
            Key::Enter => self.mode = toggle(self.mode, Mode::Details),
            Key::Char('c') => self.mode = toggle(self.mode, Mode::Checklist),
            Key::Char('h') => self.mode = toggle(self.mode, Mode::History),
            Key::Char('?') => self.mode = toggle(self.mode, Mode::Help),
            Key::Esc => self.mode = Mode::Overview,
            Key::Char(_) => {}
        }
        if self.mode != before || !pane {
            self.scroll = 0;
        }
        self.scroll = self.scroll.min(self.drawn.scroll_max);
        self.clamp(plans);
    }

    /// Records what was drawn; the scroll stays within the pane (a pane that got
    /// shorter, or a larger terminal, pulls it back).
    pub fn drawn(&mut self, d: Drawn) {
        self.drawn = d;
        self.scroll = self.scroll.min(d.scroll_max);
    }

    /// Keeps the selection on a plan when the list shrinks.
    pub fn clamp(&mut self, plans: usize) {
        self.selected = self.selected.min(plans.saturating_sub(1));
    }
}

/// Restores the terminal when dropped (also on an error or a panic's unwinding).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Longest a refresh (connecting, then reading) may take before it counts as lost.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// One refresh: connects when there is no connection (a read-only session), reads a
/// snapshot, and drops the connection when either fails or takes longer than
/// [`REFRESH_TIMEOUT`] (the next refresh reconnects).
pub async fn refresh(conn: &ConnInfo, client: &mut Option<Client>) -> anyhow::Result<Snapshot> {
    let r = tokio::time::timeout(REFRESH_TIMEOUT, async {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            *client = None;
            let c = conn.connect().await?;
            // the dashboard changes nothing: its session could not even if it tried
            c.batch_execute("SET default_transaction_read_only = on")
                .await?;
            *client = Some(c);
        }
        let c = client.as_ref().expect("connected above");
        Snapshot::load(c).await
    })
    .await
    .unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "the database did not answer within {}",
            humantime::format_duration(REFRESH_TIMEOUT)
        ))
    });
    if r.is_err() {
        *client = None;
    }
    r
}

/// Runs the dashboard on the terminal until `q` (or Ctrl-C). A task refreshes every
/// `interval` and sends each result; the screen redraws on a result, a key, a resize
/// and every second (the "refreshed … ago" clock), so keys answer while a refresh waits
/// on a slow database.
pub async fn run(conn: &ConnInfo, interval: Duration, color: bool) -> anyhow::Result<()> {
    let conn = conn.with_application_name(APPLICATION_NAME);
    let mut screen = Screen {
        target: conn.redacted(),
        interval,
        ..Screen::default()
    };

    crossterm::terminal::enable_raw_mode()?;
    let _guard = TerminalGuard;
    crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::EnterAlternateScreen,
        crossterm::cursor::Hide
    )?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;

    // crossterm's reads block: a thread forwards the terminal's events
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(e) = crossterm::event::read() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let (snap_tx, mut snapshots) = tokio::sync::mpsc::channel(1);
    let refresher = tokio::spawn(async move {
        let mut client = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = refresh(&conn, &mut client).await;
            if snap_tx.send((r, chrono::Utc::now())).await.is_err() {
                break;
            }
        }
    });
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut app = App::default();
    let result = loop {
        match draw(&mut terminal, &screen, &app, color) {
            Ok(drawn) => app.drawn(drawn),
            Err(e) => break Err(e),
        }
        tokio::select! {
            Some((r, at)) = snapshots.recv() => screen.apply(r, at),
            _ = clock.tick() => {}
            e = events.recv() => match e {
                Some(Event::Key(k)) => {
                    if let Some(key) = Key::from_event(&k) {
                        let n = screen.snapshot.as_ref().map_or(0, |s| s.plans.len());
                        app.key(key, n);
                    }
                }
                Some(_) => {} // a resize: redrawn at the top of the loop
                None => break Ok(()),
            },
        }
        if app.quit {
            break Ok(());
        }
        app.clamp(screen.snapshot.as_ref().map_or(0, |s| s.plans.len()));
    };
    refresher.abort();
    result
}

fn draw(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    screen: &Screen,
    app: &App,
    color: bool,
) -> anyhow::Result<Drawn> {
    let mut drawn = Drawn::default();
    terminal.draw(|f| {
        let area = f.area();
        drawn = super::view::render(screen, app, color, chrono::Utc::now(), area, f.buffer_mut())
    })?;
    Ok(drawn)
}
