//! `js consume`: JetStream consumers built the way clients build them, counted
//! until `--msgs` were consumed.
//!
//! - pull: a durable pull consumer read like nats.go `Consume` does: requests of
//!   `--batch` messages with `expires` and `idle_heartbeat`, a new request when
//!   half of what was asked for has arrived, every message acked on its reply
//!   subject (an empty publish, no answer asked for);
//! - push: a durable push consumer on an inbox, flow control answered;
//! - ordered: the ordered consumer (ephemeral push, ack none, flow control, 5 s
//!   heartbeats), recreated from the next stream sequence on a consumer-sequence gap.
//!
//! With `--rate` a pull consumer also records each message's publish→delivery
//! latency (the payload carries its intended send time).

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::bench::latency::new_histogram;
use crate::bench::run::{api_request, drain_within, now_ns, ClientStat, Delivered, Shared, Spec};
use crate::bench::wire::{encode_pub, header, status, Reader, Writer};

/// How `js consume` reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeKind {
    Pull,
    Push,
    Ordered,
}

impl FromStr for ConsumeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pull" => Ok(ConsumeKind::Pull),
            "push" => Ok(ConsumeKind::Push),
            "ordered" => Ok(ConsumeKind::Ordered),
            _ => Err(format!(
                "unknown consumer mode '{s}' (pull, push or ordered)"
            )),
        }
    }
}

/// The `js consume` settings of a run.
#[derive(Debug, Clone)]
pub struct ConsumeSpec {
    pub kind: ConsumeKind,
    /// Pull: messages per request.
    pub batch: usize,
    /// Explicit acks (pull and push); ordered consumers never ack.
    pub ack: bool,
    /// Create the stream, load `msgs` messages and delete it after; without it
    /// the stream must exist and is left alone.
    pub preload: bool,
    /// Durable name (pull and push).
    pub consumer: String,
}

impl Default for ConsumeSpec {
    fn default() -> Self {
        ConsumeSpec {
            kind: ConsumeKind::Pull,
            batch: 500,
            ack: true,
            preload: true,
            consumer: "jetcore-bench".into(),
        }
    }
}

/// nats.go `Consume` defaults: requests expire after 30 s, with heartbeats at half that.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const PULL_HEARTBEAT: Duration = Duration::from_secs(15);
/// Push and ordered consumers: what nats.go's ordered consumer asks for.
const PUSH_HEARTBEAT: Duration = Duration::from_secs(5);
const ORDERED_INACTIVE: Duration = Duration::from_secs(300);
/// How often consumers sharing a durable look whether the others finished.
const SHARED_TICK: Duration = Duration::from_millis(50);

/// The ack (reply) subject of a delivered message:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (v1, 9
/// tokens) or `$JS.ACK.<domain>.<account>.<stream>…` (v2, 11 or more tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSubject<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    pub delivered: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub timestamp: u64,
    pub pending: u64,
}

pub fn parse_ack_subject(subject: &[u8]) -> Option<AckSubject<'_>> {
    // Once per delivered message: token bounds in a fixed array, numbers read
    // as bytes; no allocation, no UTF-8 pass over the whole subject.
    let mut ends = [0usize; 16];
    let mut count = 0;
    for dot in memchr::memchr_iter(b'.', subject) {
        if count < ends.len() {
            ends[count] = dot;
        }
        count += 1;
    }
    if count < ends.len() {
        ends[count] = subject.len();
    }
    count += 1;
    let token = |i: usize| {
        let start = if i == 0 { 0 } else { ends[i - 1] + 1 };
        &subject[start..ends[i]]
    };
    if count < 2 || token(0) != b"$JS" || token(1) != b"ACK" {
        return None;
    }
    let at = match count {
        9 => 2,
        n if n >= 11 => 4,
        _ => return None,
    };
    let number = |i: usize| {
        let t = token(at + i);
        if t.is_empty() {
            return None;
        }
        let mut n = 0u64;
        for &d in t {
            let v = d.wrapping_sub(b'0');
            if v > 9 {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(v))?;
        }
        Some(n)
    };
    Some(AckSubject {
        stream: std::str::from_utf8(token(at)).ok()?,
        consumer: std::str::from_utf8(token(at + 1)).ok()?,
        delivered: number(2)?,
        stream_seq: number(3)?,
        consumer_seq: number(4)?,
        timestamp: number(5)?,
        pending: number(6)?,
    })
}

