//! The client protocol over raw TCP: exact bytes for what clients send and for
//! what they never send, compared with what nats-server 2.15 answers.

mod common;

use std::time::Duration;

use common::{Raw, Server};

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n";

fn connected(server: &Server) -> Raw {
    let mut raw = server.raw();
    raw.send(CONNECT);
    // The first PONG is followed by the connect_info INFO for protocol 1.
    raw.send(b"PING\r\n");
    assert_eq!(raw.read_line(), "PONG\r\n");
    let info = raw.read_line();
    assert!(info.contains("\"connect_info\":true"), "{info}");
    raw
}

/// Sends `input` and expects exactly `expected`, then a close (or not).
fn check(server: &Server, input: &[u8], expected: &str, closes: bool) {
    let mut raw = connected(server);
    raw.send(input);
    let (got, closed) = raw.read_until_closed(Duration::from_millis(700));
    assert_eq!(
        got,
        expected,
        "answer to {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        closed,
        closes,
        "closed after {:?}",
        String::from_utf8_lossy(input)
    );
}

/// The server is still healthy: a fresh client can subscribe and get a message.
fn healthy(server: &Server) {
    let mut a = connected(server);
    let mut b = connected(server);
    a.send(b"SUB health 1\r\n");
    a.flush();
    // Interest propagates to b's shard in order with a's probe subscription.
    for _ in 0..200 {
        a.send(b"SUB probe 2\r\n");
        a.flush();
        b.send(b"PUB probe 0\r\n\r\nPING\r\n");
        assert_eq!(b.read_line(), "PONG\r\n");
        a.stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 64];
        if matches!(std::io::Read::read(&mut a.stream, &mut buf), Ok(n) if n > 0) {
            break;
        }
    }
    a.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    a.send(b"UNSUB 2\r\n");
    a.flush();
    b.send(b"PUB health 2\r\nok\r\n");
    b.flush();
    assert_eq!(a.read_line(), "MSG health 1 2\r\n");
    assert_eq!(a.read_line(), "ok\r\n");
}

#[test]
fn info_has_the_fields_clients_need() {
    let server = Server::start(2);
    let raw = server.raw();
    assert!(
        raw.info.starts_with("INFO {\"server_id\":\"N"),
        "{}",
        raw.info
    );
    assert!(raw.info.ends_with("} \r\n"), "{:?}", raw.info);
    let json: serde_json::Value = serde_json::from_str(&raw.info[5..raw.info.len() - 3]).unwrap();
    assert_eq!(json["proto"], 1);
    assert_eq!(json["headers"], true);
    assert_eq!(json["max_payload"], 1_048_576);
    assert_eq!(json["port"], server.port);
    assert_eq!(json["client_ip"], "127.0.0.1");
    assert!(json["client_id"].as_u64().unwrap() > 0);
    assert_eq!(json["server_id"].as_str().unwrap().len(), 56);
    let version = json["version"].as_str().unwrap();
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(version.starts_with("2.") && minor >= 10, "{version}");
}

#[test]
fn verbose_acks_every_op_and_pub_ack_precedes_its_delivery() {
    let server = Server::start(1);
    let mut raw = server.raw();
    raw.send(b"CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nUNSUB 99\r\nPING\r\n");
    let (got, _) = raw.read_until_closed(Duration::from_millis(500));
    assert_eq!(
        got,
        "+OK\r\n+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n+OK\r\n+OK\r\nPONG\r\n"
    );
}

#[test]
fn ops_before_connect_use_nats_defaults() {
    let server = Server::start(1);
    let mut raw = server.raw();
    raw.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n");
    let (got, closed) = raw.read_until_closed(Duration::from_millis(500));
    assert_eq!(got, "+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n");
    assert!(!closed);
}

#[test]
fn pedantic_reports_bad_publish_subjects_and_still_routes() {
    let server = Server::start(1);
    let mut raw = server.raw();
    raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB > 1\r\nPUB foo.* 2\r\nhi\r\nPING\r\n");
    let (got, closed) = raw.read_until_closed(Duration::from_millis(500));
    assert_eq!(
        got,
        "-ERR 'Invalid Publish Subject'\r\nMSG foo.* 1 2\r\nhi\r\nPONG\r\n"
    );
    assert!(!closed);
}

