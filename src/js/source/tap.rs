//! The origin side of a local link: a tap on the origin's owner shard pushes
//! the origin's committed messages that pass the link's filters, from where
//! the target asked, to the target's shard (`JsCmd::TapData`, over the mesh,
//! or in place when both are on one shard).
//!
//! Flow control is credit: the target grants messages and bytes (first in
//! `TapOpen`, then in `TapCredit` as its copies commit); a tap never has more
//! than that in flight, so a slow target holds memory to its credit and the
//! origin's publishers never wait for it. A tap with nothing to send sends a
//! heartbeat every `TAP_HEARTBEAT_NS` (its pending count keeps the target's
//! lag true). In a work-queue or interest origin, a tap counts as a consumer
//! that needs every matching message above what the target stored.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::js::consumer::retention::retain_check;
use crate::js::store::index::StoredMsg;
use crate::js::stream::Stream;
use crate::js::types::errors::ApiError;
use crate::js::types::seq::Nanos;
use crate::js::types::source::identity;
use crate::js::types::stream_config::Retention;
use crate::js::Js;
use crate::limits::{
    TAP_BATCH_BYTES, TAP_BATCH_MSGS, TAP_HEARTBEAT_NS, TAP_LINGER_NS, TAP_READ_AHEAD_BYTES,
};
use crate::notify::Notify;
use crate::shard::msg::{JsCmd, TapBatch, TapItem, TapKey, TapOpen, TapStart};

/// One tap. Before its target opens it (at start-up), it only holds
/// messages back in a work-queue or interest origin.
pub struct Tap {
    pub key: Cell<TapKey>,
    pub iname: String,
    filters: RefCell<Vec<Bytes>>,
    /// Next origin sequence to look at.
    cursor: Cell<u64>,
    credit_msgs: Cell<i64>,
    credit_bytes: Cell<i64>,
    /// The target stored everything up to here (None: not known yet, so
    /// every matching message is needed).
    pub stored: Cell<Option<u64>>,
    wake: Notify,
    pub closed: Cell<bool>,
    /// The tap was opened by its target (a hold only, before).
    open: Cell<bool>,
    last_sent: Cell<Nanos>,
}

impl Tap {
    /// A hold: the tap a local target will open, known from the catalogue.
    pub fn hold(target_uid: u32, iname: String, filters: Vec<String>) -> Tap {
        Tap {
            key: Cell::new(TapKey {
                shard: 0,
                uid: target_uid,
                link: 0,
                gen: 0,
            }),
            iname,
            filters: RefCell::new(filters.into_iter().map(Bytes::from).collect()),
            cursor: Cell::new(0),
            credit_msgs: Cell::new(0),
            credit_bytes: Cell::new(0),
            stored: Cell::new(None),
            wake: Notify::new(),
            closed: Cell::new(false),
            open: Cell::new(false),
            last_sent: Cell::new(Nanos(0)),
        }
    }

    /// Whether message `seq` on `subject` must stay in a work-queue or
    /// interest origin for this tap.
    pub fn needs(&self, seq: u64, subject: &[u8]) -> bool {
        self.wants(subject) && self.stored.get().is_none_or(|s| seq > s)
    }

    /// Whether the tap delivers `subject`.
    pub fn wants(&self, subject: &[u8]) -> bool {
        let f = self.filters.borrow();
        f.is_empty() || f.iter().any(|f| crate::subject::matches(f, subject))
    }

    pub fn stop(&self) {
        self.closed.set(true);
        self.wake.notify();
    }
}

impl Js {
    /// `TapOpen` on the origin's owner: (re)opens the target's tap and
    /// starts its task; or tells the target why it cannot.
    pub(crate) fn tap_open(&self, req: TapOpen) {
        let Some(origin) = self.stream(&req.origin) else {
            return self.tap_refuse(req.tap, ApiError::stream_not_found(), None);
        };
        let ident = identity(origin.created);
        if !req.ident.is_empty() && req.ident != ident {
            let e = ApiError::new(
                400,
                10225,
                format!("consumer's stream identity does not match: {ident}"),
            );
            return self.tap_refuse(req.tap, e, Some(ident));
        }
        let key = (req.tap.uid, req.iname.clone());
        if let Some(old) = origin.taps.borrow_mut().remove(&key) {
            old.stop();
        }
        let tap = Rc::new(Tap::hold(req.tap.uid, req.iname, req.filters));
        tap.key.set(req.tap);
        tap.open.set(true);
        tap.credit_msgs.set(i64::from(req.msgs));
        tap.credit_bytes.set(req.bytes as i64);
        let start = {
            let ix = origin.ix.borrow();
            match req.start {
                TapStart::Seq(s) => s.max(ix.first_seq()),
                TapStart::Time(t) => ix.first_at_or_after(t).unwrap_or(ix.last_seq() + 1),
                TapStart::First => ix.first_seq(),
            }
        };
        tap.cursor.set(start);
        // Everything before where it starts is the target's already.
        tap.stored.set(Some(start.saturating_sub(1)));
        origin.taps.borrow_mut().insert(key, tap.clone());
        retain_check(&origin, origin.ix.borrow().first_seq()..start);
        self.send_cmd(
            req.tap.shard,
            JsCmd::TapOpened {
                tap: req.tap,
                origin: origin.uid,
                ident,
            },
        );
        let js = self.me();
        glommio::spawn_local(async move { js.run_tap(origin, tap).await }).detach();
    }

