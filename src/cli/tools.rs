//! The on-ramp commands that need no database: `convert`, `schema`, `completions`, `man`.

use std::path::{Path, PathBuf};

use super::{emit, Cli};
use crate::error::CmdError;
use crate::report;

/// `convert FILE.sql… [--name NAME] [-o FILE]`.
pub(super) fn convert(
    cli: &Cli,
    files: &[PathBuf],
    name: Option<&str>,
    out: Option<&Path>,
) -> Result<(), CmdError> {
    let mut sources = Vec::new();
    for f in files {
        let shown = f.display().to_string();
        let src = std::fs::read_to_string(f)
            .map_err(|e| CmdError::Invalid(format!("{shown}: cannot read the file: {e}")))?;
        sources.push((shown, src));
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => crate::convert::name_from(&sources[0].0),
    };
    let conv = crate::convert::convert(&sources, &name);
    let mut written = Vec::new();
    if let Some(out) = out {
        for (k, p) in conv.plans.iter().enumerate() {
            let path = if k == 0 {
                out.to_path_buf()
            } else {
                let stem = out.file_stem().unwrap_or_default().to_string_lossy();
                let ext = out
                    .extension()
                    .map_or("yaml".into(), |e| e.to_string_lossy());
                out.with_file_name(format!("{stem}-{}.{ext}", k + 1))
            };
            std::fs::write(&path, &p.yaml).map_err(|e| {
                CmdError::Invalid(format!("{}: cannot write the plan: {e}", path.display()))
            })?;
            written.push(path.display().to_string());
        }
    }
    let summary = report::convert::summary_text(&conv, &written);
    if out.is_none() && cli.output == super::Output::Text {
        print!("{}", report::convert::plans_text(&conv));
    }
    if !cli.quiet || cli.output == super::Output::Json {
        if cli.output == super::Output::Text {
            eprint!("{summary}");
        } else {
            emit(cli, String::new(), report::convert::json(&conv, &written));
        }
    }
    Ok(())
}

/// `schema`: the plan files' JSON Schema.
pub(super) fn schema() {
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::plan::json_schema()).unwrap_or_default()
    );
}

/// `completions SHELL`.
pub(super) fn completions(shell: clap_complete::Shell) {
    let mut cmd = <super::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "pgphase", &mut std::io::stdout());
}

/// `man`: the man page of pgphase and its commands, in one roff document.
pub(super) fn man() -> Result<(), CmdError> {
    let cmd = <super::Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| CmdError::Invalid(format!("cannot render the man page: {e}")))?;
    std::io::Write::write_all(&mut std::io::stdout(), &out)
        .map_err(|e| CmdError::Invalid(format!("cannot write the man page: {e}")))?;
    Ok(())
}
