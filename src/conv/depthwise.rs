//! A float depthwise convolution (one input and one output channel per group), as mobile
//! CRNNs put between their pointwise ones: tract's own kernel walks each output position's
//! taps one at a time (about 1 GFLOP/s at stride 2); this one adds each tap's weighted input
//! row to a row of outputs, a loop the compiler vectorizes (stride 1 and 2 alike), bias
//! first and the fused clamp last.

use std::sync::Arc;

use tract_core::ops::cnn::{Conv, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

use super::{geometry, Clamp, Geo, Isa};

/// A depthwise float32 convolution (NCHW or CHW, one or two spatial axes, any kernel,
/// strides, dilations and zero padding) with constant weights and bias.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    pool_spec: PoolSpec,
    isa: Isa,
    /// `[channels][kh · kw]`.
    weights: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
}

impl PartialEq for DepthwiseConv {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.pool_spec == other.pool_spec
            && self.isa == other.isa
            && self.clamp.lo.map(f32::to_bits) == other.clamp.lo.map(f32::to_bits)
            && self.clamp.hi.map(f32::to_bits) == other.clamp.hi.map(f32::to_bits)
            && bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
    }
}
impl Eq for DepthwiseConv {}

impl DepthwiseConv {
    /// The op computing what `conv` computes on inputs typed `facts` (input, kernel, bias),
    /// or `None` when it does not cover it (see [`super::PackedConv::from_conv`]), or when
    /// the convolution is not depthwise.
    pub(crate) fn from_conv(
        conv: &Conv,
        facts: &[&TypedFact],
        isa: Isa,
    ) -> TractResult<Option<DepthwiseConv>> {
        let spec = &conv.pool_spec;
        let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
        let channels = spec.input_channels;
        if conv.q_params.is_some()
            || facts.len() != 3
            || !facts.iter().all(|f| f32_plain(f))
            || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || !(1..=2).contains(&spec.rank())
            || conv.group != channels
            || spec.output_channels != channels
            || channels == 0
            || spec.strides().contains(&0)
            || spec.dilations().contains(&0)
            || !isa.available()
        {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (&facts[1].konst, &facts[2].konst) else {
            return Ok(None);
        };
        if kernel.rank() != spec.rank() + 2 {
            return Ok(None);
        }
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias.cast_to_scalar::<f32>()?; channels],
            n if n == channels && bias.rank() <= 1 => {
                bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()
            }
            _ => return Ok(None),
        };
        // [group, 1, kernel positions]
        let gok = conv.kernel_fmt.kernel_as_group_o_ihw(kernel, conv.group)?;
        let positions: usize = spec.kernel_shape.iter().product();
        let fmt = conv.kernel_fmt;
        if gok.shape() != [channels, 1, positions]
            || *fmt.input_channels(kernel.shape(), conv.group) != channels
            || *fmt.output_channels(kernel.shape(), conv.group) != channels
            || fmt.hw(kernel.shape()) != &spec.kernel_shape[..]
        {
            return Ok(None);
        }
        let weights = gok.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        Ok(Some(DepthwiseConv {
            pool_spec: spec.clone(),
            isa,
            weights: Arc::new(weights),
            bias: Arc::new(bias),
            clamp: Clamp::default(),
        }))
    }

    /// What is applied to the output before it is stored.
    pub(crate) fn clamp(&self) -> Clamp {
        self.clamp
    }

    /// The same op with a clamp fused after it.
    pub(crate) fn with_clamp(&self, clamp: Clamp) -> DepthwiseConv {
        DepthwiseConv {
            clamp,
            ..self.clone()
        }
    }

    pub(super) fn compute(&self, input: &Tensor) -> TractResult<Tensor> {
        let spec = &self.pool_spec;
        let channels = spec.input_channels;
        let (n, geo) = geometry(spec, channels, input.shape())?;
        let oshape = spec.output_shape(input.shape())?;
        // SAFETY: every element is written below.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&oshape.shape)? };
        let input = input.try_as_plain_ram()?;
        let x = input.as_slice::<f32>()?;
        let mut view = output.try_as_plain_ram_mut()?;
        let out = view.as_slice_mut::<f32>()?;
        let (plane, oplane) = (geo.h * geo.w, geo.oh * geo.ow);
        ensure!(x.len() == n * channels * plane && out.len() == n * channels * oplane);
        if oplane == 0 {
            return Ok(output);
        }
        let taps = geo.kh * geo.kw;
        for i in 0..n * channels {
            let c = i % channels;
            let args = Plane {
                geo,
                x: &x[i * plane..][..plane],
                w: &self.weights[c * taps..][..taps],
                bias: self.bias[c],
                clamp: self.clamp,
            };
            let out = &mut out[i * oplane..][..oplane];
            match self.isa {
                // SAFETY: the op is built only for instruction sets this CPU runs.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { plane_avx512(&args, out) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { plane_avx2(&args, out) },
                _ => plane_rows::<false>(&args, out),
            }
        }
        Ok(output)
    }
}

