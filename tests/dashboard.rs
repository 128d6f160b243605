//! `pgphase dashboard`: snapshots read from real PostgreSQL at the interesting moments of
//! a release (a backfill running and waiting for a lock, a plan at a deploy gate, a
//! completed and a failed plan, several plans at once), rendered into ratatui's
//! `TestBackend` at 80×24 and 160×40 and compared as text; `NO_COLOR`; the lost
//! connection banner across a real server restart. Times are fixed before rendering
//! (`Snapshot::with_fixed_times`), so the screens do not depend on the clock.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::terminal;
use common::{LockHolder, TestDb};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pgphase::dashboard::app::{self, App, Drawn, Key, Mode};
use pgphase::dashboard::model::{Screen, Snapshot};
use pgphase::dashboard::view;
use pgphase::pgserver::{PgServer, ServerOptions};
use pgphase::run;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn empty_screen() -> Screen {
    Screen {
        target: "postgres@db:5432/app".into(),
        interval: std::time::Duration::from_secs(1),
        ..Screen::default()
    }
}

/// A screen that has read `snapshot` (times fixed at t0) as its only refresh.
fn screen(snapshot: Snapshot) -> Screen {
    let mut s = empty_screen();
    s.apply(Ok(snapshot.with_fixed_times(t0())), t0());
    s
}

fn draw(s: &Screen, app: &App, color: bool, w: u16, h: u16) -> (Buffer, Drawn) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut drawn = Drawn::default();
    term.draw(|f| drawn = view::render(s, app, color, t0(), f.area(), f.buffer_mut()))
        .unwrap();
    (term.backend().buffer().clone(), drawn)
}

fn render_buffer(s: &Screen, app: &App, color: bool, w: u16, h: u16) -> Buffer {
    draw(s, app, color, w, h).0
}

/// The screen as text, one line per row, trailing blanks trimmed.
fn render(s: &Screen, app: &App, w: u16, h: u16) -> String {
    text(&render_buffer(s, app, false, w, h))
}

fn text(buf: &Buffer) -> String {
    let (w, h) = (buf.area.width, buf.area.height);
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn app(selected: usize, mode: Mode) -> App {
    App {
        selected,
        mode,
        ..App::default()
    }
}

async fn snapshot(db: &TestDb) -> Snapshot {
    let mut client = None;
    let conn = db
        .conn()
        .with_application_name(pgphase::dashboard::model::APPLICATION_NAME);
    app::refresh(&conn, &mut client).await.unwrap()
}

/// A backfill in flight that waits for a row lock held by another transaction: the
/// live side shows the rows done, pgphase's statement, the lock wait and its blocker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_backfill_waiting_for_a_lock() {
    let db = TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 20000).await;
    let file = common::rename_plan("10min", 1, 100);
    let s = db.session();
    let started = tokio::spawn(async move { run::start(&s, &file).await });
    // once the backfill has begun (expand's ALTER TABLE would wait for a lock taken
    // earlier), the batch holding the last row waits for this transaction; lock_timeout
    // is long, so pgphase waits rather than retries while the snapshot is taken
    common::wait_for_backfill(&client, common::RENAME_PLAN, 1).await;
    let holder = LockHolder::hold(
        &db.url,
        "SELECT * FROM comments WHERE id = 20000 FOR UPDATE",
    )
    .await;
    common::wait_for_backfill(&client, common::RENAME_PLAN, 19900).await;
    common::wait_until(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgphase'
                          AND wait_event_type = 'Lock')",
        60,
    )
    .await;
    let snap = snapshot(&db).await;
    holder.release().await;
    started.await.unwrap().unwrap();

    // The rate shown is measured between the snapshots the dashboard read: none after
    // the first (the stored one is an average since the start) ...
    let b = &snap.plans[0].view.backfill[0].progress;
    let (rows, batches) = (b.rows_done, b.batches);
    let first = screen(snap.clone());
    let label = render(&first, &app(0, Mode::Overview), 80, 24);
    assert!(label.contains("rate: measuring"), "{label}");
    // ... then rows/s, rows and time per batch over the last seconds, and the ETA at
    // that rate: 10 s earlier the backfill had done 1 000 rows (10 batches) fewer
    let mut s = empty_screen();
    let mut earlier = snap
        .clone()
        .with_fixed_times(t0() - chrono::Duration::seconds(10));
    earlier.plans[0].view.backfill[0].progress.rows_done = rows - 1000;
    earlier.plans[0].view.backfill[0].progress.batches = batches - 10;
    s.apply(Ok(earlier), t0());
    s.apply(Ok(snap.clone().with_fixed_times(t0())), t0());
    let v = &s.snapshot.as_ref().unwrap().plans[0].view.backfill[0];
    assert_eq!(v.rows_per_sec, Some(100.0));
    let total = v.progress.rows_total.unwrap();
    assert_eq!(v.eta_seconds, Some((total - rows) as f64 / 100.0));
    // 10 s later nothing moved (the batch waits for the lock): 0 rows/s over the last
    // 10 s, no ETA
    let mut stalled = s.clone();
    let later = snap
        .clone()
        .with_fixed_times(t0() + chrono::Duration::seconds(10));
    stalled.apply(Ok(later), t0());
    let v = &stalled.snapshot.as_ref().unwrap().plans[0].view.backfill[0];
    assert_eq!((v.rows_per_sec, v.eta_seconds), (Some(0.0), None));
    insta::assert_snapshot!(
        "backfill_80x24",
        render(&s, &app(0, Mode::Overview), 80, 24)
    );
    insta::assert_snapshot!(
        "backfill_160x40",
        render(&s, &app(0, Mode::Overview), 160, 40)
    );
    insta::assert_snapshot!(
        "backfill_details_80x24",
        render(&s, &app(0, Mode::Details), 80, 24)
    );
}

