//! Nexmark queries 5, 7 (aggregation stage), 11 and 12
//! as jobs on a real node, created with `weir job create`, over bids from
//! the `nexmark` crate (out of order by up to 5 s). Each job's final results
//! are checked against a computation written here from the events alone,
//! with the rules of docs/stream.md: a partition's watermark is the largest
//! event time it showed before the record, a record is late for a window its
//! own partition's watermark closed, and a window is final once the minimum
//! of the partitions' watermarks passed its end plus the grace (plus the gap
//! for sessions). Windows still open at the end are not compared.
//!
//! Records are keyed by auction (as Nexmark's Kafka sources are): the
//! client's murmur2 partitioner spreads them over three partitions, so the
//! hot auction fills one partition and each partition's order is the order
//! produced. Q5's aggregation runs twice: grouping by the auction field and
//! by the record key (no repartition topic; windows final by their own
//! partition's watermark); Q5 in full runs as a window Top-N (the auctions
//! with the most bids per window, ties kept), and a top 3 per window. Q7 runs twice: as a group window and through the
//! window table function with an alias. Q12 (processing time) is checked where it is deterministic:
//! every bid counted once, in windows aligned to their size.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use weir_client::partitioner::partition_for_key;
use weir_client::{Admin, ClientConfig, NewTopic, ProducerConfig, ProducerRecord};
use weir_tests::bids::{bids, Bid};
use weir_tests::topic_reader::{consume_topic, read_topic};
use weir_tests::{unique, weir, NodeOpts, WeirNode};

const PARTITIONS: i32 = 3;
/// 4 000 bids at 50 events per second: about 87 s of event time.
const BIDS: usize = 4_000;
const EVENTS_PER_SECOND: usize = 50;
/// Shuffled within groups of 250 events: up to 5 s out of order.
const OUT_OF_ORDER: usize = 250;

/// How a job's windows are laid out, for the reference.
#[derive(Debug, Clone, Copy)]
enum Win {
    /// Tumbling or hopping windows: `size` every `slide`.
    Fixed { slide: i64, size: i64 },
    /// Sessions of `gap`.
    Session { gap: i64 },
}

/// A reference result: the group key, window start and end, and the bids of
/// the window as indices into the events (the aggregates are computed from
/// them).
type Window = (u64, i64, i64, Vec<usize>);

/// The final windows of `win` grouped by `key` (a bid → its group key), and
/// the number of records late for all their windows. With `own`, fixed
/// windows are final once their own partition's watermark passed their
/// close (a job grouping by the record key), not the minimum.
fn reference(
    events: &[(i32, Bid)],
    win: Win,
    grace: i64,
    key: impl Fn(&Bid) -> u64,
    own: bool,
) -> (Vec<Window>, u64) {
    let mut late = 0;
    // (key, start) -> (partition, bids)
    let mut fixed: BTreeMap<(u64, i64), (i32, Vec<usize>)> = BTreeMap::new();
    let mut watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    // Per key, the accepted records' gap windows [t, t + gap) and bids.
    let mut gaps: BTreeMap<u64, Vec<(i64, i64, usize)>> = BTreeMap::new();
    let mut min_watermark = i64::MAX;
    for p in 0..PARTITIONS {
        let mut wm: Option<i64> = None;
        for (i, (_, b)) in events.iter().enumerate().filter(|(_, (q, _))| *q == p) {
            let t = b.date_time;
            let closed = |close: i64| wm.is_some_and(|w| close <= w);
            match win {
                Win::Fixed { slide, size } => {
                    let mut took = false;
                    let mut start = t.div_euclid(slide) * slide;
                    while start + size > t {
                        if !closed(start + size + grace) {
                            took = true;
                            fixed
                                .entry((key(b), start))
                                .or_insert_with(|| (p, Vec::new()))
                                .1
                                .push(i);
                        }
                        start -= slide;
                    }
                    late += u64::from(!took);
                }
                Win::Session { gap } => {
                    if closed(t + gap + grace) {
                        late += 1;
                    } else {
                        gaps.entry(key(b)).or_default().push((t, t + gap, i));
                    }
                }
            }
            wm = Some(wm.map_or(t, |w| w.max(t)));
        }
        let wm = wm.expect("bids in every partition");
        watermarks.insert(p, wm);
        min_watermark = min_watermark.min(wm);
    }
    let mut out = Vec::new();
    match win {
        Win::Fixed { size, .. } => {
            for ((k, start), (p, prices)) in fixed {
                let done = if own { watermarks[&p] } else { min_watermark };
                if start + size + grace <= done {
                    out.push((k, start, start + size, prices));
                }
            }
        }
        Win::Session { gap } => {
            for (k, mut windows) in gaps {
                // Sessions: gap windows that overlap or touch merge (as
                // Flink's session windows do).
                windows.sort();
                let mut sessions: Vec<Window> = Vec::new();
                for (start, end, bid) in windows {
                    match sessions.last_mut() {
                        Some(s) if start <= s.2 => {
                            s.2 = s.2.max(end);
                            s.3.push(bid);
                        }
                        _ => sessions.push((k, start, end, vec![bid])),
                    }
                }
                out.extend(
                    sessions
                        .into_iter()
                        .filter(|s| s.2 + gap + grace <= min_watermark),
                );
            }
        }
    }
    (out, late)
}

