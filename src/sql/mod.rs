//! Identifier quoting and statement building, and the one SQL lexer ([`lexer`]) that
//! plan, recipes and lint read SQL with.
//!
//! Every name that reaches SQL goes through [`Ident`] or [`QualifiedName`]; nothing in
//! the crate formats a raw user-supplied name into a statement. Only the expressions a
//! plan documents as SQL (defaults, `using`, checks) are passed through as written.

pub mod lexer;

use lexer::{Tok, Token};

use serde::{Deserialize, Serialize};
use std::fmt;

/// PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// An SQL identifier; `Display` renders it double-quoted when needed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: impl Into<String>) -> Self {
        Ident(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The identifier quoted for SQL text (always valid, quoted only when needed).
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_ident(&self.0))
    }
}

tokio::task_local! {
    /// The schema a plan's unqualified names resolve to, within [`in_schema`].
    static DEFAULT_SCHEMA: String;
}

/// The schema a name without one is in: `public`, or the schema [`in_schema`] runs a
/// task in (a fleet's schema-per-tenant target).
pub fn default_schema() -> String {
    DEFAULT_SCHEMA
        .try_with(|s| s.clone())
        .unwrap_or_else(|_| "public".to_string())
}

/// Runs `fut` with the plan's unqualified names (`table`, not `schema.table`) resolving
/// to `schema` instead of `public`: loading, validating and expanding a plan inside it
/// aims the plan at one tenant's schema. Names written with a schema are unchanged.
pub async fn in_schema<F: std::future::Future>(schema: &str, fut: F) -> F::Output {
    DEFAULT_SCHEMA.scope(schema.to_string(), fut).await
}

/// [`in_schema`] for synchronous code: `f` runs with unqualified names resolving to
/// `schema`.
pub fn with_schema<R>(schema: &str, f: impl FnOnce() -> R) -> R {
    DEFAULT_SCHEMA.sync_scope(schema.to_string(), f)
}

/// A schema-qualified relation name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: Ident::new(schema),
            name: Ident::new(name),
        }
    }

    /// Parses `table` or `schema.table` as written in a plan. Either part may be
    /// double-quoted to contain dots or capitals; unquoted parts are taken literally
    /// (plans name objects as they are in the catalog, no case folding).
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = split_dotted(text)?;
        match parts.as_slice() {
            [name] => Ok(QualifiedName::new(default_schema(), name.clone())),
            [schema, name] => Ok(QualifiedName::new(schema.clone(), name.clone())),
            _ => Err(format!(
                "`{text}` has {} dot-separated parts; expected `table` or `schema.table` (quote a name that contains a dot)",
                parts.len()
            )),
        }
    }

    /// Text form for messages: `schema.table`, `public.` omitted.
    pub fn display_short(&self) -> String {
        if self.schema.as_str() == "public" {
            self.name.to_string()
        } else {
            self.to_string()
        }
    }

    /// A string literal naming the relation, for `'…'::regclass`.
    pub fn regclass_literal(&self) -> String {
        quote_literal(&self.to_string())
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

fn split_dotted(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.is_empty() && !quoted_part => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("unterminated quoted identifier in `{text}`")),
                    }
                }
            }
            '.' => {
                if cur.is_empty() {
                    return Err(format!("empty name part in `{text}`"));
                }
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            _ if quoted_part => {
                return Err(format!("unexpected `{c}` after a quoted name in `{text}`"));
            }
            _ => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err(format!("empty name part in `{text}`"));
    }
    parts.push(cur);
    Ok(parts)
}

/// Quotes an identifier if it is not a plain lower-case, non-keyword name.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A standard-conforming string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Keywords that must be quoted when used as a column or table name (reserved and
/// type/function-name keywords). Over-quoting is harmless; under-quoting is a bug, so
/// this errs on the side of the larger set.
fn is_reserved(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "between",
        "bigint",
        "binary",
        "bit",
        "boolean",
        "both",
        "case",
        "cast",
        "char",
        "character",
        "check",
        "coalesce",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "dec",
        "decimal",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "exists",
        "extract",
        "false",
        "fetch",
        "float",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "greatest",
        "group",
        "grouping",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "inout",
        "int",
        "integer",
        "intersect",
        "interval",
        "into",
        "is",
        "isnull",
        "join",
        "json",
        "lateral",
        "leading",
        "least",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "national",
        "natural",
        "nchar",
        "none",
        "normalize",
        "not",
        "notnull",
        "null",
        "nullif",
        "numeric",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "out",
        "outer",
        "overlaps",
        "overlay",
        "placing",
        "position",
        "precision",
        "primary",
        "real",
        "references",
        "returning",
        "right",
        "row",
        "select",
        "session_user",
        "setof",
        "similar",
        "smallint",
        "some",
        "substring",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "time",
        "timestamp",
        "to",
        "trailing",
        "treat",
        "trim",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "values",
        "varchar",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
        "xmlattributes",
        "xmlconcat",
        "xmlelement",
        "xmlexists",
        "xmlforest",
        "xmlnamespaces",
        "xmlparse",
        "xmlpi",
        "xmlroot",
        "xmlserialize",
        "xmltable",
    ];
    WORDS.contains(&name)
}

