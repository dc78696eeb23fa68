//! Windowed SQL jobs on a real node, created with `weir job create`, checked
//! against a computation written here from the input alone: out-of-order
//! events in three partitions, late events, unreadable records; the same
//! job replayed from `earliest` into a second topic gives the same results.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use weir_client::{Admin, ClientConfig, ConsumerRecord, NewTopic, ProducerConfig, ProducerRecord};
use weir_tests::topic_reader::read_topic;
use weir_tests::{unique, weir, weir_bin, NodeOpts, WeirNode};

/// One input event: partition, customer, event time, amount.
type Event = (i32, i64, i64, f64);
/// One final window: customer, window start, total, count.
type Total = (i64, i64, String, i64);

const WINDOW_MS: i64 = 2_000;
const GRACE_MS: i64 = 500;

/// Events roughly 100 ms apart per partition, out of order by up to 1.5 s,
/// so that some fall behind their partition's watermark by more than the
/// grace.
fn events() -> Vec<Event> {
    let mut out = Vec::new();
    let mut seed = 0x2545_f491_u64;
    for p in 0..3 {
        for i in 0..300i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let jitter = (seed % 3_001) as i64 - 1_500;
            let ts = 1_700_000_000_000 + i * 100 + jitter + i64::from(p) * 37;
            out.push((
                p,
                (seed >> 20) as i64 % 5,
                ts,
                ((seed >> 8) % 40) as f64 * 0.5,
            ));
        }
    }
    out
}

/// The final windows and the late count, from per-partition watermarks and
/// the minimum across partitions.
fn reference(events: &[Event]) -> (BTreeSet<Total>, u64) {
    let (finals, _, late) = reference_with_open(events);
    (finals, late)
}

/// [`reference`], with the windows still open at the end.
fn reference_with_open(events: &[Event]) -> (BTreeSet<Total>, BTreeSet<Total>, u64) {
    reference_by(events, false)
}

/// The events of [`events`], each customer's in one partition (customer
/// mod 3), as a producer keying by customer sends them.
fn keyed_events() -> Vec<Event> {
    events()
        .into_iter()
        .map(|(_, c, ts, amount)| ((c % 3) as i32, c, ts, amount))
        .collect()
}

/// [`reference_with_open`] of a job grouping by the record key: every
/// customer's windows are in one partition and close by its watermark
/// alone.
fn reference_keyed(events: &[Event]) -> (BTreeSet<Total>, BTreeSet<Total>, u64) {
    reference_by(events, true)
}

/// The final and open windows and the late count: lateness by each
/// partition's watermark, windows final by the minimum across partitions,
/// or by their own partition's (`own`).
fn reference_by(events: &[Event], own: bool) -> (BTreeSet<Total>, BTreeSet<Total>, u64) {
    // (customer, start) -> (sum, count, partition)
    let mut windows: BTreeMap<(i64, i64), (f64, i64, i32)> = BTreeMap::new();
    let mut late = 0;
    let mut max_ts = BTreeMap::new();
    let partitions: BTreeSet<i32> = events.iter().map(|e| e.0).collect();
    for p in partitions {
        let mut wm: Option<i64> = None;
        for &(_, c, ts, amount) in events.iter().filter(|e| e.0 == p) {
            let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
            if wm.is_some_and(|w| start + WINDOW_MS + GRACE_MS <= w) {
                late += 1;
            } else {
                let e = windows.entry((c, start)).or_insert((0.0, 0, p));
                e.0 += amount;
                e.1 += 1;
            }
            wm = Some(wm.map_or(ts, |w| w.max(ts)));
        }
        max_ts.insert(p, wm.expect("events in every partition"));
    }
    let min = *max_ts.values().min().expect("partitions");
    let (finals, open): (Vec<_>, Vec<_>) =
        windows.into_iter().partition(|((_, start), (_, _, p))| {
            start + WINDOW_MS + GRACE_MS <= if own { max_ts[p] } else { min }
        });
    let totals = |w: Vec<(_, (f64, i64, i32))>| {
        w.into_iter()
            .map(|((c, start), (sum, n, _))| (c, start, format!("{sum}"), n))
            .collect()
    };
    (totals(finals), totals(open), late)
}

/// Every record `topic` holds now (up to each partition's end offset).
async fn read_to_end(bootstrap: &str, topic: &str) -> Result<Vec<ConsumerRecord>> {
    let admin = Admin::connect(ClientConfig::new(bootstrap)).await?;
    let tps = admin.partitions(topic).await?;
    let ends = admin
        .list_offsets(&tps, weir_client::OffsetSpec::Latest)
        .await?;
    let want: i64 = ends.values().map(|l| l.offset.max(0)).sum();
    read_topic(bootstrap, topic, usize::try_from(want)?).await
}

fn totals(records: &[ConsumerRecord]) -> Result<Vec<Total>> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b""))?;
            Ok((
                customer(&v)?,
                v["window_start"].as_i64().context("window_start")?,
                format!("{}", v["total"].as_f64().context("total")?),
                v["n"].as_i64().context("n")?,
            ))
        })
        .collect()
}

/// The `customerId` of a result: a number, or its text when the job
/// grouped by the record key.
fn customer(v: &serde_json::Value) -> Result<i64> {
    let c = &v["customerId"];
    c.as_i64()
        .or_else(|| c.as_str()?.parse().ok())
        .with_context(|| format!("customerId in {v}"))
}

/// The input records a job's status says it has read: the sum of its
/// input partitions' positions (counts restart when a task moves; positions
/// do not).
fn records_read(status: &serde_json::Value) -> Result<i64> {
    Ok(status["partitions"]
        .as_object()
        .context("partitions")?
        .values()
        .filter_map(|p| p["position"].as_i64())
        .sum())
}

/// The results of job `job` in `out` once there are as many as `want`;
/// when they do not come, says which are missing and how the job stands.
async fn read_totals(
    node: &WeirNode,
    out: &str,
    job: &str,
    want: &BTreeSet<Total>,
) -> Result<Vec<Total>> {
    match read_topic(node.bootstrap(), out, want.len()).await {
        Ok(r) => totals(&r),
        Err(e) => {
            let held: BTreeSet<Total> =
                totals(&weir_tests::topic_reader::read_available(node.bootstrap(), out).await?)?
                    .into_iter()
                    .collect();
            let missing: Vec<_> = want.difference(&held).collect();
            let extra: Vec<_> = held.difference(want).collect();
            let status = job_status(node.admin_addr(), job)?;
            Err(e.context(format!(
                "{out} holds {} results; missing {missing:?}; not expected {extra:?}; job status {status}",
                held.len()
            )))
        }
    }
}

fn job_status(admin: &str, name: &str) -> Result<serde_json::Value> {
    let text = weir(&["job", "describe", name, "--admin", admin])?;
    Ok(serde_json::from_str::<serde_json::Value>(&text)?["status"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumbling_job_matches_an_independent_computation_live_and_replayed() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, out2, late) = (
        unique("tx"),
        unique("totals"),
        unique("replay"),
        unique("late"),
    );
    create_input(&bootstrap, &input, 3, -1).await?;
    let evs = events();
    // Idempotent: the reference reads each partition in the order sent.
    let producer = ProducerConfig::new(&bootstrap)
        .idempotent(true)
        .build()
        .await?;
    for (i, &(p, c, ts, amount)) in evs.iter().enumerate() {
        let value = format!(r#"{{"customerId": {c}, "transactionSum": {amount}, "ts": {ts}}}"#);
        producer
            .send(ProducerRecord::new(&input, value).partition(p))
            .await?;
        if i % 100 == 50 {
            // Unreadable records are counted and set aside, never fatal.
            producer
                .send(
                    ProducerRecord::new(&input, "not json")
                        .partition(p)
                        .header("origin", "test"),
                )
                .await?;
        }
    }
    // Tombstones too.
    for p in 0..3 {
        let mut tombstone = ProducerRecord::new(&input, "").partition(p).key("k");
        tombstone.value = None;
        producer.send(tombstone).await?;
    }
    producer.flush().await?;
    let bad = evs.len().div_ceil(100) as u64 + 3;
    let set_aside_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let (want, want_late) = reference(&evs);
    let sql = |to: &str| totals_sql(&input, to);
    create_job_with_late("totals", &sql(&out), &late, &admin)?;
    let got = read_totals(&node, &out, "totals", &want).await?;
    ensure!(
        got.len() == want.len(),
        "{} results, {} expected (duplicates?)",
        got.len(),
        want.len()
    );
    let got_set: BTreeSet<Total> = got.iter().cloned().collect();
    ensure!(
        got_set == want,
        "results differ from the reference:\n got {got_set:?}\nwant {want:?}"
    );

    // Queryable state: each customer's open windows, as they stand.
    let (_, open, _) = reference_with_open(&evs);
    let read = ReadAll {
        records: evs.len() as u64 + bad,
        bad,
        late: want_late,
        late_topic: &late,
        open: &open,
    };
    read.check(&bootstrap, &admin, "totals").await?;
    // Found from outside: set-aside copies lost their headers, tombstones
    // became empty values ("not JSON: EOF while parsing"), and they kept
    // the input's 2023 timestamps, which the late topic's retention deleted
    // at once. Now each keeps its value (null too) and headers, says where
    // and when it came from, and is stamped when it is set aside.
    let aside = read_topic(&bootstrap, &late, (bad + want_late) as usize).await?;
    let header = |r: &ConsumerRecord, k: &str| {
        r.headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.clone())
    };
    let reason = |r: &ConsumerRecord| header(r, "weir-reason").unwrap_or_default();
    for r in &aside {
        ensure!(
            r.timestamp >= set_aside_after && header(r, "weir-source-timestamp").is_some(),
            "a set-aside record stamped {} (the job started after {set_aside_after}): {:?}",
            r.timestamp,
            r.headers
        );
    }
    let tombstones: Vec<&ConsumerRecord> = aside
        .iter()
        .filter(|r| reason(r).as_ref() == b"the value is null (a tombstone)")
        .collect();
    ensure!(
        tombstones.len() == 3 && tombstones.iter().all(|r| r.value.is_none()),
        "tombstones set aside: {:?}",
        aside.iter().map(reason).collect::<Vec<_>>()
    );
    let not_json: Vec<&ConsumerRecord> = aside
        .iter()
        .filter(|r| reason(r).starts_with(b"the value is not JSON"))
        .collect();
    ensure!(
        not_json.len() as u64 == bad - 3
            && not_json
                .iter()
                .all(|r| header(r, "origin").as_deref() == Some(b"test".as_slice())),
        "records that are not JSON set aside without their headers: {:?}",
        not_json.iter().map(|r| &r.headers).collect::<Vec<_>>()
    );

    // Kappa: the same statement over the whole history, into a new topic.
    weir(&[
        "job",
        "create",
        "replay",
        "--sql",
        &sql(&out2),
        "--grace",
        "500ms",
        "--admin",
        &admin,
    ])?;
    let again = read_totals(&node, &out2, "replay", &want).await?;
    let per_key = |v: &[Total]| {
        let mut m: BTreeMap<i64, Vec<Total>> = BTreeMap::new();
        for t in v {
            m.entry(t.0).or_default().push(t.clone());
        }
        m
    };
    ensure!(
        per_key(&again) == per_key(&got),
        "the replay differs from the live run"
    );
    // Describe says when the replay has caught up with the input's head.
    let records = (evs.len() as u64 + bad) as i64;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "replay")?;
        let read = records_read(&s)?;
        Ok((s["caught_up"] == true && s["lag"] == 0 && read == records).then_some(()))
    })
    .context("the replay never showed caught up")?;
    let listed = weir(&["job", "list", "--admin", &admin])?;
    ensure!(
        listed.contains("totals") && listed.contains("replay"),
        "{listed}"
    );
    // One row per job, its counts under the IN and OUT headers.
    let lines: Vec<&str> = listed.lines().collect();
    ensure!(lines.len() == 3, "a header and two rows: {listed}");
    let out_end = lines[0].find("OUT").context("an OUT column")? + 3;
    for row in &lines[1..] {
        ensure!(
            row.as_bytes()
                .get(out_end - 1)
                .is_some_and(u8::is_ascii_digit)
                && row.as_bytes().get(out_end) == Some(&b' '),
            "a count does not end under OUT:\n{listed}"
        );
    }
    weir(&["job", "drop", "replay", "--admin", &admin])?;
    let listed = weir(&["job", "list", "--admin", &admin])?;
    ensure!(
        !listed.contains("replay"),
        "dropped job still listed: {listed}"
    );
    // Its repartition topic goes with it (a deleted topic may still be
    // listed for a moment).
    weir_tests::poll_until(Duration::from_secs(30), || {
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        Ok((!topics.contains("__weir_job-replay")).then_some(()))
    })
    .context("the dropped job's repartition topic stayed")?;
    // A job created again under a dropped job's name is a new job: it
    // starts from `--from` (earliest here) with nothing of the old one's
    // state, so the same statement writes every result a second time.
    weir(&[
        "job",
        "create",
        "replay",
        "--sql",
        &sql(&out2),
        "--grace",
        "500ms",
        "--from",
        "earliest",
        "--admin",
        &admin,
    ])?;
    let twice = totals(&read_topic(&bootstrap, &out2, 2 * want.len()).await?)?;
    ensure!(
        twice.len() == 2 * want.len(),
        "{} results after the job was created again, {} expected",
        twice.len(),
        2 * want.len()
    );
    let mut counts: BTreeMap<&Total, usize> = BTreeMap::new();
    for t in &twice {
        *counts.entry(t).or_default() += 1;
    }
    ensure!(
        counts.values().all(|n| *n == 2)
            && counts.keys().copied().cloned().collect::<BTreeSet<_>>()
                == got.iter().cloned().collect::<BTreeSet<_>>(),
        "the recreated job did not write every result of the live run once more"
    );
    Ok(())
}

