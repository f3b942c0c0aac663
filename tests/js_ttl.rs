//! Per-message TTL (`Nats-TTL`), subject delete markers and the duplicate
//! window, end to end through async-nats. Expectations (header bytes, error
//! codes, sequences) were taken from nats-server 2.15.1 with the same
//! requests, and these tests pass against it too
//! (`JETCORE_TEST_SERVER=nats-server`).

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::consumers::{api, err_code};
use common::sources::*;
use common::Server;

const SEC: u64 = 1_000_000_000;

async fn start(shards: usize, dir: &std::path::Path) -> (Server, async_nats::Client) {
    let server = Server::start_js(shards, dir, &[]);
    let client = server.client().await;
    (server, client)
}

/// Publishes with headers; the raw pub ack (or error) JSON.
async fn publish(
    c: &async_nats::Client,
    subject: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> Value {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in hdrs {
        h.insert(*k, *v);
    }
    let r = c
        .request_with_headers(subject.to_string(), h, body.to_string().into())
        .await
        .unwrap();
    serde_json::from_slice(&r.payload).unwrap()
}

fn seq(ack: &Value) -> u64 {
    assert!(ack["error"].is_null(), "publish refused: {ack}");
    ack["seq"].as_u64().unwrap()
}

/// Waits (10 s at most) until the stream's state satisfies `ok`.
async fn state_when(c: &async_nats::Client, stream: &str, ok: impl Fn(&Value) -> bool) -> Value {
    info_when(c, stream, |i| ok(&i["state"])).await["state"].clone()
}

#[tokio::test]
async fn messages_expire_on_their_ttl_and_never_outlives_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(2, dir.path()).await;
    let cfg = json!({"name": "T", "subjects": ["t.>"], "allow_msg_ttl": true, "max_age": 3 * SEC});
    create(&c, cfg).await;
    let t0 = Instant::now();
    let short = seq(&publish(&c, "t.short", &[("Nats-TTL", "1s")], "a").await);
    let plain = seq(&publish(&c, "t.plain", &[], "b").await);
    let never = seq(&publish(&c, "t.never", &[("Nats-TTL", "never")], "c").await);
    let secs = seq(&publish(&c, "t.secs", &[("Nats-TTL", "2")], "d").await);
    assert_eq!((short, plain, never, secs), (1, 2, 3, 4));
    // The 1 s message goes first, alone.
    state_when(&c, "T", |s| s["messages"] == 3).await;
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert!(get(&c, "T", short).await.is_none());
    assert!(get(&c, "T", plain).await.is_some());
    // Then the 2 s one; then max_age takes the plain one, not `never`.
    state_when(&c, "T", |s| s["messages"] == 1).await;
    assert!(t0.elapsed() >= Duration::from_millis(2900));
    let left = get(&c, "T", never).await.expect("never stays");
    assert_eq!(headers(&left), "NATS/1.0\r\nNats-TTL: never\r\n\r\n");
}

