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

use serde_json::Value;

use super::plan::{JobPlan, RankColumn, RankFunction, TopN};
use super::window::WindowResult;

/// The results of `results` a Top-N keeps, each with its rank: by window
/// (in the order they came), then `PARTITION BY` values, then rank. The
/// results of a plan without Top-N all come back, unranked.
pub fn rank(plan: &JobPlan, results: Vec<WindowResult>) -> Vec<(WindowResult, Option<u64>)> {
    let Some(top) = &plan.top else {
        return results.into_iter().map(|r| (r, None)).collect();
    };
    // Group by window, keeping the order windows fired in.
    let mut windows: Vec<((i64, i64), Vec<Candidate>)> = Vec::new();
    for r in results {
        // Updates of open windows are not ranked (a Top-N job emits final
        // results only; see `JobDef::plan`).
        if !r.is_final {
            continue;
        }
        let values = r.key.values();
        let partition: Vec<Value> = top
            .partition
            .iter()
            .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        let order = match top.order {
            RankColumn::Key(i) => values.get(i).cloned(),
            RankColumn::Aggregate(i) => r.values.get(i).cloned(),
        }
        .unwrap_or(Value::Null);
        let c = Candidate {
            partition: Value::Array(partition).to_string(),
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
                .then_with(|| by_order(top, &a.order, &b.order))
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
    partition: String,
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
    let mut rank = 0u64;
    let mut dense = 0u64;
    for (n, c) in sorted.iter().enumerate() {
        let tie = n > 0 && by_order(top, &sorted[n - 1].order, &c.order) == Ordering::Equal;
        if !tie {
            dense += 1;
            rank = n as u64 + 1;
        }
        let r = match top.function {
            RankFunction::RowNumber => n as u64 + 1,
            RankFunction::Rank => rank,
            RankFunction::DenseRank => dense,
        };
        if r > top.limit {
            break;
        }
        kept.push((c.result.clone(), Some(r)));
    }
}

/// Best first: by the ranked column, ascending or descending; a null or
/// missing value ranks last either way.
fn by_order(top: &TopN, a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) if top.descending => total(b, a),
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
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
        },
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
            values: vec![total, json!(1)],
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
            values: vec![json!(total), json!(1)],
            is_final: true,
        };
        let mut input = vec![r("eu", 1, 5), r("us", 2, 9), r("eu", 3, 6), r("us", 4, 1)];
        let want: Vec<_> = rank(&plan, input.clone())
            .into_iter()
            .map(|(r, _)| r.key.0)
            .collect();
        assert_eq!(want, vec![r#"["eu",3]"#, r#"["us",2]"#]);
        input.reverse();
        let again: Vec<_> = rank(&plan, input)
            .into_iter()
            .map(|(r, _)| r.key.0)
            .collect();
        assert_eq!(again, want);
    }
}
