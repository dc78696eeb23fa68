//! Produce: appends happen when the request is dispatched (so a connection's
//! produces reach each log in order); acks=all then waits for durability.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::broker::Broker;
use crate::error_code::{self, code};
use crate::partition::{Appended, Partition, PendingAppend};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use weir_storage::Origin;

/// One partition's result: `T` is the accepted append, pending its acks wait
/// ([`PendingAppend`]) and then done ([`Appended`]).
struct Outcome<T> {
    index: i32,
    result: Result<(T, Arc<Partition>), Refusal>,
}

/// Why a partition's records were not appended, as the response reports it.
struct Refusal {
    code: i16,
    /// Produce v8+ `error_message`.
    message: Option<String>,
    /// Produce v8+ `record_errors`: the records the batch was refused for.
    records: Vec<(i32, String)>,
}

impl From<i16> for Refusal {
    fn from(code: i16) -> Self {
        Self {
            code,
            message: None,
            records: Vec::new(),
        }
    }
}

/// Appends `records` to `part` (led here, or refused as not led), counting
/// the bytes taken.
fn append(
    broker: &Broker,
    name: &str,
    index: i32,
    part: Arc<Partition>,
    records: &bytes::Bytes,
    origin: Origin,
) -> Result<(PendingAppend, Arc<Partition>), Refusal> {
    match part.append_from(records, origin) {
        Ok(a) => {
            broker
                .metrics
                .produce_bytes
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            Ok((a, part))
        }
        Err(e) => {
            tracing::debug!(topic = %name, partition = index, error = %e, "produce refused");
            Err(Refusal {
                code: error_code::append(&e),
                message: Some(e.to_string()),
                records: error_code::record_errors(&e),
            })
        }
    }
}

