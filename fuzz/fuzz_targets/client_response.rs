//! `client_response`: arbitrary bytes as a broker's response, read by the real
//! client code path: `weir_client::Connection::send_versioned` (frame routing by
//! correlation id in the reader task, `ResponseHeader::decode` at the response
//! header version, then `R::Response::decode` at the request's version), for each
//! API key the client uses and each version it may speak.
//!
//! One connection per process, to a fake broker on a loopback listener in the
//! same runtime: the fake answers the client's ApiVersions negotiation properly,
//! then answers every request with `[length][the request's correlation id][input
//! bytes 2..]`, so the fuzzed bytes are the response header's tagged fields (v1
//! headers) and the body.
//!
//! Input: byte 0 selects the API (modulo the list below), byte 1 the version
//! (modulo the client's range for it), the rest is the response after the
//! correlation id.
//!
//! What the client does next with response data that public functions expose is
//! driven too: JoinGroup member metadata through `assignor::decode_subscription`,
//! SyncGroup assignments through `assignor::decode_assignment`, and Fetch records
//! through the client's own `records::decode_fetched`.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Request,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_client::{Connection, ConnectionConfig};

/// What the fake broker answers the next non-negotiation request with.
type Slot = Arc<Mutex<Option<Bytes>>>;

struct Harness {
    rt: tokio::runtime::Runtime,
    slot: Slot,
    addr: String,
    conn: Option<Connection>,
}

static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();

/// The APIs the client sends and its highest version of each (client/src/versions.rs).
const APIS: &[(ApiKey, i16)] = &[
    (ApiKey::ApiVersions, 3),
    (ApiKey::Metadata, 12),
    (ApiKey::Produce, 11),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::JoinGroup, 7),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 4),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::OffsetFetch, 8),
    (ApiKey::InitProducerId, 4),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 5),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::ListGroups, 4),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::DeleteRecords, 2),
];

fn frame<R: Encodable + HeaderVersion>(correlation_id: i32, resp: &R, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let h = ResponseHeader::default().with_correlation_id(correlation_id);
    h.encode(&mut buf, R::header_version(version)).unwrap();
    resp.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Serves one connection at a time: a real ApiVersions answer for the
/// negotiation, then the slot's bytes behind each request's correlation id.
async fn fake_broker(listener: TcpListener, slot: Slot) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let mut negotiated = false;
        loop {
            let Ok(len) = sock.read_u32().await else {
                break;
            };
            let mut buf = BytesMut::zeroed(len as usize);
            if sock.read_exact(&mut buf).await.is_err() {
                break;
            }
            let mut bytes = buf.freeze();
            let Ok(header) = decode_request_header_from_buffer(&mut bytes) else {
                break;
            };
            let out = if !negotiated && header.request_api_key == ApiKey::ApiVersions as i16 {
                negotiated = true;
                let mut resp = ApiVersionsResponse::default();
                for (key, max) in APIS {
                    let mut a = ApiVersion::default();
                    a.api_key = *key as i16;
                    a.min_version = 0;
                    a.max_version = *max;
                    resp.api_keys.push(a);
                }
                frame(header.correlation_id, &resp, header.request_api_version)
            } else {
                let body = slot.lock().unwrap().take().unwrap_or_default();
                let mut out = BytesMut::with_capacity(8 + body.len());
                out.put_u32(4 + body.len() as u32);
                out.put_i32(header.correlation_id);
                out.put_slice(&body);
                out.to_vec()
            };
            if sock.write_all(&out).await.is_err() {
                break;
            }
        }
    }
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a runtime");
        let slot = Slot::default();
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding the fake broker");
        let addr = listener.local_addr().unwrap().to_string();
        rt.spawn(fake_broker(listener, slot.clone()));
        Self {
            rt,
            slot,
            addr,
            conn: None,
        }
    }
}

async fn go<R>(conn: &Connection, vbyte: u8, max: i16) -> Option<R::Response>
where
    R: Request + Default,
{
    let (lo, hi) = (R::VERSIONS.min, max.min(R::VERSIONS.max));
    let version = lo + i16::from(vbyte) % (hi - lo + 1);
    let r = conn.send_versioned(&R::default(), version, None).await;
    if std::env::var_os("WEIR_FUZZ_DEBUG").is_some() {
        match &r {
            Ok(_) => eprintln!(
                "client_response: {} v{version}: decoded",
                std::any::type_name::<R>()
            ),
            Err(e) => eprintln!(
                "client_response: {} v{version}: {e}",
                std::any::type_name::<R>()
            ),
        }
    }
    r.ok()
}

