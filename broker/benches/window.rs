//! The window operator alone, no IO: rows per second into tumbling, hopping
//! and session windows; records per second read into rows (the JSON value
//! picked apart, the group key built); what a checkpoint of its state costs (JSON, as the
//! aggregate task writes it); and the memory an open window holds, counted
//! by a global allocator that tracks live bytes.
//!
//!   cargo bench -p weir-broker --bench window

// The counting allocator below is the only unsafe code: it forwards every
// call to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;
use weir_broker::stream::plan::{AggregateKind, WindowSpec};
use weir_broker::stream::row::Reader;
use weir_broker::stream::sql::parse_job;
use weir_broker::stream::window::{EmitMode, GroupKey, OwnedRow, WindowOperator};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only
// a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The seed query's aggregates: SUM(transactionSum), COUNT(*).
const SEED: [AggregateKind; 2] = [AggregateKind::Sum, AggregateKind::CountStar];

/// `n` rows of 500 customers, 20 ms of event time apart, out of order by up
/// to 4 s (the shape of `scripts/stream_events.py`).
fn rows(n: usize) -> Vec<OwnedRow> {
    let mut seed = 0x9e37_79b9_u64;
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let t = 1_700_000_000_000 + i as i64 * 20 + (seed % 4_000) as i64 - 2_000;
            OwnedRow {
                time_ms: t,
                key: GroupKey::of(&[json!((seed >> 16) % 500)]),
                args: vec![json!(((seed >> 8) % 10_000) as f64 / 100.0), json!(null)],
            }
        })
        .collect()
}

fn specs() -> [(&'static str, WindowSpec); 3] {
    [
        ("tumble_30s", WindowSpec::Tumble { size_ms: 30_000 }),
        (
            "hop_2s_10s",
            WindowSpec::Hop {
                slide_ms: 2_000,
                size_ms: 10_000,
            },
        ),
        ("session_10s", WindowSpec::Session { gap_ms: 10_000 }),
    ]
}

fn operator(spec: WindowSpec) -> WindowOperator {
    WindowOperator::new(spec, 5_000, SEED.to_vec(), 1, EmitMode::Final)
}

/// Takes `input` through `op` as the rows of one partition, results
/// dropped; returns the windows left open.
fn through(mut op: WindowOperator, input: &[OwnedRow]) -> usize {
    let mut out = Vec::new();
    for r in input {
        op.process(0, r.row(), &mut out);
        out.clear();
    }
    op.open_windows()
}

/// Rows per second through the operator, results included.
fn throughput(c: &mut Criterion) {
    let input = rows(100_000);
    let mut g = c.benchmark_group("window_operator");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(10);
    for (name, spec) in specs() {
        g.bench_function(BenchmarkId::new("rows", name), |b| {
            b.iter(|| black_box(through(operator(spec), &input)))
        });
    }
    g.finish();
}

/// Rows per second through one operator reading three input partitions
/// (a job on a cluster of one node), the rows split by key and taken 2,600
/// at a time (a 256 KiB batch of the benchmark's records): in turn, or
/// always from the partition whose watermark is lowest; beside the same
/// rows as one partition.
fn three_partitions(c: &mut Criterion) {
    let input = rows(300_000);
    let mut parts: [Vec<&OwnedRow>; 3] = Default::default();
    for r in &input {
        let p = weir_client::partitioner::partition_for_key(r.key.as_str().as_bytes(), 3);
        parts[p as usize].push(r);
    }
    let mut g = c.benchmark_group("window_operator_3p");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(10);
    let hop = specs()[1].1;
    // Partitions taken `chunk` rows at a time: in turn (each reaches its
    // own event time: partitions of fewer rows run ahead, and the lowest
    // watermark holds their windows open), or always the one whose
    // watermark is lowest (aligned, as a task reading them all does).
    let feed = |op: &mut WindowOperator, chunk: usize, aligned: bool| {
        let mut out = Vec::new();
        let mut at = [0usize; 3];
        loop {
            let left = |p: usize| at[p] < parts[p].len();
            let order: Vec<usize> = if aligned {
                (0..3)
                    .filter(|&p| left(p))
                    .min_by_key(|&p| op.watermarks().of(p))
                    .into_iter()
                    .collect()
            } else {
                (0..3).filter(|&p| left(p)).collect()
            };
            if order.is_empty() {
                break;
            }
            for p in order {
                let end = (at[p] + chunk).min(parts[p].len());
                for r in &parts[p][at[p]..end] {
                    op.process(p, r.row(), &mut out);
                    out.clear();
                }
                at[p] = end;
            }
        }
    };
    for (name, aligned) in [("in_turn", false), ("aligned", true)] {
        g.bench_function(BenchmarkId::new(format!("hop_2s_10s_{name}"), 2_600), |b| {
            b.iter(|| {
                let mut op = WindowOperator::new(hop, 5_000, SEED.to_vec(), 3, EmitMode::Final);
                feed(&mut op, 2_600, aligned);
                black_box(op.open_windows())
            })
        });
    }
    g.bench_function(BenchmarkId::new("hop_2s_10s", "one_partition"), |b| {
        b.iter(|| black_box(through(operator(hop), &input)))
    });
    g.finish();
}

/// `n` JSON records of `scripts/stream_events.py`'s shape, each with the
/// customer as its record key.
fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut seed = 0x2545_f491_u64;
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let customer = (seed >> 16) % 500;
            let ts = 1_700_000_000_000 + i as u64 * 20 - seed % 4_000;
            let value = format!(
                r#"{{"customerId": {customer}, "transactionSum": {}.{}, "vendorId": "v{}", "ts": {ts}}}"#,
                (seed >> 8) % 200,
                (seed >> 4) % 10,
                seed % 10
            );
            (customer.to_string().into_bytes(), value.into_bytes())
        })
        .collect()
}

