//! JetStream on one shard (`Js`): the streams this shard owns, a replica of the
//! catalogue (every stream's owner and config), and the routing of API
//! requests and commands between shards.
//!
//! Who does what:
//! - The shard a request arrives on routes it (`route_api`): catalogue calls
//!   (create, update, delete, names, list, account info) go to shard 0, the
//!   coordinator; calls about one stream go straight to its owner.
//! - Shard 0 serialises catalogue changes (`meta`): it validates, picks the
//!   owner, broadcasts the new catalogue entry, and tells the owner to act
//!   (`JsCmd`); the owner (`owner`) answers the client.
//! - A stream's subjects are internal subscriptions (`JS_CID`, sub = uid) in
//!   every shard's interest trie, so publishes reach the owner through the
//!   normal routing, in order with the publisher's own subscriptions.
//!
//! Layout: `types` (configs, errors, JSON: data only), `store` (records,
//! segment files, the index), `stream` (one stream on its owner), `consumer`
//! (one consumer on its stream's owner), `api` (the `$JS.API` handlers),
//! `meta` (the coordinator), `owner` (stream lifecycle on the owner), `cmd`
//! (commands between shards), `lifecycle` (start-up recovery, background
//! loops, shutdown).

pub mod api;
pub mod cmd;
pub mod consumer;
pub mod lifecycle;
pub mod meta;
pub mod monitor;
pub mod owner;
pub mod source;
pub mod store;
pub mod stream;
pub mod types;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use ahash::AHashMap;
use bytes::Bytes;

use crate::config::SyncMode;
use crate::js::stream::Stream;
use crate::js::types::catalog::{CatalogEntry, GatherPart};
use crate::protocol::parser::PubOp;
use crate::shard::msg::{
    ApiRequest, JsCmd, ShardMsg, ACK_BIT, DIRECT_BIT, FC_BIT, KIND_MASK, LINK_KIND, NEXT_BIT,
    UID_MASK,
};
use crate::shard::{JetStream, Shard};

pub use lifecycle::open;

/// JetStream state of one shard. Lives as long as the shard's executor; every
/// field is touched only by this shard's tasks.
pub struct Js {
    pub shard: Rc<Shard>,
    /// `<store dir>/jetstream`.
    pub root: PathBuf,
    pub sync: SyncMode,
    /// Streams this shard owns, by name and by uid.
    pub streams: RefCell<AHashMap<String, Rc<Stream>>>,
    pub by_uid: RefCell<AHashMap<u32, Rc<Stream>>>,
    /// Every stream in the server (a replica; shard 0's is the authority).
    pub catalog: RefCell<BTreeMap<String, CatalogEntry>>,
    /// Coordinator: the next stream uid to hand out.
    pub(crate) next_uid: Cell<u32>,
    /// Coordinator: listings waiting for the other shards' parts.
    pub(crate) gathers: crate::shard::gather::Gathers<GatherPart>,
    /// Links (mirror, sources) of the owned streams that have them, by uid.
    pub links: RefCell<AHashMap<u32, Rc<source::Links>>>,
    /// Subscriptions of links to external origins, by id (`LINK_KIND`).
    pub(crate) remote_subs: RefCell<AHashMap<u32, source::remote_link::RemoteSub>>,
    pub(crate) next_remote_sub: Cell<u32>,
    /// API requests handled here and those answered with an error (account info).
    pub api_total: Cell<u64>,
    pub api_errors: Cell<u64>,
    /// `jetstream { strict: true }`: API requests with fields nats-server does
    /// not know are refused (10025), as nats-server's default strict mode does.
    pub strict: bool,
    /// Streams this shard is making (files being written): commands and
    /// API requests about them wait for `made`, which fires as each is done,
    /// as nats-server serialises them (a second identical create gets the
    /// stream's info, not `stream not found`).
    pub(crate) making: RefCell<ahash::AHashSet<String>>,
    pub(crate) made: crate::notify::Event,
    /// The server's storage limits, [memory, file] bytes (computed at start).
    pub limits: (i64, i64),
    /// Room left under them, shared with this shard's streams.
    pub room: Rc<stream::limits::Room>,
    me: Weak<Js>,
}

