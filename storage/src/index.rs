//! Sparse, fixed-size, memory-mapped indexes of a segment.
//!
//! **Offset index** (`<base>.index`), 8-byte entries, big-endian:
//!
//! ```text
//! 0 relative_offset u32   base offset of a batch minus the segment's base offset
//! 4 position        u32   byte position of that batch in the `.log` file
//! ```
//!
//! **Time index** (`<base>.timeindex`), 12-byte entries, big-endian:
//!
//! ```text
//! 0 timestamp       i64   largest record timestamp in the segment up to and including the batch
//! 8 relative_offset u32   base offset of that batch minus the segment's base offset
//! ```
//!
//! An entry is added every `index.interval.bytes` of log (never for position 0), so
//! keys are strictly increasing. The file of the active segment is pre-allocated to
//! `segment.index.bytes` and zero-filled; the entry count is the length of the
//! strictly increasing, non-zero prefix, so an index survives a crash without a
//! length field. A sealed segment's index is trimmed to its entries. Both are
//! derived data: when missing, damaged or disagreeing with the log they are rebuilt.

use std::fs::{File, OpenOptions};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{io_err, Result};
use crate::mmap::map_index;

/// A fixed-size index entry.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    /// Bytes per entry.
    const SIZE: usize;
    /// Decodes an entry.
    fn read(b: &[u8]) -> Self;
    /// Encodes an entry.
    fn write(&self, b: &mut [u8]);
    /// The search key (strictly increasing along the index).
    fn key(&self) -> i64;
}

/// An offset index entry: batch base offset (relative) → file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn read(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4")),
        }
    }
    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        b[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

/// A time index entry: max timestamp so far → batch base offset (relative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn read(b: &[u8]) -> Self {
        Self {
            timestamp: i64::from_be_bytes(b[0..8].try_into().expect("8")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4")),
        }
    }
    fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn key(&self) -> i64 {
        self.timestamp
    }
}

/// A memory-mapped index file of entries `E`.
#[derive(Debug)]
pub(crate) struct Index<E: Entry> {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    entries: usize,
    capacity: usize,
    _entry: PhantomData<E>,
}

impl<E: Entry> Index<E> {
    /// Opens (or creates) the index at `path` with room for `max_bytes / E::SIZE`
    /// entries, or exactly its current entries when `max_bytes` is `None` (sealed).
    pub(crate) fn open(path: &Path, max_bytes: Option<usize>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len() as usize;
        let len = len - len % E::SIZE;
        let target = match max_bytes {
            Some(max) => (max - max % E::SIZE).max(len).max(E::SIZE),
            None => len,
        };
        let mut index = Self {
            path: path.to_path_buf(),
            file,
            map: None,
            entries: 0,
            capacity: 0,
            _entry: PhantomData,
        };
        index.remap(target)?;
        // A new (empty) file has no entries: its pages are not touched.
        index.entries = if len == 0 {
            0
        } else {
            index.count_valid_prefix()
        };
        Ok(index)
    }

    fn remap(&mut self, bytes: usize) -> Result<()> {
        if let Some(map) = self.map.take() {
            // Indexes are rebuilt when damaged, so their pages need not be synced here.
            map.flush_async().map_err(io_err(&self.path))?;
        }
        self.file
            .set_len(bytes as u64)
            .map_err(io_err(&self.path))?;
        self.capacity = bytes / E::SIZE;
        if bytes > 0 {
            self.map = Some(map_index(&self.file, bytes).map_err(io_err(&self.path))?);
        }
        Ok(())
    }

    fn entry(&self, i: usize) -> E {
        let map = self
            .map
            .as_ref()
            .expect("entry below capacity implies a mapping");
        E::read(&map[i * E::SIZE..(i + 1) * E::SIZE])
    }