    fn tap_refuse(&self, tap: TapKey, error: ApiError, ident: Option<String>) {
        self.send_cmd(tap.shard, JsCmd::TapError { tap, error, ident });
    }

    /// `TapCredit` from the target: more credit, and what it stored.
    pub(crate) fn tap_credit(&self, origin: u32, key: TapKey, stored: u64, msgs: u32, bytes: u64) {
        let Some(origin) = self.by_uid.borrow().get(&origin).cloned() else {
            return;
        };
        let Some(tap) = find(&origin, key) else {
            return;
        };
        tap.credit_msgs.set(tap.credit_msgs.get() + i64::from(msgs));
        tap.credit_bytes.set(tap.credit_bytes.get() + bytes as i64);
        let before = tap.stored.get().unwrap_or(0);
        if stored > before {
            tap.stored.set(Some(stored));
            retain_check(&origin, before + 1..=stored);
        }
        tap.wake.notify();
    }

    /// `TapClose` from the target: the link is gone.
    pub(crate) fn tap_close(&self, origin: u32, key: TapKey) {
        let Some(origin) = self.by_uid.borrow().get(&origin).cloned() else {
            return;
        };
        let Some(tap) = find(&origin, key) else {
            return;
        };
        origin
            .taps
            .borrow_mut()
            .remove(&(key.uid, tap.iname.clone()));
        tap.stop();
        // What only it held back may go now.
        let (first, last) = {
            let ix = origin.ix.borrow();
            (ix.first_seq(), ix.last_seq())
        };
        retain_check(&origin, first..=last);
    }

    /// The origin is going away: every target hears so.
    pub(crate) fn taps_end(&self, origin: &Stream) {
        let taps: Vec<Rc<Tap>> = std::mem::take(&mut *origin.taps.borrow_mut())
            .into_values()
            .collect();
        for tap in taps {
            tap.stop();
            if tap.open.get() {
                self.tap_refuse(tap.key.get(), ApiError::stream_not_found(), None);
            }
        }
    }

