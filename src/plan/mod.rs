//! The YAML change plan: model, loading with source positions, validation, checksum.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sql::{QualifiedName, MAX_IDENT_BYTES};

pub mod set;

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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    /// The phase whose closing gate the fence guards (`backfill`, `switch_reads`, …).
    pub at_gate_after: At<String>,
    /// A SQL `LIKE` pattern (`%` any run of characters, `_` one character).
    pub no_application_name_like: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Option<At<String>>,
    description: Option<String>,
    #[serde(default)]
    depends_on: Vec<At<String>>,
    #[serde(default)]
    settings: Settings,
    changes: At<Vec<At<Change>>>,
    #[serde(default)]
    fences: Vec<At<Fence>>,
}

/// Tunables; every field has a default.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Longest time a statement may wait for a lock that would block the application.
    #[serde(with = "duration_text")]
    pub lock_timeout: Duration,
    /// Attempts for a statement that timed out waiting for its lock.
    pub lock_retries: u32,
    pub backfill: BackfillSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_millis(500),
            lock_retries: 30,
            backfill: BackfillSettings::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillSettings {
    /// Rows in the first batch (one short transaction each); later batches adapt.
    pub batch_size: u32,
    /// Batch sizes adapt so that each batch takes about this long (row locks are held
    /// for at most about twice that). `0s` keeps `batch_size` fixed.
    #[serde(with = "duration_text")]
    pub target_batch_time: Duration,
    /// Sleep between batches, to leave room for the application.
    #[serde(with = "duration_text")]
    pub pause: Duration,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            batch_size: 1000,
            target_batch_time: Duration::from_millis(100),
            pause: Duration::ZERO,
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

/// One change of a plan. Externally tagged: `- rename_column: { … }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    RenameColumn(RenameColumn),
    AddColumn(Box<AddColumn>),
    DropColumn(DropColumn),
    AddIndex(AddIndex),
    DropIndex(DropIndex),
    SetNotNull(SetNotNull),
    AddCheck(AddCheck),
    AddForeignKey(Box<AddForeignKey>),
    DropNotNull(ColumnRef),
    SetDefault(SetDefault),
    DropDefault(ColumnRef),
    AddUnique(AddUnique),
    CreateTable(CreateTable),
    DropTable(DropTable),
    DropConstraint(DropConstraint),
    Sql(SqlChange),
    RenameTable(RenameTable),
    AddEnumValue(AddEnumValue),
    ChangeType(ChangeType),
    SplitColumn(SplitColumn),
    MergeColumns(MergeColumns),
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::RenameColumn(_) => "rename_column",
            Change::AddColumn(_) => "add_column",
            Change::DropColumn(_) => "drop_column",
            Change::AddIndex(_) => "add_index",
            Change::DropIndex(_) => "drop_index",
            Change::SetNotNull(_) => "set_not_null",
            Change::AddCheck(_) => "add_check",
            Change::AddForeignKey(_) => "add_foreign_key",
            Change::DropNotNull(_) => "drop_not_null",
            Change::SetDefault(_) => "set_default",
            Change::DropDefault(_) => "drop_default",
            Change::AddUnique(_) => "add_unique",
            Change::CreateTable(_) => "create_table",
            Change::DropTable(_) => "drop_table",
            Change::DropConstraint(_) => "drop_constraint",
            Change::Sql(_) => "sql",
            Change::RenameTable(_) => "rename_table",
            Change::AddEnumValue(_) => "add_enum_value",
            Change::ChangeType(_) => "change_type",
            Change::SplitColumn(_) => "split_column",
            Change::MergeColumns(_) => "merge_columns",
        }
    }

    /// The columns this change adds, renames or removes, as (table, column, position):
    /// two changes on the same column cannot share phases.
    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        match self {
            Change::RenameColumn(rc) => {
                vec![(rc.table_name(), &rc.from), (rc.table_name(), &rc.to)]
            }
            Change::AddColumn(ac) => vec![(ac.table_name(), &ac.column.name)],
            Change::DropColumn(dc) => vec![(dc.table_name(), &dc.column)],
            Change::SetNotNull(sn) => vec![(sn.table_name(), &sn.column)],
            Change::DropNotNull(c) | Change::DropDefault(c) => vec![(c.table_name(), &c.column)],
            Change::SetDefault(sd) => vec![(sd.table_name(), &sd.column)],
            Change::AddUnique(_)
            | Change::CreateTable(_)
            | Change::DropTable(_)
            | Change::DropConstraint(_)
            | Change::Sql(_)
            | Change::AddIndex(_)
            | Change::DropIndex(_)
            | Change::AddCheck(_)
            | Change::AddForeignKey(_)
            | Change::RenameTable(_)
            | Change::AddEnumValue(_) => Vec::new(),
            Change::ChangeType(ct) => vec![(ct.table_name(), &ct.column)],
            Change::SplitColumn(sc) => {
                let mut v = vec![(sc.table_name(), &sc.from)];
                v.extend(sc.into.value.iter().map(|i| (sc.table_name(), &i.name)));
                v
            }
            Change::MergeColumns(mc) => {
                let mut v: Vec<_> = mc.from.value.iter().map(|f| (mc.table_name(), f)).collect();
                v.push((mc.table_name(), &mc.into.name));
                v
            }
        }
    }
}

