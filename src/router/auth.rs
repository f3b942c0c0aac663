//! Authentication at CONNECT and permission checks on publish, subscribe and
//! delivery, as methods on `Shard` (the router's), with nats-server's texts.
//! A connection without permissions pays one `Option` check per operation.

use bytes::Bytes;

use crate::auth::perms::ConnPerms;
use crate::net::conn::{CloseReason, Conn};
use crate::protocol::connect::ConnectOpts;
use crate::shard::Shard;

impl Shard {
    /// Checks a CONNECT's credentials when authentication is configured;
    /// false: the client was refused and is being closed.
    pub(super) fn authenticate(&self, conn: &Conn, opts: &ConnectOpts) -> bool {
        // Read before the users: a reload in between makes it look older.
        let gen = self
            .server
            .auth_gen
            .load(std::sync::atomic::Ordering::SeqCst);
        let Some(auth) = self.server.auth() else {
            return true;
        };
        match self.identify(conn, opts, &auth) {
            Some(id) => {
                adopt(conn, id, gen);
                true
            }
            None => {
                // Who tried, never with what.
                let who = if !opts.user.is_empty() {
                    format!(" - User \"{}\"", opts.user)
                } else if !opts.nkey.is_empty() {
                    format!(" - NKey \"{}\"", opts.nkey)
                } else {
                    String::new()
                };
                crate::error!(
                    "{} - cid:{} - authentication error{who}",
                    conn.peer,
                    conn.cid
                );
                conn.send_err("Authorization Violation");
                conn.close(CloseReason::AuthViolation);
                false
            }
        }
    }

    /// Who a client is: its certificate's user with `verify_and_map` (the
    /// certificate decides, whatever CONNECT says, as in nats-server), else
    /// its CONNECT's credentials.
    fn identify(
        &self,
        conn: &Conn,
        opts: &ConnectOpts,
        auth: &crate::auth::Auth,
    ) -> Option<crate::auth::Identity> {
        if self.server.tls.as_ref().is_some_and(|t| t.map) {
            return cert_names(conn).and_then(|n| auth.check_cert(&n));
        }
        auth.check(opts, conn.nonce.as_deref().unwrap_or(""))
    }

    /// An op other than CONNECT: fine once connected or without
    /// authentication; before CONNECT, the client becomes `no_auth_user` if
    /// one is set (as nats-server lets telnet users in), else it is refused.
    /// False: refused and closing.
    pub(super) fn before_connect(&self, conn: &Conn) -> bool {
        if self.server.auth.is_none() || conn.st.borrow().connected {
            return true;
        }
        let gen = self
            .server
            .auth_gen
            .load(std::sync::atomic::Ordering::SeqCst);
        let Some(auth) = self.server.auth() else {
            return true;
        };
        if let Some(id) = auth.check(&ConnectOpts::default(), "") {
            adopt(conn, id, gen);
            conn.st.borrow_mut().connected = true;
            return true;
        }
        crate::error!(
            "{} - cid:{} - authentication error: no CONNECT",
            conn.peer,
            conn.cid
        );
        conn.send_err("Authorization Violation");
        conn.close(CloseReason::AuthViolation);
        false
    }

    /// After a reload replaced the users and permissions: every connected
    /// client is checked again, as nats-server does. A client whose user is
    /// gone is closed; one whose credentials no longer pass is told
    /// (Authorization Violation) and closed; the others take their user's new
    /// permissions, and lose the subscriptions these no longer allow.
    pub fn reauthorize(&self) {
        let conns: Vec<std::rc::Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for conn in conns {
            self.reauthorize_one(&conn);
        }
        // The interest removed above reaches the other shards.
        let shard = self.me();
        glommio::spawn_local(async move { shard.flush_mesh().await }).detach();
    }

