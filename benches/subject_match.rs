//! Subject-match cost: a trie of 10,000 subscriptions (literal, `*`, `>` and queue
//! groups), matched with the cache warm (a hot set of subjects) and cold (every
//! subject new). Small unless `--bench` is given; prints ns per match, percentiles
//! and a checksum of the matches found.

use std::time::Instant;

use hdrhistogram::Histogram;
use jetcore::subject::trie::SubjectTrie;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if full { 5_000_000 } else { 50_000 };
    let mut trie = SubjectTrie::<u64>::new();
    for i in 0..10_000u64 {
        match i % 4 {
            0 => trie.insert(format!("orders.{i}.created").as_bytes(), None, i),
            1 => trie.insert(format!("orders.{i}.*").as_bytes(), None, i),
            2 => trie.insert(format!("orders.{i}.>").as_bytes(), Some(b"workers"), i),
            _ => trie.insert(format!("metrics.{}.>", i % 100).as_bytes(), None, i),
        }
    }
    trie.insert(b">", None, 1_000_000);
    let hot: Vec<Vec<u8>> = (0..256)
        .map(|i| format!("orders.{}.created", i * 37 % 10_000).into_bytes())
        .collect();
    let cold: Vec<Vec<u8>> = (0..rounds.min(200_000))
        .map(|i| format!("orders.{}.x{i}", i % 10_000).into_bytes())
        .collect();
    for (name, subjects) in [("warm cache", &hot), ("cold cache", &cold)] {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        let mut found = 0u64;
        let start = Instant::now();
        let mut done = 0usize;
        while done < rounds {
            let t = Instant::now();
            // Hot: 256 subjects over and over. Cold: a long list walked in order,
            // far larger than the cache, so nearly every match misses.
            for k in 0..256 {
                let r = trie.matches(&subjects[(done + k) % subjects.len()]);
                found += (r.plain.len() + r.queues.len()) as u64;
            }
            hist.record(t.elapsed().as_nanos() as u64 / 256)
                .expect("record");
            done += 256;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "subject match ({name}): {:.0} ns/match, p50 {} ns, p99 {} ns over {done} matches; checksum {found}",
            secs * 1e9 / done as f64,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99)
        );
    }
}