/// Appends every partition's batches now; the returned future resolves to the
/// response (or `None` for acks=0) once the acks level is met.
pub fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    _version: i16,
    writer: crate::reserved::Writer,
    origin: Origin,
) -> impl Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = req.acks;
    // An acks=all wait ends at the request's timeout_ms with
    // REQUEST_TIMED_OUT, as Kafka's delayed produce does (a partition that
    // lost its quorum); acks=1 answers at the leader's append, as in Kafka.
    let timeout = std::time::Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    let deadline = (acks == -1).then(|| tokio::time::Instant::now() + timeout);
    let b = Arc::clone(broker);
    let mut topics = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let mut outcomes: Vec<Outcome<PendingAppend>> = Vec::new();
        for p in t.partition_data {
            let result = if !matches!(acks, -1..=1) {
                Err(code::INVALID_REQUIRED_ACKS.into())
            } else if req.transactional_id.is_some() {
                Err(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.into())
            } else if let Some(why) = crate::reserved::refusal(&name, writer) {
                // Found from outside: produced records forged other groups'
                // committed offsets, and a job's checkpoints and routed rows.
                Err(Refusal {
                    code: code::INVALID_TOPIC,
                    message: Some(why),
                    records: Vec::new(),
                })
            } else {
                match (broker.partition(&name, p.index), p.records) {
                    (None, _) => Err(broker.not_hosted(&name, p.index).into()),
                    (Some(_), None) => Err(code::CORRUPT_MESSAGE.into()),
                    // A leader cut off from a quorum of the replicas would
                    // commit nothing while the others elect another:
                    // NOT_LEADER_OR_FOLLOWER (nothing appended) sends the
                    // client to Metadata, which names it a replica that can
                    // tell it who leads now.
                    (Some(part), Some(_))
                        if part.is_replicated()
                            && part.leads()
                            && !broker.partition_reaches_quorum(&name, p.index) =>
                    {
                        Err(Refusal {
                            code: code::NOT_LEADER_OR_FOLLOWER,
                            message: Some(format!(
                                "{name}-{}: this node cannot reach a quorum of the partition's replicas; ask another node who leads",
                                p.index
                            )),
                            records: Vec::new(),
                        })
                    }
                    (Some(part), Some(records)) => {
                        // Only a leader's ISR counts (a follower refuses below).
                        let short = (acks == -1 && part.leads())
                            .then(|| broker.too_few_in_sync(&name, p.index))
                            .flatten();
                        match short {
                            Some((isr, min)) => Err(Refusal {
                                code: code::NOT_ENOUGH_REPLICAS,
                                message: Some(format!(
                                    "{name}-{}: the in-sync replicas {isr:?} are fewer than min.insync.replicas={min}",
                                    p.index
                                )),
                                records: Vec::new(),
                            }),
                            None => append(broker, &name, p.index, part, &records, origin),
                        }
                    }
                }
            };
            outcomes.push(Outcome {
                index: p.index,
                result,
            });
        }
        topics.push((t.name, outcomes));
    }
    async move {
        // acks=1 waits for the leader's own append, acks=all for the commit
        // (durable under the fsync policy on a quorum); so does acks=1 on a log
        // that fsyncs every append (`--fsync always`, a topic's
        // `flush.messages=1`), whose promise is that nothing acknowledged lives
        // only in memory.
        if acks == 0 {
            return None;
        }
        let mut done: Vec<(_, Vec<Outcome<Appended>>)> = Vec::with_capacity(topics.len());
        for (name, outcomes) in topics {
            let mut waited = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                let result = match o.result {
                    Ok((pending, part)) => {
                        let wait = pending.wait(acks, part.fsyncs_every_append());
                        let waited = match deadline {
                            // A leader cut off from a quorum commits nothing
                            // until it is reached again: the client learns it
                            // now, not at its timeout, and asks other nodes
                            // who leads. NOT_LEADER_OR_FOLLOWER, as Kafka's
                            // delayed produce answers when leadership moves
                            // while it waits: REQUEST_TIMED_OUT made
                            // librdkafka retry on this node without asking
                            // who leads, for the whole cut. The outcome is
                            // unknown (the batch may still commit, if the
                            // cut heals first or a new leader has it): an
                            // idempotent retry is recognised, as after any
                            // retriable error.
                            Some(d) if part.is_replicated() => tokio::select! {
                                w = tokio::time::timeout_at(d, wait) => w.map_err(|_| false),
                                () = b.loses_quorum(&part.tp.topic, part.tp.partition) => Err(true),
                            },
                            Some(d) => tokio::time::timeout_at(d, wait).await.map_err(|_| false),
                            None => Ok(wait.await),
                        };
                        match waited {
                            Err(cut_off) => {
                                tracing::debug!(partition = %part.tp, ?timeout, cut_off, "produce timed out waiting for acks");
                                let why = if cut_off {
                                    "not acknowledged: this node cannot reach a quorum of the partition's replicas".to_string()
                                } else {
                                    format!("not acknowledged within the request's timeout of {timeout:?}")
                                };
                                Err(Refusal {
                                    code: if cut_off {
                                        code::NOT_LEADER_OR_FOLLOWER
                                    } else {
                                        code::REQUEST_TIMED_OUT
                                    },
                                    message: Some(why),
                                    records: Vec::new(),
                                })
                            }
                            Ok(Ok(a)) => Ok((a, part)),
                            Ok(Err(e)) => {
                                tracing::debug!(partition = %part.tp, error = %e, "produce not acknowledged");
                                Err(Refusal {
                                    code: error_code::append(&e),
                                    message: Some(e.to_string()),
                                    records: Vec::new(),
                                })
                            }
                        }
                    }
                    Err(refusal) => Err(refusal),
                };
                waited.push(Outcome {
                    index: o.index,
                    result,
                });
            }
            done.push((name, waited));
        }
        let responses = done
            .into_iter()
            .map(|(name, outcomes)| {
                let parts = outcomes
                    .into_iter()
                    .map(|o| {
                        let r = PartitionProduceResponse::default().with_index(o.index);
                        match o.result {
                            Ok((a, part)) => r
                                .with_base_offset(a.base_offset)
                                .with_log_append_time_ms(a.log_append_time)
                                .with_log_start_offset(part.log_start_offset()),
                            Err(refusal) => {
                                let message = refusal.message.map(StrBytes::from_string);
                                let record_errors = refusal
                                    .records
                                    .into_iter()
                                    .map(|(i, why)| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(i)
                                            .with_batch_index_error_message(Some(
                                                StrBytes::from_string(why),
                                            ))
                                    })
                                    .collect();
                                r.with_log_append_time_ms(-1)
                                    .with_error_code(refusal.code)
                                    .with_error_message(message)
                                    .with_record_errors(record_errors)
                                    .with_base_offset(-1)
                                    .with_log_start_offset(-1)
                            }
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(parts)
            })
            .collect();
        Some(ProduceResponse::default().with_responses(responses))
    }
}
