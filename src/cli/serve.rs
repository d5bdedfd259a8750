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
        batch_axes: None,
    };
    let frame_infos = model
        .stream_pool(options.clone(), shared.clone())
        .map_err(|e| anyhow!("cannot pool this model: {e}"))?
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
            "a frame holds {} input{} ({}), found {} files",
            infos.len(),
            if infos.len() == 1 { "" } else { "s" },
            infos
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
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
