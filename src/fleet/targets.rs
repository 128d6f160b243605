//! The targets file: the fleet's databases (a URL or a libpq service each, labels, an
//! optional schema), its waves, how many databases run at once, and what a failure does.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use crate::conn::ConnInfo;
use crate::error::CmdError;

/// What a database that fails (or lags behind) does to the rest of its wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Start no further database of the wave, and no later wave (the default).
    #[default]
    Stop,
    /// Set the database aside; the others go on.
    Continue,
}

/// One database (or one schema of a database) of the fleet.
#[derive(Clone, Debug)]
pub struct Target {
    /// How the fleet names it in every line: `name:`, else the service, else
    /// `host:port/db` (never the user or password), with `/schema` for a schema target.
    pub name: String,
    /// Where to connect, or why that could not be worked out (a service not found).
    pub conn: Result<ConnInfo, String>,
    pub labels: BTreeMap<String, String>,
    /// Schema-per-tenant: the schema the plan's unqualified names resolve to.
    pub schema: Option<String>,
    /// Position in the file (0-based).
    pub index: usize,
}

impl Target {
    /// The name the plan is recorded under in this target's database: the plan's own,
    /// or `plan@schema` for a schema target (several tenants share one database and
    /// its `pgphase` schema).
    pub fn plan_name(&self, plan: &str) -> String {
        match &self.schema {
            Some(s) => format!("{plan}@{s}"),
            None => plan.to_string(),
        }
    }
}

/// A parsed targets file.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub targets: Vec<Target>,
    /// The waves in order, each the indexes of its targets (in file order).
    pub waves: Vec<Vec<usize>>,
    /// How many databases of a wave run at once.
    pub concurrency: usize,
    pub on_error: OnError,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    waves: Vec<RawWave>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    on_error: OnError,
}

fn default_concurrency() -> usize {
    4
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<String>,
    service: Option<String>,
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    schema: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWave {
    #[serde(rename = "match")]
    matches: Option<BTreeMap<String, String>>,
    percent: Option<f64>,
    rest: Option<bool>,
}

enum WaveRule {
    Match(BTreeMap<String, String>),
    Percent(f64),
    Rest,
}

/// Reads and checks a targets file. Invalid when it is not one; a target whose service
/// is not found stays in the fleet with the reason, so the rest can proceed per policy.
pub fn load(path: &Path) -> Result<Fleet, CmdError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CmdError::Invalid(format!(
            "cannot read the targets file {}: {e}",
            path.display()
        ))
    })?;
    parse(&text, &path.display().to_string())
}

fn invalid(file: &str, msg: String) -> CmdError {
    CmdError::Invalid(format!("{file}: {msg}; nothing was changed"))
}

/// Parses a targets file's text (`file` names it in errors).
pub fn parse(text: &str, file: &str) -> Result<Fleet, CmdError> {
    let raw = raw(text, file)?;
    if raw.targets.is_empty() {
        return Err(invalid(
            file,
            "`targets` is empty (list them, or list a server's databases with --targets-from-query)".into(),
        ));
    }
    let targets = file_targets(&raw.targets, file)?;
    build(raw, targets, file)
}

/// The fleet of the databases a `--targets-from-query` listed on `control`'s server,
/// each reached as `control` with its database name; waves, `concurrency` and
/// `on_error` from a targets file without `targets` (`settings`: its text and name),
/// else the defaults (one wave, 4 at once, stop).
pub fn from_query(
    settings: Option<(&str, &str)>,
    control: &ConnInfo,
    rows: Vec<super::query::Queried>,
) -> Result<Fleet, CmdError> {
    let (raw, file) = match settings {
        Some((text, file)) => (raw(text, file)?, file),
        None => (raw("{}", "")?, "--targets-from-query"),
    };
    if !raw.targets.is_empty() {
        return Err(invalid(
            file,
            "it lists `targets` and --targets-from-query lists them too: give the databases one way (leave `targets` out of the file to keep its waves, concurrency and on_error)".into(),
        ));
    }
    let targets = rows
        .into_iter()
        .enumerate()
        .map(|(index, q)| {
            let conn = control.with_dbname(&q.dbname);
            Target {
                name: short(&conn),
                conn: Ok(conn),
                labels: q.labels,
                schema: None,
                index,
            }
        })
        .collect();
    build(raw, targets, file)
}

fn raw(text: &str, file: &str) -> Result<RawFleet, CmdError> {
    serde_saphyr::from_str(text).map_err(|e| invalid(file, format!("not a targets file: {e}")))
}

