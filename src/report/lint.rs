//! `pgphase lint`: findings, allowed findings, warnings, and the `--trace` observations.

use serde_json::json;
use std::fmt::Write;

use super::style::{self, paint};
use crate::lint::trace::{TraceReport, TracedStatement};
use crate::lint::{FileResult, Rule};

/// For a finding whose fix is a pgphase change kind: the command that writes the file
/// as a plan.
fn convert_hint(x: &crate::lint::Finding) -> Option<String> {
    crate::lint::rules::ALL
        .iter()
        .any(|(r, _)| r.name == x.rule && !r.kinds.is_empty())
        .then(|| {
            format!(
                "plan: `pgphase convert {}` writes the file as a pgphase plan (docs/integrations.md)",
                x.file
            )
        })
}

/// The findings of every file, then a summary line. `color` for a terminal.
pub fn lint_text(files: &[FileResult], color: bool) -> String {
    let mut o = String::new();
    let mut explained: Vec<&str> = Vec::new();
    for f in files {
        for w in &f.warnings {
            let _ = writeln!(o, "{} {w}", paint("warning:", style::yellow(), color));
        }
        let mut sorted: Vec<&crate::lint::Finding> = f.findings.iter().collect();
        sorted.sort_by_key(|x| (x.line, x.column));
        for x in sorted {
            let _ = writeln!(
                o,
                "{}: {}: {}",
                paint(
                    &format!("{}:{}:{}", x.file, x.line, x.column),
                    style::bold(),
                    color
                ),
                paint(x.rule, style::red(), color),
                x.message
            );
            let _ = writeln!(o, "    {}", paint(&x.statement, style::dim(), color));
            if explained.contains(&x.rule) {
                continue;
            }
            explained.push(x.rule);
            let _ = writeln!(o, "    why: {}", x.why);
            let _ = writeln!(o, "    fix: {}", x.fix);
            if let Some(hint) = convert_hint(x) {
                let _ = writeln!(o, "    {hint}");
            }
            let _ = writeln!(
                o,
                "    {}",
                paint(
                    &format!(
                        "(if intended: `-- pgphase:allow {}` on the line before)",
                        x.rule
                    ),
                    style::dim(),
                    color
                )
            );
        }
    }
    let findings: usize = files.iter().map(|f| f.findings.len()).sum();
    let allowed: usize = files.iter().map(|f| f.allowed.len()).sum();
    let statements: usize = files.iter().map(|f| f.statements).sum();
    let summary = format!(
        "{} in {} statement{} of {} file{}{}",
        match findings {
            0 => "no findings".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        },
        statements,
        if statements == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if allowed > 0 {
            format!(" ({allowed} allowed by pgphase:allow)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "{}",
        paint(
            &summary,
            if findings > 0 {
                style::red()
            } else {
                style::green()
            },
            color
        )
    );
    o
}

pub fn lint_json(files: &[FileResult], trace: Option<&TraceReport>) -> serde_json::Value {
    let all = |pick: fn(&FileResult) -> &Vec<crate::lint::Finding>| {
        files.iter().flat_map(pick).cloned().collect::<Vec<_>>()
    };
    json!({
        "files": files.iter().map(|f| json!({"file": f.file, "statements": f.statements})).collect::<Vec<_>>(),
        "findings": all(|f| &f.findings),
        "allowed": all(|f| &f.allowed),
        "warnings": files.iter().flat_map(|f| f.warnings.clone()).collect::<Vec<_>>(),
        "trace": trace,
    })
}

/// `pgphase lint --rules`.
pub fn rules_text(rules: &[Rule]) -> String {
    let mut o = String::new();
    for r in rules {
        let _ = writeln!(o, "{}\n    why: {}\n    fix: {}", r.name, r.why, r.fix);
    }
    o
}

fn statement_trace(o: &mut String, t: &TracedStatement, color: bool) {
    let _ = writeln!(
        o,
        "{}: {}",
        paint(&format!("{}:{}", t.file, t.line), style::bold(), color),
        t.statement
    );
    if let Some(s) = &t.skipped {
        let _ = writeln!(
            o,
            "    {}",
            paint(&format!("not run: {s}"), style::dim(), color)
        );
        return;
    }
    if let Some(e) = &t.error {
        let _ = writeln!(
            o,
            "    {}",
            paint(&format!("error: {e}"), style::red(), color)
        );
    }
    if let Some(n) = &t.note {
        let _ = writeln!(o, "    {}", paint(n, style::dim(), color));
    }
    if t.locks.is_empty() {
        let _ = writeln!(o, "    locks: none new");
    } else {
        // one entry per relation: its modes, strongest first as PostgreSQL reported them
        let mut rels: Vec<(String, Vec<String>, bool)> = Vec::new();
        for l in &t.locks {
            let name = format!("{}{}", l.relation, if l.created { " (new)" } else { "" });
            let danger = l.blocks_reads_or_writes && !l.created;
            match rels.iter_mut().find(|r| r.0 == name) {
                Some(r) => {
                    r.1.push(l.mode.clone());
                    r.2 |= danger;
                }
                None => rels.push((name, vec![l.mode.clone()], danger)),
            }
        }
        let parts: Vec<String> = rels
            .iter()
            .map(|(name, modes, danger)| {
                let text = format!("{name} {}", modes.join(" + "));
                if *danger {
                    paint(&text, style::red(), color)
                } else {
                    text
                }
            })
            .collect();
        let _ = writeln!(o, "    locks: {}", parts.join("; "));
    }
    if t.rewrote.is_empty() {
        let _ = writeln!(o, "    rewrite: none");
    } else {
        let _ = writeln!(
            o,
            "    rewrite: {}",
            paint(&t.rewrote.join(", "), style::red(), color)
        );
    }
    let mut tail = format!("    {} ms", t.duration_ms);
    if !t.findings.is_empty() {
        let _ = write!(tail, "; lint: {}", t.findings.join(", "));
    }
    let _ = writeln!(o, "{tail}");
}

/// The trace: per statement, the locks it took and what it rewrote.
pub fn trace_text(r: &TraceReport, color: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "== trace on {} ==", r.target);
    for t in &r.statements {
        statement_trace(&mut o, t, color);
    }
    o
}

/// GitHub Actions escaping of a workflow command's message.
fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub Actions escaping of a workflow command's property.
fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `lint --format github`: one `::error` workflow command per finding (an annotation on
/// the file's line in the pull request), `::warning` for the warnings, then the summary.
pub fn lint_github(files: &[FileResult]) -> String {
    let mut o = String::new();
    for f in files {
        for w in &f.warnings {
            let _ = writeln!(o, "::warning title=pgphase lint::{}", gh_data(w));
        }
        let mut sorted: Vec<&crate::lint::Finding> = f.findings.iter().collect();
        sorted.sort_by_key(|x| (x.line, x.column));
        for x in sorted {
            let _ = writeln!(
                o,
                "::error file={},line={},col={},title={}::{}",
                gh_property(&x.file),
                x.line,
                x.column,
                gh_property(&format!("pgphase lint: {}", x.rule)),
                gh_data(&format!(
                    "{}\nwhy: {}\nfix: {}\n{}(if intended: `-- pgphase:allow {}` on the line before)",
                    x.message,
                    x.why,
                    x.fix,
                    convert_hint(x).map(|h| h + "\n").unwrap_or_default(),
                    x.rule
                ))
            );
        }
    }
    let findings: usize = files.iter().map(|f| f.findings.len()).sum();
    let _ = writeln!(
        o,
        "pgphase lint: {findings} finding{} in {} file{}",
        if findings == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    o
}

/// A file path as a SARIF `uri` (a relative reference; `%` and spaces escaped).
fn sarif_uri(path: &str) -> String {
    path.replace('\\', "/")
        .replace('%', "%25")
        .replace(' ', "%20")
}

/// `lint --format sarif`: a SARIF 2.1.0 log for code-scanning tools. Findings silenced by
/// `pgphase:allow` are results with an in-source suppression.
pub fn lint_sarif(files: &[FileResult], rules: &[Rule]) -> serde_json::Value {
    let rule_index = |name: &str| rules.iter().position(|r| r.name == name);
    let result = |x: &crate::lint::Finding, suppressed: bool| {
        let mut r = json!({
            "ruleId": x.rule,
            "level": "error",
            "message": { "text": format!("{}. Fix: {}", x.message, x.fix) },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": sarif_uri(&x.file) },
                    "region": { "startLine": x.line, "startColumn": x.column }
                }
            }],
        });
        if let Some(k) = rule_index(x.rule) {
            r["ruleIndex"] = json!(k);
        }
        if suppressed {
            r["suppressions"] = json!([{
                "kind": "inSource",
                "justification": format!("-- pgphase:allow {}", x.rule)
            }]);
        }
        r
    };
    let results: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            f.findings
                .iter()
                .map(|x| result(x, false))
                .chain(f.allowed.iter().map(|x| result(x, true)))
        })
        .collect();
    let notifications: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| &f.warnings)
        .map(|w| json!({ "level": "warning", "message": { "text": w } }))
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "pgphase",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules.iter().map(|r| json!({
                        "id": r.name,
                        "name": r.name,
                        "shortDescription": { "text": r.summary },
                        "fullDescription": { "text": r.why },
                        "help": { "text": r.fix },
                        "defaultConfiguration": { "level": "error" },
                    })).collect::<Vec<_>>(),
                }
            },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}
