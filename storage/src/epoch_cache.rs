//! The leader-epoch cache of a partition (Kafka's `LeaderEpochFileCache`): for each
//! leader epoch (Raft term) that wrote batches, the offset of its first batch.
//!
//! It answers OffsetForLeaderEpoch (KIP-101, KIP-279): "where does epoch `e` end in
//! this log?", which a follower asks its new leader to find where their logs diverge,
//! and a consumer asks to detect a truncation under its committed offset.
//!
//! # File format
//! `leader-epoch-checkpoint` in the log directory, Kafka's text format:
//!
//! ```text
//! 0                  <- version
//! 3                  <- number of entries
//! 0 0                <- epoch startOffset, one line per entry, oldest first
//! 2 10
//! 5 30
//! ```
//!
//! # Durability contract
//! The file is replaced atomically (temporary file, fsync, rename, directory fsync).
//! Truncations (from the end or the start) and resets are written before the log
//! operation returns. A new epoch seen on append is only noted in memory, because
//! an append never fsyncs: the file is rewritten by the next flush (after the data
//! it describes is on disk, so the file never names a batch that a crash could
//! lose) and by close. After a crash the file may therefore lag the log: miss the
//! newest epochs, or (after a torn tail was cut) name offsets past the recovered
//! end. Opening the log reconciles it: entries at or above the log end are dropped,
//! the first is clamped to the log start, and the batches after the last entry are
//! walked to add the epochs the file missed. A corrupt file is rebuilt from the
//! epochs stamped in the batches. As in Kafka's `LogLoader`, the cut at the log
//! end also drops an entry starting exactly there: a log emptied by retention
//! keeps its last epoch (at the log start) until the next open, not across it.

use std::fmt::Write as _;
use std::path::Path;

use crate::checkpoint;
use crate::error::{io_err, Result, StorageError};

/// Name of the cache's file in the log directory (as in Kafka).
pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
/// The only file format version (Kafka's `LeaderEpochCheckpointFile` version 0).
const VERSION: u32 = 0;
/// Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
pub(crate) const UNDEFINED: (i32, i64) = (-1, -1);

/// What [`EpochCache::assign`] did with an (epoch, start offset) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assigned {
    /// A new latest entry was added.
    Added,
    /// A new latest entry replaced entries starting at or after its start offset
    /// (normally one epoch that never wrote a batch at that offset).
    Replaced,
    /// The epoch is the latest one, or negative (an unstamped batch): nothing to do.
    Unchanged,
    /// The epoch is below the latest: ignored (a batch out of epoch order).
    Stale {
        /// The latest epoch of the cache.
        latest: i32,
    },
}

/// Sorted (epoch, start offset) entries: epochs strictly increasing, start offsets
/// non-decreasing, both non-negative.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochCache {
    entries: Vec<(i32, i64)>,
    /// Bumped by every change, so writers of the file can tell which copy is newer.
    version: u64,
}

