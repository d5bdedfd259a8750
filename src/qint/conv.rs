//! ONNX `ConvInteger` with constant weights, on the quantized LSTM's integer products.
//!
//! `y[n, co, oy, ox] = Σ (x[n, ci, iy, ix] − x_zp)·(w[co, ci, ky, kx] − w_zp)` in int32, over
//! each output channel's group, where the input is padded with `x_zp` (so padding adds 0).
//! The weights become the product's rows ([`QuantRows`], once, when the model is typed) and
//! each run packs the input's patches as its columns ([`IntMatrix::from_u8`], after an im2col
//! that writes `x_zp` for the padding), so the output comes out channel-major (NCHW) with no
//! transpose. The sums are exact wrapping int32 on every path, as onnxruntime's MLAS sums.
//!
//! [`crate::passes::qfuse`] then folds the nodes `quantize_dynamic` puts after it (the int32
//! bias `Add`, the `Cast` to float, the `Mul` by the scales) into the same op, which then
//! writes `(sum + bias[co]) as f32 · mult` directly: the expression those nodes compute.
//!
//! Left to tract's op: an int8 x, weights not constant when the model is typed (a graph input,
//! computed), zero points of the weights that differ between channels, three spatial axes or
//! more.

use std::sync::Arc;

use tract_core::ops::cnn::PaddingSpec;
use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

use crate::qlstm::int_gemm::{int_product_to, IntMatrix, Path, QuantRows, Sink};
use crate::tract_parser::TractParser;

use super::Cover;

static TRACT_CONV_INTEGER: TractParser = TractParser::new("ConvInteger");

/// Replaces tract's parser for `ConvInteger` (which stays the fallback).
pub fn register(onnx: &mut Onnx) {
    TRACT_CONV_INTEGER.replace_with(onnx, parse);
}

fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let known = [
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ];
    super::parse(&TRACT_CONV_INTEGER, ctx, node, &known, |w_zp| {
        Ok(ConvCover {
            attrs: Attrs {
                padding: padding(node)?,
                kernel_shape: node.get_attr_opt_tvec("kernel_shape")?,
                strides: node.get_attr_opt_tvec("strides")?,
                dilations: node.get_attr_opt_tvec("dilations")?,
                group: node.get_attr_opt("group")?.unwrap_or(1),
            },
            w_zp,
        })
    })
}

