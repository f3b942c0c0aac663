//! Key-value buckets and object stores as clients use them: async-nats end
//! to end, and the bucket and key requests nats.go, nats.js and nats-py send
//! (their exact bodies and headers, read from their sources and captured
//! from nats-py 2.16). These pass against nats-server 2.15.1 too
//! (`JETCORE_TEST_SERVER=nats-server`).

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, object_store};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use common::consumers::{api, raw_json};
use common::Server;

#[tokio::test]
async fn async_nats_kv_with_limit_markers_and_per_key_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let kv = js
        .create_key_value(kv::Config {
            bucket: "B".into(),
            history: 5,
            max_age: Duration::from_secs(3600),
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(kv.put("k1", "v1".into()).await.unwrap(), 1);
    assert_eq!(kv.put("k1", "v2".into()).await.unwrap(), 2);
    assert_eq!(kv.get("k1").await.unwrap().unwrap(), "v2");
    let e = kv.entry_for_revision("k1", 1).await.unwrap().unwrap();
    assert_eq!(e.value, "v1");
    assert!(kv.create("k1", "x".into()).await.is_err());
    assert_eq!(kv.update("k1", "v3".into(), 2).await.unwrap(), 3);
    assert!(kv.update("k1", "v4".into(), 2).await.is_err());
    let ttl_rev = kv
        .create_with_ttl("short", "s".into(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(ttl_rev, 4);
    kv.delete("k1").await.unwrap();
    assert_eq!(kv.get("k1").await.unwrap(), None);
    kv.put("k2", "x".into()).await.unwrap();
    kv.purge_with_ttl("k2", Duration::from_secs(1))
        .await
        .unwrap();
    let ops: Vec<kv::Operation> = kv
        .history("k1")
        .await
        .unwrap()
        .map(|e| e.unwrap().operation)
        .collect()
        .await;
    use kv::Operation::{Delete, Put};
    assert_eq!(ops, [Put, Put, Put, Delete]);
    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    assert_eq!(keys, ["short"]);
    // The TTL'd key goes, leaving a marker the client reads as a purge; the
    // purge with a TTL goes without one.
    let t0 = Instant::now();
    loop {
        if kv.get("short").await.unwrap().is_none() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "short never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = kv.entry("short").await.unwrap().unwrap();
    assert_eq!(marker.operation, kv::Operation::Purge);
    let status = kv.status().await.unwrap();
    assert_eq!(
        (status.history(), status.max_age()),
        (5, Duration::from_secs(3600))
    );
    js.delete_key_value("B").await.unwrap();
    assert!(js.get_key_value("B").await.is_err());
}

#[tokio::test]
async fn async_nats_kv_watch_sees_every_change_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let kv = js
        .create_key_value(kv::Config {
            bucket: "W".into(),
            history: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    kv.put("a", "1".into()).await.unwrap();
    let mut w = kv.watch_with_history(">").await.unwrap();
    kv.put("b", "2".into()).await.unwrap();
    kv.delete("a").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push((e.key, e.revision, e.operation));
    }
    use kv::Operation::{Delete, Put};
    assert_eq!(
        got,
        [
            ("a".into(), 1, Put),
            ("b".into(), 2, Put),
            ("a".into(), 3, Delete)
        ]
    );
}

#[tokio::test]
async fn async_nats_object_store_from_empty_to_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let os = js
        .create_object_store(object_store::Config {
            bucket: "O".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for size in [0usize, 1, 128 * 1024, 300_000, 6 * 1024 * 1024 + 7] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let name = format!("f{size}");
        let info = os.put(name.as_str(), &mut data.as_slice()).await.unwrap();
        assert_eq!(info.size, size);
        let mut back = Vec::new();
        os.get(name.as_str())
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert!(back == data, "object of {size} bytes came back different");
    }
    let info = os.info("f1").await.unwrap();
    os.add_link("link", &info).await.unwrap();
    let mut back = Vec::new();
    os.get("link")
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert_eq!(back, [0]);
    // Replacing an object purges its old chunks.
    os.put("f300000", &mut &b"short now"[..]).await.unwrap();
    os.delete("f0").await.unwrap();
    assert!(os.get("f0").await.is_err());
    let mut names: Vec<String> = os
        .list()
        .await
        .unwrap()
        .map(|i| i.unwrap().name)
        .collect()
        .await;
    names.sort();
    assert_eq!(names, ["f1", "f131072", "f300000", "f6291463", "link"]);
    let st = api(&server.client().await, "STREAM.INFO.OBJ_O", Value::Null).await;
    let chunks = 1 + 1 + 1 + 49; // f1, f131072, f300000 (one chunk now), f6291463
    let metas = 5 + 1; // live objects, and f0's deleted one
    assert_eq!(st["state"]["messages"], chunks + metas, "{}", st["state"]);
    js.delete_object_store("O").await.unwrap();
}

/// A bucket created with each client's exact request, then used as that
/// client uses it.
#[test]
fn buckets_as_nats_go_nats_js_and_nats_py_create_and_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let mut raw = server.raw();
    raw.setup_requests();
    let creates = [
        // nats.go (jetstream) CreateKeyValue{Bucket:"go",History:5,TTL:1h,LimitMarkerTTL:1s}
        (
            "KV_go",
            r#"{"name":"KV_go","subjects":["$KV.go.>"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"discard":"new","max_age":3600000000000,"max_msgs_per_subject":5,"max_msg_size":-1,"storage":"file","num_replicas":1,"duplicate_window":120000000000,"deny_delete":true,"allow_rollup_hdrs":true,"compression":"none","allow_direct":true,"mirror_direct":false,"consumer_limits":{},"allow_msg_ttl":true,"subject_delete_marker_ttl":1000000000}"#,
        ),
        // nats.js Kvm.create("js", {history:5, ttl:3_600_000, markerTTL:1000})
        (
            "KV_js",
            r#"{"name":"KV_js","retention":"limits","max_msgs_per_subject":5,"max_bytes":-1,"max_msg_size":-1,"storage":"file","allow_msg_ttl":true,"subject_delete_marker_ttl":1000000000,"subjects":["$KV.js.>"],"discard":"new","allow_direct":true,"num_replicas":1,"max_age":3600000000000,"allow_rollup_hdrs":true}"#,
        ),
        // nats-py KeyValueConfig(bucket="py", history=5, ttl=3600, limit_marker_ttl=1)
        (
            "KV_py",
            r#"{"name": "KV_py", "subjects": ["$KV.py.>"], "max_consumers": -1, "max_msgs": -1, "discard": "new", "discard_new_per_subject": false, "max_age": 3600000000000, "max_msgs_per_subject": 5, "num_replicas": 1, "no_ack": false, "duplicate_window": 120000000000, "sealed": false, "deny_delete": true, "deny_purge": false, "allow_rollup_hdrs": true, "allow_msg_ttl": true, "subject_delete_marker_ttl": 1000000000}"#,
        ),
    ];
    let info = raw_json(&mut raw, "$JS.API.INFO", "");
    assert!(
        info["api"]["level"].as_u64().unwrap() >= 1,
        "clients check this for markers"
    );
    for (name, body) in creates {
        let r = raw_json(&mut raw, &format!("$JS.API.STREAM.CREATE.{name}"), body);
        assert!(r["error"].is_null(), "{name}: {r}");
        let c = &r["config"];
        assert_eq!(
            (
                &c["allow_msg_ttl"],
                &c["subject_delete_marker_ttl"],
                &c["max_msgs_per_subject"]
            ),
            (&json!(true), &json!(1_000_000_000u64), &json!(5)),
            "{name}"
        );
        assert_eq!(c["metadata"]["_nats.req.level"], "1");
    }
    // Each client's per-key TTL form: Go durations, strings as given, seconds.
    let puts = [
        (
            "$KV.go.k",
            "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\nNats-TTL: 1h0m0s\r\n\r\n",
        ),
        (
            "$KV.js.k",
            "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\nNats-TTL: 1s\r\n\r\n",
        ),
        (
            "$KV.py.k",
            "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\nNats-TTL: 1\r\n\r\n",
        ),
        (
            "$KV.py.p",
            "NATS/1.0\r\nKV-Operation: PURGE\r\nNats-Rollup: sub\r\nNats-TTL: 1\r\n\r\n",
        ),
    ];
    for (subject, hdr) in puts {
        let (_, b) = raw.request(subject, Some(hdr.as_bytes()), b"v");
        let ack: Value = serde_json::from_slice(&b).unwrap();
        assert!(ack["error"].is_null(), "{subject}: {ack}");
    }
    // Gets: direct (nats.go, nats.js) and message get (nats-py without direct).
    let (h, body) = raw.request("$JS.API.DIRECT.GET.KV_go.$KV.go.k", None, b"");
    let h = String::from_utf8(h).unwrap();
    assert!(
        h.contains("Nats-TTL: 1h0m0s") && h.contains("Nats-Sequence: 1"),
        "{h}"
    );
    assert_eq!(body, b"v");
    let r = raw_json(
        &mut raw,
        "$JS.API.STREAM.MSG.GET.KV_py",
        r#"{"last_by_subj": "$KV.py.k"}"#,
    );
    assert_eq!(r["message"]["seq"], 1, "{r}");
    // Watchers: nats-py's legacy create (then its info), nats.js's named one.
    let py = r#"{"stream_name": "KV_py", "config": {"deliver_policy": "last_per_subject", "ack_policy": "none", "ack_wait": 79200000000000, "max_deliver": 1, "filter_subject": "$KV.py.>", "replay_policy": "instant", "flow_control": true, "idle_heartbeat": 5000000000, "headers_only": false, "deliver_subject": "_INBOX.pyw", "inactive_threshold": 300000000000, "num_replicas": 1, "mem_storage": true}}"#;
    let r = raw_json(&mut raw, "$JS.API.CONSUMER.CREATE.KV_py", py);
    assert!(r["error"].is_null(), "{r}");
    let js = r#"{"config":{"deliver_policy":"last_per_subject","ack_policy":"none","filter_subject":"$KV.js.>","flow_control":true,"idle_heartbeat":30000000000,"headers_only":true,"inactive_threshold":300000000000,"num_replicas":1,"max_deliver":1,"name":"oc_X_1","deliver_subject":"_INBOX.jsw.1"},"stream_name":"KV_js","action":"create","pedantic":false}"#;
    let r = raw_json(
        &mut raw,
        "$JS.API.CONSUMER.CREATE.KV_js.oc_X_1.$KV.js.>",
        js,
    );
    assert!(r["error"].is_null(), "{r}");
    // nats-py's one-second TTLs run out: a marker replaces k, the purge
    // goes without one.
    let t0 = Instant::now();
    let state = loop {
        let r = raw_json(&mut raw, "$JS.API.STREAM.INFO.KV_py", "");
        if r["state"]["last_seq"] == 3 {
            break r["state"].clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no marker: {}",
            r["state"]
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (state["messages"].as_u64(), state["first_seq"].as_u64()),
        (Some(1), Some(3))
    );
}
