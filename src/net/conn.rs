//! One client connection's shared state (`Conn`): its socket, outbound queue,
//! subscriptions and options, and how it is closed. The tasks that drive it are
//! in `net::session`.
//!
//! A connection lives on the shard that accepted it, for its whole life. Its read
//! loop, write loop and ping timer are three tasks on that shard sharing one
//! `Rc<Conn>`; no borrow of its `RefCell`s is held across an await.
//!
//! Closing: whoever decides to close (parser error, stale ping, slow consumer,
//! shutdown) marks the outbound queue closing (or discarding) and shuts the socket's
//! read side; the read loop then ends and removes the connection's interest, and
//! the write loop flushes what is queued (unless discarding) and shuts the socket.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use glommio::net::TcpStream;

use crate::limits::STALL_WAIT_MAX;
use crate::net::outbound::Outbound;
use crate::notify::Notify;
use crate::protocol::connect::ConnectOpts;

/// Why a connection is being closed; logged at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ProtocolError,
    StaleConnection,
    SlowConsumer,
    WriteError,
    ServerShutdown,
    MaxConnectionsExceeded,
    AuthViolation,
    AuthTimeout,
}

/// A subscription owned by this connection.
#[derive(Debug)]
pub struct LocalSub {
    pub sid: Bytes,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    /// A wildcard overlapping the user's subscribe deny list: each delivery
    /// is checked against it.
    pub check_deny: bool,
    /// Auto-unsubscribe after this many deliveries (`UNSUB <sid> <max>`).
    pub max: Option<u64>,
    pub delivered: u64,
}

/// Per-connection protocol state, touched only by this shard.
#[derive(Debug, Default)]
pub struct ConnState {
    pub opts: ConnectOpts,
    pub connected: bool,
    pub subs: AHashMap<u32, LocalSub>,
    pub sids: AHashMap<Bytes, u32>,
    pub next_sub: u32,
    pub pings_out: u32,
    /// The client sent something other than PONG since the last ping tick; the
    /// server skips its PING then, as nats-server does.
    pub active: bool,
    /// The second INFO (`connect_info`) went out after the first PONG.
    pub info_resent: bool,
    pub close_reason: Option<CloseReason>,
    /// Messages the client published, and their payload bytes (headers
    /// included), for monitoring.
    pub in_msgs: u64,
    pub in_bytes: u64,
    /// The authenticated user's permissions (None: no restrictions), and
    /// its name (empty without authentication).
    pub perms: Option<crate::auth::perms::ConnPerms>,
    pub user: String,
}

pub struct Conn {
    pub cid: u64,
    pub stream: RefCell<TcpStream>,
    pub out: RefCell<Outbound>,
    pub st: RefCell<ConnState>,
    /// Wakes the write loop when output is queued or the connection closes.
    pub wake_writer: Notify,
    /// Barrier acknowledgements received, and the wake-up for the read loop.
    pub barrier_acks: Cell<usize>,
    pub barrier_done: Notify,
    /// A SUB/UNSUB or a published message went to peers since the last PONG:
    /// the next PONG waits for a barrier, so that it means what it means on
    /// nats-server (interest in force, and every message published before it
    /// queued to its subscribers, on every shard).
    pub peers_behind: Cell<bool>,
    /// Fired once, when the connection starts closing (its timer tasks end).
    pub closed: crate::notify::Event,
    /// Fired by the write loop when its queue fell back under the stall
    /// threshold (and at close): stalled producers go on at once.
    pub drained: crate::notify::Event,
    /// Connection whose queue passed the stall threshold while this one produced.
    pub stalled_on: Cell<Option<u64>>,
    /// Stream (uid, on this shard) whose ingest queue passed its stall threshold.
    pub stalled_stream: Cell<Option<u32>>,
    pub peer: String,
    pub ip: String,
    /// For monitoring: when it was accepted and last read from (Unix ns),
    /// and the round trip of the server's last answered PING (zero: none yet).
    pub start: i64,
    pub last_activity: Cell<i64>,
    pub rtt: Cell<Duration>,
    /// When the server's oldest unanswered PING went out.
    pub ping_sent: Cell<Option<Instant>>,
    /// The nonce sent in INFO for NKey users to sign.
    pub nonce: Option<String>,
    /// The TLS session once the handshake is done (None: plaintext); a
    /// client session only on a leaf connection we dialled.
    pub tls: Option<RefCell<rustls::Connection>>,
    /// A leaf connection's state (None: a client).
    pub link: Option<RefCell<crate::net::link::LinkState>>,
}

