//! `pgphase convert`: raw migration SQL (what Rails, Django, Prisma, Alembic or Flyway
//! generate) into plan YAML.
//!
//! Statements are split by the one SQL lexer ([`crate::sql::lexer`]) and recognized by
//! lint's classifier ([`crate::lint::stmt::classify`]); this module reads the details a
//! change kind needs from the statement's tokens, keeping types and expressions as
//! written. Every converted change is checked by the plan loader itself
//! ([`crate::plan::parse`]): a change the loader refuses in the plan becomes a new plan
//! that depends on the previous one (two changes of one column, a renamed table changed
//! again), and a change it refuses alone becomes an `sql` change. What cannot be mapped
//! becomes an `sql` change run in `contract` (after the deploy gate, no rollback: what a
//! raw migration was), with a comment saying why, and is listed as needing a human.

use serde::Serialize;
use std::fmt::Write;

use crate::lint::stmt::{self, ActionKind, Kind, Name, P};
use crate::sql::lexer::{self, Statement, Tok, Token};

/// One statement of the input and what it became.
#[derive(Clone, Debug, Serialize)]
pub struct Converted {
    pub file: String,
    pub line: usize,
    /// The statement on one line.
    pub statement: String,
    /// The change kinds it became (`sql` when not mapped), empty when skipped.
    pub kinds: Vec<&'static str>,
    /// Why it was skipped or left to an `sql` change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One generated plan file.
#[derive(Clone, Debug, Serialize)]
pub struct PlanText {
    pub name: String,
    pub yaml: String,
    pub changes: usize,
}

/// The result of a conversion: plans (more than one when the plan loader refuses the
/// changes in one plan; each depends on the previous), what each statement became, and
/// what a human must look at.
#[derive(Clone, Debug, Serialize)]
pub struct Conversion {
    pub plans: Vec<PlanText>,
    pub statements: Vec<Converted>,
    pub needs_human: Vec<String>,
}

/// A YAML value, rendered in block style.
#[derive(Clone, Debug)]
enum Y {
    S(String),
    B(bool),
    L(Vec<Y>),
    M(Vec<(&'static str, Y)>),
}

fn s(v: impl Into<String>) -> Y {
    Y::S(v.into())
}

/// A scalar as YAML: plain when unambiguous, a literal block for several lines, else
/// double-quoted (JSON escapes are YAML escapes).
fn scalar(v: &str, indent: usize) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.()-".contains(c))
        && !v.contains("..")
        && !["true", "false", "yes", "no", "on", "off", "null", "y", "n"]
            .contains(&v.to_ascii_lowercase().as_str());
    if plain {
        return v.to_string();
    }
    if v.contains('\n') && !v.starts_with(char::is_whitespace) {
        let pad = " ".repeat(indent);
        let mut o = String::from("|-");
        for l in v.lines() {
            o.push('\n');
            if !l.is_empty() {
                o.push_str(&pad);
                o.push_str(l.trim_end());
            }
        }
        return o;
    }
    serde_json::to_string(v).unwrap_or_default()
}

/// `key: value` lines of a mapping at `indent`.
fn render_map(o: &mut String, m: &[(&'static str, Y)], indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        match v {
            Y::S(x) => {
                let _ = writeln!(o, "{pad}{k}: {}", scalar(x, indent + 2));
            }
            Y::B(b) => {
                let _ = writeln!(o, "{pad}{k}: {b}");
            }
            Y::L(items) if items.iter().all(|i| matches!(i, Y::S(_))) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Y::S(x) => scalar(x, indent + 2).replace(['\n'], " "),
                        _ => unreachable!(),
                    })
                    .collect();
                let _ = writeln!(o, "{pad}{k}: [{}]", parts.join(", "));
            }
            Y::L(items) => {
                let _ = writeln!(o, "{pad}{k}:");
                for i in items {
                    match i {
                        Y::M(m) => {
                            let mut inner = String::new();
                            render_map(&mut inner, m, indent + 4);
                            // the first key on the dash's line
                            let inner = inner.replacen(&" ".repeat(indent + 4), "", 1);
                            let _ = write!(o, "{pad}  - {inner}");
                        }
                        Y::S(x) => {
                            let _ = writeln!(o, "{pad}  - {}", scalar(x, indent + 4));
                        }
                        _ => {}
                    }
                }
            }
            Y::M(inner) => {
                let _ = writeln!(o, "{pad}{k}:");
                render_map(o, inner, indent + 2);
            }
        }
    }
}

/// One change as it will be written.
#[derive(Clone, Debug)]
struct Change {
    kind: &'static str,
    body: Vec<(&'static str, Y)>,
    /// YAML comments above it.
    notes: Vec<String>,
    /// What a human must look at (listed in the header and the report).
    human: Vec<String>,
}

impl Change {
    fn new(kind: &'static str, body: Vec<(&'static str, Y)>) -> Change {
        Change {
            kind,
            body,
            notes: Vec::new(),
            human: Vec::new(),
        }
    }
    fn render(&self) -> String {
        let mut o = String::new();
        for n in &self.notes {
            let _ = writeln!(o, "  # {n}");
        }
        let _ = writeln!(o, "  - {}:", self.kind);
        render_map(&mut o, &self.body, 6);
        o
    }
}

/// What one statement becomes.
#[derive(Clone, Debug)]
enum Out {
    Change(Change),
    /// Left to an `sql` change (contract), and why.
    Sql(String),
    /// An object no kind creates: an `sql` change in expand, undone by this SQL.
    Created(String),
    /// Not in the plan, and why.
    Skip(String),
}

struct Item {
    file: String,
    line: usize,
    statement: Statement,
    outs: Vec<Out>,
}

