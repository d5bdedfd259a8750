//! A team of threads for the time loop, made to hold on a busy machine: each task (a step's
//! phase, a chunk's projection) is cut into pieces that members claim through atomic
//! counters, so whoever is running takes the work and nobody waits for a thread that has not
//! started its piece.
//!
//! Each member has a home range of pieces (the same every task, so in steady state a core
//! keeps its own slice of the weights in its cache) and claims from it first; then it takes
//! what is left of the others' ranges. The leader (member 0, the thread that publishes the
//! tasks) therefore finishes any piece a late or descheduled helper has not taken, and waits
//! only for pieces a helper has started. Whether sharing pays at all on a crowded machine is
//! measured by the time loop (`choice`), which gives the team only the steps it shares.
//!
//! Helpers are detached rayon jobs of the current pool, spawned at the first shared task: the
//! leader never waits for one to start or to finish, and one that starts after the team's
//! work is over returns at once. A helper without tasks for a while parks until the leader
//! publishes the next one, so a time loop running alone leaves the other core to the machine.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// One task: `f(p, n)` runs piece `p` of `n` (the whole task is `f(0, 1)`).
type Task<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// How long an idle helper spins on the next task (or the leader on a helper's piece) before
/// it starts yielding its core, and how long a helper yields before it parks (a late helper
/// costs nothing: the leader takes its pieces). The spin is short: the next task follows the
/// last piece within a microsecond when both threads run, and when the scheduler has put them
/// on the same core, every microsecond one spins the other waits.
const SPIN: Duration = Duration::from_micros(4);
const YIELD: Duration = Duration::from_micros(300);

/// Longest a parked helper sleeps before it looks again by itself (the leader wakes it for
/// a task or the end; this only bounds the harm of a wake-up lost to a bug).
const PARK: Duration = Duration::from_millis(20);

/// Bits of a claim word: the task's epoch, then the next piece and the end of a home range.
const PIECE_BITS: u32 = 12;
const PIECE_MASK: u64 = (1 << PIECE_BITS) - 1;

/// Most pieces a task may have.
pub(crate) const MAX_PIECES: usize = PIECE_MASK as usize;

fn pack(epoch: u64, next: usize, end: usize) -> u64 {
    (epoch << (2 * PIECE_BITS)) | ((next as u64) << PIECE_BITS) | end as u64
}

/// A value alone on its cache line, so claims on one member's range never bounce the line
/// that holds another's.
#[repr(align(64))]
struct Line<T>(T);

/// The state members share.
pub(crate) struct Team {
    size: usize,
    /// Number of the current task (0: none yet).
    epoch: Line<AtomicU64>,
    /// The current task, as a pointer to a [`Task`] on the leader's stack, and its pieces.
    task: AtomicPtr<()>,
    pieces: AtomicUsize,
    /// Per member: the current task's epoch, and its home range's pieces still unclaimed.
    claims: Vec<Line<AtomicU64>>,
    /// Pieces of the current task that helpers finished.
    done: Line<AtomicUsize>,
    /// A helper's piece panicked: its payload, for the leader to raise.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    poisoned: AtomicBool,
    stop: AtomicBool,
    /// Nanoseconds the leader waited for helpers' pieces, and whether helpers ran any piece,
    /// since [`Team::take_help`].
    waited: AtomicU64,
    helped: AtomicBool,
    /// Whether the helpers were spawned (at the first shared task).
    spawned: AtomicBool,
    /// Per member: its thread once it serves, and whether it is parked or about to park.
    threads: Vec<OnceLock<Thread>>,
    asleep: Vec<Line<AtomicBool>>,
}

impl Team {
    fn new(size: usize) -> Team {
        Team {
            size,
            epoch: Line(AtomicU64::new(0)),
            task: AtomicPtr::new(std::ptr::null_mut()),
            pieces: AtomicUsize::new(0),
            claims: (0..size).map(|_| Line(AtomicU64::new(0))).collect(),
            done: Line(AtomicUsize::new(0)),
            panic: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waited: AtomicU64::new(0),
            helped: AtomicBool::new(false),
            spawned: AtomicBool::new(false),
            threads: (0..size).map(|_| OnceLock::new()).collect(),
            asleep: (0..size).map(|_| Line(AtomicBool::new(false))).collect(),
        }
    }

    /// Claims the next unclaimed piece of member `m`'s home range in task `epoch`.
    fn claim(&self, m: usize, epoch: u64) -> Option<usize> {
        let word = &self.claims[m].0;
        let mut v = word.load(Ordering::Acquire);
        loop {
            let next = ((v >> PIECE_BITS) & PIECE_MASK) as usize;
            let end = (v & PIECE_MASK) as usize;
            if v >> (2 * PIECE_BITS) != epoch || next >= end {
                return None;
            }
            match word.compare_exchange_weak(
                v,
                pack(epoch, next + 1, end),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(now) => v = now,
            }
        }
    }

