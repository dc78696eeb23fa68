//! DeleteRecords: raises a partition's log start offset (-1 means the high watermark).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::error_code;

/// Advances the log start of each partition.
pub fn handle(b: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
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
                    let Some(part) = b.partition(&name, p.partition_index) else {
                        return r
                            .with_error_code(b.not_hosted(&name, p.partition_index))
                            .with_low_watermark(-1);
                    };
                    match part.delete_records(p.offset) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r
                            .with_error_code(error_code::delete_records(&e))
                            .with_low_watermark(-1),
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
