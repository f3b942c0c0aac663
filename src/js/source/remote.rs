//! External mirrors and sources (`external.api`): the link reads its origin
//! through a consumer it creates over NATS, as nats-server does, so either
//! side may be a nats-server. This file is the wire format (pure): the
//! create request, its fallbacks, the data messages' ack replies, heartbeats
//! and flow control, and which deliveries a link takes. `remote_link.rs`
//! drives it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::js::types::source::{hash8, Role, StreamSource};
use crate::protocol::headers;
use crate::shard::msg::TapStart;

/// How a create request asks: nats-server 2.15 asks sources with API level
/// 5 and mirrors with 4, and falls back when an older origin refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// `Nats-Required-Api-Level` sent (0: no headers).
    pub level: u8,
    /// `sourcing: true` in the config.
    pub sourcing: bool,
    /// The consumer name asked for.
    pub name: String,
}

impl Attempt {
    pub fn first(role: Role, name: String) -> Attempt {
        Attempt {
            level: if role == Role::Mirror { 4 } else { 5 },
            sourcing: true,
            name,
        }
    }

    /// The next, older form after the origin refused `err_code` (API level
    /// too high, or unknown fields), if there is one. `suffix` makes the
    /// plain consumer's name (8 random characters).
    pub fn fallback(&self, err_code: u16, suffix: &str) -> Option<Attempt> {
        if !self.sourcing || !matches!(err_code, 10185 | 10025) {
            return None;
        }
        if self.level == 5 {
            return Some(Attempt {
                level: 4,
                ..self.clone()
            });
        }
        Some(Attempt {
            level: 0,
            sourcing: false,
            name: format!("{}_{suffix}", self.name),
        })
    }
}

/// The stable name nats-server gives a target's consumers on its origins:
/// `JS_MIRROR_<hash>` or `JS_SRC_<hash of hash>` of "<target> <account>
/// [<domain>]"; a source whose origin is sourced more than once adds its
/// index name.
pub fn consumer_name(
    role: Role,
    target: &str,
    domain: Option<&str>,
    twice: Option<&str>,
) -> String {
    let mut id = format!("{target} $G");
    if let Some(d) = domain {
        id.push(' ');
        id.push_str(d);
    }
    let stable = hash8(id.as_bytes());
    match role {
        Role::Mirror => format!("JS_MIRROR_{stable}"),
        Role::Source => {
            let id = match twice {
                Some(iname) => format!("{stable} {iname}"),
                None => stable,
            };
            format!("JS_SRC_{}", hash8(id.as_bytes()))
        }
    }
}

/// `a.b` joined, with nats-server's collapse of empty tokens (`..` → `.`).
fn join(parts: &[&str]) -> String {
    let mut s = parts.join(".");
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    s
}

/// The deliver subject of one attempt: `<prefix|$JS>.<S|M>.<token>`.
pub fn deliver_subject(role: Role, prefix: &str, token: &str) -> String {
    let prefix = if prefix.is_empty() { "$JS" } else { prefix };
    let kind = if role == Role::Mirror { "M" } else { "S" };
    join(&[prefix, kind, token])
}

/// A create request: subject, header block (if any), body.
pub struct CreateRequest {
    pub subject: String,
    pub hdr: Option<Vec<u8>>,
    pub body: Vec<u8>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The request body in nats-server's field order.
#[derive(Serialize)]
struct Body<'a> {
    stream_name: &'a str,
    config: Config<'a>,
    action: &'a str,
}

#[derive(Serialize)]
struct Config<'a> {
    name: &'a str,
    deliver_policy: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    opt_start_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    opt_start_time: Option<&'a str>,
    ack_policy: &'a str,
    ack_wait: i64,
    max_deliver: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    filter_subject: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    filter_subjects: &'a [String],
    replay_policy: &'a str,
    flow_control: bool,
    deliver_subject: &'a str,
    idle_heartbeat: i64,
    inactive_threshold: i64,
    num_replicas: i64,
    direct: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sourcing: bool,
    metadata: BTreeMap<String, String>,
}

