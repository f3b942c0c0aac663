//! Consumers through the API: create (every subject form and action), info, list, delete, limits, pause, inactivity, and what a config may not say.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_consumer_api` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, AckPolicy, DeliverPolicy},
};
use futures::TryStreamExt;
use serde_json::{json, Value};

use common::consumers::*;

#[tokio::test]
async fn create_info_list_and_delete_durable_and_ephemeral() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["s.>"]).await;
    for i in 0..3 {
        publish(&e.js, "s.a", format!("m{i}")).await;
    }
    let d = s.create_consumer(durable("D")).await.unwrap();
    let i = info(&d).await;
    assert_eq!((i.name.as_str(), i.stream_name.as_str()), ("D", "S"));
    assert_eq!(i.config.durable_name.as_deref(), Some("D"));
    assert_eq!(i.config.name.as_deref(), Some("D"));
    // Server defaults for an explicit-ack durable.
    assert_eq!(i.config.ack_policy, AckPolicy::Explicit);
    assert_eq!(i.config.ack_wait, Duration::from_secs(30));
    assert_eq!(i.config.max_deliver, -1);
    assert_eq!(i.config.max_waiting, 512);
    assert_eq!(i.config.max_ack_pending, 1000);
    assert_eq!(i.config.inactive_threshold, Duration::ZERO);
    assert_eq!(i.config.deliver_policy, DeliverPolicy::All);
    assert_eq!((pos(&i.delivered), pos(&i.ack_floor)), ((0, 0), (0, 0)));
    assert_eq!((i.num_pending, i.num_ack_pending, i.num_waiting), (3, 0, 0));
    assert_eq!(i.num_redelivered, 0);

    // An ephemeral gets a generated 8-character name and a 5 s inactive threshold.
    let eph = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let ei = eph.cached_info().clone();
    assert_eq!(ei.config.durable_name, None);
    assert_eq!(ei.name.len(), 8, "{}", ei.name);
    assert_eq!(ei.config.inactive_threshold, Duration::from_secs(5));
    assert_eq!(ei.num_pending, 3);

    let mut expected = vec!["D".to_string(), ei.name.clone()];
    expected.sort();
    // In no particular order (nats-server's come from a map).
    let mut names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    names.sort();
    assert_eq!(names, expected);
    let listed: Vec<consumer::Info> = s.consumers().try_collect().await.unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|i| i.name).collect();
    listed.sort();
    assert_eq!(listed, expected);
    assert_eq!(stream_state(&e.js, "S").await.consumer_count, 2);

    assert!(s.delete_consumer("D").await.unwrap().success);
    assert!(s.get_consumer::<pull::Config>("D").await.is_err());
    let v = api(&e.client, "CONSUMER.INFO.S.D", Value::Null).await;
    assert_eq!(
        (v["error"]["code"].as_u64(), err_code(&v)),
        (Some(404), 10014)
    );
    let v = api(&e.client, "CONSUMER.DELETE.S.D", Value::Null).await;
    assert_eq!(err_code(&v), 10014);
    let v = api(&e.client, "CONSUMER.INFO.NOPE.D", Value::Null).await;
    assert_eq!(err_code(&v), 10059, "unknown stream");
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names, vec![ei.name.clone()]);
    assert_eq!(stream_state(&e.js, "S").await.consumer_count, 1);
}

