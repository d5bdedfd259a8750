//! Whether a time loop's next steps are shared with a team or run alone, from measured times.
//!
//! Sharing a step pays only while the helpers run when the caller does. On a crowded machine
//! a helper descheduled in the middle of a piece holds the step for a scheduler's slice
//! (milliseconds against a step's microseconds), and one put on the caller's own core turns
//! every step into two context switches; neither shows in any single wait that could be told
//! apart from a slow step. So the loop measures what it cares about: the mean time of a step
//! shared and of a step alone, each over segments of [`SEGMENT`] steps, and runs in the mode
//! that is faster, with a segment in the other mode now and then (less often while the
//! other keeps losing) to notice when the machine changes. The record is kept per cell,
//! batch and cut, across runs, so a streamed or often-called node keeps what it learnt.

use std::sync::Mutex;

/// Steps per measured segment: enough to hold a helper's start-up, few enough to change mode
/// within a fraction of a millisecond. The unit tests switch every few steps.
pub(super) const SEGMENT: usize = if cfg!(test) { 2 } else { 32 };

/// A segment also ends after this many seconds, so that large steps (a millisecond each on a
/// crowded machine) are not measured a few segments per run.
const SEGMENT_SECS: f64 = 1e-3;

/// Segments run in the preferred mode between two segments in the other: from `MIN_GAP`,
/// doubled each time the other loses again, up to `MAX_GAP` (a probe then costs about 1/64
/// of the time even when the other mode is twice as slow).
const MIN_GAP: u32 = 2;
const MAX_GAP: u32 = 64;

/// Sharing is preferred only when it is measured faster by this factor: on a tie, one thread
/// leaves the other core to the machine.
const SHARE_BELOW: f64 = 0.97;

/// Weight of a new segment in the running mean of its mode: the preferred mode is measured
/// often, a probe seldom (so it counts for more).
const WEIGHT: f64 = 0.25;
const PROBE_WEIGHT: f64 = 0.5;

/// The record of one cell's steps: the running mean time of a step alone and shared, the
/// open segment, and when to probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Choice {
    /// Seconds per step alone (0) and shared (1); 0.0 until measured.
    per_step: [f64; 2],
    /// The open segment's mode, steps and seconds.
    shared: bool,
    steps: usize,
    secs: f64,
    /// Segments between probes, and segments since the last probe.
    gap: u32,
    since: u32,
}

impl Default for Choice {
    /// Nothing measured: the first segment is shared, the next alone.
    fn default() -> Self {
        Choice {
            per_step: [0.0; 2],
            shared: true,
            steps: 0,
            secs: 0.0,
            gap: MIN_GAP,
            since: 0,
        }
    }
}

impl Choice {
    /// Whether the next step is shared.
    pub(super) fn shared(&self) -> bool {
        self.shared
    }

    /// The mode the means favour (alone until both are measured).
    fn preferred(&self) -> bool {
        let [alone, shared] = self.per_step;
        alone > 0.0 && shared > 0.0 && favours_sharing(alone, shared)
    }

    /// Adds a step of the open segment's mode that took `secs`; when the segment is full,
    /// folds it into its mode's mean and picks the next segment's mode.
    pub(super) fn record(&mut self, secs: f64) {
        self.steps += 1;
        self.secs += secs;
        if self.steps < SEGMENT && self.secs < SEGMENT_SECS {
            return;
        }
        let mean = self.secs / self.steps as f64;
        (self.steps, self.secs) = (0, 0.0);
        let before = self.preferred();
        let probe = self.per_step.iter().all(|&t| t > 0.0) && self.shared != before;
        let slot = &mut self.per_step[usize::from(self.shared)];
        let weight = if probe { PROBE_WEIGHT } else { WEIGHT };
        *slot = if *slot > 0.0 {
            *slot + weight * (mean - *slot)
        } else {
            mean
        };
        let after = self.preferred();
        // A probe that beat the preferred mode's mean is looked at again soon, even when it
        // did not turn the record yet.
        let beaten = probe
            && match self.shared {
                true => favours_sharing(self.per_step[0], mean),
                false => !favours_sharing(mean, self.per_step[1]),
            };
        if before != after || beaten {
            self.gap = MIN_GAP;
        } else if probe {
            self.gap = (self.gap * 2).min(MAX_GAP);
        }
        self.shared = match self.per_step {
            [alone, _] if alone == 0.0 => false,
            [_, shared] if shared == 0.0 => true,
            _ if self.since >= self.gap => {
                self.since = 0;
                !after
            }
            _ => {
                self.since += 1;
                after
            }
        };
    }
}

