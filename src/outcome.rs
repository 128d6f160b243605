//! Where a command left the plan: what `start`, `phase advance` and `phase rollback`
//! return, and what [`crate::report`] prints.

/// Where a command left the plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    AwaitingDeploy {
        phase: String,
        gate: String,
    },
    Completed,
    RolledBack,
    /// A rollback went back to the deploy gate after `phase` and reopened it: the
    /// application deployed there (`deployed`) must be rolled back before the next
    /// rollback undoes the phases before it.
    RolledBackToGate {
        phase: String,
        deployed: Option<String>,
        /// Where the next rollback goes back to (its `--to`): an earlier gate, or
        /// `start`.
        next_to: String,
    },
    /// A full rollback of a plan started by a pgphase that took no catalog snapshot:
    /// every undo step ran, but the schema could not be compared with before.
    RolledBackUnchecked,
    /// `start` again with the same file, once the plan is past its first deploy gate
    /// and stopped (failed or interrupted) in `phase`: nothing to do for `start`.
    Underway {
        status: String,
        phase: String,
        next_command: String,
    },
}
