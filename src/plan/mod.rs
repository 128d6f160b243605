//! The YAML change plan: model, loading with source positions, validation, checksum.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sql::QualifiedName;

pub mod check;
pub mod set;

pub use crate::recipe::Change;

/// A position in a plan file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// A plan-file error: `file:line:column: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PlanError {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A value with the position it was written at.
#[derive(Clone, Debug)]
pub struct At<T> {
    pub value: T,
    pub pos: Pos,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<T>::deserialize(d)?;
        Ok(At {
            value: s.value,
            pos: Pos {
                line: s.referenced.line(),
                column: s.referenced.column(),
            },
        })
    }
}

/// In the schema a positioned value is the value itself.
impl<T: schemars::JsonSchema> schemars::JsonSchema for At<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A loaded, validated plan file.
#[derive(Clone, Debug)]
pub struct PlanFile {
    pub path: PathBuf,
    pub source: String,
    /// `sha256:` + hex digest of the file's bytes.
    pub checksum: String,
    pub plan: Plan,
}

/// What the user wrote, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    /// Plans that must be completed first, with where each is written.
    pub depends_on: Vec<At<String>>,
    pub settings: Settings,
    pub changes: Vec<At<Change>>,
    /// Deploy fences, checked by `phase advance` when it confirms a gate.
    pub fences: Vec<At<Fence>>,
}

/// A deploy fence: confirming the gate after phase `at_gate_after` is refused while
/// a session of the target database whose `application_name` is `LIKE` the pattern
/// is still connected (the old application version has not been drained).
///
/// ```yaml
/// fences:
///   - at_gate_after: switch_reads
///     no_application_name_like: comments-api-old%
/// ```
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    /// The phase whose closing gate the fence guards (`backfill`, `switch_reads`, …).
    pub at_gate_after: At<String>,
    /// A SQL `LIKE` pattern (`%` any run of characters, `_` one character).
    pub no_application_name_like: At<String>,
}

/// A pgphase plan file: the changes to make to a live PostgreSQL schema, expanded by
/// `pgphase plan` into gated expand/contract phases.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgphase plan")]
struct RawPlan {
    /// The plan's name (letters, digits, `-`, `_`, `.`); default: the file name.
    name: Option<At<String>>,
    description: Option<String>,
    /// Plans that must be completed first.
    #[serde(default)]
    depends_on: Vec<At<String>>,
    #[serde(default)]
    settings: Settings,
    /// The changes, in order; each one change kind (docs/kinds/).
    changes: At<Vec<At<Change>>>,
    /// Deploy fences, checked by `phase advance` when it confirms a gate.
    #[serde(default)]
    fences: Vec<At<Fence>>,
}

/// The JSON Schema of plan files, derived from the types the loader deserializes
/// (`pgphase schema`; committed as schema/plan.schema.json).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RawPlan);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// Tunables; every field has a default.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Longest time a statement may wait for a lock that would block the application.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub lock_timeout: Duration,
    /// Attempts for a statement that timed out waiting for its lock.
    pub lock_retries: u32,
    pub backfill: BackfillSettings,
    pub contract: ContractSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_millis(500),
            lock_retries: 30,
            backfill: BackfillSettings::default(),
            contract: ContractSettings::default(),
        }
    }
}

/// What happens before a contract.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ContractSettings {
    /// The check for statements, sessions and usage that still name what the contract
    /// drops (see `crate::evidence`).
    pub evidence: EvidenceMode,
    /// When the last check is older than this, the check first takes a fresh snapshot
    /// and watches this long, so that what ran before (the drain itself) does not
    /// count. `0s`: count everything since the last check, however old.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub evidence_window: Duration,
}

impl Default for ContractSettings {
    fn default() -> Self {
        ContractSettings {
            evidence: EvidenceMode::default(),
            evidence_window: Duration::from_secs(12),
        }
    }
}

/// `settings.contract.evidence`.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceMode {
    /// Refuse `phase advance` into contract while anything uses what it drops (the default).
    #[default]
    Refuse,
    /// Check, print and record what still uses it, and run contract anyway.
    Warn,
    /// Do not check.
    Off,
}