/// What the origin is asked for (nats-server's values: no acks, one
/// delivery, flow control, a heartbeat a second, gone 10 s after the target
/// stops listening).
pub const ACK_WAIT_NS: i64 = 22 * 3600 * 1_000_000_000;
pub const HEARTBEAT_NS: i64 = 1_000_000_000;
pub const INACTIVE_NS: i64 = 10_000_000_000;

/// Everything a create request depends on.
pub struct Ask<'a> {
    pub role: Role,
    pub cfg: &'a StreamSource,
    pub target: &'a str,
    pub domain: Option<&'a str>,
    pub start: TapStart,
    pub deliver: &'a str,
    /// The origin's identity known from before (sources; may be empty).
    pub ident: &'a str,
    pub attempt: &'a Attempt,
}

pub fn create_request(a: &Ask) -> CreateRequest {
    let filters = a.cfg.filters();
    let (policy, seq, time) = match a.start {
        TapStart::First => ("all", 0, None),
        TapStart::Seq(s) => ("by_start_sequence", s, None),
        TapStart::Time(_) => ("by_start_time", 0, a.cfg.opt_start_time.as_deref()),
    };
    let (one, many): (&str, &[String]) = match filters.as_slice() {
        [f] => (f, &[]),
        fs => ("", fs),
    };
    let kind = if a.role == Role::Mirror {
        "mirror"
    } else {
        "src"
    };
    let mut metadata = BTreeMap::new();
    metadata.insert(format!("_nats.{kind}.acc"), "$G".to_string());
    if let Some(d) = a.domain {
        metadata.insert(format!("_nats.{kind}.domain"), d.to_string());
    }
    metadata.insert(format!("_nats.{kind}.stream"), a.target.to_string());
    let body = Body {
        stream_name: &a.cfg.name,
        config: Config {
            name: &a.attempt.name,
            deliver_policy: policy,
            opt_start_seq: seq,
            opt_start_time: time,
            ack_policy: "none",
            ack_wait: ACK_WAIT_NS,
            max_deliver: 1,
            filter_subject: one,
            filter_subjects: many,
            replay_policy: "instant",
            flow_control: true,
            deliver_subject: a.deliver,
            idle_heartbeat: HEARTBEAT_NS,
            inactive_threshold: INACTIVE_NS,
            num_replicas: 0,
            direct: true,
            sourcing: a.attempt.sourcing,
            metadata,
        },
        action: "",
    };
    let api = a
        .cfg
        .external
        .as_ref()
        .map_or("$JS.API", |e| e.api.as_str());
    let subject = if one.is_empty() {
        join(&[api, "CONSUMER.CREATE", &a.cfg.name])
    } else {
        join(&[api, "CONSUMER.CREATE", &a.cfg.name, &a.attempt.name, one])
    };
    let hdr = match (a.attempt.level, a.role) {
        (0, _) => None,
        (5, Role::Source) => Some(format!(
            "NATS/1.0\r\nNats-Required-Api-Level: 5\r\nNats-Stream-Identity: {}\r\n\r\n",
            a.ident
        )),
        (level, _) => Some(format!(
            "NATS/1.0\r\nNats-Required-Api-Level: {level}\r\n\r\n"
        )),
    };
    CreateRequest {
        subject,
        hdr: hdr.map(String::into_bytes),
        body: crate::js::types::json::encode(&body),
    }
}

/// The best-effort delete of a consumer that is no longer wanted.
pub fn delete_subject(cfg: &StreamSource, consumer: &str) -> String {
    let api = cfg.external.as_ref().map_or("$JS.API", |e| e.api.as_str());
    join(&[api, "CONSUMER.DELETE", &cfg.name, consumer])
}

/// What a create answer says.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The consumer, and the origin's identity if it said.
    Created {
        name: String,
        ident: Option<String>,
    },
    Refused(crate::js::types::errors::ApiError),
    /// Not a consumer create response.
    Invalid,
}

pub fn parse_answer(hdr: &[u8], body: &[u8]) -> Answer {
    let ident = headers::get(hdr, b"Nats-Stream-Identity")
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty());
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Answer::Invalid;
    };
    if let Some(e) = v.get("error") {
        return match serde_json::from_value(e.clone()) {
            Ok(e) => Answer::Refused(e),
            Err(_) => Answer::Invalid,
        };
    }
    match v.get("name").and_then(|n| n.as_str()) {
        Some(name) if v.get("config").is_some() => Answer::Created {
            name: name.to_string(),
            ident,
        },
        _ => Answer::Invalid,
    }
}