#[tokio::test]
async fn ttl_headers_and_settings_are_refused_as_nats_server_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(1, dir.path()).await;
    create(&c, json!({"name": "PLAIN", "subjects": ["p.>"]})).await;
    create(
        &c,
        json!({"name": "TTL", "subjects": ["t.>"], "allow_msg_ttl": true}),
    )
    .await;
    let disabled = r#"{"code":400,"err_code":10166,"description":"per-message TTL is disabled"}"#;
    let invalid = r#"{"code":400,"err_code":10165,"description":"invalid per-message TTL"}"#;
    for (subject, ttl, want) in [
        ("p.a", "30s", disabled),
        ("p.a", "never", disabled),
        // Unreadable values are found invalid, TTLs allowed or not.
        ("p.a", "abc", invalid),
        ("p.a", "0", invalid),
        ("t.a", "500ms", invalid),
        ("t.a", "-1", invalid),
        ("t.a", "1d", invalid),
    ] {
        let ack = publish(&c, subject, &[("Nats-TTL", ttl)], "x").await;
        let want: Value = serde_json::from_str(want).unwrap();
        assert_eq!(ack["error"], want, "{subject} {ttl}");
        assert_eq!(ack["seq"], 0);
    }
    // `00` is no TTL at all, even where TTLs are off.
    seq(&publish(&c, "p.a", &[("Nats-TTL", "00")], "x").await);
    let i = info(&c, "TTL").await;
    assert_eq!(i["config"]["metadata"]["_nats.req.level"], "1");
    // Once on, TTLs stay on.
    let r = api(
        &c,
        "STREAM.UPDATE.TTL",
        json!({"name": "TTL", "subjects": ["t.>"]}),
    )
    .await;
    assert_eq!(
        r["error"],
        json!({"code": 500, "err_code": 10052,
               "description": "message TTL status can not be disabled"})
    );
    let refused = [
        (
            json!({"name": "M1", "subject_delete_marker_ttl": SEC / 2}),
            "subject delete marker TTL must be at least 1 second",
        ),
        (
            json!({"name": "M2", "subject_delete_marker_ttl": -1}),
            "subject delete marker TTL must not be negative",
        ),
        (
            json!({"name": "M3", "mirror": {"name": "TTL"}, "subject_delete_marker_ttl": 2 * SEC}),
            "subject delete markers forbidden on mirrors",
        ),
    ];
    for (cfg, text) in refused {
        let name = cfg["name"].as_str().unwrap().to_string();
        let r = api(&c, &format!("STREAM.CREATE.{name}"), cfg).await;
        assert_eq!(err_code(&r), 10052, "{r}");
        assert_eq!(r["error"]["description"], text);
    }
    // Markers turn on TTLs and rollups, and purges with them.
    let cfg = json!({"name": "M4", "subjects": ["m.>"], "deny_purge": true,
                     "subject_delete_marker_ttl": 2 * SEC});
    let r = create(&c, cfg).await;
    let stored = &r["config"];
    assert_eq!(
        (
            &stored["allow_msg_ttl"],
            &stored["allow_rollup_hdrs"],
            &stored["deny_purge"]
        ),
        (&json!(true), &json!(true), &json!(false))
    );
}

#[tokio::test]
async fn a_marker_replaces_the_last_message_of_a_subject_and_expires_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(2, dir.path()).await;
    let cfg = json!({"name": "KV", "subjects": ["kv.>"], "max_age": SEC,
                     "subject_delete_marker_ttl": 2 * SEC});
    create(&c, cfg).await;
    seq(&publish(&c, "kv.a", &[], "1").await);
    seq(&publish(&c, "kv.a", &[], "2").await);
    seq(&publish(&c, "kv.b", &[], "3").await);
    // A TTL below the markers' is raised to theirs, rewritten in seconds.
    let short = seq(&publish(&c, "kv.c", &[("Nats-TTL", "1s"), ("X", "y")], "4").await);
    let m = get(&c, "KV", short).await.unwrap();
    assert_eq!(headers(&m), "NATS/1.0\r\nX: y\r\nNats-TTL: 2\r\n\r\n");
    // kv.a's older message is simply removed; each subject's last one is
    // replaced by a marker at the end of the stream.
    let s = state_when(&c, "KV", |s| s["first_seq"] == 5).await;
    assert_eq!(
        (s["messages"].as_u64(), s["last_seq"].as_u64()),
        (Some(3), Some(7))
    );
    let marker =
        "NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: 2s\r\nNats-Rollup: sub\r\n\r\n";
    let mut subjects = Vec::new();
    for q in 5..=7 {
        let m = get(&c, "KV", q).await.unwrap();
        assert_eq!(headers(&m), marker);
        assert!(m["data"].is_null() || m["data"] == "", "{m}");
        subjects.push(m["subject"].as_str().unwrap().to_string());
    }
    assert_eq!(subjects, ["kv.a", "kv.b", "kv.c"]);
    // Markers go by max_age in turn, and leave no marker behind.
    let s = state_when(&c, "KV", |s| s["messages"] == 0).await;
    assert_eq!(s["last_seq"], 7);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(info(&c, "KV").await["state"]["last_seq"], 7);
}