fn job_status(admin: &str, name: &str) -> Result<serde_json::Value> {
    let text = weir(&["job", "describe", name, "--admin", admin])?;
    Ok(serde_json::from_str::<serde_json::Value>(&text)?["status"].clone())
}

/// The values of `want` records of `topic`, and of any more that come within
/// half a second (duplicates would).
async fn read_values(bootstrap: &str, topic: &str, want: usize) -> Result<Vec<serde_json::Value>> {
    read_topic(bootstrap, topic, want)
        .await?
        .iter()
        .map(|r| Ok(serde_json::from_slice(r.value.as_deref().unwrap_or(b""))?))
        .collect()
}

fn int(v: &serde_json::Value, field: &str) -> Result<i64> {
    v[field].as_i64().with_context(|| format!("{field} in {v}"))
}

/// Checks that `got` is exactly `want` (as a set, and no result twice).
fn same<T: Ord + std::fmt::Debug + Clone>(query: &str, got: Vec<T>, want: Vec<T>) -> Result<()> {
    let distinct: BTreeSet<T> = got.iter().cloned().collect();
    ensure!(
        distinct.len() == got.len(),
        "{query}: {} results written twice",
        got.len() - distinct.len()
    );
    let want: BTreeSet<T> = want.into_iter().collect();
    let missing: Vec<_> = want.difference(&distinct).take(5).collect();
    let extra: Vec<_> = distinct.difference(&want).take(5).collect();
    ensure!(
        distinct == want,
        "{query}: {} results, {} expected; missing (first 5) {missing:?}, unexpected {extra:?}",
        distinct.len(),
        want.len()
    );
    Ok(())
}