/// The text of a contiguous run of a statement's tokens, as written.
fn text(st: &Statement, t: &[Token]) -> String {
    match (t.first(), t.last()) {
        (Some(a), Some(b)) => {
            let base = st.tokens[0].start;
            st.text[a.start - base..b.end - base].to_string()
        }
        _ => String::new(),
    }
}

/// A relation name as a plan writes it (literally; a part with a dot or a quote quoted).
fn plan_name(n: &Name) -> String {
    let part = |p: &str| {
        if p.contains('.') || p.contains('"') {
            format!("\"{}\"", p.replace('"', "\"\""))
        } else {
            p.to_string()
        }
    };
    match &n.schema {
        Some(sc) => format!("{}.{}", part(sc), part(&n.name)),
        None => part(&n.name),
    }
}

/// Index of the first token at depth 0 (from `from`) that is one of `words`.
fn find_top(t: &[Token], from: usize, words: &[&str]) -> Option<usize> {
    let mut depth = 0i32;
    for (k, x) in t.iter().enumerate().skip(from) {
        match x.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            _ if depth == 0 && words.iter().any(|w| x.is(w)) => return Some(k),
            _ => {}
        }
    }
    None
}

/// `(a, b)` at `p`: plain column names, or None.
fn ident_list(p: &mut P<'_>) -> Option<Vec<String>> {
    let save = p.i;
    let group = p.group();
    let mut out = Vec::new();
    let mut expect_ident = true;
    for t in &group {
        match t {
            Tok::Word(w) | Tok::QuotedIdent(w) if expect_ident => {
                out.push(w.clone());
                expect_ident = false;
            }
            Tok::Comma if !expect_ident => expect_ident = true,
            _ => {
                p.i = save;
                return None;
            }
        }
    }
    (!out.is_empty() && !expect_ident)
        .then_some(out)
        .or_else(|| {
            p.i = save;
            None
        })
}

/// The source text of the parenthesized group at `p` (without the parentheses).
fn group_text(st: &Statement, p: &mut P<'_>) -> Option<String> {
    if !p.peek().is_some_and(|t| t.tok == Tok::LParen) {
        return None;
    }
    let open = p.i;
    p.group();
    let close = p.i - 1;
    (close > open + 1).then(|| text(st, &p.t[open + 1..close]))
}

const ON_DELETE: [&[&str]; 5] = [
    &["cascade"],
    &["restrict"],
    &["no", "action"],
    &["set", "null"],
    &["set", "default"],
];

/// `ON DELETE action` / `ON UPDATE action` at `p`: (delete, update) as written.
fn referential_actions(p: &mut P<'_>) -> Result<Option<String>, String> {
    let mut on_delete = None;
    loop {
        if p.eat(&["on", "delete"]) {
            let a = ON_DELETE
                .iter()
                .find(|w| p.eat(w))
                .ok_or("an ON DELETE action pgphase does not know")?;
            on_delete = Some(a.join(" "));
        } else if p.eat(&["on", "update"]) {
            if !(p.eat(&["no", "action"]) || p.eat(&["restrict"])) {
                return Err("ON UPDATE actions are not a pgphase option".into());
            }
        } else {
            return Ok(on_delete);
        }
    }
}

/// A column definition: `name type [constraints]`.
#[derive(Default)]
struct ColDef {
    name: String,
    type_sql: String,
    not_null: bool,
    default: Option<String>,
    primary_key: bool,
    unique: bool,
    check: Option<String>,
    references: Option<(Name, Option<String>, Option<String>)>,
    notes: Vec<String>,
}

const COLUMN_CONSTRAINT_WORDS: [&str; 12] = [
    "constraint",
    "not",
    "null",
    "default",
    "unique",
    "primary",
    "check",
    "references",
    "generated",
    "collate",
    "deferrable",
    "initially",
];

fn column_def(st: &Statement, t: &[Token]) -> Result<ColDef, String> {
    let mut p = P::new(t);
    let name = p.ident().ok_or("no column name")?;
    let type_end = find_top(t, p.i, &COLUMN_CONSTRAINT_WORDS).unwrap_or(t.len());
    if type_end == p.i {
        return Err("no column type".into());
    }
    let mut c = ColDef {
        name,
        type_sql: text(st, &t[p.i..type_end]),
        ..Default::default()
    };
    p.i = type_end;
    while let Some(x) = p.peek() {
        if p.eat(&["constraint"]) {
            let n = p.ident().unwrap_or_default();
            c.notes.push(format!(
                "the constraint name `{n}` is not kept: pgphase names it"
            ));
        } else if p.eat(&["not", "null"]) {
            c.not_null = true;
        } else if p.eat(&["null"]) {
        } else if p.eat(&["default"]) {
            let end = find_top(t, p.i, &COLUMN_CONSTRAINT_WORDS).unwrap_or(t.len());
            c.default = Some(text(st, &t[p.i..end]));
            p.i = end;
        } else if p.eat(&["primary", "key"]) {
            c.primary_key = true;
        } else if p.eat(&["unique"]) {
            if p.at("nulls") {
                return Err("UNIQUE NULLS [NOT] DISTINCT is not a pgphase option".into());
            }
            c.unique = true;
        } else if p.eat(&["check"]) {
            c.check = Some(group_text(st, &mut p).ok_or("an empty CHECK")?);
            if p.at("no") {
                return Err("CHECK … NO INHERIT is not a pgphase option".into());
            }
        } else if p.eat(&["references"]) {
            let table = p.name().ok_or("REFERENCES without a table")?;
            let col = match ident_list(&mut p) {
                Some(cols) if cols.len() == 1 => Some(cols[0].clone()),
                Some(_) => return Err("a multi-column reference on one column".into()),
                None => None,
            };
            if p.at("match") {
                return Err("MATCH is not a pgphase option".into());
            }
            let on_delete = referential_actions(&mut p)?;
            c.references = Some((table, col, on_delete));
        } else {
            return Err(format!(
                "`{}` in a column definition is not a pgphase option",
                text(st, std::slice::from_ref(x)).to_uppercase()
            ));
        }
    }
    Ok(c)
}

