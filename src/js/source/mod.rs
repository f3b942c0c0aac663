//! Mirrors and sources. A target stream's links (`Links`: its mirror, or its
//! sources) live on the target's owner shard, one task per target stream.
//! Each link reads its origin through a tap (`tap`) on the origin's owner
//! shard: no NATS subjects and no consumers between local streams. What a
//! message becomes in the target is in `copy` and `link` (pure).
//!
//! The message graph (ARCHITECTURE.md has it with its bounds):
//! link → `TapOpen` → origin owner; tap → `TapOpened`, `TapData` (messages
//! within the link's credit, or a heartbeat), `TapError` → link; link →
//! `TapCredit` (as copies commit), `TapClose` → tap. Tap messages to a target
//! are queued in the target's inbox in arrival order, and its task applies
//! them in that order; the inbox holds at most the links' credit.
//!
//! Positions are the target's (`stream::positions`): each copy commits with
//! its origin sequence, and a reopened tap starts right after it.

pub mod copy;
pub mod link;
pub mod remote;
pub(crate) mod remote_link;
pub mod tap;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::js::stream::ingest::{CopyIn, CopyRefused};
use crate::js::stream::{LinkEvent, LinkTag, Stream};
use crate::js::types::errors::ApiError;
use crate::js::types::seq::Nanos;
use crate::js::types::source::{Role, StreamSource};
use crate::js::Js;
use crate::limits::{LINK_CREDIT_BYTES, LINK_CREDIT_MSGS, LINK_RETRY_NS, SOURCES_SAVE_INTERVAL_NS};
use crate::shard::msg::{JsCmd, TapBatch, TapKey, TapOpen};
use link::{Link, TapState};

/// What a target's taps sent, in arrival order.
pub enum Inbound {
    Opened {
        tap: TapKey,
        origin: u32,
        ident: String,
    },
    Data {
        tap: TapKey,
        batch: TapBatch,
        pending: u64,
    },
    Error {
        tap: TapKey,
        error: ApiError,
        ident: Option<String>,
    },
    /// On an external link's subscription: the create answer (`answer`), or
    /// a delivery, heartbeat or flow-control request.
    Remote {
        tap: TapKey,
        answer: bool,
        subject: bytes::Bytes,
        reply: Option<bytes::Bytes>,
        hdr_len: usize,
        msg: bytes::Bytes,
    },
}

/// The links of one target stream.
pub struct Links {
    pub stream: Rc<Stream>,
    pub links: RefCell<Vec<Link>>,
    next_id: Cell<u32>,
    inbox: RefCell<VecDeque<Inbound>>,
    /// Bytes of `Inbound::Remote` in the inbox (`REMOTE_INBOX_BYTES`).
    remote_bytes: Cell<usize>,
    /// The origin whose direct gets the mirror answers (`mirror_direct`).
    direct_for: RefCell<Option<String>>,
    closed: Cell<bool>,
    running: Cell<bool>,
    done: crate::notify::Event,
}

impl Links {
    /// The links of `stream`'s config, at the positions the stream holds.
    fn new(stream: &Rc<Stream>) -> Links {
        let links = Links {
            stream: stream.clone(),
            links: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            inbox: RefCell::new(VecDeque::new()),
            remote_bytes: Cell::new(0),
            direct_for: RefCell::new(None),
            closed: Cell::new(false),
            running: Cell::new(false),
            done: crate::notify::Event::default(),
        };
        links.reconfigure();
        links
    }

    /// Makes the links match the stream's config: new ones start where the
    /// stream's positions say (a source removed and added again resumes after
    /// what it copied), removed ones close. Returns the closed links' taps.
    pub fn reconfigure(&self) -> Vec<(TapState, StreamSource)> {
        let cfg = self.stream.cfg.borrow().clone();
        let wanted: Vec<(Role, crate::js::types::source::StreamSource)> =
            cfg.links().map(|(r, s)| (r, s.clone())).collect();
        let mut links = self.links.borrow_mut();
        let mut closed = Vec::new();
        links.retain(|l| {
            let keep = wanted.iter().any(|(r, s)| *r == l.role && *s == l.cfg);
            if !keep {
                closed.push((l.tap.clone(), l.cfg.clone()));
            }
            keep
        });
        for (role, s) in wanted {
            if links.iter().any(|l| l.role == role && l.cfg == s) {
                continue;
            }
            let pos = self
                .stream
                .positions
                .borrow()
                .links
                .get(&s.iname())
                .cloned()
                .unwrap_or_default();
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            links.push(Link::new(id, role, s, pos));
        }
        drop(links);
        self.stream.links_wake.notify();
        closed
    }
}

