//! Leaf connections on the publish path and in the interest replica (`impl
//! Shard`): the interest we advertise to each leaf connection follows every
//! change to this shard's replica; a message matching a leaf connection's
//! interest leaves on it once, as one LMSG naming the far side's queue
//! groups; a queue group is served here before it is served across a leaf.
//!
//! A leaf connection's interest is held like a client's subscriptions (its
//! `SubKey::sub` carries `LEAF_SUB`, and `HUB_SUB` when we play the hub), so
//! every shard's replica has it and a publish on any shard finds it.

use std::rc::Rc;

use bytes::Bytes;

use crate::net::conn::{CloseReason, Conn};
use crate::net::link::{LinkState, Phase};
use crate::net::outbound::Verdict;
use crate::protocol::parser::PubOp;
use crate::router::Delivered;
use crate::shard::msg::{self, LeafDelivery, ShardMsg, SubKey, Target, HUB_SUB};
use crate::shard::Shard;

/// Where a publish came from, as leaf routing needs it.
pub(crate) struct Origin {
    /// A leaf connection on which we are the spoke: what came from its hub
    /// goes on to leaf connections where we are the hub, never to another hub.
    spoke: bool,
    /// From a leaf connection: the queue groups here its sender chose (an
    /// LMSG naming none is for plain subscriptions only).
    queues: Option<Vec<Bytes>>,
}

impl Origin {
    pub(crate) fn of(from: Option<&Rc<Conn>>) -> Origin {
        match from.and_then(|c| c.link.as_ref()) {
            None => Origin {
                spoke: false,
                queues: None,
            },
            Some(link) => {
                let link = link.borrow();
                Origin {
                    spoke: !link.hub,
                    queues: Some(link.inbound_queues.clone()),
                }
            }
        }
    }

    pub(crate) fn takes_queue(&self, name: &[u8]) -> bool {
        self.queues
            .as_ref()
            .is_none_or(|q| q.iter().any(|n| n[..] == *name))
    }

    /// Whether a message from here may go to subscription `key`.
    fn reaches(&self, key: &SubKey) -> bool {
        !(self.spoke && msg::is_leaf(key) && key.sub & HUB_SUB == 0)
    }
}

/// The leaf connections one message goes to, and for which queue groups.
#[derive(Default)]
pub(crate) struct Hits {
    list: Vec<(SubKey, Option<Box<[u8]>>)>,
}

