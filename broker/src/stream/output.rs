//! From a window's result to the output record: the value is a JSON object
//! with the statement's columns in select-list order (group keys by name,
//! window start and end in epoch ms, each aggregate by its name); the key is
//! the group key (a JSON array of the key columns), so that every result of
//! one group lands in one output partition, in order; a job grouping by the
//! record key alone keeps the input's key as it was. The record timestamp
//! is the time of writing (results of replayed history must not fall under
//! the output's time retention at once). A value is written straight into
//! its record batch, as constant pieces of text with a result's own values
//! between them: the field names, and the window's bounds, which the
//! results of one window start share, are written once per start, not once
//! per result.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::plan::{JobPlan, OutputColumn, KEY_COLUMN};
use super::window::{ResultRef, WindowResult};

/// Where an output field's value comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Key(usize),
    Start,
    End,
    Aggregate(usize),
    Rank,
}

/// Writes the output records of one plan; the field names are quoted once,
/// not per record.
#[derive(Debug, Clone)]
pub struct Output {
    /// Each field: what comes before its value (`{` or `,`, then
    /// `"name":` as JSON), and its value's source.
    fields: Vec<(Vec<u8>, Source)>,
    /// The number of group key columns.
    keys: usize,
    /// The job groups by the record key alone: results keep it.
    record_key: bool,
    /// The window bounds `pieces` were made for.
    bounds: Option<(i64, i64)>,
    /// The value as constant text (names, punctuation, the window's
    /// bounds), each piece followed by the source of the value after it.
    pieces: Vec<(Text, Option<Source>)>,
    /// Where pieces are put together (kept: a session's result, whose
    /// bounds are its own, makes them per result).
    scratch: Vec<u8>,
}

/// Constant text, copied as a whole block of [`Text::SHORT`] bytes when it
/// is that short (a copy of a known length is a few instructions; one of
/// any length is a call).
#[derive(Debug, Clone)]
enum Text {
    Short([u8; Text::SHORT], usize),
    Long(Vec<u8>),
}

impl Text {
    const SHORT: usize = 48;

    fn new(t: &[u8]) -> Self {
        if t.len() <= Self::SHORT {
            let mut b = [0; Self::SHORT];
            b[..t.len()].copy_from_slice(t);
            Text::Short(b, t.len())
        } else {
            Text::Long(t.to_vec())
        }
    }

    #[inline]
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Text::Short(b, len) => {
                let end = out.len() + len;
                out.extend_from_slice(b);
                out.truncate(end);
            }
            Text::Long(t) => out.extend_from_slice(t),
        }
    }
}

