//! Building a segment's index file as its writes complete, for a key-value
//! put stream: each put is a message record (one of 1,000 keys) and the
//! delete record of the key's previous value. 2,000,000 puts with `--bench`
//! (100,000 without, so `cargo test --benches` keeps it running). Prints the
//! time per put.

use std::time::Instant;

use jetcore::js::store::recovery::Recovered;
use jetcore::js::store::segindex::Builder;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let puts: u64 = if full { 2_000_000 } else { 100_000 };
    let names: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("$KV.BENCH.k{i}").into_bytes())
        .collect();
    let t = Instant::now();
    let mut b = Builder::new(1);
    let mut off = 0u64;
    let mut files = 0;
    for seq in 1..=puts {
        let msg = Recovered {
            seg: b.first(),
            off,
            kind: 1,
            seq,
            ts: seq as i64 * 1000,
            subject: &names[(seq % 1000) as usize],
            hdr_len: 0,
            len: 128,
            hdr: b"",
            data: None,
        };
        b.add(&msg, 0, off + 174);
        off += 174;
        let delete = Recovered {
            seg: b.first(),
            off,
            kind: 2,
            seq: seq.saturating_sub(1000),
            ts: seq as i64 * 1000 + 5,
            subject: b"",
            hdr_len: 0,
            len: 0,
            hdr: b"",
            data: None,
        };
        b.add(&delete, 0, off + 32);
        off += 32;
        if b.covered() > 32 << 20 {
            files += b.finish().len();
            b = Builder::new(seq + 1);
            off = 0;
        }
    }
    println!(
        "{puts} puts: {:.1} ns a put (index files: {files} bytes)",
        t.elapsed().as_nanos() as f64 / puts as f64
    );
}