/// Whether steps of `shared` seconds beat steps of `alone` seconds by the margin.
fn favours_sharing(alone: f64, shared: f64) -> bool {
    shared < SHARE_BELOW * alone
}

/// Which record a run uses: the cell's address, the batch and the number of pieces.
pub(super) type Key = (usize, usize, usize);

/// Records kept at most (the least recently used is dropped): a model's recurrent nodes
/// and directions, at a few batch sizes.
const RECORDS: usize = 32;

/// The process's records, with the tick each was last used at.
static RECORDS_BY_KEY: Mutex<Vec<(Key, u64, Choice)>> = Mutex::new(Vec::new());
static TICK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The record for `key` (a fresh one if none), for a run to work on and [`put`] back.
pub(super) fn take(key: Key) -> Choice {
    let records = RECORDS_BY_KEY.lock().unwrap_or_else(|e| e.into_inner());
    records
        .iter()
        .find(|(k, ..)| *k == key)
        .map_or_else(Choice::default, |&(.., c)| c)
}

/// Keeps `choice` as the record for `key` (runs of one cell at once: the last one wins).
pub(super) fn put(key: Key, choice: Choice) {
    let tick = TICK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut records = RECORDS_BY_KEY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = records.iter_mut().find(|(k, ..)| *k == key) {
        *r = (key, tick, choice);
    } else if records.len() < RECORDS {
        records.push((key, tick, choice));
    } else if let Some(r) = records.iter_mut().min_by_key(|(_, t, _)| *t) {
        *r = (key, tick, choice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `segments` segments whose steps take `alone` or `shared` microseconds by mode:
    /// the fraction of segments that ran shared.
    fn share_of(choice: &mut Choice, segments: usize, alone: f64, shared: f64) -> f64 {
        let (alone, shared) = (alone * 1e-6, shared * 1e-6);
        let mut n = 0;
        for _ in 0..segments {
            n += usize::from(choice.shared());
            for _ in 0..SEGMENT {
                choice.record(if choice.shared() { shared } else { alone });
            }
        }
        n as f64 / segments as f64
    }

    #[test]
    fn the_faster_mode_runs_and_the_other_is_probed_less_and_less() {
        let mut c = Choice::default();
        // Sharing twice as fast: shared but for the first segment alone and rare probes.
        let s = share_of(&mut c, 1000, 2.0, 1.0);
        assert!(s > 0.97 && s < 1.0, "{s}");
        assert!(c.preferred() && c.gap == MAX_GAP);
        // The machine gets crowded: sharing now twice as slow. The record turns within a
        // few segments and then shares only to probe.
        let s = share_of(&mut c, 1000, 2.0, 4.0);
        assert!(s > 0.0 && s < 0.03, "{s}");
        assert!(!c.preferred());
        // And back, within a probe and a few segments.
        let s = share_of(&mut c, 2000, 2.0, 1.0);
        assert!(s > 0.9, "{s}");
        assert!(c.preferred());
    }

    #[test]
    fn a_tie_runs_alone() {
        let mut c = Choice::default();
        let s = share_of(&mut c, 500, 1.0, 0.99);
        assert!(s < 0.05, "{s}");
    }

    #[test]
    fn records_are_kept_per_key() {
        let mut c = Choice::default();
        share_of(&mut c, 10, 2.0, 1.0);
        assert!(c.preferred());
        let key = (usize::MAX, 3, 7);
        put(key, c);
        assert_eq!(take(key), c);
        assert_eq!(take((usize::MAX, 3, 8)), Choice::default());
    }
}
