//! The open session windows of an operator: each key's sessions, disjoint
//! and by start, and a timer per session. A key is looked up once per row:
//! its entry holds its text too, so a row that opens a session (about one
//! in three in a typical stream) shares the key without a second lookup.
//! A key whose sessions all fired keeps its entry (an empty list) for its
//! next row, as [`super::fixed`] keeps idle slots: most keys come back,
//! and an entry freed at once would be looked up, allocated and freed
//! again per session. The accumulator lists of fired sessions are reused.

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Emit, EmitMode, GroupKey, KeyMap, ResultRef, Row, ValuesRef, WindowOperator};
use crate::stream::acc::Acc;
use crate::stream::plan::{AggregateKind, WindowSpec};

/// Keys without an open session kept whatever the number in use.
const IDLE_KEPT: usize = 1024;

/// Emptied accumulator lists kept for new sessions.
const SPARE_KEPT: usize = 1024;

/// One session `[start, end)` of a key and its accumulators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Session {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) accs: Vec<Acc>,
}

/// A key's entry: its text (shared by its sessions' timers and results)
/// and its sessions, disjoint, by start (empty: an idle key).
#[derive(Debug, Clone)]
struct Keyed {
    key: GroupKey,
    list: Vec<Session>,
}

/// Each key's open sessions. Written (and compared) as a map from key to
/// its non-empty list of sessions: idle keys and spare lists are no part
/// of the state.
#[derive(Debug, Default)]
pub(super) struct SessionMap {
    map: KeyMap<Keyed>,
    /// Entries with an empty list, swept once they outnumber the others.
    idle: usize,
    /// Emptied accumulator lists of fired sessions.
    spare: Vec<Vec<Acc>>,
}

impl Clone for SessionMap {
    fn clone(&self) -> Self {
        SessionMap {
            map: self.map.clone(),
            idle: self.idle,
            spare: Vec::new(),
        }
    }
}

impl SessionMap {
    /// The open sessions of `key`, by start.
    pub(super) fn of(&self, key: &str) -> &[Session] {
        self.map.get(key).map_or(&[], |k| &k.list)
    }

    /// How many sessions are open.
    pub(super) fn open(&self) -> usize {
        self.map.values().map(|k| k.list.len()).sum()
    }

    fn live(&self) -> impl Iterator<Item = (&GroupKey, &Vec<Session>)> {
        self.map
            .iter()
            .filter(|(_, k)| !k.list.is_empty())
            .map(|(key, k)| (key, &k.list))
    }

    /// Keeps `accs` (emptied) for a later session.
    fn recycle(&mut self, mut accs: Vec<Acc>) {
        if self.spare.len() < SPARE_KEPT {
            accs.clear();
            self.spare.push(accs);
        }
    }

    /// Frees the idle keys once they outnumber the others.
    fn sweep(&mut self) {
        if self.idle > (self.map.len() - self.idle).max(IDLE_KEPT) {
            self.map.retain(|_, k| !k.list.is_empty());
            self.idle = 0;
        }
    }
}

impl PartialEq for SessionMap {
    fn eq(&self, other: &Self) -> bool {
        let n = self.live().count();
        n == other.live().count()
            && self
                .live()
                .all(|(key, list)| other.of(key.as_str()) == list.as_slice())
    }
}

impl Serialize for SessionMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.live())
    }
}

impl<'de> Deserialize<'de> for SessionMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m: KeyMap<Vec<Session>> = KeyMap::deserialize(d)?;
        Ok(SessionMap {
            map: m
                .into_iter()
                .filter(|(_, list)| !list.is_empty())
                .map(|(key, list)| (key.clone(), Keyed { key, list }))
                .collect(),
            idle: 0,
            spare: Vec::new(),
        })
    }
}

/// Session timers `(close, key, start)`, soonest first (then by key, so
/// sessions closing together fire in key order): a binary heap, cheaper to
/// push to and pop from than an ordered set; the same timer twice fires
/// once (the second finds its session gone). Compared and written as the
/// sorted list, so a checkpoint holds the same bytes whatever the heap's
/// layout (and reads those an ordered set wrote).
#[derive(Debug, Clone, Default)]
pub(super) struct Timers(BinaryHeap<Timer>);

/// A timer `(close, key, start)`, soonest first in the heap.
type Timer = Reverse<(i64, GroupKey, i64)>;

impl Timers {
    fn insert(&mut self, timer: (i64, GroupKey, i64)) {
        self.0.push(Reverse(timer));
    }

