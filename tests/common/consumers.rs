//! Helpers shared by the consumer test files (js_consumer_api, js_pull,
//! js_acks, js_push, js_retention, js_consumer_restart).

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, AckPolicy, PullConsumer},
    stream, Context, Message,
};
use futures::StreamExt;
use serde_json::Value;

use super::{Raw, Server};

pub struct Env {
    pub server: Server,
    pub client: async_nats::Client,
    pub js: Context,
    pub _dir: tempfile::TempDir,
}

pub async fn env(shards: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(shards, dir.path(), &[]);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    Env {
        server,
        client,
        js,
        _dir: dir,
    }
}

pub fn stream_cfg(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub async fn make_stream(js: &Context, name: &str, subjects: &[&str]) -> stream::Stream {
    js.create_stream(stream_cfg(name, subjects)).await.unwrap()
}

/// Publishes and waits for the pub ack; returns the stream sequence.
pub async fn publish(js: &Context, subject: &str, payload: impl Into<bytes::Bytes>) -> u64 {
    js.publish(subject.to_string(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

pub fn durable(name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    }
}

/// Drains a pull batch (ends on the server's 404/408 or a full batch); panics on a
/// status error or when the server never ends it.
pub async fn drain(batch: pull::Batch) -> Vec<Message> {
    tokio::time::timeout(Duration::from_secs(10), batch.map(|m| m.unwrap()).collect())
        .await
        .expect("the pull never ended: no 404/408 from the server")
}

/// `fetch` (no_wait) of up to `n` messages.
pub async fn fetch(c: &PullConsumer, n: usize) -> Vec<Message> {
    drain(c.fetch().max_messages(n).messages().await.unwrap()).await
}

/// A waiting pull of up to `n` messages that expires after `expires`.
pub async fn batch(c: &PullConsumer, n: usize, expires: Duration) -> Vec<Message> {
    drain(
        c.batch()
            .max_messages(n)
            .expires(expires)
            .messages()
            .await
            .unwrap(),
    )
    .await
}

pub fn sseq(m: &Message) -> u64 {
    m.info().unwrap().stream_sequence
}

pub fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(sseq).collect()
}

pub fn deliveries(m: &Message) -> i64 {
    m.info().unwrap().delivered
}

/// (consumer_seq, stream_seq)
pub fn pos(s: &consumer::SequenceInfo) -> (u64, u64) {
    (s.consumer_sequence, s.stream_sequence)
}

pub async fn info(c: &PullConsumer) -> consumer::Info {
    c.get_info().await.unwrap()
}

/// Polls consumer info until `ok` holds (plain acks are not confirmed, so their effect
/// shows up a moment later) and returns the last info for exact assertions.
pub async fn info_when(c: &PullConsumer, ok: impl Fn(&consumer::Info) -> bool) -> consumer::Info {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let i = info(c).await;
        if ok(&i) || Instant::now() > deadline {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn stream_state(js: &Context, name: &str) -> stream::State {
    js.get_stream(name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
}

/// Polls stream state until `ok` holds (retention removes messages after acks).
pub async fn state_when(
    js: &Context,
    name: &str,
    ok: impl Fn(&stream::State) -> bool,
) -> stream::State {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let s = stream_state(js, name).await;
        if ok(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `$JS.API.<subject>` request with a JSON body; the JSON answer.
pub async fn api(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let body = if body.is_null() {
        bytes::Bytes::new()
    } else {
        body.to_string().into()
    };
    let reply = client
        .request(format!("$JS.API.{subject}"), body)
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// The `err_code` of an API answer (0 when it is not an error).
pub fn err_code(v: &Value) -> u64 {
    v["error"]["err_code"].as_u64().unwrap_or(0)
}

pub async fn next_within<S>(sub: &mut S, d: Duration) -> Option<S::Item>
where
    S: futures::Stream + Unpin,
{
    tokio::time::timeout(d, sub.next()).await.ok().flatten()
}

/// Reads one MSG/HMSG: (subject, reply, header block, payload).
pub fn read_full(raw: &mut Raw) -> (String, Option<String>, String, Vec<u8>) {
    loop {
        let line = raw.read_line();
        assert!(!line.is_empty(), "connection closed");
        let p: Vec<&str> = line.trim_end().split(' ').collect();
        match p[0] {
            "MSG" => {
                let n: usize = p[p.len() - 1].parse().unwrap();
                let data = raw.read_exact(n + 2);
                let reply = (p.len() == 5).then(|| p[3].to_string());
                return (p[1].to_string(), reply, String::new(), data[..n].to_vec());
            }
            "HMSG" => {
                let total: usize = p[p.len() - 1].parse().unwrap();
                let hdr: usize = p[p.len() - 2].parse().unwrap();
                let data = raw.read_exact(total + 2);
                let reply = (p.len() == 6).then(|| p[3].to_string());
                let h = String::from_utf8(data[..hdr].to_vec()).unwrap();
                return (p[1].to_string(), reply, h, data[hdr..total].to_vec());
            }
            "PING" => raw.send(b"PONG\r\n"),
            _ => {}
        }
    }
}

pub fn raw_json(raw: &mut Raw, subject: &str, body: &str) -> Value {
    let (_, b) = raw.request(subject, None, body.as_bytes());
    serde_json::from_slice(&b).unwrap()
}

/// A raw client with a stream `O` (`o.>`) holding `n` messages on `o.a`, 16 bytes each.
pub fn raw_stream(n: usize) -> (Server, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut r = server.raw();
    r.setup_requests();
    raw_json(
        &mut r,
        "$JS.API.STREAM.CREATE.O",
        r#"{"name":"O","subjects":["o.>"],"max_consumers":3}"#,
    );
    for i in 0..n {
        r.request("o.a", None, format!("message-{i:08}").as_bytes());
    }
    (server, r, dir)
}

pub fn pull_raw(r: &mut Raw, consumer: &str, reply: &str, body: &str) {
    r.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.O.{consumer} {reply} {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    );
}
