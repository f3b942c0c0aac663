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
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Total count    =        15000]"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));

    let (ok, out, err) = bench(&[
        "request", "-s", &addr, "--msgs", "500", "--size", "16", "--pub", "2",
    ]);
    assert!(ok, "{err}");
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
