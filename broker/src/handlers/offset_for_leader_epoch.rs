//! OffsetForLeaderEpoch: where a leader epoch ends in this partition's log, so a
//! client (KIP-320) or a replica can detect and cut a diverged suffix.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::error_code;

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
                    let Some(part) = b.partition(&name, p.partition) else {
                        return r
                            .with_error_code(b.not_hosted(&name, p.partition))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    if let Err(e) = b.check_leader(&part, p.current_leader_epoch) {
                        return r
                            .with_error_code(error_code::leader(&e))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let (epoch, end) = part.end_offset_for_epoch(p.leader_epoch);
                    r.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
