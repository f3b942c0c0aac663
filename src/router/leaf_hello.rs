//! A leaf connection's ops (`impl Shard`): the handshake in both roles
//! (INFO, CONNECT, the INFO answering it), authentication of a dialling
//! server, the JetStream denies, loop detection, and the interest and
//! messages that follow (reference: ../shared/reference/leafnodes.md §1, §2,
//! §5.2).

use std::rc::Rc;

use bytes::Bytes;

use crate::config_file::leaf::ACCOUNT;
use crate::net::conn::{CloseReason, Conn, Flow, LocalSub};
use crate::net::link::{LinkState, Phase};
use crate::protocol::connect::ConnectOpts;
use crate::protocol::leaf::{LeafConnect, LeafInfo, LeafMsg, LeafOp, PeerHello};
use crate::protocol::parser::PubOp;
use crate::shard::msg::{JsCmd, ShardMsg, SubKey, HUB_SUB, LEAF_SUB};
use crate::shard::Shard;

/// The start of nats-server's refusal of a leaf below `min_version`.
const MIN_VERSION_TEXT: &str = "connection rejected since minimum version required is";

/// nats-server's text when a server sees its own loop-detection subject.
const LOOP_TEXT: &str =
    "Loop detected for leafnode account=\"$G\". Delaying attempt to reconnect for 30s";

impl Shard {
    /// Applies one op from a leaf connection; returns what its read loop
    /// must do next.
    pub fn leaf_op(&self, conn: &Rc<Conn>, op: LeafOp) -> Flow {
        if self.trace {
            match &op {
                LeafOp::Connect(json) => crate::trace!(
                    "{} - lid:{} - <<- [CONNECT {}]",
                    conn.peer,
                    conn.cid,
                    super::auth::redacted(json)
                ),
                _ => crate::trace!("{} - lid:{} - <<- {op:?}", conn.peer, conn.cid),
            }
        }
        let link = conn
            .link
            .as_ref()
            .expect("leaf ops come from leaf connections");
        let phase = link.borrow().phase;
        match op {
            LeafOp::Ping => {
                conn.st.borrow_mut().active = true;
                if self.mesh.is_some() && conn.peers_behind.get() {
                    return Flow::Barrier;
                }
                self.pong(conn);
                Flow::Continue
            }
            LeafOp::Pong => {
                conn.st.borrow_mut().pings_out = 0;
                conn.ponged();
                Flow::Continue
            }
            LeafOp::Ok => Flow::Continue,
            LeafOp::Err(text) => {
                let text = String::from_utf8_lossy(&text).into_owned();
                crate::error!("{} - lid:{} - Leafnode Error {text}", conn.peer, conn.cid);
                // nats-server's waits before dialling again, by what it said.
                let delay = if text.contains("Loop detected") {
                    Some(crate::limits::LEAF_LOOP_DELAY)
                } else if text.contains(MIN_VERSION_TEXT) {
                    Some(crate::limits::LEAF_MIN_VERSION_DELAY)
                } else {
                    None
                };
                if delay.is_some() {
                    link.borrow_mut().redial_after = delay;
                }
                conn.close(CloseReason::ProtocolError);
                Flow::Close
            }
            LeafOp::Info(json) => self.leaf_info(conn, &json),
            LeafOp::Connect(json) => self.leaf_connect(conn, &json),
            _ if phase != Phase::Ready => refuse(conn, "Authorization Violation"),
            LeafOp::Sub { subject, queue } => self.leaf_sub(conn, subject, queue),
            LeafOp::Unsub { subject, queue } => {
                let sub = link.borrow_mut().in_keys.remove(&(subject, queue));
                if let Some(sub) = sub {
                    self.drop_sub(conn, sub);
                }
                Flow::Continue
            }
            LeafOp::Msg(m) => self.leaf_msg(conn, m),
        }
    }

