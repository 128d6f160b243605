//! `docs/lint/`: one page per rule and an index, rendered from the rules' data
//! ([`Rule`]). `tests/docs.rs` fails when a page in the repository is not what this
//! renders, and rewrites them with `PGPHASE_UPDATE_DOCS=1`.

use std::fmt::Write;

use super::{lint_source, rules, Rule};

/// Where the pages live, relative to the repository root.
pub const DIR: &str = "docs/lint";

/// Every page: (file name inside [`DIR`], contents). The index is `README.md`.
pub fn pages() -> Vec<(String, String)> {
    let list = rules::list();
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|r| (format!("{}.md", r.name), rule_page(r)))
        .collect();
    out.push(("README.md".to_string(), index_page(&list)));
    out
}

const GENERATED: &str = "<!-- Generated from src/lint/rules/ by src/lint/docs.rs: do not edit. \
Regenerate with `PGPHASE_UPDATE_DOCS=1 cargo test --profile test-release --test docs`. -->";

/// One rule's page: what it flags, why, the fix, an example and its finding, the safe
/// version.
pub fn rule_page(r: &Rule) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{GENERATED}\n\n# `{}`\n\nFlags {}.\n", r.name, r.summary);
    let _ = writeln!(o, "## Why\n\n{}\n", sentence(r.why));
    let _ = writeln!(o, "## Fix\n\n{}\n", sentence(r.fix));
    if !r.kinds.is_empty() {
        let links: Vec<String> = r
            .kinds
            .iter()
            .map(|k| format!("[`{k}`](../kinds/{k}.md)"))
            .collect();
        let _ = writeln!(
            o,
            "pgphase change kind: {}. `pgphase convert FILE.sql` writes such a file as a plan \
([converting SQL migrations](../integrations.md#converting-sql-migrations-pgphase-convert)).\n",
            links.join(", ")
        );
    }
    let file = format!("{}.sql", r.name);
    let found = lint_source(&file, r.bad);
    let _ = writeln!(o, "## Example\n\n```sql\n{}\n```\n", r.bad);
    let _ = writeln!(o, "`pgphase lint {file}`:\n\n```");
    for f in &found.findings {
        let _ = writeln!(
            o,
            "{}:{}:{}: {}: {}",
            f.file, f.line, f.column, f.rule, f.message
        );
    }
    let _ = writeln!(o, "```\n");
    let _ = writeln!(
        o,
        "The same intent, written safely (no finding):\n\n```sql\n{}\n```\n",
        r.good
    );
    let _ = writeln!(
        o,
        "## When it is intended\n\n`-- pgphase:allow {}` on the line of the finding, or in \
         the comment lines right above it or above its statement, silences that one finding.\n",
        r.name
    );
    let _ = writeln!(
        o,
        "The rule's code and data: [`src/lint/rules/{}.rs`](../../src/lint/rules/{}.rs); its \
         snapshot: [`tests/snapshots/lint__rule_{}.snap`](../../tests/snapshots/lint__rule_{}.snap).",
        r.name.replace('-', "_"),
        r.name.replace('-', "_"),
        r.name,
        r.name
    );
    o
}

/// The index: one line per rule, in the order findings are reported.
pub fn index_page(list: &[Rule]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{GENERATED}\n\n# Lint rules\n\n`pgphase lint FILE.sql…` reports each statement \
         these rules flag (see [Lint raw SQL migrations](../operating.md#lint-raw-sql-migrations)); \
         `pgphase lint --rules` lists them.\n"
    );
    let _ = writeln!(o, "| rule | flags |\n|---|---|");
    for r in list {
        let _ = writeln!(o, "| [`{0}`]({0}.md) | {1} |", r.name, r.summary);
    }
    o
}

/// `text` as a sentence: a capital first letter and a full stop.
fn sentence(text: &str) -> String {
    let mut c = text.trim_end_matches('.').chars();
    match c.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}
