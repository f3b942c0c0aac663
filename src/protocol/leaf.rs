//! The leaf node protocol between servers (pure: bytes in, ops out, and the
//! encoders for what we send), as nats-server 2.15 speaks it on a leaf
//! connection (../shared/reference/leafnodes.md §2, §3).
//!
//! ```text
//! INFO <json> | CONNECT <json> | PING | PONG | +OK | -ERR <text>
//! LS+ <subject> [<queue> <weight>]        interest (a queue key replaces its weight)
//! LS- <subject> [<queue>]
//! LMSG <subject> [<reply>] <#bytes>
//! LMSG <subject> (+ <reply> | |) <queue>... <#bytes>
//! HMSG <subject> [<reply>] <#hdr> <#total>
//! HMSG <subject> (+ <reply> | |) <queue>... <#hdr> <#total>
//! ```
//! There is no sid and no account: a leaf connection is bound to one account.
//! The parser keeps nothing between calls but how far it has looked for a
//! line feed: a line waits in the buffer until its payload has arrived too.

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::protocol::ops::push_decimal;

/// One op from the server at the other end of a leaf connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafOp {
    Info(Bytes),
    Connect(Bytes),
    Ping,
    Pong,
    Ok,
    Err(Bytes),
    /// `LS+`: interest in `subject`, with a queue group and its weight.
    Sub {
        subject: Bytes,
        queue: Option<(Bytes, u32)>,
    },
    /// `LS-`.
    Unsub {
        subject: Bytes,
        queue: Option<Bytes>,
    },
    Msg(LeafMsg),
}

/// An `LMSG` or leaf `HMSG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafMsg {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// The queue groups on our side that the sender chose for this message
    /// (none: only plain subscriptions take it).
    pub queues: Vec<Bytes>,
    pub hdr_len: Option<usize>,
    /// Header block (when `hdr_len`) and payload.
    pub msg: Bytes,
}

/// Input that closes a leaf connection; `text` is the `-ERR` nats-server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafError {
    UnknownOp,
    ControlLineTooLong,
    PayloadTooBig,
    BadArgs,
}

impl LeafError {
    pub fn text(self) -> &'static str {
        match self {
            LeafError::UnknownOp => "Unknown Protocol Operation",
            LeafError::ControlLineTooLong => "maximum control line exceeded",
            LeafError::PayloadTooBig => "Maximum Payload Violation",
            LeafError::BadArgs => "Unknown Protocol Operation",
        }
    }
}

/// Parser for one leaf connection.
#[derive(Debug)]
pub struct LeafParser {
    payload_max: usize,
    control_line_max: usize,
}

impl LeafParser {
    pub fn new(payload_max: usize, control_line_max: usize) -> Self {
        LeafParser {
            payload_max,
            control_line_max,
        }
    }

