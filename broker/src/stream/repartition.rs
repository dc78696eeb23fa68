//! A job in two stages, joined by an internal topic: a *route* task on the
//! leader of each input partition reads it, judges lateness by that
//! partition's watermark, and writes each row to the shard of its group key
//! (a partition of the job's repartition topic); an *aggregate* task on the
//! leader of each shard runs the window operator over it and writes the
//! results of its keys to the output partition of the same number.
//!
//! Both halves are pure state machines here ([`Router`], [`Shard`]); the
//! tasks around them do the IO.
//!
//! # Why the results stay those of one operator over all partitions
//!
//! - The router sees its whole input partition in order, so it decides
//!   lateness exactly as the single operator would (by that partition's own
//!   watermark, [`super::window::is_late`]), and every routed row carries the
//!   watermark its partition had *before* it. The shard sets its view of the
//!   source partition to that value before taking the row, so it assigns the
//!   row to the same windows.
//! - When a source partition's watermark moves, its router tells every shard
//!   (a [`Routed::Mark`]), after the rows that moved it: a shard's view of
//!   each source partition never runs ahead of what it has received, and it
//!   fires a window only when every source partition's watermark passed its
//!   close, so no on-time row for it can still be on its way.
//! - Rows carry their source partition and offset. A router that restarts
//!   from its checkpoint writes some rows again (and a deposed router may
//!   still write for a moment); a shard drops every row at or below the
//!   highest offset it took from that source partition, which is part of its
//!   checkpoint. Rows from one source partition reach a shard in offset
//!   order (one idempotent producer per router, order kept per partition).
//!
//! # Record format
//!
//! Key: the group key (the JSON array text, as the output record's key).
//! Value: `B` · source partition (i32) · source offset (i64) · watermark
//! before the row (i64, `i64::MIN` for none) · event time (i64) · the
//! aggregate arguments (see [`put_args`]); or `W` · source partition (i32)
//! · watermark (i64, `i64::MIN` for none) · idle (u8). Integers big-endian.
//! Rows written by binaries before 2026-12-05 are `R` rows, the same but
//! with the arguments as a JSON array; they are still read (a job's
//! repartition topic outlives an upgrade), but a node running such an
//! earlier binary cannot read `B` rows, so a cluster upgrades its nodes
//! before it runs repartitioned jobs across them.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::WindowSpec;
use super::window::{is_late, Emit, Outcome, Row, WindowOperator};

/// The repartition topic of job `def` (its incarnation in the name, so
/// that a job created again under a dropped job's name never reads the
/// rows the old one left).
pub fn topic(def: &super::job::JobDef) -> String {
    match def.incarnation {
        Some(i) => format!("__weir_job-{}-{i:016x}-repartition", def.name),
        None => format!("__weir_job-{}-repartition", def.name),
    }
}

/// One record of a repartition topic (its row borrowed from the buffers
/// it was read into).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Routed<'a> {
    /// An on-time row.
    Row {
        /// Its input partition.
        source: i32,
        /// Its offset there.
        offset: i64,
        /// Added to `offset` to number the row among every row of its
        /// source partition number, across creations of the input topic
        /// (see [`super::local_read::Incarnation`]); 0 until it is
        /// created again.
        shift: i64,
        /// That partition's watermark before it.
        wm_before: Option<i64>,
        /// The row.
        row: Row<'a>,
    },
    /// A source partition's watermark and whether it is idle.
    Mark {
        /// The input partition.
        source: i32,
        /// Its watermark.
        wm: Option<i64>,
        /// Whether it stopped holding windows back (`--idle-timeout`).
        idle: bool,
    },
}

