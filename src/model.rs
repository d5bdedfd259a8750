//! The library's face: load an ONNX model, describe its inputs, outputs and recurrent nodes,
//! and run it (loading in [`load`], typing and plans in [`plan`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tract_hir::internal::*;

use crate::attrs::NodeSpec;
use crate::describe::ModelInfo;
use crate::error::{chain_message, Error, Result};
pub(crate) use crate::guard::without_panics;
pub use crate::io_info::{dtype_name, Dim, IoInfo};
use crate::kernels::WeightFormat;
use crate::layer::{Threads, MAX_TENSOR_BYTES};
use crate::op::NativeRecurrent;
use crate::passes::names;
use crate::passes::specialize::{PlanCache, PlanStats, Specialized};
use crate::precheck::shape_flow::ShapeFlow;

mod load;
mod plan;

pub(crate) use plan::{optimize_typed, type_graph, Native};

/// Which implementation runs the recurrent nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// rnn-run's native cells (exact on the whole spec).
    #[default]
    Native,
    /// tract's own lowering, kept for comparison (ignores several attributes).
    Tract,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Engine::Native => "native",
            Engine::Tract => "tract",
        })
    }
}

/// Options for [`Model::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Which implementation runs the recurrent nodes.
    pub engine: Engine,
    /// Threads for the native recurrent nodes (0 or 1: the calling thread only). The two
    /// directions of a bidirectional node run side by side, and a large step is cut into
    /// pieces of hidden units, one per thread; small ones stay on one thread, where handing
    /// work over costs more than it saves. The rest of the graph runs on the calling thread.
    pub threads: usize,
    /// How many plans specialized to input signatures (shapes, and scalar values where the
    /// graph needs them) are kept; 0 means the default, [`DEFAULT_PLAN_CACHE`].
    pub plan_cache: usize,
    /// How the recurrent weights Rᵀ are stored. [`WeightFormat::Full`] (the default) keeps
    /// them exact; `Bf16` or `F16` halves the bytes each time step reads (faster where a step
    /// is bound by memory, batch 1 with large hidden sizes) and rounds the weights (see the
    /// README for the measured error). Products still accumulate in the model's precision.
    pub recurrent_weights: WeightFormat,
}

/// Plans kept per model unless [`LoadOptions::plan_cache`] says otherwise.
pub const DEFAULT_PLAN_CACHE: usize = 8;

/// A recurrent node of the model, as `inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrentNode {
    /// The parsed and checked attributes.
    pub spec: NodeSpec,
    /// `None` in the main graph; otherwise the subgraphs that hold it, outermost first
    /// (`If 'If_0' else_branch > If '/decoder/If_1' then_branch`).
    pub subgraph: Option<String>,
    /// onnxruntime's `com.microsoft` DynamicQuantizeLSTM (int8 weights), described by its
    /// LSTM attributes.
    pub quantized: bool,
    /// Which implementation runs it.
    pub engine: Engine,
    /// Native engine: whether the weights were constant and the cells built at load.
    pub weights_prepared: bool,
}

/// A loaded model, ready to run. Cheap to share: `Model` is `Send + Sync`, and each call to
/// [`Model::run`] uses its own state, so many threads may run one model at once.
#[derive(Debug, Clone)]
pub struct Model {
    source: String,
    engine: Engine,
    info: ModelInfo,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    recurrent: Vec<RecurrentNode>,
    /// The graph as parsed: every plan is specialized from it.
    pub(crate) inference: Arc<InferenceModel>,
    /// The graph typed with its declared (symbolic) shapes and decluttered, or why tract
    /// cannot type it before it sees actual inputs.
    symbolic: std::result::Result<Arc<TypedModel>, String>,
    /// Plans specialized to input signatures, shared by clones and threads.
    plans: Arc<PlanCache>,
    /// The graphs and plans of runs that override defaults ([`Model::defaults`]).
    overridable: Arc<crate::defaults::Overridable>,
    /// The worker pool shared by the model's recurrent ops (and its streams), and how they
    /// store Rᵀ.
    pub(crate) native: Native,
    /// What the graph's shape inputs are computed from, checked before each plan is typed.
    shape_flow: Arc<ShapeFlow>,
}

/// Whether the graph could be typed with its declared shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typing {
    /// It types with symbolic dimensions; runs still use plans specialized to their inputs.
    Symbolic,
    /// tract cannot type it until it sees the actual inputs (the reason); runs specialize.
    Deferred(String),
}