/// Where a new consumer starts once the first messages are gone: `all` and a start
/// sequence before the first message start at the first one left, and info reports
/// the sequence before it as delivered and acknowledged (nats-server 2.15.1's numbers).
#[tokio::test]
async fn a_new_consumer_starts_at_the_first_message_left() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["s.>"]).await;
    for i in 0..5 {
        publish(&e.js, &format!("s.{}", i % 2), format!("m{i}")).await;
    }
    let starts = |policy: DeliverPolicy| pull::Config {
        deliver_policy: policy,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let seq = |n| DeliverPolicy::ByStartSequence { start_sequence: n };
    // (policy, delivered and floor, pending) after each removal.
    let check = |s: jetstream::stream::Stream, cases: Vec<(DeliverPolicy, u64, u64)>| async move {
        for (policy, before, pending) in cases {
            let c = s.create_consumer(starts(policy)).await.unwrap();
            let i = info(&c).await;
            assert_eq!(
                (pos(&i.delivered), pos(&i.ack_floor), i.num_pending),
                ((0, before), (0, before), pending),
                "{policy:?}"
            );
            s.delete_consumer(&i.name).await.unwrap();
        }
    };
    check(s.clone(), vec![(DeliverPolicy::All, 0, 5), (seq(3), 2, 3)]).await;
    s.purge().keep(3).await.unwrap();
    check(s.clone(), vec![(DeliverPolicy::All, 2, 3), (seq(2), 2, 3)]).await;
    s.delete_message(3).await.unwrap();
    check(
        s.clone(),
        vec![(DeliverPolicy::All, 3, 2), (seq(3), 3, 2), (seq(5), 4, 1)],
    )
    .await;
    // The first message a consumer starting before it gets is the first one left.
    let c = s.create_consumer(starts(seq(1))).await.unwrap();
    let mut batch = c.fetch().max_messages(1).messages().await.unwrap();
    let m = batch.try_next().await.unwrap().unwrap();
    assert_eq!(m.info().unwrap().stream_sequence, 4);
    s.purge().await.unwrap();
    check(
        s.clone(),
        vec![
            (DeliverPolicy::All, 5, 0),
            (seq(3), 5, 0),
            (seq(100), 99, 0),
            (DeliverPolicy::New, 5, 0),
        ],
    )
    .await;
}

/// Start positions with filters, where nats-server 2.15.1 puts them: `last` and
/// `last_per_subject` matching nothing, `last_per_subject` on a stream keeping one
/// message per subject (as `all`), and `by_start_time` skipping to the first
/// message the filter takes. Stream F holds 3..=6 (f.2, f.0, f.1, f.2), stream G
/// 4..=6 (g.0, g.1, g.2).
#[tokio::test]
async fn filtered_start_positions_match_nats_server() {
    let e = env(2).await;
    let api = |subject: String, body: Value| {
        let client = e.client.clone();
        async move {
            let m = client
                .request(subject, body.to_string().into())
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&m.payload).unwrap()
        }
    };
    api(
        "$JS.API.STREAM.CREATE.F".into(),
        json!({"name": "F", "subjects": ["f.>"]}),
    )
    .await;
    api(
        "$JS.API.STREAM.CREATE.G".into(),
        json!({"name": "G", "subjects": ["g.>"], "max_msgs_per_subject": 1}),
    )
    .await;
    for i in 0..6 {
        publish(&e.js, &format!("f.{}", i % 3), "x").await;
        publish(&e.js, &format!("g.{}", i % 3), "x").await;
    }
    api("$JS.API.STREAM.PURGE.F".into(), json!({"keep": 4})).await;
    let epoch = "2000-01-01T00:00:00Z";
    for (stream, cfg, delivered, pending) in [
        (
            "F",
            json!({"deliver_policy": "last", "filter_subject": "f.none"}),
            2,
            0,
        ),
        (
            "F",
            json!({"deliver_policy": "last_per_subject", "filter_subject": "f.none"}),
            5,
            0,
        ),
        (
            "F",
            json!({"deliver_policy": "last", "filter_subject": "f.1"}),
            4,
            1,
        ),
        (
            "F",
            json!({"deliver_policy": "last_per_subject", "filter_subjects": ["f.0", "f.2"]}),
            3,
            2,
        ),
        (
            "G",
            json!({"deliver_policy": "last_per_subject", "filter_subject": "g.1"}),
            3,
            1,
        ),
        (
            "G",
            json!({"deliver_policy": "last_per_subject", "filter_subject": "g.none"}),
            3,
            0,
        ),
        (
            "G",
            json!({"deliver_policy": "last_per_subject", "filter_subject": "g.>"}),
            3,
            3,
        ),
        (
            "F",
            json!({"deliver_policy": "by_start_time", "opt_start_time": epoch, "filter_subject": "f.1"}),
            4,
            1,
        ),
        (
            "F",
            json!({"deliver_policy": "all", "filter_subject": "f.1"}),
            2,
            1,
        ),
    ] {
        let mut config = cfg.clone();
        config["ack_policy"] = json!("explicit");
        let body = json!({"stream_name": stream, "config": config});
        let i = api(format!("$JS.API.CONSUMER.CREATE.{stream}"), body).await;
        let got = (
            &i["delivered"]["stream_seq"],
            &i["ack_floor"]["stream_seq"],
            &i["num_pending"],
        );
        assert_eq!(
            got,
            (&json!(delivered), &json!(delivered), &json!(pending)),
            "{cfg}"
        );
    }
}

