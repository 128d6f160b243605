//! A generic lifecycle for one plan on a real Postgres, under an old-app and a new-app
//! workload: start → rollback (exact original schema) → start → every gate before the
//! point of no return → application rollback → rollback (exact original schema) →
//! start → every gate → complete.
//!
//! The old application runs from before `start`. At each gate the new version is
//! deployed beside it (a rolling deploy), then the old one is drained, then the gate is
//! confirmed. A plan without a gate is stopped for the rollback by a failpoint on its
//! last step instead, and the new version comes up once it completed.
//!
//! Each version runs as four kinds of client side by side ([`Clients`]): a driver that
//! caches prepared statements, its `SELECT *` variant, and unnamed statements through
//! PgBouncer in transaction pooling mode (plain and `SELECT *`); see [`driver`]. Every
//! application query is counted by SQLSTATE; failures are kept as samples.
#![allow(dead_code)]

pub mod driver;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{pgbouncer, schema_of, TestDb};
use driver::{star, Conn, Protocol};
use pgphase::catalog::Catalog;
use pgphase::pgserver::PoolMode;
use pgphase::plan::PlanFile;
use pgphase::run::{self, Outcome};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// The SQL one application client runs on its `n`-th query (client id, n).
pub type ClientSql = Arc<dyn Fn(u32, u64) -> String + Send + Sync>;

pub fn sql(f: impl Fn(u32, u64) -> String + Send + Sync + 'static) -> ClientSql {
    Arc::new(f)
}

pub struct Scenario {
    pub plan: PlanFile,
    /// Creates the tables and rows the plan changes.
    pub setup: String,
    /// Tables whose schema must be restored exactly by the rollback.
    pub tables: Vec<String>,
    pub old: ClientSql,
    pub new: ClientSql,
    /// Connections per version with the caching driver and the scenario's own SQL
    /// (besides one `SELECT *` client and one client through PgBouncer).
    pub clients: u32,
    pub stage: Duration,
    /// The role the applications log in as (the database owner when None). The setup
    /// creates it, with LOGIN.
    pub role: Option<String>,
}

/// What one kind of client of one version did. Failures are counted by SQLSTATE
/// (`client` for errors without one) and a few are kept as samples.
#[derive(Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub samples: Mutex<Vec<String>>,
    pub codes: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    fn summary(&self) -> String {
        let codes = self.codes.lock().unwrap();
        let mut s = format!("{} ok / {} failed", self.ok(), self.failed());
        if !codes.is_empty() {
            let list: Vec<String> = codes.iter().map(|(c, n)| format!("{n}× {c}")).collect();
            s.push_str(&format!(" ({})", list.join(", ")));
        }
        s
    }
}

/// The clients of one application version, side by side:
/// * `cached`: `Scenario::clients` connections whose driver prepares each statement once
///   and reuses it ([`Protocol::Cached`]), running the scenario's SQL;
/// * `star`: one such connection running its `SELECT *` / `RETURNING *` variant;
/// * `pooled`: one connection through PgBouncer in transaction pooling mode, with
///   unnamed statements ([`Protocol::Unnamed`]), running the scenario's SQL;
/// * `pooled_star`: one more such connection running the `SELECT *` variant.
#[derive(Default, Clone)]
pub struct Clients {
    pub cached: Arc<Counts>,
    pub star: Arc<Counts>,
    pub pooled: Arc<Counts>,
    pub pooled_star: Arc<Counts>,
}

