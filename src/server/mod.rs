//! Process startup and shutdown: check the port, probe io_uring, start one pinned
//! glommio executor per shard, trap SIGINT/SIGTERM, and map the outcome to an exit
//! code (0 after a clean shutdown, 1 when the server cannot start or a shard fails).

mod files;

pub use files::send_signal;
mod shard;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::limits;
use crate::shard::{Server, SHUTDOWN};
use shard::MeshSetup;

/// Runs the server until SIGINT/SIGTERM; returns the process exit code.
pub fn run(cfg: Config) -> i32 {
    crate::log::set_level(cfg.log_level);
    crate::log::set_timestamps(cfg.logtime);
    if let Some(path) = &cfg.log_file {
        if let Err(e) = files::open_log(path) {
            eprintln!("{e}");
            return 1;
        }
        if cfg.log_size_limit > 0 {
            crate::log::rotate_at(path, cfg.log_size_limit, cfg.logfile_max_num);
        }
    }
    if cfg.syslog || cfg.remote_syslog.is_some() {
        if let Err(e) = crate::log::to_syslog(cfg.remote_syslog.as_deref()) {
            eprintln!("{e}");
            return 1;
        }
    }
    if let Some(path) = &cfg.pid_file {
        if let Err(e) = files::write_pid(path) {
            crate::error!("{e}");
            return 1;
        }
    }
    let pid_file = cfg.pid_file.clone();
    let code = run_server(cfg);
    if let Some(path) = &pid_file {
        files::remove_pid(path);
    }
    code
}

fn run_server(cfg: Config) -> i32 {
    // Held for the process's life so no other process is handed our port.
    let (listen, _reservation) = match reserve_port(&cfg) {
        Ok(found) => found,
        Err(e) => {
            crate::error!("{e}");
            return 1;
        }
    };
    if let Err(e) = probe_io_uring() {
        crate::error!("{e}");
        return 1;
    }
    let auth = match crate::auth::Auth::new(&cfg.auth, cfg.no_auth_user.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            crate::error!("{e}");
            return 1;
        }
    };
    let tls = match cfg.tls.as_ref().map(crate::tls::Tls::load).transpose() {
        Ok(t) => t,
        Err(e) => {
            crate::error!("{e}");
            return 1;
        }
    };
    let leaf = match crate::leaf::prepare(&cfg) {
        Ok(l) => l,
        Err(e) => {
            crate::error!("{e}");
            return 1;
        }
    };
    // Held for the process's life, as the client port's.
    let (leaf_listen, _leaf_reservation) = match leaf.listen.map(reserve).transpose() {
        Ok(Some((addr, fd))) => (Some(addr), Some(fd)),
        Ok(None) => (None, None),
        Err(e) => {
            crate::error!("{e}");
            return 1;
        }
    };
    block_signals();
    let server_id = new_server_id();
    let server = Arc::new(Server {
        server_name: cfg.name.clone().unwrap_or_else(|| server_id.clone()),
        server_id,
        listen,
        bound: AtomicUsize::new(0),
        recovered: AtomicUsize::new(0),
        clients: AtomicUsize::new(0),
        lame_duck_done: AtomicUsize::new(0),
        js_usage: (0..cfg.shards).map(|_| Default::default()).collect(),
        shard_load: (0..cfg.shards).map(|_| Default::default()).collect(),
        live: crate::shard::Live::new(&cfg),
        auth: auth.map(|a| std::sync::RwLock::new(Arc::new(a))),
        auth_gen: std::sync::atomic::AtomicU64::new(0),
        tls,
        leaf_listen,
        leaf_auth: leaf.auth,
        leaf_lds: leaf.lds,
        leaf_creds: leaf.creds,
        leaf_tls: leaf.tls,
        leaf_client_tls: leaf.client_tls,
        cfg,
    });
    crate::info!(
        "Starting jetcore version {} (NATS {}) on {listen} with {} shard(s)",
        env!("CARGO_PKG_VERSION"),
        crate::config::NATS_COMPAT_VERSION,
        server.cfg.shards
    );
    match &server.cfg.jetstream {
        Some(dir) => {
            crate::info!("Starting JetStream");
            crate::info!("  Store Directory: \"{}\"", dir.join("jetstream").display());
            crate::info!(
                "  Durability: {}",
                match server.cfg.sync {
                    crate::config::SyncMode::Always =>
                        "fdatasync before every acknowledgement (--sync always)".to_string(),
                    crate::config::SyncMode::Interval(d) => format!(
                        "acknowledged after the write, fdatasync every {d:?} (--sync interval)"
                    ),
                }
            );
        }
        None => crate::info!("JetStream not enabled (use -js)"),
    }
    crate::info!(
        "Server name is {} (id {})",
        server.server_name,
        server.server_id
    );
    let reload = Reload {
        server: server.clone(),
        log_file: server.cfg.log_file.clone(),
        config_file: server.cfg.config_file.clone(),
        settings: server.cfg.file_settings.clone(),
        log_flags: server.cfg.log_flags,
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signal(reload))
        .expect("spawn the signal thread");
    start_shards(server)
}

