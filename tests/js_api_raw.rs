//! JetStream API over raw TCP, byte for byte against what nats-server 2.15.1
//! answered to the same requests (captured with a raw client; timestamps and
//! the server id masked, and `_nats.level`/`_nats.ver` in `metadata` carrying
//! our own API level and version).

mod common;

use common::{Raw, Server};

/// Masks the parts that legitimately differ between runs and servers.
fn mask(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body).into_owned();
    let mut out = String::new();
    let mut rest = s.as_str();
    // "key":"<time>" for time-valued keys, and the leader's name.
    let keys = [
        "\"created\":\"",
        "\"ts\":\"",
        "\"first_ts\":\"",
        "\"last_ts\":\"",
        "\"time\":\"",
        "\"leader\":\"",
        "\"last_active\":\"",
    ];
    loop {
        let next = keys
            .iter()
            .filter_map(|k| rest.find(k).map(|i| (i, *k)))
            .min();
        let Some((i, k)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i + k.len()]);
        rest = &rest[i + k.len()..];
        let end = rest.find('"').unwrap();
        let value = &rest[..end];
        out.push_str(if value == "0001-01-01T00:00:00Z" {
            value
        } else {
            "*"
        });
        rest = &rest[end..];
    }
    out.replace("\"_nats.level\":\"5\"", "\"_nats.level\":\"1\"")
        .replace("\"_nats.ver\":\"2.15.1\"", "\"_nats.ver\":\"2.11.0\"")
}

fn pubh(raw: &mut Raw, subject: &str, pairs: &[(&str, &str)], body: &str) -> String {
    let mut h = String::from("NATS/1.0\r\n");
    for (k, v) in pairs {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let hdr = if pairs.is_empty() {
        None
    } else {
        Some(h.as_bytes())
    };
    String::from_utf8(raw.request(subject, hdr, body.as_bytes()).1).unwrap()
}

fn setup(shards: usize) -> (Server, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(shards, dir.path(), &[]);
    let mut raw = server.raw();
    raw.setup_requests();
    (server, raw, dir)
}

fn req(raw: &mut Raw, subject: &str, body: &str) -> String {
    mask(&raw.request(subject, None, body.as_bytes()).1)
}

/// Sends direct get `body` to stream DG and checks the answers: the messages
/// `seqs` in order, then the end-of-batch header block `eob`.
fn direct_batch(raw: &mut Raw, body: &str, seqs: &[u64], eob: &str) {
    raw.send_request("$JS.API.DIRECT.GET.DG", None, body.as_bytes());
    for seq in seqs {
        let (h, _) = raw.read_msg();
        let h = String::from_utf8(h).unwrap();
        assert!(
            h.contains(&format!("Nats-Sequence: {seq}\r\n")),
            "{body}: {h}"
        );
    }
    let (h, _) = raw.read_msg();
    assert_eq!(String::from_utf8(h).unwrap(), eob, "{body}");
}

const MINIMAL_CONFIG: &str = r#"{"name":"A","subjects":["a.\u003e"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{},"allow_msg_ttl":false,"metadata":{"_nats.level":"5","_nats.req.level":"0","_nats.ver":"2.15.1"}}"#;

#[test]
fn create_info_and_errors_match_nats_server_bytes() {
    for shards in [1, 2] {
        let (_server, mut raw, _dir) = setup(shards);
        let empty_state = r#""state":{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#;
        let created = format!(
            r#"{{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{MINIMAL_CONFIG},"created":"*",{empty_state},"ts":"*","did_create":true}}"#
        );
        let created = mask(created.as_bytes());
        assert_eq!(
            req(
                &mut raw,
                "$JS.API.STREAM.CREATE.A",
                r#"{"name":"A","subjects":["a.>"]}"#
            ),
            created
        );
        // Idempotent: the same answer again (nats-server says did_create again).
        assert_eq!(
            req(
                &mut raw,
                "$JS.API.STREAM.CREATE.A",
                r#"{"name":"A","subjects":["a.>"]}"#
            ),
            created
        );
        assert_eq!(
            req(
                &mut raw,
                "$JS.API.STREAM.CREATE.A",
                r#"{"name":"A","subjects":["a.>"],"max_msgs":5}"#
            ),
            r#"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":400,"err_code":10058,"description":"stream name already in use with a different configuration"}}"#
        );
        let cases: &[(&str, &str, &str)] = &[
            (
                "$JS.API.STREAM.CREATE.M1",
                r#"{"name":"M2","subjects":["m.>"]}"#,
                r#"{"code":400,"err_code":10056,"description":"stream name in subject does not match request"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.E",
                "",
                r#"{"code":400,"err_code":10056,"description":"stream name in subject does not match request"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.S*",
                r#"{"name":"S*","subjects":["sx.>"]}"#,
                r#"{"code":500,"err_code":10052,"description":"stream name is required and can not contain '.', '*', '\u003e', '\\', '/'"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.R3",
                r#"{"name":"R3","subjects":["r3.>"],"num_replicas":3}"#,
                r#"{"code":500,"err_code":10074,"description":"replicas \u003e 1 not supported in non-clustered mode"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.SEAL",
                r#"{"name":"SEAL","subjects":["seal.>"],"sealed":true}"#,
                r#"{"code":500,"err_code":10052,"description":"stream configuration for create can not be sealed"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.AGE",
                r#"{"name":"AGE","max_age":50000000}"#,
                r#"{"code":500,"err_code":10052,"description":"max age needs to be \u003e= 100ms"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.DW",
                r#"{"name":"DW","max_age":1000000000,"duplicate_window":2000000000}"#,
                r#"{"code":500,"err_code":10052,"description":"duplicates window can not be larger then max age"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.DN",
                r#"{"name":"DN","discard_new_per_subject":true}"#,
                r#"{"code":500,"err_code":10052,"description":"discard new per subject requires discard new policy to be set"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.DN2",
                r#"{"name":"DN2","discard":"new","discard_new_per_subject":true}"#,
                r#"{"code":500,"err_code":10052,"description":"discard new per subject requires max msgs per subject \u003e 0"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.RU",
                r#"{"name":"RU","deny_purge":true,"allow_rollup_hdrs":true}"#,
                r#"{"code":500,"err_code":10052,"description":"roll-ups require the purge permission"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.OV",
                r#"{"name":"OV","subjects":["a.b"]}"#,
                r#"{"code":400,"err_code":10065,"description":"subjects overlap with an existing stream"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.ALL",
                r#"{"name":"ALL","subjects":[">"]}"#,
                r#"{"code":500,"err_code":10052,"description":"capturing all subjects requires no-ack to be true"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.JSAPI",
                r#"{"name":"JSAPI","subjects":["$JS.API.>"]}"#,
                r#"{"code":500,"err_code":10052,"description":"subjects that overlap with jetstream api require no-ack to be true"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.EMP",
                r#"{"name":"EMP","subjects":["x..b"]}"#,
                r#"{"code":500,"err_code":10052,"description":"invalid subject"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.RB",
                r#"{"name":"RB","retention":"bogus"}"#,
                r#"{"code":400,"err_code":10025,"description":"invalid JSON: can not unmarshal \"\\\"bogus\\\"\""}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.CE",
                r#"{"name":"CE","compression":""}"#,
                r#"{"code":400,"err_code":10025,"description":"invalid JSON: unknown compression algorithm"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.PS",
                r#"{"name":"P/S"}"#,
                r#"{"code":400,"err_code":10056,"description":"stream name in subject does not match request"}"#,
            ),
        ];
        for (subject, body, error) in cases {
            let want = format!(
                r#"{{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{error}}}"#
            );
            assert_eq!(req(&mut raw, subject, body), want, "{subject} {body}");
        }
        // Invalid JSON gets 10025 (the decoder's text differs from Go's).
        let bad = req(
            &mut raw,
            "$JS.API.STREAM.CREATE.X",
            r#"{"name":"X" "subjects":[]}"#,
        );
        assert!(bad.starts_with(r#"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":400,"err_code":10025,"description":"invalid JSON: "#), "{bad}");
        // The docs' mirror example as printed (a missing comma) is refused the same way.
        let printed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stream-configs/mirror-minimal.as-printed.json"
        ))
        .unwrap();
        let bad = req(&mut raw, "$JS.API.STREAM.CREATE.MIRROR_TARGET", &printed);
        assert!(bad.contains(r#""err_code":10025"#), "{bad}");

        // Info: paging fields first, cluster leader, then ts.
        let info = req(&mut raw, "$JS.API.STREAM.INFO.A", "");
        let want = mask(format!(r#"{{"type":"io.nats.jetstream.api.v1.stream_info_response","total":0,"offset":0,"limit":0,"config":{MINIMAL_CONFIG},"created":"*",{empty_state},"cluster":{{"leader":"*"}},"ts":"*"}}"#).as_bytes());
        assert_eq!(info, want);
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.INFO.NOPE", ""),
            r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"total":0,"offset":0,"limit":0}"#
        );
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.NAMES", ""),
            r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":1,"offset":0,"limit":1024,"streams":["A"]}"#
        );
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.NAMES", r#"{"subject":"zzz"}"#),
            r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":0,"offset":0,"limit":1024,"streams":null}"#
        );
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.LIST", r#"{"subject":"zzz"}"#),
            r#"{"type":"io.nats.jetstream.api.v1.stream_list_response","total":0,"offset":0,"limit":256,"streams":[]}"#
        );
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.DELETE.A", ""),
            r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
        );
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.DELETE.A", ""),
            r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#
        );
        // Unknown API subjects get no answer at all (but do not 503 either).
        raw.send_request("$JS.API.FOO", None, b"");
        assert_eq!(raw.flush(), "");
    }
}

