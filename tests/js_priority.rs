//! Priority groups on pull consumers (overflow, pinned_client, prioritized)
//! through raw TCP: config rules, request checks, who gets each message,
//! pins, their headers, advisories and the unpin request. The bytes are
//! nats-server 2.15.1's for the same requests; the tests pass against it
//! too (`JETCORE_TEST_SERVER=nats-server`).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::consumers::{pull_raw, raw_json, raw_stream, read_full};
use common::Raw;

fn create(r: &mut Raw, name: &str, cfg: Value) -> Value {
    let body = json!({"stream_name": "O", "config": cfg}).to_string();
    raw_json(r, &format!("$JS.API.CONSUMER.CREATE.O.{name}"), &body)
}

/// The status line of the next message (its first header line).
fn status_of(r: &mut Raw) -> (String, String) {
    let (subject, _, h, _) = read_full(r);
    (subject, h.lines().next().unwrap_or("").to_string())
}

#[test]
fn priority_settings_are_checked_as_nats_server_checks_them() {
    let (_s, mut r, _d) = raw_stream(0);
    let cases = [
        (json!({"deliver_subject": "d", "priority_groups": ["G"], "priority_policy": "overflow"}),
         10178, "priority groups can not be used with push consumers"),
        (json!({"priority_policy": "overflow"}), 10159,
         "Setting PriorityPolicy requires at least one PriorityGroup to be set"),
        (json!({"priority_groups": [""], "priority_policy": "overflow"}), 10161,
         "Group name cannot be an empty string"),
        (json!({"priority_groups": ["bad name"], "priority_policy": "overflow"}), 10162,
         "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters"),
        (json!({"priority_groups": ["G"]}), 10196,
         "consumer can not have priority groups when policy is none"),
        (json!({"priority_timeout": 5}), 10197,
         "PinnedTTL cannot be set when PriorityPolicy is none"),
        (json!({"priority_groups": ["G"], "priority_policy": "foo"}), 10025,
         "invalid JSON: unknown priority policy: \"foo\""),
    ];
    for (i, (cfg, code, text)) in cases.into_iter().enumerate() {
        let a = create(&mut r, &format!("c{i}"), cfg);
        assert_eq!(a["error"]["err_code"], code, "{a}");
        assert_eq!(a["error"]["description"], text);
    }
    // A pinned consumer gets the 2 minute timeout, level 1, and its group
    // (with no pin yet) in its info.
    let a = create(
        &mut r,
        "pin",
        json!({"durable_name": "pin", "ack_policy": "explicit",
        "priority_groups": ["G"], "priority_policy": "pinned_client"}),
    );
    assert_eq!(a["config"]["priority_timeout"], 120_000_000_000u64, "{a}");
    assert_eq!(a["config"]["metadata"]["_nats.req.level"], "1");
    assert_eq!(
        a["priority_groups"],
        json!([{"group": "G", "pinned_ts": "0001-01-01T00:00:00Z"}])
    );
}

#[test]
fn pull_requests_are_checked_against_the_policy() {
    let (_s, mut r, _d) = raw_stream(1);
    create(&mut r, "plain", json!({"durable_name": "plain"}));
    create(
        &mut r,
        "over",
        json!({"durable_name": "over",
        "priority_groups": ["G"], "priority_policy": "overflow"}),
    );
    r.send(b"SUB _P.> 9\r\n");
    let cases = [
        (
            "plain",
            r#"{"min_pending":1}"#,
            "NATS/1.0 400 Bad Request - Not a Overflow Priority consumer",
        ),
        (
            "plain",
            r#"{"id":"x"}"#,
            "NATS/1.0 400 Bad Request - Not a Pinned Client Priority consumer",
        ),
        (
            "plain",
            r#"{"priority":10}"#,
            "NATS/1.0 400 Bad Request - Priority must be between 0 and 9",
        ),
        (
            "over",
            r#"{"batch":1}"#,
            "NATS/1.0 400 Bad Request - Priority Group missing",
        ),
        (
            "over",
            r#"{"group":"H"}"#,
            "NATS/1.0 400 Bad Request - Invalid Priority Group",
        ),
    ];
    for (c, body, want) in cases {
        pull_raw(&mut r, c, "_P.1", body);
        assert_eq!(status_of(&mut r).1, want, "{c} {body}");
    }
}

