//! A team of threads for the time loop: the same member runs the same piece of every task
//! (a step's phase, a chunk's projection), so each core keeps its own slice of the weights
//! and of the gates in its own cache from one step to the next, and a task costs a few
//! shared cache lines instead of a rayon join.
//!
//! Members are rayon jobs of the current pool that spin between tasks. The thread that
//! publishes the tasks (the leader, member 0) never depends on them: a piece whose member is
//! not following (not arrived yet, as the pool's threads may be busy elsewhere or still
//! waking up, or descheduled and behind) or does not take it within 50 µs is run by the
//! leader itself, so a team of any size makes progress on any pool, and a member that falls
//! behind costs that wait once.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One task: runs piece `p`.
type Task<'a> = &'a (dyn Fn(usize) + Sync);

/// How long the leader waits for a member that has arrived to take its piece before it runs
/// the piece itself (a spinning member takes it within a microsecond).
const TAKE_WAIT: Duration = Duration::from_micros(50);

/// Spins before an idle member starts yielding its core between looks.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// The state members share.
pub(crate) struct Team {
    size: usize,
    /// Number of the current task (0: none yet).
    epoch: AtomicUsize,
    /// Pieces of the current task.
    count: AtomicUsize,
    /// The current task, as a pointer to a [`Task`] on the leader's stack.
    task: AtomicPtr<()>,
    /// The last epoch in which each piece was taken (by its member or by the leader).
    taken: Vec<AtomicUsize>,
    /// The last epoch each member has seen (0: not arrived yet; 1 at the latest on arrival).
    seen: Vec<AtomicUsize>,
    /// Pieces of the current task finished.
    done: AtomicUsize,
    /// A member's piece panicked.
    poisoned: AtomicBool,
    stop: AtomicBool,
}

impl Team {
    fn new(size: usize) -> Team {
        Team {
            size,
            epoch: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            task: AtomicPtr::new(std::ptr::null_mut()),
            taken: (0..size).map(|_| AtomicUsize::new(0)).collect(),
            seen: (0..size).map(|_| AtomicUsize::new(0)).collect(),
            done: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether the caller takes piece `p` of task `epoch` (exactly one caller does).
    fn take(&self, p: usize, epoch: usize) -> bool {
        self.taken[p].fetch_max(epoch, Ordering::AcqRel) < epoch
    }

    /// Runs `f(p)` for every piece `p < pieces` (at most the team's size), piece `p` on member
    /// `p` when it is there; returns when all are done. Called by the leader only.
    pub(crate) fn run(&self, pieces: usize, f: Task<'_>) {
        assert!(pieces <= self.size, "more pieces than members");
        if pieces <= 1 {
            return (0..pieces).for_each(f);
        }
        self.task
            .store(&f as *const Task as *mut (), Ordering::Relaxed);
        self.count.store(pieces, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        self.epoch.store(epoch, Ordering::Release);
        // The pieces the leader runs; a panic in one waits for the members' pieces (which
        // borrow the task) before it goes on.
        let mut own = 0;
        let mut panicked = None;
        let mut run_own = |p: usize| {
            own += 1;
            if panicked.is_none() {
                panicked = catch_unwind(AssertUnwindSafe(|| f(p))).err();
            }
        };
        if self.take(0, epoch) {
            run_own(0);
        }
        for p in 1..pieces {
            let start = Instant::now();
            let mut spins = 0u32;
            loop {
                if self.taken[p].load(Ordering::Acquire) >= epoch {
                    break;
                }
                // A member that has not seen the previous task is not following (not
                // arrived yet, or descheduled): its piece is not worth waiting for.
                let seen = self.seen[p].load(Ordering::Acquire);
                let following = seen > 0 && seen + 1 >= epoch;
                let waited = !following || (spins % 64 == 63 && start.elapsed() > TAKE_WAIT);
                if waited && self.take(p, epoch) {
                    run_own(p);
                    break;
                }
                spins = spins.wrapping_add(1);
                std::hint::spin_loop();
            }
        }
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) + own < pieces {
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Some(e) = panicked {
            resume_unwind(e);
        }
        if self.poisoned.load(Ordering::Acquire) {
            panic!("a piece of the time loop panicked on another thread");
        }
    }

    /// Member `p`'s loop: takes piece `p` of each task until the team stops.
    fn serve(&self, p: usize) {
        // Ready for the next task (or the first).
        let arrival = self.epoch.load(Ordering::Acquire).max(1);
        self.seen[p].store(arrival, Ordering::Release);
        let mut seen = 0;
        let mut idle = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                self.seen[p].store(epoch.max(1), Ordering::Release);
                idle = 0;
                if p < self.count.load(Ordering::Relaxed) && self.take(p, epoch) {
                    // SAFETY: the leader keeps the task alive until every piece of this
                    // epoch is done, and this piece is not done yet.
                    let f = unsafe { *(self.task.load(Ordering::Relaxed) as *const Task) };
                    let r = catch_unwind(AssertUnwindSafe(|| f(p)));
                    if r.is_err() {
                        self.poisoned.store(true, Ordering::Release);
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    if let Err(e) = r {
                        resume_unwind(e);
                    }
                }
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            idle = idle.saturating_add(1);
            if idle < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Stops the members when the leader's work ends, panics included.
struct StopOnDrop<'a>(&'a Team);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Runs `f` as the leader of a team of `size` members (the calling thread and `size - 1` jobs
/// of the current rayon pool).
pub(crate) fn with_team<R: Send>(size: usize, f: impl FnOnce(&Team) -> R + Send) -> R {
    let team = Team::new(size.max(1));
    rayon::scope(|s| {
        for p in 1..team.size {
            let team = &team;
            s.spawn(move |_| team.serve(p));
        }
        let _stop = StopOnDrop(&team);
        f(&team)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_piece_runs_once_per_task_on_any_pool() {
        // Pools smaller than the team: the leader runs what no member takes.
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for size in [1, 2, 3, 5] {
                let counts = Mutex::new(vec![0usize; size]);
                pool.install(|| {
                    with_team(size, |team| {
                        for task in 0..200 {
                            let pieces = 1 + task % size;
                            team.run(pieces, &|p| counts.lock().unwrap()[p] += 1);
                        }
                    })
                });
                let counts = counts.into_inner().unwrap();
                let want: Vec<usize> = (0..size)
                    .map(|p| (0..200).filter(|t| p < 1 + t % size).count())
                    .collect();
                assert_eq!(counts, want, "{threads} threads, team of {size}");
            }
        }
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
                        team.run(2, &|p| assert!(p == 0, "piece {p}"));
                    }
                })
            })
        }));
        assert!(r.is_err());
    }
}