/// Waits until job `name` read `records` records; checks its late count.
fn check_counts(admin: &str, name: &str, records: usize, late: u64) -> Result<()> {
    let status = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(admin, name)?;
        Ok((s["records_in"].as_u64() == Some(records as u64)).then_some(s))
    })?;
    ensure!(
        status["late"].as_u64() == Some(late),
        "{name}: late count (want {late}): {status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_queries_match_a_reference_computation() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let input = unique("bid");
    let [q5, q5_key, q5_hot, q5_top3, q7, q7_tvf, q7_full, q11, q12] = [
        "q5", "q5-key", "q5-hot", "q5-top3", "q7", "q7-tvf", "q7-full", "q11", "q12",
    ]
    .map(unique);
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_topic(NewTopic::new(&input, PARTITIONS), false)
        .await?;

    let create = |name: &str, sql: String, grace: &str| -> Result<()> {
        weir(&[
            "job", "create", name, "--sql", &sql, "--grace", grace, "--admin", &admin,
        ])?;
        Ok(())
    };
    // Q5, hot items (its aggregation stage: the bids of each auction per
    // sliding window; the argmax over auctions and its join are not
    // supported).
    let hop = "INTERVAL '2' SECOND, INTERVAL '10' SECOND";
    create(
        "q5",
        format!(
            "INSERT INTO \"{q5}\" SELECT auction, COUNT(*) AS num, HOP_START(dateTime, {hop}) AS starttime \
             FROM \"{input}\" GROUP BY auction, HOP(dateTime, {hop})"
        ),
        "1s",
    )?;
    // The same grouping by the record key (the bids are keyed by auction):
    // no repartition topic, each partition's windows final by its own
    // watermark.
    create(
        "q5-key",
        format!(
            "INSERT INTO \"{q5_key}\" SELECT _key AS auction, COUNT(*) AS num, HOP_START(dateTime, {hop}) AS starttime \
             FROM \"{input}\" GROUP BY _key, HOP(dateTime, {hop})"
        ),
        "1s",
    )?;
    // Q5 in full, as a window Top-N (Flink's form of it): the auctions with
    // the most bids in each window, ties kept (RANK).
    let counts = format!(
        "SELECT auction, COUNT(*) AS num, window_start, window_end \
         FROM TABLE(HOP(TABLE \"{input}\", DESCRIPTOR(dateTime), {hop})) \
         GROUP BY auction, window_start, window_end"
    );
    create(
        "q5-hot",
        format!(
            "INSERT INTO \"{q5_hot}\" SELECT auction, num, window_start AS starttime FROM ( \
               SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rownum \
               FROM ({counts})) WHERE rownum <= 1"
        ),
        "1s",
    )?;
    // The three busiest auctions of each window, numbered (ROW_NUMBER: ties
    // ordered by auction), through qualified columns.
    create(
        "q5-top3",
        format!(
            "INSERT INTO \"{q5_top3}\" SELECT T.auction, T.num, T.window_start AS starttime, T.r FROM ( \
               SELECT C.*, ROW_NUMBER() OVER (PARTITION BY C.window_start, C.window_end ORDER BY C.num DESC) AS r \
               FROM ({counts}) AS C) AS T WHERE T.r < 4"
        ),
        "1s",
    )?;
    // Q7, highest bid (its aggregation stage: the highest price per window,
    // no group key; the join back to the bids is not supported).
    let tumble = "INTERVAL '10' SECOND";
    create(
        "q7",
        format!(
            "INSERT INTO \"{q7}\" SELECT MAX(price) AS maxprice, TUMBLE_START(dateTime, {tumble}) AS starttime \
             FROM \"{input}\" GROUP BY TUMBLE(dateTime, {tumble})"
        ),
        "1s",
    )?;
    // The same through the window table function, with an alias.
    create(
        "q7-tvf",
        format!(
            "INSERT INTO \"{q7_tvf}\" SELECT MAX(B.price) AS maxprice, B.window_start AS starttime \
             FROM TABLE(TUMBLE(TABLE \"{input}\", DESCRIPTOR(dateTime), {tumble})) AS B \
             GROUP BY B.window_start, B.window_end"
        ),
        "1s",
    )?;
    // Q7 in full, as a window Top-N over the bids themselves (Flink's form
    // of it): the bids holding each window's highest price, ties kept.
    create(
        "q7-full",
        format!(
            "INSERT INTO \"{q7_full}\" SELECT auction, price, bidder, dateTime, window_start AS starttime FROM ( \
               SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum \
               FROM TABLE(TUMBLE(TABLE \"{input}\", DESCRIPTOR(dateTime), {tumble}))) WHERE rownum <= 1"
        ),
        "1s",
    )?;
    // Q11, user sessions, as Nexmark writes it (an alias, qualified columns).
    let gap = "INTERVAL '10' SECOND";
    create(
        "q11",
        format!(
            "INSERT INTO \"{q11}\" SELECT B.bidder, COUNT(*) AS bid_count, \
             SESSION_START(B.dateTime, {gap}) AS starttime, SESSION_END(B.dateTime, {gap}) AS endtime \
             FROM \"{input}\" B GROUP BY B.bidder, SESSION(B.dateTime, {gap})"
        ),
        "0s",
    )?;
    // Q12, processing-time windows: bids per bidder per second of reading.
    let proc = "PROCTIME(), INTERVAL '1' SECOND";
    create(
        "q12",
        format!(
            "INSERT INTO \"{q12}\" SELECT B.bidder, COUNT(*) AS bid_count, \
             TUMBLE_START({proc}) AS starttime, TUMBLE_END({proc}) AS endtime \
             FROM \"{input}\" AS B GROUP BY B.bidder, TUMBLE({proc})"
        ),
        "0s",
    )?;

    // Produce, a quarter at a time, so that Q12 reads over several seconds.
    let events: Vec<(i32, Bid)> = bids(BIDS, EVENTS_PER_SECOND, OUT_OF_ORDER)
        .into_iter()
        .map(|b| (partition_for_key(b.key().as_bytes(), PARTITIONS), b))
        .collect();
    // Idempotent: the reference reads each partition in the order sent,
    // which a retried batch overtaken by a later one would break (a
    // partition still opening answers LEADER_NOT_AVAILABLE at first).
    let producer = ProducerConfig::new(&bootstrap)
        .idempotent(true)
        .build()
        .await?;
    let mut pace = tokio::time::interval(Duration::from_millis(700));
    for chunk in events.chunks(BIDS / 4) {
        pace.tick().await;
        for (_, b) in chunk {
            producer
                .send(ProducerRecord::new(&input, b.json()).key(b.key()))
                .await?;
        }
        producer.flush().await?;
    }

    // Q5, by the auction field (windows final by the minimum watermark) and
    // by the record key (by their own partition's).
    for (name, topic, by_key) in [("q5", &q5, false), ("q5-key", &q5_key, true)] {
        let (windows, late) = reference(
            &events,
            Win::Fixed {
                slide: 2_000,
                size: 10_000,
            },
            1_000,
            |b| b.auction,
            by_key,
        );
        // Up to 5 s out of order: late for some hopping windows, never for all.
        ensure!(
            windows.len() > 100 && late == 0,
            "{name}: {late} late, {} windows",
            windows.len()
        );
        let want: Vec<(i64, i64, i64)> = windows
            .iter()
            .map(|(a, s, _, bids)| (*a as i64, *s, bids.len() as i64))
            .collect();
        let got = read_values(&bootstrap, topic, want.len())
            .await?
            .iter()
            .map(|v| {
                // The record key is text.
                let auction = match v["auction"].as_str() {
                    Some(a) if by_key => a.parse().ok(),
                    _ => v["auction"].as_i64(),
                };
                Ok((
                    auction.with_context(|| format!("auction in {v}"))?,
                    int(v, "starttime")?,
                    int(v, "num")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        same(name, got, want.clone())?;
        check_counts(&admin, name, BIDS, late)?;
        if by_key {
            continue;
        }
        // The window Top-N over the same counts: per window, the auctions
        // by count (descending), then auction (ascending).
        let mut by_window: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for (a, s, n) in &want {
            by_window.entry(*s).or_default().push((-n, *a));
        }
        let (mut hot, mut top3) = (Vec::new(), Vec::new());
        let window_count = by_window.len();
        for (s, mut ranked) in by_window {
            ranked.sort();
            let most = ranked[0].0;
            for (i, (n, a)) in ranked.iter().enumerate() {
                if *n == most {
                    hot.push((*a, s, -n));
                }
                if i < 3 {
                    top3.push((*a, s, -n, i as i64 + 1));
                }
            }
        }
        let got = read_values(&bootstrap, &q5_hot, hot.len())
            .await?
            .iter()
            .map(|v| Ok((int(v, "auction")?, int(v, "starttime")?, int(v, "num")?)))
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            window_count > 30 && top3.len() > 2 * window_count,
            "Q5: {window_count} windows, {} in their top 3s",
            top3.len()
        );
        same("Q5 (window Top-N)", got, hot)?;
        check_counts(&admin, "q5-hot", BIDS, late)?;
        let got = read_values(&bootstrap, &q5_top3, top3.len())
            .await?
            .iter()
            .map(|v| {
                Ok((
                    int(v, "auction")?,
                    int(v, "starttime")?,
                    int(v, "num")?,
                    int(v, "r")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        same("Q5 (top 3 by ROW_NUMBER)", got, top3)?;
    }

    // Q7
    let (windows, late) = reference(
        &events,
        Win::Fixed {
            slide: 10_000,
            size: 10_000,
        },
        1_000,
        |_| 0,
        false,
    );
    ensure!(
        windows.len() >= 5 && late > 0,
        "Q7: {late} late, {} windows",
        windows.len()
    );
    let price = |i: &usize| events[*i].1.price as i64;
    let want: Vec<(i64, i64)> = windows
        .iter()
        .map(|(_, s, _, bids)| (*s, bids.iter().map(price).max().expect("a bid")))
        .collect();
    let got = read_values(&bootstrap, &q7, want.len())
        .await?
        .iter()
        .map(|v| Ok((int(v, "starttime")?, int(v, "maxprice")?)))
        .collect::<Result<Vec<_>>>()?;
    same("Q7", got, want.clone())?;
    check_counts(&admin, "q7", BIDS, late)?;
    let got = read_values(&bootstrap, &q7_tvf, want.len())
        .await?
        .iter()
        .map(|v| Ok((int(v, "starttime")?, int(v, "maxprice")?)))
        .collect::<Result<Vec<_>>>()?;
    same("Q7 (window table function)", got, want)?;
    check_counts(&admin, "q7-tvf", BIDS, late)?;
    // Q7 in full: every bid of the window at its highest price.
    let mut want: Vec<(i64, i64, i64, i64, i64)> = Vec::new();
    for (_, s, _, bids) in &windows {
        let top = bids.iter().map(price).max().expect("a bid");
        for b in bids
            .iter()
            .filter(|i| price(i) == top)
            .map(|i| &events[*i].1)
        {
            want.push((
                *s,
                b.auction as i64,
                b.price as i64,
                b.bidder as i64,
                b.date_time,
            ));
        }
    }
    let got = read_values(&bootstrap, &q7_full, want.len())
        .await?
        .iter()
        .map(|v| {
            Ok((
                int(v, "starttime")?,
                int(v, "auction")?,
                int(v, "price")?,
                int(v, "bidder")?,
                int(v, "dateTime")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    same("Q7 in full (window Top-N over the bids)", got, want)?;
    check_counts(&admin, "q7-full", BIDS, late)?;
    // The last window is still open (no later bid closes it): a query (no
    // group key: `[]`) shows its best bids so far, each a bid of its window
    // (a bid late by its own partition may be missing from an open window,
    // so the price is not compared with the input's highest).
    let open = weir(&["job", "query", "q7-full", "--key", "[]", "--admin", &admin])?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()?;
    let last = windows.iter().map(|w| w.1).max().expect("a window");
    let real = |v: &serde_json::Value| -> Result<bool> {
        let (start, time) = (int(v, "starttime")?, int(v, "dateTime")?);
        Ok(start > last
            && (start..start + 10_000).contains(&time)
            && events.iter().any(|(_, b)| {
                (
                    b.date_time,
                    b.auction as i64,
                    b.price as i64,
                    b.bidder as i64,
                ) == (
                    time,
                    int(v, "auction").unwrap_or(-1),
                    int(v, "price").unwrap_or(-1),
                    int(v, "bidder").unwrap_or(-1),
                )
            }))
    };
    ensure!(!open.is_empty(), "Q7 in full: no open window to query");
    for v in &open {
        ensure!(
            real(v)?,
            "Q7 in full, open window queried: {v} is no bid of its window"
        );
        ensure!(
            open.iter()
                .filter(|o| o["starttime"] == v["starttime"])
                .all(|o| o["price"] == v["price"]),
            "Q7 in full, open window queried: rank-1 rows of one window differ in price: {open:?}"
        );
    }
    // Q11
    let (sessions, late) = reference(
        &events,
        Win::Session { gap: 10_000 },
        0,
        |b| b.bidder,
        false,
    );
    ensure!(
        sessions.iter().filter(|s| s.3.len() > 1).count() > 10,
        "Q11: too few sessions of several bids in {}",
        sessions.len()
    );
    let want: Vec<(i64, i64, i64, i64)> = sessions
        .iter()
        .map(|(k, s, e, bids)| (*k as i64, *s, *e, bids.len() as i64))
        .collect();
    let got = read_values(&bootstrap, &q11, want.len())
        .await?
        .iter()
        .map(|v| {
            Ok((
                int(v, "bidder")?,
                int(v, "starttime")?,
                int(v, "endtime")?,
                int(v, "bid_count")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    same("Q11", got, want)?;
    check_counts(&admin, "q11", BIDS, late)?;

    // Q12: processing-time windows close on the clock, with no later
    // record: every bid ends up counted in a final window.
    let mut per_bidder: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, b) in &events {
        *per_bidder.entry(b.bidder as i64).or_default() += 1;
    }
    let mut out = consume_topic(&bootstrap, &q12).await?;
    let mut counted: BTreeMap<i64, i64> = BTreeMap::new();
    let mut seen: BTreeSet<(i64, i64)> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counted != per_bidder {
        ensure!(
            Instant::now() < deadline,
            "Q12: per-bidder counts differ after 30 s ({} bidders counted, {} expected); \
             first difference: {:?}",
            counted.len(),
            per_bidder.len(),
            per_bidder
                .iter()
                .find(|(b, n)| counted.get(b) != Some(n))
                .map(|(b, n)| (b, n, counted.get(b)))
        );
        for r in out
            .poll(Duration::from_millis(300))
            .await
            .unwrap_or_default()
        {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b""))?;
            let (bidder, start, end) = (
                int(&v, "bidder")?,
                int(&v, "starttime")?,
                int(&v, "endtime")?,
            );
            ensure!(
                start % 1_000 == 0 && end == start + 1_000,
                "Q12: window not aligned to its size: {v}"
            );
            ensure!(seen.insert((bidder, start)), "Q12: a window twice: {v}");
            *counted.entry(bidder).or_default() += int(&v, "bid_count")?;
        }
        for (bidder, n) in &counted {
            ensure!(
                per_bidder.get(bidder).is_some_and(|want| n <= want),
                "Q12: bidder {bidder} counted {n} times, {:?} bids",
                per_bidder.get(bidder)
            );
        }
    }
    Ok(())
}
