//! Durable consumers across restarts: SIGTERM, kill -9, and start positions past the end.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_consumer_restart` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, DeliverPolicy, PullConsumer},
};

use common::consumers::*;
use common::Server;

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
