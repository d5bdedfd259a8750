//! What is done to the whole graph before it runs, each pass in its own file:
//!
//! - [`bn_fold`]: batch normalization folded into the convolution before it, in plan
//!   optimization;
//! - [`broadcast`]: float `Add`, `Sub`, `Mul` of operands broadcast along inner axes onto a
//!   loop over contiguous runs, in plan optimization;
//! - [`branches`]: ONNX `If` that types and runs only the branch taken;
//! - [`channel_pools`]: 1-D pools with time (or batch) as the channel axis, for streams;
//! - [`conv`]: float convolutions onto rnn-run's own kernels, in plan optimization;
//! - [`dense`]: float products by a constant matrix onto rnn-run's packed product, in plan
//!   optimization;
//! - [`fold`]: constants folded once per plan, with a budget for models run many times;
//! - [`hard_swish`]: hard-swish written as `Add`, `Max`, `Min`, `Mul`, `Mul` onto one pass, in
//!   plan optimization;
//! - [`identity`]: Identity nodes removed in the protobuf, where tract types each one in time
//!   linear in the graph;
//! - [`maxpool`]: 2×2 max pooling at stride 2 onto a plain loop, in plan optimization;
//! - [`names`]: one name per node, checked after each of these passes in every build;
//! - [`pointwise`]: 1×1 convolutions tract turned into an einsum, read back for [`conv`];
//! - [`pad`]: ONNX `Pad` with negative pads (a crop), which tract cannot read;
//! - [`qfuse`]: the float scaling after a quantized convolution or product, folded into it;
//! - [`reverse`]: reversals along an axis (`Slice` with step -1) as block copies;
//! - [`slice_clamp`]: `Slice` bounds clamped as the spec says where tract's reading differs;
//! - [`slice_bounds`]: `Slice` bounds past 32 bits, rewritten in the protobuf to ones tract reads;
//! - [`specialize`]: the graph specialized to the actual inputs, plans cached by signature;
//! - [`tdim`]: int64 for the ops tract cannot run on its symbolic integer type;
//! - [`time_axis`]: which graphs may stream, following the time axis through every op;
//! - [`unrolled_dense`]: a dense layer unrolled step by step over an axis (Keras'
//!   `TimeDistributed` as tf2onnx writes it), put back as one product in the protobuf;
//! - [`state_io`]: a stream's graph, with what is carried between chunks as inputs/outputs.

pub(crate) mod bn_fold;
pub mod branches;
pub(crate) mod broadcast;
pub(crate) mod channel_pools;
pub mod conv;
pub(crate) mod dense;
pub mod fold;
pub(crate) mod hard_swish;
pub(crate) mod identity;
pub(crate) mod maxpool;
pub(crate) mod names;
pub mod pad;
pub(crate) mod pointwise;
pub(crate) mod qfuse;
pub mod reverse;
pub(crate) mod slice_bounds;
pub mod slice_clamp;
pub mod specialize;
pub mod state_io;
pub mod tdim;
pub mod time_axis;
pub(crate) mod unrolled_dense;

use tract_hir::internal::{InletId, OutletId, TractResult, TypedModel, TypedModelPatch, TypedOp};
use tract_onnx::pb::ModelProto;

/// Puts `op` in place of node `id`'s op when it gives the output tract's op gives (type and
/// shape), and changes nothing otherwise; whether it did.
pub(crate) fn replace_if_same<O: TypedOp>(
    model: &mut TypedModel,
    id: usize,
    op: O,
) -> TractResult<bool> {
    let node = model.node(id);
    let same = {
        let ours = op.output_facts(&model.node_input_facts(id)?)?.remove(0);
        let theirs = &node.outputs[0].fact;
        ours.datum_type == theirs.datum_type && ours.shape == theirs.shape
    };
    if same {
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?.apply(model)?;
    }
    Ok(same)
}

/// The version of the default ONNX domain the model imports (0 when it imports none).
pub(crate) fn default_opset(proto: &ModelProto) -> i64 {
    proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version)
}

/// The node that alone reads `outlet`, which is no graph output: a pass folds a node into the
/// one before it only when nothing else sees the value between them.
pub(crate) fn only_reader(model: &TypedModel, outlet: OutletId) -> TractResult<Option<InletId>> {
    if model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    Ok(
        match &model.node(outlet.node).outputs[outlet.slot].successors[..] {
            [only] => Some(*only),
            _ => None,
        },
    )
}
