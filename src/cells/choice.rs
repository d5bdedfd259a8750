//! Whether a time loop's next steps are shared with a team or run alone, from measured times.
//!
//! Sharing a step pays only while the helpers run when the caller does. On a crowded machine
//! a helper descheduled in the middle of a piece holds the step for a scheduler's slice
//! (milliseconds against a step's microseconds), and one put on the caller's own core turns
//! every step into a hand-over between two threads on one core. So the loop measures, over
//! segments of [`SEGMENT`] steps, what a step costs alone and shared, and runs in the mode
//! that is cheaper, with a segment in the other mode now and then (less often while the
//! other keeps losing) to notice when the machine changes. The typical cost of a mode is the
//! median of its last segments: the caller itself is descheduled now and then in either
//! mode, and one such segment must not decide. A shared segment that spent a third of its
//! time waiting for helpers beyond what the whole step costs alone is a stall: sharing stops
//! for a number of segments that doubles with each stall that follows (up to [`MAX_GAP`]) and
//! halves after [`CALM`] shared segments without one. Only the waits beyond a lone step
//! count: the leader ordinarily waits at the end of every shared task for the rest of the
//! piece a running helper holds, which is part of a short step's time (GRU H=256 batch 1)
//! and is already in the shared steps' measured cost; a helper descheduled mid-piece holds
//! the leader for a scheduler's slice, far longer than a step.
//! The record is kept per cell, batch and cut, across runs, so a streamed or often-called
//! node keeps what it learnt.

use std::sync::Mutex;

/// Steps per measured segment: enough to hold a helper's start-up, few enough to change mode
/// within a fraction of a millisecond. The unit tests switch every few steps.
pub(super) const SEGMENT: usize = if cfg!(test) { 2 } else { 32 };

/// A segment also ends after this many seconds, so that large steps (a millisecond each on a
/// crowded machine) are not measured a few segments per run.
const SEGMENT_SECS: f64 = 1e-3;

/// Segments run in the preferred mode between two segments in the other: from `MIN_GAP`,
/// doubled each time the other loses again, up to `MAX_GAP` (a probe then costs about 1/256
/// of the time even when the other mode is twice as slow).
const MIN_GAP: u32 = 2;
const MAX_GAP: u32 = 256;

/// Sharing is preferred only when it is measured cheaper by this factor: on a tie, one
/// thread leaves the other core to the machine.
const SHARE_BELOW: f64 = 0.95;

/// Segments whose time per step is kept per mode (their median is the typical one).
const RECENT: usize = 5;

/// Stalls in a row counted at most, and shared segments without a stall that undo one.
const MAX_STRIKES: u32 = 5;
const CALM: u32 = 64;

/// The record of one cell's steps: per mode, the time per step of the last segments; the
/// stalls; the open segment; when to probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Choice {
    /// Alone (0) and shared (1): seconds per step of the last segments (`count` of them, up
    /// to [`RECENT`], the next written at `count % RECENT`).
    recent: [[f64; RECENT]; 2],
    count: [usize; 2],
    /// Stalls not yet undone, shared segments since the last, and whether sharing waits for
    /// the next probe after one.
    strikes: u32,
    calm: u32,
    stalled: bool,
    /// The open segment's mode, steps, seconds, seconds waited for helpers beyond the time
    /// of a lone step, and whether helpers ran any piece.
    shared: bool,
    steps: usize,
    secs: f64,
    lost: f64,
    helped: bool,
    /// Segments between probes, and segments since the last probe.
    gap: u32,
    since: u32,
}

impl Default for Choice {
    /// Nothing measured: the first segment is shared, the next alone.
    fn default() -> Self {
        Choice {
            recent: [[0.0; RECENT]; 2],
            count: [0; 2],
            strikes: 0,
            calm: 0,
            stalled: false,
            shared: true,
            steps: 0,
            secs: 0.0,
            lost: 0.0,
            helped: false,
            gap: MIN_GAP,
            since: 0,
        }
    }
}

