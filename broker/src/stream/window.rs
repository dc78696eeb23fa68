//! The window operator: a pure state machine. It takes rows (event time,
//! group key, aggregate arguments) tagged with their input partition,
//! judges lateness by that partition's watermark, adds each row to its
//! windows, and emits a window's result once the firing watermark passed its
//! close (see the module docs of [`super`] for why that makes replay equal
//! live). No IO: the task around it reads records and writes results.
//!
//! Closes: a tumbling or hopping window `[start, end)` closes at
//! `end + grace`; a session `[first, last + gap)` at `end + gap + grace`,
//! and a row at `t` is late for sessions once `t + gap + grace` passed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::acc::Acc;
use super::plan::{AggregateKind, WindowSpec};
use super::watermark::Watermarks;
use fixed::Fixed;
use sessions::{session_close, SessionMap, Timers};

/// A map by group key, hashed with a fast seeded hash instead of SipHash
/// (a row looks its key up once per window it falls in).
pub type KeyMap<V> = std::collections::HashMap<GroupKey, V, foldhash::fast::RandomState>;

/// A group key: the JSON array of the key columns' values, as text (so that
/// equal keys hash and order alike, whatever their JSON types). Shared, not
/// copied: a key is held by its windows, its timers and its results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey(pub Arc<str>);

impl Serialize for GroupKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(GroupKey(String::deserialize(d)?.into()))
    }
}

/// Maps look a key up by its text, so a row's key (written into a reused
/// buffer) is turned into a shared `GroupKey` only when it opens a window.
impl std::borrow::Borrow<str> for GroupKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl GroupKey {
    /// The key's text (a JSON array).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// With one key column that is a JSON string without escapes: that
    /// string (what most keys are, read without parsing).
    pub fn single_plain_string(&self) -> Option<&str> {
        let inner = self.0.strip_prefix("[\"")?.strip_suffix("\"]")?;
        (!inner.bytes().any(|b| b == b'"' || b == b'\\')).then_some(inner)
    }

    /// The key of `values` (the key columns, in plan order).
    pub fn of(values: &[Value]) -> Self {
        let mut w = GroupKeyWriter::new();
        values.iter().for_each(|v| w.value(v));
        w.finish()
    }

    /// The key columns' values.
    pub fn values(&self) -> Vec<Value> {
        Self::values_of(&self.0)
    }

    /// The key columns' values of the key text `key`.
    pub fn values_of(key: &str) -> Vec<Value> {
        match serde_json::from_str(key) {
            Ok(Value::Array(v)) => v,
            _ => Vec::new(),
        }
    }
}

/// Writes a [`GroupKey`] column by column, straight into its text (no
/// array of values built first).
#[derive(Debug, Clone)]
pub struct GroupKeyWriter(Vec<u8>);

impl GroupKeyWriter {
    /// An empty key.
    pub fn new() -> Self {
        GroupKeyWriter(Vec::with_capacity(24))
    }

    fn separate(&mut self) {
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
    }

    /// Appends a column's value.
    pub fn value(&mut self, v: &Value) {
        self.separate();
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, v);
    }

    /// Appends a text column (as a JSON string, as [`Self::value`] would
    /// write `Value::String`).
    pub fn text(&mut self, s: &str) {
        self.separate();
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    /// Empties the writer for the next key (its buffer is kept).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Closes the key written and returns its text; [`Self::clear`] starts
    /// the next one.
    pub fn close(&mut self) -> &str {
        if self.0.is_empty() {
            self.0.push(b'[');
        }
        self.0.push(b']');
        // serde_json writes UTF-8 only; what is not would be a bug here,
        // and shows as a key no value maps to rather than a panic.
        std::str::from_utf8(&self.0).unwrap_or("[\"\u{fffd}\"]")
    }

    /// The key written.
    pub fn finish(mut self) -> GroupKey {
        GroupKey(self.close().into())
    }
}

impl Default for GroupKeyWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// One input record as the operator sees it, borrowed from the buffers it
/// was read into (a row costs no allocation unless it opens a window).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// The group key's text (see [`GroupKey`]).
    pub key: &'a str,
    /// Each aggregate's argument (null when absent; ignored by `COUNT(*)`).
    pub args: &'a [Value],
}

impl Row<'_> {
    /// The row with its own copies of the key and arguments.
    pub fn to_owned(&self) -> OwnedRow {
        OwnedRow {
            time_ms: self.time_ms,
            key: GroupKey(self.key.into()),
            args: self.args.to_vec(),
        }
    }
}

