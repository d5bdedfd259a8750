//! Cells built from weights that arrive at run time, kept for the next run that brings the
//! same bytes.
//!
//! Weights that are graph inputs, or computed from graph inputs, cannot be packed when the
//! model is typed, so each run packs them (once per run, never per step). Callers often feed
//! the same weights run after run (a default overridden once, a decoder whose weights come
//! from a rarely changing input), so the op keeps the last cells it built with a copy of the
//! weights they came from, and reuses them when a run's weights are byte for byte the same.
//! Bytes, not values: `-0.0` and `0.0`, or two NaNs with other payloads, are other weights.
//! Comparing reads each weight once, where packing reads and writes it, and stops at the
//! first byte that differs.

use std::sync::{Arc, Mutex};

use tract_hir::internal::*;

use crate::attrs::NodeSpec;
use crate::kernels::WeightFormat;

use super::layers::AnyLayer;

/// What the kept cells were built from.
#[derive(Debug)]
struct Kept {
    spec: Arc<NodeSpec>,
    dt: DatumType,
    recurrent: WeightFormat,
    /// W, R, B, P as the run gave them (`None`: absent).
    weights: Vec<Option<Tensor>>,
    layer: Arc<AnyLayer>,
}

/// The cells last built from run-time weights by one op (and its copies in other plans).
#[derive(Debug, Default)]
pub(crate) struct RunBuilt {
    last: Mutex<Option<Kept>>,
}

impl RunBuilt {
    /// The cells for these weights (W, R, B, P): the kept ones when the node, element type,
    /// storage and every weight's type, shape and bytes are the same, else built now (and
    /// kept in their place).
    pub(crate) fn get_or_build(
        &self,
        spec: &Arc<NodeSpec>,
        dt: DatumType,
        weights: [Option<&Tensor>; 4],
        recurrent: WeightFormat,
    ) -> TractResult<Arc<AnyLayer>> {
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = &*last {
                if k.spec == *spec
                    && k.dt == dt
                    && k.recurrent == recurrent
                    && same_bytes(&k.weights, &weights)
                {
                    return Ok(k.layer.clone());
                }
            }
        }
        // Built outside the lock: a run with other weights does not wait for this one.
        let [w, r, b, p] = weights;
        let layer = Arc::new(AnyLayer::build(
            spec,
            dt,
            w.context("W")?,
            r.context("R")?,
            b,
            p,
            recurrent,
        )?);
        let kept = Kept {
            spec: spec.clone(),
            dt,
            recurrent,
            weights: weights.iter().map(|t| t.cloned()).collect(),
            layer: layer.clone(),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept);
        Ok(layer)
    }
}

fn same_bytes(kept: &[Option<Tensor>], now: &[Option<&Tensor>]) -> bool {
    kept.len() == now.len()
        && kept.iter().zip(now).all(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => {
                a.datum_type() == b.datum_type()
                    && a.shape() == b.shape()
                    && matches!((plain(a), plain(b)), (Some(x), Some(y)) if x == y)
            }
            (None, None) => true,
            _ => false,
        })
}

/// A tensor's bytes, when it is held in plain memory.
fn plain(t: &Tensor) -> Option<&[u8]> {
    t.try_as_plain_ram().ok().map(|v| v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{Activation, Direction, Layout, OpKind, Slots};

    /// An RNN node, hidden 2, input 3: W [1, 2, 3], R [1, 2, 2], B [1, 4].
    fn spec() -> Arc<NodeSpec> {
        Arc::new(NodeSpec {
            name: "rnn".into(),
            op: OpKind::Rnn,
            opset: 14,
            direction: Direction::Forward,
            hidden_size: Some(2),
            layout: Layout::SeqMajor,
            activations: vec![Activation::Tanh],
            activations_given: false,
            clip: None,
            input_forget: false,
            linear_before_reset: false,
            slots: Slots {
                b: Some(3),
                sequence_lens: None,
                initial_h: None,
                initial_c: None,
                p: None,
                y: Some(0),
                y_h: None,
                y_c: None,
            },
        })
    }

    fn weights(seed: f32) -> [Tensor; 3] {
        with_r3(seed, seed + 0.75)
    }

    /// The weights of `seed` with R's last element `r3`.
    fn with_r3(seed: f32, r3: f32) -> [Tensor; 3] {
        let v = |n: usize| (0..n).map(|i| seed + i as f32 * 0.25).collect::<Vec<_>>();
        let mut r = v(4);
        r[3] = r3;
        [
            Tensor::from_shape(&[1, 2, 3], &v(6)).unwrap(),
            Tensor::from_shape(&[1, 2, 2], &r).unwrap(),
            Tensor::from_shape(&[1, 4], &v(4)).unwrap(),
        ]
    }

    #[test]
    fn the_same_bytes_reuse_the_cells_and_any_other_byte_builds_again() {
        let kept = RunBuilt::default();
        let (s, f32_, full) = (spec(), DatumType::F32, WeightFormat::Full);
        let get = |[w, r, b]: &[Tensor; 3], dt, format| {
            kept.get_or_build(&s, dt, [Some(w), Some(r), Some(b), None], format)
                .unwrap()
        };
        let a = weights(0.5);
        let first = get(&a, f32_, full);
        // Equal weights in other tensors (a run's fresh inputs) are the same bytes.
        assert!(Arc::ptr_eq(&first, &get(&weights(0.5), f32_, full)));
        // One element changed, even to an equal value of other bits, is other weights.
        let z = get(&with_r3(0.5, 0.0), f32_, full);
        assert!(!Arc::ptr_eq(&first, &z));
        assert!(!Arc::ptr_eq(&z, &get(&with_r3(0.5, -0.0), f32_, full)));
        // Another element type or storage of Rᵀ builds again; so does going back to `a`
        // (only the last build is kept).
        let again = get(&a, f32_, full);
        assert!(!Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&again, &get(&a, DatumType::F64, full)));
        assert!(!Arc::ptr_eq(&again, &get(&a, f32_, WeightFormat::Bf16)));
        // A missing bias is not a zero one.
        let no_bias = kept
            .get_or_build(&s, f32_, [Some(&a[0]), Some(&a[1]), None, None], full)
            .unwrap();
        let with_bias = get(&a, f32_, full);
        assert!(!Arc::ptr_eq(&no_bias, &with_bias));
        assert!(Arc::ptr_eq(&with_bias, &get(&weights(0.5), f32_, full)));
    }
}
