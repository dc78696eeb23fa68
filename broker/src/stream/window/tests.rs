//! The operator against a computation written independently here: per
//! partition lateness and final windows computed from the whole input at
//! once, then compared with what the operator emits for random
//! interleavings of the partitions (which must not matter).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const KINDS: [AggregateKind; 6] = [
    AggregateKind::CountStar,
    AggregateKind::Sum,
    AggregateKind::Min,
    AggregateKind::Max,
    AggregateKind::CountDistinct,
    AggregateKind::Avg,
];

/// (key, event time, value) in one partition, in partition order.
type Part = Vec<(u8, i64, i64)>;
/// A final result as the reference states it (the values as JSON text).
type Final = (String, i64, i64, String);

fn row(key: u8, t: i64, v: i64) -> OwnedRow {
    OwnedRow {
        time_ms: t,
        key: GroupKey::of(&[json!(format!("k{key}"))]),
        args: vec![
            Value::Null,
            json!(v),
            json!(v),
            json!(v),
            json!(v % 3),
            json!(v),
        ],
    }
}

fn aggregates(vals: &[i64]) -> Vec<Value> {
    let n = vals.len() as i64;
    let sum: i64 = vals.iter().sum();
    let distinct: BTreeSet<i64> = vals.iter().map(|v| v % 3).collect();
    vec![
        json!(n),
        json!(sum),
        json!(*vals.iter().min().unwrap()),
        json!(*vals.iter().max().unwrap()),
        json!(distinct.len()),
        json!(sum as f64 / n as f64),
    ]
}

/// Every final window, computed from whole partitions.
fn reference(spec: WindowSpec, grace: i64, parts: &[Part]) -> BTreeSet<Final> {
    let mut fixed: BTreeMap<(u8, i64, i64), Vec<i64>> = BTreeMap::new();
    let mut kept: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
    for part in parts {
        let mut wm: Option<i64> = None;
        for &(k, t, v) in part {
            let open = |close: i64| wm.is_none_or(|w| close > w);
            match spec {
                WindowSpec::Tumble { size_ms: size } | WindowSpec::Hop { size_ms: size, .. } => {
                    let slide = match spec {
                        WindowSpec::Hop { slide_ms, .. } => slide_ms,
                        _ => size,
                    };
                    let lo = (t - size).div_euclid(slide) - 1;
                    let hi = t.div_euclid(slide) + 1;
                    for i in lo..=hi {
                        let start = i * slide;
                        if start <= t && t < start + size && open(start + size + grace) {
                            fixed.entry((k, start, start + size)).or_default().push(v);
                        }
                    }
                }
                WindowSpec::Session { gap_ms } => {
                    if open(t + gap_ms + grace) {
                        kept.entry(k).or_default().push((t, v));
                    }
                }
            }
            wm = Some(wm.map_or(t, |w| w.max(t)));
        }
    }
    let Some(done) = parts
        .iter()
        .map(|p| p.iter().map(|e| e.1).max())
        .collect::<Option<Vec<i64>>>()
        .and_then(|m| m.into_iter().min())
    else {
        return BTreeSet::new();
    };
    let key = |k: u8| GroupKey::of(&[json!(format!("k{k}"))]).as_str().to_string();
    let mut out = BTreeSet::new();
    for ((k, start, end), vals) in fixed {
        if end + grace <= done {
            out.insert((key(k), start, end, json!(aggregates(&vals)).to_string()));
        }
    }
    if let WindowSpec::Session { gap_ms: gap } = spec {
        for (k, mut rows) in kept {
            rows.sort();
            let mut i = 0;
            while i < rows.len() {
                let (start, mut end) = (rows[i].0, rows[i].0 + gap);
                let mut vals = vec![rows[i].1];
                i += 1;
                while i < rows.len() && rows[i].0 <= end {
                    end = end.max(rows[i].0 + gap);
                    vals.push(rows[i].1);
                    i += 1;
                }
                if end + gap + grace <= done {
                    out.insert((key(k), start, end, json!(aggregates(&vals)).to_string()));
                }
            }
        }
    }
    out
}

