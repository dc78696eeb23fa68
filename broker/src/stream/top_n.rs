//! Window Top-N: of the final results a shard emits, only the best of each
//! window (and `PARTITION BY` columns) are written, ranked by one column.
//!
//! All groups of one tumbling or hopping window close together, so they
//! fire together: the results of a window are complete in the batch
//! [`rank`] is given, and the ranking is a pure function of them. Ties are
//! ordered by the group key's values (ascending), so `ROW_NUMBER()` is as deterministic as `RANK()`
//! and a replay writes the same rows in the same order (the exactly-once
//! argument of [`super::aggregate`] holds unchanged). Every group one
//! ranking compares lives in one shard: rows are routed by the
//! `PARTITION BY` columns ([`JobPlan::shard_key`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{JobPlan, RankColumn, RankFunction, TopN};
use super::window::{Values, WindowResult};

/// The results of `results` a Top-N keeps, each with its rank: by window
/// (in the order they came), then `PARTITION BY` values, then rank. The
/// results of a plan without Top-N all come back, unranked.
pub fn rank(plan: &JobPlan, results: Vec<WindowResult>) -> Vec<(WindowResult, Option<u64>)> {
    let Some(top) = &plan.top else {
        return results.into_iter().map(|r| (r, None)).collect();
    };
    if top.order == RankColumn::Row {
        // Ranked as they came, by the window's accumulator.
        return results
            .into_iter()
            .filter(|r| r.is_final)
            .flat_map(|r| rows_of(&r))
            .collect();
    }
    // Group by window, keeping the order windows fired in.
    let mut windows: Vec<((i64, i64), Vec<Candidate>)> = Vec::new();
    for r in results {
        // Updates of open windows are not ranked (a Top-N job emits final
        // results only; see `JobDef::plan`).
        if !r.is_final {
            continue;
        }
        let values = r.key.values();
        let partition = top.partition_key(&values).0;
        let order = match top.order {
            RankColumn::Key(i) => values.get(i).cloned(),
            RankColumn::Aggregate(i) => r.values.get(i),
            RankColumn::Row => None,
        }
        .unwrap_or(Value::Null);
        let c = Candidate {
            partition,
            order,
            key: values,
            result: r,
        };
        let window = (c.result.start_ms, c.result.end_ms);
        match windows.last_mut() {
            Some((w, cs)) if *w == window => cs.push(c),
            _ => match windows.iter_mut().find(|(w, _)| *w == window) {
                Some((_, cs)) => cs.push(c),
                None => windows.push((window, vec![c])),
            },
        }
    }
    let mut kept = Vec::new();
    for (_, mut cs) in windows {
        cs.sort_by(|a, b| {
            a.partition
                .cmp(&b.partition)
                .then_with(|| by_order(top.descending, &a.order, &b.order))
                .then_with(|| by_key(&a.key, &b.key))
        });
        let mut i = 0;
        while i < cs.len() {
            let j = i + cs[i..]
                .iter()
                .take_while(|c| c.partition == cs[i].partition)
                .count();
            keep_best(top, &cs[i..j], &mut kept);
            i = j;
        }
    }
    kept
}

/// One final result with what it is ranked by.
struct Candidate {
    partition: std::sync::Arc<str>,
    order: Value,
    /// The group key's values (ties are ordered by them).
    key: Vec<Value>,
    result: WindowResult,
}

