//! `raft-index`: sparse sync points `raft index -> Kafka offset` of data entries,
//! so that opening a partition and looking up an entry walk at most a few batch
//! headers instead of the whole log.
//!
//! Format: fixed 16-byte records `raft index u64 BE | Kafka offset i64 BE`,
//! strictly increasing in both. The file is a cache of what the partition log,
//! `raft-entries` and the anchor determine: appends are not fsynced, and a lost
//! tail is rebuilt by the walk on open. Loading stops at the first record that is
//! not increasing (a torn, zero-filled tail). Removing points is durable (a
//! truncation is fsynced, a purge rewrites the file atomically), so that a point
//! of a removed entry never reappears next to the points written after it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::durable_file;
use crate::error::{RaftStoreError, Result};

/// File name in the partition directory.
pub(crate) const POINTS_FILE: &str = "raft-index";
const RECORD: usize = 16;

/// A sync point: the data entry at raft index `index` starts at Kafka offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// Raft index of a data entry.
    pub(crate) index: u64,
    /// Base offset of its batch.
    pub(crate) offset: i64,
}

/// The open `raft-index` file.
#[derive(Debug)]
pub(crate) struct PointFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Records in the file.
    count: usize,
}

fn decode(buf: &[u8]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(buf.len() / RECORD);
    for rec in buf.chunks_exact(RECORD) {
        let p = Point {
            index: u64::from_be_bytes(rec[0..8].try_into().expect("8 bytes")),
            offset: i64::from_be_bytes(rec[8..16].try_into().expect("8 bytes")),
        };
        if out
            .last()
            .is_some_and(|l| l.index >= p.index || l.offset >= p.offset)
            || p.offset < 0
        {
            break;
        }
        out.push(p);
    }
    out
}

fn encode(points: &[Point]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(points.len() * RECORD);
    for p in points {
        buf.extend_from_slice(&p.index.to_be_bytes());
        buf.extend_from_slice(&p.offset.to_be_bytes());
    }
    buf
}

impl PointFile {
    /// Opens (creating) `dir/raft-index`; returns the points of its valid prefix.
    /// The caller keeps what it trusts and calls [`PointFile::replace`] if that
    /// differs from what was loaded.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Vec<Point>)> {
        let path = dir.join(POINTS_FILE);
        let buf = durable_file::read(dir, POINTS_FILE)?.unwrap_or_default();
        let points = decode(&buf);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(RaftStoreError::io(&path))?;
        let count = buf.len() / RECORD;
        let pf = Self {
            dir: dir.to_path_buf(),
            path,
            file,
            count,
        };
        Ok((pf, points))
    }

    /// Records in the file (including an untrusted tail until replaced).
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Appends one point (page cache only).
    pub(crate) fn append(&mut self, p: Point) -> Result<()> {
        self.file
            .write_all(&encode(&[p]))
            .map_err(RaftStoreError::io(&self.path))?;
        self.count += 1;
        Ok(())
    }

    /// Keeps the first `keep` records, durably.
    pub(crate) fn truncate(&mut self, keep: usize) -> Result<()> {
        if keep >= self.count {
            return Ok(());
        }
        self.file
            .set_len((keep * RECORD) as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(RaftStoreError::io(&self.path))?;
        self.count = keep;
        Ok(())
    }

    /// Replaces the file with `points`, atomically and durably.
    pub(crate) fn replace(&mut self, points: &[Point]) -> Result<()> {
        durable_file::write(
            &self.dir,
            POINTS_FILE,
            &encode(points),
            durable_file::Sync::Durable,
        )?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(RaftStoreError::io(&self.path))?;
        self.count = points.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(index: u64, offset: i64) -> Point {
        Point { index, offset }
    }

    #[test]
    fn loading_stops_at_a_non_increasing_record() {
        let mut buf = encode(&[p(1, 0), p(70, 300), p(140, 900)]);
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&encode(&[p(200, 1000)]));
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode(&buf), vec![p(1, 0), p(70, 300), p(140, 900)]);
    }

    #[test]
    fn append_truncate_replace_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, pts) = PointFile::open(dir.path()).unwrap();
        assert!(pts.is_empty());
        for i in 0..5 {
            f.append(p(i * 10, i as i64 * 100)).unwrap();
        }
        f.truncate(3).unwrap();
        f.append(p(25, 250)).unwrap();
        let (mut f, pts) = PointFile::open(dir.path()).unwrap();
        assert_eq!(pts, vec![p(0, 0), p(10, 100), p(20, 200), p(25, 250)]);
        f.replace(&pts[2..]).unwrap();
        f.append(p(30, 300)).unwrap();
        let (f, pts) = PointFile::open(dir.path()).unwrap();
        assert_eq!(pts, vec![p(20, 200), p(25, 250), p(30, 300)]);
        assert_eq!(f.count(), 3);
    }
}