impl Model {
    /// Loads a model file with the native engine. External data files (`model.onnx.data`)
    /// are looked up beside the model.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// Loads a model file with options.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        let bytes = crate::files::read_model_file(path)?;
        let dir = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        Model::from_parts(
            &bytes,
            path.display().to_string(),
            dir.map(Path::to_path_buf),
            options,
        )
    }

    /// Loads a model from bytes. A model whose weights are stored in external data files
    /// (every PyTorch dynamo export) is refused, naming the tensor: load it with
    /// [`Model::from_bytes_in`], which says where those files are.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Model::from_parts(bytes, "model".into(), None, &LoadOptions::default())
    }

    /// Loads a model from bytes with options (no external data, as [`Model::from_bytes`]).
    pub fn from_bytes_with(bytes: &[u8], options: &LoadOptions) -> Result<Model> {
        Model::from_parts(bytes, "model".into(), None, options)
    }

    /// Loads a model from bytes, its external data files (`model.onnx.data`) looked up in
    /// `dir` with the same checks as [`Model::load`] (relative paths inside `dir` only).
    pub fn from_bytes_in(bytes: &[u8], dir: impl AsRef<Path>) -> Result<Model> {
        Model::from_bytes_in_with(bytes, dir, &LoadOptions::default())
    }

    /// [`Model::from_bytes_in`] with options.
    pub fn from_bytes_in_with(
        bytes: &[u8],
        dir: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Model> {
        let dir = dir.as_ref();
        Model::from_parts(bytes, "model".into(), Some(dir.to_path_buf()), options)
    }

    /// Where the model came from (its path, or "model").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The default-domain opset the model imports.
    pub fn opset(&self) -> i64 {
        self.info.opset
    }

    /// What the protobuf says: opsets, op histogram, recurrent nodes in subgraphs too.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Whether tract typed the graph with its declared shapes, or waits for actual inputs.
    pub fn typing(&self) -> Typing {
        match &self.symbolic {
            Ok(_) => Typing::Symbolic,
            Err(why) => Typing::Deferred(why.clone()),
        }
    }

    /// How the cache of specialized plans has been used.
    pub fn plan_stats(&self) -> PlanStats {
        self.plans.stats()
    }

    /// Which engine runs the recurrent nodes.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The graph's inputs, in order.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// The graph typed with its declared shapes, or why it cannot be.
    pub(crate) fn symbolic_model(&self) -> std::result::Result<&TypedModel, &str> {
        self.symbolic.as_deref().map_err(String::as_str)
    }

    /// Every RNN, LSTM and GRU node, in graph order.
    pub fn recurrent_nodes(&self) -> &[RecurrentNode] {
        &self.recurrent
    }

    /// Checks `inputs` against the graph's declared inputs: count, element type, rank and
    /// fixed dimensions.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        check_inputs(&self.inputs, inputs)
    }

    /// Makes (or finds in the cache) the plan specialized to inputs like these, without
    /// running it; returns how long making it took, zero when it was cached. [`Model::run`]
    /// does this itself: call it to keep that cost out of a timed run.
    pub fn prepare(&self, inputs: &[Tensor]) -> Result<Duration> {
        let (plan, built) = self.plan_checked(inputs, None)?;
        Ok(if built {
            plan.build_time
        } else {
            Duration::ZERO
        })
    }

    /// Graph inputs that have a default (an initializer of the same name, IR version 4 and
    /// later): not among [`Model::inputs`], and overridable by [`Model::run`] or
    /// [`Model::run_named`].
    pub fn defaults(&self) -> &[IoInfo] {
        &self.info.defaults
    }

    /// The value of the default `name` (one of [`Model::defaults`]) as the file gives it.
    pub fn default_value(&self, name: &str) -> Option<Tensor> {
        self.defaults().iter().find(|d| d.name == name)?;
        let node = self.inference.node_by_name(name).ok()?;
        let konst = node.op_as::<tract_core::ops::konst::Const>()?;
        Some(konst.val().as_ref().clone())
    }

    /// Runs the model on `inputs` (graph input order) and returns the outputs (graph output
    /// order). Each call is independent: no state is kept between calls. The graph runs as
    /// specialized to the inputs' shapes (see [`Model::prepare`]).
    ///
    /// Tensors after the [`Model::inputs`] override the first [`Model::defaults`], in that
    /// order; [`Model::run_named`] overrides any of them by name.
    ///
    /// From `ndarray` arrays, build `inputs` with [`inputs!`](crate::inputs)`[x, h0, c0]`
    /// (any element types, no tensor type to name); read the outputs as arrays with
    /// [`TensorExt`](crate::TensorExt).
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (plan, _) = self.plan_checked(&inputs, None)?;
        self.run_plan(&plan, inputs)
    }

    /// Runs the model on inputs given by name: every one of [`Model::inputs`], and any of
    /// [`Model::defaults`] to override.
    pub fn run_named<S: AsRef<str>>(&self, inputs: Vec<(S, Tensor)>) -> Result<Vec<Tensor>> {
        let mut required: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        let mut overrides: Vec<(usize, Tensor)> = vec![];
        for (name, t) in inputs {
            let name = name.as_ref();
            let twice = || Error::Input {
                name: name.to_string(),
                message: "is given twice".into(),
            };
            if let Some(i) = self.inputs.iter().position(|i| i.name == name) {
                if required[i].replace(t).is_some() {
                    return Err(twice());
                }
            } else if let Some(i) = self.defaults().iter().position(|i| i.name == name) {
                if overrides.iter().any(|(j, _)| *j == i) {
                    return Err(twice());
                }
                overrides.push((i, t));
            } else {
                let mut known: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                known.extend(self.defaults().iter().map(|i| i.name.as_str()));
                return Err(Error::Input {
                    name: name.to_string(),
                    message: format!(
                        "is not an input of the model; its inputs are {}",
                        known.join(", ")
                    ),
                });
            }
        }
        let missing: Vec<&str> = self
            .inputs
            .iter()
            .zip(&required)
            .filter(|(_, t)| t.is_none())
            .map(|(i, _)| i.name.as_str())
            .collect();
        if let Some(first) = missing.first() {
            return Err(Error::Input {
                name: first.to_string(),
                message: format!("is missing (missing: {})", missing.join(", ")),
            });
        }
        overrides.sort_by_key(|(i, _)| *i);
        let (which, values): (Vec<usize>, Vec<Tensor>) = overrides.into_iter().unzip();
        let mut inputs: Vec<Tensor> = required.into_iter().flatten().collect();
        inputs.extend(values);
        let (plan, _) = self.plan_checked(&inputs, Some(&which))?;
        self.run_plan(&plan, inputs)
    }

    /// Runs the model `runs` times on `inputs` and returns how long each node of the plan
    /// took in all, longest first: (node name, op, total time). For finding where the time
    /// goes; [`Model::run`] is the way to run.
    pub fn profile(
        &self,
        inputs: Vec<Tensor>,
        runs: usize,
    ) -> Result<Vec<(String, String, Duration)>> {
        self.check_inputs(&inputs)?;
        let (plan, _) = self.plan_for(&inputs)?;
        let fed: TVec<TValue> = plan
            .fed
            .iter()
            .map(|&ix| inputs[ix].clone().into_tvalue())
            .collect();
        let mut times: std::collections::HashMap<usize, Duration> = Default::default();
        let mut session = plan
            .plan
            .spawn()
            .map_err(|e| Error::Run(chain_message(&e)))?;
        for _ in 0..runs.max(1) {
            without_panics(|| {
                session.run_plan_with_eval(fed.clone(), |ctx, state, node, inputs| {
                    let start = std::time::Instant::now();
                    let out = tract_core::plan::eval(ctx, state, node, inputs);
                    *times.entry(node.id).or_default() += start.elapsed();
                    out
                })
            })
            .map_err(|p| Error::Run(format!("tract failed while running the graph ({p})")))?
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        }
        let model = plan.plan.model();
        let mut rows: Vec<(String, String, Duration)> = times
            .into_iter()
            .map(|(id, t)| {
                let node = model.node(id);
                (node.name.clone(), node.op.name().to_string(), t)
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.2));
        Ok(rows)
    }
}

