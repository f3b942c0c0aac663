//! The client side of the protocol, for the load generator: a parser for what a
//! server sends (MSG, HMSG, PING, PONG, +OK, -ERR, INFO) and a glommio connection
//! split into a reader and a writer that may run in separate tasks.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use glommio::net::TcpStream;

/// One op from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Msg {
        subject: Bytes,
        reply: Option<Bytes>,
        hdr_len: usize,
        msg: Bytes,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
    Info(Bytes),
}

/// Takes the next complete op off `buf`; `Ok(None)` = need more bytes.
pub fn parse(buf: &mut BytesMut) -> Result<Option<ServerOp>, String> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > 64 * 1024 {
            return Err("server sent an over-long line".into());
        }
        return Ok(None);
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..end];
    let (headers, args_at) = if line.starts_with(b"MSG ") {
        (false, 4)
    } else if line.starts_with(b"HMSG ") {
        (true, 5)
    } else {
        let op = if line.starts_with(b"PING") {
            ServerOp::Ping
        } else if line.starts_with(b"PONG") {
            ServerOp::Pong
        } else if line.starts_with(b"+OK") {
            ServerOp::Ok
        } else if line.starts_with(b"-ERR") {
            ServerOp::Err(
                String::from_utf8_lossy(&line[4..])
                    .trim()
                    .trim_matches('\'')
                    .to_string(),
            )
        } else if line.starts_with(b"INFO") {
            let info = Bytes::copy_from_slice(&line[4..]);
            buf.advance(nl + 1);
            return Ok(Some(ServerOp::Info(info)));
        } else {
            return Err(format!(
                "unexpected from server: {:?}",
                String::from_utf8_lossy(line)
            ));
        };
        buf.advance(nl + 1);
        return Ok(Some(op));
    };
    // Once per message: argument ranges in a fixed array, no allocation.
    let mut ranges = [(0usize, 0usize); 6];
    let mut count = 0;
    let mut start = args_at;
    for end in memchr::memchr_iter(b' ', &line[args_at..])
        .map(|i| args_at + i)
        .chain(std::iter::once(line.len()))
    {
        if end > start {
            if count < ranges.len() {
                ranges[count] = (start, end);
            }
            count += 1;
        }
        start = end + 1;
    }
    let ranges = &ranges[..count.min(ranges.len())];
    let args: [&[u8]; 6] =
        std::array::from_fn(|i| ranges.get(i).map_or(&b""[..], |r| &line[r.0..r.1]));
    let args = &args[..ranges.len()];
    let number = |a: &[u8]| -> Result<usize, String> {
        std::str::from_utf8(a)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "bad size from server".to_string())
    };
    let sizes = if headers { 2 } else { 1 };
    if count < 2 + sizes || count > 3 + sizes {
        return Err(format!("bad MSG line: {:?}", String::from_utf8_lossy(line)));
    }
    let total = number(args[args.len() - 1])?;
    let hdr_len = if headers {
        number(args[args.len() - 2])?
    } else {
        0
    };
    if buf.len() < nl + 1 + total + 2 {
        return Ok(None);
    }
    // Subject and reply are slices of the line, not copies.
    let has_reply = count == 3 + sizes;
    let (subject_at, reply_at) = (ranges[0], ranges[2]);
    let line = buf.split_to(nl + 1).freeze();
    let subject = line.slice(subject_at.0..subject_at.1);
    let reply = has_reply.then(|| line.slice(reply_at.0..reply_at.1));
    let msg = buf.split_to(total).freeze();
    buf.advance(2);
    Ok(Some(ServerOp::Msg {
        subject,
        reply,
        hdr_len,
        msg,
    }))
}

/// Appends `PUB <subject> [reply] <len>\r\n<payload>\r\n`.
pub fn encode_pub(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r);
        out.push(b' ');
    }
    crate::protocol::ops::push_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HPUB <subject> <reply> <hdr len> <total>\r\n<hdr><payload>\r\n`.
pub fn encode_hpub(out: &mut Vec<u8>, subject: &[u8], reply: &[u8], hdr: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(reply);
    out.push(b' ');
    crate::protocol::ops::push_decimal(out, hdr.len() as u64);
    out.push(b' ');
    crate::protocol::ops::push_decimal(out, (hdr.len() + payload.len()) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(hdr);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The status of a header block: `NATS/1.0 408 Request Timeout` gives
/// `(408, "Request Timeout")`; an ordinary block (`NATS/1.0` alone) gives `None`.
pub fn status(hdr: &[u8]) -> Option<(u16, &str)> {
    let end = memchr::memmem::find(hdr, b"\r\n").unwrap_or(hdr.len());
    let line = std::str::from_utf8(&hdr[..end]).ok()?;
    let rest = line.strip_prefix("NATS/1.0 ")?.trim_start();
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
    Some((code.parse().ok()?, rest[3..].trim()))
}

/// The value of header `name` (matched case-insensitively) in a header block.
pub fn header<'a>(hdr: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(hdr).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A connection's TLS session, shared by its halves (`tls://` servers).
type Session = Option<Rc<RefCell<rustls::ClientConnection>>>;

