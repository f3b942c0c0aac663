//! Runs one shard: join the meshes, build the `Shard`, open JetStream (recovering
//! the streams it owns), accept connections, and on shutdown close streams and
//! drain connections.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;

use crate::net::conn::{CloseReason, Conn};
use crate::shard::mesh::{Mesh, MeshReceivers};
use crate::shard::msg::{BarrierAck, Batch};
use crate::shard::{Server, Shard, LAME_DUCK, SHUTDOWN};
use crate::subject::trie::SubjectTrie;

/// Meshes every shard joins at startup (cloned into each executor).
#[derive(Clone)]
pub struct MeshSetup {
    pub data: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    pub acks: MeshBuilder<BarrierAck, glommio::channels::channel_mesh::Full>,
}

/// Runs shard `index` until shutdown.
pub async fn run(
    server: Arc<Server>,
    index: usize,
    meshes: Option<MeshSetup>,
) -> Result<(), String> {
    let (mesh, receivers) = match meshes {
        Some(setup) => {
            // glommio wakes tasks waiting for a channel's peer to connect only when
            // its reactor runs; a parked executor would never run it. Tick until
            // both meshes are joined.
            let joined = Rc::new(Cell::new(false));
            let ticking = joined.clone();
            glommio::spawn_local(async move {
                while !ticking.get() {
                    glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                }
            })
            .detach();
            let data = setup.data.join().await;
            let acks = setup.acks.join().await;
            joined.set(true);
            let (data_tx, data_rx) = data.map_err(|e| format!("mesh: {e}"))?;
            let (ack_tx, ack_rx) = acks.map_err(|e| format!("mesh: {e}"))?;
            crate::debug!("shard {index} is mesh peer {}", data_tx.peer_id());
            (
                Some(Mesh::new(data_tx, ack_tx)),
                Some(MeshReceivers {
                    data: data_rx,
                    acks: ack_rx,
                }),
            )
        }
        None => (None, None),
    };
    let id = mesh.as_ref().map_or(index as u16, |m| m.id());
    let shard = Rc::new_cyclic(|me| Shard {
        id,
        count: server.cfg.shards as u16,
        cfg: Rc::new(server.cfg.clone()),
        server: server.clone(),
        conns: RefCell::new(AHashMap::new()),
        interest: RefCell::new(SubjectTrie::new()),
        match_scratch: RefCell::new(Default::default()),
        mesh,
        next_conn: Cell::new(0),
        rng: Cell::new(
            0x9E37_79B9_7F4A_7C15 ^ (u64::from(id) + 1).wrapping_mul(0x1234_5678_9ABC_DEF1),
        ),
        stopping: Cell::new(false),
        info_prefix: crate::shard::info_prefix(&server, false),
        info_prefix_connected: crate::shard::info_prefix(&server, true),
        js: OnceCell::new(),
        trace: crate::log::enabled(crate::log::Level::Trace),
        flush_pending: Cell::new(false),
        stats: RefCell::default(),
        stats_gathers: Default::default(),
        live_changed: Default::default(),
        links: RefCell::new(Vec::new()),
        arrived: RefCell::new(Vec::new()),
        arrivals: crate::notify::Notify::new(),
        me: me.clone(),
    });
    if let Some(receivers) = receivers {
        spawn_receivers(&shard, receivers);
    }
    // Monitoring answers from the start (`/healthz` says when start-up is done).
    let js_cell = Rc::new(OnceCell::new());
    if id == 0 {
        crate::monitor::start(&shard, js_cell.clone())?;
    }
    let js = match &server.cfg.jetstream {
        Some(dir) => Some(crate::js::open(&shard, dir.join("jetstream"), server.cfg.sync).await?),
        None => None,
    };
    if let Some(js) = &js {
        let _ = js_cell.set(js.clone());
    }
    // Every shard's streams are there before anyone asks for them: a
    // client's request, or a mirror or source reading its origin.
    if let Some(js) = &js {
        js.measure_room(); // this shard's usage, before the others read it
    }
    server.recovered.fetch_add(1, Ordering::SeqCst);
    while server.recovered.load(Ordering::SeqCst) < server.cfg.shards {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    if let Some(js) = &js {
        js.measure_room();
        js.start_recovered_links();
    }
    let listener = TcpListener::bind(server.listen)
        .map_err(|e| format!("shard {id}: cannot listen on {}: {e}", server.listen))?;
    if server.bound.fetch_add(1, Ordering::SeqCst) + 1 == server.cfg.shards {
        crate::info!("Listening for client connections on {}", server.listen);
        crate::info!("Server is ready");
    }
    let accept = glommio::spawn_local(crate::net::listener::accept_loop(shard.clone(), listener));
    if shard.mesh.is_some() {
        glommio::spawn_local(crate::net::session::adopt_loop(shard.clone())).detach();
    }
    let mut accept = Some(accept);
    let mut leaf_accept = crate::leaf::start(&shard)?;
    let mut auth_gen = server.auth_gen.load(Ordering::SeqCst);
    let mut loaded = server.live.config_loaded();
    let mut load = crate::shard::stats::LoadMeter::new();
    while !SHUTDOWN.load(Ordering::Relaxed) {
        glommio::timer::sleep(crate::limits::SHUTDOWN_POLL).await;
        server.shard_load[usize::from(id)].publish(load.sample());
        let gen = server.auth_gen.load(Ordering::SeqCst);
        if gen != auth_gen {
            auth_gen = gen;
            shard.reauthorize();
        }
        if server.live.config_loaded() != loaded {
            loaded = server.live.config_loaded();
            shard.live_changed.notify_all();
        }
        if LAME_DUCK.load(Ordering::Relaxed) {
            if let Some(a) = leaf_accept.take() {
                a.cancel().await;
            }
            if let Some(a) = accept.take() {
                a.cancel().await; // the listener goes: no new clients here
                glommio::spawn_local(lame_duck(shard.clone())).detach();
            }
        }
    }
    shard.stopping.set(true);
    if let Some(a) = accept {
        a.cancel().await;
    }
    if let Some(a) = leaf_accept {
        a.cancel().await;
    }
    if let Some(js) = &js {
        js.close_all().await;
    }
    drain_connections(&shard).await;
    Ok(())
}

fn spawn_receivers(shard: &Rc<Shard>, mut receivers: MeshReceivers) {
    for (peer, rx) in receivers.data.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(batch) = rx.recv().await {
                assert_eq!(usize::from(batch.from), peer, "batch from the wrong peer");
                assert_eq!(batch.to, shard.id, "batch delivered to the wrong shard");
                shard.apply_batch(batch).await;
            }
        })
        .detach();
    }
    for (_, rx) in receivers.acks.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(ack) = rx.recv().await {
                shard.barrier_acked(ack);
            }
        })
        .detach();
    }
}