    /// Takes the next complete op off the front of `buf` (`Ok(None)`: more
    /// bytes needed). After an error the connection must be closed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<LeafOp>, LeafError> {
        // INFO and CONNECT lines carry JSON: allow them more than a control line.
        let limit = self.control_line_max.max(crate::limits::LEAF_JSON_MAX) + 16;
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            let json = [&b"INFO"[..], b"CONNECT"]
                .iter()
                .any(|v| buf.len() >= v.len() && buf[..v.len()].eq_ignore_ascii_case(v));
            if buf.len()
                > if json {
                    limit
                } else {
                    self.control_line_max + 16
                }
            {
                return Err(LeafError::ControlLineTooLong);
            }
            return Ok(None);
        };
        let end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let (verb, verb_end, total) = {
            let line = &buf[..end];
            let verb_end = line
                .iter()
                .position(|b| *b == b' ' || *b == b'\t')
                .unwrap_or(line.len());
            let verb = line[..verb_end].to_ascii_uppercase();
            let json = matches!(&verb[..], b"INFO" | b"CONNECT");
            if end
                > if json {
                    limit
                } else {
                    self.control_line_max + 16
                }
            {
                return Err(LeafError::ControlLineTooLong);
            }
            let total = match &verb[..] {
                b"LMSG" | b"HMSG" => {
                    let args = split(&line[verb_end..]);
                    Some(parse_msg_args(&args, verb[0] == b'H')?.1)
                }
                _ => None,
            };
            (verb, verb_end, total)
        };
        if let Some(total) = total {
            if total > self.payload_max {
                return Err(LeafError::PayloadTooBig);
            }
            if buf.len() < nl + 1 + total + 2 {
                return Ok(None);
            }
            if &buf[nl + 1 + total..nl + 1 + total + 2] != b"\r\n" {
                return Err(LeafError::UnknownOp);
            }
            let line = buf.split_to(nl + 1).freeze();
            let msg = buf.split_to(total).freeze();
            buf.advance(2);
            let args = split(&line[verb_end..end]);
            let (head, _) = parse_msg_args(&args, verb[0] == b'H')?;
            let slice = |s: &[u8]| line.slice_ref(s);
            return Ok(Some(LeafOp::Msg(LeafMsg {
                subject: slice(head.subject),
                reply: head.reply.map(slice),
                queues: head.queues.iter().map(|q| slice(q)).collect(),
                hdr_len: head.hdr_len,
                msg,
            })));
        }
        let line = buf.split_to(nl + 1).freeze();
        let args = split(&line[verb_end..end]);
        let rest = |at: usize| {
            let mut at = at;
            while at < end && (line[at] == b' ' || line[at] == b'\t') {
                at += 1;
            }
            line.slice(at..end)
        };
        let arg = |s: &[u8]| line.slice_ref(s);
        let op = match &verb[..] {
            b"PING" => LeafOp::Ping,
            b"PONG" => LeafOp::Pong,
            b"+OK" => LeafOp::Ok,
            b"-ERR" => LeafOp::Err(rest(verb_end)),
            b"INFO" => LeafOp::Info(rest(verb_end)),
            b"CONNECT" => LeafOp::Connect(rest(verb_end)),
            // Kept for the interest's life: copies, as a slice would keep the
            // whole read buffer it came in.
            b"LS+" => match args[..] {
                [s] => LeafOp::Sub {
                    subject: Bytes::copy_from_slice(s),
                    queue: None,
                },
                [s, q, w] => {
                    let w = parse_size(w).ok_or(LeafError::BadArgs)?;
                    LeafOp::Sub {
                        subject: Bytes::copy_from_slice(s),
                        queue: Some((
                            Bytes::copy_from_slice(q),
                            w.clamp(1, u32::MAX as usize) as u32,
                        )),
                    }
                }
                _ => return Err(LeafError::BadArgs),
            },
            b"LS-" => match args[..] {
                [s] => LeafOp::Unsub {
                    subject: arg(s),
                    queue: None,
                },
                [s, q] => LeafOp::Unsub {
                    subject: arg(s),
                    queue: Some(arg(q)),
                },
                _ => return Err(LeafError::BadArgs),
            },
            _ => return Err(LeafError::UnknownOp),
        };
        Ok(Some(op))
    }
}

fn split(args: &[u8]) -> Vec<&[u8]> {
    args.split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
        .collect()
}

struct MsgHead<'a> {
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    queues: Vec<&'a [u8]>,
    hdr_len: Option<usize>,
}

