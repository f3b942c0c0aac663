//! Consumers: delivery state, pull requests, push delivery with flow control
//! and heartbeats, acknowledgements, redelivery, retention, and durable state.
//!
//! A consumer lives on its stream's owner shard and is driven by one task
//! (`run`): every wake-up (new messages, a pull request, an ack, a timer) it
//! delivers what it can, then sleeps until the next deadline. Requests and acks
//! arrive through the stream's internal subscriptions on
//! `$JS.API.CONSUMER.MSG.NEXT.<stream>.*`, `$JS.ACK.<stream>.>` and
//! `$JS.FC.<stream>.>`, so they cross shards like any message.
//!
//! Bounds: pending acks ≤ `max_ack_pending` (delivery stops when full); open
//! pull requests ≤ `max_waiting` (the next gets 409); redelivery timers are one
//! per pending message; push delivery stops at the flow-control window
//! (≤ `FC_WINDOW_MAX`); confirmations of acks waiting for the state to be
//! saved ≤ `ACK_REPLIES_MAX` (beyond it they are confirmed at once).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::js::store::index::StoredMsg;
use crate::js::stream::Stream;
use crate::js::types::consumer_config::{AckPolicy, ConsumerConfig, DeliverPolicy};
use crate::js::types::json::{self, now_nanos};
use crate::js::types::stream_config::Retention;
use crate::notify::Notify;
use crate::protocol::parser::PubOp;
use crate::shard::Shard;

/// Flow control: first window, and its cap after doubling on each answer.
pub const FC_WINDOW_START: u64 = 2 * 1024 * 1024;
pub const FC_WINDOW_MAX: u64 = 32 * 1024 * 1024;
/// Ack confirmations held until the consumer state is saved.
pub const ACK_REPLIES_MAX: usize = 65_536;
/// How often a durable consumer's changed state is saved.
pub const SAVE_INTERVAL_NS: i64 = 100_000_000;

/// Ack subjects are built in buffers of this size. A buffer is reused once
/// every subject cut from it was dropped (they are copied out at delivery);
/// otherwise a new one is allocated and the old freed with its last subject.
pub const ACK_ARENA_BYTES: usize = 64 * 1024;

/// Failed writes remembered for telling late acks of lost deliveries apart.
pub const LOST_RANGES_MAX: usize = 16;
/// How often a consumer checks that its push subscriber or pull requesters
/// are still there.
const INTEREST_CHECK_NS: i64 = 1_000_000_000;
/// How often an unbound push consumer looks for a subscriber.
const BIND_POLL_NS: i64 = 50_000_000;
/// Read-ahead per disk read for a consumer; it holds at most two such
/// buffers (one being delivered, one being read).
const PREFETCH_BYTES: usize = 1024 * 1024;
/// Deliveries per pass before the task yields to the shard.
const PASS_MAX: usize = 1024;

/// One open pull request.
struct PullReq {
    reply: Bytes,
    batch: u64,
    /// Remaining byte budget when the request set `max_bytes`.
    max_bytes: Option<u64>,
    /// Absolute deadline (ns), 0 = none.
    expires: i64,
    hb: i64,
    next_hb: i64,
    /// A no_wait request not yet served by a delivery pass.
    fresh: bool,
    /// Messages delivered to it so far.
    got: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pend {
    cseq: u64,
    /// Deliveries so far.
    dc: u64,
    /// Redelivery deadline (ns).
    deadline: i64,
    /// When it was last delivered (ns).
    delivered: i64,
}

#[derive(Default)]
struct State {
    /// delivered.stream_seq / consumer_seq.
    sseq: u64,
    dseq: u64,
    ack_s: u64,
    ack_c: u64,
    /// Next stream sequence to look at for new messages.
    cursor: u64,
    /// Initial last-per-subject deliveries not yet made.
    lps: VecDeque<u64>,
    pending: BTreeMap<u64, Pend>,
    /// (deadline, sseq) of every pending message.
    timers: BTreeSet<(i64, u64)>,
    /// Pending messages due for redelivery, by stream sequence.
    due: BTreeSet<u64>,
    /// Messages that reached max_deliver and were given up.
    exhausted: BTreeSet<u64>,
    /// Set by `clamp`: deliveries up to this consumer sequence of stream
    /// sequences past this one were of messages that are gone.
    /// (The last `LOST_RANGES_MAX` such clamps; older ones are forgotten.)
    lost: VecDeque<(u64, u64)>,
    /// Matching messages ≥ cursor, counted up to `np_upto`, as of
    /// `np_gen` removals from the stream.
    np: u64,
    np_upto: u64,
    np_gen: u64,
    waiting: VecDeque<PullReq>,
    last_delivered: i64,
    last_ack: i64,
    /// Last time anyone showed interest (pull request, ack, bound push).
    last_activity: i64,
    /// Push: last time anything went to the deliver subject.
    last_push: i64,
    /// Push flow control: bytes since the last answered request, window, and
    /// the outstanding request (subject, bytes it covers).
    fc_bytes: u64,
    fc_window: u64,
    fc_pending: Option<(Bytes, u64)>,
    /// Not before this time: rate limit or replay_policy original (ns).
    hold_until: i64,
    /// Timestamp of the last new message delivered (replay original).
    last_msg_ts: i64,
    dirty: bool,
    last_save: i64,
    ack_replies: Vec<Bytes>,
    bound: bool,
    /// Rate limit: bytes that may go now, as of `tokens_at` (0 = not started).
    tokens: f64,
    tokens_at: i64,
    last_interest_check: i64,
}

pub struct Consumer {
    pub name: String,
    pub stream: Rc<Stream>,
    /// Shared so a delivery pass holds it without copying.
    pub cfg: RefCell<Rc<ConsumerConfig>>,
    pub created: i64,
    filters: RefCell<Vec<Bytes>>,
    st: RefCell<State>,
    pub wake: Notify,
    pub closed: Cell<bool>,
    /// State directory of a durable, file-backed consumer.
    dir: Option<PathBuf>,
    done: crate::notify::Event,
    running: Cell<bool>,
    /// Messages read ahead from disk, ascending.
    prefetch: RefCell<VecDeque<StoredMsg>>,
    /// The next disk read, in flight: (its first sequence, the read).
    #[allow(clippy::type_complexity)]
    ahead: RefCell<Option<(u64, glommio::Task<Vec<StoredMsg>>)>>,
    /// `$JS.ACK.<stream>.<name>.`
    ack_prefix: Vec<u8>,
    /// Where ack subjects are built (`ACK_ARENA_BYTES` at a time).
    ack_arena: RefCell<bytes::BytesMut>,
    /// Who its deliveries go to, while the interest is unchanged.
    memo: RefCell<crate::router::DeliverMemo>,
    /// Generation of the last saved state, and which slots' files exist on disk
    /// (their directory entries synced).
    save_gen: Cell<u64>,
    slot_synced: Cell<[bool; 2]>,
    /// A background save is running, and the event it fires when it ends.
    saving: Cell<bool>,
    saved: crate::notify::Event,
    save_failed: Cell<bool>,
}

/// What is persisted beside `meta.json` for a durable consumer.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    pub created: i64,
    pub config: ConsumerConfig,
}

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    sseq: u64,
    dseq: u64,
    ack_s: u64,
    ack_c: u64,
    cursor: u64,
    lps: Vec<u64>,
    /// (sseq, cseq, deliveries)
    pending: Vec<(u64, u64, u64)>,
    exhausted: Vec<u64>,
    last_delivered: i64,
    last_ack: i64,
}

/// Counters of consumer info.
pub struct Snapshot {
    pub sseq: u64,
    pub dseq: u64,
    pub ack_s: u64,
    pub ack_c: u64,
    pub last_delivered: i64,
    pub last_ack: i64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
}

pub fn consumers_dir(stream: &Stream) -> PathBuf {
    stream.dir.join("consumers")
}

fn filters_of(cfg: &ConsumerConfig) -> Vec<Bytes> {
    cfg.filters().into_iter().map(Bytes::from).collect()
}

fn matches_any(filters: &[Bytes], subject: &[u8]) -> bool {
    filters.is_empty() || filters.iter().any(|f| crate::subject::matches(f, subject))
}

/// Random base62 text (ephemeral names, advisory ids, flow-control tokens).
pub fn random_token(shard: &Shard, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| ALPHABET[(shard.random() % 62) as usize] as char)
        .collect()
}