/// Runs the operator over `parts`, taking the next row from the partition
/// `picks` names (round robin over those not exhausted).
fn run(spec: WindowSpec, grace: i64, parts: &[Part], picks: &[u8]) -> Vec<WindowResult> {
    let mut op = WindowOperator::new(spec, grace, KINDS.to_vec(), parts.len(), EmitMode::Final);
    let mut at = vec![0usize; parts.len()];
    let mut out = Vec::new();
    let mut pick = picks.iter().cycle();
    loop {
        let live: Vec<usize> = (0..parts.len())
            .filter(|p| at[*p] < parts[*p].len())
            .collect();
        if live.is_empty() {
            break;
        }
        let p = live[usize::from(*pick.next().unwrap_or(&0)) % live.len()];
        let (k, t, v) = parts[p][at[p]];
        at[p] += 1;
        op.process(p, row(k, t, v).row(), &mut out);
    }
    assert!(out.iter().all(|r| r.is_final));
    out
}

fn as_finals(out: &[WindowResult]) -> BTreeSet<Final> {
    out.iter()
        .map(|r| {
            let values = json!(r.values.json()).to_string();
            (r.key.as_str().to_string(), r.start_ms, r.end_ms, values)
        })
        .collect()
}

/// Per key, the results in emission order.
fn per_key(out: &[WindowResult]) -> BTreeMap<String, Vec<(i64, i64, Vec<Value>)>> {
    let mut m: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in out {
        m.entry(r.key.as_str().to_string()).or_default().push((
            r.start_ms,
            r.end_ms,
            r.values.json(),
        ));
    }
    m
}

fn spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..5).prop_map(|s| WindowSpec::Tumble { size_ms: s * 500 }),
        (1i64..4, 1i64..4).prop_map(|(slide, n)| WindowSpec::Hop {
            slide_ms: slide * 250,
            size_ms: slide * 250 * n,
        }),
        (1i64..8).prop_map(|g| WindowSpec::Session { gap_ms: g * 150 }),
    ]
}

/// A partition: roughly 100 ms apart, out of order by up to `jitter`.
fn partition(jitter: i64) -> impl Strategy<Value = Part> {
    prop::collection::vec((0u8..4, 0..=2 * jitter, 0i64..100), 0..60).prop_map(move |evs| {
        evs.into_iter()
            .enumerate()
            .map(|(i, (k, j, v))| (k, 1_000_000 + i as i64 * 100 + j - jitter, v))
            .collect()
    })
}

fn input() -> impl Strategy<Value = (WindowSpec, i64, Vec<Part>)> {
    (spec(), 0i64..4, 0i64..3, 1usize..4).prop_flat_map(|(spec, g, j, n)| {
        let jitter = [0, 400, 3_000][j as usize];
        (
            Just(spec),
            Just(g * 300),
            prop::collection::vec(partition(jitter), n),
        )
    })
}

