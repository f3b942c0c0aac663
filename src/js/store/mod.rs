//! A stream's storage: the record codec, segment files (O_DIRECT appends,
//! aligned reads, recovery scan) and the in-memory index.

pub mod bodies;
pub mod index;
pub mod packed;
pub mod record;
pub mod recovery;
pub mod segindex;
pub mod segment;
pub mod slots;
pub mod stagebuf;
pub mod write_job;
