//! `pgphase lint`: hazardous statements in raw SQL migrations, each with why it is
//! dangerous under live traffic and the pgphase change kind that does it safely.
//!
//! Statements are read by a hand-written tokenizer ([`lexer`]) rather than a SQL
//! parser: `sqlparser` 0.63 rejects common PostgreSQL DDL (REINDEX, DO, CLUSTER,
//! `DROP INDEX CONCURRENTLY IF EXISTS`, `SET TABLESPACE`, `SET STATISTICS`, `DETACH
//! PARTITION`) and a parse failure would hide the rest of the file; `pg_query` needs
//! libclang and a C build. The tokenizer knows every kind of PostgreSQL string and
//! comment, so statements split where the server would split them, and the rules read
//! the structure they need ([`stmt`]); anything else is `Other`, never an error.
//!
//! One rule per file in [`rules`]; each is data ([`Rule`]: name, why, fix, summary,
//! examples) plus a check, and [`docs`] renders `docs/lint/` from that data.
//! `-- pgphase:allow <rule>` on the line of a finding, or in the comment lines right
//! above it or above its statement, silences that one finding.

pub mod docs;
pub mod rules;
pub mod stmt;
pub mod trace;

use serde::Serialize;

use crate::sql::lexer;
use lexer::Statement;
use stmt::{ActionKind, ConstraintKind, Kind, Name};

/// A rule, as data.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rule {
    pub name: &'static str,
    /// Why the statement is dangerous on a live database.
    pub why: &'static str,
    /// The safe way, and the pgphase change kind that does it.
    pub fix: &'static str,
    /// What it flags, in one line (the index of `docs/lint/`).
    #[serde(skip)]
    pub summary: &'static str,
    /// The pgphase change kinds (YAML keys) `fix` names; their pages are linked.
    #[serde(skip)]
    pub kinds: &'static [&'static str],
    /// A file the rule flags (its snapshot in `tests/lint.rs`, its doc page's example).
    #[serde(skip)]
    pub bad: &'static str,
    /// The same intent written safely: no finding (asserted in `tests/lint.rs`).
    #[serde(skip)]
    pub good: &'static str,
}

/// What a rule's check reports: where, and what exactly.
#[derive(Clone, Debug)]
pub struct Hit {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule: &'static str,
    /// What this statement does, specifically.
    pub message: String,
    /// The statement, on one line.
    pub statement: String,
    /// Its first line.
    pub statement_line: usize,
    pub why: &'static str,
    pub fix: &'static str,
}

/// What the file has done so far, as the rules need it.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// Tables created earlier in the file: not in use by the application yet.
    pub created: Vec<Name>,
    /// `SET lock_timeout` (non-zero) in effect for the session.
    pub session_lock_timeout: bool,
    /// `SET LOCAL lock_timeout` in effect in the open transaction.
    pub local_lock_timeout: bool,
    /// Inside an explicit `BEGIN … COMMIT`.
    pub in_transaction: bool,
    /// (table, column) with a validated `CHECK (column IS NOT NULL)`.
    pub not_null_checks: Vec<(Name, String)>,
    /// NOT VALID checks waiting for VALIDATE: (table, constraint, column).
    pub pending_checks: Vec<(Name, String, String)>,
}

impl Ctx {
    pub fn is_new(&self, t: &Name) -> bool {
        self.created.iter().any(|c| c.matches(t))
    }
    pub fn lock_timeout(&self) -> bool {
        self.session_lock_timeout || self.local_lock_timeout
    }

