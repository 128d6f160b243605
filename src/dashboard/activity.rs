//! What the target database's sessions are doing, read from `pg_stat_activity` and the
//! replication views (server views, not pgphase's state). Reads only.

use serde::Serialize;
use tokio_postgres::GenericClient;

/// The client sessions of the database that share one `application_name`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppSessions {
    pub application_name: String,
    pub total: i64,
    pub active: i64,
    pub idle_in_transaction: i64,
}

/// Client sessions of the current database (other than this one) per `application_name`,
/// so an operator sees the old version draining and the new one arriving.
pub async fn sessions_by_application<C: GenericClient>(
    c: &C,
) -> Result<Vec<AppSessions>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT coalesce(application_name, ''), count(*),
                count(*) FILTER (WHERE state = 'active'),
                count(*) FILTER (WHERE state LIKE 'idle in transaction%')
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND coalesce(backend_type, 'client backend') = 'client backend'
          GROUP BY 1 ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| AppSessions {
        application_name: r.get(0),
        total: r.get(1),
        active: r.get(2),
        idle_in_transaction: r.get(3),
    })
    .collect())
}

/// A statement a pgphase session is running right now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statement {
    pub pid: i32,
    pub application_name: String,
    pub state: Option<String>,
    /// Seconds since the statement started.
    pub running_secs: Option<f64>,
    /// `wait_event` when the session waits for a lock.
    pub lock_wait: Option<String>,
    pub query: String,
}

/// Non-idle sessions of the current database whose `application_name` is `LIKE
/// pattern`, other than this one and the ones named `except`, oldest statement first.
pub async fn statements<C: GenericClient>(
    c: &C,
    pattern: &str,
    except: &str,
) -> Result<Vec<Statement>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT pid, coalesce(application_name, ''), state,
                extract(epoch FROM now() - query_start)::float8,
                CASE WHEN wait_event_type = 'Lock' THEN wait_event END,
                left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 200)
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND application_name LIKE $1 AND application_name <> $2
            AND state IS DISTINCT FROM 'idle'
          ORDER BY query_start NULLS LAST, pid",
        &[&pattern, &except],
    )
    .await?
    .iter()
    .map(|r| Statement {
        pid: r.get(0),
        application_name: r.get(1),
        state: r.get(2),
        running_secs: r.get(3),
        lock_wait: r.get(4),
        query: r.get(5),
    })
    .collect())
}

/// A health signal the server exposes: a standby's replay lag or a slot's retained WAL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub what: String,
    pub value: String,
}

/// Standby replay lag (`pg_stat_replication`) and WAL retained by replication slots, on
/// a primary; nothing on a standby or where there is neither.
pub async fn health<C: GenericClient>(c: &C) -> Result<Vec<Health>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT 'standby ' || coalesce(nullif(application_name, ''), host(client_addr), pid::text)
                    || ' replay lag',
                coalesce(round(extract(epoch FROM replay_lag)::numeric, 1)::text || 's', 'n/a')
           FROM pg_stat_replication
         UNION ALL
         SELECT 'slot ' || slot_name || ' retains',
                coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 'n/a')
                    || CASE WHEN active THEN '' ELSE ' (inactive)' END
           FROM pg_replication_slots WHERE NOT pg_is_in_recovery()",
        &[],
    )
    .await?
    .iter()
    .map(|r| Health {
        what: r.get(0),
        value: r.get(1),
    })
    .collect())
}