/// Runs `parts` through routers and `shards` shards (rows to the shard of
/// their key; marks after a row's batch, every `mark_every` rows), the
/// shards reading their streams in the order `picks` interleaves the
/// routers' writes; every router restarts once, at `restart_at`, from an
/// earlier checkpoint and writes some rows again.
fn run_two_stage(
    spec: WindowSpec,
    grace: i64,
    parts: &[Part],
    shards: usize,
    picks: &[u8],
    restart_at: usize,
) -> Vec<WindowResult> {
    use crate::stream::repartition::{Routed, Router, Shard};
    let owned: Vec<Vec<OwnedRow>> = parts
        .iter()
        .map(|part| part.iter().map(|&(k, t, v)| row(k, t, v)).collect())
        .collect();
    // Each router's output, per shard, in write order.
    let mut streams: Vec<Vec<Vec<Routed>>> = vec![vec![Vec::new(); parts.len()]; shards];
    for (p, part) in parts.iter().enumerate() {
        let mut router = Router::new(spec, grace);
        let mut checkpoint = (0, router.clone());
        let mut i = 0;
        let mut restarted = false;
        while i < part.len() {
            if let Some(r) = router.route(p as i32, i as i64, 0, owned[p][i].row()) {
                let Routed::Row { row: rw, .. } = r else {
                    unreachable!()
                };
                let s = rw.key.bytes().map(usize::from).sum::<usize>() % shards;
                streams[s][p].push(r);
            }
            i += 1;
            if i % 7 == 0 {
                for stream in streams.iter_mut() {
                    stream[p].push(Routed::Mark {
                        source: p as i32,
                        wm: router.wm,
                        idle: false,
                    });
                }
                checkpoint = (i, router.clone());
            }
            if i == restart_at && !restarted {
                restarted = true;
                (i, router) = checkpoint.clone();
            }
        }
        for stream in streams.iter_mut() {
            stream[p].push(Routed::Mark {
                source: p as i32,
                wm: router.wm,
                idle: false,
            });
        }
    }
    let mut out = Vec::new();
    for per_source in streams {
        let op = WindowOperator::new(spec, grace, KINDS.to_vec(), parts.len(), EmitMode::Final);
        let mut shard = Shard::new(op);
        let mut at = vec![0usize; parts.len()];
        let mut pick = picks.iter().cycle();
        loop {
            let live: Vec<usize> = (0..parts.len())
                .filter(|p| at[*p] < per_source[*p].len())
                .collect();
            if live.is_empty() {
                break;
            }
            let p = live[usize::from(*pick.next().unwrap_or(&0)) % live.len()];
            shard.take(per_source[p][at[p]], &mut out);
            at[p] += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Routed through shards, with routers that restart and write rows
    /// again, the final results are still the reference's, each once.
    #[test]
    fn two_stages_through_shards_match_the_reference(
        (spec, grace, parts) in input(),
        shards in 1usize..4,
        picks in prop::collection::vec(any::<u8>(), 1..50),
        restart_at in 0usize..60,
    ) {
        let want = reference(spec, grace, &parts);
        let got = run_two_stage(spec, grace, &parts, shards, &picks, restart_at);
        prop_assert_eq!(as_finals(&got), want.clone());
        prop_assert_eq!(got.len(), want.len(), "a window emitted twice");
    }

    /// The final results equal the independent computation, whatever the
    /// interleaving, and each key's results come in the same order.
    #[test]
    fn final_windows_match_the_reference_for_any_interleaving(
        (spec, grace, parts) in input(),
        a in prop::collection::vec(any::<u8>(), 1..50),
        b in prop::collection::vec(any::<u8>(), 1..50),
    ) {
        let want = reference(spec, grace, &parts);
        let one = run(spec, grace, &parts, &a);
        let two = run(spec, grace, &parts, &b);
        prop_assert_eq!(as_finals(&one), want.clone());
        prop_assert_eq!(one.len(), want.len(), "a window emitted twice");
        prop_assert_eq!(per_key(&one), per_key(&two));
    }
}

/// The seed's example by hand: 30 s tumbling windows, grace 5 s, two
/// partitions; a late row goes nowhere, and a window waits for the slower
/// partition.
#[test]
fn tumbling_windows_fire_on_the_slowest_partition_and_drop_late_rows() {
    let spec = WindowSpec::Tumble { size_ms: 30_000 };
    let mut op = WindowOperator::new(spec, 5_000, KINDS.to_vec(), 2, EmitMode::Final);
    let mut out = Vec::new();
    assert_eq!(
        op.process(0, row(1, 1_000, 10).row(), &mut out),
        Outcome::Accepted
    );
    assert_eq!(
        op.process(0, row(1, 40_000, 20).row(), &mut out),
        Outcome::Accepted
    );
    // Partition 0 passed 35 s: [0, 30 s) closed for its rows.
    assert_eq!(
        op.process(0, row(1, 2_000, 99).row(), &mut out),
        Outcome::Late
    );
    // Partition 1 is behind: its row still counts, and nothing fired yet.
    assert_eq!(
        op.process(1, row(1, 3_000, 5).row(), &mut out),
        Outcome::Accepted
    );
    assert!(out.is_empty());
    op.process(1, row(2, 36_000, 1).row(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ms, out[0].end_ms), (0, 30_000));
    assert_eq!(out[0].values.json()[0], json!(2));
    assert_eq!(out[0].values.json()[1], json!(15));
    assert_eq!((op.accepted, op.late), (4, 1));
}

/// Under `EmitMode::Changes` every row emits its window's running value,
/// and the final emission follows.
#[test]
fn changes_mode_emits_each_update_then_the_final_value() {
    let spec = WindowSpec::Session { gap_ms: 1_000 };
    let mut op = WindowOperator::new(spec, 0, KINDS.to_vec(), 1, EmitMode::Changes);
    let mut out = Vec::new();
    op.process(0, row(1, 0, 1).row(), &mut out);
    op.process(0, row(1, 500, 2).row(), &mut out);
    op.process(0, row(1, 10_000, 3).row(), &mut out);
    let seen: Vec<_> = out
        .iter()
        .map(|r| (r.start_ms, r.end_ms, r.values.json()[0].clone(), r.is_final))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, 1_000, json!(1), false),
            (0, 1_500, json!(2), false),
            (10_000, 11_000, json!(1), false),
            (0, 1_500, json!(2), true),
        ]
    );
}