/// The consumer's inbox prefix (one wildcard SUB per client covers it). The
/// process id keeps two bench processes on one server apart.
fn inbox(index: usize) -> String {
    format!("_INBOX.jc.{}.{index}", std::process::id())
}

/// The deliver subject of an ordered consumer.
fn ordered_deliver(index: usize, generation: u64) -> String {
    format!("_INBOX.jcord.{}.{index}.{generation}", std::process::id())
}

/// The deliver subject of the durable push consumer.
fn push_deliver(spec: &Spec) -> String {
    format!("_INBOX.jcpush.{}", spec.consume.consumer)
}

const PUSH_GROUP: &str = "jcq";

/// A pull request as nats.go `Consume` sends it.
fn pull_request(out: &mut Vec<u8>, spec: &Spec, index: usize, batch: u64) {
    let body = format!(
        "{{\"batch\":{batch},\"expires\":{},\"idle_heartbeat\":{}}}",
        PULL_EXPIRES.as_nanos(),
        PULL_HEARTBEAT.as_nanos()
    );
    let subject = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        spec.stream, spec.consume.consumer
    );
    let reply = format!("{}.pull", inbox(index));
    encode_pub(
        out,
        subject.as_bytes(),
        Some(reply.as_bytes()),
        body.as_bytes(),
    );
}

/// The durable consumer's create request (pull or push).
fn durable_config(spec: &Spec) -> serde_json::Value {
    let c = &spec.consume;
    let mut config = serde_json::json!({
        "durable_name": c.consumer,
        "deliver_policy": "all",
        "ack_policy": if c.ack { "explicit" } else { "none" },
        "replay_policy": "instant",
    });
    if c.kind == ConsumeKind::Push {
        config["deliver_subject"] = push_deliver(spec).into();
        if spec.subs > 1 {
            // Shared by several clients: a queue group, without heartbeats and
            // flow control (nats.go refuses those on queue subscriptions: the
            // server's request reaches one member only).
            config["deliver_group"] = PUSH_GROUP.into();
        } else {
            config["flow_control"] = true.into();
            config["idle_heartbeat"] = (PUSH_HEARTBEAT.as_nanos() as u64).into();
        }
    }
    serde_json::json!({"stream_name": spec.stream, "config": config})
}

/// The ordered consumer's create request, starting at `start_seq` (0 = all).
fn ordered_config(spec: &Spec, name: &str, deliver: &str, start_seq: u64) -> serde_json::Value {
    let mut config = serde_json::json!({
        "name": name,
        "deliver_subject": deliver,
        "deliver_policy": "all",
        "ack_policy": "none",
        "max_deliver": 1,
        "flow_control": true,
        "idle_heartbeat": PUSH_HEARTBEAT.as_nanos() as u64,
        "mem_storage": true,
        "num_replicas": 1,
        "inactive_threshold": ORDERED_INACTIVE.as_nanos() as u64,
        "replay_policy": "instant",
    });
    if start_seq > 0 {
        config["deliver_policy"] = "by_start_sequence".into();
        config["opt_start_seq"] = start_seq.into();
    }
    serde_json::json!({"stream_name": spec.stream, "config": config})
}

/// Deletes an ordered consumer; the answer goes to an inbox nobody waits on.
fn delete_ordered(out: &mut Vec<u8>, spec: &Spec, index: usize, name: &str) {
    let delete = format!("$JS.API.CONSUMER.DELETE.{}.{name}", spec.stream);
    let reply = format!("{}.del", inbox(index));
    encode_pub(out, delete.as_bytes(), Some(reply.as_bytes()), b"");
}

