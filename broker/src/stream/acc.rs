//! Accumulators of the aggregate functions: add a value, merge two (session
//! windows merge), read the result as JSON.
//!
//! Every result is independent of the order values arrive in, so a window
//! fed in another interleaving (a replay, a restart) yields the same bytes.
//! That is why sums are exact: integers add as integers, and fractions add
//! as integers of nanounits (a float sum would depend on the order); a
//! number nanounits cannot hold (more than nine decimals, or beyond 10¹⁵)
//! adds its shortest decimal's digits to the sum of its power of ten.

use std::collections::{BTreeMap, BTreeSet};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Sum of the integer terms.
    #[serde(with = "wide_int")]
    ints: i128,
    /// Sum of the other terms, in 10⁻⁹ units.
    #[serde(with = "wide_int")]
    nanos: i128,
    /// Whether any term was not an integer.
    fractional: bool,
    /// Terms added.
    n: u64,
    /// The other terms (nanounits cannot hold them exactly): power of ten
    /// → sum of the digits of the terms' shortest decimals at that power.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "wide_int::map"
    )]
    wide: BTreeMap<i16, i128>,
}

/// An `i128` of a checkpoint: a JSON number while it fits an `i64` or a
/// `u64`, else the string of its digits. A checkpoint is read back through
/// `serde_json::Value`, which holds no wider integer: a sum past `u64`
/// (three times `i64::MAX`, found from outside) came back as a float, the
/// checkpoint could not be read, and the job failed at every restart. Read
/// back: a number, a string of digits, or (a checkpoint written before) an
/// integral float, taken as the integer nearest to it.
mod wide_int {
    use serde::de::{Deserializer, Error, Visitor};
    use serde::{Deserialize, Serialize, Serializer};
    use std::collections::BTreeMap;

    /// An `i128` written and read as [`self`] says.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Wide(pub i128);

    impl Serialize for Wide {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if let Ok(i) = i64::try_from(self.0) {
                s.serialize_i64(i)
            } else if let Ok(u) = u64::try_from(self.0) {
                s.serialize_u64(u)
            } else {
                s.serialize_str(&self.0.to_string())
            }
        }
    }

    impl<'de> Deserialize<'de> for Wide {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Wide;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an integer, or its digits as a string")
                }
                fn visit_i64<E: Error>(self, v: i64) -> Result<Wide, E> {
                    Ok(Wide(v.into()))
                }
                fn visit_u64<E: Error>(self, v: u64) -> Result<Wide, E> {
                    Ok(Wide(v.into()))
                }
                fn visit_i128<E: Error>(self, v: i128) -> Result<Wide, E> {
                    Ok(Wide(v))
                }
                fn visit_f64<E: Error>(self, v: f64) -> Result<Wide, E> {
                    if v.is_finite() && v.fract() == 0.0 {
                        // Saturating: a checkpoint's sums saturate too.
                        Ok(Wide(v as i128))
                    } else {
                        Err(E::custom(format!("{v} is not an integer")))
                    }
                }
                fn visit_str<E: Error>(self, v: &str) -> Result<Wide, E> {
                    v.parse()
                        .map(Wide)
                        .map_err(|_| E::custom(format!("{v:?} is not an integer")))
                }
            }
            d.deserialize_any(V)
        }
    }

    pub(crate) fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        Wide(*v).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        Wide::deserialize(d).map(|w| w.0)
    }

    /// A map whose values are [`Wide`].
    pub(crate) mod map {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            m: &BTreeMap<i16, i128>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_map(m.iter().map(|(k, v)| (k, Wide(*v))))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<i16, i128>, D::Error> {
            let m = BTreeMap::<i16, Wide>::deserialize(d)?;
            Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
        }
    }
}

/// `f` in 10⁻⁹ units, when that is exact: `f` is below 10¹⁵ and a whole
/// number of nanounits rounds to it.
fn nanos_of(f: f64) -> Option<i128> {
    if f.abs() >= 1e15 {
        return None;
    }
    let u = (f * FRACTION_SCALE).round();
    (u / FRACTION_SCALE == f).then_some(u as i128)
}

