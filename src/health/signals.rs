//! Reading the health signals from the primary's statistics views. The columns used
//! exist from PostgreSQL 13 on (`pg_replication_slots.wal_status` is new in 13).

use std::time::Duration;
use tokio_postgres::Client;

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

/// Reads the signals `limits` watch (the others stay empty).
pub async fn read(c: &Client, limits: &Limits) -> Result<Signals, tokio_postgres::Error> {
    let current: i64 = c
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8",
            &[],
        )
        .await?
        .get(0);
    let mut s = Signals {
        current_lsn: current.max(0) as u64,
        standbys: Vec::new(),
        slots: Vec::new(),
        active_sessions: None,
    };
    if limits.max_replica_lag.is_some() {
        s.standbys = c
            .query(STANDBYS, &[])
            .await?
            .iter()
            .map(|r| Standby {
                name: r.get(0),
                state: r.get(1),
                replay_lsn: r.get::<_, Option<i64>>(2).map(|v| v.max(0) as u64),
                replay_lag: r
                    .get::<_, Option<i64>>(3)
                    .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            })
            .collect();
    }
    if limits.max_slot_lag.is_some() {
        s.slots = c
            .query(SLOTS, &[])
            .await?
            .iter()
            .map(|r| Slot {
                name: r.get(0),
                slot_type: r.get(1),
                retained_bytes: r.get::<_, Option<i64>>(2).unwrap_or(0),
                wal_status: r.get(3),
            })
            .collect();
    }
    if limits.max_active_sessions.is_some() {
        s.active_sessions = Some(c.query_one(ACTIVE, &[]).await?.get(0));
    }
    Ok(s)
}