/// The JetStream error in an API reply, if it holds one.
fn api_error(reply: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(reply).map_err(|e| {
        format!(
            "bad API reply ({e}): {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        )
    })?;
    match value.get("error") {
        Some(err) => Err(err.to_string()),
        None => Ok(()),
    }
}

/// Creates the durable pull or push consumer (run setup, before the clock starts).
pub(crate) fn create_durable(spec: &Spec) -> Result<(), String> {
    let name = &spec.consume.consumer;
    let reply = api_request(
        spec,
        &format!("$JS.API.CONSUMER.CREATE.{}.{name}", spec.stream),
        &durable_config(spec).to_string(),
    )?;
    api_error(&reply).map_err(|e| format!("cannot create consumer {name}: {e}"))
}

pub(crate) fn delete_durable(spec: &Spec) {
    let _ = api_request(
        spec,
        &format!(
            "$JS.API.CONSUMER.DELETE.{}.{}",
            spec.stream, spec.consume.consumer
        ),
        "",
    );
}

/// Messages the run consumes in all: every ordered consumer reads the whole
/// stream; pull and push clients share one durable.
pub(crate) fn target(spec: &Spec) -> u64 {
    match spec.consume.kind {
        ConsumeKind::Ordered => spec.msgs * spec.subs as u64,
        _ => spec.msgs,
    }
}

/// What a consumer client subscribes to before the run starts. With `--rate`
/// the first pull request goes out here too, so it is waiting at the server
/// before the publisher starts.
pub(crate) fn prepare_ops(spec: &Spec, index: usize) -> String {
    let mut out = format!("SUB {}.> 1\r\n", inbox(index)).into_bytes();
    if spec.rate.is_some() {
        pull_request(&mut out, spec, index, spec.consume.batch as u64);
    }
    String::from_utf8(out).expect("ASCII protocol")
}

/// One consumer's result: its count, latencies (`--rate`) and ordered resets.
pub(crate) struct Consumed {
    pub stat: ClientStat,
    pub latency: Histogram<u64>,
    pub resets: u64,
}

/// State of the ordered consumer currently in use.
struct Ordered {
    generation: u64,
    name: String,
    deliver: String,
    /// The next consumer sequence expected.
    next_cseq: u64,
    last_sseq: u64,
    /// A gap was seen: recreate after this read.
    gap: bool,
    resets: u64,
}

struct Consumer<'a> {
    spec: &'a Spec,
    index: usize,
    /// `<inbox>.`: API replies and pull deliveries arrive under it (built once,
    /// not per message).
    inbox_dot: Vec<u8>,
    shared: &'a Shared,
    /// Pull: messages asked for and not yet delivered or expired.
    pending: u64,
    ordered: Option<Ordered>,
    /// Counted messages and their payload bytes.
    got: u64,
    bytes: u64,
    /// Not yet counted: read in the current drain.
    fresh: u64,
    fresh_bytes: u64,
    last_counted: Option<Instant>,
    latency: Histogram<u64>,
}

/// Runs one consumer client until the run's messages are consumed.
pub(crate) async fn consume(
    spec: &Spec,
    index: usize,
    mut reader: Reader,
    writer: Writer,
    shared: &Shared,
) -> Result<Consumed, String> {
    let kind = spec.consume.kind;
    let mut c = Consumer::new(spec, index, shared);
    let mut out = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    match kind {
        ConsumeKind::Pull if spec.rate.is_some() => c.pending = spec.consume.batch as u64,
        ConsumeKind::Pull => {
            pull_request(&mut out, spec, index, spec.consume.batch as u64);
            c.pending = spec.consume.batch as u64;
        }
        ConsumeKind::Push => {
            let sub = match spec.subs {
                1 => format!("SUB {} 2\r\n", push_deliver(spec)),
                _ => format!("SUB {} {PUSH_GROUP} 2\r\n", push_deliver(spec)),
            };
            out.extend_from_slice(sub.as_bytes());
        }
        ConsumeKind::Ordered => c.create_ordered(&mut out, 0, 0),
    }
    // Silence for two heartbeats means the server stopped delivering (clients
    // then give up or recreate); a queue group has no heartbeats, so only
    // --duration bounds it.
    let stall = match kind {
        ConsumeKind::Pull => Some(PULL_HEARTBEAT * 2),
        ConsumeKind::Push if spec.subs > 1 => None,
        _ => Some(PUSH_HEARTBEAT * 2),
    };
    let wait = if kind != ConsumeKind::Ordered && spec.subs > 1 {
        Some(SHARED_TICK)
    } else {
        stall
    };
    let mut heard = Instant::now();
    while !c.done() {
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
        let got = drain_within(&mut reader, &writer, wait, |d| c.on_msg(d, &mut out)).await?;
        c.tally();
        if got {
            heard = Instant::now();
        } else if let Some(s) = stall.filter(|s| heard.elapsed() >= *s) {
            return Err(format!(
                "the server stopped delivering: nothing for {s:?} (no message, no heartbeat) after {} of {} messages",
                c.got, spec.msgs
            ));
        }
        c.after_read(&mut out);
    }
    // An ordered consumer is removed when done, as clients do (it would
    // linger for its inactive threshold on a stream the run does not delete).
    if let Some(o) = &c.ordered {
        delete_ordered(&mut out, spec, index, &o.name);
    }
    // Acks of the last read, then a PING so the server has taken them before
    // the run (and its CPU sample) ends.
    out.extend_from_slice(b"PING\r\n");
    writer.write_all(&out).await?;
    reader.until_pong(&writer).await?;
    let elapsed = c.last_counted.map_or(Duration::ZERO, |t| t - start);
    Ok(Consumed {
        stat: ClientStat {
            msgs: c.got,
            bytes: c.bytes,
            elapsed,
        },
        latency: c.latency,
        resets: c.ordered.map_or(0, |o| o.resets),
    })
}

