//! Fetch: reads committed batches as stored (no re-encoding), long-polls until
//! `min_bytes` are available or `max_wait_ms` passes, and honours KIP-74 (the
//! first non-empty partition returns at least one whole batch).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use weir_storage::StorageError;

use crate::broker::Broker;
use crate::error_code;

/// Reads every requested partition once; returns the response and its byte count.
fn read_once(b: &Broker, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let committed_only = req.isolation_level == 1;
    let mut total = 0usize;
    let mut any_error = false;
    let max_total = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut out = PartitionData::default()
                .with_partition_index(p.partition)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(committed_only.then(Vec::new))
                .with_records(Some(Bytes::new()));
            let Some(part) = b.partition(&name, p.partition) else {
                any_error = true;
                parts.push(
                    out.with_error_code(b.not_hosted(&name, p.partition))
                        .with_high_watermark(-1),
                );
                continue;
            };
            // KIP-320: a consumer naming an older or newer epoch is told so.
            if let Err(e) = b.check_leader(&part, p.current_leader_epoch) {
                any_error = true;
                let o = part.offsets();
                parts.push(
                    out.with_error_code(error_code::leader(&e))
                        .with_high_watermark(o.high_watermark)
                        .with_last_stable_offset(o.high_watermark)
                        .with_log_start_offset(o.log_start),
                );
                continue;
            }
            let limit = (p.partition_max_bytes.max(0) as usize)
                .min(max_total.saturating_sub(total))
                .max(1);
            match part.read(p.fetch_offset, limit, committed_only) {
                Ok(r) => {
                    // KIP-74: past the response limit, only the first data is allowed.
                    let keep = total == 0 || total + r.records.len() <= max_total;
                    if keep {
                        total += r.records.len();
                        out = out.with_records(Some(r.records));
                    }
                    parts.push(
                        out.with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(r.last_stable_offset)
                            .with_log_start_offset(r.log_start_offset),
                    );
                }
                Err(e) => {
                    any_error = true;
                    let o = part.offsets();
                    let (hw, start) = (o.high_watermark, o.log_start);
                    if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = p.partition, error = %e, "fetch failed");
                    }
                    parts.push(
                        out.with_error_code(error_code::storage(&e))
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(start),
                    );
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(parts),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        any_error,
    )
}

/// Serves a fetch, waiting up to `max_wait_ms` for `min_bytes`. The wait is woken
/// only by high-watermark moves of the partitions asked for, not by every produce.
pub async fn handle(b: &Broker, req: FetchRequest, _version: i16) -> FetchResponse {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // Subscribed before the first read, so no move between read and wait is missed.
    let mut watches: Vec<_> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(|p| b.partition(t.topic.0.as_str(), p.partition))
        })
        .map(|p| p.subscribe_high_watermark())
        .collect();
    let min = req.min_bytes.max(1) as usize;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (resp, total, error) = read_once(b, &req);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if total >= min || error || timed_out {
            b.metrics
                .fetch_bytes
                .fetch_add(total as u64, Ordering::Relaxed);
            return resp;
        }
        if tokio::time::timeout_at(deadline, any_changed(&mut watches))
            .await
            .is_err()
        {
            let (resp, total, _) = read_once(b, &req);
            b.metrics
                .fetch_bytes
                .fetch_add(total as u64, Ordering::Relaxed);
            return resp;
        }
    }
}

/// Resolves when any of the watches sees a new value (pending forever when there
/// are none, so the caller's deadline ends the wait).
async fn any_changed(watches: &mut [tokio::sync::watch::Receiver<i64>]) {
    let mut changes: Vec<_> = watches.iter_mut().map(|w| Box::pin(w.changed())).collect();
    std::future::poll_fn(|cx| {
        for c in &mut changes {
            if c.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
