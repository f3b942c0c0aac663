//! The publish path and interest bookkeeping, as methods on `Shard`.
//!
//! A publish is matched against this shard's replica of the whole server's
//! interest. Local subscribers get the message written into their outbound queue
//! at once; each remote shard with interest gets it once, in the next batch to that
//! shard, with the list of its subscriptions to deliver to. A queue group gets one
//! member, picked here among its members on all shards, so the pick is global.
//!
//! Invariant: the interest replica of every shard converges to the same set; a
//! shard applies a peer's changes in the order the peer made them.

mod auth;
mod batch;
mod leaf;
mod leaf_hello;
mod moving;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use crate::limits::MESH_PACK_MAX;
use crate::net::conn::{Aim, CloseReason, Conn, Flow, LocalSub, Moving};
use crate::net::outbound::Verdict;
use crate::protocol::connect::ConnectOpts;
use crate::protocol::ops;
use crate::protocol::parser::{ClientOp, PubOp};
use crate::shard::msg::{self, ShardMsg, SubKey, Target, JS_CID};
use crate::shard::{JetStream, Shard};
use crate::subject;
use crate::subject::trie::MatchResult;

/// A consumer's last match of its delivery subject: (interest generation,
/// subject, result).
pub type DeliverMemo = Option<(u64, Box<[u8]>, Rc<MatchResult<SubKey>>)>;

/// Outcome of one local delivery.
pub(crate) enum Delivered {
    Yes,
    /// Delivered, and the target's queue is over its stall threshold.
    Stalled,
    No,
}

impl Shard {
    /// JetStream on this shard; only called for what only JetStream sends
    /// (internal subscriptions, its own commands), so it is there.
    pub(crate) fn jetstream(&self) -> &Rc<dyn JetStream> {
        self.js
            .get()
            .expect("JetStream traffic implies JetStream is on")
    }

