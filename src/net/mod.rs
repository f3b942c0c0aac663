//! Client connections: outbound queues (`outbound`), the per-connection read and
//! write loops (`conn`), and each shard's accept loop (`listener`).

pub mod conn;
pub mod io;
pub mod listener;
pub mod outbound;
