//! A float convolution for the small kernels and few channels of audio models (DeepFilterNet's
//! encoder: 1×3 and 3×3 kernels over time and frequency, 1 to 64 channels), where tract's
//! lowering spends more on its padded copy of the input and on im2col than on the products.
//!
//! [`PackedConv`] packs the weights once, when the plan is made, in blocks of output channels.
//! Each run walks the output positions (flat over rows and columns) in panels of 32 (AVX-512;
//! 16 with AVX2, 8 portable) and computes each panel as a product of the packed weights by the
//! panel's patches (`[cin · kernel positions, panel]`), in register tiles written straight
//! into the NCHW output, bias included, a following ReLU or clip fused in. Where a patch
//! reaches into the padding it reads zeros: no padded copy of the input is ever made.
//!
//! - A *pixel* tile holds 8 channels × the panel (one vector per channel per 16 positions).
//!   With AVX-512 it reads the input itself (masked loads; at stride 2, the even lanes of two)
//!   when each half-panel's patches are one strided run of the input (within an output row,
//!   or across rows when the input row is exactly `stride` × the output row, as in
//!   DeepFilterNet's frequency-halving convolutions); at stride 2 with more than 8 channels a
//!   *block* tile takes 16 channels × a half panel, so each run is shuffled once. Otherwise
//!   the panel's patches are first packed into a buffer that stays in L1 (masked loads, or
//!   masked gathers).
//! - A *channel* tile holds a block of 16 channels (one vector) × up to 8 positions, for short
//!   rows of output (4 frequencies, one frame of a stream, Silero's 4 STFT frames), where
//!   vectors over positions would run mostly empty.
//!
//! - A 2×2 max pooling at stride 2 after the clamp may be fused: rows are then computed a
//!   few pairs at a time into a scratch that stays in cache and pooled from there, or, for
//!   few input channels at stride 1 after a ReLU-like clamp, by *row tiles* (`rows.rs`) that
//!   pool in registers; the values are `MaxPool2x2`'s on the unfused output, bit for bit.
//!
//! Depthwise convolutions (one channel per group, where a block of output channels would run
//! 1/16 full) have their own op, [`DepthwiseConv`] (`depthwise.rs`, AVX-512 and AVX2). The pass
//! choosing them is [`crate::passes::conv`]; the kernels are in `kernels.rs`. Channels-last
//! 1-D convolutions at stride 1 without padding (Keras `Conv1D`) are one product per image on
//! rnn-run's packed GEMM: [`ChannelsLastConv`] (`channels_last.rs`).

mod channels_last;
mod depthwise;
mod kernels;
mod rows;

use std::sync::Arc;

use tract_core::ops::cnn::{Conv, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

pub use channels_last::ChannelsLastConv;
pub use depthwise::DepthwiseConv;
pub(crate) use kernels::{Clamp, Isa};
use kernels::{Geo, Patches, Tile, CHANNEL_TILE_COLS};

/// A float32 convolution (NCHW or CHW, one or two spatial axes, any kernel, strides,
/// dilations, zero padding and groups) with constant weights and bias.
#[derive(Debug, Clone)]
pub struct PackedConv {
    pool_spec: PoolSpec,
    group: usize,
    isa: Isa,
    /// Per group, per block of `isa.wb()` output channels: `[k][wb]`, zero past the group's
    /// channels; block `b` of group `g` starts at `(g·blocks + b)·k·wb`.
    weights: Arc<Vec<f32>>,
    /// The same blocks of the bias: `[wb]` each.
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
    /// A 2×2 max pooling at stride 2 after the clamp (NCHW only), as
    /// [`crate::passes::maxpool::MaxPool2x2`] computes it.
    pool: bool,
}

impl PartialEq for PackedConv {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.pool_spec == other.pool_spec
            && self.group == other.group
            && self.isa == other.isa
            && self.pool == other.pool
            && self.clamp.lo.map(f32::to_bits) == other.clamp.lo.map(f32::to_bits)
            && self.clamp.hi.map(f32::to_bits) == other.clamp.hi.map(f32::to_bits)
            && (Arc::ptr_eq(&self.weights, &other.weights)
                || bits(&self.weights) == bits(&other.weights))
            && (Arc::ptr_eq(&self.bias, &other.bias) || bits(&self.bias) == bits(&other.bias))
    }
}
impl Eq for PackedConv {}

