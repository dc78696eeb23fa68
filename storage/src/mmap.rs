//! The only place the crate maps files into memory; the safety argument lives here.
#![allow(unsafe_code)]

use std::fs::File;

use bytes::Bytes;
use memmap2::{Mmap, MmapMut, MmapOptions};

/// Maps `len` bytes of an index file read-write.
///
/// Safety argument: index files are private to one open log (the partition
/// directory is owned by this process, and the manager refuses to open a log twice),
/// and the file is never shrunk while this mapping is alive: trimming drops the
/// mapping before calling `set_len`.
///
/// Read-ahead is off (`MADV_RANDOM`): an index is searched, not scanned, and
/// its unwritten tail is a hole, which read-ahead would fill with zeroed
/// pages on the first fault (megabytes per index: it was half the CPU time
/// of creating a thousand partitions).
pub(crate) fn map_index(file: &File, len: usize) -> std::io::Result<MmapMut> {
    // SAFETY: see above; `len` never exceeds the file length set by the caller.
    let map = unsafe { MmapOptions::new().len(len).map_mut(file) }?;
    map.advise(memmap2::Advice::Random)?;
    Ok(map)
}

/// Maps `capacity` bytes of a segment file read-only and returns them as `Bytes`.
///
/// The mapping may extend past the end of the file (the active segment grows into
/// it); readers only ever slice below the segment's written size. Segment files
/// are never shrunk while the process runs (truncation punches a hole instead,
/// which reads back as zeros), so no slice handed out can fault; files are
/// shrunk only when a log is opened, before any mapping exists. A deleted segment
/// stays mapped, and readable, until its last `Bytes` is dropped.
pub(crate) fn map_segment(file: &File, capacity: usize) -> std::io::Result<Bytes> {
    if capacity == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: see above.
    let map: Mmap = unsafe { MmapOptions::new().len(capacity).map(file)? };
    Ok(Bytes::from_owner(map))
}
