//! InitProducerId: hands out idempotent producer ids (transactions are not supported yet).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::error_code::code;
use crate::metadata::MetadataStore;

/// Allocates a producer id, or bumps the epoch of a known one (KIP-360).
pub fn handle(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    respond(&b.meta, &req)
}

fn respond(meta: &MetadataStore, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return error(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let (id, epoch) = (req.producer_id.0, req.producer_epoch);
    match (id, epoch) {
        (-1, -1) => {}
        // As Kafka's KafkaApis: an id without an epoch, or the reverse.
        (-1, _) | (_, -1) => return error(code::INVALID_REQUEST),
        // KIP-360 epoch bump, only for an id this node handed out (in this run or
        // an earlier one) and a real epoch. Any other id gets a fresh one, as
        // Kafka answers every InitProducerId without a transactional id: bumping
        // an id the node never allocated would let a client claim an id later
        // handed to another producer (two producers sharing idempotence state),
        // or a negative id no batch may carry; refusing would strand a client
        // whose broker lost its data directory.
        _ if !meta.producer_id_allocated(id) || epoch < 0 => {}
        // Exhausted epochs (Kafka's isEpochExhausted) fall through to a new id.
        _ if epoch < i16::MAX - 1 => {
            return InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(epoch + 1);
        }
        _ => {}
    }
    match meta.next_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => error(e.code()),
    }
}

fn error(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: i64, epoch: i16) -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }

    fn answer(meta: &MetadataStore, id: i64, epoch: i16) -> (i16, i64, i16) {
        let r = respond(meta, &req(id, epoch));
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// An epoch bump (KIP-360) is granted only for ids this node handed out, in
    /// this run or an earlier one; for ids it never allocated (including ones in
    /// its reserved but unissued block, and negative ids other than -1) it hands
    /// out a fresh id instead, as Kafka does for every non-transactional
    /// producer; a half-given id/epoch pair is INVALID_REQUEST, as in Kafka.
    #[test]
    fn epoch_bump_only_for_ids_this_node_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(answer(&meta, -1, -1), (0, 0, 0));
        assert_eq!(answer(&meta, 0, 0), (0, 0, 1), "bump of an allocated id");
        // Never handed out: a fresh id (the next one), epoch 0.
        assert_eq!(
            answer(&meta, 1, 0),
            (0, 1, 0),
            "next id, not handed out yet"
        );
        assert_eq!(answer(&meta, 999, 3), (0, 2, 0), "reserved, not handed out");
        assert_eq!(
            answer(&meta, 1_000_000, 0),
            (0, 3, 0),
            "above the reserved mark"
        );
        assert_eq!(answer(&meta, i64::MAX, 0), (0, 4, 0));
        assert_eq!(answer(&meta, -2, 0), (0, 5, 0), "negative id");
        assert_eq!(answer(&meta, i64::MIN, 5), (0, 6, 0), "negative id");
        assert_eq!(answer(&meta, -1, 0).0, code::INVALID_REQUEST);
        assert_eq!(answer(&meta, 0, -1).0, code::INVALID_REQUEST);
        // An exhausted epoch gets a new id, as in Kafka.
        assert_eq!(answer(&meta, 0, i16::MAX - 1), (0, 7, 0));
        drop(meta);
        // After a restart, ids of the earlier run can still be bumped: any id
        // below the persisted mark may have been handed out, none above it.
        let meta = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(answer(&meta, 1, 4), (0, 1, 5));
        assert_eq!(answer(&meta, 999, 0), (0, 999, 1));
        assert_eq!(answer(&meta, 0, -5), (0, 1000, 0), "negative epoch");
        assert_eq!(answer(&meta, 1001, 0), (0, 1001, 0), "not handed out yet");
        assert_eq!(answer(&meta, 1000, 0), (0, 1000, 1));
    }
}