/// Checks `inputs` against declared inputs: count, element type, rank and fixed dimensions.
pub fn check_inputs(declared: &[IoInfo], inputs: &[Tensor]) -> Result<()> {
    if inputs.len() != declared.len() {
        return Err(Error::Input {
            name: declared
                .get(inputs.len())
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            message: format!(
                "the model takes {} input{} ({}), found {}",
                declared.len(),
                if declared.len() == 1 { "" } else { "s" },
                declared
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            ),
        });
    }
    for (info, t) in declared.iter().zip(inputs) {
        let err = |message: String| Error::Input {
            name: info.name.clone(),
            message,
        };
        if t.datum_type() != info.dtype {
            return Err(err(format!(
                "expected element type {}, found {}",
                dtype_name(info.dtype),
                dtype_name(t.datum_type())
            )));
        }
        let found = || format!("{:?}", t.shape());
        if t.rank() != info.shape.len() {
            return Err(err(format!(
                "expected rank {} (shape {}), found shape {}",
                info.shape.len(),
                info.shape_string(),
                found()
            )));
        }
        for (axis, (want, &got)) in info.shape.iter().zip(t.shape()).enumerate() {
            if let Dim::Fixed(n) = want {
                if *n != got {
                    return Err(err(format!(
                        "expected shape {} (axis {axis} = {n}), found shape {}",
                        info.shape_string(),
                        found()
                    )));
                }
            }
        }
    }
    Ok(())
}