impl PackedConv {
    /// The op computing what `conv` computes on inputs typed `facts` (input, kernel, bias),
    /// or `None` when it does not cover it: a quantized or non-f32 convolution, channels
    /// last, three spatial axes or more, weights or bias not constant, or kernels `isa`
    /// this CPU does not run.
    pub(crate) fn from_conv(
        conv: &Conv,
        facts: &[&TypedFact],
        isa: Isa,
    ) -> TractResult<Option<PackedConv>> {
        let spec = &conv.pool_spec;
        let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
        if conv.q_params.is_some()
            || facts.len() != 3
            || !facts.iter().all(|f| f32_plain(f))
            || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            || !(1..=2).contains(&spec.rank())
            || conv.group == 0
            || !spec.input_channels.is_multiple_of(conv.group)
            || !spec.output_channels.is_multiple_of(conv.group)
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
        let cout = spec.output_channels;
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias.cast_to_scalar::<f32>()?; cout],
            n if n == cout && bias.rank() <= 1 => {
                bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()
            }
            _ => return Ok(None),
        };
        // [group, cout / group, cin / group · kernel positions]
        let gok = conv.kernel_fmt.kernel_as_group_o_ihw(kernel, conv.group)?;
        let (g, cog, k) = match *gok.shape() {
            [g, o, k] => (g, o, k),
            _ => return Ok(None),
        };
        let positions: usize = spec.kernel_shape.iter().product();
        let fmt = conv.kernel_fmt;
        if g != conv.group
            || cog * g != cout
            || k != spec.input_channels / g * positions
            || *fmt.input_channels(kernel.shape(), g) != spec.input_channels
            || *fmt.output_channels(kernel.shape(), g) != cout
            || fmt.hw(kernel.shape()) != &spec.kernel_shape[..]
        {
            return Ok(None);
        }
        let gok = gok.try_as_plain_ram()?;
        let gok = gok.as_slice::<f32>()?;
        let wb = isa.wb();
        let blocks = cog.div_ceil(wb);
        let mut weights = vec![0f32; g * blocks * k * wb];
        let mut bias_blocks = vec![0f32; g * blocks * wb];
        for gg in 0..g {
            for co in 0..cog {
                let block = gg * blocks + co / wb;
                let r = co % wb;
                for kk in 0..k {
                    weights[(block * k + kk) * wb + r] = gok[(gg * cog + co) * k + kk];
                }
                bias_blocks[block * wb + r] = bias[gg * cog + co];
            }
        }
        let bias = bias_blocks;
        Ok(Some(PackedConv {
            pool_spec: spec.clone(),
            group: conv.group,
            isa,
            weights: Arc::new(weights),
            bias: Arc::new(bias),
            clamp: Clamp::default(),
            pool: false,
        }))
    }

    /// What is applied to the output before it is stored.
    pub(crate) fn clamp(&self) -> Clamp {
        self.clamp
    }

    /// The same op with a clamp fused after it.
    pub(crate) fn with_clamp(&self, clamp: Clamp) -> PackedConv {
        PackedConv {
            clamp,
            ..self.clone()
        }
    }

    /// Whether a 2×2 max pooling at stride 2 is fused after it.
    pub(crate) fn pooled(&self) -> bool {
        self.pool
    }

    /// The same op with a 2×2 max pooling at stride 2 fused after it (and after its clamp),
    /// or `None` unless its output is NCHW with two spatial axes.
    pub(crate) fn with_pool(&self) -> Option<PackedConv> {
        (self.pool_spec.data_format == DataFormat::NCHW && self.pool_spec.rank() == 2).then(|| {
            PackedConv {
                pool: true,
                ..self.clone()
            }
        })
    }

    /// The output shape for an input of shape `input`: the convolution's, pooled if fused.
    fn output_shape<D: DimLike>(&self, input: &[D]) -> TractResult<TVec<D>> {
        let mut shape = self.pool_spec.output_shape(input)?.shape;
        if self.pool {
            let r = shape.len();
            for d in &mut shape[r - 2..] {
                *d = d.clone() / 2;
            }
        }
        Ok(shape)
    }

    fn compute(&self, input: &Tensor) -> TractResult<Tensor> {
        let spec = &self.pool_spec;
        let (n, geo) = geometry(spec, self.group, input.shape())?;
        let oshape = self.output_shape(input.shape())?;
        // SAFETY: `run` writes every element.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&oshape)? };
        let input = input.try_as_plain_ram()?;
        self.run(
            geo,
            n,
            input.as_slice::<f32>()?,
            output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(output)
    }

    /// Computes `n` images of `geo` (each group's), writing every element of `out` (pooled
    /// when [`PackedConv::pooled`]).
    fn run(&self, geo: Geo, n: usize, input: &[f32], out: &mut [f32]) -> TractResult<()> {
        let (g, cout) = (self.group, self.pool_spec.output_channels);
        let cog = cout / g;
        let p = geo.oh * geo.ow;
        let (poh, pow) = if self.pool {
            (geo.oh / 2, geo.ow / 2)
        } else {
            (geo.oh, geo.ow)
        };
        let pp = poh * pow;
        let group_image = geo.c * geo.h * geo.w;
        ensure!(input.len() == n * g * group_image && out.len() == n * cout * pp);
        if pp == 0 || cog == 0 {
            return Ok(());
        }
        let by_rows = self.by_rows(&geo);
        let nr = self.isa.nr();
        let mut lines = vec![Line([0.0; 16]); (geo.k() * nr).div_ceil(16)];
        let panel = Line::floats(&mut lines);
        // Pooled, the rows are computed a few pairs at a time into a scratch that stays in
        // cache (a whole number of panels where a few pairs make one), then pooled into the
        // output: the full-size output is never written and read back.
        let pair_rows = if self.pool && !by_rows {
            let pair = 2 * geo.ow;
            let least = 256usize.div_ceil(pair);
            (least..=2048usize.div_ceil(pair).max(least))
                .find(|m| (m * pair).is_multiple_of(nr))
                .unwrap_or(least)
                .min(poh)
        } else {
            0
        };
        let mut scratch = vec![0f32; cog * 2 * pair_rows * geo.ow];
        // Image by image, group by group: the input and output are [n, g, ...] in order.
        for i in 0..n * g {
            let x = &input[i * group_image..][..group_image];
            let out = &mut out[i * cog * pp..][..cog * pp];
            if by_rows {
                self.run_rows(geo, i % g, x, out);
                continue;
            }
            let mut patches = Patches::new(geo, x);
            if !self.pool {
                self.panels(&mut patches, i % g, 0..p, out, p, panel);
                continue;
            }
            for y0 in (0..poh).step_by(pair_rows) {
                let pairs = pair_rows.min(poh - y0);
                let ldc = 2 * pairs * geo.ow;
                let positions = 2 * y0 * geo.ow..2 * (y0 + pairs) * geo.ow;
                let scratch = &mut scratch[..cog * ldc];
                self.panels(&mut patches, i % g, positions, scratch, ldc, panel);
                for (c, rows) in scratch.chunks_exact(ldc).enumerate() {
                    let out = &mut out[c * pp + y0 * pow..][..pairs * pow];
                    crate::passes::maxpool::pool_planes(rows, out, 2 * pairs, geo.ow);
                }
            }
        }
        Ok(())
    }

    /// Computes the output positions `positions` (flat over `oh × ow`) of one image of
    /// group `gg`: channel `r` of position `q` into `out[r·ldc + q − positions.start]`.
    fn panels(
        &self,
        patches: &mut Patches,
        gg: usize,
        positions: std::ops::Range<usize>,
        out: &mut [f32],
        ldc: usize,
        panel: &mut [f32],
    ) {
        let geo = patches.geo;
        let cog = self.pool_spec.output_channels / self.group;
        let (k, p) = (geo.k(), geo.oh * geo.ow);
        let (mr, wb, nr) = (self.isa.mr(), self.isa.wb(), self.isa.nr());
        let blocks = cog.div_ceil(wb);
        let pointwise = geo.is_pointwise();
        let width = positions.len();
        assert!(positions.end <= p && ldc >= width && out.len() >= (cog - 1) * ldc + width);
        let x = patches.input;
        for p0 in positions.clone().step_by(nr) {
            let cols = nr.min(positions.end - p0);
            let q0 = p0 - positions.start;
            // Vectors over channels when they fill more lanes than the positions do
            // (a short row: a few frequencies, or one frame).
            let by_channel = cols * 2 <= nr
                && cog * nr > cols * blocks * wb
                && ldc.checked_mul(wb).is_some_and(|x| x <= i32::MAX as usize);
            // Where the pixel tiles read the patches: the image itself (pointwise),
            // straight from the input rows (AVX-512, rows at stride 1 or 2), or a packed
            // panel. At stride 2, a tile of a whole block of channels per half panel
            // shuffles each row of patches once for the block.
            let block_tiles = geo.sw == 2 && cog > mr;
            let direct = if self.isa == Isa::Avx512 && !by_channel && !pointwise {
                patches.direct(p0, cols)
            } else {
                None
            };
            let (xp, ldx) = if pointwise && cols == nr {
                (x[p0..].as_ptr(), p)
            } else if direct.is_some() {
                (std::ptr::null(), 0)
            } else {
                patches.pack(self.isa, p0, cols, nr, panel);
                (panel.as_ptr(), nr)
            };
            for b in 0..blocks {
                let block = gg * blocks + b;
                let w = &self.weights[block * k * wb..][..k * wb];
                let bias = &self.bias[block * wb..][..wb];
                let channels = wb.min(cog - b * wb);
                let t = Tile {
                    k,
                    w: w.as_ptr(),
                    ldw: wb,
                    x: xp,
                    ldx,
                    bias: bias.as_ptr(),
                    c: out[b * wb * ldc + q0..].as_mut_ptr(),
                    ldc,
                    rows: channels,
                    cols,
                    clamp: self.clamp,
                };
                if let (Some(d), true) = (&direct, block_tiles) {
                    for h in 0..2 {
                        if h * 16 >= cols {
                            break;
                        }
                        let t = Tile {
                            c: t.c.wrapping_add(16 * h),
                            cols: 16.min(cols - 16 * h),
                            ..t
                        };
                        // SAFETY: `w` holds k rows of wb >= channels weights, `bias` wb
                        // values; `d` describes the panel in `x`, alive here, for an
                        // AVX-512 op at stride 2; `out` holds `channels` rows of ldc values
                        // from b·wb·ldc + q0 + 16h, of which cols are written.
                        unsafe { kernels::direct_block_tile(&t, d, h) };
                    }
                } else if by_channel {
                    for j0 in (0..cols).step_by(CHANNEL_TILE_COLS) {
                        let t = Tile {
                            x: t.x.wrapping_add(j0),
                            c: t.c.wrapping_add(j0),
                            cols: CHANNEL_TILE_COLS.min(cols - j0),
                            ..t
                        };
                        // SAFETY: `w` holds k rows of wb weights, `bias` wb values; x
                        // holds k rows of nr >= j0 + cols values at stride ldx (a packed
                        // panel); `out` holds `channels` rows of ldc values from
                        // b·wb·ldc + q0, of which j0 .. j0 + cols are written; ldc·wb fits
                        // an i32.
                        unsafe { kernels::channel_tile(self.isa, &t) };
                    }
                } else {
                    for r0 in (0..channels).step_by(mr) {
                        let t = Tile {
                            w: t.w.wrapping_add(r0),
                            bias: t.bias.wrapping_add(r0),
                            c: t.c.wrapping_add(r0 * ldc),
                            rows: mr.min(channels - r0),
                            ..t
                        };
                        // SAFETY: `w` holds k rows of wb >= r0 + rows weights, `bias`
                        // wb values; x holds k rows of nr values at stride ldx (a packed
                        // panel, or the image itself, [k, p], for a full panel of a
                        // pointwise convolution), or `direct` describes the panel in
                        // `x`, alive here, for an AVX-512 op; `out` holds rows rows of ldc
                        // values from (b·wb + r0)·ldc + q0, of which cols are written.
                        unsafe {
                            match &direct {
                                Some(d) => kernels::direct_tile(&t, d),
                                None => kernels::pixel_tile(self.isa, &t),
                            }
                        };
                    }
                }
            }
        }
    }
}

