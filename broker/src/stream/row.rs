//! From an input record to the operator's [`Row`]: the value parsed as a
//! JSON object, the `WHERE` condition applied, the event time, group key
//! and aggregate arguments read from its top-level fields. A record that
//! cannot be read is a [`BadRecord`]: counted, sent to the dead-letter
//! topic if the job has one, and never a reason to stop.

use serde_json::Value;

use super::plan::{
    AggregateKind, CompareOp, Filter, JobPlan, Literal, Operand, TimeSource, KEY_COLUMN,
};
use super::window::{GroupKey, Row};

/// Why a record could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRecord {
    /// The value is not JSON.
    #[error("the value is not JSON: {0}")]
    NotJson(String),
    /// The value is JSON but not an object.
    #[error("the value is not a JSON object")]
    NotAnObject,
    /// The time column is missing or null.
    #[error("no time field {0:?}")]
    MissingTime(String),
    /// The time column is neither epoch milliseconds nor RFC 3339.
    #[error("time field {field:?}: {detail}")]
    BadTime {
        /// The field.
        field: String,
        /// What was wrong.
        detail: String,
    },
    /// An aggregate that needs a number got something else.
    #[error("{function} needs a number in {column:?}, got {got}")]
    NotANumber {
        /// The aggregate function.
        function: &'static str,
        /// The column.
        column: String,
        /// What the record holds there.
        got: String,
    },
    /// The statement reads the record key (`_key`), and it is not UTF-8.
    #[error("the record key is not UTF-8 text")]
    KeyNotText,
}

/// Reads the rows of one plan: knows which top-level fields the plan uses,
/// and parses only those (the others are skipped without allocating).
#[derive(Debug, Clone)]
pub struct Reader {
    plan: JobPlan,
    /// Every field of the value the plan reads, each once.
    names: Vec<String>,
    /// Whether the plan reads the record key ([`KEY_COLUMN`]).
    reads_key: bool,
}

impl Reader {
    /// The reader of `plan`.
    pub fn new(plan: &JobPlan) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut add = |n: &String| {
            if !names.contains(n) {
                names.push(n.clone());
            }
        };
        if let TimeSource::Field(f) = &plan.time {
            add(f);
        }
        plan.keys.iter().for_each(&mut add);
        plan.aggregates
            .iter()
            .filter_map(|a| a.column.as_ref())
            .for_each(&mut add);
        if let Some(f) = &plan.filter {
            filter_columns(f, &mut add);
        }
        if let Some(top) = &plan.top {
            top.rows.iter().for_each(&mut add);
        }
        let reads_key = names.iter().any(|n| n == KEY_COLUMN);
        names.retain(|n| n != KEY_COLUMN);
        Self {
            plan: plan.clone(),
            names,
            reads_key,
        }
    }

    /// The row of the record with `key` and `value` (Kafka timestamp
    /// `record_ts`, read at `now_ms`), `Ok(None)` when `WHERE` rejects it.
    pub fn row(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        record_ts: i64,
        now_ms: i64,
    ) -> Result<Option<Row>, BadRecord> {
        let plan = &self.plan;
        let values = pick(value, &self.names)?;
        let record_key = match key {
            Some(k) if self.reads_key => Value::String(
                std::str::from_utf8(k)
                    .map_err(|_| BadRecord::KeyNotText)?
                    .to_string(),
            ),
            _ => Value::Null,
        };
        let get = |name: &str| {
            if name == KEY_COLUMN {
                return Some(&record_key).filter(|v| !v.is_null());
            }
            self.names
                .iter()
                .position(|n| n == name)
                .map(|i| &values[i])
                .filter(|v| !v.is_null())
        };
        if let Some(f) = &plan.filter {
            if !holds(f, &get) {
                return Ok(None);
            }
        }
        let time_ms = match &plan.time {
            TimeSource::RecordTimestamp => record_ts,
            TimeSource::ProcessingTime => now_ms,
            TimeSource::Field(name) => event_time(get(name), name)?,
        };
        let key: Vec<Value> = plan
            .keys
            .iter()
            .map(|k| get(k).cloned().unwrap_or(Value::Null))
            .collect();
        let mut args = Vec::with_capacity(plan.aggregates.len());
        for a in &plan.aggregates {
            if let (AggregateKind::TopRows { .. }, Some(top)) = (a.kind, &plan.top) {
                // The ranked row: its columns, missing ones null.
                let row = top
                    .rows
                    .iter()
                    .map(|c| get(c).cloned().unwrap_or(Value::Null))
                    .collect();
                args.push(Value::Array(row));
                continue;
            }
            let v = a
                .column
                .as_deref()
                .and_then(get)
                .cloned()
                .unwrap_or(Value::Null);
            let numeric = matches!(a.kind, AggregateKind::Sum | AggregateKind::Avg);
            if numeric && !(v.is_null() || v.is_number()) {
                return Err(BadRecord::NotANumber {
                    function: if a.kind == AggregateKind::Sum {
                        "SUM"
                    } else {
                        "AVG"
                    },
                    column: a.column.clone().unwrap_or_default(),
                    got: v.to_string(),
                });
            }
            args.push(v);
        }
        Ok(Some(Row {
            time_ms,
            key: GroupKey::of(&key),
            args,
        }))
    }
}