/// What a job shows once it read all its input.
struct ReadAll<'a> {
    /// Input records.
    records: u64,
    /// Unreadable ones.
    bad: u64,
    /// Late ones.
    late: u64,
    /// Where bad and late records are set aside.
    late_topic: &'a str,
    /// The windows still open (not empty: the query needs one).
    open: &'a BTreeSet<Total>,
}

impl ReadAll<'_> {
    /// Checks job `name` on the node at `bootstrap` / `admin`: every record
    /// counted, the bad and late ones as such and in the late topic, and the
    /// open windows as `weir job query` gives them.
    async fn check(&self, bootstrap: &str, admin: &str, name: &str) -> Result<()> {
        let status = weir_tests::poll_until(Duration::from_secs(30), || {
            let s = job_status(admin, name)?;
            Ok((s["records_in"].as_u64() == Some(self.records)).then_some(s))
        })?;
        ensure!(
            status["bad"].as_u64() == Some(self.bad),
            "bad count: {status}"
        );
        ensure!(
            status["late"].as_u64() == Some(self.late),
            "late count (want {}): {status}",
            self.late
        );
        ensure!(
            !self.open.is_empty(),
            "the input leaves no window open: the query test needs one"
        );
        let queried = query_open_windows(admin, name)?;
        ensure!(
            queried == *self.open,
            "open windows:\n got {queried:?}\nwant {:?}",
            self.open
        );
        let aside = (self.bad + self.late) as usize;
        let set_aside = read_topic(bootstrap, self.late_topic, aside).await?;
        ensure!(set_aside.len() == aside, "late topic: {}", set_aside.len());
        Ok(())
    }
}

/// The open windows of customers 0..5 in job `name`, as `weir job query`
/// through the admin listener at `admin` returns them.
fn query_open_windows(admin: &str, name: &str) -> Result<BTreeSet<Total>> {
    let mut queried = BTreeSet::new();
    for c in 0..5 {
        let text = weir(&[
            "job",
            "query",
            name,
            "--key",
            &c.to_string(),
            "--admin",
            admin,
        ])?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        for v in lines {
            queried.insert((
                customer(&v)?,
                v["window_start"].as_i64().context("window_start")?,
                format!("{}", v["total"].as_f64().context("total")?),
                v["n"].as_i64().context("n")?,
            ));
        }
    }
    Ok(queried)
}

/// `weir job create NAME --sql SQL --grace 500ms --late-topic LATE`.
fn create_job_with_late(name: &str, sql: &str, late: &str, admin: &str) -> Result<()> {
    weir(&[
        "job",
        "create",
        name,
        "--sql",
        sql,
        "--grace",
        "500ms",
        "--late-topic",
        late,
        "--admin",
        admin,
    ])?;
    Ok(())
}

/// Creates the input topic with `partitions` partitions of `replicas`
/// replicas.
async fn create_input(bootstrap: &str, topic: &str, partitions: i32, replicas: i16) -> Result<()> {
    let mut t = NewTopic::new(topic, partitions);
    t.replication_factor = replicas;
    Admin::connect(ClientConfig::new(bootstrap))
        .await?
        .create_topic(t, false)
        .await?;
    Ok(())
}

/// The seed's query over `input` into `out`, with 2 s windows (topic names
/// with dashes are quoted identifiers).
fn totals_sql(input: &str, out: &str) -> String {
    format!(
        "INSERT INTO \"{out}\" SELECT customerId, TUMBLE_START(ts, INTERVAL '2' SECOND) AS window_start, \
         SUM(transactionSum) AS total, COUNT(*) AS n FROM \"{input}\" \
         GROUP BY customerId, TUMBLE(ts, INTERVAL '2' SECOND)"
    )
}

/// [`totals_sql`] grouping by the record key (the customer, as text).
fn keyed_totals_sql(input: &str, out: &str) -> String {
    format!(
        "INSERT INTO \"{out}\" SELECT _key AS customerId, TUMBLE_START(ts, INTERVAL '2' SECOND) AS window_start, \
         SUM(transactionSum) AS total, COUNT(*) AS n FROM \"{input}\" \
         GROUP BY _key, TUMBLE(ts, INTERVAL '2' SECOND)"
    )
}

/// The first (`first`) or second half of each partition's events
/// (`events` lists each partition's 300 events together, in order).
fn half(evs: &[Event], first: bool) -> Vec<Event> {
    evs.iter()
        .enumerate()
        .filter(|(i, _)| (i % 300 < 150) == first)
        .map(|(_, e)| *e)
        .collect()
}

/// Waits until job `name` (asked at `admin`) is caught up, having read
/// `records` input records.
fn await_read(admin: &str, name: &str, records: i64) -> Result<()> {
    weir_tests::poll_until(Duration::from_secs(60), || {
        let s = job_status(admin, name)?;
        Ok((s["caught_up"] == true && records_read(&s)? == records).then_some(()))
    })
    .with_context(|| {
        format!(
            "{records} input records not read: {}",
            job_status(admin, name).unwrap_or_default()
        )
    })
}

