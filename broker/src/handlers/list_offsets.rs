//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first
//! offset whose record timestamp is at or after a time.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error_code::{self, code};

/// Looks up each requested partition.
pub fn handle(b: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let epoch = if version >= 4 { 0 } else { -1 };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_leader_epoch(epoch);
                    let Some(part) = b.partition(&name, p.partition_index) else {
                        return r
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    let log = &part.log;
                    match p.timestamp {
                        -2 => r.with_offset(log.log_start_offset()).with_timestamp(-1),
                        -1 => r.with_offset(log.high_watermark()).with_timestamp(-1),
                        -3 => {
                            let last = log.high_watermark() - 1;
                            if last < log.log_start_offset() {
                                r.with_offset(-1).with_timestamp(-1)
                            } else {
                                r.with_offset(last).with_timestamp(-1)
                            }
                        }
                        ts => match log.offset_for_timestamp(ts) {
                            Ok(Some(found)) => {
                                r.with_offset(found.offset).with_timestamp(found.timestamp)
                            }
                            Ok(None) => r.with_offset(-1).with_timestamp(-1),
                            Err(e) => r
                                .with_error_code(error_code::storage(&e))
                                .with_offset(-1)
                                .with_timestamp(-1),
                        },
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
