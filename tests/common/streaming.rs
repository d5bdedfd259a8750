//! Chunked runs against whole runs: the promise a stream makes.

use rnn_run::{Error, Model, StreamOutput, Tensor};

use super::random_graph::{generate, Choices, Generated};

/// Largest absolute difference between two tensors of the same shape (NaN counts as
/// infinite, a shape mismatch panics with both shapes).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let a = a.cast_to::<f64>().unwrap();
    let b = b.cast_to::<f64>().unwrap();
    let a = a.to_plain_array_view::<f64>().unwrap();
    let b = b.to_plain_array_view::<f64>().unwrap();
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                f64::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f64::max)
}

/// Feeds `inputs` (the model's, in its order) through a stream in chunks of the sizes in
/// `schedule` (cycled), and returns the outputs put back together: per-step outputs
/// concatenated, final ones from the last push. The time axes are the model's own, or
/// `axes` when given.
pub fn run_schedule(
    model: &Model,
    inputs: &[Tensor],
    schedule: &[usize],
    axes: Option<&[Option<usize>]>,
) -> rnn_run::Result<Vec<Tensor>> {
    let axes = match axes {
        Some(a) => a.to_vec(),
        None => model.time_axes()?,
    };
    let (mut time, mut start) = (vec![], vec![]);
    for (t, a) in inputs.iter().zip(&axes) {
        match a {
            Some(a) => time.push((t, *a)),
            None => start.push(t.clone()),
        }
    }
    let options = rnn_run::StreamOptions {
        time_axes: Some(axes.clone()),
    };
    let mut stream = model.stream_with(&options, start)?;
    let steps = time[0].0.shape()[time[0].1];
    let mut pieces: Vec<Vec<Tensor>> = vec![];
    let mut at = 0;
    let mut sizes = schedule.iter().cycle();
    while at < steps {
        let end = (at + sizes.next().unwrap()).min(steps);
        let chunk = time
            .iter()
            .map(|(t, a)| t.slice(*a, at, end).unwrap())
            .collect();
        let outs = stream.push(chunk)?;
        if pieces.is_empty() {
            pieces = vec![vec![]; outs.len()];
        }
        for (k, o) in outs.into_iter().enumerate() {
            pieces[k].push(o);
        }
        at = end;
    }
    assert_eq!(stream.pushes(), pieces[0].len());
    Ok(pieces
        .into_iter()
        .zip(stream.outputs())
        .map(|(mut parts, kind)| match kind {
            StreamOutput::PerStep { axis } => Tensor::stack_tensors(*axis, &parts).unwrap(),
            StreamOutput::Final => parts.pop().unwrap(),
        })
        .collect())
}

/// The schedules every streamable model is tried with: fixed chunks, the whole length, and an
/// uneven one (the buffers a stream keeps must follow a chunk that grows or shrinks).
pub fn schedules(steps: usize) -> Vec<Vec<usize>> {
    vec![
        vec![1],
        vec![3],
        vec![7],
        vec![steps],
        vec![1, 6, 2, 40, 1, 3],
    ]
}

/// The largest difference between the whole run and every schedule's chunked run.
pub fn chunked_vs_whole(model: &Model, inputs: &[Tensor]) -> rnn_run::Result<f64> {
    let whole = model.run(inputs.to_vec())?;
    let axes = model.time_axes()?;
    let (ix, axis) = axes
        .iter()
        .enumerate()
        .find_map(|(i, a)| a.map(|a| (i, a)))
        .expect("a time input");
    let steps = inputs[ix].shape()[axis];
    let mut worst = 0.0f64;
    for schedule in schedules(steps) {
        let chunked = run_schedule(model, inputs, &schedule, None)?;
        for (k, (got, want)) in chunked.iter().zip(&whole).enumerate() {
            if got.shape() != want.shape() {
                return Err(rnn_run::Error::Run(format!(
                    "schedule {schedule:?}, output {k}: shape {:?}, the whole run's {:?}",
                    got.shape(),
                    want.shape()
                )));
            }
            worst = worst.max(max_abs_diff(got, want));
        }
    }
    Ok(worst)
}