    fn count_valid_prefix(&self) -> usize {
        let Some(map) = self.map.as_ref() else {
            return 0;
        };
        let mut prev: Option<i64> = None;
        for i in 0..self.capacity {
            let raw = &map[i * E::SIZE..(i + 1) * E::SIZE];
            if raw.iter().all(|&b| b == 0) {
                return i;
            }
            let key = E::read(raw).key();
            if prev.is_some_and(|p| key <= p) {
                return i;
            }
            prev = Some(key);
        }
        self.capacity
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Whether no more entries fit.
    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<E> {
        self.entries.checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry; ignored when full or when its key does not increase.
    ///
    /// The entry is written with `pwrite`, not through the mapping: the file is
    /// sparse, and on a full disk a store into a page without a block kills the
    /// process with SIGBUS, where `pwrite` returns ENOSPC. An entry that cannot
    /// be written is skipped: indexes are sparse anyway (a lookup starts from an
    /// earlier entry) and are rebuilt from the log when they disagree with it.
    pub(crate) fn append(&mut self, e: E) {
        use std::os::unix::fs::FileExt;
        if self.is_full() || self.last().is_some_and(|l| e.key() <= l.key()) {
            return;
        }
        let i = self.entries;
        let mut raw = [0u8; 16];
        let raw = &mut raw[..E::SIZE];
        e.write(raw);
        match self.file.write_all_at(raw, (i * E::SIZE) as u64) {
            Ok(()) => self.entries += 1,
            Err(error) => {
                tracing::warn!(index = %self.path.display(), %error, "index entry not written");
            }
        }
    }

    /// The entry with the largest key `<= key`.
    pub(crate) fn floor(&self, key: i64) -> Option<E> {
        // partition_point: first index whose key > `key`.
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).key() <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Keeps only the entries for which `keep` holds, assuming they form a prefix.
    pub(crate) fn truncate_while_not(&mut self, keep: impl Fn(&E) -> bool) {
        let mut n = self.entries;
        while n > 0 && !keep(&self.entry(n - 1)) {
            n -= 1;
        }
        self.truncate_to(n);
    }

    /// Removes every entry from position `n` on.
    pub(crate) fn truncate_to(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        let map = self.map.as_mut().expect("entries > 0 implies a mapping");
        map[n * E::SIZE..self.entries * E::SIZE].fill(0);
        self.entries = n;
    }

    /// Shrinks the file to exactly its entries (on roll).
    pub(crate) fn trim(&mut self) -> Result<()> {
        self.remap(self.entries * E::SIZE)
    }

    /// Grows the file back to `max_bytes` so the segment can take appends again.
    pub(crate) fn grow(&mut self, max_bytes: usize) -> Result<()> {
        let target = max_bytes - max_bytes % E::SIZE;
        if target > self.capacity * E::SIZE {
            self.remap(target)?;
        }
        Ok(())
    }

    /// Writes dirty pages of the mapping to disk.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Path of the index file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oe(r: u32, p: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset: r,
            position: p,
        }
    }

    #[test]
    fn floor_finds_largest_not_above() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::<OffsetEntry>::open(&dir.path().join("a.index"), Some(80)).unwrap();
        for (r, p) in [(10, 100), (20, 200), (30, 300)] {
            ix.append(oe(r, p));
        }
        assert_eq!(ix.floor(5), None);
        assert_eq!(ix.floor(10), Some(oe(10, 100)));
        assert_eq!(ix.floor(29), Some(oe(20, 200)));
        assert_eq!(ix.floor(1000), Some(oe(30, 300)));
    }

    #[test]
    fn reopen_counts_entries_of_preallocated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.index");
        {
            let mut ix = Index::<OffsetEntry>::open(&path, Some(800)).unwrap();
            ix.append(oe(1, 10));
            ix.append(oe(2, 20));
            ix.flush().unwrap();
        }
        let ix = Index::<OffsetEntry>::open(&path, Some(800)).unwrap();
        assert_eq!(ix.len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 800);
    }

    #[test]
    fn trim_then_reopen_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.timeindex");
        let mut ix = Index::<TimeEntry>::open(&path, Some(1200)).unwrap();
        ix.append(TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        });
        ix.trim().unwrap();
        drop(ix);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
        let ix = Index::<TimeEntry>::open(&path, None).unwrap();
        assert_eq!(ix.len(), 1);
        assert!(ix.is_full());
    }

    #[test]
    fn garbage_tail_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.index");
        let mut bytes = vec![0u8; 32];
        oe(5, 50).write(&mut bytes[0..8]);
        oe(3, 70).write(&mut bytes[8..16]); // goes backwards: damage
        std::fs::write(&path, &bytes).unwrap();
        let ix = Index::<OffsetEntry>::open(&path, None).unwrap();
        assert_eq!(ix.len(), 1);
    }
}
