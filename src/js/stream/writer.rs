//! The writer task: group commit. Everything staged while a write is in
//! flight goes into the next write; acks go out in order once the write that
//! holds them completed.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use crate::js::store::record;
use crate::js::store::segment as filelog;
use crate::js::stream::{Outgoing, Pending, Stream};
use crate::js::types::errors::ApiError;
use crate::limits::STREAM_WRITES_IN_FLIGHT;

/// One write in flight and the publishes it will acknowledge.
struct Flight {
    /// None for a batch with nothing to write (it completes with the one before).
    task: Option<glommio::Task<std::io::Result<()>>>,
    pending: Vec<Pending>,
    seg: u64,
    base: u64,
    end: u64,
    restore: Option<filelog::Restore>,
    /// The records written (cached messages are slices of it).
    batch: Bytes,
}

impl Stream {
    /// Stages a delete or floor record for the next write (file streams).
    pub(super) fn stage(&self, kind: u8, seq: u64) {
        if self.is_file() {
            let mut w = self.w.borrow_mut();
            w.make_room(record::encoded_len(0, 0));
            record::encode(
                &mut w.staged,
                kind,
                seq,
                crate::js::types::json::now_nanos(),
                b"",
                0,
                b"",
            );
            w.markers_staged = true;
            drop(w);
            self.wake.notify();
        }
    }

    /// Waits until everything staged so far is committed; the result of that write.
    pub async fn sync_point(&self) -> Result<(), ApiError> {
        let done = Rc::new(Cell::new(None));
        self.w.borrow_mut().pending.push(Pending::Op(done.clone()));
        self.wake.notify();
        self.wait_done(&done).await
    }

    /// Waits for the writer to fill `done` (or to stop).
    pub(super) async fn wait_done(
        &self,
        done: &Cell<Option<Result<(), ApiError>>>,
    ) -> Result<(), ApiError> {
        loop {
            if let Some(r) = done.take() {
                return r;
            }
            if self.closed.get() && !self.writer_running.get() {
                return Err(ApiError::stream_not_found());
            }
            self.committed.wait().await;
        }
    }

    /// The writer: group commit until the stream closes. Up to
    /// `STREAM_WRITES_IN_FLIGHT` writes overlap; they complete, and are
    /// acknowledged, strictly in order.
    pub async fn run_writer(self: Rc<Self>, shard: Rc<crate::shard::Shard>) {
        self.writer_running.set(true);
        let mut flights: VecDeque<Flight> = VecDeque::new();
        loop {
            if flights.is_empty() && !self.w.borrow().erases.is_empty() {
                self.run_erases().await;
                continue;
            }
            let has_work = {
                let w = self.w.borrow();
                !w.staged.is_empty() || !w.pending.is_empty() || !w.erases.is_empty()
            };
            let roll_blocked =
                !flights.is_empty() && self.log.borrow().as_ref().is_some_and(|l| l.should_roll());
            let can_launch = flights.len() < STREAM_WRITES_IN_FLIGHT && !roll_blocked;
            if has_work && can_launch {
                if let Some(replies) = self.launch_staged(&mut flights).await {
                    self.after_commit(&shard, replies).await;
                }
                continue;
            }
            if flights.is_empty() {
                if !has_work {
                    if self.closed.get() {
                        break;
                    }
                    self.wake.wait().await;
                }
                continue;
            }
            // Wait for the oldest write; or for new work while there is room.
            let result = {
                let head = &mut flights[0];
                match &mut head.task {
                    None => Some(Ok(())),
                    Some(task) if can_launch => {
                        futures_lite::future::or(async { Some(task.await) }, async {
                            self.wake.wait().await;
                            None
                        })
                        .await
                    }
                    Some(task) => Some(task.await),
                }
            };
            let Some(result) = result else { continue };
            let f = flights.pop_front().expect("head present");
            let replies = match result {
                Ok(()) => self.completed(f),
                Err(e) => self.failed(f, &mut flights, &e).await,
            };
            self.after_commit(&shard, replies).await;
        }
        self.writer_running.set(false);
        self.committed.notify_all();
        self.writer_done.notify_all();
    }

    /// Overwrites deleted records (MSG.DELETE with erase); only with no
    /// write in flight, so it races with nothing.
    async fn run_erases(&self) {
        let erases = std::mem::take(&mut self.w.borrow_mut().erases);
        for e in erases {
            let r = self.erase(&e).await;
            e.done.set(Some(r));
        }
        self.committed.notify_all();
    }