/// `sql: { expand, rollback, contract, gate }`: the escape hatch. Each part runs as
/// written, in one transaction under the plan's lock_timeout with retries; the plan
/// output flags it and shows what `pgphase lint` finds in it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlChange {
    /// Runs in the expand phase; needs `rollback`.
    pub expand: Option<At<String>>,
    /// Undoes `expand` when the plan is rolled back before contract; re-run after an
    /// interrupted rollback, so it must be idempotent (`IF EXISTS`).
    pub rollback: Option<At<String>>,
    /// Runs in the contract phase, after the deploy gate: the point of no return.
    pub contract: Option<At<String>>,
    /// What the application deploy between expand and contract must do.
    pub gate: Option<At<String>>,
}

impl SqlChange {
    /// The parts given, as (field name, text).
    pub fn parts(&self) -> Vec<(&'static str, &At<String>)> {
        [
            ("expand", &self.expand),
            ("rollback", &self.rollback),
            ("contract", &self.contract),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.as_ref().map(|p| (n, p)))
        .collect()
    }
}

/// Statements an `sql` change cannot contain: they cannot run inside the transaction
/// pgphase wraps each part in (or would end it).
fn check_sql_statements(text: &str) -> Result<(), String> {
    let lexed = crate::lint::lexer::lex(text);
    if lexed.statements.is_empty() {
        return Err("no SQL statement".into());
    }
    for st in &lexed.statements {
        let words: Vec<&str> = st.tokens.iter().filter_map(|t| t.word()).collect();
        let first = words.first().copied().unwrap_or("");
        let bad = match first {
            "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint"
            | "release" | "prepare" => Some("transaction control: pgphase runs each part in its own transaction"),
            "vacuum" | "cluster" => Some("it cannot run inside a transaction"),
            "create" | "drop" | "alter" if words.contains(&"database") || words.contains(&"system") || words.contains(&"tablespace") => {
                Some("it cannot run inside a transaction")
            }
            _ if words.contains(&"concurrently") => Some("CONCURRENTLY cannot run inside a transaction; use `add_index` / `drop_index`, which build and drop indexes concurrently with recovery"),
            _ => None,
        };
        if let Some(why) = bad {
            return Err(format!(
                "line {} of this SQL (`{}`) cannot be part of an `sql` change: {why}",
                st.line,
                st.excerpt(60)
            ));
        }
    }
    Ok(())
}

/// `add_column: { table, column: { name, type, nullable, default, unique, check, references }, backfill }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub table: At<String>,
    pub column: At<NewColumn>,
    /// SQL expression over the row, evaluated for existing rows (batched backfill).
    pub backfill: Option<At<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewColumn {
    pub name: At<String>,
    /// SQL type, passed through as written (`text`, `varchar(20)`, `numeric(10,2)`).
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    /// Defaults to true.
    pub nullable: Option<At<bool>>,
    /// SQL expression, passed through as written.
    pub default: Option<At<String>>,
    #[serde(default)]
    pub unique: bool,
    /// SQL boolean expression, passed through as written.
    pub check: Option<At<String>>,
    pub references: Option<At<References>>,
}

