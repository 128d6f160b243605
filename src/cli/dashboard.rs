//! `pgphase dashboard`: the full-screen, read-only terminal view (src/dashboard/).

use std::io::IsTerminal;

use super::{required_database, Cli};
use crate::error::CmdError;
use crate::report;

/// Runs the dashboard on this terminal until `q`; refused in a pipe.
pub(super) async fn dashboard(cli: &Cli, interval: std::time::Duration) -> Result<(), CmdError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CmdError::Invalid(
            "the dashboard needs a terminal; in a pipe use `pgphase status --watch`".into(),
        ));
    }
    let conn = required_database(cli)?;
    crate::dashboard::run(&conn, interval, report::style::color_allowed()).await?;
    Ok(())
}
