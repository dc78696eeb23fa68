//! From an input record to the operator's [`Row`]: the value parsed as a
//! JSON object, the `WHERE` condition applied, the event time, group key
//! and aggregate arguments read from its top-level fields. A record that
//! cannot be read is a [`BadRecord`]: counted, sent to the dead-letter
//! topic if the job has one, and never a reason to stop.

use serde_json::Value;

use super::plan::{
    AggregateKind, CompareOp, Filter, JobPlan, Literal, Operand, TimeSource, KEY_COLUMN,
};
use super::window::{GroupKeyWriter, OwnedRow, Row};

/// Why a record could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRecord {
    /// The value is null (a tombstone).
    #[error("the value is null (a tombstone)")]
    NullValue,
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
    /// A column a window Top-N keeps is nested deeper than a checkpoint
    /// can hold it.
    #[error("column {column:?} is nested deeper than {MAX_KEPT_DEPTH} levels")]
    TooDeep {
        /// The column.
        column: String,
    },
}

/// How deep a value a window Top-N keeps may be nested: its checkpoint
/// nests it about ten levels further, and is read back under serde_json's
/// limit of 128 (found from outside: a kept field 120 levels deep was
/// taken, and the checkpoint holding it could not be read at restart).
pub const MAX_KEPT_DEPTH: usize = 64;

/// How deeply `v` nests arrays and objects (a scalar: 0).
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// The largest event time (and the negated smallest) a job takes, in ms
/// from 1970: JavaScript's date range, ±100,000,000 days. Window bounds
/// and closes computed from a time in it (plus any interval a statement
/// may name) stay far inside `i64`; a record outside it is bad.
pub const MAX_EVENT_TIME_MS: i64 = 8_640_000_000_000_000;

/// Where the reader finds one of the plan's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The `i`-th picked field of the value.
    Field(usize),
    /// The record key ([`KEY_COLUMN`]).
    RecordKey,
}

impl Slot {
    /// The slot of column `name` among the picked fields `names` (which
    /// hold every column the plan reads but [`KEY_COLUMN`]).
    fn of(names: &[String], name: &str) -> Slot {
        match names.iter().position(|n| n == name) {
            Some(i) => Slot::Field(i),
            None => Slot::RecordKey,
        }
    }
}

/// Reads the rows of one plan: knows which top-level fields the plan uses,
/// and parses only those (the others are skipped without allocating). Each
/// column the plan names is resolved to its [`Slot`] once, here, not per
/// record.
#[derive(Debug, Clone)]
pub struct Reader {
    plan: JobPlan,
    /// Every field of the value the plan reads, each once.
    names: Vec<String>,
    /// Whether the plan reads the record key ([`KEY_COLUMN`]).
    reads_key: bool,
    /// Whether it reads it other than as a group key column (as a JSON
    /// value: in `WHERE`, an aggregate, the time or a ranked row).
    key_as_value: bool,
    /// The time field's slot (for [`TimeSource::Field`]).
    time: Option<Slot>,
    /// The group key columns' slots, in plan order.
    keys: Vec<Slot>,
    /// Each aggregate's argument column's slot.
    arg_slots: Vec<Option<Slot>>,
    /// A Top-N's ranked row columns' slots.
    top_rows: Vec<Slot>,
    /// The picked values of the record being read (reused).
    picked: Vec<Value>,
    /// The group key of the record being read (reused).
    group: GroupKeyWriter,
    /// The aggregate arguments of the record being read (reused).
    args: Vec<Value>,
}

