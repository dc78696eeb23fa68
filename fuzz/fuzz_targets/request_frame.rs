//! `request_frame`: one request frame (the bytes after the 4-byte length prefix:
//! request header + body) dispatched against an in-process node, as
//! `connection::serve` does: `dispatch::dispatch`, then the returned future run to
//! completion (bounded by a timeout on a paused clock, so Fetch long polls and
//! group waits cost no wall time).
//!
//! One node per process, on a tokio current-thread runtime with a paused clock,
//! over a scratch data dir (tmpfs when there is one). The node is recreated (new
//! runtime, new dir) every `RECREATE_EVERY` frames, and sooner when its data dir,
//! its topic count or the process's open files grow past the limits below.
//!
//! Checked: nothing panics (a panic in any task aborts the process; a future
//! still pending after the timeout is cancelled, as when a client goes away),
//! and every response frame is well formed: its
//! length prefix, its correlation id, and a header + body that kafka-protocol
//! decodes at the request's version with no bytes left (what a client would read).
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, MetadataRequest, ProduceRequest,
    ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use weir_broker::broker::Broker;
use weir_broker::config::{BrokerArgs, BrokerConfig};
use weir_storage::Durability;

/// Recreate the node after this many frames.
const RECREATE_EVERY: u64 = 20_000;
/// ...or when, checked every `CHECK_EVERY` frames, the data dir holds more than
/// this many bytes, or the node more topics, or the process more open files.
const CHECK_EVERY: u64 = 128;
const MAX_DIR_BYTES: u64 = 256 << 20;
const MAX_TOPICS: usize = 300;
const MAX_OPEN_FILES: usize = 4000;
/// Frames that may create more partitions than this are skipped: each partition
/// is a directory, three files and three mappings, and a CreateTopics may ask for
/// 100 000 of them per topic (allowed, as in Kafka), a Metadata request may
/// auto-create thousands of topics; that is load, not a bug this target looks for.
const MAX_NEW_PARTITIONS: i64 = 64;
/// Virtual time a request may take (Fetch max wait, JoinGroup rebalances, ...).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests cancelled at the timeout (reported now and then on stderr).
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);

struct Node {
    rt: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    dir: PathBuf,
    frames: u64,
}

struct Harness {
    root: PathBuf,
    generation: u64,
    node: Option<Node>,
}

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fn broker_config(dir: PathBuf) -> BrokerConfig {
    // Through the flags' resolver, so fields added to BrokerConfig keep defaults.
    let mut c = BrokerArgs {
        data_dir: Some(dir),
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        default_partitions: Some(2),
        // No fsync waits (the flusher is not what this target is about).
        fsync: Some("none".into()),
        // Small segments: rolls and index lookups happen often.
        segment_bytes: Some(1 << 20),
        group_initial_rebalance_delay_ms: Some(3000),
        ..BrokerArgs::default()
    }
    .resolve()
    .expect("a valid node config");
    c.log_defaults.segment_index_bytes = 16 << 10;
    c.log_defaults.index_interval_bytes = 1024;
    c.log_defaults.durability = Durability::PageCache;
    c
}

impl Harness {
    fn open_files() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    fn node(&mut self) -> &mut Node {
        let stale = self.node.as_ref().is_some_and(|n| {
            n.frames >= RECREATE_EVERY
                || (n.frames % CHECK_EVERY == 0
                    && (n.broker.meta.topics().len() > MAX_TOPICS
                        || common::dir_bytes(&n.dir) > MAX_DIR_BYTES
                        || Self::open_files() > MAX_OPEN_FILES))
        });
        if stale {
            let node = self.node.take().unwrap();
            let dir = node.dir.clone();
            // Dropping the runtime drops every task (group coordinator, waiters);
            // then the last reference to the node goes.
            drop(node.rt);
            drop(node.broker);
            let _ = std::fs::remove_dir_all(dir);
        }
        if self.node.is_none() {
            self.generation += 1;
            let dir = self.root.join(format!("node-{}", self.generation));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("building a runtime");
            // Broker::open blocks (file work, and it waits for each
            // partition's Raft group): run it on the blocking pool.
            let config = broker_config(dir.clone());
            let broker = rt
                .block_on(tokio::task::spawn_blocking(move || {
                    Broker::open(config, "127.0.0.1".into(), 9092)
                }))
                .expect("joining the open")
                .expect("opening a fresh node");
            self.node = Some(Node {
                rt,
                broker,
                dir,
                frames: 0,
            });
        }
        self.node.as_mut().unwrap()
    }
}

