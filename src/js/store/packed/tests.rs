//! Unit tests of packed segments; each unwrap() is an assertion on a fixed
//! input.

use super::*;

/// Record-like bytes: repetitive JSON with a counter, zeros at the end.
fn raw(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < len {
        let ev = format!(
            r#"{{"id":{i},"kind":"click","user":"u{}","ok":true}}"#,
            i % 97
        );
        out.extend_from_slice(ev.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn packed(first: u64, raw: &[u8]) -> Vec<u8> {
    futures_lite::future::block_on(pack(first, raw, || async {})).unwrap()
}

#[test]
fn every_span_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 1, PACK_BLOCK - 1, PACK_BLOCK, 3 * PACK_BLOCK + 17] {
        let raw = raw(len);
        let path = dir.path().join(packed_name(7));
        let file = packed(7, &raw);
        assert!(len < 1000 || file.len() < raw.len() / 2, "compressed");
        std::fs::write(&path, &file).unwrap();
        assert_eq!(read_whole(&path).unwrap(), raw, "{len}");
        let edges = [
            0,
            1,
            PACK_BLOCK as u64 - 3,
            PACK_BLOCK as u64,
            len as u64,
            len as u64 + 9,
        ];
        for off in edges {
            for n in [0, 1, 8, 100, PACK_BLOCK + 5, 4 * PACK_BLOCK] {
                let want: Vec<u8> = raw.iter().copied().skip(off as usize).take(n).collect();
                let (got, raw_len) = read_span(&path, off, n).unwrap();
                assert_eq!((got, raw_len), (want, len as u64), "{len} {off} {n}");
            }
        }
    }
}

#[test]
fn a_damaged_header_or_table_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(packed_name(1));
    let raw = raw(2 * PACK_BLOCK + 5);
    let file = packed(1, &raw);
    let blocks = 3;
    for at in 0..HEADER + blocks * 8 {
        let mut bad = file.clone();
        bad[at] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        assert!(read_whole(&path).is_err(), "bit at {at}");
        assert!(read_span(&path, 0, 10).is_err(), "bit at {at}");
    }
    std::fs::write(&path, &file[..file.len() - 1]).unwrap();
    assert!(read_whole(&path).is_err(), "torn");
}