impl Reader {
    /// The reader of `plan`.
    pub fn new(plan: &JobPlan) -> Self {
        let mut names: Vec<String> = Vec::new();
        // Whether `_key` is read other than as a group key column: then
        // it is needed as a JSON value.
        let mut key_as_value = false;
        let mut add = |n: &String| {
            if n == KEY_COLUMN {
                key_as_value = true;
            } else if !names.contains(n) {
                names.push(n.clone());
            }
        };
        if let TimeSource::Field(f) = &plan.time {
            add(f);
        }
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
        let key_column = plan.keys.iter().any(|k| k == KEY_COLUMN);
        for k in &plan.keys {
            if k != KEY_COLUMN && !names.contains(k) {
                names.push(k.clone());
            }
        }
        let slot = |n: &str| Slot::of(&names, n);
        Self {
            time: match &plan.time {
                TimeSource::Field(f) => Some(slot(f)),
                _ => None,
            },
            keys: plan.keys.iter().map(|k| slot(k)).collect(),
            arg_slots: plan
                .aggregates
                .iter()
                .map(|a| a.column.as_deref().map(slot))
                .collect(),
            top_rows: plan
                .top
                .as_ref()
                .map(|t| t.rows.iter().map(|c| slot(c)).collect())
                .unwrap_or_default(),
            plan: plan.clone(),
            picked: Vec::with_capacity(names.len()),
            group: GroupKeyWriter::new(),
            args: Vec::with_capacity(plan.aggregates.len()),
            names,
            reads_key: key_as_value || key_column,
            key_as_value,
        }
    }

