//! Byte-level parser for client protocol ops.
//!
//! `Parser::next` takes ops off the front of a connection's read buffer. It keeps
//! its state between calls, so input may be split anywhere across reads: a control
//! line waits in the buffer until its line feed arrives (never more than
//! `max_control_line` bytes), and a parsed PUB/HPUB header waits for its payload
//! without being parsed again. A PUB's payload, subject and reply are `Bytes` slices
//! of the read buffer: no copy and no allocation per message. A SUB's subject,
//! queue and sid are copies, as a subscription keeps them for its whole life.
//!
//! Invariant: the parser does no I/O and never buffers beyond the caller's buffer.
//!
//! Accepted grammar (verbs case-insensitive, arguments separated by spaces or tabs,
//! lines ending in `\r\n` or `\n`, payloads followed by exactly `\r\n`):
//! ```text
//! CONNECT <json>
//! PUB <subject> [reply-to] <#bytes>\r\n<payload>\r\n
//! HPUB <subject> [reply-to] <#header bytes> <#total bytes>\r\n<headers><payload>\r\n
//! SUB <subject> [queue group] <sid>
//! UNSUB <sid> [max_msgs]
//! PING | PONG | +OK | -ERR <text> | INFO <json>
//! ```

use bytes::{Buf, Bytes, BytesMut};

/// One op from a client. Byte fields are slices of the connection's read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    Connect(Bytes),
    Pub(PubOp),
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `INFO`, `+OK` and `-ERR` from a client carry nothing we act on.
    Ignored,
}

/// A PUB or HPUB. `msg` is the header block (when `hdr_len > 0`) followed by the
/// payload, exactly as it will be forwarded in MSG/HMSG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubOp {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// Length of the header block at the front of `msg`; `None` for a plain PUB.
    pub hdr_len: Option<usize>,
    pub msg: Bytes,
}

/// Input the parser refuses. Each closes the connection: framing errors after an
/// `-ERR`, argument errors silently (as nats-server does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Unknown verb, or bytes where a verb or payload terminator belongs.
    UnknownOp,
    /// Arguments longer than `max_control_line`.
    ControlLineTooLong,
    /// A PUB/HPUB whose size exceeds `max_payload`.
    PayloadTooBig,
    /// PUB/HPUB arguments that do not parse (count, sizes, header > total).
    BadPubArgs,
    /// SUB arguments that do not parse.
    BadSubArgs,
    /// UNSUB arguments that do not parse.
    BadUnsubArgs,
    /// The client sent `-ERR`.
    ClientError,
}

impl ParseError {
    /// The `-ERR` text nats-server sends for this error, if it sends one.
    pub fn text(self) -> Option<&'static str> {
        match self {
            ParseError::UnknownOp => Some("Unknown Protocol Operation"),
            ParseError::ControlLineTooLong => Some("maximum control line exceeded"),
            ParseError::PayloadTooBig => Some("Maximum Payload Violation"),
            ParseError::BadPubArgs
            | ParseError::BadSubArgs
            | ParseError::BadUnsubArgs
            | ParseError::ClientError => None,
        }
    }
}

/// Longest verb with its separator (`CONNECT `): the control-line limit counts
/// only the arguments after it.
const VERB_MAX: usize = 8;
const VERBS: [&[u8]; 10] = [
    b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK", b"-ERR",
];

#[derive(Debug)]
struct AwaitPayload {
    subject: Bytes,
    reply: Option<Bytes>,
    hdr_len: Option<usize>,
    total: usize,
}

/// Parser state for one connection.
#[derive(Debug)]
pub struct Parser {
    payload_max: usize,
    control_line_max: usize,
    awaiting: Option<AwaitPayload>,
    /// Bytes at the front of the buffer already searched for a line feed.
    scanned: usize,
}

impl Parser {
    pub fn new(payload_max: usize, control_line_max: usize) -> Self {
        Parser {
            payload_max,
            control_line_max,
            awaiting: None,
            scanned: 0,
        }
    }

    /// Holds no part of an op (no control line waiting for its payload, no
    /// line partly searched): with an empty buffer, a clean place to stop.
    pub fn idle(&self) -> bool {
        self.awaiting.is_none() && self.scanned == 0
    }