impl Js {
    /// Starts the links of an owned stream that has a mirror or sources.
    pub fn start_links(&self, stream: &Rc<Stream>) {
        if stream.cfg.borrow().links().next().is_none() {
            return;
        }
        let links = Rc::new(Links::new(stream));
        self.links.borrow_mut().insert(stream.uid, links.clone());
        let js = self.me();
        glommio::spawn_local(async move { js.run_links(links).await }).detach();
    }

    /// Start-up, once every shard has recovered its streams: the links of
    /// the streams owned here start.
    pub fn start_recovered_links(&self) {
        let streams: Vec<Rc<Stream>> = self.streams.borrow().values().cloned().collect();
        for s in streams {
            self.start_links(&s);
        }
    }

    /// A config update: links added or removed (a promoted mirror's goes).
    pub fn update_links(&self, stream: &Rc<Stream>) {
        let existing = self.links.borrow().get(&stream.uid).cloned();
        match existing {
            None => self.start_links(stream),
            Some(l) => {
                for (tap, cfg) in l.reconfigure() {
                    self.end_tap(tap, &cfg, true);
                }
                if l.links.borrow().is_empty() {
                    self.stop_links(stream.uid);
                }
            }
        }
    }

    /// Stops a target's links (deleted, stopping, no links left); their
    /// taps are closed.
    pub fn stop_links(&self, uid: u32) {
        let Some(l) = self.links.borrow_mut().remove(&uid) else {
            return;
        };
        for link in l.links.borrow().iter() {
            self.end_tap(link.tap.clone(), &link.cfg, true);
        }
        self.set_mirror_direct(&l, false);
        l.closed.set(true);
        l.stream.links_wake.notify();
    }

    /// Waits until a stopped target's task has ended (its positions saved).
    pub async fn links_stopped(links: &Links) {
        while links.running.get() {
            links.done.wait().await;
        }
    }

    /// Ends what a link's tap state holds: a local tap closes; an external
    /// consumer's subscriptions go (and, with `delete`, the consumer).
    fn end_tap(&self, tap: TapState, cfg: &StreamSource, delete: bool) {
        match tap {
            TapState::Open { key, origin } => self.close_tap(origin, key),
            TapState::Remote(r) => self.remote_end(&r, cfg, delete),
            TapState::Closed { .. } | TapState::Opening { .. } => {}
        }
    }

    fn close_tap(&self, origin: u32, key: TapKey) {
        let owner = self.catalog_owner_of_uid(origin);
        if let Some(owner) = owner {
            self.send_cmd(owner, JsCmd::TapClose { origin, tap: key });
        }
    }

    /// The owner of the stream with `uid`, from the catalogue.
    fn catalog_owner_of_uid(&self, uid: u32) -> Option<u16> {
        self.catalog
            .borrow()
            .values()
            .find(|e| e.uid == uid)
            .map(|e| e.owner)
    }

    /// A tap's message for a target here: queued in arrival order.
    pub(crate) fn link_inbound(&self, uid: u32, msg: Inbound) {
        let Some(l) = self.links.borrow().get(&uid).cloned() else {
            return; // the target is gone; its taps hear so when it closes them
        };
        l.inbox.borrow_mut().push_back(msg);
        l.stream.links_wake.notify();
    }

    /// A stream appeared in the catalogue: links waiting for it try now
    /// (external ones too when they read this server through its domain).
    pub(crate) fn origin_appeared(&self, name: &str) {
        let own_api = self
            .shard
            .cfg
            .domain
            .as_ref()
            .map(|d| format!("$JS.{d}.API"));
        let here = |s: &StreamSource| match &s.external {
            None => true,
            Some(e) => own_api.as_deref() == Some(e.api.as_str()),
        };
        for l in self.links.borrow().values() {
            let mut any = false;
            for link in l.links.borrow_mut().iter_mut() {
                if link.cfg.name == name && here(&link.cfg) {
                    if let TapState::Closed { retry_at } = &mut link.tap {
                        *retry_at = Nanos(0);
                        link.backoff = LINK_RETRY_NS;
                        any = true;
                    }
                }
            }
            if any {
                l.stream.links_wake.notify();
            }
        }
    }