/// Why a repartition record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("repartition record: {0}")]
pub struct BadRouted(&'static str);

const NO_WM: i64 = i64::MIN;

fn wm_bytes(wm: Option<i64>) -> [u8; 8] {
    wm.unwrap_or(NO_WM).to_be_bytes()
}

fn wm_of(v: i64) -> Option<i64> {
    (v != NO_WM).then_some(v)
}

impl<'a> Routed<'a> {
    /// The record key and value, written into `buf` and split off it (the
    /// rows of one poll share `buf`'s allocation).
    pub fn encode(&self, buf: &mut BytesMut) -> (Option<Bytes>, Bytes) {
        match self {
            Routed::Row {
                source,
                offset,
                shift,
                wm_before,
                row,
            } => {
                buf.reserve(41 + 9 * row.args.len() + row.key.len());
                // `S` when the input was created again: the shift follows
                // the time (readers of `B` rows need not know it).
                buf.put_u8(if *shift == 0 { b'B' } else { b'S' });
                buf.put_i32(*source);
                buf.put_i64(*offset);
                buf.put_slice(&wm_bytes(*wm_before));
                buf.put_i64(row.time_ms);
                if *shift != 0 {
                    buf.put_i64(*shift);
                }
                put_args(row.args, buf);
                let value = buf.split().freeze();
                buf.put_slice(row.key.as_bytes());
                (Some(buf.split().freeze()), value)
            }
            Routed::Mark { source, wm, idle } => {
                buf.reserve(14);
                buf.put_u8(b'W');
                buf.put_i32(*source);
                buf.put_slice(&wm_bytes(*wm));
                buf.put_u8(u8::from(*idle));
                (None, buf.split().freeze())
            }
        }
    }

    /// The record of `key` and `value`, a row's arguments read into `args`
    /// (reused from record to record).
    pub fn decode(
        key: Option<&'a [u8]>,
        value: &[u8],
        args: &'a mut Vec<Value>,
    ) -> Result<Routed<'a>, BadRouted> {
        let int = |at: usize| -> Result<i64, BadRouted> {
            value
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
                .ok_or(BadRouted("too short"))
        };
        let source = value
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
            .ok_or(BadRouted("too short"))?;
        match value.first() {
            Some(kind @ (b'B' | b'S' | b'R')) => {
                let key = key
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .ok_or(BadRouted("a row without a UTF-8 key"))?;
                let (offset, wm_before, time_ms) = (int(5)?, wm_of(int(13)?), int(21)?);
                let (shift, args_at) = match kind {
                    b'S' => (int(29)?, 37),
                    _ => (0, 29),
                };
                let rest = &value[args_at.min(value.len())..];
                if *kind != b'R' {
                    take_args(rest, args)?;
                } else {
                    read_args(rest, args)
                        .map_err(|_| BadRouted("arguments are not a JSON array"))?;
                }
                Ok(Routed::Row {
                    source,
                    offset,
                    shift,
                    wm_before,
                    row: Row { time_ms, key, args },
                })
            }
            Some(b'W') => Ok(Routed::Mark {
                source,
                wm: wm_of(int(5)?),
                idle: *value.get(13).ok_or(BadRouted("too short"))? != 0,
            }),
            _ => Err(BadRouted("unknown kind")),
        }
    }
}

/// Writes a row's arguments: their count (u32), then each one as a tag
/// byte and its bytes: 0 null, 1 false, 2 true, 3 an integer (i64), 4 an
/// integer above `i64::MAX` (u64), 5 another number (f64 bits), 6 a string
/// (u32 length, UTF-8), 7 an array or object (u32 length, JSON text). Each
/// reads back as the `Value` it was, without a JSON parser for the scalars.
fn put_args(args: &[Value], buf: &mut BytesMut) {
    buf.put_u32(args.len() as u32);
    for v in args {
        match v {
            Value::Null => buf.put_u8(0),
            Value::Bool(b) => buf.put_u8(1 + u8::from(*b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    buf.put_u8(3);
                    buf.put_i64(i);
                } else if let Some(u) = n.as_u64() {
                    buf.put_u8(4);
                    buf.put_u64(u);
                } else {
                    buf.put_u8(5);
                    buf.put_f64(n.as_f64().unwrap_or(0.0));
                }
            }
            Value::String(s) => {
                buf.put_u8(6);
                buf.put_u32(s.len() as u32);
                buf.put_slice(s.as_bytes());
            }
            Value::Array(_) | Value::Object(_) => {
                buf.put_u8(7);
                let at = buf.len();
                buf.put_u32(0);
                // Writing a `Value` to memory cannot fail.
                let _ = serde_json::to_writer((&mut *buf).writer(), v);
                let len = (buf.len() - at - 4) as u32;
                buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
}

/// Reads what [`put_args`] wrote into `out` (emptied first; its allocation
/// kept); every byte must belong to an argument.
fn take_args(mut b: &[u8], out: &mut Vec<Value>) -> Result<(), BadRouted> {
    fn take<'b>(b: &mut &'b [u8], n: usize) -> Result<&'b [u8], BadRouted> {
        if b.len() < n {
            return Err(BadRouted("arguments cut short"));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn word<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], BadRouted> {
        Ok(take(b, N)?.try_into().unwrap_or([0; N]))
    }
    out.clear();
    let count = u32::from_be_bytes(word(&mut b)?);
    for _ in 0..count {
        let v = match take(&mut b, 1)?[0] {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(i64::from_be_bytes(word(&mut b)?)),
            4 => Value::from(u64::from_be_bytes(word(&mut b)?)),
            5 => serde_json::Number::from_f64(f64::from_be_bytes(word(&mut b)?))
                .map(Value::Number)
                .ok_or(BadRouted("an argument is not a finite number"))?,
            6 => {
                let len = u32::from_be_bytes(word(&mut b)?) as usize;
                let text = std::str::from_utf8(take(&mut b, len)?)
                    .map_err(|_| BadRouted("a text argument is not UTF-8"))?;
                Value::String(text.to_owned())
            }
            7 => {
                let len = u32::from_be_bytes(word(&mut b)?) as usize;
                serde_json::from_slice(take(&mut b, len)?)
                    .map_err(|_| BadRouted("an argument is not JSON"))?
            }
            _ => return Err(BadRouted("an argument of unknown kind")),
        };
        out.push(v);
    }
    if !b.is_empty() {
        return Err(BadRouted("bytes after the arguments"));
    }
    Ok(())
}

/// The JSON array `json` into `out` (emptied first; its allocation kept).
fn read_args(json: &[u8], out: &mut Vec<Value>) -> Result<(), serde_json::Error> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Into<'o>(&'o mut Vec<Value>);
    impl<'de> Visitor<'de> for Into<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element()? {
                self.0.push(v);
            }
            Ok(())
        }
    }
    out.clear();
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_seq(Into(out))?;
    de.end()
}

