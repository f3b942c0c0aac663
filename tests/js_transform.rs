//! A stream's own `subject_transform` (applied before anything else) and
//! `republish` (a copy of each stored message, with its place in the stream,
//! sent on another subject). The bytes expected here are what nats-server
//! 2.15.1 sends for the same requests; the tests pass against it too
//! (`JETCORE_TEST_SERVER=nats-server`).

mod common;

use serde_json::{json, Value};

use common::consumers::{api, raw_json};
use common::sources::*;
use common::{Server, SHARD_COUNTS};

/// The config errors, exactly as nats-server gives them.
#[test]
fn bad_transforms_and_republish_settings_get_nats_server_s_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut raw = server.raw();
    raw.setup_requests();
    let cases = [
        (
            json!({"name": "X1", "subjects": ["a.>"],
                   "subject_transform": {"src": "a.*.>", "dest": "b.$2.>"}}),
            r#"{"code":400,"err_code":10156,"description":"stream transform: invalid mapping destination: wildcard index out of range in $2: [2]"}"#,
        ),
        (
            json!({"name": "X2", "subjects": ["b.>"],
                   "subject_transform": {"src": "b..x", "dest": "c.>"}}),
            r#"{"code":400,"err_code":10155,"description":"stream transform source: invalid subject b..x"}"#,
        ),
        (
            json!({"name": "X3", "subjects": ["c.>"],
                   "subject_transform": {"src": "c.>", "dest": "d.{{nope(1)}}"}}),
            r#"{"code":400,"err_code":10156,"description":"stream transform: invalid mapping destination: unknown function in {{nope(1)}}"}"#,
        ),
        (
            json!({"name": "X4", "subjects": ["d.>"], "republish": {"src": "d.>", "dest": "d.x.>"}}),
            r#"{"code":500,"err_code":10052,"description":"stream configuration for republish destination forms a cycle"}"#,
        ),
        (
            json!({"name": "X5", "subjects": ["e.>"], "republish": {"src": "e.*", "dest": "r.$2"}}),
            r#"{"code":500,"err_code":10052,"description":"stream configuration for republish with transform from 'e.*' to 'r.$2' not valid"}"#,
        ),
    ];
    for (cfg, want) in cases {
        let name = cfg["name"].as_str().unwrap().to_string();
        let r = raw_json(
            &mut raw,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &cfg.to_string(),
        );
        let want: Value = serde_json::from_str(want).unwrap();
        assert_eq!(r["error"], want, "{name}");
    }
    // Defaults: an empty republish source is `>`; `>` to `>` follows the
    // transform of the stream's one subject.
    let r = raw_json(
        &mut raw,
        "$JS.API.STREAM.CREATE.X6",
        r#"{"name":"X6","subjects":["g.>"],"subject_transform":{"src":"g.>","dest":"h.>"},
            "republish":{"src":">","dest":">"}}"#,
    );
    assert_eq!(
        r["config"]["republish"],
        json!({"src": "h.>", "dest": "h.>"})
    );
    let r = raw_json(
        &mut raw,
        "$JS.API.STREAM.CREATE.X7",
        r#"{"name":"X7","subjects":["f.>"],"republish":{"dest":"rf.>"}}"#,
    );
    assert_eq!(
        r["config"]["republish"],
        json!({"src": ">", "dest": "rf.>"})
    );
}

#[tokio::test]
async fn the_subject_transform_renames_before_anything_else() {
    for shards in SHARD_COUNTS {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_js(shards, dir.path(), &[]);
        let c = server.client().await;
        let cfg = json!({"name": "T", "subjects": ["in.*.*"],
                         "subject_transform": {"src": "in.*.*",
                                               "dest": "out.{{wildcard(2)}}.{{left(1,3)}}"}});
        create(&c, cfg).await;
        let ack = c.request("in.abcdef.k", "v".into()).await.unwrap();
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
        assert_eq!(ack["seq"], 1, "{ack}");
        // The expectation headers see the new subject already.
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Expected-Last-Subject-Sequence", "1");
        let ack = c
            .request_with_headers("in.abcxyz.k", h, "w".into())
            .await
            .unwrap();
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
        assert_eq!(ack["seq"], 2, "{ack}");
        let m = get(&c, "T", 2).await.unwrap();
        assert_eq!(m["subject"], "out.k.abc");
        let r = api(&c, "STREAM.INFO.T", json!({"subjects_filter": ">"})).await;
        assert_eq!(r["state"]["subjects"], json!({"out.k.abc": 2}));
    }
}