/// Ties: by the group key's values in turn, ascending ([`total`] order).
fn by_key(a: &[Value], b: &[Value]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| total(x, y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Appends the results of one ranking (sorted best first) whose rank is
/// within the limit.
fn keep_best(top: &TopN, sorted: &[Candidate], kept: &mut Vec<(WindowResult, Option<u64>)>) {
    let ties = sorted
        .windows(2)
        .map(|w| by_order(top.descending, &w[0].order, &w[1].order).is_eq());
    for (c, r) in sorted.iter().zip(numbering(top.function, ties)) {
        if r > top.limit {
            break;
        }
        kept.push((c.result.clone(), Some(r)));
    }
}

/// The ranks of a sorted ranking's rows under `function`, given for each
/// row after the first whether it ties with the one before.
fn numbering(
    function: RankFunction,
    ties: impl Iterator<Item = bool>,
) -> impl Iterator<Item = u64> {
    let (mut rank, mut dense) = (1u64, 1u64);
    std::iter::once(1).chain(ties.zip(2u64..).map(move |(tie, n)| {
        if !tie {
            rank = n;
            dense += 1;
        }
        match function {
            RankFunction::RowNumber => n,
            RankFunction::Rank => rank,
            RankFunction::DenseRank => dense,
        }
    }))
}

/// Open windows as a state query shows them: a Top-N over the input
/// records shows each window's best rows so far, ranked; any other job its
/// windows' aggregates, unranked.
pub fn as_they_stand(plan: &JobPlan, open: Vec<WindowResult>) -> Vec<(WindowResult, Option<u64>)> {
    match &plan.top {
        Some(top) if top.order == RankColumn::Row => open.iter().flat_map(rows_of).collect(),
        _ => open.into_iter().map(|r| (r, None)).collect(),
    }
}

/// The kept rows of a window of a Top-N over the input records, as
/// results: each with the row's columns as its values, and its rank.
pub fn rows_of(r: &WindowResult) -> Vec<(WindowResult, Option<u64>)> {
    let Some(Value::Array(rows)) = r.values.get(0) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| match row {
            Value::Array(cells) => {
                let (rank, fields) = cells.split_first()?;
                let result = WindowResult {
                    values: Values::Json(fields.to_vec()),
                    ..r.clone()
                };
                Some((result, rank.as_u64()))
            }
            _ => None,
        })
        .collect()
}

/// The best input rows of one window (the accumulator of
/// [`super::plan::AggregateKind::TopRows`]): kept sorted best first, and
/// cut to the rows whose rank is still within the limit, so a window holds
/// about `limit` rows whatever its input. Which rows it holds does not
/// depend on the order they came in: ties are ordered by the rows' values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopRows {
    limit: u64,
    descending: bool,
    function: RankFunction,
    /// Each row: the values of `TopN::rows`, the ranked one first.
    rows: Vec<Vec<Value>>,
}

impl TopRows {
    /// An empty window's.
    pub fn new(limit: u64, descending: bool, function: RankFunction) -> Self {
        Self {
            limit,
            descending,
            function,
            rows: Vec::new(),
        }
    }

    /// Takes a row (a JSON array of its columns).
    pub fn add(&mut self, row: &Value) {
        let Value::Array(row) = row else {
            return;
        };
        let at = self
            .rows
            .partition_point(|r| self.row_order(r, row) != Ordering::Greater);
        let full = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if self.function == RankFunction::RowNumber && at >= full {
            return;
        }
        self.rows.insert(at, row.clone());
        self.cut();
    }

    /// Takes another window's rows (merging session windows).
    pub fn merge(&mut self, other: &TopRows) {
        for r in &other.rows {
            self.add(&Value::Array(r.clone()));
        }
    }

    /// The kept rows, best first, each as `[rank, columns…]`.
    pub fn value(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .zip(self.ranks())
                .map(|(row, rank)| {
                    let mut cells = Vec::with_capacity(row.len() + 1);
                    cells.push(Value::from(rank));
                    cells.extend(row.iter().cloned());
                    Value::Array(cells)
                })
                .collect(),
        )
    }

    fn ranks(&self) -> impl Iterator<Item = u64> + '_ {
        let ties = self
            .rows
            .windows(2)
            .map(|w| by_order(self.descending, first(&w[0]), first(&w[1])).is_eq());
        numbering(self.function, ties)
    }

    /// Drops the rows ranked past the limit (ranks only grow down the list,
    /// and a row added later only pushes others down).
    fn cut(&mut self) {
        let keep = self.ranks().take_while(|r| *r <= self.limit).count();
        self.rows.truncate(keep);
    }

    /// Best first by the ranked column, then by the row's values.
    fn row_order(&self, a: &[Value], b: &[Value]) -> Ordering {
        by_order(self.descending, first(a), first(b)).then_with(|| by_key(a, b))
    }
}

fn first(row: &[Value]) -> &Value {
    row.first().unwrap_or(&Value::Null)
}

/// Best first: by the ranked column, ascending or descending; a null or
/// missing value ranks last either way.
fn by_order(descending: bool, a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) if descending => total(b, a),
        (false, false) => total(a, b),
    }
}

