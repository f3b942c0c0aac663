//! One client connection: its shared state (`Conn`), the read loop (socket →
//! parser → ops), the write loop (outbound queue → socket) and the ping timer.
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
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use glommio::net::TcpStream;

use crate::limits::{READ_CHUNK_BYTES, STALL_WAIT_MAX};
use crate::net::outbound::Outbound;
use crate::notify::Notify;
use crate::protocol::connect::ConnectOpts;
use crate::protocol::parser::Parser;
use crate::shard::Shard;

/// Why a connection is being closed; logged at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ProtocolError,
    StaleConnection,
    SlowConsumer,
    WriteError,
    ServerShutdown,
}

/// A subscription owned by this connection.
#[derive(Debug)]
pub struct LocalSub {
    pub sid: Bytes,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
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
    /// A SUB/UNSUB went to peers since the last PONG: the next PONG waits for a
    /// barrier so that it means "in force on every shard".
    pub interest_changed: bool,
    pub close_reason: Option<CloseReason>,
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
    /// Connection whose queue passed the stall threshold while this one produced.
    pub stalled_on: Cell<Option<u64>>,
    /// Stream (uid, on this shard) whose ingest queue passed its stall threshold.
    pub stalled_stream: Cell<Option<u32>>,
    pub peer: String,
    pub ip: String,
}

impl Conn {
    pub fn new(cid: u64, stream: TcpStream, cap: usize, peer: String, ip: String) -> Conn {
        Conn {
            cid,
            stream: RefCell::new(stream),
            out: RefCell::new(Outbound::new(cap)),
            st: RefCell::new(ConnState::default()),
            wake_writer: Notify::new(),
            barrier_acks: Cell::new(0),
            barrier_done: Notify::new(),
            stalled_on: Cell::new(None),
            stalled_stream: Cell::new(None),
            peer,
            ip,
        }
    }

    /// Queues raw protocol bytes and wakes the writer.
    pub fn send(&self, bytes: &[u8]) {
        self.out.borrow_mut().push(bytes);
        self.wake_writer.notify();
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
        first
    }

    fn shutdown_socket(&self, how: libc::c_int) {
        let fd = self.stream.borrow().as_raw_fd();
        // SAFETY: the fd belongs to `self.stream`, which lives as long as `self`.
        unsafe {
            libc::shutdown(fd, how);
        }
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let cid = shard.next_cid();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let ip = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    // Best effort: a socket that refuses these options still works.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(crate::limits::WRITE_DEADLINE));
    let conn = Rc::new(Conn::new(cid, stream, shard.cfg.max_pending, peer, ip));
    crate::debug!("{} - cid:{cid} - Client connection created", conn.peer);
    conn.send(&shard.info_line(cid, &conn.ip, false));
    shard.add_conn(conn.clone());
    glommio::spawn_local(write_loop(conn.clone())).detach();
    glommio::spawn_local(ping_loop(shard.clone(), conn.clone())).detach();
    read_loop(&shard, &conn).await;
    if conn.st.borrow().close_reason.is_none() {
        conn.close(CloseReason::ClientClosed);
    }
    shard.remove_conn(&conn).await;
    crate::debug!(
        "{} - cid:{cid} - Client connection closed: {:?}",
        conn.peer,
        conn.st.borrow().close_reason
    );
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

async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    let mut parser = Parser::new(shard.cfg.max_payload, crate::limits::CONTROL_LINE_MAX);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        match crate::net::io::read_into(&conn.stream, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let op = match parser.next(&mut buf) {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => {
                    crate::debug!("{} - cid:{} - protocol error: {e:?}", conn.peer, conn.cid);
                    if let Some(text) = e.text() {
                        conn.send_err(text);
                    }
                    conn.close(CloseReason::ProtocolError);
                    shard.flush_mesh().await;
                    return;
                }
            };
            match shard.handle_op(conn, op) {
                Flow::Continue => {}
                Flow::FlushMesh => shard.flush_mesh().await,
                Flow::Barrier => {
                    shard.barrier(conn).await;
                    shard.pong(conn);
                }
                Flow::Close => {
                    shard.flush_mesh().await;
                    return;
                }
            }
        }
        shard.flush_mesh().await;
        if let Some(target) = conn.stalled_on.take() {
            shard.stall_on(target).await;
        }
        if let Some(uid) = conn.stalled_stream.take() {
            shard.stall_on_stream(uid).await;
        }
        if conn.is_closing() {
            return;
        }
    }
}

async fn write_loop(conn: Rc<Conn>) {
    let mut writing: Vec<u8> = Vec::new();
    loop {
        let have = {
            let mut out = conn.out.borrow_mut();
            if out.discard || (out.buf.is_empty() && out.closing) {
                break;
            }
            if !out.buf.is_empty() {
                std::mem::swap(&mut out.buf, &mut writing);
                out.in_flight = writing.len();
            }
            out.in_flight > 0
        };
        if !have {
            conn.wake_writer.wait().await;
            continue;
        }
        let result = crate::net::io::write_all(&conn.stream, &writing).await;
        writing.clear();
        if writing.capacity() > 4 * READ_CHUNK_BYTES * 16 {
            writing = Vec::new();
        }
        conn.out.borrow_mut().in_flight = 0;
        if let Err(e) = result {
            let reason = if e.kind() == std::io::ErrorKind::TimedOut {
                crate::warn!(
                    "{} - cid:{} - Slow Consumer Detected: WriteDeadline exceeded",
                    conn.peer,
                    conn.cid
                );
                CloseReason::SlowConsumer
            } else {
                CloseReason::WriteError
            };
            conn.kill(reason);
            return;
        }
    }
    conn.shutdown_socket(libc::SHUT_RDWR);
}

async fn ping_loop(shard: Rc<Shard>, conn: Rc<Conn>) {
    let interval = shard.cfg.ping_interval;
    let max = shard.cfg.ping_max;
    loop {
        sleep_unless_closed(&conn, interval).await;
        if conn.is_closing() {
            return;
        }
        let stale = {
            let mut st = conn.st.borrow_mut();
            if std::mem::take(&mut st.active) && st.pings_out == 0 {
                continue;
            }
            st.pings_out += 1;
            st.pings_out > max
        };
        if stale {
            crate::debug!(
                "{} - cid:{} - Stale Client Connection - Closing",
                conn.peer,
                conn.cid
            );
            conn.send_err("Stale Connection");
            conn.close(CloseReason::StaleConnection);
            return;
        }
        conn.send(crate::protocol::ops::PING);
    }
}

/// Sleeps for `total`, waking every second to notice a closed connection, so a
/// closed connection's timer task ends promptly.
async fn sleep_unless_closed(conn: &Conn, total: Duration) {
    let start = Instant::now();
    while !conn.is_closing() {
        let left = total.saturating_sub(start.elapsed());
        if left.is_zero() {
            return;
        }
        glommio::timer::sleep(left.min(Duration::from_secs(1))).await;
    }
}

/// Pauses a producer while `target`'s queue is over the stall threshold, for at
/// most `STALL_WAIT_MAX`.
pub async fn stall_while_full(target: &Conn) {
    let start = Instant::now();
    while target.out.borrow().over_stall_threshold() && !target.is_closing() {
        if start.elapsed() >= STALL_WAIT_MAX {
            return;
        }
        glommio::timer::sleep(Duration::from_micros(250)).await;
    }
}