#[test]
fn subjects_with_empty_tokens_are_dropped_without_pedantic() {
    let server = Server::start(1);
    check(
        &server,
        b"SUB > 1\r\nPUB foo..bar 2\r\nhi\r\nPUB .foo 2\r\nhi\r\nPUB foo.* 2\r\nhi\r\nPING\r\n",
        "MSG foo.* 1 2\r\nhi\r\nPONG\r\n",
        false,
    );
}

#[test]
fn framing_errors_get_err_and_close() {
    let server = Server::start(2);
    let unknown = "-ERR 'Unknown Protocol Operation'\r\n";
    check(&server, b"FOO bar\r\n", unknown, true);
    check(&server, b"\x00\x01\x02hello\r\n", unknown, true);
    check(&server, b"\r\n", unknown, true);
    check(&server, b"UNSUB\r\n", unknown, true);
    check(&server, b"MSG foo 1 2\r\nhi\r\n", unknown, true);
    check(
        &server,
        b"SUB foo 1\r\nPUB foo 5\r\nhelloXX\r\n",
        unknown,
        true,
    );
    check(
        &server,
        b"SUB foo 1\r\nPUB foo 2\r\nhi\nPING\r\n",
        unknown,
        true,
    );
    let mut long = b"PUB ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    check(
        &server,
        &long,
        "-ERR 'maximum control line exceeded'\r\n",
        true,
    );
    long.extend_from_slice(b" 2\r\nhi\r\n");
    check(
        &server,
        &long,
        "-ERR 'maximum control line exceeded'\r\n",
        true,
    );
    check(
        &server,
        b"PUB foo 2000000\r\n",
        "-ERR 'Maximum Payload Violation'\r\n",
        true,
    );
    check(
        &server,
        b"HPUB foo 12 1048577\r\n",
        "-ERR 'Maximum Payload Violation'\r\n",
        true,
    );
    healthy(&server);
}

#[test]
fn argument_errors_close_silently() {
    let server = Server::start(2);
    for input in [
        &b"PUB foo -1\r\n"[..],
        b"PUB foo abc\r\n",
        b"PUB foo\r\n",
        b"PUB foo a b 2\r\nhi\r\n",
        b"PUB foo 99999999999999999999\r\n",
        b"HPUB foo 14 12\r\n",
        b"SUB foo\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB 1 2 3\r\n",
        b"CONNECT {bad json\r\n",
        b"-ERR 'oops'\r\n",
    ] {
        check(&server, input, "", true);
    }
    healthy(&server);
}

#[test]
fn invalid_subscriptions_get_err_and_stay_open() {
    let server = Server::start(2);
    for subject in ["foo..bar", "foo.>.bar", ".foo", "foo."] {
        let input = format!("SUB {subject} 1\r\nPING\r\n");
        check(
            &server,
            input.as_bytes(),
            "-ERR 'Invalid Subject'\r\nPONG\r\n",
            false,
        );
    }
    check(
        &server,
        b"SUB fo*o 1\r\nSUB foo> 2\r\nSUB q.* q..x 3\r\nPUB fo*o 2\r\nhi\r\nPING\r\n",
        "MSG fo*o 1 2\r\nhi\r\nPONG\r\n",
        false,
    );
}

#[test]
fn ping_and_pong_ignore_trailing_text() {
    let server = Server::start(1);
    check(
        &server,
        b"PINGX\r\nPING foo\r\nping\r\nPONG\r\n",
        "PONG\r\nPONG\r\nPONG\r\n",
        false,
    );
}

#[test]
fn sids_are_opaque_and_reuse_is_ignored() {
    let server = Server::start(1);
    check(
        &server,
        b"SUB foo abc\r\nSUB bar abc\r\nPUB foo 2\r\nhi\r\nPUB bar 2\r\nhi\r\nPING\r\n",
        "MSG foo abc 2\r\nhi\r\nPONG\r\n",
        false,
    );
}