impl Choice {
    /// Whether the next step is shared.
    pub(super) fn shared(&self) -> bool {
        // The unit tests that make helpers slow on purpose (threads named `slow-helper…`)
        // share every step, whatever the timings say.
        #[cfg(test)]
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("slow-helper"))
        {
            return true;
        }
        self.shared
    }

    /// Typical seconds per step in mode `m` (0 alone, 1 shared), once measured.
    fn cost(&self, m: usize) -> Option<f64> {
        let n = self.count[m].min(RECENT);
        let mut r = self.recent[m];
        r[..n].sort_by(f64::total_cmp);
        (n > 0).then(|| r[n / 2])
    }

    /// The mode the measures favour: alone until both are measured and after a stall.
    fn preferred(&self) -> bool {
        match (self.cost(0), self.cost(1)) {
            (Some(alone), Some(shared)) => !self.stalled && favours_sharing(alone, shared),
            _ => false,
        }
    }

    /// Adds a step of the open segment's mode that took `secs`, `waited` of them waiting
    /// for helpers, `helped` if helpers ran any of its pieces; when the segment is full,
    /// folds it into its mode's record and picks the next segment's mode.
    ///
    /// Of `waited`, only what exceeds a lone step's typical time counts towards a stall (the
    /// leader's own share of the step, doubled, before any lone step is measured): in that
    /// time the leader could have run the whole step itself.
    ///
    /// A shared segment in which no helper ran a piece (none got a core in time: on a busy
    /// machine, a helper is often queued behind the leader on its own core) was a lone one
    /// with the team's overheads, and counts as no faster than the lone steps: otherwise the
    /// noise between two equal costs would now and then make sharing look better, and the
    /// loop would share (with a helper that does not come) for segments at a time.
    ///
    /// A shared segment is measured from its first step a helper ran pieces of: the steps
    /// before it wait for a helper to start or wake (tens of microseconds, a large part of a
    /// segment of short steps), a cost of each switch to sharing rather than of shared steps,
    /// and one that would keep a probe of short steps from ever beating the lone ones. Up to
    /// a segment's worth of such steps is left out; a segment without help is then measured
    /// whole.
    pub(super) fn record(&mut self, secs: f64, waited: f64, helped: bool) {
        if self.shared && helped && !self.helped && self.steps < SEGMENT {
            (self.steps, self.secs, self.lost) = (0, 0.0, 0.0);
        }
        self.steps += 1;
        self.secs += secs;
        self.helped |= helped;
        if waited > 0.0 {
            let waited = waited.min(secs);
            let lone = self.cost(0).unwrap_or(2.0 * (secs - waited));
            self.lost += (waited - lone).max(0.0);
        }
        if self.steps < SEGMENT && self.secs < SEGMENT_SECS {
            return;
        }
        let mut per_step = self.secs / self.steps as f64;
        if self.shared && !self.helped {
            per_step = per_step.max(self.cost(0).unwrap_or(0.0));
        }
        let stall = self.shared && 2.0 * self.lost > self.secs - self.lost;
        (self.steps, self.secs, self.lost, self.helped) = (0, 0.0, 0.0, false);
        let before = self.preferred();
        let probe = self.count.iter().all(|&n| n > 0) && self.shared != before;
        let m = usize::from(self.shared);
        if stall {
            self.strikes = (self.strikes + 1).min(MAX_STRIKES);
            (self.calm, self.stalled) = (0, true);
        } else {
            self.recent[m][self.count[m] % RECENT] = per_step;
            self.count[m] += 1;
            if self.shared {
                self.stalled = false;
                self.calm += 1;
                if self.calm >= CALM {
                    (self.calm, self.strikes) = (0, self.strikes.saturating_sub(1));
                }
            }
        }
        let after = self.preferred();
        // A probe that beat the preferred mode is looked at again soon, even when it did
        // not turn the record yet.
        let beaten = probe
            && !stall
            && match (self.shared, self.cost(0), self.cost(1)) {
                (true, Some(alone), _) => favours_sharing(alone, per_step),
                (false, _, Some(shared)) => !favours_sharing(per_step, shared),
                _ => false,
            };
        if stall {
            (self.gap, self.since) = ((MIN_GAP << self.strikes).min(MAX_GAP), 0);
        } else if before != after || beaten {
            self.gap = MIN_GAP;
        } else if probe {
            self.gap = (self.gap * 2).min(MAX_GAP);
        }
        self.shared = match self.count {
            [0, _] => false,
            [_, 0] if !self.stalled => true,
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

/// Segments measured alone and shared in the latest record of a cell at a batch.
#[cfg(test)]
pub(super) fn segments_of(cell: usize, batch: usize) -> Option<[usize; 2]> {
    let records = RECORDS_BY_KEY.lock().unwrap_or_else(|e| e.into_inner());
    records
        .iter()
        .filter(|(k, ..)| k.0 == cell && k.1 == batch)
        .max_by_key(|(_, tick, _)| *tick)
        .map(|(.., c)| c.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `segments` segments whose steps take `step(shared, segment)` microseconds, of
    /// which waits for helpers, helpers running pieces of the shared ones: the fraction of
    /// segments that ran shared.
    fn share(c: &mut Choice, segments: usize, step: impl Fn(bool, usize) -> (f64, f64)) -> f64 {
        let mut n = 0;
        for k in 0..segments {
            let shared = c.shared();
            n += usize::from(shared);
            let (secs, waited) = step(shared, k);
            for _ in 0..SEGMENT {
                c.record(secs * 1e-6, waited * 1e-6, shared);
            }
        }
        n as f64 / segments as f64
    }

    /// Steps of `alone` or `shared` microseconds, no waits.
    fn share_of(c: &mut Choice, segments: usize, alone: f64, shared: f64) -> f64 {
        share(c, segments, |s, _| (if s { shared } else { alone }, 0.0))
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
    fn the_callers_own_descheduling_does_not_decide() {
        // One segment in five, whichever its mode, takes 20 times as long (the caller was
        // descheduled): sharing, twice as fast otherwise, still runs.
        let mut c = Choice::default();
        let s = share(&mut c, 1000, |s, k| {
            let t = if s { 1.0 } else { 2.0 };
            (if k % 5 == 4 { 20.0 * t } else { t }, 0.0)
        });
        assert!(s > 0.9, "{s}");
    }

    #[test]
    fn stalls_keep_sharing_away_longer_each_time() {
        // Shared steps twice as fast, but one shared segment in four waits 10 µs per step for
        // a descheduled helper (a mean of 2.5 µs a step): alone but for a probe every 64
        // segments and the few shared segments that follow a clean one until the next stall.
        let mut c = Choice::default();
        let s = share(&mut c, 3000, |s, k| match (s, k % 4) {
            (false, _) => (2.0, 0.0),
            (true, 3) => (11.0, 10.0),
            (true, _) => (1.0, 0.0),
        });
        assert!(s < 0.15, "{s}");
        assert!(!c.preferred() && c.strikes == MAX_STRIKES);
        // Once the helpers stop stalling, sharing comes back.
        let s = share(&mut c, 1000, |s, _| (if s { 1.0 } else { 2.0 }, 0.0));
        assert!(s > 0.85, "{s}");
    }

    #[test]
    fn the_wait_for_a_running_helpers_last_piece_is_no_stall() {
        // Short steps (GRU H=256 batch 1): 4.5 µs alone, 2.5 µs shared, of which the leader
        // spends 1.2 µs at the ends of the step's tasks waiting for the pieces the helper is
        // finishing. That is the shared steps' ordinary cost, not a stall: sharing runs.
        let mut c = Choice::default();
        let s = share(&mut c, 1000, |s, _| if s { (2.5, 1.2) } else { (4.5, 0.0) });
        assert!(s > 0.9, "{s}");
        assert_eq!(c.strikes, 0);
        // A helper descheduled mid-piece in one shared segment in four: one step of it waits
        // a scheduler's slice (3 ms). Sharing is kept away but for probes.
        let mut n = 0;
        for k in 0..3000 {
            let shared = c.shared();
            n += usize::from(shared);
            for i in 0..SEGMENT {
                match (shared, k % 4 == 3 && i == 0) {
                    (false, _) => c.record(4.5e-6, 0.0, false),
                    (true, true) => c.record(3e-3, 3e-3 - 1.3e-6, true),
                    (true, false) => c.record(2.5e-6, 1.2e-6, true),
                }
            }
        }
        let s = n as f64 / 3000.0;
        assert!(s < 0.15, "{s}");
        assert!(!c.preferred() && c.strikes == MAX_STRIKES);
    }

    #[test]
    fn sharing_without_helpers_never_looks_faster() {
        // No helper gets a core: shared steps are lone ones with the team's overheads (4.4
        // µs against 4.3), and their noise (±15%, against ±3% alone) makes them look more
        // than 5% faster now and then. Sharing runs only for probes.
        let mut c = Choice::default();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut noise = |width: f64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            1.0 + width * ((rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        };
        let mut n = 0;
        for _ in 0..4000 {
            let shared = c.shared();
            n += usize::from(shared);
            let secs = if shared {
                4.4 * noise(0.15)
            } else {
                4.3 * noise(0.03)
            };
            for _ in 0..SEGMENT {
                c.record(secs * 1e-6, 0.0, false);
            }
        }
        let s = n as f64 / 4000.0;
        assert!(s < 0.03, "{s}");
        // Once a helper comes and halves the steps, sharing runs from the next probe (at
        // most MAX_GAP segments away).
        let s = share(&mut c, 2000, |s, _| (if s { 2.2 } else { 4.3 }, 0.0));
        assert!(s > 0.9, "{s}");
    }

    #[test]
    fn a_helpers_start_does_not_count_against_sharing() {
        // Steps of 3.3 µs alone and 2.0 shared, but the first step after each switch to
        // sharing runs without help while the helper starts (4.5 µs, as long as a segment's
        // share of the tests' two steps). Measured from the first helped step, sharing runs.
        let mut c = Choice::default();
        let (mut n, mut was_shared) = (0, false);
        for _ in 0..2000 {
            let shared = c.shared();
            n += usize::from(shared);
            match (shared, was_shared) {
                (false, _) => c.record(3.3e-6, 0.0, false),
                (true, false) => c.record(4.5e-6, 0.0, false),
                (true, true) => c.record(2.0e-6, 0.0, true),
            }
            was_shared = shared;
        }
        let s = n as f64 / 2000.0;
        assert!(s > 0.9, "{s}");
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
