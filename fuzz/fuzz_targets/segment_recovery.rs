//! `segment_recovery`: arbitrary bytes as the files of a partition directory
//! (`<20-digit base>.log`, optionally `.index`, `.timeindex`, a second segment and
//! the checkpoint files), then `Log::open` (recovery).
//!
//! Input layout (missing bytes read as zero):
//! ```text
//! 0      flags u8   bit0 reseal batch CRCs in the .log parts, bit1 write .index,
//!                   bit2 write .timeindex, bit3 .clean-shutdown marker,
//!                   bit4 recovery-point file, bit5 log-start-offset file,
//!                   bit6 split the log into two segments, bit7 append after recovery
//! 1..9   base offset of the first segment, u64 BE (masked to i64 >= 0)
//! 9..13  base offset delta of the second segment, u32 BE
//! 13..17 split position of the log bytes, u32 BE (modulo the length)
//! 17..25 recovery-point value, i64 BE
//! 25..33 log-start-offset value, i64 BE
//! 33..35 .index length, u16 BE    35..37 .timeindex length, u16 BE
//! then the .index bytes, the .timeindex bytes, and the rest: the .log bytes
//! ```
//! Checked: nothing panics; the recovered log's offsets are consistent; every
//! offset from log start to log end reads without error and reading walks forward
//! to the log end; batches of a fully re-validated log pass their CRC; time
//! lookups answer inside the log; (bit 7) a new batch appends and reads back; a
//! clean close and reopen keep the same offsets.
#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_storage::{
    validate_batch, CountRule, Durability, HeaderWalk, Log, LogConfig, ReadBound, StorageError,
};

static ROOT: OnceLock<PathBuf> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: None,
        index_interval_bytes: 256,
        segment_index_bytes: 4 << 10,
        retention_ms: None,
        retention_bytes: None,
        durability: Durability::PageCache,
        ..LogConfig::default()
    }
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.data.get(at + i).copied().unwrap_or(0);
        }
        out
    }
}

const HEADER: usize = 37;

fn name(base: i64, suffix: &str) -> String {
    format!("{base:020}{suffix}")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing a fuzz input file");
}

/// `WEIR_FUZZ_AVOID_KNOWN=1`: relax the checks that the findings already reported
/// trip (reproducers in regressions/segment_recovery/), to look for others until
/// they are fixed: no read-progress and no append read-back check (a trusted tail
/// walk keeps the out-of-order batch it stops at, which then shadows later
/// offsets), no reopen check (a log-start checkpoint above the log end is clamped
/// in memory only; a trusted batch that fails validation is dropped by the next
/// open), no append to a log ending near i64::MAX (`next_offset` overflows in
/// `Log::append`). Panics, offset consistency, CRCs of re-validated logs and
/// time-lookup bounds are still checked.
fn avoid_known() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEIR_FUZZ_AVOID_KNOWN").is_some())
}

