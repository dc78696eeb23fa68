//! The open tumbling and hopping windows of an operator, by start. A row
//! of a hopping window falls in `size / slide` of them, so the row's key is
//! looked up by its text once, in a table that gives each key with an open
//! window a small number (its slot), and each start finds the key's
//! accumulators by that number: a string hashed and compared once per row,
//! not once per window, and a key's text shared (allocated) once while any
//! of its windows is open, not once per window. A start's windows are a
//! list, not a map: a row whose window is not in its key's ring opens it,
//! unless the ring lost an entry of that start while it was open (rows far
//! apart in event time while a slower partition holds the windows open);
//! such a start gets a map by slot, used from then on.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

use super::{Emit, GroupKey, KeyMap, ResultRef, ValuesRef};
use crate::stream::acc::Acc;
use crate::stream::plan::AggregateKind;

/// A map by key slot.
type SlotMap<V> = std::collections::HashMap<u32, V, foldhash::fast::RandomState>;

/// How many emptied window lists are kept: a hop opens `size / slide`
/// starts.
const SPARE_LISTS: usize = 8;

/// At most this many of a slot's last windows are found without a lookup.
const RING_MAX: usize = 8;

/// Idle slots kept whatever the number in use.
const IDLE_KEPT: usize = 1024;

/// The open tumbling or hopping windows: start → key → accumulators. All
/// windows of one start close together (at `start + size + grace`), so
/// the first starts are the next to fire and need no timers of their own.
#[derive(Debug, Clone)]
pub(super) struct Fixed {
    /// Key text → its slot, for the keys with an open window.
    index: KeyMap<u32>,
    /// The keys by slot (`None`: a free slot).
    slots: Vec<Option<Slot>>,
    /// Free slots, reused before new ones.
    free: Vec<u32>,
    /// Slots whose key has no open window left, kept (with the key's text
    /// and its place in `index`) for the key's next row: most keys come
    /// back, and a slot freed at once would be looked up, allocated and
    /// freed again per window. Freed in one sweep once they outnumber the
    /// slots in use.
    idle: usize,
    /// Each slot's last windows, `ring` per slot, the window of start `s`
    /// at `s / slide` modulo `ring`: (start, where its accumulators begin).
    /// A row's window is found there without a lookup (a hop's row finds
    /// each of its `size / slide` windows). Entries of starts that fired
    /// are never asked for again: a start that fired never opens again.
    recent: Vec<(i64, usize)>,
    /// The latest start that fired (`i64::MIN`: none). Every open start is
    /// later: starts fire in order, and one at or before it is closed.
    fired_through: i64,
    /// Entries per slot in `recent` (0 until the first window).
    ring: usize,
    /// The windows, by start.
    starts: BTreeMap<i64, Start>,
    /// Allocations kept between firings; no part of the state.
    spare: Spare,
}

/// A key with an open window.
#[derive(Debug, Clone)]
struct Slot {
    key: GroupKey,
    /// Its first bytes as a number that orders as its text (firing sorts by
    /// key).
    prefix: u64,
    /// How many starts hold a window of it.
    windows: u32,
}

/// The windows of one start: each key's accumulators are `n` in one list
/// shared by the start's windows, so that a key opening a window allocates
/// nothing of its own.
#[derive(Debug, Clone)]
struct Start {
    /// Each window's key slot, in the order they opened (the window's
    /// accumulators are the `n` at its place times `n` in `accs`).
    keys: Vec<u32>,
    /// Key slot → its window's place, once the ring of a key lost an entry
    /// of this start while it was open (a ring that misses then says
    /// nothing); none before.
    index: Option<SlotMap<u32>>,
    /// Every window's accumulators, `n` after another, in the order the
    /// keys came.
    accs: Vec<Acc>,
}

/// What firing keeps for next time instead of freeing: the emptied window
/// lists of fired starts (each as long as a start's keys), and the list
/// their windows are sorted in. Cloned empty: it is no part of the state.
#[derive(Debug, Default)]
struct Spare {
    lists: Vec<Vec<u32>>,
    closing: Vec<u128>,
    order: KeyOrder,
}

