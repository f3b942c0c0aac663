//! Parser throughput: a buffer of 16-byte PUBs, fed in 64 KiB reads as a socket
//! would deliver them. Small input unless `--bench` is given (so `cargo test
//! --benches` keeps it compiling and running); prints msgs/s, MB/s, the per-read
//! cost percentiles and a checksum of the work done.

use std::time::Instant;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use jetcore::protocol::parser::{ClientOp, Parser};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let msgs: usize = if full { 20_000_000 } else { 200_000 };
    let one = b"PUB bench.subject.abc 16\r\n0123456789abcdef\r\n";
    let mut input = Vec::with_capacity(one.len() * 100_000);
    for _ in 0..100_000 {
        input.extend_from_slice(one);
    }
    let mut parser = Parser::new(1 << 20, 4096);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut parsed = 0usize;
    let mut checksum = 0u64;
    let start = Instant::now();
    let mut buf = BytesMut::with_capacity(128 * 1024);
    while parsed < msgs {
        for chunk in input.chunks(64 * 1024) {
            let t = Instant::now();
            // A read appends to the connection's buffer; a partial op at the end
            // waits there for the next read, exactly as in the connection.
            buf.reserve(chunk.len());
            buf.extend_from_slice(chunk);
            loop {
                match parser.next(&mut buf) {
                    Ok(Some(ClientOp::Pub(p))) => {
                        parsed += 1;
                        checksum =
                            checksum.wrapping_add(p.msg.len() as u64 + p.subject.len() as u64);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => panic!("bench input must parse: {e:?}"),
                }
            }
            hist.record(t.elapsed().as_nanos() as u64).expect("record");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = parsed as f64 / secs;
    println!(
        "parser: {parsed} PUBs (16 B) in {secs:.3} s = {:.2} M msgs/s, {:.1} MB/s of protocol; \
         per 64 KiB read p50 {} ns p99 {} ns; checksum {checksum}",
        rate / 1e6,
        rate * one.len() as f64 / 1e6,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99)
    );
}