#[test]
fn overflow_requests_wait_until_enough_is_pending() {
    let (_s, mut r, _d) = raw_stream(5);
    create(
        &mut r,
        "over",
        json!({"durable_name": "over", "ack_policy": "explicit",
        "priority_groups": ["G"], "priority_policy": "overflow"}),
    );
    r.send(b"SUB _P.> 9\r\n");
    // 5 pending: one message, then it must wait (4 < 5) until it times out.
    pull_raw(
        &mut r,
        "over",
        "_P.a",
        r#"{"batch":10,"expires":500000000,"group":"G","min_pending":5}"#,
    );
    let (to, h) = status_of(&mut r);
    assert_eq!((to.as_str(), h.as_str()), ("o.a", ""));
    let (to, h) = status_of(&mut r);
    assert_eq!(to, "_P.a");
    assert_eq!(h, "NATS/1.0 408 Request Timeout");
    // One ack pending: a request wanting 3 waits while one wanting 1 takes
    // a message (two pending now: still not 3), then times out.
    pull_raw(
        &mut r,
        "over",
        "_P.b",
        r#"{"batch":1,"expires":300000000,"group":"G","min_ack_pending":3}"#,
    );
    pull_raw(
        &mut r,
        "over",
        "_P.c",
        r#"{"batch":1,"expires":300000000,"group":"G","min_ack_pending":1}"#,
    );
    let got: Vec<(String, String)> = (0..2).map(|_| status_of(&mut r)).collect();
    assert_eq!(
        got,
        [
            ("o.a".to_string(), String::new()),
            (
                "_P.b".to_string(),
                "NATS/1.0 408 Request Timeout".to_string()
            ),
        ]
    );
}