/// The read half of a connection.
pub struct Reader {
    stream: Rc<RefCell<TcpStream>>,
    tls: Session,
    /// Ciphertext read, before decryption (TLS only).
    raw: BytesMut,
    buf: BytesMut,
    /// Server PINGs seen; the owner answers them with PONG on its writer.
    pub pings: u64,
}

/// The write half of a connection.
#[derive(Clone)]
pub struct Writer {
    stream: Rc<RefCell<TcpStream>>,
    tls: Session,
}

/// Where the harness puts a connection on a sharded jetcore (`--placement`).
/// jetcore numbers connections `client_id = counter × shards + shard`, so a
/// client reconnects until its id names the shard it wants. nats-server has
/// no shards: any connection is on its one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The server's `--shards`.
    pub shards: usize,
    /// Publishers and requesters on another shard than subscribers,
    /// responders and the stream (a fresh server's first stream is on shard
    /// 0); otherwise everything on shard 0.
    pub cross: bool,
}

impl Placement {
    /// The shard for a connection on the publishing side (`publisher`) or
    /// the receiving side.
    pub fn shard(&self, publisher: bool) -> usize {
        if publisher && self.cross {
            1 % self.shards
        } else {
            0
        }
    }
}

/// Reconnections tried to land on a shard before giving up (the kernel
/// spreads connections over the shards' listeners; 1/shards land each try).
const PLACE_TRIES: usize = 400;

/// `connect`, retried until the connection sits on `shard` of `shards`
/// (jetcore's `client_id` says where it landed); `None`: wherever it lands.
pub async fn connect_on(
    server: &str,
    name: &str,
    on: Option<(usize, usize)>,
) -> Result<(Reader, Writer), String> {
    let Some((shards, shard)) = on else {
        return connect(server, name).await.map(|(r, w, _)| (r, w));
    };
    for _ in 0..PLACE_TRIES {
        let (reader, writer, cid) = connect(server, name).await?;
        if cid.is_none_or(|cid| cid as usize % shards == shard) {
            return Ok((reader, writer));
        }
        // Dropping both halves closes the socket.
        drop((reader, writer));
    }
    Err(format!(
        "no connection landed on shard {shard} of {shards} in {PLACE_TRIES} tries \
         (is --shards the server's?)"
    ))
}

/// Connects, reads INFO, sends CONNECT and waits for the PONG of a PING, so the
/// server has registered the connection before the run starts. Also returns
/// the INFO's `client_id` (jetcore's says which shard took the connection).
async fn connect(server: &str, name: &str) -> Result<(Reader, Writer, Option<u64>), String> {
    // `user:pass@host:port` or `token@host:port`, as the nats CLI takes them.
    let (creds, addr) = match server.rsplit_once('@') {
        Some((c, a)) => (Some(c), a),
        None => (None, server),
    };
    let auth = match creds.map(|c| c.split_once(':')) {
        None => String::new(),
        Some(Some((u, p))) => format!(
            ",\"user\":{},\"pass\":{}",
            serde_json::Value::from(u),
            serde_json::Value::from(p)
        ),
        Some(None) => format!(
            ",\"auth_token\":{}",
            serde_json::Value::from(creds.unwrap_or(""))
        ),
    };
    let (tls, addr) = match addr.strip_prefix("tls://") {
        Some(a) => (true, a),
        None => (false, addr),
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(RefCell::new(stream));
    let mut reader = Reader {
        stream: stream.clone(),
        tls: None,
        raw: BytesMut::new(),
        buf: BytesMut::with_capacity(256 * 1024),
        pings: 0,
    };
    let client_id = match reader.next().await? {
        ServerOp::Info(info) => serde_json::from_slice::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v["client_id"].as_u64()),
        other => return Err(format!("expected INFO from {addr}, got {other:?}")),
    };
    let session = if tls {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let s = crate::bench::tls::handshake(&stream, host).await?;
        Some(Rc::new(RefCell::new(s)))
    } else {
        None
    };
    reader.tls = session.clone();
    let writer = Writer {
        stream,
        tls: session,
    };
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1,\"name\":\"{name}\",\"lang\":\"rust\",\"version\":\"jetcore-bench\"{auth}}}\r\nPING\r\n"
    );
    writer.write_all(connect.as_bytes()).await?;
    reader.until_pong(&writer).await?;
    Ok((reader, writer, client_id))
}

