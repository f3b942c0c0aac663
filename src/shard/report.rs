//! A shard's side of monitoring: counting connections as they come and go,
//! and answering gathers with its counters and connections (`shard::stats`).

use std::rc::Rc;
use std::time::SystemTime;

use crate::limits::{GATHER_MOVE_PAUSE, GATHER_MOVE_WAIT_MAX};
use crate::net::conn::{CloseReason, Conn, Moving};
use crate::shard::msg::ShardMsg;
use crate::shard::stats::CLOSED_SUBS_MAX;
use crate::shard::stats::{
    moves_in_transit, unix_nanos, ConnInfo, StatsAsk, StatsPart, SubInfo, CLOSED_CONNS_MAX,
};
use crate::shard::Shard;

fn reason_text(r: Option<CloseReason>) -> &'static str {
    // nats-server's ClosedState strings.
    match r {
        Some(CloseReason::ClientClosed) | None => "Client Closed",
        Some(CloseReason::ProtocolError) => "Protocol Error",
        Some(CloseReason::StaleConnection) => "Stale Connection",
        Some(CloseReason::SlowConsumer) => "Slow Consumer (Pending Bytes)",
        Some(CloseReason::WriteError) => "Write Error",
        Some(CloseReason::ServerShutdown) => "Server Shutdown",
        Some(CloseReason::MaxConnectionsExceeded) => "Maximum Connections Exceeded",
        Some(CloseReason::AuthViolation) => "Authentication Failure",
        Some(CloseReason::AuthTimeout) => "Authentication Timeout",
    }
}

/// A connection's subscriptions as monitoring shows them.
fn sub_infos(conn: &Conn) -> Vec<SubInfo> {
    let st = conn.st.borrow();
    st.subs
        .values()
        .map(|s| SubInfo {
            cid: conn.cid,
            subject: String::from_utf8_lossy(&s.subject).into_owned(),
            queue: s
                .queue
                .as_ref()
                .map(|q| String::from_utf8_lossy(q).into_owned()),
            sid: String::from_utf8_lossy(&s.sid).into_owned(),
            msgs: s.delivered,
            max: s.max,
        })
        .collect()
}

