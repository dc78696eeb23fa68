//! Per-partition watermarks and the firing watermark.
//!
//! A partition's watermark is the largest event time it showed so far: it
//! depends only on that partition's order, so lateness judged by it is the
//! same whatever the pace of reading. The firing watermark is the minimum
//! over the partitions, never moving back: a window whose close it passed
//! can get no record that is not late.
//!
//! An idle partition (the IO shell decides: no new record for
//! `--idle-timeout`) stops holding the minimum back; when every partition
//! is idle, everything seen so far may fire. That trades determinism for
//! progress on quiet inputs, so replays leave it off.

use serde::{Deserialize, Serialize};

/// The watermarks of a job's input partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    marks: Vec<Mark>,
    /// The firing watermark so far (it never moves back).
    firing: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    /// Largest event time seen, `None` before the first record.
    max_event_ms: Option<i64>,
    idle: bool,
}

impl Watermarks {
    /// Watermarks of `partitions` input partitions that showed nothing yet.
    pub fn new(partitions: usize) -> Self {
        Self {
            marks: vec![Mark::default(); partitions],
            firing: None,
        }
    }

    /// The number of input partitions.
    pub fn partitions(&self) -> usize {
        self.marks.len()
    }

    /// Partition `p`'s watermark: the largest event time it showed.
    pub fn of(&self, p: usize) -> Option<i64> {
        self.marks.get(p).and_then(|m| m.max_event_ms)
    }

    /// Partition `p` showed a record of event time `t` (it is no longer
    /// idle). Returns whether the firing watermark moved.
    pub fn observe(&mut self, p: usize, t: i64) -> bool {
        let Some(m) = self.marks.get_mut(p) else {
            return false;
        };
        let before = (m.max_event_ms, m.idle);
        m.max_event_ms = Some(m.max_event_ms.map_or(t, |w| w.max(t)));
        m.idle = false;
        // The firing watermark follows from the marks alone: unchanged
        // marks (a row behind its partition's latest) cannot move it.
        if (m.max_event_ms, m.idle) == before {
            return false;
        }
        self.recompute()
    }

    /// Marks partition `p` idle or not. Returns whether the firing
    /// watermark moved.
    pub fn set_idle(&mut self, p: usize, idle: bool) -> bool {
        let Some(m) = self.marks.get_mut(p) else {
            return false;
        };
        m.idle = idle;
        self.recompute()
    }

    /// The firing watermark: the minimum over the partitions that are not
    /// idle, once each of them showed a record (the largest event time seen
    /// when all are idle); it never moves back.
    pub fn firing(&self) -> Option<i64> {
        self.firing
    }

    fn recompute(&mut self) -> bool {
        let mut min: Option<i64> = None;
        let mut active = false;
        for m in self.marks.iter().filter(|m| !m.idle) {
            active = true;
            match m.max_event_ms {
                // A partition that showed nothing holds everything back.
                None => return false,
                Some(w) => min = Some(min.map_or(w, |x: i64| x.min(w))),
            }
        }
        // Every partition idle: none holds anything back, so everything
        // seen so far may fire.
        let candidate = if active {
            min
        } else {
            self.marks.iter().filter_map(|m| m.max_event_ms).max()
        };
        match (candidate, self.firing) {
            (Some(m), Some(f)) if m <= f => false,
            (Some(m), _) => {
                self.firing = Some(m);
                true
            }
            (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firing_watermark_is_the_minimum_once_every_partition_showed_a_record() {
        let mut w = Watermarks::new(3);
        assert!(!w.observe(0, 100));
        assert!(!w.observe(1, 50));
        assert_eq!(w.firing(), None, "partition 2 showed nothing");
        assert!(w.observe(2, 70));
        assert_eq!(w.firing(), Some(50));
        // A partition's own watermark never moves back.
        assert!(!w.observe(1, 10));
        assert_eq!(w.of(1), Some(50));
        assert!(w.observe(1, 200));
        assert_eq!(w.firing(), Some(70));
    }

    #[test]
    fn idle_partitions_stop_holding_the_minimum_and_it_never_moves_back() {
        let mut w = Watermarks::new(2);
        w.observe(0, 100);
        assert_eq!(w.firing(), None);
        assert!(w.set_idle(1, true));
        assert_eq!(w.firing(), Some(100));
        // Partition 1 wakes with older records: the firing watermark stays.
        assert!(!w.observe(1, 20));
        assert_eq!(w.firing(), Some(100));
        // Every partition idle (one never showed a record): everything seen
        // may fire, whatever the order they went idle in.
        let mut w = Watermarks::new(2);
        w.observe(0, 100);
        assert!(
            !w.set_idle(0, true),
            "partition 1 is active and showed nothing"
        );
        assert_eq!(w.firing(), None);
        assert!(w.set_idle(1, true));
        assert_eq!(w.firing(), Some(100));
    }
}