impl Hits {
    /// The leaf connections' subscriptions hit.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &SubKey> + '_ {
        self.list.iter().map(|(k, _)| k)
    }

    pub(crate) fn add(&mut self, origin: &Origin, key: SubKey, queue: Option<&[u8]>) {
        if origin.reaches(&key) {
            self.list.push((key, queue.map(Into::into)));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Shard {
    /// Adds one subscription to this shard's replica, and to what each leaf
    /// connection here is told.
    pub fn interest_add(&self, subject: &Bytes, queue: Option<&Bytes>, key: SubKey) {
        self.interest
            .borrow_mut()
            .insert(subject, queue.map(|q| &q[..]), key);
        if !self.links.borrow().is_empty() {
            self.advertise(subject, queue, key, true);
        }
    }

    /// Removes one subscription from the replica (and from what leaf
    /// connections are told); returns whether it was there.
    pub fn interest_remove(&self, subject: &Bytes, queue: Option<&Bytes>, key: SubKey) -> bool {
        let removed = self
            .interest
            .borrow_mut()
            .remove(subject, queue.map(|q| &q[..]), key);
        if removed && !self.links.borrow().is_empty() {
            self.advertise(subject, queue, key, false);
        }
        removed
    }

    /// Adds a subscription of `conn` here and, by broadcast, on every shard;
    /// true when a batch to a peer is full.
    pub(crate) fn add_sub_everywhere(
        &self,
        conn: &Conn,
        subject: &Bytes,
        queue: Option<&Bytes>,
        key: SubKey,
    ) -> bool {
        self.interest_add(subject, queue, key);
        self.mesh.as_ref().is_some_and(|mesh| {
            conn.peers_behind.set(true);
            mesh.broadcast(|| ShardMsg::interest(true, key, subject, queue))
        })
    }

    /// Tells each leaf connection here of one subscription more or fewer.
    fn advertise(&self, subject: &Bytes, queue: Option<&Bytes>, key: SubKey, add: bool) {
        for conn in self.links.borrow().iter() {
            let Some(link) = &conn.link else { continue };
            let mut out = Vec::new();
            {
                let mut link = link.borrow_mut();
                if !advertised(&link, conn.cid, subject, &key) {
                    continue;
                }
                match queue {
                    None => link.count_plain(subject, add, &mut out),
                    Some(q) => link.count_queue(subject, q, add, &mut out),
                }
            }
            if !out.is_empty() {
                conn.send(&out);
            }
        }
    }

    /// Starts the interest exchange on a leaf connection: our loop-detection
    /// subject, our JetStream domain's API subjects, and every subscription
    /// in the replica it may see, in one write; from now on it follows
    /// every change.
    pub(crate) fn advertise_all(&self, conn: &Rc<Conn>) {
        let Some(link) = &conn.link else { return };
        let mut out = Vec::new();
        {
            let mut link = link.borrow_mut();
            link.phase = Phase::Ready;
            crate::protocol::leaf::encode_sub(&mut out, self.server.leaf_lds.as_bytes(), None);
            for s in self.domain_api_subjects() {
                crate::protocol::leaf::encode_sub(&mut out, s.as_bytes(), None);
            }
            // Counted first, then written once per key with its final weight.
            let link = &mut *link;
            let mut counting = Vec::new();
            self.interest.borrow().for_each(|subject, queue, key| {
                let subject = Bytes::copy_from_slice(subject);
                if !advertised(link, conn.cid, &subject, key) {
                    return;
                }
                match queue {
                    None => link.count_plain(&subject, true, &mut counting),
                    Some(q) => {
                        let q = Bytes::copy_from_slice(q);
                        link.count_queue(&subject, &q, true, &mut counting)
                    }
                }
                counting.clear();
            });
            for subject in link.out_plain.keys() {
                crate::protocol::leaf::encode_sub(&mut out, subject, None);
            }
            for ((subject, queue), n) in &link.out_queue {
                crate::protocol::leaf::encode_sub(&mut out, subject, Some((queue, *n)));
            }
        }
        conn.send(&out);
        self.links.borrow_mut().push(conn.clone());
    }

    /// The subjects through which another server reaches our JetStream
    /// (nats-server's nine mapping sources of `$JS.<domain>.API`); none
    /// without a domain or without JetStream.
    pub(crate) fn domain_api_subjects(&self) -> Vec<String> {
        match (&self.cfg.domain, self.cfg.jetstream.is_some()) {
            (Some(d), true) => [
                "INFO",
                "STREAM.>",
                "CONSUMER.>",
                "DIRECT.>",
                "META.>",
                "SERVER.>",
                "ACCOUNT.>",
                "$KV.>",
                "$OBJ.>",
            ]
            .iter()
            .map(|s| format!("$JS.{d}.API.{s}"))
            .collect(),
            _ => Vec::new(),
        }
    }

    /// One member of a queue group for a message from `origin`: a member on
    /// this server if there is one, else one behind a leaf connection.
    pub(crate) fn pick_member(
        &self,
        members: &[SubKey],
        skip_cid: Option<u64>,
        origin: &Origin,
    ) -> Option<SubKey> {
        let ok = |k: &&SubKey| Some(k.cid) != skip_cid && origin.reaches(k);
        let here = members
            .iter()
            .filter(ok)
            .filter(|k| !msg::is_leaf(k))
            .count();
        let (n, leaves) = match here {
            0 => (members.iter().filter(ok).count(), true),
            n => (n, false),
        };
        if n == 0 {
            return None;
        }
        let i = (self.random() % n as u64) as usize;
        members
            .iter()
            .filter(ok)
            .filter(|k| leaves || !msg::is_leaf(k))
            .nth(i)
            .copied()
    }

    /// Sends one message to each leaf connection in `hits` (one LMSG each,
    /// naming its queue groups); those on other shards get it through the
    /// mesh, as targets of the message's one copy in the batch (the
    /// receiver finds the queue group of each target in the connection's
    /// subscriptions), or boxed on its own when it is shown with another
    /// subject than it matched (a JetStream delivery). Returns (delivered, a
    /// batch to a peer is full).
    pub(crate) fn route_leaves(
        &self,
        from: Option<&Rc<Conn>>,
        p: &PubOp,
        matched: &[u8],
        mut hits: Hits,
        pub_seq: u64,
    ) -> (bool, bool) {
        hits.list.sort_by_key(|(k, _)| k.cid);
        let (mut delivered, mut full) = (false, false);
        let mut at = 0;
        while at < hits.list.len() {
            let key = hits.list[at].0;
            let end = at
                + hits.list[at..]
                    .iter()
                    .take_while(|(k, _)| k.cid == key.cid)
                    .count();
            let group = &hits.list[at..end];
            at = end;
            if key.shard != self.id && *matched == p.subject[..] {
                for (k, _) in group {
                    let (d, f) = self.route(from, *k, p, pub_seq);
                    delivered |= d;
                    full |= f;
                }
                continue;
            }
            let queues: Vec<&[u8]> = group.iter().filter_map(|(_, q)| q.as_deref()).collect();
            if key.shard == self.id {
                let d = self.deliver_leaf(
                    key.cid,
                    matched,
                    &p.subject,
                    p.reply.as_deref(),
                    p.hdr_len,
                    &p.msg,
                    &queues,
                );
                if let (Delivered::Stalled, Some(conn)) = (&d, from) {
                    conn.stalled_on.set(Some(key.cid));
                }
                delivered |= !matches!(d, Delivered::No);
                continue;
            }
            let mesh = self.mesh.as_ref().expect("remote interest implies a mesh");
            if let Some(conn) = from {
                conn.peers_behind.set(true);
            }
            let size = p.msg.len() + p.subject.len() + matched.len();
            full |= mesh.push_sized(
                key.shard,
                ShardMsg::Leaf(Box::new(LeafDelivery {
                    cid: key.cid,
                    matched: Bytes::copy_from_slice(matched),
                    subject: p.subject.clone(),
                    reply: p.reply.clone(),
                    hdr_len: p.hdr_len.map(|h| h as u32),
                    msg: p.msg.clone(),
                    queues: queues.iter().map(|q| Bytes::copy_from_slice(q)).collect(),
                })),
                size,
            );
            delivered = true;
        }
        (delivered, full)
    }

    /// Writes one message to leaf connection `cid` on this shard: LMSG (or
    /// HMSG) on `matched`, an ack reply carrying the stored `subject`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_leaf(
        &self,
        cid: u64,
        matched: &[u8],
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
        queues: &[&[u8]],
    ) -> Delivered {
        let Some(conn) = self.conns.borrow().get(&cid).cloned() else {
            return Delivered::No;
        };
        let Some(link) = &conn.link else {
            return Delivered::No;
        };
        let headers = {
            let link = link.borrow();
            if link.phase != Phase::Ready || !link.may_send(matched) {
                return Delivered::No;
            }
            link.headers
        };
        let with_subject =
            reply.and_then(|r| crate::protocol::leaf::reply_for(r, matched, subject));
        let reply = with_subject.as_deref().or(reply);
        // A peer that does not take headers gets the payload only.
        let (hdr_len, msg) = match hdr_len {
            Some(h) if !headers => (None, &msg[h..]),
            other => (other, msg),
        };
        let verdict = conn
            .out
            .borrow_mut()
            .push_leaf_msg(matched, reply, queues, hdr_len, msg);
        conn.wake_writer.notify();
        match verdict {
            Verdict::Ok => Delivered::Yes,
            Verdict::Stall => Delivered::Stalled,
            Verdict::Slow => {
                crate::warn!(
                    "{} - lid:{} - Slow Consumer Detected: MaxPending of {} exceeded",
                    conn.peer,
                    conn.cid,
                    self.cfg.max_pending
                );
                conn.kill(CloseReason::SlowConsumer);
                Delivered::Yes
            }
        }
    }

    /// A message from a peer shard for leaf connection `cid` here, for its
    /// subscriptions `targets`: one LMSG naming their queue groups.
    pub(crate) fn deliver_leaf_targets(
        &self,
        cid: u64,
        targets: &[Target],
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Delivered {
        let Some(conn) = self.conns.borrow().get(&cid).cloned() else {
            return Delivered::No;
        };
        let queues: Vec<Bytes> = {
            let st = conn.st.borrow();
            targets
                .iter()
                .filter_map(|t| st.subs.get(&t.sub).and_then(|s| s.queue.clone()))
                .collect()
        };
        let queues: Vec<&[u8]> = queues.iter().map(|q| &q[..]).collect();
        self.deliver_leaf(cid, subject, subject, reply, hdr_len, msg, &queues)
    }

    /// A leaf connection is going: it no longer follows interest changes.
    pub(crate) fn unlink(&self, conn: &Conn) {
        self.links.borrow_mut().retain(|c| c.cid != conn.cid);
    }
}

/// Whether subscription `key` on `subject` is advertised on leaf connection
/// `cid`: never its own interest back; loop detection subjects always; not
/// what the connection denies; and to a hub only what is ours or comes from
/// a leaf connection on which we are the hub (nats-server's rule).
fn advertised(link: &LinkState, cid: u64, subject: &[u8], key: &SubKey) -> bool {
    if key.cid == cid {
        return false;
    }
    if subject.starts_with(b"$LDS.") {
        return true;
    }
    if link.isolated && msg::is_leaf(key) {
        return false;
    }
    if !link.may_take(subject) || !link.may_receive(subject) {
        return false;
    }
    link.hub || !msg::is_leaf(key) || key.sub & HUB_SUB != 0
}
