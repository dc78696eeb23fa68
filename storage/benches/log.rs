//! Criterion benchmarks of the partition log, to set beside the disk's own limits
//! measured by `storage/benches/fio.sh` (see BENCHMARKS.md):
//!
//! - `append/{page_cache,every_append,group_commit_c8}/{1KiB,16KiB,1MiB}`: appends of
//!   one pre-built batch of that size under each [`Durability`] policy; group commit
//!   runs [`GROUP_APPENDERS`] tokio tasks that each append and await `wait_durable`.
//! - `append_roll/page_cache_64MiB_segments/16KiB`: page-cache appends with small
//!   segments, so segment rolls (which fsync the sealed segment) fall inside the timing;
//!   before it, the latency of each append across one roll of a 1 GiB segment is printed.
//! - `read/{copy,touch}/...`: a walk from the start to the end of a 256 MiB log with
//!   `read(offset, 1 MiB, LogEnd)`, page cache warm, copying every returned byte into
//!   a sink (`copy`) or touching one byte per 4 KiB (`touch`).
//! - `lookup/...`: `offset_for_timestamp` on a log of [`LOOKUP_SEGMENTS`] segments.
//! - `records/{walk,build}/2000`: walking the records of a batch of 2,000
//!   small JSON records (what validating a produce, a fetch by the Rust
//!   client and a stream task's read do per record) and building one (what
//!   a producer does), in memory.
//! - `open/clean_1GiB`: opening a cleanly closed 1 GiB log; also prints the RSS and
//!   virtual size an open log adds, beside its index sizes.
//!
//! Logs live under `<workspace>/target/bench-logs` (override with `WEIR_BENCH_DIR`),
//! on the same filesystem as the workspace rather than a tmpfs `/tmp`. Append benches
//! start a fresh log every [`LOG_CAP`] bytes, outside the timing, so dirty page cache
//! and disk use stay bounded.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tempfile::TempDir;
use weir_storage::record::{build_batch, RecordWalk};
use weir_storage::{BatchBuilder, Durability, Log, LogConfig, ReadBound, HEADER_LEN};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Bytes appended to one log before the bench moves to a fresh one (untimed).
const LOG_CAP: usize = 256 * MIB;
/// Concurrent appenders in the group-commit bench.
const GROUP_APPENDERS: usize = 8;
/// Size of the log the read benches walk.
const READ_LOG: usize = 256 * MIB;
/// Segments in the log the time-lookup benches search.
const LOOKUP_SEGMENTS: usize = 500;
/// Size of the log the open bench reopens.
const OPEN_LOG: usize = 1024 * MIB;

fn bench_root() -> PathBuf {
    let root = std::env::var_os("WEIR_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-logs"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&root).expect("create bench dir");
    root
}

fn fresh_dir() -> TempDir {
    tempfile::tempdir_in(bench_root()).expect("tempdir")
}

fn label(size: usize) -> String {
    if size >= MIB {
        format!("{}MiB", size / MIB)
    } else {
        format!("{}KiB", size / KIB)
    }
}

/// A batch of about 1 KiB records (a single record below that) whose encoded size
/// is as close to `size` as possible without exceeding it; timestamps from `ts`.
fn batch_of(size: usize, ts: i64) -> Vec<u8> {
    let n = (size / KIB).max(1);
    let mut value = size / n;
    loop {
        let records: Vec<_> = (0..n)
            .map(|i| {
                (
                    Some(format!("key-{i:06}").into_bytes()),
                    Some(vec![b'v'; value]),
                    ts + i as i64,
                )
            })
            .collect();
        let b = build_batch(&records);
        if b.len() <= size {
            return b;
        }
        value -= (b.len() - size).div_ceil(n);
    }
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        durability,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, cfg: LogConfig) -> Arc<Log> {
    Arc::new(
        Log::open(&dir.join("bench-0"), "bench-0", cfg)
            .expect("open")
            .0,
    )
}