    /// A target's task: applies what its taps send, returns credit as copies
    /// commit, opens and reopens taps, saves positions.
    async fn run_links(self: Rc<Self>, l: Rc<Links>) {
        l.running.set(true);
        let mut saved_at = Nanos::now();
        while !l.closed.get() && !l.stream.closed.get() && !self.shard.stopping.get() {
            self.drain_inbox(&l).await;
            self.take_events(&l);
            self.sync_mirror_direct(&l);
            let now = Nanos::now();
            let next = self.tend(&l, now);
            if now.since(saved_at) >= SOURCES_SAVE_INTERVAL_NS {
                l.stream.save_positions().await;
                saved_at = Nanos::now();
            }
            // Requests and answers published above go out now.
            self.shard.flush_mesh().await;
            let until = next.min(saved_at.after(SOURCES_SAVE_INTERVAL_NS));
            let wait = until.since(Nanos::now()).max(1) as u64;
            let sleep = glommio::timer::sleep(std::time::Duration::from_nanos(wait));
            futures_lite::future::or(l.stream.links_wake.wait(), sleep).await;
        }
        l.stream.save_positions().await;
        l.running.set(false);
        l.done.notify_all();
    }

    /// A mirror with `mirror_direct` answers its origin's direct gets once
    /// it is caught up (fewer than 10 behind, as nats-server), until the
    /// setting is turned off or the mirror stops.
    fn sync_mirror_direct(&self, l: &Links) {
        let want = {
            let cfg = l.stream.cfg.borrow();
            let links = l.links.borrow();
            let caught_up = links.iter().any(|k| {
                k.role == Role::Mirror && k.heard != Nanos(0) && k.error.is_none() && k.lag() < 10
            });
            let on = l.direct_for.borrow().is_some();
            cfg.mirror_direct && cfg.mirror.is_some() && (caught_up || on)
        };
        self.set_mirror_direct(l, want);
    }

    fn set_mirror_direct(&self, l: &Links, on: bool) {
        if l.direct_for.borrow().is_some() == on {
            return;
        }
        let origin = if on {
            let Some(name) = l
                .stream
                .cfg
                .borrow()
                .mirror
                .as_ref()
                .map(|m| m.name.clone())
            else {
                return;
            };
            *l.direct_for.borrow_mut() = Some(name.clone());
            name
        } else {
            l.direct_for.borrow_mut().take().expect("subscribed")
        };
        let key = crate::shard::msg::SubKey {
            cid: crate::shard::msg::JS_CID,
            sub: l.stream.uid | crate::shard::msg::DIRECT_BIT,
            shard: self.shard.id,
        };
        for (subject, queue, key) in crate::js::owner::direct_interest(&origin, key) {
            crate::js::owner::set_interest(&self.shard, &subject, queue.as_ref(), key, on);
        }
    }

    /// Applies queued tap messages in order.
    async fn drain_inbox(&self, l: &Links) {
        loop {
            let msg = l.inbox.borrow_mut().pop_front();
            let Some(msg) = msg else { return };
            match msg {
                Inbound::Opened { tap, origin, ident } => opened(l, tap, origin, ident),
                Inbound::Data {
                    tap,
                    batch,
                    pending,
                } => self.apply_batch(l, tap, batch, pending).await,
                Inbound::Error { tap, error, ident } => self.tap_failed(l, tap, error, ident).await,
                Inbound::Remote {
                    tap,
                    answer,
                    subject,
                    reply,
                    hdr_len,
                    msg,
                } => {
                    let size = subject.len() + msg.len();
                    l.remote_bytes
                        .set(l.remote_bytes.get().saturating_sub(size));
                    let m = remote_link::Received {
                        subject,
                        reply,
                        hdr_len,
                        msg,
                    };
                    if answer {
                        self.remote_answer(l, tap, m).await;
                    } else {
                        self.remote_delivery(l, tap, m).await;
                    }
                }
            }
        }
    }

