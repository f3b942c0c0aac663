//! The index work of a key-value put stream (`max_msgs_per_subject: 1`):
//! append a message with its body cached, remove the key's previous
//! message, keep the cache within its budget. 2,000,000 puts over 1,000 keys
//! with `--bench` (100,000 without, so `cargo test --benches` keeps it
//! running). Prints the time per put.

use std::time::Instant;

use bytes::Bytes;
use jetcore::js::store::index::Index;

mod common;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (puts, keys): (u64, u64) = if full {
        (2_000_000, 1_000)
    } else {
        (100_000, 1_000)
    };
    let names: Vec<Bytes> = (0..keys)
        .map(|i| Bytes::from(format!("$KV.BENCH.k{i}")))
        .collect();
    let body = Bytes::from(vec![7u8; 128]);
    let mut ix = Index::new(false, 1);
    let t = Instant::now();
    for seq in 1..=puts {
        let s = &names[(seq % keys) as usize];
        ix.append(common::message(seq, s, 190, Some(body.clone())));
        if let Some(older) = ix.first_of(s).filter(|o| *o < seq) {
            ix.remove(older);
        }
        ix.evict(32 << 20);
    }
    let el = t.elapsed();
    println!(
        "{puts} puts over {keys} keys: {:.1} ns a put ({} live)",
        el.as_nanos() as f64 / puts as f64,
        ix.msgs
    );
}
