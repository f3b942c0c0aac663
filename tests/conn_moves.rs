//! Clients moving to the shard their publishes go to (issue 13): a client
//! whose publishes, one read after another, all reach one other shard moves
//! there. Nothing it sends or receives is lost, duplicated or reordered
//! across the move; its subscriptions, counts and stream acks go with it.

mod common;

use std::time::Duration;

use async_nats::Subscriber;
use common::Server;
use futures::StreamExt;

/// Debug log line of a move: "<peer> - cid:<cid> - moved to shard <n>".
fn moved(cid: u64, to: usize) -> String {
    format!("cid:{cid} - moved to shard {to}")
}

/// A raw connection on `shard`, connected, `then` sent and in force.
fn raw_on(server: &Server, shard: usize, then: &str) -> common::Raw {
    let mut raw = server.raw_on(shard);
    raw.send(format!("CONNECT {{\"verbose\":false}}\r\n{then}").as_bytes());
    raw.flush();
    raw
}

/// Takes `n` messages off `sub`, which must be "0", "1", ... in order.
async fn in_order(sub: &mut Subscriber, n: usize, what: &str) {
    for i in 0..n {
        in_order_from(sub, i, what).await;
    }
}

/// Takes the next message off `sub`, which must be `i`.
async fn in_order_from(sub: &mut Subscriber, i: usize, what: &str) {
    let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: message {i} in time"))
        .expect("subscription open");
    assert_eq!(m.payload, i.to_string(), "{what}: message {i}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_moves_to_its_subscriber_and_both_ways_stay_in_order() {
    const FED: usize = 3000;
    for shards in [2, 4] {
        let server = Server::start_with(shards, &["-D"]);
        let sink = server.client_on(0).await;
        let mut sunk = sink.subscribe("to.sink").await.unwrap();
        sink.flush().await.unwrap();
        let mover = server.client_on(1).await;
        let mut fed = mover.subscribe("to.mover").await.unwrap();
        let mut fed_far = mover.subscribe("to.mover.far").await.unwrap();
        mover.flush().await.unwrap();
        common::sync_interest(&sink, &mover).await;
        // Other clients feed the mover all along, so deliveries to it arrive
        // before, during and after the move: one on its first shard, one on
        // a third shard where there is one (its deliveries reach the new
        // shard by another channel than the move's).
        let far = if shards > 2 { 2 } else { 0 };
        let mut feeding = Vec::new();
        for (on, subject) in [(1, "to.mover"), (far, "to.mover.far")] {
            let feeder = server.client_on(on).await;
            common::sync_interest(&mover, &feeder).await;
            feeding.push(tokio::spawn(async move {
                for i in 0..FED {
                    feeder.publish(subject, i.to_string().into()).await.unwrap();
                    if i % 10 == 9 {
                        feeder.flush().await.unwrap();
                    }
                }
                feeder.flush().await.unwrap();
            }));
        }
        // One publish per read (the next goes once the last arrived): the
        // pattern that moves a client, for longer than the longest run it
        // may need, whichever of the two is newer.
        const SENT: usize = 600;
        for i in 0..SENT {
            mover
                .publish("to.sink", i.to_string().into())
                .await
                .unwrap();
            mover.flush().await.unwrap();
            in_order_from(&mut sunk, i, "mover -> sink").await;
        }
        in_order(&mut fed, FED, "feeder -> mover").await;
        in_order(&mut fed_far, FED, "far feeder -> mover").await;
        for f in feeding {
            f.await.unwrap();
        }
        let cid = mover.server_info().client_id;
        let line = server.wait_log(&moved(cid, 0), Duration::from_secs(5));
        assert!(
            line.is_some(),
            "{shards} shards: the mover (cid {cid}) moved"
        );
        // Served where it is now: a request round trip, and its subscription.
        sink.publish("to.mover", "after".into()).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), fed.next()).await;
        assert_eq!(m.unwrap().unwrap().payload, "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_moves_to_its_responder() {
    let server = Server::start_with(2, &["-D"]);
    let responder = server.client_on(0).await;
    let mut requests = responder.subscribe("svc").await.unwrap();
    responder.flush().await.unwrap();
    let requester = server.client_on(1).await;
    common::sync_interest(&responder, &requester).await;
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let reply = m.reply.expect("a request");
            responder.publish(reply, m.payload).await.unwrap();
        }
    });
    common::echo_requests(&requester, "svc", 400).await;
    let cid = requester.server_info().client_id;
    let line = server.wait_log(&moved(cid, 0), Duration::from_secs(5));
    assert!(line.is_some(), "the requester (cid {cid}) moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_jetstream_publisher_moves_to_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(2, dir.path(), &["-D"]);
    let client = server.client_on(1).await;
    let js = async_nats::jetstream::new(client.clone());
    // A fresh server's first stream is on shard 0.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "M".into(),
        subjects: vec!["m.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 0..600u64 {
        let ack = js.publish("m.x", i.to_string().into()).await.unwrap();
        assert_eq!(ack.await.unwrap().sequence, i + 1);
    }
    let cid = client.server_info().client_id;
    let line = server.wait_log(&moved(cid, 0), Duration::from_secs(5));
    assert!(line.is_some(), "the publisher (cid {cid}) moved");
    let mut stream = js.get_stream("M").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 600);
}

