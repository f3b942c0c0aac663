//! A file stream's segments: O_DIRECT append-only files written through
//! glommio's DMA API in 4 KiB-aligned blocks, and read back with aligned reads.
//!
//! Writing is split so no borrow is held across I/O: `prepare` takes the staged
//! records (plus the partial last block, rewritten each time) into DMA buffers,
//! the writer task awaits `WriteJob::run`, then `finish` records the new end.
//! Segments roll over at `segment_bytes` (`--segment_bytes`); a segment is named by the first
//! sequence it was opened for. Recovery (`recover`) runs once at start with
//! blocking reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};

use crate::js::store::packed::Packed;
pub use crate::js::store::write_job::WriteJob;
use crate::js::store::write_job::{fill, piece_max, pieces};
use crate::limits::{CACHED_WRITE_MAX, DMA_IO_MAX, STAGED_DIRECT_MIN};
use crate::limits::{SEGMENT_DELETE_CHUNK, SEGMENT_DELETE_PACE};

/// The unit of every DMA read and write, and of segment offsets' alignment.
pub const BLOCK: u64 = 4096;

// A DMA piece is whole blocks; the smallest segment is one block.
const _: () = assert!((crate::limits::DMA_IO_MAX as u64).is_multiple_of(BLOCK));
const _: () = assert!(crate::limits::SEGMENT_BYTES_MIN == BLOCK);

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(BLOCK - 1)
}
pub(crate) fn align_up(v: u64) -> u64 {
    (v + BLOCK - 1) & !(BLOCK - 1)
}

pub struct Segment {
    /// `<first>.seg`, or `<first>.sz` once packed.
    pub path: PathBuf,
    /// The file as written (None once packed, and while not open).
    pub file: Option<Rc<DmaFile>>,
    /// The same file through the page cache: interval mode's appends go this
    /// way (see `FileLog::prepare`); the active segment only.
    pub cached: Option<Rc<BufferedFile>>,
    /// The segment compressed at rest (`packed`), once it is.
    pub packed: Option<Rc<Packed>>,
    /// Erases begun and finished so far: a packed copy made while one ran is
    /// stale.
    pub erased: u32,
    /// Being packed (`stream::pack`): not removed until that is done.
    pub packing: bool,
    /// Bytes of records on disk.
    pub size: u64,
    /// Live messages stored in this segment.
    pub live: u64,
    /// Holds delete or floor records: those speak for messages in older
    /// segments, so the segment may only go once it is the oldest.
    pub markers: bool,
}

/// What a segment is read through: its file as written, or its packed copy.
#[derive(Clone)]
pub enum SegRead {
    Raw(Rc<DmaFile>),
    Packed(Rc<Packed>),
}

impl Segment {
    /// A segment found at start-up (`size` bytes of records; `markers`: it
    /// holds delete or floor records), its files not open yet.
    pub fn found(path: PathBuf, size: u64, markers: bool) -> Segment {
        Segment {
            path,
            file: None,
            cached: None,
            packed: None,
            erased: 0,
            packing: false,
            size,
            live: 0,
            markers,
        }
    }

    /// Closes its files (explicitly, as glommio asks; readers holding one
    /// keep it open until they are done).
    async fn close(&mut self) {
        if let Some(Ok(f)) = self.cached.take().map(Rc::try_unwrap) {
            let _ = f.close().await;
        }
        let packed = self.packed.take().and_then(|p| Rc::try_unwrap(p).ok());
        for f in [self.file.take(), packed.map(|p| p.file)]
            .into_iter()
            .flatten()
        {
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
    }

    pub fn reader(&self) -> Option<SegRead> {
        match (&self.packed, &self.file) {
            (Some(p), _) => Some(SegRead::Packed(p.clone())),
            (None, Some(f)) => Some(SegRead::Raw(f.clone())),
            (None, None) => None,
        }
    }
}

impl SegRead {
    /// Up to `len` bytes from block-aligned `start` (fewer at the end).
    pub async fn read_blocks(&self, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
        match self {
            SegRead::Raw(f) => read_blocks(f.clone(), start, len).await,
            SegRead::Packed(p) => p.read(start, len).await,
        }
    }

    /// Exactly `len` bytes at `off` (None: the segment ends before).
    pub async fn read_at(&self, off: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            SegRead::Raw(f) => read_at(f, off, len).await,
            SegRead::Packed(p) => {
                let b = p.read(off, len).await?;
                Ok((b.len() == len).then_some(b))
            }
        }
    }
}

