//! A shard: one glommio executor pinned to a core, owning its client connections,
//! its replica of the server's interest, and its end of the mesh.
//!
//! Lives on: every shard, one each. Everything here is `!Send` and touched only by
//! tasks of this shard. Cross-shard effects go through `mesh` as `ShardMsg`s.

pub mod mesh;
pub mod msg;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;

use crate::config::Config;
use crate::net::conn::{CloseReason, Conn};
use crate::shard::mesh::{Mesh, MeshReceivers};
use crate::shard::msg::{BarrierAck, Batch, SubKey};
use crate::subject::trie::SubjectTrie;

/// Set by the signal thread; each shard polls it (never on the publish path).
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Read-only server facts shared by all shards at startup.
#[derive(Debug)]
pub struct Server {
    pub cfg: Config,
    pub listen: SocketAddr,
    pub server_id: String,
    pub server_name: String,
    /// Shards that have bound the port; the last one announces readiness.
    pub bound: AtomicUsize,
}

/// Per-shard state. See the module doc for ownership.
pub struct Shard {
    pub id: u16,
    pub count: u16,
    pub cfg: Rc<Config>,
    pub server: Arc<Server>,
    pub conns: RefCell<AHashMap<u64, Rc<Conn>>>,
    pub interest: RefCell<SubjectTrie<SubKey>>,
    /// Reused by uncached matches (see `publish_matched`); one result's worth.
    pub match_scratch: RefCell<crate::subject::trie::MatchResult<SubKey>>,
    pub mesh: Option<Mesh>,
    next_conn: Cell<u64>,
    rng: Cell<u64>,
    pub stopping: Cell<bool>,
    info_prefix: String,
    /// JetStream state of this shard (None when JetStream is off).
    pub js: Option<crate::js::Js>,
    /// A flush of the mesh is scheduled (JetStream messages queued outside a read loop).
    pub flush_pending: Cell<bool>,
    me: std::rc::Weak<Shard>,
}

impl Shard {
    /// This shard as an `Rc` (for tasks it spawns).
    pub fn me(&self) -> Rc<Shard> {
        self.me.upgrade().expect("shard alive while its tasks run")
    }

    /// Publishes a server-originated message (JetStream replies) through the
    /// normal routing; `hdr` is a header block placed before `body`.
    pub fn reply(&self, subject: &bytes::Bytes, hdr: Option<&[u8]>, body: &[u8]) {
        if subject.is_empty() {
            return; // the request had no reply subject
        }
        let mut msg = Vec::with_capacity(hdr.map_or(0, <[u8]>::len) + body.len());
        if let Some(h) = hdr {
            msg.extend_from_slice(h);
        }
        msg.extend_from_slice(body);
        let p = crate::protocol::parser::PubOp {
            subject: subject.clone(),
            reply: None,
            hdr_len: hdr.map(<[u8]>::len),
            msg: bytes::Bytes::from(msg),
        };
        // Replies go to one-off inboxes: caching their match would only churn.
        self.publish_caching(None, true, &p, false);
    }

    /// Globally unique connection id: shards interleave their counters.
    pub fn next_cid(&self) -> u64 {
        let n = self.next_conn.get() + 1;
        self.next_conn.set(n);
        n * u64::from(self.count) + u64::from(self.id)
    }

    /// A cheap per-shard pseudo-random number (xorshift64*), for queue picks.
    pub fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The INFO line for a connection; `connect_info` marks the second INFO sent
    /// after the first PONG to clients that speak protocol 1.
    pub fn info_line(&self, cid: u64, ip: &str, connect_info: bool) -> Vec<u8> {
        let extra = if connect_info {
            ",\"connect_info\":true,\"remote_account\":\"$G\""
        } else {
            ""
        };
        format!(
            "{}\"client_id\":{cid},\"client_ip\":\"{ip}\"{extra}}} \r\n",
            self.info_prefix
        )
        .into_bytes()
    }

    /// Answers a PING: PONG, then once the INFO with `connect_info` (protocol 1).
    pub fn pong(&self, conn: &Conn) {
        conn.send(crate::protocol::ops::PONG);
        let resend = {
            let mut st = conn.st.borrow_mut();
            let resend = st.connected && st.opts.protocol >= 1 && !st.info_resent;
            st.info_resent |= resend;
            resend
        };
        if resend {
            conn.send(&self.info_line(conn.cid, &conn.ip, true));
        }
    }

    pub fn add_conn(&self, conn: Rc<Conn>) {
        self.conns.borrow_mut().insert(conn.cid, conn);
    }

    /// Drops a closed connection's interest here and on every peer.
    pub async fn remove_conn(&self, conn: &Rc<Conn>) {
        let subs: Vec<u32> = conn.st.borrow().subs.keys().copied().collect();
        for sub in subs {
            self.drop_sub(conn, sub);
        }
        self.conns.borrow_mut().remove(&conn.cid);
        self.flush_mesh().await;
    }

    pub async fn flush_mesh(&self) {
        if let Some(mesh) = &self.mesh {
            mesh.flush().await;
        }
    }

    /// Waits until every peer has applied what this shard sent so far.
    pub async fn barrier(&self, conn: &Conn) {
        conn.st.borrow_mut().interest_changed = false;
        let Some(mesh) = &self.mesh else { return };
        conn.barrier_acks.set(0);
        mesh.broadcast(|| msg::ShardMsg::Barrier { cid: conn.cid });
        mesh.flush().await;
        while conn.barrier_acks.get() < mesh.peers() - 1 {
            conn.barrier_done.wait().await;
        }
    }

