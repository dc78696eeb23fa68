//! Counters, the live progress line and the summary of `weir bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const MB: f64 = 1024.0 * 1024.0;

/// Counters shared between the benchmark loop and the progress printer.
#[derive(Debug, Default)]
pub(super) struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    pub(super) fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Prints a progress line to stderr every second until aborted.
pub(super) fn spawn_progress(label: &'static str, p: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = (0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let (m, b, e) = p.snapshot();
            eprintln!(
                "[{label}] {:>6.1}s {:>12} msgs {:>10.0} msgs/s {:>9.2} MB/s {:>6} errors",
                start.elapsed().as_secs_f64(),
                m,
                (m - last.0) as f64,
                (b - last.1) as f64 / MB,
                e
            );
            last = (m, b);
        }
    })
}

/// A new latency histogram in microseconds (1 µs to 10 min, 3 significant digits).
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// The result of one benchmark.
#[derive(Debug)]
pub(super) struct Summary {
    pub(super) benchmark: &'static str,
    pub(super) messages: u64,
    pub(super) bytes: u64,
    pub(super) errors: u64,
    pub(super) elapsed: Duration,
    /// Latencies in microseconds.
    pub(super) latency: Histogram<u64>,
    pub(super) latency_label: &'static str,
    pub(super) config: serde_json::Value,
    /// Acknowledgement groups the produce benchmark observed: runs of records
    /// that completed together, i.e. one Produce response each unless the
    /// benchmark fell behind and saw several responses at once.
    pub(super) ack_groups: Option<u64>,
}

impl Summary {
    pub(super) fn from_progress(
        benchmark: &'static str,
        p: &Progress,
        elapsed: Duration,
        latency: Histogram<u64>,
        latency_label: &'static str,
        config: serde_json::Value,
    ) -> Self {
        let (messages, bytes, errors) = p.snapshot();
        Self {
            benchmark,
            messages,
            bytes,
            errors,
            elapsed,
            latency,
            latency_label,
            config,
            ack_groups: None,
        }
    }

    /// Value bytes per acknowledgement group: the producer's average batch size
    /// when the benchmark kept up, an upper bound of it otherwise.
    fn bytes_per_ack_group(&self) -> Option<f64> {
        self.ack_groups
            .filter(|b| *b > 0)
            .map(|b| self.bytes as f64 / b as f64)
    }

    fn rates(&self) -> (f64, f64) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        (self.messages as f64 / secs, self.bytes as f64 / MB / secs)
    }

    fn percentiles(&self) -> Vec<(&'static str, f64)> {
        let ms = |v: u64| v as f64 / 1000.0;
        if self.latency.is_empty() {
            return Vec::new();
        }
        vec![
            ("p50", ms(self.latency.value_at_quantile(0.50))),
            ("p95", ms(self.latency.value_at_quantile(0.95))),
            ("p99", ms(self.latency.value_at_quantile(0.99))),
            ("p99.9", ms(self.latency.value_at_quantile(0.999))),
            ("max", ms(self.latency.max())),
        ]
    }

    /// A human-readable table on stdout.
    pub(super) fn print_table(&self) {
        let (mps, mbps) = self.rates();
        println!("benchmark    {}", self.benchmark);
        println!("messages     {}", self.messages);
        println!(
            "bytes        {} ({:.2} MB)",
            self.bytes,
            self.bytes as f64 / MB
        );
        println!("errors       {}", self.errors);
        println!("duration     {:.3} s", self.elapsed.as_secs_f64());
        println!("throughput   {mps:.0} msgs/s  {mbps:.2} MB/s");
        if let (Some(g), Some(avg)) = (self.ack_groups, self.bytes_per_ack_group()) {
            println!(
                "batches      ~{:.1} KiB of values, {:.1} msgs per batch ({g} ack groups; an upper bound if the client lagged)",
                avg / 1024.0,
                self.messages as f64 / g as f64
            );
        }
        let p = self.percentiles();
        if !p.is_empty() {
            println!("latency      ({}, ms)", self.latency_label);
            for (name, v) in p {
                println!("  {name:<8}   {v:.3}");
            }
        }
    }

    /// Machine-readable output.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let (mps, mbps) = self.rates();
        let latency: serde_json::Map<String, serde_json::Value> = self
            .percentiles()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        serde_json::json!({
            "benchmark": self.benchmark,
            "messages": self.messages,
            "bytes": self.bytes,
            "errors": self.errors,
            "duration_secs": self.elapsed.as_secs_f64(),
            "msgs_per_sec": mps,
            "mb_per_sec": mbps,
            "latency_kind": self.latency_label,
            "latency_ms": latency,
            "config": self.config,
            "ack_groups": self.ack_groups,
            "avg_batch_bytes": self.bytes_per_ack_group(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_has_percentiles() {
        let p = Progress::default();
        p.add(1000, 1024 * 1000);
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = Summary::from_progress(
            "produce",
            &p,
            Duration::from_secs(2),
            h,
            "send to ack",
            serde_json::json!({}),
        );
        let j = s.to_json();
        assert_eq!(j["messages"], 1000);
        assert_eq!(j["msgs_per_sec"], 500.0);
        let p50 = j["latency_ms"]["p50"].as_f64().unwrap();
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert!(j["latency_ms"]["max"].as_f64().unwrap() >= 999.0);
        assert!(j["avg_batch_bytes"].is_null());
    }

    #[test]
    fn summary_json_has_average_batch() {
        let p = Progress::default();
        p.add(1000, 1024 * 1000);
        let mut s = Summary::from_progress(
            "produce",
            &p,
            Duration::from_secs(1),
            histogram(),
            "send to ack",
            serde_json::json!({}),
        );
        s.ack_groups = Some(4);
        let j = s.to_json();
        assert_eq!(j["ack_groups"], 4);
        assert_eq!(j["avg_batch_bytes"], 256_000.0);
    }
}
