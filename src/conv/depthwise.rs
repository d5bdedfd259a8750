//! A float depthwise convolution (one input and one output channel per group), as mobile
//! CRNNs put between their pointwise ones: tract's own kernel walks each output position's
//! taps one at a time (about 1 GFLOP/s at stride 2). This one works an output row at a time:
//! each tap is a weight and a contiguous run of input (at stride 2 and more, of one phase of
//! the input row, split once), summed over the columns it reaches inside the image, bias first
//! and the fused clamp last ([`super::kernels::depthwise_row`]: AVX-512 in registers, 64
//! columns at a time; otherwise a loop over the row the compiler vectorizes).

use std::sync::Arc;

use tract_core::ops::cnn::{Conv, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

use super::kernels::{self, RowTap};
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
                _ => plane_rows(self.isa, &args, out),
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
    plane_rows(Isa::Avx512, p, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(p: &Plane, out: &mut [f32]) {
    plane_rows(Isa::Avx2, p, out)
}

/// `out` (`[oh, ow]`) for one plane, row by row: each row's taps (the kernel rows inside the
/// image, the columns whose input is) go to [`kernels::depthwise_row`]. At a stride `s` > 1
/// each input row is first split into its `s` phases (columns `r`, `r + s`, …), so that
/// every tap reads a contiguous run. Inlined into each instruction set's function, so that
/// the compiler vectorizes the phase split with it.
#[inline(always)]
fn plane_rows(isa: Isa, p: &Plane, out: &mut [f32]) {
    let g = &p.geo;
    let sw = g.sw;
    // Per kernel column: the output columns lo .. hi it reaches inside the image, the phase
    // it reads and where in it column lo's input is.
    let spans: Vec<(usize, usize, usize, usize)> = (0..g.kw)
        .map(|kx| {
            let shift = kx * g.dw;
            // Columns ox with 0 <= ox·sw + shift - pl < w.
            let lo = g.pl.saturating_sub(shift).div_ceil(sw);
            let hi = if g.w + g.pl > shift {
                ((g.w + g.pl - shift - 1) / sw + 1).min(g.ow)
            } else {
                0
            };
            let q = shift as isize - g.pl as isize;
            let (r, off) = (q.rem_euclid(sw as isize), q.div_euclid(sw as isize));
            let start = (lo as isize + off).max(0) as usize;
            (lo, hi.max(lo), r as usize, start)
        })
        .collect();
    let phase_len = g.w.div_ceil(sw);
    let row_len = sw * phase_len;
    let mut phases = vec![0f32; if sw > 1 { g.kh * row_len } else { 0 }];
    let mut taps: Vec<RowTap> = Vec::with_capacity(g.kh * g.kw);
    for (oy, row) in out.chunks_exact_mut(g.ow).enumerate() {
        taps.clear();
        for ky in 0..g.kh {
            let Some(iy) = (oy * g.sh + ky * g.dh).checked_sub(g.pt) else {
                continue;
            };
            if iy >= g.h {
                continue;
            }
            let input = &p.x[iy * g.w..][..g.w];
            let at = ky * row_len;
            if sw == 2 {
                let (even, odd) = phases[at..at + row_len].split_at_mut(phase_len);
                let pairs = input.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    even[phase_len - 1] = *last;
                }
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                    *e = pair[0];
                    *o = pair[1];
                }
            } else if sw > 2 {
                for r in 0..sw.min(g.w) {
                    let phase = &mut phases[at + r * phase_len..][..phase_len];
                    for (d, &v) in phase.iter_mut().zip(input[r..].iter().step_by(sw)) {
                        *d = v;
                    }
                }
            }
            for (kx, &(lo, hi, r, start)) in spans.iter().enumerate() {
                if lo < hi {
                    let src = if sw > 1 {
                        at + r * phase_len + start
                    } else {
                        iy * g.w + start
                    };
                    taps.push(RowTap {
                        w: p.w[ky * g.kw + kx],
                        src,
                        lo,
                        hi,
                    });
                }
            }
        }
        let data: &[f32] = if sw > 1 { &phases } else { p.x };
        // SAFETY: `isa` is available (the op is built only for sets this CPU runs); each
        // tap's span is inside the row, its input inside `data` (the spans keep the input
        // column inside the image row, or its phase).
        unsafe { kernels::depthwise_row(isa, row, data, &taps, p.bias, p.clamp) };
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
