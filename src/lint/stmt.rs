//! What a statement does, read from its tokens: enough structure for the rules
//! (`ALTER TABLE` actions, index builds, drops, settings, transactions), and `Other`
//! for everything else — unknown syntax is never an error.

use super::lexer::{Statement, Tok, Token};

/// A relation name as PostgreSQL folds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
    /// Same relation, when one side leaves the schema out.
    pub fn matches(&self, other: &Name) -> bool {
        self.name == other.name
            && (self.schema.is_none() || other.schema.is_none() || self.schema == other.schema)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintKind {
    /// The expression's tokens, without the outer parentheses.
    Check(Vec<Tok>),
    ForeignKey,
    Unique,
    PrimaryKey,
    Exclude,
    NotNull,
}

/// One action of an `ALTER TABLE`, with where it starts.
#[derive(Clone, Debug)]
pub struct Action {
    pub line: usize,
    pub col: usize,
    pub what: ActionKind,
    /// The action's tokens (for `convert`, which reads the details the rules do not need).
    pub tokens: Vec<Token>,
}

#[derive(Clone, Debug)]
pub enum ActionKind {
    AddColumn {
        column: String,
        /// The type as written, e.g. `bigserial`, `timestamptz`.
        type_words: Vec<String>,
        default: Option<Vec<Tok>>,
        generated_stored: bool,
        identity: bool,
        inline_constraint: Option<ConstraintKind>,
    },
    AddConstraint {
        name: Option<String>,
        kind: ConstraintKind,
        not_valid: bool,
        using_index: bool,
    },
    AlterColumnType {
        column: String,
    },
    SetNotNull {
        column: String,
    },
    DropColumn {
        column: String,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: String,
    },
    ValidateConstraint {
        name: String,
    },
    /// SET TABLESPACE, SET LOGGED / UNLOGGED, SET ACCESS METHOD: rewrite the table.
    Rewrite(String),
    /// Takes at most SHARE UPDATE EXCLUSIVE (SET STATISTICS, VALIDATE, …).
    Weak,
    Other,
}

#[derive(Clone, Debug)]
pub enum Kind {
    AlterTable {
        table: Name,
        actions: Vec<Action>,
    },
    CreateIndex {
        concurrently: bool,
        table: Option<Name>,
    },
    DropIndex {
        concurrently: bool,
    },
    Reindex {
        concurrently: bool,
    },
    CreateTable {
        table: Name,
    },
    DropTable {
        tables: Vec<Name>,
    },
    /// `SET [LOCAL|SESSION] name = value`, `RESET name`, `set_config(name, value, local)`.
    Setting {
        name: String,
        /// None for RESET / DEFAULT.
        value: Option<String>,
        local: bool,
    },
    Begin,
    /// COMMIT, ROLLBACK, END, ABORT.
    EndTransaction,
    /// VACUUM FULL, CLUSTER: rewrite the table under ACCESS EXCLUSIVE.
    RewriteTable {
        what: String,
        table: Option<Name>,
    },
    Vacuum,
    /// LOCK TABLE, TRUNCATE, CREATE/DROP TRIGGER and other statements that lock an
    /// existing table against writes.
    Locking {
        what: String,
        table: Option<Name>,
    },
    Update {
        table: Name,
        has_where: bool,
    },
    /// `ALTER TYPE name ADD VALUE [IF NOT EXISTS] 'value' [BEFORE | AFTER 'other']`.
    AddEnumValue {
        type_name: Name,
        value: String,
        before: Option<String>,
        after: Option<String>,
    },
    Other,
}

/// A cursor over a statement's tokens.
pub struct P<'a> {
    pub t: &'a [Token],
    pub i: usize,
}

impl<'a> P<'a> {
    pub fn new(t: &'a [Token]) -> P<'a> {
        P { t, i: 0 }
    }
    pub fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i)
    }
    pub fn at(&self, w: &str) -> bool {
        self.peek().is_some_and(|t| t.is(w))
    }
    /// Consumes the words if they all come next.
    pub fn eat(&mut self, words: &[&str]) -> bool {
        let ok = words
            .iter()
            .enumerate()
            .all(|(k, w)| self.t.get(self.i + k).is_some_and(|t| t.is(w)));
        if ok {
            self.i += words.len();
        }
        ok
    }
    pub fn ident(&mut self) -> Option<String> {
        let s = self.peek()?.ident()?.to_string();
        self.i += 1;
        Some(s)
    }
    /// `[schema.]name`
    pub fn name(&mut self) -> Option<Name> {
        let first = self.ident()?;
        if self.peek().is_some_and(|t| t.tok == Tok::Dot) {
            self.i += 1;
            let second = self.ident()?;
            return Some(Name {
                schema: Some(first),
                name: second,
            });
        }
        Some(Name {
            schema: None,
            name: first,
        })
    }
    /// Tokens of a parenthesized group starting here (without the parentheses).
    pub fn group(&mut self) -> Vec<Tok> {
        let mut out = Vec::new();
        if !self.peek().is_some_and(|t| t.tok == Tok::LParen) {
            return out;
        }
        let mut depth = 0;
        while let Some(t) = self.peek() {
            self.i += 1;
            match t.tok {
                Tok::LParen => {
                    depth += 1;
                    if depth == 1 {
                        continue;
                    }
                }
                Tok::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            out.push(t.tok.clone());
        }
        out
    }
}