impl<'a> Consumer<'a> {
    fn new(spec: &'a Spec, index: usize, shared: &'a Shared) -> Self {
        Consumer {
            spec,
            index,
            inbox_dot: format!("{}.", inbox(index)).into_bytes(),
            shared,
            pending: 0,
            ordered: None,
            got: 0,
            bytes: 0,
            fresh: 0,
            fresh_bytes: 0,
            last_counted: None,
            latency: new_histogram(),
        }
    }

    fn shares_durable(&self) -> bool {
        self.spec.consume.kind != ConsumeKind::Ordered
    }

    fn done(&self) -> bool {
        if self.shares_durable() {
            self.shared.consumed.load(Ordering::Relaxed) >= self.spec.msgs
        } else {
            self.got >= self.spec.msgs
        }
    }

    /// Counts what the last read brought: up to what is left of the shared
    /// durable's total (several clients may overshoot it together).
    fn tally(&mut self) {
        if self.fresh == 0 {
            return;
        }
        let before = self
            .shared
            .consumed
            .fetch_add(self.fresh, Ordering::Relaxed);
        let counted = if self.shares_durable() {
            self.fresh.min(self.spec.msgs.saturating_sub(before))
        } else {
            self.fresh.min(self.spec.msgs - self.got)
        };
        if counted > 0 {
            self.got += counted;
            self.bytes += self.fresh_bytes * counted / self.fresh;
            self.last_counted = Some(Instant::now());
        }
        self.fresh = 0;
        self.fresh_bytes = 0;
    }

