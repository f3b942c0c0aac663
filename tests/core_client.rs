//! Core NATS through a real client (async-nats), every scenario with 1, 2 and 4
//! shards, publisher and subscriber placed on different shards where it matters.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::{HeaderMap, Message, Subscriber};
use bytes::Bytes;
use common::{sync_interest, Server, SHARD_COUNTS};
use futures::StreamExt;

async fn recv(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

async fn nothing_more(sub: &mut Subscriber) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        panic!("unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscriber_on_another_shard() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let subscriber = server.client_on(0).await;
        let publisher = server.client_on(shards - 1).await;
        let mut sub = subscriber.subscribe("orders.new").await.unwrap();
        sync_interest(&subscriber, &publisher).await;
        for i in 0..500 {
            publisher
                .publish("orders.new", Bytes::from(format!("m{i}")))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        for i in 0..500 {
            let m = recv(&mut sub).await;
            assert_eq!(
                m.payload,
                Bytes::from(format!("m{i}")),
                "order kept with {shards} shards"
            );
        }
        nothing_more(&mut sub).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_like_nats() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let subscriber = server.client_on(0).await;
        let publisher = server.client_on(shards - 1).await;
        let mut star = subscriber.subscribe("a.*").await.unwrap();
        let mut gt = subscriber.subscribe("a.>").await.unwrap();
        let mut mid = subscriber.subscribe("*.b.*").await.unwrap();
        sync_interest(&subscriber, &publisher).await;
        for subject in ["a.b", "a.b.c", "x.b.y", "a"] {
            publisher
                .publish(subject, Bytes::from(subject))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        assert_eq!(recv(&mut star).await.subject.as_str(), "a.b");
        nothing_more(&mut star).await;
        assert_eq!(recv(&mut gt).await.subject.as_str(), "a.b");
        assert_eq!(recv(&mut gt).await.subject.as_str(), "a.b.c");
        nothing_more(&mut gt).await;
        assert_eq!(recv(&mut mid).await.subject.as_str(), "a.b.c");
        assert_eq!(recv(&mut mid).await.subject.as_str(), "x.b.y");
        nothing_more(&mut mid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_across_shards_gets_each_message_once() {
    const N: usize = 600;
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let mut members = Vec::new();
        let mut clients = Vec::new();
        for i in 0..4 {
            let c = server.client_on(i % shards).await;
            members.push(c.queue_subscribe("work", "workers".into()).await.unwrap());
            c.flush().await.unwrap();
            clients.push(c);
        }
        let watcher = server.client_on(shards / 2).await;
        let mut plain = watcher.subscribe("work").await.unwrap();
        let publisher = server.client_on(0).await;
        sync_interest(&watcher, &publisher).await;
        for c in &clients {
            sync_interest(c, &publisher).await;
        }
        for i in 0..N {
            publisher
                .publish("work", Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        for _ in 0..N {
            recv(&mut plain).await;
        }
        let mut seen = HashSet::new();
        let mut per_member = Vec::new();
        for member in &mut members {
            let mut count = 0;
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(500), member.next()).await
            {
                assert!(
                    seen.insert(m.payload.clone()),
                    "delivered twice: {:?}",
                    m.payload
                );
                count += 1;
                if seen.len() == N {
                    break;
                }
            }
            per_member.push(count);
        }
        assert_eq!(
            seen.len(),
            N,
            "every message delivered once ({shards} shards): {per_member:?}"
        );
        assert!(
            per_member.iter().filter(|c| **c > 0).count() >= 2,
            "spread over members: {per_member:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_across_shards() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let responder = server.client_on(shards - 1).await;
        let mut service = responder.subscribe("svc.echo").await.unwrap();
        let requester = server.client_on(0).await;
        sync_interest(&responder, &requester).await;
        let r = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = service.next().await {
                let mut body = b"re:".to_vec();
                body.extend_from_slice(&m.payload);
                r.publish(m.reply.unwrap(), body.into()).await.unwrap();
            }
        });
        for i in 0..100 {
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                requester.request("svc.echo", Bytes::from(format!("q{i}"))),
            )
            .await
            .expect("reply in time")
            .expect("reply");
            assert_eq!(reply.payload, Bytes::from(format!("re:q{i}")));
        }
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscriptions_with_wildcards() {
    const N: usize = 10_000;
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let subscriber = server.client_on(0).await;
        let mut subs = Vec::with_capacity(N);
        for i in 0..N {
            let subject = match i % 3 {
                0 => format!("t.{i}"),
                1 => format!("t.{i}.*"),
                _ => format!("t.{i}.>"),
            };
            subs.push(subscriber.subscribe(subject).await.unwrap());
        }
        let publisher = server.client_on(shards - 1).await;
        sync_interest(&subscriber, &publisher).await;
        for i in 0..N {
            let subject = match i % 3 {
                0 => format!("t.{i}"),
                1 => format!("t.{i}.x"),
                _ => format!("t.{i}.x.y"),
            };
            publisher
                .publish(subject, Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        // Subjects nobody listens to are dropped.
        publisher.publish("t.0.x", Bytes::new()).await.unwrap();
        publisher.flush().await.unwrap();
        let mut all = futures::stream::select_all(subs);
        let mut got = HashSet::new();
        while got.len() < N {
            let m = tokio::time::timeout(Duration::from_secs(10), all.next())
                .await
                .expect("all delivered")
                .unwrap();
            assert!(got.insert(m.payload.clone()), "duplicate {:?}", m.payload);
        }
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), all.next()).await {
            panic!("unexpected {}", m.subject);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let subscriber = server.client_on(0).await;
        let publisher = server.client_on(shards - 1).await;
        let mut sub = subscriber.subscribe("h").await.unwrap();
        sync_interest(&subscriber, &publisher).await;
        let mut headers = HeaderMap::new();
        headers.insert("X-Trace", "abc");
        headers.append("X-Multi", "1");
        headers.append("X-Multi", "2");
        publisher
            .publish_with_headers("h", headers, Bytes::from_static(b"body"))
            .await
            .unwrap();
        publisher
            .publish_with_headers("h", HeaderMap::new(), Bytes::new())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let m = recv(&mut sub).await;
        let h = m.headers.expect("headers kept");
        assert_eq!(h.get("X-Trace").unwrap().as_str(), "abc");
        let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
        assert_eq!(multi, ["1", "2"]);
        assert_eq!(m.payload, Bytes::from_static(b"body"));
        let empty = recv(&mut sub).await;
        assert!(empty.payload.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_responders_fails_fast() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let client = server.client().await;
        let err = tokio::time::timeout(
            Duration::from_secs(2),
            client.request("nobody.home", Bytes::new()),
        )
        .await
        .expect("answered before the client timeout")
        .expect_err("no responders");
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_false_skips_own_messages_only() {
    let server = Server::start(2);
    let quiet = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(server.url())
        .await
        .unwrap();
    let other = server.client().await;
    let mut own = quiet.subscribe("e").await.unwrap();
    let mut theirs = other.subscribe("e").await.unwrap();
    sync_interest(&quiet, &other).await;
    sync_interest(&other, &quiet).await;
    quiet
        .publish("e", Bytes::from_static(b"from quiet"))
        .await
        .unwrap();
    quiet.flush().await.unwrap();
    assert_eq!(
        recv(&mut theirs).await.payload,
        Bytes::from_static(b"from quiet")
    );
    nothing_more(&mut own).await;
    other
        .publish("e", Bytes::from_static(b"from other"))
        .await
        .unwrap();
    other.flush().await.unwrap();
    assert_eq!(
        recv(&mut own).await.payload,
        Bytes::from_static(b"from other")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unsubscribe_after_max_messages() {
    for shards in SHARD_COUNTS {
        let server = Server::start(shards);
        let subscriber = server.client_on(0).await;
        let publisher = server.client_on(shards - 1).await;
        let mut sub = subscriber.subscribe("limited").await.unwrap();
        sub.unsubscribe_after(3).await.unwrap();
        sync_interest(&subscriber, &publisher).await;
        for i in 0..10 {
            publisher
                .publish("limited", Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        publisher.flush().await.unwrap();
        for i in 0..3 {
            assert_eq!(recv(&mut sub).await.payload, Bytes::from(i.to_string()));
        }
        let end = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("stream ends");
        assert!(end.is_none(), "no message after the max");
    }
}
