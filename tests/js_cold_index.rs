//! A stream whose index is mostly on disk (issue 14): small segments, so the
//! sealed ones leave their entries in their index files, and more messages
//! than the shard's cache of decoded entries (`--index_cache_bytes`) holds.
//! Read back through gets, the last message per subject, an ordered consumer
//! from the start, a purge by subject and a KV bucket, before and after
//! restarts (SIGTERM, kill -9).

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, kv, stream};
use futures::StreamExt;

use common::Server;

const N: u64 = 40_000;
const SUBJECTS: u64 = 50;
/// Published after the first restart.
const MORE: u64 = 8_000;
/// Small segments, and a cache of decoded index chunks far smaller than the
/// stream's (about 40 chunks): reads evict all the time.
const ARGS: [&str; 4] = ["--segment_bytes", "65536", "--index_cache_bytes", "200000"];

fn body(i: u64) -> Vec<u8> {
    format!("ev-{i}-{}", "x".repeat((i % 13) as usize)).into_bytes()
}

/// Sequence `i` was purged (subject ev.7).
fn purged(i: u64, after_purge: bool) -> bool {
    after_purge && i % SUBJECTS == 7
}

/// Checks the stream holds messages 1..=n (less ev.7 up to N after the purge).
async fn check(js: &jetstream::Context, after_purge: bool, n: u64) {
    let mut s = js.get_stream("E").await.unwrap();
    let info = s.info().await.unwrap();
    let expect = n - if after_purge { N / SUBJECTS } else { 0 };
    assert_eq!((info.state.messages, info.state.last_sequence), (expect, n));
    for i in (1..=n).step_by(97).chain([N / 2, N - 1, N, n]) {
        let got = s.get_raw_message(i).await;
        if purged(i, after_purge) && i <= N {
            assert!(got.is_err(), "seq {i} was purged");
            continue;
        }
        let m = got.unwrap();
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            (format!("ev.{}", i % SUBJECTS).as_str(), &body(i)[..]),
            "seq {i}"
        );
    }
    // The last of a subject, and the first from a sequence on.
    let m = s.get_last_raw_message_by_subject("ev.3").await.unwrap();
    assert_eq!(m.sequence, n - n % SUBJECTS + 3 - SUBJECTS);
    let m = s.get_first_raw_message_by_subject("ev.11", 20_000).await;
    assert_eq!(m.unwrap().sequence, 20_011);
    // An ordered consumer from the start reads every message, in order.
    let ordered = s
        .create_consumer(pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = ordered.messages().await.unwrap();
    let mut got = 0;
    for i in (1..=n).filter(|i| !purged(*i, after_purge) || *i > N) {
        let m = tokio::time::timeout(Duration::from_secs(20), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let seq = m.info().unwrap().stream_sequence;
        assert_eq!((seq, &m.payload[..]), (i, &body(i)[..]));
        got += 1;
    }
    assert_eq!(got, expect);
}

async fn check_kv(js: &jetstream::Context) {
    let kv = js.get_key_value("K").await.unwrap();
    for k in (0..3000).step_by(7) {
        let v = kv.get(format!("k{k}")).await.unwrap().unwrap();
        assert_eq!(&v[..], format!("v2-{k}").as_bytes(), "key {k}");
    }
    assert_eq!(kv.status().await.unwrap().values(), 3000);
}

#[tokio::test]
async fn a_stream_mostly_on_disk_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &ARGS);
    let js = jetstream::new(server.client().await);
    js.create_stream(stream::Config {
        name: "E".into(),
        subjects: vec!["ev.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    publish(&js, 1..=N).await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "K".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for round in 1..=2 {
        for k in 0..3000 {
            kv.put(format!("k{k}"), format!("v{round}-{k}").into())
                .await
                .unwrap();
        }
    }
    check(&js, false, N).await;
    check_kv(&js).await;
    let s = js.get_stream("E").await.unwrap();
    assert_eq!(s.purge().filter("ev.7").await.unwrap().purged, N / SUBJECTS);
    check(&js, true, N).await;
    assert!(server.terminate().success());

    // After a clean restart the segments' entries stay on disk.
    let server = Server::start_js(1, dir.path(), &ARGS);
    let line = server
        .startup_log
        .iter()
        .find(|l| l.contains("Restored 39200 messages for stream 'E'"))
        .unwrap();
    // "... read 0 of 27 segments, the rest from their index files, 9 of
    // them whole from their summaries; entries of 27 left on disk"
    let number_after = |marker: &str| -> u64 {
        let rest = line.split(marker).nth(1).unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let (cold, total) = (number_after("entries of "), number_after(" of "));
    // Every segment's, the last one's (still written to) included.
    assert!(cold > 10 && cold == total, "{line}");
    // The sealed segments of messages alone (before the KV bucket and the
    // purge wrote other records) are taken without reading their records.
    assert!(number_after("index files, ") > 5, "{line}");
    let js = jetstream::new(server.client().await);
    check(&js, true, N).await;
    check_kv(&js).await;
    // More messages: the last segment's new entries, then new segments.
    publish(&js, N + 1..=N + MORE).await;
    check(&js, true, N + MORE).await;
    // Every chunk read (with DMA for gets and consumers) passed its checks.
    no_damage(dir.path());
    server.kill9();

    let server = Server::start_js(1, dir.path(), &ARGS);
    let js = jetstream::new(server.client().await);
    check(&js, true, N + MORE).await;
    check_kv(&js).await;
    no_damage(dir.path());
}

/// No index file was found damaged when read (`<first>.idx.bad`).
fn no_damage(dir: &std::path::Path) {
    let streams = dir.join("jetstream/streams");
    for s in std::fs::read_dir(streams).unwrap() {
        for f in std::fs::read_dir(s.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".bad"), "{name}");
        }
    }
}

async fn publish(js: &jetstream::Context, seqs: std::ops::RangeInclusive<u64>) {
    let mut acks = Vec::new();
    let last = *seqs.end();
    for i in seqs {
        let subject = format!("ev.{}", i % SUBJECTS);
        acks.push(js.publish(subject, body(i).into()).await.unwrap());
        if acks.len() == 512 || i == last {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
}
