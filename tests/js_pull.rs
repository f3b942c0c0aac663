//! Pull consumers: where delivery starts, filters, fetch with batch/max_bytes/expires/no_wait, the status messages on the wire, long runs from cache and disk, every shard.
//!
//! Every expectation was checked against nats-server 2.15.1, which is the spec:
//! `JETCORE_TEST_SERVER=nats-server cargo test --test js_pull` runs this file against it
//! (see tests/common/mod.rs). Timings use short ack waits and expiries.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, pull, push, AckPolicy, DeliverPolicy},
};

use serde_json::{json, Value};

use common::consumers::*;
use common::{Raw, Server};

#[tokio::test]
async fn deliver_policies_start_where_they_say() {
    let e = env(1).await;
    let s = make_stream(&e.js, "D", &["d.>"]).await;
    // seq 1 d.a, 2 d.b, 3 d.a, 4 d.b, 5 d.a
    for (i, subj) in ["d.a", "d.b", "d.a", "d.b", "d.a"].iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publish(&e.js, subj, format!("m{}", i + 1)).await;
    }
    let start_time = s.get_raw_message(3).await.unwrap().time;
    // (name, policy, num_pending at create, stream seqs delivered, start seq - 1)
    let policies = [
        ("ALL", DeliverPolicy::All, 5, vec![1, 2, 3, 4, 5], 0),
        ("LAST", DeliverPolicy::Last, 1, vec![5], 4),
        (
            "SEQ",
            DeliverPolicy::ByStartSequence { start_sequence: 3 },
            3,
            vec![3, 4, 5],
            2,
        ),
        (
            "TIME",
            DeliverPolicy::ByStartTime { start_time },
            3,
            vec![3, 4, 5],
            2,
        ),
        ("LPS", DeliverPolicy::LastPerSubject, 2, vec![4, 5], 3),
        ("NEW", DeliverPolicy::New, 0, vec![], 5),
    ];
    // last_per_subject needs a filter (10094 without one).
    let v = api(
        &e.client,
        "CONSUMER.CREATE.D.X",
        json!({"stream_name":"D","config":{"name":"X","deliver_policy":"last_per_subject"}}),
    )
    .await;
    assert_eq!(err_code(&v), 10094, "{v}");
    let mut consumers = Vec::new();
    for (name, policy, pending, _, before) in &policies {
        let filter = if *name == "LPS" { "d.*" } else { "" };
        let c = s
            .create_consumer(pull::Config {
                deliver_policy: *policy,
                filter_subject: filter.into(),
                ..durable(name)
            })
            .await
            .unwrap();
        let i = c.cached_info();
        assert_eq!(i.num_pending, *pending, "{name}");
        // A new consumer's positions sit just before its first message.
        assert_eq!(
            (pos(&i.delivered), pos(&i.ack_floor)),
            ((0, *before), (0, *before)),
            "{name}"
        );
        assert_eq!(c.cached_info().config.deliver_policy, *policy, "{name}");
        consumers.push(c);
    }
    for ((name, _, _, expected, before), c) in policies.iter().zip(&consumers) {
        let got = fetch(c, 10).await;
        assert_eq!(&seqs(&got), expected, "{name}");
        if let Some(first) = got.first() {
            assert_eq!(first.info().unwrap().consumer_sequence, 1, "{name}");
        }
        let i = info(c).await;
        let last = expected.last().copied().unwrap_or(*before);
        assert_eq!(pos(&i.delivered), (expected.len() as u64, last), "{name}");
        assert_eq!(pos(&i.ack_floor), (0, *before), "{name}");
        assert_eq!(i.num_pending, 0, "{name}");
    }
    // A new message reaches every consumer, including NEW.
    assert_eq!(publish(&e.js, "d.b", "m6").await, 6);
    for ((name, _, _, _, _), c) in policies.iter().zip(&consumers) {
        // nats-server updates num_pending a moment after the pub ack.
        let i = info_when(c, |i| i.num_pending == 1).await;
        assert_eq!(i.num_pending, 1, "{name}");
        assert_eq!(seqs(&fetch(c, 10).await), vec![6], "{name}");
    }
}

