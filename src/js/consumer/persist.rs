//! A durable consumer's state on disk: `meta.json` (its config, written
//! atomically at create and update) and two state slots written in turn, in
//! place, each with a generation and a checksum, so a torn write spoils only
//! the slot being written and start-up takes the newest whole one. Also the
//! start-up side: loading the durable consumers of a recovered stream.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::js::consumer::state::{Pend, State};
use crate::js::consumer::Consumer;
use crate::js::store::segment;
use crate::js::store::slots::Loaded;
use crate::js::stream::Stream;
use crate::js::types::consumer_config::ConsumerConfig;
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, Nanos, StreamSeq};

/// What is persisted beside `meta.json` for a durable consumer.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    pub created: i64,
    pub config: ConsumerConfig,
}

/// The saved part of `State` (field names are the on-disk format).
#[derive(Serialize, Deserialize, Default)]
pub(super) struct Saved {
    sseq: StreamSeq,
    dseq: ConsumerSeq,
    ack_s: StreamSeq,
    ack_c: ConsumerSeq,
    cursor: StreamSeq,
    lps: Vec<StreamSeq>,
    /// (stream sequence, consumer sequence, deliveries)
    pending: Vec<(StreamSeq, ConsumerSeq, DeliveryCount)>,
    exhausted: Vec<StreamSeq>,
    last_delivered: Nanos,
    last_ack: Nanos,
}

/// The base name of a durable consumer's state slots (`state.0`, `state.1`).
pub(super) const STATE_SLOTS: &str = "state";

pub fn consumers_dir(stream: &Stream) -> PathBuf {
    stream.dir.join("consumers")
}

impl Saved {
    fn of(st: &State) -> Saved {
        Saved {
            sseq: st.delivered_stream,
            dseq: st.delivered_consumer,
            ack_s: st.floor_stream,
            ack_c: st.floor_consumer,
            cursor: st.cursor,
            lps: st.lps.iter().copied().collect(),
            pending: st.pending.iter().map(|(s, p)| (*s, p.cseq, p.dc)).collect(),
            exhausted: st.exhausted.iter().copied().collect(),
            last_delivered: st.last_delivered,
            last_ack: st.last_ack,
        }
    }

    /// Restores into `st`; whatever was in flight at the stop is redelivered
    /// after `ack_wait`.
    fn restore(self, st: &mut State, ack_wait: i64, now: Nanos) {
        st.delivered_stream = self.sseq;
        st.delivered_consumer = self.dseq;
        st.floor_stream = self.ack_s;
        st.floor_consumer = self.ack_c;
        st.cursor = self.cursor;
        st.lps = self.lps.into();
        st.last_delivered = self.last_delivered;
        st.last_ack = self.last_ack;
        st.exhausted = self.exhausted.into_iter().collect();
        let deadline = now.after(ack_wait);
        for (sseq, cseq, dc) in self.pending {
            let p = Pend {
                cseq,
                dc,
                deadline,
                delivered: Nanos(0),
            };
            st.pending.insert(sseq, p);
            st.timers.insert((deadline, sseq));
        }
    }
}

impl Consumer {
    /// Saves the state of a durable consumer into its next slot. False if
    /// it could not be saved.
    pub async fn save(&self) -> bool {
        let Some(slots) = &self.slots else {
            return true;
        };
        if self.closed.get() && self.stream.consumers.borrow().get(&self.name).is_none() {
            return true; // deleted: its directory is gone or reused
        }
        let saved = {
            let mut st = self.st.borrow_mut();
            st.dirty = false;
            st.last_save = Nanos::now();
            Saved::of(&st)
        };
        match slots.save(&saved).await {
            Ok(()) => true,
            Err(e) => {
                crate::error!(
                    "JetStream: saving consumer '{} > {}' state: {e}",
                    self.stream.name,
                    self.name
                );
                self.st.borrow_mut().dirty = true;
                false
            }
        }
    }
}

/// Loads the durable consumers of an owned stream (start-up).
pub fn recover(stream: &Rc<Stream>) -> Vec<Rc<Consumer>> {
    let dir = consumers_dir(stream);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(raw) = std::fs::read(path.join("meta.json")) else {
            continue;
        };
        let meta: Meta = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => {
                crate::error!("JetStream: skipping consumer {}: {e}", path.display());
                continue;
            }
        };
        let name = meta.config.name.clone();
        let state_dir = (!meta.config.mem_storage && stream.is_file()).then(|| path.clone());
        let ack_wait = meta.config.ack_wait;
        let c = Consumer::new(stream, name, meta.config, meta.created, state_dir);
        let loaded = match &c.slots {
            Some(slots) => slots.load::<Saved>(),
            None => Loaded::None,
        };
        match loaded {
            Loaded::State(saved) => {
                let mut st = c.st.borrow_mut();
                saved.restore(&mut st, ack_wait, Nanos::now());
                // Saved positions may name previewed messages lost in a crash.
                c.clamp(&mut st);
            }
            Loaded::Damaged => crate::error!(
                "JetStream: consumer {}: no whole state slot; starting from its deliver policy",
                path.display()
            ),
            Loaded::None => {}
        }
        out.push(Rc::new(c));
    }
    out
}

/// Writes a durable consumer's `meta.json` atomically.
pub fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("meta.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).expect("meta serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    segment::sync_dir(dir)
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_state_is_plain_numbers_on_disk() {
        let saved = Saved {
            sseq: StreamSeq(7),
            pending: vec![(StreamSeq(5), ConsumerSeq(6), DeliveryCount(2))],
            ..Default::default()
        };
        let json = String::from_utf8(serde_json::to_vec(&saved).unwrap()).unwrap();
        // The format from before the typed fields.
        assert!(json.contains("\"sseq\":7"), "{json}");
        assert!(json.contains("\"pending\":[[5,6,2]]"), "{json}");
    }
}
