//! Accumulators of the aggregate functions: add a value, merge two (session
//! windows merge), read the result as JSON.
//!
//! Every result is independent of the order values arrive in, so a window
//! fed in another interleaving (a replay, a restart) yields the same bytes.
//! That is why sums are exact: integers add as integers, and fractions add
//! as integers of nanounits (a float sum would depend on the order).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::AggregateKind;

/// Fractions are summed in units of 10⁻⁹.
const FRACTION_SCALE: f64 = 1e9;
/// 10⁻⁹ units in one.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The running state of one aggregate of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    /// `COUNT(*)` and `COUNT(col)`.
    Count(u64),
    /// `COUNT(DISTINCT col)`: the values' JSON text.
    Distinct(BTreeSet<String>),
    /// `SUM(col)`.
    Sum(ExactSum),
    /// `MIN(col)`.
    Min(Option<Extreme>),
    /// `MAX(col)`.
    Max(Option<Extreme>),
    /// `AVG(col)`.
    Avg(ExactSum),
    /// The best rows of a window Top-N over the input records.
    Rows(super::top_n::TopRows),
}

/// A sum that does not depend on the order of its terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Sum of the integer terms.
    ints: i128,
    /// Sum of the other terms, in 10⁻⁹ units.
    nanos: i128,
    /// Whether any term was not an integer.
    fractional: bool,
    /// Terms added.
    n: u64,
}

impl ExactSum {
    fn add(&mut self, v: &Value) {
        let Value::Number(n) = v else {
            return;
        };
        if let Some(i) = n.as_i64() {
            self.ints += i128::from(i);
        } else if let Some(u) = n.as_u64() {
            self.ints += i128::from(u);
        } else if let Some(f) = n.as_f64() {
            self.nanos = self
                .nanos
                .saturating_add((f * FRACTION_SCALE).round() as i128);
            self.fractional = true;
        }
        self.n += 1;
    }

    fn merge(&mut self, o: &ExactSum) {
        self.ints = self.ints.saturating_add(o.ints);
        self.nanos = self.nanos.saturating_add(o.nanos);
        self.fractional |= o.fractional;
        self.n += o.n;
    }

    /// The sum in 10⁻⁹ units, if it fits.
    fn total_nanos(&self) -> Option<i128> {
        self.ints
            .checked_mul(NANOS_PER_UNIT)?
            .checked_add(self.nanos)
    }

    /// The sum as the float nearest its exact decimal value.
    fn total(&self) -> f64 {
        match self.total_nanos() {
            Some(t) => nearest_quotient(t, NANOS_PER_UNIT),
            None => self.ints as f64 + self.nanos as f64 / FRACTION_SCALE,
        }
    }

    fn sum(&self) -> Value {
        if self.n == 0 {
            return Value::Null;
        }
        if !self.fractional {
            if let Ok(i) = i64::try_from(self.ints) {
                return Value::from(i);
            }
        }
        float(self.total())
    }

    fn avg(&self) -> Value {
        if self.n == 0 {
            return Value::Null;
        }
        let exact = self
            .total_nanos()
            .zip(i128::from(self.n).checked_mul(NANOS_PER_UNIT));
        match exact {
            Some((t, d)) => float(nearest_quotient(t, d)),
            None => float(self.total() / self.n as f64),
        }
    }
}

