//! Priority groups on pull consumers (nats-server 2.11, ADR-42): a request's
//! `group`, `min_pending`, `min_ack_pending`, `id` and `priority` and their
//! checks; which open request the next message goes to under each policy;
//! the pin of a `pinned_client` consumer (its id, its expiry, the
//! `Nats-Pin-Id` header). Pure, but for the `Consumer` shell at the end
//! (advisories, the unpin request).

use bytes::Bytes;
use serde::Deserialize;

use crate::js::consumer::advisory::{random_token, status};
use crate::js::consumer::pull::Status;
use crate::js::consumer::state::State;
use crate::js::consumer::Consumer;
use crate::js::types::consumer_config::{check_group_name, ConsumerConfig, PriorityPolicy};
use crate::js::types::errors::ApiError;
use crate::js::types::json::{self, now_nanos, rfc3339};
use crate::js::types::seq::Nanos;
use crate::shard::Shard;

/// The priority fields of a JSON request body (a bare number or an empty
/// body has none, and skips the group checks, as nats-server does).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct PullGroup {
    pub group: String,
    pub min_pending: i64,
    pub min_ack_pending: i64,
    pub id: String,
    pub priority: i64,
}

/// The client a `pinned_client` consumer serves: its id (22 characters), when
/// it was pinned, and when the pin lapses unless that client pulls again.
#[derive(Debug, Clone)]
pub struct Pin {
    pub id: String,
    pub at: i64,
    pub expires: Nanos,
}

/// What a request's priority fields ask: the status to refuse it with, or
/// whether it renews the current pin.
pub fn check(
    cfg: &ConsumerConfig,
    g: Option<&PullGroup>,
    pin: Option<&Pin>,
) -> Result<bool, Vec<u8>> {
    let Some(g) = g else { return Ok(false) };
    let policy = cfg.priority();
    let bad = |m: &str| Err(status(&format!("400 Bad Request - {m}"), &[]));
    if (g.min_pending != 0 || g.min_ack_pending != 0) && policy != PriorityPolicy::Overflow {
        return bad("Not a Overflow Priority consumer");
    }
    if !g.id.is_empty() && policy != PriorityPolicy::PinnedClient {
        return bad("Not a Pinned Client Priority consumer");
    }
    if !(0..=9).contains(&g.priority) {
        return bad("Priority must be between 0 and 9");
    }
    if policy == PriorityPolicy::None {
        return Ok(false);
    }
    if g.group.is_empty() {
        return bad("Priority Group missing");
    }
    if !cfg.priority_groups.contains(&g.group) {
        return bad("Invalid Priority Group");
    }
    match pin {
        Some(p) if g.id == p.id => Ok(true),
        Some(_) if !g.id.is_empty() => Err(status("423 Nats-Pin-Id mismatch", &[])),
        _ => Ok(false),
    }
}

/// The `423 Nats-Wrong-Pin-Id` a request with a stale pin id ends with.
fn wrong_pin(batch: u64, bytes: u64) -> Vec<u8> {
    status(
        "423 Nats-Wrong-Pin-Id",
        &[
            ("Nats-Pending-Messages", batch.to_string()),
            ("Nats-Pending-Bytes", bytes.to_string()),
        ],
    )
}

/// A request's place among `prioritized` ones: lower first; a request
/// without priority fields last.
fn rank(g: &Option<PullGroup>) -> i64 {
    g.as_ref().map_or(i64::from(i32::MAX), |g| g.priority)
}

