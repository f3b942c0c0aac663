//! Consumers: delivery state, pull requests, push delivery with flow control
//! and heartbeats, acknowledgements, redelivery, retention, durable state.
//!
//! A consumer lives on its stream's owner shard and is driven by one task
//! (`deliver::run`): every wake-up (new messages, a pull request, an ack, a
//! timer) it delivers what it can, then sleeps until the next deadline.
//! Requests and acks arrive through the stream's internal subscriptions on
//! `$JS.API.CONSUMER.MSG.NEXT.<stream>.*`, `$JS.ACK.<stream>.>` and
//! `$JS.FC.<stream>.>`, so they cross shards like any message.
//!
//! `Consumer` is the shell: the only part that touches the `RefCell`s, the
//! stream, the clock, the timers and the shard. The rules are pure and live
//! in their own files: `state` (pending, timers, floor, counts), `acks`,
//! `pull` (requests), `priority` (priority groups: which request a message
//! goes to, pins), `push` (flow control, rate limit, heartbeats). Around
//! them: `deliver` (the task and one delivery), `read` (read-ahead from
//! disk), `persist` (durable state), `retention` (interest/workqueue),
//! `advisory` (statuses and events).
//!
//! Bounds: pending acks ≤ `max_ack_pending` (delivery stops when full); open
//! pull requests ≤ `max_waiting` (the next gets 409); redelivery timers are
//! one per pending message; push delivery stops at the flow-control window
//! (≤ `FC_WINDOW_MAX`); confirmations of acks waiting for the state to be
//! saved ≤ `ACK_REPLIES_MAX` (beyond it they are confirmed at once).

pub mod acks;
pub mod advisory;
mod deliver;
pub mod persist;
pub mod priority;
pub mod pull;
pub mod push;
mod read;
pub mod retention;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use crate::js::store::index::{Index, StoredMsg};
use crate::js::store::slots::Slots;
use crate::js::stream::Stream;
use crate::js::types::consumer_config::{ConsumerConfig, DeliverPolicy};
use crate::js::types::seq::{Nanos, StreamSeq};
use crate::js::types::stream_config::Retention;
use crate::notify::{Event, Notify};
use crate::shard::Shard;

pub use advisory::{go_duration, random_token};
pub use persist::{consumers_dir, recover, write_meta, Meta};
pub use retention::{
    after_commit, retain_after_removal, retain_after_update, retain_check, retain_sweep, rewind_all,
};
use state::{matches_any, State};