/// A segment to write the index file of: first sequence, file, bytes used,
/// and the index built as it was written (if known from its first record).
pub type Sealed = (
    u64,
    Rc<DmaFile>,
    u64,
    Option<crate::js::store::segindex::Builder>,
);

pub struct FileLog {
    pub dir: PathBuf,
    pub segs: BTreeMap<u64, Segment>,
    pub active: u64,
    /// The written partial last block of the active segment (always rewritten
    /// whole with the next records) and its file offset.
    carry: Vec<u8>,
    carry_base: u64,
    pub sync: bool,
    pub segment_bytes: u64,
    /// End of the data of the last write issued (completed or not).
    reserved_end: u64,
    inflight: usize,
    /// The active segment's index file as its writes complete (complete from
    /// its first record; None when not known, and the segment is read back
    /// when it is sealed). About 5 bytes a message of that one segment.
    pub building: Option<crate::js::store::segindex::Builder>,
    /// The segment a page-cache handle was last opened (or tried) for.
    cached_tried: Option<u64>,
}

/// The log state before a write, to go back to if it fails.
pub struct Restore {
    carry: Vec<u8>,
    carry_base: u64,
    reserved_end: u64,
}

impl Restore {
    /// Where the data ended before the failed write.
    pub fn end(&self) -> u64 {
        self.reserved_end
    }
}

impl FileLog {
    /// True when the active segment is full and the next write should roll
    /// (only once nothing is in flight).
    pub fn should_roll(&self) -> bool {
        self.reserved_end >= self.segment_bytes
    }

    /// Makes a freshly created file the active segment for records from `first`.
    pub fn install(&mut self, first: u64, path: PathBuf, file: DmaFile) {
        self.segs.insert(
            first,
            Segment {
                path,
                file: Some(Rc::new(file)),
                cached: None,
                packed: None,
                erased: 0,
                packing: false,
                size: 0,
                live: 0,
                markers: false,
            },
        );
        self.active = first;
        self.carry.clear();
        self.carry_base = 0;
        self.reserved_end = 0;
        self.building = Some(crate::js::store::segindex::Builder::new(first));
    }

    /// The active segment for its index file: first sequence, file, bytes
    /// used, and the index built as it was written (taken: the segment is
    /// being sealed, or the log closed).
    pub fn take_active_index(&mut self) -> Option<Sealed> {
        let s = self.segs.get(&self.active)?;
        let file = s.file.clone()?;
        Some((self.active, file, s.size, self.building.take()))
    }

    /// Adds the records of a completed write (`batch`, written at `base` of
    /// segment `seg`) to the active segment's index file.
    pub fn index_written(&mut self, seg: u64, base: u64, batch: &[u8]) {
        use crate::js::store::record;
        let Some(b) = self.building.as_mut().filter(|b| b.first() == seg) else {
            return;
        };
        let mut pos = 0;
        while pos < batch.len() {
            let record::Decoded::Record(r, n) = record::decode_own(&batch[pos..]) else {
                // Never: the writer encoded these. Not knowing beats guessing.
                self.building = None;
                return;
            };
            let head = u64::from_le_bytes(batch[pos..pos + 8].try_into().expect("8 bytes"));
            let off = base + pos as u64;
            let rec = crate::js::store::recovery::Recovered {
                seg,
                off,
                kind: r.kind,
                seq: r.seq,
                ts: r.ts,
                subject: r.subject,
                hdr_len: r.hdr_len,
                len: r.data.len(),
                hdr: &r.data[..r.hdr_len],
                data: None,
            };
            b.add(&rec, head, off + n as u64);
            pos += n;
        }
    }

    /// Takes segment `first` out of the log (never the active one).
    pub fn take_segment(&mut self, first: u64) -> Option<Segment> {
        if first == self.active {
            return None;
        }
        self.segs.remove(&first)
    }

