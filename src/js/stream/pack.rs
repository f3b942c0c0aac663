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
    /// the segment as it is.
    pub(super) async fn pack(&self, first: u64) {
        if self.cfg.borrow().compression != "s2" {
            return;
        }
        let seg = self.log.borrow().as_ref().and_then(|l| {
            let s = l.segs.get(&first).filter(|_| l.active != first)?;
            s.packed
                .is_none()
                .then(|| (s.file.clone(), s.size, s.erased))
        });
        let Some((Some(file), size, erased)) = seg else {
            return;
        };
        let raw = match filelog::read_blocks(file, 0, align_up(size) as usize).await {
            Ok(mut b) if b.len() as u64 >= size => {
                b.truncate(size as usize);
                b
            }
            Ok(_) => return self.pack_failed(first, "short read".into()),
            Err(e) => return self.pack_failed(first, e.to_string()),
        };
        let p = match write_packed(&self.dir, first, &raw).await {
            Ok(p) => p,
            Err(e) => return self.pack_failed(first, e.to_string()),
        };
        // Erased or removed meanwhile: the packed copy is stale.
        let raw_path = {
            let mut log = self.log.borrow_mut();
            let seg = log.as_mut().and_then(|l| l.segs.get_mut(&first));
            match seg.filter(|s| s.erased == erased && s.packed.is_none()) {
                Some(s) => {
                    s.file = None;
                    s.packed = Some(Rc::new(p));
                    Some(std::mem::replace(
                        &mut s.path,
                        packed_path(&self.dir, first),
                    ))
                }
                None => None,
            }
        };
        match raw_path {
            Some(raw_path) => remove(&raw_path).await,
            None => remove(&packed_path(&self.dir, first)).await,
        }
    }

    fn pack_failed(&self, first: u64, why: String) {
        crate::warn!(
            "JetStream stream '{}': compressing segment {first}: {why}; it stays as written",
            self.name
        );
    }

    /// Packs segment `first` again from `raw`, its bytes with an erased
    /// record overwritten (the writer runs this, nothing else is in flight).
    pub(super) async fn repack(&self, first: u64, raw: &[u8]) -> std::io::Result<()> {
        let p = write_packed(&self.dir, first, raw).await?;
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

/// Removes a file a segment no longer needs (a missing one is fine).
async fn remove(path: &Path) {
    let _ = glommio::io::remove(path).await;
}