/// Runs `iters` appends in rounds of at most [`LOG_CAP`] bytes, each round on a fresh
/// log; only `round` (the appends themselves) is timed.
fn rounds(
    iters: u64,
    batch_len: usize,
    cfg: &LogConfig,
    mut round: impl FnMut(&Arc<Log>, u64) -> Duration,
) -> Duration {
    let per_log = (LOG_CAP / batch_len).max(1) as u64;
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(per_log);
        let dir = fresh_dir();
        let log = open(dir.path(), cfg.clone());
        total += round(&log, n);
        drop(log);
        drop(dir);
        left -= n;
    }
    total
}

fn sync_appends(log: &Arc<Log>, batch: &[u8], n: u64, fsync_each: bool) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(log.append(batch, 0).expect("append"));
        if fsync_each {
            // What `Durability::EveryAppend` costs: the fsync the broker waits
            // for before acknowledging each append.
            log.flush().expect("flush");
        }
    }
    start.elapsed()
}

fn group_appends(
    rt: &tokio::runtime::Runtime,
    log: &Arc<Log>,
    batch: &Arc<Vec<u8>>,
    n: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..GROUP_APPENDERS as u64)
            .map(|t| {
                let share = n / GROUP_APPENDERS as u64 + u64::from(t < n % GROUP_APPENDERS as u64);
                let (log, batch) = (Arc::clone(log), Arc::clone(batch));
                tokio::spawn(async move {
                    for _ in 0..share {
                        let info = log.append(&batch, 0).expect("append");
                        log.wait_durable(info.last_offset).await.expect("durable");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("appender");
        }
        start.elapsed()
    })
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sizes = [KIB, 16 * KIB, MIB];
    let policies = [
        ("page_cache", Durability::PageCache),
        ("every_append", Durability::EveryAppend),
        (
            "group_commit_c8",
            Durability::GroupCommit {
                max_bytes: 4 << 20,
                max_delay: Duration::ZERO,
            },
        ),
    ];
    for (name, durability) in policies {
        let mut g = c.benchmark_group(format!("append/{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        if !matches!(durability, Durability::PageCache) {
            g.sampling_mode(SamplingMode::Flat);
        }
        let cfg = config(durability);
        for size in sizes {
            let batch = Arc::new(batch_of(size, 1_700_000_000_000));
            g.throughput(Throughput::Bytes(batch.len() as u64));
            g.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
                b.iter_custom(|iters| {
                    rounds(iters, batch.len(), &cfg, |log, n| match durability {
                        Durability::GroupCommit { .. } => group_appends(&rt, log, &batch, n),
                        _ => sync_appends(log, &batch, n, durability == Durability::EveryAppend),
                    })
                });
            });
        }
        g.finish();
    }

    // One roll of a default 1 GiB segment, timed append by append: the append that
    // rolls waits for the fsync of the whole sealed segment (under the log's lock).
    {
        let dir = fresh_dir();
        let log = open(dir.path(), config(Durability::PageCache));
        let batch = batch_of(16 * KIB, 1_700_000_000_000);
        let n = (1usize << 30) / batch.len() + 64;
        let mut lat: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                log.append(&batch, 0).expect("append");
                t.elapsed()
            })
            .collect();
        lat.sort();
        eprintln!(
            "append_roll/page_cache_1GiB_segment: {n} appends of 16 KiB, one roll: \
             p50 {:?}, p99.9 {:?}, max {:?}",
            lat[n / 2],
            lat[n - n / 1000],
            lat[n - 1],
        );
    }

    // Segment rolls inside the timing: a roll fsyncs the sealed segment under the lock.
    let mut g = c.benchmark_group("append_roll/page_cache_64MiB_segments");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let cfg = LogConfig {
        segment_bytes: 64 * MIB as u64,
        ..config(Durability::PageCache)
    };
    let batch = batch_of(16 * KIB, 1_700_000_000_000);
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function(BenchmarkId::from_parameter("16KiB"), |b| {
        b.iter_custom(|iters| {
            rounds(iters, batch.len(), &cfg, |log, n| {
                sync_appends(log, &batch, n, false)
            })
        });
    });
    g.finish();
}

