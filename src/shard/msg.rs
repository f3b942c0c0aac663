//! `ShardMsg`: the only data that crosses between shards, carried in `Batch`es over
//! the data mesh, and `BarrierAck` over the reply mesh. Everything here is owned and
//! `Send` (`Bytes`, integers); nothing borrows shard state.

use bytes::Bytes;

/// Identifies one subscription anywhere in the server. `cid` is unique across all
/// shards; `sub` is unique within its connection for the connection's life (sids
/// chosen by clients may be reused, these never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubKey {
    pub cid: u64,
    pub sub: u32,
    pub shard: u16,
}

/// A delivery target on the receiving shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub cid: u64,
    pub sub: u32,
}

#[derive(Debug)]
pub enum ShardMsg {
    /// Sent by the shard owning a connection to every other shard when it
    /// subscribes; the receiver adds the key to its interest replica.
    Sub {
        key: SubKey,
        subject: Bytes,
        queue: Option<Bytes>,
    },
    /// Counterpart of `Sub` (UNSUB, auto-unsubscribe reached, connection closed).
    Unsub {
        key: SubKey,
        subject: Bytes,
        queue: Option<Bytes>,
    },
    /// A published message for subscriptions on the receiving shard, sent at most
    /// once per message per shard; `targets` indexes `Batch::targets`.
    Deliver {
        subject: Bytes,
        reply: Option<Bytes>,
        hdr_len: Option<u32>,
        msg: Bytes,
        targets: (u32, u32),
    },
    /// A `Deliver` whose subject, reply and message were copied into the
    /// batch's `packed` buffer, back to back from `at`.
    Packed {
        at: u32,
        subject_len: u32,
        /// `u32::MAX`: no reply.
        reply_len: u32,
        hdr_len: Option<u32>,
        msg_len: u32,
        targets: (u32, u32),
    },
    /// A JetStream API request for the receiving shard to answer (it owns the
    /// stream, or coordinates the catalogue).
    Api {
        subject: Bytes,
        reply: Bytes,
        hdr_len: Option<u32>,
        msg: Bytes,
    },
    /// JetStream control between shards (catalogue changes, commands from the
    /// coordinator to a stream's owner, gathers); `kind` is a `js::cmd` value.
    Js {
        kind: u8,
        arg: u64,
        reply: Bytes,
        body: Bytes,
    },
    /// Asks the receiver to confirm (on the reply mesh) that it applied everything
    /// this shard sent before; lets PONG mean "your SUBs are in force everywhere".
    Barrier { cid: u64 },
}

/// Messages from one shard to another, in order. A dropped batch would lose
/// messages and interest changes, so batches are never dropped: a full channel
/// suspends the sender instead.
#[derive(Debug, Default)]
pub struct Batch {
    pub from: u16,
    pub to: u16,
    pub msgs: Vec<ShardMsg>,
    pub targets: Vec<Target>,
    /// The bytes of every `Packed` message (one allocation per batch).
    pub packed: Vec<u8>,
    /// Payload bytes held, to bound batch size.
    pub bytes: usize,
}

/// Reply-mesh message: a `Barrier` for connection `cid` was applied by one peer.
#[derive(Debug, Clone, Copy)]
pub struct BarrierAck {
    pub cid: u64,
}

// Channel memory grows with this enum: keep it small.
const _: () = assert!(std::mem::size_of::<ShardMsg>() <= 112);
