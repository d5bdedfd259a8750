//! The team's tests: every piece lands once per task, whatever helpers do (start late or
//! never, stall, panic, get taken over).

use super::*;

/// What the test jobs count: per slot of 12, the results that landed in place; per
/// helper and slot, its own result not yet copied; and what a piece does first.
struct Ctx<'a> {
    counts: Vec<AtomicUsize>,
    own: Vec<Vec<AtomicUsize>>,
    slow: &'a (dyn Fn(usize, usize) + Sync),
}

impl<'a> Ctx<'a> {
    fn new(size: usize, slow: &'a (dyn Fn(usize, usize) + Sync)) -> Self {
        let slots = || (0..12).map(|_| AtomicUsize::new(0)).collect();
        Ctx {
            counts: slots(),
            own: (0..size).map(|_| slots()).collect(),
            slow,
        }
    }

    /// A task of `pieces` slots; with `takeover`, helpers' results go through `commit`.
    fn job(&self, pieces: usize, takeover: bool) -> Job {
        let mut words = [0; WORDS];
        words[0] = self as *const Ctx as usize;
        words[1] = pieces;
        words[2] = usize::from(takeover);
        Job {
            run: piece,
            commit: takeover.then_some(commit as PieceFn),
            words,
        }
    }

    fn counts(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Piece p of n covers slots [p·pieces/n, (p+1)·pieces/n): in place for the leader or
/// a job without takeover, else in the helper's own slots (set, as a result is written).
unsafe fn piece(w: &Words, p: usize, n: usize, m: usize) {
    let ctx = &*(w[0] as *const Ctx);
    (ctx.slow)(m, p);
    let slots = p * w[1] / n..(p + 1) * w[1] / n;
    for k in slots {
        match m > 0 && w[2] != 0 {
            true => ctx.own[m][k].store(1, Ordering::Relaxed),
            false => _ = ctx.counts[k].fetch_add(1, Ordering::Relaxed),
        }
    }
}

unsafe fn commit(w: &Words, p: usize, n: usize, m: usize) {
    let ctx = &*(w[0] as *const Ctx);
    for k in p * w[1] / n..(p + 1) * w[1] / n {
        let v = ctx.own[m][k].swap(0, Ordering::Relaxed);
        ctx.counts[k].fetch_add(v, Ordering::Relaxed);
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Runs `tasks` tasks of 1 to 12 pieces on a team: how many results landed per slot (a
/// task run alone covers all of its slots at once), and the pieces taken over.
fn count_pieces(
    threads: usize,
    size: usize,
    tasks: usize,
    takeover: bool,
    slow: &(dyn Fn(usize, usize) + Sync),
) -> (Vec<usize>, usize) {
    let ctx = Ctx::new(size, slow);
    let taken = pool(threads).install(|| {
        with_team(size, |team| {
            let mut taken = 0;
            for task in 0..tasks {
                let pieces = 1 + task % 12;
                // SAFETY: ctx outlives the team; pieces write disjoint slots.
                unsafe { team.run(pieces, &ctx.job(pieces, takeover)) };
                taken += team.take_help().2;
            }
            taken
        })
    });
    (ctx.counts(), taken)
}

fn want(tasks: usize) -> Vec<usize> {
    (0..12)
        .map(|p| (0..tasks).filter(|t| p < 1 + t % 12).count())
        .collect()
}

#[test]
fn every_piece_lands_once_per_task_on_any_pool() {
    // Pools smaller than the team, and pieces fewer or more than members: the leader
    // runs what no helper takes.
    for threads in [1, 2, 4] {
        for size in [1, 2, 3, 5] {
            for takeover in [false, true] {
                let (counts, _) = count_pieces(threads, size, 600, takeover, &|_, _| {});
                assert_eq!(counts, want(600), "{threads} threads, team of {size}");
            }
        }
    }
}

#[test]
fn a_helper_that_stalls_costs_no_piece() {
    // Pieces asleep now and then (on whichever thread): the leader waits for helpers'
    // started pieces, or takes them over, and every result still lands once per task
    // (a late result of a piece taken over is never copied).
    let n = AtomicUsize::new(0);
    let slow = |_, _| {
        if n.fetch_add(1, Ordering::Relaxed).is_multiple_of(7) {
            std::thread::sleep(Duration::from_micros(300));
        }
    };
    for size in [2, 3] {
        for takeover in [false, true] {
            let (counts, taken) = count_pieces(3, size, 3000, takeover, &slow);
            assert_eq!(counts, want(3000), "team of {size}, takeover {takeover}");
            assert!(takeover || taken == 0);
        }
    }
}

#[test]
fn the_leader_takes_over_a_piece_a_helper_is_stuck_in() {
    // A helper's first piece blocks until the leader has finished 200 tasks: the leader
    // must take that piece over (and any later one of that helper) rather than wait for
    // it. A leader that waited would time out the helper (5 s) and fail here. The
    // leader's pieces take 50 µs, so that the helper starts while there are some left.
    let finished = AtomicBool::new(false);
    let stuck = AtomicBool::new(false);
    let slow = |m: usize, _| {
        if m == 0 {
            std::thread::sleep(Duration::from_micros(50));
        } else if !stuck.swap(true, Ordering::SeqCst) {
            let t = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                assert!(t.elapsed() < Duration::from_secs(5), "the leader waited");
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    };
    let ctx = Ctx::new(2, &slow);
    let taken = pool(2).install(|| {
        with_team(2, |team| {
            let mut taken = 0;
            for _ in 0..200 {
                // SAFETY: ctx outlives the team; pieces write disjoint slots.
                unsafe { team.run(4, &ctx.job(4, true)) };
                taken += team.take_help().2;
            }
            finished.store(true, Ordering::SeqCst);
            taken
        })
    });
    assert!(stuck.load(Ordering::SeqCst), "no helper ran a piece");
    assert!(taken >= 1);
    let mut expected = vec![200; 4];
    expected.resize(12, 0);
    assert_eq!(ctx.counts(), expected);
}

#[test]
fn parked_helpers_wake_for_the_next_task_and_the_end() {
    // Pauses between tasks longer than a helper yields, so that it parks and is woken
    // for the next task (or the team's end) while pieces of the last may still run:
    // every piece lands once per task, on two teams in a row on the same pool.
    let pool = pool(2);
    let slow = |_, _| std::thread::sleep(Duration::from_micros(200));
    for takeover in [false, true] {
        let ctx = Ctx::new(2, &slow);
        pool.install(|| {
            with_team(2, |team| {
                for _ in 0..30 {
                    // SAFETY: ctx outlives the team; pieces write disjoint slots.
                    unsafe { team.run(4, &ctx.job(4, takeover)) };
                    std::thread::sleep(YIELD * 3);
                }
            })
        });
        assert_eq!(&ctx.counts()[..4], [30; 4]);
    }
}

#[test]
fn a_helper_that_never_starts_leaves_every_piece_to_the_leader() {
    // A pool of one thread: the helper's job waits behind the leader's for the whole
    // team's life, and starts only to find the team stopped.
    let pool = pool(1);
    let leader = pool.install(|| std::thread::current().id());
    let others = AtomicUsize::new(0);
    let slow = |_, _| {
        if std::thread::current().id() != leader {
            others.fetch_add(1, Ordering::Relaxed);
        }
    };
    let ctx = Ctx::new(2, &slow);
    pool.install(|| {
        with_team(2, |team| {
            for _ in 0..100 {
                // SAFETY: ctx outlives the team; pieces write disjoint slots.
                unsafe { team.run(3, &ctx.job(3, true)) };
            }
        })
    });
    assert_eq!(others.load(Ordering::Relaxed), 0);
    assert_eq!(count_pieces(1, 2, 600, true, &|_, _| {}).0, want(600));
}

#[test]
fn a_panicking_piece_reaches_the_leader() {
    // Piece 1 panics, on whichever thread runs it.
    let slow = |_, p: usize| assert!(p == 0, "piece {p}");
    for takeover in [false, true] {
        let ctx = Ctx::new(2, &slow);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            pool(2).install(|| {
                with_team(2, |team| {
                    for _ in 0..1000 {
                        // SAFETY: ctx outlives the team; pieces write disjoint slots.
                        unsafe { team.run(2, &ctx.job(2, takeover)) };
                    }
                })
            })
        }));
        assert!(r.is_err());
    }
}
