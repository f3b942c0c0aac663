//! The bounded channel mesh between shards, and per-peer batching.
//!
//! Two full meshes connect every pair of shards:
//! - data (`Batch`, capacity `MESH_CHANNEL_BATCHES`): interest changes, deliveries
//!   and barriers, in the order the sending shard produced them;
//! - replies (`BarrierAck`, capacity `MESH_ACK_CHANNEL_MSGS`): barrier confirmations.
//!   Their receivers never send, so request chains form a DAG and cannot deadlock.
//!
//! Outgoing messages collect in one open batch per peer; `flush` sends every
//! non-empty batch. A full channel suspends the flushing task (back-pressure on
//! the connection whose input produced the messages); nothing is dropped.
//! One batch per peer is on its way at a time: another flush waits for it
//! (its messages join the open batch meanwhile), so batches arrive in the
//! order they were made even when several tasks flush while a channel is full.

use std::cell::{Cell, RefCell};

use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::limits::{MESH_BATCH_BYTES_MAX, MESH_BATCH_MSGS_MAX};
use crate::shard::msg::{BarrierAck, Batch, ShardMsg, Target};

pub struct Mesh {
    id: u16,
    data_tx: Senders<Batch>,
    ack_tx: Senders<BarrierAck>,
    open: RefCell<Vec<Batch>>,
    /// Per peer: the message (`Packed` or `Deliver`) the current publish is
    /// adding targets to.
    current: RefCell<Vec<Option<Current>>>,
    publish_seq: Cell<u64>,
    /// Per peer: a flush is waiting for room in its channel.
    sending: RefCell<Vec<bool>>,
    /// Fired when such a send finished.
    sent: crate::notify::Event,
}

/// Receiving ends, handed to the shard's receiver tasks at startup.
pub struct MeshReceivers {
    pub data: Receivers<Batch>,
    pub acks: Receivers<BarrierAck>,
}

impl Mesh {
    pub fn new(data_tx: Senders<Batch>, ack_tx: Senders<BarrierAck>) -> Mesh {
        let id = data_tx.peer_id() as u16;
        assert_eq!(
            ack_tx.peer_id(),
            data_tx.peer_id(),
            "meshes must agree on shard ids"
        );
        let peers = data_tx.nr_consumers();
        Mesh {
            id,
            data_tx,
            ack_tx,
            open: RefCell::new((0..peers).map(|p| new_batch(id, p as u16)).collect()),
            current: RefCell::new(vec![None; peers]),
            publish_seq: Cell::new(0),
            sending: RefCell::new(vec![false; peers]),
            sent: Default::default(),
        }
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn peers(&self) -> usize {
        self.open.borrow().len()
    }

    /// Starts a new publish; its targets are added with the number returned,
    /// so a publish made while routing this one (a reply sent at once) does not
    /// take its targets.
    pub fn begin_publish(&self) -> u64 {
        self.publish_seq.set(self.publish_seq.get() + 1);
        self.publish_seq.get()
    }

    /// Adds `target` on shard `peer` for the current publish; the message itself
    /// is queued once per peer, on its first target.
    /// `make` may append the message's bytes to the batch's packed buffer.
    pub fn add_target(
        &self,
        peer: u16,
        seq: u64,
        target: Target,
        make: impl FnOnce(&mut Vec<u8>) -> ShardMsg,
    ) -> bool {
        let mut open = self.open.borrow_mut();
        let mut current = self.current.borrow_mut();
        let peer = usize::from(peer);
        add_target(&mut open[peer], &mut current[peer], seq, target, make)
    }

    /// Queues `msg` for every peer.
    pub fn broadcast(&self, msg: impl Fn() -> ShardMsg) -> bool {
        let mut full = false;
        for (peer, batch) in self.open.borrow_mut().iter_mut().enumerate() {
            if peer != usize::from(self.id) {
                batch.msgs.push(msg());
                full |= is_full(batch);
            }
        }
        full
    }

    /// Queues `msg` for one peer.
    pub fn push(&self, peer: u16, msg: ShardMsg) {
        self.open.borrow_mut()[usize::from(peer)].msgs.push(msg);
    }

    /// Queues `msg`, of about `bytes`, for one peer; true when its batch is full.
    pub fn push_sized(&self, peer: u16, msg: ShardMsg, bytes: usize) -> bool {
        let mut open = self.open.borrow_mut();
        let batch = &mut open[usize::from(peer)];
        batch.msgs.push(msg);
        batch.bytes += bytes;
        is_full(batch)
    }

    /// True when some batch holds messages not yet sent.
    pub fn has_open(&self) -> bool {
        self.open.borrow().iter().any(|b| !b.msgs.is_empty())
    }

    /// Sends every non-empty open batch, waiting while a channel is full.
    pub async fn flush(&self) {
        for peer in 0..self.peers() {
            if peer == usize::from(self.id) {
                continue;
            }
            // An earlier batch must go first.
            while self.sending.borrow()[peer] {
                self.sent.wait().await;
            }
            let batch = {
                let mut open = self.open.borrow_mut();
                if open[peer].msgs.is_empty() {
                    continue;
                }
                self.current.borrow_mut()[peer] = None;
                let next = new_batch_like(&open[peer]);
                std::mem::replace(&mut open[peer], next)
            };
            let _sending = Sending::new(self, peer);
            if self.data_tx.send_to(peer, batch).await.is_err() {
                // Only happens when a peer has stopped during shutdown.
                crate::debug!("shard {}: peer {peer} gone, batch dropped", self.id);
            }
        }
    }

    /// Confirms a barrier to the shard that asked.
    pub async fn ack(&self, peer: u16, cid: u64) {
        if self
            .ack_tx
            .send_to(usize::from(peer), BarrierAck { cid })
            .await
            .is_err()
        {
            crate::debug!("shard {}: peer {peer} gone, barrier ack dropped", self.id);
        }
    }
}

/// A send to one peer in progress; done when dropped (also when the
/// flushing future is dropped mid-send).
struct Sending<'a> {
    mesh: &'a Mesh,
    peer: usize,
}

