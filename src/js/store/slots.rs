//! Small state saved in place in two slot files written in turn (a durable
//! consumer's position, a stream's source positions). Each slot holds a
//! generation and a checksum: a torn write spoils only the slot being
//! written, and loading takes the newest whole one. No rename and no
//! directory sync per save: a slot's directory entry is synced once, when its
//! file is first created.
//!
//! A slot: generation (8 bytes LE), JSON length (4), crc32c of the JSON (4),
//! the JSON.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::js::store::segment;

/// Two slots named `<base>.0` and `<base>.1` in a directory.
pub struct Slots {
    dir: PathBuf,
    names: [String; 2],
    /// Generation of the last saved state.
    gen: Cell<u64>,
    /// Which slots' files exist on disk (their directory entries synced).
    synced: Cell<[bool; 2]>,
}

impl Slots {
    pub fn new(dir: PathBuf, base: &str) -> Slots {
        Slots {
            dir,
            names: [format!("{base}.0"), format!("{base}.1")],
            gen: Cell::new(0),
            synced: Cell::new([false, false]),
        }
    }

    /// Loads the newest whole slot (and remembers which slot files exist).
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> Loaded<T> {
        let files = [self.dir.join(&self.names[0]), self.dir.join(&self.names[1])];
        self.synced.set([files[0].exists(), files[1].exists()]);
        let newest = files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|raw| decode::<T>(&raw))
            .max_by_key(|(gen, _)| *gen);
        match newest {
            Some((gen, state)) => {
                self.gen.set(gen);
                Loaded::State(state)
            }
            None if files.iter().any(|p| p.exists()) => Loaded::Damaged,
            None => Loaded::None,
        }
    }

    /// Writes `state` into the next slot and fdatasyncs it.
    pub async fn save<T: serde::Serialize>(&self, state: &T) -> Result<(), String> {
        let gen = self.gen.get() + 1;
        let slot = (gen % 2) as usize;
        let path = self.dir.join(&self.names[slot]);
        let fresh = !self.synced.get()[slot];
        let bytes = encode(gen, state);
        let result = async {
            let f = glommio::io::BufferedFile::create(&path).await?;
            f.write_at(bytes, 0).await?;
            f.fdatasync().await?;
            f.close().await?;
            if fresh {
                segment::sync_dir_async(&self.dir).await?;
            }
            Ok::<(), glommio::GlommioError<()>>(())
        }
        .await;
        result.map_err(|e| e.to_string())?;
        self.gen.set(gen);
        let mut synced = self.synced.get();
        synced[slot] = true;
        self.synced.set(synced);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What loading found.
pub enum Loaded<T> {
    State(T),
    /// Slot files exist, but none is whole.
    Damaged,
    None,
}

fn encode<T: serde::Serialize>(gen: u64, state: &T) -> Vec<u8> {
    let json = serde_json::to_vec(state).expect("state serializes");
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(&gen.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A slot's generation and state, if it is whole.
fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Option<(u64, T)> {
    let gen = u64::from_le_bytes(raw.get(0..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(raw.get(8..12)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(raw.get(12..16)?.try_into().ok()?);
    let json = raw.get(16..16 + len)?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    Some((gen, serde_json::from_slice(json).ok()?))
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_reject_torn_writes_and_take_the_newest_whole_one() {
        let raw = encode(3, &vec![7u64, 8]);
        assert_eq!(decode::<Vec<u64>>(&raw), Some((3, vec![7, 8])));
        for cut in [0, 10, 16, raw.len() - 1] {
            assert!(decode::<Vec<u64>>(&raw[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = raw.clone();
        flipped[17] ^= 1;
        assert!(decode::<Vec<u64>>(&flipped).is_none());
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().to_path_buf(), "state");
        assert!(matches!(slots.load::<Vec<u64>>(), Loaded::None));
        std::fs::write(dir.path().join("state.1"), encode(5, &vec![5u64])).unwrap();
        let mut torn = encode(6, &vec![6u64]);
        torn.truncate(torn.len() - 3);
        std::fs::write(dir.path().join("state.0"), &torn).unwrap();
        match slots.load::<Vec<u64>>() {
            Loaded::State(v) => assert_eq!(v, vec![5]),
            _ => panic!("slot 1 is whole"),
        }
        assert_eq!(slots.gen.get(), 5);
        std::fs::write(dir.path().join("state.1"), &torn).unwrap();
        assert!(matches!(slots.load::<Vec<u64>>(), Loaded::Damaged));
    }
}
