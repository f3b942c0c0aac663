//! The HTTP monitoring port (`-m`): nats-server's endpoints, fields, counters,
//! parameters and errors, through HTTP, with real clients making the state.

mod common;

use std::time::Duration;

use common::monitor::{get, http, monitor_port};
use common::Server;
use serde_json::Value;

fn conn_by_cid(connz: &Value, cid: u64) -> Value {
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cid"] == cid)
        .cloned()
        .unwrap_or_else(|| panic!("cid {cid} not in {connz}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_connections_follow_what_clients_do_across_shards() {
    let s = Server::start_with(2, &["-m", "-1"]);
    let port = monitor_port(&s);
    let before = get(port, "/varz");
    let sub = s.client_on(0).await;
    let publ = s.client_on(1).await;
    let (sub_cid, pub_cid) = (sub.server_info().client_id, publ.server_info().client_id);
    let mut foo = sub.subscribe("foo").await.unwrap();
    let _q = sub.queue_subscribe("bar", "workers".into()).await.unwrap();
    common::sync_interest(&sub, &publ).await;
    // The interest probe's messages count too: measure from here.
    let start = get(port, "/connz");
    let (sub_out0, pub_in0) = (
        conn_by_cid(&start, sub_cid)["out_msgs"].as_u64().unwrap(),
        conn_by_cid(&start, pub_cid)["in_msgs"].as_u64().unwrap(),
    );
    for _ in 0..10 {
        publ.publish("foo", "hello".into()).await.unwrap();
    }
    publ.flush().await.unwrap();
    for _ in 0..10 {
        futures::StreamExt::next(&mut foo).await.unwrap();
    }
    let connz = get(port, "/connz?subs=detail");
    let c = conn_by_cid(&connz, sub_cid);
    assert_eq!(c["out_msgs"].as_u64(), Some(sub_out0 + 10), "{c}");
    assert_eq!(c["out_bytes"], 50, "{c}");
    assert_eq!(c["subscriptions"], 2, "{c}");
    assert_eq!(c["kind"], "Client");
    assert_eq!(c["type"], "nats");
    assert_eq!(c["lang"], "rust");
    let details = c["subscriptions_list_detail"].as_array().unwrap();
    let foo_detail = details.iter().find(|d| d["subject"] == "foo").unwrap();
    assert_eq!(foo_detail["msgs"], 10);
    assert_eq!(foo_detail["cid"], sub_cid);
    let bar = details.iter().find(|d| d["subject"] == "bar").unwrap();
    assert_eq!(bar["qgroup"], "workers");
    let p = conn_by_cid(&connz, pub_cid);
    assert_eq!(p["in_msgs"].as_u64(), Some(pub_in0 + 10), "{p}");
    assert_eq!(p["in_bytes"], 50, "{p}");
    // The busiest receiver first; a cid gives one connection out of all.
    let by_out = get(port, "/connz?sort=msgs_to&limit=1");
    assert_eq!(by_out["connections"][0]["cid"], sub_cid, "{by_out}");
    assert_eq!(by_out["num_connections"], 1);
    let one = get(port, &format!("/connz?cid={pub_cid}"));
    assert_eq!(one["connections"][0]["cid"], pub_cid);
    assert_eq!(one["limit"], 1);
    let subs = get(port, "/connz?subs=1");
    let list = conn_by_cid(&subs, sub_cid)["subscriptions_list"].clone();
    assert!(
        list.as_array().unwrap().contains(&Value::from("foo")),
        "{list}"
    );
    let varz = get(port, "/varz");
    let delta = |k: &str| varz[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(delta("in_msgs") >= 10 && delta("out_msgs") >= 10, "{varz}");
    assert_eq!(varz["connections"].as_u64(), connz["total"].as_u64());
    // /subsz lists client subscriptions, filtered by a test subject.
    let subsz = get(port, "/subsz?subs=1&test=foo");
    assert_eq!(subsz["total"], 1, "{subsz}");
    assert_eq!(subsz["subscriptions_list"][0]["subject"], "foo");
    assert_eq!(subsz["subscriptions_list"][0]["account"], "$G");
    assert!(subsz["num_subscriptions"].as_u64().unwrap() >= 2);
    // A closed connection keeps its counters, in /varz and in the closed list.
    drop(publ);
    let closed = loop {
        let closed = get(port, &format!("/connz?state=closed&cid={pub_cid}"));
        if closed["num_connections"] == 1 {
            break closed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let c = &closed["connections"][0];
    assert_eq!(c["reason"], "Client Closed", "{c}");
    assert_eq!(c["in_msgs"].as_u64(), Some(pub_in0 + 10));
    assert!(c["stop"].is_string());
    let after = get(port, "/varz");
    assert!(after["in_msgs"].as_u64() >= varz["in_msgs"].as_u64());
    let by_stop = get(port, "/connz?state=closed&sort=stop");
    assert_eq!(
        by_stop["connections"][0]["cid"], pub_cid,
        "latest stop first"
    );
}

#[test]
fn bad_parameters_and_paths_are_answered_as_nats_server_does() {
    let s = Server::start_with(1, &["-m", "-1"]);
    let port = monitor_port(&s);
    let cases = [
        ("/connz?sort=bad", 400, "invalid sorting option: bad"),
        (
            "/connz?limit=abc",
            400,
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (
            "/connz?cid=-1",
            400,
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax",
        ),
        ("/connz?state=xyz", 400, "Error decoding state for xyz"),
        ("/connz?sort=stop", 400, "sort by stop only valid on closed connections"),
        ("/connz?sort=reason&state=all", 400, "sort by reason only valid on closed connections"),
        (
            "/connz?subs=xyz",
            400,
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"xyz\": invalid syntax",
        ),
        (
            "/subsz?test=foo.*",
            400,
            "invalid test subject, must be valid publish subject: foo.*",
        ),
        ("/accountz?acc=NOPE", 400, "Account NOPE does not exist"),
        ("/nope", 404, "404 page not found\n"),
        ("/healthz", 200, "{\"status\":\"ok\"}"),
        (
            "/healthz?stream=S",
            400,
            "{\"status\":\"error\",\"error\":\"\\\"account\\\" must not be empty when checking stream health\"}",
        ),
    ];
    for (path, status, body) in cases {
        let (st, head, b) = http(port, "GET", path);
        assert_eq!((st, b.as_str()), (status, body), "{path}");
        if status == 400 && !path.starts_with("/healthz") {
            assert!(head.contains("text/plain; charset=utf-8"), "{head}");
        }
    }
    // POST is answered as GET; HEAD has the headers only.
    let (st, head, body) = http(port, "POST", "/varz");
    assert_eq!(st, 200);
    assert!(head.contains("Content-Type: application/json"));
    assert!(head.contains("Access-Control-Allow-Origin: *"));
    assert!(body.starts_with("{\n  \"server_id\": "), "{body}");
    let (st, _, body) = http(port, "HEAD", "/varz");
    assert_eq!((st, body.as_str()), (200, ""));
    let (st, _, root) = http(port, "GET", "/");
    assert!(st == 200 && root.contains("/connz") && root.contains("/jsz"));
    // JetStream is off: /jsz says so, /healthz is fine.
    let jsz = get(port, "/jsz");
    assert_eq!(jsz["disabled"], true, "{jsz}");
    let varz = get(port, "/varz");
    assert!(varz.get("jetstream").is_none());
    // nats-server's defaults, as it shows them.
    assert_eq!(
        (varz["auth_timeout"].as_f64(), varz["tls_timeout"].as_f64()),
        (Some(2.0), Some(2.0))
    );
    assert_eq!(varz["http_req_stats"]["/healthz"], 2, "{varz}");
    // /connz refused for a bad parameter is not counted.
    assert_eq!(varz["http_req_stats"]["/connz"], Value::Null, "{varz}");
}

/// Creates stream `name` on `subjects` with a durable pull consumer.
async fn stream_with_consumer(
    client: &async_nats::Client,
    name: &str,
    subjects: &str,
    durable: &str,
) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(durable.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    js
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsz_and_healthz_show_streams_and_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_js(2, dir.path(), &["-m", "-1"]);
    let port = monitor_port(&s);
    let js = stream_with_consumer(&s.client().await, "ORDERS", "orders.>", "worker").await;
    for i in 0..5 {
        js.publish(format!("orders.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let jsz = get(port, "/jsz");
    assert_eq!(
        (jsz["streams"].as_u64(), jsz["consumers"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(jsz["messages"], 5, "{jsz}");
    assert!(jsz["config"]["max_storage"].as_i64().unwrap() > 0);
    assert!(jsz.get("account_details").is_none());
    let full = get(port, "/jsz?streams=1&consumers=1&config=1");
    let detail = &full["account_details"][0]["stream_detail"][0];
    assert_eq!(detail["name"], "ORDERS", "{full}");
    assert_eq!(detail["state"]["messages"], 5);
    assert_eq!(detail["config"]["subjects"][0], "orders.>");
    let consumer = &detail["consumer_detail"][0];
    assert_eq!(consumer["name"], "worker");
    assert_eq!(consumer["num_pending"], 5);
    assert!(consumer["config"].is_object());
    let bare = get(port, "/jsz?consumers=1");
    let detail = &bare["account_details"][0]["stream_detail"][0];
    assert!(detail.get("config").is_none() && detail["consumer_detail"][0].get("config").is_none());
    let accounts = get(port, "/jsz?accounts=1");
    assert!(accounts["account_details"][0]
        .get("stream_detail")
        .is_none());
    let health = |q: &str| http(port, "GET", &format!("/healthz?{q}"));
    assert_eq!(health("account=$G&stream=ORDERS&consumer=worker").0, 200);
    let (st, _, body) = health("account=$G&stream=NOPE");
    assert_eq!(st, 404);
    assert_eq!(
        body,
        r#"{"status":"unavailable","error":"JetStream stream \"NOPE\" not found on account \"$G\""}"#
    );
    let (st, _, body) = health("account=$G&stream=ORDERS&consumer=NOPE&details=true");
    assert_eq!(st, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errors"][0]["type"], "CONSUMER");
    assert_eq!(health("js-enabled-only=true").0, 200);
    let varz = get(port, "/varz");
    assert_eq!(varz["jetstream"]["stats"]["api"]["level"], 1);
    assert!(varz["jetstream"]["config"]["store_dir"]
        .as_str()
        .unwrap()
        .ends_with("jetstream"));
}

/// The JSON type of a value, for comparing shapes.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key jetcore writes in `ours` is one nats-server writes in `theirs`,
/// with the same JSON type; keys nats-server has that jetcore lacks must be
/// in `absent`. Recurses into objects (and first array elements).
fn same_shape(at: &str, ours: &Value, theirs: &Value, absent: &[&str], out: &mut Vec<String>) {
    // Keys nats-server writes only under other settings (`sync: always`).
    const OTHER_SETTINGS: &[&str] = &["sync_always"];
    let (Value::Object(o), Value::Object(t)) = (ours, theirs) else {
        if let (Value::Array(o), Value::Array(t)) = (ours, theirs) {
            if let (Some(a), Some(b)) = (o.first(), t.first()) {
                same_shape(&format!("{at}[0]"), a, b, absent, out);
            }
        }
        return;
    };
    for (k, v) in o {
        let path = format!("{at}.{k}");
        match t.get(k) {
            None if OTHER_SETTINGS.contains(&k.as_str()) => {}
            None => out.push(format!("{path}: nats-server does not write it")),
            Some(tv) if kind(tv) != kind(v) && !tv.is_null() => {
                out.push(format!("{path}: {} here, {} there", kind(v), kind(tv)))
            }
            Some(tv) => same_shape(&path, v, tv, absent, out),
        }
    }
    for k in t.keys() {
        if !o.contains_key(k) && !absent.contains(&k.as_str()) {
            out.push(format!("{at}.{k}: missing"));
        }
    }
}

/// Drives the same clients, stream and consumer against one server, and
/// reads its endpoints.
async fn endpoints_after_a_session(s: &Server, port: u16) -> Vec<(&'static str, Value)> {
    let sub = s.client().await;
    let publ = s.client().await;
    let _foo = sub.subscribe("foo").await.unwrap();
    common::sync_interest(&sub, &publ).await;
    publ.publish("foo", "hello".into()).await.unwrap();
    publ.flush().await.unwrap();
    let js = stream_with_consumer(&publ, "S", "s.>", "C").await;
    js.publish("s.1", "x".into()).await.unwrap().await.unwrap();
    let closing = s.client().await;
    closing.flush().await.unwrap();
    drop(closing);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = Vec::new();
    for path in [
        "/varz",
        "/connz?subs=detail",
        "/connz?state=closed",
        "/subsz?subs=1&test=foo",
        "/jsz?streams=1&consumers=1&config=1",
        "/accountz",
        "/accountz?acc=$G",
    ] {
        out.push((path, get(port, path)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_is_one_nats_server_writes_with_its_type() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ours = Server::start_js(2, d1.path(), &["-m", "-1"]);
    let theirs = Server::start_nats(d2.path(), &["-m", "-1"]);
    let a = endpoints_after_a_session(&ours, monitor_port(&ours)).await;
    let b = endpoints_after_a_session(&theirs, monitor_port(&theirs)).await;
    // What nats-server writes that one jetcore has no part of: build and
    // cluster facts, the system account, internal feature flags, disk-wait
    // statistics, the strict flag, TLS and auth details, imports of the
    // system account, tags.
    let absent = [
        "git_commit",
        "system_account",
        "feature_flags",
        "disk_io_wait_stats",
        "limits",
        "strict",
        "sync_interval",
        "imports",
        "exports",
        "jwt",
        "issuer_key",
        "tags",
        "meta_cluster",
        "leader",
        "stalls",
        "rtt",
        "mirror_direct",
    ];
    let mut problems = Vec::new();
    for ((path, o), (_, t)) in a.iter().zip(b.iter()) {
        same_shape(path, o, t, &absent, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_answers_while_a_thousand_clients_come_and_go() {
    let s = Server::start_with(2, &["-m", "-1"]);
    let (port, client_port) = (monitor_port(&s), s.port);
    let churn = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for i in 0..1000 {
            tasks.push(tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut c = tokio::net::TcpStream::connect(("127.0.0.1", client_port))
                    .await
                    .unwrap();
                let hello = format!("CONNECT {{\"name\":\"c{i}\"}}\r\nSUB x.{i} 1\r\nPING\r\n");
                c.write_all(hello.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut seen = String::new();
                while !seen.contains("PONG") {
                    let n = c.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed before PONG");
                    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
            if tasks.len() == 50 {
                for t in tasks.drain(..) {
                    t.await.unwrap();
                }
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let mut polls = 0;
    while !churn.is_finished() {
        let connz = tokio::task::spawn_blocking(move || get(port, "/connz?subs=1&limit=2000"))
            .await
            .unwrap();
        let n = connz["num_connections"].as_u64().unwrap();
        assert_eq!(n as usize, connz["connections"].as_array().unwrap().len());
        assert!(n <= connz["total"].as_u64().unwrap());
        polls += 1;
    }
    churn.await.unwrap();
    assert!(polls > 0);
    let closed = loop {
        let v = tokio::task::spawn_blocking(move || get(port, "/varz"))
            .await
            .unwrap();
        if v["connections"] == 0 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(closed["total_connections"], 1000, "{closed}");
    let list = get(port, "/connz?state=closed&limit=5000");
    assert_eq!(list["total"], 1000);
    assert_eq!(list["num_connections"], 1000);
}

#[test]
fn the_port_comes_from_a_config_file_and_bad_ports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    std::fs::write(&conf, "http: \"127.0.0.1:-1\"\n").unwrap();
    let s = Server::start_with(1, &["-c", conf.to_str().unwrap()]);
    let port = monitor_port(&s);
    assert_eq!(get(port, "/varz")["http_host"], "127.0.0.1");
    let (st, _, body) = http(port, "GET", "/healthz");
    assert_eq!((st, body.as_str()), (200, r#"{"status":"ok"}"#));
    for args in [&["-m", "70000"][..], &["--http_port=-2"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid monitoring port"), "{err}");
    }
}

#[test]
fn healthz_is_not_ok_until_every_stream_is_recovered() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    {
        // Stream A lands on shard 0 (which serves monitoring), B on shard 1,
        // with enough data that recovering it takes a while.
        let s = Server::start_js(2, dir.path(), &[]);
        let mut raw = s.raw();
        raw.setup_requests();
        for (name, subject) in [("A", "a"), ("B", "b")] {
            let cfg = format!(r#"{{"name":"{name}","subjects":["{subject}"]}}"#);
            let subj = format!("$JS.API.STREAM.CREATE.{name}");
            let (_, body) = raw.request(&subj, None, cfg.as_bytes());
            assert!(!String::from_utf8_lossy(&body).contains("error"));
        }
        let mut chunk = Vec::new();
        for _ in 0..1000 {
            chunk.extend_from_slice(b"PUB b 1024\r\n");
            chunk.extend_from_slice(&[b'x'; 1024]);
            chunk.extend_from_slice(b"\r\n");
        }
        let count = |raw: &mut common::Raw| {
            let (_, info) = raw.request("$JS.API.STREAM.INFO.B", None, b"");
            let v: Value = serde_json::from_slice(&info).unwrap();
            v["state"]["messages"].as_u64().unwrap()
        };
        for round in 1..=120 {
            raw.send(&chunk);
            if round % 10 == 0 {
                // Stored before more is sent: the stream's ingest queue is bounded.
                while count(&mut raw) < round * 1000 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        assert_eq!(count(&mut raw), 120_000);
        s.terminate();
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--shards",
            "2",
            "-js",
            "-sd",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("log").unwrap();
        if let Some(addr) = line.split("Starting http monitor on ").nth(1) {
            break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    };
    let mut seen = Vec::new();
    let t0 = std::time::Instant::now();
    loop {
        let (status, _, body) = http(port, "GET", "/healthz");
        seen.push((status, body));
        if status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never healthy: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (first_status, first_body) = &seen[0];
    assert_eq!(*first_status, 500, "{seen:?}");
    assert_eq!(
        first_body,
        r#"{"status":"error","error":"failed to be ready for connections after 1ms: startup did not complete"}"#
    );
}
