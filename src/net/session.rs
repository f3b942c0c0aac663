//! The tasks that drive one client connection: the read loop (socket → parser →
//! `Shard::handle_op`), the write loop (outbound queue → socket) and the ping
//! timer. They share the connection's `Rc<Conn>` (see `net::conn`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::TcpStream;

use crate::limits::{READ_CHUNK_BYTES, WRITE_BUF_KEEP_MIN};
use crate::net::conn::{CloseReason, Conn, Flow};
use crate::protocol::parser::Parser;
use crate::shard::Shard;

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
    let _ = stream.set_write_timeout(Some(shard.server.live.write_deadline()));
    let mut conn = Conn::new(cid, stream, shard.cfg.max_pending, peer, ip);
    let auth = shard.server.auth();
    if auth.as_ref().is_some_and(|a| a.needs_nonce()) {
        conn.nonce = Some(crate::auth::nonce());
    }
    // Plaintext that came with the end of a TLS handshake (a CONNECT, say).
    let mut first = BytesMut::new();
    if let Some(tls) = shard.server.tls.as_ref() {
        let info = shard.info_line(&conn, false);
        if let Err(e) = start_tls(&mut conn, tls, &info, &mut first).await {
            // As nats-server: logged, and the connection closed without a word.
            crate::error!("{} - cid:{cid} - TLS handshake error: {e}", conn.peer);
            conn.shutdown_socket(libc::SHUT_RDWR);
            return;
        }
    }
    let conn = Rc::new(conn);
    crate::debug!("{} - cid:{cid} - Client connection created", conn.peer);
    // With TLS (not handshake_first) the INFO went out before the handshake.
    if shard.server.tls.as_ref().is_none_or(|t| t.handshake_first) {
        conn.send(&shard.info_line(&conn, false));
    }
    // As nats-server: the INFO, then the refusal, when the server is full.
    let clients = &shard.server.clients;
    let open = clients.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let max = shard.server.live.max_connections();
    if max > 0 && open >= max {
        clients.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        crate::warn!("{} - cid:{cid} - maximum connections exceeded", conn.peer);
        conn.send_err("maximum connections exceeded");
        conn.close(CloseReason::MaxConnectionsExceeded);
        write_loop(conn).await;
        return;
    }
    shard.add_conn(conn.clone());
    shard.count_accept();
    if let Some(a) = &auth {
        glommio::spawn_local(auth_timer(shard.clone(), conn.clone(), a.timeout)).detach();
    }
    run(shard, conn, first).await;
}

/// Starts the tasks of connections that moved to this shard
/// (`router::moving`), as they arrive.
pub async fn adopt_loop(shard: Rc<Shard>) {
    loop {
        shard.arrivals.wait().await;
        let arrived = std::mem::take(&mut *shard.arrived.borrow_mut());
        for conn in arrived {
            glommio::spawn_local(run(shard.clone(), conn, BytesMut::new())).detach();
        }
    }
}

/// Serves a connection until it closes, or moves to another shard (whose
/// `adopt_loop` then runs this again).
async fn run(shard: Rc<Shard>, conn: Rc<Conn>, first: BytesMut) {
    let cid = conn.cid;
    glommio::spawn_local(write_loop(conn.clone())).detach();
    glommio::spawn_local(ping_loop(shard.clone(), conn.clone())).detach();
    if read_loop(&shard, &conn, first).await {
        return; // moved: served on another shard now
    }
    let clients = &shard.server.clients;
    if conn.st.borrow().close_reason.is_none() {
        conn.close(CloseReason::ClientClosed);
    }
    shard.count_close(&conn);
    shard.remove_conn(&conn).await;
    clients.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    crate::debug!(
        "{} - cid:{cid} - Client connection closed: {:?}",
        conn.peer,
        conn.st.borrow().close_reason
    );
}

/// A client's read loop; true when the connection moved to another shard.
async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Conn>, first: BytesMut) -> bool {
    let parser = RefCell::new(Parser::new(
        shard.cfg.max_payload,
        shard.cfg.max_control_line,
    ));
    let refuse = |conn: &Conn, e: crate::protocol::parser::ParseError| {
        crate::debug!("{} - cid:{} - protocol error: {e:?}", conn.peer, conn.cid);
        if let Some(text) = e.text() {
            conn.send_err(text);
        }
    };
    let handle = |conn: &Rc<Conn>, op| shard.handle_op(conn, op);
    let next = |buf: &mut BytesMut| parser.borrow_mut().next(buf);
    let idle = || parser.borrow().idle();
    drive(shard, conn, first, next, handle, refuse, Some(&idle)).await
}

