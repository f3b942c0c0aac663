//! What per-subject state costs: an index of one message on each of
//! 1,000,000 distinct 22-byte subjects (a key-value bucket of a million keys)
//! with `--bench` (10,000 without, so `cargo test --benches` keeps it
//! running). Prints the resident memory it added per subject (its 32-byte
//! entry included) and the time of a `first_of` lookup.

use std::time::Instant;

use bytes::Bytes;
use jetcore::js::store::index::Index;

mod common;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 1_000_000 } else { 10_000 };
    let names: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(format!("$KV.bucket.key{i:07}")))
        .collect();
    let mut ix = Index::new(false, 1);
    let before = rss_kib();
    for seq in 1..=n {
        ix.append(common::message(seq, &names[(seq - 1) as usize], 160, None));
    }
    let added = rss_kib().saturating_sub(before);
    let t = Instant::now();
    let mut found = 0u64;
    for i in (0..n).step_by(97) {
        found += u64::from(ix.first_of(&names[i as usize]).is_some());
    }
    println!(
        "{n} subjects: {} bytes a subject (entry included); first_of {:.0} ns ({found} found)",
        added * 1024 / n,
        t.elapsed().as_nanos() as f64 / found.max(1) as f64
    );
}
