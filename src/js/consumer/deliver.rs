//! The consumer's task (`run`): each pass expires requests and fires timers,
//! then delivers what it can (a due redelivery first, else the next new
//! message) to the deliver subject or the oldest pull request, and sleeps
//! until the next deadline or a wake-up. Durable state is saved beside it.

use std::rc::Rc;

use bytes::Bytes;

use crate::js::consumer::advisory::{headers_only, random_token, status};
use crate::js::consumer::push::PushRules;
use crate::js::consumer::retention::retain_check;
use crate::js::consumer::state::{matches_any, Delivery, Next};
use crate::js::consumer::Consumer;
use crate::js::store::index::StoredMsg;
use crate::js::types::consumer_config::{AckPolicy, ConsumerConfig, PriorityPolicy};
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, Nanos, StreamSeq};
use crate::js::Js;
use crate::limits::{
    ACK_ARENA_BYTES, CONSUMER_BIND_POLL_NS, CONSUMER_PASS_MAX, CONSUMER_SAVE_INTERVAL_NS,
    INTEREST_CHECK_NS,
};
use crate::protocol::headers;
use crate::protocol::parser::PubOp;
use crate::shard::Shard;

/// Longest a consumer sleeps without a deadline of its own.
const IDLE_NS: i64 = 3_600_000_000_000;

/// Where the next message goes.
enum Pick {
    /// Message `seq`, a redelivery or a new one.
    Message(StreamSeq, bool),
    /// Nothing to deliver now.
    Nothing,
}

impl Consumer {
    /// The consumer's task: deliver, then sleep until something changes.
    pub async fn run(self: Rc<Self>, js: Rc<Js>) {
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
            let now = Nanos::now();
            let inactive = self.inactive_deadline();
            if inactive.is_some_and(|d| d <= now) {
                crate::debug!(
                    "JetStream: consumer '{} > {}' inactive, removing",
                    self.stream.name,
                    self.name
                );
                let (js, me) = (js.clone(), self.clone());
                glommio::spawn_local(async move {
                    crate::js::api::consumer::remove_consumer(&js, &me.stream, &me.name).await;
                })
                .detach();
                break;
            }
            let mut deadline = next.min(inactive.unwrap_or(next));
            if let Some(later) = self.maybe_save(&shard, now) {
                deadline = deadline.min(later);
            }
            let wait = deadline.since(Nanos::now()).max(0) as u64;
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

    /// Starts a background save of a durable's changed state when it is due
    /// (every `CONSUMER_SAVE_INTERVAL_NS`, or at once when acks wait for a
    /// confirmation); returns when the next save is due otherwise. Saved
    /// beside delivery, so a slow fdatasync does not stall it.
    fn maybe_save(self: &Rc<Self>, shard: &Rc<Shard>, now: Nanos) -> Option<Nanos> {
        let (dirty, last, confirming) = {
            let st = self.st.borrow();
            (st.dirty, st.last_save, !st.ack_replies.is_empty())
        };
        // A save in progress wakes the task when it ends.
        if self.slots.is_none() || !(dirty || confirming) || self.saving.get() {
            return None;
        }
        // After a failed save, retry at the interval, not at once.
        let due =
            now.since(last) >= CONSUMER_SAVE_INTERVAL_NS || (confirming && !self.save_failed.get());
        if !due {
            return Some(last.after(CONSUMER_SAVE_INTERVAL_NS));
        }
        self.saving.set(true);
        let (me, shard) = (self.clone(), shard.clone());
        glommio::spawn_local(async move {
            // Taken with the snapshot (no await between): these acks are in
            // the state being saved, later ones not.
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
                st.last_save = Nanos::now();
            }
            me.saving.set(false);
            me.saved.notify_all();
            me.wake.notify();
        })
        .detach();
        None
    }

    /// The rate limiter's burst: the stream's max_msg_size, else the
    /// server's max_payload.
    fn burst_bytes(&self, shard: &Shard) -> u64 {
        let max = self.stream.cfg.borrow().max_msg_size;
        if max > 0 {
            max as u64
        } else {
            shard.cfg.max_payload as u64
        }
    }

    /// When the consumer becomes removable for inactivity (None: never).
    fn inactive_deadline(&self) -> Option<Nanos> {
        let cfg = self.cfg.borrow();
        if cfg.inactive_threshold <= 0 {
            return None;
        }
        let st = self.st.borrow();
        let busy = if cfg.is_push() {
            st.bound
        } else {
            !st.waiting.is_empty()
        };
        (!busy).then(|| st.last_activity.after(cfg.inactive_threshold))
    }