/// Waits until `out` holds a first result (to kill a node right then, when
/// some results are not checkpointed yet).
async fn await_first_result(bootstrap: &str, out: &str) -> Result<()> {
    let probe = Admin::connect(ClientConfig::new(bootstrap)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure!(Instant::now() < deadline, "no result in 60 s");
        if let Ok(tps) = probe.partitions(out).await {
            let ends = probe
                .list_offsets(&tps, weir_client::OffsetSpec::Latest)
                .await;
            if ends.is_ok_and(|e| e.values().map(|l| l.offset).sum::<i64>() > 0) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// On `node`: an input topic of three partitions holding the first half of
/// the events, and job `name` over it (the seed query, grace 500 ms,
/// `extra` options; grouping by the record key over [`keyed_events`] when
/// `keyed`). Returns the input and output topics and the events.
async fn job_over_first_half(
    node: &WeirNode,
    name: &str,
    extra: &[&str],
    keyed: bool,
) -> Result<(String, String, Vec<Event>)> {
    let (bootstrap, admin) = (node.bootstrap(), node.admin_addr());
    let (input, out) = (unique("tx"), unique("out"));
    create_input(bootstrap, &input, 3, -1).await?;
    let evs = if keyed { keyed_events() } else { events() };
    produce(bootstrap, &input, &half(&evs, true)).await?;
    let sql = if keyed {
        keyed_totals_sql(&input, &out)
    } else {
        totals_sql(&input, &out)
    };
    let mut args = vec!["job", "create", name, "--sql", &sql, "--grace", "500ms"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--admin", admin]);
    weir(&args)?;
    Ok((input, out, evs))
}

/// A single node running job `name` (the seed query, grace 500 ms, `extra`
/// options) over the first half of the events, killed with −9 right after
/// the job's first results, restarted, then given the second half. Returns
/// the node, its bootstrap address, the output topic and the events in
/// the order they were produced.
async fn killed_after_first_results(
    name: &str,
    extra: &[&str],
    keyed: bool,
) -> Result<(WeirNode, String, String, Vec<Event>)> {
    let mut node = WeirNode::start(NodeOpts::default())?;
    let (input, out, evs) = job_over_first_half(&node, name, extra, keyed).await?;
    await_first_result(node.bootstrap(), &out).await?;
    node.kill()?;
    node.restart()?;
    let bootstrap = node.bootstrap().to_string();
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let produced = [half(&evs, true), half(&evs, false)].concat();
    Ok((node, bootstrap, out, produced))
}

/// Every result in `got` once, and exactly the reference's.
fn exactly_once(got: &[Total], want: &BTreeSet<Total>) -> Result<()> {
    let distinct: BTreeSet<Total> = got.iter().cloned().collect();
    ensure!(
        distinct.len() == got.len(),
        "{} results written twice",
        got.len() - distinct.len()
    );
    let missing: Vec<&Total> = want.difference(&distinct).take(5).collect();
    let extra: Vec<&Total> = distinct.difference(want).take(5).collect();
    ensure!(
        distinct == *want,
        "results differ from the reference: missing {missing:?}, unexpected {extra:?}"
    );
    Ok(())
}

/// Produces `evs` to their partitions of `topic`, keyed by customer.
async fn produce(bootstrap: &str, topic: &str, evs: &[Event]) -> Result<()> {
    // Idempotent: the reference reads each partition in the order sent,
    // which a retried batch overtaken by a later one would break.
    let producer = ProducerConfig::new(bootstrap)
        .idempotent(true)
        .build()
        .await?;
    let mut delivered = Vec::with_capacity(evs.len());
    for &(p, c, ts, amount) in evs {
        let value = format!(r#"{{"customerId": {c}, "transactionSum": {amount}, "ts": {ts}}}"#);
        delivered.push(
            producer
                .send(
                    ProducerRecord::new(topic, value)
                        .key(c.to_string())
                        .partition(p),
                )
                .await?,
        );
    }
    producer.flush().await?;
    for d in delivered {
        d.await.context("an input record was not delivered")?;
    }
    Ok(())
}

/// kill −9 of the node running a job, right after its first results: after
/// the restart the task resumes from its checkpoint, and every final result
/// is in the output exactly once (none missing, none twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_final_result_appears_exactly_once_across_a_kill() -> Result<()> {
    let (node, bootstrap, out, evs) = killed_after_first_results("eo", &[], false).await?;
    let (want, _) = reference(&evs);
    let got = match read_topic(&bootstrap, &out, want.len()).await {
        Ok(r) => totals(&r)?,
        Err(e) => {
            let log: Vec<String> = node
                .stderr_all()
                .lines()
                .filter(|l| l.contains("job"))
                .map(str::to_string)
                .collect();
            let status = job_status(node.admin_addr(), "eo")?;
            return Err(e.context(format!(
                "job status {status}\njob log lines:\n{}",
                log.join("\n")
            )));
        }
    };
    exactly_once(&got, &want)?;
    // The job's count of results written covers those the killed task
    // wrote after its last checkpoint (skipped, not written again, by the
    // restarted one): it is the output's count.
    let status = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(node.admin_addr(), "eo")?;
        Ok((s["records_out"].as_u64() >= Some(got.len() as u64)).then_some(s))
    })
    .with_context(|| {
        format!(
            "records_out below the {} results in the output: {}",
            got.len(),
            job_status(node.admin_addr(), "eo").unwrap_or_default()
        )
    })?;
    ensure!(
        status["records_out"].as_u64() == Some(got.len() as u64),
        "records_out {} for {} results in the output",
        status["records_out"],
        got.len()
    );
    println!(
        "recovery skipped {} results already written",
        status["skipped_on_recovery"]
    );
    Ok(())
}

/// Found from outside: the output topic of a running job was deleted and
/// more input produced; the job retried its writes for 30 s, reading
/// nothing, while `job describe` said it was running, caught up, lag 0.
/// Now the lag counts what arrived since the task's last report, the task
/// stops at once saying why, then creates the topic again and goes on from
/// its checkpoint: the new topic holds the reference's results, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_output_topic_is_deleted_says_so_and_goes_on() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, evs) = job_over_first_half(&node, "od", &[], false).await?;
    let first = half(&evs, true).len() as i64;
    await_read(&admin, "od", first)?;
    await_first_result(&bootstrap, &out).await?;
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .delete_topics(std::slice::from_ref(&out))
        .await?;
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let total = evs.len() as i64;
    let mut said = None;
    weir_tests::poll_until(Duration::from_secs(90), || {
        let s = job_status(&admin, "od")?;
        let read = records_read(&s)?;
        ensure!(
            !(s["caught_up"] == true && read < total),
            "caught up having read {read} of {total} input records: {s}"
        );
        let state = s["state"].as_str().unwrap_or_default();
        if state.contains(&format!("output topic {out} was deleted")) {
            said = Some(state.to_string());
        }
        Ok((s["caught_up"] == true && read == total).then_some(()))
    })
    .with_context(|| {
        format!(
            "the job did not go on: {}",
            job_status(&admin, "od").unwrap_or_default()
        )
    })?;
    let said = said.context("the job never said its output topic was deleted")?;
    ensure!(
        said.contains("goes on from its last checkpoint"),
        "the state does not read whole: {said}"
    );
    // The results the deleted topic held are gone with it; what the new one
    // holds are the reference's, each once (among them the last windows,
    // which fired after the second half).
    let (want, _) = reference(&evs);
    let got = totals(&read_to_end(&bootstrap, &out).await?)?;
    let distinct: BTreeSet<Total> = got.iter().cloned().collect();
    ensure!(
        distinct.len() == got.len(),
        "results written twice: {got:?}"
    );
    let extra: Vec<&Total> = distinct.difference(&want).take(5).collect();
    ensure!(extra.is_empty(), "results not in the reference: {extra:?}");
    let last = want.iter().map(|t| t.1).max();
    ensure!(
        got.iter().any(|t| Some(t.1) == last),
        "no result of the last window in the new output ({} results)",
        got.len()
    );
    Ok(())
}

/// Found from outside: the input topic of a running job was deleted and
/// created again under the same name, and the new one's records were
/// dropped as replays (their offsets, from 0 again, were below those the
/// job had taken from the old one). The job now reads the new topic from
/// its start, its records numbered after the old one's: the output holds
/// the reference's results over both, each once. The input is deleted
/// right after results its last checkpoint may not cover (found in
/// review: a task reading its input itself then wrote them again on the
/// new topic, from the records its checkpoint held). The topic is created
/// again at once, while the job's tasks run on (`stopped` false), or once
/// they stopped (`stopped` true: they start again from their checkpoints).
async fn input_created_again(name: &str, keyed: bool, stopped: bool) -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, evs) = job_over_first_half(&node, name, &[], keyed).await?;
    let first = half(&evs, true).len() as i64;
    await_read(&admin, name, first)?;
    await_first_result(&bootstrap, &out).await?;
    // The first 30 events of each partition's second half, then their
    // results, then the delete at once.
    let reference_of = |evs: &[Event]| match keyed {
        true => reference_keyed(evs).0,
        false => reference(evs).0,
    };
    let second = half(&evs, false);
    let mut seen = [0usize; 3];
    let (mid, rest): (Vec<Event>, Vec<Event>) = second.iter().partition(|e| {
        seen[e.0 as usize] += 1;
        seen[e.0 as usize] <= 30
    });
    produce(&bootstrap, &input, &mid).await?;
    let so_far = reference_of(&[half(&evs, true), mid.clone()].concat());
    read_totals(&node, &out, name, &so_far).await?;
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .delete_topics(std::slice::from_ref(&input))
        .await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, name)?;
        Ok(s["state"]
            .as_str()
            .is_some_and(|st| st.contains("waiting for its input topic"))
            .then_some(()))
    })
    .with_context(|| {
        format!(
            "the job does not wait for its deleted input: {}",
            job_status(&admin, name).unwrap_or_default()
        )
    })?;
    if stopped {
        let tasks = node.stderr_all().matches("job task started").count();
        weir_tests::poll_until(Duration::from_secs(30), || {
            let ended = node.stderr_all().matches("job task ended").count();
            Ok((ended >= tasks).then_some(()))
        })
        .context("the job's tasks did not stop when its input was deleted")?;
    }
    create_input(&bootstrap, &input, 3, -1).await?;
    produce(&bootstrap, &input, &rest).await?;
    // In the order produced (each half may hold any part of a partition's
    // events).
    let want = reference_of(&[half(&evs, true), mid, rest].concat());
    let got = read_totals(&node, &out, name, &want).await?;
    exactly_once(&got, &want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_input_topic_is_created_again_reads_the_new_one() -> Result<()> {
    input_created_again("ic", false, false).await?;
    input_created_again("ics", false, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_grouping_by_the_record_key_reads_its_recreated_input() -> Result<()> {
    input_created_again("ick", true, false).await?;
    input_created_again("icks", true, true).await
}

/// A job grouping by the record key (`_key`) needs no repartition topic:
/// each input partition's windows run where it is read and close by its
/// own watermark, and the results go to the output partition of the same
/// number, keyed like the input. Checked against the reference, with late
/// and unreadable records (keys that are not UTF-8 among them), open
/// windows queried by key, and an output topic of another partition count
/// refused at create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_grouping_by_the_record_key_reads_its_input_without_repartitioning() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, late) = (unique("keyed"), unique("by-key"), unique("late"));
    create_input(&bootstrap, &input, 3, -1).await?;
    let evs = keyed_events();
    produce(&bootstrap, &input, &evs).await?;
    let producer = ProducerConfig::new(&bootstrap).build().await?;
    for p in 0..3 {
        let no_text = ProducerRecord::new(&input, r#"{"ts": 1700000000000}"#)
            .key(vec![0xffu8, 0xfe])
            .partition(p);
        let no_json = ProducerRecord::new(&input, "not json")
            .key("0")
            .partition(p);
        for rec in [no_text, no_json] {
            producer.send(rec).await?.await?;
        }
    }
    let bad = 6u64;
    let (want, open, want_late) = reference_keyed(&evs);
    let sql = keyed_totals_sql(&input, &out);
    create_job_with_late("keyed", &sql, &late, &admin)?;
    let records = read_topic(&bootstrap, &out, want.len()).await?;
    let got = totals(&records)?;
    exactly_once(&got, &want)?;
    for (r, t) in records.iter().zip(&got) {
        ensure!(
            r.partition == (t.0 % 3) as i32 && r.key.as_deref() == Some(t.0.to_string().as_bytes()),
            "customer {}'s result in partition {} with key {:?}",
            t.0,
            r.partition,
            r.key
        );
    }
    ensure!(want_late > 0, "the input has no late record");
    let read = ReadAll {
        records: evs.len() as u64 + bad,
        bad,
        late: want_late,
        late_topic: &late,
        open: &open,
    };
    read.check(&bootstrap, &admin, "keyed").await?;
    // Its tasks report the input partitions they read, as route tasks do.
    let records = (evs.len() as u64 + bad) as i64;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "keyed")?;
        Ok((s["caught_up"] == true && s["lag"] == 0 && records_read(&s)? == records).then_some(()))
    })
    .context("the job never showed caught up")?;
    let view: serde_json::Value =
        serde_json::from_str(&weir(&["job", "describe", "keyed", "--admin", &admin])?)?;
    let tasks: Vec<&str> = view["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter_map(|t| t["task"].as_str())
        .collect();
    ensure!(
        tasks == ["aggregate-0", "aggregate-1", "aggregate-2"],
        "tasks {tasks:?}"
    );
    ensure!(
        view["repartition_topic"].is_null(),
        "describe names a repartition topic: {view}"
    );
    let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
    ensure!(
        !topics.contains("__weir_job-keyed"),
        "a repartition topic was made: {topics}"
    );
    // Input partition N's results go to output partition N: an output
    // topic with another count is refused, naming both.
    let two = unique("two");
    create_input(&bootstrap, &two, 2, -1).await?;
    let err = weir(&[
        "job",
        "create",
        "mismatch",
        "--sql",
        &keyed_totals_sql(&input, &two),
        "--admin",
        &admin,
    ])
    .err()
    .context("a job writing 3 partitions' results to 2 was accepted")?;
    ensure!(
        format!("{err:#}").contains("has 3 partitions"),
        "the refusal does not say why: {err:#}"
    );
    Ok(())
}

/// Over an input of one partition every group lives in that partition: a
/// job grouping by a field runs its windows where the partition is read,
/// as one grouping by the record key does, with no repartition topic, and
/// its results are the reference's. Adding a partition to the input then
/// fails the job with the reason, rather than splitting its groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_a_one_partition_input_runs_without_repartitioning() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, late) = (unique("single"), unique("single-out"), unique("late"));
    create_input(&bootstrap, &input, 1, -1).await?;
    // The three partitions' events merged into one, in the order made.
    let mut evs: Vec<(usize, Event)> = events()
        .into_iter()
        .enumerate()
        .map(|(i, (_, c, ts, amount))| (i % 300, (0, c, ts, amount)))
        .collect();
    evs.sort_by_key(|(i, _)| *i);
    let evs: Vec<Event> = evs.into_iter().map(|(_, e)| e).collect();
    produce(&bootstrap, &input, &evs).await?;
    let (want, open, want_late) = reference_with_open(&evs);
    ensure!(want_late > 0, "the input has no late record");
    create_job_with_late("single", &totals_sql(&input, &out), &late, &admin)?;
    let got = totals(&read_topic(&bootstrap, &out, want.len()).await?)?;
    exactly_once(&got, &want)?;
    let read = ReadAll {
        records: evs.len() as u64,
        bad: 0,
        late: want_late,
        late_topic: &late,
        open: &open,
    };
    read.check(&bootstrap, &admin, "single").await?;
    let view: serde_json::Value =
        serde_json::from_str(&weir(&["job", "describe", "single", "--admin", &admin])?)?;
    ensure!(
        view["repartition_topic"].is_null() && view["one_partition"] == true,
        "describe names a repartition topic: {view}"
    );
    ensure!(
        view["tasks"][0]["task"] == "aggregate-0"
            && view["tasks"].as_array().map(Vec::len) == Some(1),
        "tasks {}",
        view["tasks"]
    );
    let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
    ensure!(
        !topics.contains("__weir_job-single"),
        "a repartition topic was made: {topics}"
    );
    // A second input partition would split each group in two.
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_partitions(&input, 2)
        .await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "single")?;
        let state = s["state"].as_str().unwrap_or_default().to_string();
        Ok(state.contains("create it again").then_some(()))
    })
    .context("the job did not say its input gained a partition")?;
    Ok(())
}

/// Creates output topic `topic` of `partitions` partitions whose
/// `max.message.bytes` is `limit`.
async fn create_limited_output(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    limit: u32,
) -> Result<()> {
    let mut t = NewTopic::new(topic, partitions);
    t.configs = vec![("max.message.bytes".into(), limit.to_string())];
    Admin::connect(ClientConfig::new(bootstrap))
        .await?
        .create_topic(t, false)
        .await?;
    Ok(())
}

/// A job writing into an output topic that exists with a small
/// `max.message.bytes` (1 KiB) splits its results into batches the topic
/// takes, as a Kafka producer does: it used to send 256 KiB batches,
/// refused with MESSAGE_TOO_LARGE, and failed over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writes_into_an_output_topic_with_a_small_message_limit() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, late) = (unique("small"), unique("small-out"), unique("late"));
    create_input(&bootstrap, &input, 3, -1).await?;
    create_limited_output(&bootstrap, &out, 2, 1024).await?;
    let evs = events();
    produce(&bootstrap, &input, &evs).await?;
    let (want, _, _) = reference_with_open(&evs);
    create_job_with_late("small", &totals_sql(&input, &out), &late, &admin)?;
    let got = totals(
        &read_topic(&bootstrap, &out, want.len())
            .await
            .with_context(|| format!("job: {}", job_status(&admin, "small").unwrap_or_default()))?,
    )?;
    exactly_once(&got, &want)?;
    let s = job_status(&admin, "small")?;
    ensure!(s["state"] == "running", "job state {}", s["state"]);
    Ok(())
}

/// Starts a node and job `name` counting each customer's events per 2 s
/// window, over a one-partition input holding `events` (customer, time)
/// and into an output topic whose `max.message.bytes` is `limit`. Returns
/// the node, its bootstrap and admin addresses, and the output topic.
async fn count_job_into_limited_output(
    name: &str,
    limit: u32,
    events: &[(&str, i64)],
) -> Result<(WeirNode, String, String, String)> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out) = (unique(name), unique(&format!("{name}-out")));
    create_input(&bootstrap, &input, 1, -1).await?;
    create_limited_output(&bootstrap, &out, 1, limit).await?;
    let producer = ProducerConfig::new(&bootstrap).build().await?;
    for (customer, ts) in events {
        let v = serde_json::json!({"customerId": customer, "ts": ts, "transactionSum": 1});
        producer
            .send(ProducerRecord::new(&input, v.to_string()))
            .await?;
    }
    producer.flush().await?;
    let sql = format!(
        "INSERT INTO \"{out}\" SELECT customerId, TUMBLE_START(ts, INTERVAL '2' SECOND) AS ws, \
         COUNT(*) AS n FROM \"{input}\" GROUP BY customerId, TUMBLE(ts, INTERVAL '2' SECOND)"
    );
    weir(&["job", "create", name, "--sql", &sql, "--admin", &admin])?;
    Ok((node, bootstrap, admin, out))
}

