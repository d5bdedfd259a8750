//! Chunked runs against whole runs: the promise a stream makes.

use rnn_run::{Model, StreamOutput, Tensor};

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