    /// [`Reader::row`] of a record whose value may be null (a tombstone,
    /// which has no row: found from outside, it was called "not JSON: EOF
    /// while parsing").
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        record_ts: i64,
        now_ms: i64,
    ) -> Result<Option<Row<'_>>, BadRecord> {
        let value = value.ok_or(BadRecord::NullValue)?;
        self.row(key, value, record_ts, now_ms)
    }

    /// The row of the record with `key` and `value` (Kafka timestamp
    /// `record_ts`, read at `now_ms`), `Ok(None)` when `WHERE` rejects it.
    /// The row borrows the reader's buffers until the next record.
    pub fn row(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        record_ts: i64,
        now_ms: i64,
    ) -> Result<Option<Row<'_>>, BadRecord> {
        pick(value, &self.names, &mut self.picked)?;
        let record_key = match key {
            Some(k) if self.reads_key => {
                Some(std::str::from_utf8(k).map_err(|_| BadRecord::KeyNotText)?)
            }
            _ => None,
        };
        let (plan, picked) = (&self.plan, &self.picked);
        // A column's value; `None` when missing or null.
        let text_key = record_key
            .filter(|_| self.key_as_value)
            .map(|k| Value::String(k.to_string()));
        let at = |s: Slot| match s {
            Slot::Field(i) => picked.get(i).filter(|v| !v.is_null()),
            Slot::RecordKey => text_key.as_ref(),
        };
        if let Some(f) = &plan.filter {
            let names = &self.names;
            let get = |name: &str| at(Slot::of(names, name));
            if !holds(f, &get) {
                return Ok(None);
            }
        }
        let time_ms = match (&plan.time, self.time) {
            (TimeSource::RecordTimestamp, _) => record_ts,
            (TimeSource::ProcessingTime, _) => now_ms,
            (TimeSource::Field(name), slot) => event_time(slot.and_then(at), name)?,
        };
        if !(-MAX_EVENT_TIME_MS..=MAX_EVENT_TIME_MS).contains(&time_ms) {
            return Err(BadRecord::BadTime {
                field: match &plan.time {
                    TimeSource::Field(name) => name.clone(),
                    _ => "_timestamp".into(),
                },
                detail: format!(
                    "{time_ms} is outside the event times a job takes (±{MAX_EVENT_TIME_MS} ms from 1970)"
                ),
            });
        }
        let group = &mut self.group;
        group.clear();
        for &s in &self.keys {
            match (s, record_key) {
                (Slot::RecordKey, Some(k)) => group.text(k),
                _ => group.value(at(s).unwrap_or(&Value::Null)),
            }
        }
        let args = &mut self.args;
        args.clear();
        for (a, slot) in plan.aggregates.iter().zip(&self.arg_slots) {
            if let AggregateKind::TopRows { .. } = a.kind {
                // The ranked row: its columns, missing ones null.
                let row: Vec<Value> = self
                    .top_rows
                    .iter()
                    .map(|&c| at(c).cloned().unwrap_or(Value::Null))
                    .collect();
                if let Some(i) = row.iter().position(|v| depth(v) > MAX_KEPT_DEPTH) {
                    let column = match self.top_rows[i] {
                        Slot::Field(f) => self.names.get(f).cloned().unwrap_or_default(),
                        Slot::RecordKey => super::plan::KEY_COLUMN.to_string(),
                    };
                    return Err(BadRecord::TooDeep { column });
                }
                args.push(Value::Array(row));
                continue;
            }
            let v = slot.and_then(at).cloned().unwrap_or(Value::Null);
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
            key: group.close(),
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
) -> Result<Option<OwnedRow>, BadRecord> {
    Reader::new(plan)
        .row(None, value, record_ts, now_ms)
        .map(|r| r.map(|r| r.to_owned()))
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
/// into `out` (null when absent), skipping every other field without
/// building it: [`super::json_pick`]'s one pass when it can decide, else
/// `serde_json`'s.
fn pick(value: &[u8], names: &[String], out: &mut Vec<Value>) -> Result<(), BadRecord> {
    out.clear();
    out.resize(names.len(), Value::Null);
    if super::json_pick::pick(value, names, out).is_some() {
        return Ok(());
    }
    pick_with_serde(value, names, out)
}

/// [`pick`] through `serde_json` alone: the reference the fast path is held
/// to, and what words the error of a value that is not a JSON object.
pub(super) fn pick_with_serde(
    value: &[u8],
    names: &[String],
    out: &mut Vec<Value>,
) -> Result<(), BadRecord> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Picker<'n, 'o>(&'n [String], &'o mut Vec<Value>);
    impl<'de> Visitor<'de> for Picker<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key<'de>>()? {
                match self.0.iter().position(|n| n.as_bytes() == key.as_bytes()) {
                    Some(i) => self.1[i] = map.next_value()?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    out.clear();
    out.resize(names.len(), Value::Null);
    let mut de = serde_json::Deserializer::from_slice(value);
    match de
        .deserialize_map(Picker(names, out))
        .and_then(|()| de.end())
    {
        Ok(()) => Ok(()),
        // Valid JSON of another type, or not JSON at all (an object whose
        // values serde_json cannot read, as a lone surrogate `"\ud800"` or
        // `1e400`, is the latter: its error says where).
        Err(e) => {
            let object = value.trim_ascii_start().starts_with(b"{");
            match serde_json::from_slice::<IgnoredAny>(value) {
                Ok(_) if !object => Err(BadRecord::NotAnObject),
                _ => Err(BadRecord::NotJson(e.to_string())),
            }
        }
    }
}

/// An object key's raw bytes (escapes resolved), borrowed from the input
/// when it has none. Read as bytes and compared with the plan's field
/// names, not validated as UTF-8 (as serde_json does not validate the
/// values it skips either): a key that is not UTF-8 matches no name.
enum Key<'de> {
    Borrowed(&'de [u8]),
    Owned(Vec<u8>),
}

impl Key<'_> {
    fn as_bytes(&self) -> &[u8] {
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
            fn visit_borrowed_bytes<E>(self, s: &'de [u8]) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_bytes<E>(self, s: &[u8]) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_vec()))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s.as_bytes()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.as_bytes().to_vec()))
            }
        }
        d.deserialize_bytes(V)
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
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .ok_or_else(|| bad(format!("{n} is not epoch milliseconds"))),
        Some(Value::String(s)) => weir_client::cli::time::parse_rfc3339_ms(s).map_err(bad),
        Some(other) => Err(bad(format!("{other} is neither a number nor a string"))),
    }
}