/// The route half for one input partition: lateness by its watermark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    spec: WindowSpec,
    grace_ms: i64,
    /// The partition's watermark: the largest event time it showed.
    pub wm: Option<i64>,
}

impl Router {
    /// A router for windows `spec` with `grace_ms`, whose partition showed
    /// nothing yet.
    pub fn new(spec: WindowSpec, grace_ms: i64) -> Self {
        Self {
            spec,
            grace_ms,
            wm: None,
        }
    }

    /// Processing time reached `now_ms`: under `PROCTIME()` no row of the
    /// partition can be earlier, so its watermark moves there and windows
    /// close on the clock, with no later record.
    pub fn advance_to(&mut self, now_ms: i64) {
        self.wm = Some(self.wm.map_or(now_ms, |w| w.max(now_ms)));
    }

    /// Row `row` at `offset` of partition `source`, in the creation of the
    /// input whose offsets are shifted by `shift`: the record to route, or
    /// `None` when it is late.
    pub fn route<'a>(
        &mut self,
        source: i32,
        offset: i64,
        shift: i64,
        row: Row<'a>,
    ) -> Option<Routed<'a>> {
        let wm_before = self.wm;
        self.wm = Some(wm_before.map_or(row.time_ms, |w| w.max(row.time_ms)));
        (!is_late(self.spec, self.grace_ms, row.time_ms, wm_before)).then_some(Routed::Row {
            source,
            offset,
            shift,
            wm_before,
            row,
        })
    }
}

/// The aggregate half for one shard: the window operator over the rows
/// routed to it, without the copies a restarted router wrote again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// The operator (one watermark per source partition).
    pub op: WindowOperator,
    /// The highest offset taken from each source partition (shifted, see
    /// [`Routed::Row`]).
    taken: BTreeMap<i32, i64>,
}

/// What a shard did with a routed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// A row went into its windows.
    Row,
    /// A row already taken (written again by a restarted router).
    Duplicate,
    /// A row for windows that fired early because every source partition
    /// was idle.
    Late,
    /// A watermark.
    Mark,
}

impl Shard {
    /// A shard running `op`.
    pub fn new(op: WindowOperator) -> Self {
        Self {
            op,
            taken: BTreeMap::new(),
        }
    }