    /// Applies a statement's effects, after the rules have seen it.
    fn apply(&mut self, k: &Kind) {
        match k {
            Kind::CreateTable { table } => self.created.push(table.clone()),
            Kind::Begin => self.in_transaction = true,
            Kind::EndTransaction => {
                self.in_transaction = false;
                self.local_lock_timeout = false;
            }
            Kind::Setting { name, value, local } if name == "lock_timeout" || name == "all" => {
                let on = value.as_deref().is_some_and(|v| {
                    let v = v.trim().trim_end_matches(|c: char| c.is_alphabetic());
                    v.parse::<f64>().map_or(true, |n| n > 0.0)
                });
                if *local {
                    if self.in_transaction {
                        self.local_lock_timeout = on;
                    }
                } else {
                    self.session_lock_timeout = on;
                }
            }
            Kind::AlterTable { table, actions } => {
                for a in actions {
                    match &a.what {
                        ActionKind::AddConstraint {
                            name,
                            kind: ConstraintKind::Check(expr),
                            not_valid,
                            ..
                        } => {
                            if let Some(col) = stmt::not_null_check_column(expr) {
                                if *not_valid {
                                    if let Some(n) = name {
                                        self.pending_checks.push((table.clone(), n.clone(), col));
                                    }
                                } else {
                                    self.not_null_checks.push((table.clone(), col));
                                }
                            }
                        }
                        ActionKind::ValidateConstraint { name } => {
                            if let Some(k) = self
                                .pending_checks
                                .iter()
                                .position(|(t, n, _)| t.matches(table) && n == name)
                            {
                                let (t, _, col) = self.pending_checks.remove(k);
                                self.not_null_checks.push((t, col));
                            }
                        }
                        ActionKind::RenameTable { to } => {
                            if let Some(c) = self.created.iter_mut().find(|c| c.matches(table)) {
                                c.name = to.clone();
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// One file's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileResult {
    pub file: String,
    pub statements: usize,
    pub findings: Vec<Finding>,
    /// Findings silenced by `pgphase:allow`.
    pub allowed: Vec<Finding>,
    /// Unknown rule names, unused allow comments, tokenizer problems.
    pub warnings: Vec<String>,
}

/// An allow comment: its line and the rules it names (each silences one finding).
struct Allow {
    line: usize,
    rules: Vec<String>,
    used: Vec<bool>,
}

fn allows(comments: &[lexer::Comment]) -> Vec<Allow> {
    comments
        .iter()
        .filter_map(|c| {
            let at = c.text.find("pgphase:allow")?;
            let rest = &c.text[at + "pgphase:allow".len()..];
            let rules: Vec<String> = rest
                .split(|ch: char| ch == ',' || ch.is_whitespace())
                .take_while(|w| *w != "--")
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let used = vec![false; rules.len()];
            Some(Allow {
                line: c.line,
                rules,
                used,
            })
        })
        .collect()
}

/// Lines that hold only a comment, walking up from `line - 1`.
fn comment_block_above(lines: &[&str], line: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut l = line;
    while l > 1 {
        l -= 1;
        let text = lines.get(l - 1).map(|s| s.trim()).unwrap_or("");
        if text.starts_with("--") {
            out.push(l);
        } else {
            break;
        }
    }
    out
}

/// Lints one file's text.
pub fn lint_source(file: &str, src: &str) -> FileResult {
    let lexed = lexer::lex(src);
    let lines: Vec<&str> = src.lines().collect();
    let mut allow = allows(&lexed.comments);
    let mut ctx = Ctx::default();
    let mut res = FileResult {
        file: file.to_string(),
        statements: lexed.statements.len(),
        ..Default::default()
    };
    for (line, e) in &lexed.errors {
        res.warnings.push(format!("{file}:{line}: {e}"));
    }
    for s in &lexed.statements {
        let kind = stmt::classify(s);
        for (rule, check) in rules::ALL {
            for hit in check(s, &kind, &ctx) {
                let f = Finding {
                    file: file.to_string(),
                    line: hit.line,
                    column: hit.col,
                    rule: rule.name,
                    message: hit.message,
                    statement: s.excerpt(120),
                    statement_line: s.line,
                    why: rule.why,
                    fix: rule.fix,
                };
                let mut candidates = vec![hit.line, s.line];
                candidates.extend(comment_block_above(&lines, hit.line));
                candidates.extend(comment_block_above(&lines, s.line));
                let slot = allow.iter_mut().find_map(|a| {
                    if !candidates.contains(&a.line) {
                        return None;
                    }
                    let k = a
                        .rules
                        .iter()
                        .zip(&a.used)
                        .position(|(r, used)| r == rule.name && !used)?;
                    Some((a, k))
                });
                match slot {
                    Some((a, k)) => {
                        a.used[k] = true;
                        res.allowed.push(f);
                    }
                    None => res.findings.push(f),
                }
            }
        }
        ctx.apply(&kind);
    }
    for a in &allow {
        for (r, used) in a.rules.iter().zip(&a.used) {
            if rules::ALL.iter().all(|(rule, _)| rule.name != r) {
                res.warnings.push(format!(
                    "{file}:{}: unknown rule `{r}` in pgphase:allow (`pgphase lint --rules` lists them)",
                    a.line
                ));
            } else if !used {
                res.warnings.push(format!(
                    "{file}:{}: `pgphase:allow {r}` silences nothing here",
                    a.line
                ));
            }
        }
    }
    res
}

/// A statement's lexer view, for the trace.
pub fn statements(src: &str) -> Vec<Statement> {
    lexer::lex(src).statements
}
