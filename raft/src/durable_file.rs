//! Small whole-file records of a partition directory (the Raft anchor, the
//! vote, the committed log id), replaced atomically: written as `<name>.tmp`,
//! renamed over `<name>`. A reader finds the old content or the new one, never a
//! mix. (`*.tmp` leftovers are removed by the partition log's recovery.)

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{RaftStoreError, Result};

/// How far a replacement goes before [`write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sync {
    /// The new content and the rename are fsynced: durable on return.
    Durable,
    /// Written and renamed, not fsynced: a machine crash may bring back the old
    /// content (or, on a file system that does not order a rename after the
    /// data, an unreadable file, which [`read`] reports as absent).
    PageCache,
}

/// Replaces `dir/name` with `bytes`.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8], sync: Sync) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(RaftStoreError::io(&tmp))?;
    f.write_all(bytes).map_err(RaftStoreError::io(&tmp))?;
    if sync == Sync::Durable {
        f.sync_all().map_err(RaftStoreError::io(&tmp))?;
    }
    std::fs::rename(&tmp, &dst).map_err(RaftStoreError::io(&dst))?;
    if sync == Sync::Durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The content of `dir/name`, `None` when the file does not exist.
pub(crate) fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RaftStoreError::io(path)(e)),
    }
}

/// fsyncs a directory so that creations and renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RaftStoreError::io(dir))
}
