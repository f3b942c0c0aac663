//! Mirrors and sources under stress: a restart and a kill -9 in the middle
//! of heavy sourcing (each link resumes exactly after the last origin
//! sequence it stored: no gap, no duplicate), and chains and fans of links
//! with origins and targets spread over 1, 2 and 4 shards.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};

use common::sources::*;
use common::Server;

/// Publishes `n` messages to `subject` until one fails (the server may be
/// killed meanwhile); returns how many were acknowledged.
async fn publish_until_gone(js: &jetstream::Context, subject: &str, n: usize) -> usize {
    let mut acked = 0;
    let mut acks = Vec::new();
    for i in 0..n {
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            js.publish(subject.to_string(), format!("m{i}").into()),
        )
        .await;
        match sent {
            Ok(Ok(a)) => acks.push(a),
            _ => return acked,
        }
        if acks.len() >= 128 || i + 1 == n {
            for a in acks.drain(..) {
                match tokio::time::timeout(Duration::from_secs(2), a).await {
                    Ok(Ok(_)) => acked += 1,
                    _ => return acked,
                }
            }
        }
    }
    acked
}

/// The target equals the origin message by message: a mirror by sequence,
/// subject, data and time; a source by the origin sequences in its
/// `Nats-Stream-Source` headers, in order, each once.
async fn check_copies(c: &async_nats::Client) {
    let o = all(c, "O").await;
    let m = all(c, "M").await;
    assert_eq!(o.len(), m.len(), "mirror holds every origin message");
    for (seq, om) in &o {
        let mm = m.get(seq).unwrap_or_else(|| panic!("mirror lacks {seq}"));
        for f in ["subject", "data", "time"] {
            assert_eq!(om[f], mm[f], "{f} of {seq}");
        }
    }
    let s = all(c, "S").await;
    let got: Vec<u64> = s.values().map(origin_seq).collect();
    let want: Vec<u64> = o.keys().copied().collect();
    assert_eq!(
        got, want,
        "the source copied each origin message once, in order"
    );
}

async fn setup(c: &async_nats::Client) {
    create(c, json!({"name": "O", "subjects": ["o"]})).await;
    create(
        c,
        json!({"name": "S", "subjects": ["s"], "sources": [{"name": "O"}]}),
    )
    .await;
    create(c, json!({"name": "M", "mirror": {"name": "O"}})).await;
}

async fn wait_caught_up(c: &async_nats::Client) {
    let o = info(c, "O").await;
    let n = o["state"]["messages"].as_u64().unwrap();
    let last = o["state"]["last_seq"].as_u64().unwrap();
    info_when(c, "M", |i| i["state"]["last_seq"].as_u64() == Some(last)).await;
    count_when(c, "S", n).await;
}

async fn survives(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let c = server.client().await;
    setup(&c).await;
    let js = jetstream::new(c.clone());
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_until_gone(&js, "o", 20_000).await })
    };
    // Stop in the middle of copying.
    info_when(&c, "S", |i| {
        i["state"]["messages"].as_u64().unwrap_or(0) > 2_000
    })
    .await;
    if kill {
        server.kill9();
    } else {
        assert!(server.terminate().success());
    }
    let _ = publisher.await;
    let server = Server::start_js(2, dir.path(), &[]);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    // More after the restart, then everything must be there exactly once.
    assert_eq!(publish_until_gone(&js, "o", 500).await, 500);
    wait_caught_up(&c).await;
    check_copies(&c).await;
    // And once more from the saved positions alone.
    assert!(server.terminate().success());
    let server = Server::start_js(2, dir.path(), &[]);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    assert_eq!(publish_until_gone(&js, "o", 10).await, 10);
    wait_caught_up(&c).await;
    check_copies(&c).await;
}

#[tokio::test]
async fn sourcing_resumes_exactly_after_sigterm() {
    survives(false).await;
}

