//! The `rnn-run` command: argument parsing, running, reporting, exit codes.
//!
//! Exit codes: 0 when all went well, 1 when `--expect` found a mismatch, 2 for every error.
//! Errors are printed on stderr as one line starting with `error: `.

mod args;
mod compare;
mod format;
mod inputs;
mod inspect;
mod json;
mod output;
mod report;
mod serve;

use std::ffi::OsString;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rnn_run::{npy, LoadOptions, Model, StreamOptions, Tensor};

use args::{Command, InspectArgs, RunArgs};
use report::{Bench, OutputReport, RunReport};

/// Exit code for a `--expect` mismatch.
const EXIT_MISMATCH: i32 = 1;
/// Exit code for every error.
const EXIT_ERROR: i32 = 2;

/// Runs the command line and returns the process's exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let command = match args::parse(argv) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            eprintln!("{}", usage_error(&e));
            return EXIT_ERROR;
        }
    };
    // A safety net: a panic inside tract (or anywhere) becomes one `error: ` line and exit
    // code 2 instead of a backtrace. The hook only records the message and where it happened.
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut slot) = PANIC.lock() {
            *slot = Some(rnn_run::describe_panic(info));
        }
    }));
    let result = std::panic::catch_unwind(move || match command {
        Command::Run(a) => run(a),
        Command::Inspect(a) => inspect(a),
        Command::ServeBench(a) => serve::serve_bench(a),
    });
    match result {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&e));
            EXIT_ERROR
        }
        Err(_) => {
            let message = PANIC
                .lock()
                .ok()
                .and_then(|m| m.clone())
                .unwrap_or_default();
            eprintln!("error: internal error, this model cannot be handled: {message}");
            EXIT_ERROR
        }
    }
}

static PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// clap's message on one line (without the usage block), pointing at `--help`.
fn usage_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut text = String::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str(if text.ends_with(':') { " " } else { "; " });
        }
        text.push_str(line);
    }
    if !text.starts_with("error:") {
        text = format!("error: {text}");
    }
    if text.ends_with(':') {
        text.pop();
    }
    format!("{text} (see rnn-run --help)")
}

/// The error and its causes on one line, without repeating a cause already quoted.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = vec![];
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Writes the report on stdout. A closed stdout (`rnn-run ... | head`) is not an error worth
/// reporting, and must not panic as `print!` would.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn load(path: &std::path::Path, engine: args::EngineArg, threads: u32) -> Result<Model> {
    load_with(path, engine, threads, args::WeightsArg::Full)
}

fn load_with(
    path: &std::path::Path,
    engine: args::EngineArg,
    threads: u32,
    weights: args::WeightsArg,
) -> Result<Model> {
    if engine == args::EngineArg::Tract && weights != args::WeightsArg::Full {
        bail!("--recurrent-weights applies to the native cells; --engine tract keeps the weights as they are");
    }
    let options = LoadOptions {
        engine: engine.into(),
        threads: threads as usize,
        recurrent_weights: weights.into(),
        ..Default::default()
    };
    Model::load_with(path, &options).map_err(|e| anyhow!("cannot load model: {e}"))
}

fn inspect(a: InspectArgs) -> Result<i32> {
    let print = |view: &inspect::Inspected| {
        if a.json {
            emit(&format!("{}\n", inspect::inspect_json(view).pretty()));
        } else {
            emit(&inspect::inspect_text(view));
        }
    };
    let failure = match load(&a.model, a.engine, 1) {
        Ok(model) => {
            print(&inspect::Inspected::of(&model));
            return Ok(0);
        }
        Err(e) => e,
    };
    // tract could not load it: what the protobuf says is still worth showing, with why,
    // when the file is an ONNX model at all (exit code 2 either way).
    let Ok(info) = rnn_run::ModelInfo::from_file(&a.model) else {
        return Err(failure);
    };
    let nodes: Vec<rnn_run::RecurrentNode> = info
        .recurrent
        .iter()
        .map(|found| rnn_run::RecurrentNode {
            spec: found.spec.clone(),
            subgraph: found.subgraph.clone(),
            quantized: found.quantized,
            engine: a.engine.into(),
            weights_prepared: found.constant_weights,
        })
        .collect();
    let source = a.model.display().to_string();
    print(&inspect::Inspected {
        source: &source,
        info: &info,
        inputs: &info.inputs,
        outputs: &info.outputs,
        nodes: &nodes,
        engine: a.engine.into(),
        status: inspect::Status::Failed(one_line(&failure)),
    });
    Err(failure)
}

