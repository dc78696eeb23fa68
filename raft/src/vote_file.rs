//! The vote of a partition's Raft group, in `raft-vote`: two 512-byte
//! slots overwritten in turn, each a sequence number, the vote's bytes and a
//! CRC-32C over both. Saving writes the slot that does not hold the newest
//! vote and fdatasyncs the file: one sync, where replacing a file (write,
//! fsync, rename, fsync the directory) costs two, and a new group saves its
//! vote two or three times while it elects its first leader.
//!
//! A write torn by a crash damages only the slot being written; its CRC then
//! fails and the other slot, the vote saved before, is read. That vote was
//! the durable one: the new vote was not reported saved before its fdatasync
//! returned.
//!
//! The file is created, zeroed (no vote), when the store opens without one.
//! Its name in the directory must be durable before a vote counts: when the
//! store's anchor is written in the same open (a new partition), the
//! anchor's directory fsync covers it ([`VoteFile::dir_synced`]); otherwise
//! the first save fsyncs the directory too.
//!
//! A directory from before this format holds the vote as a JSON file: it is
//! read, and rewritten in slots (atomic replace, durable) on open.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable_file::{self, Sync};
use crate::error::{RaftStoreError, Result};

/// The file's name in the partition directory.
pub(crate) const VOTE_FILE: &str = "raft-vote";
/// Bytes per slot.
const SLOT: usize = 512;
/// Marks a written slot.
const MAGIC: &[u8; 4] = b"WRV1";
/// Magic, sequence number, length, CRC.
const HEADER: usize = 4 + 8 + 4 + 4;
/// The largest vote a slot holds.
const MAX_VOTE: usize = SLOT - HEADER;

/// The open vote file.
#[derive(Debug)]
pub(crate) struct VoteFile {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Each slot's sequence number (`None`: empty or unreadable).
    seqs: [Option<u64>; 2],
    /// Whether the file's name in the directory is known durable.
    dir_synced: bool,
    /// Whether this open created the file.
    created: bool,
}

impl VoteFile {
    /// Opens `dir/raft-vote` (creating it empty when missing) and returns
    /// the newest vote it holds. Blocking.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Option<Vec<u8>>)> {
        let path = dir.join(VOTE_FILE);
        let existing = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(RaftStoreError::io(&path)(e)),
        };
        // A vote saved as JSON by an older version: rewritten in slots.
        if let Some(json) = existing.as_ref().filter(|b| b.first() == Some(&b'{')) {
            let image = slots_image(json)?;
            durable_file::write(dir, VOTE_FILE, &image, Sync::Durable)?;
            let (mut file, vote) = Self::open(dir)?;
            file.dir_synced = true;
            return Ok((file, vote));
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
        let read = |i: usize| bytes.get(i * SLOT..(i + 1) * SLOT).and_then(read_slot);
        let slots = [read(0), read(1)];
        let seqs = [
            slots[0].as_ref().map(|s| s.0),
            slots[1].as_ref().map(|s| s.0),
        ];
        let vote = slots
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, v)| v);
        let vote_file = Self {
            path,
            dir: dir.to_path_buf(),
            file,
            seqs,
            dir_synced: false,
            created,
        };
        Ok((vote_file, vote))
    }

    /// Whether this open created the file (its name is not durable yet).
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Notes that the directory was fsynced after the file was created
    /// (the store's new anchor): saves need not fsync it again.
    pub(crate) fn dir_synced(&mut self) {
        self.dir_synced = true;
    }

    /// Saves `vote`: durable on return. Blocking.
    pub(crate) fn save(&mut self, vote: &[u8]) -> Result<()> {
        // The slot not holding the newest vote.
        let slot = match self.seqs {
            [Some(a), Some(b)] => usize::from(a > b),
            [Some(_), None] => 1,
            _ => 0,
        };
        let seq = self.seqs.iter().flatten().max().map_or(1, |s| s + 1);
        let bytes = slot_bytes(seq, vote)?;
        self.file
            .write_all_at(&bytes, (slot * SLOT) as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(RaftStoreError::io(&self.path))?;
        if !self.dir_synced {
            durable_file::sync_dir(&self.dir)?;
            self.dir_synced = true;
        }
        self.seqs[slot] = Some(seq);
        Ok(())
    }
}