/// The batch size and one group's geometry of `spec` (with `group` groups) on an input of
/// `shape`.
fn geometry(spec: &PoolSpec, group: usize, shape: &[usize]) -> TractResult<(usize, Geo)> {
    let shape = spec.data_format.shape(shape)?;
    let n = shape.n().copied().unwrap_or(1);
    let cin = *shape.c();
    ensure!(
        cin == spec.input_channels,
        "{cin} input channels, expected {}",
        spec.input_channels
    );
    let hw = shape.hw_dims();
    let pads = spec.computed_padding(hw);
    let (kernel, strides, dilations) = (&spec.kernel_shape, spec.strides(), spec.dilations());
    let geo = if hw.len() == 2 {
        Geo {
            c: cin / group,
            h: hw[0],
            w: hw[1],
            oh: pads[0].convoluted,
            ow: pads[1].convoluted,
            kh: kernel[0],
            kw: kernel[1],
            sh: strides[0],
            sw: strides[1],
            dh: dilations[0],
            dw: dilations[1],
            pt: pads[0].pad_before,
            pl: pads[1].pad_before,
        }
    } else {
        Geo {
            c: cin / group,
            h: 1,
            w: hw[0],
            oh: 1,
            ow: pads[0].convoluted,
            kh: 1,
            kw: kernel[0],
            sh: 1,
            sw: strides[0],
            dh: 1,
            dw: dilations[0],
            pt: 0,
            pl: pads[0].pad_before,
        }
    };
    Ok((n, geo))
}

