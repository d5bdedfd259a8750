//! A team of threads for the time loop, made to hold on a busy machine: each task (a step's
//! phase, a chunk's projection) is cut into pieces that members claim through atomic
//! counters, so whoever is running takes the work and nobody waits long for a thread that
//! is not running.
//!
//! Each member has a home range of pieces (the same every task, so in steady state a core
//! keeps its own slice of the weights in its cache) and claims from it first; then it takes
//! what is left of the others' ranges. The leader (member 0, the thread that publishes the
//! tasks) therefore finishes any piece a late or descheduled helper has not taken. A piece a
//! helper has started is waited for only about as long as the leader's own pieces took: then
//! the leader takes it over and runs it itself (a helper descheduled mid-piece would
//! otherwise hold the step for a scheduler's slice, milliseconds against microseconds, even
//! on an idle virtual machine whose host preempts a vCPU). That is safe because a helper
//! works only from a copy of the task (a [`Job`]: a function and the words it reads, never
//! the leader's stack) and, for jobs that allow it, writes into buffers of its own, which
//! the leader copies into place once the helper marks the piece done; a piece taken over is
//! one whose late result is never copied. Whether sharing pays at all on a crowded machine
//! is measured by the time loop (`choice`), which gives the team only the steps it shares.
//!
//! Helpers are detached rayon jobs of the current pool, spawned at the first shared task: the
//! leader never waits for one to start. One that starts after the team's work is over
//! returns at once; the leader's last act is to wait until no helper is inside a piece, so
//! that the buffers a late helper reads outlive it. A helper without tasks for a while parks
//! until the leader publishes the next one, so a time loop running alone leaves the other
//! core to the machine.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The words a job's functions read (pointers and sizes, as the job's maker lays them out).
pub(crate) const WORDS: usize = 16;
pub(crate) type Words = [usize; WORDS];

/// `f(words, p, n, m)`: piece `p` of `n` of a task, run by member `m` (0: the leader).
pub(crate) type PieceFn = unsafe fn(&Words, usize, usize, usize);

/// One task as the team runs it.
#[derive(Clone, Copy)]
pub(crate) struct Job {
    /// Runs a piece. With `commit`, a helper (`m > 0`) writes its results into buffers of
    /// its own; the leader always writes in place.
    pub run: PieceFn,
    /// Copies helper `m`'s results of piece `p` into place. Without it, helpers write in
    /// place and the leader waits for every piece a helper has started.
    pub commit: Option<PieceFn>,
    pub words: Words,
}

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

/// The leader takes over a helper's started piece after waiting this many times what one of
/// its own pieces took, plus [`TAKEOVER_SLACK`]: long enough that a running helper finishes
/// first (it started its piece before the leader ran out of its own), short enough that a
/// descheduled one costs about a piece.
const TAKEOVER_FACTOR: f64 = 1.5;
const TAKEOVER_SLACK: Duration = Duration::from_micros(2);

/// Bits of a claim word: the task's epoch, then the next piece and the end of a home range.
const PIECE_BITS: u32 = 8;
const PIECE_MASK: u64 = (1 << PIECE_BITS) - 1;

/// Most pieces a task may have.
pub(crate) const MAX_PIECES: usize = PIECE_MASK as usize;

fn pack(epoch: u64, next: usize, end: usize) -> u64 {
    (epoch << (2 * PIECE_BITS)) | ((next as u64) << PIECE_BITS) | end as u64
}

/// A piece's state word: the epoch it was settled in, the member that ran it, and how.
const DONE: u64 = 1;
const TAKEN: u64 = 2;

fn settled(epoch: u64, m: usize, how: u64) -> u64 {
    (epoch << 10) | ((m as u64) << 2) | how
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
    /// The current job, behind a sequence number (odd while the leader writes it, twice the
    /// epoch once written): a helper copies it and keeps the copy only if the number did not
    /// change meanwhile.
    job_seq: AtomicU64,
    job_run: AtomicUsize,
    job_commit: AtomicUsize,
    job_words: [AtomicUsize; WORDS],
    pieces: AtomicUsize,
    /// Per member: the current task's epoch, and its home range's pieces still unclaimed.
    claims: Vec<Line<AtomicU64>>,
    /// Per piece: how it was settled (see [`settled`]).
    states: Vec<AtomicU64>,
    /// A helper's piece panicked: its payload, for the leader to raise.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    poisoned: AtomicBool,
    stop: AtomicBool,
    /// Nanoseconds the leader waited for helpers' pieces, whether helpers ran any piece, and
    /// pieces the leader took over, since [`Team::take_help`].
    waited: AtomicU64,
    helped: AtomicBool,
    taken: AtomicUsize,
    /// The leader's last quickest own piece (f64 bits), for tasks it ran none of.
    piece_secs: AtomicU64,
    /// Whether the helpers were spawned (at the first shared task).
    spawned: AtomicBool,
    /// Per member: its thread once it serves, whether it is parked or about to park, and
    /// whether it is inside a task (from its copy of the job to its last piece).
    threads: Vec<OnceLock<Thread>>,
    asleep: Vec<Line<AtomicBool>>,
    inside: Vec<Line<AtomicBool>>,
}