/// A table-level constraint: `[CONSTRAINT name] FOREIGN KEY | CHECK | UNIQUE | PRIMARY KEY`.
enum TableConstraint {
    ForeignKey {
        name: Option<String>,
        columns: Vec<String>,
        target: Name,
        target_columns: Option<Vec<String>>,
        on_delete: Option<String>,
    },
    Check {
        name: Option<String>,
        expr: String,
    },
    Unique {
        name: Option<String>,
        columns: Vec<String>,
    },
    PrimaryKey {
        name: Option<String>,
        columns: Vec<String>,
    },
}

/// Reads a table constraint at `p`; `Ok(None)` when the tokens are not one.
fn table_constraint(st: &Statement, p: &mut P<'_>) -> Result<Option<TableConstraint>, String> {
    let name = if p.eat(&["constraint"]) {
        Some(p.ident().ok_or("CONSTRAINT without a name")?)
    } else {
        None
    };
    let c = if p.eat(&["foreign", "key"]) {
        let columns = ident_list(p).ok_or("foreign key columns that are not plain names")?;
        if !p.eat(&["references"]) {
            return Err("FOREIGN KEY without REFERENCES".into());
        }
        let target = p.name().ok_or("REFERENCES without a table")?;
        let target_columns = ident_list(p);
        if p.at("match") {
            return Err("MATCH is not a pgphase option".into());
        }
        let on_delete = referential_actions(p)?;
        TableConstraint::ForeignKey {
            name,
            columns,
            target,
            target_columns,
            on_delete,
        }
    } else if p.eat(&["check"]) {
        let expr = group_text(st, p).ok_or("an empty CHECK")?;
        TableConstraint::Check { name, expr }
    } else if p.eat(&["unique"]) {
        let columns = ident_list(p).ok_or("UNIQUE over something other than plain columns")?;
        TableConstraint::Unique { name, columns }
    } else if p.eat(&["primary", "key"]) {
        let columns = ident_list(p).ok_or("PRIMARY KEY over something other than columns")?;
        TableConstraint::PrimaryKey { name, columns }
    } else if name.is_some() {
        return Err("a constraint of a kind pgphase does not add".into());
    } else {
        return Ok(None);
    };
    if p.eat(&["not", "valid"]) {
        // the pgphase kinds add constraints NOT VALID and validate them anyway
    }
    if p.peek().is_some() {
        return Err(format!(
            "`{}` after the constraint is not a pgphase option",
            text(st, &p.t[p.i..]).chars().take(40).collect::<String>()
        ));
    }
    Ok(Some(c))
}

/// PostgreSQL's default constraint name (`<table>_<columns>_<suffix>`), cut to 63 bytes.
fn default_name(table: &str, columns: &[String], suffix: &str) -> String {
    let mut n = format!("{table}_{}_{suffix}", columns.join("_"));
    while n.len() > 63 {
        n.pop();
    }
    n
}

/// The change for a table constraint added to `table`.
fn constraint_change(table: &Name, c: TableConstraint) -> Result<Change, String> {
    let t = plan_name(table);
    let named = |name: Option<String>, cols: &[String], suffix: &str, notes: &mut Vec<String>| {
        name.unwrap_or_else(|| {
            let n = default_name(&table.name, cols, suffix);
            notes.push(format!(
                "unnamed in the SQL: `{n}` is PostgreSQL's default name for it"
            ));
            n
        })
    };
    let mut notes = Vec::new();
    let mut ch = match c {
        TableConstraint::ForeignKey {
            name,
            columns,
            target,
            target_columns,
            on_delete,
        } => {
            let target_columns = match target_columns {
                Some(c) => c,
                None => {
                    return Err("a foreign key that does not list the referenced columns".into())
                }
            };
            let name = named(name, &columns, "fkey", &mut notes);
            let mut body = vec![
                ("table", s(t)),
                ("name", s(name)),
                ("columns", Y::L(columns.into_iter().map(s).collect())),
                (
                    "references",
                    Y::M(vec![
                        ("table", s(plan_name(&target))),
                        ("columns", Y::L(target_columns.into_iter().map(s).collect())),
                    ]),
                ),
            ];
            if let Some(d) = on_delete {
                body.push(("on_delete", s(d)));
            }
            Change::new("add_foreign_key", body)
        }
        TableConstraint::Check { name, expr } => {
            let name = named(name, &[], "check", &mut notes);
            Change::new(
                "add_check",
                vec![("table", s(t)), ("name", s(name)), ("check", s(expr))],
            )
        }
        TableConstraint::Unique { name, columns } => {
            let name = named(name, &columns, "key", &mut notes);
            Change::new(
                "add_unique",
                vec![
                    ("table", s(t)),
                    ("name", s(name)),
                    ("columns", Y::L(columns.into_iter().map(s).collect())),
                ],
            )
        }
        TableConstraint::PrimaryKey { .. } => {
            return Err("a primary key added to an existing table is not a pgphase kind".into())
        }
    };
    ch.notes = notes;
    Ok(ch)
}

