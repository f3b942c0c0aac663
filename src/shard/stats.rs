//! What monitoring asks a shard for (`StatsAsk`) and what the shard answers
//! (`StatsPart`): its counters and its connections, as owned data that can
//! cross to the shard serving the monitoring port (`shard::report` fills them).
//!
//! Counting costs the publish path nothing extra: a connection counts what it
//! published in its `ConnState` and what it was sent in its `Outbound`, both
//! borrowed there anyway; a shard adds a connection's counts to its own when
//! the connection closes, and a gather sums the shard's and its live
//! connections'.
//!
//! Bound: `CLOSED_CONNS_MAX` closed connections per shard are remembered for
//! `/connz?state=closed` (oldest forgotten first), each with at most
//! `CLOSED_SUBS_MAX` subscriptions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::limits::{MOVE_BUSY_LOAD_CLAIM, MOVE_BUSY_LOAD_MAX};

/// Closed connections remembered per shard (nats-server's `max_closed_clients`).
pub const CLOSED_CONNS_MAX: usize = 10_000;
/// Subscriptions kept with a closed connection.
pub const CLOSED_SUBS_MAX: usize = 1024;

/// What a gather asks each shard for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAsk {
    /// Counters only (`/varz`, `/healthz`).
    Counters,
    /// Counters and connections (`/connz`): open ones, closed ones, with
    /// their subscriptions when `subs`.
    Conns {
        open: bool,
        closed: bool,
        subs: bool,
    },
    /// Counters and every client subscription (`/subsz`).
    Subs,
    /// Counters and the leaf connections (`/leafz`), with the interest each
    /// advertised to us when `subs`.
    Leafs { subs: bool },
}

/// One leaf connection, as `/leafz` shows it.
#[derive(Debug, Clone, Default)]
pub struct LeafInfo {
    pub cid: u64,
    /// The server at the other end.
    pub name: String,
    /// We play the spoke (we dialled a hub).
    pub is_spoke: bool,
    pub ip: String,
    pub port: u16,
    pub rtt: Duration,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    pub subs: Vec<String>,
}

/// One subscription, as `/connz?subs=detail` and `/subsz?subs=1` show it.
#[derive(Debug, Clone)]
pub struct SubInfo {
    pub cid: u64,
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: Option<u64>,
}

/// One connection, open or closed.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub cid: u64,
    pub ip: String,
    pub port: u16,
    /// Unix nanoseconds.
    pub start: i64,
    pub last_activity: i64,
    /// When it closed, and why (closed connections only).
    pub stop: Option<i64>,
    pub reason: &'static str,
    pub rtt: Duration,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    pub name: String,
    pub lang: String,
    pub version: String,
    /// TLS version ("1.3") and cipher suite (Go's name), when over TLS.
    pub tls_version: String,
    pub tls_cipher_suite: String,
    /// The authenticated user (empty without authentication).
    pub user: String,
    pub subs: Vec<SubInfo>,
}

/// Counters of one shard: its closed connections' and its live ones'.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    /// Connections closed as stale, and producers paused for a full queue.
    pub stale_connections: u64,
    pub stalls: u64,
    /// Connections open now, and accepted since start.
    pub connections: u64,
    pub total_connections: u64,
    /// Client subscriptions open now.
    pub subscriptions: u64,
    /// Leaf connections up now.
    pub leafnodes: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.in_msgs += o.in_msgs;
        self.out_msgs += o.out_msgs;
        self.in_bytes += o.in_bytes;
        self.out_bytes += o.out_bytes;
        self.slow_consumers += o.slow_consumers;
        self.stale_connections += o.stale_connections;
        self.stalls += o.stalls;
        self.connections += o.connections;
        self.total_connections += o.total_connections;
        self.subscriptions += o.subscriptions;
        self.leafnodes += o.leafnodes;
    }
}

/// One shard's answer.
#[derive(Debug, Default)]
pub struct StatsPart {
    pub counters: Counters,
    pub conns: Vec<ConnInfo>,
    pub subs: Vec<SubInfo>,
    pub leafs: Vec<LeafInfo>,
    pub trie: crate::subject::trie::TrieStats,
    /// The answering shard, and its `ShardStats::handed` and `taken`.
    pub shard: u16,
    pub handed: Vec<u64>,
    pub taken: Vec<u64>,
}

/// Whether `parts` saw a client's move on one side only: its old shard had
/// handed it over and its new shard had not taken it up yet (counted by
/// neither), or the other way round (counted by both). Each pair of shards
/// hands over in order, so equal counts on both sides mean each move is
/// seen from the same side by both.
pub fn moves_in_transit(parts: &[StatsPart]) -> bool {
    parts.iter().any(|a| {
        parts.iter().any(|b| {
            let handed = a.handed.get(usize::from(b.shard)).copied().unwrap_or(0);
            let taken = b.taken.get(usize::from(a.shard)).copied().unwrap_or(0);
            handed != taken
        })
    })
}

/// Adds one to `counts[shard]`.
pub fn count_move(counts: &mut Vec<u64>, shard: u16) {
    let i = usize::from(shard);
    if counts.len() <= i {
        counts.resize(i + 1, 0);
    }
    counts[i] += 1;
}

/// A shard's own monitoring state (its `stats` field).
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Counters of connections that closed, plus slow consumers and accepts.
    pub closed: Counters,
    pub closed_conns: VecDeque<ConnInfo>,
    /// Clients moved to each shard (by index) and taken up from each: what a
    /// monitoring gather compares to see a move caught halfway.
    pub handed: Vec<u64>,
    pub taken: Vec<u64>,
}

