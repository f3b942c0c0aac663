//! Helpers shared by the source and mirror test files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::consumers::api;

/// A stream's info.
pub async fn info(c: &async_nats::Client, stream: &str) -> Value {
    api(c, &format!("STREAM.INFO.{stream}"), Value::Null).await
}

/// Creates a stream from a JSON config; panics on an error answer.
pub async fn create(c: &async_nats::Client, cfg: Value) -> Value {
    let name = cfg["name"].as_str().unwrap().to_string();
    let r = api(c, &format!("STREAM.CREATE.{name}"), cfg).await;
    assert!(r["error"].is_null(), "create {name}: {r}");
    r
}

/// Waits until `ok` holds for the stream's info (10 s at most); the info.
pub async fn info_when(c: &async_nats::Client, stream: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let i = info(c, stream).await;
        if ok(&i) {
            return i;
        }
        assert!(Instant::now() < deadline, "{stream} never got there: {i}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the stream holds `n` messages.
pub async fn count_when(c: &async_nats::Client, stream: &str, n: u64) -> Value {
    info_when(c, stream, |i| i["state"]["messages"].as_u64() == Some(n)).await
}

/// One stored message, as MSG.GET answers it (None: there is none).
pub async fn get(c: &async_nats::Client, stream: &str, seq: u64) -> Option<Value> {
    let r = api(
        c,
        &format!("STREAM.MSG.GET.{stream}"),
        json!({ "seq": seq }),
    )
    .await;
    r.get("message").cloned()
}

/// Every stored message of a stream, by sequence.
pub async fn all(c: &async_nats::Client, stream: &str) -> BTreeMap<u64, Value> {
    let i = info(c, stream).await;
    let (first, last) = (
        i["state"]["first_seq"].as_u64().unwrap(),
        i["state"]["last_seq"].as_u64().unwrap(),
    );
    let mut out = BTreeMap::new();
    for seq in first.max(1)..=last {
        if let Some(m) = get(c, stream, seq).await {
            out.insert(seq, m);
        }
    }
    out
}

/// A stored message's header block, decoded.
pub fn headers(m: &Value) -> String {
    let Some(h) = m["hdrs"].as_str() else {
        return String::new();
    };
    String::from_utf8(base64_decode(h)).unwrap()
}

/// The origin sequence a sourced message came from (`Nats-Stream-Source`).
pub fn origin_seq(m: &Value) -> u64 {
    let h = headers(m);
    let line = h
        .lines()
        .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
        .unwrap_or_else(|| panic!("no source header: {h:?}"));
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The origin sequences a sourcing stream's copies came from, sorted.
pub fn origin_seqs(copies: &BTreeMap<u64, Value>) -> Vec<u64> {
    let mut seqs: Vec<u64> = copies.values().map(origin_seq).collect();
    seqs.sort();
    seqs
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for b in s.bytes().filter(|b| *b != b'=') {
        let v = A.iter().position(|a| *a == b).unwrap() as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// Publishes `n` messages to `<prefix>.<i % spread>` (to `prefix` itself
/// when `spread` is 0), async, every ack awaited.
pub async fn publish_n(js: &async_nats::jetstream::Context, prefix: &str, n: usize, spread: usize) {
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let subject = match spread {
            0 => prefix.to_string(),
            s => format!("{prefix}.{}", i % s),
        };
        acks.push(js.publish(subject, format!("m{i}").into()).await.unwrap());
        if acks.len() >= 256 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
}
