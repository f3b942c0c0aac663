//! Minimal logger in nats-server's line format:
//! `[pid] 2026/11/26 05:28:41.123456 [INF] text`, to stderr.
//!
//! The level is set once at startup; hot paths copy the flags they need into their
//! own state instead of reading the global per message.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
    if TIMESTAMPS.load(Ordering::Relaxed) {
        eprintln!("[{}] {} [{tag}] {text}", std::process::id(), timestamp());
    } else {
        eprintln!("[{}] [{tag}] {text}", std::process::id());
    }
}

/// UTC wall time as `YYYY/MM/DD HH:MM:SS.micros`.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
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
