//! Interest and workqueue retention, and the counts consumers report (num_pending, ack pending) as messages come and go.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_retention` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    consumer::{pull, AckPolicy, PullConsumer},
    stream::{self, RetentionPolicy},
    AckKind,
};
use serde_json::{json, Value};

use common::consumers::*;

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

/// A limits stream updated to interest retention, as nats-server does it: with no
/// consumer every message goes; otherwise what every consumer taking it acked goes
/// and what no consumer takes stays. The update's answer already shows it.
#[tokio::test]
async fn a_stream_made_interest_drops_what_no_consumer_needs() {
    for shards in [1, 2] {
        let e = env(shards).await;
        let s = e.js.create_stream(stream_cfg("L", &["l.>"])).await.unwrap();
        for subject in ["l.a", "l.b", "l.a", "l.b"] {
            publish(&e.js, subject, "x").await;
        }
        let mut only_a = durable("A");
        only_a.filter_subject = "l.a".into();
        let a = s.create_consumer(only_a).await.unwrap();
        let first = fetch(&a, 1).await.remove(0);
        first.double_ack().await.unwrap();
        let mut cfg = stream_cfg("L", &["l.>"]);
        cfg.retention = RetentionPolicy::Interest;
        let info = e.js.update_stream(cfg).await.unwrap();
        // Gone: the l.a that A acked (1).
        let st = &info.state;
        assert_eq!(
            (st.messages, st.first_sequence, st.last_sequence),
            (3, 2, 4),
            "{shards} shards"
        );
        let mut cfg = stream_cfg("N", &["n.>"]);
        e.js.create_stream(cfg.clone()).await.unwrap();
        publish(&e.js, "n.a", "x").await;
        cfg.retention = RetentionPolicy::Interest;
        let st = e.js.update_stream(cfg).await.unwrap().state;
        assert_eq!((st.messages, st.first_sequence), (0, 2), "{shards} shards");
    }
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