    /// Claims a piece of task `epoch` for member `m`: its own range first, then the others'.
    fn claim_any(&self, m: usize, epoch: u64) -> Option<usize> {
        (0..self.size).find_map(|k| self.claim((m + k) % self.size, epoch))
    }

    /// Runs `f(p, pieces)` for every piece `p < pieces` (or `f(0, 1)` when the team has no
    /// helper), returning when all are done. Called by the leader only; `f` must not call
    /// `run` itself.
    pub(crate) fn run(self: &Arc<Self>, pieces: usize, f: Task<'_>) {
        assert!(pieces <= MAX_PIECES, "more pieces than a claim word holds");
        if pieces <= 1 || self.size <= 1 {
            return f(0, 1);
        }
        if !self.spawned.swap(true, Ordering::Relaxed) {
            for m in 1..self.size {
                let team = Arc::clone(self);
                rayon::spawn(move || team.serve(m));
            }
        }
        self.task
            .store(&f as *const Task as *mut (), Ordering::Relaxed);
        self.pieces.store(pieces, Ordering::Relaxed);
        self.done.0.store(0, Ordering::Relaxed);
        let epoch = self.epoch.0.load(Ordering::Relaxed) + 1;
        for (m, word) in self.claims.iter().enumerate() {
            let home = |m: usize| pieces * m / self.size;
            word.0
                .store(pack(epoch, home(m), home(m + 1)), Ordering::Relaxed);
        }
        // SeqCst, against a helper's going to sleep (see `serve`).
        self.epoch.0.store(epoch, Ordering::SeqCst);
        self.wake();

        // The leader's pieces; a panic in one waits for the helpers' pieces (which borrow
        // the task) before it goes on.
        let mut own = 0;
        let mut panicked = None;
        while let Some(p) = self.claim_any(0, epoch) {
            own += 1;
            if panicked.is_none() {
                panicked = catch_unwind(AssertUnwindSafe(|| f(p, pieces))).err();
            }
        }
        // Every piece is claimed: wait only for those helpers have started.
        if self.done.0.load(Ordering::Acquire) + own < pieces {
            let waiting = Instant::now();
            let mut spins = 0u32;
            while self.done.0.load(Ordering::Acquire) + own < pieces {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(16) && waiting.elapsed() > SPIN {
                    // The helper may be waiting for this core.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            let ns = waiting.elapsed().as_nanos() as u64;
            self.waited.fetch_add(ns, Ordering::Relaxed);
        }
        if own < pieces {
            self.helped.store(true, Ordering::Relaxed);
        }
        if let Some(e) = panicked {
            resume_unwind(e);
        }
        if self.poisoned.load(Ordering::Acquire) {
            match self.panic.lock().ok().and_then(|mut p| p.take()) {
                Some(e) => resume_unwind(e),
                None => panic!("a piece of the time loop panicked on another thread"),
            }
        }
    }

    /// Seconds the leader waited for helpers' pieces since the last call, and whether
    /// helpers ran any piece since then.
    pub(crate) fn take_help(&self) -> (f64, bool) {
        let waited = self.waited.swap(0, Ordering::Relaxed) as f64 * 1e-9;
        (waited, self.helped.swap(false, Ordering::Relaxed))
    }

    /// Unparks the helpers that are parked or about to park (after a new task or the stop).
    fn wake(&self) {
        for (asleep, thread) in self.asleep.iter().zip(&self.threads).skip(1) {
            if asleep.0.load(Ordering::SeqCst) {
                if let Some(t) = thread.get() {
                    t.unpark();
                }
            }
        }
    }

    /// Helper `m`'s loop: takes pieces of each task until the team stops.
    fn serve(&self, m: usize) {
        let _ = self.threads[m].set(std::thread::current());
        let mut seen = 0;
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.0.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                while let Some(p) = self.claim_any(m, epoch) {
                    // SAFETY: the leader keeps the task alive until every claimed piece of
                    // this epoch is done, and this one is not done yet; the claim (Acquire)
                    // follows the leader's stores of the task and its pieces.
                    let f = unsafe { *(self.task.load(Ordering::Relaxed) as *const Task) };
                    let pieces = self.pieces.load(Ordering::Relaxed);
                    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(p, pieces))) {
                        if let Ok(mut slot) = self.panic.lock() {
                            slot.get_or_insert(e);
                        }
                        self.poisoned.store(true, Ordering::Release);
                    }
                    self.done.0.fetch_add(1, Ordering::Release);
                }
                idle_since = Instant::now();
                spins = 0;
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(16) {
                std::hint::spin_loop();
                continue;
            }
            let idle = idle_since.elapsed();
            if idle > YIELD {
                // Asleep first, then the last look (both SeqCst): either the leader's
                // `wake` sees this flag, or this load sees its new task or stop.
                self.asleep[m].0.store(true, Ordering::SeqCst);
                if self.epoch.0.load(Ordering::SeqCst) == seen && !self.stop.load(Ordering::SeqCst)
                {
                    std::thread::park_timeout(PARK);
                }
                self.asleep[m].0.store(false, Ordering::Relaxed);
            } else if idle > SPIN {
                std::thread::yield_now();
            }
        }
    }
}