const ORDERS_COMPLETED: &str = "name: orders-add-note
changes:
  - add_column: { table: orders, column: { name: note, type: text } }
";
const ITEMS_FAILED: &str = "name: items-index-sku
changes:
  - add_index: { table: items, name: items_sku_idx, columns: [sku] }
";

/// Three plans in one database: one waiting at its second deploy gate after one
/// confirmation (with a fence), one completed, one failed with its last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_completed_failed_and_several_plans() {
    let db = TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric);
             CREATE TABLE items (id bigint PRIMARY KEY, sku text);",
        )
        .await
        .unwrap();
    let s = db.session();

    let rename = common::plan_from(
        &format!(
            "name: {}\nsettings:\n  backfill: {{ batch_size: 100, target_batch_time: 0s }}\nchanges:\n  - rename_column: {{ table: comments, from: contents, to: body }}\nfences:\n  - at_gate_after: switch_reads\n    no_application_name_like: comments-api-old%\n",
            common::RENAME_PLAN
        ),
        common::RENAME_PLAN,
    );
    run::start(&s, &rename).await.unwrap();
    run::advance(&s, common::RENAME_PLAN, "api@v2", Some(&rename))
        .await
        .unwrap();

    common::run_to_completion(&s, &common::plan_from(ORDERS_COMPLETED, "orders-add-note"))
        .await
        .unwrap();

    let mut failing = db.session();
    failing.failpoint = Some("backfill.1".into());
    let failed = common::plan_from(ITEMS_FAILED, "items-index-sku");
    assert!(run::start(&failing, &failed).await.is_err());

    let s = screen(snapshot(&db).await);
    let names: Vec<&str> = s
        .snapshot
        .as_ref()
        .unwrap()
        .plans
        .iter()
        .map(|p| p.view.plan.as_str())
        .collect();
    // plans in the order they were started: rename (at a gate), orders, items (failed)
    assert_eq!(
        names,
        [common::RENAME_PLAN, "orders-add-note", "items-index-sku"]
    );

    insta::assert_snapshot!(
        "plans_gate_80x24",
        render(&s, &app(0, Mode::Overview), 80, 24)
    );
    insta::assert_snapshot!(
        "plans_gate_160x40",
        render(&s, &app(0, Mode::Overview), 160, 40)
    );
    insta::assert_snapshot!(
        "gate_details_80x24",
        render(&s, &app(0, Mode::Details), 80, 24)
    );
    insta::assert_snapshot!(
        "gate_checklist_80x24",
        render(&s, &app(0, Mode::Checklist), 80, 24)
    );
    insta::assert_snapshot!("failed_80x24", render(&s, &app(2, Mode::Overview), 80, 24));
    insta::assert_snapshot!(
        "failed_history_80x24",
        render(&s, &app(2, Mode::History), 80, 24)
    );
    insta::assert_snapshot!(
        "completed_details_80x24",
        render(&s, &app(1, Mode::Details), 80, 24)
    );
    insta::assert_snapshot!("help_80x24", render(&s, &app(1, Mode::Help), 80, 24));

    // at 80×24 the overview keeps what an operator acts on: the next command, the
    // confirmed gate and the fence (the long explanation of the gate goes last)
    let overview = render(&s, &app(0, Mode::Overview), 80, 24);
    for shown in [
        "next: pgphase phase advance rename-comments-contents-to-body --gate",
        "✓ gate after backfill: api@v2 by test",
        "✓ fence before the gate after switch_reads",
    ] {
        assert!(overview.contains(shown), "{shown}\n{overview}");
    }

    // the panes are longer than 80×24 and scroll: j/k a line, PgDn/PgUp a page,
    // End/Home to either end; the selected plan stays
    for mode in [Mode::Details, Mode::Checklist, Mode::History] {
        let mut a = app(0, mode);
        let (_, d) = draw(&s, &a, false, 80, 24);
        assert!(d.scroll_max > 0, "{mode:?} is longer than 80×24");
        assert_eq!(
            d.page, 21,
            "{mode:?}: 24 rows less the header, title and footer"
        );
        a.drawn(d);
        let top = render(&s, &a, 80, 24);
        a.key(Key::Char('j'), 3);
        assert_eq!(a.scroll, 1);
        let down = render(&s, &a, 80, 24);
        assert_eq!(
            pane_rows(&top)[1],
            pane_rows(&down)[0],
            "{mode:?}: j moves the pane up a line"
        );
        a.key(Key::Char('k'), 3);
        assert_eq!(render(&s, &a, 80, 24), top, "{mode:?}: k back");
        a.key(Key::PageDown, 3);
        assert_eq!(
            a.scroll,
            20.min(d.scroll_max),
            "{mode:?}: a page less a line"
        );
        a.key(Key::End, 3);
        assert_eq!(a.scroll, d.scroll_max);
        let end = render(&s, &a, 80, 24);
        a.key(Key::Down, 3);
        assert_eq!(a.scroll, d.scroll_max, "{mode:?}: stops at the end");
        assert_eq!(render(&s, &a, 80, 24), end);
        a.key(Key::PageUp, 3);
        assert_eq!(a.scroll, d.scroll_max.saturating_sub(20));
        a.key(Key::Home, 3);
        assert_eq!((a.scroll, a.selected, a.mode), (0, 0, mode));
        if mode != Mode::History {
            let name = format!(
                "{}_end_80x24",
                if mode == Mode::Details {
                    "gate_details"
                } else {
                    "gate_checklist"
                }
            );
            insta::assert_snapshot!(name, end);
        }
    }

    // a refresh that fails keeps the last screen under a banner that says why
    let mut lost = s.clone();
    lost.apply(
        Err(anyhow::anyhow!(
            "cannot connect to postgres://postgres@db:5432/app: error connecting to server: Connection refused (os error 111)"
        )),
        t0(),
    );
    insta::assert_snapshot!(
        "plans_gate_lost_80x24",
        render(&lost, &app(0, Mode::Overview), 80, 24)
    );

    // NO_COLOR: not one cell with a colour; with colours allowed, the statuses have them
    let plain = render_buffer(&s, &app(0, Mode::Overview), false, 80, 24);
    assert!(
        plain
            .content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "NO_COLOR renders without colours"
    );
    let colored = render_buffer(&s, &app(0, Mode::Overview), true, 80, 24);
    assert!(colored.content.iter().any(|c| c.fg == Color::Yellow));
    // every size down to a tiny terminal renders without panicking
    for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1)] {
        for m in [
            Mode::Overview,
            Mode::Details,
            Mode::Checklist,
            Mode::History,
            Mode::Help,
        ] {
            render(&s, &app(0, m), w, h);
        }
    }
}