    /// The soonest timer if it closes at or before `f`, to take or move.
    fn due(&mut self, f: i64) -> Option<PeekMut<'_, Timer>> {
        let top = self.0.peek_mut()?;
        (top.0 .0 <= f).then_some(top)
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
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Timers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<(i64, GroupKey, i64)> = Vec::deserialize(d)?;
        Ok(Timers(v.into_iter().map(Reverse).collect()))
    }
}

/// When a session ending at `end` closes: a row up to `gap + grace` behind a
/// partition's watermark is not late and could still extend it.
pub(super) fn session_close(end: i64, gap: i64, grace: i64) -> i64 {
    end.saturating_add(gap).saturating_add(grace)
}

/// What adding a row to a key's sessions needs of the operator.
struct Adding<'a> {
    gap: i64,
    grace: i64,
    kinds: &'a [AggregateKind],
    emit: EmitMode,
}

impl WindowOperator {
    /// Adds `row` (not late) to its key's sessions `gap` long.
    pub(super) fn add_session(&mut self, row: &Row<'_>, gap: i64, out: &mut (impl Emit + ?Sized)) {
        let how = Adding {
            gap,
            grace: self.grace_ms,
            kinds: &self.kinds,
            emit: self.emit,
        };
        let sessions = &mut self.sessions;
        if let Some(keyed) = sessions.map.get_mut(row.key) {
            if keyed.list.is_empty() {
                sessions.idle -= 1;
            }
            let spare = &mut sessions.spare;
            add(keyed, row, &how, &mut self.session_timers, spare, out);
            return;
        }
        let mut keyed = Keyed {
            key: GroupKey(row.key.into()),
            list: Vec::new(),
        };
        add(
            &mut keyed,
            row,
            &how,
            &mut self.session_timers,
            &mut sessions.spare,
            out,
        );
        sessions.map.insert(keyed.key.clone(), keyed);
    }

    /// Emits every session whose close is at or before the firing
    /// watermark `f`, by close and then key.
    pub(super) fn fire_sessions(&mut self, f: i64, out: &mut (impl Emit + ?Sized)) {
        let WindowSpec::Session { gap_ms: gap } = self.spec else {
            return;
        };
        let sessions = &mut self.sessions;
        while let Some(mut due) = self.session_timers.due(f) {
            let (close, ref key, start) = due.0;
            // A timer is a lower bound: its session may have grown since
            // (then it is moved to the session's close, and fires in its
            // place), or been merged into another one (then none starts
            // there any more, or the one that does has its own timer).
            let Some(keyed) = sessions.map.get_mut(key) else {
                PeekMut::pop(due);
                continue;
            };
            let Some(i) = keyed.list.iter().position(|s| s.start == start) else {
                PeekMut::pop(due);
                continue;
            };
            let real = session_close(keyed.list[i].end, gap, self.grace_ms);
            if real != close {
                // Moved in place: one sift down, not a pop and a push.
                due.0 .0 = real;
                continue;
            }
            PeekMut::pop(due);
            let s = keyed.list.remove(i);
            out.emit(ResultRef {
                key: &keyed.key,
                start_ms: s.start,
                end_ms: s.end,
                values: ValuesRef::Accs(&s.accs),
                is_final: true,
            });
            if keyed.list.is_empty() {
                sessions.idle += 1;
            }
            sessions.recycle(s.accs);
        }
        sessions.sweep();
    }
}