/// A result too large for the output topic's `max.message.bytes` stops
/// the job with a message saying so, and nothing after it is written;
/// once the limit is raised the job goes on, and every result is in the
/// output once (found from outside: the result was refused alone while the
/// next one was written, and after the restart it was skipped as written,
/// lost without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_output_limit_stops_the_job_until_it_is_raised() -> Result<()> {
    let big = "B".repeat(2500);
    let events = [
        ("small", 1_000),
        (big.as_str(), 1_000),
        ("small2", 1_000),
        ("closes", 60_000),
    ];
    let (_node, bootstrap, admin, out) =
        count_job_into_limited_output("big", 2000, &events).await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "big")?;
        Ok(s["state"]
            .as_str()
            .is_some_and(|s| s.contains("max.message.bytes"))
            .then_some(()))
    })
    .context("the job never said a result is over max.message.bytes")?;
    weir(&[
        "topic",
        "alter",
        &out,
        "--set",
        "max.message.bytes=100000",
        "--bootstrap",
        &bootstrap,
    ])?;
    read_topic(&bootstrap, &out, 3).await?;
    let status = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "big")?;
        Ok((s["state"] == "running" && s["caught_up"] == true).then_some(s))
    })?;
    // Running again, it still tells that it failed, and why.
    ensure!(
        status["restarts"].as_u64() >= Some(1)
            && status["last_failure"]["task"] == "aggregate-0"
            && status["last_failure"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("max.message.bytes")),
        "the running job's failures: {status}"
    );
    let records = read_to_end(&bootstrap, &out).await?;
    let mut keys: Vec<String> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
            Ok(v["customerId"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_>>()?;
    keys.sort();
    ensure!(
        keys == [big.clone(), "small".to_string(), "small2".to_string()],
        "results {keys:?}"
    );
    Ok(())
}

/// A job whose task has failed answers a state query with 503 ("ask
/// again shortly"), not with an empty list as if the key had no open
/// window (found from outside: a job over a one-partition input asked
/// itself and answered `200 []`). The task fails because a result is over
/// its output topic's `max.message.bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_not_queried_as_holding_nothing() -> Result<()> {
    let long = "x".repeat(400);
    let events = [(long.as_str(), 1_000), ("k", 60_000)];
    let (_node, _, admin, _) = count_job_into_limited_output("fails", 300, &events).await?;
    let failed = || -> Result<bool> {
        Ok(job_status(&admin, "fails")?["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("failed")))
    };
    // The task restarts 5 s after each failure and fails again at once:
    // answers given while it is failed (before and after the query) count.
    let (mut while_failed, mut seen) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && while_failed.len() < 10 {
        let before = failed()?;
        let (status, body) = weir_tests::http_get(&admin, "/v1/jobs/fails/state?key=%22k%22")?;
        if before && failed()? {
            while_failed.push((status, body.trim().to_string()));
        }
        seen.push(status);
        std::thread::sleep(Duration::from_millis(100)); // paces the queries
    }
    ensure!(
        !while_failed.is_empty(),
        "the task never failed: answers {seen:?}"
    );
    ensure!(
        while_failed.iter().all(|(status, _)| *status == 503),
        "answers while the task was failed: {while_failed:?}"
    );
    Ok(())
}

/// kill −9 of the node running a job grouping by the record key, right
/// after its first results: its tasks, which read the input themselves,
/// resume from their checkpoints and every final result is in the output
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_grouping_by_the_record_key_stays_exactly_once_across_a_kill() -> Result<()> {
    let (node, bootstrap, out, evs) = killed_after_first_results("keyed_eo", &[], true).await?;
    let (want, _, _) = reference_keyed(&evs);
    let got = match read_topic(&bootstrap, &out, want.len()).await {
        Ok(r) => totals(&r)?,
        Err(e) => {
            let status = job_status(node.admin_addr(), "keyed_eo")?;
            return Err(e.context(format!("job status {status}\n{}", job_log(&node))));
        }
    };
    exactly_once(&got, &want)?;
    Ok(())
}

/// A three-partition input holding history (other customers, a day
/// earlier) and job `name` over it `--from latest`: (input, output).
async fn latest_job_over_history(
    bootstrap: &str,
    admin: &str,
    name: &str,
) -> Result<(String, String)> {
    let (input, out) = (unique("tx"), unique("totals"));
    create_input(bootstrap, &input, 3, -1).await?;
    let old: Vec<Event> = events()
        .into_iter()
        .map(|(p, c, ts, a)| (p, c + 100, ts - 86_400_000, a))
        .collect();
    produce(bootstrap, &input, &old).await?;
    let sql = totals_sql(&input, &out);
    weir(&[
        "job", "create", name, "--sql", &sql, "--grace", "500ms", "--from", "latest", "--admin",
        admin,
    ])?;
    Ok((input, out))
}

/// Produces [`events`] into `input` and checks that `out` gets exactly
/// their windows, none of the history before the job.
async fn only_new_results(bootstrap: &str, input: &str, out: &str) -> Result<()> {
    let evs = events();
    produce(bootstrap, input, &evs).await?;
    let (want, _) = reference(&evs);
    let got: BTreeSet<Total> = totals(&read_topic(bootstrap, out, want.len()).await?)?
        .into_iter()
        .collect();
    ensure!(
        got.iter().all(|t| t.0 < 100),
        "results from the history before the job: {:?}",
        got.iter()
            .filter(|t| t.0 >= 100)
            .take(3)
            .collect::<Vec<_>>()
    );
    ensure!(
        got == want,
        "results differ from the reference: {} of {} windows",
        got.len(),
        want.len()
    );
    Ok(())
}

/// A `--from latest` job killed before its second checkpoint resumes where
/// it started, not at the start of the history: its results cover only the
/// records produced after it was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_latest_resumes_where_it_started_after_a_kill() -> Result<()> {
    let mut node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out) = latest_job_over_history(&bootstrap, &admin, "fresh").await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "fresh")?;
        Ok((s["state"] == "running").then_some(()))
    })?;
    // Right after its first checkpoint (taken at start), well before the
    // next one.
    node.kill()?;
    node.restart()?;
    only_new_results(node.bootstrap(), &input, &out).await
}

/// A `--from latest` job reads every record produced once `job create`
/// answered, also those produced before its tasks first start (they start
/// at the input's ends recorded when the job was created, not at the ends
/// when they start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_latest_reads_what_is_produced_right_after_create() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out) = latest_job_over_history(&bootstrap, &admin, "prompt").await?;
    // At once: the job's tasks start at the next tending, after this.
    only_new_results(&bootstrap, &input, &out).await
}

/// Input produced compressed, each partition with another codec (gzip,
/// lz4, zstd), in batches of many records: a job reads it as it reads
/// plain batches, for a task grouping by a field (route tasks) and one
/// grouping by the record key (aggregate tasks reading the input), and
/// both match the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_read_compressed_input() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, out_k) = (unique("tx"), unique("totals"), unique("keyed"));
    create_input(&bootstrap, &input, 3, -1).await?;
    let codecs = [
        weir_client::Compression::Gzip,
        weir_client::Compression::Lz4,
        weir_client::Compression::Zstd,
    ];
    let evs = keyed_events();
    for (p, codec) in codecs.into_iter().enumerate() {
        let producer = ProducerConfig::new(&bootstrap)
            .idempotent(true)
            .compression(codec)
            .linger(Duration::from_millis(20))
            .build()
            .await?;
        let mut delivered = Vec::new();
        for &(_, c, ts, amount) in evs.iter().filter(|e| e.0 == p as i32) {
            let value = format!(r#"{{"customerId": {c}, "transactionSum": {amount}, "ts": {ts}}}"#);
            let rec = ProducerRecord::new(&input, value)
                .key(c.to_string())
                .partition(p as i32);
            delivered.push(producer.send(rec).await?);
        }
        producer.flush().await?;
        for d in delivered {
            d.await.context("an input record was not delivered")?;
        }
    }
    // The batches on disk are compressed (attributes' codec bits set).
    let mut conn = weir_tests::raw::RawConn::connect(&bootstrap)?;
    for p in 0..3 {
        let (code, records) = weir_tests::raw::fetch(&mut conn, &input, p, 0)?;
        ensure!(code == 0, "fetch of partition {p}: {code}");
        let headers = weir_tests::raw::batch_headers(&records);
        let codec = [1, 3, 4][p as usize];
        ensure!(
            headers.iter().all(|h| h.2 & 7 == codec) && headers.iter().any(|h| h.1 > 0),
            "partition {p} batches (offset, last offset delta, attributes): {headers:?}"
        );
    }
    for (name, sql) in [
        ("by-field", totals_sql(&input, &out)),
        ("by-key", keyed_totals_sql(&input, &out_k)),
    ] {
        weir(&[
            "job", "create", name, "--sql", &sql, "--grace", "500ms", "--from", "earliest",
            "--admin", &admin,
        ])?;
    }
    let (want, _) = reference(&evs);
    let got: BTreeSet<Total> = totals(&read_topic(&bootstrap, &out, want.len()).await?)?
        .into_iter()
        .collect();
    ensure!(got == want, "by field: results differ from the reference");
    let (want_k, _, _) = reference_keyed(&evs);
    let got_k: BTreeSet<Total> = totals(&read_topic(&bootstrap, &out_k, want_k.len()).await?)?
        .into_iter()
        .collect();
    ensure!(got_k == want_k, "by key: results differ from the reference");
    Ok(())
}

/// Jobs created together on a fresh node start their tasks without a
/// failure, although the topics they need (state, repartition, output) are
/// created at that moment and have no leader yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_created_together_start_without_a_failed_task() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let input = unique("tx");
    create_input(&bootstrap, &input, 3, -1).await?;
    let names = ["j1", "j2", "j3", "j4"];
    for name in names {
        let sql = totals_sql(&input, &unique(&format!("out-{name}")));
        weir(&["job", "create", name, "--sql", &sql, "--admin", &admin])?;
    }
    for name in names {
        weir_tests::poll_until(Duration::from_secs(30), || {
            let text = weir(&["job", "describe", name, "--admin", &admin])?;
            let view: serde_json::Value = serde_json::from_str(&text)?;
            let tasks = view["tasks"].as_array().context("tasks")?;
            let running = !tasks.is_empty() && tasks.iter().all(|t| t["state"] == "running");
            Ok(running.then_some(view))
        })
        .with_context(|| format!("job {name}'s tasks did not all run"))
        .and_then(|view| {
            // On a cluster of one node, one task reads all three input
            // partitions: no repartition topic.
            ensure!(
                view["one_node"] == true
                    && view["repartition_topic"].is_null()
                    && view["tasks"].as_array().map(Vec::len) == Some(1),
                "one task and no repartition topic in {view}"
            );
            Ok(())
        })?;
    }
    let log = node.stderr_all();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("job task failed"))
        .collect();
    ensure!(
        failed.is_empty(),
        "tasks failed at start:\n{}",
        failed.join("\n")
    );
    // A fourth input partition would have no watermark in the operator
    // the one task started with: it stops and says why.
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_partitions(&input, 4)
        .await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "j1")?;
        let state = s["state"].as_str().unwrap_or_default().to_string();
        Ok(
            (state.contains("has 4 partitions now") && state.contains("create it again"))
                .then_some(()),
        )
    })
    .context("the job did not say its input gained a partition")?;
    Ok(())
}

/// Statements Weir cannot run are refused at `job create`, naming the
/// clause, and nothing is stored.
#[test]
fn unsupported_statements_are_refused_at_create() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let admin = node.admin_addr().to_string();
    let out = Command::new(weir_bin()?)
        .args(["job", "create", "bad", "--admin", &admin, "--sql"])
        .arg("INSERT INTO o SELECT a, COUNT(*) AS n FROM i GROUP BY a, TUMBLE(ts, INTERVAL '1' SECOND) ORDER BY a")
        .output()?;
    ensure!(!out.status.success(), "an ORDER BY job was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("ORDER BY"),
        "the error does not name the clause: {err}"
    );
    // Found from outside: a late topic that is the input fed the job its
    // own late records without end; the output has the job as only writer.
    let sql =
        "INSERT INTO o SELECT a, COUNT(*) AS n FROM i GROUP BY a, TUMBLE(ts, INTERVAL '1' SECOND)";
    for late in ["i", "o"] {
        let out = Command::new(weir_bin()?)
            .args([
                "job",
                "create",
                "bad",
                "--admin",
                &admin,
                "--late-topic",
                late,
            ])
            .args(["--sql", sql])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("late topic"),
            "late topic {late}: {err}"
        );
    }
    // Found from outside: a job wrote its results into __consumer_offsets.
    let out = Command::new(weir_bin()?)
        .args(["job", "create", "bad", "--admin", &admin, "--sql"])
        .arg("INSERT INTO __consumer_offsets SELECT a, COUNT(*) AS n FROM i GROUP BY a, TUMBLE(ts, INTERVAL '1' SECOND)")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("internal"),
        "a job into __consumer_offsets: {err}"
    );
    // Found from outside: a job reading __consumer_offsets read its own
    // offset commits (binary records, each counted bad) without end.
    for input in ["__consumer_offsets", "__weir_job_state"] {
        let out = Command::new(weir_bin()?)
            .args(["job", "create", "bad", "--admin", &admin, "--sql"])
            .arg(format!("INSERT INTO o SELECT a, COUNT(*) AS n FROM {input} GROUP BY a, TUMBLE(ts, INTERVAL '1' SECOND)"))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains("input topic") && err.contains("internal"),
            "a job reading {input}: {err}"
        );
    }
    let listed = weir(&["job", "list", "--admin", &admin])?;
    ensure!(!listed.contains("bad "), "{listed}");
    // Found from outside: a state request without its key was answered
    // 404 "job bad/state does not exist".
    let (status, body) = node.http_get("/v1/jobs/bad/state")?;
    ensure!(
        status == 400 && body.contains("missing ?key="),
        "state without a key: {status} {body}"
    );
    Ok(())
}

