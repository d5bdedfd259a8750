//! The streaming promise on random graphs (`tests/common/random_graph.rs`): every graph a
//! stream accepts gives, under random chunk schedules, what one whole run gives; every
//! refusal names a node that really mixes time steps; and a graph without such a node is
//! accepted.
//!
//! `RNN_RUN_PROP_GRAPHS=N` sets how many graphs (default 3000), `RNN_RUN_PROP_SEED=S` replays
//! one graph (its seed is printed on failure).

mod common;

use common::random_graph::Seeded;
use common::streaming::{check_random_graph, Outcome};

#[test]
fn accepted_streams_equal_whole_runs_and_refusals_name_a_mixer() {
    if let Ok(seed) = std::env::var("RNN_RUN_PROP_SEED") {
        let seed: u64 = seed.parse().unwrap();
        match check_random_graph(&mut Seeded(seed)) {
            Ok(Outcome::Streamed(d)) => {
                eprintln!("seed {seed}: streamed, largest difference {d:e}")
            }
            Ok(Outcome::Refused) => eprintln!("seed {seed}: refused by name"),
            Ok(Outcome::Skipped(why)) => eprintln!("seed {seed}: skipped: {why}"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
        return;
    }
    let n: u64 = std::env::var("RNN_RUN_PROP_GRAPHS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let (mut streamed, mut refused, mut skipped, mut worst) = (0, 0, vec![], 0.0f64);
    let mut failures = vec![];
    for seed in 0..n {
        match check_random_graph(&mut Seeded(seed)) {
            Ok(Outcome::Streamed(d)) => {
                streamed += 1;
                worst = worst.max(d);
            }
            Ok(Outcome::Refused) => refused += 1,
            Ok(Outcome::Skipped(why)) => skipped.push(format!("seed {seed}: {why}")),
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    eprintln!(
        "{n} random graphs: {streamed} streamed exactly (largest difference {worst:e}), \
         {refused} refused naming a mixer, {} not run by tract whole",
        skipped.len()
    );
    for s in skipped.iter().take(5) {
        eprintln!("  skipped {s}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The generator must keep exercising both sides, and tract must run almost all graphs.
    assert!(
        streamed * 4 > n as usize && refused * 10 > n as usize,
        "{streamed} streamed, {refused} refused"
    );
    assert!(
        skipped.len() * 50 < n as usize,
        "{} graphs skipped",
        skipped.len()
    );
}