impl EpochCache {
    /// Records that batches of `epoch` start at `start_offset`, if `epoch` is new.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Assigned {
        if epoch < 0 || start_offset < 0 {
            return Assigned::Unchanged;
        }
        match self.latest() {
            Some((latest, _)) if epoch == latest => return Assigned::Unchanged,
            Some((latest, _)) if epoch < latest => return Assigned::Stale { latest },
            _ => {}
        }
        // An epoch that got an entry but whose batch at that offset was replaced
        // (Kafka: "no data has been written"): the new epoch takes its place. In a
        // log offsets only grow, so this pops at most that one entry.
        let before = self.entries.len();
        while self.entries.last().is_some_and(|&(_, s)| s >= start_offset) {
            self.entries.pop();
        }
        let replaced = self.entries.len() < before;
        self.entries.push((epoch, start_offset));
        self.version += 1;
        if replaced {
            Assigned::Replaced
        } else {
            Assigned::Added
        }
    }

    /// Removes the entries starting at or after `end_offset` (after the log was
    /// truncated to end there); true when any was removed.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self.entries.partition_point(|&(_, s)| s < end_offset);
        self.cut(keep)
    }

    /// Drops the entries wholly below a new log start `start_offset`: the latest
    /// entry starting at or below it is kept, moved up to it. True when changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self.entries.partition_point(|&(_, s)| s <= start_offset);
        if below == 0 || (below == 1 && self.entries[0].1 == start_offset) {
            return false;
        }
        self.entries.drain(..below - 1);
        self.entries[0].1 = start_offset;
        self.version += 1;
        true
    }

    /// Removes every entry (the log was reset); true when any was removed.
    pub(crate) fn clear(&mut self) -> bool {
        self.cut(0)
    }

    fn cut(&mut self, keep: usize) -> bool {
        if keep >= self.entries.len() {
            return false;
        }
        self.entries.truncate(keep);
        self.version += 1;
        true
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch `<= requested`
    /// and the offset where it ends (the start of the next epoch, or `log_end` when
    /// `requested` is the latest epoch). Kafka's special cases are kept:
    /// `requested` below every epoch gives `(requested, first start offset)`
    /// (the log start when retention removed the older epochs); `requested` above
    /// the latest epoch, or negative (UNDEFINED_EPOCH), gives `(-1, -1)`.
    /// `None` when the cache is empty (no batch carries an epoch); the caller
    /// decides, e.g. `(-1, -1)` for a follower or the log end for a consumer.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        let (latest, _) = self.latest()?;
        if requested < 0 || requested > latest {
            return Some(UNDEFINED);
        }
        if requested == latest {
            return Some((latest, log_end));
        }
        // First entry with a larger epoch; it exists since requested < latest.
        let higher = self.entries.partition_point(|&(e, _)| e <= requested);
        let end = self.entries[higher].1;
        Some(match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, end),
            None => (requested, end),
        })
    }

    /// The latest epoch, if any batch carries one.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|(e, _)| e)
    }

    /// The latest entry.
    pub(crate) fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> Vec<(i32, i64)> {
        self.entries.clone()
    }

    /// A counter bumped by every change.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The file's text.
    pub(crate) fn encode(&self) -> String {
        let mut out = format!("{VERSION}\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            let _ = writeln!(out, "{epoch} {start}");
        }
        out
    }

    /// Parses the file's text: `Err((line, reason))` (line from 1) when it is not
    /// exactly what [`EpochCache::encode`] writes for a valid cache.
    pub(crate) fn decode(text: &str) -> std::result::Result<Self, (usize, String)> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let mut next = |what: &str| lines.next().ok_or((0, format!("missing {what}")));
        let (n, version) = next("version")?;
        if version.parse::<u32>() != Ok(VERSION) {
            return Err((n, format!("unsupported version {version:?}")));
        }
        let (n, count) = next("entry count")?;
        let count: usize = count
            .parse()
            .map_err(|_| (n, format!("bad entry count {count:?}")))?;
        let mut cache = Self::default();
        for _ in 0..count {
            let (n, line) = next("entry")?;
            let (epoch, start) = parse_entry(line).ok_or((n, format!("bad entry {line:?}")))?;
            if cache.latest().is_some_and(|(e, s)| epoch <= e || start < s) {
                return Err((n, format!("entry {line:?} out of order")));
            }
            cache.entries.push((epoch, start));
        }
        if let Some((n, extra)) = lines.find(|(_, l)| !l.is_empty()) {
            return Err((
                n,
                format!("{count} entries declared, more found: {extra:?}"),
            ));
        }
        Ok(cache)
    }

    /// Reads the file of `dir`: `Ok(None)` when there is none, an
    /// [`StorageError::InvalidEpochCheckpoint`] when it is corrupt.
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let text = String::from_utf8_lossy(&text);
        Self::decode(&text)
            .map(Some)
            .map_err(|(line, reason)| StorageError::InvalidEpochCheckpoint { path, line, reason })
    }

    /// Atomically replaces the file of `dir` with this cache; durable on return.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        checkpoint::write_text(dir, FILE_NAME, &self.encode())
    }
}

