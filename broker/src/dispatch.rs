//! Request dispatch: frame → (API key, version) → decoded request → handler →
//! encoded response frame. The only place that knows every API.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Decodable, Encodable, HeaderVersion, Message, Request,
    VersionRange,
};

use crate::blocking;
use crate::broker::Broker;
use crate::group::{self, ClientInfo};
use crate::handlers;

/// A response still being computed; `None` means no response (acks=0).
pub type Pending = Pin<Box<dyn Future<Output = Option<BytesMut>> + Send>>;

/// Why a frame could not be handled; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// An API key Weir does not serve.
    #[error("unsupported API key {0}")]
    UnknownApi(i16),
    /// A version outside the advertised range.
    #[error("unsupported version {version} of API {api_key} (supported {min}..={max})")]
    UnsupportedVersion {
        /// API key.
        api_key: i16,
        /// Version asked.
        version: i16,
        /// Lowest supported.
        min: i16,
        /// Highest supported.
        max: i16,
    },
    /// The header or body did not decode.
    #[error("malformed request (API {api_key} v{version}): {reason}")]
    Malformed {
        /// API key.
        api_key: i16,
        /// Version.
        version: i16,
        /// Decoder message.
        reason: String,
    },
}

/// Every API Weir serves with its advertised version range, clamped to what the
/// protocol crate can decode.
pub fn supported() -> Vec<(i16, i16, i16)> {
    fn r<R: Message + Request>(min: i16, max: i16) -> (i16, i16, i16) {
        let crate_range: VersionRange = R::VERSIONS;
        (R::KEY, min.max(crate_range.min), max.min(crate_range.max))
    }
    vec![
        r::<ProduceRequest>(3, 10),
        r::<FetchRequest>(4, 12),
        r::<ListOffsetsRequest>(1, 10),
        r::<MetadataRequest>(0, 12),
        r::<OffsetCommitRequest>(
            group::OFFSET_COMMIT_VERSIONS.0,
            group::OFFSET_COMMIT_VERSIONS.1,
        ),
        r::<OffsetFetchRequest>(
            group::OFFSET_FETCH_VERSIONS.0,
            group::OFFSET_FETCH_VERSIONS.1,
        ),
        r::<FindCoordinatorRequest>(0, 4),
        r::<JoinGroupRequest>(group::JOIN_GROUP_VERSIONS.0, group::JOIN_GROUP_VERSIONS.1),
        r::<HeartbeatRequest>(group::HEARTBEAT_VERSIONS.0, group::HEARTBEAT_VERSIONS.1),
        r::<LeaveGroupRequest>(group::LEAVE_GROUP_VERSIONS.0, group::LEAVE_GROUP_VERSIONS.1),
        r::<SyncGroupRequest>(group::SYNC_GROUP_VERSIONS.0, group::SYNC_GROUP_VERSIONS.1),
        r::<DescribeGroupsRequest>(
            group::DESCRIBE_GROUPS_VERSIONS.0,
            group::DESCRIBE_GROUPS_VERSIONS.1,
        ),
        r::<ListGroupsRequest>(group::LIST_GROUPS_VERSIONS.0, group::LIST_GROUPS_VERSIONS.1),
        r::<ApiVersionsRequest>(0, 3),
        r::<CreateTopicsRequest>(2, 7),
        r::<DeleteTopicsRequest>(1, 6),
        r::<DeleteRecordsRequest>(0, 2),
        r::<InitProducerIdRequest>(0, 4),
        r::<OffsetForLeaderEpochRequest>(2, 4),
        r::<DescribeConfigsRequest>(1, 4),
        r::<DescribeClusterRequest>(0, 1),
        r::<AlterConfigsRequest>(0, 2),
        r::<CreatePartitionsRequest>(0, 3),
        r::<DeleteGroupsRequest>(
            group::DELETE_GROUPS_VERSIONS.0,
            group::DELETE_GROUPS_VERSIONS.1,
        ),
        r::<IncrementalAlterConfigsRequest>(0, 1),
        r::<OffsetDeleteRequest>(
            group::OFFSET_DELETE_VERSIONS.0,
            group::OFFSET_DELETE_VERSIONS.1,
        ),
    ]
}

/// Encodes a response frame: length, header, body.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &R,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(&mut out, R::header_version(version))
        .and_then(|()| body.encode(&mut out, version));
    if let Err(e) = result {
        // Our own response failed to encode for this version: a bug, not input.
        tracing::error!(error = %e, version, response = std::any::type_name::<R>(), "response encoding failed");
    }
    let len = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// The ApiVersions answer for a version Weir does not know: v0 body, error 35,
/// so the client retries with a version both sides support (as Kafka does).
fn unsupported_api_versions(correlation_id: i32) -> BytesMut {
    let body = handlers::api_versions::response(crate::error_code::code::UNSUPPORTED_VERSION);
    encode_response(correlation_id, 0, &body)
}