/// The slots in use in key order, while no slot was given or freed since
/// it was made: a start's windows then come out in key order by one pass
/// over it, not a sort (a hopping job's keys are mostly the same from one
/// start to the next).
#[derive(Debug, Default)]
struct KeyOrder {
    valid: bool,
    /// Slot → its place in key order.
    rank: Vec<u32>,
    /// Place in key order → slot.
    slots: Vec<u32>,
    /// Place in key order → the window of that slot in the start firing
    /// (`NONE` for none), set and cleared per start.
    window: Vec<u32>,
}

/// No window of a slot in the start firing.
const NONE: u32 = u32::MAX;

impl Clone for Spare {
    fn clone(&self) -> Self {
        Spare::default()
    }
}

impl Default for Fixed {
    fn default() -> Self {
        Fixed {
            index: KeyMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            idle: 0,
            recent: Vec::new(),
            fired_through: i64::MIN,
            ring: 0,
            starts: BTreeMap::new(),
            spare: Spare::default(),
        }
    }
}

impl Fixed {
    /// Windows not yet emitted.
    pub(super) fn open_windows(&self) -> usize {
        self.starts.values().map(|w| w.keys.len()).sum()
    }

    /// The slot of `key`, given one if it has none (it must then open a
    /// window: a slot lives while a window holds it).
    pub(super) fn slot(&mut self, key: &str) -> u32 {
        if let Some(slot) = self.index.get(key) {
            if let Some(Some(s)) = self.slots.get(*slot as usize) {
                if s.windows == 0 {
                    // It opens one now.
                    self.idle = self.idle.saturating_sub(1);
                }
            }
            return *slot;
        }
        let key = GroupKey(key.into());
        let s = Slot {
            prefix: key_prefix(key.as_str()),
            key: key.clone(),
            windows: 0,
        };
        let slot = match self.free.pop() {
            Some(free) => {
                self.slots[free as usize] = Some(s);
                free
            }
            None => {
                // More keys open at once than a u32 counts cannot fit in
                // memory (each holds a window of at least one accumulator).
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(s));
                self.recent
                    .resize(self.slots.len() * self.ring, (i64::MIN, 0));
                slot
            }
        };
        self.index.insert(key, slot);
        self.spare.order.valid = false;
        slot
    }

    /// The key of a slot in use.
    pub(super) fn key(&self, slot: u32) -> &GroupKey {
        match self.slots.get(slot as usize) {
            Some(Some(s)) => &s.key,
            // A slot handed out by `slot` and held by a window is in use.
            _ => unreachable_key(),
        }
    }

    /// The accumulators of `slot`'s window at `start` (the `number`th
    /// multiple of the slide; a row falls in `per_row` windows), opened
    /// (empty, of `kinds`) if it has none.
    pub(super) fn window(
        &mut self,
        (number, start): (i64, i64),
        slot: u32,
        per_row: i64,
        kinds: &[AggregateKind],
    ) -> &mut [Acc] {
        let n = kinds.len();
        if self.ring == 0 {
            // Each of a row's windows has its entry.
            self.ring = (per_row.clamp(1, RING_MAX as i64) as usize).next_power_of_two();
            self.recent
                .resize(self.slots.len() * self.ring, (i64::MIN, 0));
        }
        let entry = slot as usize * self.ring + (number as usize & (self.ring - 1));
        let cached = self.recent.get(entry).copied().unwrap_or((i64::MIN, 0));
        if cached.0 != start && cached.0 > self.fired_through {
            // The entry of a start that may still be open gives way: that
            // start's windows are found through a map from now on.
            if let Some(old) = self.starts.get_mut(&cached.0) {
                old.index();
            }
        }
        // A new start's list is as long as the oldest open one (the keys
        // of a window are mostly those of the one before).
        let hint = self
            .starts
            .first_key_value()
            .map_or(0, |(_, w)| w.keys.len());
        let spare = &mut self.spare.lists;
        let w = self
            .starts
            .entry(start)
            .or_insert_with(|| Start::with(spare.pop(), hint, n));
        let at = match cached {
            (s, at) if s == start => at,
            _ => {
                let (at, opened) = w.open(slot, kinds);
                if opened {
                    if let Some(Some(s)) = self.slots.get_mut(slot as usize) {
                        s.windows += 1;
                    }
                }
                at
            }
        };
        if let Some(e) = self.recent.get_mut(entry) {
            *e = (start, at);
        }
        &mut w.accs[at..at + n]
    }

    /// The key of `slot` and its window at `start` (the `number`th
    /// multiple of the slide), which [`Self::window`] just gave it.
    pub(super) fn key_and_window(
        &self,
        (number, start): (i64, i64),
        slot: u32,
        n: usize,
    ) -> (&GroupKey, &[Acc]) {
        let entry = slot as usize * self.ring + (number as usize & self.ring.wrapping_sub(1));
        let accs = match (self.recent.get(entry), self.starts.get(&start)) {
            (Some(&(s, at)), Some(w)) if s == start => w.accs.get(at..at + n),
            _ => None,
        };
        (self.key(slot), accs.unwrap_or_default())
    }

    /// `key`'s open windows: (start, accumulators), by start.
    pub(super) fn open_for<'a>(
        &'a self,
        key: &str,
        n: usize,
    ) -> impl Iterator<Item = (i64, &'a [Acc])> + 'a {
        let slot = self.index.get(key).copied();
        self.starts.iter().filter_map(move |(start, w)| {
            let at = w.find(slot?)? as usize * n;
            Some((*start, w.accs.get(at..at + n)?))
        })
    }

    /// Hands `out`, in key order, the final results of every start whose
    /// windows (of `size`) close at or before `f` with `grace`, and forgets
    /// them; `n` accumulators per window.
    pub(super) fn fire(
        &mut self,
        f: i64,
        size: i64,
        grace: i64,
        n: usize,
        out: &mut (impl Emit + ?Sized),
    ) {
        while let Some(entry) = self.starts.first_entry() {
            let start = *entry.key();
            if start.saturating_add(size).saturating_add(grace) > f {
                break;
            }
            self.fired_through = start;
            let Start { mut keys, accs, .. } = entry.remove();
            let slots = &self.slots;
            let prefix = |slot: u32| match slots.get(slot as usize) {
                Some(Some(s)) => s.prefix,
                _ => 0,
            };
            // Each window as one number: its key's first bytes, its slot,
            // and which of the start's windows it is (a start holds fewer
            // than 2^32 windows), in key order.
            let closing = &mut self.spare.closing;
            let order = &mut self.spare.order;
            let in_use = self.slots.len() - self.free.len();
            // The slots in key order cost a pass over all of them per start
            // (and a sort of them when a slot was given or freed since):
            // worth it while they are not many more than the start's windows.
            let ordered = in_use <= 4 * keys.len() + 64 && {
                if !order.valid {
                    order.rebuild(slots);
                }
                order.put(&keys, closing)
            };
            if !ordered {
                closing.extend(keys.iter().enumerate().map(|(place, &slot)| {
                    (u128::from(prefix(slot)) << 64) | (u128::from(slot) << 32) | place as u128
                }));
                by_key(closing, slots);
            }
            keys.clear();
            if self.spare.lists.len() < SPARE_LISTS {
                self.spare.lists.push(keys);
            }
            let end = start.saturating_add(size);
            for w in closing.drain(..) {
                let (slot, at) = ((w >> 32) as u32, (w as u32 as usize) * n);
                let Some(Some(s)) = self.slots.get_mut(slot as usize) else {
                    continue;
                };
                s.windows = s.windows.saturating_sub(1);
                if s.windows == 0 {
                    self.idle += 1;
                }
                out.emit(ResultRef {
                    key: &s.key,
                    start_ms: start,
                    end_ms: end,
                    values: ValuesRef::Accs(accs.get(at..at + n).unwrap_or_default()),
                    is_final: true,
                });
            }
        }
        if self.idle > (self.slots.len() - self.free.len() - self.idle).max(IDLE_KEPT) {
            self.sweep();
        }
    }

    /// Frees the slots of keys without an open window.
    fn sweep(&mut self) {
        for (slot, s) in self.slots.iter_mut().enumerate() {
            if s.as_ref().is_some_and(|s| s.windows == 0) {
                if let Some(s) = s.take() {
                    self.index.remove(s.key.as_str());
                }
                self.free.push(slot as u32);
            }
        }
        self.idle = 0;
        self.spare.order.valid = false;
    }

    /// Every window as `((key, start), accumulators)`, by key then start.
    fn listed(&self) -> Vec<((&GroupKey, i64), &[Acc])> {
        let mut v = Vec::with_capacity(self.open_windows());
        for (start, w) in &self.starts {
            let n = w.per_window();
            for (place, slot) in w.keys.iter().enumerate() {
                let at = place * n;
                v.push((
                    (self.key(*slot), *start),
                    w.accs.get(at..at + n).unwrap_or_default(),
                ));
            }
        }
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Sorts windows numbered as in [`Fixed::fire`] by key: most keys differ in
/// their first bytes, sorted as numbers without reading the keys' text; the
/// few that share them are put in order by their text after.
fn by_key(closing: &mut [u128], slots: &[Option<Slot>]) {
    closing.sort_unstable();
    let text = |w: &u128| match slots.get((*w >> 32) as u32 as usize) {
        Some(Some(s)) => s.key.as_str(),
        _ => "",
    };
    let mut i = 0;
    while i < closing.len() {
        let first = closing[i] >> 64;
        // Runs are short (most keys differ in their first bytes): walked,
        // not searched.
        let mut end = i + 1;
        while closing.get(end).is_some_and(|w| w >> 64 == first) {
            end += 1;
        }
        if end - i > 1 {
            closing[i..end].sort_unstable_by(|a, b| text(a).cmp(text(b)));
        }
        i = end;
    }
}

impl KeyOrder {
    /// Puts the slots in use in key order.
    fn rebuild(&mut self, slots: &[Option<Slot>]) {
        let mut all: Vec<u128> = slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let s = s.as_ref()?;
                Some((u128::from(s.prefix) << 64) | (slot as u128) << 32)
            })
            .collect();
        by_key(&mut all, slots);
        self.rank.clear();
        self.rank.resize(slots.len(), NONE);
        self.slots.clear();
        for (place, w) in all.iter().enumerate() {
            let slot = (*w >> 32) as u32;
            self.rank[slot as usize] = place as u32;
            self.slots.push(slot);
        }
        self.window.clear();
        self.window.resize(self.slots.len(), NONE);
        self.valid = true;
    }

    /// Appends to `closing` the windows of a start (`keys`: each window's
    /// slot, by place) numbered as in [`Fixed::fire`], in key order; false
    /// (and nothing appended) if a slot has no place in the order.
    fn put(&mut self, keys: &[u32], closing: &mut Vec<u128>) -> bool {
        // Every slot a window holds is ranked (a slot given or freed since
        // makes the order invalid); checked all the same.
        let mut ranked = true;
        for (place, &slot) in keys.iter().enumerate() {
            match self
                .rank
                .get(slot as usize)
                .and_then(|&r| self.window.get_mut(r as usize))
            {
                Some(w) => *w = place as u32,
                None => ranked = false,
            }
        }
        for (r, w) in self.window.iter_mut().enumerate() {
            if *w != NONE {
                if ranked {
                    closing.push((u128::from(self.slots[r]) << 32) | u128::from(*w));
                }
                *w = NONE;
            }
        }
        ranked
    }
}