#[tokio::test]
async fn create_action_semantics_and_config_errors() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["p.>"]).await;
    let c = &e.client;
    let cfg = json!({"durable_name":"C","ack_policy":"explicit","description":"one"});
    let create = |cfg: Value, action: &str| json!({"stream_name":"S","config":cfg,"action":action});

    let first = api(c, "CONSUMER.CREATE.S.C", create(cfg.clone(), "create")).await;
    assert_eq!(err_code(&first), 0, "{first}");
    assert_eq!(
        first["type"],
        "io.nats.jetstream.api.v1.consumer_create_response"
    );
    // Creating an identical consumer again is fine and returns the same consumer.
    let again = api(c, "CONSUMER.CREATE.S.C", create(cfg.clone(), "create")).await;
    assert_eq!(err_code(&again), 0, "{again}");
    assert_eq!(again["created"], first["created"]);
    let mut two = cfg.clone();
    two["description"] = json!("two");
    let v = api(c, "CONSUMER.CREATE.S.C", create(two.clone(), "create")).await;
    assert_eq!(
        v["error"],
        json!({"code":400,"err_code":10148,"description":"consumer already exists"})
    );
    let mut x = cfg.clone();
    x["durable_name"] = json!("X");
    let v = api(c, "CONSUMER.CREATE.S.X", create(x, "update")).await;
    assert_eq!(
        v["error"],
        json!({"code":400,"err_code":10149,"description":"consumer does not exist"})
    );
    let v = api(c, "CONSUMER.CREATE.S.C", create(two, "update")).await;
    assert_eq!(v["config"]["description"], "two", "{v}");
    let mut three = cfg.clone();
    three["description"] = json!("three");
    let v = api(
        c,
        "CONSUMER.CREATE.S.C",
        json!({"stream_name":"S","config":three}),
    )
    .await;
    assert_eq!(v["config"]["description"], "three", "{v}");

    // The same rules through the client's strict create and update.
    let strict = s
        .create_consumer_strict(pull::Config {
            description: Some("four".into()),
            ..durable("C")
        })
        .await
        .unwrap_err();
    assert_eq!(
        strict.kind(),
        jetstream::stream::ConsumerCreateStrictErrorKind::AlreadyExists
    );
    let update = s.update_consumer(durable("Y")).await.unwrap_err();
    assert_eq!(
        update.kind(),
        jetstream::stream::ConsumerUpdateErrorKind::DoesNotExist
    );

    // Config and subject errors, each with nats-server's code.
    let cases: Vec<(&str, Value, u64)> = vec![
        ("CONSUMER.CREATE.S.C", create(cfg.clone(), "bogus"), 10025),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":cfg}),
            10017,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"T","config":{"name":"Y"}}),
            10056,
        ),
        (
            "CONSUMER.CREATE.S.Y.p.a",
            json!({"stream_name":"S","config":{"name":"Y","filter_subject":"p.b"}}),
            10131,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":{"name":"Y","filter_subject":"p.b","filter_subjects":["p.a"]}}),
            10136,
        ),
        (
            "CONSUMER.CREATE.S.Y",
            json!({"stream_name":"S","config":{"name":"Y","filter_subjects":["p.>","p.a"]}}),
            10138,
        ),
        (
            "CONSUMER.CREATE.S.C",
            json!({"stream_name":"S","config":{"durable_name":"C","ack_policy":"none","description":"three"}}),
            10012,
        ),
        (
            "CONSUMER.CREATE.S",
            json!({"stream_name":"S","config":{"durable_name":"Q"}}),
            10020,
        ),
        (
            "CONSUMER.CREATE.S.H",
            json!({"stream_name":"S","config":{"name":"H","idle_heartbeat":1_000_000_000u64}}),
            10088,
        ),
        (
            "CONSUMER.CREATE.S.B",
            json!({"stream_name":"S","config":{"name":"B","ack_policy":"explicit","backoff":[1_000_000_000u64,2_000_000_000u64],"max_deliver":1}}),
            10116,
        ),
    ];
    for (subject, body, code) in cases {
        let v = api(c, subject, body.clone()).await;
        assert_eq!(err_code(&v), code, "{subject} {body}: {v}");
    }
    // max_deliver equal to the number of backoff steps is accepted.
    let v = api(
        c,
        "CONSUMER.CREATE.S.B",
        json!({"stream_name":"S","config":{"name":"B","ack_policy":"explicit","backoff":[1_000_000_000u64,2_000_000_000u64],"max_deliver":2}}),
    )
    .await;
    assert_eq!(err_code(&v), 0, "{v}");
    // The legacy durable subject works.
    let v = api(
        c,
        "CONSUMER.DURABLE.CREATE.S.L",
        json!({"stream_name":"S","config":{"durable_name":"L","ack_policy":"explicit"}}),
    )
    .await;
    assert_eq!(v["name"], "L", "{v}");
    // A config without ack_policy gets "none" (the JSON zero value), unlike the clients.
    let v = api(
        c,
        "CONSUMER.CREATE.S.Z",
        json!({"stream_name":"S","config":{"name":"Z"}}),
    )
    .await;
    assert_eq!(v["config"]["ack_policy"], "none", "{v}");
    assert_eq!(v["config"]["inactive_threshold"], 5_000_000_000u64, "{v}");
}