/// Go's `time.Duration.String()` for the 409 texts.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64, suffix: &str| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = format!("{:0width$}", rest, width = unit.ilog10() as usize);
            format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
        }
    };
    let s = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        frac(u, 1_000, "µs")
    } else if u < 1_000_000_000 {
        frac(u, 1_000_000, "ms")
    } else {
        let secs = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let sec = if sub == 0 {
            format!("{s}s")
        } else {
            let digits = format!("{sub:09}");
            format!("{s}.{}s", digits.trim_end_matches('0'))
        };
        if h > 0 {
            format!("{h}h{m}m{sec}")
        } else if m > 0 {
            format!("{m}m{sec}")
        } else {
            sec
        }
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

fn status(code: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut h = format!("NATS/1.0 {code}\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

impl Consumer {
    /// A new consumer positioned by its deliver policy.
    pub fn new(
        stream: &Rc<Stream>,
        name: String,
        cfg: ConsumerConfig,
        created: i64,
        dir: Option<PathBuf>,
    ) -> Consumer {
        let filters = filters_of(&cfg);
        let mut st = State {
            fc_window: FC_WINDOW_START,
            last_activity: now_nanos(),
            ..Default::default()
        };
        {
            let ix = stream.ix.borrow();
            let first = ix.first_seq();
            let last = ix.last_seq();
            let start = match cfg.deliver() {
                DeliverPolicy::All => first,
                DeliverPolicy::Last => ix
                    .last_per_subject(&filters)
                    .last()
                    .copied()
                    .unwrap_or(last + 1),
                // After every accepted message, committed or still in flight.
                DeliverPolicy::New => stream.next_seq(),
                DeliverPolicy::ByStartSeq => cfg.opt_start_seq,
                DeliverPolicy::ByStartTime => ix
                    .first_at_or_after(cfg.start_time_nanos())
                    .unwrap_or(last + 1),
                DeliverPolicy::LastPerSubject => {
                    st.lps = ix.last_per_subject(&filters).into();
                    st.lps.front().copied().unwrap_or(last + 1)
                }
            };
            if cfg.deliver() == DeliverPolicy::LastPerSubject {
                st.cursor = last + 1;
            } else {
                st.cursor = start;
            }
            st.sseq = if cfg.deliver() == DeliverPolicy::All {
                0
            } else {
                start.saturating_sub(1)
            };
            st.ack_s = st.sseq;
            st.np = ix.count_filtered(st.cursor, &filters) + st.lps.len() as u64;
            st.np_upto = last;
            st.np_gen = ix.removals;
        }
        Consumer {
            ack_prefix: format!("$JS.ACK.{}.{name}.", stream.name).into_bytes(),
            ack_arena: RefCell::new(bytes::BytesMut::new()),
            memo: RefCell::new(None),
            name,
            stream: stream.clone(),
            cfg: RefCell::new(Rc::new(cfg)),
            created,
            filters: RefCell::new(filters),
            st: RefCell::new(st),
            wake: Notify::new(),
            closed: Cell::new(false),
            dir,
            done: crate::notify::Event::default(),
            running: Cell::new(false),
            prefetch: RefCell::new(VecDeque::new()),
            ahead: RefCell::new(None),
            save_gen: Cell::new(0),
            slot_synced: Cell::new([false, false]),
            saving: Cell::new(false),
            save_failed: Cell::new(false),
            saved: crate::notify::Event::default(),
        }
    }

    /// Restores saved state (start-up).
    fn restore(&self, saved: Saved) {
        let ack_wait = self.cfg.borrow().ack_wait;
        let now = now_nanos();
        let mut st = self.st.borrow_mut();
        st.sseq = saved.sseq;
        st.dseq = saved.dseq;
        st.ack_s = saved.ack_s;
        st.ack_c = saved.ack_c;
        st.cursor = saved.cursor;
        st.lps = saved.lps.into();
        st.last_delivered = saved.last_delivered;
        st.last_ack = saved.last_ack;
        st.exhausted = saved.exhausted.into_iter().collect();
        for (sseq, cseq, dc) in saved.pending {
            // Whatever was in flight at the stop is redelivered after ack_wait.
            let deadline = now.saturating_add(ack_wait);
            st.pending.insert(
                sseq,
                Pend {
                    cseq,
                    dc,
                    deadline,
                    delivered: 0,
                },
            );
            st.timers.insert((deadline, sseq));
        }
        // Saved positions may name previewed messages lost in a crash.
        self.clamp(&mut st);
    }

    /// Takes back every position past the stream's last committed message
    /// (deliveries of previewed messages whose write failed or was lost), so
    /// the sequences given again are delivered as new; recounts `np`.
    fn clamp(&self, st: &mut State) {
        let ix = self.stream.ix.borrow();
        // A start sequence configured past the end stays where it is.
        let start = {
            let cfg = self.cfg.borrow();
            match cfg.deliver() {
                DeliverPolicy::ByStartSeq => cfg.opt_start_seq,
                _ => 0,
            }
        };
        let end = ix.last_seq().max(start.saturating_sub(1));
        if st.cursor > end + 1 || st.sseq > end {
            if st.lost.len() >= LOST_RANGES_MAX {
                st.lost.pop_front();
            }
            let d = st.dseq;
            st.lost.push_back((end, d));
        }
        st.cursor = st.cursor.min(end + 1);
        st.sseq = st.sseq.min(end);
        st.ack_s = st.ack_s.min(end);
        let last = end;
        let lost: Vec<u64> = st.pending.range(last + 1..).map(|(s, _)| *s).collect();
        for q in lost {
            if let Some(p) = st.pending.remove(&q) {
                st.timers.remove(&(p.deadline, q));
            }
            st.due.remove(&q);
        }
        // Also drops given-up messages removed before a restart.
        st.exhausted
            .retain(|q| *q <= last && ix.entry(*q).is_some());
        st.np = ix.count_filtered(st.cursor, &self.filters.borrow()) + st.lps.len() as u64;
        st.np_upto = ix.last_seq();
        st.np_gen = ix.removals;
        st.dirty = true;
    }

    /// Applies an updated config (immutable fields already checked).
    pub fn update(&self, cfg: ConsumerConfig) {
        let refilter = cfg.filters() != self.cfg.borrow().filters();
        *self.cfg.borrow_mut() = Rc::new(cfg);
        if refilter {
            *self.filters.borrow_mut() = filters_of(&self.cfg.borrow());
            let ix = self.stream.ix.borrow();
            let mut st = self.st.borrow_mut();
            st.np = ix.count_filtered(st.cursor, &self.filters.borrow()) + st.lps.len() as u64;
            st.np_upto = ix.last_seq();
            st.np_gen = ix.removals;
        }
        self.st.borrow_mut().dirty = true;
        self.wake.notify();
    }

    /// Brings `np` up to date with the stream (new messages and removals).
    fn sync_pending(&self, st: &mut State) {
        let ix = self.stream.ix.borrow();
        // Nothing committed or removed since the last call (once per delivery).
        if ix.removals == st.np_gen
            && ix.last_seq() <= st.np_upto
            && st
                .pending
                .first_key_value()
                .is_none_or(|(q, _)| *q >= ix.first_seq())
        {
            return;
        }
        let filters = self.filters.borrow();
        let behind = ix.removals - st.np_gen;
        if behind > ix.recent_removed.len() as u64 {
            st.np = ix.count_filtered(st.cursor, &filters) + st.lps.len() as u64;
            st.np_upto = ix.last_seq();
            st.np_gen = ix.removals;
            // Pending messages removed from the stream (purge, limits) no
            // longer wait for an ack.
            let gone: Vec<u64> = st
                .pending
                .keys()
                .copied()
                .filter(|q| *q <= ix.last_seq() && ix.entry(*q).is_none())
                .collect();
            for q in gone {
                self.settle(st, q);
            }
            st.exhausted.retain(|q| ix.entry(*q).is_some());
            return;
        }
        // Delivered from the preview, then purged before their commit: never
        // in the removal log.
        let first = ix.first_seq();
        while let Some(q) = st
            .pending
            .first_key_value()
            .map(|(q, _)| *q)
            .filter(|q| *q < first)
        {
            self.settle(st, q);
        }
        for (seq, subject) in ix.recent_removed.iter().rev().take(behind as usize) {
            if *seq >= st.cursor && *seq <= st.np_upto && matches_any(&filters, subject) {
                st.np = st.np.saturating_sub(1);
            }
            st.exhausted.remove(seq);
            if st.pending.contains_key(seq) {
                self.settle(st, *seq);
            }
        }
        st.np_gen = ix.removals;
        let last = ix.last_seq();
        let mut seq = (st.np_upto + 1).max(st.cursor).max(ix.first_seq());
        while seq <= last {
            if let Some(s) = ix.subject_at(seq) {
                if matches_any(&filters, s) {
                    st.np += 1;
                }
            }
            seq += 1;
        }
        st.np_upto = last.max(st.np_upto);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut st = self.st.borrow_mut();
        self.sync_pending(&mut st);
        // Given-up messages count as redelivered until the ack floor passes them.
        let redelivered = st.pending.values().filter(|p| p.dc > 1).count() as u64
            + st.exhausted.range(st.ack_s + 1..).count() as u64;
        let now = now_nanos();
        let waiting = st
            .waiting
            .iter()
            .filter(|r| r.expires == 0 || r.expires > now)
            .count() as u64;
        Snapshot {
            sseq: st.sseq,
            dseq: st.dseq,
            ack_s: st.ack_s,
            ack_c: st.ack_c,
            last_delivered: st.last_delivered,
            last_ack: st.last_ack,
            num_ack_pending: st.pending.len() as u64,
            num_redelivered: redelivered,
            num_waiting: waiting,
            num_pending: st.np,
        }
    }

    /// Whether given-up messages stay recorded below the ack floor (they keep
    /// their message in an interest or workqueue stream).
    fn keeps_given_up(&self) -> bool {
        self.stream.cfg.borrow().retention() != Retention::Limits
    }

    /// Whether this consumer still needs `seq` (for interest/workqueue retention).
    pub fn needs(&self, seq: u64, subject: &[u8]) -> bool {
        if !matches_any(&self.filters.borrow(), subject) {
            return false;
        }
        let st = self.st.borrow();
        if st.lps.contains(&seq) {
            return true;
        }
        // Given up after max_deliver: kept for the user to deal with (a dead
        // letter queue), as nats-server keeps it, while this consumer exists.
        seq >= st.cursor || st.pending.contains_key(&seq) || st.exhausted.contains(&seq)
    }

    fn ack_subject(&self, dc: u64, sseq: u64, cseq: u64, ts: i64, pending: u64) -> Bytes {
        // Built by hand, into a shared buffer: this runs once per delivery, and
        // the subject is copied out (into a connection or a mesh batch) and
        // dropped right after, so the buffer is reused instead of a malloc each.
        let prefix = &self.ack_prefix;
        let mut out = self.ack_arena.borrow_mut();
        let need = prefix.len() + 5 * 21;
        if out.capacity() - out.len() < need {
            out.reserve(ACK_ARENA_BYTES.max(need));
        }
        out.extend_from_slice(prefix);
        for (i, n) in [dc, sseq, cseq, ts.max(0) as u64, pending]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.extend_from_slice(b".");
            }
            crate::protocol::ops::push_decimal(&mut *out, n);
        }
        out.split().freeze()
    }

    /// A new pull request on `$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>`.
    pub fn pull_request(&self, shard: &Shard, reply: Option<&Bytes>, body: &[u8]) {
        let Some(reply) = reply.filter(|r| !r.is_empty()) else {
            return; // nats-server ignores a request nobody can receive
        };
        let cfg = self.cfg.borrow().clone();
        if cfg.is_push() {
            shard.reply(reply, Some(&status("409 Consumer is push based", &[])), b"");
            return;
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Req {
            batch: i64,
            expires: i64,
            max_bytes: i64,
            no_wait: bool,
            idle_heartbeat: i64,
        }
        let text = std::str::from_utf8(body).unwrap_or("").trim();
        let req = if text.starts_with('{') {
            match json::decode_as::<Req>(text.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    let msg = format!("400 Bad Request - {e}");
                    shard.reply(reply, Some(&status(&msg, &[])), b"");
                    return;
                }
            }
        } else {
            Req {
                batch: text.parse().unwrap_or(1),
                ..Default::default()
            }
        };
        let batch = req.batch.max(1) as u64;
        if cfg.max_batch > 0 && batch > cfg.max_batch as u64 {
            let msg = format!("409 Exceeded MaxRequestBatch of {}", cfg.max_batch);
            shard.reply(reply, Some(&status(&msg, &[])), b"");
            return;
        }
        let mut expires = req.expires;
        // A request without expiry gets the consumer's maximum (a no_wait one
        // keeps none: it ends after one pass).
        if cfg.max_expires > 0 && ((expires == 0 && !req.no_wait) || expires > cfg.max_expires) {
            if expires > cfg.max_expires {
                let msg = format!(
                    "409 Exceeded MaxRequestExpires of {}",
                    go_duration(cfg.max_expires)
                );
                shard.reply(reply, Some(&status(&msg, &[])), b"");
                return;
            }
            expires = cfg.max_expires;
        }
        if cfg.max_bytes > 0 && req.max_bytes > cfg.max_bytes {
            let msg = format!("409 Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes);
            shard.reply(reply, Some(&status(&msg, &[])), b"");
            return;
        }
        if req.idle_heartbeat > 0 && expires > 0 && req.idle_heartbeat > expires / 2 {
            shard.reply(
                reply,
                Some(&status("400 Bad Request - heartbeat value too large", &[])),
                b"",
            );
            return;
        }
        let now = now_nanos();
        if expires < 0 {
            let h = status(
                "408 Request Timeout",
                &[
                    ("Nats-Pending-Messages", batch.to_string()),
                    ("Nats-Pending-Bytes", req.max_bytes.max(0).to_string()),
                ],
            );
            shard.reply(reply, Some(&h), b"");
            return;
        }
        let mut st = self.st.borrow_mut();
        st.last_activity = now;
        let now_waiting = st
            .waiting
            .iter()
            .filter(|r| r.expires == 0 || r.expires > now)
            .count();
        if now_waiting >= cfg.max_waiting.max(1) as usize {
            drop(st);
            shard.reply(reply, Some(&status("409 Exceeded MaxWaiting", &[])), b"");
            return;
        }
        st.waiting.push_back(PullReq {
            // Its own copy: kept while the request waits, it must not pin the
            // buffer it arrived in (a mesh batch or a read buffer).
            reply: Bytes::copy_from_slice(reply),
            batch,
            max_bytes: (req.max_bytes > 0).then_some(req.max_bytes as u64),
            expires: if expires > 0 {
                now.saturating_add(expires)
            } else {
                0
            },
            hb: req.idle_heartbeat,
            next_hb: now.saturating_add(req.idle_heartbeat),
            fresh: req.no_wait,
            got: 0,
        });
        drop(st);
        self.wake.notify();
    }

    /// An ack (or nak, progress, next, term) for a delivered message.
    pub fn ack(
        self: &Rc<Self>,
        shard: &Shard,
        sseq: u64,
        cseq: u64,
        dc: u64,
        reply: Option<&Bytes>,
        body: &[u8],
    ) {
        // An ack for a delivery whose write failed (or a crash lost) must not
        // settle the new message that was given its sequence since.
        if self
            .st
            .borrow()
            .lost
            .iter()
            .any(|&(s, c)| sseq > s && cseq <= c)
        {
            if let Some(r) = reply.filter(|r| !r.is_empty()) {
                shard.reply(r, None, b"");
            }
            return;
        }
        // Only what acks need: no config clone per ack.
        let (policy, ack_wait, sample) = {
            let c = self.cfg.borrow();
            (c.ack(), c.ack_wait, c.sample_percent())
        };
        let now = now_nanos();
        let text = std::str::from_utf8(body).unwrap_or("");
        let (verb, arg) = match text.find(' ') {
            Some(i) => (&text[..i], text[i + 1..].trim()),
            None => (text.trim(), ""),
        };
        let mut removed: Vec<u64> = Vec::new();
        let mut wake = false;
        // Published after the state borrow ends (a publish may re-enter).
        let mut sampled: Option<Pend> = None;
        let mut terminated: Option<(Pend, Option<String>)> = None;
        let lowest = self.st.borrow().pending.first_key_value().map(|(s, _)| *s);
        let lowest = lowest.is_some_and(|l| {
            if policy == AckPolicy::All {
                l <= sseq
            } else {
                l == sseq
            }
        });
        let mut next_req: Option<Vec<u8>> = None;
        {
            let mut st = self.st.borrow_mut();
            st.last_activity = now;
            match verb {
                "" | "+ACK" | "+OK" | "+NXT" => {
                    if verb == "+NXT" {
                        next_req = Some(arg.as_bytes().to_vec());
                    }
                    match policy {
                        AckPolicy::All => {
                            let upto: Vec<u64> =
                                st.pending.range(..=sseq).map(|(s, _)| *s).collect();
                            for s in upto {
                                self.settle(&mut st, s);
                                removed.push(s);
                            }
                        }
                        _ => {
                            if let Some(p) = st.pending.get(&sseq).copied() {
                                self.settle(&mut st, sseq);
                                removed.push(sseq);
                                sampled = Some(p);
                            }
                        }
                    }
                    if !removed.is_empty() {
                        st.last_ack = now;
                        wake = true;
                    }
                }
                "-NAK" => {
                    let delay = parse_nak_delay(arg);
                    if let Some(p) = st.pending.get(&sseq).copied() {
                        st.timers.remove(&(p.deadline, sseq));
                        if delay > 0 {
                            let deadline = now.saturating_add(delay);
                            st.pending.get_mut(&sseq).expect("pending").deadline = deadline;
                            st.timers.insert((deadline, sseq));
                        } else {
                            st.pending.get_mut(&sseq).expect("pending").deadline = 0;
                            st.due.insert(sseq);
                        }
                        wake = true;
                    }
                }
                "+WPI" => {
                    if let Some(p) = st.pending.get(&sseq).copied() {
                        if !st.due.contains(&sseq) {
                            st.timers.remove(&(p.deadline, sseq));
                            let deadline = now.saturating_add(ack_wait.max(1));
                            st.pending.get_mut(&sseq).expect("pending").deadline = deadline;
                            st.timers.insert((deadline, sseq));
                        }
                    }
                }
                "+TERM" => {
                    if let Some(p) = st.pending.get(&sseq).copied() {
                        self.settle(&mut st, sseq);
                        removed.push(sseq);
                        st.last_ack = now;
                        wake = true;
                        let reason = if arg.is_empty() {
                            None
                        } else {
                            Some(arg.to_string())
                        };
                        terminated = Some((p, reason));
                    }
                }
                _ => {} // unknown bodies are accepted and ignored, as nats-server does
            }
            if !removed.is_empty() {
                st.dirty = true;
                update_floor(&mut st, lowest, self.keeps_given_up());
            }
        }
        if let Some(p) = sampled {
            self.sample_ack(shard, sample, sseq, p, now);
        }
        if let Some((p, reason)) = terminated {
            self.advisory_term(shard, sseq, p.cseq, dc.max(p.dc), reason);
        }
        if !removed.is_empty() {
            retain_check(&self.stream, &removed);
        }
        if let Some(nr) = next_req {
            if reply.is_some() {
                self.pull_request(shard, reply, &nr);
            }
        } else if let Some(reply) = reply.filter(|r| !r.is_empty()) {
            // Confirm once the state holding this ack is saved (durables).
            let mut st = self.st.borrow_mut();
            // A deleted consumer saves no more: its acks are confirmed at once.
            // One stopping at shutdown queues them for its last save (after
            // that save, they get no answer and the client asks again).
            let deleted = self.closed.get()
                && !self
                    .stream
                    .consumers
                    .borrow()
                    .get(&self.name)
                    .is_some_and(|c| std::ptr::eq(Rc::as_ptr(c), Rc::as_ptr(self)));
            if self.dir.is_some()
                && !deleted
                && st.ack_replies.len() < ACK_REPLIES_MAX
                && !removed.is_empty()
            {
                st.ack_replies.push(Bytes::copy_from_slice(reply));
                wake = true;
            } else {
                drop(st);
                shard.reply(reply, None, b"");
            }
        }
        if wake {
            self.wake.notify();
        }
    }

    /// Drops `sseq` from pending (acked or terminated).
    fn settle(&self, st: &mut State, sseq: u64) {
        if let Some(p) = st.pending.remove(&sseq) {
            st.timers.remove(&(p.deadline, sseq));
            st.due.remove(&sseq);
        }
    }

    fn sample_ack(&self, shard: &Shard, pct: u64, sseq: u64, p: Pend, now: i64) {
        if pct == 0 || shard.random() % 100 >= pct {
            return;
        }
        let (cseq, dc, delivered_at) = (p.cseq, p.dc, p.delivered);
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.metric.v1.consumer_ack\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"consumer_seq\":{},",
                "\"stream_seq\":{},\"ack_time\":{},\"deliveries\":{}}}"
            ),
            random_token(shard, 22),
            json::rfc3339(now),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            cseq,
            sseq,
            (now - delivered_at).max(0),
            dc
        );
        let subject = Bytes::from(format!(
            "$JS.EVENT.METRIC.CONSUMER.ACK.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    fn advisory_term(&self, shard: &Shard, sseq: u64, cseq: u64, dc: u64, reason: Option<String>) {
        let mut body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.terminated\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"consumer_seq\":{},",
                "\"stream_seq\":{},\"deliveries\":{}"
            ),
            random_token(shard, 22),
            json::rfc3339(now_nanos()),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            cseq,
            sseq,
            dc
        );
        if let Some(r) = reason {
            body.push_str(&format!(
                ",\"reason\":{}",
                serde_json::to_string(&r).expect("str")
            ));
        }
        body.push('}');
        let subject = Bytes::from(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    fn advisory_max_deliver(&self, shard: &Shard, sseq: u64, dc: u64) {
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"stream_seq\":{},",
                "\"deliveries\":{}}}"
            ),
            random_token(shard, 22),
            json::rfc3339(now_nanos()),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            sseq,
            dc
        );
        let subject = Bytes::from(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    /// An answer to a flow-control request.
    pub fn fc_reply(&self, subject: &[u8]) {
        let mut st = self.st.borrow_mut();
        if let Some((fc, covered)) = st.fc_pending.clone() {
            if fc.as_ref() == subject {
                st.fc_pending = None;
                st.fc_bytes = st.fc_bytes.saturating_sub(covered);
                st.fc_window = (st.fc_window * 2).min(FC_WINDOW_MAX);
                drop(st);
                self.wake.notify();
            }
        }
    }

    /// Waits for a background save in progress to end.
    pub async fn wait_saved(&self) {
        while self.saving.get() {
            self.saved.wait().await;
        }
    }

    /// Sends `409 Consumer Deleted` to waiting requests and stops the task.
    pub async fn stop(&self, shard: &Shard, deleted: bool) {
        if deleted {
            let waiting: Vec<PullReq> = self.st.borrow_mut().waiting.drain(..).collect();
            for r in waiting {
                shard.reply(&r.reply, Some(&status("409 Consumer Deleted", &[])), b"");
            }
        }
        self.closed.set(true);
        self.wake.notify();
        while self.running.get() {
            self.done.wait().await;
        }
        // One save at a time: both would write the same slot.
        self.wait_saved().await;
        let replies = std::mem::take(&mut self.st.borrow_mut().ack_replies);
        // A deleted consumer's acks are moot; at shutdown they are confirmed
        // once the last save holds them.
        if deleted || self.save().await {
            for r in replies {
                shard.reply(&r, None, b"");
            }
            shard.flush_mesh().await;
        }
    }

    /// The consumer's task: deliver, then sleep until something changes.
    pub async fn run(self: Rc<Self>, js: Rc<crate::js::Js>) {
        let shard = js.shard.clone();
        self.running.set(true);
        // glommio polls a new task at once: let the creator answer first.
        self.wake.wait().await;
        while !self.closed.get() && !shard.stopping.get() {
            let next = self.pass(&shard).await;
            shard.flush_mesh().await;
            if self.closed.get() {
                break;
            }
            let now = now_nanos();
            let inactive = self.inactive_deadline();
            if inactive != 0 && inactive <= now {
                crate::debug!(
                    "JetStream: consumer '{} > {}' inactive, removing",
                    self.stream.name,
                    self.name
                );
                let js = js.clone();
                let me = self.clone();
                glommio::spawn_local(async move {
                    crate::js::api::consumer::remove_consumer(&js, &me.stream, &me.name).await;
                })
                .detach();
                break;
            }
            let mut deadline = next;
            if inactive != 0 {
                deadline = deadline.min(inactive);
            }
            let dirty_save = {
                let st = self.st.borrow();
                self.dir.is_some() && (st.dirty || !st.ack_replies.is_empty())
            };
            // A save in progress wakes the task when it ends.
            if dirty_save && !self.saving.get() {
                let last = self.st.borrow().last_save;
                let confirming = !self.st.borrow().ack_replies.is_empty();
                // After a failed save, retry at the interval, not at once.
                if now - last >= SAVE_INTERVAL_NS || (confirming && !self.save_failed.get()) {
                    // Saved beside delivery, so a slow fdatasync does not stall it.
                    self.saving.set(true);
                    let me = self.clone();
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        // Taken with the snapshot (no await between): these
                        // acks are in the state being saved, later ones not.
                        let replies = std::mem::take(&mut me.st.borrow_mut().ack_replies);
                        let ok = me.save().await;
                        me.save_failed.set(!ok);
                        if ok {
                            for r in replies {
                                shard.reply(&r, None, b"");
                            }
                            shard.flush_mesh().await;
                        } else {
                            let mut st = me.st.borrow_mut();
                            let later = std::mem::replace(&mut st.ack_replies, replies);
                            st.ack_replies.extend(later);
                            st.last_save = now_nanos();
                        }
                        me.saving.set(false);
                        me.saved.notify_all();
                        me.wake.notify();
                    })
                    .detach();
                } else {
                    deadline = deadline.min(last + SAVE_INTERVAL_NS);
                }
            }
            let wait = (deadline - now_nanos()).max(0) as u64;
            if wait == 0 {
                glommio::yield_if_needed().await;
                continue;
            }
            let sleep = glommio::timer::sleep(std::time::Duration::from_nanos(wait));
            futures_lite::future::or(self.wake.wait(), sleep).await;
        }
        self.running.set(false);
        self.done.notify_all();
    }

    /// The rate limiter's burst: the stream's max_msg_size, else the server's
    /// max_payload.
    fn burst_bytes(&self, shard: &Shard) -> u64 {
        let max = self.stream.cfg.borrow().max_msg_size;
        if max > 0 {
            max as u64
        } else {
            shard.cfg.max_payload as u64
        }
    }

    /// When the consumer becomes removable for inactivity (0 = never).
    fn inactive_deadline(&self) -> i64 {
        let cfg = self.cfg.borrow();
        if cfg.inactive_threshold <= 0 {
            return 0;
        }
        let st = self.st.borrow();
        let busy = if cfg.is_push() {
            st.bound
        } else {
            !st.waiting.is_empty()
        };
        if busy {
            return 0;
        }
        st.last_activity.saturating_add(cfg.inactive_threshold)
    }

    /// One round of work; returns the next deadline (ns) it knows of.
    async fn pass(self: &Rc<Self>, shard: &Rc<Shard>) -> i64 {
        let cfg = self.cfg.borrow().clone();
        let now = now_nanos();
        let mut next = now + 3_600_000_000_000;
        self.expire_requests(shard, now, &mut next);
        self.fire_timers(now, &mut next);
        let pause = cfg.pause_until_nanos();
        if pause > now {
            // Requests still expire and get heartbeats while paused.
            return self.deadlines(&cfg, now, next.min(pause));
        }
        if cfg.is_push() {
            let bound = shard.has_interest(cfg.deliver_subject.as_bytes());
            let mut st = self.st.borrow_mut();
            if bound {
                st.last_activity = now;
            }
            st.bound = bound;
            if !bound {
                return next.min(now + BIND_POLL_NS);
            }
        }
        let mut sent = 0usize;
        // The clock is read once per few deliveries, not per message.
        let mut now = now;
        loop {
            if self.closed.get() {
                return next;
            }
            if sent % 64 == 63 {
                now = now_nanos();
            }
            if sent >= PASS_MAX {
                shard.flush_mesh().await;
                glommio::yield_if_needed().await;
                sent = 0;
                now = now_nanos();
            }
            let hold = self.st.borrow().hold_until;
            if hold != 0 && hold > now {
                next = next.min(hold);
                break;
            }
            // Where to: the deliver subject, or the oldest open pull request.
            let target: Bytes = if cfg.is_push() {
                let st = self.st.borrow();
                if cfg.flow_control && st.fc_bytes >= st.fc_window {
                    break;
                }
                Bytes::from(cfg.deliver_subject.clone())
            } else {
                let mut st = self.st.borrow_mut();
                while st.waiting.front().is_some_and(|r| r.batch == 0) {
                    st.waiting.pop_front();
                }
                match st.waiting.front() {
                    // An expired request is answered by the next pass.
                    Some(r) if r.expires != 0 && r.expires <= now => break,
                    Some(r) => r.reply.clone(),
                    None => break,
                }
            };
            let Some((sseq, redelivery)) = self.pick(shard, &cfg) else {
                break;
            };
            let Some(msg) = self.load(sseq).await else {
                // Gone from the stream meanwhile: forget it and go on.
                let mut st = self.st.borrow_mut();
                if redelivery {
                    let lowest = st.pending.first_key_value().map(|(s, _)| *s) == Some(sseq);
                    self.settle(&mut st, sseq);
                    update_floor(&mut st, lowest, self.keeps_given_up());
                } else {
                    // Its removal is counted from the index's removal log; an
                    // initial last-per-subject start is below the cursor and
                    // is not, so it is counted here.
                    self.sync_pending(&mut st);
                    if st.lps.front() == Some(&sseq) {
                        self.advance_past(&mut st, sseq);
                    } else {
                        st.cursor = st.cursor.max(sseq + 1);
                    }
                }
                continue;
            };
            if self.closed.get() {
                return next;
            }
            if !redelivery && cfg.replay_original() {
                let st = self.st.borrow();
                if st.last_msg_ts != 0 && st.last_delivered != 0 {
                    let at = st.last_delivered + (msg.ts - st.last_msg_ts).max(0);
                    if at > now_nanos() {
                        drop(st);
                        self.st.borrow_mut().hold_until = at;
                        next = next.min(at);
                        break;
                    }
                }
            }
            if !self.deliver(shard, &cfg, &target, msg, redelivery, now) {
                break;
            }
            sent += 1;
        }
        // no_wait requests get their answer after the first pass over them.
        if !cfg.is_push() {
            self.finish_no_wait(shard);
        }
        self.deadlines(&cfg, now, next)
    }

    /// The earliest of `next` and the consumer's own deadlines: redelivery
    /// timers, request expiries and heartbeats, push heartbeats, interest checks.
    fn deadlines(&self, cfg: &ConsumerConfig, now: i64, mut next: i64) -> i64 {
        let st = self.st.borrow();
        if let Some((d, _)) = st.timers.first() {
            next = next.min(*d);
        }
        for r in &st.waiting {
            if r.expires != 0 {
                next = next.min(r.expires);
            }
            if r.hb > 0 {
                next = next.min(r.next_hb);
            }
        }
        if cfg.is_push() && cfg.idle_heartbeat > 0 {
            next = next.min(
                st.last_push
                    .max(self.created)
                    .saturating_add(cfg.idle_heartbeat),
            );
        }
        if cfg.is_push() || !st.waiting.is_empty() {
            // Notice a subscriber or requester that went away.
            next = next.min(now.saturating_add(INTEREST_CHECK_NS));
        }
        next
    }

    /// Chooses the next message: a due redelivery first, else the next new one.
    fn pick(&self, shard: &Shard, cfg: &ConsumerConfig) -> Option<(u64, bool)> {
        let mut gave_up = Vec::new();
        let picked = self.pick_inner(cfg, &mut gave_up);
        for (sseq, dc) in gave_up {
            self.advisory_max_deliver(shard, sseq, dc);
        }
        picked
    }

    fn pick_inner(
        &self,
        cfg: &ConsumerConfig,
        gave_up: &mut Vec<(u64, u64)>,
    ) -> Option<(u64, bool)> {
        let mut st = self.st.borrow_mut();
        self.sync_pending(&mut st);
        while let Some(&sseq) = st.due.first() {
            let dc = st.pending.get(&sseq).map(|p| p.dc);
            match dc {
                None => {
                    st.due.remove(&sseq);
                }
                Some(dc) if cfg.max_deliver > 0 && dc >= cfg.max_deliver as u64 => {
                    st.due.remove(&sseq);
                    self.settle(&mut st, sseq);
                    st.exhausted.insert(sseq);
                    st.dirty = true;
                    gave_up.push((sseq, dc));
                }
                Some(_) => return Some((sseq, true)),
            }
        }
        if cfg.ack() != AckPolicy::None
            && cfg.max_ack_pending > 0
            && st.pending.len() as i64 >= cfg.max_ack_pending
        {
            return None;
        }
        if let Some(&s) = st.lps.front() {
            return Some((s, false));
        }
        let ix = self.stream.ix.borrow();
        let filters = self.filters.borrow();
        match ix.next_filtered(st.cursor, &filters) {
            Some(s) => Some((s, false)),
            None => {
                st.cursor = st.cursor.max(ix.last_seq() + 1);
                drop(ix);
                // Accepted messages still being written deliver now.
                self.stream
                    .preview_next(st.cursor, |s| matches_any(&filters, s))
                    .map(|s| (s, false))
            }
        }
    }

    /// Marks new message `sseq` as passed over without a delivery.
    fn advance_past(&self, st: &mut State, sseq: u64) {
        if st.lps.front() == Some(&sseq) {
            st.lps.pop_front();
        } else {
            st.cursor = st.cursor.max(sseq + 1);
            if sseq > st.np_upto {
                // A previewed message: never counted, and not counted at
                // its commit either (it is below the cursor by then).
                return;
            }
        }
        st.np = st.np.saturating_sub(1);
    }

    /// Reads a message: from the read-ahead buffer, the stream's cache, or
    /// disk. Disk reads are `PREFETCH_BYTES` long, and the next one is started
    /// as soon as a read arrives, so a consumer replaying from disk delivers
    /// one buffer while the next is read.
    async fn load(&self, seq: u64) -> Option<StoredMsg> {
        for _ in 0..2 {
            {
                let mut pf = self.prefetch.borrow_mut();
                while pf.front().is_some_and(|m| m.seq < seq) {
                    pf.pop_front();
                }
                if pf.front().is_some_and(|m| m.seq == seq) {
                    let m = pf.pop_front();
                    // Deleted since it was read: not served.
                    return m.filter(|_| self.stream.ix.borrow().entry(seq).is_some());
                }
            }
            if let Some(m) = self.stream.ix.borrow().cached(seq) {
                return Some(m);
            }
            if !self.stream.is_file() {
                return None;
            }
            if let Some(m) = self.stream.preview_get(seq) {
                return Some(m);
            }
            let ahead = self.ahead.borrow_mut().take();
            match ahead {
                Some((start, task)) if start <= seq => {
                    let run = task.await;
                    self.take_run(run);
                }
                // A read of somewhere else (dropping it cancels it).
                _ => break,
            }
        }
        let run = self.stream.load_run(seq, PREFETCH_BYTES).await;
        if run.first().map(|m| m.seq) != Some(seq) {
            return None;
        }
        self.take_run(run);
        let first = self.prefetch.borrow_mut().pop_front();
        first
    }

    /// Makes `run` the read-ahead buffer and starts reading what follows it.
    fn take_run(&self, run: Vec<StoredMsg>) {
        let next = run.last().map(|m| m.seq + 1);
        *self.prefetch.borrow_mut() = run.into();
        let Some(next) = next else { return };
        if self.stream.ix.borrow().cached(next).is_some()
            || next > self.stream.ix.borrow().last_seq()
        {
            return;
        }
        let stream = self.stream.clone();
        let task = glommio::spawn_local(async move { stream.load_run(next, PREFETCH_BYTES).await });
        *self.ahead.borrow_mut() = Some((next, task));
    }

    /// Sends one message; false if it did not go (the request cannot take it).
    fn deliver(
        &self,
        shard: &Shard,
        cfg: &ConsumerConfig,
        target: &Bytes,
        msg: StoredMsg,
        redelivery: bool,
        now: i64,
    ) -> bool {
        let mut st = self.st.borrow_mut();
        if !cfg.is_push() && st.waiting.front().map(|r| &r.reply) != Some(target) {
            return false;
        }
        self.sync_pending(&mut st);
        // Pending after this one (redeliveries do not change it).
        let pending_after = if redelivery || msg.seq > st.np_upto {
            st.np
        } else {
            st.np.saturating_sub(1)
        };
        let (dc, cseq) = if redelivery {
            // Acked or terminated while it was being read: nothing to redeliver.
            let Some(p) = st.pending.get(&msg.seq).copied() else {
                return true;
            };
            (p.dc + 1, st.dseq + 1)
        } else {
            (1, st.dseq + 1)
        };
        let reply = self.ack_subject(dc, msg.seq, cseq, msg.ts, pending_after);
        let (hdr, body): (Option<Vec<u8>>, &[u8]) = if cfg.headers_only {
            (Some(headers_only(msg.hdr(), msg.payload().len())), b"")
        } else if msg.hdr_len > 0 {
            (Some(msg.hdr().to_vec()), msg.payload())
        } else {
            (None, msg.payload())
        };
        let hdr_len = hdr.as_ref().map_or(0, Vec::len);
        let size = (msg.subject.len() + reply.len() + hdr_len + body.len()) as u64;
        if !cfg.is_push() {
            let front = st.waiting.front_mut().expect("target request");
            if let Some(left) = front.max_bytes {
                if size > left {
                    let r = st.waiting.pop_front().expect("front");
                    drop(st);
                    let h = status(
                        "409 Message Size Exceeds MaxBytes",
                        &[
                            ("Nats-Pending-Messages", r.batch.to_string()),
                            ("Nats-Pending-Bytes", left.to_string()),
                        ],
                    );
                    shard.reply(&r.reply, Some(&h), b"");
                    return true;
                }
            }
        }
        // Build the wire message: stored subject, ack reply, headers, body.
        let data = match &hdr {
            Some(h) => {
                let mut v = Vec::with_capacity(h.len() + body.len());
                v.extend_from_slice(h);
                v.extend_from_slice(body);
                Bytes::from(v)
            }
            None if msg.hdr_len == 0 => msg.data.clone(),
            None => Bytes::copy_from_slice(body),
        };
        let p = PubOp {
            subject: msg.subject.clone(),
            reply: Some(reply),
            hdr_len: hdr.as_ref().map(Vec::len),
            msg: data,
        };
        // State first: an ack may come back before this function returns.
        st.dseq = cseq;
        st.last_delivered = now;
        if !redelivery {
            st.sseq = msg.seq;
            st.last_msg_ts = msg.ts;
            self.advance_past(&mut st, msg.seq);
        }
        if cfg.ack() == AckPolicy::None {
            if !redelivery && st.pending.is_empty() {
                st.ack_s = st.sseq;
                st.ack_c = st.dseq;
            }
        } else {
            let delay = cfg.redelivery_delay(dc);
            let deadline = now.saturating_add(delay.max(1));
            if let Some(old) = st.pending.get(&msg.seq).copied() {
                st.timers.remove(&(old.deadline, msg.seq));
            }
            st.due.remove(&msg.seq);
            st.pending.insert(
                msg.seq,
                Pend {
                    cseq,
                    dc,
                    deadline,
                    delivered: now,
                },
            );
            st.timers.insert((deadline, msg.seq));
        }
        st.dirty = true;
        if cfg.is_push() {
            st.last_push = now;
            if cfg.flow_control {
                st.fc_bytes += size;
            }
            if cfg.rate_limit_bps > 0 {
                // A token bucket in bytes, as nats-server's: it refills at the
                // rate and holds at most one maximum-size message (the burst).
                let rate = cfg.rate_limit_bps as f64 / 8.0;
                let burst = self.burst_bytes(shard) as f64;
                if st.tokens_at == 0 {
                    st.tokens = burst;
                } else {
                    let refill = (now - st.tokens_at).max(0) as f64 * rate / 1e9;
                    st.tokens = (st.tokens + refill).min(burst);
                }
                st.tokens_at = now;
                st.tokens -= size as f64;
                if st.tokens < 0.0 {
                    let wait = (-st.tokens / rate * 1e9).min(i64::MAX as f64 / 2.0) as i64;
                    st.hold_until = now.saturating_add(wait);
                }
            }
        } else {
            let front = st.waiting.front_mut().expect("target request");
            front.batch -= 1;
            if let Some(left) = front.max_bytes.as_mut() {
                *left -= size;
            }
            front.next_hb = now.saturating_add(front.hb);
            front.got += 1;
            if front.batch == 0 {
                st.waiting.pop_front();
            }
        }
        let fc_due = cfg.is_push()
            && cfg.flow_control
            && st.fc_pending.is_none()
            && st.fc_bytes * 2 >= st.fc_window;
        let retention_now = cfg.ack() == AckPolicy::None
            && !redelivery
            && self.stream.cfg.borrow().retention() != Retention::Limits;
        let seq = msg.seq;
        drop(st);
        shard.deliver_to_memo(target, &p, &self.memo);
        if fc_due {
            let token = random_token(shard, 4);
            let fc = Bytes::from(format!("$JS.FC.{}.{}.{token}", self.stream.name, self.name));
            let covered = self.st.borrow().fc_bytes;
            self.st.borrow_mut().fc_pending = Some((fc.clone(), covered));
            let h = status("100 FlowControl Request", &[]);
            let p = PubOp {
                subject: target.clone(),
                reply: Some(fc),
                hdr_len: Some(h.len()),
                msg: Bytes::from(h),
            };
            shard.deliver_to(target, &p);
        }
        if retention_now {
            retain_check(&self.stream, &[seq]);
        }
        true
    }

    /// Pull requests past their expiry get 408; heartbeats for the waiting.
    fn expire_requests(&self, shard: &Shard, now: i64, next: &mut i64) {
        let cfg = self.cfg.borrow().clone();
        let mut out: Vec<(Bytes, Vec<u8>)> = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            if !st.waiting.is_empty() && now - st.last_interest_check >= INTEREST_CHECK_NS {
                // A requester that went away (its inbox has no subscriber)
                // waits no longer, as in nats-server.
                st.last_interest_check = now;
                st.waiting.retain(|r| shard.has_interest(&r.reply));
            }
            let (last_c, last_s) = (st.dseq, st.sseq);
            st.waiting.retain_mut(|r| {
                if r.expires != 0 && r.expires <= now {
                    if r.batch > 0 {
                        out.push((
                            r.reply.clone(),
                            status(
                                "408 Request Timeout",
                                &[
                                    ("Nats-Pending-Messages", r.batch.to_string()),
                                    ("Nats-Pending-Bytes", r.max_bytes.unwrap_or(0).to_string()),
                                ],
                            ),
                        ));
                    }
                    return false;
                }
                if r.hb > 0 && r.next_hb <= now {
                    out.push((
                        r.reply.clone(),
                        status(
                            "100 Idle Heartbeat",
                            &[
                                ("Nats-Last-Consumer", last_c.to_string()),
                                ("Nats-Last-Stream", last_s.to_string()),
                            ],
                        ),
                    ));
                    r.next_hb = now.saturating_add(r.hb);
                }
                true
            });
            if cfg.is_push() && cfg.idle_heartbeat > 0 {
                let base = st.last_push.max(self.created);
                if base.saturating_add(cfg.idle_heartbeat) <= now {
                    let mut extra = vec![
                        ("Nats-Last-Consumer", last_c.to_string()),
                        ("Nats-Last-Stream", last_s.to_string()),
                    ];
                    if let Some((fc, _)) = &st.fc_pending {
                        extra.push((
                            "Nats-Consumer-Stalled",
                            String::from_utf8_lossy(fc).into_owned(),
                        ));
                    }
                    out.push((
                        Bytes::from(cfg.deliver_subject.clone()),
                        status("100 Idle Heartbeat", &extra),
                    ));
                    st.last_push = now;
                    *next = (*next).min(now.saturating_add(cfg.idle_heartbeat));
                }
            }
        }
        for (to, h) in out {
            shard.reply(&to, Some(&h), b"");
        }
    }

    /// Moves pending messages whose deadline passed to the due set.
    fn fire_timers(&self, now: i64, next: &mut i64) {
        let mut st = self.st.borrow_mut();
        while let Some(&(d, sseq)) = st.timers.first() {
            if d > now {
                *next = (*next).min(d);
                break;
            }
            st.timers.pop_first();
            if st.pending.contains_key(&sseq) {
                st.due.insert(sseq);
            }
        }
    }

    /// Answers `404 No Messages` to no_wait requests the last pass could not fill.
    fn finish_no_wait(&self, shard: &Shard) {
        let mut done = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            st.waiting.retain_mut(|r| {
                if !r.fresh {
                    return true;
                }
                r.fresh = false;
                // A partly served no_wait request ends now; an unserved one
                // with an expiry waits for it, as nats-server does.
                if r.expires != 0 && r.got == 0 {
                    return true;
                }
                done.push(r.reply.clone());
                false
            });
        }
        for reply in done {
            shard.reply(&reply, Some(&status("404 No Messages", &[])), b"");
        }
    }

    /// Saves the state of a durable consumer. Two slots, `state.0` and
    /// `state.1`, are written in turn in place (fdatasync, no rename), each
    /// with a generation and a checksum: a torn write spoils only the slot
    /// being written, and start-up takes the newest valid one. The directory
    /// is synced once per slot, when the slot's file is first created.
    /// False if it could not be saved.
    pub async fn save(&self) -> bool {
        let Some(dir) = &self.dir else { return true };
        if self.closed.get() && self.stream.consumers.borrow().get(&self.name).is_none() {
            return true; // deleted: its directory is gone or reused
        }
        let saved = {
            let mut st = self.st.borrow_mut();
            st.dirty = false;
            st.last_save = now_nanos();
            Saved {
                sseq: st.sseq,
                dseq: st.dseq,
                ack_s: st.ack_s,
                ack_c: st.ack_c,
                cursor: st.cursor,
                lps: st.lps.iter().copied().collect(),
                pending: st.pending.iter().map(|(s, p)| (*s, p.cseq, p.dc)).collect(),
                exhausted: st.exhausted.iter().copied().collect(),
                last_delivered: st.last_delivered,
                last_ack: st.last_ack,
            }
        };
        let gen = self.save_gen.get() + 1;
        let bytes = encode_state(gen, &saved);
        let slot = (gen % 2) as usize;
        let path = dir.join(STATE_SLOTS[slot]);
        let fresh = !self.slot_synced.get()[slot];
        let result = async {
            let f = glommio::io::BufferedFile::create(&path).await?;
            f.write_at(bytes, 0).await?;
            f.fdatasync().await?;
            f.close().await?;
            if fresh {
                crate::js::store::segment::sync_dir_async(dir).await?;
            }
            Ok::<(), glommio::GlommioError<()>>(())
        }
        .await;
        let ok = result.is_ok();
        match result {
            Ok(()) => {
                self.save_gen.set(gen);
                let mut synced = self.slot_synced.get();
                synced[slot] = true;
                self.slot_synced.set(synced);
            }
            Err(e) => {
                crate::error!(
                    "JetStream: saving consumer '{} > {}' state: {e}",
                    self.stream.name,
                    self.name
                );
                self.st.borrow_mut().dirty = true;
            }
        }
        ok
    }
}

