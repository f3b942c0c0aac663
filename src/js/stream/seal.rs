//! Index files for sealed segments (`store::segindex`): when the writer rolls
//! to a new segment, the full one is read back and its index file written, in
//! a task of its own (one per stream at a time, so at most one segment's
//! bytes are held for it); at shutdown the active segment gets one too, so a
//! clean restart reads no segment at all.

use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaFile;

use crate::js::store::segment::{self as filelog, align_up};
use crate::js::store::{recovery, segindex};
use crate::js::stream::Stream;

/// A segment waiting for its index file: first sequence, file, bytes used.
pub(super) type Sealed = (u64, Rc<DmaFile>, u64);

impl Stream {
    /// Queues the index file of segment `first` (just sealed at `size`).
    pub(super) fn sealed(&self, first: u64, file: Rc<DmaFile>, size: u64) {
        self.to_index.borrow_mut().push_back((first, file, size));
        if self.indexer.get() {
            return;
        }
        self.indexer.set(true);
        let (queue, running) = (self.to_index.clone(), self.indexer.clone());
        let (dir, name) = (self.dir.clone(), self.name.clone());
        glommio::spawn_local(async move {
            loop {
                let next = queue.borrow_mut().pop_front();
                let Some((first, file, size)) = next else {
                    break;
                };
                write_index(&dir, &name, first, file, size).await;
            }
            running.set(false);
        })
        .detach();
    }

    /// The active segment's index file (clean shutdown, writer stopped).
    pub(super) async fn index_active(&self) {
        let active = {
            let log = self.log.borrow();
            log.as_ref().and_then(|l| {
                let s = l.segs.get(&l.active)?;
                Some((l.active, s.file.clone()?, s.size))
            })
        };
        if let Some((first, file, size)) = active {
            write_index(&self.dir, &self.name, first, file, size).await;
        }
    }
}

/// Reads segment `first` back and writes its index file; a failure is
/// logged (start-up then scans that segment, as without an index file).
async fn write_index(
    dir: &std::path::Path,
    stream: &str,
    first: u64,
    file: Rc<DmaFile>,
    size: u64,
) {
    let buf = match filelog::read_blocks(file, 0, align_up(size) as usize).await {
        Ok(mut b) => {
            b.truncate(size as usize);
            Bytes::from(b)
        }
        Err(e) => {
            crate::warn!("JetStream stream '{stream}': reading segment {first} for its index: {e}");
            return;
        }
    };
    let path = dir.join(filelog::segment_name(first));
    let bytes = recovery::index_of(stream, first, &path, &buf);
    drop(buf);
    // A stream deleted meanwhile took its directory: nothing to write.
    if !dir.exists() {
        return;
    }
    if let Err(e) = segindex::write(dir, first, bytes).await {
        crate::warn!("JetStream stream '{stream}': writing the index file of segment {first}: {e}");
    }
}