/// `epoch startOffset`, both non-negative.
fn parse_entry(line: &str) -> Option<(i32, i64)> {
    let mut parts = line.split_whitespace();
    let epoch: i32 = parts.next()?.parse().ok()?;
    let start: i64 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && epoch >= 0 && start >= 0).then_some((epoch, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, s) in entries {
            assert_eq!(c.assign(e, s), Assigned::Added);
        }
        c
    }

    #[test]
    fn assign_adds_only_new_epochs() {
        let mut c = EpochCache::default();
        assert_eq!(c.assign(0, 0), Assigned::Added);
        assert_eq!(c.assign(0, 5), Assigned::Unchanged);
        assert_eq!(c.assign(3, 10), Assigned::Added);
        assert_eq!(c.assign(3, 12), Assigned::Unchanged);
        assert_eq!(c.assign(1, 20), Assigned::Stale { latest: 3 });
        assert_eq!(c.assign(-1, 30), Assigned::Unchanged, "unstamped batch");
        assert_eq!(c.assign(7, 40), Assigned::Added);
        assert_eq!(c.entries(), [(0, 0), (3, 10), (7, 40)]);
    }

    #[test]
    fn assign_at_the_latest_start_replaces_it() {
        let mut c = cache(&[(0, 0), (3, 10)]);
        let v = c.version();
        assert_eq!(c.assign(4, 10), Assigned::Replaced);
        assert_eq!(c.entries(), [(0, 0), (4, 10)]);
        assert!(c.version() > v);
    }

    #[test]
    fn unchanged_assign_keeps_the_version() {
        let mut c = cache(&[(2, 0)]);
        let v = c.version();
        c.assign(2, 9);
        c.assign(1, 9);
        c.assign(-1, 9);
        assert_eq!(c.version(), v);
    }

    #[test]
    fn truncate_from_end_removes_entries_at_or_after_the_end() {
        let mut c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert!(!c.truncate_from_end(31));
        assert!(c.truncate_from_end(30));
        assert_eq!(c.entries(), [(0, 0), (2, 10)]);
        assert!(c.truncate_from_end(5));
        assert_eq!(c.entries(), [(0, 0)]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
        assert!(!c.truncate_from_end(0));
    }

    #[test]
    fn truncate_from_start_clamps_the_first_kept_entry() {
        let mut c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(15));
        assert_eq!(c.entries(), [(2, 15), (5, 30)]);
        assert!(!c.truncate_from_start(15), "already clamped");
        assert!(c.truncate_from_start(30));
        assert_eq!(c.entries(), [(5, 30)]);
        assert!(c.truncate_from_start(100));
        assert_eq!(c.entries(), [(5, 100)]);
        let mut below = cache(&[(4, 50)]);
        assert!(!below.truncate_from_start(20), "nothing below the start");
        assert_eq!(below.entries(), [(4, 50)]);
    }

    #[test]
    fn clear_empties() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(c.clear());
        assert_eq!(c.latest_epoch(), None);
        assert!(!c.clear());
    }

    /// The examples of Kafka's `LeaderEpochFileCache.endOffsetFor`.
    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(0, 0), (2, 10), (5, 30)]);
        let end = 50;
        assert_eq!(c.end_offset_for(5, end), Some((5, 50)), "latest: log end");
        assert_eq!(c.end_offset_for(4, end), Some((2, 30)));
        assert_eq!(c.end_offset_for(3, end), Some((2, 30)));
        assert_eq!(c.end_offset_for(2, end), Some((2, 30)));
        assert_eq!(c.end_offset_for(1, end), Some((0, 10)));
        assert_eq!(c.end_offset_for(0, end), Some((0, 10)));
        assert_eq!(c.end_offset_for(7, end), Some(UNDEFINED), "above latest");
        assert_eq!(c.end_offset_for(-1, end), Some(UNDEFINED), "undefined");
        let later = cache(&[(2, 100), (4, 120)]);
        assert_eq!(
            later.end_offset_for(1, 150),
            Some((1, 100)),
            "below the first epoch: the requested epoch and the first start"
        );
        assert_eq!(EpochCache::default().end_offset_for(0, 10), None);
    }

    #[test]
    fn file_round_trips_in_kafkas_format() {
        let c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert_eq!(c.encode(), "0\n3\n0 0\n2 10\n5 30\n");
        let back = EpochCache::decode(&c.encode()).unwrap();
        assert_eq!(back.entries(), c.entries());
        assert!(EpochCache::decode("0\n0\n").unwrap().entries().is_empty());
    }

    #[test]
    fn file_read_and_write() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(EpochCache::read(tmp.path()).unwrap().is_none());
        let c = cache(&[(1, 4), (3, 9)]);
        c.write(tmp.path()).unwrap();
        let back = EpochCache::read(tmp.path()).unwrap().unwrap();
        assert_eq!(back.entries(), [(1, 4), (3, 9)]);
        std::fs::write(tmp.path().join(FILE_NAME), "0\n2\n1 4\n").unwrap();
        let err = EpochCache::read(tmp.path()).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidEpochCheckpoint { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn corrupt_files_are_refused() {
        for (text, line) in [
            ("", 0),
            ("1\n0\n", 1),
            ("x\n0\n", 1),
            ("0\n", 0),
            ("0\n-1\n", 2),
            ("0\n2\n0 0\n", 0),
            ("0\n1\n0 0\n1 5\n", 4),
            ("0\n1\n0\n", 3),
            ("0\n1\n0 0 0\n", 3),
            ("0\n1\n-1 0\n", 3),
            ("0\n1\n0 -4\n", 3),
            ("0\n2\n3 0\n3 5\n", 4),
            ("0\n2\n3 5\n4 2\n", 4),
            ("0\n1\n2 x\n", 3),
        ] {
            let got = EpochCache::decode(text).map(|c| c.entries());
            assert_eq!(got.map_err(|e| e.0), Err(line), "{text:?}");
        }
    }

    /// One step of the model: appends of batches (epoch, records) from the log
    /// end, or truncations of the end or the start.
    #[derive(Debug, Clone)]
    enum Op {
        Append(i32, i64),
        TruncateEnd(u8),
        AdvanceStart(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0i32..6, 1i64..5).prop_map(|(e, n)| Op::Append(e, n)),
            1 => any::<u8>().prop_map(Op::TruncateEnd),
            1 => any::<u8>().prop_map(Op::AdvanceStart),
        ]
    }

    /// The answer computed from the batches themselves: the largest epoch
    /// `<= requested` among the batches, ending where the first batch of a larger
    /// epoch starts (or at the log start, for a batch straddling it).
    fn naive(
        batches: &[(i32, i64, i64)],
        start: i64,
        requested: i32,
        end: i64,
    ) -> Option<(i32, i64)> {
        let latest = batches.iter().map(|b| b.0).max()?;
        if requested < 0 || requested > latest {
            return Some(UNDEFINED);
        }
        if requested == latest {
            return Some((latest, end));
        }
        let higher = batches.iter().find(|b| b.0 > requested)?;
        let floor = batches
            .iter()
            .map(|b| b.0)
            .filter(|&e| e <= requested)
            .max();
        Some((floor.unwrap_or(requested), higher.1.max(start)))
    }

    proptest! {
        #[test]
        fn end_offset_for_agrees_with_the_batches(ops in prop::collection::vec(op(), 1..40)) {
            // (epoch, base, next) of each batch in the log, none wholly below the
            // start; epochs never decrease, as in a leader's log. When the start
            // passes every batch, the last epoch stays known at the start (as in
            // Kafka), modelled as an empty batch there.
            let mut batches: Vec<(i32, i64, i64)> = Vec::new();
            let (mut start, mut end) = (0i64, 0i64);
            let mut c = EpochCache::default();
            for op in ops {
                match op {
                    Op::Append(e, n) => {
                        let e = e.max(batches.last().map_or(0, |b| b.0));
                        batches.retain(|b| b.1 < b.2);
                        batches.push((e, end, end + n));
                        c.assign(e, end);
                        end += n;
                    }
                    Op::TruncateEnd(k) => {
                        // A truncation cuts at a batch boundary, or empties the log
                        // at its start.
                        batches.truncate(usize::from(k) % (batches.len() + 1));
                        end = batches.last().map_or(start, |b| b.2).max(start);
                        batches.retain(|b| b.1 < end);
                        c.truncate_from_end(end);
                    }
                    Op::AdvanceStart(k) => {
                        start += i64::from(k) % (end - start + 1);
                        let last = batches.last().copied();
                        batches.retain(|b| b.2 > start);
                        if let (true, Some((e, _, _))) = (batches.is_empty(), last) {
                            batches.push((e, start, start));
                        }
                        c.truncate_from_start(start);
                    }
                }
                for requested in -1..8 {
                    prop_assert_eq!(
                        c.end_offset_for(requested, end),
                        naive(&batches, start, requested, end),
                        "requested {} batches {:?} start {} entries {:?}",
                        requested, &batches, start, c.entries()
                    );
                }
                let back = EpochCache::decode(&c.encode()).unwrap();
                prop_assert_eq!(back.entries(), c.entries());
            }
        }
    }
}
