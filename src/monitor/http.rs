//! HTTP/1.1 for the monitoring port: requests parsed with `httparse`, one at a
//! time per connection (keep-alive), answers with a length.
//!
//! Bounds: a request head of at most `HEAD_MAX` bytes and a body of at most
//! `BODY_MAX` (monitoring reads none; it is skipped); a connection idle for
//! `IDLE_TIMEOUT` is closed.

use std::time::Duration;

use glommio::net::TcpStream;

const HEAD_MAX: usize = 16 * 1024;
const BODY_MAX: usize = 64 * 1024;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const HEADERS_MAX: usize = 64;

/// A request: method, path (without the query) and query pairs, decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The client asked to close after the answer (or spoke HTTP/1.0).
    pub close: bool,
}

impl Request {
    /// The first value given for query parameter `name` (as nats-server's
    /// `r.URL.Query().Get`); None when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Access-Control-Allow-Origin: *`, as nats-server sends with JSON.
    pub cors: bool,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            cors: true,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            cors: false,
        }
    }

    pub fn html(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            cors: false,
        }
    }

    fn encode(&self, head_only: bool, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 200);
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status).as_bytes());
        if self.cors {
            out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
        }
        out.extend_from_slice(format!("Content-Type: {}\r\n", self.content_type).as_bytes());
        if self.status == 404 {
            out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        }
        out.extend_from_slice(format!("Date: {}\r\n", http_date()).as_bytes());
        out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Parses a request head from `buf`: the request and the head's length, or
/// None when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize, usize)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed HTTP request"),
    };
    let mut close = req.version == Some(0);
    let mut body = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("bad Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked request bodies are not accepted");
        }
    }
    if body > BODY_MAX {
        return Err("request body too large");
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: req.method.unwrap_or("GET").to_string(),
        path: percent_decode(path),
        query: query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
        close,
    };
    Ok(Some((request, len, body)))
}

/// `%XX` and `+` decoding of a URL part (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP connection's bytes: plaintext, or TLS (HTTPS monitoring).
struct Link {
    stream: std::cell::RefCell<TcpStream>,
    tls: Option<rustls::ServerConnection>,
    raw: bytes::BytesMut,
    plain: bytes::BytesMut,
}

impl Link {
    /// Appends what arrives to `buf`; false when the connection is done.
    async fn read(&mut self, buf: &mut Vec<u8>) -> bool {
        if !self.plain.is_empty() {
            buf.extend_from_slice(&self.plain.split());
            return true;
        }
        let target = if self.tls.is_some() {
            &mut self.raw
        } else {
            &mut self.plain
        };
        target.clear();
        target.reserve(4096);
        if !matches!(crate::net::io::read_into(&self.stream, target).await, Ok(n) if n > 0) {
            return false;
        }
        if let Some(tls) = &mut self.tls {
            if crate::tls::decrypt(tls, &self.raw, &mut self.plain).is_err() {
                return false;
            }
        }
        buf.extend_from_slice(&self.plain.split());
        true
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        let sealed;
        let bytes = match &mut self.tls {
            None => bytes,
            Some(tls) => {
                let mut out = Vec::with_capacity(bytes.len() + 64);
                if crate::tls::encrypt(tls, bytes, &mut out).is_err() {
                    return false;
                }
                sealed = out;
                &sealed
            }
        };
        crate::net::io::write_all(&self.stream, bytes).await.is_ok()
    }
}

/// Serves requests on one connection until it closes, idles out or sends
/// something that is not HTTP; with `tls`, after a TLS handshake (HTTPS).
/// `answer` makes each response.
pub async fn serve<F, Fut>(stream: TcpStream, tls: Option<&crate::tls::Tls>, answer: F)
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let mut link = Link {
        stream: std::cell::RefCell::new(stream),
        tls: None,
        raw: bytes::BytesMut::new(),
        plain: bytes::BytesMut::new(),
    };
    if let Some(t) = tls {
        let Ok(mut session) = t.session() else { return };
        let shake =
            crate::net::io::tls_handshake(&link.stream, &mut session, &mut link.plain, true);
        let timeout = async {
            glommio::timer::sleep(t.timeout).await;
            Err("timeout".to_string())
        };
        if futures_lite::future::or(shake, timeout).await.is_err() {
            return;
        }
        link.tls = Some(session);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let (req, head, body) = loop {
            match parse(&buf) {
                Ok(Some(r)) => break r,
                Ok(None) if buf.len() >= HEAD_MAX => {
                    let r = Response::text(431, "request head too large");
                    link.write(&r.encode(false, true)).await;
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    let r = Response::text(400, e);
                    link.write(&r.encode(false, true)).await;
                    return;
                }
            }
            if !link.read(&mut buf).await {
                return;
            }
        };
        // Skip the body (monitoring takes none).
        while buf.len() < head + body {
            if !link.read(&mut buf).await {
                return;
            }
        }
        buf.drain(..head + body);
        let close = req.close;
        let head_only = req.method == "HEAD";
        let resp = answer(req).await;
        if !link.write(&resp.encode(head_only, close)).await || close {
            return;
        }
    }
}

/// The current time as HTTP's `Date` header has it (RFC 7231, GMT).
fn http_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::log::civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_query_and_keep_alive() {
        let raw = b"GET /connz?subs=1&sort=bytes_to&x=%2Ffoo+bar HTTP/1.1\r\nHost: a\r\n\r\nGET";
        let (r, len, body) = parse(raw).unwrap().unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/connz"));
        assert_eq!(r.get("subs"), Some("1"));
        assert_eq!(r.get("sort"), Some("bytes_to"));
        assert_eq!(r.get("x"), Some("/foo bar"));
        assert_eq!(r.get("nope"), None);
        assert!(!r.close);
        assert_eq!((len, body), (raw.len() - 3, 0));
        assert_eq!(parse(b"GET /varz HTTP/1.1\r\nHost:").unwrap(), None);
        let (r, _, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(r.close);
        let (r, _, body) = parse(b"POST /varz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!((r.method.as_str(), body), ("POST", 3));
        assert!(parse(b"\x16\x03\x01garbage\r\n\r\n").is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn responses_carry_length_type_and_date() {
        let r = Response::json(200, b"{}".to_vec()).encode(false, false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let date = text
            .split("Date: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        let r = Response::text(404, "404 page not found\n").encode(true, true);
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