/// A cache line of floats: panels start on one, so their vector loads and stores split none.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl Line {
    fn floats(lines: &mut [Line]) -> &mut [f32] {
        // SAFETY: a Line is 16 f32 and nothing else (repr(C), its alignment a multiple of
        // f32's); the slice borrows `lines` mutably for as long as it lives.
        unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut f32, lines.len() * 16) }
    }
}

impl Op for PackedConv {
    fn name(&self) -> StaticName {
        "PackedConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.pool_spec.info();
        info.push(format!(
            "groups: {}, kernels: {:?}, clamp: {:?}, 2x2 max pool: {}",
            self.group, self.isa, self.clamp, self.pool
        ));
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PackedConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.compute(&input)?.into_tvalue()))
    }
}

impl TypedOp for PackedConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == DatumType::F32);
        Ok(tvec!(f32::fact(self.output_shape(&inputs[0].shape)?)))
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
        // The convolution's own output (the pooling's maxima are not counted).
        let output = self.pool_spec.output_shape(&inputs[0].shape)?;
        let k = self.pool_spec.input_channels / self.group
            * self.pool_spec.kernel_shape.iter().product::<usize>();
        Ok(tvec!((
            Cost::FMA(DatumType::F32),
            output.shape.iter().product::<TDim>() * k
        )))
    }
}

#[cfg(test)]
mod channels_last_tests;
#[cfg(test)]
mod depthwise_tests;
#[cfg(test)]
mod tests;
