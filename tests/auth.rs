//! Authentication and permissions: the same configuration and the same bytes
//! sent to jetcore and to nats-server 2.15 must get the same answers (INFO
//! lines aside) and the same closes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// Everything a server sends for `steps` (each sent after the previous
/// answer went quiet), without INFO lines; "<closed>" when it hung up.
fn session(port: u16, steps: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 65536];
    let mut read_quiet = |s: &mut TcpStream, out: &mut String, quiet: Duration| -> bool {
        s.set_read_timeout(Some(quiet)).unwrap();
        loop {
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => return true,
            }
        }
    };
    let mut open = read_quiet(&mut s, &mut out, Duration::from_millis(150));
    for step in steps {
        if !open {
            break;
        }
        if s.write_all(step).is_err() {
            break;
        }
        open = read_quiet(&mut s, &mut out, Duration::from_millis(250));
    }
    let mut text: String = out
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("INFO "))
        .collect();
    if !open {
        text.push_str("<closed>");
    }
    text
}

/// The INFO nonce a server sends, and a connection waiting after it.
fn nonce_of(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = Vec::new();
    let mut b = [0u8; 1];
    while !info.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        info.push(b[0]);
    }
    let text = String::from_utf8(info).unwrap();
    let v: serde_json::Value = serde_json::from_str(text[5..].trim()).unwrap();
    (s, v["nonce"].as_str().expect("a nonce in INFO").to_string())
}

/// Starts jetcore and nats-server with the same configuration.
fn both(conf: &str) -> (Server, Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.conf");
    std::fs::write(&path, conf).unwrap();
    let p = path.to_str().unwrap().to_string();
    let ours = Server::start_with(2, &["-c", &p]);
    let theirs = Server::start_nats(&dir.path().join("ns"), &["-c", &p]);
    (ours, theirs, dir)
}

fn same(ours: &Server, theirs: &Server, name: &str, steps: &[&[u8]]) -> String {
    let a = session(ours.port, steps);
    let b = session(theirs.port, steps);
    assert_eq!(a, b, "{name}: jetcore then nats-server");
    a
}

const USERS: &str = r#"
authorization {
  users: [
    { user: a, password: b, permissions: {
        publish: { allow: ["ok.>", "_INBOX.>"], deny: "ok.secret" }
        subscribe: { allow: ["ok.>", "_INBOX.>", "q.x g1"], deny: "ok.secret" }
    } }
    { user: admin, password: "BCRYPT" }
    { user: r, password: r, permissions: { subscribe: "svc", allow_responses: true } }
  ]
}
"#;

