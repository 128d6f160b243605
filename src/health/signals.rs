//! Reading the health signals from the primary's statistics views. The columns used
//! exist from PostgreSQL 13 on (`pg_replication_slots.wal_status` is new in 13).

use std::time::Duration;
use tokio_postgres::{Client, Row, Statement};

use super::Limits;

/// A physical standby streaming from this server, by `application_name` (its
/// `cluster_name`, or what its `primary_conninfo` sets), else its address.
#[derive(Clone, Debug, PartialEq)]
pub struct Standby {
    pub name: String,
    /// `pg_stat_replication.state`; `None` when hidden (another role's walsender and
    /// no `pg_read_all_stats`).
    pub state: Option<String>,
    /// Replayed up to here; `None` when not reported or hidden.
    pub replay_lsn: Option<u64>,
    /// `pg_stat_replication.replay_lag`, when the server measured one.
    pub replay_lag: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub slot_type: String,
    /// WAL between the slot's `restart_lsn` and the current position.
    pub retained_bytes: i64,
    pub wal_status: Option<String>,
}

/// One reading of everything watched.
#[derive(Clone, Debug, PartialEq)]
pub struct Signals {
    pub current_lsn: u64,
    pub standbys: Vec<Standby>,
    pub slots: Vec<Slot>,
    pub active_sessions: Option<i64>,
}

/// Physical walsenders only: logical replication (an active logical slot's
/// walsender) and base backups are not standbys.
const STANDBYS: &str = "
SELECT coalesce(nullif(r.application_name, ''), host(r.client_addr), 'local') AS name,
       r.state,
       pg_wal_lsn_diff(r.replay_lsn, '0/0')::int8,
       (extract(epoch FROM r.replay_lag) * 1000)::int8
  FROM pg_stat_replication r
 WHERE r.state IS DISTINCT FROM 'backup'
   AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s
                    WHERE s.active_pid = r.pid AND s.slot_type = 'logical')
 ORDER BY 1";

const SLOTS: &str = "
SELECT slot_name::text, slot_type,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8,
       wal_status
  FROM pg_replication_slots
 WHERE restart_lsn IS NOT NULL
 ORDER BY 1";

const ACTIVE: &str = "
SELECT count(*) FROM pg_stat_activity
 WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

const CURRENT_LSN: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8";

/// The signals' statements, prepared once for a backfill that reads them before every
/// batch: each reading is then one round trip, its statements pipelined.
pub struct Statements {
    current: Statement,
    standbys: Statement,
    slots: Statement,
    active: Statement,
}

impl Statements {
    pub async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        let (current, standbys, slots, active) = tokio::try_join!(
            c.prepare(CURRENT_LSN),
            c.prepare(STANDBYS),
            c.prepare(SLOTS),
            c.prepare(ACTIVE)
        )?;
        Ok(Statements {
            current,
            standbys,
            slots,
            active,
        })
    }

    /// Reads the signals `limits` watch (the others stay empty), in one round trip.
    pub async fn read(
        &self,
        c: &Client,
        limits: &Limits,
    ) -> Result<Signals, tokio_postgres::Error> {
        let (current, standbys, slots, active) = tokio::try_join!(
            c.query_one(&self.current, &[]),
            rows_if(c, limits.max_replica_lag.is_some(), &self.standbys),
            rows_if(c, limits.max_slot_lag.is_some(), &self.slots),
            rows_if(c, limits.max_active_sessions.is_some(), &self.active),
        )?;
        let current: i64 = current.get(0);
        Ok(Signals {
            current_lsn: current.max(0) as u64,
            standbys: standbys
                .iter()
                .map(|r| Standby {
                    name: r.get(0),
                    state: r.get(1),
                    replay_lsn: r.get::<_, Option<i64>>(2).map(|v| v.max(0) as u64),
                    replay_lag: r
                        .get::<_, Option<i64>>(3)
                        .map(|ms| Duration::from_millis(ms.max(0) as u64)),
                })
                .collect(),
            slots: slots
                .iter()
                .map(|r| Slot {
                    name: r.get(0),
                    slot_type: r.get(1),
                    retained_bytes: r.get::<_, Option<i64>>(2).unwrap_or(0),
                    wal_status: r.get(3),
                })
                .collect(),
            active_sessions: active.first().map(|r| r.get(0)),
        })
    }
}

async fn rows_if(
    c: &Client,
    on: bool,
    stmt: &Statement,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if on {
        c.query(stmt, &[]).await
    } else {
        Ok(Vec::new())
    }
}
