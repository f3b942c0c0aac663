//! Rebuilding a file stream's index from its records at start-up: messages,
//! moved messages, deletes and floors replayed in file order, the message ids
//! still inside the duplicate window, and the removals of rollups that may
//! not have reached the disk before a crash. Pure: it sees records, not files.

use crate::js::store::index::{Index, Location, NewEntry};
use crate::js::store::record;
use crate::js::store::recovery::Recovered;
use crate::js::store::segindex::Summary;
use crate::js::stream::positions::{parse_source_header, Found, LinkPos};
use crate::js::stream::ttl::{self, Ttl};
use crate::protocol::headers;
use std::path::PathBuf;

/// The replay of one stream's records.
pub struct Replay {
    pub ix: Index,
    /// (message id, sequence, time) of messages inside the duplicate window.
    pub ids: Vec<(String, u64, i64)>,
    /// The message id of the last message (for `Nats-Expected-Last-Msg-Id`).
    pub last_id: Option<String>,
    /// Ids of messages older than this are not remembered.
    window_start: i64,
    /// The stream honours `Nats-Rollup`.
    rollups: bool,
    /// The stream has sources: their positions are read from the copies'
    /// `Nats-Stream-Source` headers (the last one of each link wins).
    sources: bool,
    pub found: Found,
    /// The stream honours `Nats-TTL` (`ttl`) and writes delete markers
    /// (`markers`): expiry times are collected, flags kept in the index.
    ttl: bool,
    markers: bool,
    /// (expiry time, sequence) of messages with a TTL (some since removed).
    pub expiries: Vec<(i64, u64)>,
}

/// What a replay reads from a stream's config.
pub struct ReplayOpts {
    /// Message ids older than this are not remembered.
    pub window_start: i64,
    pub rollups: bool,
    pub sources: bool,
    pub ttl: bool,
    pub markers: bool,
}

impl Replay {
    pub fn new(ix: Index, o: ReplayOpts) -> Replay {
        Replay {
            ix,
            ids: Vec::new(),
            last_id: None,
            window_start: o.window_start,
            rollups: o.rollups,
            sources: o.sources,
            found: Found::new(),
            ttl: o.ttl,
            markers: o.markers,
            expiries: Vec::new(),
        }
    }

    /// The index entry of a record, and its expiry noted.
    fn entry<'a>(&mut self, r: &'a Recovered) -> NewEntry<'a> {
        let hdr = r.hdr;
        let mut flags = 0;
        if !hdr.is_empty() {
            let ttl = Ttl::of(hdr).unwrap_or(Ttl::None);
            if let Some(at) = ttl.expires_at(r.ts).filter(|_| self.ttl) {
                self.expiries.push((at, r.seq));
            }
            flags = ttl::flags_of(hdr, ttl, self.markers);
        }
        NewEntry {
            seq: r.seq,
            ts: r.ts,
            subject: r.subject,
            hdr_len: r.hdr_len,
            len: r.len,
            at: Location {
                seg: r.seg,
                off: r.off,
            },
            // Not cached: a cached body would hold the whole segment it was read
            // with in memory (a slice of it).
            data: None,
            flags,
        }
    }

    /// Applies one record, in file order.
    pub fn apply(&mut self, r: Recovered) {
        match r.kind {
            record::KIND_MSG => self.message(r),
            record::KIND_MOVED => {
                // A live message that compaction copied forward.
                let e = self.entry(&r);
                self.ix.insert_moved(e);
            }
            record::KIND_DELETE => {
                // An erased last message leaves only its delete record: the
                // sequence it had is still used.
                self.ix.skip_through(r.seq);
                self.ix.remove(r.seq);
            }
            _ => {
                self.ix.raise_floor(r.seq);
            }
        }
    }

    /// Takes a sealed segment of plain messages whole from its index
    /// file's summary (at `path`), as replaying each of its records would:
    /// none has headers, so there are no ids, rollups, sources or TTLs to
    /// note. False if its sequences do not come after the index's.
    pub fn whole(&mut self, s: &Summary, path: PathBuf) -> bool {
        let took = self.ix.append_summary(s.first, s, path);
        if took {
            self.last_id = None;
        }
        took
    }

    fn message(&mut self, r: Recovered) {
        let e = self.entry(&r);
        let ix = &mut self.ix;
        // Already superseded (a record written again after a failed write).
        if r.seq <= ix.last_seq() && !(ix.msgs == 0 && r.seq >= ix.first_seq()) {
            return;
        }
        let hdr = r.hdr;
        let id = headers::get(hdr, b"Nats-Msg-Id")
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if let Some(id) = &id {
            if r.ts >= self.window_start {
                self.ids.push((id.clone(), r.seq, r.ts));
            }
        }
        let rollup = self
            .rollups
            .then(|| headers::get(hdr, b"Nats-Rollup").map(<[u8]>::to_ascii_lowercase))
            .flatten();
        self.last_id = id;
        if self.sources {
            if let Some((iname, seq, ident)) =
                headers::get(hdr, b"Nats-Stream-Source").and_then(parse_source_header)
            {
                self.found.insert(iname, (LinkPos { seq, ident }, r.seq));
            }
        }
        ix.append(e);
        // A rollup's removals may not have reached the disk: redo them.
        match rollup.as_deref() {
            Some(b"sub") => {
                while let Some(older) = ix.first_of(r.subject).filter(|s| *s < r.seq) {
                    ix.remove(older);
                }
            }
            Some(b"all") => {
                ix.raise_floor(r.seq);
            }
            _ => {}
        }
    }
}