/// Whether `f` holds for a record whose fields `get` looks up (missing or
/// null: `None`): `WHERE` keeps a record only when its condition is true,
/// not when it is unknown ([`truth`]).
pub fn holds<'v>(f: &Filter, get: &impl Fn(&str) -> Option<&'v Value>) -> bool {
    truth(f, get) == Some(true)
}

/// The value of `f` in SQL's three-valued logic (`None`: unknown): a
/// comparison with a missing or null operand, or of values that do not
/// compare (a number and a string), is unknown, and so is its negation, so
/// `NOT (c = 'a')` keeps the same records as `c <> 'a'`; `AND` and `OR`
/// follow Kleene's tables (false `AND` unknown is false, true `OR`
/// unknown is true).
fn truth<'v>(f: &Filter, get: &impl Fn(&str) -> Option<&'v Value>) -> Option<bool> {
    match f {
        Filter::And(a, b) => match (truth(a, get), truth(b, get)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Filter::Or(a, b) => match (truth(a, get), truth(b, get)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Filter::Not(a) => truth(a, get).map(|t| !t),
        Filter::IsNull(c) => Some(get(c).is_none_or(Value::is_null)),
        Filter::IsNotNull(c) => Some(get(c).is_some_and(|v| !v.is_null())),
        Filter::Compare { left, op, right } => {
            let (l, r) = (operand(left, get)?, operand(right, get)?);
            compare(&l, &r).map(|o| match op {
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
        Operand::Literal(Literal::Number(n)) => Value::Number(n.clone()),
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
        (Value::Number(x), Value::Number(y)) => Some(super::number::cmp(x, y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::OutputColumn;
    use crate::stream::window::GroupKey;
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

    /// A fractional epoch time belongs to the millisecond it falls in
    /// (found from outside: `-0.5` was taken as 0, in the window after its
    /// own), and a text time that is not RFC 3339 is a bad record, never a
    /// panic (`+0é:0` as the offset panicked the task at every restart).
    #[test]
    fn fractional_and_malformed_times() {
        let p = plan(None, TimeSource::Field("ts".into()));
        for (v, want) in [("-0.5", -1), ("1.5", 1), ("-1000.25", -1001), ("7", 7)] {
            let rec = format!(r#"{{"customerId": 1, "ts": {v}}}"#);
            let row = extract(&p, rec.as_bytes(), 0, 0).unwrap().unwrap();
            assert_eq!(row.time_ms, want, "{v}");
        }
        for v in [
            "2023-01-01T00:00:00+0é:0",
            "2023-01-01T00:00:00+99:99",
            "2023-01-01T00:00:00+24:00",
            "2023-01-01T00:00:60Z",
            "2023-01-01T00:00:00é",
            "2023-01-01T00:00:00.1é",
        ] {
            let rec = format!(r#"{{"customerId": 1, "ts": "{v}"}}"#);
            assert!(
                matches!(
                    extract(&p, rec.as_bytes(), 0, 0),
                    Err(BadRecord::BadTime { .. })
                ),
                "{v}"
            );
        }
    }

    /// Times at the ends of `i64` are bad records, not an overflow in the
    /// window arithmetic (found from outside: a debug build's task
    /// panicked on `{"ts": 9223372036854775807}` and restarted forever).
    #[test]
    fn event_times_beyond_the_date_range_are_bad() {
        let p = plan(None, TimeSource::Field("ts".into()));
        for t in [
            i64::MAX,
            i64::MIN,
            MAX_EVENT_TIME_MS + 1,
            -MAX_EVENT_TIME_MS - 1,
        ] {
            let v = format!(r#"{{"customerId": 1, "ts": {t}}}"#);
            assert!(
                matches!(
                    extract(&p, v.as_bytes(), 0, 0),
                    Err(BadRecord::BadTime { .. })
                ),
                "{t}"
            );
        }
        let v = format!(r#"{{"customerId": 1, "ts": {MAX_EVENT_TIME_MS}}}"#);
        assert!(extract(&p, v.as_bytes(), 0, 0).unwrap().is_some());
        let v = br#"{"customerId": 1, "ts": 1e300}"#;
        assert!(matches!(
            extract(&p, v, 0, 0),
            Err(BadRecord::BadTime { .. })
        ));
        let p = plan(None, TimeSource::RecordTimestamp);
        assert!(matches!(
            extract(&p, b"{}", i64::MIN, 0),
            Err(BadRecord::BadTime { .. })
        ));
    }

    /// A window Top-N keeps whole columns in its checkpoint: one nested
    /// deeper than [`MAX_KEPT_DEPTH`] is a bad record (found from outside:
    /// kept at 120 levels, the checkpoint could not be read at restart).
    #[test]
    fn kept_columns_nested_too_deep_are_bad() {
        let p = crate::stream::sql::parse_job(
            "INSERT INTO o SELECT x, price, window_start FROM ( \
               SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS r \
               FROM TABLE(TUMBLE(TABLE i, DESCRIPTOR(ts), INTERVAL '1' SECOND))) WHERE r <= 1",
        )
        .unwrap();
        let mut r = Reader::new(&p);
        let nested = |d: usize| format!("{}1{}", "[".repeat(d), "]".repeat(d));
        let ok = format!(
            r#"{{"ts": 5, "price": 1, "x": {}}}"#,
            nested(MAX_KEPT_DEPTH)
        );
        assert!(r.row(None, ok.as_bytes(), 0, 0).unwrap().is_some());
        let deep = format!(
            r#"{{"ts": 5, "price": 1, "x": {}}}"#,
            nested(MAX_KEPT_DEPTH + 1)
        );
        assert_eq!(
            r.row(None, deep.as_bytes(), 0, 0),
            Err(BadRecord::TooDeep { column: "x".into() })
        );
    }

    #[test]
    fn the_key_column_reads_the_record_key() {
        let p = crate::stream::sql::parse_job(
            "INSERT INTO o SELECT _key AS c, COUNT(*) FROM i WHERE _key <> 'x' \
             GROUP BY _key, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .unwrap();
        assert!(p.copartitioned());
        let mut r = Reader::new(&p);
        let v = br#"{"ts": 5, "_key": "a field of the value"}"#;
        let row = r.row(Some(b"k1"), v, 0, 0).unwrap().unwrap();
        assert_eq!(row.key, GroupKey::of(&[json!("k1")]).as_str());
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
        let mut reader = Reader::new(&by_field);
        let row = reader
            .row(Some(&[0xff]), br#"{"ts": 5, "k": 1}"#, 0, 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            row.key,
            GroupKey::of(&[json!(1)]).as_str(),
            "a key nobody reads"
        );
    }

    #[test]
    fn field_names_match_through_escapes_and_the_last_duplicate_wins() {
        let p = plan(None, TimeSource::Field("ts".into()));
        let v = br#"{"customer\u0049d": 3, "ts": 1, "ts": 2, "x": {"ts": 9}}"#;
        let row = extract(&p, v, 0, 0).unwrap().unwrap();
        assert_eq!(row.key, GroupKey::of(&[json!(3)]));
        assert_eq!(
            row.time_ms, 2,
            "the last of duplicate fields, never a nested one"
        );
    }

    #[test]
    fn the_record_key_is_written_into_the_group_key_as_a_json_string() {
        let p = crate::stream::sql::parse_job(
            "INSERT INTO o SELECT COUNT(*) FROM i GROUP BY _key, k, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .unwrap();
        let mut r = Reader::new(&p);
        let row = r
            .row(
                Some("a\"b\u{e9}".as_bytes()),
                br#"{"ts": 1, "k": [1, "x"]}"#,
                0,
                0,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            row.key,
            GroupKey::of(&[json!("a\"b\u{e9}"), json!([1, "x"])]).as_str()
        );
        let row = r.row(None, br#"{"ts": 1}"#, 0, 0).unwrap().unwrap();
        assert_eq!(row.key, GroupKey::of(&[Value::Null, Value::Null]).as_str());
    }

    #[test]
    fn unreadable_records_say_why() {
        let p = plan(None, TimeSource::Field("ts".into()));
        assert!(matches!(
            extract(&p, b"{nope", 0, 0),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(extract(&p, b"[1]", 0, 0), Err(BadRecord::NotAnObject));
        // Found from outside: objects with a value serde_json cannot read
        // were reported as "not a JSON object".
        for v in [
            &br#"{"customerId": "\ud800", "ts": 1}"#[..],
            br#"{"customerId": 1e400}"#,
        ] {
            assert!(matches!(extract(&p, v, 0, 0), Err(BadRecord::NotJson(_))));
        }
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

    /// `WHERE` compares integers past 2^53 exactly, against literals kept
    /// exact (found from outside: `v = 100000000000000001` matched
    /// 100000000000000000, `v > 99999999999999999` dropped it).
    #[test]
    fn where_compares_big_integers_exactly() {
        let lit = |t: &str| Operand::Literal(Literal::Number(serde_json::from_str(t).unwrap()));
        let cmp = |op, r| Filter::Compare {
            left: Operand::Column("v".into()),
            op,
            right: r,
        };
        let rec = json!({"v": 100000000000000000u64});
        let r = |k: &str| rec.get(k);
        assert!(holds(&cmp(CompareOp::Gt, lit("99999999999999999")), &r));
        assert!(!holds(&cmp(CompareOp::Eq, lit("100000000000000001")), &r));
        assert!(holds(&cmp(CompareOp::Eq, lit("100000000000000000")), &r));
        assert!(holds(&cmp(CompareOp::Lt, lit("100000000000000016.0")), &r));
        let rec = json!({"v": 9007199254740992u64});
        let r = |k: &str| rec.get(k);
        assert!(!holds(&cmp(CompareOp::Eq, lit("9007199254740993")), &r));
        assert!(holds(&cmp(CompareOp::Eq, lit("9007199254740992.0")), &r));
    }

    #[test]
    fn where_conditions() {
        let num =
            |n: f64| Operand::Literal(Literal::Number(serde_json::Number::from_f64(n).unwrap()));
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
        // Unknown stays unknown under NOT (found from outside: `NOT (b =
        // 'y')` kept records where b was null, missing or a number, which
        // `b <> 'y'` drops), and follows Kleene's tables under AND and OR.
        let s = |v: &str| Operand::Literal(Literal::String(v.into()));
        let not = |f: Filter| Filter::Not(Box::new(f));
        for c in ["c", "zz", "a"] {
            assert!(!holds(&not(cmp(c, CompareOp::Eq, s("y"))), &r), "{c}");
            assert!(!holds(&cmp(c, CompareOp::NotEq, s("y")), &r), "{c}");
        }
        assert!(holds(&not(cmp("b", CompareOp::Eq, s("y"))), &r));
        let unknown = || cmp("zz", CompareOp::Eq, num(1.0));
        let (yes, no) = (|| Filter::IsNull("c".into()), || Filter::IsNull("a".into()));
        let or = |a, b| Filter::Or(Box::new(a), Box::new(b));
        let and = |a, b| Filter::And(Box::new(a), Box::new(b));
        assert!(holds(&or(unknown(), yes()), &r), "unknown OR true");
        assert!(!holds(&or(unknown(), no()), &r), "unknown OR false");
        assert!(
            holds(&not(and(unknown(), no())), &r),
            "NOT (unknown AND false)"
        );
        assert!(
            !holds(&not(and(unknown(), yes())), &r),
            "NOT (unknown AND true)"
        );
        assert!(
            !holds(&not(or(unknown(), no())), &r),
            "NOT (unknown OR false)"
        );
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