impl EvidenceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceMode::Refuse => "refuse",
            EvidenceMode::Warn => "warn",
            EvidenceMode::Off => "off",
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillSettings {
    /// Rows in the first batch (one short transaction each); later batches adapt.
    pub batch_size: u32,
    /// Batch sizes adapt so that each batch takes about this long, never longer than
    /// `max_app_wait`. `0s` keeps `batch_size` fixed.
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub target_batch_time: Duration,
    /// Sleep between batches, to leave room for the application (added to the sleep
    /// of `yield_to_load`).
    #[serde(with = "duration_text")]
    #[schemars(with = "String")]
    pub pause: Duration,
    /// An application statement that needs a row of the running batch waits until the
    /// batch commits: batches never aim to take longer than this, and shrink while
    /// application sessions are seen waiting on them (growing back when none are).
    /// `off` leaves the batch's duration to `target_batch_time` alone.
    #[serde(with = "crate::health::limit_duration")]
    #[schemars(with = "crate::health::RawLimit")]
    pub max_app_wait: Option<Duration>,
    /// After each batch, sleep for the batch's duration times this factor times the
    /// other client sessions running a statement (a moving average, at most 9 sessions):
    /// with n busy sessions the backfill takes about 1/(1 + factor × n) of the time; on
    /// an idle database batches run back to back. `0` turns it off. Sessions of other
    /// roles are seen only with `pg_read_all_stats`.
    pub yield_to_load: f64,
    /// No new batch while a physical standby replays more than this far behind, or
    /// while the lag of a standby cannot be read; `off` does not watch standbys.
    #[serde(with = "crate::health::limit_duration")]
    #[schemars(with = "crate::health::RawLimit")]
    pub max_replica_lag: Option<Duration>,
    /// No new batch while a replication slot retains more WAL than this (`64MB`,
    /// `1GB`); `off` does not watch slots.
    #[serde(with = "crate::health::limit_bytes")]
    #[schemars(with = "crate::health::RawLimit")]
    pub max_slot_lag: Option<u64>,
    /// No new batch while more client sessions than this are running a statement
    /// (`pg_stat_activity`, state `active`); `off` (the default) does not watch load.
    #[serde(with = "crate::health::limit_count")]
    #[schemars(with = "crate::health::RawLimit")]
    pub max_active_sessions: Option<u32>,
}

/// Default `settings.backfill.yield_to_load`: with four busy sessions the backfill takes
/// about 1/17 of the time (docs/performance.md › OLTP impact).
pub const DEFAULT_YIELD_TO_LOAD: f64 = 4.0;

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            batch_size: 1000,
            target_batch_time: Duration::from_millis(20),
            pause: Duration::ZERO,
            max_app_wait: Some(crate::health::DEFAULT_MAX_APP_WAIT),
            yield_to_load: DEFAULT_YIELD_TO_LOAD,
            max_replica_lag: Some(crate::health::DEFAULT_MAX_REPLICA_LAG),
            max_slot_lag: Some(crate::health::DEFAULT_MAX_SLOT_LAG),
            max_active_sessions: None,
        }
    }
}