impl Clients {
    /// Zero failed queries for the caching driver and for unnamed statements (their
    /// `SELECT *` variant included); the caching driver's `SELECT *` variant failed only
    /// with `cached plan must not change result type` (0A000), and only if
    /// `row_type_changes` (the plan has steps marked as changing a row type).
    pub fn assert_no_failures(&self, what: &str, row_type_changes: bool, commands: &[String]) {
        for (lane, c) in [
            ("", &self.cached),
            (" (through PgBouncer)", &self.pooled),
            (" (through PgBouncer, SELECT *)", &self.pooled_star),
        ] {
            assert_eq!(
                c.failed(),
                0,
                "{what}{lane} application queries failed: {:#?}\ncommands: {commands:#?}",
                c.samples.lock().unwrap()
            );
        }
        let codes = self.star.codes.lock().unwrap();
        assert!(
            codes.keys().all(|k| k == "0A000"),
            "the {what} version's SELECT * variant failed otherwise than with 0A000: {:#?}",
            self.star.samples.lock().unwrap()
        );
        assert!(
            row_type_changes || self.star.failed() == 0,
            "the {what} version's SELECT * variant failed under a plan with no step marked as changing a row type: {:#?}",
            self.star.samples.lock().unwrap()
        );
    }
    pub fn summary(&self) -> String {
        format!(
            "caching driver {}; its SELECT * variant {}; unnamed statements through PgBouncer (transaction pooling) {}, their SELECT * variant {}",
            self.cached.summary(),
            self.star.summary(),
            self.pooled.summary(),
            self.pooled_star.summary()
        )
    }
}

/// One kind of client: which connections, how they send the SQL, where it is counted.
struct Lane {
    url: String,
    protocol: Protocol,
    star: bool,
    ids: std::ops::Range<u32>,
    counts: Arc<Counts>,
}

/// Where and how the applications connect.
struct Apps {
    direct: String,
    pooled: String,
    clients: u32,
}

impl Apps {
    fn lanes(&self, c: &Clients) -> Vec<Lane> {
        let n = self.clients;
        vec![
            Lane {
                url: self.direct.clone(),
                protocol: Protocol::Cached,
                star: false,
                ids: 0..n,
                counts: c.cached.clone(),
            },
            Lane {
                url: self.direct.clone(),
                protocol: Protocol::Cached,
                star: true,
                ids: n..n + 1,
                counts: c.star.clone(),
            },
            Lane {
                url: self.pooled.clone(),
                protocol: Protocol::Unnamed,
                star: false,
                ids: n + 1..n + 2,
                counts: c.pooled.clone(),
            },
            Lane {
                url: self.pooled.clone(),
                protocol: Protocol::Unnamed,
                star: true,
                ids: n + 2..n + 3,
                counts: c.pooled_star.clone(),
            },
        ]
    }
}

/// One application version on one database, started and stopped by a test that runs
/// the commands itself (tests/fleet.rs): the lanes of [`Clients`] against `url`, the
/// unnamed-statement lanes connecting directly rather than through PgBouncer.
pub struct App {
    group: Group,
    pub clients: Clients,
}

impl App {
    pub async fn start(url: &str, name: &str, make: &ClientSql, clients: u32) -> App {
        let apps = Apps {
            direct: url.to_string(),
            pooled: url.to_string(),
            clients,
        };
        let counts = Clients::default();
        let group = Group::start(&apps, name, make, &counts, 0).await;
        App {
            group,
            clients: counts,
        }
    }
    /// Stops the clients (the version is drained); returns what they did.
    pub async fn stop(self) -> Clients {
        self.group.stop().await;
        self.clients
    }
}