    /// Applies one client op; returns what the read loop must do next.
    pub fn handle_op(&self, conn: &Rc<Conn>, op: ClientOp) -> Flow {
        if self.trace {
            match &op {
                // Secrets never reach the log.
                ClientOp::Connect(json) => crate::trace!(
                    "{} - cid:{} - <<- [CONNECT {}]",
                    conn.peer,
                    conn.cid,
                    auth::redacted(json)
                ),
                _ => crate::trace!("{} - cid:{} - <<- {op:?}", conn.peer, conn.cid),
            }
        }
        if !matches!(op, ClientOp::Connect(_)) && !self.before_connect(conn) {
            return Flow::Close;
        }
        match op {
            ClientOp::Pub(p) => self.client_pub(conn, p),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.client_sub(conn, subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.client_unsub(conn, sid, max),
            ClientOp::Ping => {
                conn.st.borrow_mut().active = true;
                if self.mesh.is_some() && conn.peers_behind.get() {
                    return Flow::Barrier;
                }
                self.pong(conn);
                Flow::Continue
            }
            ClientOp::Pong => {
                conn.st.borrow_mut().pings_out = 0;
                conn.ponged();
                Flow::Continue
            }
            ClientOp::Connect(json) => self.client_connect(conn, &json),
            ClientOp::Ignored => Flow::Continue,
        }
    }

    fn ok(&self, conn: &Conn) {
        if conn.st.borrow().opts.verbose {
            conn.send(ops::OK);
        }
    }

    fn client_connect(&self, conn: &Conn, json: &[u8]) -> Flow {
        let opts = match ConnectOpts::decode(json) {
            Ok(opts) => opts,
            Err(e) => {
                // nats-server closes without an -ERR here.
                crate::debug!("{} - cid:{} - bad CONNECT: {e}", conn.peer, conn.cid);
                conn.close(CloseReason::ProtocolError);
                return Flow::Close;
            }
        };
        if opts.protocol > 1 || opts.protocol < 0 {
            conn.send_err("invalid client protocol");
            conn.close(CloseReason::ProtocolError);
            return Flow::Close;
        }
        if opts.no_responders && !opts.headers {
            conn.send_err("no responders requires headers support");
            conn.close(CloseReason::ProtocolError);
            return Flow::Close;
        }
        if !self.authenticate(conn, &opts) {
            return Flow::Close;
        }
        {
            let mut st = conn.st.borrow_mut();
            st.opts = opts;
            st.connected = true;
        }
        self.ok(conn);
        Flow::Continue
    }

    fn client_pub(&self, conn: &Rc<Conn>, p: PubOp) -> Flow {
        let (pedantic, echo, no_responders, headers) = {
            let mut st = conn.st.borrow_mut();
            st.active = true;
            st.in_msgs += 1;
            st.in_bytes += p.msg.len() as u64;
            (
                st.opts.pedantic,
                st.opts.echo,
                st.opts.no_responders,
                st.opts.headers,
            )
        };
        if p.hdr_len.is_some() && !headers {
            // HPUB from a client that did not announce headers: nats-server
            // closes without an -ERR.
            conn.close(CloseReason::ProtocolError);
            return Flow::Close;
        }
        if pedantic && !subject::valid_publish(&p.subject) {
            // nats-server reports it, and still routes the message.
            conn.send_err("Invalid Publish Subject");
        }
        if self.publish_denied(conn, &p.subject) {
            return Flow::Continue;
        }
        // The +OK precedes any delivery this publish causes on the same connection.
        self.ok(conn);
        conn.count_pub();
        let (delivered, full) = self.publish(Some(conn), echo, &p);
        if !delivered && no_responders {
            if let Some(reply) = &p.reply {
                self.no_responders(conn, &p.subject, reply);
            }
        }
        if full {
            Flow::FlushMesh
        } else {
            Flow::Continue
        }
    }

    /// Routes one message to every matching subscription. Returns whether any
    /// subscription will receive it, and whether a batch to a peer is full.
    pub fn publish(&self, from: Option<&Rc<Conn>>, echo: bool, p: &PubOp) -> (bool, bool) {
        // Every ack subject is unique (it names one delivery): caching its
        // match would only evict useful entries.
        let cache = !p.subject.starts_with(b"$JS.ACK.");
        self.publish_caching(from, echo, p, cache)
    }

    /// `publish`, saying whether the subject's match may be cached.
    pub fn publish_caching(
        &self,
        from: Option<&Rc<Conn>>,
        echo: bool,
        p: &PubOp,
        cache: bool,
    ) -> (bool, bool) {
        if let Some(mapped) = self.domain_mapped(&p.subject) {
            let p = PubOp {
                subject: mapped,
                ..p.clone()
            };
            return self.publish_caching(from, echo, &p, cache);
        }
        // JetStream's API listens on all of `$JS.API.>` (routed by name, not by
        // interest); it still reaches ordinary subscribers below.
        let api =
            p.subject.starts_with(b"$JS.API.") && self.js.get().is_some_and(|js| js.route_api(p));
        self.publish_matched(from, echo, p, &p.subject, cache, api)
    }

    /// With `--domain d`, nats-server's mappings of `$JS.d.API.*` onto the API
    /// (its INFO, STREAM, CONSUMER, DIRECT, META, SERVER and ACCOUNT
    /// subjects) and onto `$KV.>` and `$OBJ.>`: the subject the message takes.
    fn domain_mapped(&self, subject: &Bytes) -> Option<Bytes> {
        let domain = self.cfg.domain.as_deref()?;
        let rest = subject.strip_prefix(b"$JS.")?;
        let rest = rest
            .strip_prefix(domain.as_bytes())?
            .strip_prefix(b".API.")?;
        const API: [&[u8]; 6] = [
            b"STREAM.",
            b"CONSUMER.",
            b"DIRECT.",
            b"META.",
            b"SERVER.",
            b"ACCOUNT.",
        ];
        if rest == b"INFO" || API.iter().any(|p| rest.starts_with(p)) {
            let mut out = Vec::with_capacity(8 + rest.len());
            out.extend_from_slice(b"$JS.API.");
            out.extend_from_slice(rest);
            return Some(out.into());
        }
        if rest.starts_with(b"$KV.") || rest.starts_with(b"$OBJ.") {
            return Some(subject.slice(subject.len() - rest.len()..));
        }
        None
    }

    /// Delivers a JetStream message to the subscribers of `to`, showing it with
    /// its own subject (`p.subject`), as consumers deliver stored messages to an
    /// inbox or deliver subject. Returns whether anyone will receive it.
    pub fn deliver_to(&self, to: &[u8], p: &PubOp) -> bool {
        // Deliver subjects and request inboxes repeat for many messages.
        self.publish_matched(None, true, p, to, true, false).0
    }

    /// `deliver_to` for a sender that delivers to one subject many times (a
    /// consumer): the match is kept in `memo` until the interest changes.
    pub fn deliver_to_memo(&self, to: &[u8], p: &PubOp, memo: &RefCell<DeliverMemo>) -> bool {
        let generation = self.interest.borrow().generation();
        let result = {
            let mut m = memo.borrow_mut();
            match &*m {
                Some((g, subject, r)) if *g == generation && subject[..] == *to => r.clone(),
                _ => {
                    let r = self.interest.borrow_mut().matches_caching(to, true);
                    *m = Some((generation, to.into(), r.clone()));
                    r
                }
            }
        };
        self.publish_result(None, true, p, to, &result, false).0
    }

    /// Whether anything subscribes to `subject` (a push consumer is bound).
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        !self
            .interest
            .borrow_mut()
            .matches_caching(subject, false)
            .is_empty()
    }

