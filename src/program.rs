//! What a plan means: ordered phases of steps, each phase ending in an optional gate.
//!
//! A [`Program`] is pure data. It is expanded once, against the live catalog, when a
//! plan starts, and stored in the database; every later command (advance, rollback,
//! status) works from the stored program, so what runs is exactly what `plan` printed.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::plan::{Plan, Settings};
use crate::sql::QualifiedName;

pub use crate::phase::PhaseKind;

/// The strongest table lock a step takes, for the plan output and the lint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// Serialized as PostgreSQL names them (`"ACCESS EXCLUSIVE"`), like the text output.
pub enum LockLevel {
    /// Blocks everything; only for catalog-only statements, under lock_timeout.
    #[serde(rename = "ACCESS EXCLUSIVE")]
    AccessExclusive,
    /// Blocks writes (CREATE TRIGGER, FOREIGN KEY on the referenced side).
    #[serde(rename = "SHARE ROW EXCLUSIVE")]
    ShareRowExclusive,
    /// Blocks other writers' DDL, not reads or writes (CONCURRENTLY, VALIDATE).
    #[serde(rename = "SHARE UPDATE EXCLUSIVE")]
    ShareUpdateExclusive,
    /// Row locks on a batch of rows (backfill).
    #[serde(rename = "ROW EXCLUSIVE")]
    RowExclusive,
    /// Reads only.
    #[serde(rename = "ACCESS SHARE")]
    AccessShare,
    /// EXCLUSIVE on a type (`ALTER TYPE … ADD VALUE`): no table lock; the application's
    /// queries do not take it.
    #[serde(rename = "EXCLUSIVE")]
    Exclusive,
}

impl LockLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::AccessShare => "ACCESS SHARE",
            LockLevel::Exclusive => "EXCLUSIVE",
        }
    }
    /// Whether waiting for this lock would queue the application behind us.
    pub fn blocks_application(self) -> bool {
        matches!(
            self,
            LockLevel::AccessExclusive | LockLevel::ShareRowExclusive
        )
    }
}

impl fmt::Display for LockLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// SQL run in one short transaction under `SET LOCAL lock_timeout`, retried with
    /// jittered backoff when the lock is not granted in time. `skip_if` is a query
    /// returning one boolean: true means the step already took effect (idempotent re-run).
    Sql {
        sql: String,
        skip_if: Option<String>,
    },
    /// `CREATE [UNIQUE] INDEX CONCURRENTLY`, outside any transaction. An invalid index of
    /// the same name left by an interrupted build is dropped concurrently first.
    CreateIndexConcurrently { index: QualifiedName, sql: String },
    /// `DROP INDEX CONCURRENTLY IF EXISTS`.
    DropIndexConcurrently { index: QualifiedName },
    /// Batched keyset copy, one transaction per batch with its checkpoint.
    Backfill(BackfillSpec),
    /// A query returning one bigint: the count of offending rows, which must be 0.
    /// With `scan`, it runs as that scan's batches instead (the counts add up); `sql`
    /// is the one-statement form shown to humans.
    Verify {
        sql: String,
        failure: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scan: Option<KeyedScan>,
    },
}

/// A read of every row of a table in key-ordered batches, each its own short
/// statement: `SELECT {select} FROM table WHERE <key range>` returns one bigint per
/// batch. A verification that reads a large table this way holds no snapshot for the
/// whole scan and leaves room for the application between batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyedScan {
    pub table: QualifiedName,
    /// Key columns (quoted) and their types, in order.
    pub key: Vec<(String, String)>,
    /// An aggregate returning one bigint, e.g. `count(*) FILTER (WHERE …)`.
    pub select: String,
}