/// One slot holding `vote` under sequence number `seq`.
fn slot_bytes(seq: u64, vote: &[u8]) -> Result<[u8; SLOT]> {
    if vote.len() > MAX_VOTE {
        return Err(RaftStoreError::corrupt(
            VOTE_FILE,
            format!("a vote of {} bytes (at most {MAX_VOTE})", vote.len()),
        ));
    }
    let mut b = [0u8; SLOT];
    b[..4].copy_from_slice(MAGIC);
    b[4..12].copy_from_slice(&seq.to_be_bytes());
    b[12..16].copy_from_slice(&(vote.len() as u32).to_be_bytes());
    b[HEADER..HEADER + vote.len()].copy_from_slice(vote);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..16]), vote);
    b[16..20].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// A slot's sequence number and vote, if it holds a whole one.
fn read_slot(b: &[u8]) -> Option<(u64, Vec<u8>)> {
    if b.len() != SLOT || &b[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(b[4..12].try_into().ok()?);
    let len = u32::from_be_bytes(b[12..16].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let vote = b.get(HEADER..HEADER + len)?;
    (crc32c::crc32c_append(crc32c::crc32c(&b[..16]), vote) == crc).then(|| (seq, vote.to_vec()))
}

/// A whole file holding `vote` in its first slot.
fn slots_image(vote: &[u8]) -> Result<Vec<u8>> {
    let mut image = slot_bytes(1, vote)?.to_vec();
    image.resize(2 * SLOT, 0);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> Option<Vec<u8>> {
        VoteFile::open(dir).unwrap().1
    }

    /// Saves alternate between the slots; a reopen reads the newest.
    #[test]
    fn the_newest_vote_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, vote) = VoteFile::open(dir.path()).unwrap();
        assert!(f.created() && vote.is_none());
        assert_eq!(reopen(dir.path()), None, "an empty file holds no vote");
        for (i, v) in [&b"{\"t\":1}"[..], b"{\"t\":2}", b"{\"t\":3}"]
            .iter()
            .enumerate()
        {
            f.save(v).unwrap();
            assert_eq!(reopen(dir.path()).as_deref(), Some(*v), "save {i}");
        }
        assert_eq!(f.seqs, [Some(3), Some(2)]);
        // A reopened file goes on from the newest.
        let (mut g, _) = VoteFile::open(dir.path()).unwrap();
        assert!(!g.created());
        g.save(b"{\"t\":4}").unwrap();
        assert_eq!(g.seqs, [Some(3), Some(4)]);
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"{\"t\":4}"[..]));
        assert!(f.save(&[b'x'; MAX_VOTE + 1]).is_err());
    }

    /// A save torn by a crash (any byte of the slot being written wrong, or
    /// the file cut inside it) leaves the vote saved before it.
    #[test]
    fn a_torn_save_leaves_the_previous_vote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VOTE_FILE);
        let (mut f, _) = VoteFile::open(dir.path()).unwrap();
        f.save(b"{\"old\":1}").unwrap();
        f.save(b"{\"new\":2}").unwrap(); // slot 1
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
        let path = dir.path().join(VOTE_FILE);
        std::fs::write(&path, b"{\"leader_id\":{\"term\":7}}").unwrap();
        let (mut f, vote) = VoteFile::open(dir.path()).unwrap();
        assert_eq!(vote.as_deref(), Some(&b"{\"leader_id\":{\"term\":7}}"[..]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT as u64);
        f.save(b"{\"t\":8}").unwrap();
        assert_eq!(reopen(dir.path()).as_deref(), Some(&b"{\"t\":8}"[..]));
    }
}
