//! Leaf connections' tasks: dialling each configured remote (and redialling
//! after nats-server's `reconnect` wait, 30 s after a loop was detected),
//! accepting on the leaf port, and each connection's read loop. The ops
//! themselves are handled in `router::leaf_hello` and `router::leaf`; a
//! connection's write loop and ping timer are the clients' (`net::session`).
//!
//! Remote `i` is dialled by shard `i % shards`; every shard accepts on the
//! leaf port (SO_REUSEPORT, as the client port). A leaf connection lives on
//! its shard for its whole life (clients may move; a leaf connection never does).

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use glommio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::config_file::leaf::{parse_url, RemoteUrl};
use crate::limits::{LEAF_INFO_WAIT, LEAF_RECONNECT_DEFAULT};
use crate::net::conn::{CloseReason, Conn};
use crate::net::link::{LinkState, Phase};
use crate::net::session::{drive, follow, ping_loop, sleep_unless_closed, start_tls, write_loop};
use crate::protocol::leaf::{LeafOp, LeafParser};
use crate::shard::{Shard, SHUTDOWN};

/// What start-up prepares for leaf connections (see `shard::Server`).
pub struct LeafSetup {
    pub listen: Option<SocketAddr>,
    pub auth: Option<crate::auth::Auth>,
    pub lds: String,
    pub creds: Vec<Option<String>>,
    pub tls: Option<crate::tls::Tls>,
    pub client_tls: Vec<Option<std::sync::Arc<rustls::ClientConfig>>>,
}

/// Checks and reads what the `leafnodes` block names: the listen address,
/// its authorization, each remote's credentials file or seed (an unreadable
/// or invalid one stops the server at start, not at the first dial).
pub fn prepare(cfg: &Config) -> Result<LeafSetup, String> {
    let mut setup = LeafSetup {
        listen: None,
        auth: None,
        lds: format!("$LDS.{}", random_token(22)),
        creds: Vec::new(),
        tls: None,
        client_tls: Vec::new(),
    };
    let Some(leaf) = &cfg.leaf else {
        return Ok(setup);
    };
    if let Some((host, port)) = &leaf.listen {
        let addr = (host.as_str(), *port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("jetcore: leafnodes: cannot resolve listen host '{host}'"))?;
        setup.listen = Some(addr);
    }
    setup.tls = leaf.tls.as_ref().map(crate::tls::Tls::load).transpose()?;
    for r in &leaf.remotes {
        setup
            .client_tls
            .push(r.tls.as_ref().map(crate::tls::client_config).transpose()?);
    }
    if let Some(a) = &leaf.auth {
        setup.auth = crate::auth::Auth::new(a, None)?;
    }
    if let Some(r) = &leaf.reconnect {
        crate::conf::parse_duration(r)
            .ok_or_else(|| format!("jetcore: leafnodes: invalid reconnect '{r}'"))?;
    }
    for r in &leaf.remotes {
        let text = match (&r.credentials, &r.nkey) {
            (Some(path), _) => {
                let path = expand_home(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("jetcore: leafnodes remote: credentials file {path}: {e}")
                })?;
                crate::auth::creds::Creds::parse(&text, true)
                    .map_err(|e| format!("jetcore: leafnodes remote: {path}: {e}"))?;
                Some(text)
            }
            (None, Some(seed)) => {
                crate::auth::creds::Creds::parse(seed, false).map_err(|e| {
                    format!("jetcore: leafnodes remote nkey is not a valid seed: {e}")
                })?;
                Some(seed.clone())
            }
            (None, None) => None,
        };
        setup.creds.push(text);
    }
    Ok(setup)
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

/// Random letters and digits from the kernel's generator.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len];
    crate::auth::random_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Starts this shard's part: its remotes and, with a leaf port, accepting.
