//! The library's face: load an ONNX model, describe its inputs, outputs and recurrent nodes,
//! and run it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use tract_hir::internal::*;
use tract_onnx::pb::ModelProto;

use crate::attrs::{NodeSpec, OpKind};
use crate::error::{chain_message, Error, Result};
use crate::layer::{Threads, MAX_TENSOR_BYTES};
use crate::op::NativeRecurrent;

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
    /// directions of a bidirectional node run side by side, and large products share their
    /// columns; small ones stay on one thread, where handing work over costs more than it
    /// saves. The rest of the graph runs on the calling thread.
    pub threads: usize,
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen at run time, by name (`batch`, `seq`, or an expression of them).
    Symbol(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// A graph input or output: name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoInfo {
    /// The name in the ONNX graph.
    pub name: String,
    /// Element type.
    pub dtype: DatumType,
    /// Shape; symbolic dimensions keep their names.
    pub shape: Vec<Dim>,
}

impl IoInfo {
    /// `[1, seq, 5]`.
    pub fn shape_string(&self) -> String {
        crate::error::shape_string(&self.shape)
    }

    /// The shape with every symbolic dimension set to `symbolic`, to make example inputs.
    pub fn shape_with(&self, symbolic: usize) -> Vec<usize> {
        self.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbol(_) => symbolic,
            })
            .collect()
    }
}