/// HOP (group window) and SESSION (window TVF) jobs through the whole path:
/// SQL, JSON rows, WHERE, aliased keys and window bounds in the output,
/// against the windows computed here from the per-partition lateness and
/// minimum rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_and_session_jobs_match_an_independent_computation() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, hops, sessions) = (unique("tx"), unique("hops"), unique("sessions"));
    create_input(&bootstrap, &input, 3, -1).await?;
    let evs = events();
    produce(&bootstrap, &input, &evs).await?;
    // Only amounts of at least 3 count (WHERE).
    let kept: Vec<Event> = evs.iter().copied().filter(|e| e.3 >= 3.0).collect();
    let (slide, size, gap) = (1_000i64, 3_000i64, 700i64);
    // (customer, start, end) → count, per the rules of docs/stream.md.
    let mut hop: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
    let mut rows: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut maxes = Vec::new();
    for p in 0..3 {
        let mut wm: Option<i64> = None;
        for &(_, c, ts, _) in kept.iter().filter(|e| e.0 == p) {
            let open = |close: i64| wm.is_none_or(|w| close > w);
            let mut start = ts.div_euclid(slide) * slide;
            while start + size > ts {
                if open(start + size + GRACE_MS) {
                    *hop.entry((c, start, start + size)).or_default() += 1;
                }
                start -= slide;
            }
            if open(ts + gap + GRACE_MS) {
                rows.entry(c).or_default().push(ts);
            }
            wm = Some(wm.map_or(ts, |w| w.max(ts)));
        }
        maxes.push(wm.context("events in every partition")?);
    }
    let done = *maxes.iter().min().context("partitions")?;
    let want_hops: BTreeSet<(i64, i64, i64, i64)> = hop
        .into_iter()
        .filter(|((_, _, end), _)| end + GRACE_MS <= done)
        .map(|((c, s, e), n)| (c, s, e, n))
        .collect();
    let mut want_sessions = BTreeSet::new();
    for (c, mut ts) in rows {
        ts.sort();
        let mut i = 0;
        while i < ts.len() {
            let (start, mut end, mut n) = (ts[i], ts[i] + gap, 1);
            i += 1;
            while i < ts.len() && ts[i] <= end {
                end = end.max(ts[i] + gap);
                n += 1;
                i += 1;
            }
            if end + gap + GRACE_MS <= done {
                want_sessions.insert((c, start, end, n));
            }
        }
    }
    let hop_sql = format!(
        "INSERT INTO \"{hops}\" SELECT customerId AS customer, HOP_START(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND) AS s, \
         HOP_END(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND) AS e, COUNT(*) AS n FROM \"{input}\" \
         WHERE transactionSum >= 3 GROUP BY customerId, HOP(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)"
    );
    let session_sql = format!(
        "INSERT INTO \"{sessions}\" SELECT window_start AS s, window_end AS e, customerId AS customer, COUNT(*) AS n \
         FROM TABLE(SESSION(TABLE \"{input}\", DESCRIPTOR(ts), INTERVAL '700' MILLISECOND)) \
         WHERE NOT transactionSum < 3 GROUP BY window_start, window_end, customerId"
    );
    weir(&[
        "job", "create", "hops", "--sql", &hop_sql, "--grace", "500ms", "--admin", &admin,
    ])?;
    weir(&[
        "job",
        "create",
        "sessions",
        "--sql",
        &session_sql,
        "--grace",
        "500ms",
        "--admin",
        &admin,
    ])?;
    let parse = |records: Vec<ConsumerRecord>| -> Result<Vec<(i64, i64, i64, i64)>> {
        records
            .iter()
            .map(|r| {
                let v: serde_json::Value =
                    serde_json::from_slice(r.value.as_deref().unwrap_or(b""))?;
                Ok((
                    v["customer"].as_i64().context("customer")?,
                    v["s"].as_i64().context("s")?,
                    v["e"].as_i64().context("e")?,
                    v["n"].as_i64().context("n")?,
                ))
            })
            .collect()
    };
    let got_hops = parse(read_topic(&bootstrap, &hops, want_hops.len()).await?)?;
    ensure!(
        got_hops.len() == want_hops.len(),
        "hop results: {} for {}",
        got_hops.len(),
        want_hops.len()
    );
    ensure!(
        got_hops.into_iter().collect::<BTreeSet<_>>() == want_hops,
        "hop results differ"
    );
    let got_sessions = parse(read_topic(&bootstrap, &sessions, want_sessions.len()).await?)?;
    ensure!(
        got_sessions.len() == want_sessions.len(),
        "session results: {} for {}",
        got_sessions.len(),
        want_sessions.len()
    );
    ensure!(
        got_sessions.into_iter().collect::<BTreeSet<_>>() == want_sessions,
        "session results differ"
    );
    Ok(())
}

/// The tasks of job `name` that are running, and where, as node `via`
/// describes the job (it shows the tasks of every node).
fn running_tasks(
    c: &mut weir_tests::cluster::Cluster,
    via: i32,
    name: &str,
) -> Result<BTreeSet<(String, i32)>> {
    let text = weir(&["job", "describe", name, "--admin", c.node(via).admin_addr()])?;
    let view: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = BTreeSet::new();
    for t in view["tasks"].as_array().context("tasks")? {
        if t["state"] == "running" {
            let node = t["node"].as_i64().context("node")? as i32;
            out.insert((t["task"].as_str().context("task")?.to_string(), node));
        }
    }
    Ok(out)
}

/// Waits until job `name`'s tasks `PREFIX-P` run on the current leaders of
/// `input`'s partitions P (as node `via` sees them, asked again on each
/// pass: an election on a loaded machine may move one); returns those
/// leaders.
fn tasks_on_leaders(
    c: &mut weir_tests::cluster::Cluster,
    via: i32,
    name: &str,
    input: &str,
    prefix: &str,
) -> Result<Vec<i32>> {
    let mut last = (BTreeSet::new(), BTreeSet::new());
    weir_tests::poll_until(Duration::from_secs(30), || {
        let leaders: Vec<i32> = (0..3)
            .map(|p| c.leader(via, input, p))
            .collect::<Result<_>>()?;
        let want: BTreeSet<(String, i32)> = leaders
            .iter()
            .enumerate()
            .map(|(p, n)| (format!("{prefix}-{p}"), *n))
            .collect();
        let running: BTreeSet<(String, i32)> = running_tasks(c, via, name)?
            .into_iter()
            .filter(|(t, _)| t.starts_with(&format!("{prefix}-")))
            .collect();
        let done = running == want;
        last = (running, want);
        Ok(done.then_some(leaders))
    })
    .with_context(|| format!("tasks run on {:?}, the leaders are {:?}", last.0, last.1))
}

/// A partition forgets an idempotent producer idle past
/// `producer.id.expiration.ms`. A job killed and restarted whose output
/// partitions forgot the producer id its checkpoints name (here: 2 s of
/// idleness after the restart) has its next results taken at the
/// sequences the checkpoint gives (as Kafka does since 2.5), and every
/// final result is in the output exactly once (none stuck behind a task
/// that fails and retries forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_output_forgot_its_producer_goes_on_exactly_once() -> Result<()> {
    let mut node = WeirNode::start(
        NodeOpts::default()
            .arg("--producer-id-expiration-ms", 2000)
            .arg("--maintenance-interval-ms", 500),
    )?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, evs) = job_over_first_half(&node, "forgot", &[], false).await?;
    let first = half(&evs, true);
    weir_tests::poll_until(Duration::from_secs(60), || {
        let s = job_status(&admin, "forgot")?;
        Ok((records_read(&s)? == first.len() as i64 && s["caught_up"] == true).then_some(()))
    })
    .context("the job never read the first half")?;
    await_first_result(&bootstrap, &out).await?;
    node.kill()?;
    node.restart()?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    // Producers rebuilt from the log at start count as used then: the
    // first maintenance pass past 2 s forgets every one not used since,
    // the output writers' among them (no new input, so no new results).
    weir_tests::poll_until(Duration::from_secs(60), || {
        Ok((weir_tests::metric(&admin, "weir_producer_state_expired_total")? > 0).then_some(()))
    })
    .context("no producer expired after the restart")?;
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let (want, _) = reference(&evs);
    let got = match read_topic(&bootstrap, &out, want.len()).await {
        Ok(r) => r,
        Err(e) => {
            return Err(e.context(job_log(&node)));
        }
    };
    exactly_once(&totals(&got)?, &want)?;
    ensure!(
        !node
            .stderr_all()
            .contains("the partition forgot this producer"),
        "a result was refused at its checkpointed sequence"
    );
    Ok(())
}

/// A task's counts are kept in its checkpoints: after kill -9 of the node
/// (once a checkpoint covered the first half of the input) and a restart,
/// `describe` counts every input record exactly once, not only those read
/// since the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_counts_survive_a_kill() -> Result<()> {
    let mut node = WeirNode::start(NodeOpts::default())?;
    let bootstrap = node.bootstrap().to_string();
    let (input, _, evs) = job_over_first_half(&node, "counted", &[], false).await?;
    let first = half(&evs, true);
    // Route tasks commit their position to the job's group with each
    // checkpoint.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let group = Admin::connect(ClientConfig::new(&bootstrap)).await?;
    loop {
        let committed: i64 = group
            .group_offsets("weir-job-counted")
            .await
            .map(|o| o.values().sum())
            .unwrap_or(0);
        if committed == first.len() as i64 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no checkpoint covered the first {} records ({committed} committed)",
            first.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill()?;
    node.restart()?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let status = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "counted")?;
        Ok((records_read(&s)? == evs.len() as i64 && s["caught_up"] == true).then_some(s))
    })?;
    ensure!(
        status["records_in"].as_u64() == Some(evs.len() as u64),
        "{} input records, counted as {} after the restart",
        evs.len(),
        status["records_in"]
    );
    Ok(())
}

/// A three-node cluster (a fault proxy on every Raft link with `proxies`),
/// its bootstrap list, a 3-partition RF-3 input holding the first half of
/// the events, the output topic's name, and the events.
async fn cluster_with_first_half(
    proxies: bool,
    keyed: bool,
) -> Result<(
    weir_tests::cluster::Cluster,
    String,
    String,
    String,
    Vec<Event>,
)> {
    use weir_tests::cluster::Cluster;
    let mut c = if proxies {
        Cluster::start_with_proxies(3, &[])?
    } else {
        Cluster::start(3, &[])?
    };
    let bootstrap = c.bootstrap();
    let (input, out) = (unique("tx"), unique("totals"));
    create_input(&bootstrap, &input, 3, 3).await?;
    let evs = if keyed { keyed_events() } else { events() };
    produce(&bootstrap, &input, &half(&evs, true)).await?;
    Ok((c, bootstrap, input, out, evs))
}

/// Which of the results `want` output topic `out` lacks now.
async fn missing_results(bootstrap: &str, out: &str, want: &BTreeSet<Total>) -> String {
    let got = match weir_tests::topic_reader::read_available(bootstrap, out).await {
        Ok(r) => r,
        Err(e) => return format!("could not read {out}: {e:#}"),
    };
    match totals(&got) {
        Ok(got) => {
            let got: BTreeSet<Total> = got.into_iter().collect();
            let missing: Vec<&Total> = want.difference(&got).collect();
            format!("missing results: {missing:?}")
        }
        Err(e) => format!("unreadable results: {e:#}"),
    }
}