fn add_column(st: &Statement, table: &Name, t: &[Token]) -> Result<Change, String> {
    let mut p = P::new(t);
    p.eat(&["add"]);
    p.eat(&["column"]);
    let if_not_exists = p.eat(&["if", "not", "exists"]);
    let c = column_def(st, &t[p.i..])?;
    if c.primary_key {
        return Err("a primary-key column added to an existing table is not a pgphase kind".into());
    }
    let mut col = vec![("name", s(&c.name)), ("type", s(&c.type_sql))];
    if c.not_null {
        col.push(("nullable", Y::B(false)));
    }
    if let Some(d) = &c.default {
        col.push(("default", s(d)));
    }
    if c.unique {
        col.push(("unique", Y::B(true)));
    }
    if let Some(ck) = &c.check {
        col.push(("check", s(ck)));
    }
    if let Some((rt, rc, od)) = &c.references {
        let rc = rc
            .clone()
            .ok_or("REFERENCES without the referenced column")?;
        let mut r = vec![("table", s(plan_name(rt))), ("column", s(rc))];
        if let Some(od) = od {
            r.push(("on_delete", s(od)));
        }
        col.push(("references", Y::M(r)));
    }
    let mut ch = Change::new(
        "add_column",
        vec![("table", s(plan_name(table))), ("column", Y::M(col))],
    );
    ch.notes = c.notes;
    if if_not_exists {
        ch.notes
            .push("IF NOT EXISTS dropped: pgphase refuses a column that exists".into());
    }
    Ok(ch)
}

/// One `ALTER TABLE` action.
fn alter_action(st: &Statement, table: &Name, a: &stmt::Action) -> Result<Out, String> {
    let t = &a.tokens[..];
    let tn = plan_name(table);
    let ch = match &a.what {
        ActionKind::RenameColumn { from, to } => Change::new(
            "rename_column",
            vec![("table", s(tn)), ("from", s(from)), ("to", s(to))],
        ),
        ActionKind::RenameTable { to } => {
            Change::new("rename_table", vec![("from", s(tn)), ("to", s(to))])
        }
        ActionKind::DropColumn { column } => {
            if t.last().is_some_and(|x| x.is("cascade")) {
                return Err("DROP COLUMN … CASCADE drops what depends on the column".into());
            }
            let mut ch = Change::new("drop_column", vec![("table", s(tn)), ("column", s(column))]);
            if t.iter().any(|x| x.is("exists")) {
                ch.notes
                    .push("IF EXISTS dropped: pgphase refuses a column that does not exist".into());
            }
            ch
        }
        ActionKind::SetNotNull { column } => Change::new(
            "set_not_null",
            vec![("table", s(tn)), ("column", s(column))],
        ),
        ActionKind::AlterColumnType { column } => {
            let mut p = P::new(t);
            p.eat(&["alter"]);
            p.eat(&["column"]);
            p.ident();
            let _ = p.eat(&["set", "data", "type"]) || p.eat(&["type"]);
            let end = find_top(t, p.i, &["using", "collate"]).unwrap_or(t.len());
            if end < t.len() && t[end].is("collate") {
                return Err("COLLATE in a type change is not a pgphase option".into());
            }
            let type_sql = text(st, &t[p.i..end]);
            let mut body = vec![
                ("table", s(tn)),
                ("column", s(column)),
                ("type", s(&type_sql)),
            ];
            if end < t.len() {
                body.push(("using", s(text(st, &t[end + 1..]))));
            }
            let mut ch = Change::new("change_type", body);
            ch.human.push(format!(
                "change_type of `{}.{column}`: the application deployed at its gate must read the column as `{column}::{type_sql}` (docs/kinds/change_type.md); check `using` computes the new value from the old one",
                table.display()
            ));
            ch
        }
        ActionKind::AddColumn { .. } => add_column(st, table, t)?,
        ActionKind::AddConstraint { using_index, .. } => {
            if *using_index {
                return Err(
                    "ADD CONSTRAINT … USING INDEX: `add_unique` builds its own index".into(),
                );
            }
            let mut p = P::new(t);
            p.eat(&["add"]);
            match table_constraint(st, &mut p)? {
                Some(c) => constraint_change(table, c)?,
                None => return Err("a constraint of a kind pgphase does not add".into()),
            }
        }
        ActionKind::ValidateConstraint { .. } => {
            return Err("VALIDATE CONSTRAINT of a constraint not added in these files".into())
        }
        _ => {
            let mut p = P::new(t);
            if p.eat(&["alter"]) {
                p.eat(&["column"]);
                let column = p.ident().unwrap_or_default();
                if p.eat(&["set", "default"]) && p.peek().is_some() {
                    Change::new(
                        "set_default",
                        vec![
                            ("table", s(tn)),
                            ("column", s(column)),
                            ("default", s(text(st, &t[p.i..]))),
                        ],
                    )
                } else if p.eat(&["drop", "default"]) && p.peek().is_none() {
                    Change::new(
                        "drop_default",
                        vec![("table", s(tn)), ("column", s(column))],
                    )
                } else if p.eat(&["drop", "not", "null"]) && p.peek().is_none() {
                    Change::new(
                        "drop_not_null",
                        vec![("table", s(tn)), ("column", s(column))],
                    )
                } else {
                    return Err("an ALTER COLUMN action with no pgphase kind".into());
                }
            } else if p.eat(&["drop", "constraint"]) {
                p.eat(&["if", "exists"]);
                let name = p.ident().unwrap_or_default();
                if p.peek().is_some() {
                    return Err("DROP CONSTRAINT … CASCADE drops what depends on it".into());
                }
                Change::new("drop_constraint", vec![("table", s(tn)), ("name", s(name))])
            } else {
                return Err("an ALTER TABLE action with no pgphase kind".into());
            }
        }
    };
    Ok(Out::Change(ch))
}