/// One channel of one image.
struct Plane<'a> {
    geo: Geo,
    /// `[h, w]`.
    x: &'a [f32],
    /// `[kh, kw]`.
    w: &'a [f32],
    bias: f32,
    clamp: Clamp,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_avx512(p: &Plane, out: &mut [f32]) {
    plane_rows::<true>(p, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(p: &Plane, out: &mut [f32]) {
    plane_rows::<true>(p, out)
}

/// `out` (`[oh, ow]`) for one plane: each output row starts at the bias, then takes each
/// tap's input row times its weight over the columns whose input is inside the image (the
/// padding adds nothing), then the clamp. With `FMA`, one rounding per tap.
#[inline(always)]
fn plane_rows<const FMA: bool>(p: &Plane, out: &mut [f32]) {
    let g = &p.geo;
    for (oy, row) in out.chunks_exact_mut(g.ow).enumerate() {
        row.fill(p.bias);
        for ky in 0..g.kh {
            let Some(iy) = (oy * g.sh + ky * g.dh).checked_sub(g.pt) else {
                continue;
            };
            if iy >= g.h {
                continue;
            }
            let input = &p.x[iy * g.w..][..g.w];
            for kx in 0..g.kw {
                let wv = p.w[ky * g.kw + kx];
                let shift = kx * g.dw;
                // Columns ox with 0 <= ox·sw + shift - pl < w.
                let lo = g.pl.saturating_sub(shift).div_ceil(g.sw);
                let hi = if g.w + g.pl > shift {
                    (g.w + g.pl - shift - 1) / g.sw + 1
                } else {
                    0
                };
                let hi = hi.min(g.ow);
                if lo >= hi {
                    continue;
                }
                let start = lo * g.sw + shift - g.pl;
                let dst = &mut row[lo..hi];
                match g.sw {
                    1 => {
                        for (o, &v) in dst.iter_mut().zip(&input[start..]) {
                            *o = madd::<FMA>(v, wv, *o);
                        }
                    }
                    2 => {
                        // Pairs: the last column's pair may end past the row.
                        let src = &input[start..];
                        let full = dst.len().min(src.len() / 2);
                        for (o, pair) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
                            *o = madd::<FMA>(pair[0], wv, *o);
                        }
                        for (j, o) in dst.iter_mut().enumerate().skip(full) {
                            *o = madd::<FMA>(src[2 * j], wv, *o);
                        }
                    }
                    s => {
                        for (o, &v) in dst.iter_mut().zip(input[start..].iter().step_by(s)) {
                            *o = madd::<FMA>(v, wv, *o);
                        }
                    }
                }
            }
        }
        if let Some(lo) = p.clamp.lo {
            row.iter_mut().for_each(|v| *v = v.max(lo));
        }
        if let Some(hi) = p.clamp.hi {
            row.iter_mut().for_each(|v| *v = v.min(hi));
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(x: f32, w: f32, acc: f32) -> f32 {
    if FMA {
        x.mul_add(w, acc)
    } else {
        acc + x * w
    }
}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.pool_spec.info();
        info.push(format!("kernels: {:?}, clamp: {:?}", self.isa, self.clamp));
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.compute(&input)?.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == DatumType::F32);
        self.pool_spec.output_facts(inputs)
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
        let k = self.pool_spec.kernel_shape.iter().product::<usize>();
        Ok(tvec!((
            Cost::FMA(DatumType::F32),
            output.shape.iter().product::<TDim>() * k
        )))
    }
}
