//! Which inputs of a recurrent node are its weights and which come per run, for the native op
//! and the quantized LSTM alike: weights that are constants are built once, when the graph is
//! typed, and the op then takes X, sequence_lens, initial_h and initial_c only.

use std::sync::Arc;

use tract_hir::internal::*;

use crate::attrs::Slots;

/// The constant values of the inputs at `slots` (`None` for an absent slot), or `None` when
/// one present is not a constant.
pub(crate) fn constant_inputs(
    model: &TypedModel,
    inputs: &[OutletId],
    slots: &[Option<usize>],
) -> TractResult<Option<Vec<Option<Arc<Tensor>>>>> {
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            None => out.push(None),
            Some(s) => match model.outlet_fact(inputs[*s])?.konst.clone() {
                Some(k) => out.push(Some(k)),
                None => return Ok(None),
            },
        }
    }
    Ok(Some(out))
}

/// What an op whose weights are built still takes per run: X, then sequence_lens, initial_h
/// and initial_c where present.
pub(crate) fn per_run_inputs(slots: &Slots, inputs: &[OutletId]) -> TVec<OutletId> {
    [
        Some(0),
        slots.sequence_lens,
        slots.initial_h,
        slots.initial_c,
    ]
    .into_iter()
    .flatten()
    .map(|s| inputs[s])
    .collect()
}

/// Positions of (sequence_lens, initial_h, initial_c) among the op's inputs (X is 0): their
/// slots while the weights are inputs, else right after X in that order.
pub(crate) fn run_positions(
    slots: &Slots,
    weights_built: bool,
) -> (Option<usize>, Option<usize>, Option<usize>) {
    if !weights_built {
        return (slots.sequence_lens, slots.initial_h, slots.initial_c);
    }
    let mut next = 1;
    let mut take = |present: Option<usize>| {
        present.map(|_| {
            next += 1;
            next - 1
        })
    };
    let sl = take(slots.sequence_lens);
    let h0 = take(slots.initial_h);
    let c0 = take(slots.initial_c);
    (sl, h0, c0)
}
