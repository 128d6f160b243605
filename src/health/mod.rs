//! Database health for backfills: the signals (physical standbys' replay lag,
//! replication slots' retained WAL, active sessions), the limits from
//! `settings.backfill` and the operator's live controls, and the pure decision whether
//! the next batch may run.
//!
//! The rule: a batch runs only when every watched signal was read and is within its
//! limit. A standby whose lag cannot be read, or one that was streaming when the
//! backfill started and is gone, holds the backfill like a lagging one: missing data
//! never means full speed.

pub mod signals;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use signals::{Signals, Slot, Standby};

/// Default `settings.backfill.max_replica_lag`.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(2);
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Default `settings.backfill.max_app_wait`.
pub const DEFAULT_MAX_APP_WAIT: Duration = Duration::from_millis(25);
/// Default `settings.backfill.max_slot_lag`: 1 GB of WAL retained by a slot.
pub const DEFAULT_MAX_SLOT_LAG: u64 = 1 << 30;

/// The limits in force for one batch; `None` is not watched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_replica_lag: Option<Duration>,
    pub max_slot_lag: Option<u64>,
    pub max_active_sessions: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_replica_lag: Some(DEFAULT_MAX_REPLICA_LAG),
            max_slot_lag: Some(DEFAULT_MAX_SLOT_LAG),
            max_active_sessions: None,
        }
    }
}

impl Limits {
    pub fn watches_anything(&self) -> bool {
        self.max_replica_lag.is_some()
            || self.max_slot_lag.is_some()
            || self.max_active_sessions.is_some()
    }
}

/// An operator's override of one limit (`pgphase backfill set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Override<T> {
    /// The plan's value.
    Plan,
    /// Not watched.
    Off,
    To(T),
}

impl<T: Copy> Override<T> {
    pub fn apply(self, plan: Option<T>) -> Option<T> {
        match self {
            Override::Plan => plan,
            Override::Off => None,
            Override::To(v) => Some(v),
        }
    }
}

/// Why the next batch may not run yet.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// `pgphase backfill pause`.
    Paused { by: String, at: String },
    /// A standby replays further behind than `max_replica_lag` allows before one more
    /// batch (whose WAL takes about `headroom_ms` to replay).
    ReplicaLag {
        standby: String,
        lag_ms: u64,
        behind_bytes: i64,
        max_ms: u64,
        #[serde(skip_serializing_if = "is_zero")]
        headroom_ms: u64,
    },
    /// A standby's replay position cannot be read (still catching up, or the role
    /// lacks `pg_read_all_stats`).
    LagUnreadable { standby: String, why: String },
    /// A standby that was streaming when the backfill started is not connected.
    StandbyGone { standby: String },
    /// A replication slot retains more WAL than `max_slot_lag`.
    SlotLag {
        slot: String,
        slot_type: String,
        retained_bytes: i64,
        max_bytes: u64,
        wal_status: Option<String>,
    },
    /// More active client sessions than `max_active_sessions`.
    Load { active: i64, max: u32 },
}

impl Hold {
    /// What is held, without the numbers: a new event is written when this set changes.
    pub fn key(&self) -> String {
        match self {
            Hold::Paused { .. } => "paused".into(),
            Hold::ReplicaLag { standby, .. } => format!("replica_lag:{standby}"),
            Hold::LagUnreadable { standby, .. } => format!("lag_unreadable:{standby}"),
            Hold::StandbyGone { standby } => format!("standby_gone:{standby}"),
            Hold::SlotLag { slot, .. } => format!("slot_lag:{slot}"),
            Hold::Load { .. } => "load".into(),
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Paused { by, at } => write!(f, "paused by {by} at {at} (`pgphase backfill resume` continues)"),
            Hold::ReplicaLag { standby, lag_ms, behind_bytes, max_ms, headroom_ms } => write!(
                f,
                "standby {standby} replays {} behind ({} of WAL), more than max_replica_lag {}{}",
                fmt_ms(*lag_ms),
                fmt_bytes(*behind_bytes as u64),
                fmt_ms(*max_ms),
                if *headroom_ms > 0 && lag_ms <= max_ms {
                    format!(" allows before a batch of {}", fmt_ms(*headroom_ms))
                } else {
                    String::new()
                }
            ),
            Hold::LagUnreadable { standby, why } => write!(
                f,
                "the replay lag of standby {standby} cannot be read ({why}); waiting until it can (`pgphase backfill set PLAN --max-replica-lag off` stops watching standbys)"
            ),
            Hold::StandbyGone { standby } => write!(
                f,
                "standby {standby} was streaming when the backfill started and is not connected now; waiting until it is back (`pgphase backfill set PLAN --forget-standbys` goes on without it)"
            ),
            Hold::SlotLag { slot, slot_type, retained_bytes, max_bytes, wal_status } => {
                write!(
                    f,
                    "{slot_type} replication slot {slot} retains {} of WAL, more than max_slot_lag {}",
                    fmt_bytes(*retained_bytes as u64),
                    fmt_bytes(*max_bytes)
                )?;
                match wal_status {
                    Some(s) => write!(f, " (wal_status {s})"),
                    None => Ok(()),
                }
            }
            Hold::Load { active, max } => write!(
                f,
                "{active} client sessions are running statements, more than max_active_sessions {max}"
            ),
        }
    }
}