impl NewColumn {
    pub fn nullable(&self) -> bool {
        self.nullable.as_ref().is_none_or(|n| n.value)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    pub table: At<String>,
    pub column: At<String>,
    /// `cascade`, `restrict`, `no action` (default), `set null`, `set default`.
    pub on_delete: Option<At<String>>,
}

impl References {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    /// The `ON DELETE` action as SQL keywords (validated at load).
    pub fn on_delete_sql(&self) -> &'static str {
        on_delete_keywords(
            self.on_delete
                .as_ref()
                .map_or("no action", |o| o.value.as_str()),
        )
        .expect("validated at load")
    }
}

fn on_delete_keywords(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().replace('_', " ").as_str() {
        "cascade" => Some("CASCADE"),
        "restrict" => Some("RESTRICT"),
        "no action" => Some("NO ACTION"),
        "set null" => Some("SET NULL"),
        "set default" => Some("SET DEFAULT"),
        _ => None,
    }
}

impl AddColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `drop_column: { table, column }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    pub table: At<String>,
    pub column: At<String>,
}

impl DropColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `add_index: { table, name, columns: [..], unique, where, method }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddIndex {
    pub table: At<String>,
    /// The index name (created in the table's schema).
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
    #[serde(default)]
    pub unique: bool,
    /// Partial-index predicate, an SQL expression passed through as written.
    #[serde(rename = "where")]
    pub predicate: Option<At<String>>,
    /// Access method; `btree` when omitted.
    pub method: Option<At<String>>,
}

/// Index access methods an `add_index` may name.
pub const INDEX_METHODS: [&str; 6] = ["btree", "hash", "gist", "spgist", "gin", "brin"];

impl AddIndex {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    pub fn method(&self) -> &str {
        self.method.as_ref().map_or("btree", |m| m.value.as_str())
    }
}

/// `drop_index: { name }` (`index` or `schema.index`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    pub name: At<String>,
}

impl DropIndex {
    pub fn index_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    pub table: At<String>,
    pub from: At<String>,
    pub to: At<String>,
}

impl RenameColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `set_not_null: { table, column, backfill }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNotNull {
    pub table: At<String>,
    pub column: At<String>,
    /// SQL expression over the row, written into the rows where the column is NULL.
    pub backfill: Option<At<String>>,
}

impl SetNotNull {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `add_check: { table, name, check }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCheck {
    pub table: At<String>,
    pub name: At<String>,
    /// SQL boolean expression, passed through as written.
    pub check: At<String>,
}

impl AddCheck {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `add_foreign_key: { table, name, columns: [..], references: { table, columns: [..] }, on_delete }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddForeignKey {
    pub table: At<String>,
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
    pub references: At<ForeignKeyTarget>,
    /// `cascade`, `restrict`, `no action` (default), `set null`, `set default`.
    pub on_delete: Option<At<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyTarget {
    pub table: At<String>,
    pub columns: At<Vec<At<String>>>,
}

impl AddForeignKey {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    pub fn target_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.references.table).expect("validated at load")
    }
    /// The `ON DELETE` action as SQL keywords (validated at load).
    pub fn on_delete_sql(&self) -> &'static str {
        on_delete_keywords(
            self.on_delete
                .as_ref()
                .map_or("no action", |o| o.value.as_str()),
        )
        .expect("validated at load")
    }
}

/// `drop_not_null: { table, column }`, `drop_default: { table, column }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRef {
    pub table: At<String>,
    pub column: At<String>,
}

impl ColumnRef {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `set_default: { table, column, default }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    pub table: At<String>,
    pub column: At<String>,
    /// SQL expression, passed through as written.
    pub default: At<String>,
}

impl SetDefault {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `add_unique: { table, name, columns: [..] }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUnique {
    pub table: At<String>,
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
}

impl AddUnique {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `create_table: { name, columns: [ { name, type, nullable, default, primary_key } ], primary_key: [..] }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub name: At<String>,
    pub columns: At<Vec<At<TableColumn>>>,
    /// A composite primary key; or mark one column `primary_key: true`.
    pub primary_key: Option<At<Vec<At<String>>>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableColumn {
    pub name: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    /// Defaults to true (false for primary-key columns).
    pub nullable: Option<bool>,
    pub default: Option<At<String>>,
    #[serde(default)]
    pub primary_key: bool,
}

impl CreateTable {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
    /// The primary key columns, from `primary_key:` or the columns marked.
    pub fn key(&self) -> Vec<String> {
        match &self.primary_key {
            Some(k) => k.value.iter().map(|c| c.value.clone()).collect(),
            None => self
                .columns
                .value
                .iter()
                .filter(|c| c.primary_key)
                .map(|c| c.name.value.clone())
                .collect(),
        }
    }
}

/// `drop_table: { name }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    pub name: At<String>,
}

impl DropTable {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
}

/// `drop_constraint: { table, name }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    pub table: At<String>,
    pub name: At<String>,
}

impl DropConstraint {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `rename_table: { from, to }`: `to` is a bare name (the table stays in its schema) or
/// `schema.name` in the same schema.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    pub from: At<String>,
    pub to: At<String>,
}

impl RenameTable {
    pub fn from_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.from).expect("validated at load")
    }
    /// The new name, in `from`'s schema when written bare.
    pub fn to_name(&self) -> QualifiedName {
        let to = QualifiedName::parse(&self.to).expect("validated at load");
        if names_a_schema(&self.to) {
            to
        } else {
            QualifiedName::new(self.from_name().schema.as_str(), to.name.as_str())
        }
    }
}