/// Every line of `node`'s log about jobs and tasks.
fn job_log(node: &WeirNode) -> String {
    let all = node.stderr_all();
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("job") || l.contains("task"))
        .collect();
    lines.join("\n")
}

/// What each node says about job `name` (`job describe`, from the nodes
/// still running) and every line of each node's log about jobs and tasks:
/// the context a failed cluster job test needs.
fn job_diagnosis(c: &mut weir_tests::cluster::Cluster, name: &str) -> String {
    let mut diag = String::new();
    for n in 1..=c.nodes.len() as i32 {
        let node = c.node(n);
        let described = if node.is_alive() {
            weir(&["job", "describe", name, "--admin", node.admin_addr()])
                .unwrap_or_else(|e| e.to_string())
        } else {
            "(not running)".to_string()
        };
        diag.push_str(&format!("node {n}:\n{described}\n{}\n", job_log(node)));
    }
    diag
}

/// In a three-node cluster, a job's tasks run on the leaders of their
/// partitions: a route task on the leader of each input partition, spread
/// over the nodes. The leader of input partition 0 is killed right after
/// the job's first results: its tasks move to the new leaders, resume from
/// their replicated checkpoints, and every final result is in the output
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_moves_to_the_new_leader_and_stays_exactly_once() -> Result<()> {
    let ClusterJob {
        mut c,
        input,
        out,
        evs,
        other,
        admin,
        ..
    } = cluster_job("moving", false).await?;
    await_first_result(&c.bootstrap(), &out).await?;
    let leaders = tasks_on_leaders(&mut c, other, "moving", &input, "route")?;
    let runner = leaders[0];
    ensure!(
        runner != other,
        "input partition 0 moved to node {other}, which the test queries"
    );
    let nodes: BTreeSet<i32> = leaders.iter().copied().collect();
    ensure!(
        nodes.len() > 1,
        "the input's leaders are all on one node: {leaders:?}"
    );
    let (want, _) = reference(&evs);
    let got = kill_and_finish(&mut c, runner, "moving", &input, &out, &evs, &want).await?;
    exactly_once(&totals(&got)?, &want)?;
    // Every task runs on a survivor, and any node describes the whole job:
    // every input partition read to its end, and every record counted once
    // (counts resume from the moved tasks' checkpoints).
    weir_tests::poll_until(Duration::from_secs(30), || {
        let running = running_tasks(&mut c, other, "moving")?;
        Ok((running.len() == 6 && running.iter().all(|(_, n)| *n != runner)).then_some(()))
    })
    .context("the killed node's tasks did not all move to the survivors")?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "moving")?;
        let read = records_read(&s)?;
        Ok((read == evs.len() as i64 && s["caught_up"] == true).then_some(s))
    })
    .context("no node's status covered every input partition")
    .and_then(|s| {
        ensure!(
            s["records_in"].as_u64() == Some(evs.len() as u64),
            "{} input records, counted as {} after the failover",
            evs.len(),
            s["records_in"]
        );
        Ok(())
    })?;
    // Any survivor answers a state query for any key: the node that does
    // not run the key's aggregate task forwards it to the one that does.
    // Every key is asked of both survivors, so at least one of them
    // forwards (the keys' tasks are on one or the other).
    let (open, survivors) = (
        reference_with_open(&evs).1,
        (1..=3).filter(|n| *n != runner).collect::<Vec<_>>(),
    );
    ensure!(
        !open.is_empty(),
        "the input leaves no window open: the query needs one"
    );
    for n in survivors {
        // Polled: a moved aggregate task may still be replaying rows its
        // route tasks reported read.
        let admin = c.node(n).admin_addr().to_string();
        weir_tests::poll_until(Duration::from_secs(30), || {
            Ok((query_open_windows(&admin, "moving")? == open).then_some(()))
        })
        .with_context(|| format!("node {n} answered other open windows than {open:?}"))?;
    }
    Ok(())
}

/// A three-node cluster running job `name` over the first half of the
/// events (the seed query, or grouping by the record key over
/// [`keyed_events`] when `keyed`), created through `other`, a node that
/// did not lead input partition 0 then.
struct ClusterJob {
    c: weir_tests::cluster::Cluster,
    input: String,
    out: String,
    evs: Vec<Event>,
    /// A node that did not lead input partition 0 when the job was created.
    other: i32,
    /// `other`'s admin listener.
    admin: String,
}

/// Starts a [`ClusterJob`].
async fn cluster_job(name: &str, keyed: bool) -> Result<ClusterJob> {
    let (mut c, _, input, out, evs) = cluster_with_first_half(false, keyed).await?;
    let runner = c.leader(1, &input, 0)?;
    let other = (1..=3).find(|n| *n != runner).expect("three nodes");
    let admin = c.node(other).admin_addr().to_string();
    let sql = if keyed {
        keyed_totals_sql(&input, &out)
    } else {
        totals_sql(&input, &out)
    };
    weir(&[
        "job", "create", name, "--sql", &sql, "--grace", "500ms", "--admin", &admin,
    ])?;
    Ok(ClusterJob {
        c,
        input,
        out,
        evs,
        other,
        admin,
    })
}

/// Kills node `runner`, produces the second half of `evs` to `input`
/// through the survivors, and reads as many results from `out` as `want`
/// holds; on failure, says which are missing and what every node reports
/// of job `name`.
async fn kill_and_finish(
    c: &mut weir_tests::cluster::Cluster,
    runner: i32,
    name: &str,
    input: &str,
    out: &str,
    evs: &[Event],
    want: &BTreeSet<Total>,
) -> Result<Vec<ConsumerRecord>> {
    c.node(runner).kill()?;
    let bootstrap = c.bootstrap();
    produce(&bootstrap, input, &half(evs, false)).await?;
    match read_topic(&bootstrap, out, want.len()).await {
        Ok(r) => Ok(r),
        Err(e) => {
            let diag = job_diagnosis(c, name);
            let missing = missing_results(&bootstrap, out, want).await;
            Err(e.context(format!("killed node {runner}; {missing}\n{diag}")))
        }
    }
}

/// A job grouping by the record key in a cluster: task `aggregate-P` runs
/// on the leader of input partition P, any node answers a state query by
/// asking the others, and after the leader of partition 0 is killed its
/// task moves and every final result is written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_grouping_by_the_record_key_runs_on_each_input_leader() -> Result<()> {
    let ClusterJob {
        mut c,
        input,
        out,
        evs,
        other,
        ..
    } = cluster_job("keyed", true).await?;
    let leaders = tasks_on_leaders(&mut c, other, "keyed", &input, "aggregate")?;
    let runner = leaders[0];
    // Every key's open windows, from every node, whichever node holds them.
    let first = half(&evs, true);
    let (_, open, _) = reference_keyed(&first);
    ensure!(!open.is_empty(), "the first half leaves no window open");
    for n in 1..=3 {
        let admin = c.node(n).admin_addr().to_string();
        let queried = weir_tests::poll_until(Duration::from_secs(30), || {
            let q = query_open_windows(&admin, "keyed")?;
            Ok((q == open).then_some(q))
        });
        ensure!(
            queried.is_ok(),
            "node {n} never answered the open windows {open:?}"
        );
    }
    let produced = [first, half(&evs, false)].concat();
    let (want, _, _) = reference_keyed(&produced);
    let got = kill_and_finish(&mut c, runner, "keyed", &input, &out, &evs, &want).await?;
    exactly_once(&totals(&got)?, &want)?;
    Ok(())
}

/// [`input_created_again`] on three nodes, through the repartition topic
/// (route tasks number the new topic's rows after the old one's). Found
/// from outside: with its input deleted, the job said `running` on a
/// cluster (its shards run on), `waiting for its input topic` on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repartitioned_job_on_three_nodes_reads_its_recreated_input() -> Result<()> {
    let ClusterJob {
        mut c,
        input,
        out,
        evs,
        admin,
        ..
    } = cluster_job("recreated", false).await?;
    let bootstrap = c.bootstrap();
    // The first half read whole before the delete (what is not read is
    // gone with the topic).
    let first = half(&evs, true).len() as i64;
    await_read(&admin, "recreated", first)?;
    await_first_result(&bootstrap, &out).await?;
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .delete_topics(std::slice::from_ref(&input))
        .await?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "recreated")?;
        Ok((s["state"] == "waiting for its input topic").then_some(()))
    })
    .with_context(|| {
        format!(
            "the job does not wait for its deleted input: {}",
            job_status(&admin, "recreated").unwrap_or_default()
        )
    })?;
    create_input(&bootstrap, &input, 3, 3).await?;
    let second = half(&evs, false);
    produce(&bootstrap, &input, &second).await?;
    let (want, _) = reference(&[half(&evs, true), second].concat());
    let got = match read_topic(&bootstrap, &out, want.len()).await {
        Ok(r) => totals(&r)?,
        Err(e) => {
            let missing = missing_results(&bootstrap, &out, &want).await;
            let why = job_diagnosis(&mut c, "recreated");
            return Err(e.context(format!("missing {missing}\n{why}")));
        }
    };
    exactly_once(&got, &want)
}

/// Found in review: a repartitioned job whose input gained a partition ran
/// on as if nothing happened (the new partition's rows moved no watermark;
/// a partition gone, when the input was created again with fewer, would
/// have held every window open), while a restarted shard refused it. Now
/// the running shards refuse it too, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repartitioned_job_refuses_an_input_that_gained_a_partition() -> Result<()> {
    let ClusterJob {
        mut c,
        input,
        out,
        admin,
        ..
    } = cluster_job("grown", false).await?;
    let bootstrap = c.bootstrap();
    await_first_result(&bootstrap, &out).await?;
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_partitions(&input, 4)
        .await?;
    weir_tests::poll_until(Duration::from_secs(60), || {
        let s = job_status(&admin, "grown")?;
        Ok(s["state"]
            .as_str()
            .is_some_and(|st| st.contains("has 4 partitions now") && st.contains("drop the job"))
            .then_some(()))
    })
    .with_context(|| {
        format!(
            "the job does not refuse its grown input: {}",
            job_status(&admin, "grown").unwrap_or_default()
        )
    })?;
    Ok(())
}

/// The node running a job's aggregate task is cut off from its peers
/// (Raft links cut both ways; clients still reach it) while the job runs.
/// The survivors elect new leaders, the task starts again there from its
/// replicated checkpoint, and every final result is in the output exactly
/// once, also after the cut heals and the deposed node learns it lost its
/// partitions. (The deposed task cannot write anything new meanwhile: its
/// shard's log commits nothing without a quorum, so it reads no new rows.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stays_exactly_once_when_its_aggregate_node_is_cut_off() -> Result<()> {
    let (mut c, bootstrap, input, out, evs) = cluster_with_first_half(true, false).await?;
    let admin = c.node(1).admin_addr().to_string();
    let sql = totals_sql(&input, &out);
    weir(&[
        "job", "create", "cut", "--sql", &sql, "--grace", "500ms", "--admin", &admin,
    ])?;
    await_first_result(&bootstrap, &out).await?;
    let cut = weir_tests::poll_until(Duration::from_secs(30), || {
        let running = running_tasks(&mut c, 1, "cut")?;
        Ok(running
            .into_iter()
            .find(|(t, _)| t == "aggregate-0")
            .map(|(_, n)| n))
    })?;
    c.isolate(cut);
    let survivors: Vec<String> = (1..=3)
        .filter(|n| *n != cut)
        .map(|n| c.node(n).bootstrap().to_string())
        .collect();
    let survivors = survivors.join(",");
    produce(&survivors, &input, &half(&evs, false)).await?;
    let (want, _) = reference(&evs);
    let got = match read_topic(&survivors, &out, want.len()).await {
        Ok(r) => r,
        Err(e) => {
            let missing = missing_results(&survivors, &out, &want).await;
            let diag = job_diagnosis(&mut c, "cut");
            return Err(e.context(format!("cut node {cut}; {missing}\n{diag}")));
        }
    };
    exactly_once(&totals(&got)?, &want)?;
    c.heal_all();
    // Healed: the job runs everywhere again and has read everything.
    let via = (1..=3).find(|n| *n != cut).expect("three nodes");
    let via_admin = c.node(via).admin_addr().to_string();
    weir_tests::poll_until(Duration::from_secs(60), || {
        let s = job_status(&via_admin, "cut")?;
        Ok((records_read(&s)? == evs.len() as i64 && s["caught_up"] == true).then_some(()))
    })
    .context("the job never caught up after the cut healed")?;
    let bootstrap = c.bootstrap();
    exactly_once(
        &totals(&read_topic(&bootstrap, &out, want.len()).await?)?,
        &want,
    )
}