/// A delivery's ack reply: `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.
/// <ts>.<pending>`, or the longer form with domain and account hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: u64,
    pub sseq: u64,
    pub dseq: u64,
    pub ts: i64,
    pub pending: u64,
}

pub fn parse_ack(reply: &[u8]) -> Option<Delivery> {
    let s = std::str::from_utf8(reply).ok()?;
    let tokens: Vec<&str> = s.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let base = match tokens.len() {
        9 => 4,
        n if n >= 11 => 6,
        _ => return None,
    };
    let n = |i: usize| tokens[base + i].parse::<u64>().ok();
    Some(Delivery {
        delivered: n(0)?,
        sseq: n(1)?,
        dseq: n(2)?,
        ts: tokens[base + 3].parse().ok()?,
        pending: n(4)?,
    })
}

/// A status message on the deliver subject (empty body, `NATS/1.0 100`).
#[derive(Debug, PartialEq)]
pub enum Control {
    /// Answer `reply` with where the target stands.
    FlowControl,
    /// The origin's last delivery and, when its flow control waits, the
    /// subject to answer.
    Heartbeat {
        last_consumer: u64,
        stalled: Option<Bytes>,
    },
}

pub fn control(hdr: &[u8], body_empty: bool, has_reply: bool) -> Option<Control> {
    if !body_empty || !hdr.starts_with(b"NATS/1.0 100") {
        return None;
    }
    if has_reply {
        return Some(Control::FlowControl);
    }
    let last_consumer = headers::get(hdr, b"Nats-Last-Consumer")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let stalled = headers::get(hdr, b"Nats-Consumer-Stalled")
        .map(|v| Bytes::copy_from_slice(v.trim_ascii()))
        .filter(|v| !v.is_empty());
    Some(Control::Heartbeat {
        last_consumer,
        stalled,
    })
}

/// The flow-control answer: where the target stands.
pub fn fc_answer(dseq: u64, sseq: u64) -> Vec<u8> {
    format!("NATS/1.0\r\nNats-Last-Consumer: {dseq}\r\nNats-Last-Stream: {sseq}\r\n\r\n")
        .into_bytes()
}

/// What a link does with a delivery (nats-server's sequence rules).
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Store it.
    Copy,
    /// Already have it (`bump`: it was the next delivery all the same).
    Have { bump: bool },
    /// Deliveries were missed: create the consumer again after `applied`.
    Gap,
    /// Not for this link (an old delivery).
    Drop,
}

/// `applied`: the last origin sequence the link took; `dseq`: the last
/// delivery sequence it accepted from this consumer.
pub fn take(role: Role, d: &Delivery, applied: u64, dseq: u64) -> Take {
    if d.delivered > 1 {
        return Take::Drop;
    }
    let next = d.dseq == dseq + 1;
    if d.sseq <= applied {
        return Take::Have { bump: next };
    }
    match role {
        // A mirror takes the next sequence, or a jump its consumer made
        // (messages the origin deleted or filtered out: recorded as gaps).
        Role::Mirror if d.sseq == applied + 1 || next => Take::Copy,
        Role::Mirror => Take::Gap,
        Role::Source if next => Take::Copy,
        Role::Source if d.dseq > dseq + 1 => Take::Gap,
        Role::Source => Take::Drop,
    }
}