/// The database goes away (a real restart ends the dashboard's session): the last
/// screen stays under a banner, the next refresh reconnects and the banner goes. The
/// dashboard's session is read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_shows_a_banner_and_recovers() {
    let server = tokio::task::spawn_blocking(|| PgServer::start(&ServerOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let conn = pgphase::conn::ConnInfo::parse(&server.url("postgres")).unwrap();
    let mut client = None;
    let mut s = empty_screen();
    s.apply(app::refresh(&conn, &mut client).await, t0());
    assert!(s.lost.is_none());
    let ro: String = client
        .as_ref()
        .unwrap()
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on", "the dashboard's session is read-only");

    let restart = {
        let server = &server;
        move || server.restart()
    };
    tokio::task::block_in_place(restart).unwrap();
    // the restart closed the session: the next refresh sees it and connects again
    s.apply(app::refresh(&conn, &mut client).await, t0());
    assert!(
        s.lost.is_none(),
        "reconnected after the restart: {:?}",
        s.lost
    );

    // a server that cannot be reached: the last screen under the banner, never a panic
    let gone = pgphase::conn::ConnInfo::parse(
        "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2",
    )
    .unwrap();
    let mut none = None;
    s.apply(app::refresh(&gone, &mut none).await, t0());
    let lost = s.lost.clone().expect("the refresh fails");
    s.lost = Some(pgphase::dashboard::model::Lost {
        error: "connection refused".into(),
        ..lost
    });
    s.snapshot = s.snapshot.map(|x| x.with_fixed_times(t0()));
    insta::assert_snapshot!("lost_connection_80x24", render(&s, &App::default(), 80, 24));
    // and it recovers once the database answers again
    s.apply(app::refresh(&conn, &mut client).await, t0());
    assert!(s.lost.is_none());
    assert!(!render(&s, &App::default(), 80, 24).contains("connection lost"));
    server.stop();
}

/// The rows of a pane: below the header and the pane's title, above the footer.
fn pane_rows(screen: &str) -> Vec<&str> {
    let rows: Vec<&str> = screen.lines().collect();
    rows[2..rows.len() - 1].to_vec()
}

/// The binary in a real terminal (tmux, 80×24) against a real database with a plan at
/// its deploy gate: it shows the plan, its phase bar and the next command; the keys
/// open the details (and scroll them), the checklist, the history and the help; `q`
/// leaves the terminal as it was and exits 0; the database is unchanged. Screens are
/// polled (a kill guard, no timing expectation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_in_a_terminal_shows_a_plan_at_its_gate_and_quits_on_q() {
    let db = TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    let s = db.session();
    run::start(&s, &common::rename_plan("1s", 3, 100))
        .await
        .unwrap();
    let state = || async {
        let c = db.client().await;
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM pgphase.events), (SELECT max(revision) FROM pgphase.plans)",
                &[],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    let before = state().await;

    let t = terminal::Terminal::spawn(
        80,
        24,
        &["dashboard", "--interval", "200ms"],
        &[("DATABASE_URL", db.url.as_str())],
    );
    let screen = t.wait_for_text("awaiting_deploy").await;
    for shown in [
        "▸ rename-comments-contents-to-body awaiting_deploy  exp✓ dw✓ bf✓ ⏸sr· ║ct·",
        "next: pgphase phase advance rename-comments-contents-to-body --gate backfill",
        "↑↓/jk plan  Enter details",
    ] {
        assert!(screen.contains(shown), "{shown}\n{screen}");
    }
    // one plan: j and k keep it selected
    t.keys(&["j", "k"]);
    t.keys(&["Enter"]);
    t.wait_for_text("— details (Enter: back)").await;
    let top = t.wait_for_text(" 1–21 of ").await;
    t.keys(&["j"]);
    let down = t.wait_for_text(" 2–22 of ").await;
    assert_ne!(top, down);
    t.keys(&["PageDown"]);
    t.wait_for_text(" 22–42 of ").await;
    t.keys(&["c"]);
    t.wait_for_text("— release checklist (c: back)").await;
    t.keys(&["h"]);
    t.wait_for_text("— events, newest first (h: back)").await;
    t.keys(&["?"]);
    t.wait_for_text(" help (?: back)").await;
    t.keys(&["Escape"]);
    t.wait_for_text("↑↓/jk plan  Enter details").await;
    t.keys(&["q"]);
    assert_eq!(t.wait_exit().await, 0);
    let after = t.screen();
    assert!(
        !after.contains("awaiting_deploy"),
        "the alternate screen is left:\n{after}"
    );
    assert_eq!(state().await, before, "the dashboard changed nothing");
}

