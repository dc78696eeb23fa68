//! One TCP connection to one broker.
//!
//! Frames are a 4-byte big-endian length followed by the payload. Requests are
//! pipelined: a writer task owns the socket's write half and drains a bounded
//! queue, a reader task owns the read half and routes each response to the
//! waiting caller by correlation id. Callers never hold a lock across `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{codes, Error, Result};
use crate::versions;

/// Frames larger than this are refused (protects against garbage lengths).
const MAX_FRAME: usize = 512 * 1024 * 1024;
/// Requests queued for the writer before `send` waits.
const WRITE_QUEUE: usize = 1024;

/// Responses waiting for their frame, keyed by correlation id.
///
/// A std mutex: it is only held to insert or remove one entry, never across `.await`.
type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Bytes>>>>;

/// One request frame on its way to the writer task.
struct Outgoing {
    frame: Bytes,
}

/// Options for opening a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent as the `client_id` header of every request.
    pub client_id: String,
    /// How long to wait for a TCP connect.
    pub connect_timeout: Duration,
    /// How long to wait for a response (Fetch adds its own max wait on top).
    pub request_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "weir-client".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A pipelined connection to one broker with negotiated API versions.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation: AtomicI32,
    pending: Pending,
    writer: mpsc::Sender<Outgoing>,
    closed: Arc<AtomicBool>,
    /// Broker-supported (min, max) per API key.
    broker_versions: HashMap<i16, (i16, i16)>,
    reader_task: JoinHandle<()>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outgoing({} bytes)", self.frame.len())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer stops when its queue closes; the reader would wait on the socket forever.
        self.reader_task.abort();
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: &ConnectionConfig) -> Result<Connection> {
        let io_err = |source| Error::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                operation: format!("connecting to {addr}"),
                timeout: config.connect_timeout,
            })?
            .map_err(io_err)?;
        stream.set_nodelay(true).map_err(io_err)?;
        let (read, write) = stream.into_split();
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(write, rx, closed.clone()));
        let reader_task = tokio::spawn(read_loop(
            read,
            pending.clone(),
            closed.clone(),
            addr.to_string(),
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            next_correlation: AtomicI32::new(1),
            pending,
            writer: tx,
            closed,
            broker_versions: HashMap::new(),
            reader_task,
        };
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// The `host:port` this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the socket has failed or closed; a closed connection must be replaced.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Asks the broker which versions it speaks (v3, falling back to v0 on error 35).
    async fn negotiate_versions(&mut self) -> Result<()> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("weir-client");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut resp = self.send_versioned(&req, 3, None).await?;
        if resp.error_code == codes::UNSUPPORTED_VERSION {
            resp = self.send_versioned(&req, 0, None).await?;
        }
        crate::error::check(resp.error_code, "ApiVersions", &self.addr, None)?;
        self.broker_versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The version of `R` both sides speak: min(our max, broker max).
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let ours_max = versions::client_max(R::KEY).min(R::VERSIONS.max);
        let ours_min = R::VERSIONS.min;
        let unsupported = || Error::UnsupportedVersion {
            api: versions::api_name(R::KEY),
            addr: self.addr.clone(),
            client_min: ours_min,
            client_max: ours_max,
        };
        let (bmin, bmax) = *self.broker_versions.get(&R::KEY).ok_or_else(unsupported)?;
        let v = ours_max.min(bmax);
        if v < ours_min.max(bmin) {
            return Err(unsupported());
        }
        Ok(v)
    }

    /// Whether the broker advertises API `key` at all.
    pub fn supports(&self, key: ApiKey) -> bool {
        self.broker_versions.contains_key(&(key as i16))
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_versioned(req, version, None).await
    }

    /// Like [`send`](Self::send) but waits `extra` longer than the request timeout
    /// (for long-polling Fetch requests).
    pub async fn send_with_extra_timeout<R: Request>(
        &self,
        req: &R,
        extra: Duration,
    ) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_versioned(req, version, Some(extra)).await
    }

    /// Sends `req` and does not wait for an answer (Produce with acks=0 has none).
    pub async fn send_no_response<R: Request>(&self, req: &R) -> Result<i16> {
        let version = self.version_for::<R>()?;
        let (_, frame) = self.encode(req, version)?;
        self.enqueue(frame).await?;
        Ok(version)
    }

    /// Sends `req` encoded at `version` and decodes the response at the same version.
    pub async fn send_versioned<R: Request>(
        &self,
        req: &R,
        version: i16,
        extra_timeout: Option<Duration>,
    ) -> Result<R::Response> {
        let api = versions::api_name(R::KEY);
        let (correlation_id, frame) = self.encode(req, version)?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(correlation_id, tx);
        if let Err(e) = self.enqueue(frame).await {
            lock(&self.pending).remove(&correlation_id);
            return Err(e);
        }
        let timeout = self.request_timeout + extra_timeout.unwrap_or_default();
        let mut body = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                return Err(Error::ConnectionClosed {
                    addr: self.addr.clone(),
                })
            }
            Err(_) => {
                lock(&self.pending).remove(&correlation_id);
                return Err(Error::Timeout {
                    operation: format!("{api} v{version} request to {}", self.addr),
                    timeout,
                });
            }
        };
        let header_version = R::Response::header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| Error::protocol(format!("decoding {api} response header"), e))?;
        debug_assert_eq!(header.correlation_id, correlation_id);
        R::Response::decode(&mut body, version)
            .map_err(|e| Error::protocol(format!("decoding {api} v{version} response"), e))
    }

    fn encode<R: Request>(&self, req: &R, version: i16) -> Result<(i32, Bytes)> {
        let api = versions::api_name(R::KEY);
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(0); // length, filled below
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| Error::protocol(format!("encoding {api} header"), e))?;
        req.encode(&mut buf, version)
            .map_err(|e| Error::protocol(format!("encoding {api} v{version} request"), e))?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok((correlation_id, buf.freeze()))
    }

    async fn enqueue(&self, frame: Bytes) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ConnectionClosed {
                addr: self.addr.clone(),
            });
        }
        self.writer
            .send(Outgoing { frame })
            .await
            .map_err(|_| Error::ConnectionClosed {
                addr: self.addr.clone(),
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes queued frames, coalescing whatever is already queued into one flush.
async fn write_loop(
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: Arc<AtomicBool>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, write);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut ok = true;
        while let Some(msg) = next.take() {
            if out.write_all(&msg.frame).await.is_err() {
                ok = false;
                break;
            }
            next = rx.try_recv().ok();
        }
        if !ok || out.flush().await.is_err() {
            break;
        }
    }
    closed.store(true, Ordering::Relaxed);
    let _ = out.shutdown().await;
}

