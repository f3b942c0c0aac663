//! A shard: one glommio executor pinned to a core, owning its client connections,
//! its replica of the server's interest, and its end of the mesh.
//!
//! Lives on: every shard, one each. Everything here is `!Send` and touched only by
//! tasks of this shard. Cross-shard effects go through `mesh` as `ShardMsg`s.
//! `server::shard` builds a `Shard` and runs it; `router` holds the publish path.

pub mod gather;
pub mod mesh;
pub mod msg;
pub mod report;
pub mod stats;

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;

use crate::config::Config;
use crate::net::conn::Conn;
use crate::protocol::parser::PubOp;
use crate::shard::mesh::Mesh;
use crate::shard::msg::{ApiRequest, BarrierAck, JsCmd, SubKey};
use crate::subject::trie::SubjectTrie;

/// What the core (router, connections, the mesh receiver) needs from
/// JetStream. JetStream sits above the publish path (it publishes through it),
/// so the shard reaches it through this trait; `js::Js` implements it.
pub trait JetStream {
    /// A publish to `$JS.API.>` (or a domain's API prefix); true when
    /// JetStream takes it (it then counts as having a responder).
    fn route_api(&self, p: &PubOp) -> bool;
    /// A message for internal subscription `sub` (see `msg::JS_CID`) on this
    /// shard; true when the stream behind it is congested.
    fn deliver(
        &self,
        sub: u32,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool;
    /// An API request routed to this shard.
    fn api(&self, req: ApiRequest);
    /// A command from another shard (or this one).
    fn command(&self, cmd: JsCmd);
    /// Waits, a bounded time, while internal subscription `sub`'s stream is
    /// congested (back-pressure on whoever published to it).
    fn stall(&self, sub: u32) -> Pin<Box<dyn Future<Output = ()>>>;
    /// A leaf connection came up on some shard: external mirrors and
    /// sources here waiting for their origin try again now.
    fn leaf_up(&self);
}

/// Set by the signal thread; each shard polls it (never on the publish path).
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Set by SIGUSR2: stop accepting, tell clients (`"ldm":true` in INFO), then
/// close them over `lame_duck_duration` and stop.
pub static LAME_DUCK: AtomicBool = AtomicBool::new(false);

/// Settings a SIGHUP reload changes while running (nats-server reloads the
/// same): read where they apply (a ping tick, an accept, lame duck mode),
/// never per message. Milliseconds for durations.
#[derive(Debug)]
pub struct Live {
    ping_interval_ms: std::sync::atomic::AtomicU64,
    ping_max: std::sync::atomic::AtomicU32,
    max_connections: AtomicUsize,
    write_deadline_ms: std::sync::atomic::AtomicU64,
    lame_duck_ms: std::sync::atomic::AtomicU64,
    lame_duck_grace_ms: std::sync::atomic::AtomicU64,
    /// When the configuration was last read (Unix ns; `/varz` `config_load_time`).
    config_loaded: std::sync::atomic::AtomicI64,
}

impl Server {
    /// The authentication in force (None: anyone may connect).
    pub fn auth(&self) -> Option<Arc<crate::auth::Auth>> {
        let lock = self.auth.as_ref()?;
        // A poisoned lock still holds a whole value (writers only swap it).
        let guard = lock.read().unwrap_or_else(|e| e.into_inner());
        Some(guard.clone())
    }
}

impl Live {
    pub fn new(cfg: &Config) -> Live {
        let live = Live {
            ping_interval_ms: Default::default(),
            ping_max: Default::default(),
            max_connections: Default::default(),
            write_deadline_ms: Default::default(),
            lame_duck_ms: Default::default(),
            lame_duck_grace_ms: Default::default(),
            config_loaded: Default::default(),
        };
        live.apply(cfg);
        live
    }

    /// Takes `cfg`'s values; returns the names of those that changed.
    pub fn apply(&self, cfg: &Config) -> Vec<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let now = crate::shard::stats::unix_nanos(std::time::SystemTime::now());
        self.config_loaded.store(now, Relaxed);
        let mut changed = Vec::new();
        let mut set = |name: &str, slot: &std::sync::atomic::AtomicU64, v: u64, show: String| {
            if slot.swap(v, Relaxed) != v {
                changed.push(format!("{name} = {show}"));
            }
        };
        set(
            "ping_interval",
            &self.ping_interval_ms,
            ms(cfg.ping_interval),
            format!("{:?}", cfg.ping_interval),
        );
        set(
            "write_deadline",
            &self.write_deadline_ms,
            ms(cfg.write_deadline),
            format!("{:?}", cfg.write_deadline),
        );
        set(
            "lame_duck_duration",
            &self.lame_duck_ms,
            ms(cfg.lame_duck_duration),
            format!("{:?}", cfg.lame_duck_duration),
        );
        set(
            "lame_duck_grace_period",
            &self.lame_duck_grace_ms,
            ms(cfg.lame_duck_grace_period),
            format!("{:?}", cfg.lame_duck_grace_period),
        );
        if self.ping_max.swap(cfg.ping_max, Relaxed) != cfg.ping_max {
            changed.push(format!("ping_max = {}", cfg.ping_max));
        }
        let mc = cfg.max_connections;
        if self.max_connections.swap(mc, Relaxed) != mc {
            changed.push(format!("max_connections = {mc}"));
        }
        changed
    }