/// Writes `bytes` of `batch_size` batches, then returns the log and the offsets a
/// walk with 1 MiB reads visits (found by an untimed first walk, which also warms
/// the page cache and the mapping).
fn read_log(dir: &Path, batch_size: usize, bytes: usize) -> (Arc<Log>, Vec<i64>) {
    let log = open(dir, config(Durability::PageCache));
    let batch = batch_of(batch_size, 1_700_000_000_000);
    for _ in 0..bytes / batch.len() {
        log.append(&batch, 0).expect("append");
    }
    let end = log.log_end_offset();
    let mut offsets = Vec::new();
    let mut at = 0;
    while at < end {
        offsets.push(at);
        let r = log.read(at, MIB, ReadBound::LogEnd).expect("read");
        let last = weir_storage::HeaderWalk::new(&r.records, 0)
            .last()
            .expect("a batch");
        at = last.1.next_offset();
    }
    (log, offsets)
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut sink = vec![0u8; 2 * MIB];
    for batch_size in [KIB, 16 * KIB] {
        let dir = fresh_dir();
        let (log, offsets) = read_log(dir.path(), batch_size, READ_LOG);
        g.throughput(Throughput::Bytes(log.size_bytes()));
        let name = format!("{}_batches", label(batch_size));
        g.bench_function(BenchmarkId::new("copy", &name), |b| {
            b.iter(|| {
                for &at in &offsets {
                    let r = log.read(at, MIB, ReadBound::LogEnd).expect("read");
                    sink[..r.records.len()].copy_from_slice(&r.records);
                    black_box(&sink);
                }
            });
        });
        g.bench_function(BenchmarkId::new("touch", &name), |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for &at in &offsets {
                    let r = log.read(at, MIB, ReadBound::LogEnd).expect("read");
                    sum += r
                        .records
                        .iter()
                        .step_by(4096)
                        .map(|&x| u64::from(x))
                        .sum::<u64>();
                }
                black_box(sum)
            });
        });
    }
    g.finish();
}

fn lookup(c: &mut Criterion) {
    // 500 segments of 256 KiB, 1 KiB batches of 8 records, timestamps 1 ms apart.
    let dir = fresh_dir();
    let cfg = LogConfig {
        segment_bytes: 256 * KIB as u64,
        ..config(Durability::PageCache)
    };
    let log = open(dir.path(), cfg);
    let t0 = 1_700_000_000_000i64;
    let mut ts = t0;
    while log.segments().len() < LOOKUP_SEGMENTS {
        let recs: Vec<_> = (0..8)
            .map(|i| {
                (
                    Some(format!("k{i}").into_bytes()),
                    Some(vec![b'v'; 100]),
                    ts + i,
                )
            })
            .collect();
        log.append(&build_batch(&recs), 0).expect("append");
        ts += 8;
    }
    log.set_high_watermark(log.log_end_offset()).expect("hw");
    let t_max = ts - 1;
    let mut g = c.benchmark_group("lookup");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let name = format!("{LOOKUP_SEGMENTS}_segments");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    g.bench_function(BenchmarkId::new("random_timestamp", &name), |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let target = t0 + (x % (t_max - t0 + 1) as u64) as i64;
            black_box(log.offset_for_timestamp(target).expect("lookup"))
        });
    });
    g.bench_function(BenchmarkId::new("newest_timestamp", &name), |b| {
        b.iter(|| black_box(log.offset_for_timestamp(t_max).expect("lookup")));
    });
    g.finish();
}

/// (resident, virtual) bytes of this process, from /proc/self/statm.
fn statm() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let (size, rss) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
    (rss * 4096, size * 4096)
}

