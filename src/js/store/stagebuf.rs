//! A stream's staged record bytes, in memory aligned for O_DIRECT: a large
//! batch is written straight from it (`FileLog::prepare`) instead of being
//! copied into glommio's buffers, and the same memory then backs the message
//! cache (`freeze` gives the `Bytes` both slice).

use std::ptr::NonNull;

use bytes::Bytes;

use crate::js::store::segment::{align_up, BLOCK};

/// From this capacity on, the allocation starts on a block (a batch this
/// large may be written from it); below, it is malloc's, which grows and
/// shrinks in place.
const ALIGNED_FROM: usize = 128 * 1024;
const _: () = assert!(crate::limits::STAGED_DIRECT_MIN >= ALIGNED_FROM);

/// Growable bytes in an allocation of whole blocks, so the block after the
/// last byte can be padded in place; block-aligned from `ALIGNED_FROM` on.
pub struct StageBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// The buffer owns its allocation alone; nothing in it is tied to a thread.
unsafe impl Send for StageBuf {}

impl Default for StageBuf {
    fn default() -> Self {
        StageBuf {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }
}

impl StageBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Room for `more` bytes past the end: at least double, as `Vec` grows
    /// (callers reserve a batch's expected size up front), in whole blocks.
    pub fn reserve(&mut self, more: usize) {
        let want = self.len.checked_add(more).expect("staged size overflows");
        if want > self.cap {
            self.realloc(align_up(want.max(2 * self.cap) as u64) as usize);
        }
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        // SAFETY: reserved above; the regions cannot overlap (ours is owned).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len += bytes.len();
    }

    /// Gives back capacity beyond the block after the last byte.
    pub fn shrink_to_fit(&mut self) {
        let want = align_up(self.len as u64) as usize;
        if want < self.cap {
            self.realloc(want);
        }
    }

    /// The bytes up to the end of the last block, the tail zeroed (what a
    /// direct write of them puts on disk), and how many of them are staged.
    pub fn freeze(mut self) -> (Bytes, usize) {
        let len = self.len;
        let padded = align_up(len as u64) as usize;
        // SAFETY: capacity is whole blocks, so `padded` is within it.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(len), 0, padded - len) };
        self.len = padded;
        (Bytes::from_owner(self), len)
    }

    /// Moves to an allocation of `cap` bytes (0: none). Below `ALIGNED_FROM`
    /// it is malloc's own (realloc grows and shrinks it in place where it
    /// can, as a `Vec`); from there on it starts on a block, for direct
    /// writes. A shrink stays in place when malloc keeps the address.
    fn realloc(&mut self, cap: usize) {
        let old = self.ptr.as_ptr() as *mut libc::c_void;
        let (was_big, big) = (self.cap >= ALIGNED_FROM, cap >= ALIGNED_FROM);
        let keep = self.len.min(cap);
        if cap == 0 {
            if self.cap > 0 {
                // SAFETY: malloc'd by this type.
                unsafe { libc::free(old) };
            }
            (self.ptr, self.cap, self.len) = (NonNull::dangling(), 0, 0);
            return;
        }
        if self.cap > 0 && (!big || (was_big && cap < self.cap)) {
            // SAFETY: malloc'd by this type; realloc keeps `keep` bytes.
            let p = unsafe { libc::realloc(old, cap) } as *mut u8;
            match NonNull::new(p) {
                Some(p) if !big || (p.as_ptr() as usize).is_multiple_of(BLOCK as usize) => {
                    (self.ptr, self.cap, self.len) = (p, cap, keep);
                    return;
                }
                // Moved off a block boundary: copied again below, from `p`.
                Some(p) => self.ptr = p,
                None => alloc_failed(cap),
            }
        }
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: plain allocations; `p` is written only on success.
        let ok = unsafe {
            if big {
                libc::posix_memalign(&mut p, BLOCK as usize, cap) == 0
            } else {
                p = libc::malloc(cap);
                !p.is_null()
            }
        };
        let Some(p) = NonNull::new(p as *mut u8).filter(|_| ok) else {
            alloc_failed(cap)
        };
        if self.cap > 0 {
            // SAFETY: both hold at least `keep` bytes and are distinct; the
            // old one was malloc'd by this type.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), p.as_ptr(), keep);
                libc::free(self.ptr.as_ptr() as *mut libc::c_void);
            }
        }
        (self.ptr, self.cap, self.len) = (p, cap, keep);
    }
}

fn alloc_failed(cap: usize) -> ! {
    std::alloc::handle_alloc_error(
        std::alloc::Layout::from_size_align(cap, BLOCK as usize).expect("a valid layout"),
    )
}

impl Drop for StageBuf {
    fn drop(&mut self) {
        self.realloc(0);
    }
}

impl std::ops::Deref for StageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes are initialized (dangling and 0 when empty).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for StageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for StageBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::StageBuf;

    #[test]
    fn grows_keeps_bytes_and_freezes_block_aligned_with_zeroed_tail() {
        let mut b = StageBuf::default();
        assert_eq!((b.len(), b.capacity(), &b[..]), (0, 0, &[][..]));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        for piece in data.chunks(777) {
            b.extend_from_slice(piece);
        }
        assert_eq!(&b[..], &data[..]);
        assert_eq!(b.capacity() % 4096, 0);
        b.reserve(100_000);
        assert!(b.capacity() >= 110_000);
        let cap = b.capacity();
        b.reserve(cap - b.len() + 1); // one past: doubles
        assert_eq!(b.capacity(), 2 * cap);
        b.shrink_to_fit();
        assert_eq!(b.capacity(), 12_288);
        assert_eq!(&b[..], &data[..]);
        let (frozen, len) = b.freeze();
        assert_eq!(len, 10_000);
        assert_eq!(frozen.len(), 12_288);
        assert_eq!(&frozen[..len], &data[..]);
        assert!(frozen[len..].iter().all(|&z| z == 0));
    }

    #[test]
    fn a_large_buffer_starts_on_a_block_through_growth_and_shrinking() {
        let aligned = |b: &StageBuf| (b.as_ptr() as usize).is_multiple_of(4096);
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        let mut b = StageBuf::default();
        b.extend_from_slice(&data[..100]);
        b.reserve(1 << 20); // small to large
        assert!(aligned(&b));
        b.extend_from_slice(&data[100..]);
        b.reserve(3 << 20); // large, grown
        assert!(aligned(&b) && b.capacity() >= 700_000 + (3 << 20));
        b.shrink_to_fit(); // large, shrunk
        assert!(aligned(&b));
        assert_eq!(b.capacity(), 700_416);
        assert!(b[..] == data[..]);
        let (frozen, len) = b.freeze();
        assert!((frozen.as_ptr() as usize).is_multiple_of(4096));
        assert_eq!(frozen.len(), 700_416);
        assert!(frozen[..len] == data[..]);
        // Back below the bound: the bytes survive the move to malloc's memory.
        let mut b = StageBuf::default();
        b.extend_from_slice(&data);
        b.clear();
        b.extend_from_slice(&data[..5000]);
        b.shrink_to_fit();
        assert_eq!(b.capacity(), 8192);
        assert!(b[..] == data[..5000]);
    }

    #[test]
    fn clear_keeps_capacity_and_an_empty_buffer_freezes_empty() {
        let mut b = StageBuf::default();
        b.extend_from_slice(b"abc");
        b.clear();
        assert_eq!((b.len(), b.capacity()), (0, 4096));
        let (frozen, len) = StageBuf::default().freeze();
        assert_eq!((frozen.len(), len), (0, 0));
    }
}