impl KeyedScan {
    /// The key ranges are a backfill's (same bound query, same key encoding).
    fn ranges(&self) -> BackfillSpec {
        BackfillSpec {
            table: self.table.clone(),
            key: self.key.clone(),
            set: String::new(),
            needs_work: "true".into(),
            batch_size: 0,
        }
    }
    /// See [`BackfillSpec::bound_sql`].
    pub fn bound_sql(&self, resume: bool) -> String {
        self.ranges().bound_sql(resume)
    }
    /// One batch: keys after `$1..$k` (when `lower`) up to the bound (when `upper`).
    pub fn batch_sql(&self, lower: bool, upper: bool) -> String {
        let conds = self.ranges().range_conds(lower, upper);
        let wh = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        format!("SELECT ({})::int8 FROM {}{wh}", self.select, self.table)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackfillSpec {
    pub table: QualifiedName,
    /// Key columns (quoted) and their types, in order.
    pub key: Vec<(String, String)>,
    /// `SET` list, e.g. `body = contents`.
    pub set: String,
    /// Condition on the row (unqualified columns) that is true while the row needs work.
    pub needs_work: String,
    pub batch_size: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// One line for humans: what and why.
    pub description: String,
    pub action: Action,
    pub lock: LockLevel,
    pub table: Option<QualifiedName>,
    /// The step adds, drops or retypes a column of `table` (or swaps one in): its row
    /// type changes, so a running version's cached `SELECT *` / `RETURNING *` on it
    /// fails (SQLSTATE 0A000, `cached plan must not change result type`) until its
    /// connection prepares the statement again. Shown by `plan`, the gates and the
    /// checklist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changes_row_type: bool,
}

impl Step {
    pub fn sql(
        description: impl Into<String>,
        table: &QualifiedName,
        lock: LockLevel,
        sql: String,
    ) -> Step {
        Step {
            description: description.into(),
            action: Action::Sql { sql, skip_if: None },
            lock,
            table: Some(table.clone()),
            changes_row_type: false,
        }
    }
    /// Marks the step as changing its table's row type (see `changes_row_type`).
    pub fn changes_row_type(mut self) -> Step {
        self.changes_row_type = true;
        self
    }
    /// What a marked step means for applications, one line.
    pub fn row_type_warning(&self) -> Option<String> {
        let table = self.table.as_ref()?;
        self.changes_row_type.then(|| {
            format!(
                "changes the row type of {}: cached `SELECT *` / `RETURNING *` statements on it fail (0A000) until the connection re-prepares",
                table.display_short()
            )
        })
    }
    pub fn skip_if(mut self, query: String) -> Step {
        if let Action::Sql { skip_if, .. } = &mut self.action {
            *skip_if = Some(query);
        }
        self
    }
    /// The SQL a human would run for this step, for `plan` and checklists.
    pub fn display_sql(&self) -> String {
        match &self.action {
            Action::Sql { sql, .. } => sql.clone(),
            Action::CreateIndexConcurrently { sql, .. } => sql.clone(),
            Action::DropIndexConcurrently { index } => {
                format!("DROP INDEX CONCURRENTLY IF EXISTS {index};")
            }
            Action::Backfill(b) => format!(
                "-- in batches, one short transaction each, until no rows are left; the batch size\n-- adapts to take about backfill.target_batch_time; the checkpoint (last key, rows)\n-- is saved in the batch's transaction, which also sets {BACKFILL_GUC} = on (see the triggers)\n-- the batch's last key ($1: the previous batch's last key, $2: the batch size):\n{};\n-- the batch ($1: the previous batch's last key, $2: the key found above; the last batch has no upper bound):\n{};",
                b.bound_sql(true),
                b.update_sql(true, true)
            ),
            Action::Verify {
                sql,
                scan: Some(scan),
                ..
            } => format!(
                "-- in key-ordered batches, one short statement each, the counts added up; the same as:\n{sql}\n-- a batch ($1: the previous batch's last key, $2: the next bound, found like a backfill's):\n{};",
                scan.batch_sql(true, true)
            ),
            Action::Verify { sql, .. } => sql.clone(),
        }
    }
    pub fn runs_in_transaction(&self) -> bool {
        !matches!(
            self.action,
            Action::CreateIndexConcurrently { .. } | Action::DropIndexConcurrently { .. }
        )
    }
}

/// Set (`SET LOCAL`) in each backfill batch: the sync triggers' WHEN clause skips rows
/// the backfill writes, since the batch sets exactly what the trigger would.
pub const BACKFILL_GUC: &str = "pgphase.backfill";

impl BackfillSpec {
    fn key_list(&self) -> String {
        let cols: Vec<&str> = self.key.iter().map(|(c, _)| c.as_str()).collect();
        tuple(&cols.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    }

    /// Key parameters `$first..` back to the key's types, as a tuple. Keys travel as
    /// the bytes of their text form in the database's encoding (`convert_to` /
    /// `convert_from`), never through the client encoding: a `SQL_ASCII` or `LATIN1`
    /// database's bytes that are not UTF-8 round-trip unchanged.
    fn key_params(&self, first: usize) -> String {
        tuple(
            &self
                .key
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| {
                    format!(
                        "CAST(convert_from(${}::bytea, getdatabaseencoding()) AS {ty})",
                        first + i
                    )
                })
                .collect::<Vec<_>>(),
        )
    }

    /// Finds the upper bound of the next batch: the key `$k+1` rows after the previous
    /// batch's last key (`$1..$k`, see [`BackfillSpec::key_params`]; none for the first
    /// batch). Returns the key (as bytes), or no row when fewer rows are left (the last
    /// batch).
    pub fn bound_sql(&self, resume: bool) -> String {
        let k = self.key.len();
        // The key is converted to text once, outside: a scan node projects every row
        // it returns, those OFFSET skips too. Aliased inside: a bare `id` output column
        // of an expression would let `ORDER BY id` sort by it instead of using the
        // key's index.
        let inner: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} AS pgphase_k{i}"))
            .collect();
        let outer: Vec<String> = (0..k)
            .map(|i| format!("convert_to(pgphase_k{i}::text, getdatabaseencoding())"))
            .collect();
        let lower = if resume {
            format!(" WHERE {} > {}", self.key_list(), self.key_params(1))
        } else {
            String::new()
        };
        let offset = if resume { k + 1 } else { 1 };
        format!(
            "SELECT {} FROM (SELECT {} FROM {}{lower} ORDER BY {} LIMIT 1 OFFSET ${offset}::int8 - 1) pgphase_bound",
            outer.join(", "),
            inner.join(", "),
            self.table,
            self.key
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// Counts the rows after the previous batch's last key (`$1..$k`), for the last batch.
    pub fn remaining_sql(&self, resume: bool) -> String {
        let lower = if resume {
            format!(" WHERE {} > {}", self.key_list(), self.key_params(1))
        } else {
            String::new()
        };
        format!("SELECT count(*) FROM {}{lower}", self.table)
    }

    /// Keys after `$1..$k` (when `lower`) up to and including the next `k` parameters
    /// (when `upper`).
    fn range_conds(&self, lower: bool, upper: bool) -> Vec<String> {
        let k = self.key.len();
        let mut conds = Vec::new();
        if lower {
            conds.push(format!("{} > {}", self.key_list(), self.key_params(1)));
        }
        if upper {
            let first = if lower { k + 1 } else { 1 };
            conds.push(format!("{} <= {}", self.key_list(), self.key_params(first)));
        }
        conds
    }

    /// Updates the rows of one batch that still need work: keys after `$1..$k` (the
    /// previous batch's last key, when `lower`) up to and including the bound (the next
    /// `k` parameters, when `upper`). A key range, so one index range scan.
    pub fn update_sql(&self, lower: bool, upper: bool) -> String {
        let mut conds = self.range_conds(lower, upper);
        conds.push(format!("({})", self.needs_work));
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.table,
            self.set,
            conds.join(" AND ")
        )
    }
}

/// "change the row type of comments (in contract): …", for the marked steps (or
/// undo steps) of `phases`; None when there are none.
pub fn row_type_warning(phases: &[Phase], rollback: bool) -> Option<String> {
    let mut tables: Vec<String> = Vec::new();
    let mut what = Vec::new();
    for ph in phases {
        let steps = if rollback { &ph.rollback } else { &ph.steps };
        for s in steps.iter().filter(|s| s.changes_row_type) {
            if let Some(t) = &s.table {
                let t = t.display_short();
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
            if !what.contains(&ph.kind.as_str()) {
                what.push(ph.kind.as_str());
            }
        }
    }
    if what.is_empty() {
        return None;
    }
    Some(format!(
        "change the row type of {} (in {}): statements a running version's driver cached with `SELECT *` or `RETURNING *` on it fail (SQLSTATE 0A000, cached plan must not change result type) until each connection prepares them again; explicit column lists are not affected",
        tables.join(", "),
        what.join("; ")
    ))
}

fn tuple(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("({})", items.join(", "))
    }
}

/// What the application deploy must do before the next phase may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Imperative text, one item per change: "deploy the version that …".
    pub items: Vec<String>,
    /// What the phases this gate lets run do to the application that the items do not
    /// say: "the next phases change the row type of comments …".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Gate {
    pub fn text(&self) -> String {
        self.items
            .iter()
            .chain(&self.warnings)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub kind: PhaseKind,
    pub steps: Vec<Step>,
    /// Undo steps, run in order when the plan is rolled back after this phase began.
    pub rollback: Vec<Step>,
    /// The deploy to confirm after this phase, before the next one.
    pub gate: Option<Gate>,
    /// Running this phase makes rollback impossible.
    pub point_of_no_return: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub plan: String,
    pub description: Option<String>,
    pub settings: Settings,
    pub phases: Vec<Phase>,
    /// Facts the expansion relied on or could not know (offline expansion).
    pub notes: Vec<String>,
    /// The tables and columns the plan's changes name: `start` refuses a second active
    /// plan on the same columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub footprint: Vec<Touch>,
    /// What contract drops, with what depended on it when the plan started: before
    /// contract begins, anything that depends on it since is refused (nothing runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contract_drops: Vec<ContractDrop>,
}

/// A table a plan touches, and which of its columns (None: the table as a whole).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub table: QualifiedName,
    pub columns: Option<Vec<String>>,
    /// The change kinds that touch it, for messages.
    pub kinds: Vec<String>,
}

/// A column (or table) contract drops, and the identities (`classid`, `objid`) of the
/// objects that depended on it when the plan started — carried over, or dropped with
/// it by design.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContractDrop {
    pub table: QualifiedName,
    /// The column as it was named at start; None: the table.
    pub column: Option<String>,
    /// The column's `attnum`, which a rename or a swap does not change.
    pub attnum: Option<i16>,
    pub known: Vec<(u32, u32)>,
    /// The name lives on after contract (a shadow column takes it): statements naming
    /// it are the new version's too, so they are no evidence of the old one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name_stays: bool,
}