impl<'a> Sending<'a> {
    fn new(mesh: &'a Mesh, peer: usize) -> Self {
        mesh.sending.borrow_mut()[peer] = true;
        Sending { mesh, peer }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.mesh.sending.borrow_mut()[self.peer] = false;
        self.mesh.sent.notify_all();
    }
}

fn new_batch(from: u16, to: u16) -> Batch {
    Batch {
        from,
        to,
        ..Batch::default()
    }
}

/// The batch that follows `sent` to the same peer, with room for as much:
/// under load, batches fill alike, and growing its vectors from empty cost
/// ~3% of the CPU in reallocations (pubsub128 across shards). Bounded as
/// batches are (`is_full`). `packed` starts empty after a batch that sent
/// streams anything: the receiver lets streams pin it only when they take
/// at least half its capacity, which room left over would defeat.
fn new_batch_like(sent: &Batch) -> Batch {
    let packed = if sent.stored_bytes == 0 {
        sent.packed.len()
    } else {
        0
    };
    Batch {
        from: sent.from,
        to: sent.to,
        msgs: Vec::with_capacity(sent.msgs.len()),
        targets: Vec::with_capacity(sent.targets.len()),
        packed: Vec::with_capacity(packed),
        ..Batch::default()
    }
}

/// The message of one peer's open batch that a publish is adding targets to.
#[derive(Clone, Copy)]
struct Current {
    /// The publish (`Mesh::begin_publish`).
    seq: u64,
    /// Its index in `Batch::msgs`.
    index: usize,
    /// Bytes it took in `Batch::packed` (0 for a `Deliver`).
    packed: usize,
    /// Whether a stream among its targets was counted in `Batch::stored_bytes`.
    stored: bool,
}

/// `Mesh::add_target` on one peer's open batch and its current message.
fn add_target(
    batch: &mut Batch,
    slot: &mut Option<Current>,
    seq: u64,
    target: Target,
    make: impl FnOnce(&mut Vec<u8>) -> ShardMsg,
) -> bool {
    let mut cur = match *slot {
        Some(c) if c.seq == seq => c,
        _ => {
            let start = batch.targets.len() as u32;
            let before = batch.packed.len();
            let mut msg = make(&mut batch.packed);
            let packed = batch.packed.len() - before;
            match &mut msg {
                ShardMsg::Deliver(d) => {
                    d.targets = (start, start);
                    batch.bytes += d.msg.len();
                }
                ShardMsg::Packed { targets, .. } => {
                    *targets = (start, start);
                    batch.bytes += packed;
                }
                _ => {}
            }
            batch.msgs.push(msg);
            Current {
                seq,
                index: batch.msgs.len() - 1,
                packed,
                stored: false,
            }
        }
    };
    // Counted once per message, whatever number of streams store it.
    if !cur.stored && target.stores() {
        batch.stored_bytes += cur.packed;
        cur.stored = true;
    }
    *slot = Some(cur);
    batch.targets.push(target);
    match batch.msgs.get_mut(cur.index) {
        Some(ShardMsg::Deliver(d)) => d.targets.1 += 1,
        Some(ShardMsg::Packed { targets, .. }) => targets.1 += 1,
        _ => {}
    }
    is_full(batch)
}

