//! Packing sealed segments (`compression: "s2"`; format in `store::packed`).
//! Once a sealed segment's index file is written, the stream's seal task
//! reads the segment, compresses it a block at a time (yielding between
//! blocks), writes `<first>.sz` (temporary name, fdatasync, rename, directory
//! sync), switches reads to it and removes the segment as written. A crash
//! in between leaves both files; start-up keeps the one as written. An
//! erase in a packed segment packs it again with the record overwritten.

use std::path::Path;
use std::rc::Rc;

use crate::js::store::packed::{self, Packed};
use crate::js::store::segment::{self as filelog, align_up};
use crate::js::stream::Stream;

impl Stream {
    /// Packs sealed segment `first`, if the stream compresses and it is
    /// still there, sealed and not packed; a failure is logged and leaves
    /// the segment as it is. The segment is not removed meanwhile. A copy
    /// made stale by an erase is made again (a few times at most).
    pub(super) async fn pack(&self, first: u64) {
        for _ in 0..3 {
            if !self.pack_once(first).await {
                return;
            }
        }
    }

    /// Packs every sealed segment not packed yet (at start-up: a crash cut
    /// packing short, or the stream took `s2` since), one after another, in
    /// the background.
    pub fn pack_sealed(self: &Rc<Self>) {
        if self.cfg.borrow().compression != "s2" {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            let todo: Vec<u64> = me.log.borrow().as_ref().map_or(Vec::new(), |l| {
                let raw = |(k, s): (&u64, &crate::js::store::segment::Segment)| {
                    (*k != l.active && s.packed.is_none()).then_some(*k)
                };
                l.segs.iter().filter_map(raw).collect()
            });
            for first in todo {
                me.pack(first).await;
            }
        })
        .detach();
    }

    /// One try of `pack`: true when its copy was stale (try again).
    async fn pack_once(&self, first: u64) -> bool {
        if self.cfg.borrow().compression != "s2" || !self.dir.exists() {
            return false;
        }
        let seg = self.log.borrow_mut().as_mut().and_then(|l| {
            let active = l.active;
            let s = l.segs.get_mut(&first).filter(|_| active != first)?;
            let file = s.file.clone().filter(|_| s.packed.is_none())?;
            s.packing = true;
            Some((file, s.size, s.erased))
        });
        let Some((file, size, erased)) = seg else {
            return false;
        };
        let packed = match read_raw(file, size).await {
            Ok(raw) => write_packed(&self.dir, first, &raw).await,
            Err(e) => Err(e),
        };
        // Erased meanwhile: the packed copy is stale.
        let raw_path = {
            let mut log = self.log.borrow_mut();
            let seg = log.as_mut().and_then(|l| l.segs.get_mut(&first));
            match (seg, packed) {
                (Some(s), Ok(p)) if s.erased == erased => {
                    s.packing = false;
                    s.file = None;
                    s.packed = Some(Rc::new(p));
                    Ok(std::mem::replace(
                        &mut s.path,
                        packed_path(&self.dir, first),
                    ))
                }
                (s, p) => {
                    let stale = s.as_ref().is_some_and(|s| s.erased != erased) && p.is_ok();
                    if let Some(s) = s {
                        s.packing = false;
                    }
                    Err((p.err(), stale))
                }
            }
        };
        match raw_path {
            Ok(raw) => {
                remove(&self.dir, &raw).await;
                false
            }
            Err((e, stale)) => {
                remove(&self.dir, &packed_path(&self.dir, first)).await;
                if let Some(e) = e {
                    crate::warn!(
                        "JetStream stream '{}': compressing segment {first}: {e}; it stays as written",
                        self.name
                    );
                }
                stale
            }
        }
    }

    /// Packs segment `first` again from `raw`, its bytes with an erased
    /// record overwritten (the writer runs this, nothing else is in flight;
    /// the segment is not removed meanwhile).
    pub(super) async fn repack(&self, first: u64, raw: &[u8]) -> std::io::Result<()> {
        let mark = |on: bool| {
            let mut log = self.log.borrow_mut();
            let s = log.as_mut().and_then(|l| l.segs.get_mut(&first));
            s.map(|s| s.packing = on).is_some()
        };
        if !mark(true) {
            return Ok(()); // gone: nothing left to erase
        }
        let p = write_packed(&self.dir, first, raw).await;
        mark(false);
        let p = p?;
        if let Some(s) = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.segs.get_mut(&first))
        {
            s.packed = Some(Rc::new(p));
        }
        Ok(())
    }
}

/// The first `size` bytes of a segment as written.
async fn read_raw(file: Rc<glommio::io::DmaFile>, size: u64) -> std::io::Result<Vec<u8>> {
    let mut b = filelog::read_blocks(file, 0, align_up(size) as usize).await?;
    if (b.len() as u64) < size {
        return Err(std::io::Error::other("short read"));
    }
    b.truncate(size as usize);
    Ok(b)
}

fn packed_path(dir: &Path, first: u64) -> std::path::PathBuf {
    dir.join(packed::packed_name(first))
}

/// Writes `raw`, segment `first`'s record bytes, packed as `<first>.sz`
/// (durably, replacing any before) and opens it.
async fn write_packed(dir: &Path, first: u64, raw: &[u8]) -> std::io::Result<Packed> {
    use futures_lite::AsyncWriteExt;
    let bytes = packed::pack(first, raw, glommio::yield_if_needed).await?;
    let io = |e: glommio::GlommioError<()>| std::io::Error::other(e.to_string());
    let path = packed_path(dir, first);
    let tmp = path.with_extension("sz.tmp");
    let file = glommio::io::DmaFile::create(&tmp).await.map_err(io)?;
    let mut w = glommio::io::DmaStreamWriterBuilder::new(file)
        .with_buffer_size(128 * 1024)
        .build();
    w.write_all(&bytes).await?;
    w.sync().await.map_err(io)?;
    w.close().await?;
    glommio::io::rename(&tmp, &path).await.map_err(io)?;
    filelog::sync_dir_async(dir).await?;
    Packed::open(&path).await
}

/// Removes a file a segment no longer needs (a missing one is fine), and
/// makes that durable: a crash must not bring back the one it replaced by.
async fn remove(dir: &Path, path: &Path) {
    let _ = glommio::io::remove(path).await;
    let _ = filelog::sync_dir_async(dir).await;
}
