//! Pull requests (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`): decoding
//! and checking a request against the consumer's limits, the bounded queue of
//! open requests (`max_waiting`), their expiry (408), idle heartbeats, and the
//! end of `no_wait` requests (404). Pure: statuses are returned, not sent.

use bytes::Bytes;
use serde::Deserialize;

use crate::js::consumer::advisory::{go_duration, status};
use crate::js::consumer::priority::{self, Pin, PullGroup};
use crate::js::consumer::state::State;
use crate::js::types::consumer_config::{ConsumerConfig, PriorityPolicy};
use crate::js::types::json;
use crate::js::types::seq::Nanos;
use crate::limits::INTEREST_CHECK_NS;

/// One open pull request.
pub struct PullReq {
    pub reply: Bytes,
    /// Messages it still takes.
    pub batch: u64,
    /// Remaining byte budget when the request set `max_bytes`.
    pub max_bytes: Option<u64>,
    /// Absolute deadline; `Nanos(0)` = none.
    pub expires: Nanos,
    /// Idle heartbeat interval (ns; 0 = none) and the next one due.
    pub hb: i64,
    pub next_hb: Nanos,
    /// A no_wait request not yet served by a delivery pass.
    pub fresh: bool,
    /// Messages delivered to it so far.
    pub got: u64,
    /// Its priority fields (a JSON request); see `priority`.
    pub group: Option<PullGroup>,
    /// It carries the current pin id: the pin is renewed.
    pub renews_pin: bool,
}

/// A status to send to one request's reply subject (a header block).
pub type Status = (Bytes, Vec<u8>);

#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    batch: i64,
    expires: i64,
    max_bytes: i64,
    no_wait: bool,
    idle_heartbeat: i64,
    group: String,
    min_pending: i64,
    min_ack_pending: i64,
    id: String,
    priority: i64,
}

impl PullReq {
    pub(super) fn expired(&self, now: Nanos) -> bool {
        self.expires != Nanos(0) && self.expires <= now
    }
}