    /// The hub's INFO (we dialled): answer with CONNECT; or the INFO that
    /// answers our CONNECT: start the interest exchange.
    fn leaf_info(&self, conn: &Rc<Conn>, json: &[u8]) -> Flow {
        let link = conn.link.as_ref().expect("leaf connection");
        let info = match PeerHello::decode(json) {
            Ok(i) => i,
            Err(e) => {
                crate::error!(
                    "{} - lid:{} - Leafnode invalid INFO: {e}",
                    conn.peer,
                    conn.cid
                );
                conn.close(CloseReason::ProtocolError);
                return Flow::Close;
            }
        };
        let phase = link.borrow().phase;
        match phase {
            Phase::AwaitInfo => {
                if info.client_id == 0 || info.leafnode_urls.is_none() {
                    crate::error!(
                        "{} - lid:{} - Leafnode attempted to connect to wrong port",
                        conn.peer,
                        conn.cid
                    );
                    conn.close(CloseReason::ProtocolError);
                    return Flow::Close;
                }
                if info.tls_required && conn.tls.borrow().is_none() {
                    crate::error!(
                        "{} - lid:{} - Leafnode hub requires TLS: give the remote a tls \
                         block with the hub's ca_file",
                        conn.peer,
                        conn.cid
                    );
                    conn.close(CloseReason::ProtocolError);
                    return Flow::Close;
                }
                {
                    let mut l = link.borrow_mut();
                    l.peer_name = info.display_name().to_string();
                    l.peer_id = info.server_id.clone();
                    l.peer_cluster = info.cluster.clone();
                    l.peer_domain = info.domain.clone();
                    l.headers = info.headers;
                }
                match self.leaf_connect_line(conn, &info.nonce) {
                    Ok(line) => conn.send(&line),
                    Err(e) => {
                        crate::error!("{} - lid:{} - Leafnode {e}", conn.peer, conn.cid);
                        conn.close(CloseReason::ProtocolError);
                        return Flow::Close;
                    }
                }
                if info.info_on_connect {
                    link.borrow_mut().phase = Phase::AwaitConnectInfo;
                } else {
                    self.leaf_ready(conn);
                }
            }
            Phase::AwaitConnectInfo if info.connect_info => self.leaf_ready(conn),
            // Later INFOs list the hub cluster's URLs: we dial the configured ones.
            _ => {}
        }
        Flow::Continue
    }

    /// A dialling server's CONNECT (we accepted): authenticate it, check it,
    /// answer with the `connect_info` INFO and start the interest exchange.
    fn leaf_connect(&self, conn: &Rc<Conn>, json: &[u8]) -> Flow {
        let link = conn.link.as_ref().expect("leaf connection");
        if link.borrow().phase != Phase::AwaitConnect {
            return Flow::Continue;
        }
        let (hello, opts) = match (PeerHello::decode(json), ConnectOpts::decode(json)) {
            (Ok(h), Ok(o)) => (h, o),
            (Err(e), _) | (_, Err(e)) => {
                crate::error!(
                    "{} - lid:{} - Leafnode invalid CONNECT: {e}",
                    conn.peer,
                    conn.cid
                );
                conn.close(CloseReason::ProtocolError);
                return Flow::Close;
            }
        };
        let nonce = conn.nonce.as_deref().unwrap_or("");
        let who = match (&self.server.leaf_auth, self.server.auth()) {
            (Some(a), _) => a.check(&opts, nonce),
            (None, Some(a)) => a.check(&opts, nonce),
            (None, None) => Some(crate::auth::Identity {
                name: String::new(),
                perms: None,
            }),
        };
        let Some(who) = who else {
            crate::error!(
                "{} - lid:{} - Leafnode authentication error: no user matched",
                conn.peer,
                conn.cid
            );
            conn.send_err("Authorization Violation");
            conn.close(CloseReason::AuthViolation);
            return Flow::Close;
        };
        if hello.lang.is_some() {
            return refuse(conn, "attempted to connect to leaf node port");
        }
        if hello.cluster.contains(' ') {
            return refuse(conn, "cluster name cannot contain spaces");
        }
        if hello.cluster == self.server.server_name {
            return refuse(conn, "remote leafnode has same cluster name");
        }
        if !hello.gateway.is_empty() {
            return refuse(conn, "attempted to connect to leaf node port");
        }
        let leaf = self.cfg.leaf.as_ref().expect("leafnodes configured");
        if let Some(min) = &leaf.min_version {
            if !crate::config_file::leaf::version_at_least(&hello.version, min) {
                // As nats-server: an INFO first, so the leaf takes the refusal.
                conn.send(&self.leaf_info_line(conn, true));
                let text = format!("{MIN_VERSION_TEXT} \"{min}\"");
                crate::error!("{} - lid:{} - {text}", conn.peer, conn.cid);
                return refuse(conn, &text);
            }
        }
        {
            let mut l = link.borrow_mut();
            l.hub = !hello.is_hub;
            l.isolated = leaf.isolate || hello.isolate;
            l.peer_name = hello.display_name().to_string();
            l.peer_id = hello.server_id.clone();
            l.peer_cluster = hello.cluster.clone();
            l.peer_domain = hello.domain.clone();
            l.headers = hello.headers;
            l.deny_out
                .extend(hello.deny_pub.iter().map(|s| Bytes::from(s.clone())));
            l.perms = who.perms.clone();
        }
        conn.st.borrow_mut().user = who.name;
        conn.send(&self.leaf_info_line(conn, true));
        self.leaf_ready(conn);
        Flow::Continue
    }