#[tokio::test]
async fn filter_subject_and_filter_subjects() {
    let e = env(1).await;
    let s = make_stream(&e.js, "F", &["f.>"]).await;
    // a, b, c three times: f.a = 1,4,7; f.b = 2,5,8; f.c = 3,6,9
    for _ in 0..3 {
        for subj in ["f.a", "f.b", "f.c"] {
            publish(&e.js, subj, subj).await;
        }
    }
    let a = s
        .create_consumer(pull::Config {
            filter_subject: "f.a".into(),
            ..durable("A")
        })
        .await
        .unwrap();
    assert_eq!(a.cached_info().num_pending, 3);
    let got = fetch(&a, 10).await;
    assert_eq!(seqs(&got), vec![1, 4, 7]);
    assert!(got.iter().all(|m| m.subject.as_str() == "f.a"));
    let ac = s
        .create_consumer(pull::Config {
            filter_subjects: vec!["f.a".into(), "f.c".into()],
            ..durable("AC")
        })
        .await
        .unwrap();
    assert_eq!(ac.cached_info().num_pending, 6);
    assert_eq!(
        ac.cached_info().config.filter_subjects,
        vec!["f.a".to_string(), "f.c".to_string()]
    );
    let got = fetch(&ac, 10).await;
    assert_eq!(seqs(&got), vec![1, 3, 4, 6, 7, 9]);
    let w = s
        .create_consumer(pull::Config {
            filter_subject: "f.*".into(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 8 },
            ..durable("W")
        })
        .await
        .unwrap();
    assert_eq!(w.cached_info().num_pending, 2);
    // New messages count only where they match.
    publish(&e.js, "f.b", "x").await; // 10
    publish(&e.js, "f.c", "x").await; // 11
    publish(&e.js, "f.d.deep", "x").await; // 12: matches none of the filters
    assert_eq!(info_when(&w, |i| i.num_pending == 4).await.num_pending, 4);
    assert_eq!(info_when(&ac, |i| i.num_pending == 1).await.num_pending, 1);
    assert_eq!(info(&a).await.num_pending, 0);
    assert_eq!(seqs(&fetch(&ac, 10).await), vec![11]);
    assert_eq!(seqs(&fetch(&w, 10).await), vec![8, 9, 10, 11]);
}