fn start_shards(server: Arc<Server>) -> i32 {
    let shards = server.cfg.shards;
    let meshes = (shards > 1).then(|| MeshSetup {
        data: MeshBuilder::full(shards, limits::MESH_CHANNEL_BATCHES),
        acks: MeshBuilder::full(shards, limits::MESH_ACK_CHANNEL_MSGS),
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each shard thread reports its end exactly once: capacity `shards` suffices.
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(usize, Result<(), String>)>(shards);
    for index in 0..shards {
        let server = server.clone();
        let meshes = meshes.clone();
        let done_tx = done_tx.clone();
        let builder = executor_builder(Placement::Fixed(index % cpus), index);
        let spawned = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let outcome = match builder.make() {
                    Ok(executor) => executor.run(shard::run(server, index, meshes)),
                    Err(e) => Err(io_uring_help(&e.to_string())),
                };
                let _ = done_tx.send((index, outcome));
            });
        if let Err(e) = spawned {
            crate::error!("cannot start shard {index}: {e}");
            return 1;
        }
    }
    // A shard that fails leaves its peers waiting in the mesh: exit at once.
    for _ in 0..shards {
        match done_rx.recv() {
            Ok((_, Ok(()))) if SHUTDOWN.load(Ordering::SeqCst) => {}
            Ok((index, Ok(()))) => {
                crate::error!("shard {index} stopped unexpectedly");
                return 1;
            }
            Ok((index, Err(e))) => {
                crate::error!("shard {index}: {e}");
                return 1;
            }
            Err(_) => return 1,
        }
    }
    crate::info!("Server Exiting..");
    0
}

fn executor_builder(placement: Placement, index: usize) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{index}"))
        .io_memory(limits::IO_MEMORY_PER_SHARD)
        .ring_depth(limits::RING_DEPTH)
        .preempt_timer(limits::PREEMPT_TIMER)
        .spin_before_park(limits::SPIN_BEFORE_PARK)
}

/// Fails early, with the fix, when io_uring cannot start here.
fn probe_io_uring() -> Result<(), String> {
    let handle = executor_builder(Placement::Unbound, 0)
        .spawn(|| async {})
        .map_err(|e| io_uring_help(&e.to_string()))?;
    handle.join().map_err(|e| io_uring_help(&e.to_string()))
}

fn io_uring_help(cause: &str) -> String {
    format!(
        "cannot start io_uring: {cause}. jetcore needs io_uring (Linux 5.8+) and locked memory \
         for its rings and buffers: raise the locked-memory limit (`ulimit -l unlimited`, or \
         LimitMEMLOCK=infinity in a systemd unit) and make sure io_uring is not disabled \
         (`sysctl kernel.io_uring_disabled` must be 0)"
    )
}

/// Claims the client port before the shards bind it.
///
/// An explicit port is first bound without SO_REUSEPORT, so a port another
/// process holds is reported instead of silently shared. Then a socket with
/// SO_REUSEPORT is bound (not listening) and kept: for port 0 the kernel picks a
/// free port for it, and while it is held no other process can be given that port
/// between now and the shards' own binds.
fn reserve_port(cfg: &Config) -> Result<(SocketAddr, std::os::fd::OwnedFd), String> {
    reserve(SocketAddr::new(cfg.addr, cfg.port))
}