/// A busy async publisher (more than `MOVE_READ_PUBS_MAX` publishes a read),
/// all to a stream on another shard, moves there too while that shard has
/// room: each of its publishes crossed twice (the message and its ack).
/// Every ack comes back, in order, before and after the move.
#[test]
fn a_busy_jetstream_publisher_moves_to_its_stream() {
    for shards in [2, 4] {
        busy_publisher_moves(shards);
    }
}

/// `a_busy_jetstream_publisher_moves_to_its_stream` on `shards` shards, the
/// publisher on the last one.
fn busy_publisher_moves(shards: usize) {
    const BATCH: usize = 32;
    const ROUNDS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_js(shards, dir.path(), &["-D"]);
    let mut setup = server.raw_on(0);
    setup.setup_requests();
    // A fresh server's first stream is on shard 0.
    let (_, created) = setup.request(
        "$JS.API.STREAM.CREATE.B",
        None,
        br#"{"name":"B","subjects":["b.>"]}"#,
    );
    assert!(!String::from_utf8_lossy(&created).contains("error"));
    let mut publisher = raw_on(&server, shards - 1, "SUB acks.* 1\r\n");
    publisher.flush();
    let cid = publisher.cid();
    let mut seq = 0;
    for _ in 0..ROUNDS {
        // One write of BATCH publishes: one read on the server.
        let batch: String = (0..BATCH)
            .map(|i| format!("PUB b.x acks.{i} 1\r\nx\r\n"))
            .collect();
        publisher.send(batch.as_bytes());
        for i in 0..BATCH {
            let head = publisher.read_line();
            assert!(head.starts_with(&format!("MSG acks.{i} 1 ")), "{head}");
            seq += 1;
            let ack: serde_json::Value = serde_json::from_str(&publisher.read_line()).unwrap();
            assert_eq!(ack["seq"].as_u64(), Some(seq), "{shards} shards: {ack}");
        }
        // Paced, so that the stream's shard stays well under its room (half
        // a core) even in a debug build on a loaded machine.
        std::thread::sleep(Duration::from_millis(5));
    }
    let line = server.wait_log(&moved(cid, 0), Duration::from_secs(5));
    assert!(
        line.is_some(),
        "{shards} shards: the publisher (cid {cid}) moved"
    );
}