    /// Builds the write for the first `len` bytes of `frozen` (staged records,
    /// zero-padded to a block: `StageBuf::freeze`). With no write in flight
    /// they follow the carry (the partial last block is rewritten whole); with
    /// writes in flight, or a batch of `STAGED_DIRECT_MIN` or more (written
    /// from `frozen` itself, no copy), they start at the next block, so
    /// concurrent writes never touch the same block (the gap is zeros, which
    /// recovery skips). Returns the job, the file offset of the first staged
    /// byte, and the state to restore if it fails.
    pub fn prepare(&mut self, frozen: &Bytes, len: usize) -> (WriteJob, u64, Restore) {
        let staged = &frozen[..len];
        assert!(
            self.carry_base <= self.reserved_end,
            "the carry lies within what was issued"
        );
        let restore = Restore {
            carry: self.carry.clone(),
            carry_base: self.carry_base,
            reserved_end: self.reserved_end,
        };
        let seg = &self.segs[&self.active];
        let file = seg.file.clone().expect("active segment is open");
        let cache_it = seg.cached.is_some() && !self.sync && len <= CACHED_WRITE_MAX;
        // A large batch goes from its own memory, so it starts a block: the
        // gap after the last write's end (< 4 KiB, under 1% of the batch) is
        // padding, as after a concurrent write.
        let in_place = len >= STAGED_DIRECT_MIN && !cache_it;
        let (start, prefix): (u64, &[u8]) = if self.inflight == 0 && !in_place {
            (self.carry_base, &self.carry)
        } else {
            (align_up(self.reserved_end), &[])
        };
        let total = prefix.len() + staged.len();
        let padded = align_up(total as u64) as usize;
        // Interval mode acks a small write once it is in the kernel, as
        // nats-server does: the page cache keeps it through a crash of the
        // process, and the periodic fdatasync (of the inode, whichever
        // descriptor) takes it to the disk. Same bytes and padding as a
        // direct write, so the file reads the same either way. Larger writes
        // stay direct: one copy fewer, and no page-cache churn at full load.
        let cached = seg.cached.clone().filter(|_| cache_it).map(|c| {
            let mut data = Vec::with_capacity(padded);
            data.extend_from_slice(prefix);
            data.extend_from_slice(staged);
            data.resize(padded, 0);
            (c, start, data)
        });
        let direct = if cached.is_some() { 0 } else { padded };
        let chunks = pieces(direct, piece_max(&file))
            .map(|(at, n)| {
                let buf = if in_place {
                    glommio::io::DmaBuffer::from_owner(frozen.slice(at..at + n))
                } else {
                    let mut buf = file.alloc_dma_buffer(n);
                    fill(buf.as_bytes_mut(), at, prefix, staged);
                    buf
                };
                (start + at as u64, buf)
            })
            .collect();
        let staged_at = start + prefix.len() as u64;
        let end = staged_at + staged.len() as u64;
        // The next write issued after this one completes rewrites its last block.
        let new_base = align_down(end);
        let mut carry = Vec::with_capacity((end - new_base) as usize);
        let from = (new_base - start) as usize;
        if from < prefix.len() {
            carry.extend_from_slice(&prefix[from..]);
            carry.extend_from_slice(staged);
        } else {
            carry.extend_from_slice(&staged[from - prefix.len()..]);
        }
        self.carry = carry;
        self.carry_base = new_base;
        self.reserved_end = end;
        self.inflight += 1;
        // Synchronous mode opens files O_DSYNC: each piece is its own fdatasync.
        (WriteJob::new(file, chunks, cached), staged_at, restore)
    }

    /// Applies bytes rewritten at `start` of segment `seg` to the carry, if
    /// they cover the active segment's last partial block.
    pub fn patch_carry(&mut self, seg: u64, start: u64, bytes: &[u8]) {
        if seg != self.active || self.carry.is_empty() {
            return;
        }
        let (c0, c1) = (self.carry_base, self.carry_base + self.carry.len() as u64);
        let (b0, b1) = (start, start + bytes.len() as u64);
        let (lo, hi) = (c0.max(b0), c1.min(b1));
        if lo < hi {
            self.carry[(lo - c0) as usize..(hi - c0) as usize]
                .copy_from_slice(&bytes[(lo - b0) as usize..(hi - b0) as usize]);
        }
    }

    /// Records a completed write that ends at `end`.
    pub fn finish(&mut self, end: u64) {
        assert!(self.inflight > 0, "a write completes only once");
        assert!(end <= self.reserved_end, "written <= reserved");
        self.inflight -= 1;
        if let Some(seg) = self.segs.get_mut(&self.active) {
            seg.size = seg.size.max(end);
        }
    }

    /// Forgets a failed write and everything issued after it (all of which
    /// have completed): the log ends where it ended before.
    pub fn rollback(&mut self, restore: Restore) {
        assert!(
            restore.reserved_end <= self.reserved_end,
            "a rollback goes back, never forward"
        );
        self.inflight = 0;
        self.carry = restore.carry;
        self.carry_base = restore.carry_base;
        self.reserved_end = restore.reserved_end;
        if let Some(seg) = self.segs.get_mut(&self.active) {
            seg.size = restore.reserved_end;
        }
    }