    /// A tap's task: sends what the credit allows, heartbeats when idle.
    async fn run_tap(self: Rc<Self>, origin: Rc<Stream>, tap: Rc<Tap>) {
        let mut reader = Reader::default();
        while !tap.closed.get() && !origin.closed.get() && !self.shard.stopping.get() {
            let batch = self.fill(&origin, &tap, &mut reader).await;
            if tap.closed.get() {
                break;
            }
            let now = Nanos::now();
            let sent = !batch.items.is_empty();
            let full = batch.items.len() >= TAP_BATCH_MSGS || batch.buf.len() >= TAP_BATCH_BYTES;
            if sent || now.since(tap.last_sent.get()) >= TAP_HEARTBEAT_NS {
                let pending = {
                    let ix = origin.ix.borrow();
                    ix.count_filtered(tap.cursor.get(), &tap.filters.borrow())
                };
                let key = tap.key.get();
                tap.last_sent.set(now);
                self.send_cmd(
                    key.shard,
                    JsCmd::TapData {
                        tap: key,
                        batch,
                        pending,
                    },
                );
            }
            if sent && tap.credit_msgs.get() > 0 && tap.credit_bytes.get() > 0 {
                if full {
                    // More may be ready at once: let others run first.
                    glommio::yield_if_needed().await;
                } else {
                    let linger = Duration::from_nanos(TAP_LINGER_NS as u64);
                    futures_lite::future::or(tap.wake.wait(), glommio::timer::sleep(linger)).await;
                }
                continue;
            }
            let wait = TAP_HEARTBEAT_NS - Nanos::now().since(tap.last_sent.get());
            let sleep = glommio::timer::sleep(Duration::from_nanos(wait.max(1) as u64));
            // New messages matter only with credit to send them.
            let credit = tap.credit_msgs.get() > 0 && tap.credit_bytes.get() > 0;
            let more = async {
                if credit {
                    origin.committed.wait().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            futures_lite::future::or(tap.wake.wait(), futures_lite::future::or(sleep, more)).await;
        }
    }

    /// Collects the next batch within the credit and the batch bounds.
    async fn fill(&self, origin: &Stream, tap: &Tap, reader: &mut Reader) -> TapBatch {
        let mut buf = Vec::new();
        let mut items = Vec::new();
        while items.len() < TAP_BATCH_MSGS
            && buf.len() < TAP_BATCH_BYTES
            && tap.credit_msgs.get() > 0
            && tap.credit_bytes.get() > 0
        {
            let next = {
                let ix = origin.ix.borrow();
                ix.next_filtered(tap.cursor.get(), &tap.filters.borrow())
            };
            let Some(seq) = next else {
                let last = origin.ix.borrow().last_seq();
                tap.cursor.set(tap.cursor.get().max(last + 1));
                break;
            };
            let Some(m) = reader.load(origin, seq).await else {
                // Gone meanwhile.
                tap.cursor.set(seq + 1);
                continue;
            };
            if tap.closed.get() {
                break;
            }
            let len = (m.subject.len() + m.data.len()) as i64;
            items.push(TapItem {
                seq: m.seq,
                ts: m.ts,
                at: buf.len() as u32,
                subject_len: m.subject.len() as u32,
                hdr_len: m.hdr_len as u32,
                len: m.data.len() as u32,
            });
            buf.extend_from_slice(&m.subject);
            buf.extend_from_slice(&m.data);
            tap.cursor.set(seq + 1);
            tap.credit_msgs.set(tap.credit_msgs.get() - 1);
            tap.credit_bytes.set(tap.credit_bytes.get() - len);
        }
        TapBatch {
            buf: Bytes::from(buf),
            items,
        }
    }
}

impl Js {
    /// Work-queue and interest origins owned here hold back what their local
    /// targets have not stored, from the catalogue on (before a target's tap
    /// opens, at start-up, nothing may go that the target has not seen).
    pub fn sync_holds(&self) {
        let origins: Vec<Rc<Stream>> = self
            .streams
            .borrow()
            .values()
            .filter(|s| s.cfg.borrow().retention() != Retention::Limits)
            .cloned()
            .collect();
        for origin in origins {
            let wanted: Vec<(u32, String, Vec<String>)> = self
                .catalog
                .borrow()
                .values()
                .flat_map(|e| {
                    e.config
                        .links()
                        .filter(|(_, s)| s.name == origin.name && !s.is_external())
                        .map(|(_, s)| (e.uid, s.iname(), s.filters()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut gone = false;
            {
                let mut taps = origin.taps.borrow_mut();
                taps.retain(|(uid, iname), t| {
                    let keep =
                        t.open.get() || wanted.iter().any(|(u, i, _)| u == uid && i == iname);
                    gone |= !keep;
                    keep
                });
                for (uid, iname, filters) in wanted {
                    taps.entry((uid, iname.clone()))
                        .or_insert_with(|| Rc::new(Tap::hold(uid, iname, filters)));
                }
            }
            if gone {
                let (first, last) = {
                    let ix = origin.ix.borrow();
                    (ix.first_seq(), ix.last_seq())
                };
                retain_check(&origin, first..=last);
            }
        }
    }
}

/// The tap `key` of `origin`, if it is the one open now.
fn find(origin: &Stream, key: TapKey) -> Option<Rc<Tap>> {
    let taps = origin.taps.borrow();
    taps.values()
        .find(|t| t.open.get() && t.key.get() == key)
        .cloned()
}

/// Reads ahead from disk, a run at a time (catching up from far behind).
#[derive(Default)]
struct Reader {
    run: std::collections::VecDeque<StoredMsg>,
}

impl Reader {
    async fn load(&mut self, origin: &Stream, seq: u64) -> Option<StoredMsg> {
        while self.run.front().is_some_and(|m| m.seq < seq) {
            self.run.pop_front();
        }
        if self.run.front().is_some_and(|m| m.seq == seq) {
            return self
                .run
                .pop_front()
                .filter(|_| origin.ix.borrow().is_live(seq));
        }
        if let Some(m) = origin.ix.borrow().cached(seq) {
            return Some(m);
        }
        if !origin.is_file() {
            return None;
        }
        let run = origin.load_run(seq, TAP_READ_AHEAD_BYTES).await;
        if run.first().map(|m| m.seq) != Some(seq) {
            return None;
        }
        self.run = run.into();
        self.run.pop_front()
    }
}