/// A [`Row`] that owns its key and arguments (rows built by hand, kept
/// beyond the buffers they were read into).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedRow {
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// The group key.
    pub key: GroupKey,
    /// Each aggregate's argument.
    pub args: Vec<Value>,
}

impl OwnedRow {
    /// The row borrowed, as the operator takes it.
    pub fn row(&self) -> Row<'_> {
        Row {
            time_ms: self.time_ms,
            key: self.key.as_str(),
            args: &self.args,
        }
    }
}

/// When results are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmitMode {
    /// Once per window, when it is final.
    #[serde(alias = "final")]
    Final,
    /// Also after every row a window takes (not final yet).
    #[serde(alias = "changes")]
    Changes,
}

/// A window's result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// The group.
    pub key: GroupKey,
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub end_ms: i64,
    /// The aggregates' values, in plan order.
    pub values: Values,
    /// Whether the window is closed (its last emission).
    pub is_final: bool,
}

/// A result's aggregate values: the accumulators its window left (a final
/// result takes them over; each becomes JSON only as it is written), or
/// values already JSON (an open window's, a Top-N's ranked rows).
#[derive(Debug, Clone)]
pub enum Values {
    /// The window's accumulators, in plan order.
    Accs(Vec<Acc>),
    /// JSON values, in plan order.
    Json(Vec<Value>),
}

/// Equal when they hold the same accumulators, or the same JSON values.
impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Values {
    /// The values, borrowed.
    pub fn as_ref(&self) -> ValuesRef<'_> {
        match self {
            Values::Accs(a) => ValuesRef::Accs(a),
            Values::Json(v) => ValuesRef::Json(v),
        }
    }

    /// Value `i` (`None` past the last).
    pub fn get(&self, i: usize) -> Option<Value> {
        self.as_ref().get(i)
    }

    /// Every value, as JSON.
    pub fn json(&self) -> Vec<Value> {
        match self {
            Values::Json(v) => v.clone(),
            Values::Accs(a) => a.iter().map(Acc::value).collect(),
        }
    }
}

/// A result's aggregate values as the operator holds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValuesRef<'a> {
    /// The window's accumulators, in plan order.
    Accs(&'a [Acc]),
    /// JSON values, in plan order.
    Json(&'a [Value]),
}

impl ValuesRef<'_> {
    /// Value `i` (`None` past the last).
    pub fn get(&self, i: usize) -> Option<Value> {
        match self {
            ValuesRef::Accs(a) => a.get(i).map(Acc::value),
            ValuesRef::Json(v) => v.get(i).cloned(),
        }
    }

    /// Writes value `i` as JSON text to `out` (null past the last).
    pub fn write_json(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            ValuesRef::Accs(a) => match a.get(i) {
                Some(acc) => acc.write_json(out),
                None => out.extend_from_slice(b"null"),
            },
            // Writing JSON to memory cannot fail.
            ValuesRef::Json(v) => {
                let _ = serde_json::to_writer(out, v.get(i).unwrap_or(&Value::Null));
            }
        }
    }
}

/// A result as the operator hands it over: borrowed from its windows, so
/// that a writer encodes it without a copy of its key or values.
#[derive(Debug, Clone, Copy)]
pub struct ResultRef<'a> {
    /// The group.
    pub key: &'a GroupKey,
    /// Window start, epoch ms.
    pub start_ms: i64,
    /// Window end (exclusive), epoch ms.
    pub end_ms: i64,
    /// The aggregates' values, in plan order.
    pub values: ValuesRef<'a>,
    /// Whether the window is closed (its last emission).
    pub is_final: bool,
}

impl ResultRef<'_> {
    /// The result, owned: a final one takes a copy of its accumulators, an
    /// open one its values as JSON (an accumulator of distinct values is
    /// not copied at each update).
    pub fn to_owned(&self) -> WindowResult {
        let values = match (self.values, self.is_final) {
            (ValuesRef::Accs(a), true) => Values::Accs(a.to_vec()),
            (ValuesRef::Accs(a), false) => Values::Json(a.iter().map(Acc::value).collect()),
            (ValuesRef::Json(v), _) => Values::Json(v.to_vec()),
        };
        WindowResult {
            key: self.key.clone(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            values,
            is_final: self.is_final,
        }
    }
}

impl WindowResult {
    /// The result, borrowed.
    pub fn as_ref(&self) -> ResultRef<'_> {
        ResultRef {
            key: &self.key,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            values: self.values.as_ref(),
            is_final: self.is_final,
        }
    }
}