/// What a slot held by a window would name if it were not in use: no key
/// at all (the state is then inconsistent; kept from a panic).
fn unreachable_key() -> &'static GroupKey {
    static NONE: std::sync::OnceLock<GroupKey> = std::sync::OnceLock::new();
    NONE.get_or_init(|| GroupKey("[]".into()))
}

impl Start {
    /// An empty start with room for `keys` keys of `n` accumulators (or
    /// `list`'s room).
    fn with(list: Option<Vec<u32>>, keys: usize, n: usize) -> Self {
        Start {
            keys: list.unwrap_or_else(|| Vec::with_capacity(keys)),
            index: None,
            accs: Vec::with_capacity(keys * n),
        }
    }

    /// Finds windows by slot through a map from now on.
    fn index(&mut self) {
        if self.index.is_none() {
            let mut map = SlotMap::with_capacity_and_hasher(self.keys.len(), Default::default());
            map.extend(self.keys.iter().enumerate().map(|(p, s)| (*s, p as u32)));
            self.index = Some(map);
        }
    }

    /// The place of `slot`'s window (a scan of the list when the start has
    /// no map: for state queries).
    fn find(&self, slot: u32) -> Option<u32> {
        match &self.index {
            Some(map) => map.get(&slot).copied(),
            None => self.keys.iter().position(|s| *s == slot).map(|p| p as u32),
        }
    }