    /// Answers expired pull requests, sends due heartbeats, and moves due
    /// redeliveries; returns the next timer deadline.
    fn tick(&self, shard: &Shard, cfg: &ConsumerConfig, now: Nanos) -> Option<Nanos> {
        let (out, next, lapsed) = {
            let mut st = self.st.borrow_mut();
            let mut out = st.expire_requests(now, |r| shard.has_interest(r));
            if cfg.is_push() {
                let created = Nanos(self.created);
                out.extend(st.push_heartbeat(
                    cfg.idle_heartbeat,
                    created,
                    &cfg.deliver_subject,
                    now,
                ));
            }
            let next = st.fire_timers(now);
            let lapsed = st.pin_lapsed(now);
            st.check();
            (out, next, lapsed)
        };
        for (to, h) in out {
            shard.reply(&to, Some(&h), b"");
        }
        if lapsed.is_some() {
            let group = cfg.priority_groups.first().map_or("", String::as_str);
            self.advisory_unpinned(shard, group, "timeout");
        }
        next
    }

    /// One round of work; returns the next deadline it knows of.
    async fn pass(self: &Rc<Self>, shard: &Rc<Shard>) -> Nanos {
        let cfg = self.cfg.borrow().clone();
        let now = Nanos::now();
        let mut next = now.after(IDLE_NS);
        if let Some(t) = self.tick(shard, &cfg, now) {
            next = next.min(t);
        }
        let pause = Nanos(cfg.pause_until_nanos());
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
                return next.min(now.after(CONSUMER_BIND_POLL_NS));
            }
        }
        if let Some(held) = self.deliver_all(shard, &cfg, now).await {
            next = next.min(held);
        }
        if self.closed.get() {
            return next;
        }
        // no_wait requests get their answer after the first pass over them.
        if !cfg.is_push() {
            let done = self.st.borrow_mut().finish_no_wait();
            let h = status("404 No Messages", &[]);
            for reply in done {
                shard.reply(&reply, Some(&h), b"");
            }
        }
        self.deadlines(&cfg, now, next)
    }

    /// Delivers until nothing can go; returns when a hold (rate limit,
    /// replay original) ends, if one stopped it.
    async fn deliver_all(
        self: &Rc<Self>,
        shard: &Rc<Shard>,
        cfg: &ConsumerConfig,
        now: Nanos,
    ) -> Option<Nanos> {
        let mut sent = 0usize;
        // The clock is read once per few deliveries, not per message.
        let mut now = now;
        loop {
            if self.closed.get() {
                return None;
            }
            if sent % 64 == 63 {
                now = Nanos::now();
            }
            if sent >= CONSUMER_PASS_MAX {
                shard.flush_mesh().await;
                glommio::yield_if_needed().await;
                sent = 0;
                now = Nanos::now();
            }
            let hold = self.st.borrow().hold_until;
            if hold != Nanos(0) && hold > now {
                return Some(hold);
            }
            let target = self.target(shard, cfg, now)?;
            let Pick::Message(sseq, redelivery) = self.pick(shard, cfg) else {
                return None;
            };
            let Some(msg) = self.load(sseq.0).await else {
                self.gone(sseq, redelivery);
                continue;
            };
            if self.closed.get() {
                return None;
            }
            if !redelivery && cfg.replay_original() {
                if let Some(at) = self.replay_hold(&msg) {
                    self.st.borrow_mut().hold_until = at;
                    return Some(at);
                }
            }
            if !self.deliver(shard, cfg, &target, msg, redelivery, now) {
                return None;
            }
            sent += 1;
        }
    }

    /// Where the next message goes: the deliver subject (unless the
    /// flow-control window is full), or the oldest open pull request.
    fn target(&self, shard: &Shard, cfg: &ConsumerConfig, now: Nanos) -> Option<Bytes> {
        let mut st = self.st.borrow_mut();
        if cfg.is_push() {
            if st.window_full(cfg.flow_control) {
                return None;
            }
            return Some(Bytes::from(cfg.deliver_subject.clone()));
        }
        let policy = cfg.priority();
        if policy == PriorityPolicy::Overflow {
            self.sync_pending(&mut st);
        }
        let mut ended = Vec::new();
        let to = st.choose_request(now, policy, &mut ended);
        drop(st);
        for (r, h) in ended {
            shard.reply(&r, Some(&h), b"");
        }
        to
    }

    /// `replay_policy: original`: when message `msg` is due, if not now.
    fn replay_hold(&self, msg: &StoredMsg) -> Option<Nanos> {
        let st = self.st.borrow();
        if st.last_msg_ts == Nanos(0) || st.last_delivered == Nanos(0) {
            return None;
        }
        let at = st
            .last_delivered
            .after(Nanos(msg.ts).since(st.last_msg_ts).max(0));
        (at > Nanos::now()).then_some(at)
    }

    /// Message `sseq` went from the stream before it could be delivered.
    fn gone(&self, sseq: StreamSeq, redelivery: bool) {
        let keep = self.keeps_given_up();
        let mut st = self.st.borrow_mut();
        if redelivery {
            let lowest = st.pending.first_key_value().map(|(s, _)| *s) == Some(sseq);
            st.settle(sseq);
            st.update_floor(lowest, keep);
        } else {
            // Its removal is counted from the index's removal log; an
            // initial last-per-subject start is below the cursor and is
            // not, so it is counted here.
            self.sync_pending(&mut st);
            if st.lps.front() == Some(&sseq) {
                st.advance_past(sseq);
            } else {
                st.cursor = st.cursor.max(sseq.next());
            }
        }
        st.check();
    }

    /// The earliest of `next` and the consumer's own deadlines: redelivery
    /// timers, request expiries and heartbeats, push heartbeats, interest checks.
    fn deadlines(&self, cfg: &ConsumerConfig, now: Nanos, mut next: Nanos) -> Nanos {
        let st = self.st.borrow();
        if let Some((d, _)) = st.timers.first() {
            next = next.min(*d);
        }
        next = st.request_deadline(next);
        if let Some(p) = &st.pin {
            next = next.min(p.expires);
        }
        if cfg.is_push() && cfg.idle_heartbeat > 0 {
            next = next.min(
                st.last_push
                    .max(Nanos(self.created))
                    .after(cfg.idle_heartbeat),
            );
        }
        if cfg.is_push() || !st.waiting.is_empty() {
            // Notice a subscriber or requester that went away.
            next = next.min(now.after(INTEREST_CHECK_NS));
        }
        next
    }

    /// Chooses the next message: a due redelivery first, else the next new one.
    fn pick(&self, shard: &Shard, cfg: &ConsumerConfig) -> Pick {
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
        gave_up: &mut Vec<(StreamSeq, DeliveryCount)>,
    ) -> Pick {
        let mut st = self.st.borrow_mut();
        self.sync_pending(&mut st);
        if let Next::Redeliver(sseq) = st.take_due(cfg.max_deliver, gave_up) {
            return Pick::Message(sseq, true);
        }
        let full = cfg.ack() != AckPolicy::None
            && cfg.max_ack_pending > 0
            && st.pending.len() as i64 >= cfg.max_ack_pending;
        if full {
            return Pick::Nothing;
        }
        if let Some(&s) = st.lps.front() {
            return Pick::Message(s, false);
        }
        let ix = self.stream.ix.borrow();
        let filters = self.filters.borrow();
        if let Some(s) = ix.next_filtered(st.cursor.0, &filters) {
            return Pick::Message(StreamSeq(s), false);
        }
        st.cursor = st.cursor.max(StreamSeq(ix.last_seq() + 1));
        drop(ix);
        // Accepted messages still being written deliver now.
        match self
            .stream
            .preview_next(st.cursor.0, |s| matches_any(&filters, s))
        {
            Some(s) => Pick::Message(StreamSeq(s), false),
            None => Pick::Nothing,
        }
    }

    /// The ack subject of a delivery: `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.
    /// <cseq>.<ts>.<pending>`.
    fn ack_subject(
        &self,
        dc: DeliveryCount,
        sseq: StreamSeq,
        cseq: ConsumerSeq,
        ts: i64,
        pending: u64,
    ) -> Bytes {
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
        for (i, n) in [dc.0, sseq.0, cseq.0, ts.max(0) as u64, pending]
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

    /// Sends one message to `target`; false if it did not go (the request
    /// cannot take it).
    fn deliver(
        &self,
        shard: &Shard,
        cfg: &ConsumerConfig,
        target: &Bytes,
        msg: StoredMsg,
        redelivery: bool,
        now: Nanos,
    ) -> bool {
        let sseq = StreamSeq(msg.seq);
        let mut st = self.st.borrow_mut();
        if !cfg.is_push() && st.waiting.front().map(|r| &r.reply) != Some(target) {
            return false;
        }
        self.sync_pending(&mut st);
        // Pending after this one (redeliveries do not change it).
        let pending_after = if redelivery || sseq > st.np_upto {
            st.np
        } else {
            st.np.saturating_sub(1)
        };
        let cseq = st.delivered_consumer.next();
        let dc = if redelivery {
            // Acked or terminated while it was being read: nothing to redeliver.
            let Some(p) = st.pending.get(&sseq) else {
                return true;
            };
            p.dc.next()
        } else {
            DeliveryCount::FIRST
        };
        let reply = self.ack_subject(dc, sseq, cseq, msg.ts, pending_after);
        let mut pinned = None;
        let mut p = wire_message(cfg, &msg, reply);
        if cfg.priority() == PriorityPolicy::PinnedClient {
            let (new_pin, id) = st.pin_front(cfg, || random_token(shard, 22), now);
            pinned = new_pin;
            p = with_pin(p, &id);
        }
        let size = (p.subject.len() + p.reply.as_ref().map_or(0, Bytes::len) + p.msg.len()) as u64;
        if !cfg.is_push() {
            let mut ended = None;
            if !st.charge_request(size, &mut ended) {
                if pinned.is_some() {
                    st.pin = None; // pinned for a delivery that did not go
                }
                drop(st);
                let (to, h) = ended.expect("an ended request has a status");
                shard.reply(&to, Some(&h), b"");
                return true;
            }
        }
        // State first: an ack may come back before this function returns.
        let acks = cfg.ack() != AckPolicy::None;
        st.record_delivery(Delivery {
            sseq,
            cseq,
            dc,
            redelivery,
            ts: Nanos(msg.ts),
            now,
            deadline: acks.then(|| now.after(cfg.redelivery_delay(dc.0).max(1))),
        });
        if cfg.is_push() {
            let rules = PushRules {
                flow_control: cfg.flow_control,
                rate_limit_bps: cfg.rate_limit_bps,
                burst_bytes: self.burst_bytes(shard),
            };
            st.pushed(size, rules, now);
        } else {
            st.served_request(size, now, cfg.priority());
        }
        st.check();
        let fc_due = cfg.is_push() && st.fc_request_due(cfg.flow_control);
        let retention_now = !acks && !redelivery && self.keeps_given_up();
        drop(st);
        if let Some(pin) = pinned {
            self.advisory_pinned(shard, cfg, &pin);
        }
        shard.deliver_to_memo(target, &p, &self.memo);
        if fc_due {
            self.request_flow_control(shard, target);
        }
        if retention_now {
            retain_check(&self.stream, [sseq.0]);
        }
        true
    }

    /// Sends a `100 FlowControl Request` to the deliver subject; its answer
    /// comes back on `$JS.FC.<stream>.<consumer>.<token>`.
    fn request_flow_control(&self, shard: &Shard, target: &Bytes) {
        let token = random_token(shard, 4);
        let fc = Bytes::from(format!("$JS.FC.{}.{}.{token}", self.stream.name, self.name));
        self.st.borrow_mut().fc_requested(fc.clone());
        let h = status("100 FlowControl Request", &[]);
        let p = PubOp {
            subject: target.clone(),
            reply: Some(fc),
            hdr_len: Some(h.len()),
            msg: Bytes::from(h),
        };
        shard.deliver_to(target, &p);
    }
}

