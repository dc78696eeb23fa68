//! DeleteRecords: raises a partition's log start offset (-1 means the high watermark).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::error_code;

/// Advances the log start of each partition; `writer` says whether the
/// request may touch Weir's own topics (see [`crate::reserved`]).
pub fn handle(
    b: &Broker,
    req: DeleteRecordsRequest,
    writer: crate::reserved::Writer,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    let kept = crate::broker::KEPT_TOPICS.contains(&name.as_str());
                    if kept || crate::reserved::refusal(&name, writer).is_some() {
                        // Kafka refuses it on internal topics too (found from
                        // outside: a DeleteRecords to the end of
                        // `__consumer_offsets` wiped every group's committed
                        // offsets at the next load; one on a job's
                        // repartition topic dropped rows not yet read).
                        return r
                            .with_error_code(error_code::code::INVALID_TOPIC)
                            .with_low_watermark(-1);
                    }
                    let Some(part) = b.partition(&name, p.partition_index) else {
                        return r
                            .with_error_code(b.not_hosted(&name, p.partition_index))
                            .with_low_watermark(-1);
                    };
                    match delete(b, &part, &name, p.partition_index, p.offset) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(code) => r.with_error_code(code).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Deletes the records of one partition before `offset`; the new log start,
/// or the error code. On a replicated partition the leader decides and the
/// controller records it, so every replica applies it, also one that is down
/// now.
fn delete(
    b: &Broker,
    part: &crate::partition::Partition,
    name: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, i16> {
    if part.is_replicated() {
        b.check_leader(part, -1)
            .map_err(|e| error_code::leader(&e))?;
    }
    let target = part
        .delete_target(offset)
        .map_err(|e| error_code::delete_records(&e))?;
    if part.is_replicated() {
        b.record_log_start(name, partition, target)
            .map_err(|e| e.code())?;
    }
    part.delete_records(target)
        .map_err(|e| error_code::delete_records(&e))
}