    /// Interval mode: the active segment, when it has no page-cache handle
    /// yet and none was tried for it (the writer opens one before writing).
    pub fn wants_cached(&mut self) -> Option<(u64, PathBuf)> {
        if self.sync || self.cached_tried == Some(self.active) {
            return None;
        }
        self.cached_tried = Some(self.active);
        let s = self.segs.get(&self.active)?;
        (s.cached.is_none() && s.file.is_some()).then(|| (self.active, s.path.clone()))
    }

    /// Interval mode: writes to segment `seg` go through `file` from now on.
    pub fn set_cached(&mut self, seg: u64, file: BufferedFile) {
        if let Some(s) = self.segs.get_mut(&seg) {
            s.cached = Some(Rc::new(file));
        }
    }

    /// Writes in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Closes every file (explicitly, as glommio asks).
    pub async fn close(&mut self) {
        for seg in self.segs.values_mut() {
            seg.close().await;
        }
    }
}

/// Closes and deletes a segment whose messages are all gone.
pub async fn discard_segment(mut seg: Segment, stream: &str) {
    // Its index file first: a segment cut short must never meet it again.
    crate::js::store::segindex::remove(&seg.path).await;
    let packed_len = seg.packed.as_ref().map(|p| p.file_len);
    seg.close().await;
    // Freeing a whole segment at once makes the file system discard (TRIM)
    // it in one journal commit, which every synchronous write on the disk
    // then waits for (tens of ms on a disk mounted with `discard`): it is
    // cut down a chunk at a time, paced, and only then unlinked.
    let path = seg.path.clone();
    let mut len = packed_len.unwrap_or(seg.size);
    let mut failed = None;
    while len > 0 && failed.is_none() {
        len = len.saturating_sub(SEGMENT_DELETE_CHUNK);
        let p = path.clone();
        let cut = glommio::executor()
            .spawn_blocking(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_len(len))
            })
            .await;
        match cut {
            Ok(()) if len > 0 => glommio::timer::sleep(SEGMENT_DELETE_PACE).await,
            Ok(()) => {}
            Err(e) => failed = Some(e),
        }
    }
    let removed = match failed {
        Some(e) => Err(e),
        None => {
            glommio::executor()
                .spawn_blocking(move || {
                    std::fs::remove_file(&path).and_then(|()| match path.parent() {
                        Some(dir) => sync_dir(dir),
                        None => Ok(()),
                    })
                })
                .await
        }
    };
    match removed {
        Ok(()) => crate::debug!(
            "JetStream stream '{stream}': removed segment {}",
            seg.path.display()
        ),
        // Gone with its stream's directory already: nothing left to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => crate::warn!(
            "JetStream stream '{stream}': cannot remove segment {}: {e}",
            seg.path.display()
        ),
    }
}

/// Reads whole blocks from aligned `start`, up to `len` bytes (fewer at the
/// end of the file), its `DMA_IO_MAX` pieces in flight together (a virtual
/// disk reads many requests at once far faster than one after another).
pub async fn read_blocks(file: Rc<DmaFile>, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut reads = Vec::new();
    let mut at = 0usize;
    while at < len {
        let n = (len - at).min(DMA_IO_MAX);
        let f = file.clone();
        let pos = start + at as u64;
        reads.push((
            n,
            glommio::spawn_local(async move { f.read_at_aligned(pos, n).await }),
        ));
        at += n;
    }
    let mut out = Vec::with_capacity(len);
    for (asked, r) in reads {
        // Copied once, from the DMA buffer into the result.
        let bytes = r.await.map_err(|e| std::io::Error::other(e.to_string()))?;
        let short = bytes.len() < asked;
        out.extend_from_slice(&bytes[..]);
        // The file ends here: later pieces read nothing.
        if short {
            break;
        }
    }
    Ok(out)
}

/// Reads `len` bytes at `off` with aligned reads of at most `DMA_IO_MAX`.
pub async fn read_at(file: &DmaFile, off: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
    let start = align_down(off);
    let end = align_up(off + len as u64);
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut pos = start;
    while pos < end {
        let n = ((end - pos) as usize).min(DMA_IO_MAX);
        let r = file.read_at_aligned(pos, n).await?;
        out.extend_from_slice(&r[..]);
        if r.len() < n {
            break;
        }
        pos += n as u64;
    }
    let skip = (off - start) as usize;
    if out.len() < skip + len {
        return Ok(None);
    }
    Ok(Some(out[skip..skip + len].to_vec()))
}

