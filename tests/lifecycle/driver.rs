//! How an application's database driver sends the scenarios' SQL, as production
//! drivers do:
//!
//! * [`Protocol::Cached`] (JDBC after `prepareThreshold` uses, pgx's default statement
//!   cache, psycopg 3 after `prepare_threshold` uses, asyncpg, Rails with
//!   `prepared_statements: true`): each statement is prepared once per connection,
//!   as a named server-side prepared statement, and reused, from a per-connection
//!   cache keyed by its text. A statement whose execution failed is evicted and
//!   prepared again on its next use (what pgx and JDBC do after `cached plan must not
//!   change result type`).
//! * [`Protocol::Unnamed`] (drivers configured for a transaction pooler: pgx
//!   `QueryExecModeExec`, JDBC `prepareThreshold=0`, psycopg 3 `prepare_threshold=None`):
//!   parse, bind, describe and execute of an unnamed statement in one round trip,
//!   nothing kept on the server between transactions.
//!
//! Either way the literals of the scenario's SQL text become parameters
//! ([`parameterize`]): integers and decimals typed `int4`/`int8`/`numeric` (as drivers
//! type their numbers), standard string constants of unspecified type (the server
//! infers it, as for a libpq `paramTypes` of 0), all sent in text format. So a
//! scenario writes plain SQL and every client runs it as a driver would.

use std::collections::HashMap;
use std::error::Error;

use pgphase::sql::lexer::{lex, Tok};
use tokio_postgres::types::{Format, IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Statement};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Cached,
    Unnamed,
}

/// A statement with its literals turned into parameters.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub text: String,
    /// Each parameter's type (`UNKNOWN`: left to the server) and text value.
    pub params: Vec<(Type, String)>,
}

/// Words after which a string constant is an expression (a parameter may stand
/// there); after any other word it is a typed literal (`date '2024-01-01'`,
/// `interval '1 minute'`) and stays in the text.
const BEFORE_EXPRESSION: &[&str] = &[
    "select",
    "where",
    "and",
    "or",
    "not",
    "then",
    "else",
    "when",
    "like",
    "ilike",
    "in",
    "is",
    "from",
    "returning",
    "limit",
    "offset",
    "case",
    "between",
    "having",
    "on",
    "set",
    "values",
    "any",
    "all",
];

/// Turns the literals of one SQL statement into `$n` parameters, as a driver's
/// application code would have written it. Type modifiers (`numeric(6,2)` after
/// `::` or `AS`), positional `ORDER BY`/`GROUP BY` numbers, typed literals and
/// non-standard strings (`E''`, dollar quotes) stay in the text.
pub fn parameterize(sql: &str) -> Query {
    let lexed = lex(sql);
    assert!(
        lexed.statements.len() <= 1,
        "one statement per application query (a driver's prepared statement holds one): {sql}"
    );
    let Some(stmt) = lexed.statements.first() else {
        return Query {
            text: sql.to_string(),
            params: Vec::new(),
        };
    };
    let toks = &stmt.tokens;
    if toks.iter().any(|t| t.tok == Tok::Param) {
        // already parameterized by hand: sent as written, without parameters
        return Query {
            text: sql.to_string(),
            params: Vec::new(),
        };
    }
    let mut text = String::new();
    let mut params = Vec::new();
    let mut copied = 0;
    // depth of the parentheses of a type modifier being skipped (0: none)
    let mut typmod_depth = 0usize;
    for (k, t) in toks.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| &toks[p]);
        let source = &sql[t.start..t.end];
        if typmod_depth > 0 {
            match t.tok {
                Tok::LParen => typmod_depth += 1,
                Tok::RParen => typmod_depth -= 1,
                _ => {}
            }
            continue;
        }
        if t.tok == Tok::LParen && k >= 2 {
            // `::numeric(6,2)`, `AS varchar(200)`: a type name, then its modifiers
            let after_type =
                matches!(&toks[k - 2].tok, Tok::Op(o) if o == "::") || toks[k - 2].is("as");
            if after_type && toks[k - 1].word().is_some() {
                typmod_depth = 1;
                continue;
            }
        }
        let ty = match &t.tok {
            Tok::Number(n) if !prev.is_some_and(|p| p.is("by")) => {
                if n.contains(['.', 'e', 'E']) {
                    Some(Type::NUMERIC)
                } else {
                    match n.parse::<i64>() {
                        Ok(v) if i32::try_from(v).is_ok() => Some(Type::INT4),
                        Ok(_) => Some(Type::INT8),
                        Err(_) => None,
                    }
                }
            }
            Tok::Str(_) if source.starts_with('\'') => {
                let expression = match prev.map(|p| &p.tok) {
                    None => true,
                    Some(Tok::Word(w)) => BEFORE_EXPRESSION.contains(&w.as_str()),
                    Some(Tok::QuotedIdent(_)) => false,
                    Some(_) => true,
                };
                expression.then_some(Type::UNKNOWN)
            }
            _ => None,
        };
        let Some(ty) = ty else { continue };
        let value = match &t.tok {
            Tok::Str(v) => v.clone(),
            _ => source.to_string(),
        };
        params.push((ty, value));
        text.push_str(&sql[copied..t.start]);
        text.push_str(&format!("${}", params.len()));
        copied = t.end;
    }
    text.push_str(&sql[copied..]);
    Query { text, params }
}