/// Where a window operator's results go as it makes them: written at once
/// (an aggregate task's output batches), or kept (a list, for a Top-N
/// that ranks them or a test).
pub trait Emit {
    /// Takes one result.
    fn emit(&mut self, r: ResultRef<'_>);
}

impl Emit for Vec<WindowResult> {
    fn emit(&mut self, r: ResultRef<'_>) {
        self.push(r.to_owned());
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It went into at least one open window.
    Accepted,
    /// Every window it belongs to had closed by its partition's watermark
    /// (or had already been emitted).
    Late,
}

/// The state of one job's window operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowOperator {
    spec: WindowSpec,
    grace_ms: i64,
    kinds: Vec<AggregateKind>,
    emit: EmitMode,
    watermarks: Watermarks,
    /// Tumbling and hopping windows, by start.
    fixed: Fixed,
    /// Sessions of each key, disjoint, by start.
    sessions: SessionMap,
    /// (close, key, start) timers of the open sessions: each open session
    /// has one at or before its close (a session that grew keeps its older
    /// one until it comes up; one merged away leaves its timer behind).
    session_timers: Timers,
    /// Rows taken.
    pub accepted: u64,
    /// Rows that were late.
    pub late: u64,
}

impl WindowOperator {
    /// An operator over `partitions` input partitions computing `kinds` in
    /// `spec` windows, with `grace_ms` of allowed lateness.
    pub fn new(
        spec: WindowSpec,
        grace_ms: i64,
        kinds: Vec<AggregateKind>,
        partitions: usize,
        emit: EmitMode,
    ) -> Self {
        Self {
            spec,
            grace_ms: grace_ms.max(0),
            kinds,
            emit,
            watermarks: Watermarks::new(partitions),
            fixed: Fixed::default(),
            sessions: SessionMap::default(),
            session_timers: Timers::default(),
            accepted: 0,
            late: 0,
        }
    }

    /// The watermarks (per partition, and the firing one).
    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    /// Windows not yet emitted as final.
    pub fn open_windows(&self) -> usize {
        self.fixed.open_windows() + self.sessions.open()
    }

    /// The current values of `key`'s open windows, by start (queryable
    /// state: none of them is final).
    pub fn open_for(&self, key: &GroupKey) -> Vec<WindowResult> {
        let mut out: Vec<WindowResult> = match self.spec {
            WindowSpec::Session { .. } => self
                .sessions
                .of(key.as_str())
                .iter()
                .map(|s| open(key, s.start, s.end, &s.accs).to_owned())
                .collect(),
            WindowSpec::Tumble { .. } | WindowSpec::Hop { .. } => self
                .fixed
                .open_for(key.as_str(), self.kinds.len())
                .map(|(start, accs)| open(key, start, start + self.fixed_size(), accs).to_owned())
                .collect(),
        };
        out.sort_by_key(|r| r.start_ms);
        out
    }

    /// Takes `row` from input partition `partition`; pushes to `out` the
    /// updates (under [`EmitMode::Changes`]) and every window that became
    /// final.
    pub fn process(
        &mut self,
        partition: usize,
        row: Row<'_>,
        out: &mut (impl Emit + ?Sized),
    ) -> Outcome {
        let own = self.watermarks.of(partition);
        let fired = self.watermarks.firing();
        let closed =
            |close: i64| own.is_some_and(|w| close <= w) || fired.is_some_and(|f| close <= f);
        let took = match self.spec {
            WindowSpec::Tumble { size_ms } => self.add_fixed(&row, size_ms, size_ms, closed, out),
            WindowSpec::Hop { slide_ms, size_ms } => {
                self.add_fixed(&row, slide_ms, size_ms, closed, out)
            }
            WindowSpec::Session { gap_ms } => {
                // The row's own gap window `[t, t + gap)` closes like a session.
                let proto_close = session_close(row.time_ms, gap_ms, self.grace_ms);
                !closed(proto_close) && {
                    self.add_session(&row, gap_ms, out);
                    true
                }
            }
        };
        // Only a firing watermark that moved closes windows: a window the
        // row opened closes after it.
        if self.watermarks.observe(partition, row.time_ms) {
            self.fire(out);
        }
        if took {
            self.accepted += 1;
            Outcome::Accepted
        } else {
            self.late += 1;
            Outcome::Late
        }
    }

