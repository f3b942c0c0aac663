//! Applying a peer shard's batch (`impl Shard`): interest changes into the
//! replica, messages to their targets on this shard, JetStream and
//! monitoring traffic to their handlers.

use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;

use crate::router::Delivered;
use crate::shard::msg::{self, Batch, ShardMsg, Target, JS_CID};
use crate::shard::Shard;

impl Shard {
    /// Delivers one message from a peer's batch to its targets on this shard.
    /// Clients and leaf connections copy what they take, so they get slices;
    /// a stream gets `Bytes` (each a reference count, an atomic operation), of
    /// a packed message cut once for all its targets.
    fn deliver_remote(
        &self,
        list: &[Target],
        body: &Body,
        hdr_len: Option<u32>,
        stalled: &mut Option<u64>,
        stalled_stream: &mut Option<u32>,
    ) {
        let hdr_len = hdr_len.map(|h| h as usize);
        let (subject, reply, msg) = body.slices();
        let mut owned = None;
        let mut at = 0;
        while at < list.len() {
            let t = &list[at];
            at += 1;
            if msg::is_leaf_target(t) {
                // A leaf connection's targets for one message come together
                // (`route_leaves`): one LMSG naming their queue groups.
                let end = at + list[at..].iter().take_while(|n| n.cid == t.cid).count();
                let d = self.deliver_leaf_targets(
                    t.cid,
                    &list[at - 1..end],
                    subject,
                    reply,
                    hdr_len,
                    msg,
                );
                at = end;
                if let Delivered::Stalled = d {
                    *stalled = Some(t.cid);
                }
                continue;
            }
            if t.cid == JS_CID {
                let (subject, reply, msg) = match body {
                    Body::Own(subject, reply, msg) => (subject, reply, msg),
                    Body::Packed { packed, lens, pin } => {
                        let (s, r, m) =
                            owned.get_or_insert_with(|| unpack(packed, *lens, list, *pin));
                        (&*s, &*r, &*m)
                    }
                };
                if self
                    .jetstream()
                    .deliver(t.sub, subject, reply.as_ref(), hdr_len, msg)
                {
                    *stalled_stream = Some(t.sub);
                }
                continue;
            }
            let outcome = self.deliver_local(t.cid, t.sub, subject, reply, hdr_len, msg);
            if let Delivered::Stalled = outcome {
                *stalled = Some(t.cid);
            }
        }
    }

    /// A peer's subscription added to (`add`) or removed from the replica.
    fn peer_interest(
        &self,
        from: u16,
        key: crate::shard::msg::SubKey,
        subject: &Bytes,
        queue: Option<&Bytes>,
        add: bool,
    ) {
        assert_eq!(
            key.shard, from,
            "interest changed by a shard that does not own it"
        );
        if add {
            self.interest_add(subject, queue, key);
        } else {
            self.interest_remove(subject, queue, key);
        }
    }

    /// Applies a batch from a peer shard, in order.
    ///
    /// Never waits on the data mesh (a receiver blocked on a full channel to a
    /// peer whose receiver is blocked on us would deadlock): interest changes made
    /// here are flushed by a separate task. It may wait on the reply mesh, whose
    /// receivers never wait, and pauses at most once per batch for a congested
    /// subscriber (back-pressure on the sending shard through the full channel).
    pub async fn apply_batch(self: &Rc<Self>, batch: Batch) {
        let Batch {
            from,
            msgs,
            targets: batch_targets,
            packed,
            stored_bytes,
            ..
        } = batch;
        // Streams may keep slices of the packed buffer (pinning all of it, its
        // whole capacity, until their writes commit) when what it holds for
        // them is at least half of it: a pinned buffer is then about twice
        // what streams hold at most. Else each stored message is copied out
        // (an allocation each), and a batch of mostly core traffic is freed
        // once applied. Nothing a stream keeps past its commit is a slice
        // (`stage_msg` copies the pending-subject key).
        let pin = stored_bytes * 2 >= packed.capacity();
        // Slices of it go to streams as `Bytes`; dropped here when none did.
        let packed = Bytes::from(packed);
        let mut stalled: Option<u64> = None;
        let mut stalled_stream: Option<u32> = None;
        for msg in msgs {
            let (body, hdr_len, targets) = match msg {
                ShardMsg::Sub(i) => {
                    self.peer_interest(from, i.key, &i.subject, i.queue.as_ref(), true);
                    continue;
                }
                ShardMsg::Unsub(i) => {
                    self.peer_interest(from, i.key, &i.subject, i.queue.as_ref(), false);
                    continue;
                }
                ShardMsg::Packed {
                    at,
                    subject_len,
                    reply_len,
                    hdr_len,
                    msg_len,
                    targets,
                } => {
                    let body = Body::Packed {
                        packed: &packed,
                        lens: (at, subject_len, reply_len, msg_len),
                        pin,
                    };
                    (body, hdr_len, targets)
                }
                ShardMsg::Deliver(d) => {
                    let msg::Delivery {
                        subject,
                        reply,
                        hdr_len,
                        msg,
                        targets,
                    } = *d;
                    (Body::Own(subject, reply, msg), hdr_len, targets)
                }
                ShardMsg::Api(req) => {
                    self.jetstream().api(*req);
                    continue;
                }
                ShardMsg::Js(cmd) => {
                    self.jetstream().command(*cmd);
                    continue;
                }
                ShardMsg::Stats { id, ask } => {
                    self.answer_stats(from, id, ask);
                    continue;
                }
                ShardMsg::StatsPart { id, part } => {
                    self.stats_gathers.part(id, *part);
                    continue;
                }
                ShardMsg::Leaf(l) => {
                    let queues: Vec<&[u8]> = l.queues.iter().map(|q| &q[..]).collect();
                    let d = self.deliver_leaf(
                        l.cid,
                        &l.matched,
                        &l.subject,
                        l.reply.as_deref(),
                        l.hdr_len.map(|h| h as usize),
                        &l.msg,
                        &queues,
                    );
                    if let Delivered::Stalled = d {
                        stalled = Some(l.cid);
                    }
                    continue;
                }
                ShardMsg::Move(m) => {
                    self.apply_move(from, *m);
                    continue;
                }
                ShardMsg::MoveAck { cid } => {
                    self.barrier_acked(msg::BarrierAck { cid });
                    continue;
                }
                ShardMsg::Arrive(a) => {
                    self.apply_arrive(from, *a);
                    continue;
                }
                ShardMsg::Barrier { cid } => {
                    let mesh = self.mesh.as_ref().expect("barrier implies a mesh");
                    mesh.ack(from, cid).await;
                    continue;
                }
            };
            let list = &batch_targets[targets.0 as usize..targets.1 as usize];
            self.deliver_remote(list, &body, hdr_len, &mut stalled, &mut stalled_stream);
        }
        self.after_batch(stalled, stalled_stream).await;
    }