/// Splits tokens at top-level commas.
pub fn split_commas(t: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (k, tok) in t.iter().enumerate() {
        match tok.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            Tok::Comma if depth == 0 => {
                out.push(&t[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    out.push(&t[start..]);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

pub fn classify(s: &Statement) -> Kind {
    let mut p = P::new(&s.tokens);
    if p.eat(&["alter", "table"]) {
        p.eat(&["if", "exists"]);
        p.eat(&["only"]);
        let Some(table) = p.name() else {
            return Kind::Other;
        };
        if p.peek().is_some_and(|t| t.tok == Tok::Op("*".into())) {
            p.i += 1;
        }
        let actions = split_commas(&s.tokens[p.i..])
            .into_iter()
            .map(action)
            .collect();
        return Kind::AlterTable { table, actions };
    }
    if p.eat(&["create"]) {
        p.eat(&["unique"]);
        if p.eat(&["index"]) {
            let concurrently = p.eat(&["concurrently"]);
            // the table follows ON [ONLY]
            while let Some(t) = p.peek() {
                p.i += 1;
                if t.is("on") {
                    break;
                }
            }
            p.eat(&["only"]);
            return Kind::CreateIndex {
                concurrently,
                table: p.name(),
            };
        }
        let mut q = P::new(&s.tokens[1..]);
        q.eat(&["or", "replace"]);
        let _ = q.eat(&["global"]) || q.eat(&["local"]);
        let _ = q.eat(&["temporary"]) || q.eat(&["temp"]) || q.eat(&["unlogged"]);
        if q.eat(&["table"]) {
            q.eat(&["if", "not", "exists"]);
            if let Some(table) = q.name() {
                return Kind::CreateTable { table };
            }
        }
        if q.eat(&["trigger"]) || q.eat(&["constraint", "trigger"]) {
            let table = s.tokens.iter().position(|t| t.is("on")).and_then(|k| {
                P {
                    t: &s.tokens,
                    i: k + 1,
                }
                .name()
            });
            return Kind::Locking {
                what: "CREATE TRIGGER".into(),
                table,
            };
        }
        return Kind::Other;
    }
    if p.eat(&["alter", "type"]) {
        if let Some(type_name) = p.name() {
            if p.eat(&["add", "value"]) {
                p.eat(&["if", "not", "exists"]);
                let text = |p: &mut P<'_>| match p.peek().map(|t| &t.tok) {
                    Some(Tok::Str(v)) => {
                        p.i += 1;
                        Some(v.clone())
                    }
                    _ => None,
                };
                if let Some(value) = text(&mut p) {
                    let before = if p.eat(&["before"]) {
                        text(&mut p)
                    } else {
                        None
                    };
                    let after = if p.eat(&["after"]) {
                        text(&mut p)
                    } else {
                        None
                    };
                    if p.peek().is_none() {
                        return Kind::AddEnumValue {
                            type_name,
                            value,
                            before,
                            after,
                        };
                    }
                }
            }
        }
        return Kind::Other;
    }
    if p.eat(&["drop", "index"]) {
        return Kind::DropIndex {
            concurrently: p.eat(&["concurrently"]),
        };
    }
    if p.eat(&["drop", "table"]) {
        p.eat(&["if", "exists"]);
        let mut tables = Vec::new();
        while let Some(n) = p.name() {
            tables.push(n);
            if !p.peek().is_some_and(|t| t.tok == Tok::Comma) {
                break;
            }
            p.i += 1;
        }
        return Kind::DropTable { tables };
    }
    if p.eat(&["drop", "trigger"]) {
        let table = s.tokens.iter().position(|t| t.is("on")).and_then(|k| {
            P {
                t: &s.tokens,
                i: k + 1,
            }
            .name()
        });
        return Kind::Locking {
            what: "DROP TRIGGER".into(),
            table,
        };
    }
    if p.eat(&["reindex"]) {
        return Kind::Reindex {
            concurrently: s.tokens.iter().any(|t| t.is("concurrently")),
        };
    }
    if p.eat(&["vacuum"]) {
        let full = s.tokens.iter().any(|t| t.is("full"));
        if full {
            let table = s
                .tokens
                .last()
                .filter(|t| t.ident().is_some() && !t.is("full"))
                .and_then(|_| {
                    let k = s.tokens.len() - 1;
                    P { t: &s.tokens, i: k }.name()
                });
            return Kind::RewriteTable {
                what: "VACUUM FULL".into(),
                table,
            };
        }
        return Kind::Vacuum;
    }
    if p.eat(&["cluster"]) {
        p.eat(&["verbose"]);
        return Kind::RewriteTable {
            what: "CLUSTER".into(),
            table: p.name(),
        };
    }
    if p.eat(&["lock"]) {
        p.eat(&["table"]);
        p.eat(&["only"]);
        return Kind::Locking {
            what: "LOCK TABLE".into(),
            table: p.name(),
        };
    }
    if p.eat(&["truncate"]) {
        p.eat(&["table"]);
        p.eat(&["only"]);
        return Kind::Locking {
            what: "TRUNCATE".into(),
            table: p.name(),
        };
    }
    if p.eat(&["update"]) {
        p.eat(&["only"]);
        if let Some(table) = p.name() {
            let has_where = s.tokens.iter().any(|t| t.is("where"));
            return Kind::Update { table, has_where };
        }
        return Kind::Other;
    }
    if p.eat(&["begin"]) || p.eat(&["start", "transaction"]) {
        return Kind::Begin;
    }
    if p.eat(&["commit"]) || p.eat(&["rollback"]) || p.eat(&["end"]) || p.eat(&["abort"]) {
        if p.at("prepared") || p.at("to") {
            return Kind::Other;
        }
        return Kind::EndTransaction;
    }
    if p.eat(&["set"]) {
        let local = p.eat(&["local"]);
        p.eat(&["session"]);
        let Some(name) = p.ident() else {
            return Kind::Other;
        };
        let _ = p.eat(&["to"])
            || p.peek().is_some_and(|t| t.tok == Tok::Op("=".into())) && {
                p.i += 1;
                true
            };
        let value = match p.peek().map(|t| &t.tok) {
            Some(Tok::Word(w)) if w == "default" => None,
            Some(Tok::Str(v)) | Some(Tok::Number(v)) | Some(Tok::Word(v)) => Some(v.clone()),
            _ => None,
        };
        return Kind::Setting { name, value, local };
    }
    if p.eat(&["reset"]) {
        let name = p.ident().unwrap_or_default();
        return Kind::Setting {
            name,
            value: None,
            local: false,
        };
    }
    // SELECT set_config('lock_timeout', '2s', false)
    if p.eat(&["select", "set_config"]) {
        let args = p.group();
        let strs: Vec<&str> = args
            .iter()
            .filter_map(|t| match t {
                Tok::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if strs.len() >= 2 {
            return Kind::Setting {
                name: strs[0].to_lowercase(),
                value: Some(strs[1].to_string()),
                local: args.iter().any(|t| *t == Tok::Word("true".into())),
            };
        }
    }
    Kind::Other
}

fn constraint_kind(p: &mut P<'_>) -> Option<ConstraintKind> {
    if p.eat(&["check"]) {
        return Some(ConstraintKind::Check(p.group()));
    }
    if p.eat(&["foreign", "key"]) || p.at("references") {
        return Some(ConstraintKind::ForeignKey);
    }
    if p.eat(&["unique"]) {
        return Some(ConstraintKind::Unique);
    }
    if p.eat(&["primary", "key"]) {
        return Some(ConstraintKind::PrimaryKey);
    }
    if p.eat(&["exclude"]) {
        return Some(ConstraintKind::Exclude);
    }
    if p.eat(&["not", "null"]) {
        return Some(ConstraintKind::NotNull);
    }
    None
}

fn action(t: &[Token]) -> Action {
    let (line, col) = (t[0].line, t[0].col);
    let mut p = P::new(t);
    let has = |w: &str| t.iter().any(|x| x.is(w));
    let what = if p.eat(&["add"]) {
        if p.eat(&["constraint"]) {
            let name = p.ident();
            let kind = constraint_kind(&mut p).unwrap_or(ConstraintKind::Check(Vec::new()));
            ActionKind::AddConstraint {
                name,
                kind,
                not_valid: t.windows(2).any(|w| w[0].is("not") && w[1].is("valid")),
                using_index: t.windows(2).any(|w| w[0].is("using") && w[1].is("index")),
            }
        } else if let Some(kind) = {
            let save = p.i;
            let k = constraint_kind(&mut p);
            if k.is_none() {
                p.i = save;
            }
            k
        } {
            ActionKind::AddConstraint {
                name: None,
                kind,
                not_valid: t.windows(2).any(|w| w[0].is("not") && w[1].is("valid")),
                using_index: t.windows(2).any(|w| w[0].is("using") && w[1].is("index")),
            }
        } else {
            p.eat(&["column"]);
            p.eat(&["if", "not", "exists"]);
            let column = p.ident().unwrap_or_default();
            let mut type_words = Vec::new();
            while let Some(x) = p.peek() {
                match x.word() {
                    Some(w)
                        if [
                            "default",
                            "not",
                            "null",
                            "constraint",
                            "check",
                            "references",
                            "unique",
                            "primary",
                            "generated",
                            "collate",
                        ]
                        .contains(&w) =>
                    {
                        break
                    }
                    _ => {}
                }
                if let Some(w) = x.ident() {
                    type_words.push(w.to_string());
                }
                p.i += 1;
            }
            let default = t.iter().position(|x| x.is("default")).map(|k| {
                t[k + 1..]
                    .iter()
                    .take_while(|x| {
                        ![
                            "not",
                            "null",
                            "constraint",
                            "check",
                            "references",
                            "unique",
                            "primary",
                            "generated",
                            "collate",
                        ]
                        .iter()
                        .any(|w| x.is(w))
                    })
                    .map(|x| x.tok.clone())
                    .collect()
            });
            let mut q = P::new(t);
            let inline_constraint = loop {
                match q.peek() {
                    None => break None,
                    Some(x)
                        if x.is("check")
                            || x.is("references")
                            || x.is("unique")
                            || x.is("primary") =>
                    {
                        break constraint_kind(&mut q)
                    }
                    _ => q.i += 1,
                }
            };
            ActionKind::AddColumn {
                column,
                type_words,
                default,
                generated_stored: has("generated") && has("stored"),
                identity: has("generated") && has("identity"),
                inline_constraint,
            }
        }
    } else if p.eat(&["alter"]) {
        p.eat(&["column"]);
        let column = p.ident().unwrap_or_default();
        if p.eat(&["type"]) || p.eat(&["set", "data", "type"]) {
            ActionKind::AlterColumnType { column }
        } else if p.eat(&["set", "not", "null"]) {
            ActionKind::SetNotNull { column }
        } else if p.eat(&["set", "statistics"])
            || p.eat(&["set", "storage"])
            || p.eat(&["set", "compression"])
        {
            ActionKind::Weak
        } else {
            ActionKind::Other
        }
    } else if p.eat(&["drop"]) {
        if p.eat(&["constraint"]) {
            ActionKind::Other
        } else {
            p.eat(&["column"]);
            p.eat(&["if", "exists"]);
            ActionKind::DropColumn {
                column: p.ident().unwrap_or_default(),
            }
        }
    } else if p.eat(&["rename"]) {
        if p.eat(&["to"]) {
            ActionKind::RenameTable {
                to: p.ident().unwrap_or_default(),
            }
        } else if p.eat(&["constraint"]) {
            ActionKind::Other
        } else {
            p.eat(&["column"]);
            let from = p.ident().unwrap_or_default();
            p.eat(&["to"]);
            ActionKind::RenameColumn {
                from,
                to: p.ident().unwrap_or_default(),
            }
        }
    } else if p.eat(&["validate", "constraint"]) {
        ActionKind::ValidateConstraint {
            name: p.ident().unwrap_or_default(),
        }
    } else if p.eat(&["set", "tablespace"]) {
        ActionKind::Rewrite("SET TABLESPACE".into())
    } else if p.eat(&["set", "logged"]) {
        ActionKind::Rewrite("SET LOGGED".into())
    } else if p.eat(&["set", "unlogged"]) {
        ActionKind::Rewrite("SET UNLOGGED".into())
    } else if p.eat(&["set", "access", "method"]) {
        ActionKind::Rewrite("SET ACCESS METHOD".into())
    } else if p.eat(&["set", "without", "cluster"])
        || p.eat(&["set", "statistics"])
        || p.eat(&["cluster", "on"])
    {
        ActionKind::Weak
    } else {
        ActionKind::Other
    };
    Action {
        line,
        col,
        what,
        tokens: t.to_vec(),
    }
}

/// `col IS NOT NULL`, possibly in extra parentheses: the column.
pub fn not_null_check_column(expr: &[Tok]) -> Option<String> {
    let inner: Vec<&Tok> = expr
        .iter()
        .filter(|t| !matches!(t, Tok::LParen | Tok::RParen))
        .collect();
    match inner.as_slice() {
        [Tok::Word(c) | Tok::QuotedIdent(c), Tok::Word(is), Tok::Word(not), Tok::Word(null)]
            if is == "is" && not == "not" && null == "null" =>
        {
            Some(c.clone())
        }
        _ => None,
    }
}