    /// Takes the next complete op off the front of `buf`; `Ok(None)` means more
    /// bytes are needed. After an error the connection must be closed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        if self.awaiting.is_some() {
            return self.take_payload(buf);
        }
        let Some(nl) = memchr::memchr(b'\n', &buf[self.scanned..]).map(|i| i + self.scanned) else {
            self.scanned = buf.len();
            if buf.len() > self.control_line_max + VERB_MAX {
                return Err(too_long_or_unknown(buf));
            }
            return Ok(None);
        };
        self.scanned = 0;
        if nl > self.control_line_max + VERB_MAX + 1 {
            return Err(too_long_or_unknown(buf));
        }
        let mut line = buf.split_to(nl + 1).freeze();
        let end = if nl > 0 && line[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        // Narrowing in place takes no reference count (a slice would).
        line.truncate(end);
        self.control_line(line, buf)
    }

    fn control_line(
        &mut self,
        line: Bytes,
        buf: &mut BytesMut,
    ) -> Result<Option<ClientOp>, ParseError> {
        let verb_end = line
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(line.len());
        let verb = &line[..verb_end];
        // PING and PONG ignore whatever follows them on the line.
        if starts_with_ignore_case(&line, b"PING") {
            return Ok(Some(ClientOp::Ping));
        }
        if starts_with_ignore_case(&line, b"PONG") {
            return Ok(Some(ClientOp::Pong));
        }
        if starts_with_ignore_case(&line, b"CONNECT") {
            let json_start = skip_blanks(&line, b"CONNECT".len());
            return Ok(Some(ClientOp::Connect(line.slice(json_start..))));
        }
        let rest_start = skip_blanks(&line, verb_end);
        if line.len() - rest_start > self.control_line_max {
            // Same answer whether or not the line feed has arrived yet.
            return Err(too_long_or_unknown(&line));
        }
        if rest_start == verb_end && !verb.eq_ignore_ascii_case(b"+OK") {
            // A verb with nothing after it is not an op nats-server knows.
            return Err(ParseError::UnknownOp);
        }
        // Each branch moves the line into its arguments (no reference count).
        if verb.eq_ignore_ascii_case(b"PUB") {
            self.start_pub(split_args(line, rest_start), false, buf)
        } else if verb.eq_ignore_ascii_case(b"HPUB") {
            self.start_pub(split_args(line, rest_start), true, buf)
        } else if verb.eq_ignore_ascii_case(b"SUB") {
            parse_sub(split_args(line, rest_start)).map(Some)
        } else if verb.eq_ignore_ascii_case(b"UNSUB") {
            parse_unsub(split_args(line, rest_start)).map(Some)
        } else if verb.eq_ignore_ascii_case(b"INFO") || verb.eq_ignore_ascii_case(b"+OK") {
            Ok(Some(ClientOp::Ignored))
        } else if verb.eq_ignore_ascii_case(b"-ERR") {
            Err(ParseError::ClientError)
        } else {
            Err(ParseError::UnknownOp)
        }
    }

    fn start_pub(
        &mut self,
        args: Args,
        headers: bool,
        buf: &mut BytesMut,
    ) -> Result<Option<ClientOp>, ParseError> {
        let sizes = if headers { 2 } else { 1 };
        if args.count < 1 + sizes || args.count > 2 + sizes {
            return Err(ParseError::BadPubArgs);
        }
        let names = args.count - sizes;
        let total = parse_size(args.get(args.count - 1)).ok_or(ParseError::BadPubArgs)?;
        let hdr_len = if headers {
            let h = parse_size(args.get(names)).ok_or(ParseError::BadPubArgs)?;
            if h > total {
                return Err(ParseError::BadPubArgs);
            }
            // An empty header block is delivered as a plain MSG.
            (h > 0).then_some(h)
        } else {
            None
        };
        if total > self.payload_max {
            return Err(ParseError::PayloadTooBig);
        }
        let reply = (names == 2).then(|| args.slice(1));
        let subject = args.into_item(0);
        self.awaiting = Some(AwaitPayload {
            subject,
            reply,
            hdr_len,
            total,
        });
        self.take_payload(buf)
    }

    fn take_payload(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        let total = self.awaiting.as_ref().expect("awaiting payload").total;
        if buf.len() < total + 2 {
            return Ok(None);
        }
        if &buf[total..total + 2] != b"\r\n" {
            return Err(ParseError::UnknownOp);
        }
        let pending = self.awaiting.take().expect("awaiting payload");
        let msg = buf.split_to(total).freeze();
        buf.advance(2);
        Ok(Some(ClientOp::Pub(PubOp {
            subject: pending.subject,
            reply: pending.reply,
            hdr_len: pending.hdr_len,
            msg,
        })))
    }
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Error for an over-long line: over the limit if it starts with a verb we know,
/// else an unknown op (nats-server reads the verb first).
fn too_long_or_unknown(buf: &[u8]) -> ParseError {
    let verb_end = buf
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(buf.len());
    let verb = &buf[..verb_end];
    if VERBS.iter().any(|v| verb.eq_ignore_ascii_case(v))
        || starts_with_ignore_case(buf, b"CONNECT")
    {
        ParseError::ControlLineTooLong
    } else {
        ParseError::UnknownOp
    }
}

