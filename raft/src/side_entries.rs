//! `raft-entries`: the Raft entries that are not data (blank, membership), which
//! must not be written into the partition log (they take no Kafka offset and
//! Kafka clients read the log's bytes as they are).
//!
//! Format: a sequence of records, each
//!
//! ```text
//! body_len u32 BE | crc32c(body) u32 BE | body: index u64 BE | term u64 BE | payload (JSON)
//! ```
//!
//! with strictly increasing indexes. Appends go to the page cache and are
//! fsynced by [`SideFile::sync`]; truncation and purge rewrite the whole file
//! atomically (it holds one entry per term and per membership change). On open
//! the valid prefix is kept: a torn or corrupt record and everything after it
//! are cut off (durably, before anything is appended after them).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::durable_file;
use crate::error::{RaftStoreError, Result};

/// File name in the partition directory.
pub(crate) const SIDE_FILE: &str = "raft-entries";
const HEADER: usize = 8;
const BODY_FIXED: usize = 16;

/// A stored entry that is not data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SideRecord {
    /// The entry's term.
    pub(crate) term: u64,
    /// Its payload, JSON.
    pub(crate) payload: Vec<u8>,
}

/// The open `raft-entries` file.
#[derive(Debug)]
pub(crate) struct SideFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

/// Encodes one record.
fn encode(index: u64, rec: &SideRecord, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(BODY_FIXED + rec.payload.len());
    body.extend_from_slice(&index.to_be_bytes());
    body.extend_from_slice(&rec.term.to_be_bytes());
    body.extend_from_slice(&rec.payload);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Decodes the valid prefix of `buf`: its records and its length.
fn decode(buf: &[u8]) -> (BTreeMap<u64, SideRecord>, usize) {
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while let Some(head) = buf.get(pos..pos + HEADER) {
        let len = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        let Some(body) = buf.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if len < BODY_FIXED || crc32c::crc32c(body) != crc {
            break;
        }
        let index = u64::from_be_bytes(body[0..8].try_into().expect("8 bytes"));
        let term = u64::from_be_bytes(body[8..16].try_into().expect("8 bytes"));
        if out.keys().next_back().is_some_and(|last| *last >= index) {
            break;
        }
        let payload = body[BODY_FIXED..].to_vec();
        out.insert(index, SideRecord { term, payload });
        pos += HEADER + len;
    }
    (out, pos)
}

impl SideFile {
    /// Opens (creating) `dir/raft-entries`; returns its valid records. A damaged
    /// tail is cut off durably.
    pub(crate) fn open(dir: &Path) -> Result<(Self, BTreeMap<u64, SideRecord>)> {
        let path = dir.join(SIDE_FILE);
        let buf = durable_file::read(dir, SIDE_FILE)?.unwrap_or_default();
        let (records, valid) = decode(&buf);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(RaftStoreError::io(&path))?;
        if valid < buf.len() {
            tracing::warn!(path = %path.display(), valid, len = buf.len(), "cutting a damaged tail");
            file.set_len(valid as u64)
                .and_then(|()| file.sync_all())
                .map_err(RaftStoreError::io(&path))?;
        }
        let side = Self {
            dir: dir.to_path_buf(),
            path,
            file,
        };
        Ok((side, records))
    }

    /// Appends one record (page cache only; see [`SideFile::sync`]).
    pub(crate) fn append(&mut self, index: u64, rec: &SideRecord) -> Result<()> {
        let mut buf = Vec::new();
        encode(index, rec, &mut buf);
        self.file
            .write_all(&buf)
            .map_err(RaftStoreError::io(&self.path))
    }

    /// fsyncs what was appended.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(RaftStoreError::io(&self.path))
    }

    /// Replaces the file with `records`, atomically and durably.
    pub(crate) fn rewrite(&mut self, records: &BTreeMap<u64, SideRecord>) -> Result<()> {
        let mut buf = Vec::new();
        for (index, rec) in records {
            encode(*index, rec, &mut buf);
        }
        durable_file::write(&self.dir, SIDE_FILE, &buf, durable_file::Sync::Durable)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(RaftStoreError::io(&self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(term: u64, p: &str) -> SideRecord {
        SideRecord {
            term,
            payload: p.as_bytes().to_vec(),
        }
    }

    #[test]
    fn valid_prefix_survives_a_torn_or_corrupt_tail() {
        let mut buf = Vec::new();
        encode(3, &rec(1, "\"Blank\""), &mut buf);
        encode(7, &rec(2, "{}"), &mut buf);
        let whole = buf.len();
        encode(9, &rec(2, "{\"x\":1}"), &mut buf);
        let (all, len) = decode(&buf);
        assert_eq!((all.len(), len), (3, buf.len()));
        for cut in whole..buf.len() {
            let (some, len) = decode(&buf[..cut]);
            assert_eq!((some.len(), len), (2, whole), "cut at {cut}");
        }
        let mut bad = buf.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&bad).1, whole);
    }

    #[test]
    fn open_cuts_damage_and_appends_after_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut f, recs) = SideFile::open(dir.path()).unwrap();
            assert!(recs.is_empty());
            f.append(1, &rec(1, "a")).unwrap();
            f.append(2, &rec(1, "b")).unwrap();
            f.sync().unwrap();
        }
        let path = dir.path().join(SIDE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 40, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        {
            let (mut f, recs) = SideFile::open(dir.path()).unwrap();
            assert_eq!(recs.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
            f.append(5, &rec(2, "c")).unwrap();
        }
        let (mut f, recs) = SideFile::open(dir.path()).unwrap();
        assert_eq!(recs.keys().copied().collect::<Vec<_>>(), vec![1, 2, 5]);
        let kept: BTreeMap<_, _> = recs.into_iter().filter(|(i, _)| *i > 1).collect();
        f.rewrite(&kept).unwrap();
        f.append(6, &rec(3, "d")).unwrap();
        let (_, recs) = SideFile::open(dir.path()).unwrap();
        assert_eq!(recs.keys().copied().collect::<Vec<_>>(), vec![2, 5, 6]);
        assert_eq!(recs[&6], rec(3, "d"));
    }
}
