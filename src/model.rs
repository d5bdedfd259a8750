//! The library's face: load an ONNX model, describe its inputs, outputs and recurrent nodes,
//! and run it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tract_hir::internal::*;
use tract_onnx::pb::GraphProto;

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

    fn from_parts(
        bytes: &[u8],
        source: String,
        dir: Option<PathBuf>,
        options: &LoadOptions,
    ) -> Result<Model> {
        let invalid = |message: String| Error::InvalidModel {
            what: source.clone(),
            message,
        };
        let mut proto = crate::sniff::decode_model(bytes).map_err(invalid)?;
        crate::passes::slice_bounds::normalize(&mut proto);
        let info = ModelInfo::from_proto(&proto)?;

        let mut onnx = tract_onnx::onnx();
        // Exporters write symbolic shapes into value_info that can contradict the concrete
        // facts tract derives; the graph's own inputs and ops are the truth.
        onnx.ignore_value_info = true;
        if options.engine == Engine::Native {
            crate::op::register(&mut onnx);
        }
        crate::passes::branches::register(&mut onnx);
        crate::passes::pad::register(&mut onnx);
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        crate::precheck::check_model(&proto, graph, dir.as_deref()).map_err(invalid)?;
        crate::sniff::name_unnamed_nodes(&mut proto);
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        let dir_str = dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let mut parsed = without_panics(|| onnx.parse(&proto, dir_str.as_deref()))
            .map_err(|what| invalid(format!("tract failed while reading the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, |m| invalid(plain_build_message(&m))))?;
        // ONNX does not require node names to be unique; tract's graphs do.
        crate::passes::names::make_unique(&mut parsed.model);
        if !parsed.unresolved_inputs.is_empty() {
            return Err(invalid(format!(
                "nodes refer to tensors no node produces: {}",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        refuse_unknown_ops(&parsed.model, graph).map_err(invalid)?;
        // Before typing, where tract would narrow shape values and pick among duplicates.
        crate::precheck::check_graph(&proto, graph).map_err(invalid)?;
        let inference = Arc::new(parsed.model);
        let native = Native {
            threads: match options.threads {
                0 | 1 => None,
                n => Some(Arc::new(Threads::new(n).map_err(Error::Run)?)),
            },
            recurrent_weights: options.recurrent_weights,
        };

        // Typing with the declared shapes checks the recurrent nodes against their inputs
        // (a refusal there is the model's fault, reported now) and describes the inputs and
        // outputs; where tract gives up for want of concrete shapes, runs specialize anyway.
        let symbolic =
            match without_panics(|| type_graph(InferenceModel::clone(&inference), &native)) {
                Ok(Ok(typed)) => {
                    check_tensor_sizes(&typed).map_err(invalid)?;
                    Ok(Arc::new(typed))
                }
                Ok(Err(e)) => match Error::from_tract(e, Error::Run) {
                    Error::Run(why) => Err(why),
                    node_error => return Err(node_error),
                },
                Err(panic) => Err(format!("tract failed while typing the graph ({panic})")),
            };

        let recurrent = info
            .recurrent
            .iter()
            .map(|found| {
                let typed = symbolic.as_ref().ok().and_then(|typed| {
                    typed.nodes().iter().find_map(|n| {
                        n.op_as::<NativeRecurrent>()
                            .filter(|op| op.spec().name == found.spec.name)
                    })
                });
                RecurrentNode {
                    engine: options.engine,
                    weights_prepared: options.engine == Engine::Native
                        && typed.map_or(found.constant_weights, |op| op.weights_prepared()),
                    spec: found.spec.clone(),
                    subgraph: found.subgraph.clone(),
                    quantized: found.quantized,
                }
            })
            .collect();

        let (mut inputs, mut outputs) = match &symbolic {
            Ok(typed) => describe_io(typed).map_err(|e| invalid(chain_message(&e)))?,
            Err(_) => (info.inputs.clone(), info.outputs.clone()),
        };
        // tract's clean-up can move a label from a no-op node onto a graph input (a dynamo
        // export's `h0` showed up as `val_4`); the ONNX graph's own names are the contract.
        for (infos, declared) in [(&mut inputs, &info.inputs), (&mut outputs, &info.outputs)] {
            if infos.len() == declared.len() {
                for (info, declared) in infos.iter_mut().zip(declared) {
                    info.name = declared.name.clone();
                }
            }
        }
        let capacity = match options.plan_cache {
            0 => DEFAULT_PLAN_CACHE,
            n => n,
        };
        Ok(Model {
            source,
            engine: options.engine,
            info,
            inputs,
            outputs,
            recurrent,
            inference,
            symbolic,
            plans: Arc::new(PlanCache::new(capacity)),
            overridable: Arc::new(crate::defaults::Overridable::new(capacity)),
            native,
        })
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

    /// Checks `inputs` (the model's inputs, then values for the defaults at positions `which`,
    /// ascending; without `which`, the first defaults in order) and finds or makes their plan.
    fn plan_checked(
        &self,
        inputs: &[Tensor],
        which: Option<&[usize]>,
    ) -> Result<(Arc<Specialized>, bool)> {
        let n = self.inputs.len();
        let extra = inputs.len().saturating_sub(n);
        let first: Vec<usize> = (0..extra).collect();
        let which = which.unwrap_or(&first);
        if which.is_empty() || extra > self.defaults().len() {
            self.check_inputs(inputs)?;
            return self.plan_for(inputs);
        }
        self.check_inputs(&inputs[..n])?;
        let declared: Vec<IoInfo> = which.iter().map(|&i| self.defaults()[i].clone()).collect();
        check_inputs(&declared, &inputs[n..])?;
        let graph = self
            .overridable
            .graph(&self.inference, self.defaults(), which)
            .map_err(|e| Error::Run(chain_message(&e)))?;
        self.plan_in(&graph.inference, &graph.plans, inputs)
    }

    /// Runs `plan` on `inputs` (which the plan's signature matches).
    fn run_plan(&self, plan: &Specialized, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut inputs: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
        let fed = plan
            .fed
            .iter()
            .map(|&ix| inputs[ix].take().map(|t| t.into_tvalue()))
            .collect::<Option<TVec<TValue>>>()
            .ok_or_else(|| Error::Run("an input is fed twice".into()))?;
        let mut session = plan
            .plan
            .spawn()
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        let outputs = crate::guard::run_plan(&mut session, fed)
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
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

    /// The cached plan for these inputs, or a new one; true when it was built now.
    fn plan_for(&self, inputs: &[Tensor]) -> Result<(Arc<Specialized>, bool)> {
        self.plan_in(&self.inference, &self.plans, inputs)
    }

    /// [`Model::plan_for`] on `inference` (the model's graph, or one overriding defaults).
    fn plan_in(
        &self,
        inference: &InferenceModel,
        plans: &PlanCache,
        inputs: &[Tensor],
    ) -> Result<(Arc<Specialized>, bool)> {
        let shapes = || {
            inputs
                .iter()
                .map(|t| format!("{:?}", t.shape()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let invalid = |message: String| Error::InvalidModel {
            what: self.source.clone(),
            message: format!("for inputs of shapes {}: {message}", shapes()),
        };
        let build = |model: InferenceModel| -> TractResult<TypedModel> {
            let typed = optimize(model, &self.native)?;
            check_tensor_sizes(&typed).map_err(|e| anyhow::anyhow!(e))?;
            Ok(typed)
        };
        // A graph declared with exactly these inputs' types and shapes is typed already:
        // typing it again (tract's typing costs time quadratic in the node count) would give
        // the same graph.
        // Only the model's own graph was typed at load (not one overriding defaults).
        let typed = self
            .symbolic
            .as_deref()
            .ok()
            .filter(|_| std::ptr::eq(inference, &*self.inference))
            .filter(|typed| typed_for(typed, inputs));
        let ready = typed.map(|typed| {
            move || -> TractResult<TypedModel> {
                let typed = optimize_typed(typed.clone(), &self.native)?;
                check_tensor_sizes(&typed).map_err(|e| anyhow::anyhow!(e))?;
                Ok(typed)
            }
        });
        without_panics(|| plans.get_or_build(inference, inputs, build, ready))
            .map_err(|what| invalid(format!("tract failed while preparing the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, invalid))
    }
}

/// Whether `typed`'s inputs are exactly `inputs`' element types and concrete shapes.
fn typed_for(typed: &TypedModel, inputs: &[Tensor]) -> bool {
    let Ok(outlets) = typed.input_outlets() else {
        return false;
    };
    outlets.len() == inputs.len()
        && outlets.iter().zip(inputs).all(|(&outlet, t)| {
            typed.outlet_fact(outlet).is_ok_and(|f| {
                f.datum_type == t.datum_type()
                    && f.shape.as_concrete().is_some_and(|s| s == t.shape())
            })
        })
}

/// Refuses a graph whose outputs need an operator that neither tract nor rnn-run implements,
/// naming the node and its domain, now rather than at the first run. (Branches of an `If`
/// are not checked: an unknown op in a branch never taken does no harm.)
fn refuse_unknown_ops(
    model: &InferenceModel,
    graph: &GraphProto,
) -> std::result::Result<(), String> {
    for id in model.eval_order().map_err(|e| chain_message(&e))? {
        let node = &model.nodes()[id];
        let name = node.op.name();
        let Some(op) = name
            .strip_prefix("Unimplemented(")
            .and_then(|n| n.strip_suffix(')'))
        else {
            continue;
        };
        let domain = graph
            .node
            .iter()
            .find(|n| n.name == node.name)
            .map(|n| n.domain.as_str())
            .filter(|d| !d.is_empty() && *d != "ai.onnx");
        let what = match domain {
            Some(d) => format!("{d} {op}"),
            None => op.to_string(),
        };
        let hint = match domain {
            Some("com.microsoft") => {
                ", an onnxruntime-only operator (the model was probably optimized or \
                 quantized for onnxruntime: run rnn-run on the float model it came from)"
            }
            _ => "",
        };
        return Err(format!(
            "node '{}' ({what}) is not an operator rnn-run or tract can run{hint}",
            node.name
        ));
    }
    Ok(())
}

/// tract's "Building node k (Cast): Node k (Cast): expected attribute 'to'" as "node 'k'
/// (Cast): expected attribute 'to'", as our own messages name nodes.
fn plain_build_message(text: &str) -> String {
    let Some(rest) = text.strip_prefix("Building node ") else {
        return text.to_string();
    };
    let Some((head, tail)) = rest.split_once("): ") else {
        return text.to_string();
    };
    let Some((name, op)) = head.rsplit_once(" (") else {
        return text.to_string();
    };
    let tail = tail
        .strip_prefix(&format!("Node {name} ({op}): "))
        .unwrap_or(tail);
    format!("node '{name}' ({op}): {tail}")
}

/// Refuses a graph one of whose tensors exceeds [`MAX_TENSOR_BYTES`] even when every symbolic
/// dimension (batch, sequence) is 1: a size written into the file (a `ConstantOfShape` of a
/// few hundred million rows) would otherwise make tract try the allocation on the first run.
fn check_tensor_sizes(typed: &TypedModel) -> std::result::Result<(), String> {
    let ones = typed
        .symbols
        .all_symbols()
        .iter()
        .fold(SymbolValues::default(), |v, s| v.with(s, 1));
    for node in typed.nodes() {
        for output in &node.outputs {
            let fact = &output.fact;
            let dims: Option<Vec<u64>> = fact
                .shape
                .iter()
                .map(|d| {
                    d.eval(&ones)
                        .to_i64()
                        .ok()
                        .and_then(|n| u64::try_from(n).ok())
                })
                .collect();
            let Some(dims) = dims else { continue };
            let bytes = dims
                .iter()
                .try_fold(fact.datum_type.size_of() as u64, |acc, &d| {
                    acc.checked_mul(d)
                });
            if bytes.is_none_or(|b| b > MAX_TENSOR_BYTES) {
                return Err(format!(
                    "node '{}' ({}) makes a tensor of shape {} {} ({} bytes at batch and \
                     sequence 1), over the {} GiB limit",
                    node.name,
                    node.op.name(),
                    crate::error::shape_string(fact.shape.iter()),
                    dtype_name(fact.datum_type),
                    bytes.map_or("over 2^64".to_string(), |b| b.to_string()),
                    MAX_TENSOR_BYTES >> 30
                ));
            }
        }
    }
    Ok(())
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

/// Types and declutters a parsed graph with its declared shapes, the recurrent ops set up
/// as `native` says.
pub(crate) fn type_graph(model: InferenceModel, native: &Native) -> TractResult<TypedModel> {
    let mut typed = model.into_typed()?;
    crate::passes::tdim::int64_for_tdim_less_ops(&mut typed)?;
    names::check(&typed, "int64 for TopK")?;
    configure_native(&mut typed, native)?;
    typed.declutter()?;
    Ok(typed)
}

/// How the native recurrent ops of a plan run: on which threads, with Rᵀ stored how.
#[derive(Debug, Clone, Default)]
pub(crate) struct Native {
    pub(crate) threads: Option<Arc<Threads>>,
    pub(crate) recurrent_weights: WeightFormat,
}

/// Gives every native recurrent op of `typed` the settings of `native`.
pub(crate) fn configure_native(typed: &mut TypedModel, native: &Native) -> TractResult<()> {
    for node in typed.nodes_mut() {
        if let Some(op) = node.op_as_mut::<NativeRecurrent>() {
            let mut configured = op.with_recurrent_weights(native.recurrent_weights)?;
            configured.threads = native.threads.clone();
            *op = configured;
        }
    }
    Ok(())
}

/// Types, declutters and optimizes a parsed graph, the recurrent ops set up as `native`
/// says.
///
/// Some of tract's graph rewrites fail on graphs PyTorch's dynamo exporter writes (an unrolled
/// bidirectional `nn.RNN` with `Flip`, for one); the typed graph is then run as it is, which
/// is slower but computes the same values.
pub(crate) fn optimize(model: InferenceModel, native: &Native) -> TractResult<TypedModel> {
    let mut typed = model.into_typed()?;
    crate::passes::tdim::int64_for_tdim_less_ops(&mut typed)?;
    names::check(&typed, "int64 for TopK")?;
    optimize_typed(typed, native)
}

/// Declutters and optimizes a typed graph, its recurrent ops set up as `native`; where tract's
/// rewrites fail, the graph runs as it is.
pub(crate) fn optimize_typed(mut typed: TypedModel, native: &Native) -> TractResult<TypedModel> {
    configure_native(&mut typed, native)?;
    let optimized = (|| {
        let mut model = typed.clone();
        model.declutter()?;
        crate::passes::fold::fold_constants(&mut model)?;
        names::check(&model, "constant folding")?;
        // rnn-run's own float convolutions (src/conv), chosen before codegen lowers them.
        crate::passes::conv::packed_convs(&mut model)?;
        names::check(&model, "packed convolutions")?;
        crate::passes::reverse::reversals(&mut model)?;
        names::check(&model, "reversals")?;
        model.optimize()?;
        // Codegen lowers some ops into new constant work (a quantized product's weight
        // casts and sums): fold that too.
        crate::passes::fold::fold_constants(&mut model)?;
        names::check(&model, "constant folding")?;
        Ok::<_, TractError>(model)
    })();
    match optimized {
        Ok(optimized) => Ok(optimized),
        // A broken rule of our own passes is reported, not run around.
        Err(e) if names::is_duplicate(&e) => Err(e),
        Err(_) => Ok(typed),
    }
}

/// The graph's inputs and outputs, as [`IoInfo`].
pub(crate) fn describe_io(typed: &TypedModel) -> TractResult<(Vec<IoInfo>, Vec<IoInfo>)> {
    let io = |outlets: &[OutletId]| -> TractResult<Vec<IoInfo>> {
        outlets
            .iter()
            .map(|&o| {
                let fact = typed.outlet_fact(o)?;
                let name = typed
                    .outlet_label(o)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| typed.node(o.node).name.clone());
                Ok(IoInfo {
                    name,
                    dtype: fact.datum_type,
                    shape: fact
                        .shape
                        .iter()
                        .map(|d| match d.to_usize() {
                            Ok(n) => Dim::Fixed(n),
                            Err(_) => Dim::Symbol(d.to_string()),
                        })
                        .collect(),
                })
            })
            .collect()
    };
    Ok((io(typed.input_outlets()?)?, io(typed.output_outlets()?)?))
}
