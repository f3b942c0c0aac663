//! JetStream streams through the async-nats client, on 1, 2 and 4 shards, with
//! the publishing connection on a different shard than the stream's owner.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::{Server, SHARD_COUNTS};

fn cfg(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn stream_lifecycle_through_the_client_on_every_shard_count() {
    for shards in SHARD_COUNTS {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_js(shards, dir.path(), &[]);
        // One stream per shard, so every owner is exercised; publish from each shard.
        for owner in 0..shards {
            let name = format!("S{owner}");
            let subj = format!("s{owner}.>");
            let admin = jetstream::new(server.client().await);
            let info = admin
                .create_stream(cfg(&name, &[&subj]))
                .await
                .unwrap_or_else(|e| panic!("{shards} shards: create {name}: {e}"));
            assert_eq!(info.cached_info().config.subjects, vec![subj.clone()]);
            for publisher_shard in 0..shards {
                let js = jetstream::new(server.client_on(publisher_shard).await);
                for i in 0..10 {
                    let ack = js
                        .publish(
                            format!("s{owner}.p{publisher_shard}"),
                            format!("m{i}").into(),
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    assert_eq!(ack.stream, name);
                    assert_eq!(
                        ack.sequence,
                        (publisher_shard * 10 + i + 1) as u64,
                        "{shards} shards"
                    );
                }
            }
            let mut stream = admin.get_stream(&name).await.unwrap();
            let info = stream.info().await.unwrap();
            assert_eq!(info.state.messages, 10 * shards as u64);
            assert_eq!(info.state.first_sequence, 1);
            assert_eq!(info.state.last_sequence, 10 * shards as u64);
            assert_eq!(info.state.subjects_count, shards as u64);
            let m = stream.get_raw_message(3).await.unwrap();
            assert_eq!(m.subject.as_str(), format!("s{owner}.p0"));
            assert_eq!(&m.payload[..], b"m2");
            let m = stream
                .get_last_raw_message_by_subject(&format!("s{owner}.p0"))
                .await
                .unwrap();
            assert_eq!(m.sequence, 10);
            assert!(stream.delete_message(5).await.unwrap());
            let info = stream.info().await.unwrap();
            assert_eq!(
                (info.state.messages, info.state.deleted_count),
                (10 * shards as u64 - 1, Some(1))
            );
            let purged = stream.purge().filter(format!("s{owner}.p0")).await.unwrap();
            assert_eq!(purged.purged, 9);
            let purged = stream.purge().await.unwrap();
            assert_eq!(purged.purged, 10 * (shards as u64 - 1));
            let info = stream.info().await.unwrap();
            assert_eq!(info.state.messages, 0);
            assert_eq!(info.state.first_sequence, 10 * shards as u64 + 1);
        }
        let admin = jetstream::new(server.client().await);
        let account = admin.query_account().await.unwrap();
        assert_eq!(account.streams, shards);
        use futures::TryStreamExt;
        let names: Vec<String> = admin.stream_names().try_collect().await.unwrap();
        assert_eq!(names.len(), shards);
        let listed: Vec<stream::Info> = admin.streams().try_collect().await.unwrap();
        assert_eq!(listed.len(), shards);
        let found = admin.stream_by_subject("s0.x").await.unwrap();
        assert_eq!(found, "S0");
        for owner in 0..shards {
            assert!(
                admin
                    .delete_stream(format!("S{owner}"))
                    .await
                    .unwrap()
                    .success
            );
        }
        let err = admin.get_stream("S0").await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}

/// `api.total` and `api.errors` in account info count requests as nats-server 2.15.1
/// does: a found message of `STREAM.MSG.GET` is answered outside the API layer and not
/// counted, nor are direct gets and pull requests; every other answer is. Streams on
/// both shards: account info sums what each shard counted.
#[tokio::test]
async fn api_request_counts_follow_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client().await);
    let counts = || async {
        let r = js.query_account().await.unwrap().requests;
        (r.total, r.errors)
    };
    let mut streams = Vec::new();
    for owner in 0..2 {
        let mut c = cfg(&format!("S{owner}"), &[&format!("s{owner}.>")]);
        c.allow_direct = true;
        streams.push(js.create_stream(c).await.unwrap());
        js.publish(format!("s{owner}.a"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Each step's change, less the account info that reads it.
    let mut before = counts().await;
    let mut step = |what: &str, after: (u64, u64), want: (u64, u64)| {
        assert_eq!((after.0 - before.0 - 1, after.1 - before.1), want, "{what}");
        before = after;
    };
    for s in &streams {
        s.get_raw_message(1).await.unwrap();
        step("msg get", counts().await, (0, 0));
        s.get_raw_message(9).await.unwrap_err();
        step("msg get missing", counts().await, (1, 1));
        s.direct_get(1).await.unwrap();
        step("direct get", counts().await, (0, 0));
        s.direct_get(9).await.unwrap_err();
        step("direct get missing", counts().await, (0, 0));
        s.get_info().await.unwrap();
        step("stream info", counts().await, (1, 0));
    }
    js.get_stream("NOPE").await.unwrap_err();
    step("stream info missing", counts().await, (1, 1));
}

#[tokio::test]
async fn update_limits_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client_on(1).await);
    let mut c = cfg("L", &["l.>"]);
    c.max_messages = 5;
    js.create_stream(c.clone()).await.unwrap();
    for i in 0..8 {
        js.publish("l.a", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut s = js.get_stream("L").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(
        (
            info.state.messages,
            info.state.first_sequence,
            info.state.last_sequence
        ),
        (5, 4, 8)
    );
    // Per-subject limit, set by update, applies to what is stored.
    c.max_messages_per_subject = 2;
    let updated = js.update_stream(c.clone()).await.unwrap();
    assert_eq!(updated.config.max_messages_per_subject, 2);
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    // Immutable fields are refused.
    let mut bad = c.clone();
    bad.storage = stream::StorageType::Memory;
    let err = js.update_stream(bad).await.unwrap_err();
    assert!(
        err.to_string().contains("can not change storage type"),
        "{err}"
    );
    // deny_delete / deny_purge / sealed.
    c.deny_delete = true;
    c.deny_purge = true;
    js.update_stream(c.clone()).await.unwrap();
    assert!(s.delete_message(8).await.is_err());
    assert!(s.purge().await.is_err());
    c.sealed = true;
    js.update_stream(c.clone()).await.unwrap();
    let err = js
        .publish("l.a", "x".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sealed"), "{err}");

    // max_age expires in the background, without new writes.
    let mut aged = cfg("AGE", &["age.>"]);
    aged.max_age = Duration::from_millis(300);
    js.create_stream(aged).await.unwrap();
    js.publish("age.a", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut s = js.get_stream("AGE").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(s.info().await.unwrap().state.messages, 0);

    // max_bytes with discard old keeps the newest.
    let mut b = cfg("B", &["b.>"]);
    b.max_bytes = 200;
    js.create_stream(b).await.unwrap();
    for _ in 0..10 {
        js.publish("b.a", vec![b'x'; 50].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let info = js
        .get_stream("B")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert!(info.state.bytes <= 200, "{:?}", info.state);
    assert_eq!(info.state.last_sequence, 10);

    // Rollups.
    let mut r = cfg("R", &["r.>"]);
    r.allow_rollup = true;
    js.create_stream(r).await.unwrap();
    for i in 0..3 {
        js.publish("r.a", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        js.publish("r.b", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "sub");
    js.publish_with_headers("r.a", h, "last".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut s = js.get_stream("R").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 4);
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "all");
    js.publish_with_headers("r.c", h, "only".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let info = s.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.first_sequence), (1, 8));

    // Memory storage works the same way.
    let mut m = cfg("MEM", &["mem.>"]);
    m.storage = stream::StorageType::Memory;
    js.create_stream(m).await.unwrap();
    let ack = js
        .publish("mem.a", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    let got = js
        .get_stream("MEM")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(&got.payload[..], b"x");
}

#[tokio::test]
async fn key_value_buckets_work_on_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client_on(0).await);
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "cfg".into(),
            history: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = kv.put("a", "1".into()).await.unwrap();
    let r2 = kv.put("a", "2".into()).await.unwrap();
    assert_eq!((r1, r2), (1, 2));
    assert_eq!(kv.get("a").await.unwrap().as_deref(), Some(&b"2"[..]));
    // create fails when the key exists; update needs the right revision.
    assert!(kv.create("a", "x".into()).await.is_err());
    assert!(kv.update("a", "x".into(), 1).await.is_err());
    assert_eq!(kv.update("a", "3".into(), 2).await.unwrap(), 3);
    kv.delete("a").await.unwrap();
    assert_eq!(kv.get("a").await.unwrap(), None);
    kv.put("b", "1".into()).await.unwrap();
    let js1 = jetstream::new(server.client_on(1).await);
    let kv1 = js1.get_key_value("cfg").await.unwrap();
    assert_eq!(kv1.get("b").await.unwrap().as_deref(), Some(&b"1"[..]));
    kv1.purge("b").await.unwrap();
    assert_eq!(kv.get("b").await.unwrap(), None);
}

#[tokio::test]
async fn key_value_keys_history_and_watch_use_consumers() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let js = jetstream::new(server.client_on(1).await);
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "w".into(),
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")] {
        kv.put(k, v.into()).await.unwrap();
    }
    kv.delete("c").await.unwrap();
    // keys: an ordered, headers-only, last-per-subject consumer; deleted keys left out.
    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    // history: every revision of one key, in order.
    let revs: Vec<(u64, Vec<u8>)> = kv
        .history("a")
        .await
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.revision, e.value.to_vec())
        })
        .collect()
        .await;
    assert_eq!(revs, [(1, b"1".to_vec()), (3, b"2".to_vec())]);
    // watch: the current values first (last per subject), then live updates.
    let mut watch = kv.watch_with_history(">").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push((e.key.clone(), e.revision));
    }
    assert_eq!(
        seen,
        [
            ("b".to_string(), 2),
            ("a".to_string(), 3),
            ("c".to_string(), 5)
        ]
    );
    kv.put("b", "9".into()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.key.as_str(), e.revision, &e.value[..]),
        ("b", 6, &b"9"[..])
    );
}