fn file_targets(raw: &[RawTarget], file: &str) -> Result<Vec<Target>, CmdError> {
    let mut targets = Vec::new();
    for (i, t) in raw.iter().cloned().enumerate() {
        let n = i + 1;
        let conn = match (&t.url, &t.service) {
            (Some(url), None) => {
                if holds_password(url) {
                    return Err(invalid(
                        file,
                        format!("target {n}: its URL holds a password; passwords are never written in the targets file: give them in PGPASSWORD, ~/.pgpass (PGPASSFILE) or the service file"),
                    ));
                }
                ConnInfo::parse(url).map_err(|e| invalid(file, format!("target {n}: {e:#}")))?;
                ConnInfo::parse(url).map_err(|e| format!("{e:#}"))
            }
            (None, Some(service)) => ConnInfo::from_service(service).map_err(|e| format!("{e:#}")),
            _ => {
                return Err(invalid(
                    file,
                    format!("target {n}: give exactly one of `url` and `service`"),
                ))
            }
        };
        if let Some(s) = &t.schema {
            if s.is_empty() || s.len() > 63 || s.chars().any(char::is_control) {
                return Err(invalid(
                    file,
                    format!("target {n}: `schema` must be a schema's name"),
                ));
            }
        }
        let base = match (&t.name, &t.service, &conn) {
            (Some(name), _, _) => name.clone(),
            (None, Some(service), _) => service.clone(),
            (None, None, Ok(c)) => short(c),
            (None, None, Err(_)) => format!("target {n}"),
        };
        let name = match (&t.name, &t.schema) {
            (None, Some(s)) => format!("{base}/{s}"),
            _ => base,
        };
        targets.push(Target {
            name,
            conn,
            labels: t.labels,
            schema: t.schema,
            index: i,
        });
    }
    Ok(targets)
}

