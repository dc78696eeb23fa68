//! Small records of a partition's Raft state that change often and must
//! never be read half-written: the vote (`raft-vote`) and the committed log
//! id (`raft-committed`). A file holds two 512-byte slots overwritten in turn,
//! each a magic, a sequence number, the record's bytes and a CRC-32C over
//! them. Saving writes the slot that does not hold the newest record, in
//! place: no file is created or renamed per save. The vote is fdatasynced
//! after its write ([`Sync::Durable`]: one sync, where replacing a file costs
//! two, and a new group saves its vote two or three times while it elects its
//! first leader); the committed id, saved at each commit, only reaches the
//! page cache ([`Sync::PageCache`]).
//!
//! A write torn by a crash damages only the slot being written; its CRC then
//! fails and the other slot, the record saved before, is read. For the vote
//! that was the durable one: the new vote was not reported saved before its
//! fdatasync returned.
//!
//! The file is created, zeroed (no record), when the store opens without one.
//! Its name in the directory must be durable before a vote counts: when the
//! store's anchor is written in the same open (a new partition), the
//! anchor's directory fsync covers it ([`SlotFile::dir_synced`]); otherwise
//! the first durable save fsyncs the directory too.
//!
//! A directory from before this format holds the record as a JSON file: it
//! is read, and rewritten in slots (atomic replace, durable) on open.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable_file;
pub(crate) use crate::durable_file::Sync;
use crate::error::{RaftStoreError, Result};

/// Bytes per slot.
const SLOT: usize = 512;
/// Magic, sequence number, length, CRC.
const HEADER: usize = 4 + 8 + 4 + 4;
/// The largest record a slot holds.
const MAX_RECORD: usize = SLOT - HEADER;

/// Which record a slot file holds: its name and the magic of its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The file's name in the partition directory.
    pub(crate) name: &'static str,
    /// Marks a written slot.
    magic: &'static [u8; 4],
}

/// The vote (`raft-vote`).
pub(crate) const VOTE: Kind = Kind {
    name: "raft-vote",
    magic: b"WRV1",
};

/// The committed log id (`raft-committed`).
pub(crate) const COMMITTED: Kind = Kind {
    name: "raft-committed",
    magic: b"WRC1",
};

/// An open slot file.
#[derive(Debug)]
pub(crate) struct SlotFile {
    kind: Kind,
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Each slot's sequence number (`None`: empty or unreadable).
    seqs: [Option<u64>; 2],
    /// Whether the file's name in the directory is known durable.
    dir_synced: bool,
    /// Whether this open created the file.
    created: bool,
    /// Whether both slots were written and neither read whole.
    destroyed: bool,
}