    pub(crate) fn publish_matched(
        &self,
        from: Option<&Rc<Conn>>,
        echo: bool,
        p: &PubOp,
        match_on: &[u8],
        cache: bool,
        api: bool,
    ) -> (bool, bool) {
        if !cache {
            // One-off subjects (acks): matched into a reused buffer, not an
            // allocation per publish. Taken out while in use: routing may
            // publish again, and a nested call then allocates its own.
            let hit = self.interest.borrow().cached_match(match_on);
            if let Some(r) = hit {
                return self.publish_result(from, echo, p, match_on, &r, api);
            }
            let mut r = std::mem::take(&mut *self.match_scratch.borrow_mut());
            self.interest.borrow().match_uncached(match_on, &mut r);
            let out = self.publish_result(from, echo, p, match_on, &r, api);
            *self.match_scratch.borrow_mut() = r;
            return out;
        }
        let result = self.interest.borrow_mut().matches_caching(match_on, cache);
        self.publish_result(from, echo, p, match_on, &result, api)
    }

    /// Routes `p`, matched on `match_on`, to `result`'s subscriptions: every
    /// plain one, one member of each queue group (one on this server before
    /// a leaf connection's), and one LMSG per leaf connection.
    #[allow(clippy::too_many_arguments)]
    fn publish_result(
        &self,
        from: Option<&Rc<Conn>>,
        echo: bool,
        p: &PubOp,
        match_on: &[u8],
        result: &MatchResult<SubKey>,
        api: bool,
    ) -> (bool, bool) {
        if result.is_empty() {
            return (api, false);
        }
        let pub_seq = self.mesh.as_ref().map_or(0, |m| m.begin_publish());
        let skip_cid = match from {
            Some(conn) if !echo => Some(conn.cid),
            _ => None,
        };
        let origin = leaf::Origin::of(from);
        let mut leaves = leaf::Hits::default();
        let mut delivered = api;
        let mut full = false;
        for key in &result.plain {
            if Some(key.cid) == skip_cid {
                continue;
            }
            if msg::is_leaf(key) {
                leaves.add(&origin, *key, None);
                continue;
            }
            let (d, f) = self.route(from, *key, p, pub_seq);
            delivered |= d;
            full |= f;
        }
        for group in &result.queues {
            if !origin.takes_queue(&group.name) {
                continue;
            }
            let Some(pick) = self.pick_member(&group.members, skip_cid, &origin) else {
                continue;
            };
            if msg::is_leaf(&pick) {
                leaves.add(&origin, pick, Some(&group.name));
                continue;
            }
            let (d, f) = self.route(from, pick, p, pub_seq);
            delivered |= d;
            full |= f;
        }
        if !leaves.is_empty() {
            // Every leaf connection hit, here, as `route` aims at other keys.
            if let Some(conn) = from {
                for key in leaves.keys() {
                    aim_toward(conn, self.id, key);
                }
            }
            let (d, f) = self.route_leaves(from, p, match_on, leaves, pub_seq);
            delivered |= d;
            full |= f;
        }
        (delivered, full)
    }

