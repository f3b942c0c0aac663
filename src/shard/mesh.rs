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
use crate::shard::msg::{self, BarrierAck, Batch, ShardMsg, Target, JS_CID};

pub struct Mesh {
    id: u16,
    data_tx: Senders<Batch>,
    ack_tx: Senders<BarrierAck>,
    open: RefCell<Vec<Batch>>,
    /// Per peer: (publish number, index in `msgs`) of the Deliver that the current
    /// publish is adding targets to, and whether a storing target of it was
    /// counted in `Batch::stored_bytes`.
    current: RefCell<Vec<Option<(u64, usize, bool)>>>,
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
        let batch = &mut open[usize::from(peer)];
        let mut current = self.current.borrow_mut();
        let slot = &mut current[usize::from(peer)];
        let (index, counted) = match *slot {
            Some((s, index, counted)) if s == seq => (index, counted),
            _ => {
                let start = batch.targets.len() as u32;
                let before = batch.packed.len();
                let mut msg = make(&mut batch.packed);
                match &mut msg {
                    ShardMsg::Deliver(d) => {
                        d.targets = (start, start);
                        batch.bytes += d.msg.len();
                    }
                    ShardMsg::Packed { targets, .. } => {
                        *targets = (start, start);
                        batch.bytes += batch.packed.len() - before;
                    }
                    _ => {}
                }
                batch.msgs.push(msg);
                (batch.msgs.len() - 1, false)
            }
        };
        let counted = count_stored(batch, index, counted, &target);
        *slot = Some((seq, index, counted));
        batch.targets.push(target);
        match batch.msgs.get_mut(index) {
            Some(ShardMsg::Deliver(d)) => d.targets.1 += 1,
            Some(ShardMsg::Packed { targets, .. }) => targets.1 += 1,
            _ => {}
        }
        is_full(batch)
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
                std::mem::replace(&mut open[peer], new_batch(self.id, peer as u16))
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

/// Adds message `index` to `batch.stored_bytes` if `target` stores it and it
/// is not `counted` yet (once per message, whatever number of streams store
/// it); whether it is counted now.
fn count_stored(batch: &mut Batch, index: usize, counted: bool, target: &Target) -> bool {
    if counted || target.cid != JS_CID || !msg::stores(target.sub) {
        return counted;
    }
    batch.stored_bytes += batch.msgs.get(index).map_or(0, ShardMsg::packed_len);
    true
}

fn is_full(batch: &Batch) -> bool {
    batch.msgs.len() >= MESH_BATCH_MSGS_MAX || batch.bytes >= MESH_BATCH_BYTES_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_counts_once_and_only_for_a_storing_target() {
        let mut batch = new_batch(0, 1);
        batch.msgs.push(ShardMsg::Packed {
            at: 0,
            subject_len: 3,
            reply_len: 5,
            hdr_len: None,
            msg_len: 10,
            targets: (0, 0),
        });
        let client = Target { cid: 9, sub: 1 };
        let stream = Target {
            cid: JS_CID,
            sub: 1,
        };
        let ack = Target {
            cid: JS_CID,
            sub: 1 | !msg::UID_MASK,
        };
        assert!(!count_stored(&mut batch, 0, false, &client));
        assert!(!count_stored(&mut batch, 0, false, &ack));
        assert_eq!(batch.stored_bytes, 0);
        assert!(count_stored(&mut batch, 0, false, &stream));
        assert_eq!(batch.stored_bytes, 18);
        // A second stream storing the same message adds nothing.
        assert!(count_stored(&mut batch, 0, true, &stream));
        assert_eq!(batch.stored_bytes, 18);
    }
}
