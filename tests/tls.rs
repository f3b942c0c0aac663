//! TLS for clients (rustls): async-nats over TLS, mutual TLS, handshake_first,
//! and bad input on the TLS port, next to nats-server 2.15 where the wire
//! behaviour is compared.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pki::pki;
use common::Server;
use futures::StreamExt;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Server flags for TLS with `p`'s certificate, then `more`.
fn tls_args<'a>(p: &'a common::pki::Pki, more: &[&'a str]) -> Vec<&'a str> {
    [
        &["--tls", "--tlscert", s(&p.cert), "--tlskey", s(&p.key)],
        more,
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_publish_subscribe_and_use_jetstream_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "a");
    let store = dir.path().join("js");
    let server = Server::start_js(2, &store, &tls_args(&p, &["-m", "-1"]));
    let connect = || {
        async_nats::ConnectOptions::new()
            .add_root_certificates(p.ca.clone())
            .require_tls(true)
            .connect(format!("tls://localhost:{}", server.port))
    };
    let sub_client = connect().await.unwrap();
    let pub_client = connect().await.unwrap();
    assert!(sub_client.server_info().tls_required);
    let mut sub = sub_client.subscribe("t.>").await.unwrap();
    common::sync_interest(&sub_client, &pub_client).await;
    // Small and large messages, across shards, through the TLS records.
    let big = vec![b'z'; 900 * 1024];
    for i in 0..100 {
        pub_client
            .publish(format!("t.{i}"), format!("m{i}").into())
            .await
            .unwrap();
    }
    pub_client
        .publish("t.big", big.clone().into())
        .await
        .unwrap();
    pub_client.flush().await.unwrap();
    for i in 0..100 {
        let m = sub.next().await.unwrap();
        assert_eq!(m.payload.as_ref(), format!("m{i}").as_bytes());
    }
    assert_eq!(sub.next().await.unwrap().payload.len(), big.len());
    let js = async_nats::jetstream::new(pub_client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "T".into(),
        subjects: vec!["js.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = js.publish("js.1", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 1);
    // Monitoring shows each connection's TLS version and cipher suite.
    let port = common::monitor::monitor_port(&server);
    let connz = tokio::task::spawn_blocking(move || common::monitor::get(port, "/connz"))
        .await
        .unwrap();
    let first = &connz["connections"][0];
    assert_eq!(first["tls_version"], "1.3", "{connz}");
    let suite = first["tls_cipher_suite"].as_str().unwrap();
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&suite),
        "{suite}"
    );
}

/// What a server sends a raw client that does `send`, then waits: the bytes
/// after INFO, and whether it closed.
fn raw_after_info(port: u16, send: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    let mut info = Vec::new();
    while !info.ends_with(b"\r\n") {
        c.read_exact(&mut b).unwrap();
        info.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&info).contains("\"tls_required\":true"));
    c.write_all(send).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (got, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_garbage_and_stalled_handshakes_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "b");
    let conf = dir.path().join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", timeout: 1 }}\n",
            s(&p.cert),
            s(&p.key)
        ),
    )
    .unwrap();
    let ours = Server::start_with(2, &["-c", s(&conf)]);
    let theirs = Server::start_nats(&dir.path().join("ns"), &["-c", s(&conf)]);
    // A client connected over TLS before, and still fine after.
    let good = async_nats::ConnectOptions::new()
        .add_root_certificates(p.ca.clone())
        .require_tls(true)
        .connect(format!("tls://localhost:{}", ours.port))
        .await
        .unwrap();
    for port in [ours.port, theirs.port] {
        // Plaintext where TLS is required: closed, nothing said.
        let (got, closed) = raw_after_info(
            port,
            b"CONNECT {\"verbose\":false}\r\nPING\r\n",
            Duration::from_secs(3),
        );
        assert!(closed && !got.starts_with(b"PONG"), "{port}: {got:?}");
        // A handshake record header followed by garbage: closed.
        let (_, closed) = raw_after_info(
            port,
            b"\x16\x03\x01\x00\x05hello-this-is-not-tls",
            Duration::from_secs(3),
        );
        assert!(closed, "{port}");
        // A truncated handshake that never finishes: closed by the timeout.
        let t0 = Instant::now();
        let (_, closed) = raw_after_info(port, b"\x16\x03\x01\x02\x00\x01", Duration::from_secs(5));
        assert!(closed, "{port}");
        assert!(t0.elapsed() >= Duration::from_millis(900), "{port}");
    }
    good.flush().await.unwrap();
    let mut sub = good.subscribe("still").await.unwrap();
    good.publish("still", "here".into()).await.unwrap();
    assert_eq!(sub.next().await.unwrap().payload.as_ref(), b"here");
    // The refusals were logged as TLS handshake errors.
    let log: Vec<String> = ours.log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("TLS handshake error")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_takes_only_certificates_from_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "c");
    let other = pki(dir.path(), "other");
    let server = Server::start_with(
        2,
        &[
            "--tlscert",
            s(&p.cert),
            "--tlskey",
            s(&p.key),
            "--tlscacert",
            s(&p.ca),
            "--tlsverify",
        ],
    );
    let url = format!("tls://localhost:{}", server.port);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(p.ca.clone())
        .require_tls(true)
        .add_client_certificate(p.client_cert.clone(), p.client_key.clone())
        .connect(&url)
        .await
        .unwrap();
    assert!(client.server_info().tls_required);
    client.flush().await.unwrap();
    let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut info = [0u8; 1024];
    let n = raw.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]);
    assert!(
        info.contains("\"tls_required\":true,\"tls_verify\":true,"),
        "{info}"
    );
    // Refused: connecting fails, or the first round trip does.
    let refused = |opts: async_nats::ConnectOptions| {
        let url = url.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(5), opts.connect(&url)).await {
                Err(_) | Ok(Err(_)) => true,
                Ok(Ok(c)) => tokio::time::timeout(Duration::from_secs(3), c.flush())
                    .await
                    .map_or(true, |r| r.is_err()),
            }
        }
    };
    let plain = || {
        async_nats::ConnectOptions::new()
            .add_root_certificates(p.ca.clone())
            .require_tls(true)
    };
    assert!(refused(plain()).await, "no client certificate accepted");
    let wrong = plain().add_client_certificate(other.client_cert.clone(), other.client_key.clone());
    assert!(
        refused(wrong).await,
        "a certificate from another CA was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_starts_tls_before_info() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "d");
    let conf = dir.path().join("first.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", handshake_first: true }}\n",
            s(&p.cert),
            s(&p.key)
        ),
    )
    .unwrap();
    let server = Server::start_with(1, &["-c", s(&conf)]);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(p.ca.clone())
        .tls_first()
        .connect(format!("tls://localhost:{}", server.port))
        .await
        .unwrap();
    let mut sub = client.subscribe("f").await.unwrap();
    client.publish("f", "first".into()).await.unwrap();
    assert_eq!(sub.next().await.unwrap().payload.as_ref(), b"first");
    // A plaintext client sees no INFO: the server waits for a ClientHello.
    let mut c = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        !matches!(c.read(&mut buf), Ok(n) if n > 0),
        "INFO sent in plaintext"
    );
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_start() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--tls"]).contains("TLS needs a certificate and a key"));
    let e = run(&[
        "--tlscert",
        "/nonexistent.pem",
        "--tlskey",
        "/nonexistent.pem",
    ]);
    assert!(e.contains("TLS certificate /nonexistent.pem"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "e");
    let conf = dir.path().join("bad.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  pinned_certs: [\"ab\"]\n}}\n",
            s(&p.cert),
            s(&p.key)
        ),
    )
    .unwrap();
    let e = run(&["-c", s(&conf), "-t"]);
    assert!(
        e.contains("bad.conf:4: configuration key 'tls.pinned_certs' is not supported yet"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_map_takes_the_user_from_the_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    // Settings checked with -t: (tls block extra, expected text in the answer).
    {
        let dir = tempfile::tempdir().unwrap();
        let p = pki(dir.path(), "f");
        let conf = dir.path().join("check.conf");
        let check = |extra: &str| {
            let text = format!(
                "tls {{ cert_file: \"{}\", key_file: \"{}\", {extra} }}\n",
                s(&p.cert),
                s(&p.key)
            );
            std::fs::write(&conf, text).unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
                .args(["-c", s(&conf), "-t"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            (out.status.code(), text)
        };
        // Without a CA there is nothing to verify against.
        let (code, text) = check("verify_and_map: true");
        assert!(
            code == Some(1) && text.contains("tls verify needs ca_file"),
            "{text}"
        );
        // A cipher suite rustls does not have is refused, not dropped.
        let (code, text) = check("cipher_suites: [\"TLS_RSA_WITH_RC4_128_SHA\"]");
        assert!(code == Some(1) && text.contains("'TLS_RSA_WITH_RC4_128_SHA' is not supported"));
        let (code, text) = check(
            "cipher_suites: [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\"]",
        );
        assert_eq!(code, Some(0), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = write("ca.pem", ca.pem());
    let cert = write("cert.pem", server.pem());
    let key = write("key.pem", server_key.serialize_pem());
    // Client certificates: one named by its subject, one by its e-mail, one
    // for nobody configured.
    let client = |file: &str, cn: &str, email: Option<&str>| {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        if let Some(e) = email {
            p.subject_alt_names
                .push(SanType::Rfc822Name(e.try_into().unwrap()));
        }
        let c = p.signed_by(&k, &ca, &ca_key).unwrap();
        (
            write(&format!("{file}.pem"), c.pem()),
            write(&format!("{file}-key.pem"), k.serialize_pem()),
        )
    };
    let by_dn = client("dn", "svc", None);
    let by_mail = client("mail", "whoever", Some("alice@example.com"));
    let nobody = client("nobody", "nobody", None);
    let conf = write(
        "map.conf",
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify_and_map: true }}\n\
             authorization {{ users: [\n  {{ user: \"O=Acme,CN=svc\" }}\n  {{ user: \"alice@example.com\", permissions: {{ subscribe: \"alice.>\" }} }}\n] }}\n",
            s(&cert),
            s(&key),
            s(&ca_pem)
        ),
    );
    let server = Server::start_with(1, &["-c", s(&conf)]);
    let url = format!("tls://localhost:{}", server.port);
    let with = |(c, k): &(PathBuf, PathBuf)| {
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca_pem.clone())
            .require_tls(true)
            .add_client_certificate(c.clone(), k.clone())
    };
    // The subject, its parts in another order than the user name's.
    let svc = with(&by_dn).connect(&url).await.unwrap();
    svc.flush().await.unwrap();
    // The e-mail address; and that user's permissions apply.
    let alice = with(&by_mail).connect(&url).await.unwrap();
    let mut ok = alice.subscribe("alice.x").await.unwrap();
    alice.publish("alice.x", "hi".into()).await.unwrap();
    assert_eq!(ok.next().await.unwrap().payload.as_ref(), b"hi");
    let mut raw_log: Vec<String> = Vec::new();
    // A certificate for no configured user: refused.
    let refused =
        match tokio::time::timeout(Duration::from_secs(5), with(&nobody).connect(&url)).await {
            Err(_) | Ok(Err(_)) => true,
            Ok(Ok(c)) => tokio::time::timeout(Duration::from_secs(3), c.flush())
                .await
                .map_or(true, |r| r.is_err()),
        };
    raw_log.extend(server.log.try_iter());
    assert!(refused, "{raw_log:?}");
}

#[test]
fn monitoring_over_https_uses_the_client_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "h");
    let server = Server::start_with(
        1,
        &["--tlscert", s(&p.cert), "--tlskey", s(&p.key), "-ms", "-1"],
    );
    let port: u16 = server
        .startup_log
        .iter()
        .find_map(|l| l.split("Starting https monitor on ").nth(1))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .expect("https monitor announced");
    // A client that verifies the certificate against the CA.
    let script = format!(
        "import json,ssl,urllib.request\n\
         ctx=ssl.create_default_context(cafile='{}')\n\
         v=json.load(urllib.request.urlopen('https://localhost:{port}/varz',context=ctx))\n\
         print(v['https_port'], v['http_port'])",
        s(&p.ca)
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("{port} 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the HTTPS port gets nothing.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /varz HTTP/1.1\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 64];
    assert!(!matches!(c.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP")));
    // Both ports, or HTTPS without TLS: refused at start.
    for args in [&["-m", "8222", "-ms", "8223"][..], &["-ms", "8223"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

/// A TLS client moves to the shard it talks to (issue 13) with its session:
/// requests and replies, small and large, go on through the same TLS
/// connection after the move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_requester_moves_to_its_responder_with_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "a");
    let server = Server::start_with(2, &tls_args(&p, &["-D"]));
    let on = |shard: usize| {
        let (ca, port) = (p.ca.clone(), server.port);
        async move {
            for _ in 0..200 {
                let c = async_nats::ConnectOptions::new()
                    .add_root_certificates(ca.clone())
                    .require_tls(true)
                    .connect(format!("tls://localhost:{port}"))
                    .await
                    .unwrap();
                if c.server_info().client_id as usize % 2 == shard {
                    return c;
                }
            }
            panic!("no TLS connection landed on shard {shard}");
        }
    };
    let responder = on(0).await;
    let mut requests = responder.subscribe("svc").await.unwrap();
    let requester = on(1).await;
    common::sync_interest(&responder, &requester).await;
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let reply = m.reply.expect("a request");
            responder.publish(reply, m.payload).await.unwrap();
        }
    });
    let cid = requester.server_info().client_id;
    for i in 0..600usize {
        // Now and then a body of several TLS records.
        let body = if i % 50 == 7 {
            vec![b'x'; 100_000 + i]
        } else {
            i.to_string().into_bytes()
        };
        let r = requester.request("svc", body.clone().into()).await.unwrap();
        assert_eq!(r.payload.as_ref(), &body[..], "request {i}");
    }
    let line = server.wait_log(
        &format!("cid:{cid} - moved to shard 0"),
        Duration::from_secs(5),
    );
    assert!(line.is_some(), "the TLS requester (cid {cid}) moved");
}
