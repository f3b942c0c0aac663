//! jetcore-bench against a real jetcore: every mode runs briefly and its counts
//! add up; the compare command runs against jetcore alone with a tiny count.

mod common;

use std::process::Command;

use common::Server;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jetcore-bench"))
        .args(args)
        .output()
        .expect("run jetcore-bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count_in(line_prefix: &str, report: &str) -> Vec<u64> {
    report
        .lines()
        .filter(|l| l.trim_start().starts_with(line_prefix))
        .filter_map(|l| {
            l.rsplit('(')
                .next()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn every_mode_completes_and_counts_add_up() {
    let server = Server::start(2);
    let addr = format!("127.0.0.1:{}", server.port);
    let (ok, out, err) = bench(&[
        "pub", "-s", &addr, "--msgs", "20000", "--size", "16", "--pub", "2",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Pub stats: "), "{out}");
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 20000, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let hgrm = dir.path().join("l.hgrm");
    let json = dir.path().join("s.json");
    let svg = dir.path().join("l.svg");
    let (ok, out, err) = bench(&[
        "pubsub",
        "-s",
        &addr,
        "--msgs",
        "5000",
        "--size",
        "16",
        "--sub",
        "3",
        "--rate",
        "20000",
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // Each of the 3 subscribers received all 5000 messages.
    assert_eq!(count_in("[", &out), vec![5000, 5000, 5000], "{out}");
    assert!(out.contains("Latency (µs): p50"), "{out}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["pub_msgs"], 5000);
    assert_eq!(summary["sub_msgs"], 15000);
    assert_eq!(summary["latency"]["count"], 15000);
    // The record says how the load generator ran: unpinned unless asked.
    assert_eq!(summary["pinned_workers"], false);
    assert!(summary["command"].as_str().unwrap().contains("pubsub"));
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Total count    =        15000]"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));

    let (ok, out, err) = bench(&[
        "request",
        "-s",
        &addr,
        "--msgs",
        "500",
        "--size",
        "16",
        "--pub",
        "2",
        "--pin-workers",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["pinned_workers"], true);
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 500, "{out}");
    assert!(out.contains("(500 samples)"), "{out}");
}

#[test]
fn failures_are_reported_with_nonzero_exit() {
    let server = Server::start(1);
    let addr = format!("127.0.0.1:{}", server.port);
    // No JetStream on this server (no -js): a clear error, not a hang.
    let (ok, _, err) = bench(&[
        "js",
        "pub",
        "-s",
        &addr,
        "--msgs",
        "10",
        "--duration",
        "10s",
    ]);
    assert!(!ok);
    assert!(err.contains("JetStream"), "{err}");
    // A request nobody answers.
    let (ok, _, err) = bench(&["request", "-s", &addr, "--msgs", "10", "--responders", "0"]);
    assert!(!ok);
    assert!(err.contains("no responders"), "{err}");
    // Nothing listening.
    let (ok, _, err) = bench(&["pub", "-s", "127.0.0.1:1", "--msgs", "10"]);
    assert!(!ok);
    assert!(err.contains("cannot connect"), "{err}");
    // js consume on a server without JetStream: the stream cannot be made.
    let (ok, _, err) = bench(&[
        "js",
        "consume",
        "-s",
        &addr,
        "--msgs",
        "10",
        "--duration",
        "10s",
    ]);
    assert!(!ok);
    assert!(err.contains("JetStream"), "{err}");
    // A subscriber whose messages never come is bounded by --duration.
    let (ok, _, err) = bench(&["sub", "-s", &addr, "--msgs", "10", "--duration", "500ms"]);
    assert!(!ok);
    assert!(err.contains("did not finish"), "{err}");
}

#[test]
fn compare_runs_against_jetcore_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let (ok, out, err) = bench(&[
        "compare",
        "--rounds",
        "1",
        "--msgs",
        "2000",
        "--scenarios",
        "ceiling,pubsub16,reqrep",
        "--out",
        out_dir,
        "--jetcore",
        env!("CARGO_BIN_EXE_jetcore"),
        "--nats-server",
        "none",
    ]);
    assert!(ok, "{out}\n{err}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pubsub16.json")).unwrap()).unwrap();
    assert!(record["jetcore"]["msgs_per_sec"].as_f64().unwrap() > 0.0);
    for field in ["machine", "kernel", "commit", "command", "date"] {
        assert!(
            record[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    assert!(std::fs::read_to_string(dir.path().join("SUMMARY.md"))
        .unwrap()
        .contains("| pubsub16 |"));
    assert!(dir.path().join("reqrep.svg").exists());
}

#[test]
fn jetstream_and_kv_modes_count_what_they_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    // js pub: every publish acknowledged.
    let (ok, out, err) = bench(&[
        "js", "pub", "-s", &addr, "--msgs", "3000", "--pub", "2", "--window", "32", "bench.js",
    ]);
    assert!(ok, "{err}");
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 3000, "{out}");
    // js get: every get answered (with the preloaded message), latency recorded.
    let (ok, out, err) = bench(&[
        "js", "get", "-s", &addr, "--msgs", "2000", "--pub", "2", "--window", "16", "bench.js",
    ]);
    assert!(ok, "{err}");
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 2000, "{out}");
    assert!(out.contains("(2000 samples)"), "{out}");
    // kv put and kv get over 50 keys.
    let (ok, out, err) = bench(&[
        "kv", "put", "-s", &addr, "--msgs", "1000", "--keys", "50", "--window", "16", "--pub", "2",
    ]);
    assert!(ok, "{err}");
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 1000, "{out}");
    let (ok, out, err) = bench(&[
        "kv", "get", "-s", &addr, "--msgs", "1000", "--keys", "50", "--window", "16", "--pub", "2",
    ]);
    assert!(ok, "{err}");
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 1000, "{out}");
    // Every run removed its stream.
    let mut raw = server.raw();
    raw.setup_requests();
    let (_, names) = raw.request("$JS.API.STREAM.NAMES", None, b"");
    assert!(String::from_utf8(names).unwrap().contains(r#""total":0"#));
}

/// `js consume` on a stream that is not there (`--no-preload` reads an existing
/// stream): the consumer cannot be created, and the run says so.
#[test]
fn js_consume_without_the_stream_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    for mode in ["pull", "push"] {
        let (ok, _, err) = bench(&[
            "js",
            "consume",
            "-s",
            &addr,
            "--mode",
            mode,
            "--no-preload",
            "--stream",
            "MISSING",
            "--msgs",
            "10",
            "--duration",
            "10s",
        ]);
        assert!(!ok);
        assert!(err.contains("cannot create consumer"), "{err}");
    }
}

/// Runs `js consume` with `args` against a fresh jetcore (or, to check these
/// tests against another server, the one at `$BENCH_HARNESS_SERVER`, e.g. a
/// nats-server started with `-js`), checks that `total` messages were consumed
/// and that the run removed its stream; returns the report and its JSON summary.
fn consume_run(args: &[&str], total: u64) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let external = std::env::var("BENCH_HARNESS_SERVER").ok();
    let server = external
        .is_none()
        .then(|| Server::start_js(2, dir.path(), &[]));
    let addr = external.unwrap_or_else(|| format!("127.0.0.1:{}", server.as_ref().unwrap().port));
    let json = dir.path().join("summary.json");
    // A stream of its own, so runs can share an external server.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stream = format!("JC{}_{n}", std::process::id());
    let subject = format!("jc.{}.{n}", std::process::id());
    let mut full = vec!["js", "consume", "-s", &addr, "--duration", "30s"];
    full.extend_from_slice(&["--json", json.to_str().unwrap(), "--stream", &stream]);
    full.extend_from_slice(args);
    full.push(&subject);
    let (ok, out, err) = bench(&full);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Sub stats: "), "{out}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["sub_msgs"], total, "{out}");
    if let Some(server) = server {
        let mut raw = server.raw();
        raw.setup_requests();
        let (_, names) = raw.request("$JS.API.STREAM.NAMES", None, b"");
        assert!(String::from_utf8(names).unwrap().contains(r#""total":0"#));
    }
    (out, summary)
}

#[test]
fn js_consume_pull_acks_every_message() {
    // Batches of 100 with a new request at 50: many requests per run.
    let (out, _) = consume_run(
        &["--mode", "pull", "--msgs", "20000", "--batch", "100"],
        20000,
    );
    assert!(!out.contains("Latency"), "{out}");
    // Two clients share the durable and stop together at the total.
    let (out, _) = consume_run(
        &["--mode", "pull", "--msgs", "20000", "--clients", "2"],
        20000,
    );
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 20000, "{out}");
    consume_run(&["--mode", "pull", "--msgs", "5000", "--ack", "none"], 5000);
}

#[test]
fn js_consume_push_answers_flow_control() {
    // 64 KiB messages: 20 MiB passes the flow-control window several times.
    consume_run(&["--mode", "push", "--msgs", "320", "--size", "65536"], 320);
    // Two clients in a deliver group share the durable.
    let (out, _) = consume_run(
        &["--mode", "push", "--msgs", "10000", "--clients", "2"],
        10000,
    );
    assert_eq!(count_in("[", &out).iter().sum::<u64>(), 10000, "{out}");
}

#[test]
fn js_consume_ordered_replays_the_stream() {
    // Every ordered consumer reads the whole stream, in order, without a reset.
    let (out, summary) = consume_run(
        &["--mode", "ordered", "--msgs", "20000", "--clients", "2"],
        40000,
    );
    assert_eq!(count_in("[", &out), vec![20000, 20000], "{out}");
    assert!(
        out.contains("Ordered consumer resets (sequence gaps): 0"),
        "{out}"
    );
    assert_eq!(summary["consumer_resets"], 0);
    // Large messages: flow control paces the replay.
    let (out, _) = consume_run(
        &["--mode", "ordered", "--msgs", "400", "--size", "65536"],
        400,
    );
    assert!(out.contains("resets (sequence gaps): 0"), "{out}");
}

#[test]
fn js_consume_latency_at_a_rate() {
    let (out, summary) = consume_run(&["--msgs", "4000", "--rate", "4000"], 4000);
    assert!(out.contains("(4000 samples)"), "{out}");
    assert_eq!(summary["pub_msgs"], 4000);
    assert_eq!(summary["latency"]["count"], 4000);
    // Published at 4000/s for about a second, consumed as it came.
    let rate = summary["msgs_per_sec"].as_f64().unwrap();
    assert!((3000.0..4500.0).contains(&rate), "{summary}");
}
