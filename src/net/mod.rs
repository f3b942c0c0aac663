//! Client connections: socket I/O helpers (`io`), outbound queues (`outbound`),
//! a connection's shared state (`conn`) and a leaf connection's own (`link`),
//! the tasks that drive it (`session`), and each shard's accept loop (`listener`).

pub mod conn;
pub mod io;
pub mod link;
pub mod listener;
pub mod outbound;
pub mod session;