/// Returns the accept task (cancelled at shutdown or in lame duck mode).
pub fn start(shard: &Rc<Shard>) -> Result<Option<glommio::Task<()>>, String> {
    let Some(leaf) = &shard.cfg.leaf else {
        return Ok(None);
    };
    for (i, r) in leaf.remotes.iter().enumerate() {
        if r.disabled {
            crate::info!("Leafnode remote {} is disabled", r.urls.join(", "));
        } else if i % usize::from(shard.count) == usize::from(shard.id) {
            crate::info!(
                "Leafnode remote {} dialled from shard {}",
                r.urls.join(", "),
                shard.id
            );
            glommio::spawn_local(solicit(shard.clone(), i)).detach();
        }
    }
    let Some(addr) = shard.server.leaf_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!(
            "shard {}: cannot listen for leafnodes on {addr}: {e}",
            shard.id
        )
    })?;
    if shard.id == 0 {
        crate::info!("Listening for leafnode connections on {addr}");
    }
    Ok(Some(glommio::spawn_local(accept_loop(
        shard.clone(),
        listener,
    ))))
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) if !shard.stopping.get() => {
                glommio::spawn_local(run_link(shard.clone(), stream, None)).detach();
            }
            Ok(_) => return,
            Err(e) => {
                crate::error!("Error accepting leafnode connection: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Dials remote `index` until the server stops: its URLs in turn, redialled
/// after the connection ends.
async fn solicit(shard: Rc<Shard>, index: usize) {
    let leaf = shard.cfg.leaf.as_ref().expect("leafnodes configured");
    let remote = &leaf.remotes[index];
    let reconnect = redial_wait(leaf);
    let mut attempt = 0usize;
    while !stopping(&shard) {
        let text = &remote.urls[attempt % remote.urls.len()];
        attempt += 1;
        let url = parse_url(text).expect("checked when read");
        let timeout = remote
            .dial_timeout
            .as_deref()
            .or(leaf.dial_timeout.as_deref())
            .and_then(crate::conf::parse_duration)
            .unwrap_or(crate::limits::LEAF_DIAL_TIMEOUT);
        let wait = match dial(&url.addr, timeout).await {
            Ok(stream) => {
                attempt = 0;
                run_link(shard.clone(), stream, Some((index, url))).await
            }
            Err(e) => {
                crate::debug!(
                    "Error trying to connect as leafnode to remote server {:?} (attempt {attempt}): {e}",
                    url.addr
                );
                // nats-server: the wait, plus up to as much again at random.
                reconnect + reconnect.mul_f64((shard.random() % 1000) as f64 / 1000.0)
            }
        };
        let until = std::time::Instant::now() + wait;
        while !stopping(&shard) && std::time::Instant::now() < until {
            let left = until.saturating_duration_since(std::time::Instant::now());
            glommio::timer::sleep(left.min(crate::limits::SHUTDOWN_POLL)).await;
        }
    }
}

fn stopping(shard: &Shard) -> bool {
    shard.stopping.get() || SHUTDOWN.load(Ordering::Relaxed)
}

async fn dial(addr: &str, limit: Duration) -> std::io::Result<TcpStream> {
    let to = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let connect = async { TcpStream::connect(to).await.map_err(|e| e.to_string()) };
    crate::net::io::within(limit, connect)
        .await
        .map_err(std::io::Error::other)
}

/// Serves one leaf connection (dialled for `remote`, else accepted) until it
/// closes; returns how long a dialler waits before dialling again.
async fn run_link(
    shard: Rc<Shard>,
    stream: TcpStream,
    remote: Option<(usize, RemoteUrl)>,
) -> Duration {
    let cid = shard.next_cid();
    let addr = stream.peer_addr().ok();
    let peer = addr.map(|a| a.to_string()).unwrap_or_default();
    let ip = addr.map(|a| a.ip().to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard.server.live.write_deadline()));
    let mut conn = Conn::new(cid, stream, shard.cfg.max_pending, peer, ip);
    let leaf = shard.cfg.leaf.as_ref().expect("leafnodes configured");
    let hub = remote.as_ref().is_none_or(|(i, _)| leaf.remotes[*i].hub);
    let mut link = LinkState::new(hub, remote.as_ref().map(|r| r.0));
    // (An accepted connection also takes the peer's `request_isolation`.)
    link.isolated = leaf.isolate
        || remote
            .as_ref()
            .is_some_and(|(i, _)| leaf.remotes[*i].isolate);
    if let Some((_, url)) = remote {
        link.url = url;
    } else {
        conn.nonce = Some(crate::auth::nonce());
    }
    let accepted = link.remote.is_none();
    let url = link.url.clone();
    conn.link = Some(RefCell::new(link));
    // What comes before the leaf protocol proper: TLS, and (dialling) the
    // hub's INFO, read in plaintext to learn whether it wants TLS.
    let mut first = BytesMut::new();
    let setup = match remote_index(&conn) {
        None => accept_tls(&shard, &mut conn, &mut first).await,
        Some(i) => dial_tls(&shard, &mut conn, i, &url, &mut first).await,
    };
    let hello = match setup {
        Ok(hello) => hello,
        Err(e) => {
            crate::error!(
                "{} - lid:{cid} - Leafnode TLS handshake error: {e}",
                conn.peer
            );
            conn.shutdown_socket(libc::SHUT_RDWR);
            return redial_wait(leaf);
        }
    };
    let conn = Rc::new(conn);
    crate::debug!("{} - lid:{cid} - Leafnode connection created", conn.peer);
    shard.add_conn(conn.clone());
    if accepted && !info_sent(&shard) {
        conn.send(&shard.leaf_info_line(&conn, false));
    }
    glommio::spawn_local(write_loop(conn.clone())).detach();
    glommio::spawn_local(ping_loop(shard.clone(), conn.clone())).detach();
    glommio::spawn_local(handshake_timer(shard.clone(), conn.clone(), accepted)).detach();
    let go_on = match hello {
        Some(info) => follow(&shard, &conn, shard.leaf_op(&conn, LeafOp::Info(info))).await,
        None => true,
    };
    if go_on {
        read_loop(&shard, &conn, first).await;
    }
    if conn.st.borrow().close_reason.is_none() {
        conn.close(CloseReason::ClientClosed);
    }
    shard.unlink(&conn);
    shard.remove_conn(&conn).await;
    let delay = conn.link.as_ref().and_then(|l| l.borrow().redial_after);
    crate::info!(
        "{} - lid:{cid} - Leafnode connection closed: {:?}",
        conn.peer,
        conn.st.borrow().close_reason
    );
    delay.unwrap_or_else(|| redial_wait(leaf))
}

fn redial_wait(leaf: &crate::config_file::leaf::LeafConfig) -> Duration {
    leaf.reconnect
        .as_deref()
        .and_then(crate::conf::parse_duration)
        .unwrap_or(LEAF_RECONNECT_DEFAULT)
}

fn remote_index(conn: &Conn) -> Option<usize> {
    conn.link.as_ref().and_then(|l| l.borrow().remote)
}

/// The leaf port's INFO went out before the TLS handshake (in plaintext).
fn info_sent(shard: &Shard) -> bool {
    shard
        .server
        .leaf_tls
        .as_ref()
        .is_some_and(|t| !t.handshake_first)
}

/// TLS on an accepted leaf connection, when the leaf port has it (the
/// clients' way, with the leaf port's INFO).
async fn accept_tls(
    shard: &Shard,
    conn: &mut Conn,
    first: &mut BytesMut,
) -> Result<Option<bytes::Bytes>, String> {
    let Some(tls) = &shard.server.leaf_tls else {
        return Ok(None);
    };
    let info = shard.leaf_info_line(conn, false);
    start_tls(conn, tls, &info, first).await?;
    Ok(None)
}

/// TLS towards a hub: at once with `handshake_first`; else after the hub's
/// INFO (read here, in plaintext, and returned for the leaf protocol to
/// answer) when the INFO asks for it, the remote has a `tls` block or its
/// URL is `tls://`.
async fn dial_tls(
    shard: &Shard,
    conn: &mut Conn,
    index: usize,
    url: &RemoteUrl,
    first: &mut BytesMut,
) -> Result<Option<bytes::Bytes>, String> {
    let leaf = shard.cfg.leaf.as_ref().expect("leafnodes configured");
    let cfg = leaf.remotes[index].tls.as_ref();
    let client = shard.server.leaf_client_tls[index].clone();
    let host = url
        .addr
        .rsplit_once(':')
        .map_or(url.addr.as_str(), |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let timeout = cfg
        .and_then(|t| t.timeout)
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(2), Duration::from_secs_f64);
    let session = || -> Result<rustls::ClientConnection, String> {
        let client = client
            .clone()
            .ok_or("the hub requires TLS: give the remote a tls block with the hub's ca_file")?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("hub name {host:?}: {e}"))?;
        let mut s = rustls::ClientConnection::new(client, name).map_err(|e| e.to_string())?;
        // Bounded by the connection's queue (`max_pending`), as a server
        // session is, not by rustls's default.
        s.set_buffer_limit(None);
        Ok(s)
    };
    if cfg.is_some_and(|t| t.handshake_first) {
        let mut session = session()?;
        let work = crate::net::io::tls_handshake(&conn.stream, &mut session, first, false);
        crate::net::io::within(timeout, work).await?;
        *conn.tls.get_mut() = Some(rustls::Connection::Client(session));
        return Ok(None);
    }
    let info = crate::net::io::within(LEAF_INFO_WAIT, read_info(conn, first)).await?;
    let hello = crate::protocol::leaf::PeerHello::decode(&info).map_err(|e| e.to_string())?;
    if hello.tls_required || cfg.is_some() || url.tls {
        let mut session = session()?;
        let work = crate::net::io::tls_handshake(&conn.stream, &mut session, first, false);
        crate::net::io::within(timeout, work).await?;
        *conn.tls.get_mut() = Some(rustls::Connection::Client(session));
    }
    Ok(Some(info))
}