fn create_index(st: &Statement) -> Result<Change, String> {
    let mut p = P::new(&st.tokens);
    p.eat(&["create"]);
    let unique = p.eat(&["unique"]);
    p.eat(&["index"]);
    p.eat(&["concurrently"]);
    let mut notes = Vec::new();
    if p.eat(&["if", "not", "exists"]) {
        notes.push("IF NOT EXISTS dropped: pgphase refuses an index that exists".to_string());
    }
    let name = if p.at("on") { None } else { p.ident() };
    if !p.eat(&["on"]) {
        return Err("CREATE INDEX without ON".into());
    }
    p.eat(&["only"]);
    let table = p.name().ok_or("CREATE INDEX without a table")?;
    let method = if p.eat(&["using"]) {
        Some(p.ident().ok_or("USING without a method")?)
    } else {
        None
    };
    // columns: plain names, ASC allowed (the default)
    let mut columns = Vec::new();
    {
        if !p.peek().is_some_and(|t| t.tok == Tok::LParen) {
            return Err("CREATE INDEX without columns".into());
        }
        let open = p.i;
        p.group();
        let inner = &st.tokens[open + 1..p.i - 1];
        for part in stmt::split_commas(inner) {
            match part {
                [c] if c.ident().is_some() => columns.push(c.ident().unwrap().to_string()),
                [c, asc] if c.ident().is_some() && asc.is("asc") => {
                    columns.push(c.ident().unwrap().to_string())
                }
                _ => {
                    return Err(format!(
                        "index keys `{}` are not plain columns (expressions, DESC, NULLS, operator classes and collations are not add_index options)",
                        text(st, part)
                    ))
                }
            }
        }
    }
    let predicate = if p.eat(&["where"]) {
        Some(text(st, &st.tokens[p.i..]))
    } else {
        None
    };
    if predicate.is_none() && p.peek().is_some() {
        return Err(format!(
            "`{}` is not an add_index option",
            text(st, &st.tokens[p.i..])
                .chars()
                .take(40)
                .collect::<String>()
        ));
    }
    let name = match name {
        Some(n) => n,
        None => {
            let n = default_name(&table.name, &columns, "idx");
            notes.push(format!(
                "unnamed in the SQL: `{n}` is PostgreSQL's default name for it"
            ));
            n
        }
    };
    let mut body = vec![
        ("table", s(plan_name(&table))),
        ("name", s(name)),
        ("columns", Y::L(columns.into_iter().map(s).collect())),
    ];
    if unique {
        body.push(("unique", Y::B(true)));
    }
    if let Some(w) = predicate {
        body.push(("where", s(w)));
    }
    if let Some(m) = method.filter(|m| m != "btree") {
        body.push(("method", s(m)));
    }
    let mut ch = Change::new("add_index", body);
    ch.notes = notes;
    Ok(ch)
}

fn create_table(st: &Statement) -> Result<Vec<Change>, String> {
    let mut p = P::new(&st.tokens);
    p.eat(&["create"]);
    if !p.eat(&["table"]) {
        return Err("temporary, unlogged and other special tables are not a pgphase kind".into());
    }
    if p.eat(&["if", "not", "exists"]) {
        return Err("CREATE TABLE IF NOT EXISTS: pgphase refuses a table that exists".into());
    }
    let table = p.name().ok_or("CREATE TABLE without a name")?;
    if !p.peek().is_some_and(|t| t.tok == Tok::LParen) {
        return Err("CREATE TABLE … AS / OF / PARTITION OF is not a pgphase kind".into());
    }
    let open = p.i;
    p.group();
    if p.peek().is_some() {
        return Err(format!(
            "`{}` after the columns is not a create_table option",
            text(st, &st.tokens[p.i..])
                .chars()
                .take(40)
                .collect::<String>()
        ));
    }
    let inner = &st.tokens[open + 1..p.i - 1];
    let mut columns = Vec::new();
    let mut key: Option<Vec<String>> = None;
    let mut after = Vec::new();
    let mut notes = Vec::new();
    for part in stmt::split_commas(inner) {
        let mut q = P::new(part);
        if part[0].is("like") {
            return Err("LIKE in CREATE TABLE is not a create_table option".into());
        }
        if let Some(c) = table_constraint(st, &mut q)? {
            match c {
                TableConstraint::PrimaryKey { name, columns } => {
                    if let Some(n) = name.filter(|n| *n != format!("{}_pkey", table.name)) {
                        notes.push(format!(
                            "the primary key is named `{}_pkey` (PostgreSQL's default), not `{n}`",
                            table.name
                        ));
                    }
                    key = Some(columns);
                }
                other => after.push(constraint_change(&table, other)?),
            }
            continue;
        }
        let c = column_def(st, part)?;
        notes.extend(c.notes.iter().cloned());
        let mut col = vec![("name", s(&c.name)), ("type", s(&c.type_sql))];
        if c.not_null && !c.primary_key {
            col.push(("nullable", Y::B(false)));
        }
        if let Some(d) = &c.default {
            col.push(("default", s(d)));
        }
        if c.primary_key {
            col.push(("primary_key", Y::B(true)));
        }
        if c.unique {
            after.push(constraint_change(
                &table,
                TableConstraint::Unique {
                    name: None,
                    columns: vec![c.name.clone()],
                },
            )?);
        }
        if let Some(ck) = &c.check {
            after.push(constraint_change(
                &table,
                TableConstraint::Check {
                    name: Some(default_name(
                        &table.name,
                        std::slice::from_ref(&c.name),
                        "check",
                    )),
                    expr: ck.clone(),
                },
            )?);
        }
        if let Some((rt, rc, od)) = c.references {
            after.push(constraint_change(
                &table,
                TableConstraint::ForeignKey {
                    name: None,
                    columns: vec![c.name.clone()],
                    target: rt,
                    target_columns: rc.map(|c| vec![c]),
                    on_delete: od,
                },
            )?);
        }
        columns.push(Y::M(col));
    }
    let mut body = vec![("name", s(plan_name(&table))), ("columns", Y::L(columns))];
    if let Some(k) = key {
        body.push(("primary_key", Y::L(k.into_iter().map(s).collect())));
    }
    let mut ch = Change::new("create_table", body);
    ch.notes = notes;
    let mut out = vec![ch];
    out.extend(after);
    Ok(out)
}