impl Output {
    /// The writer of `plan`'s output records.
    pub fn new(plan: &JobPlan) -> Self {
        let fields = plan
            .columns
            .iter()
            .map(|c| {
                let (name, src) = match c {
                    OutputColumn::Key { index, name } => (name, Source::Key(*index)),
                    OutputColumn::WindowStart { name } => (name, Source::Start),
                    OutputColumn::WindowEnd { name } => (name, Source::End),
                    OutputColumn::Aggregate { index, name } => (name, Source::Aggregate(*index)),
                    OutputColumn::Rank { name } => (name, Source::Rank),
                    // A ranked row's columns are its result's values.
                    OutputColumn::Field { index, name } => (name, Source::Aggregate(*index)),
                };
                let mut quoted = Value::String(name.clone()).to_string().into_bytes();
                quoted.push(b':');
                (quoted, src)
            })
            .enumerate()
            .map(|(i, (quoted, src))| {
                (
                    [&[if i == 0 { b'{' } else { b',' }][..], &quoted].concat(),
                    src,
                )
            })
            .collect();
        Self {
            fields,
            keys: plan.keys.len(),
            record_key: plan.keys == [KEY_COLUMN],
            bounds: None,
            pieces: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Makes the constant pieces of the values of windows `[start, end)`.
    fn make_pieces(&mut self, start: i64, end: i64) {
        self.pieces.clear();
        let text = &mut self.scratch;
        text.clear();
        if self.fields.is_empty() {
            text.push(b'{');
        }
        for (name, src) in &self.fields {
            text.extend_from_slice(name);
            match src {
                Source::Start => {
                    text.extend_from_slice(itoa::Buffer::new().format(start).as_bytes())
                }
                Source::End => text.extend_from_slice(itoa::Buffer::new().format(end).as_bytes()),
                other => {
                    self.pieces.push((Text::new(text), Some(*other)));
                    text.clear();
                }
            }
        }
        text.push(b'}');
        self.pieces.push((Text::new(text), None));
        self.bounds = Some((start, end));
    }

    /// The key (none for a null record key) and value bytes of the output
    /// record of `r`, ranked `rank` by the job's Top-N (null without one),
    /// written into `buf` and split off it (so the records of one write
    /// share `buf`'s allocation).
    pub fn record(
        &mut self,
        r: &WindowResult,
        rank: Option<u64>,
        buf: &mut BytesMut,
    ) -> (Option<Bytes>, Bytes) {
        let r = r.as_ref();
        let mut value = Vec::new();
        self.value_into(&r, rank, &mut value);
        buf.extend_from_slice(&value);
        let value = buf.split().freeze();
        let key = self.key_of(&r).map(|k| {
            buf.extend_from_slice(k.as_bytes());
            buf.split().freeze()
        });
        (key, value)
    }

    /// The output record's key of `r` (none for a null record key).
    pub fn key_of<'r>(&self, r: &ResultRef<'r>) -> Option<std::borrow::Cow<'r, str>> {
        if !self.record_key {
            return Some(r.key.as_str().into());
        }
        // The input's key, read as text (a string or null).
        match r.key.single_plain_string() {
            Some(k) => Some(k.into()),
            None => r
                .key
                .values()
                .first()
                .and_then(Value::as_str)
                .map(|k| k.to_owned().into()),
        }
    }