#[test]
fn publish_acks_and_header_checks_match_nats_server_bytes() {
    let (_server, mut raw, _dir) = setup(2);
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.PB",
        r#"{"name":"PB","subjects":["pb.>"],"max_msg_size":100}"#,
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[], "one"),
        r#"{"stream":"PB","seq":1}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[("Nats-Msg-Id", "m1")], "two"),
        r#"{"stream":"PB","seq":2}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.b", &[("Nats-Msg-Id", "m1")], "other"),
        r#"{"stream":"PB","seq":2,"duplicate": true}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[("Nats-Expected-Stream", "NOPE")], "x"),
        r#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"PB","seq":0}"#
    );
    assert_eq!(
        pubh(
            &mut raw,
            "pb.a",
            &[("Nats-Expected-Last-Sequence", "1")],
            "x"
        ),
        r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 2"},"stream":"PB","seq":0}"#
    );
    assert_eq!(
        pubh(
            &mut raw,
            "pb.a",
            &[("Nats-Expected-Last-Sequence", "2")],
            "x"
        ),
        r#"{"stream":"PB","seq":3}"#
    );
    assert_eq!(
        pubh(
            &mut raw,
            "pb.c",
            &[("Nats-Expected-Last-Subject-Sequence", "5")],
            "x"
        ),
        r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 0"},"stream":"PB","seq":0}"#
    );
    assert_eq!(
        pubh(
            &mut raw,
            "pb.c",
            &[("Nats-Expected-Last-Subject-Sequence", "0")],
            "x"
        ),
        r#"{"stream":"PB","seq":4}"#
    );
    assert_eq!(
        pubh(
            &mut raw,
            "pb.a",
            &[("Nats-Expected-Last-Msg-Id", "zz")],
            "x"
        ),
        r#"{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID: "},"stream":"PB","seq":0}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[("Nats-Rollup", "sub")], "x"),
        r#"{"error":{"code":500,"err_code":10111,"description":"rollup not permitted"},"stream":"PB","seq":0}"#
    );
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.RU",
        r#"{"name":"RU","subjects":["ru"],"allow_rollup_hdrs":true}"#,
    );
    assert_eq!(
        pubh(&mut raw, "ru", &[("Nats-Rollup", "bogus")], "x"),
        r#"{"error":{"code":500,"err_code":10111,"description":"rollup value invalid: \"bogus\""},"stream":"RU","seq":0}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[], &"x".repeat(101)),
        r#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"PB","seq":0}"#
    );
    assert_eq!(
        pubh(&mut raw, "pb.a", &[("Nats-TTL", "1s")], "x"),
        r#"{"error":{"code":400,"err_code":10166,"description":"per-message TTL is disabled"},"stream":"PB","seq":0}"#
    );
    // A publish without a reply is stored silently.
    raw.send(b"PUB pb.z 1\r\nq\r\n");
    assert_eq!(raw.flush(), "");
    let info = req(&mut raw, "$JS.API.STREAM.INFO.PB", "");
    assert!(info.contains(r#""messages":5,"#), "{info}");

    // Discard new.
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.DN",
        r#"{"name":"DN","subjects":["dn.>"],"discard":"new","max_msgs":1}"#,
    );
    assert_eq!(
        pubh(&mut raw, "dn.a", &[], "1"),
        r#"{"stream":"DN","seq":1}"#
    );
    assert_eq!(
        pubh(&mut raw, "dn.a", &[], "2"),
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"DN","seq":0}"#
    );
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.DNS",
        r#"{"name":"DNS","subjects":["dns.>"],"discard":"new","max_msgs_per_subject":1,"discard_new_per_subject":true}"#,
    );
    assert_eq!(
        pubh(&mut raw, "dns.a", &[], "1"),
        r#"{"stream":"DNS","seq":1}"#
    );
    assert_eq!(
        pubh(&mut raw, "dns.a", &[], "2"),
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"},"stream":"DNS","seq":0}"#
    );
    assert_eq!(
        pubh(&mut raw, "dns.b", &[], "3"),
        r#"{"stream":"DNS","seq":2}"#
    );
    // A rollup replaces its subject's messages: the per-subject limit lets it in.
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.DNR",
        r#"{"name":"DNR","subjects":["dnr.>"],"discard":"new","max_msgs_per_subject":1,"discard_new_per_subject":true,"allow_rollup_hdrs":true}"#,
    );
    assert_eq!(
        pubh(&mut raw, "dnr.a", &[], "1"),
        r#"{"stream":"DNR","seq":1}"#
    );
    assert_eq!(
        pubh(&mut raw, "dnr.a", &[], "2"),
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"},"stream":"DNR","seq":0}"#
    );
    let sub = [("Nats-Rollup", "sub")];
    assert_eq!(
        pubh(&mut raw, "dnr.a", &sub, "3"),
        r#"{"stream":"DNR","seq":2}"#
    );
    let all = [("Nats-Rollup", "all")];
    assert_eq!(
        pubh(&mut raw, "dnr.a", &all, "4"),
        r#"{"stream":"DNR","seq":3}"#
    );
    // A subject at its limit: the message will replace the subject's first, so
    // max_msgs lets it in, and max_bytes unless it is larger than that first; with
    // discard_new_per_subject the per-subject refusal comes first.
    let exceeded = |what: &str, stream: &str| {
        format!(
            r#"{{"error":{{"code":503,"err_code":10077,"description":"maximum {what} exceeded"}},"stream":"{stream}","seq":0}}"#
        )
    };
    for (name, cfg) in [
        ("DM", r#""max_msgs":1"#),
        (
            "DP",
            r#""max_msgs":1,"discard_new_per_subject":true,"allow_rollup_hdrs":true"#,
        ),
        ("DB", r#""max_bytes":60"#),
    ] {
        let lower = name.to_lowercase();
        let body = format!(
            r#"{{"name":"{name}","subjects":["{lower}.>"],"discard":"new","max_msgs_per_subject":1,{cfg}}}"#
        );
        req(&mut raw, &format!("$JS.API.STREAM.CREATE.{name}"), &body);
        let subj = format!("{lower}.a");
        assert_eq!(
            pubh(&mut raw, &subj, &[], "x"),
            format!(r#"{{"stream":"{name}","seq":1}}"#)
        );
        let again = pubh(&mut raw, &subj, &[], "y");
        let bigger = pubh(&mut raw, &subj, &[], "yyyyyyyyyyyyyyyyyyyy");
        match name {
            "DM" => {
                assert_eq!(again, r#"{"stream":"DM","seq":2}"#);
                assert_eq!(bigger, r#"{"stream":"DM","seq":3}"#);
                assert_eq!(pubh(&mut raw, "dm.b", &[], "w"), exceeded("messages", "DM"));
            }
            "DP" => {
                assert_eq!(again, exceeded("messages per subject", "DP"));
                assert_eq!(bigger, exceeded("messages per subject", "DP"));
                assert_eq!(
                    pubh(&mut raw, "dp.a", &sub, "z"),
                    r#"{"stream":"DP","seq":2}"#
                );
                assert_eq!(pubh(&mut raw, "dp.b", &[], "w"), exceeded("messages", "DP"));
            }
            _ => {
                assert_eq!(again, r#"{"stream":"DB","seq":2}"#);
                assert_eq!(bigger, exceeded("bytes", "DB"));
            }
        }
    }
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.DNB",
        r#"{"name":"DNB","subjects":["dnb.>"],"discard":"new","max_bytes":40}"#,
    );
    assert_eq!(
        pubh(&mut raw, "dnb.a", &[], "1"),
        r#"{"stream":"DNB","seq":1}"#
    );
    assert_eq!(
        pubh(&mut raw, "dnb.a", &[], "2"),
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"},"stream":"DNB","seq":0}"#
    );
}

#[test]
fn get_delete_purge_and_direct_get_match_nats_server_bytes() {
    let (_server, mut raw, _dir) = setup(2);
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.DG",
        r#"{"name":"DG","subjects":["dg.>"],"allow_direct":true}"#,
    );
    for (s, b) in [("dg.x", "one"), ("dg.y", "two"), ("dg.x", "three")] {
        raw.request(s, None, b.as_bytes());
    }
    let h = b"NATS/1.0\r\nFoo: bar\r\n\r\n";
    raw.request("dg.h", Some(h), b"hdrbody");
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.MSG.GET.DG", r#"{"seq":1}"#),
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"dg.x","seq":1,"data":"b25l","time":"*"}}"#
    );
    assert_eq!(
        req(
            &mut raw,
            "$JS.API.STREAM.MSG.GET.DG",
            r#"{"last_by_subj":"dg.x"}"#
        ),
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"dg.x","seq":3,"data":"dGhyZWU=","time":"*"}}"#
    );
    assert_eq!(
        req(
            &mut raw,
            "$JS.API.STREAM.MSG.GET.DG",
            r#"{"next_by_subj":"dg.*","seq":2}"#
        ),
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"dg.y","seq":2,"data":"dHdv","time":"*"}}"#
    );
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.MSG.GET.DG", r#"{"seq":4}"#),
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"dg.h","seq":4,"hdrs":"TkFUUy8xLjANCkZvbzogYmFyDQoNCg==","data":"aGRyYm9keQ==","time":"*"}}"#
    );
    for (body, err) in [
        (
            "",
            r#"{"code":400,"err_code":10003,"description":"bad request"}"#,
        ),
        (
            r#"{"seq":1,"last_by_subj":"dg.x"}"#,
            r#"{"code":400,"err_code":10003,"description":"bad request"}"#,
        ),
        (
            r#"{"seq":99}"#,
            r#"{"code":404,"err_code":10037,"description":"no message found"}"#,
        ),
        (
            r#"{"seq":1,"batch":2}"#,
            r#"{"code":400,"err_code":10003,"description":"bad request"}"#,
        ),
    ] {
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.MSG.GET.DG", body),
            format!(
                r#"{{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","error":{err}}}"#
            ),
            "{body}"
        );
    }
    // Direct get: headers, then the batch with pending counts and 204 EOB.
    let (hdr, body) = raw.request("$JS.API.DIRECT.GET.DG", None, br#"{"seq":1}"#);
    let hdr = String::from_utf8(hdr).unwrap();
    assert!(hdr.starts_with("NATS/1.0\r\nNats-Stream: DG\r\nNats-Subject: dg.x\r\nNats-Sequence: 1\r\nNats-Time-Stamp: "), "{hdr}");
    assert_eq!(body, b"one");
    raw.send_request("$JS.API.DIRECT.GET.DG", None, br#"{"seq":1,"batch":3}"#);
    for (i, (seq, subj, pending, last)) in [(1, "dg.x", 3, 0), (2, "dg.y", 2, 1), (3, "dg.x", 1, 2)]
        .into_iter()
        .enumerate()
    {
        let (h, _) = raw.read_msg();
        let h = String::from_utf8(h).unwrap();
        assert!(
            h.contains(&format!("Nats-Subject: {subj}\r\nNats-Sequence: {seq}\r\n")),
            "{i}: {h}"
        );
        assert!(
            h.ends_with(&format!(
                "Nats-Num-Pending: {pending}\r\nNats-Last-Sequence: {last}\r\n\r\n"
            )),
            "{i}: {h}"
        );
    }
    let (h, b) = raw.read_msg();
    assert_eq!(
        h,
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 1\r\nNats-Last-Sequence: 3\r\n\r\n"
    );
    assert!(b.is_empty());
    // max_bytes: a message goes while fewer bytes (subject, headers, payload) went
    // before it: 7 then 14 of 8; 7 of 7; 7, 14, 23 then the 4th of 24; a negative
    // one stops after the first.
    for (max, seqs) in [(8, 2u64), (7, 1), (24, 4), (-1, 1)] {
        let body = format!(r#"{{"seq":1,"batch":5,"max_bytes":{max}}}"#);
        let eob = format!(
            "NATS/1.0 204 EOB\r\nNats-Num-Pending: {}\r\nNats-Last-Sequence: {seqs}\r\n\r\n",
            4 - seqs
        );
        direct_batch(&mut raw, &body, &(1..=seqs).collect::<Vec<_>>(), &eob);
    }
    // multi_last counts max_bytes the same way: the last of dg.y (2), dg.x (3) and
    // dg.h (4); 7 then 16 of 8.
    for (max, seqs) in [(0, vec![2u64, 3, 4]), (8, vec![2, 3])] {
        let body = format!(r#"{{"multi_last":["dg.*"],"max_bytes":{max}}}"#);
        let eob = format!(
            "NATS/1.0 204 EOB\r\nNats-Num-Pending: {}\r\nNats-Last-Sequence: {}\r\nNats-UpTo-Sequence: 4\r\n\r\n",
            3 - seqs.len(),
            seqs[seqs.len() - 1]
        );
        direct_batch(&mut raw, &body, &seqs, &eob);
    }
    let (h, b) = raw.request("$JS.API.DIRECT.GET.DG.dg.x", None, b"");
    assert!(String::from_utf8(h)
        .unwrap()
        .contains("Nats-Sequence: 3\r\n"));
    assert_eq!(b, b"three");
    let (h, _) = raw.request("$JS.API.DIRECT.GET.DG.dg.h", None, b"");
    assert!(String::from_utf8(h)
        .unwrap()
        .starts_with("NATS/1.0\r\nFoo: bar\r\nNats-Stream: DG\r\n"));
    for (subject, body, status) in [
        (
            "$JS.API.DIRECT.GET.DG",
            "",
            "NATS/1.0 408 Empty Request\r\n\r\n",
        ),
        (
            "$JS.API.DIRECT.GET.DG",
            "{bad",
            "NATS/1.0 408 Malformed Request\r\n\r\n",
        ),
        (
            "$JS.API.DIRECT.GET.DG",
            r#"{"seq":1,"last_by_subj":"dg.x"}"#,
            "NATS/1.0 408 Bad Request\r\n\r\n",
        ),
        (
            "$JS.API.DIRECT.GET.DG",
            r#"{"seq":99}"#,
            "NATS/1.0 404 Message Not Found\r\n\r\n",
        ),
        (
            "$JS.API.DIRECT.GET.DG.dg.x",
            r#"{"seq":1}"#,
            "NATS/1.0 408 Bad Request\r\n\r\n",
        ),
        (
            "$JS.API.DIRECT.GET.NOPE",
            r#"{"seq":1}"#,
            "NATS/1.0 503\r\nNats-Subject: $JS.API.DIRECT.GET.NOPE\r\n\r\n",
        ),
    ] {
        let (h, b) = raw.request(subject, None, body.as_bytes());
        assert_eq!(String::from_utf8(h).unwrap(), status, "{subject} {body}");
        assert!(b.is_empty());
    }
    // Message delete and purge.
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.MSG.DELETE.DG", r#"{"seq":2}"#),
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true}"#
    );
    for (body, err) in [
        (
            r#"{"seq":2}"#,
            r#"{"code":400,"err_code":10043,"description":"sequence 2 not found"}"#,
        ),
        (
            r#"{"seq":99}"#,
            r#"{"code":500,"err_code":10057,"description":"stream store EOF"}"#,
        ),
        (
            r#"{"seq":0}"#,
            r#"{"code":500,"err_code":10057,"description":"no message found"}"#,
        ),
        (
            "{}",
            r#"{"code":400,"err_code":10003,"description":"bad request"}"#,
        ),
    ] {
        assert_eq!(
            req(&mut raw, "$JS.API.STREAM.MSG.DELETE.DG", body),
            format!(
                r#"{{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","error":{err}}}"#
            ),
            "{body}"
        );
    }
    let info = req(
        &mut raw,
        "$JS.API.STREAM.INFO.DG",
        r#"{"deleted_details":true}"#,
    );
    assert!(
        info.contains(r#""num_subjects":2,"num_deleted":1,"deleted":[2],"consumer_count":0"#),
        "{info}"
    );
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.PURGE.DG", r#"{"seq":3,"keep":1}"#),
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":400,"err_code":10003,"description":"bad request"},"purged":0}"#
    );
    assert_eq!(
        req(
            &mut raw,
            "$JS.API.STREAM.PURGE.DG",
            r#"{"filter":"dg.x","keep":1}"#
        ),
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":1}"#
    );
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.PURGE.DG", ""),
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":2}"#
    );
    let info = req(&mut raw, "$JS.API.STREAM.INFO.DG", "");
    assert!(info.contains(r#""state":{"messages":0,"bytes":0,"first_seq":5,"first_ts":"0001-01-01T00:00:00Z","last_seq":4,"last_ts":"*","consumer_count":0}"#), "{info}");
    // A purge floor past the end moves the sequence: the next message gets it.
    assert_eq!(
        req(&mut raw, "$JS.API.STREAM.PURGE.DG", r#"{"seq":100}"#),
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":0}"#
    );
    let info = req(&mut raw, "$JS.API.STREAM.INFO.DG", "");
    assert!(
        info.contains(r#""first_seq":100,"first_ts":"0001-01-01T00:00:00Z","last_seq":99,"#),
        "{info}"
    );
    assert_eq!(
        pubh(&mut raw, "dg.x", &[], "after"),
        r#"{"stream":"DG","seq":100}"#
    );
    // A request without a reply subject is still carried out.
    raw.send(b"PUB $JS.API.STREAM.CREATE.NR 13\r\n{\"name\":\"NR\"}\r\n");
    assert_eq!(raw.flush(), "");
    let info = req(&mut raw, "$JS.API.STREAM.INFO.NR", "");
    assert!(info.contains(r#""name":"NR""#), "{info}");
    // Delete, then create the same name at once: the new stream is intact.
    req(&mut raw, "$JS.API.STREAM.DELETE.NR", "");
    let created = req(
        &mut raw,
        "$JS.API.STREAM.CREATE.NR",
        r#"{"name":"NR","subjects":["nr"]}"#,
    );
    assert!(created.contains(r#""did_create":true"#), "{created}");
    assert_eq!(pubh(&mut raw, "nr", &[], "x"), r#"{"stream":"NR","seq":1}"#);
}

/// Consumers: create, info, errors, names and a pull, against the bytes
/// nats-server 2.15.1 sent for the same requests (js-consumer-ref captures).
#[test]
fn consumer_api_and_pull_match_nats_server_bytes() {
    for shards in [1, 2] {
        let (_server, mut raw, _dir) = setup(shards);
        req(
            &mut raw,
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"]}"#,
        );
        for (subject, body) in [("s.a", "one"), ("s.b", "two"), ("s.a", "three")] {
            pubh(&mut raw, subject, &[], body);
        }
        pubh(&mut raw, "s.c", &[("X-Foo", "bar")], "four");
        let meta = r#""metadata":{"_nats.level":"5","_nats.req.level":"0","_nats.ver":"2.15.1"}"#;
        let cases: Vec<(&str, String, String)> = vec![
            (
                "$JS.API.CONSUMER.CREATE.S.C1",
                r#"{"stream_name":"S","config":{"durable_name":"C1","ack_policy":"explicit"}}"#.into(),
                format!(r#"{{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"S","name":"C1","created":"*","config":{{"durable_name":"C1","name":"C1","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0,{meta}}},"delivered":{{"consumer_seq":0,"stream_seq":0}},"ack_floor":{{"consumer_seq":0,"stream_seq":0}},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":4,"ts":"*"}}"#),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.DL",
                r#"{"stream_name":"S","config":{"durable_name":"DL","ack_policy":"explicit","deliver_policy":"last"}}"#.into(),
                format!(r#"{{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"S","name":"DL","created":"*","config":{{"durable_name":"DL","name":"DL","deliver_policy":"last","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0,{meta}}},"delivered":{{"consumer_seq":0,"stream_seq":3}},"ack_floor":{{"consumer_seq":0,"stream_seq":3}},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":1,"ts":"*"}}"#),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.DLP2",
                r#"{"stream_name":"S","config":{"durable_name":"DLP2","ack_policy":"explicit","deliver_policy":"last_per_subject","filter_subject":"s.a"}}"#.into(),
                format!(r#"{{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"S","name":"DLP2","created":"*","config":{{"durable_name":"DLP2","name":"DLP2","deliver_policy":"last_per_subject","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"filter_subject":"s.a","replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0,{meta}}},"delivered":{{"consumer_seq":0,"stream_seq":2}},"ack_floor":{{"consumer_seq":0,"stream_seq":2}},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":1,"ts":"*"}}"#),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.NC",
                r#"{"stream_name":"S"}"#.into(),
                format!(r#"{{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"S","name":"NC","created":"*","config":{{"name":"NC","deliver_policy":"all","ack_policy":"none","max_deliver":-1,"replay_policy":"instant","max_waiting":512,"inactive_threshold":5000000000,"num_replicas":0,{meta}}},"delivered":{{"consumer_seq":0,"stream_seq":0}},"ack_floor":{{"consumer_seq":0,"stream_seq":0}},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":4,"ts":"*"}}"#),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.BO4",
                r#"{"stream_name":"S","config":{"durable_name":"BO4","ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":1}}"#.into(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":400,"err_code":10116,"description":"max deliver is required to be \u003e length of backoff values"}}"#.into(),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S",
                r#"{"stream_name":"S","config":{"durable_name":"E1"}}"#.into(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":400,"err_code":10020,"description":"consumer expected to be ephemeral but a durable name was set in request"}}"#.into(),
            ),
            (
                "$JS.API.CONSUMER.CREATE.S.EB",
                String::new(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":400,"err_code":10056,"description":"stream name in subject does not match request"}}"#.into(),
            ),
            (
                "$JS.API.CONSUMER.INFO.S.NOPE",
                String::new(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","error":{"code":404,"err_code":10014,"description":"consumer not found"}}"#.into(),
            ),
            (
                "$JS.API.CONSUMER.NAMES.NOSTREAM",
                String::new(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_names_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"total":0,"offset":0,"limit":0,"consumers":[]}"#.into(),
            ),
            (
                "$JS.API.CONSUMER.NAMES.S",
                r#"{"offset":1}"#.into(),
                r#"{"type":"io.nats.jetstream.api.v1.consumer_names_response","total":4,"offset":1,"limit":1024,"consumers":["DL","DLP2","NC"]}"#.into(),
            ),
        ];
        for (subject, body, want) in cases {
            assert_eq!(
                req(&mut raw, subject, &body),
                mask(want.as_bytes()),
                "{subject} on {shards} shards"
            );
        }
        // A pull of two: stored subjects, v1 ack subjects with the stored
        // timestamp and the pending count after each message.
        let pull = format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.S.C1 {}.pull 11\r\n{{\"batch\":2}}\r\n",
            raw.inbox
        );
        raw.send(pull.as_bytes());
        let mut lines = Vec::new();
        for _ in 0..2 {
            let line = raw.read_line();
            let body = raw.read_line();
            let t: Vec<&str> = line.trim_end().split(' ').collect();
            let ack: Vec<&str> = t[3].split('.').collect();
            assert_eq!(ack[7].len(), 19, "{line}");
            lines.push(format!(
                "{} {} {} {} {}",
                t[1],
                ack[..7].join("."),
                ack[8],
                t[4],
                body.trim_end()
            ));
        }
        assert_eq!(
            lines,
            [
                "s.a $JS.ACK.S.C1.1.1.1 3 3 one",
                "s.b $JS.ACK.S.C1.1.2.2 2 3 two"
            ]
        );
        // A pull on a missing consumer: no responders, as nats-server (no JSON).
        let (hdr, body) = raw.request("$JS.API.CONSUMER.MSG.NEXT.S.NOPE", None, b"");
        assert_eq!(
            (String::from_utf8(hdr).unwrap(), body),
            (
                "NATS/1.0 503\r\nNats-Subject: $JS.API.CONSUMER.MSG.NEXT.S.NOPE\r\n\r\n"
                    .to_string(),
                Vec::new()
            )
        );
    }
}

/// Several application instances starting at once each create the same
/// stream (and a client retries a create that timed out): every identical
/// create is answered with the stream's info, as nats-server answers, even
/// while the first is still making the stream's files; so is a request
/// about the stream right behind them.
#[test]
fn identical_creates_in_flight_together_all_succeed() {
    for shards in [1, 2] {
        let (_server, mut raw, _dir) = setup(shards);
        // One write: the server reads them together.
        let cfg = r#"{"name":"SAME","subjects":["same.>"]}"#;
        let inbox = raw.inbox.clone();
        let create = format!(
            "PUB $JS.API.STREAM.CREATE.SAME {inbox}.x {}\r\n{cfg}\r\n",
            cfg.len()
        );
        let mut out = create.repeat(4);
        out.push_str(&format!("PUB $JS.API.STREAM.INFO.SAME {inbox}.x 0\r\n\r\n"));
        raw.send(out.as_bytes());
        for i in 0..5 {
            let body = String::from_utf8(raw.read_msg().1).unwrap();
            assert!(
                !body.contains("\"error\""),
                "{shards} shards, answer {i}: {body}"
            );
            assert!(body.contains("\"name\":\"SAME\""), "{body}");
        }
    }
}

/// A delete sent right behind a create applies after it: the delete removes
/// the stream just made (it is not answered `stream not found` while the
/// create is still making the stream's files, leaving the stream). nats-server
/// 2.15 answers this race either way, depending on timing.
#[test]
fn a_delete_behind_a_create_in_flight_deletes_the_new_stream() {
    for shards in [1, 2] {
        let (_server, mut raw, _dir) = setup(shards);
        let inbox = raw.inbox.clone();
        let cfg = r#"{"name":"GONE","subjects":["gone.>"]}"#;
        let out = format!(
            "PUB $JS.API.STREAM.CREATE.GONE {inbox}.c {}\r\n{cfg}\r\n\
             PUB $JS.API.STREAM.DELETE.GONE {inbox}.d 0\r\n\r\n",
            cfg.len()
        );
        raw.send(out.as_bytes());
        let mut answers: Vec<String> = (0..2)
            .map(|_| String::from_utf8(raw.read_msg().1).unwrap())
            .collect();
        answers.sort(); // create_response before delete_response
        assert!(
            !answers[0].contains("\"error\""),
            "{shards} shards: {}",
            answers[0]
        );
        assert!(
            answers[1].contains("\"success\":true"),
            "{shards} shards: {}",
            answers[1]
        );
        let names = req(&mut raw, "$JS.API.STREAM.NAMES", "");
        assert!(!names.contains("GONE"), "{shards} shards: {names}");
    }
}

/// Subjects of clustered servers get nats-server's 10010 answer; subjects it does not
/// serve get no answer and are not counted in `api.total`; a payload of whitespace
/// alone is not empty (info and delete refuse it), `{ }` is.
#[test]
fn clustering_subjects_unknown_subjects_and_empty_payloads_match_nats_server() {
    for shards in [1, 2] {
        let (_server, mut raw, _dir) = setup(shards);
        req(
            &mut raw,
            "$JS.API.STREAM.CREATE.A",
            r#"{"name":"A","subjects":["a.>"]}"#,
        );
        req(
            &mut raw,
            "$JS.API.CONSUMER.CREATE.A.C",
            r#"{"stream_name":"A","config":{"name":"C"}}"#,
        );
        let clustered = |kind: &str| {
            format!(
                r#"{{"type":"io.nats.jetstream.api.v1.{kind}","error":{{"code":503,"err_code":10010,"description":"JetStream clustering support required"}}}}"#
            )
        };
        for (subject, body, kind) in [
            (
                "$JS.API.STREAM.LEADER.STEPDOWN.A",
                "",
                "stream_leader_stepdown_response",
            ),
            (
                "$JS.API.STREAM.LEADER.STEPDOWN.NONE",
                "",
                "stream_leader_stepdown_response",
            ),
            (
                "$JS.API.STREAM.PEER.REMOVE.A",
                r#"{"peer":"x"}"#,
                "stream_remove_peer_response",
            ),
            (
                "$JS.API.CONSUMER.LEADER.STEPDOWN.A.C",
                "",
                "consumer_leader_stepdown_response",
            ),
            (
                "$JS.API.STREAM.PEER.EVACUATE.A",
                "",
                "stream_evacuate_peer_response",
            ),
            (
                "$JS.API.STREAM.CANCEL_MOVE.A",
                "",
                "stream_cancel_move_response",
            ),
            (
                "$JS.API.CONSUMER.PEER.REMOVE.A.C",
                "",
                "consumer_remove_peer_response",
            ),
            (
                "$JS.API.CONSUMER.PEER.EVACUATE.A.C",
                "",
                "consumer_evacuate_peer_response",
            ),
        ] {
            assert_eq!(req(&mut raw, subject, body), clustered(kind), "{subject}");
        }
        // Before the API level is looked at.
        let level = b"NATS/1.0\r\nNats-Required-Api-Level: 99\r\n\r\n";
        let (_, got) = raw.request("$JS.API.STREAM.LEADER.STEPDOWN.A", Some(level), b"");
        assert_eq!(mask(&got), clustered("stream_leader_stepdown_response"));
        let not_empty = |kind: &str| {
            format!(
                r#"{{"type":"io.nats.jetstream.api.v1.{kind}","error":{{"code":400,"err_code":10038,"description":"expected an empty request payload"}}}}"#
            )
        };
        let got = req(&mut raw, "$JS.API.CONSUMER.INFO.A.C", " ");
        assert_eq!(got, not_empty("consumer_info_response"));
        let got = req(&mut raw, "$JS.API.CONSUMER.INFO.A.C", " { } ");
        assert!(
            got.contains(r#""name":"C""#) && !got.contains("error"),
            "{got}"
        );
        let got = req(&mut raw, "$JS.API.STREAM.DELETE.A", "\r\n");
        assert_eq!(got, not_empty("stream_delete_response"));
        let api = |raw: &mut Raw| {
            let v: serde_json::Value = serde_json::from_str(&req(raw, "$JS.API.INFO", "")).unwrap();
            (
                v["api"]["total"].as_u64().unwrap(),
                v["api"]["errors"].as_u64().unwrap(),
            )
        };
        let before = api(&mut raw);
        for subject in [
            "$JS.API.NOPE",
            "$JS.API.STREAM.TEMPLATE.NAMES",
            "$JS.API.META.LEADER.STEPDOWN",
            "$JS.API.CONSUMER.INFO.A",
            "$JS.API.CONSUMER.INFO.A.C.x",
        ] {
            raw.send_request(subject, None, b"");
            raw.send_request(subject, Some(level), b"");
        }
        // Counted: the stepdown's error and the account info reading it.
        req(&mut raw, "$JS.API.STREAM.LEADER.STEPDOWN.A", "");
        let after = api(&mut raw);
        assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
    }
}

/// `jetstream { strict: true }` (nats-server's default since 2.12): a request with a
/// field nats-server does not know is refused with 10025, naming the field as sent, at
/// any depth; user metadata and `pedantic` are known; direct gets and pull requests
/// are not checked. Without it, jetcore ignores unknown fields (its default).
#[test]
fn strict_mode_refuses_unknown_fields_as_nats_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("strict.conf");
    std::fs::write(&conf, "jetstream { strict: true }\n").unwrap();
    let store = dir.path().join("js");
    let server = Server::start_js(2, &store, &["-c", conf.to_str().unwrap()]);
    let mut raw = server.raw();
    raw.setup_requests();
    req(
        &mut raw,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"allow_direct":true}"#,
    );
    req(
        &mut raw,
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"name":"C"}}"#,
    );
    raw.request("s.1", None, b"x");
    let refused = |kind: &str, field: &str, tail: &str| {
        format!(
            r#"{{"type":"io.nats.jetstream.api.v1.{kind}","error":{{"code":400,"err_code":10025,"description":"invalid JSON: json: unknown field \"{field}\""}}{tail}}}"#
        )
    };
    let paged = r#","total":0,"offset":0,"limit":0"#;
    for (subject, body, want) in [
        (
            "$JS.API.STREAM.CREATE.T",
            r#"{"name":"T","subjects":["t"],"zz":1}"#,
            refused("stream_create_response", "zz", ""),
        ),
        (
            "$JS.API.STREAM.CREATE.T",
            r#"{"name":"T","subjects":["t"],"sources":[{"name":"S","Zz":1}]}"#,
            refused("stream_create_response", "Zz", ""),
        ),
        (
            "$JS.API.STREAM.CREATE.T",
            r#"{"name":"T","subjects":["t"],"placement":{"zz":1}}"#,
            refused("stream_create_response", "zz", ""),
        ),
        (
            "$JS.API.STREAM.INFO.S",
            r#"{"zz":1}"#,
            refused("stream_info_response", "zz", paged),
        ),
        (
            "$JS.API.STREAM.NAMES",
            r#"{"zz":1}"#,
            refused(
                "stream_names_response",
                "zz",
                &format!("{paged},\"streams\":null"),
            ),
        ),
        (
            "$JS.API.STREAM.PURGE.S",
            r#"{"zz":1}"#,
            refused("stream_purge_response", "zz", r#","purged":0"#),
        ),
        (
            "$JS.API.STREAM.MSG.GET.S",
            r#"{"seq":1,"zz":1}"#,
            refused("stream_msg_get_response", "zz", ""),
        ),
        (
            "$JS.API.STREAM.MSG.DELETE.S",
            r#"{"seq":9,"zz":1}"#,
            refused("stream_msg_delete_response", "zz", ""),
        ),
        (
            "$JS.API.CONSUMER.CREATE.S.D",
            r#"{"stream_name":"S","config":{"name":"D","zz":1}}"#,
            refused("consumer_create_response", "zz", ""),
        ),
        (
            "$JS.API.CONSUMER.CREATE.S.D",
            r#"{"stream_name":"S","config":{"name":"D"},"zz":1}"#,
            refused("consumer_create_response", "zz", ""),
        ),
        (
            "$JS.API.CONSUMER.NAMES.S",
            r#"{"zz":1}"#,
            refused(
                "consumer_names_response",
                "zz",
                &format!("{paged},\"consumers\":[]"),
            ),
        ),
        (
            "$JS.API.CONSUMER.PAUSE.S.C",
            r#"{"zz":1}"#,
            refused(
                "consumer_pause_response",
                "zz",
                r#","paused":false,"pause_until":"0001-01-01T00:00:00Z""#,
            ),
        ),
    ] {
        assert_eq!(req(&mut raw, subject, body), want, "{subject} {body}");
    }
    let made = req(
        &mut raw,
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["t"],"pedantic":true,"metadata":{"zz":"1"}}"#,
    );
    assert!(made.contains(r#""did_create":true"#), "{made}");
    let (_, got) = raw.request("$JS.API.DIRECT.GET.S", None, br#"{"seq":1,"zz":1}"#);
    assert_eq!(got, b"x");
    let (_, got) = raw.request(
        "$JS.API.CONSUMER.MSG.NEXT.S.C",
        None,
        br#"{"batch":1,"expires":2000000000,"zz":1}"#,
    );
    assert_eq!(got, b"x");
    if common::reference_server().is_none() {
        // jetcore's default: unknown fields ignored.
        let (_server, mut raw, _dir) = setup(1);
        let made = req(
            &mut raw,
            "$JS.API.STREAM.CREATE.T",
            r#"{"name":"T","subjects":["t"],"zz":1}"#,
        );
        assert!(made.contains(r#""did_create":true"#), "{made}");
    }
}