/// `UPDATE t SET c = expr WHERE c IS NULL`: (table, column, expr) — what Rails'
/// `change_column_null … default` and Django's AlterField run before SET NOT NULL.
fn null_fill(st: &Statement) -> Option<(Name, String, String)> {
    let mut p = P::new(&st.tokens);
    p.eat(&["update"]);
    p.eat(&["only"]);
    let table = p.name()?;
    if !p.eat(&["set"]) {
        return None;
    }
    let column = p.ident()?;
    if p.peek()?.tok != Tok::Op("=".into()) {
        return None;
    }
    p.i += 1;
    let w = find_top(&st.tokens, p.i, &["where"])?;
    let expr = text(st, &st.tokens[p.i..w]);
    let rest: Vec<&Token> = st.tokens[w + 1..].iter().collect();
    match rest.as_slice() {
        [c, is, null] if c.ident() == Some(column.as_str()) && is.is("is") && null.is("null") => {
            Some((table, column, expr))
        }
        _ => None,
    }
}

/// What one statement becomes, knowing the items before it.
fn convert_statement(st: &Statement, items: &mut [Item]) -> Vec<Out> {
    let kind = stmt::classify(st);
    let one = |r: Result<Change, String>| match r {
        Ok(c) => vec![Out::Change(c)],
        Err(e) => vec![Out::Sql(e)],
    };
    match kind {
        Kind::Begin | Kind::EndTransaction => vec![Out::Skip(
            "transaction control: pgphase runs each step in its own transaction".into(),
        )],
        _ if st.tokens.first().is_some_and(|t| t.is("set"))
            && st.tokens.get(1).is_some_and(|t| t.is("constraints")) =>
        {
            vec![Out::Skip(
                "SET CONSTRAINTS: pgphase runs each step in its own transaction".into(),
            )]
        }
        Kind::Setting { .. } => vec![Out::Skip(
            "a session setting: pgphase sets lock_timeout and its other settings itself".into(),
        )],
        Kind::AlterTable { table, actions } => actions
            .iter()
            .map(|a| {
                if let ActionKind::ValidateConstraint { name } = &a.what {
                    if validated_by_earlier(items, &table, name) {
                        return Out::Skip(format!(
                            "the change that adds `{name}` validates it"
                        ));
                    }
                }
                if let ActionKind::SetNotNull { column } = &a.what {
                    if let Some(fill) = take_null_fill(items, &table, column) {
                        return Out::Change(Change::new(
                            "set_not_null",
                            vec![
                                ("table", s(plan_name(&table))),
                                ("column", s(column)),
                                ("backfill", s(fill)),
                            ],
                        ));
                    }
                }
                if let Some(column) = drop_default_of(a) {
                    if take_temporary_default(items, &table, &column) {
                        return Out::Skip(
                            "it drops the temporary default set above for the UPDATE (Django's AlterField): both are left out; if the column had a default before, add a drop_default".into(),
                        );
                    }
                }
                match alter_action(st, &table, a) {
                    Ok(o) => o,
                    Err(e) => Out::Sql(e),
                }
            })
            .collect(),
        Kind::CreateIndex { .. } => one(create_index(st)),
        Kind::DropIndex { .. } => {
            let mut p = P::new(&st.tokens);
            p.eat(&["drop", "index"]);
            p.eat(&["concurrently"]);
            let if_exists = p.eat(&["if", "exists"]);
            let mut outs = Vec::new();
            while let Some(n) = p.name() {
                let mut c = Change::new("drop_index", vec![("name", s(plan_name(&n)))]);
                if if_exists {
                    c.notes.push(
                        "IF EXISTS dropped: pgphase refuses an index that does not exist".into(),
                    );
                }
                outs.push(Out::Change(c));
                if !p.peek().is_some_and(|t| t.tok == Tok::Comma) {
                    break;
                }
                p.i += 1;
            }
            if p.peek().is_some() || outs.is_empty() {
                return vec![Out::Sql(
                    "DROP INDEX … CASCADE drops what depends on the index".into(),
                )];
            }
            outs
        }
        Kind::CreateTable { .. } => match create_table(st) {
            Ok(v) => v.into_iter().map(Out::Change).collect(),
            Err(e) => vec![Out::Sql(e)],
        },
        Kind::DropTable { tables } => {
            if st.tokens.last().is_some_and(|t| t.is("cascade")) {
                return vec![Out::Sql(
                    "DROP TABLE … CASCADE drops what depends on the table".into(),
                )];
            }
            tables
                .iter()
                .map(|t| {
                    let mut c = Change::new("drop_table", vec![("name", s(plan_name(t)))]);
                    if st.tokens.iter().any(|x| x.is("exists")) {
                        c.notes.push(
                            "IF EXISTS dropped: pgphase refuses a table that does not exist"
                                .into(),
                        );
                    }
                    Out::Change(c)
                })
                .collect()
        }
        Kind::AddEnumValue {
            type_name,
            value,
            before,
            after,
        } => {
            let mut body = vec![("type", s(plan_name(&type_name))), ("value", s(value))];
            if let Some(b) = before {
                body.push(("before", s(b)));
            }
            if let Some(a) = after {
                body.push(("after", s(a)));
            }
            let mut c = Change::new("add_enum_value", body);
            if st.tokens.iter().any(|x| x.is("exists")) {
                c.notes
                    .push("IF NOT EXISTS dropped: pgphase refuses a value that exists".into());
            }
            vec![Out::Change(c)]
        }
        Kind::Update { .. } if null_fill(st).is_some() => vec![Out::Sql(
            "an UPDATE that no SET NOT NULL below uses as its backfill".into(),
        )],
        _ => match created_object(st) {
            Some(drop) => vec![Out::Created(drop)],
            None => vec![Out::Sql("no pgphase change kind does this statement".into())],
        },
    }
}

