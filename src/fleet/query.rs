//! `--targets-from-query`: the fleet's databases listed by a query on a control database
//! (a database-per-tenant server). The query is one read-only `SELECT`, run in a
//! `READ ONLY` transaction; each row is a database of the control connection's server:
//! its first column the database's name, each further column a label named after the
//! column (NULL: no such label).

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::types::Type;

use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::sql::lexer;

/// One row of the query: a database of the server and its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queried {
    pub dbname: String,
    pub labels: BTreeMap<String, String>,
}

fn invalid(msg: String) -> CmdError {
    CmdError::Invalid(format!("--targets-from-query: {msg}; nothing was changed"))
}

/// Refuses, before connecting, what is not one query that only reads: several
/// statements, or a statement that does not start with SELECT, WITH, VALUES or TABLE.
pub fn check(query: &str) -> Result<(), CmdError> {
    let lexed = lexer::lex(query);
    if let Some((line, e)) = lexed.errors.first() {
        return Err(invalid(format!(
            "the query does not parse (line {line}: {e})"
        )));
    }
    match lexed.statements.as_slice() {
        [] => Err(invalid("the query is empty".into())),
        [one] => {
            let first = one.tokens.first().and_then(|t| t.word()).unwrap_or("");
            if matches!(first, "select" | "with" | "values" | "table") {
                Ok(())
            } else {
                Err(invalid(format!(
                    "the query must be a SELECT listing databases (it starts with `{}`)",
                    one.excerpt(40)
                )))
            }
        }
        many => Err(invalid(format!(
            "give one SELECT, not {} statements",
            many.len()
        ))),
    }
}

/// Whether a column's values read as text.
fn is_text(t: &Type) -> bool {
    matches!(*t, Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR)
}

/// Runs the query on the control database, in a READ ONLY transaction (rolled back):
/// one [`Queried`] per row. Refused: no rows, a first column that is not text (a
/// database's name), a label column that is not text, a NULL or repeated name.
pub async fn list(control: &ConnInfo, query: &str) -> Result<Vec<Queried>, CmdError> {
    check(query)?;
    let mut client = control.connect().await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(CmdError::from)?;
    let stmt = tx.prepare(query).await.map_err(|e| {
        invalid(format!(
            "the query failed on {}: {}",
            control.redacted(),
            crate::error::describe_db_error(&e)
        ))
    })?;
    let cols = stmt.columns();
    let Some(first) = cols.first() else {
        return Err(invalid(
            "the query returns no column: its first column must be the database's name".into(),
        ));
    };
    if !is_text(first.type_()) {
        return Err(invalid(format!(
            "its first column `{}` is of type {}, not a database's name (text): select `datname` from pg_database, or cast it (`::text`)",
            first.name(),
            first.type_()
        )));
    }
    for c in &cols[1..] {
        if !is_text(c.type_()) {
            return Err(invalid(format!(
                "column `{}` (a label) is of type {}: cast it to text (`{}::text AS {}`)",
                c.name(),
                c.type_(),
                c.name(),
                c.name()
            )));
        }
    }
    let label_names: Vec<String> = cols[1..].iter().map(|c| c.name().to_string()).collect();
    if let Some(dup) = label_names
        .iter()
        .enumerate()
        .find(|(i, n)| label_names[..*i].contains(n))
    {
        return Err(invalid(format!(
            "two label columns are named `{}`: name them apart with AS",
            dup.1
        )));
    }
    let rows = tx.query(&stmt, &[]).await.map_err(|e| {
        invalid(format!(
            "the query failed on {}: {}",
            control.redacted(),
            crate::error::describe_db_error(&e)
        ))
    })?;
    let _ = tx.rollback().await;
    if rows.is_empty() {
        return Err(invalid(format!(
            "the query returned no rows on {}: no database to run on",
            control.redacted()
        )));
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, row) in rows.iter().enumerate() {
        let Some(dbname) = row.try_get::<_, Option<String>>(0).ok().flatten() else {
            return Err(invalid(format!(
                "row {} has no database name (NULL)",
                n + 1
            )));
        };
        if !seen.insert(dbname.clone()) {
            return Err(invalid(format!(
                "the query returns database `{dbname}` twice (one plan cannot run twice at once on one database): add DISTINCT"
            )));
        }
        let mut labels = BTreeMap::new();
        for (i, name) in label_names.iter().enumerate() {
            if let Ok(Some(v)) = row.try_get::<_, Option<String>>(i + 1) {
                labels.insert(name.clone(), v);
            }
        }
        out.push(Queried { dbname, labels });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_select_passes_the_check() {
        assert!(check("SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%'").is_ok());
        assert!(check("with t as (select 1) select 'a'").is_ok());
        let e = check("DROP DATABASE tenant_a").unwrap_err().to_string();
        assert!(e.contains("must be a SELECT"), "{e}");
        let e = check("SELECT 'a'; DELETE FROM t").unwrap_err().to_string();
        assert!(e.contains("not 2 statements"), "{e}");
        assert!(check("  ").is_err());
    }
}
