//! `rnn-run serve-bench`: many concurrent streams of a model, pooled into batched steps and
//! then each on its own.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rnn_run::{npy, Dim, Model, PoolOptions, Tensor};

use super::args::ServeBenchArgs;
use super::json::Json;

pub fn serve_bench(a: ServeBenchArgs) -> Result<i32> {
    let model = Model::load(&a.model).map_err(|e| anyhow!("cannot load model: {e}"))?;
    let feedback = a
        .feedback
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(i, o)| (i.to_string(), o.to_string()))
                .ok_or_else(|| anyhow!("--feedback '{f}': expected INPUT=OUTPUT"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Shared inputs, in the model's input order.
    let mut shared: Vec<(usize, Tensor)> = vec![];
    for s in &a.shared {
        let text = s.to_string_lossy();
        let (name, path) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("--shared '{text}': expected NAME=FILE"))?;
        let ix = model
            .inputs()
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| anyhow!("--shared: the model has no input '{name}'"))?;
        shared.push((
            ix,
            npy::read_npy(path).map_err(|e| anyhow!("--shared {name}: {e}"))?,
        ));
    }
    shared.sort_by_key(|(ix, _)| *ix);
    let shared: Vec<Tensor> = shared.into_iter().map(|(_, t)| t).collect();
    let options = PoolOptions {
        max_batch: a.max_batch as usize,
        max_wait: Duration::from_micros(a.max_wait_us),
        feedback,
        batch_axes: super::args::named_axes(&model, &a.batch_axis, "--batch-axis")?,
        time_axes: super::args::named_axes(&model, &a.time_axis, "--time-axis")?,
    };
    let frame_infos = model
        .stream_pool(options.clone(), shared.clone())
        .map_err(|e| anyhow!("cannot pool this model: {}", pool_hint(&model, &a, e)))?
        .frame_inputs();
    let frame = frame(&frame_infos, &a.frame)?;
    let report = rnn_run::pool::serve_bench(
        &model,
        options,
        shared,
        frame,
        a.streams as usize,
        a.frames as usize,
    )
    .map_err(|e| anyhow!("serve-bench failed: {e}"))?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if a.json {
        let doc = Json::obj()
            .with("model", a.model.display().to_string())
            .with("streams", report.streams)
            .with("frames", report.frames)
            .with("pooled_fps", report.pooled_fps)
            .with("solo_fps", report.solo_fps)
            .with("speedup", report.pooled_fps / report.solo_fps)
            .with("mean_batch", report.mean_batch)
            .with("max_wait_us", a.max_wait_us as f64)
            .with("queued_p50_us", us(report.queued.0))
            .with("queued_p99_us", us(report.queued.1))
            .with("latency_p50_us", us(report.latency.0))
            .with("latency_p99_us", us(report.latency.1));
        super::emit(&format!("{}\n", doc.pretty()));
    } else {
        super::emit(&format!(
            "{} streams x {} frames of {}\n\
             pooled: {:.0} frames/s (mean batch {:.1}; one worker thread)\n\
             solo:   {:.0} frames/s (each stream on its own, one thread)\n\
             speedup {:.2}x\n\
             queued before its step: p50 {:.0} us, p99 {:.0} us (max wait {} us)\n\
             push to result:         p50 {:.0} us, p99 {:.0} us\n",
            report.streams,
            report.frames,
            a.model.display(),
            report.pooled_fps,
            report.mean_batch,
            report.solo_fps,
            report.pooled_fps / report.solo_fps,
            us(report.queued.0),
            us(report.queued.1),
            a.max_wait_us,
            us(report.latency.0),
            us(report.latency.1),
        ));
    }
    Ok(0)
}

/// One stream's frame: the files given (in order, or `name=file`), or zeros with one time
/// step and batch 1.
fn frame(infos: &[rnn_run::IoInfo], files: &[OsString]) -> Result<Vec<Tensor>> {
    if files.is_empty() {
        return infos
            .iter()
            .map(|i| {
                let shape: Vec<usize> = i
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => Ok(*n),
                        Dim::Symbol(s) if s == rnn_run::stream::STREAM_SEQ => Ok(1),
                        Dim::Symbol(s) => Err(anyhow!(
                            "input '{}' has a dimension '{s}' of no known size: give a frame file",
                            i.name
                        )),
                    })
                    .collect::<Result<_>>()?;
                Tensor::zero_dt(i.dtype, &shape)
            })
            .collect();
    }
    if files.len() != infos.len() {
        bail!(
            "a frame holds {}, found {} files",
            rnn_run::IoInfo::counted(infos, "input"),
            files.len()
        );
    }
    let mut by_position: Vec<Option<Tensor>> = vec![None; infos.len()];
    for (k, f) in files.iter().enumerate() {
        let text = f.to_string_lossy();
        let (slot, path) = match text.split_once('=') {
            Some((name, path)) => (
                infos
                    .iter()
                    .position(|i| i.name == name)
                    .ok_or_else(|| anyhow!("the frame has no input '{name}'"))?,
                path.to_string(),
            ),
            None => (k, text.to_string()),
        };
        by_position[slot] = Some(npy::read_npy(&path).map_err(|e| anyhow!("{e}"))?);
    }
    by_position
        .into_iter()
        .zip(infos)
        .map(|(t, i)| t.ok_or_else(|| anyhow!("no file for input '{}'", i.name)))
        .collect()
}

