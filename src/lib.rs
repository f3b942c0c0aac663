//! jetcore: a NATS-compatible message server, thread-per-core on glommio.
//!
//! See ARCHITECTURE.md for the map. Modules, bottom-up (each uses only those above):
//! - `limits`: every bound, with its reason.
//! - `log`: nats-server style log lines.
//! - `config`: command line → `Config` (nats-server flags, Go style).
//! - `notify`: single-waiter wake-up for tasks on one shard.
//! - `subject`: subject validation and the interest trie with its match cache.
//! - `protocol`: client ops, the byte parser, INFO/CONNECT, header blocks.
//! - `shard::msg`, `shard::mesh`: what crosses shards, and the bounded mesh.
//! - `net`: connections (read/write/ping loops), outbound queues, accept loops.
//! - `router`: the publish path and interest bookkeeping.
//! - `js`: JetStream: streams on their owner shard, segment files, the API.
//! - `shard`: the per-core root that owns all of the above on its core.
//! - `server`: process startup: executors, signals, exit codes.

pub mod bench;
pub mod config;
pub mod js;
pub mod limits;
pub mod log;
pub mod net;
pub mod notify;
pub mod protocol;
pub mod router;
pub mod server;
pub mod shard;
pub mod subject;