#[tokio::test]
async fn inactive_consumers_are_removed_after_the_threshold() {
    let e = env(1).await;
    let s = make_stream(&e.js, "S", &["s.>"]).await;
    publish(&e.js, "s.a", "x").await;
    let threshold = Duration::from_secs(1);
    let eph = s
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            inactive_threshold: threshold,
            ..Default::default()
        })
        .await
        .unwrap();
    let eph_name = eph.cached_info().name.clone();
    s.create_consumer(pull::Config {
        inactive_threshold: threshold,
        ..durable("D")
    })
    .await
    .unwrap();
    s.create_consumer(durable("KEEP")).await.unwrap();
    let created = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.consumer_info(&eph_name).await.is_ok());
    assert!(s.consumer_info("D").await.is_ok());
    // Info requests are not activity: polling does not keep them alive.
    loop {
        let gone = s.consumer_info(&eph_name).await.is_err() && s.consumer_info("D").await.is_err();
        if gone {
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(4),
            "inactive consumers still there after 4 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.elapsed() >= threshold);
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names, vec!["KEEP".to_string()]);
}

#[tokio::test]
async fn deliver_subject_inside_the_stream_is_a_cycle() {
    let e = env(1).await;
    make_stream(&e.js, "CY", &["cy.>"]).await;
    let v = api(
        &e.client,
        "CONSUMER.CREATE.CY.P",
        json!({"stream_name":"CY","config":{"durable_name":"P","deliver_subject":"cy.out"}}),
    )
    .await;
    assert_eq!(err_code(&v), 10081, "{v}");
}

