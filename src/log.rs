//! Minimal logger in nats-server's line format:
//! `[pid] 2026/11/26 05:28:41.123456 [INF] text`, to stderr (which `-l` moves
//! onto a file, rotated past `log_size_limit`), or to syslog (`-s`, `-r`).
//!
//! The level is set once at startup; hot paths copy the flags they need into their
//! own state instead of reading the global per message. Log sites are never on
//! the publish path, so the syslog connection and a rotation are behind a mutex.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// Set once at startup by `to_syslog`: every line goes there instead. A
/// mutex: log sites are never on the publish path, and one socket is written
/// one line at a time.
static SYSLOG: OnceLock<Mutex<Syslog>> = OnceLock::new();

/// `-l` with `log_size_limit`: the file, its limit, and how many files to
/// keep (0: all), set once at startup; bytes written since the last rotation.
struct Rotation {
    path: PathBuf,
    limit: u64,
    max_files: usize,
    /// Held only while rotating (others skip, `try_lock`); never per line.
    lock: Mutex<()>,
}
static ROTATION: OnceLock<Rotation> = OnceLock::new();
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Only startup writes this; it is read by log sites, never on the publish path.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

/// `-T`/`logtime`: lines carry the date and time (default on).
static TIMESTAMPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_timestamps(on: bool) {
    TIMESTAMPS.store(on, Ordering::Relaxed);
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

pub fn write(level: Level, text: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let tag = match level {
        Level::Error => "ERR",
        Level::Warn => "WRN",
        Level::Info => "INF",
        Level::Debug => "DBG",
        Level::Trace => "TRC",
    };
    if let Some(sys) = SYSLOG.get() {
        // nats-server's syslog lines carry no level tag: the priority says it.
        let text = text.to_string();
        if let Ok(mut w) = sys.lock() {
            let _ = match level {
                Level::Error => w.err(text),
                Level::Warn => w.warning(text),
                Level::Info | Level::Trace => w.notice(text),
                Level::Debug => w.debug(text),
            };
        }
        return;
    }
    let line = if TIMESTAMPS.load(Ordering::Relaxed) {
        format!("[{}] {} [{tag}] {text}\n", std::process::id(), timestamp())
    } else {
        format!("[{}] [{tag}] {text}\n", std::process::id())
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(r) = ROTATION.get() {
        let total = WRITTEN.fetch_add(line.len() as u64, Ordering::Relaxed) + line.len() as u64;
        if total > r.limit {
            rotate(r);
        }
    }
}

/// Sends every line to syslog: the local one (`/dev/log`), or `remote`
/// (`udp://host:port`, `tcp://host:port`, `unix:///path`), as nats-server's
/// `-s` and `-r` do, tagged with the program name and pid.
pub fn to_syslog(remote: Option<&str>) -> Result<(), String> {
    let process = std::env::args()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "jetcore".into());
    let f = |facility| syslog::Formatter3164 {
        facility,
        hostname: None,
        process: process.clone(),
        pid: std::process::id(),
    };
    let logger = match remote {
        None => syslog::unix(f(syslog::Facility::LOG_DAEMON)),
        Some(url) => {
            let (scheme, addr) = url
                .split_once("://")
                .ok_or_else(|| format!("jetcore: invalid remote syslog address '{url}'"))?;
            // nats-server dials remote syslog with facility 0 (kern).
            let fac = syslog::Facility::LOG_KERN;
            match scheme {
                "udp" => syslog::udp(f(fac), "0.0.0.0:0", addr),
                "tcp" => syslog::tcp(f(fac), addr),
                "unix" => syslog::unix_custom(f(fac), addr),
                other => return Err(format!("jetcore: invalid syslog network type \"{other}\"")),
            }
        }
    }
    .map_err(|e| format!("jetcore: error connecting to syslog: {e}"))?;
    let _ = SYSLOG.set(Mutex::new(logger));
    Ok(())
}

/// Opens `path` for appending and makes it the process's stderr (`-l`;
/// again on SIGUSR1 and after a rotation).
pub fn open_file(path: &Path) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("jetcore: cannot open log file {}: {e}", path.display()))?;
    // SAFETY: dup2 onto fd 2 with a valid open descriptor; `f` closes its own.
    let rc = unsafe { libc::dup2(f.as_raw_fd(), 2) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("jetcore: cannot log to {}: {e}", path.display()));
    }
    if ROTATION.get().is_some() {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        WRITTEN.store(len, Ordering::Relaxed);
    }
    Ok(())
}

/// `log_size_limit` (bytes, > 0) and `logfile_max_num` for the log file `path`.
pub fn rotate_at(path: &Path, limit: u64, max_files: usize) {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    WRITTEN.store(len, Ordering::Relaxed);
    let _ = ROTATION.set(Rotation {
        path: path.to_path_buf(),
        limit,
        max_files,
        lock: Mutex::new(()),
    });
}

/// Moves the full log file aside as `<file>.YYYY.MM.DD.hh.mm.ss.nnnnnnnnn`
/// (nats-server's name), starts a new one, and keeps at most `max_files`
/// files in all.
fn rotate(r: &Rotation) {
    let Ok(held) = r.lock.try_lock() else {
        return; // another thread is rotating
    };
    if WRITTEN.load(Ordering::Relaxed) <= r.limit {
        return;
    }
    let (now, (y, m, d), rem) = utc_now();
    let bak = format!(
        "{}.{y:04}.{m:02}.{d:02}.{:02}.{:02}.{:02}.{:09}",
        r.path.display(),
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_nanos()
    );
    if std::fs::rename(&r.path, &bak).is_err() || open_file(&r.path).is_err() {
        WRITTEN.store(0, Ordering::Relaxed); // try again after another limit's worth
        return;
    }
    WRITTEN.store(0, Ordering::Relaxed);
    if r.max_files > 0 {
        purge(&r.path, r.max_files - 1);
    }
    drop(held);
    write(
        Level::Info,
        format_args!("Rotated log, backup saved as {bak:?}"),
    );
}

/// Deletes the oldest backups of `path` beyond `keep`.
fn purge(path: &Path, keep: usize) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut backups: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    // The names sort by time.
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for old in &backups[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

/// Now: since the epoch, the UTC date, and the seconds into that day.
fn utc_now() -> (std::time::Duration, (i64, u32, u32), u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    (now, civil_from_days((secs / 86_400) as i64), secs % 86_400)
}

/// UTC wall time as `YYYY/MM/DD HH:MM:SS.micros`.
fn timestamp() -> String {
    let (now, (y, m, d), rem) = utc_now();
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => {
        $crate::log::write($crate::log::Level::Info, format_args!($($t)*))
    };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => {
        $crate::log::write($crate::log::Level::Warn, format_args!($($t)*))
    };
}
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => {
        $crate::log::write($crate::log::Level::Error, format_args!($($t)*))
    };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        $crate::log::write($crate::log::Level::Debug, format_args!($($t)*))
    };
}
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        $crate::log::write($crate::log::Level::Trace, format_args!($($t)*))
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