    fn dur(slot: &std::sync::atomic::AtomicU64) -> std::time::Duration {
        std::time::Duration::from_millis(slot.load(std::sync::atomic::Ordering::Relaxed))
    }
    pub fn config_loaded(&self) -> i64 {
        self.config_loaded
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn ping_interval(&self) -> std::time::Duration {
        Self::dur(&self.ping_interval_ms)
    }
    pub fn ping_max(&self) -> u32 {
        self.ping_max.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn max_connections(&self) -> usize {
        self.max_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn write_deadline(&self) -> std::time::Duration {
        Self::dur(&self.write_deadline_ms)
    }
    pub fn lame_duck(&self) -> (std::time::Duration, std::time::Duration) {
        (
            Self::dur(&self.lame_duck_ms),
            Self::dur(&self.lame_duck_grace_ms),
        )
    }
}

/// Read-only server facts shared by all shards at startup.
#[derive(Debug)]
pub struct Server {
    pub cfg: Config,
    pub listen: SocketAddr,
    pub server_id: String,
    pub server_name: String,
    /// Shards that have bound the port; the last one announces readiness.
    pub bound: AtomicUsize,
    /// Shards that have recovered their streams (start-up only: no shard
    /// serves clients or starts mirrors and sources before all have).
    pub recovered: AtomicUsize,
    /// Client connections open on every shard (`max_connections`): counted on
    /// accept and close, never per message.
    pub clients: AtomicUsize,
    /// Shards done closing their clients in lame duck mode.
    pub lame_duck_done: AtomicUsize,
    /// JetStream bytes stored per shard, [memory, file]: written by the shard
    /// each `EXPIRY_TICK`, read by the others to know the server's total
    /// against `max_memory_store`/`max_file_store` (never per message).
    pub js_usage: Vec<[std::sync::atomic::AtomicU64; 2]>,
    /// How busy each shard is (`stats::ShardLoad`): whether a busy client may
    /// move onto it.
    pub shard_load: Vec<crate::shard::stats::ShardLoad>,
    /// What a reload may change.
    pub live: Live,
    /// Authentication, when configured (None: anyone may connect). A reload
    /// may replace the users and permissions (read at CONNECT and when a
    /// shard re-checks its clients, never per message); `auth_gen` counts
    /// the replacements.
    pub auth: Option<std::sync::RwLock<Arc<crate::auth::Auth>>>,
    pub auth_gen: std::sync::atomic::AtomicU64,
    /// TLS for clients, when configured.
    pub tls: Option<crate::tls::Tls>,
    /// Leaf connections: where we accept them (None: no listener), who may
    /// connect (None: the clients' authorization), the subject we advertise
    /// on every leaf connection to detect a loop (`$LDS.<random>`), and each
    /// remote's credentials file or seed, read at start-up.
    pub leaf_listen: Option<SocketAddr>,
    pub leaf_auth: Option<crate::auth::Auth>,
    pub leaf_lds: String,
    pub leaf_creds: Vec<Option<String>>,
    /// TLS on the leaf port, and each remote's client side (None: plaintext
    /// unless the hub asks, which then fails with a clear error).
    pub leaf_tls: Option<crate::tls::Tls>,
    pub leaf_client_tls: Vec<Option<Arc<rustls::ClientConfig>>>,
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
    pub(crate) next_conn: Cell<u64>,
    pub(crate) rng: Cell<u64>,
    pub stopping: Cell<bool>,
    pub(crate) info_prefix: String,
    pub(crate) info_prefix_connected: String,
    /// JetStream on this shard, set once at start-up when it is enabled. The
    /// JetStream object holds this shard in turn: both live as long as the
    /// shard's executor.
    pub js: OnceCell<Rc<dyn JetStream>>,
    /// Protocol tracing (`-V`), read per client op: a field, not the global level.
    pub trace: bool,
    /// A flush of the mesh is scheduled (JetStream messages queued outside a read loop).
    pub flush_pending: Cell<bool>,
    /// Monitoring: counters of closed connections, the closed-connection ring.
    pub stats: RefCell<stats::ShardStats>,
    /// Monitoring gathers in progress (on the shard serving monitoring).
    pub stats_gathers: gather::Gathers<stats::StatsPart>,
    /// Fired when a reload was applied (`Live` changed), so that connection
    /// timers re-read their interval without waking on their own.
    pub live_changed: crate::notify::Event,
    /// Leaf connections on this shard whose interest exchange has begun:
    /// each is told of every change to the interest replica.
    pub links: RefCell<Vec<Rc<Conn>>>,
    /// Connections that moved here and have their state, waiting for their
    /// tasks to start (`net::session::adopt_loop`); one entry per move in
    /// flight, each a connection already counted against the limits.
    pub arrived: RefCell<Vec<Rc<Conn>>>,
    pub arrivals: crate::notify::Notify,
    pub(crate) me: std::rc::Weak<Shard>,
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
    pub fn info_line(&self, conn: &Conn, connect_info: bool) -> Vec<u8> {
        // nats-server's field order: nonce, ldm, then connect_info and remote_account.
        // The INFO after CONNECT carries no nonce.
        let nonce = match conn.nonce.as_deref() {
            Some(n) if !connect_info => format!(",\"nonce\":\"{n}\""),
            _ => String::new(),
        };
        let ldm = if LAME_DUCK.load(std::sync::atomic::Ordering::Relaxed) {
            ",\"ldm\":true"
        } else {
            ""
        };
        let extra = if connect_info {
            ",\"connect_info\":true,\"remote_account\":\"$G\""
        } else {
            ""
        };
        format!(
            "{}\"client_id\":{},\"client_ip\":\"{}\"{nonce}{ldm}{extra},\"api_lvl\":{}}} \r\n",
            if connect_info {
                &self.info_prefix_connected
            } else {
                &self.info_prefix
            },
            conn.cid,
            conn.ip,
            crate::config::API_LEVEL
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
            conn.send(&self.info_line(conn, true));
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

    /// Queues `msg` for shard `target` and makes sure a flush follows (for
    /// messages sent outside a connection's read loop, which flushes on its own).
    pub fn push_to(&self, target: u16, msg: msg::ShardMsg) {
        let mesh = self.mesh.as_ref().expect("another shard implies a mesh");
        mesh.push(target, msg);
        if !self.flush_pending.replace(true) {
            let shard = self.me();
            glommio::spawn_local(async move {
                shard.flush_pending.set(false);
                shard.flush_mesh().await;
            })
            .detach();
        }
    }

    pub async fn flush_mesh(&self) {
        if let Some(mesh) = &self.mesh {
            mesh.flush().await;
        }
    }

    /// Waits until every peer has applied what this shard sent so far.
    pub async fn barrier(&self, conn: &Conn) {
        conn.peers_behind.set(false);
        let Some(mesh) = &self.mesh else { return };
        conn.barrier_acks.set(0);
        mesh.broadcast(|| msg::ShardMsg::Barrier { cid: conn.cid });
        mesh.flush().await;
        while conn.barrier_acks.get() < mesh.peers() - 1 {
            conn.barrier_done.wait().await;
        }
    }

    /// A barrier acknowledgement arrived for connection `cid`.
    pub fn barrier_acked(&self, ack: BarrierAck) {
        if let Some(conn) = self.conns.borrow().get(&ack.cid) {
            conn.barrier_acks.set(conn.barrier_acks.get() + 1);
            conn.barrier_done.notify();
        }
    }

    /// Waits while the stream behind internal subscription `sub` is congested.
    pub async fn stall_on_stream(&self, sub: u32) {
        let wait = self.js.get().map(|js| js.stall(sub));
        if let Some(wait) = wait {
            wait.await;
        }
    }

    /// Stalls the caller while connection `target` (on this shard) is congested.
    pub async fn stall_on(&self, target: u64) {
        let conn = self.conns.borrow().get(&target).cloned();
        if let Some(conn) = conn {
            self.stats.borrow_mut().closed.stalls += 1;
            crate::net::conn::stall_while_full(&conn).await;
        }
    }
}

/// Builds the INFO JSON up to (not including) the per-connection fields.
///
/// `connected`: the INFO resent after CONNECT, which says `auth_required`
/// whenever authentication is configured; the first INFO leaves it out when
/// a `no_auth_user` lets clients in without credentials (as nats-server).
pub fn info_prefix(server: &Server, connected: bool) -> String {
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
        auth_required: server.auth.is_some() && (connected || server.cfg.no_auth_user.is_none()),
        tls_required: server.tls.is_some(),
        tls_verify: server.tls.as_ref().is_some_and(|t| t.verify),
        max_payload: server.cfg.max_payload,
        jetstream: server.cfg.jetstream.is_some(),
    };
    let json = serde_json::to_string(&info).expect("INFO serializes");
    // Drop the closing brace: the per-connection fields follow.
    format!("INFO {},", &json[..json.len() - 1])
}