impl Conn {
    pub fn new(cid: u64, stream: TcpStream, cap: usize, peer: String, ip: String) -> Conn {
        let now = crate::shard::stats::unix_nanos(std::time::SystemTime::now());
        Conn {
            cid,
            stream: RefCell::new(stream),
            out: RefCell::new(Outbound::new(cap)),
            st: RefCell::new(ConnState::default()),
            wake_writer: Notify::new(),
            barrier_acks: Cell::new(0),
            barrier_done: Notify::new(),
            peers_behind: Cell::new(false),
            closed: Default::default(),
            drained: Default::default(),
            stalled_on: Cell::new(None),
            stalled_stream: Cell::new(None),
            peer,
            ip,
            start: now,
            last_activity: Cell::new(now),
            rtt: Cell::new(Duration::ZERO),
            ping_sent: Cell::new(None),
            nonce: None,
            tls: None,
            link: None,
        }
    }

    /// Queues raw protocol bytes and wakes the writer.
    pub fn send(&self, bytes: &[u8]) {
        self.out.borrow_mut().push(bytes);
        self.wake_writer.notify();
    }

    /// Sends a PING, timing the round trip when none is being timed.
    pub fn ping(&self) {
        if self.ping_sent.get().is_none() {
            self.ping_sent.set(Some(Instant::now()));
        }
        self.send(crate::protocol::ops::PING);
    }

    /// The client answered a PING.
    pub fn ponged(&self) {
        if let Some(t) = self.ping_sent.take() {
            self.rtt.set(t.elapsed());
        }
    }

    /// Queues `-ERR '<text>'`.
    pub fn send_err(&self, text: &str) {
        self.out.borrow_mut().push_err(text);
        self.wake_writer.notify();
    }

    pub fn is_closing(&self) -> bool {
        self.st.borrow().close_reason.is_some()
    }

    /// Closes after flushing what is queued. Safe to call more than once.
    pub fn close(&self, reason: CloseReason) {
        if self.mark_closing(reason) {
            self.shutdown_socket(libc::SHUT_RD);
        }
    }

    /// Closes at once, dropping queued output (slow consumer, failed write).
    pub fn kill(&self, reason: CloseReason) {
        {
            let mut out = self.out.borrow_mut();
            out.discard = true;
            out.buf = Vec::new();
        }
        self.mark_closing(reason);
        self.shutdown_socket(libc::SHUT_RDWR);
    }

    fn mark_closing(&self, reason: CloseReason) -> bool {
        let first = {
            let mut st = self.st.borrow_mut();
            let first = st.close_reason.is_none();
            if first {
                st.close_reason = Some(reason);
            }
            first
        };
        self.out.borrow_mut().closing = true;
        self.wake_writer.notify();
        if first {
            self.closed.notify_all();
        }
        self.drained.notify_all();
        first
    }

    pub(crate) fn shutdown_socket(&self, how: libc::c_int) {
        let fd = self.stream.borrow().as_raw_fd();
        // SAFETY: the fd belongs to `self.stream`, which lives as long as `self`.
        unsafe {
            libc::shutdown(fd, how);
        }
    }
}

/// What the read loop must do after an op.
pub enum Flow {
    Continue,
    /// A batch to a peer is full: send it before reading on.
    FlushMesh,
    /// PING after an interest change: wait for the barrier, then PONG.
    Barrier,
    Close,
}

/// Pauses a producer while `target`'s queue is over the stall threshold, for at
/// most `STALL_WAIT_MAX`; woken when the write loop drains it.
pub async fn stall_while_full(target: &Conn) {
    let start = Instant::now();
    while target.out.borrow().over_stall_threshold() && !target.is_closing() {
        let left = STALL_WAIT_MAX.saturating_sub(start.elapsed());
        if left.is_zero() {
            return;
        }
        futures_lite::future::or(target.drained.wait(), glommio::timer::sleep(left)).await;
    }
}
