//! Drives a link to an external origin (`external.api`) on the target's
//! owner: subscribes the attempt's answer inbox and deliver subject (as
//! internal subscriptions of kind `LINK_KIND`), sends the consumer create
//! through the API prefix, takes deliveries in order through the same copy
//! path as local taps, answers flow control, notices gaps and silence, and
//! retries with nats-server's backoff. The wire format is in `remote`.
//!
//! Deliveries wait in the target's inbox (`REMOTE_INBOX_BYTES` at most; a
//! delivery beyond is dropped, and the gap makes the link ask again from
//! its position). Flow control is answered when the task reaches the
//! request, after everything delivered before it was staged: the origin's
//! window bounds what is in flight.

use bytes::Bytes;

use crate::js::consumer::random_token;
use crate::js::owner::set_interest;
use crate::js::source::link::{Link, Remote, TapState};
use crate::js::source::remote::{self, Answer, Ask, Attempt, Control, Take};
use crate::js::source::{Inbound, Links, Origin};
use crate::js::types::errors::ApiError;
use crate::js::types::seq::Nanos;
use crate::js::types::source::{Role, StreamSource};
use crate::js::Js;
use crate::limits::REMOTE_INBOX_BYTES;
use crate::protocol::parser::PubOp;
use crate::shard::msg::{SubKey, TapKey, JS_CID, LINK_KIND, UID_MASK};

/// A link subscription's owner: which target, which attempt, which kind.
#[derive(Debug, Clone, Copy)]
pub struct RemoteSub {
    pub uid: u32,
    pub tap: TapKey,
    pub answer: bool,
}

/// A message on a link subscription.
pub struct Received {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub hdr_len: usize,
    pub msg: Bytes,
}

impl Received {
    fn hdr(&self) -> &[u8] {
        &self.msg[..self.hdr_len]
    }
}

/// The setup failure error of a link (nats-server's codes for mirrors and
/// sources), with `text`.
fn setup_failed(role: Role, text: &str) -> ApiError {
    match role {
        Role::Mirror => ApiError::new(500, 10029, text),
        Role::Source => ApiError::new(500, 10045, text),
    }
}

impl Js {
    /// A message on a link subscription (from the router): queued for the
    /// target's task, within `REMOTE_INBOX_BYTES`.
    pub(crate) fn remote_inbound(
        &self,
        id: u32,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) {
        let Some(sub) = self.remote_subs.borrow().get(&id).copied() else {
            return; // an attempt that ended
        };
        let Some(l) = self.links.borrow().get(&sub.uid).cloned() else {
            return;
        };
        let size = subject.len() + msg.len();
        if l.remote_bytes.get() + size > REMOTE_INBOX_BYTES {
            return; // the link sees the gap and asks again
        }
        l.remote_bytes.set(l.remote_bytes.get() + size);
        // Copied: a slice would keep the whole read buffer or mesh batch it
        // came in alive while it waits.
        l.inbox.borrow_mut().push_back(Inbound::Remote {
            tap: sub.tap,
            answer: sub.answer,
            subject: Bytes::copy_from_slice(subject),
            reply: reply.map(|r| Bytes::copy_from_slice(r)),
            hdr_len: hdr_len.unwrap_or(0),
            msg: Bytes::copy_from_slice(msg),
        });
        l.stream.links_wake.notify();
    }

    fn remote_subscribe(&self, sub: RemoteSub, subject: &str) -> u32 {
        let mut id = self.next_remote_sub.get();
        while id == 0 || self.remote_subs.borrow().contains_key(&id) {
            id = (id + 1) & UID_MASK;
        }
        self.next_remote_sub.set((id + 1) & UID_MASK);
        self.remote_subs.borrow_mut().insert(id, sub);
        set_interest(
            &self.shard,
            &Bytes::from(subject.to_string()),
            None,
            self.link_key(id),
            true,
        );
        id
    }

    fn remote_unsubscribe(&self, id: u32, subject: &str) {
        if self.remote_subs.borrow_mut().remove(&id).is_some() {
            let subject = Bytes::from(subject.to_string());
            set_interest(&self.shard, &subject, None, self.link_key(id), false);
        }
    }

    fn link_key(&self, id: u32) -> SubKey {
        SubKey {
            cid: JS_CID,
            sub: id | LINK_KIND,
            shard: self.shard.id,
        }
    }

