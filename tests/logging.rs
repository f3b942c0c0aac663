//! Log destinations an operator configures: a log file rotated past
//! `log_size_limit` (keeping `logfile_max_num` files), and syslog (`-r`).

use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_log_file_rotates_past_its_size_limit_and_old_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("j.log");
    let conf = dir.path().join("j.conf");
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: -1\ndebug: true\nlog_file: \"{}\"\nlog_size_limit: 4KB\nlogfile_max_num: 3\n",
            log.display()
        ),
    )
    .unwrap();
    let _server = Kill(
        Command::new(env!("CARGO_BIN_EXE_jetcore"))
            .args(["--shards", "1", "-c", conf.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("server ready", || {
        read().contains("Listening for client connections on")
    });
    let port: u16 = read()
        .split("Listening for client connections on ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .expect("port in the log");
    // Each connection logs two debug lines (created, closed): about 200 bytes.
    for _ in 0..300 {
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let backups = || {
        let mut b: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("j.log."))
            .collect();
        b.sort();
        b
    };
    wait_for("rotated twice", || backups().len() >= 2);
    // Let the last closes be logged (and rotations, and purges, happen).
    std::thread::sleep(Duration::from_millis(500));
    let b = backups();
    // logfile_max_num 3: the current file and two backups.
    assert_eq!(b.len(), 2, "{b:?}");
    for name in &b {
        // nats-server's name: j.log.YYYY.MM.DD.hh.mm.ss.nnnnnnnnn
        let stamp = &name["j.log.".len()..];
        assert_eq!(stamp.split('.').count(), 7, "{name}");
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size > 4096 && size < 4096 + 1024, "{name}: {size} bytes");
    }
    let current = read();
    assert!(
        current
            .lines()
            .next()
            .unwrap()
            .contains("Rotated log, backup saved as"),
        "{current}"
    );
}

#[test]
fn remote_syslog_receives_the_log() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("syslog.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = format!("unix://{}", sock_path.display());
    let _server = Kill(
        Command::new(env!("CARGO_BIN_EXE_jetcore"))
            .args(["-a", "127.0.0.1", "-p", "-1", "--shards", "1", "-r", &url])
            .spawn()
            .unwrap(),
    );
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("Server is ready")) {
        let n = sock.recv(&mut buf).expect("a syslog message");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().find(|l| l.contains("Server is ready")).unwrap();
    // RFC 3164: <priority>time tag[pid]: text. nats-server dials remote syslog
    // with facility 0: notice is priority 5. No "[INF]" tag in the text.
    assert!(ready.starts_with("<5>"), "{ready}");
    assert!(ready.ends_with("]: Server is ready"), "{ready}");
    assert!(!ready.contains("[INF]"), "{ready}");
    // A bad address stops the server with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_jetcore"))
        .args(["-p", "-1", "-r", "carrier-pigeon://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid syslog network type"), "{err}");
}
