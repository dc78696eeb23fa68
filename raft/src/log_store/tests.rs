//! openraft's conformance suite, then the record-batch path it does not cover.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;
use weir_storage::LogConfig;

use super::*;
use crate::state_machine::StateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), "t-0", LogConfig::default()).unwrap();
        let store = LogStore::open(Arc::new(log)).unwrap();
        Ok((dir, store, StateMachine::new()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.unwrap();
}

// ---- the record-batch path ----

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use openraft::type_config::TypeConfigExt;
use openraft::Membership;
use weir_storage::{BatchHeader, Durability};

fn open_store(dir: &Path, durability: Durability) -> LogStore {
    let cfg = LogConfig {
        durability,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(dir, "t-0", cfg).unwrap();
    LogStore::open(Arc::new(log)).unwrap()
}

fn batch(index: u64, records: usize) -> Vec<u8> {
    let recs: Vec<_> = (0..records)
        .map(|j| {
            (
                Some(format!("k{j}").into_bytes()),
                Some(format!("entry {index} record {j}").into_bytes()),
                1_700_000_000_000 + j as i64,
            )
        })
        .collect();
    weir_storage::record::build_batch(&recs)
}

fn data(term: u64, index: u64, records: usize) -> Entry {
    Entry::new(
        log_id(term, index),
        EntryPayload::Normal(RecordBatch(Bytes::from(batch(index, records)))),
    )
}

fn blank(term: u64, index: u64) -> Entry {
    Entry::new(log_id(term, index), EntryPayload::Blank)
}

fn membership(term: u64, index: u64) -> Entry {
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    Entry::new(
        log_id(term, index),
        EntryPayload::Membership(Membership::new_with_defaults(vec![voters], [])),
    )
}

/// Appends and waits for the durability callback.
async fn append(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn read_all(store: &mut LogStore) -> Vec<Entry> {
    store
        .get_log_reader()
        .await
        .try_get_log_entries(0..)
        .await
        .unwrap()
}

/// Checks that `got` is `want` (log ids and payloads; batches compared outside
/// the stamped fields) and that batches hold contiguous Kafka offsets from
/// `first_offset`, stamped with their entry's term. Returns the next offset.
fn assert_entries(got: &[Entry], want: &[Entry], first_offset: i64) -> i64 {
    assert_eq!(got.len(), want.len(), "entries");
    let mut next = first_offset;
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.log_id, w.log_id);
        match (&g.payload, &w.payload) {
            (EntryPayload::Normal(gb), EntryPayload::Normal(wb)) => {
                let h = BatchHeader::parse(&gb.0).unwrap();
                assert_eq!(h.base_offset, next, "offset of {}", g.log_id);
                assert_eq!(h.partition_leader_epoch as u64, g.log_id.leader_id.term);
                assert_eq!(gb.0[16..], wb.0[16..]);
                weir_storage::validate_batch(&gb.0, usize::MAX, weir_storage::CountRule::Produced)
                    .unwrap();
                next = h.next_offset();
            }
            (gp, wp) => assert_eq!(gp, wp),
        }
    }
    next
}

/// blank, data x2, membership, data, blank (new term), data x2.
fn interleaved() -> Vec<Entry> {
    vec![
        blank(1, 0),
        data(1, 1, 3),
        data(1, 2, 1),
        membership(1, 3),
        data(1, 4, 5),
        blank(2, 5),
        data(2, 6, 2),
        data(2, 7, 4),
    ]
}

#[tokio::test]
async fn data_and_other_entries_interleave_without_using_offsets() {
    for durability in [
        Durability::PageCache,
        Durability::EveryAppend,
        LogConfig::default().durability,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path(), durability);
        let want = interleaved();
        append(&mut store, want[..3].to_vec()).await;
        append(&mut store, want[3..5].to_vec()).await;
        append(&mut store, want[5..].to_vec()).await;
        let got = read_all(&mut store).await;
        // 3 + 1 + 5 + 2 + 4 records, no offset for the three other entries.
        assert_eq!(assert_entries(&got, &want, 0), 15);
        assert_eq!(store.shared.log.log_end_offset(), 15);
        let expect_after = [
            (0, 0),
            (1, 3),
            (2, 4),
            (3, 4),
            (4, 9),
            (5, 9),
            (6, 11),
            (7, 15),
        ];
        for (index, offset) in expect_after {
            assert_eq!(store.kafka_offset_after(index).unwrap(), offset, "{index}");
        }
        // A middle range and a single entry read back the same.
        let mut r = store.get_log_reader().await;
        let mid = r.try_get_log_entries(3..=6).await.unwrap();
        assert_eq!(
            mid.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            got[3..7].iter().map(|e| e.log_id).collect::<Vec<_>>()
        );
        assert_eq!(mid[1], got[4]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    }
}

#[tokio::test]
async fn truncate_in_the_middle_of_data_and_of_other_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    let want = interleaved();
    append(&mut store, want.clone()).await;

    // After a data entry (4): removes blank 5 and data 6, 7.
    store.truncate_after(Some(log_id(1, 4))).await.unwrap();
    assert_eq!(store.shared.log.log_end_offset(), 9);
    let got = read_all(&mut store).await;
    assert_entries(&got, &want[..5], 0);

    // A new leader's entries take the freed offsets.
    let next = vec![blank(3, 5), data(3, 6, 2)];
    append(&mut store, next.clone()).await;
    let mut want2 = want[..5].to_vec();
    want2.extend(next);
    assert_eq!(assert_entries(&read_all(&mut store).await, &want2, 0), 11);

    // After an other entry (3: membership): data 4 and after go.
    store.truncate_after(Some(log_id(1, 3))).await.unwrap();
    assert_eq!(store.shared.log.log_end_offset(), 4);
    assert_entries(&read_all(&mut store).await, &want[..4], 0);
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 3))
    );

    // Everything.
    store.truncate_after(None).await.unwrap();
    assert!(read_all(&mut store).await.is_empty());
    assert_eq!(store.shared.log.log_end_offset(), 0);

    // Survives a reopen.
    drop(store);
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    assert!(read_all(&mut store).await.is_empty());
    append(&mut store, want.clone()).await;
    assert_entries(&read_all(&mut store).await, &want, 0);
}