    /// Where `slot`'s accumulators begin, and whether they were opened now
    /// (empty, of `kinds`): found through the map if the start has one;
    /// without, the caller knows it has none (its ring held every window
    /// of this start).
    fn open(&mut self, slot: u32, kinds: &[AggregateKind]) -> (usize, bool) {
        let n = kinds.len();
        let place = self.keys.len() as u32;
        if let Some(map) = &mut self.index {
            match map.entry(slot) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    return (*e.get() as usize * n, false)
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(place);
                }
            }
        }
        self.keys.push(slot);
        let at = self.accs.len();
        self.accs.extend(kinds.iter().map(|k| Acc::new(*k)));
        (at, true)
    }

    /// How many accumulators each window has.
    fn per_window(&self) -> usize {
        self.accs.len() / self.keys.len().max(1)
    }
}

/// Equal when the same keys have windows at the same starts with the same
/// accumulators, whatever their slots or the order they came in (a
/// checkpoint read back lists them by key).
impl PartialEq for Fixed {
    fn eq(&self, other: &Self) -> bool {
        self.listed() == other.listed()
    }
}

/// Written as a list of `((key, start), accumulators)`, by key and start
/// (JSON maps need string keys; checkpoints written before the windows
/// were held by start read alike).
impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.listed().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<((GroupKey, i64), Vec<Acc>)> = Vec::deserialize(d)?;
        let mut f = Fixed::default();
        for ((key, start), accs) in v {
            let slot = f.slot(key.as_str());
            // Its windows are not in the slots' rings: found by map.
            let w = f.starts.entry(start).or_insert_with(|| {
                let mut w = Start::with(None, 0, 0);
                w.index();
                w
            });
            let n = w.per_window();
            if !w.keys.is_empty() && accs.len() != n {
                return Err(serde::de::Error::custom(format!(
                    "window {start} of {key:?}: {} accumulators, others have {n}",
                    accs.len()
                )));
            }
            let place = w.keys.len() as u32;
            if let Some(map) = &mut w.index {
                if map.insert(slot, place).is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "window {start} of {key:?} is listed twice"
                    )));
                }
            }
            w.keys.push(slot);
            w.accs.extend(accs);
            if let Some(Some(s)) = f.slots.get_mut(slot as usize) {
                s.windows += 1;
            }
        }
        Ok(f)
    }
}

/// The 8 bytes of a key's text after its opening `[` as a number that
/// orders as the text does: two keys whose numbers differ compare as their
/// numbers; equal numbers say nothing (the text decides). Shorter keys are
/// padded with zeros, which sort first, as the end of a text does (a key's
/// JSON holds no zero byte: serde_json escapes control characters).
fn key_prefix(key: &str) -> u64 {
    let mut b = [0u8; 8];
    let tail = key.as_bytes().get(1..).unwrap_or_default();
    let n = tail.len().min(8);
    b[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(b)
}