#[test]
fn republished_copies_carry_the_stream_position_as_nats_server_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let mut raw = server.raw();
    raw.setup_requests();
    let cfg = r#"{"name":"R","subjects":["r.>"],"republish":{"src":"r.*","dest":"rp.$1"}}"#;
    raw_json(&mut raw, "$JS.API.STREAM.CREATE.R", cfg);
    let cfg = r#"{"name":"H","subjects":["h.>"],"republish":{"dest":"hp.>","headers_only":true}}"#;
    raw_json(&mut raw, "$JS.API.STREAM.CREATE.H", cfg);
    let mut sub = server.raw();
    sub.send(b"CONNECT {\"headers\":true,\"protocol\":1}\r\nSUB rp.> 1\r\nSUB hp.> 2\r\n");
    sub.flush();
    raw.request("r.a", None, b"one");
    raw.request("r.b", Some(b"NATS/1.0\r\nX: 1\r\n\r\n"), b"two");
    raw.request("r.a", None, b"three");
    raw.request("r.a.deep", None, b"not matched");
    raw.request("h.a", None, b"12345");
    let mut got = Vec::new();
    for _ in 0..4 {
        let (hdr, body) = sub.read_msg();
        got.push((
            String::from_utf8(hdr).unwrap(),
            String::from_utf8(body).unwrap(),
        ));
    }
    // Each stream's copies in order (two streams may sit on two shards).
    let (h, r): (Vec<_>, Vec<_>) = got.iter().partition(|(h, _)| h.contains("Stream: H"));
    let masked = |(h, b): &&(String, String)| {
        let ts = h
            .lines()
            .find_map(|l| l.strip_prefix("Nats-Time-Stamp: "))
            .unwrap();
        assert!(ts.ends_with('Z') && ts.len() > 20, "{ts}");
        (h.replace(ts, "TS"), b.clone())
    };
    let r: Vec<(String, String)> = r.iter().map(masked).collect();
    let h: Vec<(String, String)> = h.iter().map(masked).collect();
    let pair = |h: &str, b: &str| (h.to_string(), b.to_string());
    assert_eq!(
        r,
        [
            pair(
                "NATS/1.0\r\nNats-Stream: R\r\nNats-Subject: r.a\r\nNats-Sequence: 1\r\n\
                 Nats-Time-Stamp: TS\r\nNats-Last-Sequence: 0\r\n\r\n",
                "one"
            ),
            pair(
                "NATS/1.0\r\nX: 1\r\nNats-Stream: R\r\nNats-Subject: r.b\r\nNats-Sequence: 2\r\n\
                 Nats-Time-Stamp: TS\r\nNats-Last-Sequence: 0\r\n\r\n",
                "two"
            ),
            pair(
                "NATS/1.0\r\nNats-Stream: R\r\nNats-Subject: r.a\r\nNats-Sequence: 3\r\n\
                 Nats-Time-Stamp: TS\r\nNats-Last-Sequence: 1\r\n\r\n",
                "three"
            ),
        ]
    );
    assert_eq!(
        h,
        [pair(
            "NATS/1.0\r\nNats-Stream: H\r\nNats-Subject: h.a\r\nNats-Sequence: 1\r\n\
             Nats-Time-Stamp: TS\r\nNats-Last-Sequence: 0\r\nNats-Msg-Size: 5\r\n\r\n",
            ""
        )]
    );
    // Nothing for the subject the republish source does not match.
    assert_eq!(sub.flush(), "");
}
