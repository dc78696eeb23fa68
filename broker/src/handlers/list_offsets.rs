//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local
//! (-4, the log start), latest tiered (-5, none), or the first
//! offset whose record timestamp is at or after a time.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error_code;

/// Looks up each requested partition.
pub fn handle(b: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
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
                        .with_leader_epoch(-1);
                    let Some(part) = b.partition(&name, p.partition_index) else {
                        return r
                            .with_error_code(b.not_hosted(&name, p.partition_index))
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    // KIP-320: a client naming an epoch is checked against ours.
                    let epoch = match b.check_leader(&part, p.current_leader_epoch) {
                        Ok(epoch) => epoch,
                        Err(e) => {
                            return r
                                .with_error_code(error_code::leader(&e))
                                .with_offset(-1)
                                .with_timestamp(-1)
                        }
                    };
                    // The epoch of the record found (Kafka: the cache's epoch
                    // for the offset), so a consumer can later detect that the
                    // log was truncated below its position.
                    let epoch_of = |offset: i64| {
                        if version >= 4 {
                            part.epoch_at(offset)
                        } else {
                            -1
                        }
                    };
                    let o = part.offsets();
                    // LATEST and MAX_TIMESTAMP from a leader just elected,
                    // before its high watermark caught up: retriable.
                    if matches!(p.timestamp, -1 | -3) && part.latest_offset().is_none() {
                        return r
                            .with_error_code(error_code::code::OFFSET_NOT_AVAILABLE)
                            .with_offset(-1)
                            .with_timestamp(-1);
                    }
                    match p.timestamp {
                        // -4 (v8+, KIP-405): the earliest offset held
                        // locally, which without tiered storage is the log
                        // start.
                        -2 | -4 => r
                            .with_offset(o.log_start)
                            .with_timestamp(-1)
                            .with_leader_epoch(epoch_of(o.log_start)),
                        -1 => r
                            .with_offset(o.high_watermark)
                            .with_timestamp(-1)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        // -5 (v9+, KIP-1005): the last offset in tiered
                        // storage, which Weir does not have: none, as Kafka
                        // answers for a topic without remote storage.
                        -5 => r.with_offset(-1).with_timestamp(-1),
                        // The first record with the largest timestamp, and
                        // that timestamp (found from outside: the last
                        // offset with timestamp -1 was answered).
                        -3 => match part.max_timestamp_offset() {
                            Ok(Some(found)) => r
                                .with_offset(found.offset)
                                .with_timestamp(found.timestamp)
                                .with_leader_epoch(epoch_of(found.offset)),
                            // The largest timestamp is in records not yet
                            // committed, or none has one: the last
                            // committed record.
                            Ok(None) => {
                                let last = o.high_watermark - 1;
                                if last < o.log_start {
                                    r.with_offset(-1).with_timestamp(-1)
                                } else {
                                    r.with_offset(last)
                                        .with_timestamp(-1)
                                        .with_leader_epoch(epoch_of(last))
                                }
                            }
                            Err(e) => r
                                .with_error_code(error_code::storage(&e))
                                .with_offset(-1)
                                .with_timestamp(-1),
                        },
                        ts => match part.offset_for_timestamp(ts) {
                            Ok(Some(found)) => r
                                .with_offset(found.offset)
                                .with_timestamp(found.timestamp)
                                .with_leader_epoch(epoch_of(found.offset)),
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
