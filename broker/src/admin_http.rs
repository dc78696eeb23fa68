//! The admin HTTP listener: `GET /metrics` (Prometheus), `GET /v1/health`
//! (readiness, see [`crate::health`]) and `GET /v1/cluster` (this node's view
//! of the cluster, for `weir cluster status`). It answers from process start,
//! before the logs are loaded.
//! A minimal HTTP/1.1 responder: one request per connection, no body parsing.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::health::Health;

/// Serves admin requests until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            () = &mut shutdown => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            // Read until the end of the request head (or 4 KiB): one `read` may
            // return only part of it when the client writes it in pieces, and a
            // cut-off path would be answered 404 (found by weir-tests).
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout_at(deadline, sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(k)) => n += k,
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match (path, health.broker()) {
                ("/metrics", Some(broker)) => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    broker.metrics.render(&broker.limits) + &broker.partition_gauges(),
                ),
                ("/metrics", None) => (
                    "503 Service Unavailable",
                    "text/plain",
                    "logs are still loading\n".to_string(),
                ),
                ("/v1/cluster", Some(broker)) => (
                    "200 OK",
                    "application/json",
                    format!("{}\n", broker.cluster_view()),
                ),
                ("/v1/cluster", None) => (
                    "503 Service Unavailable",
                    "text/plain",
                    "logs are still loading\n".to_string(),
                ),
                ("/v1/health", _) => {
                    let report = health.check().await;
                    let status = if report.ready {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    (status, "application/json", report.body)
                }
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
