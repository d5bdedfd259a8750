//! Explicit states: the graph a stream runs, in which everything carried from one chunk to the
//! next is a graph input and a graph output.
//!
//! After [`super::time_axis::analyse`] accepts a graph, this pass copies it with:
//! - each forward recurrent node taking its initial states from new inputs and giving its
//!   final states as new outputs;
//! - each causal convolution over time taking the last frames of its input from a new input,
//!   prepended along the time axis in place of its left padding, and giving the new last
//!   frames as a new output.
//!
//! The resulting plan is a pure function of (chunk, stream-start inputs, states), so plans can
//! be made per chunk length and cached, and states can be stored, reset or batched by the
//! caller. What the states start from is computed by a second, small graph (the recurrent
//! nodes' initial states from the stream-start inputs); convolution history starts as zeros,
//! which is the whole run's padding.

use std::collections::HashMap;

use tract_core::ops::array::{Pad, Slice, TypedConcat};
use tract_core::ops::cnn::{Conv, PaddingSpec};
use tract_hir::internal::*;

use super::time_axis::{Carried, Flow, Streamable};
use crate::op::NativeRecurrent;

/// Where a state's first value comes from.
#[derive(Debug, Clone)]
pub enum StateStart {
    /// Output `k` of the start graph.
    Computed(usize),
    /// Zeros (no initial state given, or a convolution's padding).
    Zeros,
}

/// The graph a stream runs, with its states explicit.
#[derive(Debug, Clone)]
pub struct StreamGraph {
    /// Inputs: the time inputs, then the stream-start inputs it takes, then the states.
    /// Outputs: the model's outputs, then the new states.
    pub model: TypedModel,
    /// How many of each.
    pub time_inputs: usize,
    pub start_inputs: usize,
    /// Per state: what it starts from, and a name for messages.
    pub states: Vec<(StateStart, String)>,
    /// The model's outputs: per step along an axis, or final.
    pub output_flows: Vec<Flow>,
    /// Computes the computed initial states from the stream-start inputs (same inputs, in
    /// the same order, as the stream-start part of `model`).
    pub start: TypedModel,
}

