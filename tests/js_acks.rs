//! Acknowledgements and redelivery: +ACK, double ack, -NAK with delay, +WPI, +TERM, ack all, backoff, max_deliver, max_ack_pending, sampled acks.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_acks` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    consumer::{pull, AckPolicy},
    AckKind,
};

use serde_json::{json, Value};

use common::consumers::*;

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
