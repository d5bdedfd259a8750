//! Command-line syntax. `rnn-run inspect MODEL` is recognised before clap sees the arguments,
//! so that the default form can take `MODEL` positionally.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What the command line asks for.
pub enum Command {
    Run(RunArgs),
    Inspect(InspectArgs),
    ServeBench(ServeBenchArgs),
}

/// Run a model.
#[derive(Parser, Debug)]
#[command(
    name = "rnn-run",
    version,
    about = "Run an ONNX model exported from PyTorch, with exact native RNN/LSTM/GRU cells",
    after_help = "INPUT binds to the graph's inputs in order: `x.npy`, or `name=x.npy`, or one \
                  `.npz` whose keys are input names.\n\nTo describe a model instead: rnn-run \
                  inspect MODEL [--json]\nTo measure a pool of concurrent streams: rnn-run \
                  serve-bench MODEL --streams N\n\nStreaming: --chunk 4 runs 4 time steps per push; \
                  --time-axis x=1 names an input's time axis where the graph does not show it \
                  (repeatable).\n\nExit codes: 0 ok, 1 --expect mismatch, 2 \
                  error."
)]
pub struct RunArgs {
    /// The ONNX model file.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// Input arrays: `x.npy` (graph input order), `name=x.npy`, or one `.npz` keyed by input name.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<OsString>,

    /// Print one JSON document on stdout instead of the readable report.
    #[arg(long)]
    pub json: bool,

    /// Write each output as `<output name>.npy` into DIR (created if needed).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Reference outputs: files in output order, a directory of `<output name>.npy` or
    /// `expected_<i>.npy` files, or one `.npz` keyed by output name.
    #[arg(long, value_name = "REF", num_args = 1..)]
    pub expect: Vec<PathBuf>,

    /// Relative tolerance for --expect: |got - expected| <= atol + rtol * |expected|.
    #[arg(long, value_name = "R", default_value = "1e-4", value_parser = tolerance, allow_negative_numbers = true)]
    pub rtol: f64,

    /// Absolute tolerance for --expect.
    #[arg(long, value_name = "A", default_value = "1e-5", value_parser = tolerance, allow_negative_numbers = true)]
    pub atol: f64,

    /// Time N runs after one warm-up run (loading excluded).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub bench: Option<u32>,

    /// Which implementation runs the recurrent nodes.
    #[arg(long, value_enum, default_value_t = EngineArg::Native)]
    pub engine: EngineArg,

    /// Run through a stream, N time steps per call, with the recurrent state carried between
    /// calls; the outputs equal a whole run's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk: Option<u32>,

    /// With --chunk: the time axis of an input, when the graph does not show it (`x=1`);
    /// repeatable. Inputs not named are given once, at the stream's start.
    #[arg(long, value_name = "INPUT=AXIS")]
    pub time_axis: Vec<String>,

    /// Threads for the recurrent nodes: bidirectional directions side by side, a large step
    /// cut into pieces of hidden units, one per thread (default 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,

    /// How the native cells store the recurrent weights: `full` keeps them exact; `bf16` or
    /// `f16` halve the bytes each time step reads and round the weights (products still sum
    /// in the model's precision). Faster at batch 1 with large hidden sizes; see the README
    /// for the error.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = WeightsArg::Full)]
    pub recurrent_weights: WeightsArg,
}

/// Describe a model: inputs, outputs, opset and recurrent nodes.
#[derive(Parser, Debug)]
#[command(name = "rnn-run inspect", version)]
pub struct InspectArgs {
    /// The ONNX model file.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// Print one JSON document instead of the readable report.
    #[arg(long)]
    pub json: bool,

    /// Which implementation would run the recurrent nodes.
    #[arg(long, value_enum, default_value_t = EngineArg::Native)]
    pub engine: EngineArg,
}

/// Serve many concurrent streams of a model, pooled into batched steps and then each on its
/// own, and compare frames per second and latency.
#[derive(Parser, Debug)]
#[command(
    name = "rnn-run serve-bench",
    version,
    after_help = "Example (Silero VAD, its state fed back, the sample rate shared by every \
                  stream, one frame of 64 samples of context + 512 new ones):\n  rnn-run \
                  serve-bench fixtures/realworld/silero_vad_16k_op15.onnx \
                  fixtures/realworld/frames/silero_16k_frame.npy --feedback state=stateN \
                  --shared sr=fixtures/realworld/frames/sr_16000.npy --streams 8 --frames \
                  20\n\nWhere the graph does not show an input's batch or time axis: \
                  --batch-axis input=0 --batch-axis state=1, --time-axis x=1."
)]
pub struct ServeBenchArgs {
    /// The ONNX model file.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// One frame of one stream: the inputs pushed with every frame (batch 1), as `.npy` files
    /// in input order, `name=x.npy`, or one `.npz`; zeros with one time step when omitted.
    #[arg(value_name = "FRAME")]
    pub frame: Vec<OsString>,