/// A connection's read loop, whatever its protocol: reads (decrypting with
/// TLS), takes ops off the buffer with `next` and applies each with
/// `handle`, doing what it asks; bad input is answered by `refuse` (which
/// logs and queues the `-ERR`) and closes the connection. Between reads,
/// what the ops queued for peers goes out and congested readers hold it back.
/// A client (`idle` given: whether its parser holds no part of an op) moves
/// to another shard between reads when `Shard::move_target` says so; true
/// then.
pub(crate) async fn drive<O, E>(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    first: BytesMut,
    mut next: impl FnMut(&mut BytesMut) -> Result<Option<O>, E>,
    handle: impl Fn(&Rc<Conn>, O) -> Flow,
    refuse: impl Fn(&Conn, E),
    idle: Option<&dyn Fn() -> bool>,
) -> bool {
    let mut buf = first;
    buf.reserve(READ_CHUNK_BYTES);
    // TLS: ciphertext is read here, then decrypted into `buf`.
    let mut raw = BytesMut::new();
    let mut pending = !buf.is_empty();
    loop {
        if !fill(conn, &mut buf, &mut raw, &mut pending).await {
            return false;
        }
        loop {
            let op = match next(&mut buf) {
                Ok(Some(op)) => op,
                Ok(None) => break,
                Err(e) => {
                    refuse(conn, e);
                    conn.close(CloseReason::ProtocolError);
                    shard.flush_mesh().await;
                    return false;
                }
            };
            if !follow(shard, conn, handle(conn, op)).await {
                return false;
            }
        }
        if !after_read(shard, conn).await {
            return false;
        }
        let Some(idle) = idle else { continue };
        if let Some(to) = shard.move_target(conn) {
            // Only between ops: nothing of the next one is read yet.
            if buf.is_empty() && raw.is_empty() && idle() && shard.move_out(conn, to).await {
                return true;
            }
        }
    }
}

/// Reads more into `buf` (unless `pending` says bytes already wait there),
/// making room first; false when the connection is closed or broken.
async fn fill(conn: &Conn, buf: &mut BytesMut, raw: &mut BytesMut, pending: &mut bool) -> bool {
    if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
        buf.reserve(READ_CHUNK_BYTES);
    }
    if !std::mem::take(pending) && !read_some(conn, buf, raw).await {
        return false;
    }
    // Once per read, not per message: a clock read is cheap, not free.
    let now = crate::shard::stats::unix_nanos(std::time::SystemTime::now());
    conn.last_activity.set(now);
    true
}

/// Does what an op asked of its read loop; false when the loop must end.
pub(crate) async fn follow(shard: &Rc<Shard>, conn: &Rc<Conn>, flow: Flow) -> bool {
    match flow {
        Flow::Continue => {}
        Flow::FlushMesh => shard.flush_mesh().await,
        Flow::Barrier => {
            shard.barrier(conn).await;
            shard.pong(conn);
        }
        Flow::Close => {
            shard.flush_mesh().await;
            return false;
        }
    }
    true
}

/// After one read's ops: sends what they queued for peers, then pauses (a
/// bounded time) for a subscriber or stream they congested; false when the
/// connection is closing.
async fn after_read(shard: &Rc<Shard>, conn: &Rc<Conn>) -> bool {
    shard.flush_mesh().await;
    if let Some(target) = conn.stalled_on.take() {
        shard.stall_on(target).await;
    }
    if let Some(uid) = conn.stalled_stream.take() {
        shard.stall_on_stream(uid).await;
    }
    !conn.is_closing()
}