/// The operator's state survives a JSON round trip (checkpoints) and goes
/// on as if nothing happened.
#[test]
fn state_round_trips_through_json() {
    let spec = WindowSpec::Hop {
        slide_ms: 500,
        size_ms: 1_500,
    };
    let rows: Vec<_> = (0..40)
        .map(|i| (i % 3, i64::from(i) * 170, i64::from(i)))
        .collect();
    let mut op = WindowOperator::new(spec, 200, KINDS.to_vec(), 1, EmitMode::Final);
    let mut straight = Vec::new();
    let mut resumed = Vec::new();
    for (i, (k, t, v)) in rows.iter().enumerate() {
        op.process(0, row(*k as u8, *t, *v).row(), &mut straight);
        if i == 20 {
            let text = serde_json::to_string(&op).unwrap();
            let mut back: WindowOperator = serde_json::from_str(&text).unwrap();
            assert_eq!(back, op);
            // A checkpoint of the earlier layout, which also held the
            // fixed windows' timers, reads the same.
            let mut old: Value = serde_json::from_str(&text).unwrap();
            old["fixed_timers"] = json!({ "3700": [[r#"["k1"]"#, 2000]] });
            let old: WindowOperator = serde_json::from_value(old).unwrap();
            assert_eq!(old, op);
            // Read back, a start's windows are kept in key order, not in
            // the order their keys came: equal all the same, and a window
            // changed is not.
            let mut reordered: Value = serde_json::from_str(&text).unwrap();
            let fixed = reordered["fixed"].as_array_mut().unwrap();
            assert!(fixed.len() > 2, "{fixed:?}");
            fixed.reverse();
            let reordered: WindowOperator = serde_json::from_value(reordered).unwrap();
            assert_eq!(reordered, op);
            let mut changed: Value = serde_json::from_str(&text).unwrap();
            changed["fixed"][0][1][1] = json!({ "Count": 999 });
            let changed: WindowOperator = serde_json::from_value(changed).unwrap();
            assert_ne!(changed, op);
            // A window listed twice, or with fewer accumulators than the
            // others of its start, is refused rather than misread.
            let mut twice: Value = serde_json::from_str(&text).unwrap();
            let first = twice["fixed"][0].clone();
            twice["fixed"].as_array_mut().unwrap().push(first);
            let err = serde_json::from_value::<WindowOperator>(twice).unwrap_err();
            assert!(err.to_string().contains("listed twice"), "{err}");
            let mut short: Value = serde_json::from_str(&text).unwrap();
            short["fixed"][1][1].as_array_mut().unwrap().pop();
            let err = serde_json::from_value::<WindowOperator>(short).unwrap_err();
            assert!(err.to_string().contains("accumulators"), "{err}");
            resumed = straight.clone();
            for (k, t, v) in &rows[21..] {
                back.process(0, row(*k as u8, *t, *v).row(), &mut resumed);
            }
        }
    }
    assert_eq!(resumed, straight);
}

/// Queryable state: a key's open windows with their running values, not
/// the closed ones and not other keys'.
#[test]
fn open_windows_of_a_key_can_be_read_while_they_build() {
    let spec = WindowSpec::Tumble { size_ms: 1_000 };
    let mut op = WindowOperator::new(spec, 0, KINDS.to_vec(), 1, EmitMode::Final);
    let mut out = Vec::new();
    op.process(0, row(1, 100, 4).row(), &mut out);
    op.process(0, row(1, 1_100, 5).row(), &mut out);
    op.process(0, row(2, 1_200, 6).row(), &mut out);
    op.process(0, row(1, 1_300, 7).row(), &mut out);
    // [0, 1000) closed when the watermark reached 1100.
    assert_eq!(out.len(), 1);
    let open = op.open_for(&row(1, 0, 0).key);
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].start_ms, open[0].end_ms), (1_000, 2_000));
    assert_eq!(open[0].values.json()[1], json!(12));
    assert!(!open[0].is_final);
    assert!(op.open_for(&row(3, 0, 0).key).is_empty());
}

/// Sessions that grow, start earlier and merge are counted once each while
/// open, and each fires once, at its own close (end + gap + grace), not at
/// the close its first row gave it.
#[test]
fn grown_and_merged_sessions_fire_once_at_their_close() {
    let spec = WindowSpec::Session { gap_ms: 100 };
    let mut op = WindowOperator::new(spec, 200, KINDS.to_vec(), 1, EmitMode::Final);
    let mut out = Vec::new();
    // Key 1: [1000, 1100) grows to [1000, 1180), then 950 moves its start
    // earlier. Key 2: [1000, 1100) and [1180, 1280), until 1090 joins them.
    for (k, t) in [(1, 1_000), (1, 1_080), (2, 1_000), (2, 1_180), (1, 950)] {
        op.process(0, row(k, t, 1).row(), &mut out);
    }
    assert_eq!(op.open_windows(), 3);
    op.process(0, row(2, 1_090, 1).row(), &mut out);
    assert_eq!(op.open_windows(), 2);
    // Key 1 closes at 1180 + 100 + 200: a watermark of 1479 fires nothing,
    // although its first row's session would have closed at 1400.
    op.process(0, row(3, 1_479, 1).row(), &mut out);
    assert!(out.is_empty(), "fired early: {out:?}");
    let fired = |out: &[WindowResult]| -> Vec<(i64, i64, Value)> {
        out.iter()
            .map(|r| (r.start_ms, r.end_ms, r.values.json()[0].clone()))
            .collect()
    };
    op.process(0, row(3, 1_480, 1).row(), &mut out);
    assert_eq!(fired(&out), [(950, 1_180, json!(3))]);
    out.clear();
    op.process(0, row(3, 1_580, 1).row(), &mut out);
    assert_eq!(fired(&out), [(1_000, 1_280, json!(3))]);
    // Key 3: one session, [1479, 1680) (1580 touches [1479, 1580)).
    assert_eq!(op.open_windows(), 1);
}

/// A record exactly `gap` after a session's last one joins it, as in
/// Flink (whose session windows merge when they overlap or touch); one a
/// millisecond later starts a new session (found from outside: records
/// `gap` apart made two sessions where Flink makes one).
#[test]
fn touching_gap_windows_make_one_session() {
    let spec = WindowSpec::Session { gap_ms: 100 };
    let mut op = WindowOperator::new(spec, 500, KINDS.to_vec(), 1, EmitMode::Final);
    let mut out = Vec::new();
    // 1_900 comes out of order and touches [2000, 2100) from below.
    for t in [1_000, 1_100, 1_200, 1_301, 2_000, 1_900, 9_000] {
        op.process(0, row(1, t, 1).row(), &mut out);
    }
    let got: Vec<_> = out
        .iter()
        .map(|r| (r.start_ms, r.end_ms, r.values.json()[0].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (1_000, 1_300, json!(3)),
            (1_301, 1_401, json!(1)),
            (1_900, 2_100, json!(2))
        ]
    );
}

#[test]
fn a_group_key_is_the_compact_json_array_of_its_values() {
    // Checkpoints and repartition records hold keys in this form.
    let values = [
        json!(null),
        json!(17),
        json!(-2.5),
        json!("a \"quoted\" \\ caf\u{e9} \n"),
        json!([1, {"b": [true]}]),
        json!({"z": 1, "a": null}),
    ];
    for n in 0..=values.len() {
        let v = &values[..n];
        assert_eq!(
            GroupKey::of(v).as_str(),
            Value::Array(v.to_vec()).to_string()
        );
    }
    let mut w = GroupKeyWriter::new();
    w.text("x\"y");
    w.value(&json!(1));
    assert_eq!(w.finish(), GroupKey::of(&[json!("x\"y"), json!(1)]));
}

proptest! {
    /// A text key column is written as serde_json writes the string.
    #[test]
    fn text_key_columns_are_written_as_json_strings(a in any::<String>(), b in "[ -~]{0,12}") {
        let mut by_text = GroupKeyWriter::new();
        by_text.text(&a);
        by_text.text(&b);
        let by_value = GroupKey::of(&[json!(a), json!(b)]);
        prop_assert_eq!(by_text.finish(), by_value);
    }

    /// A window's results come out in the order of their keys' text,
    /// whatever the keys (prefixes of one another, long common starts,
    /// control characters, numbers and strings mixed).
    #[test]
    fn results_of_a_window_come_out_by_key_text(
        keys in proptest::collection::vec(
            prop_oneof![
                "[a-c\\x00-\\x02]{0,12}".prop_map(|s| json!(s)),
                any::<i64>().prop_map(|n| json!(n)),
                Just(Value::Null),
            ],
            1..40,
        )
    ) {
        let mut op = WindowOperator::new(
            WindowSpec::Tumble { size_ms: 10 },
            0,
            vec![AggregateKind::CountStar],
            1,
            EmitMode::Final,
        );
        let mut out = Vec::new();
        for k in &keys {
            let row = OwnedRow { time_ms: 1, key: GroupKey::of(std::slice::from_ref(k)), args: vec![Value::Null] };
            op.process(0, row.row(), &mut out);
        }
        op.process(0, OwnedRow { time_ms: 100, key: GroupKey::of(&[json!(0)]), args: vec![Value::Null] }.row(), &mut out);
        let got: Vec<&str> = out.iter().map(|r| r.key.as_str()).collect();
        let want: Vec<String> = keys.iter().map(|k| GroupKey::of(std::slice::from_ref(k)).as_str().to_string()).collect::<BTreeSet<_>>().into_iter().collect();
        prop_assert_eq!(got, want);
    }
}

/// The windows of one start are emitted in the order of their keys' text,
/// whatever order the keys came in, also for keys whose first bytes are
/// the same (ordered by their first bytes as numbers, then by the text).
#[test]
fn windows_of_one_start_fire_in_key_order() {
    let keys = [
        "customer-000010",
        "b",
        "customer-000002",
        "customer-0000021",
        "a",
        "customer-000001",
        "customer",
    ];
    for spec in [
        WindowSpec::Tumble { size_ms: 1_000 },
        WindowSpec::Hop {
            slide_ms: 500,
            size_ms: 1_000,
        },
    ] {
        let mut op =
            WindowOperator::new(spec, 0, vec![AggregateKind::CountStar], 1, EmitMode::Final);
        let mut out = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let r = OwnedRow {
                time_ms: 100 + i as i64,
                key: GroupKey::of(&[json!(k)]),
                args: vec![Value::Null],
            };
            op.process(0, r.row(), &mut out);
        }
        let r = OwnedRow {
            time_ms: 10_000,
            key: GroupKey::of(&[json!("z")]),
            args: vec![Value::Null],
        };
        op.process(0, r.row(), &mut out);
        let mut starts: Vec<i64> = out.iter().map(|r| r.start_ms).collect();
        starts.dedup();
        for start in starts {
            let got: Vec<&str> = out
                .iter()
                .filter(|r| r.start_ms == start)
                .map(|r| r.key.as_str())
                .collect();
            let mut want = got.clone();
            want.sort_unstable();
            assert_eq!(got, want, "{spec:?}, start {start}");
            assert_eq!(got.len(), keys.len(), "{spec:?}, start {start}");
        }
    }
}

