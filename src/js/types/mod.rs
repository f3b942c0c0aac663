//! JetStream's data: configs as the API sends them, API errors, Go-style JSON,
//! and the numbers that must not be mixed up. No runtime state: these types
//! are what shards exchange and what the API decodes and encodes.

pub mod catalog;
pub mod consumer_config;
pub mod errors;
pub mod json;
pub mod priority;
pub mod seq;
pub mod source;
pub mod stream_config;