    pub(crate) fn route(
        &self,
        from: Option<&Rc<Conn>>,
        key: SubKey,
        p: &PubOp,
        pub_seq: u64,
    ) -> (bool, bool) {
        // Leaf keys (from `route_leaves`) were aimed at in `publish_matched`.
        if let Some(conn) = from.filter(|_| !msg::is_leaf(&key)) {
            aim_toward(conn, self.id, &key);
        }
        if key.shard == self.id && key.cid == JS_CID {
            let congested =
                self.jetstream()
                    .deliver(key.sub, &p.subject, p.reply.as_ref(), p.hdr_len, &p.msg);
            if congested {
                if let Some(conn) = from {
                    conn.stalled_stream.set(Some(key.sub));
                }
            }
            return (true, false);
        }
        if key.shard == self.id {
            let hdr_len = p.hdr_len;
            match self.deliver_local(
                key.cid,
                key.sub,
                &p.subject,
                p.reply.as_deref(),
                hdr_len,
                &p.msg,
            ) {
                Delivered::Yes => (true, false),
                Delivered::Stalled => {
                    if let Some(conn) = from {
                        if conn.cid != key.cid {
                            conn.stalled_on.set(Some(key.cid));
                        }
                    }
                    (true, false)
                }
                Delivered::No => (false, false),
            }
        } else {
            let mesh = self.mesh.as_ref().expect("remote interest implies a mesh");
            if let Some(conn) = from {
                conn.peers_behind.set(true);
            }
            let full = mesh.add_target(
                key.shard,
                pub_seq,
                Target {
                    cid: key.cid,
                    sub: key.sub,
                },
                |packed| {
                    let reply_len = p.reply.as_ref().map_or(0, Bytes::len);
                    if p.subject.len() + reply_len + p.msg.len() > MESH_PACK_MAX {
                        return ShardMsg::Deliver(Box::new(msg::Delivery {
                            subject: p.subject.clone(),
                            reply: p.reply.clone(),
                            hdr_len: p.hdr_len.map(|h| h as u32),
                            msg: p.msg.clone(),
                            targets: (0, 0),
                        }));
                    }
                    let at = packed.len() as u32;
                    packed.extend_from_slice(&p.subject);
                    if let Some(r) = &p.reply {
                        packed.extend_from_slice(r);
                    }
                    packed.extend_from_slice(&p.msg);
                    ShardMsg::Packed {
                        at,
                        subject_len: p.subject.len() as u32,
                        reply_len: p.reply.as_ref().map_or(u32::MAX, |r| r.len() as u32),
                        hdr_len: p.hdr_len.map(|h| h as u32),
                        msg_len: p.msg.len() as u32,
                        targets: (0, 0),
                    }
                },
            );
            (true, full)
        }
    }

