//! Starting and stopping the server the way users do: flags, signals, exit codes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

fn jetcore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(args)
        .output()
        .expect("run jetcore")
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let server = Server::start(2);
    let mut sub = server.raw();
    sub.send(b"CONNECT {\"verbose\":false}\r\nSUB x 1\r\n");
    sub.flush();
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
    let (_, closed) = sub.read_until_closed(Duration::from_secs(2));
    assert!(closed, "clients are disconnected on shutdown");
}

#[test]
fn startup_log_names_version_address_shards_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(["-a", "127.0.0.1", "-p", "-1", "--shards", "3", "-js", "-sd"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let mut rest = String::new();
    for _ in 0..3 {
        std::io::BufRead::read_line(&mut stderr, &mut rest).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("Starting jetcore version"), "{first}");
    assert!(first.contains("127.0.0.1:"), "{first}");
    assert!(first.contains("3 shard(s)"), "{first}");
    assert!(rest.contains("Starting JetStream"), "{rest}");
    assert!(
        rest.contains(&format!(
            "Store Directory: \"{}/jetstream\"",
            dir.path().display()
        )),
        "{rest}"
    );
    assert!(
        rest.contains("fdatasync before every acknowledgement"),
        "{rest}"
    );
}

#[test]
fn unsupported_nats_server_flags_are_refused_clearly() {
    for args in [
        &["--routes", "x"][..],
        &["--cluster_name", "c"],
        &["--profile", "6060"],
    ] {
        let out = jetcore(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not supported yet"), "{args:?}: {err}");
    }
    let out = jetcore(&["-js", "--sync", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sync"));
    let out = jetcore(&["--no-such-flag"]);
    assert_ne!(out.status.code(), Some(0));
    // A segment size an index entry's offset could not hold.
    for size in ["1024", "2147483648"] {
        let out = jetcore(&["-js", "--segment_bytes", size]);
        assert_eq!(out.status.code(), Some(1), "{size}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--segment_bytes must be between 4096 and 1073741824"),
            "{err}"
        );
    }
}

#[test]
fn a_config_file_sets_what_flags_do_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("jetcore.conf");
    let store = dir.path().join("store");
    let text = format!(
        "# nats-server's format\nlisten: 127.0.0.1:1\nserver_name = from_file\n\
         max_payload: 64KB\njetstream {{\n  store_dir: \"{}\"\n  domain: edge\n}}\n",
        store.display()
    );
    std::fs::write(&conf, text).unwrap();
    let conf = conf.to_str().unwrap();
    let out = jetcore(&["-c", conf, "-t"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("jetcore: configuration file {conf} is valid\n")
    );
    // The port on the command line overrides the file's.
    let server = Server::start_with(1, &["-c", conf]);
    let raw = server.raw();
    let info: serde_json::Value =
        serde_json::from_str(raw.info.trim_start_matches("INFO ").trim()).unwrap();
    assert_eq!(info["server_name"], "from_file");
    assert_eq!(info["max_payload"], 65536);
    assert_eq!(info["jetstream"], true);
    assert!(store.join("jetstream").is_dir());
    drop(server);
    // Keys it does not know or honour yet are named with file and line.
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "port: 4222\n\nwebsocket: {}\n").unwrap();
    let out = jetcore(&["-c", bad.to_str().unwrap(), "-t"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:3: configuration key 'websocket' is not supported yet"),
        "{err}"
    );
    std::fs::write(&bad, "port: 4222\nprot: 1\n").unwrap();
    let out = jetcore(&["-c", bad.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("bad.conf:2: unknown configuration key 'prot'"));
    let out = jetcore(&["-c", dir.path().join("missing.conf").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pid_and_log_files_and_a_reopen_on_sigusr1() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pid) = (dir.path().join("j.log"), dir.path().join("j.pid"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(["-a", "127.0.0.1", "-p", "-1", "-T=false", "-l"])
        .arg(&log)
        .arg("-P")
        .arg(&pid)
        .spawn()
        .unwrap();
    let id = child.id();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Server is ready")
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "no log file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&pid).unwrap(), id.to_string());
    let first = std::fs::read_to_string(&log).unwrap();
    // Without timestamps: `[pid] [INF] text`.
    assert!(
        first.starts_with(&format!("[{id}] [INF] Starting jetcore")),
        "{first}"
    );
    // Rotated away, then reopened: new lines go to a new file.
    std::fs::rename(&log, dir.path().join("j.log.1")).unwrap();
    let kill = |sig: &str| {
        Command::new("kill")
            .args([sig, &id.to_string()])
            .status()
            .unwrap();
    };
    kill("-USR1");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Reopened log file")
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill("-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!pid.exists(), "the pid file goes at exit");
}

#[test]
fn connection_and_control_line_limits_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("limits.conf");
    std::fs::write(
        &conf,
        "max_connections: 2\nmax_control_line: 64\nwrite_deadline: \"2s\"\n",
    )
    .unwrap();
    let server = Server::start_with(1, &["-c", conf.to_str().unwrap()]);
    let mut a = server.raw();
    let mut b = server.raw();
    a.flush();
    b.flush();
    // The third gets its INFO, then nats-server's refusal, and is closed.
    let mut c = server.raw();
    let (rest, closed) = c.read_until_closed(Duration::from_secs(5));
    assert_eq!(rest, "-ERR 'maximum connections exceeded'\r\n");
    assert!(closed);
    // A place frees up when a client leaves.
    drop(b);
    let t0 = std::time::Instant::now();
    let mut d = loop {
        let mut d = server.raw();
        d.send(b"PING\r\n");
        if d.read_line() == "PONG\r\n" {
            break d;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no place freed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let long = format!("SUB {} 1\r\n", "a".repeat(70));
    d.send(long.as_bytes());
    let (rest, closed) = d.read_until_closed(Duration::from_secs(5));
    assert_eq!(rest, "-ERR 'maximum control line exceeded'\r\n");
    assert!(closed);
    a.send(b"SUB short 1\r\n");
    assert_eq!(a.flush(), "+OK\r\n", "verbose by default, as nats-server");
}

#[test]
fn sighup_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("r.conf");
    std::fs::write(&conf, "debug: false\nmax_payload: 1MB\n").unwrap();
    let server = Server::start_with(1, &["-c", conf.to_str().unwrap(), "-m", "-1"]);
    let mport = common::monitor::monitor_port(&server);
    let loaded = || common::monitor::get(mport, "/varz")["config_load_time"].clone();
    let at_start = loaded();
    let hup = || {
        let pid = server.pid().to_string();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    };
    let seen = |needle: &str, secs: u64| server.wait_log(needle, Duration::from_secs(secs));
    let _ = server.raw();
    assert_eq!(
        seen("Client connection created", 1),
        None,
        "no debug lines yet"
    );
    std::fs::write(&conf, "debug: true\nmax_payload: 2MB\n").unwrap();
    hup();
    let line = seen("Reload: ", 10).expect("a reload");
    assert!(
        line.contains("'max_payload' changed; it takes effect at the next restart"),
        "{line}"
    );
    assert!(seen("Reloaded server configuration", 10).is_some());
    assert_ne!(
        loaded(),
        at_start,
        "/varz config_load_time follows the reload"
    );
    let _ = server.raw();
    assert!(seen("Client connection created", 10).is_some(), "debug on");
    // A broken file is reported; the server keeps running as it was.
    std::fs::write(&conf, "debug: true\nbogus: 1\n").unwrap();
    hup();
    let line = seen("Failed to reload server configuration", 10).expect("refused");
    assert!(
        line.contains("r.conf:2: unknown configuration key 'bogus'"),
        "{line}"
    );
    let mut c = server.raw();
    c.send(b"PING\r\n");
    assert_eq!(c.read_line(), "PONG\r\n");
    // Ping settings and the connection limit change while running, for
    // connections open already and new ones.
    std::fs::write(&conf, "ping_interval: 1s\nmax_connections: 2\n").unwrap();
    hup();
    assert!(seen("Reloaded: ping_interval = 1s", 10).is_some());
    assert!(seen("Reloaded: max_connections = 2", 10).is_some());
    c.send(b"CONNECT {\"verbose\":false}\r\n");
    assert_eq!(c.read_line(), "PING\r\n", "pinged at the new interval");
    let _second = server.raw();
    let mut third = server.raw();
    let (text, closed) = third.read_until_closed(Duration::from_secs(5));
    assert!(
        text.contains("-ERR 'maximum connections exceeded'"),
        "{text}"
    );
    assert!(closed);
}

#[test]
fn signals_sent_with_dash_dash_signal() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("s.pid");
    let mut server = Server::start_with(1, &["-P", pid.to_str().unwrap()]);
    let file = format!("reload={}", pid.display());
    assert_eq!(jetcore(&["--signal", &file]).status.code(), Some(0));
    let line = server.wait_log("Reload: ", Duration::from_secs(10));
    assert!(line.unwrap().contains("no configuration file"));
    let out = jetcore(&["-sl", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal \"bogus\""));
    let quit = format!("quit={}", server.pid());
    assert_eq!(jetcore(&["--signal", &quit]).status.code(), Some(0));
    let t0 = std::time::Instant::now();
    while server.is_running() {
        assert!(t0.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lame_duck_mode_tells_clients_then_closes_them_and_stops() {
    let args = [
        "--lame_duck_duration",
        "1s",
        "--lame_duck_grace_period",
        "300ms",
    ];
    let mut server = Server::start_with(2, &args);
    let port = server.port;
    let mut a = server.raw();
    a.send(b"CONNECT {\"verbose\":false}\r\n");
    a.flush();
    assert_eq!(
        jetcore(&["--signal", &format!("ldm={}", server.pid())])
            .status
            .code(),
        Some(0)
    );
    assert!(server
        .wait_log("Entering lame duck mode", Duration::from_secs(5))
        .is_some());
    // Told first: an INFO with "ldm":true.
    let info = a.read_line();
    assert!(
        info.starts_with("INFO {") && info.contains(",\"ldm\":true,"),
        "{info}"
    );
    // No new clients: the listeners are gone (give every shard its poll).
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // Then closed, and the server stops by itself.
    let (_, closed) = a.read_until_closed(Duration::from_secs(5));
    assert!(closed);
    let t0 = std::time::Instant::now();
    while server.is_running() {
        assert!(t0.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_example_config_in_deploy_checks() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/jetcore.conf");
    let out = Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(["-c", conf, "-t"])
        .env("HOSTNAME", "edge-1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn version_and_help() {
    let out = jetcore(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("jetcore version"));
    let out = jetcore(&["-h"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--addr", "--port", "--name", "--shards", "--debug", "--trace",
    ] {
        assert!(help.contains(flag), "help mentions {flag}");
    }
}

#[test]
fn port_in_use_is_an_error_not_a_shared_port() {
    let server = Server::start(1);
    let port = server.port.to_string();
    let out = jetcore(&["-a", "127.0.0.1", "-p", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error listening on port"), "{err}");
}

#[test]
fn more_shards_than_cores_serve_clients() {
    let server = Server::start(8);
    for _ in 0..16 {
        let mut raw = server.raw();
        raw.send(b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nPUB a 2\r\nhi\r\n");
        assert_eq!(raw.read_line(), "MSG a 1 2\r\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_to_another_jetcore_when_one_enters_lame_duck_mode() {
    use futures::StreamExt;
    let args = [
        "--lame_duck_duration",
        "1s",
        "--lame_duck_grace_period",
        "200ms",
    ];
    let first = Server::start_with(2, &args);
    let second = Server::start_with(2, &[]);
    // The client picks one of the two at random: make sure it sits on the first.
    let mut client = async_nats::ConnectOptions::new()
        .connect([first.url(), second.url()].as_slice())
        .await
        .unwrap();
    while client.server_info().port != first.port {
        client = async_nats::ConnectOptions::new()
            .connect([first.url(), second.url()].as_slice())
            .await
            .unwrap();
    }
    let mut sub = client.subscribe("moved").await.unwrap();
    client.flush().await.unwrap();
    let publisher = second.client().await;
    assert_eq!(
        jetcore(&["--signal", &format!("ldm={}", first.pid())])
            .status
            .code(),
        Some(0)
    );
    // Closed by the first within its lame duck duration, the client
    // reconnects to the second and its subscription comes along.
    let t0 = std::time::Instant::now();
    let got = loop {
        assert!(t0.elapsed() < Duration::from_secs(20), "never moved");
        publisher.publish("moved", "here".into()).await.unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            break m;
        }
    };
    assert_eq!(got.payload.as_ref(), b"here");
    assert_eq!(client.server_info().port, second.port);
}