    /// Appends the output record's value of `r`, ranked `rank` by the job's
    /// Top-N (null without one), to `out`.
    pub fn value_into(&mut self, r: &ResultRef<'_>, rank: Option<u64>, out: &mut Vec<u8>) {
        if self.bounds != Some((r.start_ms, r.end_ms)) {
            self.make_pieces(r.start_ms, r.end_ms);
        }
        let text = r.key.as_str();
        // One key column: its JSON is the array's only element, as is. More:
        // parsed once per record.
        let parsed = (self.keys != 1).then(|| r.key.values());
        for (piece, then) in &self.pieces {
            piece.put(out);
            // Writing JSON to memory cannot fail.
            let _ = match then {
                None | Some(Source::Start | Source::End) => Ok(()),
                Some(Source::Key(k)) => match &parsed {
                    None if text.len() >= 2 => {
                        out.extend_from_slice(&text.as_bytes()[1..text.len() - 1]);
                        Ok(())
                    }
                    None => serde_json::to_writer(&mut *out, &Value::Null),
                    Some(vals) => {
                        serde_json::to_writer(&mut *out, vals.get(*k).unwrap_or(&Value::Null))
                    }
                },
                Some(Source::Aggregate(a)) => {
                    r.values.write_json(*a, out);
                    Ok(())
                }
                Some(Source::Rank) => serde_json::to_writer(&mut *out, &rank),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::{seed_plan, TimeSource};
    use crate::stream::window::{GroupKey, Values};
    use serde_json::json;

    /// Columns come out in select-list order, under their names.
    #[test]
    fn the_output_record_follows_the_select_list() {
        let columns = vec![
            OutputColumn::Key {
                index: 0,
                name: "customerId".into(),
            },
            OutputColumn::WindowStart {
                name: "window_start".into(),
            },
            OutputColumn::Aggregate {
                index: 0,
                name: "total".into(),
            },
            OutputColumn::Aggregate {
                index: 1,
                name: "n".into(),
            },
            OutputColumn::WindowEnd {
                name: "until".into(),
            },
        ];
        let plan = seed_plan(None, TimeSource::Field("ts".into()), columns);
        let r = WindowResult {
            key: GroupKey::of(&[json!(17)]),
            start_ms: 30_000,
            end_ms: 60_000,
            values: Values::Json(vec![json!(25.5), json!(3)]),
            is_final: true,
        };
        let (k, v) = Output::new(&plan).record(&r, None, &mut BytesMut::new());
        assert_eq!(k.as_deref(), Some(&b"[17]"[..]));
        let mut by_key = plan.clone();
        by_key.keys = vec![KEY_COLUMN.into()];
        for (key, want) in [(json!("k 1"), Some(&b"k 1"[..])), (Value::Null, None)] {
            let r = WindowResult {
                key: GroupKey::of(&[key]),
                ..r.clone()
            };
            let (k, _) = Output::new(&by_key).record(&r, None, &mut BytesMut::new());
            assert_eq!(k.as_deref(), want, "the record key, as it was");
        }
        let mut two = plan.clone();
        two.keys = vec!["a".into(), "b".into()];
        two.columns = vec![
            OutputColumn::Key {
                index: 1,
                name: "b".into(),
            },
            OutputColumn::Key {
                index: 0,
                name: "a \"q\"".into(),
            },
        ];
        let r2 = WindowResult {
            key: GroupKey::of(&[json!("x,y]"), json!([1, 2])]),
            ..r.clone()
        };
        let (_, v2) = Output::new(&two).record(&r2, None, &mut BytesMut::new());
        assert_eq!(
            String::from_utf8(v2.to_vec()).unwrap(),
            r#"{"b":[1,2],"a \"q\"":"x,y]"}"#
        );
        assert_eq!(
            String::from_utf8(v.to_vec()).unwrap(),
            r#"{"customerId":17,"window_start":30000,"total":25.5,"n":3,"until":60000}"#
        );
    }

    /// Integers are written as serde_json writes them: negative, the
    /// extremes of i64, and a u64 beyond them.
    #[test]
    fn integers_are_written_as_json_numbers() {
        let columns = vec![
            OutputColumn::WindowStart { name: "s".into() },
            OutputColumn::Aggregate {
                index: 0,
                name: "a".into(),
            },
            OutputColumn::Aggregate {
                index: 1,
                name: "b".into(),
            },
            OutputColumn::Aggregate {
                index: 2,
                name: "c".into(),
            },
            OutputColumn::WindowEnd { name: "e".into() },
        ];
        let plan = seed_plan(None, TimeSource::Field("ts".into()), columns);
        let r = WindowResult {
            key: GroupKey::of(&[json!(1)]),
            start_ms: -30_000,
            end_ms: i64::MAX,
            values: Values::Json(vec![json!(i64::MIN), json!(u64::MAX), json!(0)]),
            is_final: true,
        };
        let (_, v) = Output::new(&plan).record(&r, None, &mut BytesMut::new());
        assert_eq!(
            String::from_utf8(v.to_vec()).unwrap(),
            r#"{"s":-30000,"a":-9223372036854775808,"b":18446744073709551615,"c":0,"e":9223372036854775807}"#
        );
    }

    /// Records written one after another into one small shared buffer (so
    /// that it is outgrown several times) each keep their own bytes.
    #[test]
    fn records_sharing_a_buffer_keep_their_own_bytes() {
        let plan = seed_plan(
            None,
            TimeSource::Field("ts".into()),
            vec![
                OutputColumn::Key {
                    index: 0,
                    name: "k".into(),
                },
                OutputColumn::Aggregate {
                    index: 0,
                    name: "n".into(),
                },
            ],
        );
        let mut out = Output::new(&plan);
        let result = |i: u64| WindowResult {
            key: GroupKey::of(&[json!(format!("key-{i}"))]),
            start_ms: 0,
            end_ms: 1_000,
            values: Values::Json(vec![json!(i)]),
            is_final: true,
        };
        let mut shared = BytesMut::with_capacity(64);
        let written: Vec<_> = (0..100)
            .map(|i| out.record(&result(i), None, &mut shared))
            .collect();
        for (i, (k, v)) in written.iter().enumerate() {
            let (k1, v1) = out.record(&result(i as u64), None, &mut BytesMut::new());
            assert_eq!((k, v), (&k1, &v1), "record {i}");
            assert_eq!(&v[..], format!(r#"{{"k":"key-{i}","n":{i}}}"#).as_bytes());
        }
    }
}