/// The float nearest `num / den` (`den` > 0), so a quotient that is a
/// short decimal prints as itself.
fn nearest_quotient(num: i128, den: i128) -> f64 {
    const EXACT: u128 = 1 << 53;
    if num.unsigned_abs() <= EXACT && den.unsigned_abs() <= EXACT {
        // Both are exact floats, and one division rounds correctly.
        return num as f64 / den as f64;
    }
    // Past 2^53: eighteen decimals of the quotient, which Rust's float
    // parsing rounds correctly (the digits cut after the eighteenth move
    // the result by under 10⁻¹⁸ of a unit).
    let scaled = num.checked_mul(10i128.pow(18)).map(|n| n / den);
    let Some(q) = scaled else {
        return num as f64 / den as f64;
    };
    let unit = 10u128.pow(18);
    let a = q.unsigned_abs();
    let sign = if q < 0 { "-" } else { "" };
    format!("{sign}{}.{:018}", a / unit, a % unit)
        .parse()
        .unwrap_or(f64::NAN)
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A candidate minimum or maximum: numbers order below strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Extreme {
    /// A number, with the JSON it came as (integers stay integers).
    Number(f64, Value),
    /// A string.
    String(String),
}

impl Extreme {
    fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => Some(Extreme::Number(n.as_f64()?, v.clone())),
            Value::String(s) => Some(Extreme::String(s.clone())),
            _ => None,
        }
    }

    fn less(&self, o: &Extreme) -> bool {
        match (self, o) {
            (Extreme::Number(a, _), Extreme::Number(b, _)) => a < b,
            (Extreme::Number(..), Extreme::String(_)) => true,
            (Extreme::String(_), Extreme::Number(..)) => false,
            (Extreme::String(a), Extreme::String(b)) => a < b,
        }
    }

    fn value(&self) -> Value {
        match self {
            Extreme::Number(_, v) => v.clone(),
            Extreme::String(s) => Value::String(s.clone()),
        }
    }
}

fn keep(slot: &mut Option<Extreme>, cand: Extreme, smaller: bool) {
    let better = match slot {
        None => true,
        Some(cur) if smaller => cand.less(cur),
        Some(cur) => cur.less(&cand),
    };
    if better {
        *slot = Some(cand);
    }
}

impl Acc {
    /// An empty accumulator of `kind`.
    pub fn new(kind: AggregateKind) -> Self {
        match kind {
            AggregateKind::CountStar | AggregateKind::Count => Acc::Count(0),
            AggregateKind::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggregateKind::Sum => Acc::Sum(ExactSum::default()),
            AggregateKind::Min => Acc::Min(None),
            AggregateKind::Max => Acc::Max(None),
            AggregateKind::Avg => Acc::Avg(ExactSum::default()),
            AggregateKind::TopRows {
                limit,
                descending,
                function,
            } => Acc::Rows(super::top_n::TopRows::new(limit, descending, function)),
        }
    }