/// The row of record `value` (without a key) under `plan` (see
/// [`Reader::row`]).
pub fn extract(
    plan: &JobPlan,
    value: &[u8],
    record_ts: i64,
    now_ms: i64,
) -> Result<Option<Row>, BadRecord> {
    Reader::new(plan).row(None, value, record_ts, now_ms)
}

fn filter_columns(f: &Filter, add: &mut impl FnMut(&String)) {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_columns(a, add);
            filter_columns(b, add);
        }
        Filter::Not(a) => filter_columns(a, add),
        Filter::IsNull(c) | Filter::IsNotNull(c) => add(c),
        Filter::Compare { left, right, .. } => {
            for o in [left, right] {
                if let Operand::Column(c) = o {
                    add(c);
                }
            }
        }
    }
}

/// The values of the top-level fields `names` of the JSON object `value`
/// (null when absent), skipping every other field without building it.
fn pick(value: &[u8], names: &[String]) -> Result<Vec<Value>, BadRecord> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Picker<'n>(&'n [String]);
    impl<'de> Visitor<'de> for Picker<'_> {
        type Value = Vec<Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Value>, A::Error> {
            let mut out = vec![Value::Null; self.0.len()];
            while let Some(key) = map.next_key::<Key<'de>>()? {
                match self.0.iter().position(|n| n.as_str() == key.as_str()) {
                    Some(i) => out[i] = map.next_value()?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(value);
    match de
        .deserialize_map(Picker(names))
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(v) => Ok(v),
        // Valid JSON of another type, or not JSON at all.
        Err(e) => match serde_json::from_slice::<IgnoredAny>(value) {
            Ok(_) => Err(BadRecord::NotAnObject),
            Err(_) => Err(BadRecord::NotJson(e.to_string())),
        },
    }
}

/// An object key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

fn event_time(v: Option<&Value>, field: &str) -> Result<i64, BadRecord> {
    let bad = |detail: String| BadRecord::BadTime {
        field: field.to_string(),
        detail,
    };
    match v {
        None | Some(Value::Null) => Err(BadRecord::MissingTime(field.to_string())),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| bad(format!("{n} is not epoch milliseconds"))),
        Some(Value::String(s)) => weir_client::cli::time::parse_rfc3339_ms(s).map_err(bad),
        Some(other) => Err(bad(format!("{other} is neither a number nor a string"))),
    }
}

