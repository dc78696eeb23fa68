//! The one task per log store that reports appends durable, in order.
//!
//! An append hands over the last Kafka offset it wrote and openraft's callback;
//! the flusher waits for [`Log::wait_durable`] of the highest offset queued
//! (one wait serves every append queued behind it: the log's group commit does
//! the fsync off the async workers) and then completes the callbacks in append
//! order. A barrier resolves once everything queued before it is reported, which
//! orders vote writes and truncations after the appends before them.

use std::io;
use std::sync::Arc;

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};
use weir_storage::Log;

use crate::types::TypeConfig;

/// Work for the flusher.
pub(crate) enum FlushItem {
    /// Report an append durable once the log is durable up to `upto` (when it
    /// wrote data).
    Append {
        /// Last Kafka offset the append wrote, if any.
        upto: Option<i64>,
        /// openraft's completion callback.
        callback: IOFlushed<TypeConfig>,
    },
    /// Resolve once everything queued before is reported.
    Barrier(oneshot::Sender<()>),
}

/// Handle of a running flusher; dropping it ends the task once its queue is done.
#[derive(Debug)]
pub(crate) struct Flusher {
    tx: mpsc::UnboundedSender<FlushItem>,
}

impl Flusher {
    /// Starts the flusher of `log` on the current tokio runtime.
    pub(crate) fn spawn(log: Arc<Log>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(log, rx));
        Self { tx }
    }

    /// Queues a report.
    pub(crate) fn send(&self, item: FlushItem) -> io::Result<()> {
        self.tx
            .send(item)
            .map_err(|_| io::Error::other("raft log flusher stopped"))
    }

    /// Waits until every report queued before is done.
    pub(crate) async fn barrier(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(FlushItem::Barrier(tx))?;
        rx.await
            .map_err(|_| io::Error::other("raft log flusher stopped"))
    }
}

async fn run(log: Arc<Log>, mut rx: mpsc::UnboundedReceiver<FlushItem>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let upto = group
            .iter()
            .filter_map(|item| match item {
                FlushItem::Append { upto, .. } => *upto,
                FlushItem::Barrier(_) => None,
            })
            .max();
        let result = match upto {
            Some(offset) => log.wait_durable(offset).await,
            None => Ok(()),
        };
        for item in group {
            match item {
                FlushItem::Append { callback, .. } => callback.io_completed(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| io::Error::other(e.to_string())),
                ),
                FlushItem::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}