impl Js {
    pub fn new(shard: Rc<Shard>, root: PathBuf, sync: SyncMode) -> Rc<Js> {
        let limits = monitor::account_limits(&shard.cfg);
        let strict = shard.cfg.file_settings.js_strict.unwrap_or(false);
        Rc::new_cyclic(|me| Js {
            shard,
            root,
            sync,
            streams: RefCell::new(AHashMap::new()),
            by_uid: RefCell::new(AHashMap::new()),
            catalog: RefCell::new(BTreeMap::new()),
            next_uid: Cell::new(1),
            gathers: Default::default(),
            links: RefCell::new(AHashMap::new()),
            remote_subs: RefCell::new(AHashMap::new()),
            next_remote_sub: Cell::new(1),
            api_total: Cell::new(0),
            api_errors: Cell::new(0),
            strict,
            making: RefCell::new(Default::default()),
            made: Default::default(),
            limits,
            room: Rc::new(stream::limits::Room::default()),
            me: me.clone(),
        })
    }

    /// Publishes this shard's stored bytes and sets the room left under the
    /// server's limits from every shard's (each `EXPIRY_TICK`, and at start).
    pub fn measure_room(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut used = [0u64; 2];
        for s in self.streams.borrow().values() {
            let file = usize::from(!s.cfg.borrow().memory());
            used[file] += s.usage_bytes();
        }
        let slots = &self.shard.server.js_usage;
        for (k, v) in used.iter().enumerate() {
            slots[usize::from(self.shard.id)][k].store(*v, Relaxed);
        }
        let total = |k: usize| slots.iter().map(|s| s[k].load(Relaxed)).sum::<u64>() as i64;
        self.room
            .set(self.limits.0 - total(0), self.limits.1 - total(1));
    }

    /// This object as an `Rc` (for the tasks it spawns).
    pub fn me(&self) -> Rc<Js> {
        self.me
            .upgrade()
            .expect("JetStream alive while its tasks run")
    }

    pub fn streams_dir(&self) -> PathBuf {
        self.root.join("streams")
    }

    /// An owned stream by name.
    pub fn stream(&self, name: &str) -> Option<Rc<Stream>> {
        self.streams.borrow().get(name).cloned()
    }

    /// Returns once stream `name` is here or not being made on this shard
    /// (one still here is the one a request means: a delete and a create of
    /// the same name sent together delete the old one, not the new).
    pub async fn made_ready(&self, name: &str) {
        while self.stream(name).is_none() && self.making.borrow().contains(name) {
            self.made.wait().await;
        }
    }

    /// Sends `cmd` to shard `target`; to this shard, it is handled at once.
    pub fn send_cmd(&self, target: u16, cmd: JsCmd) {
        if target == self.shard.id {
            self.command(cmd);
        } else {
            self.shard.push_to(target, ShardMsg::Js(Box::new(cmd)));
        }
    }

    /// Sends an API request to shard `target` to answer.
    pub fn send_api(&self, target: u16, req: ApiRequest) {
        if target == self.shard.id {
            self.api(req);
        } else {
            self.shard.push_to(target, ShardMsg::Api(Box::new(req)));
        }
    }
}

impl JetStream for Js {
    fn leaf_up(&self) {
        let now = crate::js::types::seq::Nanos::now();
        for l in self.links.borrow().values() {
            let kicked = l
                .links
                .borrow_mut()
                .iter_mut()
                .fold(false, |any, link| link.kick(now) | any);
            if kicked {
                l.stream.links_wake.notify();
            }
        }
    }