pub fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Settles, for this shard, whether the store's device takes polled I/O.
///
/// glommio decides it with a read at offset 0 of the first DMA file opened on
/// a device, and caches the answer per device. On an empty file that read
/// succeeds without touching the device, so glommio would pick the poll ring
/// even where the device has no poll queues; every later read then fails with
/// EOPNOTSUPP. Opening a file that has a block of data first makes the probe
/// real.
pub async fn probe_device(root: &Path, shard: u16) -> std::io::Result<()> {
    let path = root.join(format!(".probe-{shard}"));
    std::fs::write(&path, vec![0u8; BLOCK as usize])?;
    let file = open_dma(&path, false).await;
    let _ = std::fs::remove_file(&path);
    file?
        .close()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Reserves a new segment's full size up front, so appends are writes inside
/// the file (the kernel can issue them inline instead of handing each to a
/// worker thread, and no size change needs journaling). Recovery reads the
/// unwritten tail as zeros: the end of the records. Best effort.
pub async fn preallocate(file: &DmaFile, bytes: u64) {
    if let Err(e) = file.pre_allocate(bytes, false).await {
        crate::debug!("segment preallocation failed (appends still work): {e}");
    }
}

/// Opens a segment for writes through the page cache (interval mode).
pub async fn open_cached(path: &Path) -> std::io::Result<BufferedFile> {
    OpenOptions::new()
        .write(true)
        .buffered_open(path)
        .await
        .map_err(|e| match e {
            glommio::GlommioError::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
}

/// Opens a segment for O_DIRECT I/O; with `dsync` every write returns only once
/// it is on stable storage (O_DSYNC: the write is its own fdatasync).
pub async fn open_dma(path: &Path, dsync: bool) -> std::io::Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
        .dma_open(path)
        .await
        .map_err(|e| match e {
            glommio::GlommioError::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `sync_dir` on glommio's blocking-thread pool: a directory fsync can take
/// tens of milliseconds on a busy disk, and must not stall the shard.
pub async fn sync_dir_async(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || sync_dir(&dir))
        .await
}

impl FileLog {
    /// Opens the recovered segments (or a first one) for reading and appending.
    pub async fn open(
        dir: PathBuf,
        mut segs: BTreeMap<u64, Segment>,
        next_seq: u64,
        sync: bool,
        segment_bytes: u64,
        building: Option<crate::js::store::segindex::Builder>,
    ) -> std::io::Result<FileLog> {
        for seg in segs.values_mut() {
            if crate::js::store::packed::is_packed(&seg.path) {
                seg.packed = Some(Rc::new(Packed::open(&seg.path).await?));
            } else {
                seg.file = Some(Rc::new(open_dma(&seg.path, sync).await?));
            }
        }
        let mut log = FileLog {
            dir,
            segs,
            active: 0,
            carry: Vec::new(),
            carry_base: 0,
            sync,
            segment_bytes,
            reserved_end: 0,
            inflight: 0,
            building: None,
            cached_tried: None,
        };
        // A packed last segment is sealed: writes go to a new one.
        let last = log.segs.iter().next_back();
        match last
            .filter(|(_, s)| s.packed.is_none())
            .map(|(k, s)| (*k, s.size))
        {
            Some((first, size)) => {
                log.active = first;
                log.building = building.filter(|b| b.first() == first);
                log.reserved_end = size;
                log.carry_base = align_down(size);
                if size > log.carry_base {
                    let file = log.segs[&first].file.clone().expect("opened above");
                    let want = (size - log.carry_base) as usize;
                    let bytes = read_at(&file, log.carry_base, want).await?;
                    // Rewriting the block without its records would destroy them.
                    log.carry = bytes.ok_or_else(|| {
                        std::io::Error::other(format!(
                            "short read of the last block in {}",
                            log.dir.display()
                        ))
                    })?;
                }
            }
            None => {
                let next_seq = next_seq.max(log.segs.keys().next_back().map_or(0, |k| k + 1));
                let path = log.dir.join(segment_name(next_seq));
                let file = open_dma(&path, sync).await?;
                preallocate(&file, segment_bytes).await;
                sync_dir_async(&log.dir).await?;
                log.install(next_seq, path, file);
            }
        }
        Ok(log)
    }
}