fn is_full(batch: &Batch) -> bool {
    batch.msgs.len() >= MESH_BATCH_MSGS_MAX || batch.bytes >= MESH_BATCH_BYTES_MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::msg::{ACK_BIT, JS_CID, LINK_KIND};

    /// Packs `len` bytes as one message with no reply.
    fn pack(len: u32) -> impl FnOnce(&mut Vec<u8>) -> ShardMsg {
        move |packed: &mut Vec<u8>| {
            let at = packed.len() as u32;
            packed.resize(packed.len() + len as usize, b'x');
            ShardMsg::Packed {
                at,
                subject_len: 1,
                reply_len: u32::MAX,
                hdr_len: None,
                msg_len: len - 1,
                targets: (0, 0),
            }
        }
    }

    #[test]
    fn the_next_batch_has_room_for_as_much_as_the_last_and_starts_empty() {
        let mut sent = new_batch(0, 1);
        let mut slot = None;
        for seq in 0..100 {
            add_target(
                &mut sent,
                &mut slot,
                seq,
                Target { cid: 9, sub: 1 },
                pack(50),
            );
        }
        let next = new_batch_like(&sent);
        assert_eq!((next.from, next.to), (0, 1));
        assert!(next.msgs.is_empty() && next.targets.is_empty() && next.packed.is_empty());
        assert!(next.msgs.capacity() >= 100 && next.targets.capacity() >= 100);
        assert!(next.packed.capacity() >= sent.packed.len());
        assert_eq!((next.bytes, next.stored_bytes), (0, 0));
        // After a batch that sent a stream anything, `packed` starts empty.
        let stream = Target {
            cid: JS_CID,
            sub: 1,
        };
        add_target(&mut sent, &mut slot, 100, stream, pack(50));
        assert!(sent.stored_bytes > 0);
        assert_eq!(new_batch_like(&sent).packed.capacity(), 0);
    }

    #[test]
    fn bytes_for_streams_count_once_per_message() {
        let mut batch = new_batch(0, 1);
        let mut slot = None;
        let client = Target { cid: 9, sub: 1 };
        let stream = |uid| Target {
            cid: JS_CID,
            sub: uid,
        };
        let ack = Target {
            cid: JS_CID,
            sub: 1 | ACK_BIT,
        };
        let link = Target {
            cid: JS_CID,
            sub: 1 | LINK_KIND,
        };
        // Publish 1: a client, two streams: its 10 bytes count once.
        add_target(&mut batch, &mut slot, 1, client, pack(10));
        add_target(&mut batch, &mut slot, 1, stream(1), pack(99));
        add_target(&mut batch, &mut slot, 1, stream(2), pack(99));
        assert_eq!((batch.msgs.len(), batch.targets.len()), (1, 3));
        assert_eq!(batch.stored_bytes, 10);
        // Publish 2 (an ack, a link's copy) stores nothing.
        add_target(&mut batch, &mut slot, 2, ack, pack(20));
        add_target(&mut batch, &mut slot, 2, link, pack(20));
        assert_eq!(batch.stored_bytes, 10);
        // Publish 3, made while publish 2 was routed (a reply): a message of
        // its own; then publish 2 again starts another copy for its stream.
        add_target(&mut batch, &mut slot, 3, stream(1), pack(7));
        add_target(&mut batch, &mut slot, 2, stream(1), pack(20));
        assert_eq!(batch.stored_bytes, 10 + 7 + 20);
        assert_eq!(batch.packed.len(), 10 + 20 + 7 + 20);
        assert!(matches!(
            batch.msgs[0],
            ShardMsg::Packed {
                targets: (0, 3),
                ..
            }
        ));
        assert!(matches!(
            batch.msgs[1],
            ShardMsg::Packed {
                targets: (3, 5),
                ..
            }
        ));
        // A message too long to pack takes no packed bytes.
        let long = |_: &mut Vec<u8>| {
            ShardMsg::Deliver(Box::new(crate::shard::msg::Delivery {
                subject: bytes::Bytes::from_static(b"s"),
                reply: None,
                hdr_len: None,
                msg: bytes::Bytes::from(vec![0; 20_000]),
                targets: (0, 0),
            }))
        };
        add_target(&mut batch, &mut slot, 4, stream(1), long);
        assert_eq!(batch.stored_bytes, 37);
        assert_eq!(batch.bytes, 10 + 20 + 7 + 20 + 20_000);
    }
}