    /// After a batch: a separate task flushes what applying it queued for
    /// peers; the receiver then pauses (a bounded time) for a stream or a
    /// connection it congested, which holds back the sending shard.
    async fn after_batch(self: &Rc<Self>, stalled: Option<u64>, stalled_stream: Option<u32>) {
        if self.mesh.as_ref().is_some_and(|m| m.has_open()) {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.flush_mesh().await }).detach();
        }
        if let Some(uid) = stalled_stream {
            self.stall_on_stream(uid).await;
        }
        if let Some(cid) = stalled {
            self.stall_on(cid).await;
        }
    }
}

/// A message from a peer's batch: its own `Bytes` (a `Deliver`), or its place
/// in the batch's packed buffer.
enum Body<'a> {
    Own(Bytes, Option<Bytes>, Bytes),
    Packed {
        packed: &'a Bytes,
        lens: (u32, u32, u32, u32),
        /// Whether streams may keep slices of `packed` (`apply_batch`).
        pin: bool,
    },
}

impl Body<'_> {
    /// Subject, reply and message, borrowed.
    fn slices(&self) -> (&[u8], Option<&[u8]>, &[u8]) {
        match self {
            Body::Own(subject, reply, msg) => (subject, reply.as_deref(), msg),
            Body::Packed { packed, lens, .. } => unpack_slices(packed, *lens),
        }
    }
}

/// Where a `Packed` message's subject, reply and body sit in its batch's buffer.
fn ranges(
    (at, subject_len, reply_len, msg_len): (u32, u32, u32, u32),
) -> (Range<usize>, Option<Range<usize>>, Range<usize>) {
    let at = at as usize;
    let subject_end = at + subject_len as usize;
    let reply_end = match reply_len {
        u32::MAX => subject_end,
        n => subject_end + n as usize,
    };
    let reply = (reply_len != u32::MAX).then_some(subject_end..reply_end);
    (
        at..subject_end,
        reply,
        reply_end..reply_end + msg_len as usize,
    )
}

/// `unpack` as borrowed slices of the batch's buffer.
fn unpack_slices(packed: &[u8], lens: (u32, u32, u32, u32)) -> (&[u8], Option<&[u8]>, &[u8]) {
    let (subject, reply, msg) = ranges(lens);
    (&packed[subject], reply.map(|r| &packed[r]), &packed[msg])
}

/// A `Packed` message's subject, reply and body, cut from its batch's
/// buffer. A stream keeps what it stores until the write commits: when one of
/// `targets` stores it and the batch may not be pinned (`pin`), it gets its
/// own copy.
fn unpack(
    packed: &Bytes,
    lens: (u32, u32, u32, u32),
    targets: &[Target],
    pin: bool,
) -> (Bytes, Option<Bytes>, Bytes) {
    let (subject, reply, msg) = ranges(lens);
    let at = subject.start;
    if pin || !targets.iter().any(Target::stores) {
        let reply = reply.map(|r| packed.slice(r));
        return (packed.slice(subject), reply, packed.slice(msg));
    }
    let own = Bytes::copy_from_slice(&packed[at..msg.end]);
    let reply = reply.map(|r| own.slice(r.start - at..r.end - at));
    (
        own.slice(..subject.end - at),
        reply,
        own.slice(msg.start - at..),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_copies_only_what_may_not_pin_the_batch() {
        let buf = Bytes::from_static(b"xxsubjreplybody");
        let lens = (2, 4, 5, 4);
        let stream = [Target {
            cid: JS_CID,
            sub: 1,
        }];
        for pin in [true, false] {
            let (s, r, m) = unpack(&buf, lens, &stream, pin);
            assert_eq!(
                (&s[..], r.as_deref(), &m[..]),
                (&b"subj"[..], Some(&b"reply"[..]), &b"body"[..])
            );
            let inside = buf.as_ptr_range().contains(&s.as_ptr());
            assert_eq!(inside, pin, "pin {pin}");
        }
        assert_eq!(
            unpack_slices(&buf, (2, 4, u32::MAX, 9)),
            (&b"subj"[..], None, &b"replybody"[..])
        );
    }
}
