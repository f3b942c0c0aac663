//! One client connection's shared state (`Conn`): its socket, outbound queue,
//! subscriptions and options, and how it is closed. The tasks that drive it are
//! in `net::session`.
//!
//! A connection is served on one shard at a time: the one that accepted it,
//! until it moves (`router::moving`). Its read loop, write loop and ping timer
//! are three tasks on that shard sharing one `Rc<Conn>`; no borrow of its
//! `RefCell`s is held across an await.
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

use crate::limits::{
    MOVE_BUSY_READS, MOVE_COOLDOWN, MOVE_READS, MOVE_READS_YIELD, MOVE_READ_PUBS_MAX,
    STALL_WAIT_MAX,
};
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

/// Where a connection is in a move between shards (`router::moving`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Moving {
    /// Served here.
    #[default]
    Home,
    /// Old shard: reading stopped, peers moving its interest, queue draining.
    Leaving,
    /// Old shard: handed over; its tasks here end.
    Gone,
    /// New shard: socket here, state not yet; deliveries are staged.
    Arriving,
}

/// What a connection's publishes reached, read by read, to decide a move.
#[derive(Debug, Clone, Copy)]
pub struct Aim {
    /// Publishes in the current read, and where they went: `NOWHERE` yet,
    /// one peer shard, or `MIXED` (this shard, or more than one).
    pub pubs: u32,
    pub dest: u16,
    /// A client connection newer than this one was among the targets.
    pub newer: bool,
    /// A client or leaf connection (not JetStream) was among the targets.
    pub clients: bool,
    /// The run of reads whose publishes all went to shard `run_to` only;
    /// `busy`: some had more than `MOVE_READ_PUBS_MAX`, all to JetStream (it
    /// stays so for the rest of the run: it moves sooner, onto room only).
    pub run_to: u16,
    pub run: u32,
    pub busy: bool,
    /// When it last moved (None: never).
    pub moved_at: Option<Instant>,
}

impl Aim {
    pub const NOWHERE: u16 = u16::MAX;
    pub const MIXED: u16 = u16::MAX - 1;
}

impl Aim {
    /// Ends a read: its publishes extend the run or break it. Returns the
    /// shard to move to once the run is long enough (`MOVE_READS`; toward
    /// a newer client, `MOVE_READS_YIELD`) and no move was made lately, and
    /// whether the run was busy (the new shard must have room for it).
    pub fn end_read(&mut self) -> Option<(u16, bool)> {
        let (pubs, dest, newer, clients) = (self.pubs, self.dest, self.newer, self.clients);
        (self.pubs, self.dest, self.newer, self.clients) = (0, Aim::NOWHERE, false, false);
        if pubs == 0 || dest == Aim::NOWHERE {
            return None; // nothing published, or nothing listened
        }
        let busy = pubs > MOVE_READ_PUBS_MAX;
        if (busy && clients) || dest == Aim::MIXED {
            (self.run, self.busy) = (0, false);
            return None;
        }
        if dest != self.run_to {
            (self.run_to, self.run, self.busy) = (dest, 0, false);
        }
        self.run = self.run.saturating_add(1);
        self.busy |= busy;
        let need = match (newer, self.busy) {
            (true, _) => MOVE_READS_YIELD,
            (false, true) => MOVE_BUSY_READS,
            (false, false) => MOVE_READS,
        };
        if self.run < need {
            return None;
        }
        if self.moved_at.is_some_and(|t| t.elapsed() < MOVE_COOLDOWN) {
            return None;
        }
        Some((dest, self.busy))
    }
}

impl Default for Aim {
    fn default() -> Self {
        Aim {
            pubs: 0,
            dest: Aim::NOWHERE,
            newer: false,
            clients: false,
            run_to: Aim::NOWHERE,
            run: 0,
            busy: false,
            moved_at: None,
        }
    }
}