/// The set of hold keys: the backfill records a new wait event when it changes.
pub fn hold_keys(holds: &[Hold]) -> BTreeSet<String> {
    holds.iter().map(Hold::key).collect()
}

/// `1.5s`, `250ms`, `2m 3s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

/// `512B`, `3.2MB`, `1.0GB` (powers of 1024, as PostgreSQL's `pg_size_pretty`).
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// Parses `64MB`, `1GB`, `512kB`, `1048576` (bytes; units are powers of 1024 as in
/// PostgreSQL's settings).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size `{text}`; write it like 64MB or 1GB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        _ => return Err(format!("invalid size `{text}`; write it like 64MB or 1GB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// A limit as YAML or a command-line value: `off`, or text read by `parse`.
fn parse_limit<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if matches!(text.trim(), "off" | "false" | "none") {
        Ok(None)
    } else {
        parse(text).map(Some)
    }
}

pub fn parse_duration_limit(text: &str) -> Result<Option<Duration>, String> {
    parse_limit(text, |t| {
        humantime::parse_duration(t.trim())
            .map_err(|e| format!("invalid duration `{t}` ({e}); write it like 2s or 500ms, or off"))
    })
}

pub fn parse_bytes_limit(text: &str) -> Result<Option<u64>, String> {
    parse_limit(text, parse_bytes)
}

pub fn parse_count_limit(text: &str) -> Result<Option<u32>, String> {
    parse_limit(text, |t| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("invalid count `{t}`; write a number, or off"))
    })
}

/// A limit in YAML: a string, a number, or `off` (which YAML may read as `false`).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawLimit {
    Bool(bool),
    Int(u64),
    Text(String),
}

fn de_limit<'de, D: serde::Deserializer<'de>, T>(
    d: D,
    parse: impl Fn(&str) -> Result<Option<T>, String>,
) -> Result<Option<T>, D::Error> {
    use serde::Deserialize;
    match RawLimit::deserialize(d)? {
        RawLimit::Bool(false) => Ok(None),
        RawLimit::Bool(true) => Err(serde::de::Error::custom(
            "a limit is a value or `off`, not `true`",
        )),
        RawLimit::Int(n) => parse(&n.to_string()).map_err(serde::de::Error::custom),
        RawLimit::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

/// `max_replica_lag: 2s` or `off`.
pub mod limit_duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::de_limit(d, super::parse_duration_limit)
    }
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_str("off"),
        }
    }
}

/// `max_slot_lag: 1GB` or `off`.
pub mod limit_bytes {
    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        super::de_limit(d, super::parse_bytes_limit)
    }
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_u64(*b),
            None => s.serialize_str("off"),
        }
    }
}

/// `max_active_sessions: 40` or `off`.
pub mod limit_count {
    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        super::de_limit(d, super::parse_count_limit)
    }
    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u32(*n),
            None => s.serialize_str("off"),
        }
    }
}

/// The primary's WAL position over time, sampled by the backfill: a standby whose
/// replay position is before a sample taken at time `t` is at least `now - t` behind.
/// This reads a lag that `pg_stat_replication.replay_lag` does not show: that column
/// only moves when replay does, so it stays small while replay is stuck.
#[derive(Debug, Default)]
pub struct LagTracker {
    samples: VecDeque<(u64, Instant)>,
}

impl LagTracker {
    const MAX_SAMPLES: usize = 100_000;

