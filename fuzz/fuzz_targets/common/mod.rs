//! Helpers shared by the fuzz targets (each target includes this module).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A scratch directory for this process: `$WEIR_FUZZ_DIR`, else `/dev/shm` (tmpfs:
/// fsyncs cost nothing and nothing reaches the disk), else the temp dir; named
/// `weir-fuzz-<target>-<pid>`. Directories of earlier runs whose process is gone
/// are removed first (a fuzzer exits without running destructors).
pub fn scratch_root(target: &str) -> PathBuf {
    let base = std::env::var_os("WEIR_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            }
        });
    let prefix = format!("weir-fuzz-{target}-");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&prefix) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
    dir
}

/// Bytes used by the files under `dir` (recursive, apparent sizes).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                // Allocated blocks, not the apparent length: index files are sparse.
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// Recomputes batchLength and CRC-32C of every RecordBatch v2 found by walking
/// `buf` (a batch whose length runs past the end is cut to the end), so mutated
/// batches get past the CRC check and reach the record validation.
pub fn reseal_batches(buf: &mut [u8]) {
    let mut pos = 0usize;
    while buf.len() - pos >= weir_storage::HEADER_LEN {
        let claimed = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        let rest = buf.len() - pos;
        let size = usize::try_from(claimed)
            .ok()
            .map(|l| l.saturating_add(12))
            .filter(|&s| s >= weir_storage::HEADER_LEN && s <= rest)
            .unwrap_or(rest);
        weir_storage::seal_batch(&mut buf[pos..pos + size]);
        pos += size;
    }
}

/// Whether `WEIR_FUZZ_DEBUG` is set: targets then print what each input did
/// (for checking a harness on its seeds: `cargo fuzz run T seeds/T -- -runs=0`).
pub fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEIR_FUZZ_DEBUG").is_some())
}