/// Unix nanoseconds of `t`.
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// How busy a shard is, for deciding whether a busy client may move onto it
/// (`MOVE_BUSY_LOAD_MAX`), per mille of a core: what it measured over its
/// last `SHUTDOWN_POLL`, and what the clients moving onto it since claimed.
#[derive(Debug, Default)]
pub struct ShardLoad {
    measured: AtomicU32,
    claimed: AtomicU32,
}

impl ShardLoad {
    /// The shard's new measure. Claims made during the period it covers are
    /// carried over once, on top: their clients may have arrived too late in
    /// it to show.
    pub fn publish(&self, sample: u32) {
        let claimed = self.claimed.swap(0, Ordering::Relaxed);
        self.measured
            .store(sample.saturating_add(claimed), Ordering::Relaxed);
    }

    /// Whether a busy client would find room.
    pub fn has_room(&self) -> bool {
        let measured = self.measured.load(Ordering::Relaxed);
        measured.saturating_add(self.claimed.load(Ordering::Relaxed)) < MOVE_BUSY_LOAD_MAX
    }

    /// Takes room for a busy client (`MOVE_BUSY_LOAD_CLAIM`), unless there is
    /// none left: two shards moving clients here at once cannot both take
    /// the last of it.
    pub fn claim(&self) -> bool {
        let measured = self.measured.load(Ordering::Relaxed);
        self.claimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (measured.saturating_add(c) < MOVE_BUSY_LOAD_MAX)
                    .then(|| c.saturating_add(MOVE_BUSY_LOAD_CLAIM))
            })
            .is_ok()
    }
}

/// How busy the calling thread was between two samples: CPU time over wall
/// time, per mille of a core.
#[derive(Debug)]
pub struct LoadMeter {
    cpu: Duration,
    at: Instant,
}

impl LoadMeter {
    pub fn new() -> Self {
        LoadMeter {
            cpu: thread_cpu(),
            at: Instant::now(),
        }
    }

    /// Per mille of a core used since the last sample (or `new`).
    pub fn sample(&mut self) -> u32 {
        let (cpu, at) = (thread_cpu(), Instant::now());
        let used = cpu.saturating_sub(self.cpu).as_micros();
        let wall = at.duration_since(self.at).as_micros().max(1);
        (self.cpu, self.at) = (cpu, at);
        (used * 1000 / wall).min(1000) as u32
    }
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU time of the calling thread (zero if the clock cannot be read).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(shard: u16, handed: &[u64], taken: &[u64]) -> StatsPart {
        StatsPart {
            shard,
            handed: handed.to_vec(),
            taken: taken.to_vec(),
            ..StatsPart::default()
        }
    }

    #[test]
    fn a_move_seen_on_one_side_only_is_in_transit() {
        // No moves; or shard 1 handed 2 clients to shard 2, which took both.
        assert!(!moves_in_transit(&[part(0, &[], &[]), part(1, &[], &[])]));
        let both = [
            part(0, &[], &[]),
            part(1, &[0, 0, 2], &[]),
            part(2, &[], &[0, 2]),
        ];
        assert!(!moves_in_transit(&both));
        // Handed, not yet taken up: counted by neither.
        let neither = [
            part(0, &[], &[]),
            part(1, &[0, 0, 3], &[]),
            part(2, &[], &[0, 2]),
        ];
        assert!(moves_in_transit(&neither));
        // Taken up, and the old shard answered before it handed over: by both.
        let twice = [
            part(0, &[], &[]),
            part(1, &[0, 0, 2], &[]),
            part(2, &[], &[0, 3]),
        ];
        assert!(moves_in_transit(&twice));
        // A count beyond the other side's vector is a count against zero.
        assert!(moves_in_transit(&[
            part(0, &[0, 1], &[]),
            part(1, &[], &[])
        ]));
    }

    #[test]
    fn load_is_the_share_of_a_core_the_thread_used() {
        let mut meter = LoadMeter::new();
        std::thread::sleep(Duration::from_millis(30));
        let asleep = meter.sample();
        assert!(asleep < 200, "asleep: {asleep}");
        // Spin until the thread has had 10 ms of CPU (tests beside it may
        // hold the core for a while), at most 5 s.
        let (start, until) = (thread_cpu(), Instant::now() + Duration::from_secs(5));
        while thread_cpu().saturating_sub(start) < Duration::from_millis(10)
            && Instant::now() < until
        {
            std::hint::spin_loop();
        }
        let spinning = meter.sample();
        assert!(spinning > asleep, "spinning: {spinning}, asleep: {asleep}");
    }

    #[test]
    fn busy_clients_take_room_until_none_is_left_and_claims_outlast_one_measure() {
        let load = ShardLoad::default();
        let mut moved = 0;
        while load.has_room() {
            assert!(load.claim());
            moved += 1;
        }
        assert_eq!(moved, MOVE_BUSY_LOAD_MAX.div_ceil(MOVE_BUSY_LOAD_CLAIM));
        assert!(!load.claim(), "no room left");
        // The next measure saw little of the clients that moved: their
        // claims still count on top of it, and are gone after the next.
        load.publish(100);
        assert!(!load.has_room());
        load.publish(100);
        assert!(load.has_room());
        load.publish(MOVE_BUSY_LOAD_MAX);
        assert!(!load.has_room() && !load.claim());
    }
}
