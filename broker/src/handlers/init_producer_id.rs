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
        // KIP-360 epoch bump. Only for an id this node handed out (in this run or
        // an earlier one): bumping an id it never allocated would let a client
        // claim an id later handed to another producer (two producers sharing
        // idempotence state), or a negative id no batch may carry.
        //
        // Kafka itself, without a transactional id, ignores the given id and
        // always allocates a new one; with one, a mismatching id is
        // PRODUCER_FENCED, sent as INVALID_PRODUCER_EPOCH before v4. We refuse
        // with INVALID_PRODUCER_EPOCH at every version: clients treat it as
        // "this id/epoch is no longer usable" (the Java client as fenced), while
        // UNKNOWN_PRODUCER_ID is a Produce error no client expects here.
        _ if !meta.producer_id_allocated(id) => return error(code::INVALID_PRODUCER_EPOCH),
        // A negative epoch other than -1 is no epoch a producer was given.
        _ if epoch < 0 => return error(code::INVALID_PRODUCER_EPOCH),
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
    /// this run or an earlier one; ids it never allocated (including ones in its
    /// reserved but unissued block, and negative ids other than -1) are refused
    /// with INVALID_PRODUCER_EPOCH, and a half-given id/epoch pair is
    /// INVALID_REQUEST, as in Kafka.
    #[test]
    fn epoch_bump_only_for_ids_this_node_allocated() {
        const INVALID_PRODUCER_EPOCH: i16 = 47;
        let dir = tempfile::tempdir().unwrap();
        let meta = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(answer(&meta, -1, -1), (0, 0, 0));
        assert_eq!(answer(&meta, 0, 0), (0, 0, 1), "bump of an allocated id");
        let refused = (INVALID_PRODUCER_EPOCH, -1, -1);
        assert_eq!(answer(&meta, 1, 0), refused, "next id, not handed out yet");
        assert_eq!(answer(&meta, 999, 3), refused, "reserved, not handed out");
        assert_eq!(
            answer(&meta, 1_000_000, 0),
            refused,
            "above the reserved mark"
        );
        assert_eq!(answer(&meta, i64::MAX, 0), refused);
        assert_eq!(answer(&meta, -2, 0), refused, "negative id");
        assert_eq!(answer(&meta, i64::MIN, 5), refused, "negative id");
        assert_eq!(answer(&meta, -1, 0).0, code::INVALID_REQUEST);
        assert_eq!(answer(&meta, 0, -1).0, code::INVALID_REQUEST);
        // An exhausted epoch gets a new id, as in Kafka; not for unknown ids.
        assert_eq!(answer(&meta, 0, i16::MAX - 1), (0, 1, 0));
        assert_eq!(answer(&meta, 7, i16::MAX - 1), refused);
        drop(meta);
        // After a restart, ids of the earlier run can still be bumped: any id
        // below the persisted mark may have been handed out, none above it.
        let meta = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(answer(&meta, 1, 4), (0, 1, 5));
        assert_eq!(answer(&meta, 999, 0), (0, 999, 1));
        assert_eq!(answer(&meta, 0, -5), refused, "negative epoch");
        assert_eq!(answer(&meta, 1000, 0), refused);
        assert_eq!(answer(&meta, -1, -1), (0, 1000, 0));
        assert_eq!(answer(&meta, 1000, 0), (0, 1000, 1));
    }
}