/// The `SELECT *` / `RETURNING *` variant of a statement: the top-level select list
/// (up to its `FROM`) and the top-level `RETURNING` list become `*`. Statements with
/// `WITH`, `GROUP BY`, `DISTINCT` or aggregates in the list are left as they are.
pub fn star(sql: &str) -> String {
    let lexed = lex(sql);
    let Some(stmt) = lexed.statements.first() else {
        return sql.to_string();
    };
    let toks = &stmt.tokens;
    let mut depth = 0i32;
    let mut top = Vec::new(); // indexes of the top-level tokens
    for (k, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            _ if depth == 0 => top.push(k),
            _ => {}
        }
    }
    let word_at = |k: usize| toks[k].word().unwrap_or("");
    if top
        .iter()
        .any(|&k| matches!(word_at(k), "group" | "with" | "distinct"))
    {
        return sql.to_string();
    }
    let first = match toks.first() {
        Some(t) => t,
        None => return sql.to_string(),
    };
    if first.is("select") {
        let Some(&from) = top.iter().find(|&&k| toks[k].is("from")) else {
            return sql.to_string();
        };
        let list = &sql[first.end..toks[from].start];
        let aggregate = [
            "count(",
            "sum(",
            "min(",
            "max(",
            "avg(",
            "bool_and(",
            "bool_or(",
        ]
        .iter()
        .any(|a| list.to_ascii_lowercase().replace(' ', "").contains(a));
        if aggregate {
            return sql.to_string();
        }
        return format!("SELECT * {}", &sql[toks[from].start..]);
    }
    if let Some(&ret) = top.iter().find(|&&k| toks[k].is("returning")) {
        return format!("{} *", &sql[..toks[ret].end]);
    }
    sql.to_string()
}

/// A parameter sent in text format whatever its type, as libpq-based drivers send
/// them: the server parses it with the type's input function.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }
    tokio_postgres::types::to_sql_checked!();
}

/// One application connection and its driver.
pub struct Conn {
    client: Client,
    protocol: Protocol,
    cache: HashMap<String, Statement>,
}

impl Conn {
    /// Connects with `application_name` in the startup packet, as drivers set it.
    pub async fn connect(
        url: &str,
        application_name: &str,
        protocol: Protocol,
    ) -> Result<Conn, tokio_postgres::Error> {
        let mut config: Config = url.parse()?;
        config.application_name(application_name);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let conn = Conn {
            client,
            protocol,
            cache: HashMap::new(),
        };
        if protocol == Protocol::Unnamed {
            conn.learn_types().await?;
        }
        Ok(conn)
    }