/// Deliveries to an arriving connection, held in order until its state
/// comes (at most `max_pending` bytes; past that it is a slow consumer).
#[derive(Debug, Default)]
pub struct Staged {
    pub buf: Vec<u8>,
    pub items: Vec<StagedMsg>,
    pub overflow: bool,
}

/// One staged delivery: its subscription, and the lengths of its subject,
/// reply, header block and message, back to back in `Staged::buf`.
#[derive(Debug, Clone, Copy)]
pub struct StagedMsg {
    pub sub: u32,
    pub subject: u32,
    pub reply: Option<u32>,
    pub hdr_len: Option<usize>,
    pub msg: u32,
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
    /// The `Server::auth_gen` its user and permissions were last checked
    /// against (a connection that moved during a reload is checked again).
    pub auth_gen: u64,
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
    /// client session only on a leaf connection we dialled. Taken out when
    /// the connection moves to another shard, which goes on with it.
    pub tls: RefCell<Option<rustls::Connection>>,
    /// A leaf connection's state (None: a client).
    pub link: Option<RefCell<crate::net::link::LinkState>>,
    /// Moves between shards: where it is in one, what its publishes reach,
    /// and what arrived for it before its state did.
    pub moving: Cell<Moving>,
    pub aim: Cell<Aim>,
    pub staged: RefCell<Staged>,
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
            tls: RefCell::new(None),
            link: None,
            moving: Cell::new(Moving::Home),
            aim: Cell::new(Aim::default()),
            staged: RefCell::new(Staged::default()),
        }
    }

    /// One of this read's publishes reached shard `to` (`Aim::MIXED`: this
    /// one), for connection `cid` (`JS_CID`: JetStream or a leaf connection,
    /// never newer), a client or leaf connection when `client`.
    pub fn aim_at(&self, to: u16, cid: u64, client: bool) {
        let mut a = self.aim.get();
        a.dest = if a.dest == Aim::NOWHERE || a.dest == to {
            to
        } else {
            Aim::MIXED
        };
        a.newer |= cid > self.cid;
        a.clients |= client;
        self.aim.set(a);
    }

    /// The client published once more in this read.
    pub fn count_pub(&self) {
        let mut a = self.aim.get();
        a.pubs = a.pubs.saturating_add(1);
        self.aim.set(a);
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

    /// Closing, or moved to another shard: its tasks here end.
    pub fn is_closing(&self) -> bool {
        self.moving.get() == Moving::Gone || self.st.borrow().close_reason.is_some()
    }

    /// Closes after flushing what is queued. Safe to call more than once.
    /// A connection that moved away is closed by its new shard, not here.
    pub fn close(&self, reason: CloseReason) {
        if self.moving.get() == Moving::Gone {
            return;
        }
        if self.mark_closing(reason) {
            self.shutdown_socket(libc::SHUT_RD);
        }
    }

    /// Closes at once, dropping queued output (slow consumer, failed write).
    pub fn kill(&self, reason: CloseReason) {
        if self.moving.get() == Moving::Gone {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ends `n` reads of `pubs` publishes each, all to a client on `to`
    /// (`newer`: a newer one); the shard the last one says to move to.
    fn reads(aim: &mut Aim, n: u32, pubs: u32, to: u16, newer: bool) -> Option<u16> {
        run(aim, n, pubs, to, newer, true).map(|(to, _)| to)
    }

    /// `reads`, to a client (`clients`) or to JetStream; with whether the run
    /// was busy.
    fn run(
        aim: &mut Aim,
        n: u32,
        pubs: u32,
        to: u16,
        newer: bool,
        clients: bool,
    ) -> Option<(u16, bool)> {
        let mut last = None;
        for _ in 0..n {
            (aim.pubs, aim.dest, aim.newer, aim.clients) = (pubs, to, newer, clients);
            last = aim.end_read();
        }
        last
    }

    #[test]
    fn busy_reads_all_to_jetstream_move_as_a_busy_run() {
        let busy = MOVE_READ_PUBS_MAX + 1;
        let mut aim = Aim::default();
        assert_eq!(
            run(&mut aim, MOVE_BUSY_READS - 1, busy, 2, false, false),
            None
        );
        assert_eq!(run(&mut aim, 1, 1, 2, false, false), Some((2, true)));
        // A run of quiet reads is not busy: it takes `MOVE_READS`.
        let mut aim = Aim::default();
        assert_eq!(run(&mut aim, MOVE_READS - 1, 1, 2, false, false), None);
        assert_eq!(run(&mut aim, 1, 1, 2, false, false), Some((2, false)));
        // One busy read makes the run busy.
        let mut aim = Aim::default();
        run(&mut aim, 1, busy, 2, false, false);
        let last = run(&mut aim, MOVE_BUSY_READS - 1, 1, 2, false, false);
        assert_eq!(last, Some((2, true)));
        // Another shard starts a new run, quiet again.
        let mut aim = Aim::default();
        run(&mut aim, 1, busy, 2, false, false);
        assert_eq!(run(&mut aim, MOVE_READS - 1, 1, 3, false, false), None);
        assert_eq!(run(&mut aim, 1, 1, 3, false, false), Some((3, false)));
        // A busy read that reached a client (or leaf connection) breaks it,
        // and what follows is quiet.
        let mut aim = Aim::default();
        run(&mut aim, MOVE_BUSY_READS - 1, busy, 2, false, false);
        run(&mut aim, 1, busy, 2, false, true);
        assert_eq!(run(&mut aim, MOVE_READS - 1, 1, 2, false, false), None);
        assert_eq!(run(&mut aim, 1, 1, 2, false, false), Some((2, false)));
    }

    #[test]
    fn a_run_of_reads_to_one_shard_moves_there() {
        let mut aim = Aim::default();
        assert_eq!(reads(&mut aim, MOVE_READS - 1, 1, 3, false), None);
        assert_eq!(reads(&mut aim, 1, 1, 3, false), Some(3));
    }

    #[test]
    fn toward_a_newer_client_the_run_is_longer() {
        let mut aim = Aim::default();
        assert_eq!(reads(&mut aim, MOVE_READS_YIELD - 1, 1, 2, true), None);
        assert_eq!(reads(&mut aim, 1, 1, 2, true), Some(2));
    }

    #[test]
    fn busy_mixed_or_other_reads_break_the_run() {
        let mut aim = Aim::default();
        reads(&mut aim, MOVE_READS - 1, 1, 1, false);
        reads(&mut aim, 1, MOVE_READ_PUBS_MAX + 1, 1, false);
        assert_eq!(reads(&mut aim, MOVE_READS - 1, 1, 1, false), None);
        reads(&mut aim, 1, 1, Aim::MIXED, false);
        assert_eq!(reads(&mut aim, MOVE_READS - 1, 1, 1, false), None);
        reads(&mut aim, 1, 1, 2, false);
        assert_eq!(reads(&mut aim, MOVE_READS - 1, 1, 1, false), None);
        assert_eq!(reads(&mut aim, 1, 1, 1, false), Some(1));
    }

    #[test]
    fn reads_without_publishes_or_listeners_change_nothing() {
        let mut aim = Aim::default();
        reads(&mut aim, MOVE_READS - 1, 1, 1, false);
        reads(&mut aim, 5, 0, Aim::NOWHERE, false);
        reads(&mut aim, 5, 2, Aim::NOWHERE, false);
        assert_eq!(reads(&mut aim, 1, 1, 1, false), Some(1));
    }

    #[test]
    fn no_second_move_within_the_cooldown() {
        let mut aim = Aim {
            moved_at: Some(Instant::now()),
            ..Aim::default()
        };
        assert_eq!(reads(&mut aim, MOVE_READS * 2, 1, 1, false), None);
        aim.moved_at = Instant::now().checked_sub(MOVE_COOLDOWN);
        assert_eq!(reads(&mut aim, 1, 1, 1, false), Some(1));
    }
}