/// The two state slots of a durable consumer.
const STATE_SLOTS: [&str; 2] = ["state.0", "state.1"];

/// A state slot: generation (8 bytes LE), JSON length (4), crc32c of the JSON
/// (4), the JSON.
fn encode_state(gen: u64, saved: &Saved) -> Vec<u8> {
    let json = serde_json::to_vec(saved).expect("state serializes");
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(&gen.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A slot's generation and state, if it is whole.
fn decode_state(raw: &[u8]) -> Option<(u64, Saved)> {
    let gen = u64::from_le_bytes(raw.get(0..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(raw.get(8..12)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(raw.get(12..16)?.try_into().ok()?);
    let json = raw.get(16..16 + len)?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    Some((gen, serde_json::from_slice(json).ok()?))
}

/// The newest whole state of a durable consumer's directory.
fn load_state(dir: &std::path::Path) -> Option<(u64, Saved)> {
    STATE_SLOTS
        .iter()
        .filter_map(|name| std::fs::read(dir.join(name)).ok())
        .filter_map(|raw| decode_state(&raw))
        .max_by_key(|(gen, _)| *gen)
}

/// Appends `n` in decimal.
/// The header block of a headers-only delivery: stored headers plus
/// `Nats-Msg-Size`.
fn headers_only(hdr: &[u8], size: usize) -> Vec<u8> {
    let mut out = if hdr.len() >= 4 && hdr.ends_with(b"\r\n\r\n") {
        hdr[..hdr.len() - 2].to_vec()
    } else {
        b"NATS/1.0\r\n".to_vec()
    };
    out.extend_from_slice(format!("Nats-Msg-Size: {size}\r\n\r\n").as_bytes());
    out
}

/// `-NAK` delay: `{"delay":<ns>}` or a Go duration ("5s"); 0 = now.
fn parse_nak_delay(arg: &str) -> i64 {
    if arg.is_empty() {
        return 0;
    }
    if arg.starts_with('{') {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct D {
            delay: i64,
        }
        return json::decode_as::<D>(arg.as_bytes()).map_or(0, |d| d.delay.max(0));
    }
    // A Go duration; a bare number has no unit, so Go (and nats-server)
    // refuse it, where the command line's parser reads seconds.
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    crate::config::parse_duration(arg).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// Recomputes the ack floor after pending messages settled; `lowest` says
/// whether the oldest pending message was among them (only that moves the
/// floor while others remain, as in nats-server).
/// Moves the ack floor. Given-up messages below it are forgotten, except on
/// interest and workqueue streams (`keep_given_up`): there nats-server keeps
/// them in the stream, for dead-letter handling, while the consumer exists.
fn update_floor(st: &mut State, lowest: bool, keep_given_up: bool) {
    match st.pending.first_key_value() {
        None => {
            st.ack_s = st.sseq;
            st.ack_c = st.dseq;
        }
        Some(_) if !lowest => {}
        Some((s, p)) => {
            let (fs, fc) = (s - 1, p.cseq.saturating_sub(1));
            if fs > st.ack_s {
                st.ack_s = fs;
            }
            if fc > st.ack_c {
                st.ack_c = fc;
            }
        }
    }
    // Given-up messages below the floor no longer count as redelivered.
    if keep_given_up {
        return;
    }
    let floor = st.ack_s;
    while st.exhausted.first().is_some_and(|s| *s <= floor) {
        st.exhausted.pop_first();
    }
}

/// Interest and workqueue retention: removes `seqs` that no consumer needs.
pub fn retain_check(stream: &Stream, seqs: &[u64]) {
    let retention = stream.cfg.borrow().retention();
    if retention == Retention::Limits {
        return;
    }
    let mut any = false;
    for &seq in seqs {
        let subject = match stream.ix.borrow().subject_at(seq) {
            Some(s) => s.clone(),
            None => continue,
        };
        let needed = stream
            .consumers
            .borrow()
            .values()
            .any(|c| c.needs(seq, &subject));
        let interested = stream
            .consumers
            .borrow()
            .values()
            .any(|c| matches_any(&c.filters.borrow(), &subject));
        // A workqueue keeps what no consumer has taken yet.
        if !needed && (interested || retention == Retention::Interest) {
            any |= stream.remove_and_record(seq);
        }
    }
    if any {
        stream.wake_consumers();
    }
}

/// After a commit: wake consumers; interest streams drop new messages that no
/// consumer is interested in, and both interest and workqueue streams drop
/// messages every consumer already took from the preview.
pub fn after_commit(stream: &Stream) {
    let has_consumers = !stream.consumers.borrow().is_empty();
    if has_consumers {
        stream.wake_consumers();
    }
    let last = stream.ix.borrow().last_seq();
    let from = stream.interest_checked.get() + 1;
    stream.interest_checked.set(last);
    // Workqueue streams check too: a previewed message may have been acked
    // (or taken by an ack-none consumer) before its commit.
    let retention = stream.cfg.borrow().retention();
    if retention == Retention::Limits
        || (retention == Retention::WorkQueue && !has_consumers)
        || from > last
    {
        return;
    }
    let first = stream.ix.borrow().first_seq();
    let seqs: Vec<u64> = (from.max(first)..=last).collect();
    retain_check(stream, &seqs);
}

/// After a failed write: consumers forget what they delivered past the last
/// committed message (its sequences will be given to new messages).
pub fn rewind_all(stream: &Stream) {
    for c in stream.consumers.borrow().values() {
        c.clamp(&mut c.st.borrow_mut());
        c.wake.notify();
    }
}

/// After consumer `gone` of an interest stream was removed: the messages only
/// it still needed go. Only those at or after its lowest needed sequence can
/// be such, and they are checked a chunk at a time, so a consumer that was far
/// behind on a big stream does not stall the shard. (A workqueue keeps what a
/// removed consumer did not ack: nothing to do there.)
pub async fn retain_after_removal(stream: &Stream, gone: &Consumer) {
    if stream.cfg.borrow().retention() != Retention::Interest {
        return;
    }
    let mut from = {
        let st = gone.st.borrow();
        let mut low = st.cursor;
        if let Some((q, _)) = st.pending.first_key_value() {
            low = low.min(*q);
        }
        if let Some(q) = st.lps.iter().min() {
            low = low.min(*q);
        }
        if let Some(q) = st.exhausted.first() {
            low = low.min(*q);
        }
        low
    };
    const CHUNK: u64 = 4096;
    // Messages committed from now on are checked by `after_commit`.
    let end = stream.ix.borrow().last_seq();
    loop {
        let (first, last) = {
            let ix = stream.ix.borrow();
            (ix.first_seq(), ix.last_seq().min(end))
        };
        from = from.max(first);
        if from > last || stream.closed.get() {
            return;
        }
        let to = last.min(from + CHUNK - 1);
        let seqs: Vec<u64> = (from..=to).collect();
        retain_check(stream, &seqs);
        from = to + 1;
        glommio::yield_if_needed().await;
    }
}

/// Sweeps a whole interest/workqueue stream (start-up: acks whose removals
/// did not reach the disk before a crash).
pub fn retain_sweep(stream: &Stream) {
    if stream.cfg.borrow().retention() == Retention::Limits {
        return;
    }
    let (first, last) = {
        let ix = stream.ix.borrow();
        (ix.first_seq(), ix.last_seq())
    };
    let seqs: Vec<u64> = (first..=last).collect();
    retain_check(stream, &seqs);
}

/// Loads the durable consumers of an owned stream (start-up).
pub fn recover(stream: &Rc<Stream>) -> Vec<Rc<Consumer>> {
    let dir = consumers_dir(stream);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(raw) = std::fs::read(path.join("meta.json")) else {
            continue;
        };
        let meta: Meta = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => {
                crate::error!("JetStream: skipping consumer {}: {e}", path.display());
                continue;
            }
        };
        let name = meta.config.name.clone();
        let state_dir = (!meta.config.mem_storage && stream.is_file()).then(|| path.clone());
        let c = Consumer::new(stream, name, meta.config, meta.created, state_dir);
        match load_state(&path) {
            Some((gen, saved)) => {
                c.save_gen.set(gen);
                // A slot file that exists was created (and its entry synced) before.
                c.slot_synced.set([
                    path.join(STATE_SLOTS[0]).exists(),
                    path.join(STATE_SLOTS[1]).exists(),
                ]);
                c.restore(saved);
            }
            None if STATE_SLOTS.iter().any(|n| path.join(n).exists()) => crate::error!(
                "JetStream: consumer {}: no whole state slot; starting from its deliver policy",
                path.display()
            ),
            None => {}
        }
        out.push(Rc::new(c));
    }
    out
}

/// Writes a durable consumer's `meta.json` atomically.
pub fn write_meta(dir: &std::path::Path, meta: &Meta) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("meta.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).expect("meta serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    crate::js::store::segment::sync_dir(dir)
}

// Unit tests only: each unwrap() here is an assertion on a fixed input,
// never reached by a client's data.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_slots_reject_torn_writes() {
        let saved = Saved {
            sseq: 7,
            pending: vec![(5, 6, 2)],
            ..Default::default()
        };
        let raw = encode_state(3, &saved);
        let (gen, back) = decode_state(&raw).unwrap();
        assert_eq!((gen, back.sseq, back.pending), (3, 7, vec![(5, 6, 2)]));
        for cut in [0, 10, 16, raw.len() - 1] {
            assert!(decode_state(&raw[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = raw.clone();
        flipped[20] ^= 1;
        assert!(decode_state(&flipped).is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_SLOTS[1]), encode_state(5, &saved)).unwrap();
        let mut torn = encode_state(6, &saved);
        torn.truncate(torn.len() - 3);
        std::fs::write(dir.path().join(STATE_SLOTS[0]), torn).unwrap();
        assert_eq!(load_state(dir.path()).unwrap().0, 5);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(2_000_000_000), "2s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(parse_nak_delay("1m30s"), 90_000_000_000);
        assert_eq!(parse_nak_delay("250ms"), 250_000_000);
        assert_eq!(parse_nak_delay("x"), 0);
    }

    #[test]
    fn nak_delays() {
        assert_eq!(parse_nak_delay(""), 0);
        assert_eq!(parse_nak_delay(r#"{"delay":5000}"#), 5000);
        assert_eq!(parse_nak_delay("2s"), 2_000_000_000);
        assert_eq!(parse_nak_delay("{bad"), 0);
    }

    #[test]
    fn headers_only_block() {
        assert_eq!(
            headers_only(b"", 3),
            b"NATS/1.0\r\nNats-Msg-Size: 3\r\n\r\n".to_vec()
        );
        assert_eq!(
            headers_only(b"NATS/1.0\r\nX-Foo: bar\r\n\r\n", 4),
            b"NATS/1.0\r\nX-Foo: bar\r\nNats-Msg-Size: 4\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn ack_floor_follows_the_oldest_pending() {
        let mut st = State {
            sseq: 5,
            dseq: 5,
            ..Default::default()
        };
        for s in 1..=5 {
            st.pending.insert(
                s,
                Pend {
                    cseq: s,
                    dc: 1,
                    deadline: 0,
                    delivered: 0,
                },
            );
        }
        st.pending.remove(&1);
        update_floor(&mut st, true, false);
        assert_eq!((st.ack_s, st.ack_c), (1, 1));
        st.pending.remove(&3);
        update_floor(&mut st, false, false);
        assert_eq!((st.ack_s, st.ack_c), (1, 1));
        st.pending.remove(&2);
        update_floor(&mut st, true, false);
        assert_eq!((st.ack_s, st.ack_c), (3, 3));
        st.pending.clear();
        update_floor(&mut st, false, false);
        assert_eq!((st.ack_s, st.ack_c), (5, 5));
    }
}
