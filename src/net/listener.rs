//! Per-shard accept loop. Every shard binds the client port itself (SO_REUSEPORT),
//! so the kernel spreads connections over shards; a client may later move to
//! the shard its publishes go to (`router::moving`).

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::shard::Shard;

pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                crate::error!("Error accepting client connection: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.stopping.get() {
            return;
        }
        // The whole server's bound: clients that moved may fill one shard.
        let open = shard
            .server
            .clients
            .load(std::sync::atomic::Ordering::Relaxed);
        if open >= crate::limits::CONNECTIONS_MAX {
            crate::warn!("Maximum connections exceeded, refusing a client");
            glommio::spawn_local(refuse(stream)).detach();
            continue;
        }
        glommio::spawn_local(crate::net::session::serve(shard.clone(), stream)).detach();
    }
}

async fn refuse(mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let _ = stream
        .write_all(b"-ERR 'maximum connections exceeded'\r\n")
        .await;
    let _ = stream.close().await;
}
