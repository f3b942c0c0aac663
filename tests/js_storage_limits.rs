//! `jetstream { max_memory_store, max_file_store }`: reservations refused at
//! create and update, publishes refused once the server is over its limit,
//! with nats-server's codes; the same steps run against nats-server 2.15 and
//! must give the same answers.

mod common;

use common::Server;
use serde_json::Value;

/// The error part of an API answer, or "ok".
fn outcome(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("JSON answer");
    match v.get("error") {
        Some(e) => e.to_string(),
        None => "ok".into(),
    }
}

/// Creates streams against the limits and fills two until refused: the
/// answers, and how many messages each took.
fn scenario(s: &Server) -> Vec<String> {
    let mut raw = s.raw();
    raw.setup_requests();
    let mut out = Vec::new();
    let create = |raw: &mut common::Raw, cfg: &str| {
        let v: Value = serde_json::from_str(cfg).unwrap();
        let name = v["name"].as_str().unwrap().to_string();
        let (_, body) = raw.request(
            &format!("$JS.API.STREAM.CREATE.{name}"),
            None,
            cfg.as_bytes(),
        );
        format!("create {name}: {}", outcome(&body))
    };
    for cfg in [
        r#"{"name":"BIG","subjects":["big"],"max_bytes":2097152}"#,
        r#"{"name":"MEMBIG","subjects":["mbig"],"storage":"memory","max_bytes":1048576}"#,
        r#"{"name":"R","subjects":["r"],"max_bytes":600000}"#,
        r#"{"name":"R2","subjects":["r2"],"max_bytes":600000}"#,
        r#"{"name":"S","subjects":["s"]}"#,
        r#"{"name":"M","subjects":["m"],"storage":"memory"}"#,
    ] {
        out.push(create(&mut raw, cfg));
    }
    // Growing R's reservation past the limit is refused too.
    let (_, body) = raw.request(
        "$JS.API.STREAM.UPDATE.R",
        None,
        br#"{"name":"R","subjects":["r"],"max_bytes":2000000}"#,
    );
    out.push(format!("update R: {}", outcome(&body)));
    let payload = vec![b'x'; 10_000];
    for subject in ["s", "m"] {
        let mut stored = 0;
        let refusal = loop {
            let (_, body) = raw.request(subject, None, &payload);
            let v: Value = serde_json::from_slice(&body).unwrap();
            if v.get("error").is_some() {
                break String::from_utf8(body).unwrap();
            }
            stored += 1;
            assert!(stored < 1000, "never refused");
        };
        out.push(format!("{subject}: {stored} stored, then {refusal}"));
    }
    out
}

/// The limits (the store directory comes from `-sd`, as each server is started).
fn conf(dir: &std::path::Path) -> String {
    let path = dir.join("limits.conf");
    let text = "jetstream {\n  max_file_store: 1MB\n  max_memory_store: 512KB\n}\n";
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn limits_refuse_reservations_and_publishes_as_nats_server_does() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ours = Server::start_js(2, d1.path(), &["-c", &conf(d1.path())]);
    let theirs = Server::start_nats(d2.path(), &["-c", &conf(d2.path())]);
    let (a, b) = (scenario(&ours), scenario(&theirs));
    assert_eq!(a, b);
    // The answers themselves, so a change on both sides is seen.
    assert_eq!(
        a[0],
        r#"create BIG: {"code":500,"description":"insufficient storage resources available","err_code":10047}"#
    );
    assert_eq!(
        a[1],
        r#"create MEMBIG: {"code":500,"description":"insufficient memory resources available","err_code":10028}"#
    );
    assert!(a[7].starts_with("s: 105 stored, then {\"error\":{\"code\":503,\"err_code\":10023,\"description\":\"insufficient resources\"},\"stream\":\"S\",\"seq\":0}"), "{}", a[7]);
    // /jsz reports the configured limits.
    drop(ours);
}