#[test]
fn a_pinned_client_gets_everything_until_it_is_unpinned() {
    let (_s, mut r, _d) = raw_stream(4);
    create(
        &mut r,
        "pin",
        json!({"durable_name": "pin", "ack_policy": "none",
        "priority_groups": ["G"], "priority_policy": "pinned_client",
        "priority_timeout": 60_000_000_000u64}),
    );
    r.send(b"SUB _P.> 9\r\nSUB $JS.EVENT.ADVISORY.CONSUMER.*.O.pin 8\r\n");
    r.flush();
    pull_raw(
        &mut r,
        "pin",
        "_P.a",
        r#"{"batch":1,"expires":2000000000,"group":"G"}"#,
    );
    // The advisory and the message (in either order: nats-server sends them
    // from two places).
    let (mut adv, mut hdr) = (Value::Null, String::new());
    for _ in 0..2 {
        let (subject, _, h, body) = read_full(&mut r);
        if subject == "$JS.EVENT.ADVISORY.CONSUMER.PINNED.O.pin" {
            adv = serde_json::from_slice(&body).unwrap();
        } else {
            assert_eq!(subject, "o.a");
            hdr = h;
        }
    }
    assert_eq!(
        adv["type"],
        "io.nats.jetstream.advisory.v1.consumer_group_pinned"
    );
    assert_eq!(
        (&adv["stream"], &adv["consumer"], &adv["group"]),
        (&json!("O"), &json!("pin"), &json!("G"))
    );
    let id = adv["pinned_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 22);
    assert_eq!(hdr, format!("NATS/1.0\r\nNats-Pin-Id: {id}\r\n\r\n"));
    let info = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.pin", "");
    assert_eq!(info["priority_groups"][0]["pinned_client_id"], json!(id));
    // Another client stands by; a wrong id is refused at once.
    pull_raw(
        &mut r,
        "pin",
        "_P.b",
        r#"{"batch":1,"expires":1000000000,"group":"G"}"#,
    );
    pull_raw(
        &mut r,
        "pin",
        "_P.c",
        r#"{"batch":1,"group":"G","id":"nope"}"#,
    );
    assert_eq!(
        status_of(&mut r),
        ("_P.c".into(), "NATS/1.0 423 Nats-Pin-Id mismatch".into())
    );
    pull_raw(
        &mut r,
        "pin",
        "_P.d",
        &format!(r#"{{"batch":1,"group":"G","id":"{id}"}}"#),
    );
    let (to, reply, h, _) = read_full(&mut r);
    assert_eq!(to, "o.a");
    assert!(reply.unwrap().starts_with("$JS.ACK.O.pin."));
    assert!(h.ends_with(&format!("Nats-Pin-Id: {id}\r\n\r\n")));
    // Unpinned by request: the standby client is pinned next.
    r.send_request("$JS.API.CONSUMER.UNPIN.O.pin", None, br#"{"group":"G"}"#);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (subject, _, h, body) = read_full(&mut r);
        if subject.starts_with("$JS.EVENT") {
            let v: Value = serde_json::from_slice(&body).unwrap();
            seen.push(format!("{} {}", v["type"], v["reason"]));
        } else if subject.starts_with("_R") {
            seen.push(String::from_utf8(body).unwrap());
        } else {
            assert!(h.contains("Nats-Pin-Id: "), "{h}");
            seen.push(subject);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "\"io.nats.jetstream.advisory.v1.consumer_group_pinned\" null",
            "\"io.nats.jetstream.advisory.v1.consumer_group_unpinned\" \"admin\"",
            "o.a",
            r#"{"type":"io.nats.jetstream.api.v1.consumer_unpin_response"}"#,
        ]
    );
    let errs = [(r#"{}"#, 10025), (r#"{"group":"H"}"#, 10160)];
    for (body, code) in errs {
        let a = raw_json(&mut r, "$JS.API.CONSUMER.UNPIN.O.pin", body);
        assert_eq!(a["error"]["err_code"], code, "{a}");
    }
    let a = raw_json(&mut r, "$JS.API.CONSUMER.UNPIN.O.none", r#"{"group":"G"}"#);
    assert_eq!(a["error"]["err_code"], 10014);
}

#[test]
fn a_pin_lapses_when_its_client_stops_pulling() {
    let (_s, mut r, _d) = raw_stream(3);
    create(
        &mut r,
        "pin",
        json!({"durable_name": "pin", "ack_policy": "none",
        "priority_groups": ["G"], "priority_policy": "pinned_client",
        "priority_timeout": 500_000_000u64}),
    );
    r.send(b"SUB _P.> 9\r\nSUB $JS.EVENT.ADVISORY.CONSUMER.UNPINNED.O.pin 8\r\n");
    r.flush();
    pull_raw(&mut r, "pin", "_P.a", r#"{"batch":1,"group":"G"}"#);
    let (_, _, h, _) = read_full(&mut r);
    let old = h
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("Nats-Pin-Id: ")
        .to_string();
    std::thread::sleep(Duration::from_millis(700));
    let (subject, _, _, body) = read_full(&mut r);
    assert_eq!(subject, "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.O.pin");
    let adv: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(adv["reason"], "timeout");
    // The old client's next pull is turned away; a new one is pinned.
    pull_raw(
        &mut r,
        "pin",
        "_P.b",
        &format!(r#"{{"batch":2,"group":"G","id":"{old}"}}"#),
    );
    let (to, h) = status_of(&mut r);
    assert_eq!(
        (to.as_str(), h.as_str()),
        ("_P.b", "NATS/1.0 423 Nats-Wrong-Pin-Id")
    );
    pull_raw(&mut r, "pin", "_P.c", r#"{"batch":1,"group":"G"}"#);
    let (_, _, h, _) = read_full(&mut r);
    assert!(h.contains("Nats-Pin-Id: ") && !h.contains(&old), "{h}");
}
