//! `ShardMsg`: the only data that crosses between shards, carried in `Batch`es over
//! the data mesh, and `BarrierAck` over the reply mesh. Everything here is owned and
//! `Send` (`Bytes`, integers, owned configs); nothing borrows shard state.
//!
//! Each variant says who sends it and who receives it. Nothing is ever dropped
//! on the way (a full channel suspends the sender), except by a shard that is
//! stopping: see `Mesh::flush`.

use bytes::Bytes;

use crate::js::types::catalog::{CatalogEntry, GatherAsk, GatherPart};
use crate::js::types::errors::ApiError;

/// Connection id of JetStream's internal subscriptions (never a client's: client
/// ids start at `shards`). Their `SubKey::sub` is a stream uid plus a kind bit.
pub const JS_CID: u64 = 0;
/// Kind bit of a stream's direct-get subscriptions.
pub const DIRECT_BIT: u32 = 0x8000_0000;
/// Kind bit of a stream's pull requests (`CONSUMER.MSG.NEXT`).
pub const NEXT_BIT: u32 = 0x4000_0000;
/// Kind bit of a stream's acks (`$JS.ACK.<stream>.>`).
pub const ACK_BIT: u32 = 0x2000_0000;
/// Kind bit of a stream's flow-control answers (`$JS.FC.<stream>.>`).
pub const FC_BIT: u32 = 0x1000_0000;
/// The stream uid part of an internal `SubKey::sub`.
pub const UID_MASK: u32 = 0x0FFF_FFFF;
/// Kind of a link's subscriptions for an external origin (its consumer's
/// answer inbox and deliver subject): the low bits are a subscription id on
/// the target's owner, not a stream uid.
pub const LINK_KIND: u32 = DIRECT_BIT | NEXT_BIT;
/// Kind bit of a leaf connection's subscriptions (the interest its peer
/// advertised; `cid` is then the connection's, never `JS_CID`).
pub const LEAF_SUB: u32 = 0x8000_0000;
/// With `LEAF_SUB`: we play the hub on that leaf connection.
pub const HUB_SUB: u32 = 0x4000_0000;

/// Whether `key` is a leaf connection's interest.
pub fn is_leaf(key: &SubKey) -> bool {
    key.cid != JS_CID && key.sub & LEAF_SUB != 0
}

/// Whether delivery target `t` is a leaf connection's interest.
pub fn is_leaf_target(t: &Target) -> bool {
    t.cid != JS_CID && t.sub & LEAF_SUB != 0
}

/// The kind part of an internal `SubKey::sub`.
pub const KIND_MASK: u32 = !UID_MASK;

/// Whether internal subscription `sub` stores what it receives (a stream's own
/// subjects, no kind bit): its receiver keeps the message until it is written.
pub fn stores(sub: u32) -> bool {
    sub & !UID_MASK == 0
}

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

impl Target {
    /// Whether it stores what it receives (a stream's own subjects), keeping
    /// the message until its write commits.
    pub fn stores(&self) -> bool {
        self.cid == JS_CID && stores(self.sub)
    }
}

/// What one shard sends another, in a `Batch`. Every variant larger than
/// `Packed` is boxed: a batch holds a `ShardMsg` per message, which the
/// receiving core reads from memory the sending core wrote (cache misses by
/// the line).
#[derive(Debug)]
pub enum ShardMsg {
    /// Sent by the shard owning a connection to every other shard when it
    /// subscribes; the receiver adds the key to its interest replica.
    Sub(Box<Interest>),
    /// Counterpart of `Sub` (UNSUB, auto-unsubscribe reached, connection closed).
    Unsub(Box<Interest>),
    /// A published message too long to pack (over `MESH_PACK_MAX`), for
    /// subscriptions on the receiving shard: once per publish per shard (a
    /// publish made while routing it, such as a stream's reply, may make the
    /// rest of its targets take another).
    Deliver(Box<Delivery>),
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
    /// A `$JS.API` request (as the client sent it) for the receiving shard to
    /// answer: it owns the stream, or coordinates the catalogue.
    Api(Box<ApiRequest>),
    /// JetStream control between shards.
    Js(Box<JsCmd>),
    /// Shard serving monitoring → every other shard: answer gather `id`.
    Stats {
        id: u64,
        ask: crate::shard::stats::StatsAsk,
    },
    /// The answer, back to the shard that asked.
    StatsPart {
        id: u64,
        part: Box<crate::shard::stats::StatsPart>,
    },
    /// A message for leaf connection `cid` on the receiving shard, matched
    /// on `matched` (its LMSG subject), shown with `subject` (a JetStream
    /// delivery's stored subject), for the far side's `queues`.
    Leaf(Box<LeafDelivery>),
    /// Asks the receiver to confirm (on the reply mesh) that it applied everything
    /// this shard sent before; lets PONG mean "your SUBs are in force everywhere".
    Barrier { cid: u64 },
    /// A connection's old shard → every other shard: it moves to `to` (see
    /// `router::moving`). Each receiver moves its subscriptions there in its
    /// replica, then answers `MoveAck`; `to` gets the socket with it.
    Move(Box<Move>),
    /// The answer to `Move`, on the data mesh: everything the receiver sent
    /// to the connection's old shard before it is ahead of this.
    MoveAck { cid: u64 },
    /// Old shard → new, once every peer answered and the connection's queue
    /// there is written: its state; it starts reading on the new shard.
    Arrive(Box<Arrive>),
}