/// An input partition that stays empty holds every window back, unless the
/// job has an idle timeout: then windows fire on the partitions that have
/// records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_lets_windows_fire_past_an_empty_partition() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, held, idle) = (unique("tx"), unique("held"), unique("idle"));
    create_input(&bootstrap, &input, 2, -1).await?;
    // Partition 1 gets nothing.
    let evs: Vec<Event> = events().into_iter().filter(|e| e.0 == 0).collect();
    produce(&bootstrap, &input, &evs).await?;
    let sql = |to: &str| {
        format!(
            "INSERT INTO \"{to}\" SELECT customerId, COUNT(*) AS n FROM \"{input}\" \
             GROUP BY customerId, TUMBLE(ts, INTERVAL '2' SECOND)"
        )
    };
    weir(&[
        "job",
        "create",
        "held",
        "--sql",
        &sql(&held),
        "--admin",
        &admin,
    ])?;
    let idle_late = unique("idle-late");
    weir(&[
        "job",
        "create",
        "idle",
        "--sql",
        &sql(&idle),
        "--idle-timeout",
        "1s",
        "--late-topic",
        &idle_late,
        "--admin",
        &admin,
    ])?;
    // Windows closed by partition 0's own watermark (grace 0).
    let max = evs.iter().map(|e| e.2).max().context("events")?;
    let mut closed: BTreeSet<(i64, i64)> = BTreeSet::new();
    let mut wm: Option<i64> = None;
    for &(_, c, ts, _) in &evs {
        let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        if wm.is_none_or(|w| start + WINDOW_MS > w) && start + WINDOW_MS <= max {
            closed.insert((c, start));
        }
        wm = Some(wm.map_or(ts, |w| w.max(ts)));
    }
    let fired = read_topic(&bootstrap, &idle, closed.len()).await?;
    ensure!(
        fired.len() == closed.len(),
        "{} results for {} closed windows",
        fired.len(),
        closed.len()
    );
    let status = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "held")?;
        Ok((s["records_in"].as_u64() == Some(evs.len() as u64)).then_some(s))
    })?;
    ensure!(
        status["records_out"].as_u64() == Some(0),
        "a window fired while partition 1 held the minimum back: {status}"
    );
    // A record on the idle partition for a window that fired meanwhile is
    // late (at its shard, not by its own partition's watermark): counted,
    // and copied to the late topic like any late record.
    let min = evs.iter().map(|e| e.2).min().context("events")?;
    let straggler = vec![(1, 0, min, 5.0)];
    // Counted once job `idle` has read everything before the straggler.
    let late_before = weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "idle")?;
        Ok((s["records_in"].as_u64() == Some(evs.len() as u64)).then_some(s))
    })
    .context("job idle did not read every event")?["late"]
        .as_u64()
        .unwrap_or(0);
    produce(&bootstrap, &input, &straggler).await?;
    // The late topic also holds partition 0's own late records.
    let header = |r: &ConsumerRecord, k: &str| {
        r.headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.clone())
    };
    let mut c = weir_tests::topic_reader::consume_topic(&bootstrap, &idle_late).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let copied = 'found: loop {
        ensure!(
            std::time::Instant::now() < deadline,
            "the straggler never reached the late topic"
        );
        for r in c.poll(Duration::from_millis(200)).await.unwrap_or_default() {
            if header(&r, "weir-source-partition").as_deref() == Some(b"1".as_slice()) {
                break 'found r;
            }
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(copied.value.as_deref().unwrap_or_default())?;
    ensure!(
        value["ts"].as_i64() == Some(min)
            && header(&copied, "weir-reason").as_deref() == Some(b"late".as_slice()),
        "late topic holds {value} with headers {:?}",
        copied.headers
    );
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "idle")?;
        Ok((s["late"].as_u64() == Some(late_before + 1)).then_some(()))
    })
    .context("the straggler was not counted late")?;
    Ok(())
}

/// `--emit changes` writes every update of an open window and then its
/// final result (header `weir-final: true`). Across a kill −9 this is at
/// least once: no final result is missing, and each window's last record is
/// its final value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_mode_keeps_every_final_result_across_a_kill() -> Result<()> {
    let (_node, bootstrap, out, evs) =
        killed_after_first_results("ch", &["--emit", "changes"], false).await?;
    let (want, _) = reference(&evs);
    let is_final = |r: &ConsumerRecord| {
        r.headers
            .iter()
            .any(|h| h.key == "weir-final" && h.value.as_deref() == Some(&b"true"[..]))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let all = read_to_end(&bootstrap, &out).await?;
        let finals: BTreeSet<Total> = totals(
            &all.iter()
                .filter(|r| is_final(r))
                .cloned()
                .collect::<Vec<_>>(),
        )?
        .into_iter()
        .collect();
        if finals == want {
            break all;
        }
        ensure!(
            Instant::now() < deadline,
            "final results: {} distinct of {} expected",
            finals.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        records.len() > want.len(),
        "changes mode wrote no updates besides the final results"
    );
    // Each window's last record, in its partition's order, is its final value.
    let mut last: BTreeMap<(i64, i64), Total> = BTreeMap::new();
    for t in totals(&records)? {
        last.insert((t.0, t.1), t);
    }
    for w in &want {
        ensure!(
            last.get(&(w.0, w.1)) == Some(w),
            "window {w:?}: last record {:?}",
            last.get(&(w.0, w.1))
        );
    }
    Ok(())
}

/// Found from outside: `weir job drop` of a job reading live input left its
/// repartition topic behind: the topic was deleted, then a route task still
/// running wrote to it and auto-created it again (with one partition), for
/// good. A job's writers no longer create topics; after the drop none of
/// the job's topics comes back while input keeps arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_busy_job_leaves_no_topic_or_group_behind() -> Result<()> {
    // Three nodes: on one, a job has no repartition topic.
    let mut c = weir_tests::cluster::Cluster::start(3, &[])?;
    let bootstrap = c.bootstrap();
    let admin = c.node(1).admin_addr().to_string();
    create_input(&bootstrap, "busy-in", 3, 1).await?;
    weir(&[
        "job",
        "create",
        "busy",
        "--sql",
        &totals_sql("busy-in", "busy-out"),
        "--admin",
        &admin,
    ])?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (stop, bootstrap) = (stop.clone(), bootstrap.clone());
        let evs = events();
        tokio::spawn(async move {
            for chunk in evs.chunks(50).cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok::<_, anyhow::Error>(());
                }
                produce(&bootstrap, "busy-in", chunk).await?;
            }
            Ok(())
        })
    };
    let job_topic = |topics: &str| topics.lines().any(|t| t.starts_with("__weir_job-busy"));
    weir_tests::poll_until(Duration::from_secs(30), || {
        let s = job_status(&admin, "busy")?;
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        Ok((records_read(&s)? > 0 && job_topic(&topics)).then_some(()))
    })
    .context("the job never read its input")?;
    let job_group = |groups: &str| groups.lines().any(|g| g.contains("weir-job-busy"));
    weir_tests::poll_until(Duration::from_secs(30), || {
        let groups = weir(&["group", "list", "--bootstrap", &bootstrap])?;
        Ok(job_group(&groups).then_some(()))
    })
    .context("the job's consumer group never showed")?;
    // Its repartition topic is the job's: deleting it is refused.
    let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
    let repartition = topics
        .lines()
        .find(|t| t.starts_with("__weir_job-busy"))
        .and_then(|t| t.split_whitespace().next())
        .context("no repartition topic")?;
    let refused = weir(&["topic", "delete", repartition, "--bootstrap", &bootstrap])
        .err()
        .context("deleting a running job's repartition topic was accepted")?;
    ensure!(refused.to_string().contains("drop the job"), "{refused}");
    weir(&["job", "drop", "busy", "--admin", &admin])?;
    weir_tests::poll_until(Duration::from_secs(10), || {
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        Ok((!job_topic(&topics)).then_some(()))
    })
    .context("the repartition topic outlived the drop")?;
    // Watched for 5 s while input keeps arriving: it must not come back.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        ensure!(
            !job_topic(&topics),
            "a dropped job's topic came back:\n{topics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.await??;
    // Its consumer group goes too (a dropped job's tasks commit no more).
    weir_tests::poll_until(Duration::from_secs(10), || {
        let groups = weir(&["group", "list", "--bootstrap", &bootstrap])?;
        Ok((!job_group(&groups)).then_some(()))
    })
    .context("the dropped job's consumer group outlived it")?;
    Ok(())
}

/// Found from outside: any client could produce into a job's checkpoint,
/// status and repartition topics (a forged checkpoint or routed row changes
/// the results of a job already running) and delete its routed rows before
/// they were read. As Kafka does for its internal topics, a client gets
/// INVALID_TOPIC_EXCEPTION (17) for produce, DeleteRecords and CreateTopics
/// of Weir's own `__weir_job*` topics, while the job itself goes on writing
/// them: its results still match the reference exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_write_a_jobs_internal_topics() -> Result<()> {
    use weir_tests::raw::{self, RawConn};
    // Three nodes: on one, a job has no repartition topic.
    let mut cluster = weir_tests::cluster::Cluster::start(3, &[])?;
    let bootstrap = cluster.bootstrap();
    let admin = cluster.node(1).admin_addr().to_string();
    let (input, out) = (unique("guarded"), unique("guarded-out"));
    create_input(&bootstrap, &input, 3, -1).await?;
    let evs = events();
    produce(&bootstrap, &input, &half(&evs, true)).await?;
    weir(&[
        "job",
        "create",
        "guarded",
        "--sql",
        &totals_sql(&input, &out),
        "--grace",
        "500ms",
        "--admin",
        &admin,
    ])?;
    let repartition = weir_tests::poll_until(Duration::from_secs(30), || {
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        Ok(topics
            .lines()
            .filter_map(|t| t.split_whitespace().next())
            .find(|t| t.starts_with("__weir_job-guarded"))
            .map(str::to_owned))
    })
    .context("the job never made its repartition topic")?;
    let node_one = cluster.node(1).bootstrap().to_string();
    let mut c = RawConn::connect(&node_one)?;
    for topic in [
        "__weir_job_state",
        "__weir_job_status",
        repartition.as_str(),
    ] {
        let (code, _) = raw::produce(&mut c, topic, 0, -1, raw::batch(&[b"forged"], None)?)?;
        ensure!(code == 17, "a client's produce to {topic}: error {code}");
    }
    let (code, low) = raw::delete_records(&mut c, &repartition, 0, -1)?;
    ensure!(
        code == 17 && low == -1,
        "a client's DeleteRecords on {repartition}: error {code}, low watermark {low}"
    );
    let code = raw::create_topic(&mut c, "__weir_job-forged-repartition", 1, &[])?;
    ensure!(
        code == 17,
        "a client's CreateTopics of a job topic name: error {code}"
    );
    // Nor does asking for the metadata of such a name create it (a
    // checkpoint topic auto-created with a client's defaults would not
    // be compacted).
    {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{MetadataRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let asked = "__weir_job-auto-repartition";
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(asked))))]));
        let resp = c.request(9, &req)?;
        let code = resp.topics.first().context("no topic answered")?.error_code;
        let topics = weir(&["topic", "list", "--bootstrap", &bootstrap])?;
        ensure!(
            code == 3 && !topics.contains(asked),
            "Metadata with auto-creation of {asked}: error {code}, topics:\n{topics}"
        );
    }
    // The job writes them all the while: every result, once.
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let (want, _) = reference(&evs);
    let got = totals(&read_topic(&bootstrap, &out, want.len()).await?)?;
    exactly_once(&got, &want)
}

/// Sends each of `values` (JSON texts) to partition 0 of `topic`.
async fn produce_values(bootstrap: &str, topic: &str, values: &[&str]) -> Result<()> {
    let producer = ProducerConfig::new(bootstrap).build().await?;
    let mut delivered = Vec::new();
    for v in values {
        delivered.push(
            producer
                .send(ProducerRecord::new(topic, v.to_string()).partition(0))
                .await?,
        );
    }
    producer.flush().await?;
    for d in delivered {
        d.await.context("an input record was not delivered")?;
    }
    Ok(())
}

/// The sums `weir job query NAME --key KEY` returns, in window order.
fn queried_sums(admin: &str, name: &str, key: &str) -> Result<Vec<i64>> {
    let text = weir(&["job", "query", name, "--key", key, "--admin", admin])?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            v["s"].as_i64().with_context(|| format!("no sum in {l}"))
        })
        .collect()
}

