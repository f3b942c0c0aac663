//! Sealed segments compressed at rest (`compression: "s2"`): `<first>.sz`
//! holds a segment's record bytes in blocks of `PACK_BLOCK`, each compressed
//! with Snappy (the format S2 extends; the on-disk format is ours), and a
//! table of where each block ends, so a read decompresses only the blocks
//! it covers. Offsets stay those of the segment as written: index entries
//! and index files do not change when a segment is packed.
//!
//! ```text
//! header (40 bytes)
//! 0  "JCSZ"   4  u32 version (1)   8  u64 segment's first sequence
//! 16 u64 raw length (the segment's record bytes)
//! 24 u32 blocks   28 u32 crc32c of the table   32 u32 0   36 u32 crc32c of 0..36
//! table: per block, u64 end of its compressed bytes (counted from the
//! first block); then the blocks.
//! ```
//! Little endian. A block's records carry their own crc32c, checked when
//! read, as for a segment as written. A packed file is written under a
//! temporary name and renamed; the segment as written is removed after.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

/// Raw bytes per compressed block: a read of one message decompresses one
/// block (about 50 µs), a consumer's read-ahead one or two.
pub const PACK_BLOCK: usize = 64 * 1024;
const MAGIC: &[u8; 4] = b"JCSZ";
const VERSION: u32 = 1;
const HEADER: usize = 40;

/// The name of segment `first` packed.
pub fn packed_name(first: u64) -> String {
    format!("{first:020}.sz")
}

pub fn is_packed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "sz")
}

/// The packed file of `raw`, the record bytes of segment `first`, compressed
/// a block at a time (`each` runs between blocks: a running shard yields).
pub async fn pack<F: std::future::Future<Output = ()>>(
    first: u64,
    raw: &[u8],
    mut each: impl FnMut() -> F,
) -> std::io::Result<Vec<u8>> {
    let mut enc = snap::raw::Encoder::new();
    let mut blocks = Vec::with_capacity(raw.len() / 2);
    let mut ends = Vec::new();
    for block in raw.chunks(PACK_BLOCK) {
        blocks.extend_from_slice(&enc.compress_vec(block).map_err(std::io::Error::other)?);
        ends.push(blocks.len() as u64);
        each().await;
    }
    let table: Vec<u8> = ends.iter().flat_map(|e| e.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(HEADER + table.len() + blocks.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&(ends.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&table).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&table);
    out.extend_from_slice(&blocks);
    Ok(out)
}

/// A packed segment's layout: where each block's compressed bytes are.
#[derive(Debug)]
pub struct Layout {
    pub first: u64,
    pub raw_len: u64,
    /// End of each block's compressed bytes, from `data_at`.
    ends: Vec<u64>,
    data_at: u64,
}

fn damaged(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("packed segment: {why}"),
    )
}

impl Layout {
    /// The layout from a file's first bytes (header and table; `head` may
    /// hold more); Err(Some(n)): `n` bytes are needed.
    fn parse(head: &[u8], file_len: u64) -> Result<Layout, Option<usize>> {
        let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8"));
        if head.len() < HEADER {
            return Err(Some(HEADER));
        }
        if &head[..4] != MAGIC || u32_at(4) != VERSION || u32_at(36) != crc32c::crc32c(&head[..36])
        {
            return Err(None);
        }
        let blocks = u32_at(24) as usize;
        let data_at = HEADER + blocks * 8;
        if data_at as u64 > file_len {
            return Err(None);
        }
        if head.len() < data_at {
            return Err(Some(data_at));
        }
        let table = &head[HEADER..data_at];
        if crc32c::crc32c(table) != u32_at(28) {
            return Err(None);
        }
        let ends: Vec<u64> = table
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect();
        let raw_len = u64_at(16);
        let sorted = ends.windows(2).all(|w| w[0] <= w[1]);
        let fits =
            (data_at as u64).checked_add(ends.last().copied().unwrap_or(0)) == Some(file_len);
        if !sorted || !fits || (raw_len as usize).div_ceil(PACK_BLOCK) != blocks {
            return Err(None);
        }
        Ok(Layout {
            first: u64_at(8),
            raw_len,
            ends,
            data_at: data_at as u64,
        })
    }

    /// The compressed span of blocks `a..=b` in the file.
    fn span(&self, a: usize, b: usize) -> (u64, u64) {
        let start = if a == 0 { 0 } else { self.ends[a - 1] };
        (self.data_at + start, self.data_at + self.ends[b])
    }