/// A pool refusal, with what the command line can do about it: a model that carries its
/// state through its inputs and outputs (Silero VAD) needs `--feedback`, inputs without a
/// batch axis `--shared`, inputs of no fixed length a frame file.
fn pool_hint(model: &Model, a: &ServeBenchArgs, e: rnn_run::Error) -> String {
    let pairs = if a.feedback.is_empty() {
        state_pairs(model)
    } else {
        vec![]
    };
    if pairs.is_empty() {
        return match e {
            rnn_run::Error::NotStreamable(m) => m,
            e => e.to_string(),
        };
    }
    let given: Vec<String> = a
        .shared
        .iter()
        .filter_map(|s| Some(s.to_string_lossy().split_once('=')?.0.to_string()))
        .collect();
    let scalars: Vec<&str> = model
        .inputs()
        .iter()
        .filter(|i| i.shape.is_empty() && !given.contains(&i.name))
        .map(|i| i.name.as_str())
        .collect();
    let mut hint = format!(
        "the model carries its state through its inputs and outputs ({}), one frame per \
         call: pool it with {}",
        pairs
            .iter()
            .map(|(i, o)| format!("'{i}' in, '{o}' out"))
            .collect::<Vec<_>>()
            .join("; "),
        pairs
            .iter()
            .map(|(i, o)| format!("--feedback {i}={o}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for s in scalars {
        hint.push_str(&format!(" --shared {s}=FILE.npy"));
    }
    let open: Vec<&str> = model
        .inputs()
        .iter()
        .filter(|i| !pairs.iter().any(|(p, _)| *p == i.name) && !i.shape.is_empty())
        .filter(|i| {
            i.shape
                .iter()
                .filter(|d| matches!(d, Dim::Symbol(_)))
                .count()
                > 1
        })
        .map(|i| i.name.as_str())
        .collect();
    if !open.is_empty() {
        hint.push_str(&format!(
            " and a frame file for {} (batch 1; its other lengths are the model's to choose)",
            open.join(", ")
        ));
    }
    hint
}

/// (input, output) pairs of a model that carries a state through them: same element type
/// and shape (symbolic dimensions aside), and the output's name the input's with a suffix
/// (`state` → `stateN`, `h0` → `hn`), or the only output of that shape.
pub fn state_pairs(model: &Model) -> Vec<(String, String)> {
    let same = |a: &rnn_run::IoInfo, b: &rnn_run::IoInfo| {
        a.dtype == b.dtype
            && a.shape.len() == b.shape.len()
            && !a.shape.is_empty()
            && a.shape.iter().zip(&b.shape).all(|(x, y)| match (x, y) {
                (Dim::Fixed(m), Dim::Fixed(n)) => m == n,
                _ => true,
            })
    };
    let mut pairs = vec![];
    for input in model.inputs() {
        let candidates: Vec<&rnn_run::IoInfo> = model
            .outputs()
            .iter()
            .filter(|o| same(input, o) && o.name != input.name)
            .collect();
        let stem = input.name.trim_end_matches(|c: char| c.is_ascii_digit());
        let named: Vec<&&rnn_run::IoInfo> = candidates
            .iter()
            .filter(|o| !stem.is_empty() && o.name.starts_with(stem))
            .collect();
        let chosen = match (&named[..], &candidates[..]) {
            ([o], _) => Some(o.name.clone()),
            ([], [o])
                if input
                    .shape
                    .iter()
                    .filter(|d| matches!(d, Dim::Symbol(_)))
                    .count()
                    <= 1 =>
            {
                Some(o.name.clone())
            }
            _ => None,
        };
        if let Some(o) = chosen {
            if !pairs.iter().any(|(_, p)| *p == o) {
                pairs.push((input.name.clone(), o));
            }
        }
    }
    pairs
}
