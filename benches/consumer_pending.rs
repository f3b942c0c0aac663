//! What creating or inspecting a filtered consumer costs on a big stream: the
//! pending count (`Index::count_filtered`), the first message to deliver
//! (`next_filtered`) and the last-per-subject start, on a stream of 10 million
//! messages over 100,000 subjects with `--bench` (200,000 over 1,000 without,
//! so `cargo test --benches` keeps it compiling and running). Prints the time of
//! each call and a checksum of the answers.

use std::time::Instant;

use bytes::Bytes;
use jetcore::js::store::index::Index;

mod common;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (msgs, subjects): (u64, u64) = if full {
        (10_000_000, 100_000)
    } else {
        (200_000, 1_000)
    };
    let names: Vec<Bytes> = (0..subjects)
        .map(|i| Bytes::from(format!("orders.r{}.c{i}", i % 10)))
        .collect();
    let mut ix = Index::new(false, 1);
    let t = Instant::now();
    for seq in 1..=msgs {
        let s = &names[(seq % subjects) as usize];
        ix.append(common::message(seq, s, 160, None));
    }
    println!(
        "built {msgs} messages over {subjects} subjects in {:.1?}",
        t.elapsed()
    );
    let literal = vec![names[7].clone()];
    let region = vec![Bytes::from_static(b"orders.r3.*")];
    let two = vec![
        Bytes::from_static(b"orders.r3.*"),
        Bytes::from_static(b"orders.r5.*"),
    ];
    let mut checksum = 0u64;
    for (label, filters) in [
        ("one subject", &literal),
        ("wildcard, 10% of subjects", &region),
        ("two wildcards, 20% of subjects", &two),
    ] {
        for (at, from) in [("from the start", 1u64), ("from mid-stream", msgs / 2)] {
            let t = Instant::now();
            let n = ix.count_filtered(from, filters);
            let count = t.elapsed();
            let t = Instant::now();
            let next = ix.next_filtered(from, filters).unwrap_or(0);
            let first = t.elapsed();
            checksum = checksum.wrapping_add(n).wrapping_add(next);
            println!(
                "{label:32} {at:16} num_pending {n:>9} in {count:>10.1?}; next message {next:>9} in {first:>10.1?}"
            );
        }
        let t = Instant::now();
        let lps = ix.last_per_subject(filters);
        checksum = checksum.wrapping_add(lps.len() as u64);
        println!(
            "{label:32} last per subject: {} starts in {:.1?}",
            lps.len(),
            t.elapsed()
        );
    }
    println!("checksum {checksum}");
}