    /// tokio-postgres looks up a result column's type it does not know (an enum, a
    /// domain) with a named prepared statement of its own, which a transaction pooler
    /// cannot keep; real drivers look such types up with ordinary queries. So the
    /// unnamed-statement client learns the database's own types once, inside one
    /// transaction (one server connection), and drops what that prepared.
    async fn learn_types(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("BEGIN").await?;
        let names: Vec<String> = self
            .client
            .simple_query(
                "SELECT format_type(t.oid, NULL) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgphase')
                    AND t.typtype IN ('e', 'd')",
            )
            .await?
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        for name in names {
            self.client
                .query_typed(&format!("SELECT NULL::{name}"), &[])
                .await?;
        }
        self.client.batch_execute("DEALLOCATE ALL; COMMIT").await
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs one statement of the scenario; returns the rows it returned.
    pub async fn run(&mut self, sql: &str) -> Result<usize, tokio_postgres::Error> {
        let q = parameterize(sql);
        let values: Vec<TextParam> = q.params.iter().map(|(_, v)| TextParam(v)).collect();
        match self.protocol {
            Protocol::Cached => {
                let st = match self.cache.get(&q.text) {
                    Some(st) => st.clone(),
                    None => {
                        let types: Vec<Type> = q.params.iter().map(|(t, _)| t.clone()).collect();
                        let st = self.client.prepare_typed(&q.text, &types).await?;
                        self.cache.insert(q.text.clone(), st.clone());
                        st
                    }
                };
                let params: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                match self.client.query(&st, &params).await {
                    Ok(rows) => Ok(rows.len()),
                    Err(e) => {
                        self.cache.remove(&q.text);
                        Err(e)
                    }
                }
            }
            Protocol::Unnamed => {
                let params: Vec<(&(dyn ToSql + Sync), Type)> = values
                    .iter()
                    .zip(&q.params)
                    .map(|(v, (t, _))| (v as &(dyn ToSql + Sync), t.clone()))
                    .collect();
                Ok(self.client.query_typed(&q.text, &params).await?.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_parameters() {
        let q = parameterize(
            "UPDATE comments SET contents = 'it''s', n = n + 12, s = 2.5 WHERE id = 3000000000 RETURNING n::numeric(6,2), CAST(s AS varchar(20))",
        );
        assert_eq!(
            q.text,
            "UPDATE comments SET contents = $1, n = n + $2, s = $3 WHERE id = $4 RETURNING n::numeric(6,2), CAST(s AS varchar(20))"
        );
        assert_eq!(
            q.params,
            vec![
                (Type::UNKNOWN, "it's".to_string()),
                (Type::INT4, "12".to_string()),
                (Type::NUMERIC, "2.5".to_string()),
                (Type::INT8, "3000000000".to_string()),
            ]
        );
        let q = parameterize(
            "SELECT date '2024-01-01' + 3, E'x' FROM t_2 WHERE a IN ('a', 'b') ORDER BY 1 LIMIT 5",
        );
        assert_eq!(
            q.text,
            "SELECT date '2024-01-01' + $1, E'x' FROM t_2 WHERE a IN ($2, $3) ORDER BY 1 LIMIT $4"
        );
    }

    #[test]
    fn star_variant() {
        assert_eq!(
            star("SELECT id, score_badge(legacy_score) FROM comments WHERE id = 1"),
            "SELECT * FROM comments WHERE id = 1"
        );
        assert_eq!(
            star("UPDATE comments SET a = 1 WHERE id = 2 RETURNING id, a"),
            "UPDATE comments SET a = 1 WHERE id = 2 RETURNING *"
        );
        for same in [
            "SELECT count(*) FROM comments",
            "SELECT post_id FROM comments GROUP BY post_id",
            "INSERT INTO t (a) VALUES (1)",
            "UPDATE t SET a = 1 WHERE EXISTS (SELECT 1 FROM u)",
        ] {
            assert_eq!(star(same), same);
        }
    }
}
