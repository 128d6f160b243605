//! Reads what the database saw: `pg_stat_statements`, `pg_stat_activity` and the
//! index and table usage counters. Nothing here needs superuser; what a role without
//! `pg_read_all_stats` cannot see is counted and said, not guessed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::refs::{self, Target};
use crate::program::ContractDrop;

/// Where the statement counters come from, or why there are none.
#[derive(Clone, Debug)]
pub enum Statements {
    /// `pg_stat_statements` in this schema; `total_col`: `total_exec_time` (13+) or
    /// `total_time` (older).
    Available {
        schema: String,
        total_col: &'static str,
    },
    Unavailable(String),
}

/// What this role can read.
#[derive(Clone, Debug)]
pub struct Access {
    pub statements: Statements,
    /// Superuser or a member of `pg_read_all_stats`: other roles' statement texts and
    /// session queries are visible.
    pub read_all_stats: bool,
}

pub const INSTALL_HINT: &str = "install pg_stat_statements for statement evidence (shared_preload_libraries = 'pg_stat_statements', then CREATE EXTENSION pg_stat_statements in this database)";

/// Finds out what evidence this connection can gather.
pub async fn access(c: &Client) -> Result<Access, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                      WHERE e.extname = 'pg_stat_statements'),
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                    OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')",
            &[],
        )
        .await?;
    let schema: Option<String> = row.get(0);
    let read_all_stats: bool = row.get(1);
    let statements = match schema {
        None => {
            Statements::Unavailable("pg_stat_statements is not installed in this database".into())
        }
        Some(schema) => {
            let view = format!("{}.pg_stat_statements", crate::sql::quote_ident(&schema));
            let exec: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute
                                     WHERE attrelid = $1::text::regclass AND attname = 'total_exec_time')",
                    &[&view],
                )
                .await?
                .get(0);
            // installed but not loaded (shared_preload_libraries) fails on use
            match c.query(&format!("SELECT 1 FROM {view} LIMIT 1"), &[]).await {
                Ok(_) => Statements::Available {
                    schema,
                    total_col: if exec {
                        "total_exec_time"
                    } else {
                        "total_time"
                    },
                },
                Err(e) => Statements::Unavailable(format!(
                    "pg_stat_statements cannot be read: {}",
                    e.as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string())
                )),
            }
        }
    };
    Ok(Access {
        statements,
        read_all_stats,
    })
}

/// A statement's counters in `pg_stat_statements`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatementCounter {
    pub userid: u32,
    pub queryid: i64,
    #[serde(default, skip_serializing)]
    pub role: String,
    #[serde(default, skip_serializing)]
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
}

/// Statements of this database whose text names a target; and how many statements'
/// texts this role may not read.
pub async fn statements(
    c: &Client,
    schema: &str,
    total_col: &str,
    targets: &[Target],
) -> Result<(Vec<StatementCounter>, i64), tokio_postgres::Error> {
    let view = format!("{}.pg_stat_statements", crate::sql::quote_ident(schema));
    // a superset by substring (`_` and `%` in a name only widen it), then the lexer
    let patterns: Vec<String> = targets.iter().map(|t| format!("%{}%", t.table)).collect();
    let rows = c
        .query(
            &format!(
                "SELECT s.userid::oid, coalesce(r.rolname::text, s.userid::oid::text), s.queryid, s.query,
                        s.calls, s.{total_col}::float8
                   FROM {view} s LEFT JOIN pg_roles r ON r.oid = s.userid
                  WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND s.queryid IS NOT NULL AND s.query ILIKE ANY($1)"
            ),
            &[&patterns],
        )
        .await?;
    let found = rows
        .iter()
        .map(|r| StatementCounter {
            userid: r.get(0),
            role: r.get(1),
            queryid: r.get(2),
            query: r.get(3),
            calls: r.get(4),
            total_ms: r.get(5),
        })
        .filter(|s| !refs::named(&s.query, targets).is_empty())
        .collect();
    let hidden: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {view}
                  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND queryid IS NULL"
            ),
            &[],
        )
        .await?
        .get(0);
    Ok((found, hidden))
}

/// A session whose current or last query names a target.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SessionUse {
    pub pid: i32,
    pub application_name: String,
    pub user: Option<String>,
    pub state: Option<String>,
    pub query_start: Option<DateTime<Utc>>,
    /// The query, on one line, truncated.
    pub query: String,
}

/// Client sessions of this database (other than pgphase's own) that are running a
/// query naming a target, or whose last query named one after `since`; and how many
/// other sessions' queries this role may not read.
pub async fn sessions(
    c: &Client,
    targets: &[Target],
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<SessionUse>, i64), tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT pid, application_name, usename::text, state, query_start, query
               FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND coalesce(backend_type, 'client backend') = 'client backend'
                AND application_name NOT LIKE 'pgphase%'
              ORDER BY pid",
            &[],
        )
        .await?;
    let mut found = Vec::new();
    let mut hidden = 0;
    for r in rows {
        let state: Option<String> = r.get(3);
        let query_start: Option<DateTime<Utc>> = r.get(4);
        let Some(query) = r.get::<_, Option<String>>(5) else {
            hidden += 1; // another role's session, without pg_read_all_stats
            continue;
        };
        if query == "<insufficient privilege>" {
            hidden += 1;
            continue;
        }
        let current = state.as_deref().is_some_and(|s| s != "idle");
        let recent = matches!((query_start, since), (Some(q), Some(s)) if q >= s);
        if !(current || recent) || refs::named(&query, targets).is_empty() {
            continue;
        }
        found.push(SessionUse {
            pid: r.get(0),
            application_name: r.get(1),
            user: r.get(2),
            state,
            query_start,
            query: super::one_line(&query),
        });
    }
    Ok((found, hidden))
}

/// Scans and writes of a table contract drops, or scans of an index it drops with a
/// column (an index whose first key column is that column).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UsageCounter {
    pub relid: u32,
    /// `index` or `table`.
    pub kind: String,
    pub name: String,
    pub scans: i64,
    pub writes: i64,
}

pub async fn usage(
    c: &Client,
    drops: &[&ContractDrop],
) -> Result<Vec<UsageCounter>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for d in drops {
        let table = d.table.to_string();
        let rows = match d.attnum {
            None => {
                c.query(
                    "SELECT relid, 'table', relid::regclass::text,
                            seq_scan + coalesce(idx_scan, 0), n_tup_ins + n_tup_upd + n_tup_del
                       FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                    &[&table],
                )
                .await?
            }
            Some(attnum) => {
                c.query(
                    "SELECT i.indexrelid, 'index', i.indexrelid::regclass::text,
                            coalesce(s.idx_scan, 0), 0::int8
                       FROM pg_index i
                       LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
                      WHERE i.indrelid = to_regclass($1) AND i.indkey[0] = $2",
                    &[&table, &attnum],
                )
                .await?
            }
        };
        out.extend(rows.iter().map(|r| UsageCounter {
            relid: r.get(0),
            kind: r.get(1),
            name: r.get(2),
            scans: r.get(3),
            writes: r.get(4),
        }));
    }
    Ok(out)
}

/// The oid of the role checking.
pub async fn current_user_oid(c: &Client) -> Result<u32, tokio_postgres::Error> {
    Ok(
        c.query_one("SELECT oid FROM pg_roles WHERE rolname = current_user", &[])
            .await?
            .get(0),
    )
}