impl State {
    /// Queues a request where its policy puts it: `prioritized` ones after
    /// those of the same or a better priority, others at the end.
    pub(super) fn enqueue(&mut self, req: super::pull::PullReq, policy: PriorityPolicy) {
        if policy != PriorityPolicy::Prioritized {
            self.waiting.push_back(req);
            return;
        }
        let r = rank(&req.group);
        let at = self
            .waiting
            .iter()
            .position(|w| rank(&w.group) > r)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, req);
    }

    /// Moves the request the next message goes to the front and returns its
    /// reply subject; requests it passes over go to the back, requests with
    /// a stale pin id end (their statuses in `ended`). None when no request
    /// may take a message now (or the front one expired: the next pass
    /// answers it).
    pub fn choose_request(
        &mut self,
        now: Nanos,
        policy: PriorityPolicy,
        ended: &mut Vec<Status>,
    ) -> Option<Bytes> {
        let mut passed = 0;
        loop {
            while self.waiting.front().is_some_and(|r| r.batch == 0) {
                self.waiting.pop_front();
            }
            if passed >= self.waiting.len() {
                return None;
            }
            let front = self.waiting.front()?;
            if front.expired(now) {
                return None;
            }
            match self.may_take(front.group.as_ref(), policy) {
                Take::Yes => return Some(front.reply.clone()),
                Take::Later => {
                    let r = self.waiting.pop_front().expect("front");
                    self.waiting.push_back(r);
                    passed += 1;
                }
                Take::WrongPin => {
                    let r = self.waiting.pop_front().expect("front");
                    ended.push((r.reply, wrong_pin(r.batch, r.max_bytes.unwrap_or(0))));
                }
            }
        }
    }

    fn may_take(&self, g: Option<&PullGroup>, policy: PriorityPolicy) -> Take {
        match policy {
            PriorityPolicy::Overflow => {
                let Some(g) = g else { return Take::Yes };
                let (mp, map) = (g.min_pending, g.min_ack_pending);
                if mp <= 0 && map <= 0 {
                    return Take::Yes;
                }
                let pending = mp > 0 && mp as u64 <= self.np;
                let acks = map > 0 && map as u64 <= self.pending.len() as u64;
                if pending || acks {
                    Take::Yes
                } else {
                    Take::Later
                }
            }
            PriorityPolicy::PinnedClient => match (&self.pin, g) {
                // No group: served, but never pinned.
                (None, None) => Take::Yes,
                (None, Some(g)) if g.id.is_empty() => Take::Yes,
                (None, Some(_)) => Take::WrongPin,
                (Some(p), Some(g)) if g.id == p.id => Take::Yes,
                (Some(_), Some(g)) if !g.id.is_empty() => Take::WrongPin,
                // Standing by until the pin lapses.
                (Some(_), _) => Take::Later,
            },
            PriorityPolicy::None | PriorityPolicy::Prioritized => Take::Yes,
        }
    }

    /// Before a delivery to the front request of a `pinned_client` consumer:
    /// pins its client if none is (returning the new pin), and gives the
    /// value of the delivery's `Nats-Pin-Id`.
    pub fn pin_front(
        &mut self,
        cfg: &ConsumerConfig,
        new_id: impl FnOnce() -> String,
        now: Nanos,
    ) -> (Option<Pin>, String) {
        let front = self
            .waiting
            .front()
            .expect("a delivery goes to the front request");
        let named = front.group.as_ref().is_some_and(|g| !g.group.is_empty());
        let mut pinned = None;
        if self.pin.is_none() && named {
            let p = Pin {
                id: new_id(),
                at: now_nanos(),
                expires: now.after(cfg.priority_timeout),
            };
            self.pin = Some(p.clone());
            pinned = Some(p);
        }
        let id = self.pin.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        (pinned, id)
    }

    /// A partly served `prioritized` request goes behind the others of its
    /// priority (round robin within a priority).
    pub(super) fn requeue_prioritized(&mut self) {
        let Some(front) = self.waiting.pop_front() else {
            return;
        };
        let r = rank(&front.group);
        let at = self
            .waiting
            .iter()
            .position(|w| rank(&w.group) > r)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, front);
    }

    /// The pin, if it lapsed by `now` (it is dropped).
    pub fn pin_lapsed(&mut self, now: Nanos) -> Option<Pin> {
        match &self.pin {
            Some(p) if p.expires <= now => self.pin.take(),
            _ => None,
        }
    }
}

enum Take {
    Yes,
    /// Not now: passed over.
    Later,
    /// Its pin id is not the consumer's: ended with 423.
    WrongPin,
}

/// `priority_groups` in consumer info: the first group, and its pin.
pub fn info_json(cfg: &ConsumerConfig, pin: Option<&Pin>) -> String {
    let Some(g) = cfg.priority_groups.first() else {
        return String::new();
    };
    let mut out = format!(",\"priority_groups\":[{{\"group\":{}", json::quote(g));
    if let Some(p) = pin {
        out.push_str(&format!(",\"pinned_client_id\":{}", json::quote(&p.id)));
    }
    let at = pin.map_or(0, |p| p.at);
    out.push_str(&format!(",\"pinned_ts\":\"{}\"}}]", rfc3339(at)));
    out
}