/// A connection's state as monitoring shows it.
/// One leaf connection for `/leafz`.
fn leaf_info(conn: &Conn, subs: bool) -> crate::shard::stats::LeafInfo {
    let st = conn.st.borrow();
    let out = conn.out.borrow();
    let (name, is_spoke) = conn.link.as_ref().map_or((String::new(), false), |l| {
        let l = l.borrow();
        (l.peer_name.clone(), !l.hub)
    });
    crate::shard::stats::LeafInfo {
        cid: conn.cid,
        name,
        is_spoke,
        ip: conn.ip.clone(),
        port: conn
            .peer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        rtt: conn.rtt.get(),
        in_msgs: st.in_msgs,
        out_msgs: out.msgs,
        in_bytes: st.in_bytes,
        out_bytes: out.bytes,
        subscriptions: st.subs.len(),
        subs: if subs {
            st.subs
                .values()
                .map(|s| String::from_utf8_lossy(&s.subject).into_owned())
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn conn_info(conn: &Conn, subs: bool) -> ConnInfo {
    let st = conn.st.borrow();
    let out = conn.out.borrow();
    let port = conn
        .peer
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0);
    let subs = if subs { sub_infos(conn) } else { Vec::new() };
    ConnInfo {
        cid: conn.cid,
        ip: conn.ip.clone(),
        port,
        start: conn.start,
        last_activity: conn.last_activity.get(),
        stop: None,
        reason: "",
        rtt: conn.rtt.get(),
        pending_bytes: out.pending(),
        in_msgs: st.in_msgs,
        out_msgs: out.msgs,
        in_bytes: st.in_bytes,
        out_bytes: out.bytes,
        subscriptions: st.subs.len(),
        name: st.opts.name.clone(),
        lang: st.opts.lang.clone(),
        version: st.opts.version.clone(),
        tls_version: conn
            .tls
            .borrow()
            .as_ref()
            .map_or(String::new(), |t| crate::tls::version_name(t)),
        tls_cipher_suite: conn
            .tls
            .borrow()
            .as_ref()
            .map_or(String::new(), |t| crate::tls::suite_name(t)),
        user: st.user.clone(),
        subs,
    }
}

/// As nats-server does when `/connz` finds a client's round trip unknown:
/// a PING now (to a client that speaks the protocol: it sent CONNECT with
/// its language), so the next look shows it.
fn measure_rtt(conn: &Conn) {
    let ready = {
        let st = conn.st.borrow();
        st.connected && !st.opts.lang.is_empty() && st.close_reason.is_none()
    };
    if ready && conn.rtt.get().is_zero() && conn.ping_sent.get().is_none() {
        conn.ping();
    }
}

impl Shard {
    /// A connection was accepted.
    pub fn count_accept(&self) {
        self.stats.borrow_mut().closed.total_connections += 1;
    }

    /// A connection closed: its counters join the shard's, and it is
    /// remembered (bounded) for `/connz?state=closed`.
    pub fn count_close(&self, conn: &Conn) {
        let mut info = conn_info(conn, true);
        let reason = conn.st.borrow().close_reason;
        info.stop = Some(unix_nanos(SystemTime::now()));
        info.reason = reason_text(reason);
        info.subs.truncate(CLOSED_SUBS_MAX);
        let mut stats = self.stats.borrow_mut();
        let c = &mut stats.closed;
        c.in_msgs += info.in_msgs;
        c.out_msgs += info.out_msgs;
        c.in_bytes += info.in_bytes;
        c.out_bytes += info.out_bytes;
        match reason {
            Some(CloseReason::SlowConsumer) => c.slow_consumers += 1,
            Some(CloseReason::StaleConnection) => c.stale_connections += 1,
            _ => {}
        }
        if stats.closed_conns.len() == CLOSED_CONNS_MAX {
            stats.closed_conns.pop_front();
        }
        stats.closed_conns.push_back(info);
    }

    /// This shard's answer to `ask`.
    /// (Leaf connections count once their handshake is done.)
    pub fn stats_part(&self, ask: StatsAsk) -> StatsPart {
        // One arriving from another shard is counted there until its state
        // is here (`gather_stats` asks again when a move was caught halfway).
        let arriving = |c: &&Rc<Conn>| c.moving.get() == Moving::Arriving;
        let conns: Vec<Rc<Conn>> = {
            let all = self.conns.borrow();
            all.values().filter(|c| !arriving(c)).cloned().collect()
        };
        let mut part = {
            let stats = self.stats.borrow();
            StatsPart {
                counters: stats.closed,
                trie: self.interest.borrow().stats(),
                shard: self.id,
                handed: stats.handed.clone(),
                taken: stats.taken.clone(),
                ..StatsPart::default()
            }
        };
        let c = &mut part.counters;
        // Leaf connections are servers, not clients: counted in traffic,
        // not listed as connections.
        c.connections = conns.iter().filter(|c| c.link.is_none()).count() as u64;
        c.leafnodes = self.links.borrow().len() as u64;
        for conn in &conns {
            let st = conn.st.borrow();
            let out = conn.out.borrow();
            c.in_msgs += st.in_msgs;
            c.in_bytes += st.in_bytes;
            c.out_msgs += out.msgs;
            c.out_bytes += out.bytes;
            c.subscriptions += st.subs.len() as u64;
        }
        match ask {
            StatsAsk::Counters => {}
            StatsAsk::Conns { open, closed, subs } => {
                if open {
                    let clients = conns.iter().filter(|c| c.link.is_none());
                    part.conns = clients.map(|c| conn_info(c, subs)).collect();
                    for c in &conns {
                        measure_rtt(c);
                    }
                }
                if closed {
                    let stats = self.stats.borrow();
                    part.conns.extend(stats.closed_conns.iter().map(|c| {
                        let mut c = c.clone();
                        if !subs {
                            c.subs = Vec::new();
                        }
                        c
                    }));
                }
            }
            StatsAsk::Subs => {
                for conn in &conns {
                    part.subs.extend(sub_infos(conn));
                }
            }
            StatsAsk::Leafs { subs } => {
                part.leafs = self
                    .links
                    .borrow()
                    .iter()
                    .map(|c| leaf_info(c, subs))
                    .collect();
            }
        }
        part
    }

    /// Gathers every shard's answer to `ask`, this shard's first. Only the
    /// shard serving monitoring (shard 0) gathers. A client whose hand-over
    /// fell between its two shards' answers is in neither part or in both
    /// (`moves_in_transit`): then it asks again, for at most
    /// `GATHER_MOVE_WAIT_MAX`. Not after a part timed out.
    pub async fn gather_stats(&self, ask: StatsAsk) -> Vec<StatsPart> {
        let started = std::time::Instant::now();
        loop {
            let parts = self.gather_stats_once(ask).await;
            let complete = parts.len() == usize::from(self.count);
            if !complete || !moves_in_transit(&parts) || started.elapsed() >= GATHER_MOVE_WAIT_MAX {
                return parts;
            }
            glommio::timer::sleep(GATHER_MOVE_PAUSE).await;
        }
    }

    async fn gather_stats_once(&self, ask: StatsAsk) -> Vec<StatsPart> {
        let mut parts = vec![self.stats_part(ask)];
        let peers = usize::from(self.count) - 1;
        let Some(mesh) = &self.mesh else {
            return parts;
        };
        let id = self.stats_gathers.open(peers);
        mesh.broadcast(|| ShardMsg::Stats { id, ask });
        mesh.flush().await;
        parts.extend(self.stats_gathers.wait(id).await);
        parts
    }

    /// A peer asked for this shard's part of gather `id`.
    pub fn answer_stats(&self, from: u16, id: u64, ask: StatsAsk) {
        let part = Box::new(self.stats_part(ask));
        self.push_to(from, ShardMsg::StatsPart { id, part });
    }
}