    /// Marks input partition `partition` idle or active (see
    /// [`Watermarks::set_idle`]); pushes the windows that became final.
    pub fn set_idle(&mut self, partition: usize, idle: bool, out: &mut (impl Emit + ?Sized)) {
        if self.watermarks.set_idle(partition, idle) {
            self.fire(out);
        }
    }

    /// Input partition `partition`'s watermark is at least `wm` and it is
    /// `idle` or not (what a repartitioned stream says of its source
    /// partitions, see [`super::repartition`]); pushes the windows that
    /// became final.
    pub fn advance(
        &mut self,
        partition: usize,
        wm: Option<i64>,
        idle: bool,
        out: &mut (impl Emit + ?Sized),
    ) {
        let mut moved = false;
        if let Some(w) = wm {
            moved |= self.watermarks.observe(partition, w);
        }
        moved |= self.watermarks.set_idle(partition, idle);
        if moved {
            self.fire(out);
        }
    }

    /// The length of a tumbling or hopping window (0 for sessions, which
    /// have no fixed windows).
    fn fixed_size(&self) -> i64 {
        match self.spec {
            WindowSpec::Tumble { size_ms } | WindowSpec::Hop { size_ms, .. } => size_ms,
            WindowSpec::Session { .. } => 0,
        }
    }

    /// The starts of the fixed windows (`size`, every `slide`) holding `t`,
    /// latest first, each with its number (start / slide).
    fn starts(t: i64, slide: i64, size: i64) -> impl Iterator<Item = (i64, i64)> {
        let number = t.div_euclid(slide);
        let last = number * slide;
        (0..)
            .map(move |i: i64| (number - i, last - i * slide))
            .take_while(move |(_, s)| s + size > t)
    }

    fn add_fixed(
        &mut self,
        row: &Row<'_>,
        slide: i64,
        size: i64,
        closed: impl Fn(i64) -> bool,
        out: &mut (impl Emit + ?Sized),
    ) -> bool {
        let mut took = false;
        // The row's key is looked up once, for the first window it takes.
        let mut slot = None;
        let per_row = size / slide.max(1);
        for (number, start) in Self::starts(row.time_ms, slide, size) {
            let end = start.saturating_add(size);
            let close = end.saturating_add(self.grace_ms);
            if closed(close) {
                continue;
            }
            took = true;
            let slot = *slot.get_or_insert_with(|| self.fixed.slot(row.key));
            let accs = self
                .fixed
                .window((number, start), slot, per_row, &self.kinds);
            for ((acc, kind), arg) in accs.iter_mut().zip(&self.kinds).zip(row.args) {
                acc.add(*kind, arg);
            }
            if self.emit == EmitMode::Changes {
                // The window stays open: its values as they stand now.
                let (key, accs) =
                    self.fixed
                        .key_and_window((number, start), slot, self.kinds.len());
                out.emit(ResultRef {
                    key,
                    start_ms: start,
                    end_ms: end,
                    values: ValuesRef::Accs(accs),
                    is_final: false,
                });
            }
        }
        took
    }

    /// Emits every window whose close the firing watermark passed, by close
    /// and then key.
    fn fire(&mut self, out: &mut (impl Emit + ?Sized)) {
        let Some(f) = self.watermarks.firing() else {
            return;
        };
        self.fixed
            .fire(f, self.fixed_size(), self.grace_ms, self.kinds.len(), out);
        self.fire_sessions(f, out);
    }
}

/// Whether a row at `t` is late for every window it belongs to, judged by
/// its partition's watermark `wm` (what [`WindowOperator::process`] decides
/// when no partition is idle): the latest window holding it closed.
pub fn is_late(spec: WindowSpec, grace_ms: i64, t: i64, wm: Option<i64>) -> bool {
    let close = match spec {
        WindowSpec::Tumble { size_ms } => t.div_euclid(size_ms) * size_ms + size_ms,
        WindowSpec::Hop { slide_ms, size_ms } => t.div_euclid(slide_ms) * slide_ms + size_ms,
        WindowSpec::Session { gap_ms } => t.saturating_add(gap_ms),
    }
    .saturating_add(grace_ms.max(0));
    wm.is_some_and(|w| close <= w)
}

/// An open window's result: its values as they stand now.
fn open<'a>(key: &'a GroupKey, start: i64, end: i64, accs: &'a [Acc]) -> ResultRef<'a> {
    ResultRef {
        key,
        start_ms: start,
        end_ms: end,
        values: ValuesRef::Accs(accs),
        is_final: false,
    }
}

mod fixed;
mod sessions;

#[cfg(test)]
mod tests;
