//! `sql`: the escape hatch. `expand` runs in the expand phase (undone by `rollback`),
//! `contract` after the deploy gate in the contract phase. pgphase runs each part as
//! written, in one transaction under the plan's lock_timeout with retries, and records
//! the step done in that same transaction (a crash cannot run it twice); it cannot
//! check the part's locks, idempotency or undo, so the plan output says so and shows
//! what `pgphase lint` finds in it.

use super::Precondition;
use crate::phase::PhaseKind;
use crate::plan::{At, Pos, SqlChange};
use crate::program::{Action, Contribution, LockLevel, RecipeOutput, Step};

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