/// Whether a name as written in a plan has a schema part (`schema.name`).
fn names_a_schema(text: &str) -> bool {
    // a prefix adds a part: `x.<text>` has three parts exactly when `text` has two
    QualifiedName::parse(&format!("\"x\".{text}")).is_err()
}

/// `add_enum_value: { type, value, before | after }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEnumValue {
    /// The enum type, `type` or `schema.type`.
    #[serde(rename = "type")]
    pub type_name: At<String>,
    pub value: At<String>,
    /// The existing value the new one sorts before (exclusive with `after`).
    pub before: Option<At<String>>,
    /// The existing value the new one sorts after; neither: it sorts last.
    pub after: Option<At<String>>,
}

impl AddEnumValue {
    pub fn type_qname(&self) -> QualifiedName {
        QualifiedName::parse(&self.type_name).expect("validated at load")
    }
}

/// An enum label: 1 to 63 bytes (NAMEDATALEN - 1).
fn check_enum_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("an enum value cannot be empty".into());
    }
    if label.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "`{label}` is {} bytes; PostgreSQL enum values are at most {MAX_IDENT_BYTES} bytes",
            label.len()
        ));
    }
    if label.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character; write the value without one",
            label.escape_debug()
        ));
    }
    Ok(())
}

/// `change_type: { table, column, type, using, reverse }`: `using` computes the new
/// type from the old value, `reverse` the old type from the new value; both are SQL
/// expressions over the column (default: a plain cast).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeType {
    pub table: At<String>,
    pub column: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    pub using: Option<At<String>>,
    pub reverse: Option<At<String>>,
}

impl ChangeType {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// A column derived from existing ones: `{ name, type, using, nullable }`. `using` is an
/// SQL expression over the row (the old columns); `nullable` defaults to true unless
/// every old column is NOT NULL.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedColumn {
    pub name: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    pub using: At<String>,
    pub nullable: Option<At<bool>>,
}

/// `split_column: { table, from, into: [ { name, type, using } ], reverse }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitColumn {
    pub table: At<String>,
    pub from: At<String>,
    pub into: At<Vec<DerivedColumn>>,
    /// SQL expression over the new columns that rebuilds `from`.
    pub reverse: At<String>,
}

impl SplitColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

/// `merge_columns: { table, from: [..], into: { name, type, using }, reverse: { old: expr } }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeColumns {
    pub table: At<String>,
    pub from: At<Vec<At<String>>>,
    pub into: At<DerivedColumn>,
    /// For every old column, an SQL expression over the new column that rebuilds it.
    pub reverse: At<std::collections::BTreeMap<String, At<String>>>,
}