/// LMSG/HMSG arguments: the head and the total size.
fn parse_msg_args<'a>(args: &[&'a [u8]], headers: bool) -> Result<(MsgHead<'a>, usize), LeafError> {
    let sizes = if headers { 2 } else { 1 };
    if args.len() < 1 + sizes {
        return Err(LeafError::BadArgs);
    }
    let total = parse_size(args[args.len() - 1]).ok_or(LeafError::BadArgs)?;
    let hdr_len = if headers {
        let h = parse_size(args[args.len() - 2]).ok_or(LeafError::BadArgs)?;
        if h > total {
            return Err(LeafError::BadArgs);
        }
        (h > 0).then_some(h)
    } else {
        None
    };
    let names = &args[..args.len() - sizes];
    let head = match names {
        [s] => (*s, None, Vec::new()),
        [s, r] => (*s, Some(*r), Vec::new()),
        [s, b"+", r, queues @ ..] if !queues.is_empty() => (*s, Some(*r), queues.to_vec()),
        [s, b"|", queues @ ..] if !queues.is_empty() => (*s, None, queues.to_vec()),
        _ => return Err(LeafError::BadArgs),
    };
    Ok((
        MsgHead {
            subject: head.0,
            reply: head.1,
            queues: head.2,
            hdr_len,
        },
        total,
    ))
}

/// A decimal size: digits only, no sign, no overflow.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

/// Appends `LMSG`/`HMSG` for one message on a leaf connection. `queues`: the
/// groups on the far side chosen for it.
pub fn encode_msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    hdr_len: Option<usize>,
    msg: &[u8],
) {
    let names: usize = queues.iter().map(|q| q.len() + 1).sum();
    out.reserve(subject.len() + reply.map_or(0, |r| r.len()) + names + msg.len() + 48);
    out.extend_from_slice(if hdr_len.is_some() {
        b"HMSG "
    } else {
        b"LMSG "
    });
    out.extend_from_slice(subject);
    out.push(b' ');
    match (reply, queues.is_empty()) {
        (Some(r), true) => {
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (Some(r), false) => {
            out.extend_from_slice(b"+ ");
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (None, false) => out.extend_from_slice(b"| "),
        (None, true) => {}
    }
    for q in queues {
        out.extend_from_slice(q);
        out.push(b' ');
    }
    crate::protocol::ops::encode_sizes_and_payload(out, hdr_len, msg);
}

/// Appends `LS+ <subject>` or `LS+ <subject> <queue> <weight>`.
pub fn encode_sub(out: &mut Vec<u8>, subject: &[u8], queue: Option<(&[u8], u32)>) {
    out.extend_from_slice(b"LS+ ");
    out.extend_from_slice(subject);
    if let Some((q, w)) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        out.push(b' ');
        push_decimal(out, u64::from(w));
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `LS- <subject> [<queue>]`.
pub fn encode_unsub(out: &mut Vec<u8>, subject: &[u8], queue: Option<&[u8]>) {
    out.extend_from_slice(b"LS- ");
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b"\r\n");
}

/// A JetStream push delivery crossing a leaf connection carries the stored
/// subject after its ack reply (`$JS.ACK.…@<subject>`), as nats-server does:
/// the far side matches on the deliver subject and shows the stored one.
/// Splits such a reply into (ack reply, stored subject).
pub fn split_ack_subject(reply: &Bytes) -> Option<(Bytes, Bytes)> {
    if !reply.starts_with(b"$JS.ACK.") {
        return None;
    }
    let at = memchr::memchr(b'@', reply)?;
    let dots = reply[..at].iter().filter(|b| **b == b'.').count();
    (dots >= 8 && at + 1 < reply.len()).then(|| (reply.slice(..at), reply.slice(at + 1..)))
}

/// The reply to send for a delivery shown with `shown` but matched on
/// `matched`: an ack reply gets `@<shown>` appended (see `split_ack_subject`).
pub fn reply_for(reply: &[u8], matched: &[u8], shown: &[u8]) -> Option<Vec<u8>> {
    if matched == shown || !reply.starts_with(b"$JS.ACK.") || memchr::memchr(b'@', reply).is_some()
    {
        return None;
    }
    let mut r = Vec::with_capacity(reply.len() + 1 + shown.len());
    r.extend_from_slice(reply);
    r.push(b'@');
    r.extend_from_slice(shown);
    Some(r)
}

/// The INFO a leaf listener sends (jetcore as hub), in nats-server's field
/// order. `client_id` (non-zero) and `leafnode_urls` (an array) must be
/// there: without them a nats-server leaf decides it dialled the wrong port.
/// No `compression`: the peer then settles on "not supported", plain text.
#[derive(Debug, Clone, Serialize)]
pub struct LeafInfo<'a> {
    pub server_id: &'a str,
    pub server_name: &'a str,
    pub version: &'a str,
    pub proto: u32,
    pub go: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub headers: bool,
    /// Always true on a leaf listener, as nats-server says it.
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: usize,
    pub jetstream: bool,
    pub ip: String,
    pub client_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_account: Option<&'a str>,
    /// The leaf user's permissions from its side: what it may receive
    /// (`import`) and send (`export`), in the INFO answering CONNECT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<PermissionJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<PermissionJson>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub info_on_connect: bool,
    pub leafnode_urls: Vec<String>,
}

/// nats-server's `{"allow": [...], "deny": [...]}`, empty lists left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PermissionJson {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The CONNECT a soliciting server sends; every key left out when empty, as
/// nats-server does. No `compress_mode`: we never compress (the hub then
/// writes plain text, reference §1.8).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeafConnect<'a> {
    pub version: &'a str,
    pub server_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    pub name: &'a str,
    pub cluster: &'a str,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    pub remote_account: &'a str,
    pub protocol: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub user: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub pass: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub auth_token: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub jwt: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub nkey: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sig: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub deny_pub: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_hub: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub isolate: bool,
}