#[tokio::test]
async fn sourcing_resumes_exactly_after_kill_9() {
    survives(true).await;
}

#[tokio::test]
async fn positions_survive_when_the_copies_are_gone() {
    // The target's copies are removed (limits, purge) before a restart: it
    // must not copy them again.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &["--segment_bytes", "4096"]);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    create(&c, json!({"name": "O", "subjects": ["o"]})).await;
    create(
        &c,
        json!({"name": "S", "subjects": ["s"], "max_msgs": 10, "sources": [{"name": "O"}]}),
    )
    .await;
    publish_n(&js, "o", 300, 0).await;
    info_when(&c, "S", |i| i["state"]["last_seq"] == 300).await;
    let r = common::consumers::api(&c, "STREAM.PURGE.S", Value::Null).await;
    assert_eq!(r["success"], true);
    server.kill9();
    let server = Server::start_js(2, dir.path(), &["--segment_bytes", "4096"]);
    let c = server.client().await;
    let js = jetstream::new(c.clone());
    publish_n(&js, "o", 3, 0).await;
    let i = info_when(&c, "S", |i| i["state"]["last_seq"] == 303).await;
    assert_eq!(i["state"]["messages"], 3, "only the new ones: {i}");
    let s = all(&c, "S").await;
    assert_eq!(
        s.values().map(origin_seq).collect::<Vec<_>>(),
        vec![301, 302, 303]
    );
}

#[tokio::test]
async fn chains_and_fans_over_one_two_and_four_shards() {
    for shards in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_js(shards, dir.path(), &[]);
        let c = server.client().await;
        let js = jetstream::new(c.clone());
        // 16 origins into one target.
        let sources: Vec<Value> = (0..16).map(|i| json!({"name": format!("O{i}")})).collect();
        for i in 0..16 {
            create(
                &c,
                json!({"name": format!("O{i}"), "subjects": [format!("o{i}.>")]}),
            )
            .await;
        }
        create(
            &c,
            json!({"name": "T", "subjects": ["t"], "sources": sources}),
        )
        .await;
        // One origin into 8 mirrors, a mirror of a mirror, a source of a
        // sourced stream.
        for i in 0..8 {
            create(
                &c,
                json!({"name": format!("M{i}"), "mirror": {"name": "O0"}}),
            )
            .await;
        }
        create(&c, json!({"name": "MM", "mirror": {"name": "M3"}})).await;
        create(
            &c,
            json!({"name": "T2", "subjects": ["t2"], "sources": [{"name": "T"}]}),
        )
        .await;
        for i in 0..16 {
            publish_n(&js, &format!("o{i}"), 40, 2).await;
        }
        count_when(&c, "T", 640).await;
        count_when(&c, "T2", 640).await;
        let o0 = all(&c, "O0").await;
        for m in (0..8).map(|i| format!("M{i}")).chain(["MM".to_string()]) {
            count_when(&c, &m, 40).await;
            let mm = all(&c, &m).await;
            let same = |a: &BTreeMap<u64, Value>, b: &BTreeMap<u64, Value>| {
                a.iter().all(|(k, v)| {
                    b.get(k)
                        .is_some_and(|w| w["data"] == v["data"] && w["time"] == v["time"])
                })
            };
            assert!(same(&o0, &mm), "{m} on {shards} shards");
        }
        // Every origin's 40 arrived once each, in its order.
        let t = all(&c, "T").await;
        let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for m in t.values() {
            let h = headers(m);
            let v = h
                .lines()
                .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
                .unwrap();
            let f: Vec<&str> = v.split(' ').collect();
            per.entry(f[0].to_string())
                .or_default()
                .push(f[1].parse().unwrap());
        }
        assert_eq!(per.len(), 16);
        for (o, seqs) in per {
            assert_eq!(
                seqs,
                (1..=40).collect::<Vec<u64>>(),
                "{o} on {shards} shards"
            );
        }
    }
}