impl SlotFile {
    /// Opens the `kind` file of `dir` (creating it empty when missing) and
    /// returns the newest record it holds. Blocking.
    pub(crate) fn open(dir: &Path, kind: Kind) -> Result<(Self, Option<Vec<u8>>)> {
        let path = dir.join(kind.name);
        let existing = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(RaftStoreError::io(&path)(e)),
        };
        // A record saved as JSON by an older version (an object, or `null`):
        // rewritten in slots.
        if let Some(json) = existing
            .as_ref()
            .filter(|b| matches!(b.first(), Some(b'{' | b'n')))
        {
            let image = slots_image(kind, json)?;
            durable_file::write(dir, kind.name, &image, Sync::Durable)?;
            let (mut file, record) = Self::open(dir, kind)?;
            file.dir_synced = true;
            return Ok((file, record));
        }
        let created = existing.is_none();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(RaftStoreError::io(&path))?;
        let bytes = existing.unwrap_or_default();
        let read = |i: usize| {
            bytes
                .get(i * SLOT..(i + 1) * SLOT)
                .and_then(|b| read_slot(kind, b))
        };
        // Both slots written (not zeros) yet neither whole: the record was
        // destroyed, not torn (a torn save leaves the other slot's record,
        // or, on the first save, zeros there).
        let written = |i: usize| {
            bytes
                .get(i * SLOT..(i + 1) * SLOT)
                .is_some_and(|b| b.iter().any(|&x| x != 0))
        };
        let slots = [read(0), read(1)];
        let destroyed = slots.iter().all(Option::is_none) && written(0) && written(1);
        let seqs = [
            slots[0].as_ref().map(|s| s.0),
            slots[1].as_ref().map(|s| s.0),
        ];
        let record = slots
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, v)| v);
        let slot_file = Self {
            kind,
            path,
            dir: dir.to_path_buf(),
            file,
            seqs,
            dir_synced: false,
            created,
            destroyed,
        };
        Ok((slot_file, record))
    }

    /// Whether this open created the file (its name is not durable yet).
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Whether the file held records that are all unreadable now (both
    /// slots written, neither whole): the open read none.
    pub(crate) fn destroyed(&self) -> bool {
        self.destroyed
    }

    /// Notes that the directory was fsynced after the file was created
    /// (the store's new anchor): saves need not fsync it again.
    pub(crate) fn dir_synced(&mut self) {
        self.dir_synced = true;
    }

    /// Saves `record`: durable on return under [`Sync::Durable`], in the
    /// page cache under [`Sync::PageCache`]. Blocking (a page-cache save
    /// only writes one slot).
    pub(crate) fn save(&mut self, record: &[u8], sync: Sync) -> Result<()> {
        // The slot not holding the newest record.
        let slot = match self.seqs {
            [Some(a), Some(b)] => usize::from(a > b),
            [Some(_), None] => 1,
            _ => 0,
        };
        let seq = self.seqs.iter().flatten().max().map_or(1, |s| s + 1);
        let bytes = slot_bytes(self.kind, seq, record)?;
        self.file
            .write_all_at(&bytes, (slot * SLOT) as u64)
            .map_err(RaftStoreError::io(&self.path))?;
        if sync == Sync::PageCache {
            self.seqs[slot] = Some(seq);
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(RaftStoreError::io(&self.path))?;
        if !self.dir_synced {
            durable_file::sync_dir(&self.dir)?;
            self.dir_synced = true;
        }
        self.seqs[slot] = Some(seq);
        Ok(())
    }
}

/// One slot holding `record` under sequence number `seq`.
fn slot_bytes(kind: Kind, seq: u64, record: &[u8]) -> Result<[u8; SLOT]> {
    if record.len() > MAX_RECORD {
        return Err(RaftStoreError::corrupt(
            kind.name,
            format!("a record of {} bytes (at most {MAX_RECORD})", record.len()),
        ));
    }
    let mut b = [0u8; SLOT];
    b[..4].copy_from_slice(kind.magic);
    b[4..12].copy_from_slice(&seq.to_be_bytes());
    b[12..16].copy_from_slice(&(record.len() as u32).to_be_bytes());
    b[HEADER..HEADER + record.len()].copy_from_slice(record);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..16]), record);
    b[16..20].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// A slot's sequence number and record, if it holds a whole one.