#[tokio::test]
async fn a_reply_sent_while_routing_does_not_take_the_message_s_subscribers() {
    // A duplicate publish is answered at once, while its own routing is under
    // way; that answer must not carry away the subscribers on another shard
    // that the message itself has not reached yet.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &[]);
    let admin = jetstream::new(server.client().await);
    admin
        .create_stream(cfg("DUP", &["orders.>"]))
        .await
        .unwrap();
    let mut subs = Vec::new();
    let mut watchers = Vec::new();
    for shard in 0..2 {
        let c = server.client_on(shard).await;
        watchers.push(c.subscribe(">").await.unwrap());
        subs.push(c.subscribe("orders.1").await.unwrap());
        c.flush().await.unwrap();
        std::mem::forget(c); // keep the connection for the subscriptions
    }
    // From each shard (one of them owns the stream): an original, then a duplicate.
    for shard in 0..2 {
        let js = jetstream::new(server.client_on(shard).await);
        let id = format!("id-{shard}");
        for _ in 0..2 {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers("orders.1", h, "order".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    for sub in &mut subs {
        for _ in 0..4 {
            let m = tokio::time::timeout(Duration::from_secs(3), futures::StreamExt::next(sub))
                .await
                .expect("every publish reaches orders.1 on both shards")
                .unwrap();
            assert_eq!(
                (m.subject.as_str(), &m.payload[..]),
                ("orders.1", &b"order"[..])
            );
        }
    }
    drop(watchers);
}