fn run(a: RunArgs) -> Result<i32> {
    let start = Instant::now();
    let model = load_with(&a.model, a.engine, a.threads, a.recurrent_weights)?;
    let load_ms = elapsed_ms(start);

    let bound = inputs::bind(&model, &a.inputs, a.chunk.is_some())?;
    let tensors: Vec<Tensor> = bound.into_iter().map(|b| b.tensor).collect();

    let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
    let safe = output::safe_names(names.iter().copied());
    let references = if a.expect.is_empty() {
        None
    } else {
        Some(compare::load_references(&a.expect, model.outputs(), &safe)?)
    };
    if let Some(dir) = &a.output {
        output::create_dir(dir)?;
    }

    // The plan specialized to these inputs' shapes is made before the timed run, so that
    // `run_ms` is the run alone and `plan_ms` what a first run at new shapes costs on top.
    let plan_ms = match a.chunk {
        None => Some(
            model
                .prepare(&tensors)
                .map_err(|e| anyhow!("run failed: {e}"))?
                .as_secs_f64()
                * 1000.0,
        ),
        Some(_) => None,
    };
    let stream_options = StreamOptions {
        time_axes: args::named_axes(&model, &a.time_axis, "--time-axis")?,
    };
    if a.chunk.is_none() && !a.time_axis.is_empty() {
        bail!("--time-axis names the time axes of a stream: use it with --chunk N");
    }
    let mut pushes = 0;
    let mut run_once = |inputs: Vec<Tensor>| -> Result<Vec<Tensor>> {
        match a.chunk {
            Some(n) => model
                .run_chunked_with(&stream_options, inputs, n as usize)
                .map(|(outputs, n)| {
                    pushes = n;
                    outputs
                }),
            None => model.run(inputs),
        }
        .map_err(|e| anyhow!("run failed: {e}"))
    };

    // Only --bench runs the inputs again; a single run takes them, so a long input is never
    // held twice.
    let (first, again) = match a.bench {
        Some(n) => (tensors.clone(), Some((n, tensors))),
        None => (tensors, None),
    };
    let start = Instant::now();
    let outputs = run_once(first)?;
    let run_ms = elapsed_ms(start);

    let bench = match again {
        None => None,
        Some((n, tensors)) => {
            // The run above was the warm-up.
            let mut times = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let inputs = tensors.clone();
                let start = Instant::now();
                run_once(inputs).context("during --bench")?;
                times.push(elapsed_ms(start));
            }
            Some(Bench::from_times(times))
        }
    };

    if outputs.len() != model.outputs().len() {
        return Err(anyhow!(
            "the model produced {} outputs, its graph declares {}",
            outputs.len(),
            model.outputs().len()
        ));
    }

    let mut paths = vec![None; outputs.len()];
    if let Some(dir) = &a.output {
        for (i, t) in outputs.iter().enumerate() {
            let path = dir.join(format!("{}.npy", safe[i]));
            npy::write_npy(&path, t)
                .map_err(|e| anyhow!("cannot write output '{}': {e}", names[i]))?;
            paths[i] = Some(path.display().to_string());
        }
    }

    let mut comparisons: Vec<Option<_>> = (0..outputs.len()).map(|_| None).collect();
    if let Some(refs) = &references {
        for (i, (t, r)) in outputs.iter().zip(refs).enumerate() {
            let c = compare::compare(t, &r.tensor, a.rtol, a.atol).with_context(|| {
                format!("cannot compare output '{}' with {}", names[i], r.source)
            })?;
            comparisons[i] = Some((c, r.tensor.datum_type(), r.source.clone()));
        }
    }

    let report = RunReport {
        model: a.model.display().to_string(),
        outputs: model
            .outputs()
            .iter()
            .zip(&outputs)
            .zip(paths)
            .zip(comparisons)
            .map(|(((info, tensor), path), comparison)| OutputReport {
                info,
                tensor,
                path,
                comparison,
            })
            .collect(),
        load_ms,
        plan_ms,
        run_ms,
        stream: a.chunk.map(|chunk| (chunk as usize, pushes)),
        recurrent_weights: match a.recurrent_weights {
            args::WeightsArg::Full => None,
            w => Some(rnn_run::WeightFormat::from(w).name()),
        },
        bench,
        rtol: a.rtol,
        atol: a.atol,
    };
    if a.json {
        emit(&format!("{}\n", report.json().pretty()));
    } else {
        emit(&report.text());
    }

    if report.all_ok() == Some(false) {
        for o in &report.outputs {
            if let Some((c, exp_dt, source)) = &o.comparison {
                if !c.ok() {
                    let lines = c.where_lines(o.tensor.datum_type(), *exp_dt);
                    let detail = match &c.error {
                        Some(e) => e.clone(),
                        None => {
                            let mut d =
                                format!("{} of {} values outside tolerance", c.mismatched, c.total);
                            if c.nan.one_sided > 0 {
                                d.push_str(&format!(" ({} NaN on one side only)", c.nan.one_sided));
                            }
                            for line in lines {
                                d.push_str("; ");
                                d.push_str(&line);
                            }
                            d
                        }
                    };
                    eprintln!(
                        "mismatch: output '{}' differs from {source}: {detail}",
                        o.info.name
                    );
                }
            }
        }
        return Ok(EXIT_MISMATCH);
    }
    Ok(0)
}
