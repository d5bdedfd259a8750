//! Where a model's time goes: each node of its plan, longest first.
//!
//! `cargo run --release --example profile -- MODEL INPUTS.npz [RUNS]`

use rnn_run::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: profile MODEL INPUTS.npz [RUNS]");
        std::process::exit(2);
    }
    let model = Model::load(&args[1])?;
    let mut by_name: std::collections::HashMap<String, rnn_run::Tensor> =
        rnn_run::npy::read_npz(&args[2])?.into_iter().collect();
    let inputs = model
        .inputs()
        .iter()
        .map(|i| {
            by_name
                .remove(&i.name)
                .ok_or(format!("no input '{}'", i.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let runs: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(100);
    let rows = model.profile(inputs, runs)?;
    let total: f64 = rows.iter().map(|r| r.2.as_secs_f64()).sum();
    println!("{:.3} ms per run", total * 1e3 / runs as f64);
    for (name, op, t) in rows.iter().take(25) {
        let t = t.as_secs_f64();
        println!(
            "{:8.3} ms {:5.1}%  {op:24} {name}",
            t * 1e3 / runs as f64,
            100.0 * t / total
        );
    }
    Ok(())
}
