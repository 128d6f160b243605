//! The phase kinds: the expand/contract skeleton every change contributes to. Its own
//! module, below `plan`, `recipe` and `program`, which all name it.

use serde::{Deserialize, Serialize};
use std::fmt;

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
