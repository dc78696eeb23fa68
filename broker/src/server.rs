//! The node's listeners: takes bound listeners and a shutdown signal, so tests
//! and the binary alike bind first (port 0 works) and stop cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::health::Health;

/// Serves Kafka traffic until `shutdown` resolves, then closes every log.
/// `health` learns when the listener accepts and when it stops.
pub async fn run(
    kafka: TcpListener,
    broker: Arc<Broker>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let maint = {
        let broker = broker.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(broker.config.maintenance_interval_ms.max(1));
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let b = broker.clone();
                        let _ = tokio::task::spawn_blocking(move || b.maintain()).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    health.set_listening(true);
    loop {
        tokio::select! {
            r = kafka.accept() => match r {
                Ok((sock, peer)) => match broker.limits.admit(peer.ip()) {
                    Ok(slot) => {
                        conns.spawn(crate::connection::serve(sock, slot, broker.clone(), stop_rx.clone()));
                    }
                    // Dropping the socket closes it at once.
                    Err(e) => tracing::debug!(%peer, reason = %e, "connection refused"),
                },
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    health.set_listening(false);
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
    let _ = maint.await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.close()).await??;
    tracing::info!("logs closed cleanly");
    Ok(())
}