    /// `reauthorize` for one connection (also one that moved here while a
    /// reload happened); the caller sends what it queued for peers.
    pub(crate) fn reauthorize_one(&self, conn: &Conn) {
        let gen = self
            .server
            .auth_gen
            .load(std::sync::atomic::Ordering::SeqCst);
        let Some(auth) = self.server.auth() else {
            return;
        };
        let (connected, opts, user) = {
            let st = conn.st.borrow();
            (st.connected, st.opts.clone(), st.user.clone())
        };
        // A connection mid-move is checked on its new shard.
        let moving = conn.moving.get() != crate::net::conn::Moving::Home;
        if !connected || conn.is_closing() || moving {
            return;
        }
        let Some(id) = self.identify(conn, &opts, &auth) else {
            if user.is_empty() || auth.has_user(&user) {
                conn.send_err("Authorization Violation");
            }
            crate::debug!("{} - cid:{} - closed by a reload", conn.peer, conn.cid);
            conn.close(CloseReason::AuthViolation);
            return;
        };
        {
            adopt(conn, id, gen);
            let subs: Vec<(u32, Bytes, Option<Bytes>, Bytes)> = {
                let st = conn.st.borrow();
                st.subs
                    .iter()
                    .map(|(k, s)| (*k, s.subject.clone(), s.queue.clone(), s.sid.clone()))
                    .collect()
            };
            for (sub, subject, queue, sid) in subs {
                let verdict = conn.st.borrow().perms.as_ref().map(|p| {
                    let allowed = p.perms.may_subscribe(&subject, queue.as_deref());
                    (allowed, p.perms.needs_delivery_check(&subject))
                });
                match verdict {
                    Some((false, _)) => {
                        conn.send_err(&format!(
                            "Permissions Violation for Subscription to \"{}\" (sid \"{}\")",
                            String::from_utf8_lossy(&subject),
                            String::from_utf8_lossy(&sid)
                        ));
                        self.drop_sub(conn, sub);
                    }
                    other => {
                        let check = other.is_some_and(|(_, c)| c);
                        if let Some(s) = conn.st.borrow_mut().subs.get_mut(&sub) {
                            s.check_deny = check;
                        }
                    }
                }
            }
        }
    }

    /// Whether a publish to `subject` is refused by the connection's
    /// permissions (it was told; the connection stays).
    pub(super) fn publish_denied(&self, conn: &Conn, subject: &Bytes) -> bool {
        let denied = {
            let mut st = conn.st.borrow_mut();
            match st.perms.as_mut() {
                None => return false,
                Some(p) => !p.may_publish(subject),
            }
        };
        if denied {
            let s = String::from_utf8_lossy(subject);
            crate::debug!(
                "{} - cid:{} - Publish Violation - Subject \"{s}\"",
                conn.peer,
                conn.cid
            );
            conn.send_err(&format!("Permissions Violation for Publish to \"{s}\""));
        }
        denied
    }

    /// Whether a subscription is refused by the connection's permissions
    /// (it was told; the connection stays). Also says whether its
    /// deliveries must be checked against the deny list.
    pub(super) fn subscribe_denied(
        &self,
        conn: &Conn,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> Option<bool> {
        let st = conn.st.borrow();
        let Some(p) = st.perms.as_ref() else {
            return Some(false);
        };
        if p.perms.may_subscribe(subject, queue) {
            return Some(p.perms.needs_delivery_check(subject));
        }
        drop(st);
        let s = String::from_utf8_lossy(subject);
        let text = match queue {
            Some(q) => format!(
                "Permissions Violation for Subscription to \"{s}\" using queue \"{}\"",
                String::from_utf8_lossy(q)
            ),
            None => format!("Permissions Violation for Subscription to \"{s}\""),
        };
        crate::debug!(
            "{} - cid:{} - Subscription Violation - Subject \"{s}\"",
            conn.peer,
            conn.cid
        );
        conn.send_err(&text);
        None
    }
}

/// The connection is now `id`'s: its user name and permissions, as of
/// reload generation `gen`.
fn adopt(conn: &Conn, id: crate::auth::Identity, gen: u64) {
    let mut st = conn.st.borrow_mut();
    st.auth_gen = gen;
    st.perms = id.perms.map(ConnPerms::new);
    st.user = id.name;
}

/// The names in the client's TLS certificate (None: no TLS or no certificate).
fn cert_names(conn: &Conn) -> Option<crate::auth::certmap::CertNames> {
    let tls = conn.tls.borrow();
    let Some(rustls::Connection::Server(tls)) = &*tls else {
        return None;
    };
    let cert = tls.peer_certificates()?.first()?;
    crate::auth::certmap::names(cert)
}

/// A CONNECT's JSON for the trace log, with `pass` and `auth_token` replaced
/// by `[REDACTED]` (as nats-server traces it).
pub(super) fn redacted(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut m)) => {
            for (k, v) in m.iter_mut() {
                if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("auth_token") {
                    *v = serde_json::Value::String("[REDACTED]".into());
                }
            }
            serde_json::Value::Object(m).to_string()
        }
        // Not JSON: the CONNECT will be refused; none of it is logged.
        _ => "(unreadable)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_redacted_from_traces() {
        let t = super::redacted(br#"{"user":"a","pass":"hunter2","AUTH_TOKEN":"t0k"}"#);
        assert!(!t.contains("hunter2") && !t.contains("t0k"), "{t}");
        assert!(t.contains(r#""user":"a""#));
        assert_eq!(super::redacted(b"{nope"), "(unreadable)");
    }
}
