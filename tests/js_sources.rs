//! Mirrors and sources of local streams end to end (async-nats): what a copy
//! holds, where copying starts, and what happens when origins come, go and
//! come back, when the server restarts or is killed, and when the config
//! changes. Expectations were checked against nats-server 2.15.1 where it
//! behaves the same (`JETCORE_TEST_SERVER=nats-server`); the tests that
//! check jetcore's stronger promises (an origin created again is noticed
//! within seconds, a mirror copies it again) say so.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};

use common::consumers::{api, err_code};
use common::sources::*;
use common::Server;

async fn start(
    shards: usize,
) -> (
    Server,
    async_nats::Client,
    jetstream::Context,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(shards, dir.path(), &[]);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    (server, client, js, dir)
}

async fn publish_with(
    js: &jetstream::Context,
    subject: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> u64 {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in hdrs {
        h.insert(*k, *v);
    }
    let ack = js
        .publish_with_headers(subject.to_string(), h, body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    ack.sequence
}

#[tokio::test]
async fn a_mirror_holds_its_origins_sequences_times_subjects_and_headers() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "ORIG", "subjects": ["orig.>"]})).await;
    for i in 0..10 {
        let hdrs = [("X-N", "v"), ("Nats-Expected-Stream", "ORIG")];
        publish_with(&js, &format!("orig.{i}"), &hdrs, &format!("m{i}")).await;
    }
    // Gaps: deleted origin messages are deleted sequences in the mirror.
    for seq in [3, 7] {
        let r = api(&c, "STREAM.MSG.DELETE.ORIG", json!({ "seq": seq })).await;
        assert_eq!(r["success"], true, "{r}");
    }
    let created = create(&c, json!({"name": "MIR", "mirror": {"name": "ORIG"}})).await;
    assert_eq!(
        created["mirror"],
        json!({"name": "ORIG", "lag": 0, "active": -1})
    );
    assert!(created["config"].get("subjects").is_none());
    assert!(created["config"].get("duplicate_window").is_none());
    let i = count_when(&c, "MIR", 8).await;
    assert_eq!(i["state"]["first_seq"], 1);
    assert_eq!(i["state"]["last_seq"], 10);
    assert_eq!(i["mirror"]["lag"], 0);
    assert!(i["mirror"]["active"].as_i64().unwrap() >= 0, "{i}");
    let (o, m) = (all(&c, "ORIG").await, all(&c, "MIR").await);
    assert_eq!(o.keys().collect::<Vec<_>>(), m.keys().collect::<Vec<_>>());
    for (seq, om) in &o {
        let mm = &m[seq];
        for field in ["subject", "seq", "data", "time"] {
            assert_eq!(om[field], mm[field], "{field} of {seq}");
        }
        assert!(headers(om).contains("Nats-Expected-Stream: ORIG"));
        assert_eq!(
            headers(mm),
            "NATS/1.0\r\nX-N: v\r\n\r\n",
            "expectations dropped, nothing added"
        );
    }
    // New messages follow, and a mirror takes no publishes of its own.
    publish_with(&js, "orig.x", &[], "late").await;
    count_when(&c, "MIR", 9).await;
    assert_eq!(
        c.request("MIR", "x".into()).await.unwrap_err().kind(),
        async_nats::RequestErrorKind::NoResponders
    );
}

