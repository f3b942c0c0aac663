//! The NATS client protocol: ops and their encoders (`ops`), the byte-level parser
//! (`parser`), the INFO/CONNECT JSON types (`connect`) and header blocks (`headers`).

pub mod connect;
pub mod headers;
pub mod leaf;
pub mod ops;
pub mod parser;