/// Whether `f` holds for a record whose fields `get` looks up (missing or
/// null: `None`). SQL's three-valued logic is collapsed the way `WHERE`
/// uses it: a comparison with a missing or null operand does not hold.
pub fn holds<'v>(f: &Filter, get: &impl Fn(&str) -> Option<&'v Value>) -> bool {
    match f {
        Filter::And(a, b) => holds(a, get) && holds(b, get),
        Filter::Or(a, b) => holds(a, get) || holds(b, get),
        Filter::Not(a) => !holds(a, get),
        Filter::IsNull(c) => get(c).is_none_or(Value::is_null),
        Filter::IsNotNull(c) => get(c).is_some_and(|v| !v.is_null()),
        Filter::Compare { left, op, right } => {
            let (Some(l), Some(r)) = (operand(left, get), operand(right, get)) else {
                return false;
            };
            compare(&l, &r).is_some_and(|o| match op {
                CompareOp::Eq => o.is_eq(),
                CompareOp::NotEq => o.is_ne(),
                CompareOp::Lt => o.is_lt(),
                CompareOp::LtEq => o.is_le(),
                CompareOp::Gt => o.is_gt(),
                CompareOp::GtEq => o.is_ge(),
            })
        }
    }
}

fn operand<'v>(o: &Operand, get: &impl Fn(&str) -> Option<&'v Value>) -> Option<Value> {
    let v = match o {
        Operand::Column(c) => get(c)?.clone(),
        Operand::Literal(Literal::Number(n)) => {
            serde_json::Number::from_f64(*n).map(Value::Number)?
        }
        Operand::Literal(Literal::String(s)) => Value::String(s.clone()),
        Operand::Literal(Literal::Bool(b)) => Value::Bool(*b),
        Operand::Literal(Literal::Null) => Value::Null,
    };
    (!v.is_null()).then_some(v)
}

