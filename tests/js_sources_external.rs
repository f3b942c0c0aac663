//! External mirrors and sources (`external.api`) end to end, read through a
//! JetStream domain of the same server (`--domain`), so every byte travels
//! as between two servers: the consumer create through the API prefix, the
//! deliveries, heartbeats and flow control. nats-server on both sides is in
//! `js_sources_interop.rs`; the request bytes are checked against nats-server's
//! in `src/js/source/remote.rs`.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{json, Value};

use common::consumers::{api, err_code};
use common::sources::*;
use common::Server;

async fn start(
    domain: &str,
) -> (
    Server,
    async_nats::Client,
    jetstream::Context,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &["--domain", domain]);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    (server, client, js, dir)
}

fn fixture(f: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/stream-configs/{f}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn send(c: &async_nats::Client, subject: &str, body: Vec<u8>) -> Value {
    let r = c.request(subject.to_string(), body.into()).await.unwrap();
    serde_json::from_slice(&r.payload).unwrap()
}

/// The `Nats-Stream-Source` header of a stored message.
fn source_header(m: &Value) -> String {
    let h = headers(m);
    h.lines()
        .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
        .unwrap_or_else(|| panic!("no source header: {h:?}"))
        .to_string()
}

#[tokio::test]
async fn the_documented_external_configs_copy_through_their_domains() {
    // sources-full.json reads SOURCE1_ORIGIN through $JS.domainA.API from
    // sequence 42, filtered to foo1.bar, and SOURCE2_ORIGIN locally.
    let (_s, c, js, _d) = start("domainA").await;
    // Subjects apart from the target's own (foo1.ext.*, foo2.ext.*).
    create(
        &c,
        json!({"name": "SOURCE1_ORIGIN", "subjects": ["foo1.bar", "foo1.x"]}),
    )
    .await;
    create(
        &c,
        json!({"name": "SOURCE2_ORIGIN", "subjects": ["foo2.bar", "foo2.y"]}),
    )
    .await;
    for i in 1..=60u64 {
        let subject = if i % 2 == 1 { "foo1.bar" } else { "foo1.x" };
        js.publish(subject, format!("a{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for i in 0..10 {
        let subject = if i % 2 == 0 { "foo2.bar" } else { "foo2.y" };
        js.publish(subject, format!("b{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let r = send(
        &c,
        "$JS.API.STREAM.CREATE.SOURCE_TARGET",
        fixture("sources-full.json"),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    // foo1.bar at 43, 45, ..., 59 (9) and foo2.bar (5).
    let i = count_when(&c, "SOURCE_TARGET", 14).await;
    let ext = i["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SOURCE1_ORIGIN")
        .unwrap()
        .clone();
    assert_eq!(
        ext["external"],
        json!({"api": "$JS.domainA.API", "deliver": ""}),
        "{i}"
    );
    assert_eq!(ext["seq"], 59, "{i}");
    assert!(ext["error"].is_null(), "{i}");
    let msgs = all(&c, "SOURCE_TARGET").await;
    let mut from_1: Vec<u64> = msgs
        .values()
        .filter(|m| m["subject"] == "foo1.bar")
        .map(origin_seq)
        .collect();
    from_1.sort();
    assert_eq!(from_1, (43..=59).step_by(2).collect::<Vec<u64>>());
    // The index name carries the API prefix's hash, as nats-server's does.
    let m = msgs.values().find(|m| m["subject"] == "foo1.bar").unwrap();
    let h = source_header(m);
    assert!(h.starts_with("SOURCE1_ORIGIN:"), "{h}");
    assert_eq!(h.split(' ').nth(2), Some("foo1.bar"), "{h}");
    assert_eq!(h.split(' ').count(), 6, "with the origin's identity: {h}");
    assert_eq!(
        msgs.values().filter(|m| m["subject"] == "foo2.bar").count(),
        5
    );

    // mirror-full.json reads MIRROR_ORIGIN through $JS.domainB.API.
    let (_s, c, js, _d) = start("domainB").await;
    create(&c, json!({"name": "MIRROR_ORIGIN", "subjects": ["mo.>"]})).await;
    for i in 1..=20 {
        js.publish(format!("mo.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let r = api(&c, "STREAM.MSG.DELETE.MIRROR_ORIGIN", json!({"seq": 5})).await;
    assert_eq!(r["success"], true, "{r}");
    let r = send(
        &c,
        "$JS.API.STREAM.CREATE.MIRROR_TARGET",
        fixture("mirror-full.json"),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    let i = count_when(&c, "MIRROR_TARGET", 19).await;
    assert_eq!(i["state"]["last_seq"], 20, "{i}");
    assert!(get(&c, "MIRROR_TARGET", 5).await.is_none());
    assert_eq!(
        get(&c, "MIRROR_TARGET", 6).await.unwrap()["subject"],
        "mo.6"
    );
}

#[tokio::test]
async fn external_links_copy_everything_through_flow_control_and_hide_their_consumers() {
    let (_s, c, js, _d) = start("hub").await;
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    // 4 MiB: more than the origin's first flow-control windows.
    let body = "x".repeat(1024);
    let mut acks = Vec::new();
    for i in 0..4000 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("X-N", i.to_string().as_str());
        let subject = format!("orig.{}", i % 7);
        acks.push(
            js.publish_with_headers(subject, h, body.clone().into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    create(
        &c,
        json!({"name": "SRC", "subjects": ["src.>"],
               "sources": [{"name": "ORIG", "external": {"api": "$JS.hub.API", "deliver": "dlv"}}]}),
    )
    .await;
    create(
        &c,
        json!({"name": "MIR", "mirror": {"name": "ORIG", "external": {"api": "$JS.hub.API"}}}),
    )
    .await;
    count_when(&c, "SRC", 4000).await;
    count_when(&c, "MIR", 4000).await;
    let origin = all(&c, "ORIG").await;
    let mirror = all(&c, "MIR").await;
    assert_eq!(origin.len(), 4000);
    for (seq, m) in &origin {
        let copy = &mirror[seq];
        for k in ["subject", "data", "time", "hdrs"] {
            assert_eq!(copy[k], m[k], "mirror seq {seq} {k}");
        }
    }
    let sourced = all(&c, "SRC").await;
    let seen = origin_seqs(&sourced);
    assert_eq!(
        seen,
        (1..=4000).collect::<Vec<u64>>(),
        "each origin message once"
    );
    for m in sourced.values() {
        let from = &origin[&origin_seq(m)];
        assert_eq!(
            (&m["subject"], &m["data"]),
            (&from["subject"], &from["data"])
        );
        assert!(headers(m).contains("X-N: "), "{m}");
    }
    // The origin's consumers are direct: not listed, not counted.
    let names = api(&c, "CONSUMER.NAMES.ORIG", Value::Null).await;
    assert_eq!(names["consumers"], json!([]), "{names}");
    let i = info(&c, "ORIG").await;
    assert_eq!(i["state"]["consumer_count"], 0, "{i}");
    assert_eq!(api(&c, "INFO", Value::Null).await["consumers"], 2);
    // Idle, the links hear heartbeats: active stays under two seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let i = info(&c, "SRC").await;
    let active = i["sources"][0]["active"].as_i64().unwrap();
    assert!((0..2_000_000_000).contains(&active), "{i}");
    assert_eq!(i["sources"][0]["lag"], 0, "{i}");
    // Deleting the targets deletes their consumers on the origin.
    api(&c, "STREAM.DELETE.SRC", Value::Null).await;
    api(&c, "STREAM.DELETE.MIR", Value::Null).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while api(&c, "INFO", Value::Null).await["consumers"] != 0 {
        assert!(Instant::now() < deadline, "the consumers stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unanswered_and_missing_origins_show_errors_and_are_retried() {
    let (_s, c, js, _d) = start("hub").await;
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    js.publish("orig.a", "1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    create(
        &c,
        json!({"name": "NOBODY", "subjects": ["nb.>"],
               "sources": [{"name": "ORIG", "external": {"api": "$JS.nobody.API"}}]}),
    )
    .await;
    create(
        &c,
        json!({"name": "LATE", "mirror": {"name": "LATER", "external": {"api": "$JS.hub.API"}}}),
    )
    .await;
    let i = info_when(&c, "NOBODY", |i| !i["sources"][0]["error"].is_null()).await;
    assert_eq!(
        i["sources"][0]["error"],
        json!({"code": 500, "err_code": 10045,
               "description": "no responders for $JS.nobody.API.CONSUMER.CREATE.ORIG"}),
        "{i}"
    );
    let i = info_when(&c, "LATE", |i| !i["mirror"]["error"].is_null()).await;
    assert_eq!(
        i["mirror"]["error"],
        json!({"code": 404, "err_code": 10059, "description": "stream not found"}),
        "{i}"
    );
    // Something answers the prefix now (a relay onto this server's API),
    // and LATER appears: both are picked up at the next retry.
    let relay = c.clone();
    let mut requests = relay.subscribe("$JS.nobody.API.>").await.unwrap();
    let forward = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let subject = m.subject.replacen("$JS.nobody.API.", "$JS.API.", 1);
            let answer = match m.headers.clone() {
                Some(h) => {
                    relay
                        .request_with_headers(subject, h, m.payload.clone())
                        .await
                }
                None => relay.request(subject, m.payload.clone()).await,
            }
            .unwrap();
            let to = m.reply.unwrap();
            match answer.headers {
                Some(h) => relay
                    .publish_with_headers(to, h, answer.payload)
                    .await
                    .unwrap(),
                None => relay.publish(to, answer.payload).await.unwrap(),
            }
        }
    });
    create(&c, json!({"name": "LATER", "subjects": ["later.>"]})).await;
    js.publish("later.a", "2".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Duration::from_secs(25);
    let both = async {
        loop {
            let (n, l) = (info(&c, "NOBODY").await, info(&c, "LATE").await);
            if n["state"]["messages"] == 1 && l["state"]["messages"] == 1 {
                return (n, l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (n, l) = tokio::time::timeout(deadline, both)
        .await
        .expect("picked up");
    assert!(n["sources"][0]["error"].is_null(), "{n}");
    assert!(l["mirror"]["error"].is_null(), "{l}");
    forward.abort();
}

#[tokio::test]
async fn an_external_origin_created_again_is_copied_again_without_duplicates() {
    let (_s, c, js, _d) = start("hub").await;
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    for i in 0..5 {
        js.publish(format!("orig.{i}"), "old".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let ext = json!({"name": "ORIG", "external": {"api": "$JS.hub.API"}});
    create(
        &c,
        json!({"name": "SRC", "subjects": ["src"], "sources": [ext.clone()]}),
    )
    .await;
    create(&c, json!({"name": "MIR", "mirror": ext})).await;
    count_when(&c, "SRC", 5).await;
    count_when(&c, "MIR", 5).await;
    api(&c, "STREAM.DELETE.ORIG", Value::Null).await;
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    for i in 0..3 {
        js.publish(format!("orig.{i}"), "new".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Noticed when the old consumer falls silent (10 s, as nats-server) and
    // the new origin refuses the old identity.
    let wait = Duration::from_secs(25);
    let done = async {
        loop {
            let (s, m) = (info(&c, "SRC").await, info(&c, "MIR").await);
            if s["state"]["messages"] == 8 && m["state"]["messages"] == 8 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(wait, done)
        .await
        .expect("copied again");
    let src = all(&c, "SRC").await;
    let bodies: Vec<String> = src
        .values()
        .map(|m| m["data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| *b == "b2xk").count(),
        5,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == "bmV3").count(),
        3,
        "{bodies:?}"
    );
    // The mirror keeps the old life and appends the new one after it.
    let mir = all(&c, "MIR").await;
    assert_eq!(
        mir.keys().copied().collect::<Vec<u64>>(),
        (1..=8).collect::<Vec<u64>>()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        info(&c, "SRC").await["state"]["messages"],
        8,
        "nothing more"
    );
}

#[tokio::test]
async fn external_sourcing_resumes_exactly_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--domain", "hub"];
    let server = Server::start_js(2, dir.path(), &args);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    let ext = json!({"name": "ORIG", "external": {"api": "$JS.hub.API"}});
    create(
        &c,
        json!({"name": "SRC", "subjects": ["src"], "sources": [ext.clone()]}),
    )
    .await;
    create(&c, json!({"name": "MIR", "mirror": ext})).await;
    publish_n(&js, "orig", 3000, 10).await;
    // Stopped while the copies are still arriving.
    assert!(server.terminate().success());
    let server = Server::start_js(2, dir.path(), &args);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    publish_n(&js, "orig", 500, 10).await;
    count_when(&c, "MIR", 3500).await;
    count_when(&c, "SRC", 3500).await;
    let seen = origin_seqs(&all(&c, "SRC").await);
    assert_eq!(
        seen,
        (1..=3500).collect::<Vec<u64>>(),
        "no gap, no duplicate"
    );
    let i = info(&c, "MIR").await;
    assert_eq!(i["state"]["last_seq"], 3500, "{i}");
}

#[tokio::test]
async fn a_mirror_answers_its_origins_direct_gets() {
    let (_s, c, js, _d) = start("hub").await;
    create(
        &c,
        json!({"name": "ORIG", "subjects": ["orig.>"], "allow_direct": true}),
    )
    .await;
    for i in 1..=10 {
        js.publish(format!("orig.{i}"), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let r = create(&c, json!({"name": "MIR", "mirror": {"name": "ORIG"}})).await;
    // Inherited from the origin's allow_direct, as nats-server does.
    assert_eq!(r["config"]["mirror_direct"], true, "{r}");
    count_when(&c, "MIR", 10).await;
    // With the origin gone, the mirror alone answers for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api(&c, "STREAM.DELETE.ORIG", Value::Null).await;
    let m = c
        .request("$JS.API.DIRECT.GET.ORIG", r#"{"seq":3}"#.into())
        .await
        .unwrap();
    let h = m.headers.unwrap();
    assert_eq!(h.get("Nats-Stream").unwrap().as_str(), "MIR");
    assert_eq!(h.get("Nats-Sequence").unwrap().as_str(), "3");
    assert_eq!(&m.payload[..], b"m3");
    let m = c
        .request("$JS.API.DIRECT.GET.ORIG.orig.7", "".into())
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"m7");
    // Turned off: nobody answers for ORIG any more.
    let mut cfg = info(&c, "MIR").await["config"].clone();
    cfg["mirror_direct"] = json!(false);
    let r = api(&c, "STREAM.UPDATE.MIR", cfg).await;
    assert!(r["error"].is_null(), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = c
        .request("$JS.API.DIRECT.GET.ORIG", r#"{"seq":3}"#.into())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), async_nats::RequestErrorKind::NoResponders, "{e}");
}

#[tokio::test]
async fn domains_map_the_api_as_nats_server_does() {
    let (s, c, js, _d) = start("hub").await;
    let i = api(&c, "INFO", Value::Null).await;
    assert_eq!(i["domain"], "hub", "{i}");
    let raw_info = c.request("$JS.hub.API.INFO", "".into()).await.unwrap();
    let text = String::from_utf8(raw_info.payload.to_vec()).unwrap();
    assert!(
        text.contains(r#""max_bytes_required":false},"domain":"hub","api":{"#),
        "{text}"
    );
    let r = send(
        &c,
        "$JS.hub.API.STREAM.CREATE.X",
        br#"{"name":"X","subjects":["x.>"]}"#.to_vec(),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert!(r.get("domain").is_none(), "not in a create's answer: {r}");
    let r = send(&c, "$JS.hub.API.STREAM.NAMES", Vec::new()).await;
    assert_eq!(r["streams"], json!(["X"]), "{r}");
    let i = send(&c, "$JS.hub.API.STREAM.INFO.X", Vec::new()).await;
    assert_eq!(i["domain"], "hub", "{i}");
    let e = c
        .request("$JS.other.API.INFO", "".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), async_nats::RequestErrorKind::NoResponders, "{e}");
    js.publish("x.1", "a".into()).await.unwrap().await.unwrap();
    // The pub ack, byte for byte.
    let mut raw = s.raw();
    raw.setup_requests();
    let (_, ack) = raw.request("x.2", None, b"b");
    assert_eq!(
        String::from_utf8(ack).unwrap(),
        r#"{"stream":"X","domain":"hub","seq":2}"#
    );
}

#[tokio::test]
async fn direct_consumers_follow_nats_server_rules() {
    let (s, c, _js, _d) = start("hub").await;
    let r = create(
        &c,
        json!({"name": "O", "subjects": ["o.>"], "max_consumers": 1}),
    )
    .await;
    let created = r["created"].as_str().unwrap().to_string();
    let mut raw = s.raw();
    raw.setup_requests();
    let cfg = |extra: Value| {
        let mut base = json!({"name": "JS_SRC_x", "deliver_subject": "dlv.S.abc",
                              "ack_policy": "none", "flow_control": true,
                              "idle_heartbeat": 1_000_000_000u64, "direct": true,
                              "inactive_threshold": 1_000_000_000u64});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        json!({"stream_name": "O", "config": base, "action": ""}).to_string()
    };
    let mut ask = |hdr: Option<&str>, body: String| {
        let (h, b) = raw.request(
            "$JS.API.CONSUMER.CREATE.O.JS_SRC_x",
            hdr.map(str::as_bytes),
            body.as_bytes(),
        );
        (
            String::from_utf8(h).unwrap(),
            serde_json::from_slice::<Value>(&b).unwrap(),
        )
    };
    let pull = json!({"deliver_subject": "", "idle_heartbeat": 0, "flow_control": false});
    let (_, r) = ask(None, cfg(pull));
    assert_eq!(err_code(&r), 10090, "{r}");
    let (_, r) = ask(None, cfg(json!({"durable_name": "JS_SRC_x"})));
    assert_eq!(err_code(&r), 10091, "{r}");
    let (_, r) = ask(
        Some("NATS/1.0\r\nNats-Required-Api-Level: 5\r\n\r\n"),
        cfg(json!({"sourcing": true})),
    );
    assert_eq!(
        r["type"],
        "io.nats.jetstream.api.v1.consumer_create_response"
    );
    assert_eq!(err_code(&r), 10185, "{r}");
    let (_, r) = ask(None, cfg(json!({"sourcing": true})));
    assert_eq!(
        r["error"]["description"], "invalid JSON: json: unknown field \"sourcing\"",
        "{r}"
    );
    let (_, r) = ask(
        Some("NATS/1.0\r\nNats-Stream-Identity: nope\r\n\r\n"),
        cfg(json!({})),
    );
    assert_eq!(err_code(&r), 10225, "{r}");
    // The right identity, or none: created, and the answer names it (the
    // hash of the creation time, as nats-server's).
    let (h, r) = ask(None, cfg(json!({})));
    assert!(r["error"].is_null(), "{r}");
    let ident = h
        .lines()
        .find_map(|l| l.strip_prefix("Nats-Stream-Identity: "))
        .unwrap_or_else(|| panic!("no identity header: {h:?}"))
        .to_string();
    assert_eq!(ident, jetcore::js::types::source::hash8(created.as_bytes()));
    let (_, r) = ask(
        Some(&format!(
            "NATS/1.0\r\nNats-Stream-Identity: {ident}\r\n\r\n"
        )),
        cfg(json!({})),
    );
    assert!(r["error"].is_null(), "{r}");
    // Not listed or counted, and not held against max_consumers.
    let names = api(&c, "CONSUMER.NAMES.O", Value::Null).await;
    assert_eq!(names["consumers"], json!([]), "{names}");
    assert_eq!(info(&c, "O").await["state"]["consumer_count"], 0);
    let r = api(
        &c,
        "CONSUMER.CREATE.O.D",
        json!({"stream_name": "O", "config": {"durable_name": "D", "ack_policy": "explicit"}}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    // Nobody listens on its deliver subject: gone after its threshold.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = api(&c, "CONSUMER.INFO.O.JS_SRC_x", Value::Null).await;
        if err_code(&r) == 10014 {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
