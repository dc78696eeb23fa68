//! InitProducerId: hands out idempotent producer ids (transactions are not supported yet).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::{Broker, TopicChangeError};
use crate::controller::ControllerError;
use crate::error_code::code;

/// Where producer ids come from.
trait ProducerIds {
    /// Whether some node may have handed `id` out.
    fn allocated(&self, id: i64) -> bool;
    /// A fresh id, or the error code.
    fn next(&self) -> Result<i64, i16>;
}

impl ProducerIds for Broker {
    fn allocated(&self, id: i64) -> bool {
        self.meta.producer_id_allocated(id)
    }
    fn next(&self) -> Result<i64, i16> {
        self.next_producer_id().map_err(|e| match e {
            // No block of ids yet: retriable for every client, as Kafka's
            // brokers answer while their producer id block is on its way
            // (the Java producer treats NOT_CONTROLLER here as fatal).
            TopicChangeError::Controller(
                ControllerError::NoLeader(_) | ControllerError::NotApplied(_),
            ) => code::COORDINATOR_LOAD_IN_PROGRESS,
            e => e.code(),
        })
    }
}

/// Allocates a producer id, or bumps the epoch of a known one (KIP-360).
/// Blocking (a new block of ids goes through the controller).
pub fn handle(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    respond(b, &req)
}

fn respond(meta: &impl ProducerIds, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return error(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let (id, epoch) = (req.producer_id.0, req.producer_epoch);
    match (id, epoch) {
        (-1, -1) => {}
        // As Kafka's KafkaApis: an id without an epoch, or the reverse.
        (-1, _) | (_, -1) => return error(code::INVALID_REQUEST),
        // KIP-360 epoch bump, only for an id some node handed out (in this run
        // or an earlier one: below the cluster's reserved mark) and a real epoch. Any other id gets a fresh one, as
        // Kafka answers every InitProducerId without a transactional id: bumping
        // an id the node never allocated would let a client claim an id later
        // handed to another producer (two producers sharing idempotence state),
        // or a negative id no batch may carry; refusing would strand a client
        // whose broker lost its data directory.
        _ if !meta.allocated(id) || epoch < 0 => {}
        // Exhausted epochs (Kafka's isEpochExhausted) fall through to a new id.
        _ if epoch < i16::MAX - 1 => {
            return InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(epoch + 1);
        }
        _ => {}
    }
    match meta.next() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(code) => error(code),
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

    /// Ids handed out in order from 0; the reserved mark is the end of the
    /// current block of 1000, as a node's blocks are.
    struct Counter(std::cell::Cell<i64>);

    impl ProducerIds for Counter {
        fn allocated(&self, id: i64) -> bool {
            let reserved = (self.0.get() / 1000 + 1) * 1000;
            (0..reserved).contains(&id)
        }
        fn next(&self) -> Result<i64, i16> {
            let id = self.0.get();
            self.0.set(id + 1);
            Ok(id)
        }
    }

    fn answer(meta: &Counter, id: i64, epoch: i16) -> (i16, i64, i16) {
        let r = respond(meta, &req(id, epoch));
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// An epoch bump (KIP-360) is granted only for ids some node may have
    /// handed out (below the reserved mark); for others (above it, and
    /// negative ids other than -1) a fresh id is handed out instead, as
    /// Kafka does for every non-transactional producer; a half-given
    /// id/epoch pair is INVALID_REQUEST, as in Kafka.
    #[test]
    fn epoch_bump_only_for_ids_that_may_have_been_handed_out() {
        let meta = Counter(std::cell::Cell::new(0));
        assert_eq!(answer(&meta, -1, -1), (0, 0, 0));
        assert_eq!(answer(&meta, 0, 0), (0, 0, 1), "bump of an allocated id");
        assert_eq!(answer(&meta, 999, 3), (0, 999, 4), "in a reserved block");
        assert_eq!(
            answer(&meta, 1_000_000, 0),
            (0, 1, 0),
            "above the reserved mark"
        );
        assert_eq!(answer(&meta, i64::MAX, 0), (0, 2, 0));
        assert_eq!(answer(&meta, -2, 0), (0, 3, 0), "negative id");
        assert_eq!(answer(&meta, i64::MIN, 5), (0, 4, 0), "negative id");
        assert_eq!(answer(&meta, -1, 0).0, code::INVALID_REQUEST);
        assert_eq!(answer(&meta, 0, -1).0, code::INVALID_REQUEST);
        // An exhausted epoch gets a new id, as in Kafka.
        assert_eq!(answer(&meta, 0, i16::MAX - 1), (0, 5, 0));
        assert_eq!(answer(&meta, 1, -5), (0, 6, 0), "negative epoch");
    }
}