/// Adds `row` to `keyed`'s sessions: into the one it falls in or extends,
/// or a new one that every session its own gap window overlaps joins.
fn add(
    keyed: &mut Keyed,
    row: &Row<'_>,
    how: &Adding<'_>,
    timers: &mut Timers,
    spare: &mut Vec<Vec<Acc>>,
    out: &mut (impl Emit + ?Sized),
) {
    let (t, gap, grace) = (row.time_ms, how.gap, how.grace);
    let row_end = t.saturating_add(gap);
    let changes = how.emit == EmitMode::Changes;
    let sessions = &mut keyed.list;
    // Sessions are disjoint (touching ones merge) and by start, so by end
    // too: those the row's own gap window `[t, row_end]` overlaps are the
    // run `i..j`, found by binary search (a key may hold many open
    // sessions while a slower partition holds the firing watermark back).
    let i = sessions.partition_point(|s| s.end < t);
    let j = i + sessions[i..].partition_point(|s| s.start <= row_end);
    // When it is one (a row within or extending a session: most rows), the
    // row goes into it in place; accumulators do not depend on the order
    // of what they took, so this equals the merge below.
    if j == i + 1 {
        let s = &mut sessions[i];
        for ((acc, kind), arg) in s.accs.iter_mut().zip(how.kinds).zip(row.args) {
            acc.add(*kind, arg);
        }
        // The one before ends before `t` and the one after starts after
        // `row_end`, so the order holds. A session that only grows later
        // keeps its timer: firing moves a timer that comes early to the
        // session's close.
        s.end = s.end.max(row_end);
        if t < s.start {
            s.start = t;
            let close = session_close(s.end, gap, grace);
            timers.insert((close, keyed.key.clone(), t));
        }
        if changes {
            out.emit(super::open(&keyed.key, s.start, s.end, &s.accs));
        }
        return;
    }
    let mut accs = spare.pop().unwrap_or_default();
    accs.extend(how.kinds.iter().map(|k| Acc::new(*k)));
    for ((acc, kind), arg) in accs.iter_mut().zip(how.kinds).zip(row.args) {
        acc.add(*kind, arg);
    }
    // Every session the row's own gap window overlaps joins it, in order,
    // in their place.
    let (mut start, mut end) = (t, row_end);
    for s in &sessions[i..j] {
        start = start.min(s.start);
        end = end.max(s.end);
        for (a, b) in accs.iter_mut().zip(&s.accs) {
            a.merge(b);
        }
    }
    if changes {
        out.emit(super::open(&keyed.key, start, end, &accs));
    }
    sessions.splice(i..j, [Session { start, end, accs }]);
    timers.insert((session_close(end, gap, grace), keyed.key.clone(), start));
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::stream::window::OwnedRow;

    fn row(key: usize, t: i64) -> OwnedRow {
        OwnedRow {
            time_ms: t,
            key: GroupKey::of(&[json!(format!("k{key}"))]),
            args: vec![Value::Null],
        }
    }

    /// Keys whose sessions all fired are kept for their next row, but are
    /// no part of the state (a checkpoint neither holds nor needs them),
    /// are freed once they outnumber the others, and a key that comes back
    /// opens a new session as a key never seen would.
    #[test]
    fn idle_keys_are_no_part_of_the_state_and_are_freed() {
        let spec = WindowSpec::Session { gap_ms: 100 };
        let kinds = vec![AggregateKind::CountStar];
        let mut op = WindowOperator::new(spec, 0, kinds, 1, EmitMode::Final);
        let mut out = Vec::new();
        let keys = 3 * IDLE_KEPT;
        for k in 0..keys {
            // Twice each, so that every session takes a row in place.
            op.process(0, row(k, k as i64 * 1_000).row(), &mut out);
            op.process(0, row(k, k as i64 * 1_000 + 50).row(), &mut out);
        }
        // Every key's session fired but the last one's.
        assert_eq!(out.len(), keys - 1);
        assert!(out.iter().all(|r| r.values.json() == [json!(2)]));
        assert_eq!(op.open_windows(), 1);
        let held = op.sessions.map.len();
        assert!(held <= 2 * IDLE_KEPT + 1, "{held} keys held");
        let text = serde_json::to_value(&op).unwrap();
        let last = GroupKey::of(&[json!(format!("k{}", keys - 1))]);
        assert_eq!(
            text["sessions"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [last.as_str()]
        );
        let mut back: WindowOperator = serde_json::from_value(text).unwrap();
        assert_eq!(back, op);
        // A key that was idle (or swept) comes back: the same results as
        // from the operator read back, which never saw it idle.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let t = keys as i64 * 1_000;
        for k in [keys - 2, 0, keys - 1] {
            op.process(0, row(k, t).row(), &mut a);
            back.process(0, row(k, t).row(), &mut b);
        }
        op.process(0, row(1, t + 1_000).row(), &mut a);
        back.process(0, row(1, t + 1_000).row(), &mut b);
        assert_eq!(a, b);
        let fired: Vec<_> = a.iter().map(|r| (r.key.as_str(), r.start_ms)).collect();
        assert_eq!(
            fired,
            [
                (last.as_str(), (keys as i64 - 1) * 1_000),
                // Closing together, by key text.
                (r#"["k0"]"#, t),
                (&*format!(r#"["k{}"]"#, keys - 2), t),
                (last.as_str(), t),
            ]
        );
    }
}