/// A total order on JSON values: numbers (by value), then strings, then
/// anything else by its JSON text.
fn total(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            _ => 2,
        }
    }
    match (a, b) {
        // Equal in value but written differently (`1` and `1.0`): by the
        // JSON text, so that no two different rows tie and the rows kept
        // never depend on their order of arrival.
        (Value::Number(x), Value::Number(y)) => super::number::total(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => class(a)
            .cmp(&class(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::{seed_plan, TimeSource};
    use crate::stream::window::GroupKey;
    use serde_json::json;

    fn res(key: Value, start: i64, total: Value) -> WindowResult {
        WindowResult {
            key: GroupKey::of(&[key]),
            start_ms: start,
            end_ms: start + 30_000,
            values: Values::Json(vec![total, json!(1)]),
            is_final: true,
        }
    }

    fn top(function: RankFunction, limit: u64, descending: bool) -> JobPlan {
        let mut plan = seed_plan(None, TimeSource::Field("ts".into()), vec![]);
        plan.top = Some(TopN {
            partition: vec![],
            order: RankColumn::Aggregate(0),
            descending,
            function,
            limit,
            rows: vec![],
        });
        plan
    }

    /// (customer, rank) of each kept result, in output order.
    fn ranked(plan: &JobPlan, rs: Vec<WindowResult>) -> Vec<(i64, Value, u64)> {
        rank(plan, rs)
            .into_iter()
            .map(|(r, n)| (r.start_ms, r.key.values()[0].clone(), n.unwrap()))
            .collect()
    }

    /// Each ranking function numbers ties its own way (ties ordered by the
    /// key's value: 9 before 10), the limit cuts by
    /// rank, nulls rank last, and windows are ranked apart in the order
    /// they fired.
    /// Rows equal but for how a number is written (`1` and `1.0`) are
    /// kept the same whatever their order of arrival (found by review).
    #[test]
    fn rows_equal_as_numbers_keep_one_order() {
        let rows = [json!([5, 1]), json!([5, 1.0]), json!([5, 2])];
        let mut seen = None;
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0]] {
            let mut t = TopRows::new(1, true, RankFunction::RowNumber);
            for i in order {
                t.add(&rows[i]);
            }
            let v = t.value();
            assert_eq!(*seen.get_or_insert_with(|| v.clone()), v, "{order:?}");
        }
    }

    #[test]
    fn ties_limits_nulls_and_windows() {
        let input = || {
            vec![
                res(json!(5), 30_000, json!(7)),
                res(json!(10), 30_000, json!(9)),
                res(json!(9), 30_000, json!(9)),
                res(json!(3), 30_000, Value::Null),
                res(json!(4), 30_000, json!(8)),
                res(json!(1), 0, json!(1)),
            ]
        };
        let w = 30_000;
        assert_eq!(
            ranked(&top(RankFunction::RowNumber, 3, true), input()),
            vec![
                (w, json!(9), 1),
                (w, json!(10), 2),
                (w, json!(4), 3),
                (0, json!(1), 1)
            ]
        );
        assert_eq!(
            ranked(&top(RankFunction::Rank, 2, true), input()),
            vec![(w, json!(9), 1), (w, json!(10), 1), (0, json!(1), 1)]
        );
        assert_eq!(
            ranked(&top(RankFunction::DenseRank, 3, true), input()),
            vec![
                (w, json!(9), 1),
                (w, json!(10), 1),
                (w, json!(4), 2),
                (w, json!(5), 3),
                (0, json!(1), 1)
            ]
        );
        // Ascending: the smallest first, the null still last.
        assert_eq!(
            ranked(&top(RankFunction::RowNumber, 9, false), input())
                .into_iter()
                .filter(|r| r.0 == w)
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            vec![json!(5), json!(4), json!(9), json!(10), json!(3)]
        );
    }

    /// With `PARTITION BY` a key column, each of its values is ranked
    /// apart; the result does not depend on the order results came in.
    #[test]
    fn partitions_rank_apart_whatever_the_input_order() {
        let mut plan = top(RankFunction::RowNumber, 1, true);
        plan.keys = vec!["region".into(), "customerId".into()];
        plan.top.as_mut().unwrap().partition = vec![0];
        let r = |region: &str, c: i64, total: i64| WindowResult {
            key: GroupKey::of(&[json!(region), json!(c)]),
            start_ms: 0,
            end_ms: 30_000,
            values: Values::Json(vec![json!(total), json!(1)]),
            is_final: true,
        };
        let mut input = vec![r("eu", 1, 5), r("us", 2, 9), r("eu", 3, 6), r("us", 4, 1)];
        let want: Vec<_> = rank(&plan, input.clone())
            .into_iter()
            .map(|(r, _)| r.key.as_str().to_string())
            .collect();
        assert_eq!(want, vec![r#"["eu",3]"#, r#"["us",2]"#]);
        input.reverse();
        let again: Vec<_> = rank(&plan, input)
            .into_iter()
            .map(|(r, _)| r.key.as_str().to_string())
            .collect();
        assert_eq!(again, want);
    }

    /// The best rows of a window are the same whatever order they come
    /// in, equal to ranking all of them at the end (written out here), and
    /// the accumulator holds only rows still within the limit.
    #[test]
    fn top_rows_do_not_depend_on_arrival_order() {
        // (price, bidder): prices with ties, a null price, duplicates.
        let rows: Vec<Value> = [
            (json!(5), 1),
            (json!(9), 2),
            (json!(7), 3),
            (json!(9), 4),
            (Value::Null, 5),
            (json!(1), 6),
            (json!(7), 7),
            (json!(9), 2),
            (json!(3), 8),
        ]
        .iter()
        .map(|(p, b)| json!([p, b]))
        .collect();
        for function in [
            RankFunction::RowNumber,
            RankFunction::Rank,
            RankFunction::DenseRank,
        ] {
            for limit in [1, 2, 3, 4, 9] {
                // By hand: price descending (null last), then the row;
                // ranks by the function; kept while within the limit.
                let mut sorted: Vec<(Option<i64>, i64)> = rows
                    .iter()
                    .map(|r| (r[0].as_i64(), r[1].as_i64().unwrap()))
                    .collect();
                sorted.sort_by(|a, b| match (a.0, b.0) {
                    (Some(x), Some(y)) => y.cmp(&x).then(a.1.cmp(&b.1)),
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (None, None) => a.1.cmp(&b.1),
                });
                let mut want = Vec::new();
                let (mut rank, mut dense) = (0u64, 0u64);
                for (n, row) in sorted.iter().enumerate() {
                    if n == 0 || sorted[n - 1].0 != row.0 {
                        rank = n as u64 + 1;
                        dense += 1;
                    }
                    let r = match function {
                        RankFunction::RowNumber => n as u64 + 1,
                        RankFunction::Rank => rank,
                        RankFunction::DenseRank => dense,
                    };
                    if r <= limit {
                        want.push(json!([r, row.0, row.1]));
                    }
                }
                let mut order: Vec<usize> = (0..rows.len()).collect();
                let mut seed = 7u64;
                for round in 0..50 {
                    let mut acc = TopRows::new(limit, true, function);
                    for &i in &order {
                        acc.add(&rows[i]);
                        // Only rows still within the limit (ties may
                        // hold more than the limit for RANK/DENSE_RANK).
                        assert!(acc.ranks().all(|r| r <= limit), "{function:?} {limit}");
                        if function == RankFunction::RowNumber {
                            assert!(acc.rows.len() as u64 <= limit);
                        }
                    }
                    assert_eq!(
                        acc.value(),
                        Value::Array(want.clone()),
                        "{function:?} limit {limit}, round {round}"
                    );
                    // Another order: a Fisher-Yates shuffle.
                    for i in (1..order.len()).rev() {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        order.swap(i, (seed >> 33) as usize % (i + 1));
                    }
                }
                // Two halves merged equal one.
                let mut a = TopRows::new(limit, true, function);
                let mut b = TopRows::new(limit, true, function);
                for (i, r) in rows.iter().enumerate() {
                    if i % 2 == 0 {
                        a.add(r)
                    } else {
                        b.add(r)
                    }
                }
                a.merge(&b);
                assert_eq!(
                    a.value(),
                    Value::Array(want),
                    "{function:?} {limit}: merged"
                );
            }
        }
    }
}