/// Decodes a request body (JSON, or a bare batch size) and checks it against
/// the consumer's limits; Err is the status to answer with.
pub fn parse(
    cfg: &ConsumerConfig,
    reply: &Bytes,
    body: &[u8],
    now: Nanos,
    pin: Option<&Pin>,
) -> Result<PullReq, Vec<u8>> {
    if cfg.is_push() {
        return Err(status("409 Consumer is push based", &[]));
    }
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    let json_body = text.starts_with('{');
    let mut req = if json_body {
        json::decode_as::<Req>(text.as_bytes())
            .map_err(|e| status(&format!("400 Bad Request - {e}"), &[]))?
    } else {
        Req {
            batch: text.parse().unwrap_or(1),
            ..Default::default()
        }
    };
    // Against the request's own expiry (none: too large), as nats-server does.
    if req.idle_heartbeat > 0 && req.idle_heartbeat.saturating_mul(2) > req.expires {
        return Err(status("400 Bad Request - heartbeat value too large", &[]));
    }
    let batch = req.batch.max(1) as u64;
    if cfg.max_batch > 0 && batch > cfg.max_batch as u64 {
        let msg = format!("409 Exceeded MaxRequestBatch of {}", cfg.max_batch);
        return Err(status(&msg, &[]));
    }
    let mut expires = req.expires;
    // A request without expiry gets the consumer's maximum (a no_wait one
    // keeps none: it ends after one pass).
    if cfg.max_expires > 0 && ((expires == 0 && !req.no_wait) || expires > cfg.max_expires) {
        if expires > cfg.max_expires {
            let msg = format!(
                "409 Exceeded MaxRequestExpires of {}",
                go_duration(cfg.max_expires)
            );
            return Err(status(&msg, &[]));
        }
        expires = cfg.max_expires;
    }
    if cfg.max_bytes > 0 && req.max_bytes > cfg.max_bytes {
        let msg = format!("409 Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes);
        return Err(status(&msg, &[]));
    }
    let group = json_body.then(|| PullGroup {
        group: std::mem::take(&mut req.group),
        min_pending: req.min_pending,
        min_ack_pending: req.min_ack_pending,
        id: std::mem::take(&mut req.id),
        priority: req.priority,
    });
    let renews_pin = priority::check(cfg, group.as_ref(), pin)?;
    if expires < 0 {
        return Err(status(
            "408 Request Timeout",
            &[
                ("Nats-Pending-Messages", batch.to_string()),
                ("Nats-Pending-Bytes", req.max_bytes.max(0).to_string()),
            ],
        ));
    }
    Ok(PullReq {
        // Its own copy: kept while the request waits, it must not pin the
        // buffer it arrived in (a mesh batch or a read buffer).
        reply: Bytes::copy_from_slice(reply),
        batch,
        max_bytes: (req.max_bytes > 0).then_some(req.max_bytes as u64),
        expires: if expires > 0 {
            now.after(expires)
        } else {
            Nanos(0)
        },
        hb: req.idle_heartbeat,
        next_hb: now.after(req.idle_heartbeat),
        fresh: req.no_wait,
        got: 0,
        group,
        renews_pin,
    })
}

impl State {
    /// Queues a request; Err is the `409 Exceeded MaxWaiting` status when
    /// `max_waiting` open requests are already waiting.
    pub fn add_request(
        &mut self,
        req: PullReq,
        cfg: &ConsumerConfig,
        now: Nanos,
    ) -> Result<(), Vec<u8>> {
        self.last_activity = now;
        let open = self.waiting.iter().filter(|r| !r.expired(now)).count();
        if open >= cfg.max_waiting.max(1) as usize {
            return Err(status("409 Exceeded MaxWaiting", &[]));
        }
        if req.renews_pin {
            if let Some(p) = self.pin.as_mut() {
                p.expires = now.after(cfg.priority_timeout);
            }
        }
        self.enqueue(req, cfg.priority());
        Ok(())
    }

    /// Open requests that have not expired (consumer info's `num_waiting`).
    pub fn open_requests(&self, now: Nanos) -> u64 {
        self.waiting.iter().filter(|r| !r.expired(now)).count() as u64
    }

    /// Drops requests whose requester went away (checked every
    /// `INTEREST_CHECK_NS`, as nats-server does), answers expired ones with
    /// 408 and sends due idle heartbeats. Returns the statuses to send.
    pub fn expire_requests(
        &mut self,
        now: Nanos,
        listening: impl Fn(&[u8]) -> bool,
    ) -> Vec<Status> {
        let mut out = Vec::new();
        if !self.waiting.is_empty() && now.since(self.last_interest_check) >= INTEREST_CHECK_NS {
            self.last_interest_check = now;
            self.waiting.retain(|r| listening(&r.reply));
        }
        let (last_c, last_s) = (self.delivered_consumer, self.delivered_stream);
        self.waiting.retain_mut(|r| {
            if r.expired(now) {
                if r.batch > 0 {
                    let h = status(
                        "408 Request Timeout",
                        &[
                            ("Nats-Pending-Messages", r.batch.to_string()),
                            ("Nats-Pending-Bytes", r.max_bytes.unwrap_or(0).to_string()),
                        ],
                    );
                    out.push((r.reply.clone(), h));
                }
                return false;
            }
            if r.hb > 0 && r.next_hb <= now {
                let h = status(
                    "100 Idle Heartbeat",
                    &[
                        ("Nats-Last-Consumer", last_c.0.to_string()),
                        ("Nats-Last-Stream", last_s.0.to_string()),
                    ],
                );
                out.push((r.reply.clone(), h));
                r.next_hb = now.after(r.hb);
            }
            true
        });
        out
    }

    /// Ends the no_wait requests the last pass could not fill: their replies,
    /// to answer `404 No Messages`.
    pub fn finish_no_wait(&mut self) -> Vec<Bytes> {
        let mut done = Vec::new();
        self.waiting.retain_mut(|r| {
            if !r.fresh {
                return true;
            }
            r.fresh = false;
            // A partly served no_wait request ends now; an unserved one with
            // an expiry waits for it, as nats-server does.
            if r.expires != Nanos(0) && r.got == 0 {
                return true;
            }
            done.push(r.reply.clone());
            false
        });
        done
    }

    /// The earliest request deadline (expiry or heartbeat) before `next`.
    pub fn request_deadline(&self, mut next: Nanos) -> Nanos {
        for r in &self.waiting {
            if r.expires != Nanos(0) {
                next = next.min(r.expires);
            }
            if r.hb > 0 {
                next = next.min(r.next_hb);
            }
        }
        next
    }

    /// Charges one delivery of `size` bytes to the front request; false if
    /// it cannot take it (over its max_bytes): the request is then ended and
    /// its status returned in `ended`.
    pub fn charge_request(&mut self, size: u64, ended: &mut Option<Status>) -> bool {
        let front = self
            .waiting
            .front_mut()
            .expect("a delivery goes to the front request");
        if let Some(left) = front.max_bytes {
            if size > left {
                let r = self.waiting.pop_front().expect("front");
                let h = status(
                    "409 Message Size Exceeds MaxBytes",
                    &[
                        ("Nats-Pending-Messages", r.batch.to_string()),
                        ("Nats-Pending-Bytes", left.to_string()),
                    ],
                );
                *ended = Some((r.reply, h));
                return false;
            }
        }
        true
    }

    /// Counts a delivery made to the front request.
    pub fn served_request(&mut self, size: u64, now: Nanos, policy: PriorityPolicy) {
        let front = self
            .waiting
            .front_mut()
            .expect("a delivery goes to the front request");
        front.batch -= 1;
        if let Some(left) = front.max_bytes.as_mut() {
            *left -= size;
        }
        front.next_hb = now.after(front.hb);
        front.got += 1;
        if front.batch == 0 {
            self.waiting.pop_front();
        } else if policy == PriorityPolicy::Prioritized {
            self.requeue_prioritized();
        }
    }

    /// Drains every open request (the consumer is deleted).
    pub fn drain_requests(&mut self) -> Vec<Bytes> {
        self.waiting.drain(..).map(|r| r.reply).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ConsumerConfig {
        serde_json::from_str(json).unwrap()
    }

    fn text(r: Result<PullReq, Vec<u8>>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(h) => String::from_utf8(h).unwrap(),
        }
    }

    #[test]
    fn requests_are_checked_against_the_consumer_limits() {
        let reply = Bytes::from_static(b"_INBOX.1");
        let now = Nanos(1_000);
        let c = cfg(r#"{"max_batch":5,"max_expires":1000000000,"max_bytes":100}"#);
        assert_eq!(text(parse(&c, &reply, b"3", now, None)), "ok");
        assert!(text(parse(&c, &reply, b"6", now, None))
            .starts_with("NATS/1.0 409 Exceeded MaxRequestBatch of 5"));
        assert!(
            text(parse(&c, &reply, br#"{"expires":2000000000}"#, now, None))
                .starts_with("NATS/1.0 409 Exceeded MaxRequestExpires of 1s")
        );
        assert!(text(parse(&c, &reply, br#"{"max_bytes":101}"#, now, None))
            .starts_with("NATS/1.0 409 Exceeded MaxRequestMaxBytes of 100"));
        assert!(text(parse(&c, &reply, br#"{"expires":-1}"#, now, None))
            .starts_with("NATS/1.0 408 Request Timeout"));
        assert!(text(parse(&c, &reply, br#"{"batch":"x"}"#, now, None))
            .starts_with("NATS/1.0 400 Bad Request - "));
        let r = parse(&c, &reply, b"", now, None).unwrap();
        assert_eq!((r.batch, r.expires), (1, Nanos(1_000_001_000)));
        let push = cfg(r#"{"deliver_subject":"d"}"#);
        assert!(text(parse(&push, &reply, b"1", now, None))
            .starts_with("NATS/1.0 409 Consumer is push based"));
    }

    #[test]
    fn requests_expire_wait_in_order_and_end_no_wait() {
        let mut st = State::new(Nanos(0));
        let c = cfg("{}");
        let c2 = cfg(r#"{"max_waiting":2}"#);
        let r = |b: &[u8], now| parse(&c, &Bytes::from_static(b"r"), b, Nanos(now), None).unwrap();
        st.add_request(r(br#"{"batch":2,"expires":100}"#, 0), &c2, Nanos(0))
            .unwrap();
        st.add_request(r(br#"{"no_wait":true}"#, 0), &c2, Nanos(0))
            .unwrap();
        assert!(st.add_request(r(b"1", 0), &c2, Nanos(0)).is_err());
        let p = PriorityPolicy::None;
        let front = st.choose_request(Nanos(50), p, &mut Vec::new());
        assert_eq!(front, Some(Bytes::from_static(b"r")));
        st.served_request(10, Nanos(50), p);
        assert_eq!(st.waiting.front().unwrap().batch, 1);
        assert_eq!(st.finish_no_wait().len(), 1);
        let out = st.expire_requests(Nanos(100), |_| true);
        assert_eq!(out.len(), 1);
        assert!(out[0].1.starts_with(b"NATS/1.0 408 Request Timeout"));
        assert!(st.waiting.is_empty());
    }
}