/// Durations written as `500ms`, `2s`, `1m`.
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}` ({e}); write it like 500ms, 2s or 1m"
            ))
        })
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

impl PlanFile {
    /// Reads, parses and validates a plan file.
    pub fn load(path: &Path) -> Result<PlanFile, PlanError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: file.clone(),
            pos: None,
            message: format!("cannot read the plan file: {e}"),
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plan = parse(&source, &file, &stem)?;
        Ok(PlanFile {
            path: path.to_path_buf(),
            checksum: checksum(&source),
            source,
            plan,
        })
    }
}

/// `sha256:<hex>` of the text.
pub fn checksum(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Short form of a checksum for messages.
pub fn short_checksum(sum: &str) -> &str {
    let end = sum.len().min("sha256:".len() + 12);
    &sum[..end]
}

/// Parses and validates plan text. `file` is used in messages, `default_name` when the
/// plan has no `name`.
pub fn parse(source: &str, file: &str, default_name: &str) -> Result<Plan, PlanError> {
    let raw: RawPlan = serde_saphyr::from_str(source).map_err(|e| PlanError {
        file: file.to_string(),
        pos: e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        }),
        message: clean_yaml_message(&e.to_string()),
    })?;
    let err = |pos: Pos, message: String| PlanError {
        file: file.to_string(),
        pos: Some(pos),
        message,
    };

    let name = match &raw.name {
        Some(n) => {
            check_plan_name(&n.value).map_err(|m| err(n.pos, m))?;
            n.value.clone()
        }
        None => {
            check_plan_name(default_name).map_err(|m| PlanError {
                file: file.to_string(),
                pos: None,
                message: format!("the file name gives no usable plan name ({m}); add `name:`"),
            })?;
            default_name.to_string()
        }
    };
    for dep in &raw.depends_on {
        check_plan_name(&dep.value).map_err(|m| err(dep.pos, m))?;
        if dep.value == name {
            return Err(err(
                dep.pos,
                format!("plan `{name}` cannot depend on itself"),
            ));
        }
    }
    if raw.changes.value.is_empty() {
        return Err(err(
            raw.changes.pos,
            "`changes` is empty: list at least one change".into(),
        ));
    }
    if raw.settings.backfill.batch_size == 0 {
        return Err(PlanError {
            file: file.to_string(),
            pos: None,
            message: "settings.backfill.batch_size must be at least 1".into(),
        });
    }
    if raw.settings.lock_timeout.is_zero() {
        return Err(PlanError {
            file: file.to_string(),
            pos: None,
            message: "settings.lock_timeout must be greater than 0 (0 would wait forever and block the application)".into(),
        });
    }
    if raw.settings.lock_retries == 0 {
        return Err(PlanError {
            file: file.to_string(),
            pos: None,
            message: "settings.lock_retries must be at least 1".into(),
        });
    }

    for change in &raw.changes.value {
        change
            .value
            .as_kind()
            .validate(change.pos)
            .map_err(|(p, m)| err(p, m))?;
    }
    // Two changes creating or dropping the same index cannot share a plan.
    let mut index_names: Vec<(QualifiedName, Pos)> = Vec::new();
    for change in &raw.changes.value {
        let Some((name, pos)) = change.value.as_kind().index_changed() else {
            continue;
        };
        if let Some((_, first)) = index_names.iter().find(|(n, _)| *n == name) {
            return Err(err(
                pos,
                format!(
                    "index `{}` is already changed by the change at line {}; split the plan in two with depends_on",
                    name.display_short(),
                    first.line
                ),
            ));
        }
        index_names.push((name, pos));
    }
    for f in &raw.fences {
        let phase = &f.value.at_gate_after;
        if !crate::phase::PhaseKind::ALL
            .iter()
            .any(|k| k.as_str() == phase.value)
        {
            return Err(err(
                phase.pos,
                format!(
                    "`{}` is not a phase; a fence names the phase whose gate it guards: {}",
                    phase.value,
                    crate::phase::PhaseKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let pattern = &f.value.no_application_name_like;
        if pattern.value.is_empty() || pattern.value.len() > 200 {
            return Err(err(
                pattern.pos,
                "the application_name pattern must be 1 to 200 characters".into(),
            ));
        }
        if pattern.value.chars().any(char::is_control) {
            return Err(err(
                pattern.pos,
                "the application_name pattern contains a control character".into(),
            ));
        }
    }
    // A renamed table cannot be changed otherwise in the same plan: each recipe checks
    // against the catalog as it is, and the other change would name the table either
    // before or after the rename. The same value added twice to one enum neither.
    for (i, change) in raw.changes.value.iter().enumerate() {
        change
            .value
            .as_kind()
            .validate_in_plan(i, &raw.changes.value)
            .map_err(|(p, m)| err(p, m))?;
    }
    // Two changes on the same column of one table cannot share phases.
    let mut touched: Vec<(QualifiedName, String, Pos)> = Vec::new();
    for change in &raw.changes.value {
        for (table, col) in change.value.as_kind().touched_columns() {
            if let Some((_, _, first)) = touched
                .iter()
                .find(|(t, c, _)| *t == table && *c == col.value)
            {
                return Err(err(
                    col.pos,
                    format!(
                        "column `{}` of `{}` is already changed by the change at line {}; split the plan in two with depends_on",
                        col.value,
                        table.display_short(),
                        first.line
                    ),
                ));
            }
            touched.push((table.clone(), col.value.clone(), col.pos));
        }
    }

    Ok(Plan {
        name,
        description: raw.description,
        depends_on: raw.depends_on,
        settings: raw.settings,
        changes: raw.changes.value,
        fences: raw.fences,
    })
}

fn check_plan_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err("a plan name must be 1 to 200 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "plan name `{name}` may use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// serde-saphyr renders its own location and a source snippet; we print file:line:col
/// ourselves, so keep only the message.
fn clean_yaml_message(msg: &str) -> String {
    let mut m = msg.lines().next().unwrap_or(msg).trim();
    if let Some(rest) = m.strip_prefix("error: ") {
        m = rest;
    }
    // "line 3 column 39: unknown field …" — the position is printed by PlanError
    if m.starts_with("line ") {
        if let Some(i) = m.find(": ") {
            m = &m[i + 2..];
        }
    }
    let m = match m.find(" at line ") {
        Some(i) => &m[..i],
        None => m,
    };
    m.replace("unknown variant", "unknown change kind")
        .replace("invalid u32", "expected a whole number")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "name: r\nchanges:\n  - rename_column: { table: comments, from: contents, to: body }\n";

    #[test]
    fn parses_a_rename() {
        let p = parse(GOOD, "f.yaml", "x").unwrap();
        assert_eq!(p.name, "r");
        assert_eq!(p.settings, Settings::default());
        let Change::RenameColumn(rc) = &p.changes[0].value else {
            panic!("a rename")
        };
        assert_eq!(rc.to.value, "body");
        assert_eq!(rc.to.pos.line, 3);
    }

    #[test]
    fn name_defaults_to_stem() {
        let p = parse(
            "changes:\n  - rename_column: { table: t, from: a, to: b }\n",
            "f.yaml",
            "my-plan",
        )
        .unwrap();
        assert_eq!(p.name, "my-plan");
    }

    #[test]
    fn unknown_field_has_position() {
        let e = parse(
            "name: r\nchanges:\n  - rename_column: { table: t, form: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("f.yaml:3:"), "{text}");
        assert!(text.contains("form"), "{text}");
    }

    #[test]
    fn unknown_change_kind() {
        let e = parse(
            "changes:\n  - rename_colum: { table: t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("f.yaml:2:"), "{e}");
        assert!(e.to_string().contains("rename_colum"), "{e}");
    }

    #[test]
    fn settings_and_durations() {
        let p = parse(
            "settings:\n  lock_timeout: 2s\n  backfill: { batch_size: 50, pause: 10ms }\nchanges:\n  - rename_column: { table: app.t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap();
        assert_eq!(p.settings.lock_timeout, Duration::from_secs(2));
        assert_eq!(p.settings.backfill.batch_size, 50);
        assert_eq!(
            p.settings.backfill.max_replica_lag,
            Some(crate::health::DEFAULT_MAX_REPLICA_LAG)
        );
        let h = parse(
            "settings:\n  backfill: { max_replica_lag: 5s, max_slot_lag: 64MB, max_active_sessions: 40 }\nchanges:\n  - rename_column: { table: t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap();
        assert_eq!(
            h.settings.backfill.max_replica_lag,
            Some(Duration::from_secs(5))
        );
        assert_eq!(h.settings.backfill.max_slot_lag, Some(64 << 20));
        assert_eq!(h.settings.backfill.max_active_sessions, Some(40));
        let off = parse(
            "settings:\n  backfill: { max_replica_lag: off, max_slot_lag: off }\nchanges:\n  - rename_column: { table: t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap();
        assert_eq!(off.settings.backfill.max_replica_lag, None);
        assert_eq!(off.settings.backfill.max_slot_lag, None);
        let bad = parse(
            "settings:\n  backfill: { max_slot_lag: lots }\nchanges:\n  - rename_column: { table: t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("64MB"), "{bad}");
        let e = parse(
            "settings:\n  lock_timeout: soon\nchanges:\n  - rename_column: { table: t, from: a, to: b }\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("f.yaml:2:"), "{e}");
        assert!(e.to_string().contains("500ms"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let e = parse(
            "changes:\n  - rename_column: { table: t, from: a, to: a }\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert_eq!(e.pos.unwrap().line, 2);
        let long = "x".repeat(64);
        let e = parse(
            &format!("changes:\n  - rename_column: {{ table: t, from: a, to: {long} }}\n"),
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("63 bytes"), "{e}");
    }

    #[test]
    fn fences() {
        let p = parse(
            "changes:\n  - rename_column: { table: t, from: a, to: b }\nfences:\n  - at_gate_after: switch_reads\n    no_application_name_like: api-old%\n",
            "f.yaml",
            "x",
        )
        .unwrap();
        assert_eq!(p.fences.len(), 1);
        assert_eq!(p.fences[0].at_gate_after.value, "switch_reads");
        assert_eq!(p.fences[0].no_application_name_like.value, "api-old%");
        assert_eq!(p.fences[0].at_gate_after.pos.line, 4);
        let e = parse(
            "changes:\n  - rename_column: { table: t, from: a, to: b }\nfences:\n  - at_gate_after: drain\n    no_application_name_like: api-old%\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("f.yaml:4:"), "{e}");
        assert!(e.to_string().contains("switch_reads"), "{e}");
        let e = parse(
            "changes:\n  - rename_column: { table: t, from: a, to: b }\nfences:\n  - at_gate_after: backfill\n    application_name: api-old%\n",
            "f.yaml",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no_application_name_like"), "{e}");
    }

    #[test]
    fn malformed_yaml() {
        let e = parse("changes: [\n", "f.yaml", "x").unwrap_err();
        assert!(e.pos.is_some(), "{e}");
    }
}