/// `CREATE TYPE | SEQUENCE | VIEW | SCHEMA | EXTENSION name …` (not OR REPLACE): the
/// `DROP … IF EXISTS` that undoes it.
fn created_object(st: &Statement) -> Option<String> {
    let mut p = P::new(&st.tokens);
    if !p.eat(&["create"]) {
        return None;
    }
    let what = ["type", "sequence", "view", "schema", "extension"]
        .into_iter()
        .find(|w| p.eat(&[w]))?;
    p.eat(&["if", "not", "exists"]);
    let start = p.i;
    p.name()?;
    Some(format!(
        "DROP {} IF EXISTS {}",
        what.to_uppercase(),
        text(st, &st.tokens[start..p.i])
    ))
}

/// An earlier converted change adds constraint `name` on `table` (and validates it).
fn validated_by_earlier(items: &[Item], table: &Name, name: &str) -> bool {
    let t = plan_name(table);
    items.iter().flat_map(|i| &i.outs).any(|o| match o {
        Out::Change(c) => {
            matches!(c.kind, "add_check" | "add_foreign_key" | "add_unique")
                && c.body
                    .iter()
                    .any(|(k, v)| *k == "table" && matches!(v, Y::S(x) if *x == t))
                && c.body
                    .iter()
                    .any(|(k, v)| *k == "name" && matches!(v, Y::S(x) if x == name))
        }
        _ => false,
    })
}

/// The expression of an earlier `UPDATE t SET c = expr WHERE c IS NULL` still left to an
/// `sql` change; that statement is then skipped (it becomes the backfill).
fn take_null_fill(items: &mut [Item], table: &Name, column: &str) -> Option<String> {
    for it in items.iter_mut().rev() {
        if !matches!(it.outs.as_slice(), [Out::Sql(_)]) {
            continue;
        }
        if let Some((t, c, expr)) = null_fill(&it.statement) {
            if t.matches(table) && c == column {
                it.outs = vec![Out::Skip(
                    "it becomes the `backfill` of the set_not_null below".into(),
                )];
                return Some(expr);
            }
        }
    }
    None
}

/// `ALTER [COLUMN] c DROP DEFAULT`: the column.
fn drop_default_of(a: &stmt::Action) -> Option<String> {
    let mut p = P::new(&a.tokens);
    p.eat(&["alter"]);
    p.eat(&["column"]);
    let c = p.ident()?;
    (p.eat(&["drop", "default"]) && p.peek().is_none()).then_some(c)
}

/// An earlier `set_default` of `table.column` in these files, which a SET NOT NULL
/// with a backfill followed: it is skipped (a default set only for the UPDATE).
fn take_temporary_default(items: &mut [Item], table: &Name, column: &str) -> bool {
    let t = plan_name(table);
    let is = |c: &Change, kind: &str| {
        c.kind == kind
            && c.body
                .iter()
                .any(|(k, v)| *k == "table" && matches!(v, Y::S(x) if *x == t))
            && c.body
                .iter()
                .any(|(k, v)| *k == "column" && matches!(v, Y::S(x) if x == column))
    };
    let filled = items.iter().flat_map(|i| &i.outs).any(|o| {
        matches!(o, Out::Change(c) if is(c, "set_not_null") && c.body.iter().any(|(k, _)| *k == "backfill"))
    });
    if !filled {
        return false;
    }
    for it in items.iter_mut().rev() {
        for o in it.outs.iter_mut() {
            if matches!(o, Out::Change(c) if is(c, "set_default")) {
                *o = Out::Skip(
                    "a default set only for the UPDATE below and dropped after it (Django's AlterField); set_not_null's backfill fills the NULLs".into(),
                );
                return true;
            }
        }
    }
    false
}

/// A plan name from a file name: characters a plan name cannot hold become `-`.
pub fn name_from(path: &str) -> String {
    let stem = std::path::Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    if n.is_empty() {
        "converted".into()
    } else {
        n
    }
}

/// A plan being assembled: its changes' YAML (with comments) and count.
struct Draft {
    body: String,
    changes: usize,
    human: Vec<String>,
}

fn plan_text(name: &str, depends_on: Option<&str>, header: &[String], d: &Draft) -> String {
    let mut o = String::new();
    for h in header {
        let _ = writeln!(o, "# {h}");
    }
    if !d.human.is_empty() {
        let _ = writeln!(o, "# Needs a human before it runs:");
        for h in &d.human {
            let _ = writeln!(o, "#   - {h}");
        }
    }
    let _ = writeln!(o, "name: {}", scalar(name, 2));
    if let Some(dep) = depends_on {
        let _ = writeln!(o, "depends_on: [{}]", scalar(dep, 2));
    }
    let _ = write!(o, "changes:\n{}", d.body);
    o
}

/// Whether the plan loader accepts the plan text.
fn accepted(text: &str, name: &str) -> Result<(), String> {
    crate::plan::parse(text, "converted", name)
        .map(|_| ())
        .map_err(|e| match e.pos {
            Some(p) => format!("line {}: {}", p.line, e.message),
            None => e.message,
        })
}

/// An `sql` change running `sql` in contract, with why.
fn sql_change(sql: &str, reason: &str) -> Change {
    let mut c = Change::new("sql", vec![("contract", s(sql))]);
    c.notes.push(format!("not converted: {reason}"));
    c.notes.push(
        "runs in contract (after the deploy gate, no rollback), as the raw migration did; move it to `expand` with a `rollback` if the new application needs it first".into(),
    );
    c
}