    /// Takes everything staged into a new write (or, with nothing to write,
    /// a flight that completes with the one before). Returns the replies when
    /// it completed at once (memory streams, waiters only, a failed launch).
    async fn launch_staged(
        self: &Rc<Self>,
        flights: &mut VecDeque<Flight>,
    ) -> Option<Vec<Outgoing>> {
        let (mut staged, pending, next_seq, markers) = {
            let mut w = self.w.borrow_mut();
            // The largest recent batch, decaying: batches of a steady load
            // alternate in size as the writer catches up.
            let decay = |h: usize, n: usize, max: usize| n.max(h - h.div_ceil(16)).min(max);
            w.hint = (
                decay(w.hint.0, w.staged.len(), super::HINT_BYTES),
                decay(w.hint.1, w.pending.len(), super::HINT_PENDING),
            );
            (
                std::mem::take(&mut w.staged),
                std::mem::take(&mut w.pending),
                w.next_seq,
                std::mem::take(&mut w.markers_staged),
            )
        };
        // Cached bodies keep the batch's allocation: no more than twice
        // its bytes, as growth by doubling left it.
        if staged.capacity() > 2 * staged.len() {
            staged.shrink_to_fit();
        }
        if !self.is_file() || staged.is_empty() {
            // Nothing to write (memory stream, or only waiters): commit in order.
            if flights.is_empty() {
                return Some(self.commit(pending, 0, 0, &Bytes::new()));
            }
            flights.push_back(Flight {
                task: None,
                pending,
                seg: 0,
                base: 0,
                end: 0,
                restore: None,
                batch: Bytes::new(),
            });
            return None;
        }
        let (frozen, len) = staged.freeze();
        // A new segment is named by the first message it will hold.
        let first = pending
            .iter()
            .find_map(|p| match p {
                Pending::Msg(m) => Some(m.seq),
                _ => None,
            })
            .unwrap_or(next_seq);
        match self.launch(&frozen, len, first).await {
            Ok((task, seg, base, restore)) => {
                let end = base + len as u64;
                if markers {
                    if let Some(s) = self
                        .log
                        .borrow_mut()
                        .as_mut()
                        .and_then(|l| l.segs.get_mut(&seg))
                    {
                        s.markers = true;
                    }
                }
                flights.push_back(Flight {
                    task: Some(task),
                    pending,
                    seg,
                    base,
                    end,
                    restore: Some(restore),
                    batch: frozen.slice(..len),
                });
                None
            }
            Err(e) => Some(self.write_failed(&e, pending, Vec::new())),
        }
    }

