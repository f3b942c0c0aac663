//! Building a segment's index file as its writes complete, for a key-value
//! put stream: each put is a message record (one of 1,000 keys) and the
//! delete record of the key's previous value. 2,000,000 puts with `--bench`
//! (100,000 without, so `cargo test --benches` keeps it running). Prints the
//! time per put.

use std::time::Instant;

use jetcore::js::store::record::encoded_len;
use jetcore::js::store::recovery::Recovered;
use jetcore::js::store::segindex::Builder;

/// Adds a record of `kind`, `seq`, `ts` with `len` bytes of headers and
/// payload at `*off`, and moves `*off` past it.
fn add(
    b: &mut Builder,
    off: &mut u64,
    (kind, seq, ts): (u8, u64, i64),
    subject: &[u8],
    len: usize,
) {
    let end = *off + encoded_len(subject.len(), len) as u64;
    let r = Recovered {
        seg: b.first(),
        off: *off,
        kind,
        seq,
        ts,
        subject,
        hdr_len: 0,
        len,
        hdr: b"",
        data: None,
    };
    b.add(&r, 0, end);
    *off = end;
}

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
        let key = &names[(seq % 1000) as usize];
        add(&mut b, &mut off, (1, seq, seq as i64 * 1000), key, 128);
        let older = seq.saturating_sub(1000);
        add(&mut b, &mut off, (2, older, seq as i64 * 1000 + 5), b"", 0);
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
