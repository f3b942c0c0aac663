//! A leaf connection's own state (`LinkState`, kept in its `Conn`): which
//! side we play, what the other server said about itself, the interest we
//! advertised to it and the interest it advertised to us, and the subjects
//! that never cross. The ops are handled in `router::leaf`, the connection's
//! tasks are in `leaf`.
//!
//! Bounds: the peer's interest keys are at most `LEAF_SUBS_MAX` (more closes
//! the connection); what we advertise mirrors our own interest, bounded by
//! the subscriptions the server holds.

use ahash::AHashMap;
use bytes::Bytes;

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// We dialled: waiting for the hub's INFO.
    AwaitInfo,
    /// We dialled and sent CONNECT: waiting for the INFO that answers it.
    AwaitConnectInfo,
    /// We accepted: waiting for the peer's CONNECT.
    AwaitConnect,
    /// Interest and messages flow.
    Ready,
}

/// One leaf connection's state.
#[derive(Debug)]
pub struct LinkState {
    pub phase: Phase,
    /// We play the hub on this connection (we accepted it, unless the
    /// dialler said `is_hub`; or we dialled with `hub: true`).
    pub hub: bool,
    /// We dialled it (the remote's index in `leafnodes.remotes`).
    pub remote: Option<usize>,
    /// The other server: its name, id, cluster and JetStream domain.
    pub peer_name: String,
    pub peer_id: String,
    pub peer_cluster: String,
    pub peer_domain: String,
    /// The other side takes headers (else header blocks are dropped).
    pub headers: bool,
    /// Interest we advertised: plain subjects and queue keys, with how many
    /// of our subscriptions stand behind each.
    pub out_plain: AHashMap<Bytes, u32>,
    pub out_queue: AHashMap<(Bytes, Bytes), u32>,
    /// The peer's interest keys and the subscription each is here.
    pub in_keys: AHashMap<(Bytes, Option<Bytes>), u32>,
    /// Messages on these subjects are never sent (remote `deny_exports`,
    /// CONNECT's `deny_pub`, the JetStream denies).
    pub deny_out: Vec<Bytes>,
    /// Never taken from the peer nor advertised to it (`deny_imports`, the
    /// JetStream denies).
    pub deny_in: Vec<Bytes>,
    /// How long a dialler waits before dialling again, when the other side
    /// said why it refused (a loop: 30 s; its minimum version: 5 s).
    pub redial_after: Option<std::time::Duration>,
    /// Interest learned from other leaf connections is not sent here
    /// (`isolate_leafnode_interest`, or the peer's `request_isolation`).
    pub isolated: bool,
    /// The queue groups the LMSG being routed names (empty between messages).
    pub inbound_queues: Vec<Bytes>,
    /// The URL we dialled (its user information goes into CONNECT).
    pub url: crate::config_file::leaf::RemoteUrl,
    /// The permissions of the user a dialling leaf authenticated as, from
    /// the leaf's point of view: what it may publish (send us) and
    /// subscribe to (receive from us). None: no restriction.
    pub perms: Option<std::sync::Arc<crate::auth::perms::Perms>>,
}

impl LinkState {
    pub fn new(hub: bool, remote: Option<usize>) -> LinkState {
        LinkState {
            phase: if remote.is_some() {
                Phase::AwaitInfo
            } else {
                Phase::AwaitConnect
            },
            hub,
            remote,
            peer_name: String::new(),
            peer_id: String::new(),
            peer_cluster: String::new(),
            peer_domain: String::new(),
            headers: false,
            out_plain: AHashMap::new(),
            out_queue: AHashMap::new(),
            in_keys: AHashMap::new(),
            deny_out: Vec::new(),
            deny_in: Vec::new(),
            redial_after: None,
            isolated: false,
            inbound_queues: Vec::new(),
            url: Default::default(),
            perms: None,
        }
    }

    /// Whether a message on `subject` may be sent to the peer (and the leaf
    /// user may receive it).
    pub fn may_send(&self, subject: &[u8]) -> bool {
        !denied(&self.deny_out, subject)
            && self
                .perms
                .as_ref()
                .is_none_or(|p| p.may_subscribe(subject, None))
    }

    /// Whether the peer's interest or message on `subject` is taken, and
    /// whether our interest in it is advertised.
    pub fn may_take(&self, subject: &[u8]) -> bool {
        !denied(&self.deny_in, subject)
    }