#[tokio::test]
async fn a_kv_purge_with_a_ttl_rolls_up_then_goes_without_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(1, dir.path()).await;
    let cfg = json!({"name": "KV_B", "subjects": ["$KV.B.>"], "allow_rollup_hdrs": true,
                     "subject_delete_marker_ttl": SEC, "max_msgs_per_subject": 5});
    create(&c, cfg).await;
    seq(&publish(&c, "$KV.B.k", &[], "v1").await);
    seq(&publish(&c, "$KV.B.k", &[], "v2").await);
    let purge = [
        ("KV-Operation", "PURGE"),
        ("Nats-Rollup", "sub"),
        ("Nats-TTL", "1s"),
    ];
    let p = seq(&publish(&c, "$KV.B.k", &purge, "").await);
    let s = state_when(&c, "KV_B", |s| s["messages"] == 1).await;
    assert_eq!(s["first_seq"].as_u64(), Some(p));
    let s = state_when(&c, "KV_B", |s| s["messages"] == 0).await;
    assert_eq!(s["last_seq"].as_u64(), Some(p), "no marker for a purge");
}

#[tokio::test]
async fn ttls_and_markers_hold_across_a_restart_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c) = start(2, dir.path()).await;
    let cfg = json!({"name": "R", "subjects": ["r.>"], "subject_delete_marker_ttl": SEC});
    create(&c, cfg).await;
    let t0 = Instant::now();
    seq(&publish(&c, "r.a", &[("Nats-TTL", "3s")], "a").await);
    seq(&publish(&c, "r.keep", &[], "k").await);
    drop(c);
    s.terminate();
    let (s, c) = start(2, dir.path()).await;
    assert_eq!(info(&c, "R").await["state"]["messages"], 2);
    // Due 3 s after it was stored (not after the restart): a marker replaces it.
    let st = state_when(&c, "R", |s| s["last_seq"] == 3).await;
    assert!(t0.elapsed() >= Duration::from_millis(2900));
    assert_eq!(st["messages"], 2);
    let m = get(&c, "R", 3).await.unwrap();
    assert!(headers(&m).contains("Nats-Marker-Reason: MaxAge"));
    drop(c);
    s.kill9();
    // The marker's own TTL (1 s) runs out across a kill as well.
    let (_s, c) = start(2, dir.path()).await;
    let st = state_when(&c, "R", |s| s["messages"] == 1).await;
    assert_eq!(
        (st["first_seq"].as_u64(), st["last_seq"].as_u64()),
        (Some(2), Some(3))
    );
}

#[tokio::test]
async fn ttls_turned_on_by_an_update_apply_to_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(2, dir.path()).await;
    create(
        &c,
        json!({"name": "O", "subjects": ["o.>"], "allow_msg_ttl": true}),
    )
    .await;
    create(&c, json!({"name": "S", "sources": [{"name": "O"}]})).await;
    seq(&publish(&c, "o.a", &[("Nats-TTL", "1s")], "a").await);
    count_when(&c, "S", 1).await;
    // The copy keeps its header; S does not honour it yet.
    state_when(&c, "O", |s| s["messages"] == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(info(&c, "S").await["state"]["messages"], 1);
    let r = api(
        &c,
        "STREAM.UPDATE.S",
        json!({"name": "S", "sources": [{"name": "O"}],
                                               "allow_msg_ttl": true}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    count_when(&c, "S", 0).await;
}

#[tokio::test]
async fn message_ids_are_forgotten_when_the_duplicate_window_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, c) = start(1, dir.path()).await;
    create(
        &c,
        json!({"name": "D", "subjects": ["d"], "duplicate_window": SEC}),
    )
    .await;
    let id = [("Nats-Msg-Id", "one")];
    let first = publish(&c, "d", &id, "x").await;
    let again = publish(&c, "d", &id, "x").await;
    assert_eq!((seq(&first), again["duplicate"].as_bool()), (1, Some(true)));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let later = publish(&c, "d", &id, "x").await;
    assert_eq!((seq(&later), later.get("duplicate")), (2, None));
}