#[test]
fn headers_only_next_and_consumer_limits() {
    let (_server, mut r, _dir) = raw_stream(3);
    r.send(b"SUB _h.> 77\r\n");
    r.flush();
    // headers_only: the stored headers (none here) plus Nats-Msg-Size, no payload.
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.H",
        r#"{"stream_name":"O","config":{"durable_name":"H","ack_policy":"explicit","headers_only":true}}"#,
    );
    pull_raw(&mut r, "H", "_h.1", "1");
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!(subject, "o.a");
    assert_eq!(hdr, "NATS/1.0\r\nNats-Msg-Size: 16\r\n\r\n");
    assert!(payload.is_empty());
    // +NXT acks and asks for the next message on the ack's reply subject.
    let ack = reply.unwrap();
    r.send(format!("PUB {ack} _h.2 4\r\n+NXT\r\n").as_bytes());
    let (subject, reply, _, _) = read_full(&mut r);
    assert_eq!(subject, "o.a");
    assert_eq!(reply.unwrap().split('.').nth(5), Some("2"));
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.H", "");
    assert_eq!(
        (&v["ack_floor"]["stream_seq"], &v["num_ack_pending"]),
        (&json!(1), &json!(1)),
        "{v}"
    );
    // The stream allows 3 consumers.
    for name in ["L2", "L3"] {
        let v = raw_json(
            &mut r,
            &format!("$JS.API.CONSUMER.CREATE.O.{name}"),
            &format!(r#"{{"stream_name":"O","config":{{"durable_name":"{name}"}}}}"#),
        );
        assert_eq!(v["name"], name, "{v}");
    }
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.L4",
        r#"{"stream_name":"O","config":{"durable_name":"L4"}}"#,
    );
    assert_eq!(err_code(&v), 10026, "{v}");
    // LIST pages by offset, sorted or not: names and total.
    let v = raw_json(&mut r, "$JS.API.CONSUMER.LIST.O", r#"{"offset":1}"#);
    assert_eq!((&v["total"], &v["offset"]), (&json!(3), &json!(1)), "{v}");
    assert_eq!(v["consumers"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn pause_holds_delivery_until_resumed() {
    let (_server, mut r, _dir) = raw_stream(2);
    r.send(b"SUB _p.> 78\r\n");
    r.flush();
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.P",
        r#"{"stream_name":"O","config":{"durable_name":"P","ack_policy":"explicit"}}"#,
    );
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.PAUSE.O.P",
        r#"{"pause_until":"2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!(
        v["type"],
        "io.nats.jetstream.api.v1.consumer_pause_response"
    );
    assert_eq!(
        (&v["paused"], &v["pause_until"]),
        (&json!(true), &json!("2099-01-01T00:00:00Z")),
        "{v}"
    );
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.P", "");
    assert_eq!(v["paused"], true, "{v}");
    assert!(v["pause_remaining"].as_i64().unwrap() > 0, "{v}");
    // A pull while paused gets nothing: it times out.
    pull_raw(&mut r, "P", "_p.1", r#"{"batch":1,"expires":500000000}"#);
    let (subject, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str()),
        (
            "_p.1",
            "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n"
        )
    );
    // Resumed, the next pull is served.
    let v = raw_json(&mut r, "$JS.API.CONSUMER.PAUSE.O.P", "");
    assert_eq!(v["paused"], false, "{v}");
    pull_raw(&mut r, "P", "_p.2", r#"{"batch":1,"expires":2000000000}"#);
    let (subject, _, _, payload) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), &payload[..]),
        ("o.a", &b"message-00000000"[..])
    );
}

#[test]
fn statuses_sent_to_api_subjects_do_not_reenter_the_consumer() {
    let (_server, mut r, _dir) = raw_stream(0);
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.C",
        r#"{"stream_name":"O","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    // The 408 for this request goes to the PAUSE API of the same consumer.
    let body = r#"{"expires":300000000}"#;
    r.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.O.C $JS.API.CONSUMER.PAUSE.O.C {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
    assert_eq!(v["name"], "C", "{v}");
}