    /// Raw bytes `[off, off + len)` (fewer past the end) from `bytes`, the
    /// compressed blocks `a..=b` read from file offset `span_at`.
    fn raw(
        &self,
        off: u64,
        len: usize,
        bytes: &[u8],
        span_at: u64,
        a: usize,
        b: usize,
    ) -> std::io::Result<Vec<u8>> {
        let mut dec = snap::raw::Decoder::new();
        let mut raw = Vec::with_capacity((b - a + 1) * PACK_BLOCK);
        for i in a..=b {
            let (s, e) = self.span(i, i);
            let block = &bytes[(s - span_at) as usize..(e - span_at) as usize];
            let n = snap::raw::decompress_len(block).map_err(|e| damaged(&e.to_string()))?;
            // Every block but the last holds `PACK_BLOCK` bytes of the segment.
            let want = (self.raw_len - (i * PACK_BLOCK) as u64).min(PACK_BLOCK as u64);
            if n as u64 != want {
                return Err(damaged("block length"));
            }
            let at = raw.len();
            raw.resize(at + n, 0);
            dec.decompress(block, &mut raw[at..])
                .map_err(|e| damaged(&e.to_string()))?;
        }
        let skip = (off - (a * PACK_BLOCK) as u64) as usize;
        let end = (skip + len).min(raw.len());
        Ok(raw.get(skip..end).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// The blocks covering raw `[off, off + len)`, if any.
    fn blocks(&self, off: u64, len: usize) -> Option<(usize, usize)> {
        if off >= self.raw_len || len == 0 {
            return None;
        }
        let last = (off + len as u64).min(self.raw_len) - 1;
        Some((
            (off / PACK_BLOCK as u64) as usize,
            (last / PACK_BLOCK as u64) as usize,
        ))
    }
}

/// A packed segment open for reading.
pub struct Packed {
    pub file: Rc<DmaFile>,
    pub path: PathBuf,
    pub layout: Layout,
    /// Bytes on disk.
    pub file_len: u64,
}

impl Packed {
    pub async fn open(path: &Path) -> std::io::Result<Packed> {
        let io = |e: glommio::GlommioError<()>| std::io::Error::other(e.to_string());
        let file = DmaFile::open(path).await.map_err(io)?;
        let len = file.file_size().await.map_err(io)?;
        let mut want = HEADER;
        let layout = loop {
            let head = file.read_at(0, want).await.map_err(io)?;
            match Layout::parse(&head, len) {
                Ok(l) => break l,
                Err(Some(n)) if n > want && head.len() == want => want = n,
                _ => return Err(damaged("header or table")),
            }
        };
        Ok(Packed {
            file: Rc::new(file),
            path: path.to_path_buf(),
            layout,
            file_len: len,
        })
    }

    /// Raw bytes `[off, off + len)` of the segment (fewer past its end).
    pub async fn read(&self, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let Some((a, b)) = self.layout.blocks(off, len) else {
            return Ok(Vec::new());
        };
        let (s, e) = self.layout.span(a, b);
        let bytes = self
            .file
            .read_at(s, (e - s) as usize)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if bytes.len() < (e - s) as usize {
            return Err(damaged("short read"));
        }
        self.layout.raw(off, len, &bytes, s, a, b)
    }
}

/// The record bytes of the segment at `path`, packed or as written, read
/// whole (blocking: start-up).
pub fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    if !is_packed(path) {
        return Ok(bytes);
    }
    let l = Layout::parse(&bytes, bytes.len() as u64).map_err(|_| damaged("header or table"))?;
    if l.ends.is_empty() {
        return Ok(Vec::new());
    }
    l.raw(0, l.raw_len as usize, &bytes, 0, 0, l.ends.len() - 1)
}

/// Bytes `[off, off + len)` of the segment at `path` and its length, packed
/// or as written (blocking: start-up; fewer bytes past its end).
pub fn read_span(path: &Path, off: u64, len: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let file_len = f.metadata()?.len();
    if !is_packed(path) {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], off + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        return Ok((buf, file_len));
    }
    let mut head = vec![0u8; HEADER];
    let layout = loop {
        f.read_exact_at(&mut head, 0)?;
        match Layout::parse(&head, file_len) {
            Ok(l) => break l,
            Err(Some(n)) if n > head.len() => head.resize(n, 0),
            _ => return Err(damaged("header or table")),
        }
    };
    let Some((a, b)) = layout.blocks(off, len) else {
        return Ok((Vec::new(), layout.raw_len));
    };
    let (s, e) = layout.span(a, b);
    let mut bytes = vec![0u8; (e - s) as usize];
    f.read_exact_at(&mut bytes, s)?;
    Ok((layout.raw(off, len, &bytes, s, a, b)?, layout.raw_len))
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests;