/// Builds an identifier no longer than 63 bytes: `base` truncated on a character
/// boundary, followed by `suffix`. Used for names pgphase derives (indexes, triggers).
pub fn derived_name(base: &str, suffix: &str) -> String {
    let budget = MAX_IDENT_BYTES.saturating_sub(suffix.len());
    let mut cut = base.len().min(budget);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], suffix)
}

/// Replaces every reference to column `from` by `to` in an SQL expression as
/// PostgreSQL deparses it (`pg_get_expr`, `pg_get_constraintdef`): identifier tokens
/// outside string literals and quoted identifiers that name `from` exactly.
/// Qualified references (`x.from`) are left alone only when qualified by something
/// other than nothing — the deparser does not qualify single-table expressions.
pub fn rename_column_refs(expr: &str, from: &str, to: &str) -> String {
    let tokens: Vec<Token> = lexer::lex(expr)
        .statements
        .into_iter()
        .flat_map(|s| s.tokens)
        .collect();
    let mut out = String::with_capacity(expr.len());
    let mut copied = 0;
    for (k, t) in tokens.iter().enumerate() {
        // an unquoted word as written (the deparser's keywords are upper case)
        let name = match &t.tok {
            Tok::Word(_) => &expr[t.start..t.end],
            Tok::QuotedIdent(name) => name.as_str(),
            _ => continue,
        };
        let right_after =
            |tok: &Tok| k > 0 && tokens[k - 1].end == t.start && tokens[k - 1].tok == *tok;
        let qualified = right_after(&Tok::Dot);
        let cast = matches!(t.tok, Tok::Word(_)) && right_after(&Tok::Op("::".into()));
        let call = tokens.get(k + 1).is_some_and(|next| {
            next.tok == Tok::LParen && expr[t.end..next.start].chars().all(|c| c == ' ')
        });
        if name == from && !qualified && !cast && !call {
            out.push_str(&expr[copied..t.start]);
            out.push_str(&quote_ident(to));
            copied = t.end;
        }
    }
    out.push_str(&expr[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_words() {
        assert!(is_reserved("user"));
        assert!(is_reserved("select"));
        assert!(is_reserved("order"));
        assert!(!is_reserved("comments"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("body"), "body");
        assert_eq!(quote_ident("Body"), "\"Body\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("order"), "\"order\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
        assert_eq!(quote_ident("café"), "\"café\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            QualifiedName::parse("comments").unwrap().to_string(),
            "public.comments"
        );
        assert_eq!(
            QualifiedName::parse("app.Comments").unwrap().to_string(),
            "app.\"Comments\""
        );
        assert_eq!(
            QualifiedName::parse("\"my.schema\".\"t\"\"x\"")
                .unwrap()
                .to_string(),
            "\"my.schema\".\"t\"\"x\""
        );
        assert!(QualifiedName::parse("a.b.c").is_err());
        assert!(QualifiedName::parse("a.").is_err());
    }

    #[test]
    fn derived_names_fit() {
        let long = "é".repeat(40);
        let n = derived_name(&long, "_idx");
        assert!(n.len() <= 63);
        assert!(n.ends_with("_idx"));
    }

    #[test]
    fn renames_column_references_only() {
        assert_eq!(
            rename_column_refs("(length(contents) > 0)", "contents", "body"),
            "(length(body) > 0)"
        );
        assert_eq!(
            rename_column_refs("(contents <> 'contents'::text)", "contents", "body"),
            "(body <> 'contents'::text)"
        );
        assert_eq!(
            rename_column_refs("(\"Contents\" IS NOT NULL)", "Contents", "new name"),
            "(\"new name\" IS NOT NULL)"
        );
        assert_eq!(
            rename_column_refs("lower(contents_x)", "contents", "body"),
            "lower(contents_x)"
        );
        // the deparser's upper-case keywords are not the column `valid`; a cast, a
        // qualified name and a call are not references either
        assert_eq!(
            rename_column_refs("CHECK ((valid > 0)) NOT VALID", "valid", "ok"),
            "CHECK ((ok > 0)) NOT VALID"
        );
        assert_eq!(
            rename_column_refs("(t.x + x + x::x + x(1) + 'x')", "x", "y"),
            "(t.x + y + y::x + x(1) + 'x')"
        );
    }
}
