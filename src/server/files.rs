//! The files an operator points jetcore at: the pid file (`-P`, `pid_file`)
//! and the log file (`-l`, `log_file`), which stderr is moved onto so every
//! log line goes there; SIGUSR1 reopens it (after a rotation).

use std::path::Path;

/// Opens `path` for appending and makes it the process's stderr.
pub fn open_log(path: &Path) -> Result<(), String> {
    crate::log::open_file(path)
}

/// Writes the process id, as nats-server does (no newline).
pub fn write_pid(path: &Path) -> Result<(), String> {
    std::fs::write(path, std::process::id().to_string())
        .map_err(|e| format!("jetcore: cannot write pid file {}: {e}", path.display()))
}

pub fn remove_pid(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// `--signal`: sends `sig` to the jetcore named by `pid` (a number or a pid
/// file), else to the one jetcore running (found with `pgrep`).
pub fn send_signal(sig: i32, pid: Option<&str>) -> Result<(), String> {
    let pid: i32 = match pid {
        Some(p) => match p.parse() {
            Ok(n) => n,
            Err(_) => std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| format!("jetcore: invalid pid: {p}"))?,
        },
        None => {
            let out = std::process::Command::new("pgrep")
                .args(["-x", "jetcore"])
                .output()
                .map_err(|e| format!("jetcore: cannot look for running jetcore processes: {e}"))?;
            let me = std::process::id() as i32;
            let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .filter(|p| *p != me)
                .collect();
            match pids.as_slice() {
                [] => return Err("jetcore: no jetcore processes running".into()),
                [one] => *one,
                many => {
                    let list: Vec<String> = many.iter().map(i32::to_string).collect();
                    return Err(format!(
                        "jetcore: multiple jetcore processes running:\n{}",
                        list.join("\n")
                    ));
                }
            }
        }
    };
    // SAFETY: kill(2) with a plain pid and signal number.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("jetcore: signal {sig} to {pid}: {e}"));
    }
    Ok(())
}
