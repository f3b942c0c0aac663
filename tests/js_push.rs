//! Push and ordered consumers: delivery once someone listens, deliver groups, idle heartbeats and flow control on the wire, ordered replay, replay original and the rate limit.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_push` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, push, AckPolicy},
    stream::{self},
    Message,
};

use serde_json::json;

use common::consumers::*;
use common::Server;

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
