//! `serve-bench`: many streams pooled against the same streams run one by one.

use super::*;

/// What [`serve_bench`] measured.
#[derive(Debug, Clone)]
pub struct ServeReport {
    /// Concurrent streams.
    pub streams: usize,
    /// Frames run per stream, each way.
    pub frames: usize,
    /// Frames per second, all streams pooled (one worker thread runs the steps).
    pub pooled_fps: f64,
    /// Frames per second, each stream run on its own (one thread), the same frames.
    pub solo_fps: f64,
    /// Streams per pooled step, on average.
    pub mean_batch: f64,
    /// A pooled frame's wait before its step (p50, p99).
    pub queued: (Duration, Duration),
    /// A pooled frame's time from push to result (p50, p99).
    pub latency: (Duration, Duration),
}

/// Serves `streams` concurrent streams of `model`, `frames` frames each, pooled and then
/// solo, and compares. Each round, every stream pushes `frame` (its batch-1 inputs, the same
/// for all, which does not change the arithmetic's cost) and waits for its result, as calls
/// of a server do. `shared` and `options` are as for [`Model::stream_pool`].
pub fn serve_bench(
    model: &Model,
    options: PoolOptions,
    shared: Vec<Tensor>,
    frame: Vec<Tensor>,
    streams: usize,
    frames: usize,
) -> Result<ServeReport> {
    let feedback = !options.feedback.is_empty();
    let pool = model.stream_pool(options, shared.clone())?;
    let ids: Vec<StreamId> = (0..streams).map(|_| pool.open()).collect::<Result<_>>()?;
    // One warm-up round: plans are made for the batch sizes seen.
    for p in ids
        .iter()
        .map(|id| pool.push(*id, frame.clone()))
        .collect::<Result<Vec<_>>>()?
    {
        p.wait()?;
    }
    let (mut queued, mut latency) = (vec![], vec![]);
    let steps_before = pool.stats().steps;
    let start = Instant::now();
    for _ in 0..frames {
        let pushed = Instant::now();
        let pending = ids
            .iter()
            .map(|id| pool.push(*id, frame.clone()))
            .collect::<Result<Vec<_>>>()?;
        for p in pending {
            let f = p.wait()?;
            queued.push(f.queued);
            latency.push(pushed.elapsed());
        }
    }
    let pooled = start.elapsed();
    let steps = pool.stats().steps - steps_before;

    // Solo: each stream its own, one frame at a time.
    let solo = if feedback {
        let engine = &pool.shared.engine;
        let Kind::Feedback { pairs } = &engine.kind else {
            unreachable!("feedback options make a feedback pool")
        };
        // A batch-1 call: the frame, zeros for the fed-back states, the shared values.
        let (mut pushed, mut shared_values) = (frame.iter(), engine.shared.iter());
        let template = engine
            .roles
            .iter()
            .zip(model.inputs())
            .map(|(role, info)| match role {
                Role::Pushed => Ok(pushed.next().expect("a frame input").clone()),
                Role::Shared => Ok(shared_values.next().expect("a shared input").clone()),
                Role::PerStream => {
                    let shape = batch_one(info, engine.axis_of(&info.name));
                    Tensor::zero_dt(info.dtype, &shape).map_err(|e| Error::Run(chain_message(&e)))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs = pairs.clone();
        drop(pool);
        let mut states: Vec<Vec<Tensor>> =
            vec![pairs.iter().map(|&(i, _)| template[i].clone()).collect(); streams];
        let run = |states: &mut Vec<Vec<Tensor>>| -> Result<()> {
            for s in states.iter_mut() {
                let mut inputs = template.clone();
                for (k, &(i, _)) in pairs.iter().enumerate() {
                    inputs[i] = s[k].clone();
                }
                let out = model.run(inputs)?;
                for (k, &(_, o)) in pairs.iter().enumerate() {
                    s[k] = out[o].clone();
                }
            }
            Ok(())
        };
        run(&mut states)?;
        let start = Instant::now();
        for _ in 0..frames {
            run(&mut states)?;
        }
        start.elapsed()
    } else {
        drop(pool);
        let mut solos: Vec<crate::Stream> = (0..streams)
            .map(|_| model.stream())
            .collect::<Result<_>>()?;
        for s in solos.iter_mut() {
            s.push(frame.clone())?;
        }
        let start = Instant::now();
        for _ in 0..frames {
            for s in solos.iter_mut() {
                s.push(frame.clone())?;
            }
        }
        start.elapsed()
    };
    let percentile = |v: &mut Vec<Duration>, p: f64| -> Duration {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let total = (streams * frames) as f64;
    Ok(ServeReport {
        streams,
        frames,
        pooled_fps: total / pooled.as_secs_f64(),
        solo_fps: total / solo.as_secs_f64(),
        mean_batch: total / steps.max(1) as f64,
        queued: (percentile(&mut queued, 0.5), percentile(&mut queued, 0.99)),
        latency: (
            percentile(&mut latency, 0.5),
            percentile(&mut latency, 0.99),
        ),
    })
}