    /// Records the primary's current WAL position.
    pub fn observe(&mut self, lsn: u64, at: Instant) {
        if self.samples.back().is_some_and(|&(l, _)| l >= lsn) {
            return; // no new WAL: the older sample is the earlier time for it
        }
        if self.samples.len() >= Self::MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((lsn, at));
    }

    /// How long a standby that replayed up to `replay` has been behind, at least.
    pub fn lag_of(&self, replay: u64, now: Instant) -> Duration {
        self.samples
            .iter()
            .find(|&&(lsn, _)| lsn > replay)
            .map(|&(_, t)| now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    /// Drops samples every standby has replayed past (keeps the last one).
    pub fn forget_before(&mut self, min_replay: u64) {
        while self.samples.len() > 1 && self.samples[1].0 <= min_replay {
            self.samples.pop_front();
        }
    }
}

/// The holds for the signals read, under `limits`. `expected` are the standbys that
/// were streaming when the backfill started (by name).
///
/// `headroom` is the next batch's target duration: its WAL takes about that long to
/// replay, so a standby must be at least that far within `max_replica_lag` (at most half
/// the limit is kept as headroom).
pub fn decide(
    limits: &Limits,
    expected: &BTreeSet<String>,
    s: &Signals,
    tracker: &LagTracker,
    now: Instant,
    headroom: Duration,
) -> Vec<Hold> {
    let mut holds = Vec::new();
    if let Some(max) = limits.max_replica_lag {
        for name in expected {
            if !s.standbys.iter().any(|st| &st.name == name) {
                holds.push(Hold::StandbyGone {
                    standby: name.clone(),
                });
            }
        }
        for st in &s.standbys {
            let Some(replay) = st.replay_lsn else {
                holds.push(Hold::LagUnreadable {
                    standby: st.name.clone(),
                    why: match st.state.as_deref() {
                        Some(state) if state != "streaming" => {
                            format!("it is in state {state}, not streaming yet")
                        }
                        Some(_) => "no replay position reported yet".into(),
                        None => "its walsender's details are hidden: grant pg_read_all_stats to pgphase's role".into(),
                    },
                });
                continue;
            };
            let behind = s.current_lsn.saturating_sub(replay);
            let lag = if behind == 0 {
                Duration::ZERO
            } else {
                tracker
                    .lag_of(replay, now)
                    .max(st.replay_lag.unwrap_or_default())
            };
            let headroom = headroom.min(max / 2);
            if lag > max - headroom {
                holds.push(Hold::ReplicaLag {
                    standby: st.name.clone(),
                    lag_ms: lag.as_millis() as u64,
                    behind_bytes: behind as i64,
                    max_ms: max.as_millis() as u64,
                    headroom_ms: headroom.as_millis() as u64,
                });
            }
        }
    }
    if let Some(max) = limits.max_slot_lag {
        for slot in &s.slots {
            if slot.retained_bytes > 0 && slot.retained_bytes as u64 > max {
                holds.push(Hold::SlotLag {
                    slot: slot.name.clone(),
                    slot_type: slot.slot_type.clone(),
                    retained_bytes: slot.retained_bytes,
                    max_bytes: max,
                    wal_status: slot.wal_status.clone(),
                });
            }
        }
    }
    if let (Some(max), Some(active)) = (limits.max_active_sessions, s.active_sessions) {
        if active > max as i64 {
            holds.push(Hold::Load { active, max });
        }
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(name: &str, replay: Option<u64>) -> Standby {
        Standby {
            name: name.into(),
            state: Some("streaming".into()),
            replay_lsn: replay,
            replay_lag: None,
        }
    }

    fn signals(current: u64, standbys: Vec<Standby>) -> Signals {
        Signals {
            current_lsn: current,
            standbys,
            slots: Vec::new(),
            active_sessions: None,
        }
    }

    #[test]
    fn a_standby_stuck_behind_a_sample_is_lagging_by_the_samples_age() {
        let t0 = Instant::now();
        let mut tr = LagTracker::default();
        tr.observe(100, t0);
        tr.observe(200, t0 + Duration::from_secs(1));
        tr.observe(200, t0 + Duration::from_secs(2)); // no new WAL: keeps the first time
        tr.observe(300, t0 + Duration::from_secs(3));
        let now = t0 + Duration::from_secs(5);
        assert_eq!(tr.lag_of(50, now), Duration::from_secs(5));
        assert_eq!(tr.lag_of(150, now), Duration::from_secs(4));
        assert_eq!(tr.lag_of(250, now), Duration::from_secs(2));
        assert_eq!(tr.lag_of(300, now), Duration::ZERO);
        tr.forget_before(250);
        assert_eq!(tr.lag_of(250, now), Duration::from_secs(2));
        assert_eq!(tr.samples.len(), 2);
    }

    #[test]
    fn lag_above_the_limit_holds_and_a_caught_up_standby_does_not() {
        let t0 = Instant::now();
        let mut tr = LagTracker::default();
        tr.observe(1000, t0);
        let now = t0 + Duration::from_secs(3);
        tr.observe(2000, now);
        let limits = Limits::default(); // 2s
        let none = BTreeSet::new();
        let s = signals(
            2000,
            vec![standby("s1", Some(500)), standby("s2", Some(2000))],
        );
        let holds = decide(&limits, &none, &s, &tr, now, Duration::ZERO);
        assert_eq!(
            holds,
            vec![Hold::ReplicaLag {
                standby: "s1".into(),
                lag_ms: 3000,
                behind_bytes: 1500,
                max_ms: 2000,
                headroom_ms: 0,
            }]
        );
        assert!(holds[0]
            .to_string()
            .contains("standby s1 replays 3.0s behind"));
        // behind the newest sample only: 0 s old, within the limit
        let s = signals(2000, vec![standby("s1", Some(1500))]);
        assert!(decide(&limits, &none, &s, &tr, now, Duration::ZERO).is_empty());
        // replay_lag reported by the server counts too
        let mut st = standby("s1", Some(1500));
        st.replay_lag = Some(Duration::from_secs(10));
        assert_eq!(
            decide(
                &limits,
                &none,
                &signals(2000, vec![st]),
                &tr,
                now,
                Duration::ZERO
            )
            .len(),
            1
        );
    }

    #[test]
    fn unreadable_or_missing_standbys_hold_unless_replicas_are_not_watched() {
        let tr = LagTracker::default();
        let now = Instant::now();
        let expected: BTreeSet<String> = ["s1".to_string(), "s2".to_string()].into();
        let s = signals(10, vec![standby("s1", None)]);
        let holds = decide(&Limits::default(), &expected, &s, &tr, now, Duration::ZERO);
        assert_eq!(
            hold_keys(&holds),
            ["lag_unreadable:s1", "standby_gone:s2"]
                .map(String::from)
                .into()
        );
        let off = Limits {
            max_replica_lag: None,
            ..Limits::default()
        };
        assert!(decide(&off, &expected, &s, &tr, now, Duration::ZERO).is_empty());
    }

    #[test]
    fn slots_and_load_hold_above_their_limits() {
        let tr = LagTracker::default();
        let mut s = signals(0, vec![]);
        s.slots.push(Slot {
            name: "sub".into(),
            slot_type: "logical".into(),
            retained_bytes: 2 << 20,
            wal_status: Some("reserved".into()),
        });
        s.active_sessions = Some(12);
        let limits = Limits {
            max_replica_lag: None,
            max_slot_lag: Some(1 << 20),
            max_active_sessions: Some(10),
        };
        let holds = decide(
            &limits,
            &BTreeSet::new(),
            &s,
            &tr,
            Instant::now(),
            Duration::ZERO,
        );
        assert_eq!(holds.len(), 2);
        assert_eq!(
            holds[0].to_string(),
            "logical replication slot sub retains 2.0MB of WAL, more than max_slot_lag 1.0MB (wal_status reserved)"
        );
        let limits = Limits {
            max_slot_lag: Some(4 << 20),
            max_active_sessions: Some(12),
            ..limits
        };
        assert!(decide(
            &limits,
            &BTreeSet::new(),
            &s,
            &tr,
            Instant::now(),
            Duration::ZERO
        )
        .is_empty());
    }

    #[test]
    fn sizes_and_limits_parse() {
        assert_eq!(parse_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512kB"), Ok(512 << 10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration_limit("off"), Ok(None));
        assert_eq!(parse_duration_limit("5s"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(parse_count_limit("40"), Ok(Some(40)));
        assert_eq!(fmt_bytes(1536), "1.5kB");
        assert_eq!(fmt_ms(1500), "1.5s");
    }
}