/// A recurrent node of the model, as `inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrentNode {
    /// The parsed and checked attributes.
    pub spec: NodeSpec,
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
    opset: i64,
    engine: Engine,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    recurrent: Vec<RecurrentNode>,
    /// The graph as parsed, kept to re-type it for streaming with a free sequence axis.
    pub(crate) inference: Arc<InferenceModel>,
    plan: Arc<TypedSimplePlan>,
    /// The worker pool shared by the model's recurrent ops (and its streams).
    pub(crate) threads: Option<Arc<Threads>>,
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
        let bytes = read_regular_file(path)?;
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

    /// Loads a model from bytes (external data, if any, is resolved against the current
    /// directory).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Model::from_parts(bytes, "model".into(), None, &LoadOptions::default())
    }

    /// Loads a model from bytes with options.
    pub fn from_bytes_with(bytes: &[u8], options: &LoadOptions) -> Result<Model> {
        Model::from_parts(bytes, "model".into(), None, options)
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
        if bytes.is_empty() {
            return Err(invalid("the file is empty, expected an ONNX model".into()));
        }
        let proto = ModelProto::decode(bytes)
            .map_err(|e| invalid(format!("not an ONNX model (protobuf decoding failed: {e})")))?;
        let Some(graph) = proto.graph.as_ref() else {
            return Err(invalid(
                "not an ONNX model: no graph in the protobuf".into(),
            ));
        };
        if graph.node.is_empty() && graph.output.is_empty() {
            return Err(invalid(
                "not an ONNX model: the graph has no nodes and no outputs".into(),
            ));
        }
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0);

        let mut specs = vec![];
        for node in &graph.node {
            if OpKind::from_op_type(&node.op_type).is_some() && node.domain.is_empty() {
                specs.push(NodeSpec::from_node(node, opset)?);
            }
        }

        let mut onnx = tract_onnx::onnx();
        // Exporters write symbolic shapes into value_info that can contradict the concrete
        // facts tract derives; the graph's own inputs and ops are the truth.
        onnx.ignore_value_info = true;
        if options.engine == Engine::Native {
            crate::op::register(&mut onnx);
        }
        crate::precheck::check_model(&proto, graph, dir.as_deref()).map_err(invalid)?;
        let dir_str = dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let parsed = without_panics(|| onnx.parse(&proto, dir_str.as_deref()))
            .map_err(|what| invalid(format!("tract failed while reading the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, invalid))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(invalid(format!(
                "nodes refer to tensors no node produces: {}",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        let inference = Arc::new(parsed.model);
        let threads = match options.threads {
            0 | 1 => None,
            n => Some(Arc::new(Threads::new(n).map_err(Error::Run)?)),
        };
        let typed =
            without_panics(|| optimize(InferenceModel::clone(&inference), false, threads.as_ref()))
                .map_err(|what| {
                    invalid(format!("tract failed while preparing the graph ({what})"))
                })?
                .map_err(|e| Error::from_tract(e, invalid))?;

        check_tensor_sizes(&typed).map_err(invalid)?;

        let recurrent = specs
            .into_iter()
            .map(|spec| {
                let native = typed.nodes().iter().find_map(|n| {
                    n.op_as::<NativeRecurrent>()
                        .filter(|op| op.spec().name == spec.name)
                });
                RecurrentNode {
                    engine: options.engine,
                    weights_prepared: native.is_some_and(|op| op.weights_prepared()),
                    spec,
                }
            })
            .collect();

        let (mut inputs, mut outputs) =
            describe_io(&typed).map_err(|e| invalid(chain_message(&e)))?;
        // tract's clean-up can move a label from a no-op node onto a graph input (a dynamo
        // export's `h0` showed up as `val_4`); the ONNX graph's own names are the contract.
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let onnx_inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !initializers.contains(n))
            .collect();
        let onnx_outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        for (infos, names) in [(&mut inputs, onnx_inputs), (&mut outputs, onnx_outputs)] {
            if infos.len() == names.len() {
                for (info, name) in infos.iter_mut().zip(names) {
                    info.name = name.to_string();
                }
            }
        }
        let plan = SimplePlan::new(typed).map_err(|e| Error::from_tract(e, invalid))?;
        Ok(Model {
            source,
            opset,
            engine: options.engine,
            inputs,
            outputs,
            recurrent,
            inference,
            plan,
            threads,
        })
    }

    /// Where the model came from (its path, or "model").
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The default-domain opset the model imports.
    pub fn opset(&self) -> i64 {
        self.opset
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

    /// The optimized graph the plan runs.
    pub(crate) fn plan_model(&self) -> &TypedModel {
        self.plan.model()
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

    /// Runs the model on `inputs` (graph input order) and returns the outputs (graph output
    /// order). Each call is independent: no state is kept between calls.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.check_inputs(&inputs)?;
        let inputs = inputs.into_iter().map(|t| t.into_tvalue()).collect();
        let outputs = without_panics(|| self.plan.run(inputs))
            .map_err(|what| Error::Run(format!("tract failed while running the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
    }
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

/// Runs `f`, turning a panic into its message: tract panics on some malformed graphs (and its
/// own lowering of recurrent ops on shapes it does not expect), and a library must return an
/// error instead.
pub(crate) fn without_panics<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Checks `inputs` against declared inputs: count, element type, rank and fixed dimensions.
pub(crate) fn check_inputs(declared: &[IoInfo], inputs: &[Tensor]) -> Result<()> {
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

/// Types, declutters and optimizes a parsed graph; with `streaming`, the recurrent ops keep
/// their state across calls; with `threads`, they run on that pool.
///
/// Some of tract's graph rewrites fail on graphs PyTorch's dynamo exporter writes (an unrolled
/// bidirectional `nn.RNN` with `Flip`, for one); the typed graph is then run as it is, which
/// is slower but computes the same values.
pub(crate) fn optimize(
    model: InferenceModel,
    streaming: bool,
    threads: Option<&Arc<Threads>>,
) -> TractResult<TypedModel> {
    let mut typed = model.into_typed()?;
    for node in typed.nodes_mut() {
        if let Some(op) = node.op_as_mut::<NativeRecurrent>() {
            op.streaming = streaming;
            op.threads = threads.cloned();
        }
    }
    match typed.clone().into_optimized() {
        Ok(optimized) => Ok(optimized),
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

/// The numpy-style name of an element type (`float32`, `int64`, ...).
pub fn dtype_name(dt: DatumType) -> String {
    match dt {
        DatumType::F16 => "float16".into(),
        DatumType::F32 => "float32".into(),
        DatumType::F64 => "float64".into(),
        DatumType::I8 => "int8".into(),
        DatumType::I16 => "int16".into(),
        DatumType::I32 => "int32".into(),
        DatumType::I64 => "int64".into(),
        DatumType::U8 => "uint8".into(),
        DatumType::U16 => "uint16".into(),
        DatumType::U32 => "uint32".into(),
        DatumType::U64 => "uint64".into(),
        DatumType::Bool => "bool".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Reads a model file, which must be a regular file.
fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = crate::error::not_a_regular_file(&meta) {
        return Err(Error::InvalidModel {
            what: path.display().to_string(),
            message: format!("not a regular file ({kind}), expected an ONNX model"),
        });
    }
    let mut bytes = Vec::new();
    // The length is only a hint (the file may change under us); `take` bounds the read.
    file.take(meta.len()).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}