/// Whether the frame may create more partitions than [`MAX_NEW_PARTITIONS`]:
/// CreateTopics and CreatePartitions by their counts, Metadata and Produce (which
/// auto-create unknown topics, `default_partitions` each) by their topic counts.
fn too_many_partitions(frame: &[u8]) -> bool {
    let mut buf = Bytes::copy_from_slice(frame);
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let per_topic = i64::from(broker_config(PathBuf::new()).default_partitions);
    if ![
        CreateTopicsRequest::KEY,
        CreatePartitionsRequest::KEY,
        MetadataRequest::KEY,
        ProduceRequest::KEY,
    ]
    .contains(&key)
    {
        return false;
    }
    if decode_request_header_from_buffer(&mut buf).is_err() {
        return false;
    }
    if key == MetadataRequest::KEY {
        let Ok(req) = MetadataRequest::decode(&mut buf, version) else {
            return false;
        };
        let n = req.topics.as_ref().map_or(0, Vec::len) as i64;
        return n * per_topic > MAX_NEW_PARTITIONS;
    }
    if key == ProduceRequest::KEY {
        let Ok(req) = ProduceRequest::decode(&mut buf, version) else {
            return false;
        };
        return req.topic_data.len() as i64 * per_topic > MAX_NEW_PARTITIONS;
    }
    if key == CreateTopicsRequest::KEY {
        let Ok(req) = CreateTopicsRequest::decode(&mut buf, version) else {
            return false;
        };
        let total: i64 = req
            .topics
            .iter()
            .map(|t| i64::from(t.num_partitions.max(2)))
            .sum();
        total > MAX_NEW_PARTITIONS
    } else {
        let Ok(req) = CreatePartitionsRequest::decode(&mut buf, version) else {
            return false;
        };
        let total: i64 = req.topics.iter().map(|t| i64::from(t.count.max(0))).sum();
        total > MAX_NEW_PARTITIONS
    }
}

/// A response frame must be what a client can read: length prefix, correlation
/// id, header and body decoding at the request's version with nothing left over.
fn check_response(mut frame: Bytes, key: i16, version: i16, correlation_id: i32) {
    assert!(frame.len() >= 8, "response frame of {} bytes", frame.len());
    let len = frame.get_i32();
    assert_eq!(
        len as usize,
        frame.len(),
        "length prefix disagrees with the frame"
    );
    let api = ApiKey::try_from(key).expect("dispatch answered an unknown API key");
    // An ApiVersions request above the supported range is answered at v0 (error 35).
    let max = weir_broker::dispatch::supported()
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or(i16::MAX, |r| r.2);
    let version = if api == ApiKey::ApiVersions && version > max {
        0
    } else {
        version
    };
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: response header does not decode: {e}"));
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    if let Err(e) = ResponseKind::decode(api, &mut frame, version) {
        panic!("{api:?} v{version}: response body does not decode: {e}");
    }
    assert!(
        frame.is_empty(),
        "{api:?} v{version}: {} bytes after the response body",
        frame.len()
    );
}

fuzz_target!(|data: &[u8]| {
    // connection::serve closes the connection on frames under 8 bytes before
    // dispatching (dispatch reads the 8-byte key/version/correlation prefix).
    if data.len() < 8 || too_many_partitions(data) {
        return;
    }
    let key = i16::from_be_bytes([data[0], data[1]]);
    let version = i16::from_be_bytes([data[2], data[3]]);
    let correlation_id = i32::from_be_bytes([data[4], data[5], data[6], data[7]]);

    let mut guard = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let h = guard.get_or_insert_with(|| Harness {
        root: common::scratch_root("request_frame"),
        generation: 0,
        node: None,
    });
    let node = h.node();
    node.frames += 1;
    let broker = node.broker.clone();
    let frame = Bytes::copy_from_slice(data);
    node.rt.block_on(async move {
        let pending = match weir_broker::dispatch::dispatch(&broker, frame, "127.0.0.1") {
            Ok(p) => p,
            Err(e) => {
                // Refused: the connection would be closed. Not a failure.
                if common::debug() {
                    eprintln!("request_frame: key {key} v{version}: refused: {e}");
                }
                return;
            }
        };
        // As connection::serve: the handler runs as its own task.
        let mut task = tokio::spawn(pending);
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, &mut task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("request task failed: {e}"),
            Err(_) => {
                // Still waiting (a JoinGroup for members that never come, a long
                // poll): legitimate, as for a client that went away. Cancel it so
                // frames stay independent.
                task.abort();
                let n = TIMED_OUT.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    eprintln!("request_frame: {n} requests still pending after {REQUEST_TIMEOUT:?} (virtual), cancelled");
                }
                return;
            }
        };
        if common::debug() {
            eprintln!(
                "request_frame: key {key} v{version}: {}",
                response.as_ref().map_or("no response".to_string(), |f| format!("{} byte response", f.len()))
            );
        }
        if let Some(frame) = response {
            check_response(frame.freeze(), key, version, correlation_id);
        }
    });
});
