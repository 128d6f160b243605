//! `lint FILE.sql…` (with `--trace`, on the given database or a throwaway server) and
//! `lint --rules`.

use std::path::PathBuf;

use super::{database, emit, Cli, LintFormat};
use crate::error::CmdError;
use crate::report;

/// `lint --rules`.
pub(super) fn rules(cli: &Cli) {
    let list = crate::lint::rules::list();
    emit(
        cli,
        report::lint::rules_text(&list),
        serde_json::json!({ "rules": list }),
    );
}

/// `lint FILE…`, with `--trace` on the given database or a throwaway server.
pub(super) async fn lint(
    cli: &Cli,
    files: &[PathBuf],
    trace: bool,
    lock_timeout: std::time::Duration,
    format: LintFormat,
) -> Result<i32, CmdError> {
    let mut results = Vec::new();
    let mut sources = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let src = std::fs::read_to_string(f)
            .map_err(|e| CmdError::Invalid(format!("{name}: cannot read the file: {e}")))?;
        results.push(crate::lint::lint_source(&name, &src));
        sources.push((name, crate::lint::statements(&src)));
    }
    let traced = if trace {
        let conn = database(cli)?;
        let findings = |file: &str, line: usize| -> Vec<String> {
            results
                .iter()
                .filter(|r| r.file == file)
                .flat_map(|r| r.findings.iter().chain(&r.allowed))
                .filter(|x| x.statement_line == line)
                .map(|x| x.rule.to_string())
                .collect()
        };
        Some(match conn {
            Some(c) => {
                let mut client = c.connect().await?;
                crate::lint::trace::trace(
                    &mut client,
                    &c.redacted(),
                    crate::lint::trace::TraceMode::RolledBack,
                    &sources,
                    lock_timeout,
                    findings,
                )
                .await?
            }
            None => {
                crate::lint::trace::trace_on_throwaway_server(&sources, lock_timeout, findings)
                    .await?
            }
        })
    } else {
        None
    };
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    match format {
        LintFormat::Text => {
            let color = report::style::stdout_color();
            let mut text = report::lint::lint_text(&results, color);
            if let Some(t) = &traced {
                text = format!("{}\n{text}", report::lint::trace_text(t, color));
            }
            print!("{text}");
        }
        LintFormat::Json => println!(
            "{}",
            pretty(report::lint::lint_json(&results, traced.as_ref()))
        ),
        LintFormat::Github => {
            if let Some(t) = &traced {
                print!("{}", report::lint::trace_text(t, false));
            }
            print!("{}", report::lint::lint_github(&results));
        }
        LintFormat::Sarif => println!(
            "{}",
            pretty(report::lint::lint_sarif(
                &results,
                &crate::lint::rules::list()
            ))
        ),
    }
    Ok(if results.iter().any(|r| !r.findings.is_empty()) {
        crate::error::exit::FINDINGS
    } else {
        crate::error::exit::OK
    })
}