/// A delivery to a pinned-client consumer's request: `Nats-Pin-Id` last.
fn with_pin(p: PubOp, id: &str) -> PubOp {
    let hdr_len = p.hdr_len.unwrap_or(0);
    let hdr = headers::rewrite(
        &p.msg[..hdr_len],
        |_| false,
        &[("Nats-Pin-Id", id.as_bytes())],
    )
    .expect("a header is added");
    let mut msg = Vec::with_capacity(hdr.len() + p.msg.len() - hdr_len);
    msg.extend_from_slice(&hdr);
    msg.extend_from_slice(&p.msg[hdr_len..]);
    PubOp {
        hdr_len: Some(hdr.len()),
        msg: Bytes::from(msg),
        ..p
    }
}

/// A stored message as a delivery: its own subject, the ack subject as
/// reply, its headers (only them, with `Nats-Msg-Size`, for headers_only).
fn wire_message(cfg: &ConsumerConfig, msg: &StoredMsg, reply: Bytes) -> PubOp {
    let (hdr, body): (Option<Vec<u8>>, &[u8]) = if cfg.headers_only {
        (Some(headers_only(msg.hdr(), msg.payload().len())), b"")
    } else if msg.hdr_len > 0 {
        (Some(msg.hdr().to_vec()), msg.payload())
    } else {
        (None, msg.payload())
    };
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
    PubOp {
        subject: msg.subject.clone(),
        reply: Some(reply),
        hdr_len: hdr.as_ref().map(Vec::len),
        msg: data,
    }
}
