//! `pgphase lint`: findings, allowed findings, warnings, and the `--trace` observations.

use serde_json::json;
use std::fmt::Write;

use super::style::{self, paint};
use crate::lint::trace::{TraceReport, TracedStatement};
use crate::lint::{FileResult, Rule};

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