/// nats-server's lag from a delivery's pending count.
pub fn lag(pending: u64) -> u64 {
    pending.saturating_sub(1)
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn src(json: &str) -> StreamSource {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn names_match_nats_server() {
        // Values observed on nats-server 2.15.1 (see the notes in the issue).
        assert_eq!(
            consumer_name(Role::Mirror, "MIR", None, None),
            "JS_MIRROR_L9fwEMNd"
        );
        assert_eq!(
            consumer_name(Role::Mirror, "MIRX", None, None),
            "JS_MIRROR_NRBwfF7U"
        );
        assert_eq!(
            consumer_name(Role::Source, "SRC", None, None),
            "JS_SRC_YMP8n7cG"
        );
        assert_eq!(
            consumer_name(Role::Source, "SRCX", None, None),
            "JS_SRC_mQ560vVM"
        );
        assert_eq!(
            consumer_name(Role::Source, "SX", Some("hub"), None),
            "JS_SRC_3GffRG7x"
        );
        assert_eq!(deliver_subject(Role::Source, "", "abc"), "$JS.S.abc");
        assert_eq!(deliver_subject(Role::Mirror, "dlv.", "abc"), "dlv.M.abc");
    }

    #[test]
    fn requests_match_nats_server_bytes() {
        // MIRZ from the capture: two transforms, level 4, all.
        let cfg = src(
            r#"{"name":"ORIG","subject_transforms":[{"src":"orig.*","dest":"mz.{{wildcard(1)}}"},
                {"src":"other.>","dest":""}],"external":{"api":"$JS.ext5.API"}}"#,
        );
        let attempt = Attempt::first(Role::Mirror, "JS_MIRROR_0ig6CXfT".into());
        let r = create_request(&Ask {
            role: Role::Mirror,
            cfg: &cfg,
            target: "MIRZ",
            domain: None,
            start: TapStart::First,
            deliver: "$JS.M.7tVdalcs",
            ident: "",
            attempt: &attempt,
        });
        assert_eq!(r.subject, "$JS.ext5.API.CONSUMER.CREATE.ORIG");
        assert_eq!(
            r.hdr.as_deref(),
            Some(&b"NATS/1.0\r\nNats-Required-Api-Level: 4\r\n\r\n"[..])
        );
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"stream_name":"ORIG","config":{"name":"JS_MIRROR_0ig6CXfT","deliver_policy":"all","ack_policy":"none","ack_wait":79200000000000,"max_deliver":1,"filter_subjects":["orig.*","other.\u003e"],"replay_policy":"instant","flow_control":true,"deliver_subject":"$JS.M.7tVdalcs","idle_heartbeat":1000000000,"inactive_threshold":10000000000,"num_replicas":0,"direct":true,"sourcing":true,"metadata":{"_nats.mirror.acc":"$G","_nats.mirror.stream":"MIRZ"}},"action":""}"#
        );
        // SRCZ's first source: one filter in the subject, a start time.
        let cfg = src(
            r#"{"name":"ORIG","opt_start_time":"2024-05-01T10:00:00+02:00","filter_subject":"orig.b",
                "external":{"api":"$JS.ext6.API","deliver":""}}"#,
        );
        let attempt = Attempt::first(Role::Source, "JS_SRC_8sgW570P".into());
        let r = create_request(&Ask {
            role: Role::Source,
            cfg: &cfg,
            target: "SRCZ",
            domain: None,
            start: TapStart::Time(1),
            deliver: "$JS.S.aMMP41KS",
            ident: "",
            attempt: &attempt,
        });
        assert_eq!(
            r.subject,
            "$JS.ext6.API.CONSUMER.CREATE.ORIG.JS_SRC_8sgW570P.orig.b"
        );
        assert_eq!(
            r.hdr.as_deref(),
            Some(&b"NATS/1.0\r\nNats-Required-Api-Level: 5\r\nNats-Stream-Identity: \r\n\r\n"[..])
        );
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"stream_name":"ORIG","config":{"name":"JS_SRC_8sgW570P","deliver_policy":"by_start_time","opt_start_time":"2024-05-01T10:00:00+02:00","ack_policy":"none","ack_wait":79200000000000,"max_deliver":1,"filter_subject":"orig.b","replay_policy":"instant","flow_control":true,"deliver_subject":"$JS.S.aMMP41KS","idle_heartbeat":1000000000,"inactive_threshold":10000000000,"num_replicas":0,"direct":true,"sourcing":true,"metadata":{"_nats.src.acc":"$G","_nats.src.stream":"SRCZ"}},"action":""}"#
        );
    }

    #[test]
    fn fallbacks_follow_nats_server() {
        let a = Attempt::first(Role::Source, "JS_SRC_x".into());
        let b = a.fallback(10185, "rnd").unwrap();
        assert_eq!(
            (b.level, b.sourcing, b.name.as_str()),
            (4, true, "JS_SRC_x")
        );
        let c = b.fallback(10025, "rnd").unwrap();
        assert_eq!(
            (c.level, c.sourcing, c.name.as_str()),
            (0, false, "JS_SRC_x_rnd")
        );
        assert_eq!(c.fallback(10185, "rnd"), None);
        assert_eq!(a.fallback(10059, "rnd"), None);
        let m = Attempt::first(Role::Mirror, "JS_MIRROR_y".into());
        assert_eq!(m.fallback(10185, "z").unwrap().name, "JS_MIRROR_y_z");
    }

    #[test]
    fn answers_acks_and_controls() {
        let a = parse_answer(
            b"NATS/1.0\r\nNats-Stream-Identity: DGO70wsT\r\n\r\n",
            br#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","name":"JS_SRC_a-b","config":{}}"#,
        );
        assert_eq!(
            a,
            Answer::Created {
                name: "JS_SRC_a-b".into(),
                ident: Some("DGO70wsT".into())
            }
        );
        let r = parse_answer(
            b"",
            br#"{"type":"x","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#,
        );
        assert!(matches!(r, Answer::Refused(e) if e.err_code == 10059));
        assert_eq!(parse_answer(b"", b"nope"), Answer::Invalid);
        let d = parse_ack(b"$JS.ACK.ORIG.JS_SRC_m-P.1.3.2.1796521255454942336.2").unwrap();
        assert_eq!((d.delivered, d.sseq, d.dseq, d.pending), (1, 3, 2, 2));
        assert_eq!(d.ts, 1796521255454942336);
        let v2 = parse_ack(b"$JS.ACK.hub.ACCHASH.ORIG.C.1.7.5.99.0.RaNd").unwrap();
        assert_eq!((v2.sseq, v2.dseq, v2.ts, v2.pending), (7, 5, 99, 0));
        assert_eq!(parse_ack(b"$JS.ACK.ORIG.C.1.x.2.3.4"), None);
        assert_eq!(parse_ack(b"_INBOX.x"), None);
        let hb =
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\nNats-Last-Stream: 5\r\n\r\n";
        assert_eq!(
            control(hb, true, false),
            Some(Control::Heartbeat {
                last_consumer: 5,
                stalled: None
            })
        );
        let fc = b"NATS/1.0 100 FlowControl Request\r\n\r\n";
        assert_eq!(control(fc, true, true), Some(Control::FlowControl));
        assert_eq!(control(b"NATS/1.0\r\nX: 1\r\n\r\n", true, false), None);
        assert_eq!(
            fc_answer(497, 497),
            b"NATS/1.0\r\nNats-Last-Consumer: 497\r\nNats-Last-Stream: 497\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn sequence_rules() {
        let d = |sseq, dseq| Delivery {
            delivered: 1,
            sseq,
            dseq,
            ts: 0,
            pending: 0,
        };
        // Mirror: next, a jump its consumer made, a missed delivery.
        assert_eq!(take(Role::Mirror, &d(5, 5), 4, 4), Take::Copy);
        assert_eq!(take(Role::Mirror, &d(9, 5), 4, 4), Take::Copy);
        assert_eq!(take(Role::Mirror, &d(9, 7), 4, 4), Take::Gap);
        assert_eq!(
            take(Role::Mirror, &d(3, 5), 4, 4),
            Take::Have { bump: true }
        );
        // Source: gaps in the origin are fine, missed deliveries are not.
        assert_eq!(take(Role::Source, &d(9, 5), 4, 4), Take::Copy);
        assert_eq!(take(Role::Source, &d(9, 7), 4, 4), Take::Gap);
        assert_eq!(take(Role::Source, &d(9, 3), 4, 4), Take::Drop);
        let redelivered = Delivery {
            delivered: 2,
            ..d(5, 5)
        };
        assert_eq!(take(Role::Source, &redelivered, 4, 4), Take::Drop);
        assert_eq!(lag(0), 0);
        assert_eq!(lag(5), 4);
    }
}
