//! jetcore: a NATS-compatible message server, thread-per-core on glommio.
//!
//! See ARCHITECTURE.md for the map. Modules, bottom-up: each uses only those
//! on its own line or above (`tests/tidy.rs` checks it on every `cargo test`).
//! - `limits`: every bound, with its reason.
//! - `log`: nats-server style log lines.
//! - `subject`: subject validation and the interest trie with its match cache.
//! - `conf`: nats-server's configuration file format, values with file and line.
//! - `config_file`: the keys of a configuration file jetcore honours.
//! - `config_flags`: nats-server's flag spellings (Go style) rewritten for clap.
//! - `protocol`: client ops, the byte parser, INFO/CONNECT, header blocks.
//! - `auth`, `tls`: who may connect (token, users, bcrypt, NKeys) and their
//!   permissions; TLS sessions (rustls).
//! - `config`: command line (and `-c` file) → `Config` (nats-server flags, Go style).
//! - `notify`: single-waiter and broadcast wake-ups for tasks on one shard.
//! - `js::types`: JetStream's data: configs, API errors, Go-style JSON, the
//!   catalogue entry, sequence and time newtypes (no runtime state).
//! - `shard::msg`, `shard::stats`, `shard::gather`: what crosses shards
//!   (`ShardMsg`, `JsCmd`, monitoring's questions and answers), gathering answers.
//! - `shard::mesh`: the bounded channel mesh and per-peer batches.
//! - `net::io`, `net::outbound`, `net::conn`, `net::link`: socket I/O, outbound
//!   queues, a connection's shared state, a leaf connection's own.
//! - `shard`: the per-core root (`Shard`) and the `JetStream` trait it calls.
//! - `router`: the publish path and interest bookkeeping (`impl Shard`).
//! - `net::session`, `net::listener`, `leaf`: the tasks driving a connection
//!   (a client's or a leaf connection's), accept loops, dialling remotes.
//! - `js`: JetStream on a shard: storage, streams, consumers, the API.
//! - `monitor`: the HTTP monitoring port (on shard 0), gathering from every shard.
//! - `server`: process and shard startup, signals, exit codes.
//! - `bench`: the load generator (`jetcore-bench`), a client; not the server.

pub mod auth;
pub mod bench;
pub mod conf;
pub mod config;
pub mod config_file;
pub mod config_flags;
pub mod js;
pub mod leaf;
pub mod limits;
pub mod log;
pub mod monitor;
pub mod net;
pub mod notify;
pub mod protocol;
pub mod router;
pub mod server;
pub mod shard;
pub mod subject;
pub mod tls;