#[tokio::test]
async fn purge_keeps_kafka_data_and_the_translation_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    let want = interleaved();
    append(&mut store, want.clone()).await;
    store.purge(log_id(1, 4)).await.unwrap();
    // Kafka data is untouched.
    assert_eq!(store.shared.log.log_start_offset(), 0);
    assert_eq!(store.shared.log.log_end_offset(), 15);
    let got = read_all(&mut store).await;
    assert_entries(&got, &want[5..], 9);
    assert_eq!(store.kafka_offset_after(4).unwrap(), 9);
    assert!(store.kafka_offset_after(3).is_err());

    drop(store);
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    assert_entries(&read_all(&mut store).await, &want[5..], 9);
    assert_eq!(store.kafka_offset_after(4).unwrap(), 9);
    let more = vec![data(2, 8, 1), blank(3, 9), data(3, 10, 2)];
    append(&mut store, more.clone()).await;
    let mut want2 = want[5..].to_vec();
    want2.extend(more);
    assert_eq!(assert_entries(&read_all(&mut store).await, &want2, 9), 18);

    // Purge past the end: the log is empty, the next entry continues at 18.
    store.purge(log_id(3, 12)).await.unwrap();
    drop(store);
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(3, 12)));
    append(&mut store, vec![data(3, 13, 1)]).await;
    assert_entries(&read_all(&mut store).await, &[data(3, 13, 1)], 18);
}

#[tokio::test]
async fn vote_committed_and_entries_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), Durability::PageCache);
    let want = interleaved();
    let vote = Vote::new(2, 1);
    store.save_vote(&vote).await.unwrap();
    append(&mut store, want.clone()).await;
    store.save_committed(Some(log_id(2, 6))).await.unwrap();
    // Dropped without closing the partition log, as a crashed process.
    drop(store);
    let mut store = open_store(dir.path(), Durability::PageCache);
    assert_entries(&read_all(&mut store).await, &want, 0);
    assert_eq!(
        store.get_log_reader().await.read_vote().await.unwrap(),
        Some(vote)
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 6)));
    assert_eq!(store.kafka_offset_after(6).unwrap(), 11);

    // The machine lost the log's tail (page cache) after the committed id was
    // written: the committed id is clamped to what is left.
    store.shared.log.truncate_to(9).unwrap();
    drop(store);
    let mut store = open_store(dir.path(), Durability::PageCache);
    // Blank 5 is in the side file and directly follows data 4, so it stays;
    // data 6 is missing, so the log ends at 5.
    assert_entries(&read_all(&mut store).await, &want[..6], 0);
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(2, 5))
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 5)));
}