/// Reads response frames and hands each to the caller waiting on its correlation id.
async fn read_loop(
    mut read: OwnedReadHalf,
    pending: Pending,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    loop {
        match read_frame(&mut read).await {
            Ok(frame) if frame.len() >= 4 => {
                let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                match lock(&pending).remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(frame);
                    }
                    None => tracing::debug!(%addr, id, "response for unknown correlation id"),
                }
            }
            Ok(_) => {
                tracing::warn!(%addr, "short response frame; closing connection");
                break;
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connection closed");
                break;
            }
        }
    }
    closed.store(true, Ordering::Relaxed);
    // Dropping the senders wakes every waiter with ConnectionClosed.
    lock(&pending).clear();
}

async fn read_frame(read: &mut OwnedReadHalf) -> std::io::Result<Bytes> {
    let len = read.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = BytesMut::zeroed(len);
    read.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// A response frame as a broker sends it, for the fake brokers of unit tests.
#[cfg(test)]
pub(crate) fn test_frame<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    resp: &R,
    version: i16,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    h.encode(&mut buf, R::header_version(version)).unwrap();
    resp.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use tokio::net::TcpListener;

    use super::test_frame as frame;

    /// A fake broker: answers ApiVersions, then collects `n` Metadata requests and
    /// answers them in reverse order, each with controller id = correlation id.
    async fn fake_broker(listener: TcpListener, n: usize) {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut held = Vec::new();
        loop {
            let len = sock.read_u32().await.unwrap() as usize;
            let mut buf = BytesMut::zeroed(len);
            sock.read_exact(&mut buf).await.unwrap();
            let mut bytes = buf.freeze();
            let header = decode_request_header_from_buffer(&mut bytes).unwrap();
            let v = header.request_api_version;
            if header.request_api_key == ApiKey::ApiVersions as i16 {
                let mut resp = ApiVersionsResponse::default();
                for (key, max) in [(ApiKey::ApiVersions, 3), (ApiKey::Metadata, 9)] {
                    let mut a = ApiVersion::default();
                    a.api_key = key as i16;
                    a.min_version = 0;
                    a.max_version = max;
                    resp.api_keys.push(a);
                }
                sock.write_all(&frame(header.correlation_id, &resp, v))
                    .await
                    .unwrap();
                continue;
            }
            let _req = MetadataRequest::decode(&mut bytes, v).unwrap();
            held.push((header.correlation_id, v));
            if held.len() == n {
                for (id, v) in held.drain(..).rev() {
                    let mut resp = MetadataResponse::default();
                    resp.controller_id = id.into();
                    sock.write_all(&frame(id, &resp, v)).await.unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn negotiates_and_matches_pipelined_responses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(fake_broker(listener, 20));
        let conn = Arc::new(
            Connection::connect(&addr, &ConnectionConfig::default())
                .await
                .unwrap(),
        );
        // Broker max 9 is below our cap of 12.
        assert_eq!(conn.version_for::<MetadataRequest>().unwrap(), 9);
        assert!(conn
            .version_for::<kafka_protocol::messages::FetchRequest>()
            .is_err());
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let c = conn.clone();
            tasks.push(tokio::spawn(async move {
                let resp = c.send(&MetadataRequest::default()).await.unwrap();
                resp.controller_id.0
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20, "each caller got its own response");
    }
}