/// Copies `model` (typed with the time axis as a symbol, analysed as `streamable`) with its
/// states explicit. `time_inputs` and `start_inputs` are positions among `model`'s inputs.
pub fn explicit_states(
    model: &TypedModel,
    streamable: &Streamable,
    time_inputs: &[usize],
    start_inputs: &[usize],
    s: &Symbol,
) -> TractResult<StreamGraph> {
    let mut target = TypedModel {
        symbols: model.symbols.clone(),
        ..TypedModel::default()
    };
    let mut mapping: HashMap<OutletId, OutletId> = HashMap::new();
    let inputs = model.input_outlets()?;
    for &ix in time_inputs.iter().chain(start_inputs) {
        let outlet = inputs[ix];
        let node = model.node(outlet.node);
        let name = target.unique_name(&*node.name).into_owned();
        let fed = target.add_source(name, model.outlet_fact(outlet)?.clone())?;
        mapping.insert(outlet, fed);
    }

    // State inputs, in the order of `carried`; what each starts from.
    let mut states = vec![];
    let mut state_inputs: HashMap<usize, Vec<OutletId>> = HashMap::new();
    let mut start_outlets: Vec<OutletId> = vec![];
    for carried in &streamable.carried {
        match carried {
            Carried::Recurrent { node } => {
                let node = model.node(*node);
                let op = node
                    .op_as::<NativeRecurrent>()
                    .context("a recurrent node")?;
                let x = model.outlet_fact(node.inputs[0])?;
                let fact = op.state_fact(x)?;
                let (_, _, h0, c0) = op.run_input_positions();
                let lstm = op.spec().op == crate::attrs::OpKind::Lstm;
                let mut fed = vec![];
                for (what, given) in [("h", h0), ("c", c0)] {
                    if what == "c" && !lstm {
                        continue;
                    }
                    let name = format!("{}.initial_{what}", node.name);
                    let unique = target.unique_name(&*name).into_owned();
                    fed.push(target.add_source(unique, fact.clone())?);
                    let start = match given {
                        Some(slot) => {
                            start_outlets.push(node.inputs[slot]);
                            StateStart::Computed(start_outlets.len() - 1)
                        }
                        None => StateStart::Zeros,
                    };
                    states.push((start, name));
                }
                state_inputs.insert(node.id, fed);
            }
            Carried::ConvHistory {
                node, axis, frames, ..
            } => {
                let node = model.node(*node);
                let x = model.outlet_fact(node.inputs[0])?;
                let mut shape = x.shape.to_tvec();
                shape[*axis] = frames.to_dim();
                let name = format!("{}.history", node.name);
                let unique = target.unique_name(&*name).into_owned();
                let fed = target.add_source(unique, x.datum_type.fact(&*shape))?;
                states.push((StateStart::Zeros, name));
                state_inputs.insert(node.id, vec![fed]);
            }
        }
    }

    let mut state_outputs: Vec<OutletId> = vec![];
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.inputs.is_empty() && inputs.iter().any(|o| o.node == id) {
            continue;
        }
        let carried = streamable.carried.iter().find(|c| match c {
            Carried::Recurrent { node } | Carried::ConvHistory { node, .. } => *node == id,
        });
        // A `Pad` whose zeros in front of the time axis the history replaces.
        let history_pad = streamable.carried.iter().find_map(|c| match c {
            Carried::ConvHistory {
                pad: Some(pad),
                axis,
                ..
            } if *pad == id => Some(*axis),
            _ => None,
        });
        let wired: TVec<OutletId> = match carried {
            None if history_pad.is_some() => {
                let axis = history_pad.unwrap();
                let mut pad = node.op_as::<Pad>().context("a Pad")?.clone();
                pad.pads[axis].0 = 0;
                let node_inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapping[i]).collect();
                let name = target.unique_name(&*node.name).into_owned();
                target.wire_node(name, pad, &node_inputs)?
            }
            None => {
                let node_inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapping[i]).collect();
                let name = target.unique_name(&*node.name).into_owned();
                target.wire_node(name, node.op.clone(), &node_inputs)?
            }
            Some(Carried::Recurrent { .. }) => {
                let op = node
                    .op_as::<NativeRecurrent>()
                    .context("a recurrent node")?;
                let stateful = op.with_state_io()?;
                let mut node_inputs: TVec<OutletId> = tvec![mapping[&node.inputs[0]]];
                node_inputs.extend(state_inputs[&id].iter().copied());
                let name = target.unique_name(&*node.name).into_owned();
                let outs = target.wire_node(name, stateful.clone(), &node_inputs)?;
                let (old, new) = (&op.spec().slots, &stateful.spec().slots);
                let y_h = new.y_h.context("Y_h")?;
                state_outputs.push(outs[y_h]);
                if let Some(y_c) = new.y_c {
                    if state_inputs[&id].len() > 1 {
                        state_outputs.push(outs[y_c]);
                    }
                }
                // The model's node's outputs, at their places in the new node's.
                let mut mine = tvec![];
                for (old_slot, new_slot) in [(old.y, new.y), (old.y_h, new.y_h), (old.y_c, new.y_c)]
                {
                    if let (Some(o), Some(n)) = (old_slot, new_slot) {
                        mine.push((o, outs[n]));
                    }
                }
                mine.sort_by_key(|(o, _)| *o);
                mine.into_iter().map(|(_, outlet)| outlet).collect()
            }
            Some(Carried::ConvHistory {
                axis, frames, pad, ..
            }) => {
                let conv = node.op_as::<Conv>().context("a convolution")?;
                let history = state_inputs[&id][0];
                let x = mapping[&node.inputs[0]];
                let _ = pad;
                let joined = target.wire_node(
                    target
                        .unique_name(format!("{}.with_history", node.name))
                        .into_owned(),
                    TypedConcat { axis: *axis },
                    &[history, x],
                )?[0];
                let length = TDim::Sym(s.clone()) + *frames as i64;
                let kept = target.wire_node(
                    target
                        .unique_name(format!("{}.next_history", node.name))
                        .into_owned(),
                    Slice {
                        axis: *axis,
                        start: TDim::Sym(s.clone()),
                        end: length,
                    },
                    &[joined],
                )?[0];
                state_outputs.push(kept);
                let mut unpadded = conv.clone();
                let shape = conv
                    .pool_spec
                    .data_format
                    .shape(model.outlet_fact(node.inputs[0])?.shape.to_tvec())?;
                let geo = axis - shape.hw_axes().start;
                unpadded.pool_spec.padding = match &conv.pool_spec.padding {
                    PaddingSpec::Explicit(before, after) => {
                        let mut before = before.clone();
                        before[geo] = 0;
                        PaddingSpec::Explicit(before, after.clone())
                    }
                    PaddingSpec::ExplicitOnnxPool(before, after, ceil) => {
                        let mut before = before.clone();
                        before[geo] = 0;
                        PaddingSpec::ExplicitOnnxPool(before, after.clone(), *ceil)
                    }
                    PaddingSpec::SameLower | PaddingSpec::SameUpper => {
                        // `auto_pad`: the same padding, written out, the time axis's dropped.
                        let (mut before, mut after) = (tvec![], tvec![]);
                        for (i, dim) in shape.hw_dims().iter().enumerate() {
                            let p = conv.pool_spec.padding.compute_one(
                                i,
                                dim,
                                conv.pool_spec.kernel_shape[i],
                                conv.pool_spec.dilation(i),
                                conv.pool_spec.stride(i),
                            );
                            if i == geo {
                                before.push(0);
                                after.push(0);
                            } else {
                                before.push(p.pad_before.to_usize()?);
                                after.push(p.pad_after.to_usize()?);
                            }
                        }
                        PaddingSpec::Explicit(before, after)
                    }
                    other => bail!("{}: unexpected padding {other:?}", node.name),
                };
                let mut node_inputs: TVec<OutletId> = tvec![joined];
                node_inputs.extend(node.inputs[1..].iter().map(|i| mapping[i]));
                let name = target.unique_name(&*node.name).into_owned();
                target.wire_node(name, unpadded, &node_inputs)?
            }
        };
        for (slot, outlet) in wired.into_iter().enumerate() {
            mapping.insert(OutletId::new(id, slot), outlet);
        }
    }
    let mut outputs: Vec<OutletId> = model.output_outlets()?.iter().map(|o| mapping[o]).collect();
    outputs.extend(state_outputs);
    target.select_output_outlets(&outputs)?;
    for (ix, outlet) in model.output_outlets()?.iter().enumerate() {
        if let Some(label) = model.outlet_label(*outlet) {
            target.set_outlet_label(outputs[ix], label.to_string())?;
        }
    }

    let start_model = extract(
        model,
        &start_inputs.iter().map(|&i| inputs[i]).collect::<Vec<_>>(),
        &start_outlets,
    )?;
    super::names::check(&target, "stream states")?;
    super::names::check(&start_model, "stream start")?;
    Ok(StreamGraph {
        model: target,
        time_inputs: time_inputs.len(),
        start_inputs: start_inputs.len(),
        states,
        output_flows: streamable.output_flows(model)?,
        start: start_model,
    })
}