pub(crate) async fn write_loop(conn: Rc<Conn>) {
    let mut writing: Vec<u8> = Vec::new();
    // TLS records of `writing` (reused, like it).
    let mut cipher: Vec<u8> = Vec::new();
    // Moved to another shard: once the queue is empty the writer here ends,
    // leaving the socket open for the new shard.
    let gone = || conn.moving.get() == crate::net::conn::Moving::Gone;
    loop {
        let have = {
            let mut out = conn.out.borrow_mut();
            if out.discard || (out.buf.is_empty() && (out.closing || gone())) {
                break;
            }
            if !out.buf.is_empty() {
                std::mem::swap(&mut out.buf, &mut writing);
                out.in_flight = writing.len();
            }
            // TLS records with no plaintext behind them (alerts, key updates).
            let records = conn.tls.borrow().as_ref().is_some_and(|t| t.wants_write());
            out.in_flight > 0 || records
        };
        if !have {
            conn.wake_writer.wait().await;
            continue;
        }
        let sealed = (conn.tls.borrow_mut().as_mut())
            .map(|tls| crate::tls::encrypt_any(tls, &writing, &mut cipher));
        let result = match sealed {
            None => crate::net::io::write_all(&conn.stream, &writing).await,
            Some(Ok(())) => crate::net::io::write_all(&conn.stream, &cipher).await,
            Some(Err(e)) => Err(e),
        };
        cipher.clear();
        // Kept for the next swap while the load needs it: a buffer given
        // back and grown again costs a page fault per 4 KiB (a fifth of the
        // server's CPU with 64 KiB messages). Released once writes are small
        // again, so an idle connection does not hold a burst's memory.
        let wrote = writing.len();
        writing.clear();
        if writing.capacity() > WRITE_BUF_KEEP_MIN.max(2 * wrote) {
            writing = Vec::new();
        }
        conn.out.borrow_mut().in_flight = 0;
        if conn.drained.waiting() > 0 && !conn.out.borrow().over_stall_threshold() {
            conn.drained.notify_all();
        }
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
    // A connection that moved (and is not closing) goes on on its new shard.
    let moved = {
        let out = conn.out.borrow();
        gone() && !out.closing && !out.discard
    };
    if !moved {
        conn.shutdown_socket(libc::SHUT_RDWR);
    }
}

pub(crate) async fn ping_loop(shard: Rc<Shard>, conn: Rc<Conn>) {
    let live = &shard.server.live;
    loop {
        sleep_unless_closed(&shard, &conn, || live.ping_interval()).await;
        if conn.is_closing() {
            return;
        }
        let max = live.ping_max();
        let stale = {
            let mut st = conn.st.borrow_mut();
            // As nats-server: an active client is not pinged, unless its
            // round trip was never measured.
            let measured = !conn.rtt.get().is_zero();
            if std::mem::take(&mut st.active) && st.pings_out == 0 && measured {
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
        conn.ping();
    }
}

/// Reads what the socket has into `buf` (decrypting with TLS); false when
/// the connection is closed or broken.
async fn read_some(conn: &Conn, buf: &mut BytesMut, raw: &mut BytesMut) -> bool {
    if conn.tls.borrow().is_none() {
        return matches!(crate::net::io::read_into(&conn.stream, buf).await, Ok(n) if n > 0);
    }
    raw.clear();
    raw.reserve(READ_CHUNK_BYTES);
    if !matches!(crate::net::io::read_into(&conn.stream, raw).await, Ok(n) if n > 0) {
        return false;
    }
    let mut tls = conn.tls.borrow_mut();
    let Some(tls) = tls.as_mut() else {
        return false; // never: only a move takes the session, and not while reading
    };
    // Every byte read goes into the session and every plaintext byte comes
    // out: a connection moving between reads leaves nothing behind.
    let opened = crate::tls::decrypt_any(tls, raw, buf);
    raw.clear();
    if tls.wants_write() {
        conn.wake_writer.notify(); // records for the peer (alerts, key updates)
    }
    opened.is_ok()
}

/// TLS before the client speaks: the INFO in plaintext (unless
/// `handshake_first`), then the handshake within the TLS timeout. A client
/// whose first bytes are not a TLS handshake is refused. The leaf port does
/// the same with its own `info`.
pub(crate) async fn start_tls(
    conn: &mut Conn,
    tls: &crate::tls::Tls,
    info: &[u8],
    plain: &mut BytesMut,
) -> Result<(), String> {
    if !tls.handshake_first {
        crate::net::io::write_all(&conn.stream, info)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut session = tls.session().map_err(|e| e.to_string())?;
    let work = crate::net::io::tls_handshake(&conn.stream, &mut session, plain, true);
    crate::net::io::within(tls.timeout, work).await?;
    *conn.tls.get_mut() = Some(rustls::Connection::Server(session));
    Ok(())
}

/// Closes a connection that has not authenticated within `timeout`, as
/// nats-server does.
async fn auth_timer(shard: Rc<Shard>, conn: Rc<Conn>, timeout: Duration) {
    sleep_unless_closed(&shard, &conn, || timeout).await;
    if conn.is_closing() || conn.st.borrow().connected {
        return;
    }
    crate::debug!("{} - cid:{} - Authentication Timeout", conn.peer, conn.cid);
    conn.send_err("Authentication Timeout");
    conn.close(CloseReason::AuthTimeout);
}

/// Sleeps for `total()`, cut short when the connection closes (so its timer
/// task ends promptly) and re-measured when a reload changes `total()`. One
/// timer per wait: an idle connection costs no wake-ups in between.
pub(crate) async fn sleep_unless_closed(shard: &Shard, conn: &Conn, total: impl Fn() -> Duration) {
    let start = Instant::now();
    while !conn.is_closing() {
        let left = total().saturating_sub(start.elapsed());
        if left.is_zero() {
            return;
        }
        let woken = futures_lite::future::or(conn.closed.wait(), shard.live_changed.wait());
        futures_lite::future::or(glommio::timer::sleep(left), woken).await;
    }
}