    /// Ends an attempt: its subscriptions go; with `delete`, the consumer
    /// too (best effort, as nats-server does when a source goes).
    pub(crate) fn remote_end(&self, r: &Remote, cfg: &StreamSource, delete: bool) {
        if let Some(id) = r.answer_sub {
            self.remote_unsubscribe(id, &r.answer_inbox);
        }
        self.remote_unsubscribe(r.deliver_sub, &r.deliver);
        if let Some(name) = r.consumer.as_deref().filter(|_| delete) {
            self.publish_request(&remote::delete_subject(cfg, name), None, None, b"");
        }
    }

    /// Publishes a request from the server (no client); whether anything
    /// will receive it.
    fn publish_request(
        &self,
        subject: &str,
        reply: Option<&str>,
        hdr: Option<&[u8]>,
        body: &[u8],
    ) -> bool {
        let mut msg = Vec::with_capacity(hdr.map_or(0, <[u8]>::len) + body.len());
        msg.extend_from_slice(hdr.unwrap_or_default());
        msg.extend_from_slice(body);
        let p = PubOp {
            subject: Bytes::from(subject.to_string()),
            reply: reply.map(|r| Bytes::from(r.to_string())),
            hdr_len: hdr.map(<[u8]>::len),
            msg: Bytes::from(msg),
        };
        self.shard.publish_caching(None, true, &p, false).0
    }