// The keys drive the pure app state.
fn keys(app: &mut App, keys: &[Key], plans: usize) {
    for k in keys {
        app.key(*k, plans);
    }
}

#[test]
fn selection_moves_with_j_k_and_arrows_and_stays_on_a_plan() {
    let mut a = App::default();
    keys(
        &mut a,
        &[Key::Char('j'), Key::Down, Key::Down, Key::Down],
        3,
    );
    assert_eq!(a.selected, 2, "stops at the last plan");
    keys(&mut a, &[Key::Char('k')], 3);
    assert_eq!(a.selected, 1);
    keys(&mut a, &[Key::Up, Key::Up, Key::Char('k')], 3);
    assert_eq!(a.selected, 0, "stops at the first plan");
    keys(&mut a, &[Key::Down], 0);
    assert_eq!(a.selected, 0, "no plans: nothing to select");
    a.selected = 4;
    a.clamp(2);
    assert_eq!(
        a.selected, 1,
        "a shorter list keeps the selection on a plan"
    );
}

#[test]
fn enter_c_h_and_help_toggle_their_view_and_esc_goes_back() {
    let mut a = App::default();
    for (k, m) in [
        (Key::Enter, Mode::Details),
        (Key::Char('c'), Mode::Checklist),
        (Key::Char('h'), Mode::History),
        (Key::Char('?'), Mode::Help),
    ] {
        a.key(k, 2);
        assert_eq!(a.mode, m, "{k:?}");
        a.key(k, 2);
        assert_eq!(a.mode, Mode::Overview, "{k:?} again goes back");
    }
    keys(&mut a, &[Key::Char('c'), Key::Char('h')], 2);
    assert_eq!(a.mode, Mode::History, "another view's key switches to it");
    a.key(Key::Esc, 2);
    assert_eq!(a.mode, Mode::Overview);
    keys(&mut a, &[Key::Char('x'), Key::Char('z')], 2);
    assert!(!a.quit, "other keys do nothing");
    a.key(Key::Char('q'), 2);
    assert!(a.quit);
}

#[test]
fn terminal_events_map_to_keys() {
    let ev = |code, modifiers| KeyEvent::new(code, modifiers);
    assert_eq!(
        Key::from_event(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Key::Char('q')),
        "Ctrl-C quits (raw mode turns it into a key)"
    );
    assert_eq!(
        Key::from_event(&ev(KeyCode::Char('c'), KeyModifiers::NONE)),
        Some(Key::Char('c'))
    );
    assert_eq!(
        Key::from_event(&ev(KeyCode::Down, KeyModifiers::NONE)),
        Some(Key::Down)
    );
    assert_eq!(
        Key::from_event(&ev(KeyCode::F(1), KeyModifiers::NONE)),
        None
    );
}