/// The fleet of `targets` with the file's waves and settings: refuses a target twice,
/// bad waves and a target in no wave.
fn build(raw: RawFleet, targets: Vec<Target>, file: &str) -> Result<Fleet, CmdError> {
    if raw.concurrency == 0 {
        return Err(invalid(file, "`concurrency` must be at least 1".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &targets {
        if !seen.insert(t.name.clone()) {
            return Err(invalid(
                file,
                format!("`{}` is in the targets twice (one plan cannot run twice at once on one database); give the targets distinct `name`s if they really differ", t.name),
            ));
        }
    }
    let mut rules = Vec::new();
    for (i, w) in raw.waves.into_iter().enumerate() {
        let n = i + 1;
        rules.push(match (w.matches, w.percent, w.rest) {
            (Some(m), None, None) if !m.is_empty() => WaveRule::Match(m),
            (None, Some(p), None) if p > 0.0 && p <= 100.0 => WaveRule::Percent(p),
            (None, None, Some(true)) => WaveRule::Rest,
            _ => {
                return Err(invalid(
                    file,
                    format!("wave {n}: write exactly one of `match: {{label: value}}`, `percent: P` (0 < P ≤ 100) or `rest: true`"),
                ))
            }
        });
    }
    let waves = assign_waves(&targets, &rules).map_err(|m| invalid(file, m))?;
    Ok(Fleet {
        targets,
        waves,
        concurrency: raw.concurrency,
        on_error: raw.on_error,
    })
}

/// `host:port/db` of a connection.
fn short(c: &ConnInfo) -> String {
    let r = c.redacted();
    let r = r.strip_prefix("postgres://").unwrap_or(&r);
    r.split_once('@')
        .map(|(_, rest)| rest)
        .unwrap_or(r)
        .to_string()
}

/// Whether a URL or `key=value` string carries a password.
fn holds_password(url: &str) -> bool {
    if let Ok(u) = url::Url::parse(url) {
        if u.scheme().starts_with("postgres") {
            return u.password().is_some_and(|p| !p.is_empty())
                || u.query_pairs().any(|(k, _)| k == "password");
        }
    }
    url.split_whitespace()
        .any(|kv| kv.trim_start().to_ascii_lowercase().starts_with("password"))
}

/// Each target in the first wave that takes it: `match` takes the remaining targets
/// whose labels include all its pairs, `percent` the first P% of the fleet (rounded
/// up) among the remaining ones, `rest` all remaining. No waves: one wave of all.
fn assign_waves(targets: &[Target], rules: &[WaveRule]) -> Result<Vec<Vec<usize>>, String> {
    if rules.is_empty() {
        return Ok(vec![(0..targets.len()).collect()]);
    }
    let mut left: Vec<usize> = (0..targets.len()).collect();
    let mut waves = Vec::new();
    for rule in rules {
        let take: Vec<usize> = match rule {
            WaveRule::Match(m) => left
                .iter()
                .copied()
                .filter(|&i| m.iter().all(|(k, v)| targets[i].labels.get(k) == Some(v)))
                .collect(),
            WaveRule::Percent(p) => {
                let n = ((targets.len() as f64) * p / 100.0).ceil() as usize;
                left.iter().copied().take(n).collect()
            }
            WaveRule::Rest => left.clone(),
        };
        left.retain(|i| !take.contains(i));
        waves.push(take);
    }
    if !left.is_empty() {
        return Err(format!(
            "no wave takes {}: end the waves with `- rest: true`",
            left.iter()
                .map(|&i| format!("`{}`", targets[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "targets:
  - url: postgres://app@db-1.internal:5432/tenant_a
    labels: { tier: canary, region: eu }
  - url: postgres://app@db-2.internal/tenant_b
  - url: postgres://app@db-2.internal/tenant_c
  - url: postgres://app@db-3.internal/shared
    schema: tenant_d
  - url: postgres://app@db-3.internal/shared
    schema: tenant_e
waves:
  - match: { tier: canary }
  - percent: 20
  - rest: true
concurrency: 2
on_error: continue
";

    #[test]
    fn waves_take_canaries_then_a_percent_then_the_rest() {
        let f = parse(FILE, "t.yaml").unwrap();
        assert_eq!(f.waves, vec![vec![0], vec![1], vec![2, 3, 4]]);
        assert_eq!(f.concurrency, 2);
        assert_eq!(f.on_error, OnError::Continue);
        let names: Vec<&str> = f.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db-1.internal:5432/tenant_a",
                "db-2.internal:5432/tenant_b",
                "db-2.internal:5432/tenant_c",
                "db-3.internal:5432/shared/tenant_d",
                "db-3.internal:5432/shared/tenant_e"
            ]
        );
        assert_eq!(f.targets[3].plan_name("p"), "p@tenant_d");
        assert_eq!(f.targets[0].plan_name("p"), "p");
    }

    #[test]
    fn refuses_a_password_in_the_file_without_printing_it() {
        let text = "targets:\n  - url: postgres://app:hunter2@db/x\n";
        let e = parse(text, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("never written in the targets file"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let kv = "targets:\n  - url: host=db dbname=x password=hunter2\n";
        let e = parse(kv, "t.yaml").unwrap_err().to_string();
        assert!(!e.contains("hunter2") && e.contains("password"), "{e}");
    }

    #[test]
    fn a_target_in_no_wave_is_refused() {
        let text = "targets:\n  - url: postgres://app@a/x\n    labels: {tier: canary}\n  - url: postgres://app@b/y\nwaves:\n  - match: {tier: canary}\n";
        let e = parse(text, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("b:5432/y") && e.contains("rest: true"), "{e}");
    }

    #[test]
    fn refuses_the_same_database_twice_and_bad_waves() {
        let twice = "targets:\n  - url: postgres://app@a/x\n  - url: postgres://app@a/x\n";
        assert!(parse(twice, "t").unwrap_err().to_string().contains("twice"));
        let both =
            "targets:\n  - url: postgres://app@a/x\nwaves:\n  - { percent: 10, rest: true }\n";
        assert!(parse(both, "t").unwrap_err().to_string().contains("wave 1"));
        let none = "targets:\n  - labels: {a: b}\n";
        assert!(parse(none, "t")
            .unwrap_err()
            .to_string()
            .contains("exactly one of `url`"));
    }

    #[test]
    fn a_missing_service_stays_in_the_fleet_with_its_reason() {
        let text = "targets:\n  - service: pgphase_no_such_service_for_tests\n";
        let f = parse(text, "t.yaml").unwrap();
        assert_eq!(f.targets[0].name, "pgphase_no_such_service_for_tests");
        assert!(f.targets[0]
            .conn
            .as_ref()
            .unwrap_err()
            .contains("not found"));
    }

    #[test]
    fn databases_from_a_query_take_the_control_connection_and_the_files_waves() {
        use crate::fleet::query::Queried;
        let control =
            ConnInfo::parse("postgres://deploy@db-1.internal:5433/postgres?sslmode=require")
                .unwrap();
        let row = |db: &str, tier: Option<&str>| Queried {
            dbname: db.into(),
            labels: tier
                .map(|t| BTreeMap::from([("tier".to_string(), t.to_string())]))
                .unwrap_or_default(),
        };
        let rows = vec![
            row("tenant_a", None),
            row("tenant_b", Some("canary")),
            row("tenant_c", None),
        ];
        let settings = "waves:\n  - match: { tier: canary }\n  - rest: true\nconcurrency: 2\non_error: continue\n";
        let f = from_query(Some((settings, "w.yaml")), &control, rows.clone()).unwrap();
        assert_eq!(f.waves, vec![vec![1], vec![0, 2]]);
        assert_eq!((f.concurrency, f.on_error), (2, OnError::Continue));
        assert_eq!(f.targets[1].name, "db-1.internal:5433/tenant_b");
        let conn = f.targets[1].conn.as_ref().unwrap();
        assert_eq!(conn.dbname(), Some("tenant_b"));
        assert_eq!(conn.ssl_mode(), crate::conn::SslMode::Require);
        // no file: one wave, the defaults
        let f = from_query(None, &control, rows.clone()).unwrap();
        assert_eq!((f.waves.len(), f.concurrency), (1, 4));
        // a file that lists targets too is refused
        let e = from_query(Some((FILE, "t.yaml")), &control, rows)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--targets-from-query lists them too"), "{e}");
    }
}