/// Found from outside: `weir job query --key 17` found nothing when the
/// key column holds the text "17" (the shell had eaten the quotes of
/// `'"17"'`). A bare number is now looked up as text when no group has
/// the number; quoted, it is text only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_number_queries_a_text_key() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    create_input(&bootstrap, "keys_in", 1, -1).await?;
    produce_values(
        &bootstrap,
        "keys_in",
        &[
            r#"{"customerId": "17", "ts": 1000, "v": 1}"#,
            r#"{"customerId": "17", "ts": 1500, "v": 2}"#,
            r#"{"customerId": "18", "ts": 1700, "v": 40}"#,
        ],
    )
    .await?;
    weir(&[
        "job",
        "create",
        "keys",
        "--sql",
        "INSERT INTO keys_out SELECT customerId, SUM(v) AS s FROM keys_in \
         GROUP BY customerId, TUMBLE(ts, INTERVAL '10' SECOND)",
        "--admin",
        &admin,
    ])?;
    await_read(&admin, "keys", 3)?;
    ensure!(queried_sums(&admin, "keys", "17")? == [3], "bare 17");
    ensure!(queried_sums(&admin, "keys", "\"17\"")? == [3], "quoted 17");
    ensure!(
        queried_sums(&admin, "keys", "19")?.is_empty(),
        "no group 19"
    );
    // A number key beside the text one: bare is the number, quoted the text.
    produce_values(
        &bootstrap,
        "keys_in",
        &[r#"{"customerId": 17, "ts": 1200, "v": 5}"#],
    )
    .await?;
    await_read(&admin, "keys", 4)?;
    ensure!(
        queried_sums(&admin, "keys", "17")? == [5],
        "bare 17 beside \"17\""
    );
    ensure!(
        queried_sums(&admin, "keys", "\"17\"")? == [3],
        "quoted 17 beside 17"
    );
    Ok(())
}

/// Found from outside: `weir group reset-offsets` on a running job's group
/// was accepted and changed nothing (the job resumes from its checkpoints,
/// and its next commit overwrote the reset), and `group delete` deleted a
/// group the job's next commit brought back. As for a Kafka group with
/// active members: the group shows `Stable`, reset-offsets is refused
/// naming the job, a client's commit gets UNKNOWN_MEMBER_ID, OffsetDelete
/// GROUP_SUBSCRIBED_TO_TOPIC and DeleteGroups NON_EMPTY_GROUP; the job's own
/// commits go on. Once the job is dropped its group is an ordinary one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_group_is_active_to_clients() -> Result<()> {
    use weir_tests::raw::{self, RawConn};
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, _, evs) = job_over_first_half(&node, "held", &[], false).await?;
    let first = half(&evs, true).len() as i64;
    await_read(&admin, "held", first)?;
    let group = "weir-job-held";
    let committed = |want: i64| -> Result<()> {
        weir_tests::poll_until(Duration::from_secs(30), || {
            let text = weir(&["group", "describe", group, "--bootstrap", &bootstrap])?;
            let sum: i64 = text
                .lines()
                .filter(|l| l.starts_with(input.as_str()))
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<i64>().ok())
                .sum();
            Ok((text.contains("State: Stable") && sum == want).then_some(text))
        })
        .map(|_| ())
        .with_context(|| format!("the job's group never showed Stable with {want} committed"))
    };
    committed(first)?;
    // A Stable group has members: one per node running the job's tasks,
    // assigned the input partitions it leads (found from outside: none).
    let described = weir(&["group", "describe", group, "--bootstrap", &bootstrap])?;
    ensure!(
        described.contains("Members: 1")
            && described.contains("Member: weir-job-held@node-")
            && described.contains("Partitions: 3"),
        "group describe:\n{described}"
    );
    let listed = weir(&["group", "list", "--bootstrap", &bootstrap])?;
    ensure!(
        listed
            .lines()
            .any(|l| l.starts_with(group) && l.ends_with("Stable")),
        "group list:\n{listed}"
    );
    let refused = weir(&[
        "group",
        "reset-offsets",
        group,
        "--topic",
        &input,
        "--to-earliest",
        "--bootstrap",
        &bootstrap,
    ])
    .err()
    .context("reset-offsets of a running job's group was accepted")?;
    ensure!(refused.to_string().contains("stream job"), "{refused}");
    ensure!(
        weir(&["group", "delete", group, "--bootstrap", &bootstrap]).is_err(),
        "deleting a running job's group was accepted"
    );
    let mut c = RawConn::connect(&bootstrap)?;
    let code = raw::offset_commit(&mut c, group, &input, 0, 0)?;
    ensure!(code == 25, "a client's OffsetCommit: error {code}");
    {
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        use kafka_protocol::messages::{GroupId, OffsetDeleteRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(input.clone())))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]);
        let resp = c.request(0, &req)?;
        let code = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.error_code);
        ensure!(code == Some(86), "a client's OffsetDelete: {resp:?}");
    }
    // The job's own commits go on, and its offsets are its own.
    produce(&bootstrap, &input, &half(&evs, false)).await?;
    let all = evs.len() as i64;
    await_read(&admin, "held", all)?;
    committed(all)?;
    // Dropped, its group is an ordinary empty one (which the node deletes).
    weir(&["job", "drop", "held", "--admin", &admin])?;
    weir_tests::poll_until(Duration::from_secs(30), || {
        let groups = weir(&["group", "list", "--bootstrap", &bootstrap])?;
        Ok((!groups.contains(group)).then_some(()))
    })
    .context("the dropped job's group was not deleted")?;
    Ok(())
}

/// Found from outside: asked for a key whose task was not running (it was
/// starting, moving or waiting to restart), a node answered that the task
/// ran on itself, "ask that node" (409). It now says the task is not
/// running and to ask again (503, retriable): here a one-node job whose
/// input gained a partition, so its one task stopped with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_for_a_task_not_running_says_to_ask_again() -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, _, evs) = job_over_first_half(&node, "stalled", &[], false).await?;
    await_read(&admin, "stalled", half(&evs, true).len() as i64)?;
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_partitions(&input, 4)
        .await?;
    weir_tests::poll_until(Duration::from_secs(60), || {
        let s = job_status(&admin, "stalled")?;
        Ok(s["state"]
            .as_str()
            .is_some_and(|st| st.contains("has 4 partitions now"))
            .then_some(()))
    })
    .context("the job never refused its grown input")?;
    let (status, body) = weir_tests::http_get(&admin, "/v1/jobs/stalled/state?key=1")?;
    ensure!(
        status == 503 && body.contains("not running") && body.contains("ask again"),
        "a query while the task is not running: {status} {body}"
    );
    Ok(())
}

/// A job whose open windows outgrow one record of the state topic (a
/// `COUNT(DISTINCT)` holding 72 MiB of distinct values, over the 64 MiB a
/// checkpoint record could hold) checkpoints them in chunks and resumes
/// from them after kill −9: the input it read is deleted before the kill,
/// so only the checkpoint can give the window's count after the restart.
/// Before, the task failed at each checkpoint ("over the 67108864-byte
/// limit"), restarted from its last one and failed again, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_larger_than_a_record_is_checkpointed_in_chunks_and_resumed() -> Result<()> {
    const N: usize = 72_000;
    let mut node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out) = (unique("wide"), unique("distinct"));
    create_input(&bootstrap, &input, 1, -1).await?;
    let sql = format!(
        "INSERT INTO \"{out}\" SELECT k, TUMBLE_START(ts, INTERVAL '1' HOUR) AS window_start, \
         COUNT(DISTINCT v) AS d, COUNT(*) AS n FROM \"{input}\" \
         GROUP BY k, TUMBLE(ts, INTERVAL '1' HOUR)"
    );
    weir(&["job", "create", "wide", "--sql", &sql, "--admin", &admin])?;
    // Two keys, every value distinct and about 1 KiB.
    let pad = "x".repeat(1_000);
    let producer = ProducerConfig::new(&bootstrap).build().await?;
    let send = |i: usize, ts: i64| {
        let value = format!(r#"{{"k": {}, "v": "{i:06}{pad}", "ts": {ts}}}"#, i % 2);
        producer.send(ProducerRecord::new(input.as_str(), value).partition(0))
    };
    let mut delivered = Vec::with_capacity(N);
    for i in 0..N {
        delivered.push(send(i, 1_000 + i as i64).await?);
    }
    producer.flush().await?;
    for d in delivered {
        d.await.context("an input record was not delivered")?;
    }
    // A checkpoint covers every record once the job's group commits N.
    let group = Admin::connect(ClientConfig::new(&bootstrap)).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed: i64 = group
            .group_offsets("weir-job-wide")
            .await
            .map(|o| o.values().sum())
            .unwrap_or(0);
        if committed == N as i64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no checkpoint covered the {N} records in 120 s ({committed} committed): {}",
            job_status(&admin, "wide").unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tp = weir_client::TopicPartition::new(input.as_str(), 0);
    group.delete_records(&[(tp, N as i64)].into()).await?;
    node.kill()?;
    node.restart()?;
    let bootstrap = node.bootstrap().to_string();
    // An event an hour later closes the first windows.
    let producer = ProducerConfig::new(&bootstrap).build().await?;
    let closing = format!(r#"{{"k": 0, "v": "last", "ts": {}}}"#, 3_600_000 + 5_000);
    producer
        .send(ProducerRecord::new(input.as_str(), closing).partition(0))
        .await?
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = read_to_end(&bootstrap, &out).await?;
        if records.len() >= 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{} results in 120 s after the restart: {}",
            records.len(),
            job_status(node.admin_addr(), "wide").unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Read again once the job has taken the last record: nothing twice.
    await_read(node.admin_addr(), "wide", N as i64 + 1)?;
    let results = read_to_end(&bootstrap, &out).await?;
    let mut got: Vec<(i64, i64, i64)> = results
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b""))?;
            Ok((
                v["k"].as_i64().context("k")?,
                v["d"].as_i64().context("d")?,
                v["n"].as_i64().context("n")?,
            ))
        })
        .collect::<Result<_>>()?;
    got.sort_unstable();
    let half = (N / 2) as i64;
    ensure!(
        got == [(0, half, half), (1, half, half)],
        "the first hour's windows after the restart: {got:?}"
    );
    // With no more input, its unchanged state is not written again: the
    // state topic stops growing (before, it grew by the whole state each
    // checkpoint).
    let state = weir_client::TopicPartition::new("__weir_job_state", 0);
    let admin = Admin::connect(ClientConfig::new(&bootstrap)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (-1, Instant::now());
    loop {
        let end = admin
            .list_offsets(
                std::slice::from_ref(&state),
                weir_client::OffsetSpec::Latest,
            )
            .await?
            .get(&state)
            .map_or(0, |l| l.offset);
        if end != last {
            (last, since) = (end, Instant::now());
        } else if since.elapsed() > Duration::from_secs(4) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the state topic of an idle job still grows after 60 s (end {end})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// An unreadable input record larger than the late topic's
/// `max.message.bytes` (the input allows 5 MB, the late topic the default
/// 1 MiB) is set aside without its value, with a header saying what was
/// left out and where the record is: the job goes on and writes its
/// results. Before, the copy failed the task with MESSAGE_TOO_LARGE at each
/// restart, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_too_large_for_the_late_topic_is_set_aside_without_its_value(
) -> Result<()> {
    let node = WeirNode::start(NodeOpts::default())?;
    let (bootstrap, admin) = (node.bootstrap().to_string(), node.admin_addr().to_string());
    let (input, out, late) = (unique("in"), unique("out"), unique("late"));
    let mut t = NewTopic::new(&input, 1);
    t.configs = vec![("max.message.bytes".into(), "5000000".into())];
    Admin::connect(ClientConfig::new(&bootstrap))
        .await?
        .create_topic(t, false)
        .await?;
    let sql = format!(
        "INSERT INTO \"{out}\" SELECT k, COUNT(*) AS n FROM \"{input}\" \
         GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)"
    );
    create_job_with_late("aside", &sql, &late, &admin)?;
    let producer = ProducerConfig::new(&bootstrap).build().await?;
    let mut values = vec!["x".repeat(2_000_000)];
    values.extend((1..=5).map(|i| format!(r#"{{"k": 1, "ts": {}}}"#, i * 1_000)));
    for v in values {
        producer
            .send(ProducerRecord::new(input.as_str(), v).partition(0))
            .await?
            .await?;
    }
    // Windows of 1 s, grace 500 ms: the record at 5 s closes those at 1–3 s.
    let results = read_topic(&bootstrap, &out, 3).await?;
    ensure!(results.len() == 3, "{} results", results.len());
    let aside = read_topic(&bootstrap, &late, 1).await?;
    let copy = aside.first().context("nothing set aside")?;
    let header = |k: &str| {
        copy.headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    ensure!(
        copy.value.is_none()
            && header("weir-source-offset").as_deref() == Some("0")
            && header("weir-left-out").is_some_and(|h| h.contains("2000000 bytes")),
        "set aside: value {:?} bytes, headers {:?}",
        copy.value.as_ref().map(|v| v.len()),
        copy.headers
    );
    let status = job_status(&admin, "aside")?;
    ensure!(
        status["bad"] == 1 && status["restarts"] == 0,
        "the job's status: {status}"
    );
    Ok(())
}
