//! Plans: a graph typed and optimized for actual inputs (or with its declared shapes), cached
//! by the inputs' signature, and run.

use std::sync::Arc;

use tract_hir::internal::*;

use super::*;

impl Model {
    /// Checks `inputs` (the model's inputs, then values for the defaults at positions `which`,
    /// ascending; without `which`, the first defaults in order) and finds or makes their plan.
    pub(crate) fn plan_checked(
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
    pub(crate) fn run_plan(&self, plan: &Specialized, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
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

    /// The cached plan for these inputs, or a new one; true when it was built now.
    pub(crate) fn plan_for(&self, inputs: &[Tensor]) -> Result<(Arc<Specialized>, bool)> {
        self.plan_in(&self.inference, &self.plans, inputs)
    }

    /// [`Model::plan_for`] on `inference` (the model's graph, or one overriding defaults).
    pub(crate) fn plan_in(
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
            message: format!(
                "for inputs of shapes {}: {}",
                shapes(),
                crate::refusal::variable_shape(&message)
                    .or_else(|| crate::refusal::for_inputs(&message))
                    .unwrap_or(message)
            ),
        };
        let build = |model: InferenceModel| -> TractResult<TypedModel> {
            self.shape_flow.check(&model)?;
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

/// Refuses a graph one of whose tensors exceeds [`MAX_TENSOR_BYTES`] even when every symbolic
/// dimension (batch, sequence) is 1: a size written into the file (a `ConstantOfShape` of a
/// few hundred million rows) would otherwise make tract try the allocation on the first run.
pub(super) fn check_tensor_sizes(typed: &TypedModel) -> std::result::Result<(), String> {
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
        // The scaling after rnn-run's integer convolutions and products (src/qint).
        crate::passes::qfuse::fuse(&mut model)?;
        names::check(&model, "fused integer epilogues")?;
        // Batch normalization folded into the convolution before it, before that
        // convolution is chosen below.
        crate::passes::bn_fold::fold_batch_norms(&mut model)?;
        names::check(&model, "batch normalization folded")?;
        // rnn-run's own float convolutions (src/conv), chosen before codegen lowers them.
        crate::passes::conv::packed_convs(&mut model)?;
        names::check(&model, "packed convolutions")?;
        // The dense layers around the recurrent nodes, on the packed product.
        crate::passes::dense::packed_matmuls(&mut model)?;
        names::check(&model, "packed products")?;
        // The 2×2 poolings between a conv stack's layers, before codegen lowers them.
        crate::passes::maxpool::maxpools(&mut model)?;
        names::check(&model, "2x2 max pooling")?;
        // Hard-swish chains (after the convolutions, which fuse a plain clamp instead).
        crate::passes::hard_swish::hard_swishes(&mut model)?;
        names::check(&model, "hard-swish chains")?;
        crate::passes::reverse::reversals(&mut model)?;
        names::check(&model, "reversals")?;
        model.optimize()?;
        // Element-wise ops between operands of different shapes that codegen left to tract's
        // slow loop (after it, so that it first fuses what it can into products).
        crate::passes::broadcast::broadcasts(&mut model)?;
        names::check(&model, "broadcast element-wise ops")?;
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