/// Stops the helpers when the leader's work ends, panics included.
struct StopOnDrop<'a>(&'a Team);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        self.0.wake();
    }
}

/// Runs `f` as the leader of a team of `size` members (the calling thread and `size - 1`
/// detached jobs of the current rayon pool, spawned at the first shared task, which may
/// start late or never).
pub(crate) fn with_team<R>(size: usize, f: impl FnOnce(&Arc<Team>) -> R) -> R {
    let team = Arc::new(Team::new(size.max(1)));
    let _stop = StopOnDrop(&team);
    f(&team)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `tasks` tasks of 1 to 12 pieces on a team: how many times each of 12 pieces ran
    /// (a task run alone covers all of its pieces at once).
    fn count_pieces(
        threads: usize,
        size: usize,
        tasks: usize,
        slow: &(dyn Fn() + Sync),
    ) -> Vec<usize> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let counts: Vec<AtomicUsize> = (0..12).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            with_team(size, |team| {
                for task in 0..tasks {
                    let pieces = 1 + task % 12;
                    team.run(pieces, &|p, n| {
                        slow();
                        // Piece p of n covers pieces [p·pieces/n, (p+1)·pieces/n).
                        for c in &counts[p * pieces / n..(p + 1) * pieces / n] {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        });
        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn want(tasks: usize) -> Vec<usize> {
        (0..12)
            .map(|p| (0..tasks).filter(|t| p < 1 + t % 12).count())
            .collect()
    }

    #[test]
    fn every_piece_runs_once_per_task_on_any_pool() {
        // Pools smaller than the team, and pieces fewer or more than members: the leader
        // runs what no helper takes.
        for threads in [1, 2, 4] {
            for size in [1, 2, 3, 5] {
                let counts = count_pieces(threads, size, 600, &|| {});
                assert_eq!(counts, want(600), "{threads} threads, team of {size}");
            }
        }
    }

    #[test]
    fn a_helper_that_stalls_costs_no_piece() {
        // Pieces asleep now and then (on whichever thread), so that the leader waits for
        // helpers' started pieces: every piece still runs once per task.
        let n = AtomicUsize::new(0);
        let slow = || {
            if n.fetch_add(1, Ordering::Relaxed).is_multiple_of(7) {
                std::thread::sleep(Duration::from_micros(300));
            }
        };
        for size in [2, 3] {
            assert_eq!(count_pieces(3, size, 3000, &slow), want(3000));
        }
    }

    #[test]
    fn parked_helpers_wake_for_the_next_task_and_the_end() {
        // Pauses between tasks longer than a helper yields, so that it parks and is woken
        // for the next task (or the team's end) while pieces of the last may still run:
        // every piece runs once per task, on two teams in a row on the same pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for _ in 0..2 {
            let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            pool.install(|| {
                with_team(2, |team| {
                    for _ in 0..30 {
                        team.run(4, &|p, n| {
                            assert_eq!(n, 4);
                            counts[p].fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_micros(200));
                        });
                        std::thread::sleep(YIELD * 3);
                    }
                })
            });
            let counts: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            assert_eq!(counts, [30; 4]);
        }
    }

    #[test]
    fn a_helper_that_never_starts_leaves_every_piece_to_the_leader() {
        // A pool of one thread: the helper's job waits behind the leader's for the whole
        // team's life, and starts only to find the team stopped.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let leader = pool.install(|| std::thread::current().id());
        let others = AtomicUsize::new(0);
        pool.install(|| {
            with_team(2, |team| {
                for _ in 0..100 {
                    team.run(3, &|_, _| {
                        if std::thread::current().id() != leader {
                            others.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        });
        assert_eq!(others.load(Ordering::Relaxed), 0);
        assert_eq!(count_pieces(1, 2, 600, &|| {}), want(600));
    }

    #[test]
    fn a_panicking_piece_reaches_the_leader() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| {
                with_team(2, |team| {
                    for _ in 0..1000 {
                        team.run(2, &|p, n| assert!(p == 0 && n == 2, "piece {p} of {n}"));
                    }
                })
            })
        }));
        assert!(r.is_err());
    }
}