impl Team {
    fn new(size: usize) -> Team {
        Team {
            size,
            epoch: Line(AtomicU64::new(0)),
            job_seq: AtomicU64::new(0),
            job_run: AtomicUsize::new(0),
            job_commit: AtomicUsize::new(0),
            job_words: std::array::from_fn(|_| AtomicUsize::new(0)),
            pieces: AtomicUsize::new(0),
            claims: (0..size).map(|_| Line(AtomicU64::new(0))).collect(),
            states: (0..MAX_PIECES).map(|_| AtomicU64::new(0)).collect(),
            panic: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waited: AtomicU64::new(0),
            helped: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
            piece_secs: AtomicU64::new(20e-6f64.to_bits()),
            spawned: AtomicBool::new(false),
            threads: (0..size).map(|_| OnceLock::new()).collect(),
            asleep: (0..size).map(|_| Line(AtomicBool::new(false))).collect(),
            inside: (0..size).map(|_| Line(AtomicBool::new(false))).collect(),
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

    /// Publishes `job` for task `epoch` (see `job_seq`).
    fn publish(&self, job: &Job, epoch: u64) {
        self.job_seq.store(2 * epoch - 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.job_run.store(job.run as usize, Ordering::Relaxed);
        self.job_commit
            .store(job.commit.map_or(0, |f| f as usize), Ordering::Relaxed);
        for (w, &v) in self.job_words.iter().zip(&job.words) {
            w.store(v, Ordering::Relaxed);
        }
        self.job_seq.store(2 * epoch, Ordering::Release);
    }

    /// A helper's copy of the job of task `epoch`, if it is still the current one.
    fn copy_job(&self, epoch: u64) -> Option<Job> {
        if self.job_seq.load(Ordering::Acquire) != 2 * epoch {
            return None;
        }
        let run = self.job_run.load(Ordering::Relaxed);
        let commit = self.job_commit.load(Ordering::Relaxed);
        let words = std::array::from_fn(|i| self.job_words[i].load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        if self.job_seq.load(Ordering::Relaxed) != 2 * epoch || run == 0 {
            return None;
        }
        // SAFETY: the words were stored from `PieceFn`s by `publish` (0: none), and the
        // sequence number shows they were not being rewritten while they were read.
        let as_fn = |v: usize| unsafe { std::mem::transmute::<usize, PieceFn>(v) };
        Some(Job {
            run: as_fn(run),
            commit: (commit != 0).then(|| as_fn(commit)),
            words,
        })
    }

    /// Runs every piece `p < pieces` of `job` (or the whole of it as piece 0 of 1 when the
    /// team has no helper), returning when all are done and in place. Called by the leader
    /// only.
    ///
    /// # Safety
    /// `job.run` and `job.commit` may be called with `job.words` from any member's thread
    /// until the team ends (not only until this returns: a helper the leader took a piece
    /// over from runs on); each piece writes only its own part of the results.
    pub(crate) unsafe fn run(self: &Arc<Self>, pieces: usize, job: &Job) {
        assert!(pieces <= MAX_PIECES, "more pieces than a claim word holds");
        if pieces <= 1 || self.size <= 1 {
            return (job.run)(&job.words, 0, 1, 0);
        }
        if !self.spawned.swap(true, Ordering::Relaxed) {
            for m in 1..self.size {
                let team = Arc::clone(self);
                rayon::spawn(move || team.serve(m));
            }
        }
        let epoch = self.epoch.0.load(Ordering::Relaxed) + 1;
        self.publish(job, epoch);
        self.pieces.store(pieces, Ordering::Relaxed);
        for (m, word) in self.claims.iter().enumerate() {
            let home = |m: usize| pieces * m / self.size;
            word.0
                .store(pack(epoch, home(m), home(m + 1)), Ordering::Relaxed);
        }
        // SeqCst, against a helper's going to sleep (see `serve`).
        self.epoch.0.store(epoch, Ordering::SeqCst);
        self.wake();

        // The leader's pieces; after a panic in one, the rest only settle.
        let mut mine = [0u64; MAX_PIECES.div_ceil(64)];
        let mut own = 0;
        let mut panicked = None;
        // The leader's quickest own piece: what a piece costs when its thread is not
        // descheduled in the middle of it.
        let mut quickest = f64::INFINITY;
        while let Some(p) = self.claim_any(0, epoch) {
            mine[p / 64] |= 1 << (p % 64);
            own += 1;
            if panicked.is_none() {
                let start = Instant::now();
                panicked =
                    catch_unwind(AssertUnwindSafe(|| (job.run)(&job.words, p, pieces, 0))).err();
                quickest = quickest.min(start.elapsed().as_secs_f64());
            }
        }
        // Every piece is claimed: settle those helpers have started.
        if own < pieces {
            let piece_secs = if quickest.is_finite() {
                self.piece_secs.store(quickest.to_bits(), Ordering::Relaxed);
                quickest
            } else {
                f64::from_bits(self.piece_secs.load(Ordering::Relaxed))
            };
            let patience = Duration::from_secs_f64(piece_secs * TAKEOVER_FACTOR) + TAKEOVER_SLACK;
            let waiting = Instant::now();
            let mut helped = false;
            for p in (0..pieces).filter(|p| mine[p / 64] & (1 << (p % 64)) == 0) {
                let mut spins = 0u32;
                loop {
                    let v = self.states[p].load(Ordering::Acquire);
                    if v >> 10 == epoch && v & 3 == DONE {
                        if let (Some(commit), None) = (job.commit, &panicked) {
                            commit(&job.words, p, pieces, ((v >> 2) & 255) as usize);
                        }
                        helped = true;
                        break;
                    }
                    spins = spins.wrapping_add(1);
                    if !spins.is_multiple_of(16) {
                        std::hint::spin_loop();
                        continue;
                    }
                    let waited = waiting.elapsed();
                    if job.commit.is_some() && waited > patience {
                        let taken = settled(epoch, 0, TAKEN);
                        if self.states[p]
                            .compare_exchange(v, taken, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            if panicked.is_none() {
                                panicked = catch_unwind(AssertUnwindSafe(|| {
                                    (job.run)(&job.words, p, pieces, 0)
                                }))
                                .err();
                            }
                            self.taken.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    } else if waited > SPIN {
                        // The helper may be waiting for this core.
                        std::thread::yield_now();
                    }
                }
            }
            let ns = waiting.elapsed().as_nanos() as u64;
            self.waited.fetch_add(ns, Ordering::Relaxed);
            if helped {
                self.helped.store(true, Ordering::Relaxed);
            }
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

    /// Seconds the leader waited for helpers' pieces since the last call, whether helpers
    /// ran any piece since then, and how many pieces the leader took over.
    pub(crate) fn take_help(&self) -> (f64, bool, usize) {
        let waited = self.waited.swap(0, Ordering::Relaxed) as f64 * 1e-9;
        let helped = self.helped.swap(false, Ordering::Relaxed);
        (waited, helped, self.taken.swap(0, Ordering::Relaxed))
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

    /// Helper `m`'s pieces of task `epoch`, from its own copy of the job.
    fn work(&self, m: usize, epoch: u64) {
        let Some(job) = self.copy_job(epoch) else {
            return;
        };
        let pieces = self.pieces.load(Ordering::Relaxed);
        while let Some(p) = self.claim_any(m, epoch) {
            // SAFETY: the leader keeps what the job's words point at alive until no helper
            // is inside a task (`StopOnDrop`), and no other piece of this task writes this
            // piece's part of the results.
            let ran = catch_unwind(AssertUnwindSafe(|| unsafe {
                (job.run)(&job.words, p, pieces, m)
            }));
            if let Err(e) = ran {
                if let Ok(mut slot) = self.panic.lock() {
                    slot.get_or_insert(e);
                }
                self.poisoned.store(true, Ordering::Release);
            }
            // Done, unless the leader took the piece over meanwhile: then the result stays
            // in this helper's buffers, never copied.
            let state = &self.states[p];
            let v = state.load(Ordering::Acquire);
            if v >> 10 != epoch {
                let _ = state.compare_exchange(
                    v,
                    settled(epoch, m, DONE),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
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
                // Inside first, then the look at `stop` (both SeqCst): either the leader's
                // last wait sees this flag, or this load sees the stop.
                self.inside[m].0.store(true, Ordering::SeqCst);
                if self.stop.load(Ordering::SeqCst) {
                    self.inside[m].0.store(false, Ordering::Release);
                    return;
                }
                self.work(m, epoch);
                self.inside[m].0.store(false, Ordering::Release);
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

/// Stops the helpers when the leader's work ends, panics included, and waits until none is
/// inside a task (a helper the leader took a piece over from may still be reading the
/// buffers the job's words point at).
struct StopOnDrop<'a>(&'a Team);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        self.0.wake();
        for inside in &self.0.inside[1..] {
            let mut spins = 0u32;
            while inside.0.load(Ordering::SeqCst) {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(16) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
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
#[path = "team_tests.rs"]
mod tests;