#[test]
fn users_passwords_and_permissions_answer_as_nats_server() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let (ours, theirs, _dir) = both(&USERS.replace("BCRYPT", &hash));
    let cases: &[(&str, &[&[u8]])] = &[
        (
            "wrong password",
            &[b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"x\"}\r\nPING\r\n"],
        ),
        (
            "unknown user",
            &[b"CONNECT {\"verbose\":false,\"user\":\"zz\",\"pass\":\"b\"}\r\nPING\r\n"],
        ),
        (
            "no credentials",
            &[b"CONNECT {\"verbose\":false}\r\nPING\r\n"],
        ),
        ("publish before CONNECT", &[b"PUB ok.x 2\r\nhi\r\n"]),
        ("ping before CONNECT", &[b"PING\r\n"]),
        (
            "bcrypt password",
            &[b"CONNECT {\"verbose\":false,\"user\":\"admin\",\"pass\":\"s3cret\"}\r\nPING\r\n"],
        ),
        (
            "bcrypt hash as password",
            &[format!(
                "CONNECT {{\"verbose\":false,\"user\":\"admin\",\"pass\":\"{hash}\"}}\r\nPING\r\n"
            )
            .leak()
            .as_bytes()],
        ),
        (
            "allowed and denied, verbose",
            &[
                b"CONNECT {\"verbose\":true,\"user\":\"a\",\"pass\":\"b\"}\r\nPING\r\n",
                b"SUB ok.x 1\r\nSUB other 2\r\nSUB ok.secret 3\r\nSUB > 4\r\nPING\r\n",
                b"SUB q.x g1 5\r\nSUB q.x g2 6\r\nSUB q.x 7\r\nPING\r\n",
                b"PUB ok.x 2\r\nhi\r\nPUB nope 2\r\nhi\r\nPUB ok.secret 2\r\nhi\r\nPING\r\n",
                b"PUB $JS.API.STREAM.CREATE.X _INBOX.1 2\r\n{}\r\nPING\r\n",
            ],
        ),
    ];
    for (name, steps) in cases {
        same(&ours, &theirs, name, steps);
    }
    // Two users at once: what `a` receives and may answer, with admin sending.
    for server in [&ours, &theirs] {
        let port = server.port;
        let admin = b"CONNECT {\"verbose\":false,\"user\":\"admin\",\"pass\":\"s3cret\"}\r\n";
        let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
        a.write_all(
            b"CONNECT {\"verbose\":false,\"user\":\"r\",\"pass\":\"r\"}\r\nSUB svc 1\r\nPING\r\n",
        )
        .unwrap();
        let mut w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.write_all(
            b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"b\"}\r\nSUB ok.* 1\r\nPING\r\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut steps: Vec<Vec<u8>> = vec![admin.to_vec()];
        steps.push(b"SUB reply.1 9\r\nPUB svc reply.1 1\r\nq\r\nPUB ok.secret 2\r\nno\r\nPUB ok.fine 3\r\nyes\r\nPING\r\n".to_vec());
        let steps: Vec<&[u8]> = steps.iter().map(|v| v.as_slice()).collect();
        // r answers the request twice: the first gets through.
        let answer = std::thread::spawn(move || {
            a.set_read_timeout(Some(Duration::from_millis(800)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let mut answered = false;
            while let Ok(n) = a.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if !answered && got.windows(3).any(|w| w == b"q\r\n") {
                    answered = true;
                    a.write_all(b"PUB reply.1 2\r\na1\r\nPUB reply.1 2\r\na2\r\nPING\r\n")
                        .unwrap();
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        let admin_saw = session(port, &steps);
        let r_saw = answer.join().unwrap();
        w.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut w_saw = String::new();
        while let Ok(n) = w.read(&mut buf) {
            if n == 0 {
                break;
            }
            w_saw.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // The wildcard inside a deny misses ok.secret, gets ok.fine.
        assert!(w_saw.contains("MSG ok.fine 1 3\r\nyes"), "{port}: {w_saw}");
        assert!(!w_saw.contains("ok.secret"), "{port}: {w_saw}");
        // r received the request and answered once; the second answer is refused.
        assert!(
            r_saw.contains("MSG svc 1 reply.1 1\r\nq"),
            "{port}: {r_saw}"
        );
        assert!(
            r_saw.contains("-ERR 'Permissions Violation for Publish to \"reply.1\"'"),
            "{port}: {r_saw}"
        );
        assert_eq!(
            admin_saw.matches("MSG reply.1 9").count(),
            1,
            "{port}: {admin_saw} / {r_saw}"
        );
    }
    // The texts themselves, so that a change on both sides is seen.
    let t = session(
        ours.port,
        &[b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"x\"}\r\n"],
    );
    assert_eq!(t, "-ERR 'Authorization Violation'\r\n<closed>");
    let t = session(
        ours.port,
        &[b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"b\"}\r\nPUB nope 0\r\n\r\nPING\r\n"],
    );
    assert_eq!(
        t,
        "-ERR 'Permissions Violation for Publish to \"nope\"'\r\nPONG\r\n"
    );
    // The secret never reaches the log.
    let log: Vec<String> = ours.log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("authentication error")),
        "{log:?}"
    );
    assert!(!log
        .iter()
        .any(|l| l.contains("s3cret") || l.contains("\"x\"")));
}

#[test]
fn tokens_nkeys_no_auth_user_and_the_auth_timeout() {
    let (ours, theirs, _dir) = both("authorization { token: \"t0k3n\", timeout: 1 }\n");
    same(
        &ours,
        &theirs,
        "right token",
        &[b"CONNECT {\"verbose\":false,\"auth_token\":\"t0k3n\"}\r\nPING\r\n"],
    );
    same(
        &ours,
        &theirs,
        "wrong token",
        &[b"CONNECT {\"verbose\":false,\"auth_token\":\"nope\"}\r\nPING\r\n"],
    );
    // Nothing sent: refused after the timeout (1 s here).
    let t0 = Instant::now();
    let t = same(
        &ours,
        &theirs,
        "timeout",
        &[b"", b"", b"", b"", b"", b"", b""],
    );
    assert_eq!(t, "-ERR 'Authentication Timeout'\r\n<closed>");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    drop((ours, theirs));

    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{ users: [ {{ nkey: {} }}, {{ user: guest, password: g, permissions: {{ publish: \"guest.>\" }} }} ] }}\nno_auth_user: guest\n",
        user.public_key()
    );
    let (ours, theirs, _dir) = both(&conf);
    for server in [&ours, &theirs] {
        let (mut s, nonce) = nonce_of(server.port);
        let sig = user.sign(nonce.as_bytes()).unwrap();
        use base64::Engine;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\nPING\r\n",
            user.public_key()
        );
        s.write_all(connect.as_bytes()).unwrap();
        let mut got = [0u8; 6];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"PONG\r\n", "nkey accepted by {}", server.port);
        // A signature of something else is refused.
        let (mut s, _) = nonce_of(server.port);
        let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(user.sign(b"not the nonce").unwrap());
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{bad}\"}}\r\nPING\r\n",
            user.public_key()
        );
        s.write_all(connect.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert_eq!(text, "-ERR 'Authorization Violation'\r\n");
    }
    // No credentials: the no_auth_user, with its permissions.
    same(
        &ours,
        &theirs,
        "no_auth_user",
        &[b"CONNECT {\"verbose\":false}\r\nPUB guest.x 0\r\n\r\nPUB x 0\r\n\r\nPING\r\n"],
    );
    same(
        &ours,
        &theirs,
        "no_auth_user without CONNECT",
        &[b"PUB x 0\r\n\r\nPING\r\n"],
    );
}

#[test]
fn flags_set_a_user_or_a_token_and_bad_settings_are_refused() {
    let s = Server::start_with(1, &["--user", "u", "--pass", "p"]);
    assert_eq!(
        session(
            s.port,
            &[b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\nPING\r\n"]
        ),
        "PONG\r\n"
    );
    assert!(session(s.port, &[b"CONNECT {\"verbose\":false}\r\n"]).ends_with("<closed>"));
    let s = Server::start_with(1, &["--auth", "tok"]);
    assert_eq!(
        session(
            s.port,
            &[b"CONNECT {\"verbose\":false,\"auth_token\":\"tok\"}\r\nPING\r\n"]
        ),
        "PONG\r\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "authorization { users: [ {user: a, password: b} ] }\nno_auth_user: nobody\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(["-c", bad.to_str().unwrap(), "-t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no_auth_user: \"nobody\" not present"),
        "{err}"
    );
}

/// The INFO a client gets first, and the one after CONNECT (protocol 1) and
/// a PING, as JSON.
fn infos(port: u16, connect: &str) -> (serde_json::Value, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let line = |s: &mut TcpStream| {
        let mut l = Vec::new();
        let mut b = [0u8; 1];
        while !l.ends_with(b"\r\n") {
            s.read_exact(&mut b).unwrap();
            l.push(b[0]);
        }
        String::from_utf8(l).unwrap()
    };
    let json = |l: &str| serde_json::from_str::<serde_json::Value>(l[5..].trim()).unwrap();
    let first = json(&line(&mut s));
    s.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .unwrap();
    assert_eq!(line(&mut s), "PONG\r\n");
    let second = line(&mut s);
    (first, json(&second))
}

#[test]
fn info_says_what_authentication_needs() {
    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{ users: [ {{ nkey: {} }}, {{ user: guest, password: g }} ] }}\nno_auth_user: guest\n",
        user.public_key()
    );
    let (ours, theirs, _dir) = both(&conf);
    let connect = r#"{"verbose":false,"protocol":1}"#;
    let (a1, a2) = infos(ours.port, connect);
    let (b1, b2) = infos(theirs.port, connect);
    for (a, b, which) in [(&a1, &b1, "first"), (&a2, &b2, "after CONNECT")] {
        assert_eq!(
            a.get("auth_required"),
            b.get("auth_required"),
            "{which}: {a} / {b}"
        );
        assert_eq!(
            a.get("nonce").is_some(),
            b.get("nonce").is_some(),
            "{which}"
        );
        assert_eq!(a.get("connect_info"), b.get("connect_info"), "{which}");
    }
    // no_auth_user: the first INFO does not ask for credentials; the nonce
    // (NKey users exist) is 15 characters, and only in the first INFO.
    assert!(a1.get("auth_required").is_none());
    assert_eq!(a2["auth_required"], true);
    assert_eq!(a1["nonce"].as_str().unwrap().len(), 15);
    assert!(a2.get("nonce").is_none());
    // Without no_auth_user, credentials are asked for at once.
    let (ours, theirs, _dir) = both("authorization { token: t }\n");
    let (a1, _) = infos(
        ours.port,
        r#"{"verbose":false,"protocol":1,"auth_token":"t"}"#,
    );
    let (b1, _) = infos(
        theirs.port,
        r#"{"verbose":false,"protocol":1,"auth_token":"t"}"#,
    );
    assert_eq!(a1["auth_required"], true);
    assert_eq!(b1["auth_required"], true);
    assert!(a1.get("nonce").is_none() && b1.get("nonce").is_none());
}

#[test]
fn max_subscriptions_refuses_the_next_and_keeps_the_connection() {
    let (ours, theirs, _dir) = both("max_subscriptions: 2\n");
    let t = same(
        &ours,
        &theirs,
        "max_subscriptions",
        &[b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n"],
    );
    assert_eq!(t, "-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n");
}

#[test]
fn a_reload_applies_new_users_and_permissions_to_connected_clients() {
    let v1 = r#"authorization { users: [
  { user: a, password: a, permissions: { subscribe: ["foo", "bar"] } }
  { user: b, password: b }
  { user: c, password: c }
] }
"#;
    let v2 = r#"authorization { users: [
  { user: a, password: a, permissions: { subscribe: ["foo"] } }
  { user: c, password: changed }
] }
"#;
    let (ours, theirs, dir) = both(v1);
    let conf = dir.path().join("auth.conf");
    let mut results = Vec::new();
    for server in [&ours, &theirs] {
        std::fs::write(&conf, v1).unwrap();
        let login = |user: &str, extra: &str| {
            let mut c = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            let hello = format!(
                "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\n{extra}PING\r\n"
            );
            c.write_all(hello.as_bytes()).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = String::new();
            let mut buf = [0u8; 4096];
            while !seen.contains("PONG\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0);
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            c
        };
        let mut a = login("a", "SUB foo 1\r\nSUB bar 2\r\n");
        let mut b = login("b", "");
        let mut c = login("c", "");
        std::fs::write(&conf, v2).unwrap();
        let pid = server.pid().to_string();
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        let after = |s: &mut TcpStream| {
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return got + "<closed>",
                    Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(_) => return got,
                }
            }
        };
        let a_saw: String = after(&mut a)
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("PING") && !l.starts_with("INFO"))
            .collect();
        results.push((a_saw, after(&mut b), after(&mut c)));
    }
    assert_eq!(results[0], results[1], "jetcore then nats-server");
    let (a, b, c) = &results[0];
    assert_eq!(
        a,
        "-ERR 'Permissions Violation for Subscription to \"bar\" (sid \"2\")'\r\n"
    );
    assert_eq!(b, "<closed>", "a removed user is closed without a word");
    assert_eq!(c, "-ERR 'Authorization Violation'\r\n<closed>");
}

#[test]
fn connz_shows_the_authorized_user_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("u.conf");
    std::fs::write(
        &conf,
        "authorization { users: [ {user: ann, password: a}, {user: bob, password: b} ] }\n",
    )
    .unwrap();
    let server = Server::start_with(1, &["-c", conf.to_str().unwrap(), "-m", "-1"]);
    let port = common::monitor::monitor_port(&server);
    let mut clients = Vec::new();
    for (u, p) in [("ann", "a"), ("bob", "b")] {
        let mut c = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let hello =
            format!("CONNECT {{\"verbose\":false,\"user\":\"{u}\",\"pass\":\"{p}\"}}\r\nPING\r\n");
        c.write_all(hello.as_bytes()).unwrap();
        let mut buf = [0u8; 2048];
        let mut seen = String::new();
        while !seen.contains("PONG") {
            let n = c.read(&mut buf).unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        clients.push(c);
    }
    let plain = common::monitor::get(port, "/connz");
    assert!(plain["connections"][0].get("authorized_user").is_none());
    let with = common::monitor::get(port, "/connz?auth=true");
    let users: Vec<&str> = with["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["authorized_user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ann", "bob"]);
    let bob = common::monitor::get(port, "/connz?user=bob");
    assert_eq!(bob["num_connections"], 1);
}