/// The same key order whether a start's windows are sorted (a start with
/// few windows among many keys with slots) or walked in the kept order of
/// the keys (a start with most of them), and after keys came and went.
#[test]
fn key_order_holds_whether_a_start_is_sorted_or_walked() {
    let spec = WindowSpec::Tumble { size_ms: 1_000 };
    let mut op = WindowOperator::new(spec, 0, vec![AggregateKind::CountStar], 1, EmitMode::Final);
    let mut out = Vec::new();
    let key = |i: usize| format!("customer-{i:06}");
    let scrambled = |n: usize| (0..n).map(move |i| i * 7_919 % n);
    // Per start: the keys of its rows, in the order they come.
    let starts: Vec<Vec<String>> = vec![
        scrambled(300)
            .map(key)
            .chain(["b".into(), "a".into()])
            .collect(),
        vec![key(17), "customer-x".into(), key(3)],
        scrambled(250)
            .map(key)
            .chain((0..5).map(|i| format!("new-{}", 4 - i)))
            .collect(),
        scrambled(250).map(|i| key(249 - i)).collect(),
        vec!["c".into(), key(1)],
    ];
    for (s, keys) in starts.iter().enumerate() {
        for (i, k) in keys.iter().enumerate() {
            let r = OwnedRow {
                time_ms: s as i64 * 1_000 + i as i64 % 1_000,
                key: GroupKey::of(&[json!(k)]),
                args: vec![Value::Null],
            };
            op.process(0, r.row(), &mut out);
        }
    }
    let last = OwnedRow {
        time_ms: 100_000,
        key: GroupKey::of(&[json!("z")]),
        args: vec![Value::Null],
    };
    op.process(0, last.row(), &mut out);
    for (s, keys) in starts.iter().enumerate() {
        let got: Vec<&str> = out
            .iter()
            .filter(|r| r.start_ms == s as i64 * 1_000)
            .map(|r| r.key.as_str())
            .collect();
        let mut want: Vec<String> = keys
            .iter()
            .map(|k| GroupKey::of(&[json!(k)]).0.to_string())
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "start {s}");
    }
}