/// Inputs for a generated graph: time inputs `[batch, steps, f]`, start inputs with the batch
/// filled in, values in [-1, 1].
fn inputs(g: &Generated, batch: usize, steps: usize, c: &mut impl Choices) -> Vec<Tensor> {
    g.inputs
        .iter()
        .map(|(_, time, dims)| {
            let shape: Vec<usize> = if *time {
                vec![batch, steps, dims[0]]
            } else {
                dims.iter()
                    .map(|&d| if d == 0 { batch } else { d })
                    .collect()
            };
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| c.small_float()).collect();
            Tensor::from_shape(&shape, &data).unwrap()
        })
        .collect()
}

pub enum Outcome {
    Streamed(f64),
    Refused,
    /// The whole run itself fails: tract does not take this graph (not a streaming matter).
    Skipped(String),
}

/// Generates a graph from `c`, runs it whole and through streams under random schedules;
/// fails when an accepted stream differs from the whole run or a refusal names no node that
/// mixes time steps.
pub fn check_random_graph<C: Choices>(c: &mut C) -> Result<Outcome, String> {
    let mixing = [0, 10, 25][c.below(3)];
    let g = generate(c, mixing);
    let describe = || g.description.join("\n  ");
    let model = Model::from_bytes(&g.bytes).map_err(|e| format!("load: {e}\n  {}", describe()))?;
    let batch = 1 + c.below(3);
    let steps = 3 + c.below(10);
    let ins = inputs(&g, batch, steps, c);
    let whole = match model.run(ins.clone()) {
        Ok(w) => w,
        Err(e) => return Ok(Outcome::Skipped(e.to_string())),
    };
    let schedules: Vec<Vec<usize>> = (0..2)
        .map(|_| (0..3).map(|_| 1 + c.below(5)).collect())
        .chain([vec![1]])
        .collect();
    // The time axes are given: the analysis is under test here, not their discovery (which
    // needs a recurrent node, and the fixtures test).
    let axes: Vec<Option<usize>> = g
        .inputs
        .iter()
        .map(|(_, time, _)| time.then_some(1))
        .collect();
    for schedule in schedules {
        match run_schedule(&model, &ins, &schedule, Some(&axes)) {
            Ok(chunked) => {
                let mut worst = 0.0f64;
                for (k, (got, want)) in chunked.iter().zip(&whole).enumerate() {
                    if got.shape() != want.shape() {
                        return Err(format!(
                            "accepted, but output {k} has shape {:?} chunked ({schedule:?}), {:?} whole\n  {}",
                            got.shape(),
                            want.shape(),
                            describe()
                        ));
                    }
                    let d = max_abs_diff(got, want);
                    let scale = want
                        .cast_to::<f32>()
                        .unwrap()
                        .to_plain_array_view::<f32>()
                        .unwrap()
                        .iter()
                        .fold(1.0f64, |m, v| m.max(v.abs() as f64));
                    if d > 1e-5 * scale {
                        return Err(format!(
                            "accepted, but output {k} differs by {d:e} chunked ({schedule:?}) \
                             from whole (mixers: {:?})\n  {}",
                            g.mixers,
                            describe()
                        ));
                    }
                    worst = worst.max(d);
                }
                if schedule == [1] {
                    return Ok(Outcome::Streamed(worst));
                }
            }
            Err(Error::NotStreamable(why)) => {
                let named = why
                    .split("node '")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or("");
                if g.mixers.iter().any(|m| named.starts_with(m.as_str())) {
                    return Ok(Outcome::Refused);
                }
                return Err(format!(
                    "refused, naming no node that mixes time (mixers: {:?}): {why}\n  {}",
                    g.mixers,
                    describe()
                ));
            }
            Err(e) => return Err(format!("stream failed: {e}\n  {}", describe())),
        }
    }
    unreachable!()
}