async fn drive(conn: &Connection, api: ApiKey, vbyte: u8, max: i16) {
    match api {
        ApiKey::ApiVersions => drop(go::<ApiVersionsRequest>(conn, vbyte, max).await),
        ApiKey::Metadata => drop(go::<MetadataRequest>(conn, vbyte, max).await),
        ApiKey::Produce => drop(go::<ProduceRequest>(conn, vbyte, max).await),
        ApiKey::Fetch => {
            if let Some(resp) = go::<FetchRequest>(conn, vbyte, max).await {
                for t in &resp.responses {
                    for p in &t.partitions {
                        if let Some(records) = &p.records {
                            let _ =
                                weir_client::records::decode_fetched("t", 0, records.clone(), 0);
                        }
                    }
                }
            }
        }
        ApiKey::ListOffsets => drop(go::<ListOffsetsRequest>(conn, vbyte, max).await),
        ApiKey::FindCoordinator => drop(go::<FindCoordinatorRequest>(conn, vbyte, max).await),
        ApiKey::JoinGroup => {
            if let Some(resp) = go::<JoinGroupRequest>(conn, vbyte, max).await {
                for m in &resp.members {
                    let _ = weir_client::assignor::decode_subscription(m.metadata.clone());
                }
            }
        }
        ApiKey::SyncGroup => {
            if let Some(resp) = go::<SyncGroupRequest>(conn, vbyte, max).await {
                let _ = weir_client::assignor::decode_assignment(resp.assignment.clone());
            }
        }
        ApiKey::Heartbeat => drop(go::<HeartbeatRequest>(conn, vbyte, max).await),
        ApiKey::LeaveGroup => drop(go::<LeaveGroupRequest>(conn, vbyte, max).await),
        ApiKey::OffsetCommit => drop(go::<OffsetCommitRequest>(conn, vbyte, max).await),
        ApiKey::OffsetFetch => drop(go::<OffsetFetchRequest>(conn, vbyte, max).await),
        ApiKey::InitProducerId => drop(go::<InitProducerIdRequest>(conn, vbyte, max).await),
        ApiKey::CreateTopics => drop(go::<CreateTopicsRequest>(conn, vbyte, max).await),
        ApiKey::DeleteTopics => drop(go::<DeleteTopicsRequest>(conn, vbyte, max).await),
        ApiKey::CreatePartitions => drop(go::<CreatePartitionsRequest>(conn, vbyte, max).await),
        ApiKey::DescribeConfigs => drop(go::<DescribeConfigsRequest>(conn, vbyte, max).await),
        ApiKey::IncrementalAlterConfigs => {
            drop(go::<IncrementalAlterConfigsRequest>(conn, vbyte, max).await)
        }
        ApiKey::ListGroups => drop(go::<ListGroupsRequest>(conn, vbyte, max).await),
        ApiKey::DescribeGroups => drop(go::<DescribeGroupsRequest>(conn, vbyte, max).await),
        ApiKey::DeleteGroups => drop(go::<DeleteGroupsRequest>(conn, vbyte, max).await),
        ApiKey::DeleteRecords => drop(go::<DeleteRecordsRequest>(conn, vbyte, max).await),
        other => unreachable!("{other:?} is not in APIS"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (api, max) = APIS[usize::from(data[0]) % APIS.len()];
    let vbyte = data[1];
    let body = Bytes::copy_from_slice(&data[2..]);

    let mut h = HARNESS
        .get_or_init(|| Mutex::new(Harness::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let h = &mut *h;
    if h.conn.as_ref().is_none_or(Connection::is_closed) {
        let config = ConnectionConfig {
            request_timeout: Duration::from_secs(10),
            ..ConnectionConfig::default()
        };
        let conn =
            h.rt.block_on(Connection::connect(&h.addr, &config))
                .expect("connecting to the fake broker");
        h.conn = Some(conn);
    }
    *h.slot.lock().unwrap() = Some(body);
    let conn = h.conn.as_ref().unwrap();
    h.rt.block_on(drive(conn, api, vbyte, max));
    // A request that failed to encode never reached the fake broker.
    h.slot.lock().unwrap().take();
});
