//! Moving a client connection to the shard its publishes go to (`impl Shard`).
//!
//! The kernel spreads connections over shards, but what a client talks to (a
//! stream, a responder) lives on one shard. A client whose publishes, read
//! after read, all reach one other shard (`net::conn::Aim`) moves there: its
//! traffic then stays on one core instead of waking another for every
//! message. A busy client (more than `MOVE_READ_PUBS_MAX` publishes in a
//! read) moves only when its busy reads all go to JetStream there, and only
//! while that shard has room (`stats::ShardLoad`): many busy publishers to
//! one stream must not pile onto its shard. The steps keep every order a
//! client can see:
//! 1. The old shard stops reading the connection (between ops), moves its
//!    interest to the new shard in its own replica and sends `Move` to the
//!    new shard, with a duplicate of the socket: it makes the `Conn` there,
//!    which stages what is delivered to it, moves the interest and answers.
//! 2. Only then (so that no delivery reaches the new shard before its `Conn`)
//!    `Move` goes to every other peer. Each moves the interest in its replica
//!    and answers `MoveAck` on the data mesh: whatever it routed to the old
//!    shard before is ahead of the answer, and whatever it routes later goes
//!    to the new shard.
//! 3. With every answer in, the old shard writes out the connection's queue,
//!    sends its state (`Arrive`) and forgets it. The new shard replays the
//!    staged deliveries through that state (auto-unsubscribe counts,
//!    permissions), then `net::session::adopt_loop` starts its tasks.
//!
//! What the client published before the move was applied by every peer before
//! its answer (the channels are in order), so nothing it publishes from the new
//! shard overtakes it.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::limits::MOVE_SUBS_MAX;
use crate::net::conn::{Conn, ConnState, Moving, StagedMsg};
use crate::router::Delivered;
use crate::shard::msg::{Arrive, Move, MovedSocket, MovedSub, ShardMsg, SubKey};
use crate::shard::{Shard, LAME_DUCK};

impl Shard {
    /// Ends a read of client `conn`: the shard it should move to now, if any.
    pub fn move_target(&self, conn: &Conn) -> Option<u16> {
        let mut aim = conn.aim.get();
        let to = aim.end_read();
        conn.aim.set(aim);
        let (to, busy) = to?;
        let movable = self.cfg.conn_moves
            && self.mesh.is_some()
            && to < self.count
            && conn.link.is_none()
            // A TLS session goes with the connection once its handshake is over.
            && conn.tls.borrow().as_ref().is_none_or(|t| !t.is_handshaking())
            && {
                let st = conn.st.borrow();
                st.connected && st.subs.len() <= MOVE_SUBS_MAX && st.close_reason.is_none()
            }
            && !self.stopping.get()
            && !LAME_DUCK.load(Ordering::Relaxed)
            && (!busy || self.server.shard_load[usize::from(to)].has_room());
        movable.then_some(to)
    }