    /// The handshake is done: JetStream denies, then the interest exchange.
    fn leaf_ready(&self, conn: &Rc<Conn>) {
        let link = conn.link.as_ref().expect("leaf connection");
        {
            let mut l = link.borrow_mut();
            self.leaf_denies(&mut l);
            let d = self.cfg.domain.as_deref().unwrap_or("");
            if self.cfg.jetstream.is_some() && (!d.is_empty() || !l.peer_domain.is_empty()) {
                crate::info!(
                    "{} - lid:{} - JetStream using domains: local \"{d}\", remote \"{}\"",
                    conn.peer,
                    conn.cid,
                    l.peer_domain
                );
            }
            crate::info!(
                "{} - lid:{} - Leafnode connection created for account: {ACCOUNT} \
                 (remote server \"{}\", we are the {})",
                conn.peer,
                conn.cid,
                l.peer_name,
                if l.hub { "hub" } else { "spoke" }
            );
        }
        self.advertise_all(conn);
        // External mirrors and sources may reach their origin again, once
        // the peer's interest (its JetStream API among it) has come in.
        // (JetStream is on on every shard or on none.)
        if self.js.get().is_some() {
            let (shard, conn) = (self.me(), conn.clone());
            glommio::spawn_local(async move {
                glommio::timer::sleep(crate::limits::LEAF_UP_SETTLE).await;
                if conn.is_closing() {
                    return;
                }
                shard.jetstream().leaf_up();
                for peer in (0..shard.count).filter(|p| *p != shard.id) {
                    shard.push_to(peer, ShardMsg::Js(Box::new(JsCmd::LeafUp)));
                }
            })
            .detach();
        }
    }

    /// nats-server's denies on a user account's leaf connection: the local
    /// JetStream API (and KV and object store shortcuts) never crosses, our
    /// domain's API never leaves when the other side has another domain;
    /// then the remote's own `deny_exports`/`deny_imports`.
    fn leaf_denies(&self, l: &mut LinkState) {
        for s in ["$JS.API.>", "$KV.>", "$OBJ.>"] {
            l.deny_out.push(Bytes::from_static(s.as_bytes()));
            l.deny_in.push(Bytes::from_static(s.as_bytes()));
        }
        if let (Some(d), true) = (&self.cfg.domain, self.cfg.jetstream.is_some()) {
            if *d != l.peer_domain {
                l.deny_out.push(Bytes::from(format!("$JS.{d}.API.>")));
            }
        }
        let remote = l
            .remote
            .and_then(|i| self.cfg.leaf.as_ref().map(|c| &c.remotes[i]));
        if let Some(r) = remote {
            let bytes =
                |v: &Vec<String>| v.iter().map(|s| Bytes::from(s.clone())).collect::<Vec<_>>();
            l.deny_out.extend(bytes(&r.deny_exports));
            l.deny_in.extend(bytes(&r.deny_imports));
        }
    }