    /// Adds one record's argument (`COUNT(*)` counts every call; the others
    /// skip nulls).
    pub fn add(&mut self, kind: AggregateKind, v: &Value) {
        if v.is_null() && kind != AggregateKind::CountStar {
            return;
        }
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Distinct(set) => {
                set.insert(v.to_string());
            }
            Acc::Sum(s) | Acc::Avg(s) => s.add(v),
            Acc::Min(m) => {
                if let Some(c) = Extreme::of(v) {
                    keep(m, c, true);
                }
            }
            Acc::Max(m) => {
                if let Some(c) = Extreme::of(v) {
                    keep(m, c, false);
                }
            }
            Acc::Rows(t) => t.add(v),
        }
    }

    /// Folds `other` (same kind) into this one.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b.iter().cloned()),
            (Acc::Sum(a), Acc::Sum(b)) | (Acc::Avg(a), Acc::Avg(b)) => a.merge(b),
            (Acc::Min(a), Acc::Min(Some(b))) => keep(a, b.clone(), true),
            (Acc::Max(a), Acc::Max(Some(b))) => keep(a, b.clone(), false),
            (Acc::Rows(a), Acc::Rows(b)) => a.merge(b),
            _ => {}
        }
    }

    /// The aggregate's value: null for SUM, MIN, MAX and AVG of no values.
    pub fn value(&self) -> Value {
        match self {
            Acc::Count(n) => Value::from(*n),
            Acc::Distinct(set) => Value::from(set.len() as u64),
            Acc::Sum(s) => s.sum(),
            Acc::Avg(s) => s.avg(),
            Acc::Min(m) | Acc::Max(m) => m.as_ref().map_or(Value::Null, Extreme::value),
            Acc::Rows(t) => t.value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: AggregateKind, vals: &[Value]) -> Value {
        let mut a = Acc::new(kind);
        for v in vals {
            a.add(kind, v);
        }
        a.value()
    }

    #[test]
    fn each_aggregate_over_plain_values() {
        let vals = [json!(3), json!(null), json!(1.5), json!(3), json!(-2)];
        assert_eq!(run(AggregateKind::CountStar, &vals), json!(5));
        assert_eq!(run(AggregateKind::Count, &vals), json!(4));
        assert_eq!(run(AggregateKind::CountDistinct, &vals), json!(3));
        assert_eq!(run(AggregateKind::Sum, &vals), json!(5.5));
        assert_eq!(run(AggregateKind::Min, &vals), json!(-2));
        assert_eq!(run(AggregateKind::Max, &vals), json!(3));
        assert_eq!(run(AggregateKind::Avg, &vals), json!(1.375));
        assert_eq!(run(AggregateKind::Sum, &[json!(1), json!(2)]), json!(3));
        assert_eq!(run(AggregateKind::Sum, &[json!(null)]), json!(null));
        assert_eq!(run(AggregateKind::Max, &[]), json!(null));
        assert_eq!(
            run(AggregateKind::Max, &[json!("b"), json!("a"), json!(9)]),
            json!("b")
        );
    }

    /// Found from outside: a sum of integers and fractions came out as
    /// `514.4300000000001` (the integer part and the fraction were added
    /// as floats). The exact decimal sum is written as the nearest float,
    /// so it reads back as written; an average likewise.
    #[test]
    fn exact_sums_print_as_their_decimal() {
        let vals = [json!(500), json!(10.1), json!(4.33)];
        assert_eq!(run(AggregateKind::Sum, &vals).to_string(), "514.43");
        let vals = [json!(100), json!(9.71)];
        assert_eq!(run(AggregateKind::Sum, &vals).to_string(), "109.71");
        let vals = [json!(100), json!(20), json!(3.29)];
        assert_eq!(run(AggregateKind::Sum, &vals).to_string(), "123.29");
        let tenths = [json!(0.1), json!(0.1), json!(0.1)];
        assert_eq!(run(AggregateKind::Sum, &tenths).to_string(), "0.3");
        assert_eq!(run(AggregateKind::Avg, &tenths).to_string(), "0.1");
        let vals = [json!(-7), json!(0.25)];
        assert_eq!(run(AggregateKind::Sum, &vals).to_string(), "-6.75");
        assert_eq!(run(AggregateKind::Avg, &vals).to_string(), "-3.375");
        let big = [json!(90_000_000_000_i64), json!(0.07)];
        assert_eq!(run(AggregateKind::Sum, &big).to_string(), "90000000000.07");
        let thirds = [json!(1), json!(0), json!(0)];
        assert_eq!(
            run(AggregateKind::Avg, &thirds),
            json!(1.0 / 3.0),
            "an average that is no finite decimal is the nearest float"
        );
    }

    /// A float sum fed in another order gives the same bits, and merging
    /// two halves equals adding everything to one.
    #[test]
    fn sums_do_not_depend_on_order_or_merging() {
        let vals: Vec<Value> = (0..200).map(|i| json!(0.1 * f64::from(i) + 1e-3)).collect();
        let forward = run(AggregateKind::Sum, &vals);
        let mut rev = vals.clone();
        rev.reverse();
        assert_eq!(forward, run(AggregateKind::Sum, &rev));
        let (a, b) = vals.split_at(77);
        let mut left = Acc::new(AggregateKind::Sum);
        a.iter().for_each(|v| left.add(AggregateKind::Sum, v));
        let mut right = Acc::new(AggregateKind::Sum);
        b.iter().for_each(|v| right.add(AggregateKind::Sum, v));
        left.merge(&right);
        assert_eq!(left.value(), forward);
    }
}
