//! The cells a node runs on, in the model's element type and shared by every plan holding the
//! same constant weights, and what a streaming node carries between calls.

use std::sync::Arc;

use tract_hir::internal::*;

use crate::attrs::NodeSpec;
use crate::kernels::{Float, WeightFormat};
use crate::layer::{Carry as LayerCarry, Layer};
use crate::shared::{SharedBuilds, Tensors};

/// A [`Layer`] in the model's element type. Half precision runs in `f32`.
#[derive(Debug)]
pub(crate) enum AnyLayer {
    F32(Layer<f32>),
    F64(Layer<f64>),
}

impl AnyLayer {
    pub(super) fn build(
        spec: &NodeSpec,
        dt: DatumType,
        w: &Tensor,
        r: &Tensor,
        b: Option<&Tensor>,
        p: Option<&Tensor>,
        recurrent: WeightFormat,
    ) -> TractResult<AnyLayer> {
        fn make<T: Float + Datum>(
            spec: &NodeSpec,
            w: &Tensor,
            r: &Tensor,
            b: Option<&Tensor>,
            p: Option<&Tensor>,
            recurrent: WeightFormat,
        ) -> TractResult<Layer<T>> {
            let w = w.cast_to::<T>()?;
            let r = r.cast_to::<T>()?;
            let b = b.map(|b| b.cast_to::<T>()).transpose()?;
            let p = p.map(|p| p.cast_to::<T>()).transpose()?;
            Ok(Layer::from_onnx_with(
                spec,
                w.to_plain_array_view::<T>()?,
                r.to_plain_array_view::<T>()?,
                b.as_ref()
                    .map(|b| b.to_plain_array_view::<T>())
                    .transpose()?,
                p.as_ref()
                    .map(|p| p.to_plain_array_view::<T>())
                    .transpose()?,
                recurrent,
            )?)
        }
        Ok(match dt {
            DatumType::F64 => AnyLayer::F64(make::<f64>(spec, w, r, b, p, recurrent)?),
            _ => AnyLayer::F32(make::<f32>(spec, w, r, b, p, recurrent)?),
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        match self {
            AnyLayer::F32(l) => l.hidden_size(),
            AnyLayer::F64(l) => l.hidden_size(),
        }
    }
}

/// What the cells of a node depend on besides its weight tensors.
#[derive(Clone, PartialEq)]
struct LayerKey {
    spec: Arc<NodeSpec>,
    dt: DatumType,
    recurrent: WeightFormat,
}

/// Cells built from constant weights (W, R, B, P), shared by every plan holding the same
/// tensors (see [`crate::shared`]).
static LAYERS: SharedBuilds<LayerKey, AnyLayer> = SharedBuilds::new();

/// The cells for these weights (W, R, B, P) with Rᵀ stored as `recurrent`, built once.
pub(super) fn shared_layer(
    spec: &Arc<NodeSpec>,
    dt: DatumType,
    weights: Tensors,
    recurrent: WeightFormat,
) -> TractResult<Arc<AnyLayer>> {
    let key = LayerKey {
        spec: spec.clone(),
        dt,
        recurrent,
    };
    LAYERS.get_or_build(key, weights, |key, weights| {
        let get = |i: usize| weights.get(i).and_then(|t| t.as_deref());
        AnyLayer::build(
            &key.spec,
            key.dt,
            get(0).context("W")?,
            get(1).context("R")?,
            get(2),
            get(3),
            key.recurrent,
        )
    })
}

/// What a streaming op carries between calls, in the layer's element type.
#[derive(Debug, Clone, Default)]
pub(crate) enum Carry {
    #[default]
    Empty,
    F32(LayerCarry<f32>),
    F64(LayerCarry<f64>),
}

/// Moving a stream's carry in and out of [`Carry`] for one element type.
pub(super) trait Carried: Float + Datum {
    /// Takes the carry out, leaving it empty (no copy per call).
    fn take(carry: &mut Carry) -> LayerCarry<Self>;
    fn carry(layer_carry: LayerCarry<Self>) -> Carry;
}

impl Carried for f32 {
    fn take(carry: &mut Carry) -> LayerCarry<f32> {
        match std::mem::take(carry) {
            Carry::F32(c) => c,
            _ => LayerCarry::default(),
        }
    }
    fn carry(layer_carry: LayerCarry<f32>) -> Carry {
        Carry::F32(layer_carry)
    }
}

impl Carried for f64 {
    fn take(carry: &mut Carry) -> LayerCarry<f64> {
        match std::mem::take(carry) {
            Carry::F64(c) => c,
            _ => LayerCarry::default(),
        }
    }
    fn carry(layer_carry: LayerCarry<f64>) -> Carry {
        Carry::F64(layer_carry)
    }
}

/// The cells of `layer` (built by [`shared_layer`]) rebuilt from the same weights with Rᵀ
/// stored as `recurrent`.
pub(super) fn rebuilt_layer(
    spec: &Arc<NodeSpec>,
    layer: &Arc<AnyLayer>,
    recurrent: WeightFormat,
) -> TractResult<Arc<AnyLayer>> {
    let (key, weights) = LAYERS
        .origin(layer)
        .context("the weights of a prepared layer are not registered")?;
    shared_layer(spec, key.dt, weights, recurrent)
}