    /// The oldest write completed: commit what it holds.
    fn completed(&self, f: Flight) -> Vec<Outgoing> {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            if f.task.is_some() {
                log.finish(f.end);
                log.index_written(f.seg, f.base, &f.batch);
            }
        }
        *self.io_error.borrow_mut() = None;
        self.commit(f.pending, f.seg, f.base, &f.batch)
    }

    /// The oldest write failed. Everything after it depends on it: wait for
    /// the rest, then cut the file back to where it ended and fail them all.
    async fn failed(
        &self,
        f: Flight,
        flights: &mut VecDeque<Flight>,
        e: &std::io::Error,
    ) -> Vec<Outgoing> {
        let mut later = Vec::new();
        for mut g in flights.drain(..) {
            if let Some(t) = g.task.take() {
                let _ = t.await;
            }
            later.extend(g.pending);
        }
        let restore = f.restore.expect("file writes carry their restore point");
        let cut = restore.end();
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.rollback(restore);
        }
        let file = self
            .log
            .borrow()
            .as_ref()
            .and_then(|l| l.segs.get(&f.seg).and_then(|s| s.file.clone()));
        if let Some(file) = file {
            if let Err(e) = file.truncate(cut).await {
                crate::error!(
                    "JetStream stream '{}': cutting back a failed write: {e}",
                    self.name
                );
            }
        }
        self.write_failed(e, f.pending, later)
    }

    pub(super) async fn after_commit(&self, shard: &crate::shard::Shard, replies: Vec<Outgoing>) {
        for o in replies {
            shard.reply(&o.subject, o.hdr.as_deref(), &o.body);
        }
        shard.flush_mesh().await;
        self.committed.notify_all();
        crate::js::consumer::after_commit(self);
        self.gc_segments().await;
    }

    pub(super) fn write_failed(
        &self,
        e: &std::io::Error,
        pending: Vec<Pending>,
        later: Vec<Pending>,
    ) -> Vec<Outgoing> {
        // glommio keeps the kind, not the errno, of its I/O errors.
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            || matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            );
        let err = if full {
            ApiError::insufficient_storage()
        } else {
            ApiError::store_failed(format!("write failed: {e}"))
        };
        crate::error!(
            "JetStream stream '{}': write failed: {e}; {} pending publishes failed",
            self.name,
            pending.len() + later.len()
        );
        *self.io_error.borrow_mut() = Some(e.to_string());
        let mut all = pending;
        all.extend(later);
        self.fail(all, &err)
    }

    /// Starts writing staged bytes (rolling the segment first when it is full
    /// and nothing is in flight); returns the I/O task, the segment, the file
    /// offset of the first staged byte and the restore point.
    pub(super) async fn launch(
        self: &Rc<Self>,
        frozen: &Bytes,
        len: usize,
        next_seq: u64,
    ) -> std::io::Result<(
        glommio::Task<std::io::Result<()>>,
        u64,
        u64,
        filelog::Restore,
    )> {
        let roll = self
            .log
            .borrow()
            .as_ref()
            .is_some_and(|l| l.should_roll() && l.inflight() == 0);
        if roll {
            // In interval mode the closing segment may hold unsynced writes.
            self.sync_now().await?;
            let dir = self.dir.clone();
            // Unique even when the full segment held no messages (only markers).
            let active = self.log.borrow().as_ref().map_or(0, |l| l.active);
            let next_seq = next_seq.max(active + 1);
            let path = dir.join(filelog::segment_name(next_seq));
            let dsync = self.log.borrow().as_ref().is_some_and(|l| l.sync);
            let file = filelog::open_dma(&path, dsync).await?;
            let bytes = self.log.borrow().as_ref().map_or(0, |l| l.segment_bytes);
            filelog::preallocate(&file, bytes).await;
            filelog::sync_dir_async(&dir).await?;
            let (sealed, old_cached) = match self.log.borrow_mut().as_mut() {
                Some(l) => {
                    let cached = l.segs.get_mut(&l.active).and_then(|s| s.cached.take());
                    (l.take_active_index(), cached)
                }
                None => (None, None),
            };
            if let Some(l) = self.log.borrow_mut().as_mut() {
                l.install(next_seq, path, file);
            }
            // Synced above; nothing writes to the sealed segment again.
            if let Some(Ok(f)) = old_cached.map(Rc::try_unwrap) {
                let _ = f.close().await;
            }
            if let Some(segment) = sealed {
                self.sealed(segment);
            }
        }
        let want = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.wants_cached());
        if let Some((seg, path)) = want {
            match filelog::open_cached(&path).await {
                Ok(f) => {
                    if let Some(l) = self.log.borrow_mut().as_mut() {
                        l.set_cached(seg, f);
                    }
                }
                Err(e) => crate::warn!(
                    "JetStream stream '{}': writes stay direct, not through the page cache: {e}",
                    self.name
                ),
            }
        }
        let (job, seg, base, restore) = {
            let mut log = self.log.borrow_mut();
            let log = log.as_mut().expect("file stream");
            let (job, base, restore) = log.prepare(frozen, len);
            (job, log.active, base, restore)
        };
        Ok((glommio::spawn_local(job.run()), seg, base, restore))
    }

    /// fdatasync of the active segment (interval mode's periodic sync).
    pub async fn sync_now(&self) -> std::io::Result<()> {
        let file = {
            let log = self.log.borrow();
            match log.as_ref() {
                Some(l) if !l.sync => l.segs.get(&l.active).and_then(|s| s.file.clone()),
                _ => None,
            }
        };
        match file {
            Some(f) => f.fdatasync().await.map_err(std::io::Error::from),
            None => Ok(()),
        }
    }

    /// Stops the writer after it has written what is staged, and closes files;
    /// `keep`: the stream stays on disk (shutdown), so the active segment's
    /// index file is written too.
    pub async fn close(&self, keep: bool) {
        self.closed.set(true);
        self.wake.notify();
        while self.writer_running.get() {
            self.writer_done.wait().await;
        }
        if let Err(e) = self.sync_now().await {
            crate::error!("JetStream stream '{}': final sync failed: {e}", self.name);
        }
        self.save_positions().await;
        if keep {
            self.index_active().await;
        }
        let log = self.log.borrow_mut().take();
        if let Some(mut log) = log {
            log.close().await;
        }
    }
}
