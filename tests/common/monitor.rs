//! The monitoring port through HTTP, as an operator's tools read it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::Server;

/// The monitoring port a server logged ("Starting http monitor on h:p").
pub fn monitor_port(s: &Server) -> u16 {
    let line = s
        .startup_log
        .iter()
        .find_map(|l| l.split("Starting http monitor on ").nth(1))
        .expect("monitoring announced before the client port");
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// One HTTP request: (status, headers, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to monitoring");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // Go may send a chunked body; ours has a length.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn get(port: u16, path: &str) -> Value {
    let (status, _, body) = http(port, "GET", path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}
