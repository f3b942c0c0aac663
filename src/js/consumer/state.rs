//! A consumer's delivery state as a pure state machine: what was delivered,
//! what waits for an ack and when it is redelivered, the ack floor, messages
//! given up after max_deliver, and the count of messages still to deliver.
//! Methods take an event and return what happened; they never publish, touch
//! a stream's `RefCell`s or the clock (the shell in `consumer` does that).
//!
//! Invariants, asserted by `check` after every change:
//! - every pending message is in exactly one of `timers` (waiting for its
//!   redelivery deadline) or `due` (to be redelivered now);
//! - the ack floor is not above what was delivered, in both sequences;
//! - given-up messages are not pending.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::js::consumer::pull::PullReq;
use crate::js::store::index::Index;
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, Nanos, StreamSeq};
use crate::limits::{FC_WINDOW_START, LOST_RANGES_MAX};

/// A delivered message waiting for its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pend {
    /// The consumer sequence of its latest delivery.
    pub cseq: ConsumerSeq,
    /// Deliveries so far.
    pub dc: DeliveryCount,
    /// Redelivery deadline; `Nanos(0)` while it is due now.
    pub deadline: Nanos,
    /// When it was last delivered.
    pub delivered: Nanos,
}

#[derive(Default)]
pub struct State {
    /// `delivered` in consumer info: the last new message delivered.
    pub delivered_stream: StreamSeq,
    pub delivered_consumer: ConsumerSeq,
    /// `ack_floor` in consumer info: everything up to here is acknowledged.
    pub floor_stream: StreamSeq,
    pub floor_consumer: ConsumerSeq,
    /// Next stream sequence to look at for new messages.
    pub cursor: StreamSeq,
    /// Initial last-per-subject deliveries not yet made.
    pub lps: VecDeque<StreamSeq>,
    pub pending: BTreeMap<StreamSeq, Pend>,
    /// (deadline, sequence) of every pending message that is not due.
    pub timers: BTreeSet<(Nanos, StreamSeq)>,
    /// Pending messages due for redelivery now.
    pub due: BTreeSet<StreamSeq>,
    /// Messages that reached max_deliver and were given up.
    pub exhausted: BTreeSet<StreamSeq>,
    /// Set by a clamp: deliveries up to this consumer sequence of stream
    /// sequences past this one were of messages that are gone (the last
    /// `LOST_RANGES_MAX` clamps; older ones are forgotten).
    pub lost: VecDeque<(StreamSeq, ConsumerSeq)>,
    /// Matching messages at or after the cursor (plus `lps`), counted up to
    /// `np_upto`, as of `np_gen` removals from the stream.
    pub np: u64,
    pub np_upto: StreamSeq,
    pub np_gen: u64,
    /// Open pull requests, oldest first (bounded by `max_waiting`).
    pub waiting: VecDeque<PullReq>,
    pub last_delivered: Nanos,
    pub last_ack: Nanos,
    /// Last time anyone showed interest (pull request, ack, bound push).
    pub last_activity: Nanos,
    /// Push: last time anything went to the deliver subject.
    pub last_push: Nanos,
    /// Push flow control: bytes since the last answered request, the window,
    /// and the outstanding request (its subject, the bytes it covers).
    pub fc_bytes: u64,
    pub fc_window: u64,
    pub fc_pending: Option<(Bytes, u64)>,
    /// Not before this time: rate limit or replay_policy original.
    pub hold_until: Nanos,
    /// Timestamp of the last new message delivered (replay original).
    pub last_msg_ts: Nanos,
    /// Changed since the last save (durables).
    pub dirty: bool,
    pub last_save: Nanos,
    /// Reply subjects of acks to confirm once the state holding them is saved.
    pub ack_replies: Vec<Bytes>,
    /// Push: a subscriber is there.
    pub bound: bool,
    /// Rate limit: bytes that may go now, as of `tokens_at` (0 = not started).
    pub tokens: f64,
    pub tokens_at: Nanos,
    pub last_interest_check: Nanos,
    /// The client a `pinned_client` consumer serves (in memory only, as on
    /// nats-server).
    pub pin: Option<crate::js::consumer::priority::Pin>,
}