    /// `LS+`: the peer's interest, held here as a subscription of its
    /// connection and broadcast to every shard.
    fn leaf_sub(&self, conn: &Rc<Conn>, subject: Bytes, queue: Option<(Bytes, u32)>) -> Flow {
        let link = conn.link.as_ref().expect("leaf connection");
        if subject[..] == *self.server.leaf_lds.as_bytes() {
            crate::error!("{} - lid:{} - {LOOP_TEXT}", conn.peer, conn.cid);
            link.borrow_mut().redial_after = Some(crate::limits::LEAF_LOOP_DELAY);
            return refuse(conn, LOOP_TEXT);
        }
        if !crate::subject::valid_subscribe(&subject) {
            crate::debug!(
                "{} - lid:{} - Leafnode invalid interest {:?} ignored",
                conn.peer,
                conn.cid,
                subject
            );
            return Flow::Continue;
        }
        let queue = queue.map(|(q, _)| q);
        let denied = link.borrow().perms.as_ref().is_some_and(|p| {
            // Loop detection is never a permission matter (nats-server).
            let literal =
                !subject.iter().any(|b| *b == b'*' || *b == b'>') && !subject.starts_with(b"$LDS.");
            literal && !p.may_subscribe(&subject, queue.as_deref())
        });
        if denied {
            // As nats-server's hub: a literal subscription the leaf user may
            // not make closes the connection (a wildcard is filtered per
            // message instead).
            let text = format!(
                "Permissions Violation for Subscription to \"{}\"",
                String::from_utf8_lossy(&subject)
            );
            crate::error!("{} - lid:{} - {text}", conn.peer, conn.cid);
            return refuse(conn, &text);
        }
        let (sub, hub) = {
            let mut l = link.borrow_mut();
            if !subject.starts_with(b"$LDS.") && !l.may_take(&subject) {
                return Flow::Continue;
            }
            let key = (subject.clone(), queue.clone());
            if l.in_keys.contains_key(&key) {
                // A queue key's new weight: the same interest here.
                return Flow::Continue;
            }
            if l.in_keys.len() >= crate::limits::LEAF_SUBS_MAX {
                drop(l);
                return refuse(conn, "maximum subscriptions exceeded");
            }
            let mut st = conn.st.borrow_mut();
            st.next_sub = (st.next_sub + 1) & !(LEAF_SUB | HUB_SUB);
            let sub = st.next_sub | LEAF_SUB | if l.hub { HUB_SUB } else { 0 };
            st.subs.insert(
                sub,
                LocalSub {
                    sid: Bytes::new(),
                    subject: subject.clone(),
                    queue: queue.clone(),
                    check_deny: false,
                    max: None,
                    delivered: 0,
                },
            );
            l.in_keys.insert(key, sub);
            (sub, l.hub)
        };
        debug_assert_eq!(hub, sub & HUB_SUB != 0);
        let key = SubKey {
            cid: conn.cid,
            sub,
            shard: self.id,
        };
        if self.add_sub_everywhere(conn, &subject, queue.as_ref(), key) {
            Flow::FlushMesh
        } else {
            Flow::Continue
        }
    }

    /// `LMSG`/`HMSG`: published here as from a client, to plain
    /// subscriptions and the queue groups it names, never back to the peer.
    fn leaf_msg(&self, conn: &Rc<Conn>, m: LeafMsg) -> Flow {
        let link = conn.link.as_ref().expect("leaf connection");
        {
            let mut st = conn.st.borrow_mut();
            st.active = true;
            st.in_msgs += 1;
            st.in_bytes += m.msg.len() as u64;
        }
        if !link.borrow().may_take(&m.subject) || !link.borrow().may_receive(&m.subject) {
            return Flow::Continue;
        }
        let split = m
            .reply
            .as_ref()
            .and_then(crate::protocol::leaf::split_ack_subject);
        let (subject, reply) = match split {
            Some((ack, shown)) => (shown, Some(ack)),
            None => (m.subject.clone(), m.reply),
        };
        link.borrow_mut().inbound_queues = m.queues;
        let p = PubOp {
            subject,
            reply,
            hdr_len: m.hdr_len,
            msg: m.msg,
        };
        let (_, full) = if p.subject == m.subject {
            self.publish(Some(conn), false, &p)
        } else {
            self.publish_matched(Some(conn), false, &p, &m.subject, true, false)
        };
        link.borrow_mut().inbound_queues.clear();
        if full {
            Flow::FlushMesh
        } else {
            Flow::Continue
        }
    }

