//! `sql`: the escape hatch. `expand` runs in the expand phase (undone by `rollback`),
//! `contract` after the deploy gate in the contract phase. pgphase runs each part as
//! written, in one transaction under the plan's lock_timeout with retries, and records
//! the step done in that same transaction (a crash cannot run it twice); it cannot
//! check the part's locks, idempotency or undo, so the plan output says so and shows
//! what `pgphase lint` finds in it.

use super::kind::{ChangeKind, Context};
use super::Precondition;
use crate::phase::PhaseKind;
use crate::plan::{At, Pos};
use crate::program::{Action, Contribution, LockLevel, RecipeOutput, Step};

/// `sql: { expand, rollback, contract, gate }`: the escape hatch. Each part runs as
/// written, in one transaction under the plan's lock_timeout with retries; the plan
/// output flags it and shows what `pgphase lint` finds in it.
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
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
    let lexed = crate::sql::lexer::lex(text);
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

impl ChangeKind for SqlChange {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.pos)
    }

    fn validate(&self, pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let sc = self;
        if sc.expand.is_none() && sc.contract.is_none() {
            return Err(err(
                        pos,
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
                "`gate` is the deploy between `expand` and `contract`, and there is no `contract`"
                    .into(),
            ));
        }
        for (what, part) in sc.parts() {
            check_sql_statements(part).map_err(|m| err(part.pos, format!("`{what}`: {m}")))?;
        }
        Ok(())
    }
}

/// Lint rules that do not apply to a part pgphase runs: it sets `lock_timeout` itself.
const NOT_APPLICABLE: [&str; 1] = ["missing-lock-timeout"];

pub(super) fn expand(sc: &SqlChange, pos: Pos) -> Result<RecipeOutput, Vec<Precondition>> {
    let at = format!("the `sql` change at line {}", pos.line);
    let mut out = RecipeOutput::default();
    let step = |what: &str, part: &At<String>| {
        Step {
        description: format!(
            "`{what}` SQL of {at}, run as written: its locks are unknown to pgphase, so it runs as if it took ACCESS EXCLUSIVE"
        ),
        action: Action::Sql {
            sql: part.value.trim().to_string(),
            skip_if: None,
        },
        // unknown: treated as blocking, so it runs under lock_timeout with retries
        lock: LockLevel::AccessExclusive,
        table: None,
        changes_row_type: false,
    }
    };
    out.notes.push(format!(
        "{at} runs as written: review its locks, its undo and its idempotency yourself (`pgphase lint` findings follow, if any)"
    ));
    for (what, part) in sc.parts() {
        let res = crate::lint::lint_source(what, &part.value);
        for f in res
            .findings
            .iter()
            .filter(|f| !NOT_APPLICABLE.contains(&f.rule))
        {
            out.notes.push(format!(
                "lint, {at}, `{what}` line {}: {} [{}]: {}",
                f.line, f.message, f.rule, f.fix
            ));
        }
    }
    if let Some(e) = &sc.expand {
        let rollback = sc.rollback.as_ref().expect("validated at load");
        out.phases.push((
            PhaseKind::Expand,
            Contribution {
                steps: vec![step("expand", e)],
                rollback: vec![step("rollback", rollback)],
                gate_after: sc.contract.as_ref().map(|_| gate_text(sc, &at)),
            },
        ));
    }
    if let Some(c) = &sc.contract {
        if sc.expand.is_none() {
            // only a contract: the deploy gate still comes before it
            out.phases.push((
                PhaseKind::Expand,
                Contribution {
                    gate_after: Some(gate_text(sc, &at)),
                    ..Default::default()
                },
            ));
        }
        out.phases.push((
            PhaseKind::Contract,
            Contribution {
                steps: vec![step("contract", c)],
                ..Default::default()
            },
        ));
    }
    Ok(out)
}

fn gate_text(sc: &SqlChange, at: &str) -> String {
    match &sc.gate {
        Some(g) => g.value.trim().to_string(),
        None => format!(
            "deploy the application version that no longer needs what the `contract` SQL of {at} removes, and drain the old one"
        ),
    }
}