pub struct Consumer {
    pub name: String,
    pub stream: Rc<Stream>,
    /// Shared so a delivery pass holds it without copying.
    pub cfg: RefCell<Rc<ConsumerConfig>>,
    pub created: i64,
    /// The config's filter subjects (none: every subject).
    filters: RefCell<Vec<Bytes>>,
    st: RefCell<State>,
    pub wake: Notify,
    pub closed: Cell<bool>,
    /// The state slots of a durable, file-backed consumer (in its directory).
    slots: Option<Slots>,
    done: Event,
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
    /// A background save is running, and the event it fires when it ends.
    saving: Cell<bool>,
    saved: Event,
    save_failed: Cell<bool>,
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

fn filters_of(cfg: &ConsumerConfig) -> Vec<Bytes> {
    cfg.filters().into_iter().map(Bytes::from).collect()
}

/// A new consumer's state: positioned by its deliver policy on `ix`
/// (`next_seq`: the sequence the stream gives next, accepted or not;
/// `one_per_subject`: the stream keeps one message per subject), where
/// nats-server starts it.
fn positioned(
    cfg: &ConsumerConfig,
    ix: &Index,
    next_seq: u64,
    filters: &[Bytes],
    one_per_subject: bool,
) -> State {
    let mut st = State::new(Nanos::now());
    let (first, last) = (ix.first_seq(), ix.last_seq());
    let start = match cfg.deliver() {
        DeliverPolicy::All => first,
        // With nothing matching, from the first message.
        DeliverPolicy::Last => ix
            .last_per_subject(filters)
            .last()
            .copied()
            .unwrap_or(first),
        // After every accepted message, committed or still in flight.
        DeliverPolicy::New => next_seq,
        DeliverPolicy::ByStartSeq => cfg.opt_start_seq,
        // The first message from then on that the filters take.
        DeliverPolicy::ByStartTime => ix
            .first_at_or_after(cfg.start_time_nanos())
            .and_then(|s| ix.next_filtered(s, filters))
            .unwrap_or(last + 1),
        // Every message is the last of its subject: as `all`.
        DeliverPolicy::LastPerSubject if one_per_subject => first,
        DeliverPolicy::LastPerSubject => {
            st.lps = ix
                .last_per_subject(filters)
                .into_iter()
                .map(StreamSeq)
                .collect();
            st.lps.front().map_or(last, |s| s.0)
        }
    };
    // Never before the first message left (purged or deleted ones).
    let start = start.max(first);
    st.cursor = StreamSeq(match cfg.deliver() {
        DeliverPolicy::LastPerSubject if !one_per_subject => last + 1,
        _ => start,
    });
    // Info reports the sequence before the start as delivered and acknowledged.
    st.delivered_stream = StreamSeq(start.saturating_sub(1));
    st.floor_stream = st.delivered_stream;
    st.recount(ix, filters);
    st
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
        let one = stream.cfg.borrow().max_msgs_per_subject == 1;
        let st = positioned(&cfg, &stream.ix.borrow(), stream.next_seq(), &filters, one);
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
            slots: dir.map(|d| Slots::new(d, persist::STATE_SLOTS)),
            done: Event::default(),
            running: Cell::new(false),
            prefetch: RefCell::new(VecDeque::new()),
            ahead: RefCell::new(None),
            saving: Cell::new(false),
            save_failed: Cell::new(false),
            saved: Event::default(),
        }
    }

    /// Takes back every position past the stream's last committed message
    /// (deliveries of previewed messages whose write failed or was lost), so
    /// the sequences given again are delivered as new; recounts the pending
    /// count. A start sequence configured past the end stays where it is.
    fn clamp(&self, st: &mut State) {
        let ix = self.stream.ix.borrow();
        let start = {
            let cfg = self.cfg.borrow();
            match cfg.deliver() {
                DeliverPolicy::ByStartSeq => cfg.opt_start_seq,
                _ => 0,
            }
        };
        st.clamp(StreamSeq(ix.last_seq().max(start.saturating_sub(1))));
        // Also drops given-up messages removed before a restart.
        st.exhausted.retain(|q| ix.is_live(q.0));
        st.recount(&ix, &self.filters.borrow());
    }

    /// Applies an updated config (immutable fields already checked).
    pub fn update(&self, cfg: ConsumerConfig) {
        let refilter = cfg.filters() != self.cfg.borrow().filters();
        *self.cfg.borrow_mut() = Rc::new(cfg);
        if refilter {
            *self.filters.borrow_mut() = filters_of(&self.cfg.borrow());
            let ix = self.stream.ix.borrow();
            self.st.borrow_mut().recount(&ix, &self.filters.borrow());
        }
        self.st.borrow_mut().dirty = true;
        self.wake.notify();
    }

    /// Brings the pending count and pending acks up to date with the stream.
    fn sync_pending(&self, st: &mut State) {
        st.sync_pending(&self.stream.ix.borrow(), &self.filters.borrow());
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut st = self.st.borrow_mut();
        self.sync_pending(&mut st);
        Snapshot {
            sseq: st.delivered_stream.0,
            dseq: st.delivered_consumer.0,
            ack_s: st.floor_stream.0,
            ack_c: st.floor_consumer.0,
            last_delivered: st.last_delivered.0,
            last_ack: st.last_ack.0,
            num_ack_pending: st.pending.len() as u64,
            num_redelivered: st.redelivered(),
            num_waiting: st.open_requests(Nanos::now()),
            num_pending: st.np,
        }
    }

    /// Whether given-up messages stay recorded below the ack floor (they keep
    /// their message in an interest or workqueue stream).
    fn keeps_given_up(&self) -> bool {
        self.stream.cfg.borrow().retention() != Retention::Limits
    }

    /// Whether `subject` passes this consumer's filters.
    pub fn wants(&self, subject: &[u8]) -> bool {
        matches_any(&self.filters.borrow(), subject)
    }

    /// Whether this consumer still needs `seq` (interest/workqueue retention).
    pub fn needs(&self, seq: u64, subject: &[u8]) -> bool {
        self.wants(subject) && self.st.borrow().needs(StreamSeq(seq))
    }

    /// A new pull request on `$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>`.
    pub fn pull_request(&self, shard: &Shard, reply: Option<&Bytes>, body: &[u8]) {
        let Some(reply) = reply.filter(|r| !r.is_empty()) else {
            return; // nats-server ignores a request nobody can receive
        };
        let cfg = self.cfg.borrow().clone();
        let now = Nanos::now();
        let pin = self.st.borrow().pin.clone();
        let added = pull::parse(&cfg, reply, body, now, pin.as_ref())
            .and_then(|req| self.st.borrow_mut().add_request(req, &cfg, now));
        match added {
            Ok(()) => self.wake.notify(),
            Err(status) => shard.reply(reply, Some(&status), b""),
        }
    }

    /// An answer to a flow-control request.
    pub fn fc_reply(&self, subject: &[u8]) {
        if self.st.borrow_mut().fc_answered(subject) {
            self.wake.notify();
        }
    }

    /// Waits for a background save in progress to end.
    pub async fn wait_saved(&self) {
        while self.saving.get() {
            self.saved.wait().await;
        }
    }

    /// Stops the task; a deleted consumer's waiting requests get `409
    /// Consumer Deleted`. Acks waiting for a save are confirmed after a last
    /// save (at once when deleted: they are moot).
    pub async fn stop(&self, shard: &Shard, deleted: bool) {
        if deleted {
            let waiting = self.st.borrow_mut().drain_requests();
            let h = advisory::status("409 Consumer Deleted", &[]);
            for r in waiting {
                shard.reply(&r, Some(&h), b"");
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
        if deleted || self.save().await {
            for r in replies {
                shard.reply(&r, None, b"");
            }
            shard.flush_mesh().await;
        }
    }
}