    /// Writes a message to one local subscription, honouring auto-unsubscribe.
    pub(crate) fn deliver_local(
        &self,
        cid: u64,
        sub: u32,
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Delivered {
        let Some(conn) = self.conns.borrow().get(&cid).cloned() else {
            return Delivered::No;
        };
        if conn.moving.get() == Moving::Arriving {
            return self.stage(&conn, sub, subject, reply, hdr_len, msg);
        }
        let (verdict, done) = {
            let mut guard = conn.st.borrow_mut();
            let st = &mut *guard;
            let Some(s) = st.subs.get_mut(&sub) else {
                return Delivered::No;
            };
            if s.max.is_some_and(|max| s.delivered >= max) {
                return Delivered::No;
            }
            if let Some(p) = st.perms.as_mut() {
                if s.check_deny && p.perms.delivery_denied(subject) {
                    return Delivered::No;
                }
                if let Some(r) = reply {
                    p.delivered_request(r);
                }
            }
            s.delivered += 1;
            let done = s.max.is_some_and(|max| s.delivered >= max);
            // A client that did not announce headers gets the payload only.
            let (hdr_len, msg) = match hdr_len {
                Some(h) if !st.opts.headers => (None, &msg[h..]),
                other => (other, msg),
            };
            let verdict = conn
                .out
                .borrow_mut()
                .push_msg(subject, &s.sid, reply, hdr_len, msg);
            (verdict, done)
        };
        conn.wake_writer.notify();
        // Leaving: its interest is already the new shard's, which drops it.
        if done && conn.moving.get() == Moving::Home {
            self.drop_sub(&conn, sub);
        }
        match verdict {
            Verdict::Ok => Delivered::Yes,
            Verdict::Stall => Delivered::Stalled,
            Verdict::Slow => {
                self.slow_consumer(&conn);
                Delivered::Yes
            }
        }
    }

    /// Cuts `conn`, whose queue passed `max_pending`, as nats-server does.
    pub(crate) fn slow_consumer(&self, conn: &Conn) {
        crate::warn!(
            "{} - cid:{} - Slow Consumer Detected: MaxPending of {} exceeded",
            conn.peer,
            conn.cid,
            self.cfg.max_pending
        );
        conn.kill(CloseReason::SlowConsumer);
    }

    /// Sends the 503 status to the publisher's own subscription on `reply`.
    fn no_responders(&self, conn: &Conn, subject: &[u8], reply: &[u8]) {
        let sid = {
            let st = conn.st.borrow();
            st.subs
                .values()
                .find(|s| subject::matches(&s.subject, reply))
                .map(|s| s.sid.clone())
        };
        if let Some(sid) = sid {
            let block = crate::protocol::headers::no_responders(subject);
            conn.out
                .borrow_mut()
                .push_msg(reply, &sid, None, Some(block.len()), &block);
            conn.wake_writer.notify();
        }
    }

    fn client_sub(&self, conn: &Conn, subject: Bytes, queue: Option<Bytes>, sid: Bytes) -> Flow {
        conn.st.borrow_mut().active = true;
        // Queue names are not checked, as in nats-server.
        if !subject::valid_subscribe(&subject) {
            conn.send_err("Invalid Subject");
            return Flow::Continue;
        }
        let Some(check_deny) = self.subscribe_denied(conn, &subject, queue.as_deref()) else {
            return Flow::Continue;
        };
        let max_subs = match self.cfg.max_subscriptions {
            0 => crate::limits::SUBS_PER_CONN_MAX,
            n => n.min(crate::limits::SUBS_PER_CONN_MAX),
        };
        let sub = {
            let mut st = conn.st.borrow_mut();
            if st.sids.contains_key(&sid) {
                drop(st);
                self.ok(conn);
                return Flow::Continue;
            }
            if st.subs.len() >= max_subs {
                drop(st);
                conn.send_err("maximum subscriptions exceeded");
                return Flow::Continue;
            }
            st.next_sub += 1;
            let sub = st.next_sub;
            st.sids.insert(sid.clone(), sub);
            st.subs.insert(
                sub,
                LocalSub {
                    sid,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    check_deny,
                    max: None,
                    delivered: 0,
                },
            );
            sub
        };
        let key = SubKey {
            cid: conn.cid,
            sub,
            shard: self.id,
        };
        let full = self.add_sub_everywhere(conn, &subject, queue.as_ref(), key);
        self.ok(conn);
        if full {
            Flow::FlushMesh
        } else {
            Flow::Continue
        }
    }

    fn client_unsub(&self, conn: &Conn, sid: Bytes, max: Option<u64>) -> Flow {
        let target = {
            let mut st = conn.st.borrow_mut();
            st.active = true;
            match st.sids.get(&sid).copied() {
                None => None,
                Some(sub) => {
                    let s = st.subs.get_mut(&sub).expect("sid index matches subs");
                    match max {
                        Some(max) if max > s.delivered => {
                            s.max = Some(max);
                            None
                        }
                        _ => Some(sub),
                    }
                }
            }
        };
        if let Some(sub) = target {
            self.drop_sub(conn, sub);
        }
        self.ok(conn);
        Flow::Continue
    }

    /// Removes subscription `sub` of `conn` here and (by broadcast) everywhere.
    pub fn drop_sub(&self, conn: &Conn, sub: u32) {
        let removed = {
            let mut st = conn.st.borrow_mut();
            let removed = st.subs.remove(&sub);
            if let Some(s) = &removed {
                st.sids.remove(&s.sid);
            }
            removed
        };
        let Some(s) = removed else { return };
        let key = SubKey {
            cid: conn.cid,
            sub,
            shard: self.id,
        };
        let was_there = self.interest_remove(&s.subject, s.queue.as_ref(), key);
        assert!(was_there, "local subscription missing from interest");
        if let Some(mesh) = &self.mesh {
            conn.peers_behind.set(true);
            mesh.broadcast(|| ShardMsg::interest(false, key, &s.subject, s.queue.as_ref()));
        }
    }
}

/// Counts a publish of `conn` toward `key`'s shard in its move decision (this
/// shard's own keys: toward none). A leaf connection never moves: a client is
/// aimed at one as at a stream, to move to its shard.
fn aim_toward(conn: &Conn, here: u16, key: &SubKey) {
    let to = if key.shard == here {
        Aim::MIXED
    } else {
        key.shard
    };
    let cid = if msg::is_leaf(key) { JS_CID } else { key.cid };
    conn.aim_at(to, cid, key.cid != JS_CID);
}