#[tokio::test]
async fn appends_are_reported_durable_in_order_and_votes_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), Durability::EveryAppend);
    let mut waits = Vec::new();
    for i in 0..50 {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append(vec![data(1, i, 2)], IOFlushed::signal(tx))
            .await
            .unwrap();
        waits.push(rx);
    }
    store.save_vote(&Vote::new(2, 1)).await.unwrap();
    // Every append queued before the vote is reported by the time it is saved.
    for mut rx in waits {
        rx.try_recv().unwrap().unwrap();
    }
    assert!(store.shared.log.flushed_offset() >= 100);
}

#[test]
fn the_state_machine_answers_with_the_batch_offsets() {
    let mut sm = StateMachine::new();
    let stored = |e: Entry, base: i64| {
        let EntryPayload::Normal(RecordBatch(b)) = &e.payload else {
            return e;
        };
        let mut b = b.to_vec();
        weir_storage::stamp_batch(&mut b, base, 1);
        Entry::new(e.log_id, EntryPayload::Normal(RecordBatch(Bytes::from(b))))
    };
    let answers: Vec<_> = [
        stored(blank(1, 0), 0),
        stored(data(1, 1, 3), 0),
        stored(membership(1, 2), 0),
        stored(data(1, 3, 2), 3),
    ]
    .iter()
    .map(|e| sm.apply_one(e).unwrap())
    .collect();
    let ranges: Vec<_> = answers
        .iter()
        .map(|a| (a.base_offset, a.last_offset))
        .collect();
    assert_eq!(ranges, vec![(0, -1), (0, 2), (3, 2), (3, 4)]);
}

/// A store opened over entries written before (a restart) reports them as
/// written to the prediction checker: re-arming predictions waits for the
/// last index, and must not wait for an append that already happened in an
/// earlier run (a leader stayed unable to propose: found by the fault run).
#[tokio::test]
async fn entries_from_an_earlier_run_count_as_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open_store(dir.path(), Durability::PageCache);
        append(&mut store, vec![blank(1, 0), data(1, 1, 2), data(1, 2, 1)]).await;
    }
    let mut store = open_store(dir.path(), Durability::PageCache);
    let p = Arc::new(crate::group::predictions::Predictions::default());
    store.check_predictions(Arc::clone(&p));
    tokio::time::timeout(std::time::Duration::from_secs(5), p.wait_written(2))
        .await
        .expect("entries on disk were not reported written");
}

/// A replica whose vote records are both destroyed does not open (it could
/// vote twice in a term); a one-voter group's store opens without them.
#[tokio::test]
async fn a_destroyed_vote_keeps_a_replica_closed_and_not_a_lone_voter() {
    use crate::offset_translator::Existing;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open_store(dir.path(), Durability::PageCache);
        let vote = Vote::new(3, 1);
        store.save_vote(&vote).await.unwrap();
        store.save_vote(&vote).await.unwrap();
        append(&mut store, vec![blank(3, 0), data(3, 1, 2)]).await;
    }
    std::fs::write(dir.path().join(VOTE.name), vec![0x5a; 1024]).unwrap();
    let (log, _) = Log::open(dir.path(), "t-0", LogConfig::default()).unwrap();
    let log = Arc::new(log);
    let err = LogStore::open_as(Arc::clone(&log), Existing::Drop).unwrap_err();
    assert!(err.to_string().contains("raft-vote"), "{err}");
    let mut store = LogStore::open_as(log, Existing::Adopt).unwrap();
    assert_eq!(
        store.get_log_reader().await.read_vote().await.unwrap(),
        None
    );
    assert_eq!(read_all(&mut store).await.len(), 2, "the entries stay");
}
