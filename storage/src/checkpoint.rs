//! Small crash-safe files of a partition directory: one decimal offset each (and
//! the leader-epoch checkpoint, see [`crate::epoch_cache`]).
//!
//! Written as `<name>.tmp`, fsynced, renamed over `<name>`, and the directory fsynced,
//! so a reader finds either the old value or the new one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{io_err, Result};

/// The log start offset, raised by retention and DeleteRecords.
pub(crate) const LOG_START: &str = "log-start-offset";
/// Every batch below this offset was on disk when it was written.
pub(crate) const RECOVERY_POINT: &str = "recovery-point";
/// Present only between a clean close and the next open.
pub(crate) const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
/// The offset a [`crate::Log::reset_to`] restarts the log at, present while the
/// reset is under way: an open finding it completes the reset.
pub(crate) const RESET: &str = "reset-in-progress";

/// Atomically replaces the checkpoint `name` in `dir` with `value`.
pub(crate) fn write(dir: &Path, name: &str, value: i64) -> Result<()> {
    #[cfg(test)]
    crate::recovery::hook::record(crate::recovery::hook::Event::Checkpoint(
        name.to_string(),
        value,
    ));
    write_text(dir, name, &format!("{value}\n"))
}

/// Atomically replaces the file `name` in `dir` with `text`; durable on return.
pub(crate) fn write_text(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    sync_dir(dir)
}

/// Reads the checkpoint `name`; `None` when missing or unreadable.
pub(crate) fn read(dir: &Path, name: &str) -> Option<i64> {
    std::fs::read_to_string(dir.join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
