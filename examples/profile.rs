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
    let ms = |t: f64| t * 1e3 / runs as f64;
    println!("slowest nodes:");
    for (name, op, t) in rows.iter().take(25) {
        let t = t.as_secs_f64();
        println!(
            "{:8.3} ms {:5.1}%  {op:24} {name}",
            ms(t),
            100.0 * t / total
        );
    }
    // Many small nodes of one kind (quantize, im2col, casts) can cost more than the slowest
    // node: the same time by op.
    let mut by_op: Vec<(String, f64, usize)> = Vec::new();
    for (_, op, t) in &rows {
        match by_op.iter_mut().find(|(o, ..)| o == op) {
            Some(entry) => {
                entry.1 += t.as_secs_f64();
                entry.2 += 1;
            }
            None => by_op.push((op.clone(), t.as_secs_f64(), 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("by op:");
    for (op, t, n) in by_op.iter().take(25) {
        println!(
            "{:8.3} ms {:5.1}%  {op:24} {n} node{}",
            ms(*t),
            100.0 * t / total,
            if *n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