/// One change's part of a phase.
#[derive(Clone, Debug, Default)]
pub struct Contribution {
    pub steps: Vec<Step>,
    pub rollback: Vec<Step>,
    pub gate_after: Option<String>,
}

/// What a recipe returns: its contributions per phase.
#[derive(Clone, Debug, Default)]
pub struct RecipeOutput {
    pub phases: Vec<(PhaseKind, Contribution)>,
    pub notes: Vec<String>,
    /// What its contract drops (see [`Program::contract_drops`]).
    pub drops: Vec<ContractDrop>,
}

impl Program {
    /// Merges the recipes' contributions into shared phases: one deploy per gate for the
    /// whole plan. Within a phase, steps keep the order of the changes in the plan;
    /// rollback steps run in reverse change order. Phases with nothing to do are dropped.
    pub fn assemble(plan: &Plan, outputs: Vec<RecipeOutput>) -> Program {
        let mut phases = Vec::new();
        let mut notes = Vec::new();
        for kind in PhaseKind::ALL {
            let mut phase = Phase {
                kind,
                steps: Vec::new(),
                rollback: Vec::new(),
                gate: None,
                point_of_no_return: kind == PhaseKind::Contract,
            };
            let mut gate_items = Vec::new();
            let mut rollbacks = Vec::new();
            for out in &outputs {
                for (k, c) in &out.phases {
                    if *k != kind {
                        continue;
                    }
                    phase.steps.extend(c.steps.iter().cloned());
                    rollbacks.push(c.rollback.clone());
                    if let Some(g) = &c.gate_after {
                        gate_items.push(g.clone());
                    }
                }
            }
            for r in rollbacks.into_iter().rev() {
                phase.rollback.extend(r);
            }
            if !gate_items.is_empty() {
                phase.gate = Some(Gate {
                    items: gate_items,
                    warnings: Vec::new(),
                });
            }
            if !phase.steps.is_empty() || phase.gate.is_some() {
                phases.push(phase);
            }
        }
        let mut contract_drops = Vec::new();
        for out in outputs {
            notes.extend(out.notes);
            contract_drops.extend(out.drops);
        }
        // A gate after the last phase gates nothing: the plan completes there. Say what
        // it asked as a note instead of showing a gate that is never waited at.
        while let Some(last) = phases.last_mut() {
            if let Some(g) = last.gate.take() {
                notes.push(format!("after the plan completes: {}", g.text()));
            }
            if !last.steps.is_empty() {
                break;
            }
            phases.pop(); // it only held that gate
        }
        let mut program = Program {
            plan: plan.name.clone(),
            description: plan.description.clone(),
            settings: plan.settings.clone(),
            phases,
            notes,
            footprint: Vec::new(),
            contract_drops,
        };
        program.warn_at_gates();
        program
    }