fn read_slot(kind: Kind, b: &[u8]) -> Option<(u64, Vec<u8>)> {
    if b.len() != SLOT || &b[..4] != kind.magic {
        return None;
    }
    let seq = u64::from_be_bytes(b[4..12].try_into().ok()?);
    let len = u32::from_be_bytes(b[12..16].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let record = b.get(HEADER..HEADER + len)?;
    (crc32c::crc32c_append(crc32c::crc32c(&b[..16]), record) == crc).then(|| (seq, record.to_vec()))
}

/// A whole file holding `record` in its first slot.
fn slots_image(kind: Kind, record: &[u8]) -> Result<Vec<u8>> {
    let mut image = slot_bytes(kind, 1, record)?.to_vec();
    image.resize(2 * SLOT, 0);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> Option<Vec<u8>> {
        SlotFile::open(dir, VOTE).unwrap().1
    }

    /// Garbage over both slots reads as no record but is told apart from a
    /// torn first save (one slot written, the other still zeros).
    #[test]
    fn both_slots_destroyed_are_told_apart_from_a_torn_first_save() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _) = SlotFile::open(dir.path(), VOTE).unwrap();
        f.save(b"{\"t\":1}", Sync::Durable).unwrap();
        f.save(b"{\"t\":2}", Sync::Durable).unwrap();
        drop(f);
        let path = dir.path().join(VOTE.name);
        std::fs::write(&path, vec![0x5a; 2 * SLOT]).unwrap();
        let (f, record) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert!(record.is_none() && f.destroyed());
        // A first save torn half-way: slot 0 garbage, slot 1 zeros.
        let mut torn = vec![0x5a; SLOT];
        torn.resize(2 * SLOT, 0);
        std::fs::write(&path, torn).unwrap();
        let (f, record) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert!(record.is_none() && !f.destroyed());
        // One slot whole: its record, nothing destroyed.
        let mut one = slot_bytes(VOTE, 7, b"{}").unwrap().to_vec();
        one.extend_from_slice(&[0x5a; SLOT]);
        std::fs::write(&path, one).unwrap();
        let (f, record) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert_eq!(record.as_deref(), Some(&b"{}"[..]));
        assert!(!f.destroyed());
    }

    /// Saves alternate between the slots; a reopen reads the newest.
    #[test]
    fn the_newest_vote_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, vote) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert!(f.created() && vote.is_none());
        assert_eq!(reopen(dir.path()), None, "an empty file holds no vote");
        for (i, v) in [&b"{\"t\":1}"[..], b"{\"t\":2}", b"{\"t\":3}"]
            .iter()
            .enumerate()
        {
            f.save(v, Sync::Durable).unwrap();
            assert_eq!(reopen(dir.path()).as_deref(), Some(*v), "save {i}");
        }
        assert_eq!(f.seqs, [Some(3), Some(2)]);
        // A reopened file goes on from the newest.
        let (mut g, _) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert!(!g.created());
        g.save(b"{\"t\":4}", Sync::Durable).unwrap();
        assert_eq!(g.seqs, [Some(3), Some(4)]);
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"{\"t\":4}"[..]));
        assert!(f.save(&[b'x'; MAX_RECORD + 1], Sync::Durable).is_err());
    }

    /// A save torn by a crash (any byte of the slot being written wrong, or
    /// the file cut inside it) leaves the vote saved before it.
    #[test]
    fn a_torn_save_leaves_the_previous_vote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VOTE.name);
        let (mut f, _) = SlotFile::open(dir.path(), VOTE).unwrap();
        f.save(b"{\"old\":1}", Sync::Durable).unwrap();
        f.save(b"{\"new\":2}", Sync::Durable).unwrap(); // slot 1
        let good = std::fs::read(&path).unwrap();
        for at in [0, 5, 13, 17, HEADER, HEADER + 3] {
            let mut torn = good.clone();
            torn[SLOT + at] ^= 0x40;
            std::fs::write(&path, &torn).unwrap();
            assert_eq!(
                reopen(dir.path()).as_deref(),
                Some(&b"{\"old\":1}"[..]),
                "byte {at}"
            );
        }
        std::fs::write(&path, &good[..SLOT + 100]).unwrap();
        assert_eq!(
            reopen(dir.path()).as_deref(),
            Some(&b"{\"old\":1}"[..]),
            "cut"
        );
    }

    /// A vote saved as JSON by an older version is read and rewritten in
    /// slots; later saves go on from it.
    #[test]
    fn a_json_vote_from_before_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VOTE.name);
        std::fs::write(&path, b"{\"leader_id\":{\"term\":7}}").unwrap();
        let (mut f, vote) = SlotFile::open(dir.path(), VOTE).unwrap();
        assert_eq!(vote.as_deref(), Some(&b"{\"leader_id\":{\"term\":7}}"[..]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT as u64);
        f.save(b"{\"t\":8}", Sync::Durable).unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"{\"t\":8}"[..]));
    }

    /// The committed id's file: saved to the page cache only, read back,
    /// never taken for a vote (its own magic), and converted from the JSON
    /// file of an older version, `null` included.
    #[test]
    fn committed_ids_are_kept_apart_from_votes_and_converted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, none) = SlotFile::open(dir.path(), COMMITTED).unwrap();
        assert!(none.is_none());
        for i in 0..5u8 {
            f.save(&[b'0' + i], Sync::PageCache).unwrap();
        }
        let (_, got) = SlotFile::open(dir.path(), COMMITTED).unwrap();
        assert_eq!(got.as_deref(), Some(&b"4"[..]));
        // The same bytes under the vote's name are not a vote.
        std::fs::copy(dir.path().join(COMMITTED.name), dir.path().join(VOTE.name)).unwrap();
        assert_eq!(reopen(dir.path()), None);

        for json in [&b"null"[..], b"{\"leader_id\":{\"term\":3},\"index\":9}"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(COMMITTED.name), json).unwrap();
            let (mut f, got) = SlotFile::open(dir.path(), COMMITTED).unwrap();
            assert_eq!(got.as_deref(), Some(json));
            f.save(b"x", Sync::PageCache).unwrap();
            let (_, got) = SlotFile::open(dir.path(), COMMITTED).unwrap();
            assert_eq!(got.as_deref(), Some(&b"x"[..]));
        }
    }
}
