//! The async runtime around the pure [`GroupManager`]: a lock, channels for deferred
//! JoinGroup/SyncGroup responses, a ticker for timeouts and a writer for durable records.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::{GroupConfig, GroupWriteCounters, PartitionCheck};
use super::error::GroupError;
use super::events::{Action, JoinParams, JoinResult, SyncParams, SyncResult};
use super::manager::GroupManager;
use super::member::ReplyId;
use super::offsets::{DurableOp, Write};
use super::record::Record;
use super::store::{AppendFuture, GroupStore, GroupStoreError};

/// Resolves once an issued write is durable (and applied) or failed.
type Done = oneshot::Sender<Result<(), GroupError>>;

/// The consumer group coordinator of this node. Cheap to clone (an `Arc` inside); every
/// clone drives the same groups. Its background tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct GroupCoordinator {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCoordinator").finish_non_exhaustive()
    }
}

/// Where a deferred response goes.
enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// State under the lock.
struct Shared {
    manager: GroupManager,
    waiters: HashMap<ReplyId, Waiter>,
    next_reply: u64,
}

/// An issued append, waiting to become durable; the writer task applies `op` after it.
struct PendingWrite {
    append: AppendFuture,
    op: Option<DurableOp>,
    done: Option<Done>,
}

pub(crate) struct Inner {
    /// A std Mutex: every critical section is a short synchronous step of the pure state
    /// machine plus channel sends; it is never held across `.await`.
    shared: Mutex<Shared>,
    store: Arc<dyn GroupStore>,
    /// Appends are issued under `shared`, so their order here is the log order.
    /// Bounded: see [`GroupConfig::max_pending_writes`].
    writes: mpsc::Sender<PendingWrite>,
    counters: Arc<GroupWriteCounters>,
    /// Coordinator time 0: deadlines are milliseconds since this instant.
    epoch: Instant,
    /// Set at start or later (the broker may build its partition map after the
    /// coordinator); read briefly and cloned, never called under any lock.
    partition_check: RwLock<Option<PartitionCheck>>,
}

impl GroupCoordinator {
    /// Replays `store.load()`, then starts the ticker and writer tasks on the current
    /// tokio runtime. Groups come back Empty with their generation and offsets.
    pub fn start(store: Arc<dyn GroupStore>, config: GroupConfig) -> Result<Self, GroupStoreError> {
        let records = store.load()?;
        let epoch = Instant::now();
        let tick_interval = config.tick_interval.max(Duration::from_millis(1));
        let partition_check = config.partition_check.clone();
        let counters = config.counters.clone();
        let (writes, rx) = mpsc::channel(config.max_pending_writes.max(1));
        let mut manager = GroupManager::new(config, clock_seed());
        let skipped = manager.load(&records, 0);
        tracing::info!(
            records = records.len(),
            skipped,
            groups = manager.groups.len(),
            "group coordinator loaded"
        );
        let shared = Shared {
            manager,
            waiters: HashMap::new(),
            next_reply: 0,
        };
        let inner = Arc::new(Inner {
            shared: Mutex::new(shared),
            store,
            writes,
            counters,
            epoch,
            partition_check: RwLock::new(partition_check),
        });
        tokio::spawn(run_writer(Arc::downgrade(&inner), rx));
        tokio::spawn(run_ticker(Arc::downgrade(&inner), tick_interval));
        Ok(Self { inner })
    }

    /// Installs (or replaces) the partition existence check used by OffsetCommit.
    pub fn set_partition_check(&self, check: PartitionCheck) {
        let mut slot = self
            .inner
            .partition_check
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = Some(check);
    }
}

impl Inner {
    /// The current partition check, if any.
    pub(crate) fn partition_check(&self) -> Option<PartitionCheck> {
        self.partition_check
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Coordinator time in ms (monotonic).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic under the lock cannot leave the pure state half-updated in a way that
        // matters more than losing the coordinator, so recover the guard.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state machine under the lock and carries out its actions.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut GroupManager, u64) -> (R, Vec<Action>)) -> R {
        self.with_shared(|shared, now| f(&mut shared.manager, now))
    }

    fn with_shared<R>(&self, f: impl FnOnce(&mut Shared, u64) -> (R, Vec<Action>)) -> R {
        let now = self.now();
        let mut shared = self.lock();
        let (result, actions) = f(&mut shared, now);
        self.perform(&mut shared, actions);
        result
    }