    /// Moves `conn`, whose read loop stopped between ops, to shard `to`.
    /// False when it could not start (a busy client found the room on `to`
    /// taken, or the socket could not be duplicated): the connection stays
    /// and goes on here.
    pub async fn move_out(self: &Rc<Self>, conn: &Rc<Conn>, to: u16) -> bool {
        let Some(mesh) = &self.mesh else {
            return false;
        };
        // The room `move_target` saw may be gone: another shard took it.
        if conn.aim.get().busy && !self.server.shard_load[usize::from(to)].claim() {
            return false;
        }
        let raw = conn.stream.borrow().as_raw_fd();
        // SAFETY: `raw` belongs to the connection's stream, open while `conn` lives.
        let fd = match unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                crate::debug!("{} - cid:{} - not moved: {e}", conn.peer, conn.cid);
                return false;
            }
        };
        conn.moving.set(Moving::Leaving);
        conn.barrier_acks.set(0);
        let subs: Vec<MovedSub> = {
            let st = conn.st.borrow();
            let subs = st.subs.iter().map(|(sub, s)| MovedSub {
                sub: *sub,
                subject: s.subject.clone(),
                queue: s.queue.clone(),
            });
            subs.collect()
        };
        self.move_interest(conn.cid, self.id, to, &subs);
        let socket = MovedSocket {
            fd,
            peer: conn.peer.clone(),
            ip: conn.ip.clone(),
            start: conn.start,
            last_activity: conn.last_activity.get(),
            rtt: conn.rtt.get(),
            ping_sent: conn.ping_sent.get(),
            nonce: conn.nonce.clone(),
        };
        let others = (0..self.count).filter(|p| *p != self.id && *p != to);
        let steps = [(vec![to], Some(socket)), (others.collect(), None)];
        let mut asked = 0;
        for (peers, mut socket) in steps {
            for peer in peers {
                let m = Move {
                    cid: conn.cid,
                    to,
                    subs: subs.clone(),
                    socket: socket.take(),
                };
                mesh.push(peer, ShardMsg::Move(Box::new(m)));
                asked += 1;
            }
            self.flush_mesh().await;
            // A stopping shard's peers may no longer answer: look up now and then.
            while conn.barrier_acks.get() < asked && !self.stopping.get() {
                let tick = glommio::timer::sleep(Duration::from_millis(100));
                futures_lite::future::or(conn.barrier_done.wait(), tick).await;
            }
        }
        // Everything delivered here is queued: let the writer finish it (a
        // closing connection's too: its last words go out before the socket
        // is shut; a killed one's are gone).
        loop {
            let done = {
                let out = conn.out.borrow();
                out.pending() == 0 || out.discard
            };
            if done {
                break;
            }
            futures_lite::future::or(conn.drained.wait(), conn.closed.wait()).await;
        }
        let (out_msgs, out_bytes) = {
            let out = conn.out.borrow();
            (out.msgs, out.bytes)
        };
        let state = std::mem::take(&mut *conn.st.borrow_mut());
        // The writer here is idle (its queue is written out) and reading
        // stopped with every decrypted byte taken: the session, with any
        // part of a record still in it, goes on on the new shard.
        let tls = conn.tls.borrow_mut().take();
        conn.moving.set(Moving::Gone);
        conn.wake_writer.notify();
        conn.closed.notify_all();
        self.conns.borrow_mut().remove(&conn.cid);
        crate::shard::stats::count_move(&mut self.stats.borrow_mut().handed, to);
        crate::debug!("{} - cid:{} - moved to shard {to}", conn.peer, conn.cid);
        let arrive = Arrive {
            cid: conn.cid,
            state: Box::new(state),
            tls,
            out_msgs,
            out_bytes,
        };
        self.push_to(to, ShardMsg::Arrive(Box::new(arrive)));
        true
    }

    /// Moves connection `cid`'s subscriptions from shard `from` to `to` in
    /// this replica, each added there before it goes from here (a leaf
    /// connection sees no gap in the interest).
    fn move_interest(&self, cid: u64, from: u16, to: u16, subs: &[MovedSub]) {
        for s in subs {
            let key = |shard| SubKey {
                cid,
                sub: s.sub,
                shard,
            };
            self.interest_add(&s.subject, s.queue.as_ref(), key(to));
            let was_there = self.interest_remove(&s.subject, s.queue.as_ref(), key(from));
            assert!(was_there, "a moving subscription missing from interest");
        }
    }

    /// A peer's connection moves (see the module doc).
    pub(crate) fn apply_move(&self, from: u16, m: Move) {
        let Move {
            cid,
            to,
            subs,
            socket,
        } = m;
        if let Some(socket) = socket {
            self.arriving(cid, socket);
        }
        self.move_interest(cid, from, to, &subs);
        self.push_to(from, ShardMsg::MoveAck { cid });
    }

    /// Makes the `Conn` of a connection moving here: its socket, no tasks
    /// yet, deliveries staged.
    fn arriving(&self, cid: u64, s: MovedSocket) {
        // SAFETY: the descriptor was duplicated for this move; the stream owns it now.
        let stream = unsafe { glommio::net::TcpStream::from_raw_fd(s.fd.into_raw_fd()) };
        // Best effort, as at accept.
        let _ = stream.set_write_timeout(Some(self.server.live.write_deadline()));
        let mut conn = Conn::new(cid, stream, self.cfg.max_pending, s.peer, s.ip);
        conn.start = s.start;
        conn.last_activity.set(s.last_activity);
        conn.rtt.set(s.rtt);
        conn.ping_sent.set(s.ping_sent);
        conn.nonce = s.nonce;
        conn.moving.set(Moving::Arriving);
        self.conns.borrow_mut().insert(cid, Rc::new(conn));
    }

    /// A delivery to an arriving connection: kept, in order, until its state
    /// comes. Past `max_pending` bytes it is a slow consumer (cut on arrival).
    pub(crate) fn stage(
        &self,
        conn: &Conn,
        sub: u32,
        subject: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Delivered {
        let mut staged = conn.staged.borrow_mut();
        let len = subject.len() + reply.map_or(0, <[u8]>::len) + msg.len();
        if staged.overflow || staged.buf.len() + len > self.cfg.max_pending {
            staged.overflow = true;
            return Delivered::Yes;
        }
        staged.buf.extend_from_slice(subject);
        staged.buf.extend_from_slice(reply.unwrap_or_default());
        staged.buf.extend_from_slice(msg);
        staged.items.push(StagedMsg {
            sub,
            subject: subject.len() as u32,
            reply: reply.map(|r| r.len() as u32),
            hdr_len,
            msg: msg.len() as u32,
        });
        Delivered::Yes
    }

    /// The state of a connection that moved here: it is served from now on.
    pub(crate) fn apply_arrive(&self, from: u16, a: Arrive) {
        crate::shard::stats::count_move(&mut self.stats.borrow_mut().taken, from);
        let Some(conn) = self.conns.borrow().get(&a.cid).cloned() else {
            return; // closed while arriving (the shard is stopping)
        };
        let mut state: Box<ConnState> = a.state.downcast().expect("Arrive carries a ConnState");
        let stale_auth = state.auth_gen != self.server.auth_gen.load(Ordering::SeqCst);
        // Closed here while it arrived (shutdown), or on the old shard.
        let closed_here = conn.st.borrow().close_reason;
        state.close_reason = state.close_reason.or(closed_here);
        let closing = state.close_reason.is_some();
        *conn.st.borrow_mut() = *state;
        *conn.tls.borrow_mut() = a.tls;
        {
            let mut out = conn.out.borrow_mut();
            out.msgs += a.out_msgs;
            out.bytes += a.out_bytes;
            out.closing |= closing;
        }
        conn.moving.set(Moving::Home);
        let mut aim = conn.aim.get();
        aim.moved_at = Some(Instant::now());
        conn.aim.set(aim);
        let staged = std::mem::take(&mut *conn.staged.borrow_mut());
        if staged.overflow && !closing {
            self.slow_consumer(&conn);
        } else if !closing {
            let mut at = 0;
            for m in &staged.items {
                let mut take = |n: usize| {
                    at += n;
                    &staged.buf[at - n..at]
                };
                let subject = take(m.subject as usize);
                let reply = m.reply.map(|n| take(n as usize));
                let msg = take(m.msg as usize);
                self.deliver_local(conn.cid, m.sub, subject, reply, m.hdr_len, msg);
            }
        }
        // Auto-unsubscribes that reached their count on the old shard.
        let done: Vec<u32> = {
            let st = conn.st.borrow();
            let done = st
                .subs
                .iter()
                .filter(|(_, s)| s.max.is_some_and(|m| s.delivered >= m));
            done.map(|(sub, _)| *sub).collect()
        };
        for sub in done {
            self.drop_sub(&conn, sub);
        }
        if stale_auth {
            self.reauthorize_one(&conn); // a reload while it moved
        }
        self.arrived.borrow_mut().push(conn);
        self.arrivals.notify();
    }
}