/// Lame duck mode on this shard: every client is told (`"ldm":true` in an
/// INFO), and after the grace period closed one by one over the rest of
/// `lame_duck_duration`; the last shard done stops the server.
async fn lame_duck(shard: Rc<Shard>) {
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    for c in conns.iter().filter(|c| c.link.is_none()) {
        c.send(&shard.info_line(c, false));
    }
    let (total, grace) = shard.server.live.lame_duck();
    glommio::timer::sleep(grace).await;
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    let step = total.saturating_sub(grace) / (conns.len() as u32).max(1);
    for c in conns {
        c.close(CloseReason::ServerShutdown);
        glommio::timer::sleep(step).await;
    }
    let done = shard.server.lame_duck_done.fetch_add(1, Ordering::SeqCst) + 1;
    if done == usize::from(shard.count) {
        crate::info!("Lame duck mode done, shutting down");
        SHUTDOWN.store(true, Ordering::SeqCst);
    }
}

/// Closes every connection after flushing its queue, waiting at most
/// `SHUTDOWN_FLUSH_MAX`.
async fn drain_connections(shard: &Rc<Shard>) {
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    for conn in &conns {
        conn.close(CloseReason::ServerShutdown);
    }
    let start = Instant::now();
    while start.elapsed() < crate::limits::SHUTDOWN_FLUSH_MAX {
        let busy = conns.iter().any(|c| c.out.borrow().pending() > 0);
        if !busy && shard.conns.borrow().is_empty() {
            break;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}
