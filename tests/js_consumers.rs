//! JetStream consumers end to end: async-nats for what users do, the raw protocol where
//! the bytes on the wire are the point (pull status messages, heartbeats, flow control).
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_consumers` runs this file
//! against it (see tests/common/mod.rs). Timings use short ack waits and expiries so
//! the file stays well under a minute.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, push, AckPolicy, DeliverPolicy, PullConsumer},
    stream::{self, RetentionPolicy},
    AckKind, Context, Message,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use common::{Raw, Server};

// ---------------------------------------------------------------------------------
// Helpers

struct Env {
    server: Server,
    client: async_nats::Client,
    js: Context,
    _dir: tempfile::TempDir,
}

async fn env(shards: usize) -> Env {
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

fn stream_cfg(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn make_stream(js: &Context, name: &str, subjects: &[&str]) -> stream::Stream {
    js.create_stream(stream_cfg(name, subjects)).await.unwrap()
}

/// Publishes and waits for the pub ack; returns the stream sequence.
async fn publish(js: &Context, subject: &str, payload: impl Into<bytes::Bytes>) -> u64 {
    js.publish(subject.to_string(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

fn durable(name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    }
}

/// Drains a pull batch (ends on the server's 404/408 or a full batch); panics on a
/// status error or when the server never ends it.
async fn drain(batch: pull::Batch) -> Vec<Message> {
    tokio::time::timeout(Duration::from_secs(10), batch.map(|m| m.unwrap()).collect())
        .await
        .expect("the pull never ended: no 404/408 from the server")
}

/// `fetch` (no_wait) of up to `n` messages.
async fn fetch(c: &PullConsumer, n: usize) -> Vec<Message> {
    drain(c.fetch().max_messages(n).messages().await.unwrap()).await
}

/// A waiting pull of up to `n` messages that expires after `expires`.
async fn batch(c: &PullConsumer, n: usize, expires: Duration) -> Vec<Message> {
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

fn sseq(m: &Message) -> u64 {
    m.info().unwrap().stream_sequence
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(sseq).collect()
}

fn deliveries(m: &Message) -> i64 {
    m.info().unwrap().delivered
}

/// (consumer_seq, stream_seq)
fn pos(s: &consumer::SequenceInfo) -> (u64, u64) {
    (s.consumer_sequence, s.stream_sequence)
}

async fn info(c: &PullConsumer) -> consumer::Info {
    c.get_info().await.unwrap()
}

/// Polls consumer info until `ok` holds (plain acks are not confirmed, so their effect
/// shows up a moment later) and returns the last info for exact assertions.
async fn info_when(c: &PullConsumer, ok: impl Fn(&consumer::Info) -> bool) -> consumer::Info {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let i = info(c).await;
        if ok(&i) || Instant::now() > deadline {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_state(js: &Context, name: &str) -> stream::State {
    js.get_stream(name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
}

/// Polls stream state until `ok` holds (retention removes messages after acks).
async fn state_when(
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
async fn api(client: &async_nats::Client, subject: &str, body: Value) -> Value {
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
fn err_code(v: &Value) -> u64 {
    v["error"]["err_code"].as_u64().unwrap_or(0)
}

async fn next_within<S>(sub: &mut S, d: Duration) -> Option<S::Item>
where
    S: futures::Stream + Unpin,
{
    tokio::time::timeout(d, sub.next()).await.ok().flatten()
}

// ---------------------------------------------------------------------------------
// Create, info, list, delete

#[tokio::test]
async fn create_info_list_and_delete_durable_and_ephemeral() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["s.>"]).await;
    for i in 0..3 {
        publish(&e.js, "s.a", format!("m{i}")).await;
    }
    let d = s.create_consumer(durable("D")).await.unwrap();
    let i = info(&d).await;
    assert_eq!((i.name.as_str(), i.stream_name.as_str()), ("D", "S"));
    assert_eq!(i.config.durable_name.as_deref(), Some("D"));
    assert_eq!(i.config.name.as_deref(), Some("D"));
    // Server defaults for an explicit-ack durable.
    assert_eq!(i.config.ack_policy, AckPolicy::Explicit);
    assert_eq!(i.config.ack_wait, Duration::from_secs(30));
    assert_eq!(i.config.max_deliver, -1);
    assert_eq!(i.config.max_waiting, 512);
    assert_eq!(i.config.max_ack_pending, 1000);
    assert_eq!(i.config.inactive_threshold, Duration::ZERO);
    assert_eq!(i.config.deliver_policy, DeliverPolicy::All);
    assert_eq!((pos(&i.delivered), pos(&i.ack_floor)), ((0, 0), (0, 0)));
    assert_eq!((i.num_pending, i.num_ack_pending, i.num_waiting), (3, 0, 0));
    assert_eq!(i.num_redelivered, 0);

    // An ephemeral gets a generated 8-character name and a 5 s inactive threshold.
    let eph = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let ei = eph.cached_info().clone();
    assert_eq!(ei.config.durable_name, None);
    assert_eq!(ei.name.len(), 8, "{}", ei.name);
    assert_eq!(ei.config.inactive_threshold, Duration::from_secs(5));
    assert_eq!(ei.num_pending, 3);

    let mut expected = vec!["D".to_string(), ei.name.clone()];
    expected.sort();
    // In no particular order (nats-server's come from a map).
    let mut names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    names.sort();
    assert_eq!(names, expected);
    let listed: Vec<consumer::Info> = s.consumers().try_collect().await.unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|i| i.name).collect();
    listed.sort();
    assert_eq!(listed, expected);
    assert_eq!(stream_state(&e.js, "S").await.consumer_count, 2);

    assert!(s.delete_consumer("D").await.unwrap().success);
    assert!(s.get_consumer::<pull::Config>("D").await.is_err());
    let v = api(&e.client, "CONSUMER.INFO.S.D", Value::Null).await;
    assert_eq!(
        (v["error"]["code"].as_u64(), err_code(&v)),
        (Some(404), 10014)
    );
    let v = api(&e.client, "CONSUMER.DELETE.S.D", Value::Null).await;
    assert_eq!(err_code(&v), 10014);
    let v = api(&e.client, "CONSUMER.INFO.NOPE.D", Value::Null).await;
    assert_eq!(err_code(&v), 10059, "unknown stream");
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names, vec![ei.name.clone()]);
    assert_eq!(stream_state(&e.js, "S").await.consumer_count, 1);
}

#[tokio::test]
async fn create_action_semantics_and_config_errors() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["p.>"]).await;
    let c = &e.client;
    let cfg = json!({"durable_name":"C","ack_policy":"explicit","description":"one"});
    let create = |cfg: Value, action: &str| json!({"stream_name":"S","config":cfg,"action":action});

    let first = api(c, "CONSUMER.CREATE.S.C", create(cfg.clone(), "create")).await;
    assert_eq!(err_code(&first), 0, "{first}");
    assert_eq!(
        first["type"],
        "io.nats.jetstream.api.v1.consumer_create_response"
    );
    // Creating an identical consumer again is fine and returns the same consumer.
    let again = api(c, "CONSUMER.CREATE.S.C", create(cfg.clone(), "create")).await;
    assert_eq!(err_code(&again), 0, "{again}");
    assert_eq!(again["created"], first["created"]);
    let mut two = cfg.clone();
    two["description"] = json!("two");
    let v = api(c, "CONSUMER.CREATE.S.C", create(two.clone(), "create")).await;
    assert_eq!(
        v["error"],
        json!({"code":400,"err_code":10148,"description":"consumer already exists"})
    );
    let mut x = cfg.clone();
    x["durable_name"] = json!("X");
    let v = api(c, "CONSUMER.CREATE.S.X", create(x, "update")).await;
    assert_eq!(
        v["error"],
        json!({"code":400,"err_code":10149,"description":"consumer does not exist"})
    );
    let v = api(c, "CONSUMER.CREATE.S.C", create(two, "update")).await;
    assert_eq!(v["config"]["description"], "two", "{v}");
    let mut three = cfg.clone();
    three["description"] = json!("three");
    let v = api(
        c,
        "CONSUMER.CREATE.S.C",
        json!({"stream_name":"S","config":three}),
    )
    .await;
    assert_eq!(v["config"]["description"], "three", "{v}");

    // The same rules through the client's strict create and update.
    let strict = s
        .create_consumer_strict(pull::Config {
            description: Some("four".into()),
            ..durable("C")
        })
        .await
        .unwrap_err();
    assert_eq!(
        strict.kind(),
        jetstream::stream::ConsumerCreateStrictErrorKind::AlreadyExists
    );
    let update = s.update_consumer(durable("Y")).await.unwrap_err();
    assert_eq!(
        update.kind(),
        jetstream::stream::ConsumerUpdateErrorKind::DoesNotExist
    );

    // Config and subject errors, each with nats-server's code.
    let cases: Vec<(&str, Value, u64)> = vec![
        ("CONSUMER.CREATE.S.C", create(cfg.clone(), "bogus"), 10025),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":cfg}),
            10017,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"T","config":{"name":"Y"}}),
            10056,
        ),
        (
            "CONSUMER.CREATE.S.Y.p.a",
            json!({"stream_name":"S","config":{"name":"Y","filter_subject":"p.b"}}),
            10131,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":{"name":"Y","filter_subject":"p.b","filter_subjects":["p.a"]}}),
            10136,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":{"name":"Y","filter_subjects":["p.>","p.a"]}}),
            10138,
        ),
        (
            "CONSUMER.CREATE.S.C",
            json!({"stream_name":"S","config":{"durable_name":"C","ack_policy":"none","description":"three"}}),
            10012,
        ),
        (
            "CONSUMER.CREATE.S",
            json!({"stream_name":"S","config":{"durable_name":"Q"}}),
            10020,
        ),
        (
            "CONSUMER.CREATE.S.H",
            json!({"stream_name":"S","config":{"name":"H","idle_heartbeat":1_000_000_000u64}}),
            10088,
        ),
        (
            "CONSUMER.CREATE.S.B",
            json!({"stream_name":"S","config":{"name":"B","ack_policy":"explicit","backoff":[1_000_000_000u64,2_000_000_000u64],"max_deliver":1}}),
            10116,
        ),
    ];
    for (subject, body, code) in cases {
        let v = api(c, subject, body.clone()).await;
        assert_eq!(err_code(&v), code, "{subject} {body}: {v}");
    }
    // max_deliver equal to the number of backoff steps is accepted.
    let v = api(
        c,
        "CONSUMER.CREATE.S.B",
        json!({"stream_name":"S","config":{"name":"B","ack_policy":"explicit","backoff":[1_000_000_000u64,2_000_000_000u64],"max_deliver":2}}),
    )
    .await;
    assert_eq!(err_code(&v), 0, "{v}");
    // The legacy durable subject works.
    let v = api(
        c,
        "CONSUMER.DURABLE.CREATE.S.L",
        json!({"stream_name":"S","config":{"durable_name":"L","ack_policy":"explicit"}}),
    )
    .await;
    assert_eq!(v["name"], "L", "{v}");
    // A config without ack_policy gets "none" (the JSON zero value), unlike the clients.
    let v = api(
        c,
        "CONSUMER.CREATE.S.Z",
        json!({"stream_name":"S","config":{"name":"Z"}}),
    )
    .await;
    assert_eq!(v["config"]["ack_policy"], "none", "{v}");
    assert_eq!(v["config"]["inactive_threshold"], 5_000_000_000u64, "{v}");
}

#[tokio::test]
async fn inactive_consumers_are_removed_after_the_threshold() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["s.>"]).await;
    publish(&e.js, "s.a", "x").await;
    let threshold = Duration::from_secs(1);
    let eph = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            inactive_threshold: threshold,
            ..Default::default()
        })
        .await
        .unwrap();
    let eph_name = eph.cached_info().name.clone();
    s.create_consumer(pull::Config {
        inactive_threshold: threshold,
        ..durable("D")
    })
    .await
    .unwrap();
    s.create_consumer(durable("KEEP")).await.unwrap();
    let created = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.consumer_info(&eph_name).await.is_ok());
    assert!(s.consumer_info("D").await.is_ok());
    // Info requests are not activity: polling does not keep them alive.
    loop {
        let gone = s.consumer_info(&eph_name).await.is_err() && s.consumer_info("D").await.is_err();
        if gone {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(4),
            "inactive consumers still there after 4 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.elapsed() >= threshold);
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names, vec!["KEEP".to_string()]);
}

// ---------------------------------------------------------------------------------
// Deliver policies and filters

#[tokio::test]
async fn deliver_policies_start_where_they_say() {
    let e = env(1).await;
    let s = make_stream(&e.js, "D", &["d.>"]).await;
    // seq 1 d.a, 2 d.b, 3 d.a, 4 d.b, 5 d.a
    for (i, subj) in ["d.a", "d.b", "d.a", "d.b", "d.a"].iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publish(&e.js, subj, format!("m{}", i + 1)).await;
    }
    let start_time = s.get_raw_message(3).await.unwrap().time;
    // (name, policy, num_pending at create, stream seqs delivered, start seq - 1)
    let policies = [
        ("ALL", DeliverPolicy::All, 5, vec![1, 2, 3, 4, 5], 0),
        ("LAST", DeliverPolicy::Last, 1, vec![5], 4),
        (
            "SEQ",
            DeliverPolicy::ByStartSequence { start_sequence: 3 },
            3,
            vec![3, 4, 5],
            2,
        ),
        (
            "TIME",
            DeliverPolicy::ByStartTime { start_time },
            3,
            vec![3, 4, 5],
            2,
        ),
        ("LPS", DeliverPolicy::LastPerSubject, 2, vec![4, 5], 3),
        ("NEW", DeliverPolicy::New, 0, vec![], 5),
    ];
    // last_per_subject needs a filter (10094 without one).
    let v = api(
        &e.client,
        "CONSUMER.CREATE.D.X",
        json!({"stream_name":"D","config":{"name":"X","deliver_policy":"last_per_subject"}}),
    )
    .await;
    assert_eq!(err_code(&v), 10094, "{v}");
    let mut consumers = Vec::new();
    for (name, policy, pending, _, before) in &policies {
        let filter = if *name == "LPS" { "d.*" } else { "" };
        let c = s
            .create_consumer(pull::Config {
                deliver_policy: *policy,
                filter_subject: filter.into(),
                ..durable(name)
            })
            .await
            .unwrap();
        let i = c.cached_info();
        assert_eq!(i.num_pending, *pending, "{name}");
        // A new consumer's positions sit just before its first message.
        assert_eq!(
            (pos(&i.delivered), pos(&i.ack_floor)),
            ((0, *before), (0, *before)),
            "{name}"
        );
        assert_eq!(c.cached_info().config.deliver_policy, *policy, "{name}");
        consumers.push(c);
    }
    for ((name, _, _, expected, before), c) in policies.iter().zip(&consumers) {
        let got = fetch(c, 10).await;
        assert_eq!(&seqs(&got), expected, "{name}");
        if let Some(first) = got.first() {
            assert_eq!(first.info().unwrap().consumer_sequence, 1, "{name}");
        }
        let i = info(c).await;
        let last = expected.last().copied().unwrap_or(*before);
        assert_eq!(pos(&i.delivered), (expected.len() as u64, last), "{name}");
        assert_eq!(pos(&i.ack_floor), (0, *before), "{name}");
        assert_eq!(i.num_pending, 0, "{name}");
    }
    // A new message reaches every consumer, including NEW.
    assert_eq!(publish(&e.js, "d.b", "m6").await, 6);
    for ((name, _, _, _, _), c) in policies.iter().zip(&consumers) {
        // nats-server updates num_pending a moment after the pub ack.
        let i = info_when(c, |i| i.num_pending == 1).await;
        assert_eq!(i.num_pending, 1, "{name}");
        assert_eq!(seqs(&fetch(c, 10).await), vec![6], "{name}");
    }
}

#[tokio::test]
async fn filter_subject_and_filter_subjects() {
    let e = env(1).await;
    let s = make_stream(&e.js, "F", &["f.>"]).await;
    // a, b, c three times: f.a = 1,4,7; f.b = 2,5,8; f.c = 3,6,9
    for _ in 0..3 {
        for subj in ["f.a", "f.b", "f.c"] {
            publish(&e.js, subj, subj).await;
        }
    }
    let a = s
        .create_consumer(pull::Config {
            filter_subject: "f.a".into(),
            ..durable("A")
        })
        .await
        .unwrap();
    assert_eq!(a.cached_info().num_pending, 3);
    let got = fetch(&a, 10).await;
    assert_eq!(seqs(&got), vec![1, 4, 7]);
    assert!(got.iter().all(|m| m.subject.as_str() == "f.a"));
    let ac = s
        .create_consumer(pull::Config {
            filter_subjects: vec!["f.a".into(), "f.c".into()],
            ..durable("AC")
        })
        .await
        .unwrap();
    assert_eq!(ac.cached_info().num_pending, 6);
    assert_eq!(
        ac.cached_info().config.filter_subjects,
        vec!["f.a".to_string(), "f.c".to_string()]
    );
    let got = fetch(&ac, 10).await;
    assert_eq!(seqs(&got), vec![1, 3, 4, 6, 7, 9]);
    let w = s
        .create_consumer(pull::Config {
            filter_subject: "f.*".into(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 8 },
            ..durable("W")
        })
        .await
        .unwrap();
    assert_eq!(w.cached_info().num_pending, 2);
    // New messages count only where they match.
    publish(&e.js, "f.b", "x").await; // 10
    publish(&e.js, "f.c", "x").await; // 11
    publish(&e.js, "f.d.deep", "x").await; // 12: matches none of the filters
    assert_eq!(info_when(&w, |i| i.num_pending == 4).await.num_pending, 4);
    assert_eq!(info_when(&ac, |i| i.num_pending == 1).await.num_pending, 1);
    assert_eq!(info(&a).await.num_pending, 0);
    assert_eq!(seqs(&fetch(&ac, 10).await), vec![11]);
    assert_eq!(seqs(&fetch(&w, 10).await), vec![8, 9, 10, 11]);
}

// ---------------------------------------------------------------------------------
// Pull

#[tokio::test]
async fn fetch_batch_max_bytes_expires_and_no_wait() {
    let e = env(1).await;
    let s = make_stream(&e.js, "P", &["p.>"]).await;
    for _ in 0..10 {
        publish(&e.js, "p.a", vec![b'x'; 100]).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    assert_eq!(seqs(&fetch(&c, 3).await), vec![1, 2, 3]);

    // max_bytes counts subject + reply + headers + payload (100 + 3 + ~39 here), so
    // 250 bytes hold one message; the next one ends the pull with a 409.
    let mut b = c
        .fetch()
        .max_messages(10)
        .max_bytes(250)
        .messages()
        .await
        .unwrap();
    let m = next_within(&mut b, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sseq(&m), 4);
    let err = next_within(&mut b, Duration::from_secs(5))
        .await
        .expect("a status after the byte limit")
        .unwrap_err();
    assert!(err.to_string().contains("409"), "{err}");
    assert!(next_within(&mut b, Duration::from_secs(1)).await.is_none());

    // A waiting pull takes what there is and ends when it expires (408).
    let t = Instant::now();
    let got = batch(&c, 10, Duration::from_millis(500)).await;
    assert_eq!(seqs(&got), vec![5, 6, 7, 8, 9, 10]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // no_wait with nothing pending ends at once (404).
    let t = Instant::now();
    assert!(fetch(&c, 5).await.is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
    // no_wait with fewer messages than asked: those, then the end.
    publish(&e.js, "p.a", "y").await;
    publish(&e.js, "p.a", "z").await;
    let t = Instant::now();
    assert_eq!(seqs(&fetch(&c, 5).await), vec![11, 12]);
    assert!(t.elapsed() < Duration::from_secs(1));
    // A waiting pull is served by a message published while it waits.
    let c2 = c.clone();
    let waiting = tokio::spawn(async move { seqs(&batch(&c2, 1, Duration::from_secs(3)).await) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(info(&c).await.num_waiting, 1);
    publish(&e.js, "p.a", "late").await;
    assert_eq!(waiting.await.unwrap(), vec![13]);
    let i = info(&c).await;
    assert_eq!((pos(&i.delivered), i.num_ack_pending), ((13, 13), 13));
}

/// Reads one MSG/HMSG: (subject, reply, header block, payload).
fn read_full(raw: &mut Raw) -> (String, Option<String>, String, Vec<u8>) {
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

fn raw_json(raw: &mut Raw, subject: &str, body: &str) -> Value {
    let (_, b) = raw.request(subject, None, body.as_bytes());
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn pull_status_messages_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut r = server.raw();
    r.setup_requests();
    raw_json(
        &mut r,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["p.>"]}"#,
    );
    for _ in 0..10 {
        r.request("p.a", None, &[b'x'; 100]);
    }
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_batch":20,"max_expires":2000000000,"max_bytes":1000}}"#,
    );
    assert_eq!(v["name"], "C", "{v}");
    r.send(b"SUB _P.> 90\r\n");
    r.flush();
    let pull = |r: &mut Raw, body: &str| {
        r.send(
            format!(
                "PUB $JS.API.CONSUMER.MSG.NEXT.S.C _P.x {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    };

    // A message carries its original subject and the v1 ack subject as reply.
    pull(&mut r, r#"{"batch":1,"no_wait":true}"#);
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str(), payload.len()),
        ("p.a", "", 100)
    );
    let reply = reply.unwrap();
    let t: Vec<&str> = reply.split('.').collect();
    assert_eq!(t.len(), 9, "{reply}");
    assert_eq!(
        (t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[8]),
        ("$JS", "ACK", "S", "C", "1", "1", "1", "9")
    );

    // max_bytes: one message fits, then 409 with what was left of the request.
    pull(&mut r, r#"{"batch":10,"max_bytes":250,"no_wait":true}"#);
    let (subject, reply, _, payload) = read_full(&mut r);
    let used = subject.len() + reply.unwrap().len() + payload.len();
    let (_, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        hdr,
        format!(
            "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 9\r\nNats-Pending-Bytes: {}\r\n\r\n",
            250 - used
        )
    );
    pull(&mut r, r#"{"batch":10,"max_bytes":50}"#);
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!((subject.as_str(), reply, payload.len()), ("_P.x", None, 0));
    assert_eq!(
        hdr,
        "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 10\r\nNats-Pending-Bytes: 50\r\n\r\n"
    );
    // Consumer limits on requests.
    for (body, status) in [
        (r#"{"batch":30}"#, "409 Exceeded MaxRequestBatch of 20"),
        (
            r#"{"batch":1,"expires":3000000000}"#,
            "409 Exceeded MaxRequestExpires of 2s",
        ),
        (
            r#"{"batch":1,"max_bytes":2000}"#,
            "409 Exceeded MaxRequestMaxBytes of 1000",
        ),
    ] {
        pull(&mut r, body);
        let (_, _, hdr, _) = read_full(&mut r);
        assert_eq!(hdr, format!("NATS/1.0 {status}\r\n\r\n"), "{body}");
    }
    // no_wait asking for more than there is: what there is, then a bare 404.
    pull(&mut r, r#"{"batch":20,"no_wait":true}"#);
    for seq in 3..=10 {
        let (_, reply, _, _) = read_full(&mut r);
        assert_eq!(reply.unwrap().split('.').nth(5).unwrap(), seq.to_string());
    }
    let (_, _, hdr, _) = read_full(&mut r);
    assert_eq!(hdr, "NATS/1.0 404 No Messages\r\n\r\n");
    pull(&mut r, r#"{"batch":1,"no_wait":true}"#);
    assert_eq!(read_full(&mut r).2, "NATS/1.0 404 No Messages\r\n\r\n");
    // Heartbeats while a request waits, then 408 with the unfilled part.
    let t = Instant::now();
    pull(
        &mut r,
        r#"{"batch":5,"expires":1000000000,"idle_heartbeat":300000000}"#,
    );
    let hb =
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 10\r\nNats-Last-Stream: 10\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(read_full(&mut r).2, hb);
    }
    assert_eq!(
        read_full(&mut r).2,
        "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 0\r\n\r\n"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // NEXT on a push consumer.
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.S.PUSH",
        r#"{"stream_name":"S","config":{"durable_name":"PUSH","deliver_subject":"nobody.listens","ack_policy":"explicit"}}"#,
    );
    r.send(b"PUB $JS.API.CONSUMER.MSG.NEXT.S.PUSH _P.y 11\r\n{\"batch\":1}\r\n");
    assert_eq!(
        read_full(&mut r).2,
        "NATS/1.0 409 Consumer is push based\r\n\r\n"
    );
    // A consumer deleted under a waiting request ends it with 409.
    pull(&mut r, r#"{"batch":5,"expires":2000000000}"#);
    r.flush();
    r.send(b"PUB $JS.API.CONSUMER.DELETE.S.C _P.del 0\r\n\r\n");
    let (subject, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str()),
        ("_P.x", "NATS/1.0 409 Consumer Deleted\r\n\r\n")
    );
    let (subject, _, _, body) = read_full(&mut r);
    assert_eq!(subject, "_P.del");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], true);
}

#[tokio::test]
async fn messages_consumes_a_long_run_in_order() {
    let e = env(1).await;
    let s = make_stream(&e.js, "L", &["l.>"]).await;
    for i in 0..250 {
        publish(&e.js, &format!("l.{}", i % 5), format!("{i}")).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    let mut msgs = c
        .stream()
        .max_messages_per_batch(50)
        .expires(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let js = e.js.clone();
    let more = tokio::spawn(async move {
        for i in 250..500 {
            publish(&js, &format!("l.{}", i % 5), format!("{i}")).await;
        }
    });
    for expected in 1..=500u64 {
        let m = next_within(&mut msgs, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("stalled before message {expected}"))
            .unwrap();
        let i = m.info().unwrap();
        assert_eq!(
            (i.stream_sequence, i.consumer_sequence, i.delivered),
            (expected, expected, 1)
        );
        assert_eq!(&m.payload[..], format!("{}", expected - 1).as_bytes());
        m.ack().await.unwrap();
    }
    more.await.unwrap();
    let i = info_when(&c, |i| i.ack_floor.stream_sequence == 500).await;
    assert_eq!(
        (pos(&i.delivered), pos(&i.ack_floor)),
        ((500, 500), (500, 500))
    );
    assert_eq!(
        (i.num_ack_pending, i.num_pending, i.num_redelivered),
        (0, 0, 0)
    );
}

// ---------------------------------------------------------------------------------
// Acks

#[tokio::test]
async fn explicit_acks_move_the_ack_floor() {
    let e = env(1).await;
    let s = make_stream(&e.js, "A", &["a.>"]).await;
    for i in 0..5 {
        publish(&e.js, "a.x", format!("{i}")).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    let got = fetch(&c, 5).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5]);
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.delivered), pos(&i.ack_floor), i.num_ack_pending),
        ((5, 5), (0, 0), 5)
    );
    for k in [0, 1, 3] {
        got[k].ack().await.unwrap();
    }
    let i = info_when(&c, |i| i.num_ack_pending == 2).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((2, 2), 2));
    got[2].ack().await.unwrap();
    let i = info_when(&c, |i| i.num_ack_pending == 1).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((4, 4), 1));
    got[4].ack().await.unwrap();
    let i = info_when(&c, |i| i.num_ack_pending == 0).await;
    assert_eq!(
        (pos(&i.ack_floor), i.num_ack_pending, i.num_pending),
        ((5, 5), 0, 0)
    );
    assert_eq!(i.num_redelivered, 0);
}

#[tokio::test]
async fn double_ack_is_confirmed_after_the_ack_is_applied() {
    let e = env(1).await;
    let s = make_stream(&e.js, "A", &["a.>"]).await;
    for i in 0..3 {
        publish(&e.js, "a.x", format!("{i}")).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    let got = fetch(&c, 3).await;
    got[0].double_ack().await.unwrap();
    // No polling: the confirmation means the ack is applied.
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((1, 1), 2));
    got[1].double_ack().await.unwrap();
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((2, 2), 1));
    // Acking again is confirmed too and changes nothing.
    got[1].double_ack().await.unwrap();
    assert_eq!(info(&c).await.num_ack_pending, 1);
    // The confirmation is an empty message.
    let reply = got[2].reply.clone().unwrap();
    let answer = e.client.request(reply, "+ACK".into()).await.unwrap();
    assert!(
        answer.payload.is_empty() && answer.status.is_none(),
        "{answer:?}"
    );
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((3, 3), 0));
    // Once the consumer is gone nobody answers: 503. (async-nats's double_ack takes
    // any reply as success, so ask directly.)
    s.delete_consumer("C").await.unwrap();
    let err = e
        .client
        .request(got[2].reply.clone().unwrap(), "+ACK".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn nak_redelivers_now_or_after_its_delay() {
    let e = env(1).await;
    let s = make_stream(&e.js, "N", &["n.>"]).await;
    for i in 0..2 {
        publish(&e.js, "n.x", format!("{i}")).await;
    }
    let c = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_secs(10),
            ..durable("C")
        })
        .await
        .unwrap();
    let m = fetch(&c, 1).await.remove(0);
    assert_eq!((sseq(&m), deliveries(&m)), (1, 1));
    m.double_ack_with(AckKind::Nak(None)).await.unwrap();
    // Redelivered at once, ahead of new messages.
    let m = batch(&c, 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!(
        (
            sseq(&m),
            deliveries(&m),
            m.info().unwrap().consumer_sequence
        ),
        (1, 2, 2)
    );
    assert_eq!(info(&c).await.num_redelivered, 1);
    let nak_at = Instant::now();
    m.double_ack_with(AckKind::Nak(Some(Duration::from_millis(800))))
        .await
        .unwrap();
    // While the delay runs, the next message comes instead.
    let next = fetch(&c, 1).await;
    assert_eq!(seqs(&next), vec![2]);
    next[0].double_ack().await.unwrap();
    let m = batch(&c, 1, Duration::from_secs(3)).await.remove(0);
    assert_eq!(
        (
            sseq(&m),
            deliveries(&m),
            m.info().unwrap().consumer_sequence
        ),
        (1, 3, 4)
    );
    let waited = nak_at.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    m.double_ack().await.unwrap();
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.ack_floor), i.num_ack_pending, i.num_pending),
        ((4, 2), 0, 0)
    );
    // num_redelivered counts redelivered messages still pending, not redeliveries.
    assert_eq!((pos(&i.delivered), i.num_redelivered), ((4, 2), 0));
}

#[tokio::test]
async fn progress_extends_the_ack_wait() {
    let e = env(1).await;
    let s = make_stream(&e.js, "W", &["w.>"]).await;
    publish(&e.js, "w.x", "work").await;
    let c = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_secs(1),
            ..durable("C")
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    let m = fetch(&c, 1).await.remove(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.double_ack_with(AckKind::Progress).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.ack_with(AckKind::Progress).await.unwrap();
    // Without +WPI it would have been redelivered at 1 s; the last one moved it to ~2 s.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fetch(&c, 1).await.is_empty(), "redelivered despite +WPI");
    let again = batch(&c, 1, Duration::from_secs(3)).await;
    assert_eq!(seqs(&again), vec![1]);
    assert_eq!(deliveries(&again[0]), 2);
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_millis(3500),
        "{at:?}"
    );
}

#[tokio::test]
async fn term_stops_redelivery_and_is_advised() {
    let e = env(1).await;
    let s = make_stream(&e.js, "T", &["t.>"]).await;
    publish(&e.js, "t.x", "poison").await;
    publish(&e.js, "t.x", "fine").await;
    publish(&e.js, "t.x", "bad").await;
    let c = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_millis(500),
            ..durable("C")
        })
        .await
        .unwrap();
    let mut adv = e
        .client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.T.C")
        .await
        .unwrap();
    e.client.flush().await.unwrap();
    let got = fetch(&c, 1).await;
    got[0].double_ack_with(AckKind::Term).await.unwrap();
    let a = next_within(&mut adv, Duration::from_secs(3))
        .await
        .expect("advisory");
    let a: Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.terminated");
    assert_eq!(
        (
            &a["stream"],
            &a["consumer"],
            &a["consumer_seq"],
            &a["stream_seq"],
            &a["deliveries"]
        ),
        (&json!("T"), &json!("C"), &json!(1), &json!(1), &json!(1))
    );
    assert!(a.get("reason").is_none(), "{a}");
    // +TERM counts as done for the ack floor.
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((1, 1), 0));
    // With a reason, the advisory carries it.
    let got = fetch(&c, 2).await;
    assert_eq!(seqs(&got), vec![2, 3]);
    got[0].double_ack().await.unwrap();
    e.client
        .request(got[1].reply.clone().unwrap(), "+TERM bad data".into())
        .await
        .unwrap();
    let a = next_within(&mut adv, Duration::from_secs(3))
        .await
        .expect("advisory");
    let a: Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(
        (&a["stream_seq"], &a["reason"]),
        (&json!(3), &json!("bad data"))
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        fetch(&c, 5).await.is_empty(),
        "a terminated message came back"
    );
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.ack_floor), i.num_ack_pending, i.num_redelivered),
        ((3, 3), 0, 0)
    );
}

#[tokio::test]
async fn ack_policy_all_acks_everything_before() {
    let e = env(1).await;
    let s = make_stream(&e.js, "A", &["a.>"]).await;
    for i in 0..5 {
        publish(&e.js, "a.x", format!("{i}")).await;
    }
    let c = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::All,
            ..durable("C")
        })
        .await
        .unwrap();
    let got = fetch(&c, 5).await;
    got[3].double_ack().await.unwrap();
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((4, 4), 1));
    got[4].double_ack().await.unwrap();
    let i = info(&c).await;
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((5, 5), 0));
}

// ---------------------------------------------------------------------------------
// Redelivery, max_deliver, max_ack_pending

#[tokio::test]
async fn redelivery_follows_the_backoff() {
    let e = env(1).await;
    let s = make_stream(&e.js, "B", &["b.>"]).await;
    publish(&e.js, "b.x", "x").await;
    let c = s
        .create_consumer(pull::Config {
            backoff: vec![Duration::from_millis(300), Duration::from_millis(900)],
            max_deliver: 4,
            ..durable("C")
        })
        .await
        .unwrap();
    // ack_wait becomes the first backoff step.
    assert_eq!(c.cached_info().config.ack_wait, Duration::from_millis(300));
    let mut pull = c
        .batch()
        .max_messages(4)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut times = Vec::new();
    for n in 1..=4 {
        let m = next_within(&mut pull, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("delivery {n} missing"))
            .unwrap();
        assert_eq!((sseq(&m), deliveries(&m)), (1, n));
        times.push(Instant::now());
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let within = |d: Duration, lo: u64, hi: u64| {
        d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi)
    };
    // 300 ms, then 900 ms, and the last step repeats.
    assert!(within(gaps[0], 250, 800), "{gaps:?}");
    assert!(within(gaps[1], 800, 1500), "{gaps:?}");
    assert!(within(gaps[2], 800, 1500), "{gaps:?}");
    // max_deliver 4: no fifth delivery.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(fetch(&c, 1).await.is_empty());
    let i = info(&c).await;
    assert_eq!((pos(&i.delivered), i.num_redelivered), ((4, 1), 1));
}

#[tokio::test]
async fn max_deliver_publishes_an_advisory_and_stops() {
    let e = env(1).await;
    let s = make_stream(&e.js, "MD", &["md.>"]).await;
    publish(&e.js, "md.x", "poison").await;
    publish(&e.js, "md.x", "fine").await;
    let mut adv = e
        .client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.MD.C")
        .await
        .unwrap();
    e.client.flush().await.unwrap();
    let c = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..durable("C")
        })
        .await
        .unwrap();
    let got = batch(&c, 3, Duration::from_millis(1500)).await;
    let seen: Vec<(u64, i64)> = got.iter().map(|m| (sseq(m), deliveries(m))).collect();
    assert_eq!(seen, vec![(1, 1), (2, 1), (1, 2)]);
    got[1].double_ack().await.unwrap();
    // A waiting pull gets nothing more; by its end (at the latest: nats-server sends
    // the advisory when it would have redelivered, i.e. to a waiting request) the
    // advisory is out.
    assert!(batch(&c, 5, Duration::from_secs(1)).await.is_empty());
    let a = next_within(&mut adv, Duration::from_secs(2))
        .await
        .expect("advisory");
    let a: Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(a["type"], "io.nats.jetstream.advisory.v1.max_deliver");
    assert_eq!(
        (
            &a["stream"],
            &a["consumer"],
            &a["stream_seq"],
            &a["deliveries"]
        ),
        (&json!("MD"), &json!("C"), &json!(1), &json!(2))
    );
    assert!(
        next_within(&mut adv, Duration::from_millis(300))
            .await
            .is_none(),
        "one advisory"
    );
    assert!(fetch(&c, 5).await.is_empty(), "delivered past max_deliver");
    let i = info(&c).await;
    // The message is no longer pending, but the ack floor does not pass it.
    assert_eq!(
        (
            pos(&i.delivered),
            pos(&i.ack_floor),
            i.num_ack_pending,
            i.num_redelivered,
            i.num_pending
        ),
        ((3, 2), (0, 0), 0, 1, 0)
    );
}

#[tokio::test]
async fn max_ack_pending_holds_delivery_until_acks() {
    let e = env(1).await;
    let s = make_stream(&e.js, "M", &["m.>"]).await;
    for i in 0..25 {
        publish(&e.js, "m.x", format!("{i}")).await;
    }
    let c = s
        .create_consumer(pull::Config {
            max_ack_pending: 10,
            ..durable("C")
        })
        .await
        .unwrap();
    let first = batch(&c, 25, Duration::from_millis(500)).await;
    assert_eq!(seqs(&first), (1..=10).collect::<Vec<_>>());
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.delivered), i.num_ack_pending, i.num_pending),
        ((10, 10), 10, 15)
    );
    assert!(batch(&c, 25, Duration::from_millis(300)).await.is_empty());
    for m in &first[..3] {
        m.double_ack().await.unwrap();
    }
    let next = batch(&c, 25, Duration::from_millis(500)).await;
    assert_eq!(seqs(&next), vec![11, 12, 13]);
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.ack_floor), i.num_ack_pending, i.num_pending),
        ((3, 3), 10, 12)
    );
    // A waiting pull is served as soon as acks make room.
    let c2 = c.clone();
    let waiting = tokio::spawn(async move { seqs(&batch(&c2, 5, Duration::from_secs(2)).await) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first[3].double_ack().await.unwrap();
    first[4].double_ack().await.unwrap();
    assert_eq!(waiting.await.unwrap(), vec![14, 15]);
}

// ---------------------------------------------------------------------------------
// Push

#[tokio::test]
async fn push_consumer_delivers_to_its_subject_once_someone_listens() {
    let e = env(1).await;
    let s = make_stream(&e.js, "P", &["p.>"]).await;
    for i in 0..3 {
        publish(&e.js, "p.x", format!("{i}")).await;
    }
    let c: consumer::PushConsumer = s
        .create_consumer(push::Config {
            durable_name: Some("P".into()),
            deliver_subject: "deliver.P".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!c.cached_info().push_bound);
    // Nothing is lost while nobody listens (ack_wait is 30 s: no redelivery helps).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut msgs = c.messages().await.unwrap();
    for expected in 1..=3u64 {
        let m = next_within(&mut msgs, Duration::from_secs(3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((sseq(&m), deliveries(&m)), (expected, 1));
        assert_eq!(m.subject.as_str(), "p.x");
        m.double_ack().await.unwrap();
    }
    let i = s.consumer_info("P").await.unwrap();
    assert!(i.push_bound);
    assert_eq!((pos(&i.delivered), pos(&i.ack_floor)), ((3, 3), (3, 3)));
    publish(&e.js, "p.x", "late").await;
    let m = next_within(&mut msgs, Duration::from_secs(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sseq(&m), 4);
    m.double_ack().await.unwrap();
    drop(msgs);
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.consumer_info("P").await.unwrap().push_bound {
        assert!(
            Instant::now() < deadline,
            "push_bound stays after unsubscribe"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn push_deliver_group_spreads_over_queue_members() {
    let e = env(1).await;
    let s = make_stream(&e.js, "G", &["g.>"]).await;
    s.create_consumer(push::Config {
        durable_name: Some("G".into()),
        deliver_subject: "deliver.G".into(),
        deliver_group: Some("workers".into()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut members = Vec::new();
    for _ in 0..2 {
        let client = e.server.client().await;
        let js = jetstream::new(client.clone());
        let c: consumer::PushConsumer = js
            .get_stream("G")
            .await
            .unwrap()
            .get_consumer("G")
            .await
            .unwrap();
        let msgs = c.messages().await.unwrap();
        common::sync_interest(&client, &e.client).await;
        members.push(tokio::spawn(async move {
            let mut msgs = msgs;
            let mut got = Vec::new();
            while let Some(m) = next_within(&mut msgs, Duration::from_secs(1)).await {
                let m = m.unwrap();
                got.push(sseq(&m));
                m.double_ack().await.unwrap();
            }
            got
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..100 {
        publish(&e.js, "g.x", format!("{i}")).await;
    }
    let mut all = Vec::new();
    for m in members {
        let got = m.await.unwrap();
        assert!(!got.is_empty(), "one member got nothing");
        all.extend(got);
    }
    all.sort();
    assert_eq!(
        all,
        (1..=100).collect::<Vec<u64>>(),
        "each message exactly once"
    );
    let i = s.consumer_info("G").await.unwrap();
    assert_eq!((pos(&i.ack_floor), i.num_ack_pending), ((100, 100), 0));
}

#[test]
fn push_idle_heartbeats_and_flow_control_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut admin = server.raw();
    admin.setup_requests();
    raw_json(
        &mut admin,
        "$JS.API.STREAM.CREATE.HB",
        r#"{"name":"HB","subjects":["hb.>"]}"#,
    );
    for _ in 0..3 {
        admin.request("hb.small", None, b"0123456789");
    }
    let mut sub = server.raw();
    sub.setup_requests();
    sub.send(b"SUB deliver.hb 2\r\n");
    sub.flush();
    let v = raw_json(
        &mut admin,
        "$JS.API.CONSUMER.CREATE.HB.C",
        r#"{"stream_name":"HB","config":{"durable_name":"C","deliver_subject":"deliver.hb","ack_policy":"none","idle_heartbeat":200000000,"flow_control":true}}"#,
    );
    assert_eq!(v["config"]["flow_control"], json!(true), "{v}");
    for n in 1..=3 {
        let (subject, reply, hdr, payload) = read_full(&mut sub);
        assert_eq!(
            (subject.as_str(), hdr.as_str(), &payload[..]),
            ("hb.small", "", &b"0123456789"[..])
        );
        let reply = reply.unwrap();
        let t: Vec<&str> = reply.split('.').collect();
        assert_eq!(
            (t[2], t[3], t[4], t[5], t[6]),
            ("HB", "C", "1", &*n.to_string(), &*n.to_string())
        );
        assert_eq!(t[8], (3 - n).to_string(), "pending in {reply}");
    }
    let t = Instant::now();
    let (subject, reply, hdr, payload) = read_full(&mut sub);
    assert_eq!(
        (subject.as_str(), reply, payload.len()),
        ("deliver.hb", None, 0)
    );
    assert_eq!(
        hdr,
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 3\r\n\r\n"
    );
    assert!(t.elapsed() < Duration::from_millis(500));

    // 40 × 64 KiB: a flow-control request once 1 MiB (half the 2 MiB window) is out,
    // delivery stops at 2 MiB until it is answered, and heartbeats say so.
    let big = vec![b'y'; 64 * 1024];
    for _ in 0..40 {
        admin.request("hb.big", None, &big);
    }
    let mut data = 0;
    let fc = loop {
        let (subject, reply, hdr, payload) = read_full(&mut sub);
        if hdr.is_empty() {
            assert_eq!((subject.as_str(), payload.len()), ("hb.big", big.len()));
            data += 1;
            continue;
        }
        if hdr.contains("Idle Heartbeat") {
            continue;
        }
        assert_eq!(
            (subject.as_str(), hdr.as_str(), payload.len()),
            ("deliver.hb", "NATS/1.0 100 FlowControl Request\r\n\r\n", 0)
        );
        break reply.expect("flow control has a reply subject");
    };
    assert_eq!(data, 16, "flow control request after 1 MiB");
    let t: Vec<&str> = fc.split('.').collect();
    assert_eq!(
        (t.len(), t[0], t[1], t[2], t[3], t[4].len()),
        (5, "$JS", "FC", "HB", "C", 4),
        "{fc}"
    );
    let stalled = loop {
        let (_, _, hdr, payload) = read_full(&mut sub);
        if hdr.is_empty() {
            assert_eq!(payload.len(), big.len());
            data += 1;
            continue;
        }
        break hdr;
    };
    assert_eq!(data, 32, "delivery stops at the 2 MiB window");
    assert_eq!(
        stalled,
        format!("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 35\r\nNats-Last-Stream: 35\r\nNats-Consumer-Stalled: {fc}\r\n\r\n")
    );
    sub.send(format!("PUB {fc} 0\r\n\r\n").as_bytes());
    let last = loop {
        let (_, reply, hdr, _) = read_full(&mut sub);
        if hdr.is_empty() {
            data += 1;
        } else if hdr.contains("FlowControl") {
            sub.send(format!("PUB {} 0\r\n\r\n", reply.unwrap()).as_bytes());
        } else {
            break hdr;
        }
    };
    assert_eq!(data, 40);
    assert_eq!(
        last,
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 43\r\nNats-Last-Stream: 43\r\n\r\n"
    );
}

// ---------------------------------------------------------------------------------
// Ordered

#[tokio::test]
async fn ordered_consumers_read_the_whole_stream_in_order() {
    let e = env(1).await;
    let s = make_stream(&e.js, "O", &["o.>"]).await;
    for i in 0..300u64 {
        publish(&e.js, &format!("o.{}", i % 3), format!("{}", i + 1)).await;
    }
    let check = |m: &Message, expected_seq: u64, expected_cseq: u64| {
        let i = m.info().unwrap();
        assert_eq!(
            (i.stream_sequence, i.consumer_sequence, i.delivered),
            (expected_seq, expected_cseq, 1)
        );
        assert_eq!(&m.payload[..], expected_seq.to_string().as_bytes());
    };

    let ordered = s
        .create_consumer(pull::OrderedConfig::default())
        .await
        .unwrap();
    let ci = ordered.cached_info().clone();
    assert_eq!(
        (
            ci.config.ack_policy,
            ci.config.max_deliver,
            ci.config.memory_storage,
            ci.config.num_replicas
        ),
        (AckPolicy::None, 1, true, 1)
    );
    let mut msgs = ordered.messages().await.unwrap();
    for n in 1..=300 {
        let m = next_within(&mut msgs, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        check(&m, n, n);
    }
    drop(msgs);

    let ordered = s
        .create_consumer(push::OrderedConfig {
            deliver_subject: e.client.new_inbox(),
            filter_subject: "o.1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ordered.cached_info().config.flow_control);
    let mut msgs = ordered.messages().await.unwrap();
    for n in 1..=100 {
        let m = next_within(&mut msgs, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        check(&m, 3 * n - 1, n);
        assert_eq!(m.subject.as_str(), "o.1");
    }
    publish(&e.js, "o.1", "301").await;
    let m = next_within(&mut msgs, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    check(&m, 301, 101);
}

// ---------------------------------------------------------------------------------
// Retention

#[tokio::test]
async fn interest_retention_keeps_a_message_until_every_consumer_acked() {
    let e = env(1).await;
    let mut cfg = stream_cfg("I", &["i.>"]);
    cfg.retention = RetentionPolicy::Interest;
    let s = e.js.create_stream(cfg).await.unwrap();
    // Nobody interested: acknowledged, not kept.
    assert_eq!(publish(&e.js, "i.x", "lost").await, 1);
    let st = stream_state(&e.js, "I").await;
    assert_eq!(
        (st.messages, st.first_sequence, st.last_sequence),
        (0, 2, 1)
    );
    let a = s.create_consumer(durable("A")).await.unwrap();
    let b = s.create_consumer(durable("B")).await.unwrap();
    for i in 0..3 {
        publish(&e.js, "i.x", format!("{i}")).await; // 2, 3, 4
    }
    assert_eq!(stream_state(&e.js, "I").await.messages, 3);
    for m in fetch(&a, 3).await {
        m.double_ack().await.unwrap();
    }
    assert_eq!(
        stream_state(&e.js, "I").await.messages,
        3,
        "B has not acked"
    );
    let got = fetch(&b, 3).await;
    assert_eq!(seqs(&got), vec![2, 3, 4]);
    got[0].double_ack().await.unwrap();
    got[2].double_ack().await.unwrap();
    let st = state_when(&e.js, "I", |s| s.messages == 1).await;
    assert_eq!(
        (st.messages, st.first_sequence, st.last_sequence),
        (1, 3, 4)
    );
    // The only consumer still holding it goes away: the message goes too.
    s.delete_consumer("B").await.unwrap();
    let st = state_when(&e.js, "I", |s| s.messages == 0).await;
    assert_eq!((st.messages, st.first_sequence), (0, 5));
}

#[tokio::test]
async fn workqueue_retention_removes_on_ack_and_refuses_overlaps() {
    let e = env(1).await;
    let mut cfg = stream_cfg("W", &["w.>"]);
    cfg.retention = RetentionPolicy::WorkQueue;
    let s = e.js.create_stream(cfg).await.unwrap();
    let c = &e.client;
    let create = |name: &str, extra: Value| {
        let mut config = json!({"durable_name":name,"ack_policy":"explicit"});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        (
            format!("CONSUMER.CREATE.W.{name}"),
            json!({"stream_name":"W","config":config}),
        )
    };
    for (name, extra, code) in [
        ("N1", json!({"ack_policy":"none"}), 10084),
        ("N2", json!({"ack_policy":"all"}), 10098),
        ("N3", json!({"deliver_policy":"last"}), 10101),
        ("WA", json!({"filter_subject":"w.a"}), 0),
        ("WA2", json!({"filter_subject":"w.a"}), 10100),
        ("WALL", json!({"filter_subject":"w.>"}), 10100),
        ("WU", json!({}), 10099),
        ("WB", json!({"filter_subject":"w.b"}), 0),
    ] {
        let (subject, body) = create(name, extra);
        let v = api(c, &subject, body).await;
        assert_eq!(err_code(&v), code, "{name}: {v}");
    }
    let mut cfg = stream_cfg("W2", &["v.>"]);
    cfg.retention = RetentionPolicy::WorkQueue;
    let s2 = e.js.create_stream(cfg).await.unwrap();
    s2.create_consumer(durable("U1")).await.unwrap();
    for (name, filter, code) in [("U2", "", 10099), ("U3", "v.a", 10100)] {
        let v = api(
            c,
            &format!("CONSUMER.CREATE.W2.{name}"),
            json!({"stream_name":"W2","config":{"durable_name":name,"ack_policy":"explicit","filter_subject":filter}}),
        )
        .await;
        assert_eq!(err_code(&v), code, "{name}: {v}");
    }

    for _ in 0..3 {
        publish(&e.js, "w.a", "job").await; // 1, 2, 3
    }
    publish(&e.js, "w.b", "other").await; // 4
    let wa: PullConsumer = s.get_consumer("WA").await.unwrap();
    let got = fetch(&wa, 3).await;
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    got[0].double_ack().await.unwrap();
    got[1].double_ack().await.unwrap();
    let st = state_when(&e.js, "W", |s| s.messages == 2).await;
    assert_eq!((st.messages, st.first_sequence), (2, 3));
    got[2].double_ack_with(AckKind::Term).await.unwrap();
    let st = state_when(&e.js, "W", |s| s.messages == 1).await;
    assert_eq!((st.messages, st.first_sequence), (1, 4));
    assert_eq!(st.consumer_count, 2);
}

#[tokio::test]
async fn num_pending_and_consumer_counts_stay_right() {
    let e = env(1).await;
    let s = make_stream(&e.js, "N", &["n.>"]).await;
    let s2 = make_stream(&e.js, "N2", &["n2.>"]).await;
    // n.a at 1, 3, 5, 7; n.b at 2, 4, 6
    for k in 0..7 {
        publish(&e.js, if k % 2 == 0 { "n.a" } else { "n.b" }, "x").await;
    }
    let na = s
        .create_consumer(pull::Config {
            filter_subject: "n.a".into(),
            ..durable("NA")
        })
        .await
        .unwrap();
    assert_eq!(na.cached_info().num_pending, 4);
    let got = fetch(&na, 2).await;
    assert_eq!(seqs(&got), vec![1, 3]);
    let i = info(&na).await;
    assert_eq!((i.num_pending, i.num_ack_pending), (2, 2));
    for k in 0..7 {
        publish(&e.js, if k < 2 { "n.a" } else { "n.b" }, "x").await; // n.a at 8, 9
    }
    assert_eq!(info_when(&na, |i| i.num_pending == 4).await.num_pending, 4);
    for m in &got {
        m.double_ack().await.unwrap();
    }
    let i = info(&na).await;
    assert_eq!(
        (i.num_pending, i.num_ack_pending, pos(&i.ack_floor)),
        (4, 0, (2, 3))
    );
    // Purging the filtered subject leaves nothing pending.
    s.purge().filter("n.a").await.unwrap();
    assert_eq!(info_when(&na, |i| i.num_pending == 0).await.num_pending, 0);

    s.create_consumer(durable("NB")).await.unwrap();
    s.create_consumer(durable("NC")).await.unwrap();
    s2.create_consumer(durable("X")).await.unwrap();
    assert_eq!(stream_state(&e.js, "N").await.consumer_count, 3);
    assert_eq!(stream_state(&e.js, "N2").await.consumer_count, 1);
    assert_eq!(e.js.query_account().await.unwrap().consumers, 4);
    s.delete_consumer("NC").await.unwrap();
    assert_eq!(stream_state(&e.js, "N").await.consumer_count, 2);
    assert_eq!(e.js.query_account().await.unwrap().consumers, 3);
}

// ---------------------------------------------------------------------------------
// Shards (jetcore): the stream's owner is another shard than the client's. On
// nats-server these run as one server.

#[tokio::test]
async fn consumers_work_from_every_shard() {
    for shards in [2usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_js(shards, dir.path(), &[]);
        let admin = jetstream::new(server.client().await);
        // One stream per shard: the owner is the shard with the fewest streams.
        for owner in 0..shards {
            let name = format!("X{owner}");
            make_stream(&admin, &name, &[&format!("x{owner}.>")]).await;
            for client_shard in 0..shards {
                let client = server.client_on(client_shard).await;
                let js = jetstream::new(client.clone());
                let publisher = jetstream::new(server.client_on((client_shard + 1) % shards).await);
                let s = js.get_stream(&name).await.unwrap();
                let cname = format!("C{client_shard}");
                let base = (client_shard * 3) as u64;
                let c = s
                    .create_consumer(pull::Config {
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: base + 1,
                        },
                        ..durable(&cname)
                    })
                    .await
                    .unwrap();
                for k in 0..3 {
                    let seq = publish(&publisher, &format!("x{owner}.p"), format!("{k}")).await;
                    assert_eq!(seq, base + k + 1, "{shards} shards, stream {name}");
                }
                let got = batch(&c, 3, Duration::from_secs(2)).await;
                assert_eq!(
                    seqs(&got),
                    vec![base + 1, base + 2, base + 3],
                    "{shards} shards {name} {cname}"
                );
                for m in &got {
                    m.double_ack().await.unwrap();
                }
                let i = info(&c).await;
                assert_eq!(
                    (
                        i.ack_floor.stream_sequence,
                        i.num_ack_pending,
                        i.num_pending
                    ),
                    (base + 3, 0, 0)
                );
                // Push delivery to a subscriber on this shard.
                let p: consumer::PushConsumer = s
                    .create_consumer(push::Config {
                        durable_name: Some(format!("P{client_shard}")),
                        deliver_subject: client.new_inbox(),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: base + 1,
                        },
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let mut msgs = p.messages().await.unwrap();
                for k in 1..=3 {
                    let m = next_within(&mut msgs, Duration::from_secs(3))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(sseq(&m), base + k, "{shards} shards {name} push");
                    m.double_ack().await.unwrap();
                }
            }
            let st = stream_state(&admin, &name).await;
            assert_eq!(st.consumer_count, 2 * shards);
        }
        assert_eq!(
            admin.query_account().await.unwrap().consumers,
            2 * shards * shards
        );
    }
}

// ---------------------------------------------------------------------------------
// Durability

/// A durable consumer mid-stream: 1, 2, 3 and 5 acked (confirmed), 4 and 6 delivered
/// and not acked, 7..=10 not delivered. After `stop` and a restart on the same store:
/// the same positions, nothing acked comes back, everything else arrives.
async fn durable_consumer_survives(stop: impl FnOnce(Server)) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client_on(1).await);
    let s = make_stream(&js, "DUR", &["dur.>"]).await;
    for i in 0..10 {
        publish(&js, "dur.x", format!("{i}")).await;
    }
    let c = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_secs(1),
            ..durable("C")
        })
        .await
        .unwrap();
    let got = fetch(&c, 6).await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5, 6]);
    for k in [0, 1, 2, 4] {
        got[k].double_ack().await.unwrap();
    }
    let expect = |i: &consumer::Info, when: &str| {
        assert_eq!(
            (
                pos(&i.delivered),
                pos(&i.ack_floor),
                i.num_ack_pending,
                i.num_pending,
                i.num_redelivered
            ),
            ((6, 6), (3, 3), 2, 4, 0),
            "{when}"
        );
    };
    expect(&info(&c).await, "before");
    if server.nats_server {
        // nats-server writes consumer state behind the ack (about 100 ms later), so a
        // kill -9 right after a confirmed ack loses it there; jetcore must not.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(js);
    drop(s);
    drop(c);
    stop(server);

    let server = Server::start_js(4, dir.path(), &[]);
    let js = jetstream::new(server.client_on(3).await);
    let s = js.get_stream("DUR").await.unwrap();
    let c: PullConsumer = s.get_consumer("C").await.unwrap();
    expect(&info(&c).await, "after restart");
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    while seen.len() < 6 && Instant::now() < deadline {
        for m in batch(&c, 10, Duration::from_millis(700)).await {
            let prev = seen.insert(sseq(&m), deliveries(&m));
            assert!(
                prev.is_none(),
                "seq {} delivered twice after an ack",
                sseq(&m)
            );
            m.double_ack().await.unwrap();
        }
    }
    let expected: BTreeMap<u64, i64> = [(4, 2), (6, 2), (7, 1), (8, 1), (9, 1), (10, 1)].into();
    assert_eq!(seen, expected, "stream seq → delivery count after restart");
    let i = info(&c).await;
    assert_eq!(
        (pos(&i.ack_floor).1, i.num_ack_pending, i.num_pending),
        (10, 0, 0)
    );
    drop(dir);
}

#[tokio::test]
async fn durable_consumer_state_survives_sigterm() {
    durable_consumer_survives(|server| assert!(server.terminate().success())).await;
}

#[tokio::test]
async fn durable_consumer_state_survives_kill_9() {
    durable_consumer_survives(|server| server.kill9()).await;
}

// ---------------------------------------------------------------------------------
// Edge cases found in review: each of these crashed, jammed or miscounted once.

#[tokio::test]
async fn sampled_acks_publish_metrics_and_the_server_stays_up() {
    let e = env(1).await;
    make_stream(&e.js, "SM", &["sm.>"]).await;
    for i in 0..5 {
        publish(&e.js, "sm.a", format!("{i}")).await;
    }
    let mut metrics = e
        .client
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.SM.M")
        .await
        .unwrap();
    e.client.flush().await.unwrap();
    let c =
        e.js.get_stream("SM")
            .await
            .unwrap()
            .create_consumer(pull::Config {
                sample_frequency: 100,
                ..durable("M")
            })
            .await
            .unwrap();
    for m in fetch(&c, 5).await {
        m.ack().await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let m = next_within(&mut metrics, Duration::from_secs(3))
            .await
            .expect("a metric per sampled ack");
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "io.nats.jetstream.metric.v1.consumer_ack");
        seen.push((
            v["stream_seq"].as_u64().unwrap(),
            v["deliveries"].as_u64().unwrap(),
        ));
    }
    seen.sort();
    assert_eq!(seen, [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    assert_eq!(
        info_when(&c, |i| i.num_ack_pending == 0)
            .await
            .ack_floor
            .stream_sequence,
        5
    );
}

#[test]
fn statuses_sent_to_api_subjects_do_not_reenter_the_consumer() {
    let (_server, mut r, _dir) = raw_stream(0);
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.C",
        r#"{"stream_name":"O","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    // The 408 for this request goes to the PAUSE API of the same consumer.
    let body = r#"{"expires":300000000}"#;
    r.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.O.C $JS.API.CONSUMER.PAUSE.O.C {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
    assert_eq!(v["name"], "C", "{v}");
}

#[tokio::test]
async fn deliver_subject_inside_the_stream_is_a_cycle() {
    let e = env(1).await;
    make_stream(&e.js, "CY", &["cy.>"]).await;
    let v = api(
        &e.client,
        "CONSUMER.CREATE.CY.P",
        json!({"stream_name":"CY","config":{"durable_name":"P","deliver_subject":"cy.out"}}),
    )
    .await;
    assert_eq!(err_code(&v), 10081, "{v}");
}

#[tokio::test]
async fn num_pending_and_ack_pending_follow_a_purge() {
    let e = env(1).await;
    let s = make_stream(&e.js, "PG", &["pg.>"]).await;
    for i in 0..100 {
        publish(&e.js, "pg.a", format!("{i}")).await;
    }
    let c = s
        .create_consumer(pull::Config {
            max_ack_pending: 10,
            ..durable("C")
        })
        .await
        .unwrap();
    assert_eq!(fetch(&c, 10).await.len(), 10);
    assert_eq!(info(&c).await.num_pending, 90);
    e.js.get_stream("PG").await.unwrap().purge().await.unwrap();
    // Nothing is left to deliver or to wait an ack for.
    let i = info_when(&c, |i| i.num_pending == 0 && i.num_ack_pending == 0).await;
    assert_eq!((i.num_pending, i.num_ack_pending), (0, 0));
    // And the consumer is not jammed by acks it can never get.
    publish(&e.js, "pg.a", "new").await;
    let got = batch(&c, 5, Duration::from_millis(500)).await;
    assert_eq!(seqs(&got), [101]);
}

#[test]
fn a_requester_that_went_away_stops_waiting() {
    let (server, mut r, _dir) = raw_stream(0);
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.C",
        r#"{"stream_name":"O","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    {
        let mut gone = server.raw();
        gone.setup_requests();
        gone.send(
            b"SUB _gone.> 5\r\nPUB $JS.API.CONSUMER.MSG.NEXT.O.C _gone.x 2\r\n10\r\nPING\r\n",
        );
        gone.flush();
        let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
        assert_eq!(v["num_waiting"], 1, "{v}");
    }
    // The connection is closed: within a couple of seconds the request is dropped.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
        if v["num_waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "request still waiting: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn consumers_read_beyond_the_cache_from_disk_in_order() {
    // 48 MiB of messages: after a restart the cache holds at most the newest
    // 32 MiB, so the oldest are read back from the segments, with read-ahead.
    let dir = tempfile::tempdir().unwrap();
    let body = |i: usize| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 96 * 1024];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };
    let n = 512;
    {
        let server = Server::start_js(1, dir.path(), &[]);
        let js = jetstream::new(server.client().await);
        make_stream(&js, "BIG", &["big.>"]).await;
        let mut acks = Vec::new();
        for i in 0..n {
            acks.push(
                js.publish(format!("big.{}", i % 3), body(i).into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
        server.terminate();
    }
    let server = Server::start_js(1, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let s = js.get_stream("BIG").await.unwrap();
    // A filtered consumer skips two thirds of what it reads.
    let c = s
        .create_consumer(pull::Config {
            filter_subject: "big.1".into(),
            ..durable("F")
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < n / 3 {
        let ms = batch(&c, 50, Duration::from_secs(5)).await;
        assert!(!ms.is_empty(), "stalled after {}", got.len());
        for m in ms {
            let i = u64::from_le_bytes(m.payload[..8].try_into().unwrap()) as usize;
            assert_eq!(&m.payload[..], &body(i)[..], "message {i} corrupted");
            assert_eq!(m.subject.as_str(), format!("big.{}", i % 3));
            got.push(i);
            m.ack().await.unwrap();
        }
    }
    let want: Vec<usize> = (0..n).filter(|i| i % 3 == 1).collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------
// Less common options, each checked once on the wire.

/// A raw client with a stream `O` (`o.>`) holding `n` messages on `o.a`, 16 bytes each.
fn raw_stream(n: usize) -> (Server, Raw, tempfile::TempDir) {
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

fn pull_raw(r: &mut Raw, consumer: &str, reply: &str, body: &str) {
    r.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.O.{consumer} {reply} {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    );
}

#[test]
fn headers_only_next_and_consumer_limits() {
    let (_server, mut r, _dir) = raw_stream(3);
    r.send(b"SUB _h.> 77\r\n");
    r.flush();
    // headers_only: the stored headers (none here) plus Nats-Msg-Size, no payload.
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.H",
        r#"{"stream_name":"O","config":{"durable_name":"H","ack_policy":"explicit","headers_only":true}}"#,
    );
    pull_raw(&mut r, "H", "_h.1", "1");
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!(subject, "o.a");
    assert_eq!(hdr, "NATS/1.0\r\nNats-Msg-Size: 16\r\n\r\n");
    assert!(payload.is_empty());
    // +NXT acks and asks for the next message on the ack's reply subject.
    let ack = reply.unwrap();
    r.send(format!("PUB {ack} _h.2 4\r\n+NXT\r\n").as_bytes());
    let (subject, reply, _, _) = read_full(&mut r);
    assert_eq!(subject, "o.a");
    assert_eq!(reply.unwrap().split('.').nth(5), Some("2"));
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.H", "");
    assert_eq!(
        (&v["ack_floor"]["stream_seq"], &v["num_ack_pending"]),
        (&json!(1), &json!(1)),
        "{v}"
    );
    // The stream allows 3 consumers.
    for name in ["L2", "L3"] {
        let v = raw_json(
            &mut r,
            &format!("$JS.API.CONSUMER.CREATE.O.{name}"),
            &format!(r#"{{"stream_name":"O","config":{{"durable_name":"{name}"}}}}"#),
        );
        assert_eq!(v["name"], name, "{v}");
    }
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.L4",
        r#"{"stream_name":"O","config":{"durable_name":"L4"}}"#,
    );
    assert_eq!(err_code(&v), 10026, "{v}");
    // LIST pages by offset, sorted or not: names and total.
    let v = raw_json(&mut r, "$JS.API.CONSUMER.LIST.O", r#"{"offset":1}"#);
    assert_eq!((&v["total"], &v["offset"]), (&json!(3), &json!(1)), "{v}");
    assert_eq!(v["consumers"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn pause_holds_delivery_until_resumed() {
    let (_server, mut r, _dir) = raw_stream(2);
    r.send(b"SUB _p.> 78\r\n");
    r.flush();
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.P",
        r#"{"stream_name":"O","config":{"durable_name":"P","ack_policy":"explicit"}}"#,
    );
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.PAUSE.O.P",
        r#"{"pause_until":"2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!(
        v["type"],
        "io.nats.jetstream.api.v1.consumer_pause_response"
    );
    assert_eq!(
        (&v["paused"], &v["pause_until"]),
        (&json!(true), &json!("2099-01-01T00:00:00Z")),
        "{v}"
    );
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.P", "");
    assert_eq!(v["paused"], true, "{v}");
    assert!(v["pause_remaining"].as_i64().unwrap() > 0, "{v}");
    // A pull while paused gets nothing: it times out.
    pull_raw(&mut r, "P", "_p.1", r#"{"batch":1,"expires":500000000}"#);
    let (subject, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str()),
        (
            "_p.1",
            "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n"
        )
    );
    // Resumed, the next pull is served.
    let v = raw_json(&mut r, "$JS.API.CONSUMER.PAUSE.O.P", "");
    assert_eq!(v["paused"], false, "{v}");
    pull_raw(&mut r, "P", "_p.2", r#"{"batch":1,"expires":2000000000}"#);
    let (subject, _, _, payload) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), &payload[..]),
        ("o.a", &b"message-00000000"[..])
    );
}

#[tokio::test]
async fn replay_original_keeps_the_gaps_and_rate_limit_slows_push() {
    let e = env(1).await;
    make_stream(&e.js, "RP", &["rp.>"]).await;
    for i in 0..3 {
        publish(&e.js, "rp.a", format!("{i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // replay original: the 300 ms gaps between the stored messages come back.
    let mut sub = e.client.subscribe("out.replay").await.unwrap();
    e.client.flush().await.unwrap();
    let v = api(
        &e.client,
        "CONSUMER.CREATE.RP.O",
        json!({"stream_name":"RP","config":{"durable_name":"O","deliver_subject":"out.replay","replay_policy":"original"}}),
    )
    .await;
    assert_eq!(v["config"]["replay_policy"], "original", "{v}");
    let mut at = Vec::new();
    for _ in 0..3 {
        next_within(&mut sub, Duration::from_secs(3)).await.unwrap();
        at.push(Instant::now());
    }
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > Duration::from_millis(200) && gap < Duration::from_millis(900),
            "gap {gap:?}"
        );
    }
    // rate_limit_bps: 800 bits/s is 100 bytes/s after a burst of one maximum
    // message (the stream's max_msg_size, as nats-server does): three 90-byte
    // messages take more than half a second.
    e.js.create_stream(stream::Config {
        max_message_size: 200,
        ..stream_cfg("RL", &["rl.>"])
    })
    .await
    .unwrap();
    for _ in 0..3 {
        publish(&e.js, "rl.a", vec![b'x'; 90]).await;
    }
    let mut slow = e.client.subscribe("out.slow").await.unwrap();
    e.client.flush().await.unwrap();
    let t = Instant::now();
    let v = api(
        &e.client,
        "CONSUMER.CREATE.RL.R",
        json!({"stream_name":"RL","config":{"durable_name":"R","deliver_subject":"out.slow","rate_limit_bps":800}}),
    )
    .await;
    assert_eq!(v["config"]["rate_limit_bps"], 800, "{v}");
    for _ in 0..3 {
        next_within(&mut slow, Duration::from_secs(5))
            .await
            .unwrap();
    }
    assert!(
        t.elapsed() > Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_start_sequence_past_the_end_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let s = make_stream(&js, "FUT", &["fut.>"]).await;
    s.create_consumer(pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 5 },
        ..durable("C")
    })
    .await
    .unwrap();
    drop((js, s));
    assert!(server.terminate().success());
    // A start beyond the stream's end is where the consumer was told to
    // begin, not a position to cut back at start-up.
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    for i in 0..8 {
        publish(&js, "fut.x", format!("{i}")).await;
    }
    let s = js.get_stream("FUT").await.unwrap();
    let c: PullConsumer = s.get_consumer("C").await.unwrap();
    assert_eq!(seqs(&fetch(&c, 10).await), vec![5, 6, 7, 8]);
    drop(dir);
}

#[tokio::test]
async fn consumers_created_while_publishing_miss_nothing() {
    // Messages accepted before a consumer exists reach it after their commit,
    // the ones accepted after it before; none is skipped, and a workqueue keeps
    // every one until it is acked.
    let e = env(2).await;
    e.js.create_stream(stream::Config {
        retention: RetentionPolicy::WorkQueue,
        ..stream_cfg("WQP", &["wqp.>"])
    })
    .await
    .unwrap();
    const N: u64 = 3000;
    // Bursts from another connection, before, during and after the create.
    let publisher = {
        let client = e.server.client().await;
        tokio::spawn(async move {
            for i in 0..N {
                let body = format!("{i:01000}");
                client.publish("wqp.x", body.into()).await.unwrap();
                if i % 50 == 49 {
                    client.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            client.flush().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = e.js.get_stream("WQP").await.unwrap();
    // Ephemeral: its create waits for no write of its own.
    let c = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    // Pulled while publishing goes on: the consumer catches up with the
    // stored messages while later ones are still being written.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (got.len() as u64) < N && Instant::now() < deadline {
        for m in batch(&c, 500, Duration::from_millis(500)).await {
            got.push(sseq(&m));
            m.ack().await.unwrap();
        }
    }
    publisher.await.unwrap();
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
    let st = state_when(&e.js, "WQP", |st| st.messages == 0).await;
    assert_eq!(st.messages, 0);
}

#[tokio::test]
async fn interest_streams_keep_given_up_messages_until_their_consumer_goes() {
    // nats-server keeps a message given up after max_deliver (for a dead letter
    // queue) while the consumer that gave it up exists, even once every other
    // consumer acked it; deleting that consumer lets it go.
    let e = env(2).await;
    let (s, _a, b) = given_up_in_interest_stream(&e, "IMD", true).await;
    let b = b.unwrap();
    for m in fetch(&b, 1).await {
        m.double_ack().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stream_state(&e.js, "IMD").await.messages, 1);
    s.delete_consumer("A").await.unwrap();
    let st = state_when(&e.js, "IMD", |st| st.messages == 0).await;
    assert_eq!(st.messages, 0);
}

#[tokio::test]
async fn a_given_up_message_stays_when_the_ack_floor_passes_it() {
    // Interest stream, one consumer: message 1 is given up, message 2 acked,
    // so nothing is pending and the ack floor moves past 1. nats-server still
    // keeps 1 (for dead-letter handling) until the consumer is deleted.
    let e = env(2).await;
    let (s, a, _) = given_up_in_interest_stream(&e, "IFL", false).await;
    publish(&e.js, "ifl.x", "fine").await;
    let got = fetch(&a, 1).await;
    assert_eq!(seqs(&got), vec![2]);
    got[0].double_ack().await.unwrap();
    let i = info(&a).await;
    assert_eq!((pos(&i.ack_floor).1, i.num_ack_pending), (2, 0));
    let st = state_when(&e.js, "IFL", |st| st.messages == 1).await;
    assert_eq!((st.messages, st.first_sequence), (1, 1));
    s.delete_consumer("A").await.unwrap();
    let st = state_when(&e.js, "IFL", |st| st.messages == 0).await;
    assert_eq!(st.messages, 0);
}

/// An interest stream `name` (subjects `<name lowercase>.>`) whose consumer A
/// (max_deliver 1) was handed message 1 and gave it up; with `other`, a
/// consumer B that has not taken it yet.
async fn given_up_in_interest_stream(
    e: &Env,
    name: &str,
    other: bool,
) -> (stream::Stream, PullConsumer, Option<PullConsumer>) {
    let subjects = format!("{}.>", name.to_lowercase());
    let s =
        e.js.create_stream(stream::Config {
            retention: RetentionPolicy::Interest,
            ..stream_cfg(name, &[&subjects])
        })
        .await
        .unwrap();
    let a = s
        .create_consumer(pull::Config {
            ack_wait: Duration::from_millis(300),
            max_deliver: 1,
            ..durable("A")
        })
        .await
        .unwrap();
    let b = if other {
        Some(s.create_consumer(durable("B")).await.unwrap())
    } else {
        None
    };
    publish(&e.js, &format!("{}.x", name.to_lowercase()), "poison").await;
    assert_eq!(seqs(&fetch(&a, 1).await), vec![1]);
    // Past its ack wait, A gives it up (a waiting pull gets nothing).
    assert!(batch(&a, 1, Duration::from_millis(800)).await.is_empty());
    (s, a, b)
}