/// Converts the files (name, text) into plan(s) named `name`.
pub fn convert(files: &[(String, String)], name: &str) -> Conversion {
    let mut items: Vec<Item> = Vec::new();
    let mut needs_human = Vec::new();
    for (file, src) in files {
        let lexed = lexer::lex(src);
        for (line, e) in &lexed.errors {
            needs_human.push(format!(
                "{file}:{line}: {e}: the rest of the file may be misread"
            ));
        }
        for st in lexed.statements {
            let outs = convert_statement(&st, &mut items);
            items.push(Item {
                file: file.clone(),
                line: st.line,
                statement: st,
                outs,
            });
        }
    }

    let header = vec![
        format!(
            "Converted by `pgphase convert` from {}.",
            files
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "Read it, then `pgphase plan` it against a copy of the database.".to_string(),
    ];
    let mut plans: Vec<PlanText> = Vec::new();
    let mut statements = Vec::new();
    let mut draft = Draft {
        body: String::new(),
        changes: 0,
        human: Vec::new(),
    };
    let plan_name_of = |k: usize| {
        if k == 0 {
            name.to_string()
        } else {
            format!("{name}-{}", k + 1)
        }
    };
    let finish = |draft: &mut Draft, plans: &mut Vec<PlanText>| {
        let k = plans.len();
        let dep = (k > 0).then(|| plan_name_of(k - 1));
        let n = plan_name_of(k);
        plans.push(PlanText {
            yaml: plan_text(&n, dep.as_deref(), &header, draft),
            name: n,
            changes: draft.changes,
        });
        *draft = Draft {
            body: String::new(),
            changes: 0,
            human: Vec::new(),
        };
    };
    for it in &items {
        let at = format!("{}:{}", it.file, it.line);
        let excerpt = it.statement.excerpt(100);
        let mut kinds = Vec::new();
        let mut reasons = Vec::new();
        let mut comment = format!("  # {at}: {}\n", excerpt.replace('\n', " "));
        for out in &it.outs {
            let (mut change, sql_reason) = match out {
                Out::Skip(why) => {
                    let _ = writeln!(comment, "  #   skipped: {why}");
                    reasons.push(format!("skipped: {why}"));
                    continue;
                }
                Out::Sql(why) => (sql_change(&it.statement.text, why), Some(why.clone())),
                Out::Created(drop) => {
                    let mut c = Change::new(
                        "sql",
                        vec![("expand", s(&it.statement.text)), ("rollback", s(drop))],
                    );
                    c.notes.push(
                        "no change kind creates it: an `sql` change in expand, dropped by its rollback".into(),
                    );
                    (c, None)
                }
                Out::Change(c) => (c.clone(), None),
            };
            // the loader decides: in this plan, in the next one, or as an `sql` change
            let k = plans.len();
            let try_in = |d: &Draft, c: &Change, prefix: &str| {
                let trial = Draft {
                    body: format!("{}{prefix}{}", d.body, c.render()),
                    changes: d.changes + 1,
                    human: Vec::new(),
                };
                let dep = (k > 0).then(|| plan_name_of(k - 1));
                accepted(
                    &plan_text(&plan_name_of(k), dep.as_deref(), &[], &trial),
                    &plan_name_of(k),
                )
            };
            let mut sql_reason = sql_reason;
            if try_in(&draft, &change, &comment).is_err() {
                let alone = Draft {
                    body: String::new(),
                    changes: 0,
                    human: Vec::new(),
                };
                match try_in(&alone, &change, &comment) {
                    Ok(()) if draft.changes > 0 => {
                        let _ = writeln!(
                            draft.body,
                            "  # the next change cannot share this plan; it continues in plan `{}`",
                            plan_name_of(k + 1)
                        );
                        finish(&mut draft, &mut plans);
                    }
                    Ok(()) => {}
                    Err(e) if sql_reason.is_none() => {
                        let why = format!("the plan refuses the converted `{}` ({e})", change.kind);
                        change = sql_change(&it.statement.text, &why);
                        sql_reason = Some(why);
                        if try_in(&draft, &change, &comment).is_err() {
                            if try_in(&alone, &change, &comment).is_ok() {
                                if draft.changes > 0 {
                                    finish(&mut draft, &mut plans);
                                }
                            } else {
                                let why = format!(
                                    "{} and it cannot be an `sql` change either",
                                    sql_reason.unwrap()
                                );
                                let _ = writeln!(comment, "  #   NOT IN THE PLAN: {why}");
                                needs_human.push(format!("{at}: not in the plan: {why}; run it yourself or write the change by hand"));
                                reasons.push(format!("not in the plan: {why}"));
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        let why = format!("{} (as an `sql` change: {e})", sql_reason.unwrap());
                        let _ = writeln!(comment, "  #   NOT IN THE PLAN: {why}");
                        needs_human.push(format!(
                            "{at}: not in the plan: {why}; run it yourself or write the change by hand"
                        ));
                        reasons.push(format!("not in the plan: {why}"));
                        continue;
                    }
                }
            }
            if let Some(why) = &sql_reason {
                let h = format!("{at}: left to an `sql` change ({why})");
                needs_human.push(h.clone());
                draft.human.push(h);
                reasons.push(why.clone());
            }
            for h in &change.human {
                let h = format!("{at}: {h}");
                needs_human.push(h.clone());
                draft.human.push(h);
            }
            let _ = write!(draft.body, "{comment}{}", change.render());
            comment.clear();
            draft.changes += 1;
            kinds.push(change.kind);
        }
        if !comment.is_empty() {
            draft.body.push_str(&comment);
        }
        statements.push(Converted {
            file: it.file.clone(),
            line: it.line,
            statement: excerpt,
            kinds,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        });
    }
    if draft.changes > 0 || plans.is_empty() {
        finish(&mut draft, &mut plans);
    } else if let Some(last) = plans.last_mut() {
        // trailing comments only
        last.yaml.push_str(&draft.body);
    }
    Conversion {
        plans,
        statements,
        needs_human,
    }
}