impl Reader {
    /// The next op, reading as needed. Errors when the server closes or sends -ERR.
    pub async fn next(&mut self) -> Result<ServerOp, String> {
        loop {
            if let Some(op) = parse(&mut self.buf)? {
                if let ServerOp::Err(e) = op {
                    return Err(format!("server error: {e}"));
                }
                return Ok(op);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let target = if self.tls.is_some() {
                self.raw.clear();
                self.raw.reserve(256 * 1024);
                &mut self.raw
            } else {
                &mut self.buf
            };
            let n = crate::net::io::read_into(&self.stream, target)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            if let Some(tls) = &self.tls {
                crate::tls::decrypt(&mut tls.borrow_mut(), &self.raw, &mut self.buf)
                    .map_err(|e| format!("TLS: {e}"))?;
            }
        }
    }

    /// The next op already buffered, without reading from the socket.
    pub fn try_next(&mut self) -> Result<Option<ServerOp>, String> {
        match parse(&mut self.buf)? {
            Some(ServerOp::Err(e)) => Err(format!("server error: {e}")),
            other => Ok(other),
        }
    }

    /// Reads until PONG, answering server PINGs; messages in between are dropped.
    pub async fn until_pong(&mut self, writer: &Writer) -> Result<(), String> {
        loop {
            match self.next().await? {
                ServerOp::Pong => return Ok(()),
                ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
                _ => {}
            }
        }
    }
}

impl Writer {
    pub async fn write_all(&self, bytes: &[u8]) -> Result<(), String> {
        let sealed;
        let bytes = match &self.tls {
            None => bytes,
            Some(tls) => {
                let mut out = Vec::with_capacity(bytes.len() + 64);
                crate::tls::encrypt(&mut tls.borrow_mut(), bytes, &mut out)
                    .map_err(|e| format!("TLS: {e}"))?;
                sealed = out;
                &sealed
            }
        };
        crate::net::io::write_all(&self.stream, bytes)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(input: &[u8]) -> Vec<ServerOp> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(op) = parse(&mut buf).unwrap() {
            out.push(op);
        }
        out
    }

    #[test]
    fn parses_server_ops_and_waits_for_whole_messages() {
        let got = ops(b"INFO {}\r\nMSG a 1 2\r\nhi\r\nHMSG b 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n+OK\r\nMSG c 1 5\r\nhe");
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[1],
            ServerOp::Msg {
                subject: "a".into(),
                reply: None,
                hdr_len: 0,
                msg: "hi".into()
            }
        );
        assert_eq!(
            got[2],
            ServerOp::Msg {
                subject: "b".into(),
                reply: Some("r".into()),
                hdr_len: 12,
                msg: "NATS/1.0\r\n\r\nhi".into()
            }
        );
        assert_eq!(got[3], ServerOp::Ping);
    }

    #[test]
    fn status_lines_and_headers() {
        let timeout = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 6\r\nnats-pending-bytes: 0\r\n\r\n";
        assert_eq!(status(timeout), Some((408, "Request Timeout")));
        assert_eq!(header(timeout, "Nats-Pending-Messages"), Some("6"));
        assert_eq!(header(timeout, "Nats-Pending-Bytes"), Some("0"));
        assert_eq!(header(timeout, "Nats-Last-Consumer"), None);
        assert_eq!(status(b"NATS/1.0 503\r\n\r\n"), Some((503, "")));
        assert_eq!(
            status(b"NATS/1.0 100 FlowControl Request\r\n\r\n"),
            Some((100, "FlowControl Request"))
        );
        // Stored headers are not a status, and neither is garbage.
        let stored = b"NATS/1.0\r\nX-Foo: bar\r\n\r\n";
        assert_eq!(status(stored), None);
        assert_eq!(header(stored, "x-foo"), Some("bar"));
        assert_eq!(status(b"NATS/1.0 +12 x\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn encodes_pub() {
        let mut out = Vec::new();
        encode_pub(&mut out, b"s", Some(b"r"), b"xyz");
        assert_eq!(out, b"PUB s r 3\r\nxyz\r\n");
    }
}