/// `reserve_port` for any address (the leaf port too).
fn reserve(wanted: SocketAddr) -> Result<(SocketAddr, std::os::fd::OwnedFd), String> {
    let fail = |e: std::io::Error| format!("Error listening on port: {wanted}, \"{e}\"");
    if wanted.port() != 0 {
        drop(TcpListener::bind(wanted).map_err(fail)?);
    }
    let fd = reuseport_socket(wanted).map_err(fail)?;
    let bound = local_addr(&fd).map_err(fail)?;
    Ok((bound, fd))
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls; the fd is owned by the returned OwnedFd.
    unsafe {
        let raw = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let one_ptr = (&one as *const libc::c_int).cast();
        // SO_REUSEADDR too: a restart must not fail on connections of the
        // last run still in TIME_WAIT on the port (as nats-server's Go
        // listeners).
        for opt in [libc::SO_REUSEPORT, libc::SO_REUSEADDR] {
            if libc::setsockopt(raw, libc::SOL_SOCKET, opt, one_ptr, len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let (storage, storage_len) = sockaddr(addr);
        if libc::bind(
            raw,
            (&storage as *const libc::sockaddr_storage).cast(),
            storage_len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; we fill the family's fields.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_port = a.port().to_be();
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            }
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_port = a.port().to_be();
                (*sin6).sin6_addr.s6_addr = a.ip().octets();
                (*sin6).sin6_scope_id = a.scope_id();
            }
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn local_addr(fd: &std::os::fd::OwnedFd) -> std::io::Result<SocketAddr> {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockname writes at most `len` bytes into the storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        _ => {
            // SAFETY: the only other family we create is AF_INET6.
            let sin6 = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
    }
}

fn block_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// What the signal thread needs for SIGUSR1 and SIGHUP.
struct Reload {
    server: Arc<Server>,
    log_file: Option<std::path::PathBuf>,
    config_file: Option<std::path::PathBuf>,
    settings: crate::config_file::FileSettings,
    log_flags: bool,
}

impl Reload {
    /// SIGHUP: reads the config file again; applies what can change while
    /// running (log level and timestamps, unless set by flags) and names
    /// what only a restart changes.
    fn reload(&mut self) {
        if self.config_file.is_none() {
            crate::error!("Reload: no configuration file (-c) to reload");
            return;
        }
        crate::info!("Reloading server configuration");
        // The command line again, with the file as it is now: flags still win.
        let cfg = match crate::config::parse(std::env::args().skip(1)) {
            Ok(crate::config::Command::Run(cfg)) => cfg,
            Ok(_) => return,
            Err(e) => {
                crate::error!("Failed to reload server configuration: {}", e.trim_end());
                return;
            }
        };
        let new = cfg.file_settings.clone();
        if !self.log_flags {
            let tracing = crate::log::enabled(crate::log::Level::Trace);
            crate::log::set_level(new.reload_level(tracing));
            crate::log::set_timestamps(new.logtime.unwrap_or(true));
        }
        for change in self.server.live.apply(&cfg) {
            crate::info!("Reloaded: {change}");
        }
        self.reload_auth(&cfg);
        for name in new.restart_only_changes(&self.settings) {
            crate::warn!("Reload: '{name}' changed; it takes effect at the next restart");
        }
        self.settings = new;
        crate::info!("Reloaded server configuration");
    }
}

impl Reload {
    /// New users and permissions take effect for new and connected clients
    /// (each shard re-checks its own, as nats-server does on a reload).
    /// Turning authentication on or off needs a restart.
    fn reload_auth(&mut self, cfg: &Config) {
        let (old, new) = (&self.settings, &cfg.file_settings);
        if old.auth == new.auth && old.no_auth_user == new.no_auth_user {
            return;
        }
        let Some(lock) = &self.server.auth else {
            crate::warn!("Reload: authentication turned on; it takes effect at the next restart");
            return;
        };
        match crate::auth::Auth::new(&cfg.auth, cfg.no_auth_user.as_deref()) {
            Ok(Some(auth)) => {
                *lock.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
                self.server.auth_gen.fetch_add(1, Ordering::SeqCst);
                crate::info!("Reloaded: authorization (users and permissions)");
            }
            Ok(None) => crate::warn!(
                "Reload: authentication turned off; it takes effect at the next restart"
            ),
            Err(e) => crate::error!("Reload: authorization not changed: {e}"),
        }
    }
}

/// Runs on its own thread: the first SIGINT/SIGTERM asks every shard to stop; a
/// second one exits at once. SIGUSR1 reopens the log file; SIGHUP reloads.
fn wait_for_signal(mut reload: Reload) {
    let log_file = reload.log_file.clone();
    let mut trapped = 0;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits on the same signal set `block_signals` blocked.
        let rc = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::sigwait(&set, &mut sig)
        };
        if rc != 0 {
            continue;
        }
        if sig == libc::SIGHUP {
            reload.reload();
            continue;
        }
        if sig == libc::SIGUSR2 {
            if !crate::shard::LAME_DUCK.swap(true, Ordering::SeqCst) {
                crate::info!("Entering lame duck mode, stop accepting new clients");
            }
            continue;
        }
        if sig == libc::SIGUSR1 {
            if let Some(path) = &log_file {
                match files::open_log(path) {
                    Ok(()) => crate::info!("Reopened log file"),
                    Err(e) => crate::error!("{e}"),
                }
            }
            continue;
        }
        trapped += 1;
        let name = if sig == libc::SIGINT {
            "interrupt"
        } else {
            "terminated"
        };
        crate::info!("Trapped \"{name}\" signal");
        if trapped > 1 {
            std::process::exit(1);
        }
        SHUTDOWN.store(true, Ordering::SeqCst);
    }
}

/// A server id in nats-server's shape: 'N' and 55 base32 characters.
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 55];
    // SAFETY: getrandom fills the buffer it is given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(131);
        }
    }
    std::iter::once('N')
        .chain(bytes.iter().map(|b| ALPHABET[usize::from(b % 32)] as char))
        .collect()
}