#[tokio::test]
async fn sources_copy_with_new_sequences_filters_transforms_and_the_source_header() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "A", "subjects": ["a.>"]})).await;
    create(&c, json!({"name": "B", "subjects": ["b.>"]})).await;
    for i in 0..6 {
        publish_with(
            &js,
            &format!("a.{}", i % 2),
            &[("Nats-Msg-Id", &format!("a{i}"))],
            "x",
        )
        .await;
        publish_with(
            &js,
            &format!("b.{i}"),
            &[("Nats-Expected-Last-Sequence", &i.to_string())],
            "y",
        )
        .await;
    }
    let cfg = json!({
        "name": "T",
        "subjects": ["t.>"],
        "sources": [
            {"name": "A", "filter_subject": "a.1"},
            {"name": "B", "subject_transforms": [{"src": "b.*", "dest": "t.b.{{wildcard(1)}}"}]}
        ]
    });
    let created = create(&c, cfg).await;
    assert_eq!(
        created["sources"],
        json!([
            {"name": "A", "lag": 0, "active": -1, "filter_subject": "a.1"},
            {"name": "B", "lag": 0, "active": -1, "subject_transforms": [{"src": "b.*", "dest": "t.b.{{wildcard(1)}}"}]}
        ])
    );
    let i = count_when(&c, "T", 9).await;
    assert_eq!(
        i["sources"][0]["seq"], 6,
        "the last origin sequence received: {i}"
    );
    let t = all(&c, "T").await;
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    let ident_a = {
        let a = info(&c, "A").await;
        a["created"].as_str().unwrap().to_string()
    };
    assert!(!ident_a.is_empty());
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    for m in t.values() {
        let h = headers(m);
        let src = h
            .lines()
            .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
            .unwrap();
        let f: Vec<&str> = src.split(' ').collect();
        assert_eq!(f.len(), 6, "{src}");
        match f[0] {
            "A" => {
                assert_eq!((f[2], f[3]), ("a.1", ">"));
                assert_eq!(m["subject"], "a.1");
                assert!(h.contains("Nats-Msg-Id: a"), "message ids are kept: {h}");
                from_a.push(f[1].parse::<u64>().unwrap());
            }
            "B" => {
                assert_eq!((f[2], f[3]), ("b.*", "t.b.{{wildcard(1)}}"));
                assert_eq!(
                    f[4],
                    format!(
                        "b.{}",
                        m["subject"].as_str().unwrap().strip_prefix("t.b.").unwrap()
                    )
                );
                assert!(!h.contains("Nats-Expected"), "{h}");
                from_b.push(f[1].parse::<u64>().unwrap());
            }
            other => panic!("source {other}"),
        }
    }
    // Each source's copies are in origin order, with no gap in what matched.
    assert_eq!(
        from_a
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    assert!(from_a.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(from_b.len(), 6);
    assert!(from_b.windows(2).all(|w| w[0] < w[1]));
    // The stream's own subjects still take publishes.
    publish_with(&js, "t.own", &[], "z").await;
    count_when(&c, "T", 10).await;
    // A message carrying a source header is refused from a publisher.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Stream-Source", "A 1 > > a.1");
    let err = js
        .publish_with_headers("t.x", h, "x".into())
        .await
        .unwrap()
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn an_origin_created_later_is_copied_within_two_seconds() {
    let (_s, c, js, _d) = start(2).await;
    let created = create(
        &c,
        json!({"name": "T", "sources": [{"name": "LATE"}], "subjects": ["t"]}),
    )
    .await;
    assert!(
        created["sources"][0].get("error").is_none(),
        "none at create, as nats-server: {created}"
    );
    let i = info_when(&c, "T", |i| !i["sources"][0]["error"].is_null()).await;
    assert_eq!(
        i["sources"][0]["error"],
        json!({"code": 404, "err_code": 10059, "description": "stream not found"})
    );
    assert_eq!(i["sources"][0]["active"], -1);
    create(&c, json!({"name": "LATE", "subjects": ["late"]})).await;
    let t0 = std::time::Instant::now();
    publish_with(&js, "late", &[], "1").await;
    count_when(&c, "T", 1).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let i = info(&c, "T").await;
    assert!(i["sources"][0]["error"].is_null(), "cleared: {i}");
}

#[tokio::test]
async fn origins_deleted_and_created_again_are_copied_again_without_duplicates() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    create(
        &c,
        json!({"name": "S", "subjects": ["s"], "sources": [{"name": "O"}]}),
    )
    .await;
    create(&c, json!({"name": "M", "mirror": {"name": "O"}})).await;
    for i in 0..3 {
        publish_with(&js, &format!("o.{i}"), &[], "old").await;
    }
    count_when(&c, "S", 3).await;
    count_when(&c, "M", 3).await;
    let r = api(&c, "STREAM.DELETE.O", Value::Null).await;
    assert_eq!(r["success"], true);
    // The targets keep their copies and say the origin is gone.
    let i = info_when(&c, "S", |i| i["sources"][0]["error"]["err_code"] == 10059).await;
    assert_eq!(i["state"]["messages"], 3);
    info_when(&c, "M", |i| i["mirror"]["error"]["err_code"] == 10059).await;
    create(&c, json!({"name": "O", "subjects": ["o.>"]})).await;
    let t0 = std::time::Instant::now();
    for i in 0..2 {
        publish_with(&js, &format!("o.new{i}"), &[], "new").await;
    }
    count_when(&c, "S", 5).await;
    count_when(&c, "M", 5).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "noticed in {:?}",
        t0.elapsed()
    );
    let s = all(&c, "S").await;
    let seqs: Vec<u64> = s.values().map(origin_seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 1, 2],
        "the new life copied from its start"
    );
    let m = all(&c, "M").await;
    assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let subjects: Vec<&str> = m.values().map(|v| v["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, vec!["o.0", "o.1", "o.2", "o.new0", "o.new1"]);
    // Both keep following the new origin.
    publish_with(&js, "o.more", &[], "x").await;
    count_when(&c, "S", 6).await;
    count_when(&c, "M", 6).await;
}

#[tokio::test]
async fn start_positions_by_sequence_and_time() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "O", "subjects": ["o"]})).await;
    for _ in 0..5 {
        publish_with(&js, "o", &[], "a").await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mid = info(&c, "O").await["state"]["last_ts"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..5 {
        publish_with(&js, "o", &[], "b").await;
    }
    create(&c, json!({"name": "BYSEQ", "subjects": ["x1"], "sources": [{"name": "O", "opt_start_seq": 8}]})).await;
    create(
        &c,
        json!({"name": "MSEQ", "mirror": {"name": "O", "opt_start_seq": 4}}),
    )
    .await;
    create(
        &c,
        json!({"name": "MTIME", "mirror": {"name": "O", "opt_start_time": mid}}),
    )
    .await;
    count_when(&c, "BYSEQ", 3).await;
    let m = count_when(&c, "MSEQ", 7).await;
    assert_eq!(m["state"]["first_seq"], 4);
    // At or after the time of message 5.
    let t = count_when(&c, "MTIME", 6).await;
    assert_eq!(t["state"]["first_seq"], 5);
    let b = all(&c, "BYSEQ").await;
    assert_eq!(
        b.values().map(origin_seq).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
}

#[tokio::test]
async fn the_documented_configs_load_as_sent_and_the_misprinted_one_is_refused() {
    let (_s, c, _js, _d) = start(2).await;
    let fixture = |f: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/stream-configs/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    create(
        &c,
        json!({"name": "SOURCE1_ORIGIN", "subjects": ["foo1.bar", "foo1.x"]}),
    )
    .await;
    create(&c, json!({"name": "MIRROR_ORIGIN", "subjects": ["mo.>"]})).await;
    let send = |subject: String, body: Vec<u8>| {
        let c = c.clone();
        async move {
            serde_json::from_slice::<Value>(&c.request(subject, body.into()).await.unwrap().payload)
                .unwrap()
        }
    };
    let r = send(
        "$JS.API.STREAM.CREATE.SOURCE_TARGET".into(),
        fixture("sources-minimal.json"),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["config"]["sources"], json!([{"name": "SOURCE1_ORIGIN"}]));
    assert_eq!(r["config"]["duplicate_window"], 120000000000u64);
    let r = send(
        "$JS.API.STREAM.CREATE.MIRROR_TARGET".into(),
        fixture("mirror-minimal.json"),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["config"]["mirror"], json!({"name": "MIRROR_ORIGIN"}));
    let r = send(
        "$JS.API.STREAM.CREATE.MIRROR_TARGET".into(),
        fixture("mirror-minimal.as-printed.json"),
    )
    .await;
    assert_eq!(err_code(&r), 10025, "{r}");
    assert!(
        r["error"]["description"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{r}"
    );
}

#[tokio::test]
async fn config_errors_carry_nats_server_codes_and_texts() {
    let (_s, c, _js, _d) = start(1).await;
    create(
        &c,
        json!({"name": "O1", "subjects": ["o1.>"], "max_msg_size": 1000}),
    )
    .await;
    create(&c, json!({"name": "CA", "subjects": ["ca"]})).await;
    create(
        &c,
        json!({"name": "CB", "subjects": ["cb"], "sources": [{"name": "CA"}]}),
    )
    .await;
    let cases: Vec<(Value, u64, &str)> = vec![
        (json!({"name": "M", "subjects": ["m"], "mirror": {"name": "O1"}}), 10034, "stream mirrors can not contain subjects"),
        (json!({"name": "M", "mirror": {"name": "O1"}, "sources": [{"name": "O1"}]}), 10031, "stream mirrors can not also contain other sources"),
        (json!({"name": "M", "mirror": {"name": "O1"}, "first_seq": 10}), 10143, "stream mirrors can not have first sequence configured"),
        (json!({"name": "M", "subjects": ["m"], "mirror_direct": true}), 10052, "stream has no mirror but does have mirror direct"),
        (json!({"name": "M", "mirror": {"name": ""}}), 10142, "mirrored stream name is invalid"),
        (json!({"name": "M", "mirror": {"name": "O.1"}}), 10142, "mirrored stream name is invalid"),
        (json!({"name": "S", "sources": [{"name": ""}]}), 10141, "sourced stream name is invalid"),
        (json!({"name": "S", "sources": [{"name": "O1"}, {"name": "O1"}]}), 10140, "duplicate source configuration detected"),
        (json!({"name": "M", "mirror": {"name": "O1", "filter_subject": "o1.a", "subject_transforms": [{"src": "o1.b", "dest": "x.b"}]}}), 10150, "mirror with multiple subject transforms cannot also have a single subject filter"),
        (json!({"name": "M", "mirror": {"name": "O1", "subject_transforms": [{"src": "o1.>", "dest": "x.>"}, {"src": "o1.a", "dest": "y.a"}]}}), 10152, "mirror subject filters can not overlap"),
        (json!({"name": "S", "sources": [{"name": "O1", "filter_subject": "o1.a", "subject_transforms": [{"src": "o1.b", "dest": "x"}]}]}), 10144, "source with multiple subject transforms cannot also have a single subject filter"),
        (json!({"name": "S", "sources": [{"name": "O1", "subject_transforms": [{"src": "o1.>", "dest": "x.>"}, {"src": "o1.a", "dest": "y"}]}]}), 10147, "source filters can not overlap"),
        (json!({"name": "S", "sources": [{"name": "O1", "subject_transforms": [{"src": "o1.*", "dest": "foo.{{wildcard(3)}}"}]}]}), 10146, "source transform: invalid mapping destination: wildcard index out of range in {{wildcard(3)}}: [3]"),
        (json!({"name": "S", "sources": [{"name": "O1", "subject_transforms": [{"src": "", "dest": "x"}]}]}), 10146, "source transform: invalid subject"),
        (json!({"name": "S", "sources": [{"name": "O1", "filter_subject": "o1..x"}]}), 10049, "subject filter 'o1..x' for the source: invalid subject"),
        (json!({"name": "M", "mirror": {"name": "O1", "filter_subject": "o1..a"}}), 10049, "subject filter 'o1..a' for the mirror invalid subject"),
        (json!({"name": "S", "sources": [{"name": "O1", "external": {"api": "$JS.*.API"}}]}), 10052, "stream external api prefix \"$JS.*.API\" must be a valid subject without wildcards"),
        (json!({"name": "S", "sources": [{"name": "O1", "external": {"api": "$JS.API"}}]}), 10021, "stream external api prefix $JS.API must not overlap with $JS.API"),
        (json!({"name": "S", "sources": [{"name": "O1", "external": {"api": "$JS.x.API", "deliver": "dl.*"}}]}), 10024, "stream external delivery prefix dl.* must not contain wildcards"),
        (json!({"name": "M", "max_msg_size": 500, "mirror": {"name": "O1"}}), 10030, "stream mirror must have max message size >= source"),
        (json!({"name": "S", "max_msg_size": 500, "sources": [{"name": "O1"}]}), 10046, "stream source must have max message size >= target"),
        (json!({"name": "SELF", "subjects": ["self"], "sources": [{"name": "SELF"}]}), 10052, "detected cycle"),
        (json!({"name": "SELFM", "mirror": {"name": "SELFM"}}), 10052, "detected cycle"),
    ];
    for (cfg, code, text) in cases {
        let name = cfg["name"].as_str().unwrap().to_string();
        let r = api(&c, &format!("STREAM.CREATE.{name}"), cfg.clone()).await;
        assert_eq!(
            (
                err_code(&r),
                r["error"]["description"].as_str().unwrap_or("")
            ),
            (code, text),
            "{cfg}"
        );
    }
    // A cycle through another stream, on update; and a mirror cannot change.
    let r = api(
        &c,
        "STREAM.UPDATE.CA",
        json!({"name": "CA", "subjects": ["ca"], "sources": [{"name": "CB"}]}),
    )
    .await;
    assert_eq!(
        (err_code(&r), r["error"]["description"].as_str().unwrap()),
        (10052, "detected cycle"),
        "{r}"
    );
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_update_response");
    create(&c, json!({"name": "MU", "mirror": {"name": "O1"}})).await;
    let r = api(
        &c,
        "STREAM.UPDATE.MU",
        json!({"name": "MU", "mirror": {"name": "O1", "filter_subject": "o1.a"}}),
    )
    .await;
    assert_eq!(err_code(&r), 10055, "{r}");
    let r = api(
        &c,
        "STREAM.UPDATE.CA",
        json!({"name": "CA", "subjects": ["ca"], "mirror": {"name": "O1"}}),
    )
    .await;
    assert_eq!(err_code(&r), 10034, "{r}");
}

#[tokio::test]
async fn sources_removed_and_added_again_resume_where_they_were() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "O", "subjects": ["o"]})).await;
    create(
        &c,
        json!({"name": "T", "subjects": ["t"], "sources": [{"name": "O"}]}),
    )
    .await;
    publish_n(&js, "o", 10, 0).await;
    count_when(&c, "T", 10).await;
    let r = api(
        &c,
        "STREAM.UPDATE.T",
        json!({"name": "T", "subjects": ["t"]}),
    )
    .await;
    assert!(r.get("sources").is_none(), "{r}");
    publish_n(&js, "o", 10, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(info(&c, "T").await["state"]["messages"], 10);
    let r = api(
        &c,
        "STREAM.UPDATE.T",
        json!({"name": "T", "subjects": ["t"], "sources": [{"name": "O"}]}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    count_when(&c, "T", 20).await;
    let t = all(&c, "T").await;
    assert_eq!(
        t.values().map(origin_seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_mirror_promoted_by_an_update_takes_publishes() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "O", "subjects": ["o"]})).await;
    create(&c, json!({"name": "M", "mirror": {"name": "O"}})).await;
    publish_n(&js, "o", 3, 0).await;
    count_when(&c, "M", 3).await;
    let r = api(
        &c,
        "STREAM.UPDATE.M",
        json!({"name": "M", "subjects": ["m"]}),
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert!(r.get("mirror").is_none());
    assert_eq!(r["config"]["duplicate_window"], 120000000000u64);
    let seq = publish_with(&js, "m", &[], "own").await;
    assert_eq!(seq, 4, "continues after the copies");
    publish_n(&js, "o", 2, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        info(&c, "M").await["state"]["messages"],
        4,
        "no longer a mirror"
    );
}

#[tokio::test]
async fn a_workqueue_origin_lets_a_message_go_only_once_the_target_stored_it() {
    let (_s, c, js, _d) = start(2).await;
    create(
        &c,
        json!({"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"}),
    )
    .await;
    create(
        &c,
        json!({"name": "IN", "subjects": ["in.>"], "retention": "interest"}),
    )
    .await;
    publish_n(&js, "wq", 20, 4).await;
    publish_n(&js, "in", 5, 1).await;
    // No target yet: the work queue keeps everything; the interest stream
    // has no interest at all.
    assert_eq!(info(&c, "WQ").await["state"]["messages"], 20);
    create(
        &c,
        json!({"name": "T", "subjects": ["t"], "sources": [{"name": "WQ"}, {"name": "IN"}]}),
    )
    .await;
    count_when(&c, "T", 20).await;
    info_when(&c, "WQ", |i| i["state"]["messages"] == 0).await;
    // With the target there, the interest stream keeps messages until stored.
    publish_n(&js, "in", 5, 1).await;
    count_when(&c, "T", 25).await;
    info_when(&c, "IN", |i| i["state"]["messages"] == 0).await;
    // Source consumers are not the origin's consumers.
    assert_eq!(info(&c, "WQ").await["state"]["consumer_count"], 0);
}

#[tokio::test]
async fn limits_of_the_target_apply_to_copies() {
    let (_s, c, js, _d) = start(2).await;
    create(&c, json!({"name": "O", "subjects": ["o"]})).await;
    create(
        &c,
        json!({"name": "OLD", "subjects": ["x"], "max_msgs": 5, "sources": [{"name": "O"}]}),
    )
    .await;
    create(&c, json!({"name": "NEW", "subjects": ["y"], "max_msgs": 5, "discard": "new", "sources": [{"name": "O"}]})).await;
    publish_n(&js, "o", 12, 0).await;
    let old = info_when(&c, "OLD", |i| i["state"]["last_seq"] == 12).await;
    assert_eq!(
        (
            old["state"]["messages"].as_u64(),
            old["state"]["first_seq"].as_u64()
        ),
        (Some(5), Some(8))
    );
    count_when(&c, "NEW", 5).await;
    let t = all(&c, "NEW").await;
    assert_eq!(
        t.values().map(origin_seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // The refused copy is retried: once there is room, copying goes on.
    info_when(&c, "NEW", |i| i["sources"][0]["error"]["err_code"] == 10077).await;
    let r = api(&c, "STREAM.PURGE.NEW", Value::Null).await;
    assert_eq!(r["success"], true, "{r}");
    info_when(&c, "NEW", |i| i["state"]["last_seq"] == 10).await;
    let lag = info(&c, "NEW").await["sources"][0]["lag"].as_u64().unwrap();
    assert!(
        lag > 0,
        "stalled with origin messages left: the lag says so"
    );
}