/// Reads the hub's first line, which must be INFO; what follows it stays in
/// `rest`.
async fn read_info(conn: &Conn, rest: &mut BytesMut) -> Result<bytes::Bytes, String> {
    let mut parser = LeafParser::new(crate::limits::LEAF_JSON_MAX, crate::limits::LEAF_JSON_MAX);
    loop {
        match parser.next(rest) {
            Ok(Some(LeafOp::Info(json))) => return Ok(json),
            Ok(Some(other)) => return Err(format!("expected INFO from the hub, got {other:?}")),
            Ok(None) => {}
            Err(e) => return Err(format!("bad INFO from the hub: {e:?}")),
        }
        rest.reserve(4096);
        match crate::net::io::read_into(&conn.stream, rest).await {
            Ok(0) => return Err("closed before INFO".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Closes a connection whose handshake has not finished in time: an
/// accepted one within the authorization timeout, a dialled one within
/// nats-server's wait for the hub's INFOs.
async fn handshake_timer(shard: Rc<Shard>, conn: Rc<Conn>, accepted: bool) {
    let wait = match (accepted, &shard.server.leaf_auth, shard.server.auth()) {
        (true, Some(a), _) => a.timeout,
        (true, None, Some(a)) => a.timeout,
        _ => LEAF_INFO_WAIT,
    };
    sleep_unless_closed(&shard, &conn, || wait).await;
    let phase = conn.link.as_ref().map(|l| l.borrow().phase);
    if conn.is_closing() || phase == Some(Phase::Ready) {
        return;
    }
    if accepted {
        crate::debug!("{} - lid:{} - Authentication Timeout", conn.peer, conn.cid);
        conn.send_err("Authentication Timeout");
        conn.close(CloseReason::AuthTimeout);
    } else {
        crate::error!(
            "{} - lid:{} - Leafnode handshake timed out (no INFO from the hub)",
            conn.peer,
            conn.cid
        );
        conn.send_err("Stale Leaf Node Connection - Closing");
        conn.close(CloseReason::StaleConnection);
    }
}

async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Conn>, first: BytesMut) {
    let mut parser = LeafParser::new(shard.cfg.max_payload, shard.cfg.max_control_line);
    let refuse = |conn: &Conn, e: crate::protocol::leaf::LeafError| {
        crate::error!(
            "{} - lid:{} - Leafnode protocol error: {e:?}",
            conn.peer,
            conn.cid
        );
        conn.send_err(e.text());
    };
    let handle = |conn: &Rc<Conn>, op| shard.leaf_op(conn, op);
    drive(
        shard,
        conn,
        first,
        |buf| parser.next(buf),
        handle,
        refuse,
        None,
    )
    .await;
}