/// tract-onnx's reading of `pads` and `auto_pad` for a convolution.
fn padding(node: &NodeProto) -> TractResult<PaddingSpec> {
    if let Some(pads) = node.get_attr_opt_tvec::<usize>("pads")? {
        let half = pads.len() / 2;
        return Ok(PaddingSpec::Explicit(
            pads[..half].into(),
            pads[half..].into(),
        ));
    }
    Ok(match node.get_attr_opt::<&str>("auto_pad")? {
        Some("SAME_UPPER") => PaddingSpec::SameUpper,
        Some("SAME_LOWER") => PaddingSpec::SameLower,
        _ => PaddingSpec::Valid,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub padding: PaddingSpec,
    pub kernel_shape: Option<TVec<usize>>,
    pub strides: Option<TVec<usize>>,
    pub dilations: Option<TVec<usize>>,
    pub group: usize,
}

/// A `ConvInteger` node's attributes and the slot of its weights' zero point.
#[derive(Debug, Clone)]
struct ConvCover {
    attrs: Attrs,
    w_zp: Option<usize>,
}

impl Cover for ConvCover {
    const OP_TYPE: &'static str = "ConvInteger";
    const ZERO_POINT: &'static str = "x_zero_point";
    type Op = QConv;

    fn ours(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<QConv>> {
        let x = model.outlet_fact(inputs[0])?;
        let w = model.outlet_fact(inputs[1])?;
        let Some(kernel) = w.konst.clone() else {
            return Ok(None);
        };
        let w_zp = match self.w_zp {
            None => Some(0i32),
            Some(i) => model.outlet_fact(inputs[i])?.konst.as_ref().and_then(|z| {
                let z = z.cast_to::<i32>().ok()?;
                let z = z.try_as_plain_ram().ok()?.as_slice::<i32>().ok()?.to_vec();
                z.iter().all(|&v| v == z[0]).then(|| z[0])
            }),
        };
        let Some(w_zp) = w_zp else {
            return Ok(None);
        };
        if x.datum_type != DatumType::U8 || x.is_exotic() {
            return Ok(None);
        }
        QConv::new(&self.attrs, x.rank(), kernel, w_zp, Path::selected())
    }
}

/// The geometry of one 2-D convolution (a 1-D one has `kh = 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Geometry {
    /// Spatial axes of the input: 1 or 2.
    spatial: usize,
    padding: PaddingSpec,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    group: usize,
    cin: usize,
    cout: usize,
}

/// The op: inputs `x` (uint8, N·C·spatial), `x_zero_point` (uint8, one value), and once
/// fused, the int32 bias per output channel and the float multiplier (one value).
#[derive(Debug, Clone)]
pub struct QConv {
    geo: Geometry,
    /// Per group, its output channels' weights minus their zero point, as rows.
    rows: Arc<Vec<QuantRows>>,
    /// The weights as the file gives them, for equality.
    kernel: Arc<Tensor>,
    path: Path,
    pub(crate) fused: Fused,
}

/// What [`crate::passes::qfuse`] folded into the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fused {
    /// The output is float (a `Cast` followed); else the int32 sums.
    pub float: bool,
    /// A bias input (int32, one per output channel) is added before the cast.
    pub bias: bool,
    /// A multiplier input (float, one value) scales the floats.
    pub mult: bool,
}

impl PartialEq for QConv {
    fn eq(&self, other: &Self) -> bool {
        self.geo == other.geo
            && self.path == other.path
            && self.fused == other.fused
            && (Arc::ptr_eq(&self.kernel, &other.kernel) || self.kernel == other.kernel)
    }
}
impl Eq for QConv {}

impl QConv {
    /// The op for an input of rank `rank` and constant weights `kernel` with zero point
    /// `w_zp`, products on `path`; `None` outside what it covers.
    pub(crate) fn new(
        attrs: &Attrs,
        rank: usize,
        kernel: Arc<Tensor>,
        w_zp: i32,
        path: Path,
    ) -> TractResult<Option<QConv>> {
        let spatial = rank.wrapping_sub(2);
        let signed = match kernel.datum_type() {
            DatumType::U8 => false,
            DatumType::I8 => true,
            _ => return Ok(None),
        };
        let w_zp_fits = if signed {
            i8::try_from(w_zp).is_ok()
        } else {
            u8::try_from(w_zp).is_ok()
        };
        let shape = kernel.shape();
        let ok_len = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.len() == spatial);
        let explicit_ok = match &attrs.padding {
            PaddingSpec::Explicit(b, a) => b.len() == spatial && a.len() == spatial,
            PaddingSpec::ExplicitOnnxPool(..) => false,
            _ => true,
        };
        if !(1..=2).contains(&spatial)
            || kernel.rank() != rank
            || !w_zp_fits
            || !ok_len(&attrs.strides)
            || !ok_len(&attrs.dilations)
            || !explicit_ok
            || attrs.group == 0
            || !shape[0].is_multiple_of(attrs.group)
            || attrs
                .kernel_shape
                .as_ref()
                .is_some_and(|k| k[..] != shape[2..])
            || attrs.strides.iter().flatten().any(|&s| s == 0)
            || attrs.dilations.iter().flatten().any(|&s| s == 0)
        {
            return Ok(None);
        }
        let two = |v: &[usize]| {
            if v.len() == 1 {
                [1, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        let ones: TVec<usize> = tvec![1; spatial];
        let geo = Geometry {
            spatial,
            padding: attrs.padding.clone(),
            kernel: two(&shape[2..]),
            strides: two(attrs.strides.as_ref().unwrap_or(&ones)),
            dilations: two(attrs.dilations.as_ref().unwrap_or(&ones)),
            group: attrs.group,
            cin: shape[1] * attrs.group,
            cout: shape[0],
        };
        let cout_g = geo.cout / geo.group;
        let k = shape[1] * geo.kernel[0] * geo.kernel[1];
        let mut rows = Vec::with_capacity(geo.group);
        let plain = kernel.try_as_plain_ram()?;
        for g in 0..geo.group {
            let mut r = QuantRows::new(k);
            if signed {
                let w = plain.as_slice::<i8>()?;
                r.reset_i8(cout_g, w_zp as i8);
                for co in 0..cout_g {
                    let at = (g * cout_g + co) * k;
                    r.set_row_i8(co, w[at..at + k].iter().copied());
                }
            } else {
                let w = plain.as_slice::<u8>()?;
                r.reset(cout_g, w_zp as u8);
                for co in 0..cout_g {
                    let at = (g * cout_g + co) * k;
                    r.set_row(co, w[at..at + k].iter().copied());
                }
            }
            rows.push(r);
        }
        Ok(Some(QConv {
            geo,
            rows: Arc::new(rows),
            kernel,
            path,
            fused: Fused::default(),
        }))
    }

    /// Per spatial axis (as 2-D): output size, padding before.
    fn out_dims<D: DimLike>(&self, hw: &[D]) -> [(D, D); 2] {
        let g = &self.geo;
        let dims = g.padding.compute(
            hw,
            &g.kernel[2 - g.spatial..],
            &g.dilations[2 - g.spatial..],
            &g.strides[2 - g.spatial..],
        );
        let mut pairs = dims
            .iter()
            .map(|d| (d.convoluted.clone(), d.pad_before.clone()));
        let first = pairs.next().expect("one spatial axis");
        match pairs.next() {
            Some(second) => [first, second],
            None => [(D::one(), D::zero()), first],
        }
    }
}

impl Op for QConv {
    fn name(&self) -> StaticName {
        "QConvInteger".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} path {:?} fused {:?}",
            self.geo, self.path, self.fused
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.geo;
        let x = inputs[0].try_as_plain_ram()?;
        let xs = x.as_slice::<u8>()?;
        let x_zp = inputs[1].cast_to_scalar::<u8>()?;
        let shape = inputs[0].shape();
        ensure!(
            shape.len() == g.spatial + 2 && shape[1] == g.cin,
            "input of shape {shape:?} for {} channels",
            g.cin
        );
        let (n, hw) = (shape[0], &shape[2..]);
        let [(oh, pt), (ow, pl)] = self.out_dims(hw);
        let (h, w) = if g.spatial == 1 {
            (1, hw[0])
        } else {
            (hw[0], hw[1])
        };
        let bias = if self.fused.bias {
            let b = inputs[2].cast_to::<i32>()?.into_owned();
            ensure!(
                b.len() == g.cout,
                "{} biases for {} channels",
                b.len(),
                g.cout
            );
            b.try_as_plain_ram()?.as_slice::<i32>()?.to_vec()
        } else {
            vec![]
        };
        let mult = if self.fused.mult {
            let m = &inputs[2 + self.fused.bias as usize];
            ensure!(m.len() == 1, "a multiplier of {} values", m.len());
            m.cast_to_scalar::<f32>()?
        } else {
            1.0
        };
        let mut out_shape: TVec<usize> = tvec![n, g.cout];
        out_shape.extend(if g.spatial == 1 {
            vec![ow]
        } else {
            vec![oh, ow]
        });
        let dt = if self.fused.float {
            DatumType::F32
        } else {
            DatumType::I32
        };
        // SAFETY: every element is written below: each group's product writes all of its
        // rows' positions (plain f32 or i32, any bits valid meanwhile).
        let mut out = unsafe { Tensor::uninitialized_dt(dt, &out_shape)? };
        let mut plain = out.try_as_plain_ram_mut()?;
        let (out_f, out_i): (&mut [f32], &mut [i32]) = if self.fused.float {
            (plain.as_slice_mut::<f32>()?, &mut [])
        } else {
            (&mut [], plain.as_slice_mut::<i32>()?)
        };
        let (cin_g, cout_g, p) = (g.cin / g.group, g.cout / g.group, oh * ow);
        let k = cin_g * g.kernel[0] * g.kernel[1];
        let patches = Patches {
            h,
            w,
            oh,
            ow,
            pt,
            pl,
            kernel: g.kernel,
            strides: g.strides,
            dilations: g.dilations,
        };
        let direct = patches.is_identity();
        let mut buf = if direct { vec![] } else { vec![0u8; k * p] };
        for nn in 0..n {
            for gg in 0..g.group {
                let at = (nn * g.cin + gg * cin_g) * h * w;
                let x_g = &xs[at..at + cin_g * h * w];
                let data = if direct {
                    x_g
                } else {
                    patches.im2col(x_g, cin_g, x_zp, &mut buf);
                    &buf[..]
                };
                let b = IntMatrix::from_u8(k, p, data, x_zp, self.path);
                let rows = gg * cout_g..(gg + 1) * cout_g;
                let bias = bias.get(rows.clone()).unwrap_or(&[]);
                let o = (nn * g.cout + rows.start) * p..(nn * g.cout + rows.end) * p;
                let sink = if self.fused.float {
                    Sink::F32 {
                        out: &mut out_f[o],
                        mult: &[mult],
                        accumulate: false,
                    }
                } else {
                    Sink::I32(&mut out_i[o])
                };
                int_product_to(&self.rows[gg], &b, bias, sink);
            }
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for QConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == self.geo.spatial + 2,
            "input rank {}",
            shape.rank()
        );
        let hw: TVec<TDim> = shape.iter().skip(2).cloned().collect();
        let [(oh, _), (ow, _)] = self.out_dims(&hw);
        let mut dims: TVec<TDim> = tvec![shape[0].clone(), self.geo.cout.into()];
        if self.geo.spatial == 2 {
            dims.push(oh);
        }
        dims.push(ow);
        let dt = if self.fused.float {
            DatumType::F32
        } else {
            DatumType::I32
        };
        Ok(tvec![dt.fact(dims)])
    }

    as_op!();
}

/// Where each patch of one group's input lies (2-D; 1-D as one row).
struct Patches {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    pt: usize,
    pl: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
}

impl Patches {
    /// Whether the patches are the input itself (1×1, stride 1, no padding).
    fn is_identity(&self) -> bool {
        self.kernel == [1, 1]
            && self.strides == [1, 1]
            && (self.oh, self.ow) == (self.h, self.w)
            && (self.pt, self.pl) == (0, 0)
    }

    /// `buf[(ci·kh + ky)·kw + kx][oy·ow + ox]`: the input at the patch's point, `zp` in the
    /// padding.
    fn im2col(&self, x: &[u8], cin: usize, zp: u8, buf: &mut [u8]) {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        let [dh, dw] = self.dilations;
        let p = self.oh * self.ow;
        let mut rows = buf.chunks_exact_mut(p);
        for ci in 0..cin {
            let plane = &x[ci * self.h * self.w..(ci + 1) * self.h * self.w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = rows.next().expect("k rows");
                    // Output columns whose input column lies inside: ox·sw + kx·dw − pl ∈ [0, w).
                    let shift = kx * dw;
                    let lo = self.pl.saturating_sub(shift).div_ceil(sw).min(self.ow);
                    let hi = (self.w + self.pl)
                        .saturating_sub(shift)
                        .div_ceil(sw)
                        .clamp(lo, self.ow);
                    for oy in 0..self.oh {
                        let out = &mut row[oy * self.ow..(oy + 1) * self.ow];
                        let iy = (oy * sh + ky * dh).wrapping_sub(self.pt);
                        if iy >= self.h {
                            out.fill(zp);
                            continue;
                        }
                        out[..lo].fill(zp);
                        out[hi..].fill(zp);
                        let line = &plane[iy * self.w..(iy + 1) * self.w];
                        let start = (lo * sw + shift).wrapping_sub(self.pl);
                        if sw == 1 {
                            out[lo..hi].copy_from_slice(&line[start..start + hi - lo]);
                        } else {
                            for (o, v) in
                                out[lo..hi].iter_mut().zip(line[start..].iter().step_by(sw))
                            {
                                *o = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}