impl Consumer {
    /// The current pin (consumer info).
    pub fn pin(&self) -> Option<Pin> {
        self.st.borrow().pin.clone()
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.PINNED.<stream>.<consumer>`.
    pub(super) fn advisory_pinned(&self, shard: &Shard, cfg: &ConsumerConfig, pin: &Pin) {
        let group = cfg.priority_groups.first().map_or("", String::as_str);
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.consumer_group_pinned\",",
                "\"id\":\"{}\",\"timestamp\":\"{}\",\"account\":\"$G\",\"stream\":{},",
                "\"consumer\":{},\"group\":{},\"pinned_id\":{}}}"
            ),
            random_token(shard, 22),
            rfc3339(now_nanos()),
            json::quote(&self.stream.name),
            json::quote(&self.name),
            json::quote(group),
            json::quote(&pin.id)
        );
        self.advise(shard, "PINNED", &body);
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.<stream>.<consumer>`; `reason`
    /// is `admin` or `timeout`.
    pub(super) fn advisory_unpinned(&self, shard: &Shard, group: &str, reason: &str) {
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.consumer_group_unpinned\",",
                "\"id\":\"{}\",\"timestamp\":\"{}\",\"account\":\"$G\",\"stream\":{},",
                "\"consumer\":{},\"group\":{},\"reason\":\"{}\"}}"
            ),
            random_token(shard, 22),
            rfc3339(now_nanos()),
            json::quote(&self.stream.name),
            json::quote(&self.name),
            json::quote(group),
            reason
        );
        self.advise(shard, "UNPINNED", &body);
    }

    fn advise(&self, shard: &Shard, what: &str, body: &str) {
        let subject = Bytes::from(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.{what}.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    /// `$JS.API.CONSUMER.UNPIN.<stream>.<consumer>` with `{"group":G}`: drops
    /// the pin (whatever the policy, pinned or not, as nats-server does).
    pub fn unpin(&self, shard: &Shard, body: &[u8]) -> Result<(), ApiError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Req {
            group: String,
        }
        let req: Req = json::decode_as(body).map_err(|e| ApiError::invalid_json(&e))?;
        if req.group.is_empty() {
            return Err(ApiError::invalid_json("consumer group not specified"));
        }
        check_group_name(&req.group)?;
        if !self.cfg.borrow().priority_groups.contains(&req.group) {
            let m = "Provided priority group does not exist for this consumer";
            return Err(ApiError::new(400, 10160, m));
        }
        self.st.borrow_mut().pin = None;
        self.advisory_unpinned(shard, &req.group, "admin");
        self.wake.notify();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::consumer::pull::parse;

    fn cfg(json: &str) -> ConsumerConfig {
        serde_json::from_str(json).unwrap()
    }

    fn refusal(c: &ConsumerConfig, body: &str, pin: Option<&Pin>) -> String {
        let r = parse(c, &Bytes::from_static(b"r"), body.as_bytes(), Nanos(1), pin);
        match r {
            Ok(_) => "ok".into(),
            Err(h) => String::from_utf8(h).unwrap(),
        }
    }

    #[test]
    fn request_fields_are_checked_as_nats_server_checks_them() {
        let none = cfg("{}");
        let over = cfg(r#"{"priority_groups":["G"],"priority_policy":"overflow"}"#);
        let pinned = cfg(r#"{"priority_groups":["G"],"priority_policy":"pinned_client"}"#);
        let line = |s: String| s.lines().next().unwrap().to_string();
        assert_eq!(
            line(refusal(&none, r#"{"min_pending":1}"#, None)),
            "NATS/1.0 400 Bad Request - Not a Overflow Priority consumer"
        );
        assert_eq!(
            line(refusal(&over, r#"{"id":"x","group":"G"}"#, None)),
            "NATS/1.0 400 Bad Request - Not a Pinned Client Priority consumer"
        );
        assert_eq!(
            line(refusal(&none, r#"{"priority":10}"#, None)),
            "NATS/1.0 400 Bad Request - Priority must be between 0 and 9"
        );
        assert_eq!(refusal(&none, r#"{"group":"nope"}"#, None), "ok");
        assert_eq!(
            line(refusal(&over, r#"{"batch":1}"#, None)),
            "NATS/1.0 400 Bad Request - Priority Group missing"
        );
        assert_eq!(
            line(refusal(&over, r#"{"group":"H"}"#, None)),
            "NATS/1.0 400 Bad Request - Invalid Priority Group"
        );
        // A bare batch skips the group checks.
        assert_eq!(refusal(&over, "1", None), "ok");
        let pin = Pin {
            id: "P".into(),
            at: 1,
            expires: Nanos(10),
        };
        assert_eq!(
            line(refusal(&pinned, r#"{"group":"G","id":"Q"}"#, Some(&pin))),
            "NATS/1.0 423 Nats-Pin-Id mismatch"
        );
        let r = parse(
            &pinned,
            &Bytes::new(),
            br#"{"group":"G","id":"P"}"#,
            Nanos(1),
            Some(&pin),
        );
        assert!(r.unwrap().renews_pin);
    }

    fn req(c: &ConsumerConfig, reply: &'static str, body: &str) -> super::super::pull::PullReq {
        parse(
            c,
            &Bytes::from_static(reply.as_bytes()),
            body.as_bytes(),
            Nanos(1),
            None,
        )
        .unwrap()
    }

    #[test]
    fn overflow_requests_wait_for_enough_pending() {
        let c = cfg(r#"{"priority_groups":["G"],"priority_policy":"overflow"}"#);
        let mut st = State::new(Nanos(0));
        st.enqueue(
            req(&c, "a", r#"{"group":"G","min_pending":5,"batch":9}"#),
            c.priority(),
        );
        st.enqueue(req(&c, "b", r#"{"group":"G","batch":9}"#), c.priority());
        let mut ended = Vec::new();
        st.np = 4;
        assert_eq!(
            st.choose_request(Nanos(1), c.priority(), &mut ended)
                .as_deref(),
            Some(&b"b"[..])
        );
        st.np = 5;
        st.waiting.rotate_left(1);
        assert_eq!(
            st.choose_request(Nanos(1), c.priority(), &mut ended)
                .as_deref(),
            Some(&b"a"[..])
        );
        assert!(ended.is_empty());
    }

    #[test]
    fn a_pin_serves_one_client_until_it_lapses() {
        let c = cfg(
            r#"{"priority_groups":["G"],"priority_policy":"pinned_client","priority_timeout":100}"#,
        );
        let p = c.priority();
        let mut st = State::new(Nanos(0));
        st.enqueue(req(&c, "stale", r#"{"group":"G","id":"old","batch":2}"#), p);
        st.enqueue(req(&c, "a", r#"{"group":"G","batch":2}"#), p);
        st.enqueue(req(&c, "b", r#"{"group":"G","batch":2}"#), p);
        let mut ended = Vec::new();
        assert_eq!(
            st.choose_request(Nanos(1), p, &mut ended).as_deref(),
            Some(&b"a"[..])
        );
        assert_eq!(ended.len(), 1);
        assert!(ended[0]
            .1
            .starts_with(b"NATS/1.0 423 Nats-Wrong-Pin-Id\r\nNats-Pending-Messages: 2"));
        let (pinned, id) = st.pin_front(&c, || "PIN".into(), Nanos(1));
        assert_eq!((pinned.unwrap().expires, id.as_str()), (Nanos(101), "PIN"));
        // The pinned client's request is gone: b stands by.
        st.waiting.pop_front();
        assert_eq!(st.choose_request(Nanos(2), p, &mut ended), None);
        assert_eq!(st.pin_lapsed(Nanos(50)).map(|p| p.id), None);
        assert_eq!(st.pin_lapsed(Nanos(101)).map(|p| p.id), Some("PIN".into()));
        assert_eq!(
            st.choose_request(Nanos(102), p, &mut ended).as_deref(),
            Some(&b"b"[..])
        );
    }

    #[test]
    fn prioritized_requests_go_lowest_first_and_take_turns() {
        let c = cfg(r#"{"priority_groups":["G"],"priority_policy":"prioritized"}"#);
        let p = c.priority();
        let mut st = State::new(Nanos(0));
        st.enqueue(
            req(&c, "five", r#"{"group":"G","priority":5,"batch":2}"#),
            p,
        );
        st.enqueue(req(&c, "bare", "2"), p);
        st.enqueue(
            req(&c, "one-a", r#"{"group":"G","priority":1,"batch":2}"#),
            p,
        );
        st.enqueue(
            req(&c, "one-b", r#"{"group":"G","priority":1,"batch":2}"#),
            p,
        );
        let order: Vec<&[u8]> = st.waiting.iter().map(|r| &r.reply[..]).collect();
        assert_eq!(order, [&b"one-a"[..], b"one-b", b"five", b"bare"]);
        st.requeue_prioritized();
        assert_eq!(&st.waiting[0].reply[..], b"one-b");
        assert_eq!(&st.waiting[1].reply[..], b"one-a");
    }
}
