//! Streams compressed at rest (`compression: "s2"`, issue 14): sealed
//! segments are packed (`<first>.sz`, the segment as written removed), read
//! back whole through gets, an ordered consumer and restarts (SIGTERM,
//! kill -9), erased in place (the packed copy holds the erased bytes no
//! more), and take less disk than the same stream uncompressed.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;

use common::Server;

const N: u64 = 6000;
const ARGS: [&str; 2] = ["--segment_bytes", "65536"];
/// Erased, in a packed segment.
const ERASED: u64 = 5;

fn event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"evt-{i:06}-marker","kind":"page_view","user":"user-{}","path":"/products/{}","ok":true}}"#,
        i % 113,
        i % 17
    )
    .into_bytes()
}

fn files(dir: &Path, stream: &str, ext: &str) -> Vec<PathBuf> {
    let d = dir.join("jetstream/streams").join(stream);
    let mut out: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn bytes_of(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

async fn create(js: &jetstream::Context, name: &str, compression: stream::Compression) {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        compression: Some(compression),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn publish(js: &jetstream::Context, name: &str) {
    for chunk in (1..=N).collect::<Vec<_>>().chunks(500) {
        let mut acks = Vec::new();
        for i in chunk {
            let subject = format!("{name}.{}", i % 7);
            acks.push(js.publish(subject, event(*i).into()).await.unwrap());
        }
        for a in acks {
            a.await.unwrap();
        }
    }
}

/// Every message but the erased one, through gets and an ordered consumer.
async fn check(js: &jetstream::Context, erased: bool) {
    let s = js.get_stream("Z").await.unwrap();
    for i in (1..=N).step_by(41).chain([1, ERASED, N]) {
        let got = s.get_raw_message(i).await;
        if erased && i == ERASED {
            assert!(got.is_err(), "seq {i} was erased");
            continue;
        }
        assert_eq!(&got.unwrap().payload[..], &event(i)[..], "seq {i}");
    }
    let ordered = s
        .create_consumer(pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = ordered.messages().await.unwrap();
    for i in (1..=N).filter(|i| !erased || *i != ERASED) {
        let m = tokio::time::timeout(Duration::from_secs(20), msgs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let seq = m.info().unwrap().stream_sequence;
        assert_eq!((seq, &m.payload[..]), (i, &event(i)[..]));
    }
}

/// Waits until the sealed segments of `stream` are packed: every segment
/// file but the last (the one being written) is a `.sz`.
async fn packed(dir: &Path, stream: &str) -> Vec<PathBuf> {
    let t0 = Instant::now();
    loop {
        let (sz, seg) = (files(dir, stream, "sz"), files(dir, stream, "seg"));
        if sz.len() > 3 && seg.len() == 1 && seg[0] > *sz.last().unwrap() {
            return sz;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{sz:?} {seg:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_compressed_stream_reads_back_whole_and_takes_less_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &ARGS);
    let js = jetstream::new(server.client().await);
    create(&js, "Z", stream::Compression::S2).await;
    create(&js, "P", stream::Compression::None).await;
    publish(&js, "Z").await;
    publish(&js, "P").await;
    let sz = packed(dir.path(), "Z").await;
    assert!(
        files(dir.path(), "P", "sz").is_empty(),
        "only s2 streams pack"
    );
    // The same messages take less than half the disk packed.
    let plain = files(dir.path(), "P", "seg");
    let (a, b) = (bytes_of(&sz), bytes_of(&plain[..plain.len() - 1]));
    assert!(a * 2 < b, "packed {a} bytes, as written {b}");
    check(&js, false).await;

    // An erase in a packed segment: the packed copy no longer holds it.
    let marker = |i: u64| format!("evt-{i:06}-marker").into_bytes();
    let holds = |path: &Path, i: u64| {
        let raw = jetcore::js::store::packed::read_whole(path).unwrap();
        raw.windows(17).any(|w| w == &marker(i)[..])
    };
    assert!(holds(&sz[0], ERASED) && holds(&sz[0], ERASED + 1));
    let s = js.get_stream("Z").await.unwrap();
    assert!(s.delete_message(ERASED).await.unwrap());
    assert!(!holds(&sz[0], ERASED) && holds(&sz[0], ERASED + 1));
    check(&js, true).await;
    assert!(server.terminate().success());

    // Restarts read the packed segments (their index files say where).
    let server = Server::start_js(1, dir.path(), &ARGS);
    let js = jetstream::new(server.client().await);
    check(&js, true).await;
    let after = files(dir.path(), "Z", "sz");
    assert!(sz.iter().all(|p| after.contains(p)), "{after:?}");
    server.kill9();
    // Without index files, the packed segments are scanned instead.
    for idx in files(dir.path(), "Z", "idx") {
        std::fs::remove_file(idx).unwrap();
    }
    let server = Server::start_js(1, dir.path(), &ARGS);
    let js = jetstream::new(server.client().await);
    check(&js, true).await;
    let mut s = js.get_stream("Z").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.last_sequence), (N - 1, N));
    server.kill9();

    // A sealed segment left as written (a crash before it was packed) is
    // packed at the next start.
    let sz = files(dir.path(), "Z", "sz");
    let mut raw = jetcore::js::store::packed::read_whole(&sz[1]).unwrap();
    raw.resize(raw.len().next_multiple_of(4096), 0);
    let seg = sz[1].with_extension("seg");
    std::fs::write(&seg, &raw).unwrap();
    std::fs::remove_file(&sz[1]).unwrap();
    let server = Server::start_js(1, dir.path(), &ARGS);
    let t0 = Instant::now();
    while !sz[1].exists() || seg.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "not packed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&jetstream::new(server.client().await), true).await;
}