/// Numbers compare as numbers, strings and booleans among themselves;
/// anything else is incomparable.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::OutputColumn;
    use serde_json::json;

    fn plan(filter: Option<Filter>, time: TimeSource) -> JobPlan {
        let key = OutputColumn::Key {
            index: 0,
            name: "customerId".into(),
        };
        crate::stream::plan::seed_plan(filter, time, vec![key])
    }

    fn col(c: &str) -> Operand {
        Operand::Column(c.into())
    }

    #[test]
    fn a_record_gives_its_time_key_and_arguments() {
        let p = plan(None, TimeSource::Field("ts".into()));
        let v = br#"{"customerId": 17, "transactionSum": 12.5, "ts": 1700000000123}"#;
        let row = extract(&p, v, 5, 6).unwrap().unwrap();
        assert_eq!(row.time_ms, 1_700_000_000_123);
        assert_eq!(row.key, GroupKey::of(&[json!(17)]));
        assert_eq!(row.args, vec![json!(12.5), Value::Null]);
        let v = br#"{"customerId": "a", "ts": "2023-11-14T22:13:20.123Z"}"#;
        let row = extract(&p, v, 5, 6).unwrap().unwrap();
        assert_eq!(row.time_ms, 1_700_000_000_123);
        assert_eq!(row.args[0], Value::Null, "a missing column is null");
        let p = plan(None, TimeSource::RecordTimestamp);
        assert_eq!(extract(&p, b"{}", 5, 6).unwrap().unwrap().time_ms, 5);
        let p = plan(None, TimeSource::ProcessingTime);
        assert_eq!(extract(&p, b"{}", 5, 6).unwrap().unwrap().time_ms, 6);
    }

    #[test]
    fn the_key_column_reads_the_record_key() {
        let p = crate::stream::sql::parse_job(
            "INSERT INTO o SELECT _key AS c, COUNT(*) FROM i WHERE _key <> 'x' \
             GROUP BY _key, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .unwrap();
        assert!(p.copartitioned());
        let r = Reader::new(&p);
        let v = br#"{"ts": 5, "_key": "a field of the value"}"#;
        let row = r.row(Some(b"k1"), v, 0, 0).unwrap().unwrap();
        assert_eq!(row.key, GroupKey::of(&[json!("k1")]));
        assert_eq!(r.row(Some(b"x"), v, 0, 0), Ok(None), "WHERE reads it too");
        assert_eq!(r.row(None, v, 0, 0), Ok(None), "no key is null: not <> 'x'");
        assert_eq!(
            r.row(Some(&[0xff, 0xfe]), v, 0, 0),
            Err(BadRecord::KeyNotText)
        );
        let by_field = crate::stream::sql::parse_job(
            "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .unwrap();
        assert!(!by_field.copartitioned());
        let row = Reader::new(&by_field)
            .row(Some(&[0xff]), br#"{"ts": 5, "k": 1}"#, 0, 0)
            .unwrap()
            .unwrap();
        assert_eq!(row.key, GroupKey::of(&[json!(1)]), "a key nobody reads");
    }

    #[test]
    fn unreadable_records_say_why() {
        let p = plan(None, TimeSource::Field("ts".into()));
        assert!(matches!(
            extract(&p, b"{nope", 0, 0),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(extract(&p, b"[1]", 0, 0), Err(BadRecord::NotAnObject));
        assert_eq!(
            extract(&p, b"{}", 0, 0),
            Err(BadRecord::MissingTime("ts".into()))
        );
        assert!(matches!(
            extract(&p, br#"{"ts": "yesterday"}"#, 0, 0),
            Err(BadRecord::BadTime { .. })
        ));
        assert!(matches!(
            extract(&p, br#"{"ts": 1, "transactionSum": "12"}"#, 0, 0),
            Err(BadRecord::NotANumber {
                function: "SUM",
                ..
            })
        ));
    }

    #[test]
    fn where_conditions() {
        let num = |n: f64| Operand::Literal(Literal::Number(n));
        let cmp = |c: &str, op, r| Filter::Compare {
            left: col(c),
            op,
            right: r,
        };
        let rec = json!({"a": 5, "b": "x", "c": null, "d": true});
        let r = |k: &str| rec.get(k).filter(|v| !v.is_null());
        assert!(holds(&cmp("a", CompareOp::Gt, num(4.0)), &r));
        assert!(!holds(&cmp("a", CompareOp::Lt, num(4.0)), &r));
        assert!(holds(&cmp("a", CompareOp::Eq, num(5.0)), &r));
        assert!(holds(
            &cmp(
                "b",
                CompareOp::NotEq,
                Operand::Literal(Literal::String("y".into()))
            ),
            &r
        ));
        assert!(holds(
            &cmp("d", CompareOp::Eq, Operand::Literal(Literal::Bool(true))),
            &r
        ));
        // Missing and null operands never compare, and mixed types neither.
        assert!(!holds(&cmp("zz", CompareOp::NotEq, num(1.0)), &r));
        assert!(!holds(
            &cmp("c", CompareOp::Eq, Operand::Literal(Literal::Null)),
            &r
        ));
        assert!(!holds(&cmp("b", CompareOp::Gt, num(1.0)), &r));
        assert!(holds(&Filter::IsNull("c".into()), &r));
        assert!(holds(&Filter::IsNull("zz".into()), &r));
        assert!(holds(&Filter::IsNotNull("a".into()), &r));
        let both = Filter::And(
            Box::new(cmp("a", CompareOp::GtEq, num(5.0))),
            Box::new(Filter::Not(Box::new(Filter::IsNull("b".into())))),
        );
        assert!(holds(&both, &r));
        let either = Filter::Or(
            Box::new(cmp("a", CompareOp::Lt, num(0.0))),
            Box::new(cmp("a", CompareOp::LtEq, col("a"))),
        );
        assert!(holds(&either, &r));
        let p = plan(
            Some(cmp("customerId", CompareOp::Eq, num(1.0))),
            TimeSource::RecordTimestamp,
        );
        assert_eq!(extract(&p, br#"{"customerId": 2}"#, 0, 0), Ok(None));
        assert!(extract(&p, br#"{"customerId": 1}"#, 0, 0)
            .unwrap()
            .is_some());
    }
}