    /// Applies one batch from a tap: each message staged as its copy.
    async fn apply_batch(&self, l: &Links, tap: TapKey, batch: TapBatch, pending: u64) {
        let now = Nanos::now();
        {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
                return; // an earlier tap's
            };
            link.heard = now;
            link.pending = pending;
            link.queued = batch.items.len() as u64;
        }
        for (n, item) in batch.items.iter().enumerate() {
            let at = item.at as usize;
            let subj_end = at + item.subject_len as usize;
            let hdr_end = subj_end + item.hdr_len as usize;
            let end = subj_end + item.len as usize;
            let m = Origin {
                seq: item.seq,
                ts: item.ts,
                subject: batch.buf.slice(at..subj_end),
                hdr: batch.buf.slice(subj_end..hdr_end),
                payload: batch.buf.slice(hdr_end..end),
            };
            let left = (batch.items.len() - n) as u64;
            if !self.apply_one(l, tap, &m, left).await {
                return;
            }
        }
    }

    /// Stages the copy of one origin message (or skips it); false when the
    /// link's tap is gone or the target refused it (the tap then closes).
    async fn apply_one(&self, l: &Links, tap: TapKey, m: &Origin, left: u64) -> bool {
        let offset = l.stream.positions.borrow().offset;
        let dedupe = l.stream.cfg.borrow().duplicate_window > 0;
        let bytes = (m.subject.len() + m.hdr.len() + m.payload.len()) as u64;
        loop {
            let made = {
                let links = l.links.borrow();
                let Some(link) = links.iter().find(|k| k.current(tap)) else {
                    return false;
                };
                let c = link.copy(m.seq, m.ts, &m.subject, &m.hdr, &m.payload, offset);
                c.map(|c| {
                    (
                        c,
                        link.id,
                        link.iname.clone(),
                        link.ident.clone(),
                        link.role,
                    )
                })
            };
            let Some((c, id, iname, ident, role)) = made else {
                self.skipped(l, tap, m.seq, bytes);
                return true;
            };
            let copy = CopyIn {
                seq: c.seq,
                ts: c.ts.unwrap_or_else(crate::js::types::json::now_nanos),
                subject: &c.subject,
                hdr_len: c.hdr_len,
                msg: &c.msg,
                dedupe: dedupe && role == Role::Source,
                tag: LinkTag {
                    link: id,
                    iname,
                    ident,
                    seq: m.seq,
                    bytes,
                },
            };
            match l.stream.stage_copy(copy) {
                Ok(()) => {
                    let mut links = l.links.borrow_mut();
                    if let Some(link) = links.iter_mut().find(|k| k.current(tap)) {
                        link.applied = m.seq;
                        link.queued = link.queued.saturating_sub(1);
                    }
                    return true;
                }
                Err(CopyRefused::Skip) => {
                    self.skipped(l, tap, m.seq, bytes);
                    return true;
                }
                Err(CopyRefused::Congested) => l.stream.wait_uncongested().await,
                Err(CopyRefused::Store(e)) => {
                    // The target refuses it (its limits): try again later
                    // from this message, as nats-server does.
                    self.link_refused(l, tap, e, left);
                    return false;
                }
            }
        }
    }

    /// A message not stored (already there, filtered, a duplicate): its
    /// credit goes back at once, and the position moves past it.
    fn skipped(&self, l: &Links, tap: TapKey, seq: u64, bytes: u64) {
        let mut links = l.links.borrow_mut();
        if let Some(link) = links.iter_mut().find(|k| k.current(tap)) {
            link.applied = link.applied.max(seq);
            link.owe(bytes, Nanos::now());
            link.queued = link.queued.saturating_sub(1);
        }
        l.stream.links_wake.notify();
    }

    /// The target refused a copy: the tap closes, and the link retries
    /// later from where it stands.
    fn link_refused(&self, l: &Links, tap: TapKey, e: ApiError, left: u64) {
        let ended = {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
                return;
            };
            let old = link.tap.clone();
            link.error = Some(e);
            // Not copied: still the lag's.
            link.queued = left;
            link.retry_later(Nanos::now());
            (old, link.cfg.clone())
        };
        self.end_tap(ended.0, &ended.1, true);
    }

    /// The tap could not open or ended. An origin created again (another
    /// identity) is copied again from its start: a source's position starts
    /// over; a mirror's copies of the new life follow its old ones.
    async fn tap_failed(&self, l: &Links, tap: TapKey, error: ApiError, ident: Option<String>) {
        let recreated = {
            let mut links = l.links.borrow_mut();
            let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
                return;
            };
            link.queued = 0;
            match ident {
                Some(_) => {
                    crate::warn!(
                        "JetStream stream '{}': origin '{}' was created again; copying it from its start",
                        l.stream.name,
                        link.cfg.name
                    );
                    link.applied = 0;
                    link.committed = 0;
                    link.ident = "".into();
                    link.tap = TapState::Closed { retry_at: Nanos(0) };
                    Some(link.role)
                }
                None => {
                    link.error = Some(error);
                    link.retry_later(Nanos::now());
                    None
                }
            }
        };
        if recreated == Some(Role::Mirror) {
            // Durable before any copy of the new life is stored.
            let last = l.stream.next_seq() - 1;
            {
                let mut p = l.stream.positions.borrow_mut();
                p.offset = last;
            }
            l.stream.positions_dirty.set(true);
            l.stream.save_positions().await;
        }
    }

    /// Commits and failures from the stream's writer.
    fn take_events(&self, l: &Links) {
        let events = std::mem::take(&mut *l.stream.link_events.borrow_mut());
        if events.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        let now = Nanos::now();
        {
            let mut links = l.links.borrow_mut();
            for ev in events {
                match ev {
                    LinkEvent::Committed { link, seq, bytes } => {
                        if let Some(k) = links.iter_mut().find(|k| k.id == link) {
                            k.committed(seq, bytes, now);
                        }
                    }
                    LinkEvent::Failed { link } => {
                        if let Some(k) = links.iter_mut().find(|k| k.id == link) {
                            // The copies after the committed one are lost:
                            // start again right after it.
                            k.applied = k.committed;
                            let old = k.take_tap(TapState::Closed { retry_at: Nanos(0) });
                            ended.push((old, k.cfg.clone()));
                        }
                    }
                }
            }
        }
        for (tap, cfg) in ended {
            self.end_tap(tap, &cfg, true);
        }
    }

    /// Opens what is due, returns credit; the next deadline.
    fn tend(&self, l: &Links, now: Nanos) -> Nanos {
        let mut next = now.after(SOURCES_SAVE_INTERVAL_NS);
        let mut opens = Vec::new();
        let mut credits = Vec::new();
        let mut closes = Vec::new();
        let (target_last, offset) = {
            let last = l.stream.next_seq() - 1;
            (last, l.stream.positions.borrow().offset)
        };
        let mut remote = Vec::new();
        for link in l.links.borrow_mut().iter_mut() {
            if link.cfg.is_external() {
                // Their consumers return no credit.
                link.credit_msgs = 0;
                if link.due(now) {
                    remote.push(link.id);
                }
                next = next.min(link.deadline());
                continue;
            }
            if link.due(now) {
                if let TapState::Open { key, origin } = link.tap {
                    closes.push((origin, key));
                }
                match self.open_request(l, link, target_last, offset, now) {
                    Some(req) => opens.push(req),
                    None => link.retry_later(now),
                }
            }
            if let TapState::Open { key, origin } = link.tap {
                if link.credit_due(now) {
                    credits.push(JsCmd::TapCredit {
                        origin,
                        tap: key,
                        stored: link.committed,
                        msgs: std::mem::take(&mut link.credit_msgs),
                        bytes: std::mem::take(&mut link.credit_bytes),
                    });
                }
            }
            next = next.min(link.deadline());
        }
        for (origin, key) in closes {
            self.close_tap(origin, key);
        }
        for id in remote {
            self.remote_tend(l, id, now);
        }
        for (owner, req) in opens {
            self.send_cmd(owner, JsCmd::TapOpen(Box::new(req)));
        }
        for c in credits {
            let JsCmd::TapCredit { origin, .. } = &c else {
                unreachable!("credits only");
            };
            if let Some(owner) = self.catalog_owner_of_uid(*origin) {
                self.send_cmd(owner, c);
            }
        }
        next
    }

    /// The request that opens `link`'s tap now, and the origin's owner; or
    /// None (with the error set) when the origin is not there.
    fn open_request(
        &self,
        l: &Links,
        link: &mut Link,
        target_last: u64,
        offset: u64,
        now: Nanos,
    ) -> Option<(u16, TapOpen)> {
        let Some(owner) = self.catalog.borrow().get(&link.cfg.name).map(|e| e.owner) else {
            link.error = Some(ApiError::stream_not_found());
            return None;
        };
        let key = link.next_key(self.shard.id, l.stream.uid);
        crate::debug!(
            "JetStream stream '{}': opening its link to '{}' after origin sequence {}",
            l.stream.name,
            link.cfg.name,
            link.applied
        );
        // Everything staged is the tap's to skip; credit starts whole.
        link.credit_msgs = 0;
        link.credit_bytes = 0;
        link.tap = TapState::Opening { key, since: now };
        Some((
            owner,
            TapOpen {
                origin: link.cfg.name.clone(),
                tap: key,
                iname: link.iname.to_string(),
                start: link.start(target_last, offset),
                filters: link.filters.clone(),
                ident: link.ident.to_string(),
                msgs: LINK_CREDIT_MSGS,
                bytes: LINK_CREDIT_BYTES,
            },
        ))
    }
}