    /// Each gate says which of the phases it lets run change a table's row type, so the
    /// version deployed there is one whose driver does not hold cached `SELECT *`.
    fn warn_at_gates(&mut self) {
        for g in 0..self.phases.len() {
            if self.phases[g].gate.is_none() {
                continue;
            }
            let end = (g + 1..self.phases.len())
                .find(|&i| self.phases[i].gate.is_some())
                .unwrap_or(self.phases.len() - 1);
            if let Some(w) = row_type_warning(&self.phases[g + 1..=end.max(g)], false) {
                if let Some(gate) = &mut self.phases[g].gate {
                    gate.warnings.push(format!("the next phases {w}"));
                }
            }
        }
    }

    /// Every step (and undo step, when `rollback`) that changes a table's row type.
    pub fn row_type_steps(&self, rollback: bool) -> Vec<(PhaseKind, &Step)> {
        self.phases
            .iter()
            .flat_map(|ph| {
                let steps = if rollback { &ph.rollback } else { &ph.steps };
                steps
                    .iter()
                    .filter(|s| s.changes_row_type)
                    .map(move |s| (ph.kind, s))
            })
            .collect()
    }

    pub fn phase_index(&self, kind: PhaseKind) -> Option<usize> {
        self.phases.iter().position(|p| p.kind == kind)
    }
}

