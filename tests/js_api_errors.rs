//! Error paths of the stream, consumer and publish API where jetcore once
//! answered differently from nats-server 2.15.1: the answers are nats-server's
//! (taken from it with the same requests; these tests pass against it too,
//! `JETCORE_TEST_SERVER=nats-server`).

mod common;

use serde_json::{json, Value};

use common::consumers::raw_json;
use common::{Raw, Server};

fn setup() -> (Server, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut raw = server.raw();
    raw.setup_requests();
    (server, raw, dir)
}

fn err(v: &Value) -> (u64, String) {
    (
        v["error"]["err_code"].as_u64().unwrap_or(0),
        v["error"]["description"].as_str().unwrap_or("").to_string(),
    )
}

fn e(code: u64, text: &str) -> (u64, String) {
    (code, text.to_string())
}

fn publish(raw: &mut Raw, subject: &str, hdr: &str) -> Value {
    let h = format!("NATS/1.0\r\n{hdr}\r\n");
    let (_, b) = raw.request(subject, Some(h.as_bytes()), b"x");
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn stream_config_errors() {
    let (_s, mut raw, _d) = setup();
    let cases = [
        (
            r#"{"name":"A","subjects":["a.>"],"max_age":-1}"#,
            e(10052, "max age can not be negative"),
        ),
        (
            r#"{"name":"A","subjects":["a.>"],"num_replicas":-1}"#,
            e(10133, "replicas count cannot be negative"),
        ),
        (
            r#"{"name":"A","subjects":["a.a","a.a"]}"#,
            e(10052, "subject \"a.a\" overlaps with \"a.a\""),
        ),
        (
            r#"{"name":"A","subjects":["a.*","a.b"]}"#,
            e(10052, "subject \"a.*\" overlaps with \"a.b\""),
        ),
        (
            r#"{"name":"A","subjects":["$SYS.x"]}"#,
            e(
                10052,
                "subjects that overlap with system api require no-ack to be true",
            ),
        ),
        (
            r#"{"name":"A","subjects":["$JS.ACK.>"]}"#,
            e(
                10052,
                "subjects that overlap with jetstream api require no-ack to be true",
            ),
        ),
        (
            r#"{"name":"A","retention":"Limits"}"#,
            e(10025, "invalid JSON: can not unmarshal \"\\\"Limits\\\"\""),
        ),
    ];
    for (body, want) in cases {
        let r = raw_json(&mut raw, "$JS.API.STREAM.CREATE.A", body);
        assert_eq!(err(&r), want, "{body}");
    }
    for ok in [
        r#"{"name":"B","subjects":["$JS.EVENT.x.>"]}"#,
        r#"{"name":"C","subjects":["$SYS.ACCOUNT.x"]}"#,
        r#"{"name":"D","subjects":["$SYS.REQ.>"],"no_ack":true}"#,
    ] {
        let name = serde_json::from_str::<Value>(ok).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        let r = raw_json(&mut raw, &format!("$JS.API.STREAM.CREATE.{name}"), ok);
        assert!(r["error"].is_null(), "{ok}: {r}");
    }
}

#[test]
fn message_errors_and_publish_headers() {
    let (_s, mut raw, _d) = setup();
    raw_json(
        &mut raw,
        "$JS.API.STREAM.CREATE.M",
        r#"{"name":"M","subjects":["m.>"],"allow_rollup_hdrs":true}"#,
    );
    for _ in 0..4 {
        raw.request("m.a", None, b"x");
    }
    raw_json(&mut raw, "$JS.API.STREAM.PURGE.M", r#"{"seq":3}"#);
    let r = raw_json(&mut raw, "$JS.API.STREAM.MSG.DELETE.M", r#"{"seq":1}"#);
    assert_eq!(
        (r["error"]["code"].as_u64(), err(&r)),
        (Some(500), e(10057, "no message found"))
    );
    // Empty values are no header at all; a rollup's value is read in any case.
    for h in [
        "Nats-Expected-Stream: ",
        "Nats-Expected-Last-Sequence: ",
        "Nats-Rollup: ",
        "Nats-TTL: ",
    ] {
        let ack = publish(&mut raw, "m.b", h);
        assert!(ack["error"].is_null(), "{h:?}: {ack}");
    }
    let ack = publish(&mut raw, "m.a", "Nats-Rollup: SUB");
    assert!(ack["error"].is_null(), "{ack}");
    let st = raw_json(
        &mut raw,
        "$JS.API.STREAM.INFO.M",
        r#"{"subjects_filter":"m.a"}"#,
    );
    assert_eq!(st["state"]["subjects"]["m.a"], 1, "rolled up");
    // Features this server does not have are refused, not ignored.
    let cases = [
        ("Nats-Incr: 1", e(10168, "message counters is disabled")),
        (
            "Nats-Incr: x",
            e(10171, "message counter increment is invalid"),
        ),
        (
            "Nats-Schedule: @every 1s",
            e(10188, "message schedules is disabled"),
        ),
        (
            "Nats-Expected-Last-Subject-Sequence-Subject: m.a",
            e(
                10193,
                "missing sequence for expected last sequence per subject",
            ),
        ),
    ];
    for (h, want) in cases {
        assert_eq!(err(&publish(&mut raw, "m.c", h)), want, "{h}");
    }
    // An expectation fails before a duplicate is answered.
    publish(&mut raw, "m.d", "Nats-Msg-Id: one");
    let r = publish(
        &mut raw,
        "m.d",
        "Nats-Msg-Id: one\r\nNats-Expected-Last-Sequence: 1",
    );
    assert_eq!(err(&r).0, 10071, "{r}");
    // Stream info past its subjects: the offset as asked, no subjects.
    let st = raw_json(
        &mut raw,
        "$JS.API.STREAM.INFO.M",
        r#"{"subjects_filter":">","offset":9}"#,
    );
    assert_eq!(
        (st["offset"].as_u64(), st["state"].get("subjects")),
        (Some(9), None)
    );
    // A direct get without headers is the payload alone.
    raw_json(
        &mut raw,
        "$JS.API.STREAM.UPDATE.M",
        r#"{"name":"M","subjects":["m.>"],"allow_rollup_hdrs":true,"allow_direct":true}"#,
    );
    let (h, body) = raw.request(
        "$JS.API.DIRECT.GET.M",
        None,
        br#"{"last_by_subj":"m.a","no_hdr":true}"#,
    );
    assert_eq!((h.len(), body.as_slice()), (0, &b"x"[..]));
    let cases = [
        ("$JS.API.STREAM.MSG.GET.M", r#"{"start_time":"2000-01-01T00:00:00Z","seq":1}"#, e(10003, "bad request")),
        ("$JS.API.STREAM.MSG.GET.M", r#"{"start_time":"bogus"}"#, e(10025, "invalid JSON: parsing time \"bogus\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"bogus\" as \"2006\"")),
        ("$JS.API.STREAM.INFO.M", "[]", e(10025, "invalid JSON: json: cannot unmarshal array into Go value of type server.JSApiStreamInfoRequest")),
        ("$JS.API.STREAM.UPDATE.M", "", e(10052, "stream name is required and can not contain '.', '*', '>', '\\', '/'")),
        ("$JS.API.STREAM.CREATE.M", "null", e(10056, "stream name in subject does not match request")),
    ];
    for (subject, body, want) in cases {
        assert_eq!(
            err(&raw_json(&mut raw, subject, body)),
            want,
            "{subject} {body}"
        );
    }
    let r = raw_json(&mut raw, "$JS.API.STREAM.INFO.M", "garbage");
    assert_eq!(
        r["config"]["name"], "M",
        "a body that is not JSON is ignored: {r}"
    );
    let h = b"NATS/1.0\r\nNats-Required-Api-Level: abc\r\n\r\n";
    let (_, b) = raw.request("$JS.API.STREAM.INFO.M", Some(h), b"");
    let r: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(err(&r), e(10185, "JetStream minimum api level required"));
}

#[test]
fn consumer_config_errors() {
    let (_s, mut raw, _d) = setup();
    raw_json(
        &mut raw,
        "$JS.API.STREAM.CREATE.CS",
        r#"{"name":"CS","subjects":["cs.>"],"consumer_limits":{"max_ack_pending":5}}"#,
    );
    let create = |raw: &mut Raw, subject: &str, cfg: Value| {
        let body = json!({"stream_name": "CS", "config": cfg}).to_string();
        raw_json(raw, &format!("$JS.API.CONSUMER.CREATE.{subject}"), &body)
    };
    let cases = [
        ("CS.C", json!({"name": "C", "durable_name": "D"}), e(10017, "consumer name in subject does not match durable name in request")),
        ("CS", json!({"name": "a/b"}), e(10127, "Consumer name can not contain path separators")),
        ("CS", json!({"description": "d".repeat(4097)}), e(10107, "consumer description is too long, maximum allowed is 4096")),
        ("CS", json!({"num_replicas": -1}), e(10133, "replicas count cannot be negative")),
        ("CS", json!({"backoff": [-1], "ack_policy": "explicit"}), e(10184, "consumer backoff needs to be positive")),
        ("CS", json!({"ack_wait": -1, "ack_policy": "explicit"}), e(10183, "consumer ack wait needs to be positive")),
        ("CS", json!({"deliver_subject": "d..a"}), e(10112, "invalid push consumer deliver subject")),
        ("CS", json!({"sample_freq": "bogus"}), e(10095, "failed to parse consumer sampling configuration: strconv.Atoi: parsing \"bogus\": invalid syntax")),
        ("CS", json!({"max_expires": 500_000}), e(10115, "consumer max request expires needs to be >= 1ms")),
        ("CS", json!({"filter_subject": "cs..a"}), e(10052, "invalid subject")),
        ("CS", json!({"filter_subjects": [""]}), e(10139, "consumer filter in FilterSubjects cannot be empty")),
        ("CS", json!({"filter_subjects": ["cs.a", "cs.*"]}), e(10138, "consumer subject filters cannot overlap")),
        ("CS", json!({"ack_policy": "explicit", "max_ack_pending": 6}), e(10121, "consumer max ack pending exceeds system limit of 5")),
    ];
    for (subject, cfg, want) in cases {
        let r = create(&mut raw, subject, cfg.clone());
        assert_eq!(err(&r), want, "{cfg}");
    }
    for (body, want) in [
        ("null", e(10056, "stream name in subject does not match request")),
        ("[]", e(10025, "invalid JSON: json: cannot unmarshal array into Go value of type server.CreateConsumerRequest")),
    ] {
        let r = raw_json(&mut raw, "$JS.API.CONSUMER.CREATE.CS.C", body);
        assert_eq!(err(&r), want, "{body}");
    }
    let body = r#"{"stream_name":"CS","config":{"durable_name":"X"},"action":"bogus"}"#;
    let r = raw_json(&mut raw, "$JS.API.CONSUMER.CREATE.CS", body);
    assert_eq!(
        err(&r),
        e(10025, "invalid JSON: unknown consumer action: \"bogus\"")
    );
    // Accepted as nats-server accepts them, with its normalisations.
    let r = create(
        &mut raw,
        "CS",
        json!({"filter_subjects": ["cs.a.>", "cs.*.b"]}),
    );
    assert!(r["error"].is_null(), "intersecting filters: {r}");
    let r = create(
        &mut raw,
        "CS",
        json!({"filter_subject": ">", "deliver_policy": "last_per_subject"}),
    );
    assert_eq!(r["config"]["filter_subject"], ">", "{r}");
    let r = create(
        &mut raw,
        "CS",
        json!({"ack_policy": "explicit", "max_ack_pending": -2,
                                          "max_batch": -1, "backoff": [0], "sample_freq": "101%"}),
    );
    assert_eq!(r["config"]["max_ack_pending"], -1, "{r}");
    assert_eq!(r["config"].get("max_batch"), None);
    // A push consumer takes the stream's max_ack_pending: it needs acks.
    let r = create(
        &mut raw,
        "CS.P",
        json!({"durable_name": "P", "deliver_subject": "dp"}),
    );
    assert_eq!(
        err(&r),
        e(10082, "consumer requires ack policy for max ack pending")
    );
    let r = create(
        &mut raw,
        "CS.P",
        json!({"durable_name": "P", "deliver_subject": "dp",
                                             "ack_policy": "explicit", "max_batch": 3}),
    );
    assert!(r["error"].is_null(), "{r}");
    let r = create(
        &mut raw,
        "CS.P",
        json!({"durable_name": "P", "deliver_subject": "dp",
                                             "ack_policy": "explicit", "max_batch": 3,
                                             "mem_storage": true}),
    );
    assert_eq!(err(&r), e(10012, "storage type can not be updated"));
    // Info and delete want an empty request.
    let r = raw_json(&mut raw, "$JS.API.CONSUMER.DELETE.CS.P", "garbage");
    assert_eq!(err(&r), e(10038, "expected an empty request payload"));
    let r = raw_json(&mut raw, "$JS.API.CONSUMER.INFO.CS.P", "{}");
    assert!(r["error"].is_null(), "{r}");
    // A pull's heartbeat needs an expiry twice as long.
    create(&mut raw, "CS.Q", json!({"durable_name": "Q"}));
    let (h, _) = raw.request(
        "$JS.API.CONSUMER.MSG.NEXT.CS.Q",
        None,
        br#"{"batch":1,"idle_heartbeat":100000000}"#,
    );
    assert_eq!(
        String::from_utf8(h).unwrap(),
        "NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n"
    );
}
