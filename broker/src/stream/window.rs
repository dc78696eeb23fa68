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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
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
    sessions: KeyMap<Vec<Session>>,
    /// (close, key, start) timers of the open sessions: each open session
    /// has one at or before its close (a session that grew keeps its older
    /// one until it comes up; one merged away leaves its timer behind).
    session_timers: Timers,
    /// Rows taken.
    pub accepted: u64,
    /// Rows that were late.
    pub late: u64,
}

/// Session timers `(close, key, start)`, soonest first (then by key, so
/// sessions closing together fire in key order): a binary heap, cheaper to
/// push to and pop from than an ordered set; the same timer twice fires
/// once (the second finds its session gone). Compared and written as the
/// sorted list, so a checkpoint holds the same bytes whatever the heap's
/// layout (and reads those an ordered set wrote).
#[derive(Debug, Clone, Default)]
struct Timers(std::collections::BinaryHeap<std::cmp::Reverse<(i64, GroupKey, i64)>>);

impl Timers {
    fn insert(&mut self, timer: (i64, GroupKey, i64)) {
        self.0.push(std::cmp::Reverse(timer));
    }

    /// Takes the soonest timer if it closes at or before `f`.
    fn pop_until(&mut self, f: i64) -> Option<(i64, GroupKey, i64)> {
        if self.0.peek()?.0 .0 > f {
            return None;
        }
        self.0.pop().map(|t| t.0)
    }

    fn sorted(&self) -> Vec<&(i64, GroupKey, i64)> {
        let mut v: Vec<_> = self.0.iter().map(|t| &t.0).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

impl PartialEq for Timers {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl Serialize for Timers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Timers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<(i64, GroupKey, i64)> = Vec::deserialize(d)?;
        Ok(Timers(v.into_iter().map(std::cmp::Reverse).collect()))
    }
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
            sessions: KeyMap::default(),
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
        self.fixed.open_windows() + self.sessions.values().map(Vec::len).sum::<usize>()
    }

    /// The current values of `key`'s open windows, by start (queryable
    /// state: none of them is final).
    pub fn open_for(&self, key: &GroupKey) -> Vec<WindowResult> {
        let mut out: Vec<WindowResult> = match self.spec {
            WindowSpec::Session { .. } => self
                .sessions
                .get(key)
                .into_iter()
                .flatten()
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

    fn add_session(&mut self, row: &Row<'_>, gap: i64, out: &mut (impl Emit + ?Sized)) {
        let (t, grace) = (row.time_ms, self.grace_ms);
        let row_end = t.saturating_add(gap);
        // Sessions are disjoint (touching ones merge) and by start, so by
        // end too: those the row's own gap window `[t, row_end]` overlaps
        // are the run `i..j`, found by binary search (a key may hold many
        // open sessions while a slower partition holds the firing
        // watermark back).
        let span = |sessions: &[Session]| {
            let i = sessions.partition_point(|s| s.end < t);
            let j = i + sessions[i..].partition_point(|s| s.start <= row_end);
            (i, j)
        };
        // When it is one (a row within or extending a session: most rows),
        // the row goes into it in place; accumulators do not depend on the
        // order of what they took, so this equals the merge below.
        if let Some(sessions) = self.sessions.get_mut(row.key) {
            let (i, j) = span(sessions);
            if j == i + 1 {
                let s = &mut sessions[i];
                for ((acc, kind), arg) in s.accs.iter_mut().zip(&self.kinds).zip(row.args) {
                    acc.add(*kind, arg);
                }
                // The one before ends before `t` and the one after starts
                // after `row_end`, so the order holds. A session that only
                // grows later keeps its timer: [`Self::fire`] moves a timer
                // that comes early to the session's close.
                s.end = s.end.max(row_end);
                let earlier = t < s.start;
                if earlier || self.emit == EmitMode::Changes {
                    let key = GroupKey(row.key.into());
                    if earlier {
                        s.start = t;
                        let close = session_close(s.end, gap, grace);
                        self.session_timers.insert((close, key.clone(), t));
                    }
                    if self.emit == EmitMode::Changes {
                        out.emit(open(&key, s.start, s.end, &s.accs));
                    }
                }
                return;
            }
        }
        // The key as its open sessions already share it, else a new one.
        let key = match self.sessions.get_key_value(row.key) {
            Some((k, _)) => k.clone(),
            None => GroupKey(row.key.into()),
        };
        let sessions = self.sessions.entry(key.clone()).or_default();
        let mut accs: Vec<Acc> = self.kinds.iter().map(|k| Acc::new(*k)).collect();
        for ((acc, kind), arg) in accs.iter_mut().zip(&self.kinds).zip(row.args) {
            acc.add(*kind, arg);
        }
        // Every session the row's own gap window overlaps joins it, in
        // order, in their place.
        let (i, j) = span(sessions);
        let (mut start, mut end) = (t, row_end);
        for s in &sessions[i..j] {
            start = start.min(s.start);
            end = end.max(s.end);
            for (a, b) in accs.iter_mut().zip(&s.accs) {
                a.merge(b);
            }
        }
        if self.emit == EmitMode::Changes {
            out.emit(open(&key, start, end, &accs));
        }
        sessions.splice(i..j, [Session { start, end, accs }]);
        self.session_timers
            .insert((session_close(end, gap, grace), key, start));
    }

    /// Emits every window whose close the firing watermark passed, by close
    /// and then key.
    fn fire(&mut self, out: &mut (impl Emit + ?Sized)) {
        let Some(f) = self.watermarks.firing() else {
            return;
        };
        self.fixed
            .fire(f, self.fixed_size(), self.grace_ms, self.kinds.len(), out);
        let gap = match self.spec {
            WindowSpec::Session { gap_ms } => gap_ms,
            WindowSpec::Tumble { .. } | WindowSpec::Hop { .. } => 0,
        };
        while let Some((close, key, start)) = self.session_timers.pop_until(f) {
            let Some(sessions) = self.sessions.get_mut(&key) else {
                continue;
            };
            // A timer is a lower bound: its session may have grown since
            // (then it is set again at the session's close, and fires in its
            // place), or been merged into another one (then none starts
            // there any more, or the one that does has its own timer).
            let Some(i) = sessions.iter().position(|s| s.start == start) else {
                continue;
            };
            let real = session_close(sessions[i].end, gap, self.grace_ms);
            if real != close {
                self.session_timers.insert((real, key, start));
                continue;
            }
            let s = sessions.remove(i);
            out.emit(ResultRef {
                key: &key,
                start_ms: s.start,
                end_ms: s.end,
                values: ValuesRef::Accs(&s.accs),
                is_final: true,
            });
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
        }
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

/// When a session ending at `end` closes: a row up to `gap + grace` behind a
/// partition's watermark is not late and could still extend it.
fn session_close(end: i64, gap: i64, grace: i64) -> i64 {
    end.saturating_add(gap).saturating_add(grace)
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

#[cfg(test)]
mod tests;
