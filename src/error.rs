//! Command errors and their exit codes.

use tokio_postgres::error::SqlState;

/// A command the current state (or a check before any statement runs) does not allow:
/// why, and what would be allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub fix: String,
}

/// Exit codes, documented in the README.
pub mod exit {
    /// Success (including stopping at a deploy gate).
    pub const OK: i32 = 0;
    /// A step failed or the database could not be reached; state is recorded and the
    /// same command resumes.
    pub const FAILED: i32 = 1;
    /// Bad input: command line, plan file, or a plan that does not fit the database.
    /// Nothing was changed.
    pub const INVALID: i32 = 2;
    /// Refused: the plan's state does not allow the command, another operator holds the
    /// plan, the plan file changed, or a confirmation was declined. Nothing was changed.
    pub const REFUSED: i32 = 3;
    /// `pgphase check`: the database has not reached the requested phase.
    pub const NOT_REACHED: i32 = 4;
    /// `pgphase check-drain`: something still uses what the contract drops.
    pub const NOT_DRAINED: i32 = 4;
    /// `pgphase lint`: hazardous statements were found (the same code as
    /// [`NOT_REACHED`]: the check asked for did not pass).
    pub const FINDINGS: i32 = 4;
    // Interrupted by SIGINT or SIGTERM: 130 or 143, the shell's 128 + signal number
    // (`crate::interrupt::Signal::exit_code`).
}

/// A command stopped by a signal: the statement running was cancelled, the
/// interruption recorded; `message` says where and which command resumes.
#[derive(Debug, Clone)]
pub struct Interruption {
    pub signal: crate::interrupt::Signal,
    /// The phase that was running (as the event log names it), if any.
    pub phase: Option<String>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}\n  → {}", .0.reason, .0.fix)]
    Refused(Refusal),
    #[error("{0:#}")]
    Failed(anyhow::Error),
    #[error("{}", .0.message)]
    Interrupted(Interruption),
}

impl CmdError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CmdError::Invalid(_) => exit::INVALID,
            CmdError::Refused(_) => exit::REFUSED,
            CmdError::Failed(_) => exit::FAILED,
            CmdError::Interrupted(i) => i.signal.exit_code(),
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            CmdError::Invalid(_) => "invalid",
            CmdError::Refused(_) => "refused",
            CmdError::Failed(_) => "failed",
            CmdError::Interrupted(_) => "interrupted",
        }
    }
    pub fn refused(reason: impl Into<String>, fix: impl Into<String>) -> CmdError {
        CmdError::Refused(Refusal {
            reason: reason.into(),
            fix: fix.into(),
        })
    }
}

impl From<anyhow::Error> for CmdError {
    fn from(e: anyhow::Error) -> Self {
        CmdError::Failed(e)
    }
}

impl From<tokio_postgres::Error> for CmdError {
    fn from(e: tokio_postgres::Error) -> Self {
        CmdError::Failed(anyhow::anyhow!(describe_db_error(&e)))
    }
}

impl From<Refusal> for CmdError {
    fn from(r: Refusal) -> Self {
        CmdError::Refused(r)
    }
}

/// Renders a database error with its server message, detail and hint.
pub fn describe_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{} (SQLSTATE {})", d.message(), d.code().code());
            if let Some(detail) = d.detail() {
                s.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = d.hint() {
                s.push_str(&format!("; hint: {hint}"));
            }
            if let Some(cause) = pooler_cause(e) {
                s.push_str(&format!(" ({cause})"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// A hint for errors that mean a transaction pooler served a prepared statement to
/// another server session, or none.
fn pooler_cause(e: &tokio_postgres::Error) -> Option<&'static str> {
    let code = e.code()?;
    (*code == SqlState::DUPLICATE_PSTATEMENT || *code == SqlState::INVALID_SQL_STATEMENT_NAME)
        .then_some(
            "a prepared statement met another server session's, or none: the connection probably goes through a pooler in transaction mode; connect pgphase directly or through a session-mode pool",
        )
}