#[test]
fn unsub_max_semantics() {
    let server = Server::start(1);
    check(
        &server,
        b"SUB foo 1\r\nUNSUB 1 2\r\nPUB foo 2\r\nm1\r\nPUB foo 2\r\nm2\r\nPUB foo 2\r\nm3\r\nPING\r\n",
        "MSG foo 1 2\r\nm1\r\nMSG foo 1 2\r\nm2\r\nPONG\r\n",
        false,
    );
    for max in ["0", "-1", "abc"] {
        let input = format!("SUB foo 1\r\nUNSUB 1 {max}\r\nPUB foo 2\r\nhi\r\nPING\r\n");
        check(&server, input.as_bytes(), "PONG\r\n", false);
    }
    check(
        &server,
        b"SUB foo 1\r\nPUB foo 2\r\nm1\r\nPUB foo 2\r\nm2\r\nUNSUB 1 1\r\nPUB foo 2\r\nm3\r\nPING\r\n",
        "MSG foo 1 2\r\nm1\r\nMSG foo 1 2\r\nm2\r\nPONG\r\n",
        false,
    );
}

#[test]
fn no_responders_status_matches_nats_server_bytes() {
    let server = Server::start(2);
    check(
        &server,
        b"SUB _INBOX.x 1\r\nPUB nobody _INBOX.x 2\r\nhi\r\n",
        "HMSG _INBOX.x 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n",
        false,
    );
    // The publisher's own subscription answers when echo is on.
    check(
        &server,
        b"SUB nobody 2\r\nSUB _INBOX.x 1\r\nPUB nobody _INBOX.x 2\r\nhi\r\nPING\r\n",
        "MSG nobody 2 _INBOX.x 2\r\nhi\r\nPONG\r\n",
        false,
    );
    let mut raw = server.raw();
    raw.send(b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n");
    let (got, closed) = raw.read_until_closed(Duration::from_millis(500));
    assert_eq!(got, "-ERR 'no responders requires headers support'\r\n");
    assert!(closed);
}

#[test]
fn headers_are_relayed_verbatim_and_stripped_for_clients_without_them() {
    let server = Server::start(1);
    check(
        &server,
        b"SUB foo 9\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
        "HMSG foo 9 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n",
        false,
    );
    check(
        &server,
        b"SUB foo 9\r\nHPUB foo r 12 12\r\nXXXX/1.0\r\n\r\n\r\nPING\r\n",
        "HMSG foo 9 r 12 12\r\nXXXX/1.0\r\n\r\n\r\nPONG\r\n",
        false,
    );
    check(
        &server,
        b"SUB foo 9\r\nHPUB foo 0 2\r\nhi\r\nPING\r\n",
        "MSG foo 9 2\r\nhi\r\nPONG\r\n",
        false,
    );
    let mut plain = server.raw();
    plain.send(b"CONNECT {\"verbose\":false,\"headers\":false}\r\nSUB foo 1\r\n");
    plain.flush();
    let mut sender = connected(&server);
    sender.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    sender.flush();
    assert_eq!(plain.read_line(), "MSG foo 1 2\r\n");
    assert_eq!(plain.read_line(), "hi\r\n");
    // HPUB from a client that did not announce headers: silent close.
    plain.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    let (got, closed) = plain.read_until_closed(Duration::from_millis(500));
    assert_eq!(got, "");
    assert!(closed);
}

#[test]
fn unsupported_protocol_version_is_refused() {
    let server = Server::start(1);
    let mut raw = server.raw();
    raw.send(b"CONNECT {\"verbose\":false,\"protocol\":2}\r\n");
    let (got, closed) = raw.read_until_closed(Duration::from_millis(500));
    assert_eq!(got, "-ERR 'invalid client protocol'\r\n");
    assert!(closed);
}

#[test]
fn half_a_message_then_disconnect_delivers_nothing() {
    let server = Server::start(2);
    let mut watcher = connected(&server);
    watcher.send(b"SUB half 1\r\n");
    watcher.flush();
    let mut raw = connected(&server);
    raw.send(b"PUB half 5\r\nhel");
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    let got = watcher.flush();
    assert_eq!(got, "", "a partial message must not be delivered");
    healthy(&server);
}

#[test]
fn split_writes_reassemble() {
    let server = Server::start(1);
    let mut raw = connected(&server);
    raw.send(b"SUB foo 1\r\nPUB foo 5\r\nhel");
    std::thread::sleep(Duration::from_millis(100));
    raw.send(b"lo\r\nPI");
    std::thread::sleep(Duration::from_millis(100));
    raw.send(b"NG\r\n");
    assert_eq!(raw.read_line(), "MSG foo 1 5\r\n");
    assert_eq!(raw.read_line(), "hello\r\n");
    assert_eq!(raw.read_line(), "PONG\r\n");
}

#[test]
fn client_that_never_reads_is_cut_as_slow_consumer_and_others_are_untouched() {
    let server = Server::start_with(2, &["--max_pending", "1048576", "-D"]);
    let mut slow = connected(&server);
    slow.send(b"SUB firehose 1\r\n");
    slow.flush();
    let mut good = connected(&server);
    good.send(b"SUB firehose 1\r\n");
    good.flush();
    let mut publisher = connected(&server);
    // Interest of both subscribers reaches the publisher's shard.
    std::thread::sleep(Duration::from_millis(100));
    let payload = vec![b'x'; 8192];
    let mut frame = b"PUB firehose 8192\r\n".to_vec();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    let reader = std::thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 65536];
        good.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while total < 2000 * (8192 + 23) {
            match std::io::Read::read(&mut good.stream, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    for _ in 0..2000 {
        publisher.send(&frame);
    }
    publisher.flush();
    let received = reader.join().unwrap();
    assert!(
        received >= 2000 * (8192 + 23),
        "the fast reader got everything: {received}"
    );
    assert!(server
        .wait_log("Slow Consumer Detected", Duration::from_secs(10))
        .is_some());
    let (_, closed) = slow.read_until_closed(Duration::from_secs(5));
    assert!(closed, "the slow consumer was disconnected");
    healthy(&server);
}

#[test]
fn stale_connection_is_closed_after_unanswered_pings() {
    let server = Server::start_with(1, &["--ping_interval", "200ms", "--ping_max", "2"]);
    let mut raw = server.raw();
    raw.send(b"CONNECT {\"verbose\":false}\r\n");
    let (got, closed) = raw.read_until_closed(Duration::from_secs(3));
    assert_eq!(got, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
    assert!(closed);
    // A client that answers stays connected.
    let mut live = server.raw();
    live.send(b"CONNECT {\"verbose\":false}\r\n");
    for _ in 0..4 {
        assert_eq!(live.read_line(), "PING\r\n");
        live.send(b"PONG\r\n");
    }
}

/// A publisher's PING means what it means on nats-server: once its PONG is
/// read, everything it published is queued to every matching subscriber, on
/// every shard. A subscriber that unsubscribes right after must still get all
/// of it (nats.js's drain after another connection's flush). Before the fix,
/// the UNSUB could overtake the batch still on its way between shards.
#[test]
fn flush_after_publishes_means_they_reached_subscribers_on_every_shard() {
    const MSGS: usize = 200;
    let nats_dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<(String, Server)> = common::SHARD_COUNTS
        .iter()
        .map(|&n| (format!("jetcore, {n} shards"), Server::start(n)))
        .collect();
    if common::reference_server().is_some() || jetcore::bench::compare::find_nats_server().is_some()
    {
        servers.push((
            "nats-server".into(),
            Server::start_nats(nats_dir.path(), &[]),
        ));
    }
    for (name, server) in &servers {
        for round in 0..20 {
            let mut sub = server.raw_on(0);
            sub.send(CONNECT);
            sub.send(b"SUB flush.t 1\r\n");
            sub.flush();
            let mut publisher = server.raw_on(server.shards - 1);
            publisher.send(CONNECT);
            let mut batch = Vec::new();
            for i in 0..MSGS {
                batch.extend_from_slice(format!("PUB flush.t 3\r\n{:03}\r\n", i % 1000).as_bytes());
            }
            publisher.send(&batch);
            publisher.flush();
            sub.send(b"UNSUB 1\r\n");
            let got = sub.flush();
            let msgs = got.matches("MSG flush.t 1 3\r\n").count();
            assert_eq!(msgs, MSGS, "{name}, round {round}: got {msgs} of {MSGS}");
        }
    }
}