/// One message of an origin, as a link receives it.
pub(crate) struct Origin {
    pub seq: u64,
    pub ts: i64,
    pub subject: bytes::Bytes,
    pub hdr: bytes::Bytes,
    pub payload: bytes::Bytes,
}

/// The tap is open: the link hears the origin's identity.
fn opened(l: &Links, tap: TapKey, origin: u32, ident: String) {
    let mut links = l.links.borrow_mut();
    let Some(link) = links.iter_mut().find(|k| k.current(tap)) else {
        return;
    };
    link.tap = TapState::Open { key: tap, origin };
    link.ident = ident.into();
    link.error = None;
    link.heard = Nanos::now();
    link.backoff = LINK_RETRY_NS;
}

/// A link in stream info (`mirror`, `sources[]`), in nats-server's shape.
#[derive(serde::Serialize)]
struct LinkInfo<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<&'a crate::js::types::source::External>,
    lag: u64,
    /// Last origin sequence received (sources only; omitted while 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    /// Nanoseconds since the origin was last heard from; -1: never.
    active: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
    #[serde(skip_serializing_if = "str::is_empty")]
    filter_subject: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    subject_transforms: &'a [crate::js::types::source::SubjectTransform],
}

impl Js {
    /// The `mirror` and `sources` parts of a stream's info (JSON, each with
    /// its leading comma), empty when it has none. `creating`: a create's
    /// answer, which shows the links as nats-server does before they start
    /// (nothing heard, no error yet, a mirror's filter not yet set up).
    pub fn links_info(&self, s: &Stream, creating: bool) -> String {
        let cfg = s.cfg.borrow();
        if cfg.links().next().is_none() {
            return String::new();
        }
        let l = self.links.borrow().get(&s.uid).cloned();
        let links = l.as_ref().map(|l| l.links.borrow());
        let now = Nanos::now();
        let item = |role: Role, src: &crate::js::types::source::StreamSource| {
            let link = links
                .as_ref()
                .and_then(|ls| ls.iter().find(|k| k.role == role && k.cfg == *src))
                .filter(|_| !creating);
            let info = LinkInfo {
                name: &src.name,
                external: src.external.as_ref(),
                lag: link.map_or(0, Link::lag),
                seq: link
                    .map(|k| k.applied)
                    .filter(|q| *q > 0 && role == Role::Source),
                active: link
                    .map(|k| k.heard)
                    .filter(|h| *h != Nanos(0))
                    .map_or(-1, |h| now.since(h).max(0)),
                error: link.and_then(|k| k.error.as_ref()),
                filter_subject: if creating && role == Role::Mirror {
                    ""
                } else {
                    &src.filter_subject
                },
                subject_transforms: &src.subject_transforms,
            };
            String::from_utf8(crate::js::types::json::encode(&info)).expect("utf8")
        };
        let mut out = String::new();
        if let Some(m) = &cfg.mirror {
            out.push_str(",\"mirror\":");
            out.push_str(&item(Role::Mirror, m));
        }
        if !cfg.sources().is_empty() {
            let parts: Vec<String> = cfg
                .sources()
                .iter()
                .map(|s| item(Role::Source, s))
                .collect();
            out.push_str(&format!(",\"sources\":[{}]", parts.join(",")));
        }
        out
    }
}