#[tokio::test]
async fn fetch_batch_max_bytes_expires_and_no_wait() {
    let e = env(1).await;
    let s = make_stream(&e.js, "P", &["p.>"]).await;
    for _ in 0..10 {
        publish(&e.js, "p.a", vec![b'x'; 100]).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    assert_eq!(seqs(&fetch(&c, 3).await), vec![1, 2, 3]);

    // max_bytes counts subject + reply + headers + payload (100 + 3 + ~39 here), so
    // 250 bytes hold one message; the next one ends the pull with a 409.
    let mut b = c
        .fetch()
        .max_messages(10)
        .max_bytes(250)
        .messages()
        .await
        .unwrap();
    let m = next_within(&mut b, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sseq(&m), 4);
    let err = next_within(&mut b, Duration::from_secs(5))
        .await
        .expect("a status after the byte limit")
        .unwrap_err();
    assert!(err.to_string().contains("409"), "{err}");
    assert!(next_within(&mut b, Duration::from_secs(1)).await.is_none());

    // A waiting pull takes what there is and ends when it expires (408).
    let t = Instant::now();
    let got = batch(&c, 10, Duration::from_millis(500)).await;
    assert_eq!(seqs(&got), vec![5, 6, 7, 8, 9, 10]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // no_wait with nothing pending ends at once (404).
    let t = Instant::now();
    assert!(fetch(&c, 5).await.is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
    // no_wait with fewer messages than asked: those, then the end.
    publish(&e.js, "p.a", "y").await;
    publish(&e.js, "p.a", "z").await;
    let t = Instant::now();
    assert_eq!(seqs(&fetch(&c, 5).await), vec![11, 12]);
    assert!(t.elapsed() < Duration::from_secs(1));
    // A waiting pull is served by a message published while it waits.
    let c2 = c.clone();
    let waiting = tokio::spawn(async move { seqs(&batch(&c2, 1, Duration::from_secs(3)).await) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(info(&c).await.num_waiting, 1);
    publish(&e.js, "p.a", "late").await;
    assert_eq!(waiting.await.unwrap(), vec![13]);
    let i = info(&c).await;
    assert_eq!((pos(&i.delivered), i.num_ack_pending), ((13, 13), 13));
}

#[test]
fn pull_status_messages_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(1, dir.path(), &[]);
    let mut r = server.raw();
    r.setup_requests();
    raw_json(
        &mut r,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["p.>"]}"#,
    );
    for _ in 0..10 {
        r.request("p.a", None, &[b'x'; 100]);
    }
    let v = raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_batch":20,"max_expires":2000000000,"max_bytes":1000}}"#,
    );
    assert_eq!(v["name"], "C", "{v}");
    r.send(b"SUB _P.> 90\r\n");
    r.flush();
    let pull = |r: &mut Raw, body: &str| {
        r.send(
            format!(
                "PUB $JS.API.CONSUMER.MSG.NEXT.S.C _P.x {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    };

    // A message carries its original subject and the v1 ack subject as reply.
    pull(&mut r, r#"{"batch":1,"no_wait":true}"#);
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str(), payload.len()),
        ("p.a", "", 100)
    );
    let reply = reply.unwrap();
    let t: Vec<&str> = reply.split('.').collect();
    assert_eq!(t.len(), 9, "{reply}");
    assert_eq!(
        (t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[8]),
        ("$JS", "ACK", "S", "C", "1", "1", "1", "9")
    );

    // max_bytes: one message fits, then 409 with what was left of the request.
    pull(&mut r, r#"{"batch":10,"max_bytes":250,"no_wait":true}"#);
    let (subject, reply, _, payload) = read_full(&mut r);
    let used = subject.len() + reply.unwrap().len() + payload.len();
    let (_, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        hdr,
        format!(
            "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 9\r\nNats-Pending-Bytes: {}\r\n\r\n",
            250 - used
        )
    );
    pull(&mut r, r#"{"batch":10,"max_bytes":50}"#);
    let (subject, reply, hdr, payload) = read_full(&mut r);
    assert_eq!((subject.as_str(), reply, payload.len()), ("_P.x", None, 0));
    assert_eq!(
        hdr,
        "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 10\r\nNats-Pending-Bytes: 50\r\n\r\n"
    );
    // Consumer limits on requests.
    for (body, status) in [
        (r#"{"batch":30}"#, "409 Exceeded MaxRequestBatch of 20"),
        (
            r#"{"batch":1,"expires":3000000000}"#,
            "409 Exceeded MaxRequestExpires of 2s",
        ),
        (
            r#"{"batch":1,"max_bytes":2000}"#,
            "409 Exceeded MaxRequestMaxBytes of 1000",
        ),
    ] {
        pull(&mut r, body);
        let (_, _, hdr, _) = read_full(&mut r);
        assert_eq!(hdr, format!("NATS/1.0 {status}\r\n\r\n"), "{body}");
    }
    // no_wait asking for more than there is: what there is, then a bare 404.
    pull(&mut r, r#"{"batch":20,"no_wait":true}"#);
    for seq in 3..=10 {
        let (_, reply, _, _) = read_full(&mut r);
        assert_eq!(reply.unwrap().split('.').nth(5).unwrap(), seq.to_string());
    }
    let (_, _, hdr, _) = read_full(&mut r);
    assert_eq!(hdr, "NATS/1.0 404 No Messages\r\n\r\n");
    pull(&mut r, r#"{"batch":1,"no_wait":true}"#);
    assert_eq!(read_full(&mut r).2, "NATS/1.0 404 No Messages\r\n\r\n");
    // Heartbeats while a request waits, then 408 with the unfilled part.
    let t = Instant::now();
    pull(
        &mut r,
        r#"{"batch":5,"expires":1000000000,"idle_heartbeat":300000000}"#,
    );
    let hb =
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 10\r\nNats-Last-Stream: 10\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(read_full(&mut r).2, hb);
    }
    assert_eq!(
        read_full(&mut r).2,
        "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 0\r\n\r\n"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // NEXT on a push consumer.
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.S.PUSH",
        r#"{"stream_name":"S","config":{"durable_name":"PUSH","deliver_subject":"nobody.listens","ack_policy":"explicit"}}"#,
    );
    r.send(b"PUB $JS.API.CONSUMER.MSG.NEXT.S.PUSH _P.y 11\r\n{\"batch\":1}\r\n");
    assert_eq!(
        read_full(&mut r).2,
        "NATS/1.0 409 Consumer is push based\r\n\r\n"
    );
    // A consumer deleted under a waiting request ends it with 409.
    pull(&mut r, r#"{"batch":5,"expires":2000000000}"#);
    r.flush();
    r.send(b"PUB $JS.API.CONSUMER.DELETE.S.C _P.del 0\r\n\r\n");
    let (subject, _, hdr, _) = read_full(&mut r);
    assert_eq!(
        (subject.as_str(), hdr.as_str()),
        ("_P.x", "NATS/1.0 409 Consumer Deleted\r\n\r\n")
    );
    let (subject, _, _, body) = read_full(&mut r);
    assert_eq!(subject, "_P.del");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], true);
}

#[tokio::test]
async fn messages_consumes_a_long_run_in_order() {
    let e = env(1).await;
    let s = make_stream(&e.js, "L", &["l.>"]).await;
    for i in 0..250 {
        publish(&e.js, &format!("l.{}", i % 5), format!("{i}")).await;
    }
    let c = s.create_consumer(durable("C")).await.unwrap();
    let mut msgs = c
        .stream()
        .max_messages_per_batch(50)
        .expires(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let js = e.js.clone();
    let more = tokio::spawn(async move {
        for i in 250..500 {
            publish(&js, &format!("l.{}", i % 5), format!("{i}")).await;
        }
    });
    for expected in 1..=500u64 {
        let m = next_within(&mut msgs, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("stalled before message {expected}"))
            .unwrap();
        let i = m.info().unwrap();
        assert_eq!(
            (i.stream_sequence, i.consumer_sequence, i.delivered),
            (expected, expected, 1)
        );
        assert_eq!(&m.payload[..], format!("{}", expected - 1).as_bytes());
        m.ack().await.unwrap();
    }
    more.await.unwrap();
    let i = info_when(&c, |i| i.ack_floor.stream_sequence == 500).await;
    assert_eq!(
        (pos(&i.delivered), pos(&i.ack_floor)),
        ((500, 500), (500, 500))
    );
    assert_eq!(
        (i.num_ack_pending, i.num_pending, i.num_redelivered),
        (0, 0, 0)
    );
}

#[test]
fn a_requester_that_went_away_stops_waiting() {
    let (server, mut r, _dir) = raw_stream(0);
    raw_json(
        &mut r,
        "$JS.API.CONSUMER.CREATE.O.C",
        r#"{"stream_name":"O","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    );
    {
        let mut gone = server.raw();
        gone.setup_requests();
        gone.send(
            b"SUB _gone.> 5\r\nPUB $JS.API.CONSUMER.MSG.NEXT.O.C _gone.x 2\r\n10\r\nPING\r\n",
        );
        gone.flush();
        let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
        assert_eq!(v["num_waiting"], 1, "{v}");
    }
    // The connection is closed: within a couple of seconds the request is dropped.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let v = raw_json(&mut r, "$JS.API.CONSUMER.INFO.O.C", "");
        if v["num_waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "request still waiting: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn consumers_read_beyond_the_cache_from_disk_in_order() {
    // 48 MiB of messages: after a restart the cache holds at most the newest
    // 32 MiB, so the oldest are read back from the segments, with read-ahead.
    let dir = tempfile::tempdir().unwrap();
    let body = |i: usize| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 96 * 1024];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };
    let n = 512;
    {
        let server = Server::start_js(1, dir.path(), &[]);
        let js = jetstream::new(server.client().await);
        make_stream(&js, "BIG", &["big.>"]).await;
        let mut acks = Vec::new();
        for i in 0..n {
            acks.push(
                js.publish(format!("big.{}", i % 3), body(i).into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
        server.terminate();
    }
    let server = Server::start_js(1, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let s = js.get_stream("BIG").await.unwrap();
    // A filtered consumer skips two thirds of what it reads.
    let c = s
        .create_consumer(pull::Config {
            filter_subject: "big.1".into(),
            ..durable("F")
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < n / 3 {
        let ms = batch(&c, 50, Duration::from_secs(5)).await;
        assert!(!ms.is_empty(), "stalled after {}", got.len());
        for m in ms {
            let i = u64::from_le_bytes(m.payload[..8].try_into().unwrap()) as usize;
            assert_eq!(&m.payload[..], &body(i)[..], "message {i} corrupted");
            assert_eq!(m.subject.as_str(), format!("big.{}", i % 3));
            got.push(i);
            m.ack().await.unwrap();
        }
    }
    let want: Vec<usize> = (0..n).filter(|i| i % 3 == 1).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn consumers_work_from_every_shard() {
    for shards in [2usize, 4] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_js(shards, dir.path(), &[]);
        let admin = jetstream::new(server.client().await);
        // One stream per shard: the owner is the shard with the fewest streams.
        for owner in 0..shards {
            let name = format!("X{owner}");
            make_stream(&admin, &name, &[&format!("x{owner}.>")]).await;
            for client_shard in 0..shards {
                let client = server.client_on(client_shard).await;
                let js = jetstream::new(client.clone());
                let publisher = jetstream::new(server.client_on((client_shard + 1) % shards).await);
                let s = js.get_stream(&name).await.unwrap();
                let cname = format!("C{client_shard}");
                let base = (client_shard * 3) as u64;
                let c = s
                    .create_consumer(pull::Config {
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: base + 1,
                        },
                        ..durable(&cname)
                    })
                    .await
                    .unwrap();
                for k in 0..3 {
                    let seq = publish(&publisher, &format!("x{owner}.p"), format!("{k}")).await;
                    assert_eq!(seq, base + k + 1, "{shards} shards, stream {name}");
                }
                let got = batch(&c, 3, Duration::from_secs(2)).await;
                assert_eq!(
                    seqs(&got),
                    vec![base + 1, base + 2, base + 3],
                    "{shards} shards {name} {cname}"
                );
                for m in &got {
                    m.double_ack().await.unwrap();
                }
                let i = info(&c).await;
                assert_eq!(
                    (
                        i.ack_floor.stream_sequence,
                        i.num_ack_pending,
                        i.num_pending
                    ),
                    (base + 3, 0, 0)
                );
                // Push delivery to a subscriber on this shard.
                let p: consumer::PushConsumer = s
                    .create_consumer(push::Config {
                        durable_name: Some(format!("P{client_shard}")),
                        deliver_subject: client.new_inbox(),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: base + 1,
                        },
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let mut msgs = p.messages().await.unwrap();
                for k in 1..=3 {
                    let m = next_within(&mut msgs, Duration::from_secs(3))
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(sseq(&m), base + k, "{shards} shards {name} push");
                    m.double_ack().await.unwrap();
                }
            }
            let st = stream_state(&admin, &name).await;
            assert_eq!(st.consumer_count, 2 * shards);
        }
        assert_eq!(
            admin.query_account().await.unwrap().consumers,
            2 * shards * shards
        );
    }
}