fn open_log(c: &mut Criterion) {
    // 1 GiB in 256 MiB segments of 16 KiB batches, each batch a newer timestamp.
    let dir = fresh_dir();
    let cfg = LogConfig {
        segment_bytes: 256 * MIB as u64,
        ..config(Durability::PageCache)
    };
    let path = dir.path().join("open-0");
    {
        let (log, _) = Log::open(&path, "open-0", cfg.clone()).expect("open");
        let mut ts = 1_700_000_000_000;
        let mut written = 0;
        while written < OPEN_LOG {
            let b = batch_of(16 * KIB, ts);
            written += log.append(&b, 0).expect("append").bytes;
            ts += 16;
        }
        log.close().expect("close");
    }
    // Index files: (sealed segments, the active segment's preallocated pair).
    let mut indexes: Vec<(String, u64)> = std::fs::read_dir(&path)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n, e.metadata().map_or(0, |m| m.len()))
        })
        .filter(|(n, _)| n.ends_with(".index") || n.ends_with(".timeindex"))
        .collect();
    indexes.sort();
    let active: u64 = indexes.iter().rev().take(2).map(|(_, l)| l).sum();
    let sealed: u64 = indexes.iter().map(|(_, l)| l).sum::<u64>() - active;
    let (rss0, vsz0) = statm();
    let (log, rep) = Log::open(&path, "open-0", cfg.clone()).expect("open");
    let (rss1, vsz1) = statm();
    eprintln!(
        "open/clean_1GiB memory: {} segments, {} MiB data; RSS +{} KiB, virtual +{} MiB; \
         index files: sealed segments {} KiB, active segment (preallocated) {} KiB",
        rep.segments,
        log.size_bytes() / MIB as u64,
        rss1.saturating_sub(rss0) / 1024,
        vsz1.saturating_sub(vsz0) / MIB as u64,
        sealed / 1024,
        active / 1024,
    );
    log.close().expect("close");
    drop(log);

    let mut g = c.benchmark_group("open");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("clean_1GiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (log, _) = Log::open(&path, "open-0", cfg.clone()).expect("open");
                total += start.elapsed();
                log.close().expect("close");
            }
            total
        });
    });
    g.finish();
}

/// Walking and building the records of one batch of small JSON records.
fn records(c: &mut Criterion) {
    const N: i64 = 2000;
    let rows: Vec<(String, String)> = (0..N)
        .map(|i| {
            let value = format!(
                r#"{{"customerId": {}, "transactionSum": {i}.5, "vendorId": "v{}", "ts": {}}}"#,
                i % 500,
                i % 10,
                1_700_000_000_000 + i * 20
            );
            ((i % 500).to_string(), value)
        })
        .collect();
    let build = || {
        let mut b = BatchBuilder::new(1, 0, 0, 256 * KIB);
        for (i, (k, v)) in rows.iter().enumerate() {
            let ts = 1_700_000_000_000 + i as i64 * 20;
            b.push(
                ts,
                Some(k.as_bytes()),
                Some(v.as_bytes()),
                std::iter::empty(),
            );
        }
        b.finish(0).expect("an uncompressed batch builds")
    };
    let batch = build();
    let section = &batch[HEADER_LEN..];
    let mut g = c.benchmark_group("records");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("walk", N), |b| {
        b.iter(|| {
            let mut bytes = 0;
            for r in RecordWalk::new(section, N as i32) {
                bytes += r
                    .expect("the batch is well formed")
                    .value
                    .map_or(0, <[u8]>::len);
            }
            black_box(bytes)
        })
    });
    g.bench_function(BenchmarkId::new("build", N), |b| {
        b.iter(|| black_box(build()))
    });
    g.finish();
}

/// The benchmark-name filter given on the command line, if any, so that the setup
/// of groups it excludes (writing GiBs of logs) is skipped too.
fn filter() -> Option<String> {
    const VALUED: [&str; 14] = [
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--color",
        "--plotting-backend",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().find_map(|(i, a)| {
        let after_value_flag = i > 0 && VALUED.contains(&args[i - 1].as_str());
        (!a.starts_with('-') && !after_value_flag).then(|| a.clone())
    })
}

/// Whether the group `name` (e.g. `append`) may hold a benchmark the filter selects.
fn wanted(filter: Option<&str>, name: &str) -> bool {
    filter.is_none_or(|f| {
        let first = f.split('/').next().unwrap_or(f);
        f.contains(name) || name.starts_with(first) || first.starts_with(name)
    })
}

/// One group of benchmarks.
type Group = fn(&mut Criterion);

fn main() {
    let f = filter();
    let mut c = Criterion::default().configure_from_args();
    let groups: [(&str, Group); 5] = [
        ("records", records),
        ("append", append),
        ("read", read),
        ("lookup", lookup),
        ("open", open_log),
    ];
    for (name, run) in groups {
        if wanted(f.as_deref(), name) {
            run(&mut c);
        }
    }
    c.final_summary();
}