/// What `State::take_due` found.
pub enum Next {
    /// Redeliver this one.
    Redeliver(StreamSeq),
    /// Nothing due.
    None,
}

impl State {
    pub fn new(now: Nanos) -> State {
        State {
            fc_window: FC_WINDOW_START,
            last_activity: now,
            ..State::default()
        }
    }

    /// Asserts the invariants in the module doc. O(1).
    pub fn check(&self) {
        assert_eq!(
            self.pending.len(),
            self.timers.len() + self.due.len(),
            "every pending message has a timer or is due"
        );
        assert!(
            self.floor_stream <= self.delivered_stream,
            "ack floor above delivered"
        );
        assert!(
            self.floor_consumer <= self.delivered_consumer,
            "ack floor above delivered (consumer sequence)"
        );
    }

    /// Drops `sseq` from pending (acked, terminated, gone); false if it was not.
    pub fn settle(&mut self, sseq: StreamSeq) -> bool {
        match self.pending.remove(&sseq) {
            Some(p) => {
                self.timers.remove(&(p.deadline, sseq));
                self.due.remove(&sseq);
                true
            }
            None => false,
        }
    }

    /// (Re)sets `sseq`'s redelivery deadline; `None` makes it due now.
    pub fn reschedule(&mut self, sseq: StreamSeq, deadline: Option<Nanos>) {
        let Some(p) = self.pending.get_mut(&sseq) else {
            return;
        };
        self.timers.remove(&(p.deadline, sseq));
        self.due.remove(&sseq);
        match deadline {
            Some(d) => {
                p.deadline = d;
                self.timers.insert((d, sseq));
            }
            None => {
                p.deadline = Nanos(0);
                self.due.insert(sseq);
            }
        }
    }

    /// Moves pending messages whose deadline passed to `due`; returns the
    /// next deadline still ahead.
    pub fn fire_timers(&mut self, now: Nanos) -> Option<Nanos> {
        while let Some(&(d, sseq)) = self.timers.first() {
            if d > now {
                return Some(d);
            }
            self.timers.pop_first();
            let p = self
                .pending
                .get_mut(&sseq)
                .expect("a timer belongs to a pending message");
            p.deadline = Nanos(0);
            self.due.insert(sseq);
        }
        None
    }

    /// Whether the oldest pending message is settled by an ack of `sseq`
    /// (only that moves the floor while others remain, as in nats-server).
    pub fn settles_lowest(&self, sseq: StreamSeq, ack_all: bool) -> bool {
        self.pending.first_key_value().is_some_and(
            |(l, _)| {
                if ack_all {
                    *l <= sseq
                } else {
                    *l == sseq
                }
            },
        )
    }

    /// Moves the ack floor after pending messages settled; `lowest` says
    /// whether the oldest pending message was among them. Given-up messages
    /// below it are forgotten, except where they keep their message in an
    /// interest or workqueue stream (`keep_given_up`): nats-server keeps them
    /// there, for dead-letter handling, while the consumer exists.
    pub fn update_floor(&mut self, lowest: bool, keep_given_up: bool) {
        match self.pending.first_key_value() {
            None => {
                self.floor_stream = self.delivered_stream;
                self.floor_consumer = self.delivered_consumer;
            }
            Some(_) if !lowest => {}
            Some((s, p)) => {
                self.floor_stream = self.floor_stream.max(s.prev());
                self.floor_consumer = self.floor_consumer.max(p.cseq.prev());
            }
        }
        if keep_given_up {
            return;
        }
        let floor = self.floor_stream;
        while self.exhausted.first().is_some_and(|s| *s <= floor) {
            self.exhausted.pop_first();
        }
    }

