//! Links and server with fake groups: routing, isolation between groups,
//! failure and reconnection, pipelining and the byte budget.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use openraft::entry::RaftEntry;
use openraft::error::RPCError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::RaftNetworkV2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::fake::Fake;
use super::{network, option, register, restart, start};
use crate::transport::TransportConfig;
use crate::types::{log_id, Entry, RecordBatch, TypeConfig, Vote};

const LONG: Duration = Duration::from_secs(10);

fn vote_request(index: u64) -> VoteRequest<TypeConfig> {
    VoteRequest::new(Vote::new(1, 1), Some(log_id(1, index)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_many_groups_reach_their_callers() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    for group in 1..=20 {
        register(
            &server,
            group,
            Fake::new(group, Duration::from_millis(group % 3), Duration::ZERO),
        );
    }
    let mut calls = Vec::new();
    for group in 1..=20u64 {
        for i in 0..50u64 {
            let mut net = network(&client, group, 2, server.local_addr()).await;
            calls.push(tokio::spawn(async move {
                let resp = net.vote(vote_request(i), option(LONG)).await.unwrap();
                assert_eq!(
                    resp.last_log_id,
                    Some(log_id(group, i)),
                    "group {group} call {i}"
                );
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
    // All of it went over one link.
    assert_eq!(client.peers.links.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_group_does_not_hold_up_another() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    register(
        &server,
        1,
        Fake::new(1, Duration::from_secs(3), Duration::from_secs(3)),
    );
    register(&server, 2, Fake::new(2, Duration::ZERO, Duration::ZERO));
    let mut slow = network(&client, 1, 2, server.local_addr()).await;
    let mut fast = network(&client, 2, 2, server.local_addr()).await;

    let slow_vote = tokio::spawn(async move {
        let vote = slow.vote(vote_request(1), option(LONG)).await;
        let append = slow.append_entries(heartbeat(), option(LONG)).await;
        (vote, append)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for i in 0..10 {
        fast.vote(vote_request(i), option(LONG)).await.unwrap();
        let resp = fast
            .append_entries(heartbeat(), option(LONG))
            .await
            .unwrap();
        assert_eq!(resp, AppendEntriesResponse::Success);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fast group took {:?}",
        started.elapsed()
    );
    assert!(!slow_vote.is_finished());
    let (vote, append) = slow_vote.await.unwrap();
    vote.unwrap();
    append.unwrap();
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_fails_pending_requests_at_once_and_reconnects() {
    let server = start(2, TransportConfig::default()).await;
    let addr = server.local_addr();
    let client = start(1, TransportConfig::default()).await;
    register(
        &server,
        1,
        Fake::new(1, Duration::from_secs(60), Duration::ZERO),
    );
    let mut calls = Vec::new();
    for i in 0..5 {
        let mut net = network(&client, 1, 2, addr).await;
        calls.push(tokio::spawn(async move {
            net.vote(vote_request(i), option(LONG)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    server.shutdown().await;
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, RPCError::Network(_)), "{err}");
    }
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "failed after {:?}",
        killed.elapsed()
    );

    // Down: refused at connect, then at once while backing off.
    let mut net = network(&client, 1, 2, addr).await;
    let err = net.vote(vote_request(9), option(LONG)).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");

    let server = restart(2, addr).await;
    register(&server, 1, Fake::new(1, Duration::ZERO, Duration::ZERO));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match net.vote(vote_request(10), option(LONG)).await {
            Ok(resp) => break assert_eq!(resp.last_log_id, Some(log_id(1, 10))),
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_time_out_and_unknown_groups_are_unreachable() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    register(
        &server,
        1,
        Fake::new(1, Duration::from_secs(60), Duration::ZERO),
    );
    let mut net = network(&client, 1, 2, server.local_addr()).await;
    let started = Instant::now();
    let err = net
        .vote(vote_request(1), option(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));

    let mut net = network(&client, 99, 2, server.local_addr()).await;
    let err = net.vote(vote_request(1), option(LONG)).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    assert!(
        err.to_string().contains("group 99 is not on this node"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    register(&server, 1, Fake::new(1, Duration::ZERO, Duration::ZERO));
    let mut net = network(&client, 1, 2, server.local_addr()).await;
    net.vote(vote_request(1), option(LONG)).await.unwrap();

    for garbage in [
        &b"\xff\xff\xff\xffxxxx"[..],
        b"\0\0\0\x05hello",
        b"\0\0\0\x11\x42.................",
    ] {
        let mut raw = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(LONG, raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "server should close the connection");
    }
    // A vote body that does not decode: closed as well.
    let mut raw = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let frame = crate::transport::frame::Frame::encode(
        crate::transport::frame::Kind::AppendEntries,
        1,
        1,
        &[0xffu8; 3],
        1024,
    )
    .unwrap();
    raw.write_all(&frame).await.unwrap();
    let n = tokio::time::timeout(LONG, raw.read(&mut [0u8; 16]))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);

    let resp = net.vote(vote_request(2), option(LONG)).await.unwrap();
    assert_eq!(resp.last_log_id, Some(log_id(1, 2)));
}

fn appends(
    count: u64,
    per_request: u64,
    batch_bytes: usize,
) -> Vec<AppendEntriesRequest<TypeConfig>> {
    (0..count)
        .map(|r| {
            let first = r * per_request + 1;
            AppendEntriesRequest {
                vote: Vote::new_committed(1, 1),
                prev_log_id: (first > 1).then(|| log_id(1, first - 1)),
                entries: (first..first + per_request)
                    .map(|i| {
                        Entry::new_normal(
                            log_id(1, i),
                            RecordBatch(Bytes::from(vec![1u8; batch_bytes])),
                        )
                    })
                    .collect(),
                leader_commit: None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_append_pipelines_in_order() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    let fake = Fake::new(1, Duration::ZERO, Duration::from_millis(20));
    register(&server, 1, fake.clone());
    let mut net = network(&client, 1, 2, server.local_addr()).await;

    let requests = appends(40, 2, 100);
    let started = Instant::now();
    let input = futures_util::stream::iter(requests);
    let results: Vec<_> = net
        .stream_append(input, option(LONG))
        .await
        .unwrap()
        .collect()
        .await;
    let acked: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().unwrap().index)
        .collect();
    assert_eq!(acked, (1..=40).map(|r| r * 2).collect::<Vec<_>>());
    let seen: Vec<_> = fake
        .0
        .appends
        .lock()
        .unwrap()
        .iter()
        .map(|(prev, _)| *prev)
        .collect();
    let expected: Vec<_> = (0..40u64).map(|r| (r > 0).then_some(r * 2)).collect();
    assert_eq!(seen, expected, "the follower saw the appends in order");
    // 40 appends of 20 ms each: one at a time would take 800 ms.
    let max = fake.0.max_inflight.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 8, "{max} in flight at most");
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_over_the_byte_budget_are_split() {
    let config = TransportConfig {
        append_budget_bytes: 3000,
        ..TransportConfig::default()
    };
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, config).await;
    let fake = Fake::new(1, Duration::ZERO, Duration::ZERO);
    register(&server, 1, fake.clone());
    let mut net = network(&client, 1, 2, server.local_addr()).await;

    // Ten 1 KiB batches: two per frame under a 3000-byte budget.
    let req = appends(1, 10, 1024).remove(0);
    let input = futures_util::stream::iter(vec![req]);
    let results: Vec<_> = net
        .stream_append(input, option(LONG))
        .await
        .unwrap()
        .collect()
        .await;
    let acked: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().unwrap().index)
        .collect();
    assert_eq!(acked, vec![2, 4, 6, 8, 10]);
    let seen = fake.0.appends.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (None, vec![1, 2]),
            (Some(2), vec![3, 4]),
            (Some(4), vec![5, 6]),
            (Some(6), vec![7, 8]),
            (Some(8), vec![9, 10])
        ]
    );

    // The unary form splits too and answers for the whole request.
    let req = appends(1, 4, 1024).remove(0);
    assert_eq!(
        net.append_entries(req, option(LONG)).await.unwrap(),
        AppendEntriesResponse::Success
    );
    assert_eq!(fake.0.appends.lock().unwrap().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_transfer_leader_travel() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    register(&server, 1, Fake::new(1, Duration::ZERO, Duration::ZERO));
    let mut net = network(&client, 1, 2, server.local_addr()).await;
    let vote = Vote::new_committed(3, 1);
    let snapshot = openraft::Snapshot {
        meta: Default::default(),
        snapshot: b"snapshot bytes".to_vec(),
    };
    let never = std::future::pending();
    let resp = net
        .full_snapshot(vote, snapshot, never, option(LONG))
        .await
        .unwrap();
    assert_eq!(resp.vote, vote);
    let req = openraft::raft::TransferLeaderRequest::new(vote, 2, None);
    net.transfer_leader(req, option(LONG))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_append_times_out_on_progress() {
    let server = start(2, TransportConfig::default()).await;
    let client = start(1, TransportConfig::default()).await;
    register(
        &server,
        1,
        Fake::new(1, Duration::ZERO, Duration::from_secs(5)),
    );
    let mut net = network(&client, 1, 2, server.local_addr()).await;
    let started = Instant::now();
    let input = futures_util::stream::iter(appends(3, 1, 10));
    let results: Vec<_> = net
        .stream_append(input, option(Duration::from_millis(200)))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(results.len(), 1, "the stream ends at its first error");
    assert!(
        matches!(results[0], Err(RPCError::Timeout(_))),
        "{:?}",
        results[0]
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

/// A notice to an address nothing listens at fails as refused (the node is
/// not running); one whose connection is closed at once (what a network
/// cut in a proxy looks like) or never answered fails as not refused: the
/// broker names a node of the first kind to no client, and may name one of
/// the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_told_apart_from_a_cut() {
    let client = start(1, TransportConfig::default()).await;
    let announce = |peer: u64| {
        let client = &client;
        async move {
            client
                .announce(peer, &[], Duration::from_millis(300))
                .await
                .unwrap_err()
        }
    };

    // Nothing listens: bind a port, then free it.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    client.set_peer(2, addr.to_string());
    let e = announce(2).await;
    assert!(e.refused && e.gone, "{e}");
    // Backing off repeats the verdict without connecting.
    let e = announce(2).await;
    assert!(e.refused, "{e}");

    // Accepted, then closed at once.
    let closing = TcpListener::bind("127.0.0.1:0").await.unwrap();
    client.set_peer(3, closing.local_addr().unwrap().to_string());
    tokio::spawn(async move {
        while let Ok((sock, _)) = closing.accept().await {
            drop(sock);
        }
    });
    let e = announce(3).await;
    assert!(!e.refused && e.gone, "{e}");

    // Accepted, never answered.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    client.set_peer(4, silent.local_addr().unwrap().to_string());
    let e = announce(4).await;
    assert!(!e.refused, "{e}");
    drop(silent);
}