fn skip_blanks(line: &[u8], mut at: usize) -> usize {
    while at < line.len() && (line[at] == b' ' || line[at] == b'\t') {
        at += 1;
    }
    at
}

/// Up to four arguments of a control line (HPUB has the most), as ranges of
/// it, without allocating; `count` says how many were present, even past four.
/// Each `Bytes` sliced from the line is one more reference count on the read
/// buffer (an atomic operation): a PUB's subject is the line itself narrowed,
/// so only a reply is sliced.
struct Args {
    line: Bytes,
    items: [(usize, usize); 4],
    count: usize,
}

impl Args {
    fn get(&self, i: usize) -> &[u8] {
        let (start, end) = self.items[i];
        &self.line[start..end]
    }

    fn slice(&self, i: usize) -> Bytes {
        let (start, end) = self.items[i];
        self.line.slice(start..end)
    }

    /// Argument `i` made of the line itself (the others are left unusable).
    fn into_item(mut self, i: usize) -> Bytes {
        let (start, end) = self.items[i];
        self.line.truncate(end);
        self.line.advance(start);
        self.line
    }
}

fn split_args(line: Bytes, start: usize) -> Args {
    let mut items = [(0, 0); 4];
    let mut count = 0;
    let mut at = start;
    while at < line.len() {
        // memchr2 scans a word at a time: subjects and inboxes are long.
        let end = memchr::memchr2(b' ', b'\t', &line[at..]).map_or(line.len(), |i| i + at);
        if count < items.len() {
            items[count] = (at, end);
        }
        count += 1;
        at = skip_blanks(&line, end);
    }
    Args { line, items, count }
}

/// A decimal size: digits only, no sign, no overflow.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: usize = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

/// A subscription keeps its subject, queue and sid for its whole life, on
/// every shard: copies, as a slice would keep the whole read buffer it came in.
fn parse_sub(args: Args) -> Result<ClientOp, ParseError> {
    let own = |i| Bytes::copy_from_slice(args.get(i));
    match args.count {
        2 => Ok(ClientOp::Sub {
            subject: own(0),
            queue: None,
            sid: own(1),
        }),
        3 => Ok(ClientOp::Sub {
            subject: own(0),
            queue: Some(own(1)),
            sid: own(2),
        }),
        _ => Err(ParseError::BadSubArgs),
    }
}

fn parse_unsub(args: Args) -> Result<ClientOp, ParseError> {
    match args.count {
        1 => Ok(ClientOp::Unsub {
            sid: args.into_item(0),
            max: None,
        }),
        // A max that is not a positive number unsubscribes at once (as 0 does).
        2 => {
            let max = Some(parse_size(args.get(1)).unwrap_or(0) as u64);
            Ok(ClientOp::Unsub {
                sid: args.into_item(0),
                max,
            })
        }
        _ => Err(ParseError::BadUnsubArgs),
    }
}

#[cfg(test)]
mod tests;
