//! `pgphase convert`: the plan text, what each statement became, what needs a human.

use serde_json::json;
use std::fmt::Write;

use crate::convert::Conversion;

/// The plan(s), separated by a comment line when there are several.
pub fn plans_text(c: &Conversion) -> String {
    let mut o = String::new();
    for (k, p) in c.plans.iter().enumerate() {
        if k > 0 {
            let _ = writeln!(
                o,
                "\n# ---- plan `{}` (save it as its own file) ----",
                p.name
            );
        }
        o.push_str(&p.yaml);
    }
    o
}

/// Per statement: what it became; then what needs a human; then where plans went.
pub fn summary_text(c: &Conversion, written: &[String]) -> String {
    let mut o = String::new();
    for s in &c.statements {
        let became = if s.kinds.is_empty() {
            "skipped".to_string()
        } else {
            s.kinds.join(", ")
        };
        let _ = writeln!(o, "{}:{}: {} → {}", s.file, s.line, s.statement, became);
        if let Some(r) = &s.reason {
            let _ = writeln!(o, "    {r}");
        }
    }
    if c.needs_human.is_empty() {
        let _ = writeln!(o, "nothing needs a human; read the plan all the same");
    } else {
        let _ = writeln!(o, "needs a human:");
        for h in &c.needs_human {
            let _ = writeln!(o, "  - {h}");
        }
    }
    for (p, w) in c.plans.iter().zip(written) {
        let _ = writeln!(o, "wrote plan `{}` ({} changes) to {w}", p.name, p.changes);
    }
    if written.is_empty() && c.plans.len() > 1 {
        let _ = writeln!(
            o,
            "{} plans (the changes cannot share one): pass -o FILE to write each to its own file",
            c.plans.len()
        );
    }
    o
}

pub fn json(c: &Conversion, written: &[String]) -> serde_json::Value {
    json!({
        "plans": c.plans.iter().enumerate().map(|(k, p)| json!({
            "name": p.name,
            "changes": p.changes,
            "file": written.get(k),
            "yaml": p.yaml,
        })).collect::<Vec<_>>(),
        "statements": c.statements,
        "needs_human": c.needs_human,
    })
}
