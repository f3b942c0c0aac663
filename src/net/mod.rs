//! Client connections: socket I/O helpers (`io`), outbound queues (`outbound`),
//! a connection's shared state (`conn`), the tasks that drive it (`session`),
//! and each shard's accept loop (`listener`).

pub mod conn;
pub mod io;
pub mod listener;
pub mod outbound;
pub mod session;