fn run(data: &[u8], dir: &Path) {
    let inp = Input { data };
    let flags = inp.bytes::<1>(0)[0];
    let base1 = (u64::from_be_bytes(inp.bytes(1)) & i64::MAX as u64) as i64;
    let delta = i64::from(u32::from_be_bytes(inp.bytes(9)));
    let split = u32::from_be_bytes(inp.bytes(13)) as usize;
    let recovery_point = i64::from_be_bytes(inp.bytes(17));
    let log_start = i64::from_be_bytes(inp.bytes(25));
    let ix_len = usize::from(u16::from_be_bytes(inp.bytes(33)));
    let tix_len = usize::from(u16::from_be_bytes(inp.bytes(35)));
    let rest = data.get(HEADER..).unwrap_or(&[]);
    let (ix, rest) = rest.split_at(ix_len.min(rest.len()));
    let (tix, rest) = rest.split_at(tix_len.min(rest.len()));
    let mut log_bytes = rest.to_vec();

    std::fs::create_dir_all(dir).unwrap();
    let mut segments = vec![(base1, 0usize, log_bytes.len())];
    if flags & 64 != 0 && !log_bytes.is_empty() {
        let at = split % log_bytes.len();
        segments = vec![
            (base1, 0, at),
            (base1.saturating_add(delta), at, log_bytes.len()),
        ];
    }
    for (base, from, to) in &segments {
        let part = &mut log_bytes[*from..*to];
        if flags & 1 != 0 {
            common::reseal_batches(part);
        }
        write(dir, &name(*base, ".log"), part);
    }
    if flags & 2 != 0 {
        write(dir, &name(base1, ".index"), ix);
    }
    if flags & 4 != 0 {
        write(dir, &name(base1, ".timeindex"), tix);
    }
    let clean = flags & 8 != 0;
    if clean {
        write(dir, ".clean-shutdown", b"0\n");
    }
    if flags & 16 != 0 {
        write(
            dir,
            "recovery-point",
            format!("{recovery_point}\n").as_bytes(),
        );
    }
    if flags & 32 != 0 {
        write(dir, "log-start-offset", format!("{log_start}\n").as_bytes());
    }

    let (log, report) = match Log::open(dir, "fuzz-0", config()) {
        Ok(x) => x,
        // An I/O error is an answer; a panic is not.
        Err(e) => {
            if common::debug() {
                eprintln!("segment_recovery: open failed: {e}");
            }
            return;
        }
    };
    if common::debug() {
        eprintln!("segment_recovery: {report:?}");
    }
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert_eq!(report.log_start_offset, start);
    assert_eq!(report.log_end_offset, end);
    assert!(start <= end, "log start {start} above log end {end}");
    assert_eq!(log.high_watermark(), end);
    assert_eq!(report.segments, log.segments().len());
    assert!(report.segments >= 1);
    // Every segment re-validated (no clean marker, no recovery point): CRCs hold.
    let all_validated = !clean && flags & 16 == 0;

    // Read everything from the start: every read succeeds and moves forward.
    let mut offset = start;
    let mut reads = 0;
    while offset < end {
        reads += 1;
        assert!(
            reads <= 100_000,
            "reading the recovered log does not progress"
        );
        let r = log
            .read(offset, 1 << 20, ReadBound::LogEnd)
            .unwrap_or_else(|e| panic!("reading offset {offset} of [{start}, {end}): {e}"));
        assert_eq!((r.log_start_offset, r.log_end_offset), (start, end));
        if r.records.is_empty() {
            // Offsets past the last batch (a gap left by compaction) hold nothing.
            break;
        }
        let mut walk = HeaderWalk::new(&r.records, 0);
        let mut last_next = offset;
        for (at, h) in walk.by_ref() {
            if all_validated {
                validate_batch(&r.records[at..at + h.size()], usize::MAX, CountRule::Stored)
                    .unwrap_or_else(|e| panic!("recovery kept a bad batch at {offset}: {e}"));
            }
            last_next = h
                .base_offset
                .saturating_add(i64::from(h.last_offset_delta))
                .saturating_add(1);
        }
        assert_eq!(
            walk.end(),
            r.records.len(),
            "a read returned a partial batch"
        );
        if avoid_known() && last_next <= offset {
            break;
        }
        assert!(last_next > offset, "read at {offset} returned nothing new");
        offset = last_next;
    }
    // Reads at the edges answer (empty at the end), outside they are out of range.
    log.read(end, 1024, ReadBound::HighWatermark)
        .expect("read at the log end");
    if start > i64::MIN {
        assert!(matches!(
            log.read(start - 1, 1024, ReadBound::LogEnd),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    for ts in [i64::MIN, -1, 0, 1_700_000_000_000, i64::MAX] {
        if let Ok(Some(t)) = log.offset_for_timestamp(ts) {
            assert!(
                t.offset >= start && t.offset < end,
                "{t:?} outside [{start}, {end})"
            );
            assert!(t.timestamp >= ts);
        }
    }

    // (avoid mode: a log ending within 2^32 of i64::MAX overflows in Log::append)
    if flags & 128 != 0 && !(avoid_known() && end > i64::MAX - (1 << 32)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let batch = weir_storage::record::build_batch(&[
            (Some(b"k".to_vec()), Some(b"v".to_vec()), now),
            (None, Some(b"w".to_vec()), now),
        ]);
        if let Ok(info) = log.append(&batch, 0) {
            assert_eq!(info.base_offset, end);
            let r = log
                .read(end, 1 << 20, ReadBound::LogEnd)
                .expect("reading the append");
            if avoid_known() && r.records.len() < batch.len() {
                return;
            }
            assert!(
                r.records.len() >= batch.len(),
                "a batch appended at {end} after recovery does not read back ({} bytes read)",
                r.records.len()
            );
            assert_eq!(
                &r.records[16..batch.len()],
                &batch[16..],
                "append read back differs"
            );
        }
    }

    let end = log.log_end_offset();
    let start = log.log_start_offset();
    log.close().expect("closing the recovered log");
    drop(log);
    let (again, report) =
        Log::open(dir, "fuzz-0", config()).expect("reopening after a clean close");
    assert!(report.clean_shutdown);
    if avoid_known() {
        return;
    }
    assert_eq!(
        (again.log_start_offset(), again.log_end_offset()),
        (start, end),
        "a clean close and reopen changed the offsets"
    );
}

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| common::scratch_root("segment_recovery"));
    let dir = root.join(format!("p-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    run(data, &dir);
    let _ = std::fs::remove_dir_all(&dir);
});
