//! The catalogue: every stream as every shard knows it, and what a listing
//! gathers from the shards.

use crate::js::types::stream_config::StreamConfig;

/// A stream as every shard knows it (the coordinator, shard 0, decides it and
/// broadcasts every change).
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The shard that owns the stream: its files, its writer, its consumers.
    pub owner: u16,
    /// Unique for the process's life and across restarts (kept in `meta.json`);
    /// internal subscriptions carry it in `SubKey::sub`.
    pub uid: u32,
    /// Creation time, Unix nanoseconds.
    pub created: i64,
    pub config: StreamConfig,
}

/// What a gather asks every shard for.
#[derive(Debug, Clone)]
pub enum GatherAsk {
    /// Account usage (`$JS.API.INFO`).
    Usage,
    /// Stream infos for `STREAM.LIST`, of the streams whose subjects overlap
    /// `subject` (all when empty).
    Streams { subject: String },
    /// Usage, counts, and (when `streams`) each stream's `/jsz` detail.
    Jsz {
        streams: bool,
        consumers: bool,
        config: bool,
    },
}

/// One shard's answer to a gather.
#[derive(Debug, Default)]
pub enum GatherPart {
    #[default]
    Empty,
    Usage(Usage),
    /// (stream name, its info as a list item, JSON).
    Streams(Vec<(String, Vec<u8>)>),
    /// Usage, messages and bytes stored, and (stream name, `/jsz` detail JSON).
    Jsz {
        usage: Usage,
        messages: u64,
        bytes: u64,
        streams: Vec<(String, String)>,
    },
}

/// One shard's share of the account's usage.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub memory: u64,
    pub storage: u64,
    pub reserved_storage: i64,
    pub streams: u64,
    pub consumers: u64,
    pub api_total: u64,
    pub api_errors: u64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.memory += o.memory;
        self.storage += o.storage;
        self.reserved_storage += o.reserved_storage;
        self.streams += o.streams;
        self.consumers += o.consumers;
        self.api_total += o.api_total;
        self.api_errors += o.api_errors;
    }
}
