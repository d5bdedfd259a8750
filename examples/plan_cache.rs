//! What a plan specialized to one input signature costs: the time to make it (a first run at
//! new shapes) and the memory it keeps while cached, measured as resident memory growth.
//!
//! `cargo run --release --example plan_cache -- MODEL INPUTS.npz [AXIS]`: runs the model on the
//! inputs with the first input's AXIS (default: the last symbolic one) cut to 8 lengths, one
//! new plan each.

use rnn_run::{Dim, LoadOptions, Model};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: plan_cache MODEL INPUTS.npz [AXIS]");
        std::process::exit(2);
    }
    let options = LoadOptions {
        plan_cache: 16,
        ..Default::default()
    };
    let model = Model::load_with(&args[1], &options)?;
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
    let axis: usize = match args.get(3) {
        Some(a) => a.parse()?,
        None => model.inputs()[0]
            .shape
            .iter()
            .rposition(|d| matches!(d, Dim::Symbol(_)))
            .ok_or("no symbolic axis: give AXIS")?,
    };
    let full = inputs[0].shape()[axis];
    let before = rss_kib();
    let mut build = vec![];
    for k in 0..8 {
        let mut cut = inputs.clone();
        cut[0] = inputs[0].slice(axis, 0, full - k.min(full - 1))?;
        build.push(model.prepare(&cut)?.as_secs_f64() * 1e3);
        model.run(cut)?;
    }
    let grown = rss_kib().saturating_sub(before);
    build.sort_by(f64::total_cmp);
    println!(
        "{}: 8 plans, made in {:.1}-{:.1} ms (median {:.1}); resident memory grew {:.1} MiB, \
         {:.2} MiB per plan ({:?})",
        args[1],
        build[0],
        build[7],
        build[4],
        grown as f64 / 1024.0,
        grown as f64 / 1024.0 / 8.0,
        model.plan_stats()
    );
    Ok(())
}