/// Records per second read into rows for the seed query, grouping by a
/// field of the value and by the record key.
fn reading(c: &mut Criterion) {
    let input = records(100_000);
    let mut g = c.benchmark_group("row_reader");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(10);
    let window = "TUMBLE(ts, INTERVAL '30' SECOND)";
    for (name, key) in [("by_field", "customerId"), ("by_record_key", "_key")] {
        let sql = format!(
            "INSERT INTO o SELECT {key}, SUM(transactionSum) AS total, COUNT(*) AS n \
             FROM t GROUP BY {key}, {window}"
        );
        let mut reader = Reader::new(&parse_job(&sql).expect("the seed query parses"));
        g.bench_function(BenchmarkId::new("records", name), |b| {
            b.iter(|| {
                for (k, v) in &input {
                    black_box(reader.row(Some(k), v, 0, 0).expect("a good record"));
                }
            })
        });
    }
    g.finish();
}

/// An operator holding `keys` open tumbling windows (one per key; nothing
/// fires: every row is in the first window).
fn open_windows(keys: usize, kinds: &[AggregateKind], distinct_values: usize) -> WindowOperator {
    let mut op = WindowOperator::new(
        WindowSpec::Tumble { size_ms: 3_600_000 },
        0,
        kinds.to_vec(),
        1,
        EmitMode::Final,
    );
    let mut out = Vec::new();
    for k in 0..keys {
        for v in 0..distinct_values.max(1) {
            let row = OwnedRow {
                time_ms: 1_000 + v as i64,
                key: GroupKey::of(&[json!(k)]),
                args: kinds.iter().map(|_| json!(v)).collect(),
            };
            op.process(0, row.row(), &mut out);
        }
    }
    assert!(out.is_empty(), "nothing fires");
    op
}

/// Live bytes per open window, and the checkpoint's bytes per window and
/// time, printed once (measurements, not timings of criterion's).
fn memory_and_checkpoint(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    for (name, kinds, distinct) in [
        ("SUM + COUNT(*)", &SEED[..], 1),
        (
            "COUNT(DISTINCT) of 10 values",
            &[AggregateKind::CountDistinct][..],
            10,
        ),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let op = open_windows(KEYS, kinds, distinct);
        let live = LIVE.load(Ordering::Relaxed) - before;
        let bytes = serde_json::to_vec(&op).expect("state serializes");
        println!(
            "memory: {name}: {KEYS} open windows hold {live} bytes, {} bytes per window; checkpoint {} bytes, {} per window",
            live / KEYS as isize,
            bytes.len(),
            bytes.len() / KEYS
        );
        drop(op);
    }
    let op = open_windows(KEYS, &SEED, 1);
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("to_json_100k_open_windows", |b| {
        b.iter(|| black_box(serde_json::to_vec(&op).expect("serializes").len()))
    });
    let bytes = serde_json::to_vec(&op).expect("serializes");
    g.bench_function("from_json_100k_open_windows", |b| {
        b.iter(|| {
            let back: WindowOperator = serde_json::from_slice(&bytes).expect("parses");
            black_box(back.open_windows())
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    three_partitions(&mut c);
    reading(&mut c);
    memory_and_checkpoint(&mut c);
    c.final_summary();
}
