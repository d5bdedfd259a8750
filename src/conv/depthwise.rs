//! A float depthwise convolution (one input and one output channel per group), as mobile
//! CRNNs put between their pointwise ones, on AVX-512 or AVX2+FMA. tract's kernel vectorizes
//! along an output row and, at a column stride of 2, walks it one value at a time (the
//! PP-OCR-style bench model's stride-2 layer took two thirds of its depthwise time). This one
//! puts 16 channels in a vector with AVX-512, 8 with AVX2 ([`super::kernels::depthwise_block`]):
//! each tap is one FMA by the channels' weights at any stride, the NCHW rows transposed in
//! and out in registers, the bias first and a fused clamp last; both sets give the same bits.
//! (An earlier kernel of ours, vectorized along output rows with the input split into phases
//! at stride 2, was slower than tract's and dropped.) Without either set (the portable build,
//! other architectures) the pass leaves depthwise convolutions to tract.

use std::sync::Arc;

use tract_core::ops::cnn::{Conv, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

use super::{geometry, Clamp, Isa};

/// A depthwise float32 convolution (NCHW or CHW, one or two spatial axes, any kernel,
/// strides, dilations and zero padding) with constant weights and bias.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    pool_spec: PoolSpec,
    /// AVX-512 (blocks of 16 channels) or AVX2 (blocks of 8): `isa.wb()`, "lanes" below.
    isa: Isa,
    /// Per block of channels: `[kh · kw][lanes]`, zero past the channels.
    weights: Arc<Vec<f32>>,
    /// Per block: `[lanes]`.
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
    /// or `None` when it does not cover it: not depthwise, quantized or not f32, channels
    /// last, three spatial axes, weights or bias not constant, or `isa` neither AVX-512 nor
    /// AVX2 (or not run by this CPU).
    pub(crate) fn from_conv(
        conv: &Conv,
        facts: &[&TypedFact],
        isa: Isa,
    ) -> TractResult<Option<DepthwiseConv>> {
        let spec = &conv.pool_spec;
        let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
        let channels = spec.input_channels;
        if !cfg!(target_arch = "x86_64")
            || !matches!(isa, Isa::Avx512 | Isa::Avx2)
            || !isa.available()
            || conv.q_params.is_some()
            || facts.len() != 3
            || !facts.iter().all(|f| f32_plain(f))
            || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || !(1..=2).contains(&spec.rank())
            || conv.group != channels
            || spec.output_channels != channels
            || channels == 0
            || spec.strides().contains(&0)
            || spec.dilations().contains(&0)
            || spec.kernel_shape.contains(&0)
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
        let taps: usize = spec.kernel_shape.iter().product();
        let fmt = conv.kernel_fmt;
        if gok.shape() != [channels, 1, taps]
            || *fmt.input_channels(kernel.shape(), conv.group) != channels
            || *fmt.output_channels(kernel.shape(), conv.group) != channels
            || fmt.hw(kernel.shape()) != &spec.kernel_shape[..]
        {
            return Ok(None);
        }
        let gok = gok.try_as_plain_ram()?;
        let gok = gok.as_slice::<f32>()?;
        let lanes = isa.wb();
        let blocks = channels.div_ceil(lanes);
        let mut weights = vec![0f32; blocks * taps * lanes];
        let mut bias_blocks = vec![0f32; blocks * lanes];
        for c in 0..channels {
            let (block, lane) = (c / lanes, c % lanes);
            for t in 0..taps {
                weights[(block * taps + t) * lanes + lane] = gok[c * taps + t];
            }
            bias_blocks[c] = bias[c];
        }
        Ok(Some(DepthwiseConv {
            pool_spec: spec.clone(),
            isa,
            weights: Arc::new(weights),
            bias: Arc::new(bias_blocks),
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
        // SAFETY: every element is written below (each block writes its channels' planes).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&oshape.shape)? };
        let input = input.try_as_plain_ram()?;
        let x = input.as_slice::<f32>()?;
        let mut view = output.try_as_plain_ram_mut()?;
        let out = view.as_slice_mut::<f32>()?;
        let (plane, oplane) = (geo.h * geo.w, geo.oh * geo.ow);
        ensure!(x.len() == n * channels * plane && out.len() == n * channels * oplane);
        ensure!(geo.kh >= 1 && geo.kw >= 1 && geo.c == 1);
        if oplane == 0 {
            return Ok(output);
        }
        self.run(geo, n, x, out);
        Ok(output)
    }

    #[cfg(target_arch = "x86_64")]
    fn run(&self, geo: super::kernels::Geo, n: usize, x: &[f32], out: &mut [f32]) {
        use super::kernels::{depthwise_block, DwBlock, DwRows};
        let channels = self.pool_spec.input_channels;
        let (plane, oplane) = (geo.h * geo.w, geo.oh * geo.ow);
        let taps = geo.kh * geo.kw;
        let lanes = self.isa.wb();
        let mut rows = DwRows::new(&geo, lanes);
        for i in 0..n {
            for (block, c0) in (0..channels).step_by(lanes).enumerate() {
                let b = DwBlock {
                    geo,
                    x: x[(i * channels + c0) * plane..].as_ptr(),
                    channels: lanes.min(channels - c0),
                    w: self.weights[block * taps * lanes..].as_ptr(),
                    bias: self.bias[block * lanes..].as_ptr(),
                    out: out[(i * channels + c0) * oplane..].as_mut_ptr(),
                    clamp: self.clamp,
                };
                // SAFETY: the op is built only for AVX-512 or AVX2 where the CPU runs it; the
                // block's `channels` planes of input and output lie inside `x` and `out`
                // (their lengths were checked against the shapes), its weights and bias are
                // a whole block of `isa.wb()`, and `rows` was made for `geo` and that width.
                unsafe { depthwise_block(self.isa, &b, &mut rows) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn run(&self, _geo: super::kernels::Geo, _n: usize, _x: &[f32], _out: &mut [f32]) {
        unreachable!("DepthwiseConv is built only with AVX-512 or AVX2")
    }
}

impl Op for DepthwiseConv {
    /// `DepthwiseConv16` on AVX-512, `DepthwiseConv8` on AVX2: channels a vector.
    fn name(&self) -> StaticName {
        format!("DepthwiseConv{}", self.isa.wb()).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.pool_spec.info();
        info.push(format!("clamp: {:?}", self.clamp));
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