    /// Whether the leaf user may publish to `subject` (a message it sent;
    /// our interest advertised to it, when literal). JetStream acks and
    /// loop detection always pass, as on nats-server.
    pub fn may_receive(&self, subject: &[u8]) -> bool {
        self.perms.as_ref().is_none_or(|p| {
            subject.iter().any(|b| *b == b'*' || *b == b'>')
                || subject.starts_with(b"$JS.ACK.")
                || subject.starts_with(b"$LDS.")
                || p.may_publish(subject)
        })
    }

    /// Counts one more (`add`) or one fewer subscription behind plain
    /// interest `subject`; returns the line to send, if the advertised
    /// interest changed (LS+ on the first, LS- after the last).
    pub fn count_plain(&mut self, subject: &Bytes, add: bool, out: &mut Vec<u8>) {
        use crate::protocol::leaf::{encode_sub, encode_unsub};
        if add {
            let n = self.out_plain.entry(subject.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                encode_sub(out, subject, None);
            }
        } else if let Some(n) = self.out_plain.get_mut(subject) {
            *n -= 1;
            if *n == 0 {
                self.out_plain.remove(subject);
                encode_unsub(out, subject, None);
            }
        }
    }

    /// As `count_plain` for a queue key: every change is advertised, with the
    /// members' count as its weight, as nats-server does.
    pub fn count_queue(&mut self, subject: &Bytes, queue: &Bytes, add: bool, out: &mut Vec<u8>) {
        use crate::protocol::leaf::{encode_sub, encode_unsub};
        let key = (subject.clone(), queue.clone());
        let n = match (add, self.out_queue.get_mut(&key)) {
            (true, Some(n)) => {
                *n += 1;
                *n
            }
            (true, None) => {
                self.out_queue.insert(key, 1);
                1
            }
            (false, Some(n)) => {
                *n -= 1;
                *n
            }
            (false, None) => return,
        };
        if n == 0 {
            self.out_queue.remove(&(subject.clone(), queue.clone()));
            encode_unsub(out, subject, Some(queue));
        } else {
            encode_sub(out, subject, Some((queue, n)));
        }
    }
}

/// Whether `subject` falls under one of `patterns` (a wildcard subject only
/// when a pattern covers all it matches: `$JS.API.>` covers `$JS.API.INFO`
/// and `$JS.API.STREAM.>`, not `$JS.>`).
fn denied(patterns: &[Bytes], subject: &[u8]) -> bool {
    patterns
        .iter()
        .any(|p| crate::subject::is_subset(subject, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_interest_is_advertised_once_and_withdrawn_after_the_last() {
        let mut l = LinkState::new(false, Some(0));
        let mut out = Vec::new();
        let foo = Bytes::from("foo");
        l.count_plain(&foo, true, &mut out);
        l.count_plain(&foo, true, &mut out);
        assert_eq!(out, b"LS+ foo\r\n");
        l.count_plain(&foo, false, &mut out);
        assert_eq!(out, b"LS+ foo\r\n");
        l.count_plain(&foo, false, &mut out);
        assert_eq!(out, b"LS+ foo\r\nLS- foo\r\n");
        l.count_plain(&foo, false, &mut out);
        assert_eq!(out, b"LS+ foo\r\nLS- foo\r\n");
    }

    #[test]
    fn queue_interest_is_advertised_with_its_weight_on_every_change() {
        let mut l = LinkState::new(true, None);
        let mut out = Vec::new();
        let (bar, q) = (Bytes::from("bar"), Bytes::from("q1"));
        l.count_queue(&bar, &q, true, &mut out);
        l.count_queue(&bar, &q, true, &mut out);
        l.count_queue(&bar, &q, false, &mut out);
        l.count_queue(&bar, &q, false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "LS+ bar q1 1\r\nLS+ bar q1 2\r\nLS+ bar q1 1\r\nLS- bar q1\r\n"
        );
    }

    #[test]
    fn denies_cover_subjects_and_wildcards_under_them() {
        let mut l = LinkState::new(false, Some(0));
        l.deny_out = vec![Bytes::from("$JS.API.>"), Bytes::from("secret")];
        assert!(!l.may_send(b"$JS.API.INFO"));
        assert!(!l.may_send(b"$JS.API.STREAM.>"));
        assert!(!l.may_send(b"secret"));
        assert!(l.may_send(b"$JS.hub.API.INFO"));
        assert!(l.may_send(b"public"));
        assert!(l.may_take(b"$JS.API.INFO"));
    }
}
