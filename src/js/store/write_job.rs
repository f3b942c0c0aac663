//! One group-commit write to a segment: block-aligned DMA pieces submitted
//! together, or (interval mode) the same bytes through the page cache.

use std::rc::Rc;

use glommio::io::{BufferedFile, DmaBuffer, DmaFile};

use crate::limits::{DMA_IO_MAX, DMA_WRITE_MAX};

// `piece_size` clamps between the two (a panic if reversed), in whole blocks.
const _: () = assert!(DMA_IO_MAX <= DMA_WRITE_MAX);
const _: () = assert!((DMA_WRITE_MAX as u64).is_multiple_of(super::segment::BLOCK));

/// One group-commit write: aligned buffers for consecutive file ranges, or
/// (interval mode) the same bytes in one write through the page cache.
pub struct WriteJob {
    file: Rc<DmaFile>,
    chunks: Vec<(u64, DmaBuffer)>,
    cached: Option<(Rc<BufferedFile>, u64, Vec<u8>)>,
}

impl WriteJob {
    pub(super) fn new(
        file: Rc<DmaFile>,
        chunks: Vec<(u64, DmaBuffer)>,
        cached: Option<(Rc<BufferedFile>, u64, Vec<u8>)>,
    ) -> WriteJob {
        WriteJob {
            file,
            chunks,
            cached,
        }
    }

    /// A write of `data` (block-aligned position, whole blocks) at `pos`.
    pub fn single(file: Rc<DmaFile>, pos: u64, data: &[u8]) -> WriteJob {
        let chunks = pieces(data.len(), piece_max(&file))
            .map(|(at, n)| {
                let mut buf = file.alloc_dma_buffer(n);
                buf.as_bytes_mut().copy_from_slice(&data[at..at + n]);
                (pos + at as u64, buf)
            })
            .collect();
        WriteJob::new(file, chunks, None)
    }

    pub async fn run(self) -> std::io::Result<()> {
        if let Some((file, pos, data)) = self.cached {
            let want = data.len();
            let n = file.write_at(data, pos).await?;
            return whole(n, want);
        }
        if self.chunks.len() == 1 {
            let (pos, buf) = self.chunks.into_iter().next().expect("one chunk");
            let want = buf.len();
            let n = self.file.write_at(buf, pos).await?;
            return whole(n, want);
        }
        // Every chunk is submitted before any is awaited, so they are in flight together.
        let handles: Vec<_> = self
            .chunks
            .into_iter()
            .map(|(pos, buf)| {
                let file = self.file.clone();
                glommio::spawn_local(async move {
                    let want = buf.len();
                    let n = file.write_at(buf, pos).await?;
                    whole(n, want)
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            if let Err(e) = h.await {
                result = Err(e);
            }
        }
        result
    }
}

fn whole(n: usize, want: usize) -> std::io::Result<()> {
    if n == want {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "short write: {n} of {want} bytes"
        )))
    }
}

/// The largest piece a write to `file` is cut into: the device's largest
/// single request (`max_sectors_kb`, which glommio reads at open; 128 KiB when
/// it cannot tell), within `DMA_IO_MAX..=DMA_WRITE_MAX`, in whole blocks. Never
/// above the device's limit: larger requests have hung some kernels (glommio
/// issue 633).
pub(super) fn piece_max(file: &DmaFile) -> usize {
    piece_size(file.max_sectors_size())
}

fn piece_size(device_max: usize) -> usize {
    let block = super::segment::BLOCK as usize;
    device_max.clamp(DMA_IO_MAX, DMA_WRITE_MAX) / block * block
}

/// Offset and length of each piece of at most `max` bytes of a `len`-byte write.
pub(super) fn pieces(len: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(max)
        .map(move |at| (at, (len - at).min(max)))
}

/// Copies bytes `[from, from + out.len())` of `carry ++ staged` into `out`,
/// zero-filling past their end.
pub(super) fn fill(out: &mut [u8], from: usize, carry: &[u8], staged: &[u8]) {
    let mut at = 0;
    if from < carry.len() {
        let n = (carry.len() - from).min(out.len());
        out[..n].copy_from_slice(&carry[from..from + n]);
        at = n;
    }
    let s_from = (from + at).saturating_sub(carry.len());
    if s_from < staged.len() && at < out.len() {
        let n = (staged.len() - s_from).min(out.len() - at);
        out[at..at + n].copy_from_slice(&staged[s_from..s_from + n]);
        at += n;
    }
    out[at..].fill(0);
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    #[test]
    fn pieces_cover_the_write_in_order() {
        let got: Vec<_> = super::pieces(10, 4).collect();
        assert_eq!(got, vec![(0, 4), (4, 4), (8, 2)]);
        let got: Vec<_> = super::pieces(8, 4).collect();
        assert_eq!(got, vec![(0, 4), (4, 4)]);
        assert_eq!(super::pieces(0, 4).count(), 0);
    }

    #[test]
    fn pieces_follow_the_device_within_bounds() {
        use crate::limits::{DMA_IO_MAX, DMA_WRITE_MAX};
        assert_eq!(super::piece_size(0), DMA_IO_MAX);
        assert_eq!(super::piece_size(1280 * 1024), 1280 * 1024);
        assert_eq!(super::piece_size(1280 * 1024 + 512), 1280 * 1024);
        assert_eq!(super::piece_size(32 << 20), DMA_WRITE_MAX);
    }

    #[test]
    fn fill_joins_carry_and_staged_then_zeros() {
        let carry = b"abc";
        let staged = b"defgh";
        for from in 0..10 {
            for len in 0..10 {
                let mut out = vec![9u8; len];
                super::fill(&mut out, from, carry, staged);
                let all: Vec<u8> = b"abcdefgh"
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .skip(from)
                    .take(len)
                    .collect();
                assert_eq!(out, all, "from {from} len {len}");
            }
        }
    }
}