struct Group {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Group {
    /// `generation`: how many groups of this version ran before. A group started
    /// again (after an application rollback) must not repeat the values the last one
    /// wrote: its query numbers start at `generation × 720720` (720720 = lcm(1..=16),
    /// so the residues the workloads switch on stay the same).
    async fn start(
        apps: &Apps,
        name: &str,
        make: &ClientSql,
        counts: &Clients,
        generation: u64,
    ) -> Group {
        let first = generation * 720_720;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for lane in apps.lanes(counts) {
            for id in lane.ids.clone() {
                let mut conn = Conn::connect(&lane.url, name, lane.protocol)
                    .await
                    .unwrap_or_else(|e| panic!("{name} client {id} ({:?}): {e}", lane.protocol));
                let (stop, make, counts) = (stop.clone(), make.clone(), lane.counts.clone());
                let name = format!("{name} {id}{}", if lane.star { " SELECT *" } else { "" });
                let star_variant = lane.star;
                tasks.push(tokio::spawn(async move {
                    let mut i = first;
                    while !stop.load(Ordering::Relaxed) {
                        let mut sql = make(id, i);
                        if star_variant {
                            sql = star(&sql);
                        }
                        match conn.run(&sql).await {
                            Ok(_) => {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                let code = e
                                    .as_db_error()
                                    .map_or("client".to_string(), |d| d.code().code().to_string());
                                *counts.codes.lock().unwrap().entry(code).or_default() += 1;
                                let mut s = counts.samples.lock().unwrap();
                                if s.len() < 10 {
                                    let detail = e.as_db_error().map_or(e.to_string(), |d| {
                                        format!("{}: {}", d.code().code(), d.message())
                                    });
                                    s.push(format!("[{name}] {detail} -- SQL: {sql}"));
                                }
                            }
                        }
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }));
            }
        }
        Group { stop, tasks }
    }
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

pub struct Report {
    pub db: TestDb,
    pub client: Client,
    /// The caching-driver clients of each version (the scenario's own SQL).
    pub old: Arc<Counts>,
    pub new: Arc<Counts>,
    /// Every kind of client of each version.
    pub old_clients: Clients,
    pub new_clients: Clients,
    /// Outcomes of every command, in order, for messages.
    pub outcomes: Vec<String>,
    pub gates: usize,
    /// Steps (or undo steps) of the plan that change a table's row type.
    pub row_type_steps: usize,
    pub plan: String,
}

impl Report {
    pub fn old_ok(&self) -> u64 {
        self.old.ok()
    }
    pub fn new_ok(&self) -> u64 {
        self.new.ok()
    }
    /// Zero failed application queries for the caching driver, and for unnamed
    /// statements through PgBouncer (their `SELECT *` variant included), enough of them
    /// to mean something; the caching driver's `SELECT *` variant failed only with
    /// `cached plan must not change result type` (0A000), and only if the plan has
    /// steps marked as changing a row type.
    pub fn assert_clean(&self) {
        eprintln!(
            "lifecycle {}: old version: {}\nlifecycle {}: new version: {}",
            self.plan,
            self.old_clients.summary(),
            self.plan,
            self.new_clients.summary()
        );
        for (what, c) in [("old", &self.old_clients), ("new", &self.new_clients)] {
            c.assert_no_failures(what, self.row_type_steps > 0, &self.outcomes);
        }
        assert!(
            self.old_ok() > 50 && self.new_ok() > 50,
            "workload too small: old {} ok, new {} ok",
            self.old_ok(),
            self.new_ok()
        );
        for (what, c) in [("old", &self.old_clients), ("new", &self.new_clients)] {
            assert!(
                c.pooled.ok() > 10 && c.star.ok() > 10 && c.pooled_star.ok() > 10,
                "too few {what} queries through PgBouncer or in the SELECT * variant: {}",
                c.summary()
            );
        }
    }
}

/// `url` as `role` (no password: the throwaway servers trust local connections).
fn as_role(url: &str, role: Option<&str>) -> String {
    let Some(role) = role else {
        return url.to_string();
    };
    let mut u = url::Url::parse(url).expect("URL");
    u.set_username(role).expect("a URL with a user");
    u.to_string()
}

async fn schemas(client: &Client, tables: &[String]) -> Vec<(Catalog, Vec<String>)> {
    let mut out = Vec::new();
    for t in tables {
        out.push(schema_of(client, t).await);
    }
    out
}

/// Runs the whole lifecycle; asserts the rollback restored the exact original schema
/// and that the plan completed. The caller asserts on the workload and final schema.
pub async fn lifecycle(sc: Scenario) -> Report {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(&sc.setup).await.unwrap();
    let before = schemas(&client, &sc.tables).await;
    let program = run::expand(Some(&db.conn()), &sc.plan)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let last = program.phases.len() - 1;
    let gates = program.phases[..last]
        .iter()
        .filter(|p| p.gate.is_some())
        .count();
    let name = sc.plan.plan.name.clone();
    let row_type_steps = program.row_type_steps(false).len() + program.row_type_steps(true).len();
    let mut s = db.session();
    let (old_counts, new_counts) = (Clients::default(), Clients::default());
    let mut outcomes = Vec::new();
    let role = sc.role.as_deref();
    let (_bouncer, pooled) = pgbouncer(&db, PoolMode::Transaction, role);
    let apps = Apps {
        direct: as_role(&db.url, role),
        pooled: as_role(&pooled, role),
        clients: sc.clients,
    };

    let mut old = Some(Group::start(&apps, "app-old", &sc.old, &old_counts, 0).await);
    tokio::time::sleep(sc.stage).await;

    // 1. start, stopped at the first gate (or by a failpoint on the last step), then rollback.
    if gates == 0 {
        let p = &program.phases[last];
        s.failpoint = Some(format!("{}.{}", p.kind, p.steps.len()));
        let err = run::start(&s, &sc.plan).await.unwrap_err();
        outcomes.push(format!("start (failpoint): {err}"));
        s.failpoint = None;
    } else {
        let out = run::start(&s, &sc.plan)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
        outcomes.push(format!("start: {out:?}"));
    }
    tokio::time::sleep(sc.stage).await;
    let out = run::rollback(&s, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, Outcome::RolledBack);
    outcomes.push(format!("rollback: {out:?}"));
    tokio::time::sleep(sc.stage).await;
    let after = schemas(&client, &sc.tables).await;
    assert_eq!(
        before, after,
        "the rollback did not restore the exact original schema"
    );

    // 2. rollback from as deep as the plan goes before its point of no return: through
    // every gate whose next phases do not include it (a rolling deploy at each), stopped
    // by a failpoint on its last step when the plan would otherwise complete. The
    // application is rolled back first (old version up, new drained), as the rollback
    // command asks operators to.
    let deep = deepest_before_contract(&program);
    if deep.gates > 0 || deep.failpoint.is_some() {
        let out = run::start(&s, &sc.plan)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        outcomes.push(format!("start (deep): {out:?}"));
        let mut new = None;
        for n in 1..=deep.gates {
            tokio::time::sleep(sc.stage).await;
            if new.is_none() {
                new = Some(Group::start(&apps, "app-new", &sc.new, &new_counts, 0).await);
                tokio::time::sleep(sc.stage).await;
            }
            if let Some(g) = old.take() {
                g.stop().await;
            }
            let last = n == deep.gates;
            if last {
                s.failpoint = deep.failpoint.clone();
            }
            let r = run::advance(&s, &name, &format!("app@deep{n}"), Some(&sc.plan)).await;
            s.failpoint = None;
            match r {
                Ok(out) => {
                    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
                    outcomes.push(format!("advance (deep): {out:?}"));
                }
                Err(e) if last && deep.failpoint.is_some() => {
                    outcomes.push(format!("advance (deep, failpoint): {e}"));
                }
                Err(e) => panic!("{e}"),
            }
        }
        // A rollback crosses one confirmed gate at a time: back to the gate, while the
        // version deployed there keeps running; then the application is rolled back
        // to the version before that deploy, and the next rollback goes on.
        let first_gate = program.phases.iter().position(|p| p.gate.is_some());
        loop {
            tokio::time::sleep(sc.stage).await;
            let out = run::rollback(&s, &name)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            outcomes.push(format!("rollback (deep): {out:?}"));
            match out {
                Outcome::RolledBack => break,
                Outcome::RolledBackToGate { phase, .. } => {
                    let g = program
                        .phases
                        .iter()
                        .position(|p| p.kind.as_str() == phase)
                        .expect("a phase of the plan");
                    if Some(g) == first_gate {
                        // the new version came at the first gate: back to the old one
                        tokio::time::sleep(sc.stage).await;
                        if old.is_none() {
                            old =
                                Some(Group::start(&apps, "app-old", &sc.old, &old_counts, 1).await);
                            tokio::time::sleep(sc.stage).await;
                        }
                        if let Some(g) = new.take() {
                            g.stop().await;
                        }
                    }
                }
                other => panic!("rollback: {other:?}"),
            }
        }
        tokio::time::sleep(sc.stage).await;
        let after = schemas(&client, &sc.tables).await;
        assert_eq!(
            before,
            after,
            "the rollback from {} gate(s) in{} did not restore the exact original schema",
            deep.gates,
            if deep.failpoint.is_some() {
                " (stopped before the last step)"
            } else {
                ""
            }
        );
    }

    // 3. start again and walk every gate with a rolling deploy.
    let mut new = None;
    let mut out = run::start(&s, &sc.plan)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    outcomes.push(format!("start: {out:?}"));
    let mut n = 0;
    while let Outcome::AwaitingDeploy { .. } = out {
        tokio::time::sleep(sc.stage).await;
        if new.is_none() {
            new = Some(Group::start(&apps, "app-new", &sc.new, &new_counts, 1).await);
            tokio::time::sleep(sc.stage).await;
        }
        if let Some(g) = old.take() {
            g.stop().await;
        }
        drained_before_contract(&client, &name).await;
        n += 1;
        out = run::advance(&s, &name, &format!("app@v{n}"), Some(&sc.plan))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        outcomes.push(format!("advance: {out:?}"));
    }
    assert_eq!(out, Outcome::Completed, "{outcomes:#?}");
    assert_eq!(n, gates);
    if new.is_none() {
        // no gate: the new version is deployed once the plan completed, beside the old
        new = Some(Group::start(&apps, "app-new", &sc.new, &new_counts, 0).await);
    }
    tokio::time::sleep(sc.stage).await;
    if let Some(g) = old.take() {
        g.stop().await;
    }
    if let Some(g) = new.take() {
        g.stop().await;
    }
    Report {
        db,
        client,
        old: old_counts.cached.clone(),
        new: new_counts.cached.clone(),
        old_clients: old_counts,
        new_clients: new_counts,
        outcomes,
        gates,
        row_type_steps,
        plan: name,
    }
}

/// How far a plan can go before its point of no return, for the deep rollback.
struct Deep {
    /// Gates to confirm after `start`.
    gates: usize,
    /// Set for the last of them when the plan would otherwise complete: stops it before
    /// its last step.
    failpoint: Option<String>,
}

fn deepest_before_contract(program: &pgphase::program::Program) -> Deep {
    let phases = &program.phases;
    let last = phases.len() - 1;
    let gated: Vec<usize> = (0..last).filter(|&i| phases[i].gate.is_some()).collect();
    let mut deep = Deep {
        gates: 0,
        failpoint: None,
    };
    for (k, &g) in gated.iter().enumerate() {
        // the phases this gate's confirmation runs: up to the next gate, or the end
        let end = gated.get(k + 1).copied().unwrap_or(last);
        if phases[g + 1..=end].iter().any(|p| p.point_of_no_return) {
            break;
        }
        deep.gates += 1;
        if end == last {
            let p = &phases[last];
            deep.failpoint = Some(format!("{}.{}", p.kind, p.steps.len()));
            break;
        }
    }
    deep
}

/// When the plan waits at the gate before its contract: waits, as a release pipeline
/// does (`pgphase check-drain PLAN --wait`), until the check before contract is clean;
/// the old version has been stopped by then.
async fn drained_before_contract(client: &Client, plan: &str) {
    let stored = pgphase::state::store::load_plan(client, plan)
        .await
        .unwrap()
        .unwrap();
    // the phases the next `phase advance` runs: up to and including the next gate
    let contract_next = stored.state().open_gate().is_some_and(|g| {
        let after = &stored.program.phases[g + 1..];
        let until = after
            .iter()
            .position(|p| p.gate.is_some())
            .map_or(after.len(), |i| i + 1);
        after[..until].iter().any(|p| p.point_of_no_return)
    });
    if !contract_next {
        return;
    }
    let ev = pgphase::evidence::drain::wait(
        client,
        plan,
        Some(Duration::from_secs(120)),
        Duration::from_millis(500),
        &|_| {},
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ev.clean(),
        "still used after the old version stopped: {:?}",
        ev.lines()
    );
}
