//! The files an operator points jetcore at: the pid file (`-P`, `pid_file`)
//! and the log file (`-l`, `log_file`), which stderr is moved onto so every
//! log line goes there; SIGUSR1 reopens it (after a rotation).

use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens `path` for appending and makes it the process's stderr.
pub fn open_log(path: &Path) -> Result<(), String> {
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
    Ok(())
}

/// Writes the process id, as nats-server does (no newline).
pub fn write_pid(path: &Path) -> Result<(), String> {
    std::fs::write(path, std::process::id().to_string())
        .map_err(|e| format!("jetcore: cannot write pid file {}: {e}", path.display()))
}

pub fn remove_pid(path: &Path) {
    let _ = std::fs::remove_file(path);
}