    /// A barrier acknowledgement arrived for connection `cid`.
    fn barrier_acked(&self, ack: BarrierAck) {
        if let Some(conn) = self.conns.borrow().get(&ack.cid) {
            conn.barrier_acks.set(conn.barrier_acks.get() + 1);
            conn.barrier_done.notify();
        }
    }

    /// Stalls the caller while connection `target` (on this shard) is congested.
    pub async fn stall_on(&self, target: u64) {
        let conn = self.conns.borrow().get(&target).cloned();
        if let Some(conn) = conn {
            crate::net::conn::stall_while_full(&conn).await;
        }
    }
}

/// Builds the INFO JSON up to (not including) the per-connection fields.
fn info_prefix(server: &Server) -> String {
    let host = server.listen.ip().to_string();
    let info = crate::protocol::connect::Info {
        server_id: &server.server_id,
        server_name: &server.server_name,
        version: crate::config::NATS_COMPAT_VERSION,
        proto: 1,
        go: concat!("jetcore-", env!("CARGO_PKG_VERSION")),
        host: &host,
        port: server.listen.port(),
        headers: true,
        max_payload: server.cfg.max_payload,
        jetstream: server.cfg.jetstream.is_some(),
    };
    let json = serde_json::to_string(&info).expect("INFO serializes");
    // Drop the closing brace: the per-connection fields follow.
    format!("INFO {},", &json[..json.len() - 1])
}

/// Meshes every shard joins at startup (cloned into each executor).
#[derive(Clone)]
pub struct MeshSetup {
    pub data: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    pub acks: MeshBuilder<BarrierAck, glommio::channels::channel_mesh::Full>,
}

/// Runs shard `index` until shutdown.
pub async fn run(
    server: Arc<Server>,
    index: usize,
    meshes: Option<MeshSetup>,
) -> Result<(), String> {
    let (mesh, receivers) = match meshes {
        Some(setup) => {
            // glommio wakes tasks waiting for a channel's peer to connect only when
            // its reactor runs; a parked executor would never run it. Tick until
            // both meshes are joined.
            let joined = Rc::new(Cell::new(false));
            let ticking = joined.clone();
            glommio::spawn_local(async move {
                while !ticking.get() {
                    glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
            .detach();
            let data = setup.data.join().await;
            let acks = setup.acks.join().await;
            joined.set(true);
            let (data_tx, data_rx) = data.map_err(|e| format!("mesh: {e}"))?;
            let (ack_tx, ack_rx) = acks.map_err(|e| format!("mesh: {e}"))?;
            crate::debug!("shard {index} is mesh peer {}", data_tx.peer_id());
            (
                Some(Mesh::new(data_tx, ack_tx)),
                Some(MeshReceivers {
                    data: data_rx,
                    acks: ack_rx,
                }),
            )
        }
        None => (None, None),
    };
    let id = mesh.as_ref().map_or(index as u16, |m| m.id());
    let js = server
        .cfg
        .jetstream
        .as_ref()
        .map(|dir| crate::js::Js::new(dir.join("jetstream"), server.cfg.sync));
    let shard = Rc::new_cyclic(|me| Shard {
        id,
        count: server.cfg.shards as u16,
        cfg: Rc::new(server.cfg.clone()),
        server: server.clone(),
        conns: RefCell::new(AHashMap::new()),
        interest: RefCell::new(SubjectTrie::new()),
        match_scratch: RefCell::new(Default::default()),
        mesh,
        next_conn: Cell::new(0),
        rng: Cell::new(
            0x9E37_79B9_7F4A_7C15 ^ (u64::from(id) + 1).wrapping_mul(0x1234_5678_9ABC_DEF1),
        ),
        stopping: Cell::new(false),
        info_prefix: info_prefix(&server),
        js,
        flush_pending: Cell::new(false),
        me: me.clone(),
    });
    if let Some(receivers) = receivers {
        spawn_receivers(&shard, receivers);
    }
    if server.cfg.jetstream.is_some() {
        crate::js::open(&shard, server.cfg.sync).await?;
    }
    let listener = TcpListener::bind(server.listen)
        .map_err(|e| format!("shard {id}: cannot listen on {}: {e}", server.listen))?;
    if server.bound.fetch_add(1, Ordering::SeqCst) + 1 == server.cfg.shards {
        crate::info!("Listening for client connections on {}", server.listen);
        crate::info!("Server is ready");
    }
    let accept = glommio::spawn_local(crate::net::listener::accept_loop(shard.clone(), listener));
    while !SHUTDOWN.load(Ordering::Relaxed) {
        glommio::timer::sleep(crate::limits::SHUTDOWN_POLL).await;
    }
    shard.stopping.set(true);
    accept.cancel().await;
    crate::js::close_all(&shard).await;
    drain_connections(&shard).await;
    Ok(())
}

fn spawn_receivers(shard: &Rc<Shard>, mut receivers: MeshReceivers) {
    for (peer, rx) in receivers.data.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                assert_eq!(usize::from(batch.from), peer, "batch from the wrong peer");
                assert_eq!(batch.to, shard.id, "batch delivered to the wrong shard");
                shard.apply_batch(batch).await;
            }
        })
        .detach();
    }
    for (_, rx) in receivers.acks.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(ack) = rx.recv().await {
                shard.barrier_acked(ack);
            }
        })
        .detach();
    }
}

/// Closes every connection after flushing its queue, waiting at most
/// `SHUTDOWN_FLUSH_MAX`.
async fn drain_connections(shard: &Rc<Shard>) {
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    for conn in &conns {
        conn.close(CloseReason::ServerShutdown);
    }
    let start = Instant::now();
    while start.elapsed() < crate::limits::SHUTDOWN_FLUSH_MAX {
        let busy = conns.iter().any(|c| c.out.borrow().pending() > 0);
        if !busy && shard.conns.borrow().is_empty() {
            break;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}