impl MergeColumns {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
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
        match &change.value {
            Change::RenameColumn(rc) => {
                QualifiedName::parse(&rc.table).map_err(|m| err(rc.table.pos, m))?;
                check_ident(&rc.from).map_err(|m| err(rc.from.pos, m))?;
                check_ident(&rc.to).map_err(|m| err(rc.to.pos, m))?;
                if rc.from.value == rc.to.value {
                    return Err(err(
                        rc.to.pos,
                        format!(
                            "`to` is the same as `from` (`{}`): nothing to rename",
                            rc.to.value
                        ),
                    ));
                }
            }
            Change::AddColumn(ac) => {
                QualifiedName::parse(&ac.table).map_err(|m| err(ac.table.pos, m))?;
                let col = &ac.column.value;
                check_ident(&col.name).map_err(|m| err(col.name.pos, m))?;
                check_sql_text(&col.type_sql, "type").map_err(|m| err(col.type_sql.pos, m))?;
                for (e, what) in [
                    (&col.default, "default"),
                    (&col.check, "check"),
                    (&ac.backfill, "backfill"),
                ] {
                    if let Some(e) = e {
                        check_sql_text(e, what).map_err(|m| err(e.pos, m))?;
                    }
                }
                if let Some(r) = &col.references {
                    QualifiedName::parse(&r.table).map_err(|m| err(r.table.pos, m))?;
                    check_ident(&r.column).map_err(|m| err(r.column.pos, m))?;
                    if let Some(o) = &r.on_delete {
                        if on_delete_keywords(o).is_none() {
                            return Err(err(
                                o.pos,
                                format!("`{}` is not an ON DELETE action; use cascade, restrict, no action, set null or set default", o.value),
                            ));
                        }
                    }
                }
                if !col.nullable() && col.default.is_none() && ac.backfill.is_none() {
                    let pos = col.nullable.as_ref().map_or(ac.column.pos, |n| n.pos);
                    return Err(err(
                        pos,
                        format!(
                            "`{}` is NOT NULL but has neither `default` nor `backfill`: existing rows would have no value; give one of them (or make it nullable)",
                            col.name.value
                        ),
                    ));
                }
            }
            Change::DropColumn(dc) => {
                QualifiedName::parse(&dc.table).map_err(|m| err(dc.table.pos, m))?;
                check_ident(&dc.column).map_err(|m| err(dc.column.pos, m))?;
            }
            Change::AddIndex(ai) => {
                QualifiedName::parse(&ai.table).map_err(|m| err(ai.table.pos, m))?;
                check_ident(&ai.name).map_err(|m| err(ai.name.pos, m))?;
                if ai.columns.value.is_empty() {
                    return Err(err(
                        ai.columns.pos,
                        "`columns` is empty: list the columns to index".into(),
                    ));
                }
                for c in &ai.columns.value {
                    check_ident(c).map_err(|m| err(c.pos, m))?;
                }
                if let Some(p) = &ai.predicate {
                    check_sql_text(p, "where").map_err(|m| err(p.pos, m))?;
                }
                if let Some(m) = &ai.method {
                    if !INDEX_METHODS.contains(&m.value.as_str()) {
                        return Err(err(
                            m.pos,
                            format!(
                                "`{}` is not an index method; use one of: {}",
                                m.value,
                                INDEX_METHODS.join(", ")
                            ),
                        ));
                    }
                }
            }
            Change::DropIndex(di) => {
                QualifiedName::parse(&di.name).map_err(|m| err(di.name.pos, m))?;
            }
            Change::DropNotNull(c) | Change::DropDefault(c) => {
                QualifiedName::parse(&c.table).map_err(|m| err(c.table.pos, m))?;
                check_ident(&c.column).map_err(|m| err(c.column.pos, m))?;
            }
            Change::SetDefault(sd) => {
                QualifiedName::parse(&sd.table).map_err(|m| err(sd.table.pos, m))?;
                check_ident(&sd.column).map_err(|m| err(sd.column.pos, m))?;
                check_sql_text(&sd.default, "default").map_err(|m| err(sd.default.pos, m))?;
            }
            Change::AddUnique(au) => {
                QualifiedName::parse(&au.table).map_err(|m| err(au.table.pos, m))?;
                check_ident(&au.name).map_err(|m| err(au.name.pos, m))?;
                if au.columns.value.is_empty() {
                    return Err(err(
                        au.columns.pos,
                        "`columns` is empty: list the key columns".into(),
                    ));
                }
                for c in &au.columns.value {
                    check_ident(c).map_err(|m| err(c.pos, m))?;
                }
            }
            Change::CreateTable(ct) => {
                QualifiedName::parse(&ct.name).map_err(|m| err(ct.name.pos, m))?;
                if ct.columns.value.is_empty() {
                    return Err(err(
                        ct.columns.pos,
                        "`columns` is empty: list the table's columns".into(),
                    ));
                }
                let mut seen: Vec<&str> = Vec::new();
                for c in &ct.columns.value {
                    check_ident(&c.name).map_err(|m| err(c.name.pos, m))?;
                    check_sql_text(&c.type_sql, "type").map_err(|m| err(c.type_sql.pos, m))?;
                    if let Some(d) = &c.default {
                        check_sql_text(d, "default").map_err(|m| err(d.pos, m))?;
                    }
                    if seen.contains(&c.name.value.as_str()) {
                        return Err(err(
                            c.name.pos,
                            format!("column `{}` is listed twice", c.name.value),
                        ));
                    }
                    seen.push(&c.name.value);
                }
                if let Some(k) = &ct.primary_key {
                    if ct.columns.value.iter().any(|c| c.primary_key) {
                        return Err(err(k.pos, "give the primary key either as `primary_key: [..]` or on the columns, not both".into()));
                    }
                    for c in &k.value {
                        if !seen.contains(&c.value.as_str()) {
                            return Err(err(
                                c.pos,
                                format!(
                                    "primary key column `{}` is not among the columns",
                                    c.value
                                ),
                            ));
                        }
                    }
                }
            }
            Change::DropConstraint(dc) => {
                QualifiedName::parse(&dc.table).map_err(|m| err(dc.table.pos, m))?;
                check_ident(&dc.name).map_err(|m| err(dc.name.pos, m))?;
            }
            Change::Sql(sc) => {
                if sc.expand.is_none() && sc.contract.is_none() {
                    return Err(err(
                        change.pos,
                        "an `sql` change needs `expand` (run before the deploy gate, with a `rollback`) or `contract` (run after it), or both".into(),
                    ));
                }
                match (&sc.expand, &sc.rollback) {
                    (Some(e), None) => {
                        return Err(err(
                            e.pos,
                            "`expand` needs a `rollback`: the SQL that undoes it, so the plan can be rolled back before contract (make it idempotent, e.g. `DROP … IF EXISTS`)".into(),
                        ))
                    }
                    (None, Some(r)) => {
                        return Err(err(
                            r.pos,
                            "`rollback` undoes `expand`, and there is no `expand` (a `contract` cannot be rolled back)".into(),
                        ))
                    }
                    _ => {}
                }
                if let (Some(g), None) = (&sc.gate, &sc.contract) {
                    return Err(err(
                        g.pos,
                        "`gate` is the deploy between `expand` and `contract`, and there is no `contract`".into(),
                    ));
                }
                for (what, part) in sc.parts() {
                    check_sql_statements(part)
                        .map_err(|m| err(part.pos, format!("`{what}`: {m}")))?;
                }
            }
            Change::DropTable(dt) => {
                QualifiedName::parse(&dt.name).map_err(|m| err(dt.name.pos, m))?;
            }
            Change::ChangeType(ct) => {
                QualifiedName::parse(&ct.table).map_err(|m| err(ct.table.pos, m))?;
                check_ident(&ct.column).map_err(|m| err(ct.column.pos, m))?;
                check_sql_text(&ct.type_sql, "type").map_err(|m| err(ct.type_sql.pos, m))?;
                for (e, what) in [(&ct.using, "using"), (&ct.reverse, "reverse")] {
                    if let Some(e) = e {
                        check_sql_text(e, what).map_err(|m| err(e.pos, m))?;
                    }
                }
            }
            Change::SplitColumn(sc) => {
                QualifiedName::parse(&sc.table).map_err(|m| err(sc.table.pos, m))?;
                check_ident(&sc.from).map_err(|m| err(sc.from.pos, m))?;
                check_sql_text(&sc.reverse, "reverse").map_err(|m| err(sc.reverse.pos, m))?;
                if sc.into.value.len() < 2 {
                    return Err(err(
                        sc.into.pos,
                        "`into` needs at least two columns to split into (to change one column's type, use change_type)".into(),
                    ));
                }
                check_derived(&sc.into.value, &[&sc.from]).map_err(|(p, m)| err(p, m))?;
            }
            Change::MergeColumns(mc) => {
                QualifiedName::parse(&mc.table).map_err(|m| err(mc.table.pos, m))?;
                if mc.from.value.len() < 2 {
                    return Err(err(
                        mc.from.pos,
                        "`from` needs at least two columns to merge".into(),
                    ));
                }
                let mut seen: Vec<&str> = Vec::new();
                for f in &mc.from.value {
                    check_ident(f).map_err(|m| err(f.pos, m))?;
                    if seen.contains(&f.value.as_str()) {
                        return Err(err(f.pos, format!("column `{}` is listed twice", f.value)));
                    }
                    seen.push(&f.value);
                }
                let from: Vec<&At<String>> = mc.from.value.iter().collect();
                check_derived(std::slice::from_ref(&mc.into.value), &from)
                    .map_err(|(p, m)| err(p, m))?;
                for f in &mc.from.value {
                    if !mc.reverse.value.contains_key(&f.value) {
                        return Err(err(
                            mc.reverse.pos,
                            format!("`reverse` has no expression for `{}`: give one for every column of `from` (old clients still read them)", f.value),
                        ));
                    }
                }
                for (k, e) in &mc.reverse.value {
                    if !seen.contains(&k.as_str()) {
                        return Err(err(
                            e.pos,
                            format!("`reverse` names `{k}`, which is not in `from`"),
                        ));
                    }
                    check_sql_text(e, "reverse").map_err(|m| err(e.pos, m))?;
                }
            }
            Change::SetNotNull(sn) => {
                QualifiedName::parse(&sn.table).map_err(|m| err(sn.table.pos, m))?;
                check_ident(&sn.column).map_err(|m| err(sn.column.pos, m))?;
                if let Some(b) = &sn.backfill {
                    check_sql_text(b, "backfill").map_err(|m| err(b.pos, m))?;
                }
            }
            Change::AddCheck(ck) => {
                QualifiedName::parse(&ck.table).map_err(|m| err(ck.table.pos, m))?;
                check_ident(&ck.name).map_err(|m| err(ck.name.pos, m))?;
                check_sql_text(&ck.check, "check").map_err(|m| err(ck.check.pos, m))?;
            }
            Change::RenameTable(rt) => {
                let from = QualifiedName::parse(&rt.from).map_err(|m| err(rt.from.pos, m))?;
                let to = QualifiedName::parse(&rt.to).map_err(|m| err(rt.to.pos, m))?;
                check_ident(to.name.as_str()).map_err(|m| err(rt.to.pos, m))?;
                if names_a_schema(&rt.to) && to.schema != from.schema {
                    return Err(err(
                        rt.to.pos,
                        format!(
                            "`to` is in schema `{}` but `{}` is in `{}`: rename_table keeps the table in its schema (ALTER TABLE … RENAME cannot move it, and the old name's view would resolve differently under each search_path); write the new name without a schema, and move the table in a separate change",
                            to.schema, rt.from.value, from.schema
                        ),
                    ));
                }
                if rt.to_name() == from {
                    return Err(err(
                        rt.to.pos,
                        format!(
                            "`to` is the same as `from` (`{}`): nothing to rename",
                            rt.to.value
                        ),
                    ));
                }
            }
            Change::AddEnumValue(ev) => {
                QualifiedName::parse(&ev.type_name).map_err(|m| err(ev.type_name.pos, m))?;
                check_enum_label(&ev.value).map_err(|m| err(ev.value.pos, m))?;
                if let (Some(_), Some(after)) = (&ev.before, &ev.after) {
                    return Err(err(
                        after.pos,
                        "give either `before` or `after`, not both".into(),
                    ));
                }
                if let Some(n) = ev.before.as_ref().or(ev.after.as_ref()) {
                    check_enum_label(n).map_err(|m| err(n.pos, m))?;
                    if n.value == ev.value.value {
                        return Err(err(
                            n.pos,
                            format!(
                                "the new value `{}` cannot be placed next to itself; name an existing value",
                                n.value
                            ),
                        ));
                    }
                }
            }
            Change::AddForeignKey(fk) => {
                QualifiedName::parse(&fk.table).map_err(|m| err(fk.table.pos, m))?;
                check_ident(&fk.name).map_err(|m| err(fk.name.pos, m))?;
                let target = &fk.references.value;
                QualifiedName::parse(&target.table).map_err(|m| err(target.table.pos, m))?;
                for cols in [&fk.columns, &target.columns] {
                    if cols.value.is_empty() {
                        return Err(err(
                            cols.pos,
                            "`columns` is empty: list the key columns".into(),
                        ));
                    }
                    for c in &cols.value {
                        check_ident(c).map_err(|m| err(c.pos, m))?;
                    }
                }
                if fk.columns.value.len() != target.columns.value.len() {
                    return Err(err(
                        target.columns.pos,
                        format!(
                            "{} referencing column(s) but {} referenced column(s): they must pair up",
                            fk.columns.value.len(),
                            target.columns.value.len()
                        ),
                    ));
                }
                if let Some(o) = &fk.on_delete {
                    if on_delete_keywords(o).is_none() {
                        return Err(err(
                            o.pos,
                            format!("`{}` is not an ON DELETE action; use cascade, restrict, no action, set null or set default", o.value),
                        ));
                    }
                }
            }
        }
    }
    // Two changes creating or dropping the same index cannot share a plan.
    let mut index_names: Vec<(QualifiedName, Pos)> = Vec::new();
    for change in &raw.changes.value {
        let (name, pos) = match &change.value {
            Change::AddIndex(ai) => (
                QualifiedName::new(ai.table_name().schema.as_str(), ai.name.value.clone()),
                ai.name.pos,
            ),
            Change::DropIndex(di) => (di.index_name(), di.name.pos),
            _ => continue,
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
        match &change.value {
            Change::RenameTable(rt) => {
                let names = [rt.from_name(), rt.to_name()];
                for (j, other) in raw.changes.value.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    let hit = crate::recipe::tables_of(&other.value)
                        .into_iter()
                        .find(|t| names.contains(t));
                    if let Some(t) = hit {
                        let pos = other.pos;
                        return Err(err(
                            if j > i { pos } else { change.pos },
                            format!(
                                "table `{}` is renamed by the change at line {} and changed by the change at line {}: rename it in a plan of its own and make the other plan depend on it (depends_on)",
                                t.display_short(),
                                change.pos.line,
                                other.pos.line
                            ),
                        ));
                    }
                }
            }
            Change::AddEnumValue(ev) => {
                for other in &raw.changes.value[..i] {
                    if let Change::AddEnumValue(o) = &other.value {
                        if o.type_qname() == ev.type_qname() && o.value.value == ev.value.value {
                            return Err(err(
                                ev.value.pos,
                                format!(
                                    "value `{}` of `{}` is already added by the change at line {}",
                                    ev.value.value, ev.type_name.value, other.pos.line
                                ),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // Two changes on the same column of one table cannot share phases.
    let mut touched: Vec<(QualifiedName, String, Pos)> = Vec::new();
    for change in &raw.changes.value {
        for (table, col) in change.value.touched_columns() {
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

/// A type or an SQL expression written in the plan: passed through as written, so it
/// must be one non-empty fragment, not a statement list.
/// Names, types and expressions of derived columns; none may be one of `old`.
fn check_derived(cols: &[DerivedColumn], old: &[&At<String>]) -> Result<(), (Pos, String)> {
    let mut seen: Vec<&str> = Vec::new();
    for c in cols {
        check_ident(&c.name).map_err(|m| (c.name.pos, m))?;
        check_sql_text(&c.type_sql, "type").map_err(|m| (c.type_sql.pos, m))?;
        check_sql_text(&c.using, "using").map_err(|m| (c.using.pos, m))?;
        if seen.contains(&c.name.value.as_str()) || old.iter().any(|o| o.value == c.name.value) {
            return Err((
                c.name.pos,
                format!(
                    "column `{}` is listed twice (a new column needs a name of its own)",
                    c.name.value
                ),
            ));
        }
        seen.push(&c.name.value);
    }
    Ok(())
}

fn check_sql_text(text: &str, what: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if text.contains(';') {
        return Err(format!(
            "`{what}` contains `;`: it is one SQL expression, not a statement list"
        ));
    }
    if text.contains("--") || text.contains("/*") {
        return Err(format!(
            "`{what}` contains a comment; write the expression only"
        ));
    }
    Ok(())
}

fn check_ident(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "`{name}` is {} bytes; PostgreSQL names are at most {MAX_IDENT_BYTES} bytes",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character (line break, tab, NUL…); PostgreSQL names here must not",
            name.escape_debug()
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