/// The digits and power of ten of `f`'s shortest decimal (`f` finite):
/// 1.25e-10 → (125, -12).
fn shortest_decimal(f: f64) -> (i128, i16) {
    let text = format!("{f:e}");
    let (digits, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let m: i128 = format!("{whole}{fraction}").parse().unwrap_or(0);
    let e = exp.parse::<i16>().unwrap_or(0) - fraction.len() as i16;
    (m, e)
}

/// Adds `m × 10^e` to `terms` (power → digits).
fn add_term(terms: &mut BTreeMap<i16, i128>, e: i16, m: i128) {
    let sum = terms.entry(e).or_default();
    *sum = sum.saturating_add(m);
}

/// The float nearest `Σ m × 10^e` over `terms` (power → digits), exactly:
/// the terms are added as a decimal number in limbs of 10¹⁸ (powers span
/// at most about 650 digits), written out in full and parsed, which Rust
/// rounds correctly.
fn decimal_total(terms: &BTreeMap<i16, i128>) -> f64 {
    const LIMB: i128 = 1_000_000_000_000_000_000;
    let Some(lo) = terms.iter().find(|(_, m)| **m != 0).map(|(e, _)| *e) else {
        return 0.0;
    };
    let mut limbs: Vec<i128> = Vec::new();
    for (&e, &m) in terms.range(lo..) {
        let shift = usize::try_from(e - lo).unwrap_or(0);
        let (at, scale) = (shift / 18, 10i128.pow((shift % 18) as u32));
        // |m| < 2^127 < 10^39: three limbs, each times 10^17 at most.
        let (mut rest, mut i) = (m, at);
        while rest != 0 {
            if limbs.len() <= i + 1 {
                limbs.resize(i + 2, 0);
            }
            limbs[i] += (rest % LIMB) * scale;
            rest /= LIMB;
            i += 1;
        }
    }
    limbs.push(0);
    let carry = |limbs: &mut Vec<i128>| {
        for i in 0..limbs.len() - 1 {
            let c = limbs[i].div_euclid(LIMB);
            limbs[i] = limbs[i].rem_euclid(LIMB);
            limbs[i + 1] += c;
        }
    };
    carry(&mut limbs);
    let negative = limbs.last().is_some_and(|top| *top < 0);
    if negative {
        limbs.iter_mut().for_each(|l| *l = -*l);
        carry(&mut limbs);
    }
    let mut text = String::from(if negative { "-0" } else { "0" });
    for l in limbs.iter().rev() {
        text.push_str(&format!("{l:018}"));
    }
    text.push_str(&format!("e{lo}"));
    text.parse().unwrap_or(f64::NAN)
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
            match nanos_of(f) {
                Some(u) => self.nanos = self.nanos.saturating_add(u),
                None => {
                    let (m, e) = shortest_decimal(f);
                    add_term(&mut self.wide, e, m);
                }
            }
            self.fractional = true;
        }
        self.n += 1;
    }

    fn merge(&mut self, o: &ExactSum) {
        self.ints = self.ints.saturating_add(o.ints);
        self.nanos = self.nanos.saturating_add(o.nanos);
        self.fractional |= o.fractional;
        self.n += o.n;
        for (e, m) in &o.wide {
            add_term(&mut self.wide, *e, *m);
        }
    }

    /// The sum in 10⁻⁹ units, if it fits and has no wide terms.
    fn total_nanos(&self) -> Option<i128> {
        if !self.wide.is_empty() {
            return None;
        }
        self.ints
            .checked_mul(NANOS_PER_UNIT)?
            .checked_add(self.nanos)
    }

    /// The sum as the float nearest its exact decimal value.
    fn total(&self) -> f64 {
        match self.total_nanos() {
            Some(t) => nearest_quotient(t, NANOS_PER_UNIT),
            None => {
                let mut terms = self.wide.clone();
                add_term(&mut terms, 0, self.ints);
                add_term(&mut terms, -9, self.nanos);
                decimal_total(&terms)
            }
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
            if let Ok(u) = u64::try_from(self.ints) {
                return Value::from(u);
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

    /// A total order, so that which of two candidates is kept never
    /// depends on the order they came in: numbers by their exact values
    /// ([`super::number::total`]: integers past 2^53 too), equal values
    /// written differently (`1` and `1.0`, `0` and `-0.0`) by their JSON
    /// text.
    fn less(&self, o: &Extreme) -> bool {
        match (self, o) {
            (Extreme::Number(_, Value::Number(x)), Extreme::Number(_, Value::Number(y))) => {
                super::number::total(x, y).is_lt()
            }
            (Extreme::Number(a, x), Extreme::Number(b, y)) => {
                a < b || (a == b && x.to_string().cmp(&y.to_string()).is_lt())
            }
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
    pub(crate) fn new(kind: AggregateKind) -> Self {
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
    pub(crate) fn add(&mut self, kind: AggregateKind, v: &Value) {
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
    pub(crate) fn merge(&mut self, other: &Acc) {
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

    /// Writes [`Self::value`] as JSON text to `out` (counts without
    /// building a JSON value).
    #[inline]
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Acc::Count(n) => put_count(out, *n),
            Acc::Distinct(set) => put_count(out, set.len() as u64),
            other => other.write_value(out),
        }
    }

    /// Writes [`Self::value`] through `serde_json`.
    #[inline(never)]
    fn write_value(&self, out: &mut Vec<u8>) {
        // Writing JSON to memory cannot fail.
        let _ = serde_json::to_writer(out, &self.value());
    }

    /// The aggregate's value: null for SUM, MIN, MAX and AVG of no values.
    pub(crate) fn value(&self) -> Value {
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

/// Appends `n` in decimal: a count below 100 (most windows' counts) as
/// one or two bytes, without a copy of a length known only at run time.
#[inline]
fn put_count(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=9 => out.push(b'0' + n as u8),
        10..=99 => out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]),
        _ => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Counts are written as their JSON values are, at the edges of the
    /// short forms (one and two digits) and beyond.
    #[test]
    fn counts_are_written_as_their_json_values() {
        for n in [0u64, 1, 9, 10, 11, 42, 99, 100, 101, 999, 1_000, u64::MAX] {
            let acc = Acc::Count(n);
            let mut out = Vec::new();
            acc.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                acc.value().to_string(),
                "{n}"
            );
        }
    }

    /// MIN and MAX compare integers past 2^53 exactly (found from outside:
    /// MIN of 99999999999999999 and 100000000000000000 came out above MAX),
    /// and equal values written differently give the same result in every
    /// order (`-0.0`, `0.0`, `0` did not).
    #[test]
    fn min_and_max_are_exact_and_independent_of_order() {
        let big = [json!(99999999999999999u64), json!(100000000000000000u64)];
        assert_eq!(run(AggregateKind::Min, &big), big[0]);
        assert_eq!(run(AggregateKind::Max, &big), big[1]);
        let wide = [
            json!(1000000000000000001u64),
            json!(1000000000000000000u64),
            json!(999999999999999999u64),
        ];
        assert_eq!(run(AggregateKind::Max, &wide), wide[0]);
        assert_eq!(run(AggregateKind::Min, &wide), wide[2]);
        let zeros: Vec<Value> = ["-0.0", "0.0", "0"]
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for kind in [AggregateKind::Min, AggregateKind::Max] {
            let results: BTreeSet<String> = orders
                .iter()
                .map(|o| run(kind, &o.map(|i| zeros[i].clone())).to_string())
                .collect();
            assert_eq!(results.len(), 1, "{kind:?}: {results:?}");
        }
    }

    /// A checkpoint is read back through `serde_json::Value`: sums past
    /// `u64` (integers, and nanounits of fractions) survive it exactly.
    #[test]
    fn sums_past_u64_survive_a_checkpoint() {
        for (kind, vals) in [
            (AggregateKind::Sum, vec![json!(i64::MAX); 3]),
            (AggregateKind::Sum, vec![json!(i64::MIN); 3]),
            (AggregateKind::Avg, vec![json!(20000000000.5)]),
            (AggregateKind::Sum, vec![json!(1e300), json!(-1.5e-300)]),
        ] {
            let mut a = Acc::new(kind);
            for v in &vals {
                a.add(kind, v);
            }
            let bytes = serde_json::to_vec(&a).unwrap();
            let via_value: Value = serde_json::from_slice(&bytes).unwrap();
            let back: Acc = serde_json::from_value(via_value).unwrap();
            assert_eq!(back, a, "{}", String::from_utf8_lossy(&bytes));
        }
        // Written before: an integral float, the integer nearest to it.
        let old: ExactSum = serde_json::from_value(
            json!({"ints": 2.7670116110564327e19, "nanos": 0, "fractional": false, "n": 3}),
        )
        .unwrap();
        assert_eq!(old.ints, 27670116110564327424);
        // Small sums are written as before.
        let mut a = Acc::new(AggregateKind::Sum);
        a.add(AggregateKind::Sum, &json!(5));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"Sum": {"ints": 5, "nanos": 0, "fractional": false, "n": 1}})
        );
    }

    fn run(kind: AggregateKind, vals: &[Value]) -> Value {
        let mut a = Acc::new(kind);
        for v in vals {
            a.add(kind, v);
        }
        a.value()
    }

    /// Found by review: MIN and MAX kept the first (or, merging sessions,
    /// the last) of two values equal as floats but written differently, so
    /// the result depended on arrival order (and a session row added in
    /// place differed from one merged). Now neither order nor merging
    /// matters.
    #[test]
    fn extremes_do_not_depend_on_arrival_order() {
        let pairs = [
            (json!(1), json!(1.0)),
            (json!(0), json!(-0.0)),
            (json!(9007199254740992u64), json!(9007199254740993u64)),
        ];
        for kind in [AggregateKind::Min, AggregateKind::Max] {
            for (a, b) in &pairs {
                let ab = run(kind, &[a.clone(), b.clone()]);
                assert_eq!(ab, run(kind, &[b.clone(), a.clone()]), "{kind:?} {a} {b}");
                let (mut x, mut y) = (Acc::new(kind), Acc::new(kind));
                x.add(kind, a);
                y.add(kind, b);
                let mut merged = y.clone();
                merged.merge(&x);
                x.merge(&y);
                assert_eq!(x.value(), ab, "{kind:?} {a} {b}: merged one way");
                assert_eq!(merged.value(), ab, "{kind:?} {a} {b}: merged the other");
            }
        }
        assert_eq!(run(AggregateKind::Max, &[json!(1), json!(1.0)]), json!(1.0));
        assert_eq!(run(AggregateKind::Min, &[json!(1.0), json!(1)]), json!(1));
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

    /// Found from outside: `weir job query` showed an open window's AVG one
    /// unit in the last place off the value the window then wrote (622 / 3
    /// as 207.33333333333337): the query's answer is JSON text read back by
    /// the node that forwards it and by the CLI, and serde_json reads
    /// floats correctly rounded only with its `float_roundtrip` feature.
    /// Every aggregate's value reads back as itself.
    #[test]
    fn values_read_back_from_their_json_text_unchanged() {
        let tens = vec![json!(100); 10];
        let cases: [(AggregateKind, &[Value]); 4] = [
            (AggregateKind::Avg, &[json!(122), json!(284), json!(216)]),
            (AggregateKind::Avg, &tens),
            (AggregateKind::Avg, &[json!(1), json!(0), json!(0)]),
            (AggregateKind::Sum, &[json!(0.1), json!(0.7), json!(1e-7)]),
        ];
        for (kind, vals) in cases {
            let v = run(kind, vals);
            let text = v.to_string();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, v, "{kind:?} of {vals:?} written as {text}");
        }
        // The helper's second case: ten 100s and 260.06.
        let mut vals = vec![json!(100); 10];
        vals.push(json!(260.06));
        let v = run(AggregateKind::Avg, &vals);
        assert_eq!(serde_json::from_str::<Value>(&v.to_string()).unwrap(), v);
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

    /// Found from outside: 1e30 summed to 1.7e29 (nanounits saturated),
    /// ten 1e-10 to 0, 0.1234567890123 to 0.123456789, and i64::MAX + 1 to
    /// a float. Each is now exact, and an average stays between the
    /// minimum and the maximum.
    #[test]
    fn sums_past_nanounits_stay_exact() {
        let sum = |vals: &[Value]| run(AggregateKind::Sum, vals);
        assert_eq!(sum(&[json!(1e30)]), json!(1e30));
        assert_eq!(
            sum(&[json!(1e308), json!(1e308)]),
            json!(null),
            "past f64: no JSON number"
        );
        assert_eq!(sum(&[json!(1e307), json!(1e307)]), json!(2e307));
        assert_eq!(sum(&vec![json!(1e-10); 10]), json!(1e-9));
        assert_eq!(sum(&[json!(0.1234567890123)]), json!(0.1234567890123));
        assert_eq!(
            sum(&[json!(0.1234567890123), json!(1)]),
            json!(1.1234567890123)
        );
        assert_eq!(sum(&[json!(1e30), json!(0.5), json!(-1e30)]), json!(0.5));
        assert_eq!(
            sum(&[json!(i64::MAX), json!(1)]),
            json!(9223372036854775808u64)
        );
        assert_eq!(sum(&[json!(u64::MAX)]), json!(u64::MAX));
        assert_eq!(
            run(AggregateKind::Avg, &[json!(1e30), json!(3e30)]),
            json!(2e30)
        );
        assert_eq!(
            run(AggregateKind::Avg, &[json!(3e-10), json!(1e-10)]),
            json!(2e-10)
        );
        // Wide terms in any order and merged alike.
        let vals = [
            json!(1e30),
            json!(1e-10),
            json!(0.1),
            json!(7),
            json!(2.5e-12),
            json!(-3e29),
        ];
        let forward = run(AggregateKind::Sum, &vals);
        let mut rev = vals.to_vec();
        rev.reverse();
        assert_eq!(forward, run(AggregateKind::Sum, &rev));
        let mut left = Acc::new(AggregateKind::Sum);
        vals[..3]
            .iter()
            .for_each(|v| left.add(AggregateKind::Sum, v));
        let mut right = Acc::new(AggregateKind::Sum);
        vals[3..]
            .iter()
            .for_each(|v| right.add(AggregateKind::Sum, v));
        right.merge(&left);
        assert_eq!(right.value(), forward);
        assert_eq!(forward, json!(7e29));
    }

    proptest::proptest! {
        /// The limb sum of decimal terms equals the sum done in one `i128`
        /// where that fits (terms within 18 powers of ten of each other).
        #[test]
        fn limb_sums_equal_i128_sums(
            lo in -340i16..300,
            terms in proptest::collection::vec((0i16..18, proptest::num::i64::ANY), 1..8),
        ) {
            let mut map: BTreeMap<i16, i128> = BTreeMap::new();
            let mut exact = 0i128;
            for (shift, m) in &terms {
                *map.entry(lo + shift).or_default() += i128::from(*m);
                exact += i128::from(*m) * 10i128.pow(*shift as u32);
            }
            let want: f64 = format!("{exact}e{lo}").parse().unwrap();
            proptest::prop_assert_eq!(decimal_total(&map).to_bits(), want.to_bits());
        }
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