    /// An external link that needs attention now: an unanswered request
    /// that timed out, a consumer gone silent, or a retry that is due.
    pub(crate) fn remote_tend(&self, l: &Links, id: u32, now: Nanos) {
        let jitter = 100_000_000 + (self.shard.random() % 100_000_000) as i64;
        let ended = {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.id == id) else {
                return;
            };
            match &link.tap {
                TapState::Remote(r) if r.answer_sub.is_some() => {
                    let text = format!(
                        "no answer from {} within 30s",
                        link.cfg.external.as_ref().map_or("", |e| e.api.as_str())
                    );
                    link.error = Some(setup_failed(link.role, &text));
                    Some((link.retry_remote(now, jitter), link.cfg.clone()))
                }
                TapState::Remote(_) => {
                    // Silent: ask again from where it stands.
                    let old = link.take_tap(TapState::Closed { retry_at: now });
                    Some((old, link.cfg.clone()))
                }
                _ => None,
            }
        };
        if let Some((TapState::Remote(r), cfg)) = ended {
            self.remote_end(&r, &cfg, true);
        }
        let mut links = l.links.borrow_mut();
        let Some(link) = links.iter_mut().find(|k| k.id == id) else {
            return;
        };
        if matches!(link.tap, TapState::Closed { retry_at } if retry_at <= now) {
            self.remote_open(l, link, now, jitter);
        }
    }

    /// Sends a new attempt's consumer create (its subscriptions first, so
    /// nothing the origin sends is missed).
    fn remote_open(&self, l: &Links, link: &mut Link, now: Nanos, jitter: i64) {
        let earliest = link.last_ask.after(crate::limits::REMOTE_ASK_EVERY_NS);
        if link.last_ask != Nanos(0) && earliest > now {
            link.tap = TapState::Closed { retry_at: earliest };
            return;
        }
        let key = link.next_key(self.shard.id, l.stream.uid);
        let prefix = link
            .cfg
            .external
            .as_ref()
            .map_or(String::new(), |e| e.deliver.clone());
        let deliver = remote::deliver_subject(link.role, &prefix, &random_token(&self.shard, 8));
        let sub = |answer| RemoteSub {
            uid: l.stream.uid,
            tap: key,
            answer,
        };
        let deliver_sub = self.remote_subscribe(sub(false), &deliver);
        let answer_inbox = format!("$JSC.R.{}", random_token(&self.shard, 8));
        let answer_sub = self.remote_subscribe(sub(true), &answer_inbox);
        let domain = self.shard.cfg.domain.as_deref();
        let twice = {
            let cfg = l.stream.cfg.borrow();
            let n = cfg
                .sources()
                .iter()
                .filter(|s| s.name == link.cfg.name)
                .count();
            (n > 1).then(|| link.iname.to_string())
        };
        let name = remote::consumer_name(link.role, &l.stream.name, domain, twice.as_deref());
        link.tap = TapState::Remote(Box::new(Remote {
            key,
            asked: now,
            answer_sub: Some(answer_sub),
            answer_inbox,
            deliver_sub,
            deliver,
            attempt: Attempt::first(link.role, name),
            consumer: None,
            dseq: 0,
            kicked: false,
        }));
        link.last_ask = now;
        crate::debug!(
            "JetStream stream '{}': asking '{}' through '{}' for its messages after {}",
            l.stream.name,
            link.cfg.name,
            link.cfg.external.as_ref().map_or("", |e| e.api.as_str()),
            link.applied
        );
        self.remote_ask(l, link, now, jitter);
    }

    /// Sends the current attempt's request; nothing listening on the API
    /// prefix fails the attempt at once.
    fn remote_ask(&self, l: &Links, link: &mut Link, now: Nanos, jitter: i64) {
        let target_last = l.stream.next_seq() - 1;
        let offset = l.stream.positions.borrow().offset;
        let start = link.start(target_last, offset);
        let TapState::Remote(r) = &link.tap else {
            return;
        };
        let domain = self.shard.cfg.domain.as_deref();
        let req = remote::create_request(&Ask {
            role: link.role,
            cfg: &link.cfg,
            target: &l.stream.name,
            domain,
            start,
            deliver: &r.deliver,
            ident: &link.ident,
            attempt: &r.attempt,
        });
        let heard = self.publish_request(
            &req.subject,
            Some(&r.answer_inbox),
            req.hdr.as_deref(),
            &req.body,
        );
        if !heard {
            let text = format!("no responders for {}", req.subject);
            link.error = Some(setup_failed(link.role, &text));
            let old = link.retry_remote(now, jitter);
            if let TapState::Remote(r) = old {
                self.remote_end(&r, &link.cfg, false);
            }
        }
    }

    /// The origin answered the consumer create.
    pub(crate) async fn remote_answer(&self, l: &Links, tap: TapKey, m: Received) {
        let answer = remote::parse_answer(m.hdr(), &m.msg[m.hdr_len..]);
        if self.take_answer(l, tap, answer) {
            // Created again: copied again from its start.
            self.remote_recreated(l, tap).await;
        }
    }

    /// Acts on a create answer; true when the origin turns out to have been
    /// created again.
    fn take_answer(&self, l: &Links, tap: TapKey, answer: Answer) -> bool {
        let now = Nanos::now();
        let jitter = 100_000_000 + (self.shard.random() % 100_000_000) as i64;
        let mut links = l.links.borrow_mut();
        let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
            return false;
        };
        let TapState::Remote(r) = &mut link.tap else {
            return false;
        };
        if let Some(id) = r.answer_sub.take() {
            let inbox = r.answer_inbox.clone();
            self.remote_unsubscribe(id, &inbox);
        }
        let failed = match answer {
            Answer::Created { name, ident } => {
                crate::debug!(
                    "JetStream stream '{}': '{}' delivers through consumer '{name}'",
                    l.stream.name,
                    link.cfg.name
                );
                r.consumer = Some(name);
                link.error = None;
                link.fails = 0;
                link.heard = now;
                if let Some(id) = ident {
                    if !link.ident.is_empty() && *link.ident != id {
                        return true;
                    }
                    link.ident = id.into();
                }
                return false;
            }
            Answer::Refused(e) if e.err_code == 10225 => return true,
            Answer::Refused(e) => {
                let suffix = random_token(&self.shard, 8);
                if let Some(next) = r.attempt.fallback(e.err_code, &suffix) {
                    // An older origin: ask again in the form it knows.
                    r.attempt = next;
                    r.answer_inbox = format!("$JSC.R.{}", random_token(&self.shard, 8));
                    let sub = RemoteSub {
                        uid: l.stream.uid,
                        tap,
                        answer: true,
                    };
                    let inbox = r.answer_inbox.clone();
                    r.answer_sub = Some(self.remote_subscribe(sub, &inbox));
                    self.remote_ask(l, link, now, jitter);
                    return false;
                }
                crate::warn!(
                    "JetStream stream '{}': '{}' refused its consumer: {} ({})",
                    l.stream.name,
                    link.cfg.name,
                    e.description,
                    e.err_code
                );
                e
            }
            Answer::Invalid => setup_failed(link.role, "invalid consumer create response"),
        };
        link.error = Some(failed);
        if let TapState::Remote(r) = link.retry_remote(now, jitter) {
            self.remote_end(&r, &link.cfg, false);
        }
        false
    }

    /// The origin was deleted and created again: the link starts over from
    /// its first message (as for local origins).
    async fn remote_recreated(&self, l: &Links, tap: TapKey) {
        let old = {
            let links = l.links.borrow();
            links
                .iter()
                .find(|k| k.current(tap))
                .map(|k| (k.tap.clone(), k.cfg.clone()))
        };
        let Some((old, cfg)) = old else { return };
        let gone = ApiError::stream_not_found();
        self.tap_failed(l, tap, gone, Some(String::new())).await;
        if let TapState::Remote(r) = old {
            self.remote_end(&r, &cfg, true);
        }
    }

    /// A message on the deliver subject: data, a heartbeat, or a flow
    /// control request.
    pub(crate) async fn remote_delivery(&self, l: &Links, tap: TapKey, m: Received) {
        let body_empty = m.msg.len() == m.hdr_len;
        let control = remote::control(m.hdr(), body_empty, m.reply.is_some());
        let (role, applied, dseq) = {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
                return;
            };
            let TapState::Remote(r) = &link.tap else {
                return;
            };
            link.heard = Nanos::now();
            (link.role, link.applied, r.dseq)
        };
        match control {
            Some(Control::FlowControl) => {
                let reply = m.reply.expect("flow control has a reply");
                self.shard
                    .reply(&reply, Some(&remote::fc_answer(dseq, applied)), b"");
            }
            Some(Control::Heartbeat {
                last_consumer,
                stalled,
            }) => {
                if last_consumer > 0 && last_consumer != dseq {
                    // Deliveries were missed.
                    self.remote_restart(l, tap);
                } else if let Some(subject) = stalled {
                    self.shard.reply(&subject, None, b"");
                }
            }
            None => self.remote_data(l, tap, m, role, applied, dseq).await,
        }
    }

    async fn remote_data(
        &self,
        l: &Links,
        tap: TapKey,
        m: Received,
        role: Role,
        applied: u64,
        dseq: u64,
    ) {
        // Between servers (leaf nodes, routes) nats-server sends a delivery
        // to the deliver subject with `<ack reply>@<its subject>`; a relay
        // may do the same.
        let (reply, subject) = match m.reply.as_ref() {
            Some(r) => match memchr::memrchr(b'@', r) {
                Some(at) => (r.slice(..at), r.slice(at + 1..)),
                None => (r.clone(), m.subject.clone()),
            },
            None => return,
        };
        let Some(d) = remote::parse_ack(&reply) else {
            return; // not a delivery
        };
        let bump = |dseq: u64| {
            let mut links = l.links.borrow_mut();
            if let Some(link) = links.iter_mut().find(|k| k.current(tap)) {
                if let TapState::Remote(r) = &mut link.tap {
                    r.dseq = dseq;
                }
                link.pending = remote::lag(d.pending);
            }
        };
        match remote::take(role, &d, applied, dseq) {
            Take::Copy => {}
            Take::Have { bump: true } => return bump(d.dseq),
            Take::Have { bump: false } | Take::Drop => return,
            Take::Gap => return self.remote_restart(l, tap),
        }
        let origin = Origin {
            seq: d.sseq,
            ts: d.ts,
            subject,
            hdr: m.msg.slice(..m.hdr_len),
            payload: m.msg.slice(m.hdr_len..),
        };
        {
            let mut links = l.links.borrow_mut();
            if let Some(link) = links.iter_mut().find(|k| k.current(tap)) {
                link.queued = 1;
            }
        }
        if self.apply_one(l, tap, &origin, 1).await {
            bump(d.dseq);
        }
    }

    /// Deliveries were missed: this consumer goes, and a new one is asked
    /// for after the link's position.
    fn remote_restart(&self, l: &Links, tap: TapKey) {
        let old = {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
                return;
            };
            let old = link.take_tap(TapState::Closed {
                retry_at: Nanos::now(),
            });
            (old, link.cfg.clone())
        };
        if let (TapState::Remote(r), cfg) = old {
            self.remote_end(&r, &cfg, true);
        }
        l.stream.links_wake.notify();
    }
}