    /// The next due redelivery, giving up (into `exhausted`) those that
    /// reached `max_deliver` (0 = unlimited); each given up is pushed to
    /// `gave_up` with its delivery count.
    pub fn take_due(
        &mut self,
        max_deliver: i64,
        gave_up: &mut Vec<(StreamSeq, DeliveryCount)>,
    ) -> Next {
        while let Some(&sseq) = self.due.first() {
            let dc = self
                .pending
                .get(&sseq)
                .expect("a due message is pending")
                .dc;
            if max_deliver > 0 && dc.0 >= max_deliver as u64 {
                self.settle(sseq);
                self.exhausted.insert(sseq);
                self.dirty = true;
                gave_up.push((sseq, dc));
                continue;
            }
            return Next::Redeliver(sseq);
        }
        Next::None
    }

    /// Marks new message `sseq` as passed over (delivered or skipped).
    pub fn advance_past(&mut self, sseq: StreamSeq) {
        if self.lps.front() == Some(&sseq) {
            self.lps.pop_front();
        } else {
            self.cursor = self.cursor.max(sseq.next());
            if sseq > self.np_upto {
                // A previewed message: never counted, and not counted at
                // its commit either (it is below the cursor by then).
                return;
            }
        }
        self.np = self.np.saturating_sub(1);
    }

    /// The delivery of `sseq` (new, or a redelivery) as consumer sequence
    /// `cseq`, its `dc`th; with acks, it waits for one until `deadline`.
    pub fn record_delivery(&mut self, d: Delivery) {
        assert_eq!(
            d.cseq,
            self.delivered_consumer.next(),
            "consumer sequences are consecutive"
        );
        self.delivered_consumer = d.cseq;
        self.last_delivered = d.now;
        if !d.redelivery {
            assert!(
                d.sseq > self.delivered_stream,
                "new deliveries move forward"
            );
            self.delivered_stream = d.sseq;
            self.last_msg_ts = d.ts;
            self.advance_past(d.sseq);
        }
        match d.deadline {
            None => {
                // Ack none: delivered is acknowledged.
                if !d.redelivery && self.pending.is_empty() {
                    self.floor_stream = self.delivered_stream;
                    self.floor_consumer = self.delivered_consumer;
                }
            }
            Some(deadline) => {
                self.settle(d.sseq);
                self.pending.insert(
                    d.sseq,
                    Pend {
                        cseq: d.cseq,
                        dc: d.dc,
                        deadline,
                        delivered: d.now,
                    },
                );
                self.timers.insert((deadline, d.sseq));
            }
        }
        self.dirty = true;
    }

    /// Counts given up and redelivered messages for consumer info: pending
    /// ones delivered more than once, and given-up ones above the ack floor.
    pub fn redelivered(&self) -> u64 {
        self.pending.values().filter(|p| p.dc.0 > 1).count() as u64
            + self.exhausted.range(self.floor_stream.next()..).count() as u64
    }

    /// Whether this consumer still needs message `sseq` (its subject matches
    /// the consumer's filters): not yet delivered, waiting for an ack, or
    /// given up (kept for dead-letter handling while the consumer exists).
    pub fn needs(&self, sseq: StreamSeq) -> bool {
        self.lps.contains(&sseq)
            || sseq >= self.cursor
            || self.pending.contains_key(&sseq)
            || self.exhausted.contains(&sseq)
    }

    /// The lowest sequence this consumer may still need.
    pub fn lowest_needed(&self) -> StreamSeq {
        let mut low = self.cursor;
        if let Some((q, _)) = self.pending.first_key_value() {
            low = low.min(*q);
        }
        if let Some(q) = self.lps.iter().min() {
            low = low.min(*q);
        }
        if let Some(q) = self.exhausted.first() {
            low = low.min(*q);
        }
        low
    }