#[cfg(test)]
mod assemble_tests {
    use super::*;

    #[test]
    fn a_gate_after_the_last_phase_becomes_a_note() {
        let plan = crate::plan::parse(
            "changes:\n  - rename_column: { table: t, from: a, to: b }\n",
            "p.yaml",
            "p",
        )
        .unwrap();
        let t = QualifiedName::new("public", "t");
        let out = RecipeOutput {
            phases: vec![
                (
                    PhaseKind::Expand,
                    Contribution {
                        steps: vec![Step::sql(
                            "x",
                            &t,
                            LockLevel::AccessExclusive,
                            "SELECT 1".into(),
                        )],
                        rollback: vec![],
                        gate_after: Some("deploy A".into()),
                    },
                ),
                (
                    PhaseKind::Contract,
                    Contribution {
                        steps: vec![Step::sql(
                            "y",
                            &t,
                            LockLevel::AccessExclusive,
                            "SELECT 2".into(),
                        )],
                        rollback: vec![],
                        gate_after: Some("read the new column".into()),
                    },
                ),
            ],
            notes: vec![],
            drops: vec![],
        };
        let p = Program::assemble(&plan, vec![out]);
        assert_eq!(p.phases.len(), 2);
        assert!(p.phases[0].gate.is_some(), "a gate between phases stays");
        assert!(
            p.phases[1].gate.is_none(),
            "the last phase has no gate to wait at"
        );
        assert!(
            p.notes.iter().any(|n| n.contains("read the new column")),
            "{:?}",
            p.notes
        );
    }
}