/// The part of `model` that computes `outputs` from `inputs` (which it may not all use).
fn extract(
    model: &TypedModel,
    inputs: &[OutletId],
    outputs: &[OutletId],
) -> TractResult<TypedModel> {
    let mut target = TypedModel {
        symbols: model.symbols.clone(),
        ..TypedModel::default()
    };
    let mut mapping: HashMap<OutletId, OutletId> = HashMap::new();
    for outlet in inputs {
        let name = target
            .unique_name(&*model.node(outlet.node).name)
            .into_owned();
        mapping.insert(
            *outlet,
            target.add_source(name, model.outlet_fact(*outlet)?.clone())?,
        );
    }
    let targets: Vec<usize> = outputs.iter().map(|o| o.node).collect();
    for id in tract_core::model::order::eval_order_for_nodes(model.nodes(), &[], &targets, &[])? {
        if mapping.contains_key(&OutletId::new(id, 0)) {
            continue;
        }
        let node = model.node(id);
        if node.inputs.is_empty() && model.input_outlets()?.iter().any(|o| o.node == id) {
            bail!(
                "the initial states depend on input '{}', which has a time axis",
                node.name
            );
        }
        let node_inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapping[i]).collect();
        let name = target.unique_name(&*node.name).into_owned();
        let wired = target.wire_node(name, node.op.clone(), &node_inputs)?;
        for (slot, outlet) in wired.into_iter().enumerate() {
            mapping.insert(OutletId::new(id, slot), outlet);
        }
    }
    let outputs: Vec<OutletId> = outputs.iter().map(|o| mapping[o]).collect();
    target.select_output_outlets(&outputs)?;
    Ok(target)
}