/// What we read from the other side's INFO or CONNECT (unknown fields
/// ignored, a repeated key keeps its last value, as Go decodes).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PeerHello {
    pub server_id: String,
    pub server_name: String,
    /// CONNECT's name for the server (INFO says `server_name`).
    pub name: String,
    pub cluster: String,
    pub domain: String,
    pub headers: bool,
    pub jetstream: bool,
    pub client_id: u64,
    pub leafnode_urls: Option<Vec<String>>,
    pub nonce: String,
    pub connect_info: bool,
    pub info_on_connect: bool,
    pub remote_account: String,
    pub tls_required: bool,
    pub lang: Option<String>,
    pub gateway: String,
    pub deny_pub: Vec<String>,
    pub is_hub: bool,
    pub isolate: bool,
    pub version: String,
}

impl PeerHello {
    pub fn decode(json: &[u8]) -> Result<PeerHello, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        let value = match value {
            serde_json::Value::Object(map) => {
                serde_json::Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        };
        serde_json::from_value(value)
    }

    /// The peer's server name (from INFO or CONNECT), else its id.
    pub fn display_name(&self) -> &str {
        [&self.server_name, &self.name, &self.server_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("", |s| s.as_str())
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<LeafOp>, LeafError> {
        let mut p = LeafParser::new(1024, 4096);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(op) = p.next(&mut buf)? {
            out.push(op);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn msg(op: &LeafOp) -> &LeafMsg {
        match op {
            LeafOp::Msg(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    /// Lines as captured from nats-server 2.15.1 (reference §3.1).
    #[test]
    fn messages_in_every_form_nats_server_sends() {
        let ops = parse_all(
            b"LMSG foo 5\r\nhello\r\nLMSG bar | q1 4\r\nabcd\r\n\
              HMSG svc _INBOX.leafreq1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
              LMSG mix + rep.x g1 g2 1\r\nz\r\nHMSG hb 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        )
        .unwrap();
        assert_eq!(ops.len(), 5);
        let m = msg(&ops[0]);
        assert_eq!((&m.subject[..], &m.msg[..]), (&b"foo"[..], &b"hello"[..]));
        assert!(m.reply.is_none() && m.queues.is_empty() && m.hdr_len.is_none());
        let m = msg(&ops[1]);
        assert_eq!(m.queues, vec![Bytes::from("q1")]);
        assert!(m.reply.is_none());
        let m = msg(&ops[2]);
        assert_eq!(m.reply.as_deref(), Some(&b"_INBOX.leafreq1"[..]));
        assert_eq!(
            (m.hdr_len, &m.msg[..]),
            (Some(12), &b"NATS/1.0\r\n\r\nhi"[..])
        );
        let m = msg(&ops[3]);
        assert_eq!(m.reply.as_deref(), Some(&b"rep.x"[..]));
        assert_eq!(m.queues, vec![Bytes::from("g1"), Bytes::from("g2")]);
        assert_eq!(msg(&ops[4]).hdr_len, Some(12));
    }

    #[test]
    fn interest_and_control_ops() {
        let ops = parse_all(
            b"LS+ foo\r\nLS+ bar q1 2\r\nLS- foo\r\nLS- bar q1\r\nPING\r\npong\r\n\
              INFO {\"a\":1}\r\n-ERR 'Loop detected'\r\n+OK\r\n",
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                LeafOp::Sub {
                    subject: "foo".into(),
                    queue: None
                },
                LeafOp::Sub {
                    subject: "bar".into(),
                    queue: Some(("q1".into(), 2))
                },
                LeafOp::Unsub {
                    subject: "foo".into(),
                    queue: None
                },
                LeafOp::Unsub {
                    subject: "bar".into(),
                    queue: Some("q1".into())
                },
                LeafOp::Ping,
                LeafOp::Pong,
                LeafOp::Info("{\"a\":1}".into()),
                LeafOp::Err("'Loop detected'".into()),
                LeafOp::Ok,
            ]
        );
    }

    #[test]
    fn interest_does_not_pin_the_read_buffer() {
        let mut p = LeafParser::new(1024, 4096);
        let mut buf = BytesMut::from(&b"LS+ a.b q 2\r\n"[..]);
        let range = buf.as_ptr_range();
        let Ok(Some(LeafOp::Sub {
            subject,
            queue: Some((queue, 2)),
        })) = p.next(&mut buf)
        else {
            panic!("an LS+ with a queue")
        };
        assert_eq!((&subject[..], &queue[..]), (&b"a.b"[..], &b"q"[..]));
        assert!(!range.contains(&subject.as_ptr()) && !range.contains(&queue.as_ptr()));
    }

    #[test]
    fn input_split_anywhere_waits_for_the_rest() {
        let whole = b"LMSG foo rep 5\r\nhello\r\nLS+ a.b\r\n";
        for cut in 0..whole.len() {
            let mut p = LeafParser::new(1024, 4096);
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut ops = Vec::new();
            while let Some(op) = p.next(&mut buf).unwrap() {
                ops.push(op);
            }
            buf.extend_from_slice(&whole[cut..]);
            while let Some(op) = p.next(&mut buf).unwrap() {
                ops.push(op);
            }
            assert_eq!(ops.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let bad: [(&[u8], LeafError); 8] = [
            (b"LS+ foo q1\r\n", LeafError::BadArgs),
            (b"LS+\r\n", LeafError::BadArgs),
            (b"LMSG foo x q 5\r\nhello\r\n", LeafError::BadArgs),
            (b"LMSG foo\r\n", LeafError::BadArgs),
            (b"HMSG foo 9 5\r\nhello\r\n", LeafError::BadArgs),
            (b"LMSG foo 5\r\nhelloXX", LeafError::UnknownOp),
            (b"LMSG foo 2000\r\n", LeafError::PayloadTooBig),
            (b"SUB foo 1\r\n", LeafError::UnknownOp),
        ];
        for (input, want) in bad {
            assert_eq!(parse_all(input).unwrap_err(), want, "{input:?}");
        }
        let long = [b'a'; 5000];
        assert_eq!(parse_all(&long).unwrap_err(), LeafError::ControlLineTooLong);
    }

    #[test]
    fn encoders_write_what_the_parser_reads() {
        let mut out = Vec::new();
        encode_msg(&mut out, b"foo", None, &[], None, b"hi");
        encode_msg(&mut out, b"foo", Some(b"r"), &[], None, b"hi");
        encode_msg(&mut out, b"foo", Some(b"r"), &[b"q1", b"q2"], None, b"hi");
        encode_msg(
            &mut out,
            b"foo",
            None,
            &[b"q1"],
            Some(12),
            b"NATS/1.0\r\n\r\nhi",
        );
        encode_sub(&mut out, b"a.>", None);
        encode_sub(&mut out, b"a", Some((b"q", 3)));
        encode_unsub(&mut out, b"a", Some(b"q"));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with(
            "LMSG foo 2\r\nhi\r\nLMSG foo r 2\r\nhi\r\nLMSG foo + r q1 q2 2\r\nhi\r\n\
             HMSG foo | q1 12 14\r\n"
        ));
        assert!(text.ends_with("LS+ a.>\r\nLS+ a q 3\r\nLS- a q\r\n"));
        assert_eq!(parse_all(&out).unwrap().len(), 7);
    }

    #[test]
    fn ack_replies_carry_the_stored_subject() {
        let ack = "$JS.ACK.ORDERS.C-x.1.1.1.1796518601785619271.2";
        let with = Bytes::from(format!("{ack}@orders.new"));
        let (r, s) = split_ack_subject(&with).unwrap();
        assert_eq!((&r[..], &s[..]), (ack.as_bytes(), &b"orders.new"[..]));
        assert!(split_ack_subject(&Bytes::from("_INBOX.a@b")).is_none());
        assert!(split_ack_subject(&Bytes::from("$JS.ACK.a.b@c")).is_none());
        let built = reply_for(ack.as_bytes(), b"$JS.M.x", b"orders.new").unwrap();
        assert_eq!(built, with.to_vec());
        assert!(reply_for(ack.as_bytes(), b"orders.new", b"orders.new").is_none());
        assert!(reply_for(b"_INBOX.x", b"d", b"orders.new").is_none());
    }

    /// The hub's INFO and a solicitor's CONNECT as nats-server 2.15.1 sent
    /// them (reference §1.2, §1.3).
    #[test]
    fn hellos_from_nats_server() {
        let info = br#"{"server_id":"NCQK","server_name":"hub","version":"2.15.1","proto":3,"headers":true,"auth_required":true,"max_payload":1048576,"jetstream":true,"client_id":5,"nonce":"Lz6P","domain":"hub","compression":"s2_auto","api_lvl":5,"info_on_connect":true,"leafnode_urls":["127.0.0.1:17422"]}"#;
        let h = PeerHello::decode(info).unwrap();
        assert_eq!((h.client_id, h.domain.as_str()), (5, "hub"));
        assert!(h.info_on_connect && h.headers && h.leafnode_urls.is_some());
        assert_eq!(h.display_name(), "hub");
        let connect = br#"{"version":"2.15.1","server_id":"NBP2","domain":"leaf","name":"leaf","cluster":"leaf","headers":true,"jetstream":true,"compress_mode":"off","remote_account":"$G","protocol":3,"name":"leaf2"}"#;
        let c = PeerHello::decode(connect).unwrap();
        assert_eq!((c.display_name(), c.cluster.as_str()), ("leaf2", "leaf"));
        assert!(c.lang.is_none());
        let ours = LeafConnect {
            version: "2.15.1",
            server_id: "N1",
            name: "edge",
            cluster: "edge",
            headers: true,
            remote_account: "$G",
            protocol: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            r#"{"version":"2.15.1","server_id":"N1","name":"edge","cluster":"edge","headers":true,"remote_account":"$G","protocol":1}"#
        );
    }
}
