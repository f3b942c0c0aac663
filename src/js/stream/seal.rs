//! Index files for sealed segments (`store::segindex`): the log builds the
//! active segment's as its writes complete; when the writer rolls to a new
//! segment that one is written, in a task of its own (one per stream at a
//! time). A segment whose index is not known from its first record (a failed
//! build) is read back instead, one segment's bytes at a time. At shutdown
//! the active segment's is written too, so a clean restart reads no segment.

use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaFile;

use crate::js::store::segindex::SegIndex;
use crate::js::store::segment::{self as filelog, align_up};
use crate::js::store::{recovery, segindex};
use crate::js::stream::Stream;

use crate::js::store::segment::Sealed;

impl Stream {
    /// Queues the index file of a segment just sealed (and then its
    /// packing, `pack`).
    pub(super) fn sealed(self: &Rc<Self>, segment: Sealed) {
        self.to_index.borrow_mut().push_back(segment);
        if self.indexer.get() {
            return;
        }
        self.indexer.set(true);
        let (queue, running) = (self.to_index.clone(), self.indexer.clone());
        let (dir, name, ix) = (self.dir.clone(), self.name.clone(), self.ix.clone());
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let next = queue.borrow_mut().pop_front();
                let Some((first, file, size, built)) = next else {
                    break;
                };
                let written = write_index(&dir, &name, first, file, size, built).await;
                let Some((bytes, runs)) = written else {
                    continue;
                };
                // Its entries now live in the file (checked against it).
                if let Ok(index) = SegIndex::parse_built(first, Bytes::from(bytes)) {
                    let path = segindex::index_path(&dir, first);
                    ix.borrow_mut().freeze(first, &index, runs.as_deref(), path);
                    me.pack(first).await;
                }
            }
            running.set(false);
        })
        .detach();
    }

    /// The active segment's index file (clean shutdown, writer stopped).
    pub(super) async fn index_active(&self) {
        let active = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.take_active_index());
        if let Some((first, file, size, built)) = active {
            write_index(&self.dir, &self.name, first, file, size, built).await;
        }
    }
}

/// Writes the index file of segment `first` (from `built` when it covers the
/// segment's `size` bytes, else read back) and returns its bytes, and the
/// builder's runs of message records; a failure is logged (start-up then
/// scans that segment, as without an index file).
async fn write_index(
    dir: &std::path::Path,
    stream: &str,
    first: u64,
    file: Rc<DmaFile>,
    size: u64,
    built: Option<segindex::Builder>,
) -> Option<(Vec<u8>, Option<Vec<segindex::Run>>)> {
    let (bytes, runs) = match built.filter(|b| b.first() == first && b.covered() == size) {
        Some(mut b) => (b.finish(), b.take_runs()),
        None => (read_back(stream, first, file, size, dir).await?, None),
    };
    // A stream deleted meanwhile took its directory: nothing to write.
    if !dir.exists() {
        return None;
    }
    match segindex::write(dir, first, &bytes).await {
        Ok(()) => Some((bytes, runs)),
        Err(e) => {
            crate::warn!(
                "JetStream stream '{stream}': writing the index file of segment {first}: {e}"
            );
            None
        }
    }
}

/// The index file of segment `first`, from its bytes read back.
async fn read_back(
    stream: &str,
    first: u64,
    file: Rc<DmaFile>,
    size: u64,
    dir: &std::path::Path,
) -> Option<Vec<u8>> {
    let buf = match filelog::read_blocks(file, 0, align_up(size) as usize).await {
        Ok(mut b) => {
            b.truncate(size as usize);
            Bytes::from(b)
        }
        Err(e) => {
            crate::warn!("JetStream stream '{stream}': reading segment {first} for its index: {e}");
            return None;
        }
    };
    let path = dir.join(filelog::segment_name(first));
    Some(recovery::index_of(stream, first, &path, &buf))
}