    fn perform(&self, shared: &mut Shared, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Join { reply, result } => match shared.waiters.remove(&reply) {
                    Some(Waiter::Join(tx)) => drop(tx.send(result)),
                    _ => tracing::debug!(?reply, "join response without waiter"),
                },
                Action::Sync { reply, result } => match shared.waiters.remove(&reply) {
                    Some(Waiter::Sync(tx)) => drop(tx.send(result)),
                    _ => tracing::debug!(?reply, "sync response without waiter"),
                },
                Action::Persist(records) => self.persist(records),
            }
        }
    }

    /// Starts a membership write the state machine asked for (under the lock, so
    /// log order = issue order). It has nothing to apply, so when the queue is
    /// full its durability is awaited outside the queue instead.
    fn persist(&self, records: Vec<Record>) {
        let append = self.store.append(records);
        let pending = PendingWrite {
            append,
            op: None,
            done: None,
        };
        match self.writes.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => {
                self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(error) = p.append.await {
                        tracing::warn!(%error, "group coordinator write failed");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("group coordinator writer stopped; write dropped");
            }
        }
    }

    /// Plans a write under the lock and issues it there; the receiver resolves once the
    /// write is durable (and applied) or failed. Room in the write queue is taken
    /// first, without the lock: when `max_pending_writes` are pending the caller
    /// waits here (back-pressure), not under the lock.
    pub(crate) async fn plan_write<R>(
        &self,
        f: impl FnOnce(&mut GroupManager, u64) -> (R, Option<Write>),
    ) -> (R, Option<oneshot::Receiver<Result<(), GroupError>>>) {
        let slot = match self.writes.try_reserve() {
            Ok(slot) => Some(slot),
            Err(mpsc::error::TrySendError::Full(())) => {
                self.counters.waited.fetch_add(1, Ordering::Relaxed);
                self.writes.reserve().await.ok()
            }
            Err(mpsc::error::TrySendError::Closed(())) => None,
        };
        let now = self.now();
        let mut shared = self.lock();
        let (result, write) = f(&mut shared.manager, now);
        let rx = write.map(|w| {
            let (tx, rx) = oneshot::channel();
            let append = self.store.append(w.records);
            let pending = PendingWrite {
                append,
                op: Some(w.op),
                done: Some(tx),
            };
            match slot {
                Some(slot) => slot.send(pending),
                // The writer is gone: `tx` drops with `pending`, and the caller
                // reads that as a failed write.
                None => tracing::warn!("group coordinator writer stopped; write dropped"),
            }
            rx
        });
        (result, rx)
    }

    /// Runs a JoinGroup and waits for its (possibly deferred) response.
    pub(crate) async fn join(&self, mut p: JoinParams) -> JoinResult {
        let member_id = p.member_id.clone();
        let group_id = p.group_id.clone();
        let rx = self.with_shared(|shared, now| {
            let (tx, rx) = oneshot::channel();
            p.reply = shared.register(Waiter::Join(tx));
            (rx, shared.manager.join(p, now))
        });
        let unavailable = GroupError::CoordinatorNotAvailable(group_id);
        rx.await
            .unwrap_or_else(|_| JoinResult::error(unavailable, &member_id))
    }

    /// Runs a SyncGroup and waits for its (possibly deferred) response.
    pub(crate) async fn sync(&self, mut p: SyncParams) -> SyncResult {
        let group_id = p.group_id.clone();
        let rx = self.with_shared(|shared, now| {
            let (tx, rx) = oneshot::channel();
            p.reply = shared.register(Waiter::Sync(tx));
            (rx, shared.manager.sync(p, now))
        });
        rx.await
            .unwrap_or_else(|_| SyncResult::error(GroupError::CoordinatorNotAvailable(group_id)))
    }

    /// Advances timers: session expiry, rebalance and sync deadlines. Also run
    /// before answering requests that look at membership, so a member past its
    /// deadline never counts, however the ticker's next beat falls.
    pub(crate) fn tick(&self) {
        self.with(|manager, now| ((), manager.tick(now)));
    }

    /// Applies (or, on failure, aborts) a write that the store resolved.
    fn finish_write(&self, op: Option<DurableOp>, ok: bool) {
        let Some(op) = op else { return };
        let now = self.now();
        let mut shared = self.lock();
        if ok {
            shared.manager.apply(op, now);
        } else {
            shared.manager.abort(op);
        }
    }
}

impl Shared {
    /// Registers a waiter and returns the reply id the state machine will answer.
    fn register(&mut self, waiter: Waiter) -> ReplyId {
        self.next_reply = self.next_reply.wrapping_add(1);
        let id = ReplyId(self.next_reply);
        self.waiters.insert(id, waiter);
        id
    }
}

/// Awaits issued appends in issue order and applies each once durable, so memory
/// follows the log's order even when appends resolve out of order.
async fn run_writer(inner: Weak<Inner>, mut rx: mpsc::Receiver<PendingWrite>) {
    while let Some(write) = rx.recv().await {
        let result = write.append.await;
        if let Err(error) = &result {
            tracing::warn!(%error, "group coordinator write failed");
        }
        if let Some(inner) = inner.upgrade() {
            inner.finish_write(write.op, result.is_ok());
        }
        if let Some(done) = write.done {
            let _ = done.send(result.map_err(|e| GroupError::Store(e.to_string())));
        }
    }
}

/// Ticks the state machine until the coordinator is dropped.
async fn run_ticker(inner: Weak<Inner>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.tick();
    }
}

/// Wall-clock ms since the Unix epoch, for commit timestamps.
pub(crate) fn wall_clock_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// A seed for member ids that differs between starts.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(48)
}