/// An auto-unsubscribe count (`UNSUB <sid> <max>`) is kept across a move.
#[test]
fn an_unsub_count_goes_with_the_connection() {
    let server = Server::start_with(2, &["-D"]);
    let _sink = raw_on(&server, 0, "SUB sink 1\r\n");
    let mut feeder = raw_on(&server, 0, "");
    let mut mover = raw_on(&server, 1, "SUB inbox 7\r\nUNSUB 7 5\r\n");
    let cid = mover.cid();
    feeder.send(b"PUB inbox 1\r\na\r\nPUB inbox 1\r\nb\r\nPUB inbox 1\r\nc\r\n");
    feeder.flush();
    let got = mover.flush();
    assert_eq!(got.matches("MSG inbox 7").count(), 3, "{got}");
    for _ in 0..300 {
        mover.send(b"PUB sink 1\r\nx\r\n");
        assert!(mover.flush().is_empty());
    }
    let line = server.wait_log(&moved(cid, 0), Duration::from_secs(5));
    assert!(line.is_some(), "the mover (cid {cid}) moved");
    for m in ["d", "e", "f", "g", "h"] {
        feeder.send(format!("PUB inbox 1\r\n{m}\r\n").as_bytes());
    }
    feeder.flush();
    let got = mover.flush();
    assert_eq!(got.matches("MSG inbox 7").count(), 2, "{got}");
    assert!(
        got.contains("\r\nd\r\n") && got.contains("\r\ne\r\n"),
        "{got}"
    );
    let none = mover.flush();
    assert!(none.is_empty(), "{none}");
}

/// While clients move, monitoring counts each of them once: a gather that
/// caught a hand-over halfway (the client on neither shard, or on both)
/// asks again. On 2 shards the moves go to the shard that gathers; on 3
/// they go between two others.
#[test]
fn monitoring_counts_a_moving_client_once() {
    const MOVERS: usize = 24;
    for (shards, sink_on) in [(2, 0), (3, 2)] {
        let server = Server::start_with(shards, &["-D", "-m", "-1"]);
        let port = common::monitor::monitor_port(&server);
        let _sink = raw_on(&server, sink_on, "SUB sink 1\r\n");
        let mut movers: Vec<common::Raw> = (0..MOVERS).map(|_| raw_on(&server, 1, "")).collect();
        for m in &mut movers {
            // One write per publish and its PING (as clients send them), not
            // held back waiting for the last one's ack.
            m.stream.set_nodelay(true).unwrap();
            assert!(m.flush().is_empty());
        }
        let expected = MOVERS as u64 + 1;
        // Connections that landed on another shard first close as they go.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while common::monitor::get(port, "/varz")["connections"] != expected {
            assert!(
                std::time::Instant::now() < deadline,
                "{expected} connections"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut polls = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let varz = common::monitor::get(port, "/varz");
                    assert_eq!(varz["connections"], expected, "poll {polls}: {varz}");
                    let connz = common::monitor::get(port, "/connz?limit=100");
                    assert_eq!(connz["num_connections"], expected, "poll {polls}: {connz}");
                    polls += 1;
                }
                polls
            })
        };
        // Each mover publishes one message a read, round robin, until all
        // moved (toward a newer client, the sink's cid may be higher than a
        // mover's, a run is `MOVE_READS_YIELD` = 256 reads).
        for _ in 0..300 {
            for m in &mut movers {
                m.send(b"PUB sink 1\r\nx\r\n");
                let got = m.flush();
                assert!(got.is_empty(), "{got}");
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let polls = poller.join().expect("every poll counted each client once");
        assert!(polls > 0);
        // They move in any order; each log line is read once.
        let mut left: Vec<u64> = movers.iter().map(|m| m.cid()).collect();
        while !left.is_empty() {
            let to = format!("moved to shard {sink_on}");
            let line = server.wait_log(&to, Duration::from_secs(5));
            let line = line.unwrap_or_else(|| panic!("{shards} shards: {left:?} moved"));
            left.retain(|&cid| !line.contains(&moved(cid, sink_on)));
        }
    }
}

#[test]
fn no_conn_moves_keeps_every_client_where_it_was_accepted() {
    let server = Server::start_with(2, &["-D", "--no_conn_moves"]);
    let _sink = raw_on(&server, 0, "SUB sink 1\r\n");
    let mut mover = raw_on(&server, 1, "");
    for _ in 0..300 {
        mover.send(b"PUB sink 1\r\nx\r\n");
        assert!(mover.flush().is_empty());
    }
    let line = server.wait_log("moved to shard", Duration::from_secs(1));
    assert_eq!(line, None);
}