    fn on_msg(&mut self, d: Delivered, out: &mut Vec<u8>) -> Result<(), String> {
        let hdr = &d.msg[..d.hdr_len];
        if let Some((code, text)) = status(hdr) {
            return self.on_status(code, text, hdr, &d, out);
        }
        if let Some(o) = &self.ordered {
            if d.subject.starts_with(&self.inbox_dot) {
                // API replies: only the current consumer's create matters.
                let current = format!("{}.api{}", inbox(self.index), o.generation);
                if *d.subject == *current.as_bytes() {
                    api_error(&d.msg).map_err(|e| {
                        format!("cannot create the ordered consumer {}: {e}", o.name)
                    })?;
                }
                return Ok(());
            }
        }
        let reply = d.reply.as_deref().unwrap_or_default();
        let Some(ack) = parse_ack_subject(reply) else {
            let body = String::from_utf8_lossy(&d.msg[..d.msg.len().min(300)]);
            return Err(if memchr::memmem::find(&d.msg, b"\"error\"").is_some() {
                format!("the server refused the consumer request: {body}")
            } else {
                format!(
                    "a message without an ack subject arrived on {}: {body}",
                    String::from_utf8_lossy(&d.subject)
                )
            });
        };
        let payload = &d.msg[d.hdr_len..];
        match &mut self.ordered {
            Some(o) => {
                if ack.consumer != o.name || o.gap {
                    return Ok(()); // from a consumer being replaced
                }
                if ack.consumer_seq != o.next_cseq {
                    o.gap = true;
                    return Ok(());
                }
                o.next_cseq += 1;
                o.last_sseq = ack.stream_seq;
            }
            None => {
                self.pending = self.pending.saturating_sub(1);
                if self.spec.consume.ack {
                    encode_pub(out, reply, None, b"");
                }
                if ack.delivered > 1 {
                    return Ok(()); // a redelivery was counted the first time
                }
            }
        }
        self.fresh += 1;
        self.fresh_bytes += payload.len() as u64;
        if self.spec.rate.is_some() && payload.len() >= 8 {
            let sent = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            self.latency
                .record(now_ns().saturating_sub(sent).max(1))
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    fn on_status(
        &mut self,
        code: u16,
        text: &str,
        hdr: &[u8],
        d: &Delivered,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let what = String::from_utf8_lossy(&d.subject).into_owned();
        let left = || header(hdr, "Nats-Pending-Messages").and_then(|v| v.parse::<u64>().ok());
        match (code, self.spec.consume.kind) {
            (100, _) => {
                // Flow control asks for an answer on its reply subject; a
                // heartbeat names the request still unanswered, if any.
                if text.starts_with("FlowControl") {
                    if let Some(reply) = &d.reply {
                        encode_pub(out, reply, None, b"");
                    }
                }
                if let Some(stalled) = header(hdr, "Nats-Consumer-Stalled") {
                    encode_pub(out, stalled.as_bytes(), None, b"");
                }
                if let (Some(o), Some(last)) = (
                    &mut self.ordered,
                    header(hdr, "Nats-Last-Consumer").and_then(|v| v.parse::<u64>().ok()),
                ) {
                    // A heartbeat of the current consumer that is ahead of
                    // what arrived: messages were lost.
                    if *d.subject == *o.deliver.as_bytes() && last >= o.next_cseq {
                        o.gap = true;
                    }
                }
                Ok(())
            }
            // A pull request ended: what it still owed will not come.
            (404 | 408, ConsumeKind::Pull) => {
                self.pending = left().map_or(0, |n| self.pending.saturating_sub(n));
                Ok(())
            }
            (409, ConsumeKind::Pull)
                if text.starts_with("Message Size Exceeds MaxBytes")
                    || text.starts_with("Batch Completed") =>
            {
                self.pending = left().map_or(0, |n| self.pending.saturating_sub(n));
                Ok(())
            }
            (409, ConsumeKind::Pull) if text.starts_with("Leadership Change") => {
                self.pending = 0;
                Ok(())
            }
            (503, _) => Err(format!(
                "no responders on {what}: the consumer or stream does not exist, or the server has no JetStream (503)"
            )),
            _ => Err(format!(
                "the server ended the consumer: {code} {text} (on {what})"
            )),
        }
    }

    /// After each read: pull asks for more once half of what it asked for
    /// arrived; ordered recreates its consumer after a gap.
    fn after_read(&mut self, out: &mut Vec<u8>) {
        if self.done() {
            return;
        }
        let batch = self.spec.consume.batch as u64;
        match self.spec.consume.kind {
            ConsumeKind::Pull if self.pending <= batch / 2 => {
                pull_request(out, self.spec, self.index, batch - self.pending);
                self.pending = batch;
            }
            ConsumeKind::Ordered => {
                let Some(o) = self.ordered.as_ref().filter(|o| o.gap) else {
                    return;
                };
                delete_ordered(out, self.spec, self.index, &o.name);
                let (from, resets) = (o.last_sseq + 1, o.resets + 1);
                self.create_ordered(out, from, resets);
            }
            _ => {}
        }
    }

    /// Asks for a new ordered consumer from `start_seq` (0 = the beginning), on
    /// a new deliver subject, under a name this client chose (so its messages
    /// are recognised even before the create reply, which nats-server sends
    /// after the first deliveries).
    fn create_ordered(&mut self, out: &mut Vec<u8>, start_seq: u64, resets: u64) {
        let generation = self.ordered.as_ref().map_or(0, |o| o.generation + 1);
        // A subscription of its own per deliver subject, outside the client's
        // wildcard: nats-server binds a push consumer only to a subscription
        // on the literal subject, and a second match would deliver twice.
        if generation > 0 {
            out.extend_from_slice(format!("UNSUB {}\r\n", 1 + generation).as_bytes());
        }
        let deliver = ordered_deliver(self.index, generation);
        out.extend_from_slice(format!("SUB {deliver} {}\r\n", 2 + generation).as_bytes());
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            % 1_000_000_000_000;
        let name = format!("jcord{}x{unique}g{generation}", self.index);
        let body = ordered_config(self.spec, &name, &deliver, start_seq).to_string();
        let subject = format!("$JS.API.CONSUMER.CREATE.{}.{name}", self.spec.stream);
        let reply = format!("{}.api{generation}", inbox(self.index));
        encode_pub(
            out,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            body.as_bytes(),
        );
        self.ordered = Some(Ordered {
            generation,
            name,
            deliver,
            next_cseq: 1,
            last_sseq: start_seq.saturating_sub(1),
            gap: false,
            resets,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_v1_and_v2() {
        let v1 = parse_ack_subject(b"$JS.ACK.S.C1.2.40.12.1732620000123456789.88").unwrap();
        assert_eq!(
            v1,
            AckSubject {
                stream: "S",
                consumer: "C1",
                delivered: 2,
                stream_seq: 40,
                consumer_seq: 12,
                timestamp: 1732620000123456789,
                pending: 88,
            }
        );
        // v2: domain and account hash first; extra tokens at the end are allowed.
        let v2 = parse_ack_subject(b"$JS.ACK._.ACCHASH.S.C1.1.5.5.1732620000123456789.0").unwrap();
        assert_eq!(
            (v2.stream, v2.consumer, v2.stream_seq, v2.pending),
            ("S", "C1", 5, 0)
        );
        let v2x = parse_ack_subject(b"$JS.ACK.hub.ACC.S.C1.1.5.6.17.3.r4nd").unwrap();
        assert_eq!((v2x.consumer_seq, v2x.pending), (6, 3));
        for bad in [
            &b"$JS.ACK.S.C1.1.2"[..],
            b"$JS.ACK.S.C1.x.40.12.17.88",
            b"$JS.FC.S.C1.abcd",
            b"_INBOX.x.y.z.1.2.3.4.5",
            b"$JS.ACK.S.C1.1.2.3.4.5.6",
        ] {
            assert_eq!(
                parse_ack_subject(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn spec(kind: ConsumeKind, msgs: u64) -> Spec {
        Spec {
            mode: crate::bench::run::Mode::JsConsume,
            server: "127.0.0.1:1".into(),
            sub_server: None,
            msgs,
            size: 16,
            pubs: 1,
            subs: 1,
            responders: 0,
            subject: "bench.js".into(),
            multisubject: false,
            rate: None,
            duration: Duration::from_secs(1),
            window: 1,
            stream: "S".into(),
            storage: "file".into(),
            workers: 1,
            pin_workers: false,
            keys: 1,
            consume: ConsumeSpec {
                kind,
                batch: 10,
                ack: kind != ConsumeKind::Ordered,
                ..ConsumeSpec::default()
            },
            copy: crate::bench::run::CopySpec::default(),
            ttl: None,
            keep: false,
            placement: None,
        }
    }

    fn msg(subject: &str, reply: Option<&str>, hdr: &str, body: &str) -> Delivered {
        Delivered {
            subject: subject.to_string().into(),
            reply: reply.map(|r| r.to_string().into()),
            hdr_len: hdr.len(),
            msg: format!("{hdr}{body}").into(),
        }
    }

    fn data(consumer: &str, dc: u64, seq: u64, cseq: u64) -> Delivered {
        let ack = format!("$JS.ACK.S.{consumer}.{dc}.{seq}.{cseq}.1700000000000000000.0");
        msg("bench.js", Some(&ack), "", "payload")
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    /// nats.go `Consume`: every message acked on its reply subject, and the next
    /// request, for what was consumed, once half the batch has arrived.
    #[test]
    fn pull_acks_and_asks_again_at_half_the_batch() {
        let spec = spec(ConsumeKind::Pull, 100);
        let shared = Shared::new(0);
        let mut c = Consumer::new(&spec, 0, &shared);
        c.pending = 10;
        let mut out = Vec::new();
        for seq in 1..=4 {
            c.on_msg(data("jetcore-bench", 1, seq, seq), &mut out)
                .unwrap();
        }
        c.tally();
        c.after_read(&mut out);
        assert_eq!(
            text(&out).matches("PUB $JS.ACK.S.jetcore-bench.1.").count(),
            4
        );
        assert!(!text(&out).contains("MSG.NEXT"), "6 of 10 still owed");
        out.clear();
        c.on_msg(data("jetcore-bench", 1, 5, 5), &mut out).unwrap();
        c.tally();
        c.after_read(&mut out);
        let t = text(&out);
        let next = format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.S.jetcore-bench {}.pull ",
            inbox(0)
        );
        assert!(t.contains(&next), "{t}");
        assert!(
            t.contains(r#"{"batch":5,"expires":30000000000,"idle_heartbeat":15000000000}"#),
            "{t}"
        );
        assert_eq!((c.pending, c.got, c.bytes), (10, 5, 35));
        assert_eq!(shared.consumed.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn pull_statuses() {
        let spec = spec(ConsumeKind::Pull, 100);
        let shared = Shared::new(0);
        let mut c = Consumer::new(&spec, 0, &shared);
        let mut out = Vec::new();
        c.pending = 10;
        let inbox = &format!("{}.pull", inbox(0));
        // Heartbeats need no answer; an expired request no longer owes its rest.
        let hb =
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\n\r\n";
        c.on_msg(msg(inbox, None, hb, ""), &mut out).unwrap();
        let expired =
            "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 7\r\nNats-Pending-Bytes: 0\r\n\r\n";
        c.on_msg(msg(inbox, None, expired, ""), &mut out).unwrap();
        assert_eq!(c.pending, 3);
        assert!(out.is_empty());
        c.after_read(&mut out);
        assert!(text(&out).contains(r#"{"batch":7,"#), "{}", text(&out));
        // A redelivery is acked but not counted again.
        out.clear();
        c.on_msg(data("jetcore-bench", 2, 1, 11), &mut out).unwrap();
        c.tally();
        assert_eq!(c.got, 0);
        assert!(text(&out).starts_with("PUB $JS.ACK.S.jetcore-bench.2.1.11."));
        // Refusals end the run with what the server said.
        for (hdr, want) in [
            (
                "NATS/1.0 409 Consumer Deleted\r\n\r\n",
                "409 Consumer Deleted",
            ),
            (
                "NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n",
                "Exceeded MaxWaiting",
            ),
            (
                "NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n",
                "400 Bad Request",
            ),
            ("NATS/1.0 503\r\nNats-Subject: x\r\n\r\n", "no responders"),
        ] {
            let err = c.on_msg(msg(inbox, None, hdr, ""), &mut out).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let err = c
            .on_msg(msg(inbox, None, "", r#"{"error":{"code":501}}"#), &mut out)
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }

    #[test]
    fn push_answers_flow_control_and_stalled_heartbeats() {
        let spec = spec(ConsumeKind::Push, 100);
        let shared = Shared::new(0);
        let mut c = Consumer::new(&spec, 0, &shared);
        let mut out = Vec::new();
        let deliver = push_deliver(&spec);
        c.on_msg(
            msg(
                &deliver,
                Some("$JS.FC.S.jetcore-bench.Ab12"),
                "NATS/1.0 100 FlowControl Request\r\n\r\n",
                "",
            ),
            &mut out,
        )
        .unwrap();
        let stalled = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 21\r\nNats-Last-Stream: 21\r\nNats-Consumer-Stalled: $JS.FC.S.jetcore-bench.Zz99\r\n\r\n";
        c.on_msg(msg(&deliver, None, stalled, ""), &mut out)
            .unwrap();
        assert_eq!(
            text(&out),
            "PUB $JS.FC.S.jetcore-bench.Ab12 0\r\n\r\nPUB $JS.FC.S.jetcore-bench.Zz99 0\r\n\r\n"
        );
    }

    /// A consumer-sequence gap: the ordered consumer is deleted and recreated
    /// from the stream sequence after the last one received, on a new deliver
    /// subject; what the old one still sends is dropped.
    #[test]
    fn ordered_recreates_after_a_gap() {
        let spec = spec(ConsumeKind::Ordered, 100);
        let shared = Shared::new(0);
        let mut c = Consumer::new(&spec, 0, &shared);
        let mut out = Vec::new();
        c.create_ordered(&mut out, 0, 0);
        let t = text(&out);
        let first = c.ordered.as_ref().unwrap().name.clone();
        assert!(
            t.starts_with(&format!(
                "SUB {} 2\r\nPUB $JS.API.CONSUMER.CREATE.S.jcord0x",
                ordered_deliver(0, 0)
            )),
            "{t}"
        );
        let body: serde_json::Value = serde_json::from_str(t.lines().nth(2).unwrap()).unwrap();
        let config = &body["config"];
        assert_eq!(config["name"], first.as_str());
        assert_eq!(config["deliver_subject"], ordered_deliver(0, 0).as_str());
        assert_eq!(config["deliver_policy"], "all");
        assert_eq!(config["ack_policy"], "none");
        assert_eq!(config["flow_control"], true);
        assert_eq!(config["idle_heartbeat"], 5_000_000_000u64);
        assert_eq!(config["mem_storage"], true);
        assert!(config.get("opt_start_seq").is_none());
        out.clear();
        // The create reply may come after the first messages.
        c.on_msg(data(&first, 1, 1, 1), &mut out).unwrap();
        c.on_msg(
            msg(
                &format!("{}.api0", inbox(0)),
                None,
                "",
                r#"{"type":"x","name":"n"}"#,
            ),
            &mut out,
        )
        .unwrap();
        c.on_msg(data(&first, 1, 2, 2), &mut out).unwrap();
        c.on_msg(data(&first, 1, 4, 4), &mut out).unwrap();
        c.on_msg(data(&first, 1, 5, 5), &mut out).unwrap();
        c.tally();
        assert_eq!(c.got, 2);
        assert!(out.is_empty(), "ordered consumers do not ack");
        c.after_read(&mut out);
        let t = text(&out);
        let reset = format!(
            "PUB $JS.API.CONSUMER.DELETE.S.{first} {}.del 0\r\n\r\nUNSUB 2\r\nSUB {} 3\r\nPUB $JS.API.CONSUMER.CREATE.S.jcord0x",
            inbox(0),
            ordered_deliver(0, 1)
        );
        assert!(t.starts_with(&reset), "{t}");
        let body: serde_json::Value = serde_json::from_str(t.lines().nth(5).unwrap()).unwrap();
        assert_eq!(body["config"]["deliver_policy"], "by_start_sequence");
        assert_eq!(body["config"]["opt_start_seq"], 3);
        assert_eq!(
            body["config"]["deliver_subject"],
            ordered_deliver(0, 1).as_str()
        );
        let o = c.ordered.as_ref().unwrap();
        assert_eq!((o.resets, o.next_cseq, o.last_sseq), (1, 1, 2));
        let second = o.name.clone();
        assert_ne!(first, second);
        // The old consumer's late messages are dropped; the new one counts.
        out.clear();
        c.on_msg(data(&first, 1, 6, 6), &mut out).unwrap();
        c.on_msg(data(&second, 1, 3, 1), &mut out).unwrap();
        c.tally();
        assert_eq!(c.got, 3);
        // Its create failing ends the run.
        let err = c
            .on_msg(
                msg(
                    &format!("{}.api1", inbox(0)),
                    None,
                    "",
                    r#"{"error":{"code":400,"description":"nope"}}"#,
                ),
                &mut out,
            )
            .unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn ordered_heartbeat_ahead_of_what_arrived_is_a_gap() {
        let spec = spec(ConsumeKind::Ordered, 100);
        let shared = Shared::new(0);
        let mut c = Consumer::new(&spec, 0, &shared);
        let mut out = Vec::new();
        c.create_ordered(&mut out, 0, 0);
        let name = c.ordered.as_ref().unwrap().name.clone();
        c.on_msg(data(&name, 1, 1, 1), &mut out).unwrap();
        let hb = |last: u64| {
            format!("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {last}\r\nNats-Last-Stream: {last}\r\n\r\n")
        };
        c.on_msg(msg(&ordered_deliver(0, 0), None, &hb(1), ""), &mut out)
            .unwrap();
        assert!(!c.ordered.as_ref().unwrap().gap);
        // Another subject's heartbeat (an old consumer) says nothing about this one.
        c.on_msg(msg(&ordered_deliver(0, 7), None, &hb(9), ""), &mut out)
            .unwrap();
        assert!(!c.ordered.as_ref().unwrap().gap);
        c.on_msg(msg(&ordered_deliver(0, 0), None, &hb(2), ""), &mut out)
            .unwrap();
        assert!(c.ordered.as_ref().unwrap().gap);
    }

    /// Consumers sharing a durable stop together at the run's total.
    #[test]
    fn shared_durable_counts_up_to_the_total() {
        let spec = spec(ConsumeKind::Pull, 3);
        let shared = Shared::new(0);
        let mut a = Consumer::new(&spec, 0, &shared);
        let mut b = Consumer::new(&spec, 1, &shared);
        let mut out = Vec::new();
        for seq in 1..=2 {
            a.on_msg(data("jetcore-bench", 1, seq, seq), &mut out)
                .unwrap();
            b.on_msg(data("jetcore-bench", 1, seq + 2, seq + 2), &mut out)
                .unwrap();
        }
        a.tally();
        b.tally();
        assert_eq!((a.got, b.got), (2, 1));
        assert!(a.done() && b.done());
    }

    #[test]
    fn consume_kinds_parse() {
        assert_eq!("pull".parse(), Ok(ConsumeKind::Pull));
        assert_eq!("ordered".parse(), Ok(ConsumeKind::Ordered));
        assert!("fetch".parse::<ConsumeKind>().is_err());
    }
}