/// See `ShardMsg::Sub`.
#[derive(Debug)]
pub struct Interest {
    pub key: SubKey,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
}

impl ShardMsg {
    /// `Sub` (`add`) or `Unsub` of `key` on `subject` and `queue`.
    pub fn interest(add: bool, key: SubKey, subject: &Bytes, queue: Option<&Bytes>) -> ShardMsg {
        let i = Box::new(Interest {
            key,
            subject: subject.clone(),
            queue: queue.cloned(),
        });
        if add {
            ShardMsg::Sub(i)
        } else {
            ShardMsg::Unsub(i)
        }
    }
}

/// See `ShardMsg::Deliver`; `targets` indexes `Batch::targets`.
#[derive(Debug)]
pub struct Delivery {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub hdr_len: Option<u32>,
    pub msg: Bytes,
    pub targets: (u32, u32),
}

/// See `ShardMsg::Move`.
#[derive(Debug)]
pub struct Move {
    pub cid: u64,
    pub to: u16,
    pub subs: Vec<MovedSub>,
    /// Only in the message to `to`.
    pub socket: Option<MovedSocket>,
}

/// One subscription of a moving connection (`SubKey::sub`, its subject and
/// queue group).
#[derive(Debug, Clone)]
pub struct MovedSub {
    pub sub: u32,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
}

/// A moving connection's socket (a duplicate of the old shard's
/// descriptor) and what its new `Conn` is made with.
#[derive(Debug)]
pub struct MovedSocket {
    pub fd: std::os::fd::OwnedFd,
    pub peer: String,
    pub ip: String,
    pub start: i64,
    pub last_activity: i64,
    pub rtt: std::time::Duration,
    pub ping_sent: Option<std::time::Instant>,
    /// The INFO's nonce, which an NKey user signed (checked again on reload).
    pub nonce: Option<String>,
}

/// See `ShardMsg::Arrive`. `state` is the connection's `net::conn::ConnState`
/// (a layer above this one, so carried as `Any` and taken back by the
/// receiver); `out_msgs` and `out_bytes` its monitoring counters.
#[derive(Debug)]
pub struct Arrive {
    pub cid: u64,
    pub state: Box<dyn std::any::Any + Send>,
    /// The connection's TLS session (None: plaintext).
    pub tls: Option<rustls::Connection>,
    pub out_msgs: u64,
    pub out_bytes: u64,
}

/// See `ShardMsg::Leaf`.
#[derive(Debug)]
pub struct LeafDelivery {
    pub cid: u64,
    pub matched: Bytes,
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub hdr_len: Option<u32>,
    pub msg: Bytes,
    pub queues: Vec<Bytes>,
}

/// A `$JS.API.` request: subject, reply, and the client's message (headers
/// then body). `reply` is empty when the client gave none.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub subject: Bytes,
    pub reply: Bytes,
    pub hdr_len: Option<u32>,
    pub msg: Bytes,
}

impl ApiRequest {
    /// The request body (after the header block).
    pub fn body(&self) -> Bytes {
        self.msg.slice(self.hdr_len.unwrap_or(0) as usize..)
    }
    /// The header block, if any.
    pub fn headers(&self) -> Option<&[u8]> {
        self.hdr_len.map(|h| &self.msg[..h as usize])
    }
}