    /// The CONNECT we send to a hub: our names and domain, and credentials
    /// from the URL, a credentials file or an NKey seed (signing `nonce`).
    fn leaf_connect_line(&self, conn: &Conn, nonce: &str) -> Result<Vec<u8>, String> {
        let link = conn.link.as_ref().expect("leaf connection").borrow();
        let index = link.remote.expect("we dialled it");
        let remote = &self
            .cfg
            .leaf
            .as_ref()
            .expect("a remote is configured")
            .remotes[index];
        let url = &link.url;
        let (mut jwt, mut nkey, mut sig) = (String::new(), String::new(), String::new());
        if let Some(text) = &self.server.leaf_creds[index] {
            let creds = crate::auth::creds::Creds::parse(text, remote.credentials.is_some())?;
            sig = creds.sign(nonce.as_bytes())?;
            if creds.jwt.is_empty() {
                nkey = creds.public;
            }
            jwt = creds.jwt;
        }
        let token = if url.pass.is_empty() {
            url.user.as_str()
        } else {
            ""
        };
        let js = self.cfg.jetstream.is_some();
        let connect = LeafConnect {
            version: crate::config::NATS_COMPAT_VERSION,
            server_id: &self.server.server_id,
            domain: self.cfg.domain.as_deref().filter(|_| js),
            name: &self.server.server_name,
            cluster: &self.server.server_name,
            headers: true,
            jetstream: js,
            remote_account: ACCOUNT,
            protocol: 1,
            user: &url.user,
            pass: &url.pass,
            auth_token: token,
            jwt: &jwt,
            nkey: &nkey,
            sig,
            deny_pub: &remote.deny_imports,
            is_hub: remote.hub,
            isolate: remote.request_isolation,
        };
        let json = serde_json::to_string(&connect).map_err(|e| e.to_string())?;
        Ok(format!("CONNECT {json}\r\n").into_bytes())
    }

    /// Our INFO on a leaf connection we accepted (`connect_info`: the one
    /// answering CONNECT, without a nonce).
    pub fn leaf_info_line(&self, conn: &Conn, connect_info: bool) -> Vec<u8> {
        let listen = self.server.leaf_listen.expect("accepted on the leaf port");
        let leaf = self.cfg.leaf.as_ref().expect("leafnodes configured");
        let host = listen.ip().to_string();
        let urls = match (&leaf.advertise, leaf.no_advertise) {
            (_, true) => Vec::new(),
            (Some(a), false) => vec![a.clone()],
            // An unspecified address would send the peer nowhere.
            (None, false) if listen.ip().is_unspecified() => Vec::new(),
            (None, false) => vec![listen.to_string()],
        };
        let js = self.cfg.jetstream.is_some();
        let perms = conn
            .link
            .as_ref()
            .and_then(|l| l.borrow().perms.clone())
            .filter(|_| connect_info);
        let info = LeafInfo {
            server_id: &self.server.server_id,
            server_name: &self.server.server_name,
            version: crate::config::NATS_COMPAT_VERSION,
            proto: 1,
            go: concat!("jetcore-", env!("CARGO_PKG_VERSION")),
            host: &host,
            port: listen.port(),
            headers: true,
            auth_required: true,
            tls_required: self.server.leaf_tls.is_some(),
            tls_verify: self.server.leaf_tls.as_ref().is_some_and(|t| t.verify),
            max_payload: self.cfg.max_payload,
            jetstream: js,
            ip: listen.to_string(),
            client_id: conn.cid,
            nonce: conn.nonce.as_deref().filter(|_| !connect_info),
            domain: self.cfg.domain.as_deref().filter(|_| js),
            connect_info,
            remote_account: connect_info.then_some(ACCOUNT),
            import: perms
                .as_ref()
                .and_then(|p| permission_json(&p.config.subscribe)),
            export: perms
                .as_ref()
                .and_then(|p| permission_json(&p.config.publish)),
            info_on_connect: !connect_info,
            leafnode_urls: urls,
        };
        let json = serde_json::to_string(&info).expect("INFO serializes");
        format!("INFO {json}\r\n").into_bytes()
    }
}

/// A permission as the leaf's INFO shows it (None: unrestricted).
fn permission_json(
    p: &Option<crate::config_file::auth::SubjectPermission>,
) -> Option<crate::protocol::leaf::PermissionJson> {
    p.as_ref().map(|p| crate::protocol::leaf::PermissionJson {
        allow: p.allow.clone().unwrap_or_default(),
        deny: p.deny.clone(),
    })
}

/// `-ERR '<text>'` and close, as nats-server refuses a leaf connection.
fn refuse(conn: &Conn, text: &str) -> Flow {
    conn.send_err(text);
    conn.close(CloseReason::ProtocolError);
    Flow::Close
}
