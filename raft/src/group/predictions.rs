//! Checks a leader's offset predictions against the appends that happen.
//!
//! A leader predicts each proposal's offsets from its log end (see the module
//! docs of [`crate::group`]). openraft may still refuse a proposal of the
//! current term without any change of leadership: a leader whose lease has
//! lapsed (no quorum heard within `election_timeout_max`, or not yet heard at
//! the start of a term) refuses writes with `ForwardToLeader`. Every proposal
//! after a refused one would then land below its prediction: an acks=1
//! producer could be told offsets that hold another batch.
//!
//! So each prediction is checked where it can be: the log store tells
//! [`Predictions::appending`] the term and the real base offset of every data
//! entry just before writing it. While this node leads, the term's data
//! entries are its own proposals in submission order, so the oldest prediction
//! still open must match; when it does not, the generation of predictions is
//! *broken* before the entry's bytes reach the log, every proposal of that
//! generation fails as not-leader (retriable) instead of resolving from the
//! log end, and the group re-arms predictions from the exact log end once
//! the proposals already submitted have been appended or refused.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

/// One open prediction, with the proposal's bytes: the entry the log store
/// is handed on the leader shares them, so the same buffer identifies the
/// proposal (held here, the buffer cannot be freed and its address reused
/// while the prediction is open).
#[derive(Debug, Clone)]
struct Open {
    term: u64,
    base_offset: i64,
    batch: Bytes,
}

fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

#[derive(Debug, Default)]
struct State {
    open: VecDeque<Open>,
    /// The generation predictions are made in now.
    generation: u64,
}

/// The predictions of a group on this node.
#[derive(Debug)]
pub(crate) struct Predictions {
    // Held only to push, pop or compare; never across an `.await`.
    state: Mutex<State>,
    /// The highest generation broken so far (0: none).
    broken: watch::Sender<u64>,
    /// The Raft index of the last entry the log store has written.
    written: watch::Sender<u64>,
    /// The term of the last entry known committed and the Kafka offset after
    /// it, as the log store last saved the committed id.
    committed: watch::Sender<(u64, i64)>,
}

impl Default for Predictions {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            broken: watch::Sender::new(0),
            written: watch::Sender::new(0),
            committed: watch::Sender::new((0, 0)),
        }
    }
}

impl Predictions {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts generation `generation` (a new lead, or a re-arm), forgetting
    /// every open prediction.
    pub(crate) fn arm(&self, generation: u64) {
        let mut s = self.state();
        s.open.clear();
        s.generation = generation;
    }

    /// Records the prediction of a proposal about to be submitted (in
    /// submission order).
    pub(crate) fn predict(&self, term: u64, base_offset: i64, batch: &Bytes) {
        self.state().open.push_back(Open {
            term,
            base_offset,
            batch: batch.clone(),
        });
    }

    /// Called by the log store before it writes `batch`, a data entry of
    /// `term`, at `base_offset`. Breaks the current generation when the
    /// oldest open prediction of `term` is not this entry's (an earlier
    /// proposal was refused) or not at this offset.
    pub(crate) fn appending(&self, term: u64, batch: &Bytes, base_offset: i64) {
        let mut s = self.state();
        let generation = s.generation;
        let open = &mut s.open;
        // Predictions of older terms were never appended (leadership moved).
        while open.front().is_some_and(|o| o.term < term) {
            open.pop_front();
        }
        match open.front() {
            Some(o)
                if o.term == term
                    && same_buffer(&o.batch, batch)
                    && o.base_offset == base_offset =>
            {
                open.pop_front();
            }
            Some(o) if o.term == term => {
                tracing::info!(
                    term,
                    predicted = o.base_offset,
                    actual = base_offset,
                    "a proposal was refused in its term; predictions re-armed"
                );
                open.clear();
                drop(s);
                self.break_generation(generation);
            }
            // Not a proposal of this node (a follower's append).
            _ => {}
        }
    }

    /// Breaks generation `generation` (a proposal of it was refused).
    pub(crate) fn break_generation(&self, generation: u64) {
        self.broken.send_if_modified(|b| {
            let was = *b;
            *b = (*b).max(generation);
            *b != was
        });
    }

    /// Called by the log store once entries up to `index` are written (and
    /// when it opens, for what it holds).
    pub(crate) fn written(&self, index: u64) {
        self.written.send_replace(index);
    }

    /// Waits until the log store has written the entry at `index`.
    pub(crate) async fn wait_written(&self, index: u64) {
        let mut rx = self.written.subscribe();
        let _ = rx.wait_for(|w| *w >= index).await;
    }

    /// Called by the log store when it saved the committed id: the entry's
    /// `term`, and `end`, the Kafka offset after it. Never moves back.
    pub(crate) fn committed_upto(&self, term: u64, end: i64) {
        self.committed.send_if_modified(|c| {
            let newer = (term, end) > *c;
            if newer {
                *c = (term, end);
            }
            newer
        });
    }

    /// A receiver of the last committed entry's term and the Kafka offset
    /// after it (see [`Predictions::committed_upto`]).
    pub(crate) fn committed(&self) -> watch::Receiver<(u64, i64)> {
        self.committed.subscribe()
    }

    /// A receiver of the highest broken generation.
    pub(crate) fn broken(&self) -> watch::Receiver<u64> {
        self.broken.subscribe()
    }

    /// Whether generation `generation` is broken.
    pub(crate) fn is_broken(&self, generation: u64) -> bool {
        *self.broken.borrow() >= generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: u8) -> Bytes {
        Bytes::from(vec![n; 8])
    }

    #[test]
    fn appends_at_the_predicted_offsets_keep_the_generation() {
        let p = Predictions::default();
        p.arm(1);
        let (b1, b2) = (b(1), b(2));
        p.predict(5, 0, &b1);
        p.predict(5, 3, &b2);
        p.appending(5, &b1, 0);
        p.appending(5, &b2, 3);
        assert!(!p.is_broken(1));
    }

    #[test]
    fn a_refused_proposal_breaks_the_generation_before_the_next_is_written() {
        let p = Predictions::default();
        p.arm(1);
        let (b1, b2) = (b(1), b(2));
        p.predict(5, 0, &b1); // refused by openraft: never appended
        p.predict(5, 3, &b2);
        p.appending(5, &b2, 0); // the second lands where the first was predicted
        assert!(p.is_broken(1));
        // A new generation starts clean.
        p.arm(2);
        assert!(!p.is_broken(2));
        let b3 = b(3);
        p.predict(5, 3, &b3);
        p.appending(5, &b3, 3);
        assert!(!p.is_broken(2));
    }

    #[test]
    fn an_identical_batch_is_not_taken_for_the_refused_one() {
        let p = Predictions::default();
        p.arm(1);
        // Same content, same size, different proposals.
        let (b1, b2) = (b(7), b(7));
        p.predict(5, 0, &b1);
        p.predict(5, 8, &b2);
        p.appending(5, &b2, 0);
        assert!(p.is_broken(1));
    }

    #[test]
    fn appends_of_other_terms_or_of_followers_are_not_checked() {
        let p = Predictions::default();
        p.arm(1);
        // A follower's append: no prediction open.
        p.appending(4, &b(1), 0);
        assert!(!p.is_broken(1));
        // Predictions of an older term were never appended.
        let (b1, b2) = (b(1), b(2));
        p.predict(4, 10, &b1);
        p.predict(6, 10, &b2);
        p.appending(6, &b2, 10);
        assert!(!p.is_broken(1));
    }
}