    /// Concurrent streams.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub streams: u32,

    /// Frames per stream.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub frames: u32,

    /// The most streams in one step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,

    /// The longest a frame waits for others, in microseconds.
    #[arg(long, default_value_t = 2000)]
    pub max_wait_us: u64,

    /// A state the model carries through its inputs and outputs: `INPUT=OUTPUT` (Silero VAD:
    /// `state=stateN`); repeatable.
    #[arg(long, value_name = "IN=OUT")]
    pub feedback: Vec<String>,

    /// Values of the inputs every stream shares (a sample rate): `name=x.npy`; repeatable.
    #[arg(long, value_name = "NAME=FILE")]
    pub shared: Vec<OsString>,

    /// The batch axis of an input, when the graph does not show it (`input=0`); repeatable.
    /// Inputs not named are shared by every stream.
    #[arg(long, value_name = "INPUT=AXIS")]
    pub batch_axis: Vec<String>,

    /// For a model that streams: the time axis of an input, when the graph does not show it
    /// (`x=1`); repeatable. Inputs not named are given once per stream.
    #[arg(long, value_name = "INPUT=AXIS")]
    pub time_axis: Vec<String>,

    /// Print one JSON document instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

/// `--engine`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineArg {
    /// rnn-run's native cells.
    Native,
    /// tract's own lowering.
    Tract,
}

impl From<EngineArg> for rnn_run::Engine {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Native => rnn_run::Engine::Native,
            EngineArg::Tract => rnn_run::Engine::Tract,
        }
    }
}

/// `--recurrent-weights`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsArg {
    /// The model's own precision.
    Full,
    /// bfloat16 (8 significant bits, f32's range).
    Bf16,
    /// IEEE half (11 significant bits, range ±65504).
    F16,
}

impl From<WeightsArg> for rnn_run::WeightFormat {
    fn from(w: WeightsArg) -> Self {
        match w {
            WeightsArg::Full => rnn_run::WeightFormat::Full,
            WeightsArg::Bf16 => rnn_run::WeightFormat::Bf16,
            WeightsArg::F16 => rnn_run::WeightFormat::F16,
        }
    }
}

/// `--time-axis` / `--batch-axis`: `INPUT=AXIS` for some inputs, `None` for the others; no
/// flag at all leaves the axes to the graph (`Ok(None)`).
pub fn named_axes(
    model: &rnn_run::Model,
    given: &[String],
    flag: &str,
) -> anyhow::Result<Option<Vec<Option<usize>>>> {
    if given.is_empty() {
        return Ok(None);
    }
    let inputs = model.inputs();
    let mut axes = vec![None; inputs.len()];
    for g in given {
        let (name, axis) = g
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{flag} '{g}': expected INPUT=AXIS (e.g. x=1)"))?;
        let ix = inputs.iter().position(|i| i.name == name).ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} '{g}': the model has no input '{name}' (its inputs: {})",
                inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let rank = inputs[ix].shape.len();
        let axis: usize = axis.parse().ok().filter(|a| *a < rank).ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} '{g}': input '{name}' has {rank} ax{} (0 to {}), '{axis}' is not one",
                if rank == 1 { "is" } else { "es" },
                rank.saturating_sub(1)
            )
        })?;
        if axes[ix].is_some() {
            anyhow::bail!("{flag} names input '{name}' twice");
        }
        axes[ix] = Some(axis);
    }
    Ok(Some(axes))
}

fn tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a finite, non-negative number"));
    }
    Ok(v)
}

/// Parses the whole command line (`argv[0]` included).
pub fn parse(argv: Vec<OsString>) -> Result<Command, clap::Error> {
    if argv.get(1).is_some_and(|a| a == "serve-bench") {
        let rest =
            std::iter::once(OsString::from("rnn-run serve-bench")).chain(argv.into_iter().skip(2));
        return ServeBenchArgs::try_parse_from(rest).map(Command::ServeBench);
    }
    if argv.get(1).is_some_and(|a| a == "inspect") {
        let rest =
            std::iter::once(OsString::from("rnn-run inspect")).chain(argv.into_iter().skip(2));
        InspectArgs::try_parse_from(rest).map(Command::Inspect)
    } else {
        RunArgs::try_parse_from(argv).map(Command::Run)
    }
}