/// JetStream commands between shards. Shard 0 coordinates the catalogue; a
/// stream's owner acts on it. A command sent to the sending shard itself is
/// handled at once, without the mesh.
#[derive(Debug)]
pub enum JsCmd {
    /// Coordinator → every other shard: stream `name` is now `entry` in the
    /// catalogue (None: removed).
    Catalog {
        name: String,
        entry: Option<Box<CatalogEntry>>,
    },
    /// Coordinator → owner: create this stream and answer `reply`.
    Create {
        entry: Box<CatalogEntry>,
        reply: Bytes,
    },
    /// Coordinator → owner: a create with the stream's exact config; answer
    /// `reply` with its info.
    CreateSame { name: String, reply: Bytes },
    /// Coordinator → owner: apply the config in `entry`; answer `reply`.
    Update {
        entry: Box<CatalogEntry>,
        reply: Bytes,
    },
    /// Coordinator → owner: delete stream `name`; answer `reply`.
    Delete { name: String, reply: Bytes },
    /// Owner → coordinator: stream `name` is gone (its create failed, or it
    /// was deleted and its files removed): forget it, the name is free again.
    Forget { name: String },
    /// Coordinator → every other shard: answer gather `id`.
    Gather { id: u64, ask: GatherAsk },
    /// Any shard → coordinator: its part of gather `id`.
    GatherPart { id: u64, part: GatherPart },
    /// A target's link → the origin's owner: open (or reopen) a tap.
    TapOpen(Box<TapOpen>),
    /// Origin → target: the tap is open; data follows (in order, on the same
    /// channel). `origin` is the origin's uid, for credits.
    TapOpened {
        tap: TapKey,
        origin: u32,
        ident: String,
    },
    /// Origin → target: messages (in origin order), or none (a heartbeat),
    /// and how many matching messages follow them in the origin.
    TapData {
        tap: TapKey,
        batch: TapBatch,
        pending: u64,
    },
    /// Target → origin: the target committed up to origin sequence `stored`
    /// (a work-queue or interest origin may let those go) and takes `msgs`
    /// and `bytes` more.
    TapCredit {
        origin: u32,
        tap: TapKey,
        stored: u64,
        msgs: u32,
        bytes: u64,
    },
    /// Target → origin: the link is gone (source removed, target deleted).
    TapClose { origin: u32, tap: TapKey },
    /// The shard of a leaf connection that came up → every other shard.
    LeafUp,
    /// Origin → target: the tap could not open, or ended (the origin was
    /// deleted, or is another stream than the one the link knew).
    TapError {
        tap: TapKey,
        error: ApiError,
        /// The origin's identity, when it exists but is not the one asked for.
        ident: Option<String>,
    },
}

/// One link of a target stream (its mirror, or one of its sources) wherever
/// it is referred to: the target's shard and uid, the link's number, and the
/// generation of its tap (each reopen takes the next, so a late message of
/// an earlier tap is recognised and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TapKey {
    pub shard: u16,
    pub uid: u32,
    pub link: u32,
    pub gen: u32,
}

/// Where a tap starts when the target has no position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapStart {
    /// At this origin sequence (the target's position + 1, or opt_start_seq).
    Seq(u64),
    /// At the first message at or after this time (opt_start_time).
    Time(i64),
    /// At the origin's first message.
    First,
}

/// A request to open a tap on origin stream `origin`.
#[derive(Debug, Clone)]
pub struct TapOpen {
    pub origin: String,
    pub tap: TapKey,
    /// The link's index name (the origin keeps one tap per target and name).
    pub iname: String,
    pub start: TapStart,
    /// Subjects the tap delivers (none: all).
    pub filters: Vec<String>,
    /// The origin's identity the target's position belongs to (empty: none).
    pub ident: String,
    /// The first credit: messages and bytes the target takes before it
    /// grants more.
    pub msgs: u32,
    pub bytes: u64,
}

/// Messages of one tap batch, copied back to back into one buffer (one
/// allocation per batch; nothing shared between cores per message).
#[derive(Debug, Default)]
pub struct TapBatch {
    pub buf: Bytes,
    pub items: Vec<TapItem>,
}

/// One message of a `TapBatch`: its origin sequence and time, and the lengths
/// of its subject, header block and payload, back to back from `at`.
#[derive(Debug, Clone, Copy)]
pub struct TapItem {
    pub seq: u64,
    pub ts: i64,
    pub at: u32,
    pub subject_len: u32,
    pub hdr_len: u32,
    pub len: u32,
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
    /// Bytes of `packed` taken by messages that a stream stores (each counted
    /// once): whether the receiver lets streams keep slices of `packed`.
    pub stored_bytes: usize,
    /// Payload bytes held, to bound batch size.
    pub bytes: usize,
}

/// Reply-mesh message: a `Barrier` for connection `cid` was applied by one peer.
#[derive(Debug, Clone, Copy)]
pub struct BarrierAck {
    pub cid: u64,
}

// Channel memory grows with this enum: keep it small.
const _: () = assert!(std::mem::size_of::<ShardMsg>() <= 40);