    /// Takes `r`; hands the results it makes to `out`.
    pub fn take(&mut self, r: Routed<'_>, out: &mut (impl Emit + ?Sized)) -> Took {
        match r {
            Routed::Row {
                source,
                offset,
                shift,
                wm_before,
                row,
            } => {
                // Numbered across creations of the input.
                let number = offset.saturating_add(shift);
                if self.taken.get(&source).is_some_and(|o| number <= *o) {
                    return Took::Duplicate;
                }
                self.taken.insert(source, number);
                let Ok(p) = usize::try_from(source) else {
                    return Took::Duplicate;
                };
                self.op.advance(p, wm_before, false, out);
                match self.op.process(p, row, out) {
                    Outcome::Accepted => Took::Row,
                    Outcome::Late => Took::Late,
                }
            }
            Routed::Mark { source, wm, idle } => {
                if let Ok(p) = usize::try_from(source) {
                    self.op.advance(p, wm, idle, out);
                }
                Took::Mark
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::window::GroupKey;
    use serde_json::json;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let key = GroupKey::of(&[json!("a"), json!(1)]);
        let args = [json!(1.5), Value::Null, json!("x")];
        let row = Routed::Row {
            source: 2,
            offset: 41,
            shift: 0,
            wm_before: None,
            row: Row {
                time_ms: -5,
                key: key.as_str(),
                args: &args,
            },
        };
        let mark = Routed::Mark {
            source: 0,
            wm: Some(1_700_000_000_000),
            idle: true,
        };
        for r in [row, mark] {
            let (k, v) = r.encode(&mut BytesMut::new());
            // A buffer holding an earlier record's arguments.
            let mut buf = vec![json!("stale")];
            assert_eq!(Routed::decode(k.as_deref(), &v, &mut buf), Ok(r));
            for cut in 0..v.len() {
                assert!(
                    Routed::decode(k.as_deref(), &v[..cut], &mut Vec::new()).is_err(),
                    "cut at {cut}"
                );
            }
        }
        // A row an earlier binary wrote (arguments as a JSON array).
        let mut old = vec![b'R'];
        old.extend(2i32.to_be_bytes());
        old.extend(41i64.to_be_bytes());
        old.extend(NO_WM.to_be_bytes());
        old.extend((-5i64).to_be_bytes());
        old.extend(br#"[1.5,null,"x"]"#);
        let mut buf = Vec::new();
        assert_eq!(
            Routed::decode(Some(key.as_str().as_bytes()), &old, &mut buf),
            Ok(row)
        );
        assert!(Routed::decode(None, b"Rxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &mut buf).is_err());
        assert!(Routed::decode(None, b"", &mut buf).is_err());
        assert!(Routed::decode(None, b"Z12345678901234", &mut buf).is_err());
    }

    /// Rows of an input topic created again (offsets from 0, shifted past
    /// the old creation's) are taken after the old one's, and a restarted
    /// router's rows of either creation are still dropped as replays.
    #[test]
    fn a_shard_takes_a_recreated_inputs_rows_after_the_old_ones() {
        use crate::stream::plan::AggregateKind;
        use crate::stream::window::EmitMode;
        let spec = WindowSpec::Tumble { size_ms: 1_000 };
        let op = WindowOperator::new(spec, 0, vec![AggregateKind::CountStar], 1, EmitMode::Final);
        let mut shard = Shard::new(op);
        let key = GroupKey::of(&[json!("k")]);
        let row = |offset: i64, shift: i64, time_ms: i64| Routed::Row {
            source: 0,
            offset,
            shift,
            wm_before: None,
            row: Row {
                time_ms,
                key: key.as_str(),
                args: &[],
            },
        };
        let mut out = Vec::new();
        for o in 0..10 {
            assert_eq!(shard.take(row(o, 0, 100), &mut out), Took::Row);
        }
        assert_eq!(shard.take(row(9, 0, 100), &mut out), Took::Duplicate);
        // The new creation starts at offset 0; the old one was left at 10.
        for o in 0..5 {
            assert_eq!(
                shard.take(row(o, 10, 200), &mut out),
                Took::Row,
                "offset {o}"
            );
        }
        assert_eq!(shard.take(row(4, 10, 200), &mut out), Took::Duplicate);
        assert_eq!(shard.take(row(9, 0, 100), &mut out), Took::Duplicate);
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            any::<String>().prop_map(Value::String),
        ];
        // Floats inside arrays and objects go through serde_json's text,
        // which reads some back a last bit apart (as the input's own JSON
        // was read): their nesting is tested with the other scalars.
        let nested_leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        let nested = nested_leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![leaf, nested]
    }

    proptest::proptest! {
        /// Any arguments read back as they were written, and a row cut
        /// anywhere is an error, never another row.
        #[test]
        fn binary_arguments_round_trip(
            args in proptest::collection::vec(json_value(), 0..5),
            shift in proptest::prop_oneof![proptest::strategy::Just(0i64), 1i64..],
        ) {
            let row = Routed::Row {
                source: 1,
                offset: 7,
                shift,
                wm_before: Some(3),
                row: Row { time_ms: 9, key: "[1]", args: &args },
            };
            let (k, v) = row.encode(&mut BytesMut::new());
            let mut buf = Vec::new();
            proptest::prop_assert_eq!(Routed::decode(k.as_deref(), &v, &mut buf), Ok(row));
            for cut in 29..v.len() {
                proptest::prop_assert!(Routed::decode(k.as_deref(), &v[..cut], &mut Vec::new()).is_err());
            }
        }
    }
}