    /// Whether an ack of (`sseq`, `cseq`) is of a delivery that a failed
    /// write or a crash lost (its sequence went to a new message since).
    pub fn is_lost(&self, sseq: StreamSeq, cseq: ConsumerSeq) -> bool {
        self.lost.iter().any(|&(s, c)| sseq > s && cseq <= c)
    }

    /// Takes back every position past `end` (the stream's last committed
    /// message, or a configured start before it): deliveries of messages that
    /// are gone. Remembers the lost range for late acks. The pending count is
    /// recounted by the caller.
    pub fn clamp(&mut self, end: StreamSeq) {
        if self.cursor > end.next() || self.delivered_stream > end {
            if self.lost.len() >= LOST_RANGES_MAX {
                self.lost.pop_front();
            }
            self.lost.push_back((end, self.delivered_consumer));
        }
        self.cursor = self.cursor.min(end.next());
        self.delivered_stream = self.delivered_stream.min(end);
        self.floor_stream = self.floor_stream.min(end);
        let gone: Vec<StreamSeq> = self.pending.range(end.next()..).map(|(s, _)| *s).collect();
        for q in gone {
            self.settle(q);
        }
        self.exhausted.retain(|q| *q <= end);
        self.dirty = true;
    }

    /// Recounts the messages still to deliver from the index.
    pub fn recount(&mut self, ix: &Index, filters: &[Bytes]) {
        self.np = ix.count_filtered(self.cursor.0, filters) + self.lps.len() as u64;
        self.np_upto = StreamSeq(ix.last_seq());
        self.np_gen = ix.removals;
    }

    /// Brings the pending count up to date with the stream (new messages and
    /// removals), and settles pending messages the stream no longer has.
    pub fn sync_pending(&mut self, ix: &Index, filters: &[Bytes]) {
        // Nothing committed or removed since the last call (once per delivery).
        let first = StreamSeq(ix.first_seq());
        if ix.removals == self.np_gen
            && StreamSeq(ix.last_seq()) <= self.np_upto
            && self
                .pending
                .first_key_value()
                .is_none_or(|(q, _)| *q >= first)
        {
            return;
        }
        let behind = ix.removals - self.np_gen;
        if behind > ix.recent_removed.len() as u64 {
            // Fell behind the removal log: recount, and settle what is gone.
            self.recount(ix, filters);
            let gone: Vec<StreamSeq> = self
                .pending
                .keys()
                .copied()
                .filter(|q| q.0 <= ix.last_seq() && !ix.is_live(q.0))
                .collect();
            for q in gone {
                self.settle(q);
            }
            self.exhausted.retain(|q| ix.is_live(q.0));
            return;
        }
        // Delivered from the preview, then purged before their commit: never
        // in the removal log.
        while let Some(q) = self
            .pending
            .first_key_value()
            .map(|(q, _)| *q)
            .filter(|q| *q < first)
        {
            self.settle(q);
        }
        for (seq, subject) in ix.recent_removed.iter().rev().take(behind as usize) {
            let seq = StreamSeq(*seq);
            if seq >= self.cursor && seq <= self.np_upto && matches_any(filters, subject) {
                self.np = self.np.saturating_sub(1);
            }
            self.exhausted.remove(&seq);
            self.settle(seq);
        }
        self.np_gen = ix.removals;
        let last = ix.last_seq();
        let mut seq = (self.np_upto.0 + 1).max(self.cursor.0).max(ix.first_seq());
        while seq <= last {
            if ix.subject_at(seq).is_some_and(|s| matches_any(filters, s)) {
                self.np += 1;
            }
            seq += 1;
        }
        self.np_upto = self.np_upto.max(StreamSeq(last));
    }
}

/// One delivery, for `State::record_delivery`.
pub struct Delivery {
    pub sseq: StreamSeq,
    pub cseq: ConsumerSeq,
    pub dc: DeliveryCount,
    pub redelivery: bool,
    /// The message's stored timestamp.
    pub ts: Nanos,
    pub now: Nanos,
    /// Redelivery deadline when the consumer acks; None for ack none.
    pub deadline: Option<Nanos>,
}

