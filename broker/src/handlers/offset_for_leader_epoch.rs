//! OffsetForLeaderEpoch: one node has had one leader epoch (0), ending at the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::error_code::code;

/// Answers the end offset of each requested epoch.
pub fn handle(b: &Broker, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    match b.partition(&name, p.partition) {
                        None => r
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Some(_) if p.leader_epoch < 0 => {
                            r.with_leader_epoch(-1).with_end_offset(-1)
                        }
                        Some(part) => r
                            .with_leader_epoch(part.leader_epoch)
                            .with_end_offset(part.log.log_end_offset()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
