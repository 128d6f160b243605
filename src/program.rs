//! What a plan means: ordered phases of steps, each phase ending in an optional gate.
//!
//! A [`Program`] is pure data. It is expanded once, against the live catalog, when a
//! plan starts, and stored in the database; every later command (advance, rollback,
//! status) works from the stored program, so what runs is exactly what `plan` printed.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::plan::{Plan, Settings};
use crate::sql::QualifiedName;

/// The expand/contract skeleton every change contributes to. Order is execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// Add what is new; old and new application both keep working.
    Expand,
    /// Keep old and new representations in sync for every write.
    DualWrite,
    /// Copy existing rows, then carry over constraints and indexes.
    Backfill,
    /// Check the new representation is complete before the old one stops being written.
    SwitchReads,
    /// Remove what is old. Point of no return.
    Contract,
}

impl PhaseKind {
    pub const ALL: [PhaseKind; 5] = [
        PhaseKind::Expand,
        PhaseKind::DualWrite,
        PhaseKind::Backfill,
        PhaseKind::SwitchReads,
        PhaseKind::Contract,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Expand => "expand",
            PhaseKind::DualWrite => "dual_write",
            PhaseKind::Backfill => "backfill",
            PhaseKind::SwitchReads => "switch_reads",
            PhaseKind::Contract => "contract",
        }
    }
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
}

impl LockLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::AccessShare => "ACCESS SHARE",
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
    Verify { sql: String, failure: String },
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
        }
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
                "-- one transaction per batch, repeated until it returns no row; $1 = last key of the previous batch\n-- (the first batch has no lower bound); the checkpoint is saved in the same transaction\n{};",
                b.batch_sql(true)
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

impl BackfillSpec {
    /// The SQL of one batch: visit the next `batch_size` keys, update those that still
    /// need work, return how many were visited/updated and the last key (as text).
    /// With `resume`, `$1..$k` are the previous batch's last key, as text.
    pub fn batch_sql(&self, resume: bool) -> String {
        let t = &self.table;
        let k = self.key.len();
        let alias: Vec<String> = (0..k).map(|i| format!("pgphase_k{i}")).collect();
        let cols: Vec<String> = self.key.iter().map(|(c, _)| c.clone()).collect();
        let tuple = |items: &[String]| {
            if items.len() == 1 {
                items[0].clone()
            } else {
                format!("({})", items.join(", "))
            }
        };
        let select_keys: Vec<String> = cols
            .iter()
            .zip(&alias)
            .map(|(c, a)| format!("{c} AS {a}"))
            .collect();
        let lower = if resume {
            let params: Vec<String> = self
                .key
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| format!("CAST(${}::text AS {ty})", i + 1))
                .collect();
            format!(" WHERE {} > {}", tuple(&cols), tuple(&params))
        } else {
            String::new()
        };
        let qualified: Vec<String> = cols.iter().map(|c| format!("pgphase_t.{c}")).collect();
        let batch_cols: Vec<String> = alias.iter().map(|a| format!("pgphase_batch.{a}")).collect();
        let desc: Vec<String> = alias.iter().map(|a| format!("{a} DESC")).collect();
        let last_text: Vec<String> = alias.iter().map(|a| format!("last.{a}::text")).collect();
        format!(
            "WITH pgphase_batch AS (\n  SELECT {select_keys} FROM {t}{lower} ORDER BY {order} LIMIT {n}\n), pgphase_upd AS (\n  UPDATE {t} AS pgphase_t SET {set} FROM pgphase_batch\n   WHERE {lhs} = {rhs} AND ({needs})\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM pgphase_batch), (SELECT count(*) FROM pgphase_upd), {last_text}\n  FROM (SELECT * FROM pgphase_batch ORDER BY {desc} LIMIT 1) last",
            select_keys = select_keys.join(", "),
            order = cols.join(", "),
            n = self.batch_size,
            set = self.set,
            lhs = tuple(&qualified),
            rhs = tuple(&batch_cols),
            needs = self.needs_work,
            last_text = last_text.join(", "),
            desc = desc.join(", "),
        )
    }
}

/// What the application deploy must do before the next phase may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Imperative text, one item per change: "deploy the version that …".
    pub items: Vec<String>,
}

impl Gate {
    pub fn text(&self) -> String {
        self.items.join("; ")
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
                phase.gate = Some(Gate { items: gate_items });
            }
            if !phase.steps.is_empty() || phase.gate.is_some() {
                phases.push(phase);
            }
        }
        for out in outputs {
            notes.extend(out.notes);
        }
        Program {
            plan: plan.name.clone(),
            description: plan.description.clone(),
            settings: plan.settings.clone(),
            phases,
            notes,
        }
    }

    pub fn phase_index(&self, kind: PhaseKind) -> Option<usize> {
        self.phases.iter().position(|p| p.kind == kind)
    }
}