/// Whether `subject` passes a consumer's filters (all pass when there are none).
pub fn matches_any(filters: &[Bytes], subject: &[u8]) -> bool {
    filters.is_empty() || filters.iter().any(|f| crate::subject::matches(f, subject))
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn pend(st: &mut State, s: u64, now: i64) {
        st.record_delivery(Delivery {
            sseq: StreamSeq(s),
            cseq: st.delivered_consumer.next(),
            dc: DeliveryCount::FIRST,
            redelivery: false,
            ts: Nanos(0),
            now: Nanos(now),
            deadline: Some(Nanos(now + 100)),
        });
        st.check();
    }

    #[test]
    fn ack_floor_follows_the_oldest_pending() {
        let mut st = State::new(Nanos(0));
        st.cursor = StreamSeq(1);
        for s in 1..=5 {
            pend(&mut st, s, 0);
        }
        assert_eq!(st.delivered_stream, StreamSeq(5));
        let lowest = st.settles_lowest(StreamSeq(1), false);
        st.settle(StreamSeq(1));
        st.update_floor(lowest, false);
        assert_eq!(
            (st.floor_stream, st.floor_consumer),
            (StreamSeq(1), ConsumerSeq(1))
        );
        let lowest = st.settles_lowest(StreamSeq(3), false);
        st.settle(StreamSeq(3));
        st.update_floor(lowest, false);
        assert_eq!(st.floor_stream, StreamSeq(1));
        st.settle(StreamSeq(2));
        st.update_floor(true, false);
        assert_eq!(
            (st.floor_stream, st.floor_consumer),
            (StreamSeq(3), ConsumerSeq(3))
        );
        st.settle(StreamSeq(4));
        st.settle(StreamSeq(5));
        st.update_floor(false, false);
        assert_eq!(
            (st.floor_stream, st.floor_consumer),
            (StreamSeq(5), ConsumerSeq(5))
        );
        st.check();
    }

    #[test]
    fn timers_fire_into_due_and_redeliveries_give_up_at_max_deliver() {
        let mut st = State::new(Nanos(0));
        st.cursor = StreamSeq(1);
        pend(&mut st, 1, 0);
        pend(&mut st, 2, 50);
        assert_eq!(st.fire_timers(Nanos(120)), Some(Nanos(150)));
        assert_eq!(
            st.due.iter().copied().collect::<Vec<_>>(),
            vec![StreamSeq(1)]
        );
        st.check();
        let mut gave_up = Vec::new();
        assert!(matches!(st.take_due(1, &mut gave_up), Next::None));
        assert_eq!(gave_up, vec![(StreamSeq(1), DeliveryCount(1))]);
        assert!(st.exhausted.contains(&StreamSeq(1)));
        assert!(!st.pending.contains_key(&StreamSeq(1)));
        st.reschedule(StreamSeq(2), None);
        assert!(matches!(
            st.take_due(0, &mut gave_up),
            Next::Redeliver(StreamSeq(2))
        ));
        st.check();
    }

    #[test]
    fn clamp_takes_back_lost_deliveries() {
        let mut st = State::new(Nanos(0));
        st.cursor = StreamSeq(1);
        for s in 1..=4 {
            pend(&mut st, s, 0);
        }
        st.clamp(StreamSeq(2));
        assert_eq!(st.cursor, StreamSeq(3));
        assert_eq!(st.delivered_stream, StreamSeq(2));
        assert_eq!(st.pending.len(), 2);
        assert!(st.is_lost(StreamSeq(3), ConsumerSeq(3)));
        assert!(!st.is_lost(StreamSeq(2), ConsumerSeq(2)));
        assert!(!st.is_lost(StreamSeq(3), ConsumerSeq(5)));
        st.check();
    }
}