    fn route_api(&self, p: &PubOp) -> bool {
        let rest = &p.subject[b"$JS.API.".len()..];
        if rest.starts_with(b"DIRECT.GET.") || rest.starts_with(b"CONSUMER.MSG.NEXT.") {
            return false; // through the streams' internal subscriptions
        }
        // Without a reply subject the request is still carried out (as
        // nats-server does); its answer goes nowhere.
        let target = match api::stream_of(rest) {
            Some(name) => self.catalog.borrow().get(name).map_or(0, |e| e.owner),
            None => 0,
        };
        self.send_api(
            target,
            ApiRequest {
                subject: p.subject.clone(),
                reply: p.reply.clone().unwrap_or_default(),
                hdr_len: p.hdr_len.map(|h| h as u32),
                msg: p.msg.clone(),
            },
        );
        true
    }

    fn deliver(
        &self,
        sub: u32,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        if sub & KIND_MASK == LINK_KIND {
            self.remote_inbound(sub & UID_MASK, subject, reply, hdr_len, msg);
            return false;
        }
        let stream = self.by_uid.borrow().get(&(sub & UID_MASK)).cloned();
        // Deleted while the message was on its way: nobody stores it.
        let Some(stream) = stream else { return false };
        let kind = sub & (NEXT_BIT | ACK_BIT | FC_BIT);
        if kind != 0 {
            api::consumer::on_internal(&self.shard, &stream, kind, subject, reply, hdr_len, msg);
            return false;
        }
        if sub & DIRECT_BIT != 0 {
            if let Some(reply) = reply {
                api::direct::get(&self.shard, &stream, subject, reply, hdr_len, msg);
            }
            return false;
        }
        match stream.ingest(subject, reply, hdr_len, msg) {
            stream::Ingest::Reply(body) => {
                if let Some(r) = reply {
                    self.shard.reply(r, None, &body);
                }
            }
            stream::Ingest::Accepted | stream::Ingest::Silent => {}
        }
        stream.congested()
    }

    fn api(&self, req: ApiRequest) {
        let js = self.me();
        glommio::spawn_local(async move {
            // glommio runs a new task at once; a request published by server
            // code (a status or advisory sent to an API subject) must not run
            // inside its sender, which may hold state.
            futures_lite::future::yield_now().await;
            api::handle(&js, req).await;
        })
        .detach();
    }

    fn command(&self, cmd: JsCmd) {
        // Tap traffic is handled in place, in arrival order.
        let cmd = match cmd {
            JsCmd::TapOpen(req) => return self.tap_open(*req),
            JsCmd::TapOpened { tap, origin, ident } => {
                return self.link_inbound(tap.uid, source::Inbound::Opened { tap, origin, ident })
            }
            JsCmd::TapData {
                tap,
                batch,
                pending,
            } => {
                let msg = source::Inbound::Data {
                    tap,
                    batch,
                    pending,
                };
                return self.link_inbound(tap.uid, msg);
            }
            JsCmd::TapError { tap, error, ident } => {
                return self.link_inbound(tap.uid, source::Inbound::Error { tap, error, ident })
            }
            JsCmd::TapCredit {
                origin,
                tap,
                stored,
                msgs,
                bytes,
            } => return self.tap_credit(origin, tap, stored, msgs, bytes),
            JsCmd::TapClose { origin, tap } => return self.tap_close(origin, tap),
            JsCmd::LeafUp => return self.leaf_up(),
            // Being made from now: what arrives before its task runs waits.
            JsCmd::Create { entry, reply } => {
                self.making.borrow_mut().insert(entry.config.name.clone());
                JsCmd::Create { entry, reply }
            }
            other => other,
        };
        let js = self.me();
        glommio::spawn_local(async move { js.on_cmd(cmd).await }).detach();
    }

    fn stall(&self, sub: u32) -> Pin<Box<dyn Future<Output = ()>>> {
        let stream = self.by_uid.borrow().get(&(sub & UID_MASK)).cloned();
        Box::pin(async move {
            if let Some(s) = stream {
                s.wait_uncongested().await;
            }
        })
    }
}