macro_rules! route {
    ($broker:expr, $buf:expr, $key:expr, $version:expr, $corr:expr, $ty:ty, |$b:ident, $req:ident| $call:expr) => {{
        let $req = <$ty as Decodable>::decode(&mut $buf, $version).map_err(|e| {
            RequestError::Malformed {
                api_key: $key,
                version: $version,
                reason: e.to_string(),
            }
        })?;
        let $b = $broker.clone();
        let version = $version;
        let corr = $corr;
        let fut = async move { $call };
        Box::pin(async move {
            let resp: Option<<$ty as Request>::Response> = fut.await;
            resp.map(|r| encode_response(corr, version, &r))
        }) as Pending
    }};
}

/// Decodes a request frame and starts its handler. Work that must happen in
/// request order (produce appends) is done before this returns; the rest runs in
/// the returned future.
pub fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    client_host: &str,
) -> Result<Pending, RequestError> {
    let mut peek = frame.clone();
    let (Ok(api_key), Ok(version), Ok(correlation_id)) =
        (peek.try_get_i16(), peek.try_get_i16(), peek.try_get_i32())
    else {
        return Err(RequestError::Malformed {
            api_key: -1,
            version: -1,
            reason: format!("a request frame of {} bytes has no header", frame.len()),
        });
    };
    broker.metrics.request(api_key);
    let Some(&(_, min, max)) = supported().iter().find(|(k, _, _)| *k == api_key) else {
        return Err(RequestError::UnknownApi(api_key));
    };
    if api_key == ApiVersionsRequest::KEY && version > max {
        return Ok(Box::pin(async move {
            Some(unsupported_api_versions(correlation_id))
        }));
    }
    if !(min..=max).contains(&version) {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            min,
            max,
        });
    }
    let mut buf = frame;
    let header =
        decode_request_header_from_buffer(&mut buf).map_err(|e| RequestError::Malformed {
            api_key,
            version,
            reason: e.to_string(),
        })?;
    let client = ClientInfo {
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: format!("/{client_host}"),
    };
    // Whether it may write Weir's own topics.
    let writer = crate::reserved::Writer::of_client_id(&client.client_id);
    let (k, v, c) = (api_key, version, correlation_id);
    let fut = match api_key {
        ProduceRequest::KEY => {
            let req = <ProduceRequest as Decodable>::decode(&mut buf, v).map_err(|e| {
                RequestError::Malformed {
                    api_key,
                    version,
                    reason: e.to_string(),
                }
            })?;
            // Appends happen now, in request order; only the durability wait is deferred.
            let pending =
                handlers::produce::handle(broker, req, v, writer, weir_storage::Origin::Wire);
            Box::pin(async move { pending.await.map(|r| encode_response(c, v, &r)) }) as Pending
        }
        FetchRequest::KEY => route!(broker, buf, k, v, c, FetchRequest, |b, r| Some(
            handlers::fetch::handle(&b, r, version).await
        )),
        ListOffsetsRequest::KEY => route!(broker, buf, k, v, c, ListOffsetsRequest, |b, r| Some(
            blocking::run(move || handlers::list_offsets::handle(&b, r, version)).await
        )),
        MetadataRequest::KEY => route!(broker, buf, k, v, c, MetadataRequest, |b, r| Some(
            blocking::run(move || handlers::metadata::handle(&b, r, version)).await
        )),
        ApiVersionsRequest::KEY => route!(broker, buf, k, v, c, ApiVersionsRequest, |b, r| {
            let _ = (&b, r);
            Some(handlers::api_versions::response(0))
        }),
        FindCoordinatorRequest::KEY => {
            route!(broker, buf, k, v, c, FindCoordinatorRequest, |b, r| Some(
                handlers::find_coordinator::handle(&b, r, version)
            ))
        }
        CreateTopicsRequest::KEY => route!(broker, buf, k, v, c, CreateTopicsRequest, |b, r| Some(
            blocking::run(move || handlers::topics::create(&b, r, version, writer)).await
        )),
        DeleteTopicsRequest::KEY => route!(broker, buf, k, v, c, DeleteTopicsRequest, |b, r| Some(
            blocking::run(move || handlers::topics::delete(&b, r, version)).await
        )),
        CreatePartitionsRequest::KEY => {
            route!(broker, buf, k, v, c, CreatePartitionsRequest, |b, r| Some(
                blocking::run(move || handlers::topics::create_partitions(&b, r)).await
            ))
        }
        DeleteRecordsRequest::KEY => {
            route!(broker, buf, k, v, c, DeleteRecordsRequest, |b, r| Some(
                blocking::run(move || handlers::delete_records::handle(&b, r, writer)).await
            ))
        }
        InitProducerIdRequest::KEY => {
            route!(broker, buf, k, v, c, InitProducerIdRequest, |b, r| Some(
                blocking::run(move || handlers::init_producer_id::handle(&b, r)).await
            ))
        }
        OffsetForLeaderEpochRequest::KEY => {
            route!(broker, buf, k, v, c, OffsetForLeaderEpochRequest, |b, r| {
                Some(handlers::offset_for_leader_epoch::handle(&b, r))
            })
        }
        DescribeClusterRequest::KEY => {
            route!(broker, buf, k, v, c, DescribeClusterRequest, |b, r| Some(
                handlers::describe_cluster::handle(&b, r)
            ))
        }
        DescribeConfigsRequest::KEY => {
            route!(broker, buf, k, v, c, DescribeConfigsRequest, |b, r| Some(
                handlers::configs::describe(&b, r, version)
            ))
        }
        AlterConfigsRequest::KEY => route!(broker, buf, k, v, c, AlterConfigsRequest, |b, r| Some(
            blocking::run(move || handlers::configs::alter(&b, r)).await
        )),
        IncrementalAlterConfigsRequest::KEY => route!(
            broker,
            buf,
            k,
            v,
            c,
            IncrementalAlterConfigsRequest,
            |b, r| Some(blocking::run(move || handlers::configs::incremental_alter(&b, r)).await)
        ),
        JoinGroupRequest::KEY => {
            route!(broker, buf, k, v, c, JoinGroupRequest, |b, r| Some(match b
                .coordinator(&r.group_id.0)
            {
                Some(g) => g.join_group(r, version, &client).await,
                None => handlers::not_coordinator::join(version),
            }))
        }
        SyncGroupRequest::KEY => {
            route!(broker, buf, k, v, c, SyncGroupRequest, |b, r| Some(match b
                .coordinator(&r.group_id.0)
            {
                Some(g) => g.sync_group(r, version).await,
                None => handlers::not_coordinator::sync(),
            }))
        }
        HeartbeatRequest::KEY => {
            route!(broker, buf, k, v, c, HeartbeatRequest, |b, r| Some(match b
                .coordinator(&r.group_id.0)
            {
                Some(g) => g.heartbeat(r, version).await,
                None => handlers::not_coordinator::heartbeat(),
            }))
        }
        LeaveGroupRequest::KEY => route!(broker, buf, k, v, c, LeaveGroupRequest, |b, r| Some(
            match b.coordinator(&r.group_id.0) {
                Some(g) => g.leave_group(r, version).await,
                None => handlers::not_coordinator::leave(),
            }
        )),
        OffsetCommitRequest::KEY => route!(broker, buf, k, v, c, OffsetCommitRequest, |b, r| Some(
            match (
                handlers::job_groups::offset_commit(&b, &r, &client.client_id),
                b.coordinator(&r.group_id.0),
            ) {
                (Some(refused), _) => refused,
                (None, Some(g)) => g.offset_commit(r, version).await,
                (None, None) => handlers::not_coordinator::offset_commit(&r),
            }
        )),
        OffsetFetchRequest::KEY => route!(broker, buf, k, v, c, OffsetFetchRequest, |b, r| Some(
            handlers::group_routing::offset_fetch(&b, r, version).await
        )),
        OffsetDeleteRequest::KEY => route!(broker, buf, k, v, c, OffsetDeleteRequest, |b, r| Some(
            match (
                handlers::job_groups::offset_delete(&b, &r, &client.client_id),
                b.coordinator(&r.group_id.0),
            ) {
                (Some(refused), _) => refused,
                (None, Some(g)) => g.offset_delete(r, version).await,
                (None, None) => handlers::not_coordinator::offset_delete(),
            }
        )),
        ListGroupsRequest::KEY => route!(broker, buf, k, v, c, ListGroupsRequest, |b, r| Some(
            handlers::job_groups::list_groups(&b, r, version).await
        )),
        DescribeGroupsRequest::KEY => {
            route!(broker, buf, k, v, c, DescribeGroupsRequest, |b, r| Some({
                let mut resp = handlers::group_routing::describe_groups(&b, r, version).await;
                handlers::job_groups::describe_groups(&b, &mut resp);
                resp
            }))
        }
        DeleteGroupsRequest::KEY => {
            route!(broker, buf, k, v, c, DeleteGroupsRequest, |b, r| Some({
                let (rest, mut refused) =
                    handlers::job_groups::delete_groups(&b, r, &client.client_id);
                let done = handlers::group_routing::delete_groups(&b, rest, version).await;
                refused.results.extend(done.results);
                refused
            }))
        }
        other => return Err(RequestError::UnknownApi(other)),
    };
    Ok(fut)
}
