//! The integer convolution and product against plain loops written from the ONNX spec, on every
//! kernel path this CPU runs (portable, AVX2, AVX-512 VNNI), as int32 and with the fused float
//! epilogue.

use std::sync::Arc;

use tract_core::ops::cnn::PaddingSpec;
use tract_hir::internal::*;

use super::conv::{Attrs, Fused as ConvFused, QConv};
use super::matmul::{Fused as MatMulFused, QMatMul};
use crate::qlstm::int_gemm::Path;

/// A seeded xorshift generator.
struct Rng(u64);

impl Rng {
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (hi - lo + 1) as u64) as i64 + lo
    }
    fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as i64, hi as i64) as usize
    }
    /// A zero point: an extreme or anything.
    fn zp(&mut self, lo: i64, hi: i64) -> i64 {
        match self.int(0, 3) {
            0 => lo,
            1 => hi,
            _ => self.int(lo, hi),
        }
    }
}

fn run(op: &dyn TypedOp, inputs: TVec<Tensor>) -> Tensor {
    let facts: TVec<TypedFact> = inputs
        .iter()
        .map(|t| t.datum_type().fact(t.shape()))
        .collect();
    let fact = op
        .output_facts(&facts.iter().collect::<TVec<_>>())
        .unwrap()
        .remove(0);
    let inputs = inputs.into_iter().map(|t| t.into_tvalue()).collect();
    let out = op.eval_out_of_plan(inputs).unwrap().unwrap().remove(0);
    let out = out.into_tensor();
    assert_eq!(fact.datum_type, out.datum_type());
    assert_eq!(fact.shape.as_concrete().unwrap(), out.shape());
    out
}

/// A convolution as the spec states it: `pads = [begins..., ends...]` already resolved.
struct ConvCase {
    n: usize,
    cin: usize,
    hw: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<usize>,
    group: usize,
    cout: usize,
}

impl ConvCase {
    fn out_hw(&self) -> Vec<usize> {
        let r = self.hw.len();
        (0..r)
            .map(|i| {
                let span = (self.kernel[i] - 1) * self.dilations[i] + 1;
                (self.hw[i] + self.pads[i] + self.pads[r + i] - span) / self.strides[i] + 1
            })
            .collect()
    }

    /// `Σ (x − x_zp)·(w − w_zp)` over each output's patch, `x_zp` where it reaches the padding.
    fn reference(&self, x: &[u8], x_zp: u8, w: &[i32], w_zp: i32) -> Vec<i32> {
        // As 2-D: a 1-D case is one row.
        let two = |v: &[usize], one: usize| {
            if v.len() == 1 {
                [one, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        let r = self.hw.len();
        let [h, wd] = two(&self.hw, 1);
        let [kh, kw] = two(&self.kernel, 1);
        let [sh, sw] = two(&self.strides, 1);
        let [dh, dw] = two(&self.dilations, 1);
        let [pt, pl] = two(&self.pads[..r], 0);
        let [oh, ow] = two(&self.out_hw(), 1);
        let (cin_g, cout_g) = (self.cin / self.group, self.cout / self.group);
        let mut out = vec![0i32; self.n * self.cout * oh * ow];
        for n in 0..self.n {
            for co in 0..self.cout {
                let g = co / cout_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0i32;
                        for ci in 0..cin_g {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * sh + ky * dh) as i64 - pt as i64;
                                    let ix = (ox * sw + kx * dw) as i64 - pl as i64;
                                    let inside =
                                        (0..h as i64).contains(&iy) && (0..wd as i64).contains(&ix);
                                    let c = g * cin_g + ci;
                                    let xv = if inside {
                                        x[((n * self.cin + c) * h + iy as usize) * wd + ix as usize]
                                    } else {
                                        x_zp
                                    };
                                    let wv = w[((co * cin_g + ci) * kh + ky) * kw + kx];
                                    let p = (xv as i32 - x_zp as i32) * (wv - w_zp);
                                    sum = sum.wrapping_add(p);
                                }
                            }
                        }
                        out[((n * self.cout + co) * oh + oy) * ow + ox] = sum;
                    }
                }
            }
        }
        out
    }
}

/// The spec's pads of `auto_pad` SAME_UPPER (`upper`) or SAME_LOWER.
fn same_pads(
    hw: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dil: &[usize],
    upper: bool,
) -> Vec<usize> {
    let r = hw.len();
    let mut pads = vec![0; 2 * r];
    for i in 0..r {
        let out = hw[i].div_ceil(strides[i]);
        let span = (kernel[i] - 1) * dil[i] + 1;
        let total = ((out - 1) * strides[i] + span).saturating_sub(hw[i]);
        let small = total / 2;
        (pads[i], pads[r + i]) = if upper {
            (small, total - small)
        } else {
            (total - small, small)
        };
    }
    pads
}

/// Random convolutions (one or two spatial axes, kernels 1 to 3, strides and dilations 1 to
/// 2, explicit or automatic padding, groups, batches, uint8 and int8 weights, zero points at
/// their extremes or anywhere): the spec's int32 sums on every path, and with the fused bias,
/// cast and multiplier, the floats those nodes compute.
#[test]
fn conv_integer_is_the_spec_on_every_path() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let paths = Path::available();
    for case in 0..160 {
        let r = rng.usize(1, 2);
        let group = [1, 1, 2, 3][rng.usize(0, 3)];
        let (cin_g, cout_g) = (rng.usize(1, 6), rng.usize(1, 9));
        let kernel: Vec<usize> = (0..r).map(|_| rng.usize(1, 3)).collect();
        let strides: Vec<usize> = (0..r).map(|_| rng.usize(1, 2)).collect();
        let dilations: Vec<usize> = (0..r).map(|_| rng.usize(1, 2)).collect();
        let hw: Vec<usize> = (0..r)
            .map(|i| rng.usize((kernel[i] - 1) * dilations[i] + 1, 11))
            .collect();
        let (padding, pads) = match rng.usize(0, 3) {
            0 => (PaddingSpec::Valid, vec![0; 2 * r]),
            1 => (
                PaddingSpec::SameUpper,
                same_pads(&hw, &kernel, &strides, &dilations, true),
            ),
            2 => (
                PaddingSpec::SameLower,
                same_pads(&hw, &kernel, &strides, &dilations, false),
            ),
            _ => {
                let pads: Vec<usize> = (0..2 * r).map(|_| rng.usize(0, 2)).collect();
                (
                    PaddingSpec::Explicit(pads[..r].into(), pads[r..].into()),
                    pads,
                )
            }
        };
        let c = ConvCase {
            n: rng.usize(1, 2),
            cin: cin_g * group,
            hw,
            kernel,
            strides,
            dilations,
            pads,
            group,
            cout: cout_g * group,
        };
        let signed = rng.int(0, 1) == 1;
        let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
        let x_zp = rng.zp(0, 255) as u8;
        let w_zp = rng.zp(lo, hi) as i32;
        let x_shape: Vec<usize> = [c.n, c.cin].iter().chain(&c.hw).copied().collect();
        let x: Vec<u8> = (0..x_shape.iter().product())
            .map(|_| rng.int(0, 255) as u8)
            .collect();
        let w_shape: Vec<usize> = [c.cout, cin_g].iter().chain(&c.kernel).copied().collect();
        let w: Vec<i32> = (0..w_shape.iter().product())
            .map(|_| rng.int(lo, hi) as i32)
            .collect();
        let kernel = if signed {
            Tensor::from_shape(&w_shape, &w.iter().map(|&v| v as i8).collect::<Vec<_>>())
        } else {
            Tensor::from_shape(&w_shape, &w.iter().map(|&v| v as u8).collect::<Vec<_>>())
        }
        .unwrap();
        let want = c.reference(&x, x_zp, &w, w_zp);
        let x = Tensor::from_shape(&x_shape, &x).unwrap();
        let bias: Vec<i32> = (0..c.cout)
            .map(|_| rng.int(-1 << 20, 1 << 20) as i32)
            .collect();
        let mut b_shape = vec![1, c.cout];
        b_shape.extend(vec![1; r]);
        let bias_t = Tensor::from_shape(&b_shape, &bias).unwrap();
        let mult = 0.000_731_f32 * (1 + case) as f32;
        let plane = want.len() / (c.n * c.cout);
        let attrs = Attrs {
            padding,
            kernel_shape: rng
                .int(0, 1)
                .eq(&1)
                .then(|| c.kernel.iter().copied().collect()),
            strides: Some(c.strides.iter().copied().collect()),
            dilations: Some(c.dilations.iter().copied().collect()),
            group,
        };
        for &path in &paths {
            let what = format!("case {case} {path:?} signed {signed} zp {x_zp} {w_zp} {attrs:?}");
            let op = QConv::new(&attrs, r + 2, Arc::new(kernel.clone()), w_zp, path)
                .unwrap()
                .expect("covered");
            let got = run(&op, tvec![x.clone(), tensor0(x_zp)]);
            assert_eq!(
                got.try_as_plain_ram().unwrap().as_slice::<i32>().unwrap(),
                &want[..],
                "{what}"
            );
            let mut fused = op.clone();
            fused.fused = ConvFused {
                float: true,
                bias: true,
                mult: true,
            };
            let got = run(
                &fused,
                tvec![x.clone(), tensor0(x_zp), bias_t.clone(), tensor0(mult)],
            );
            let got = got
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            for (i, (g, s)) in got.iter().zip(&want).enumerate() {
                let co = i / plane % c.cout;
                let expect = s.wrapping_add(bias[co]) as f32 * mult;
                assert_eq!(g.to_bits(), expect.to_bits(), "{what} at {i}");
            }
        }
    }
}

/// What the op does not cover is left to tract's: three spatial axes, a kernel shape the
/// weights do not have, a zero point outside the weights' type.
#[test]
fn conv_integer_refuses_what_it_does_not_cover() {
    let attrs = |kernel_shape: Option<TVec<usize>>| Attrs {
        padding: PaddingSpec::Valid,
        kernel_shape,
        strides: None,
        dilations: None,
        group: 1,
    };
    let w3 = Arc::new(Tensor::zero::<u8>(&[2, 1, 1, 1, 1]).unwrap());
    assert!(QConv::new(&attrs(None), 5, w3, 0, Path::Portable)
        .unwrap()
        .is_none());
    let w = Arc::new(Tensor::zero::<u8>(&[2, 1, 3, 3]).unwrap());
    let two = Some(tvec![2, 2]);
    assert!(QConv::new(&attrs(two), 4, w.clone(), 0, Path::Portable)
        .unwrap()
        .is_none());
    assert!(QConv::new(&attrs(None), 4, w.clone(), -1, Path::Portable)
        .unwrap()
        .is_none());
    assert!(QConv::new(&attrs(None), 4, w, 255, Path::Portable)
        .unwrap()
        .is_some());
}

/// Random products (A of rank 2 or 3, K and N on and off the panels, uint8 and int8 B, a zero
/// point for B or one per column): the spec's int32 sums on every path, and with the fused
/// cast, multiplier and bias, `sum as f32 · mult + bias` as onnxruntime's nodes compute it.
#[test]
fn matmul_integer_is_the_spec_on_every_path() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..80 {
        let lead: Vec<usize> = (0..rng.usize(0, 1)).map(|_| rng.usize(1, 3)).collect();
        let (m, k, n) = (rng.usize(1, 14), rng.usize(1, 70), rng.usize(1, 140));
        let signed = rng.int(0, 1) == 1;
        let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
        let per_column = rng.int(0, 1) == 1;
        let a_zp = rng.zp(0, 255) as u8;
        let b_zp: Vec<i32> = (0..if per_column { n } else { 1 })
            .map(|_| rng.zp(lo, hi) as i32)
            .collect();
        let a_shape: Vec<usize> = lead.iter().copied().chain([m, k]).collect();
        let rows = a_shape.iter().product::<usize>() / k;
        let a: Vec<u8> = (0..rows * k).map(|_| rng.int(0, 255) as u8).collect();
        let b: Vec<i32> = (0..k * n).map(|_| rng.int(lo, hi) as i32).collect();
        let mut want = vec![0i32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                for kk in 0..k {
                    let zp = b_zp[if per_column { c } else { 0 }];
                    let p = (a[r * k + kk] as i32 - a_zp as i32) * (b[kk * n + c] - zp);
                    want[r * n + c] = want[r * n + c].wrapping_add(p);
                }
            }
        }
        let (b_t, zp_t) = if signed {
            let zp: Vec<i8> = b_zp.iter().map(|&v| v as i8).collect();
            (
                Tensor::from_shape(&[k, n], &b.iter().map(|&v| v as i8).collect::<Vec<_>>()),
                if per_column {
                    Tensor::from_shape(&[n], &zp)
                } else {
                    Ok(tensor0(zp[0]))
                },
            )
        } else {
            let zp: Vec<u8> = b_zp.iter().map(|&v| v as u8).collect();
            (
                Tensor::from_shape(&[k, n], &b.iter().map(|&v| v as u8).collect::<Vec<_>>()),
                if per_column {
                    Tensor::from_shape(&[n], &zp)
                } else {
                    Ok(tensor0(zp[0]))
                },
            )
        };
        let (b_t, zp_t) = (Arc::new(b_t.unwrap()), zp_t.unwrap());
        let a_t = Tensor::from_shape(&a_shape, &a).unwrap();
        let bias: Vec<f32> = (0..n).map(|c| (c as f32 - 7.5) * 0.37).collect();
        let bias_t = Tensor::from_shape(&[1, n], &bias).unwrap();
        let mult = 0.001_37_f32 * (1 + case) as f32;
        for &path in &Path::available() {
            let what = format!("case {case} {path:?} {a_shape:?}×[{k}, {n}] signed {signed}");
            let op = QMatMul::new(b_t.clone(), &zp_t, path)
                .unwrap()
                .expect("covered");
            let got = run(&op, tvec![a_t.clone(), tensor0(a_zp)]);
            assert_eq!(
                got.try_as_plain_ram().unwrap().as_slice::<i32>().unwrap(),
                &want[..],
                "{what}"
            );
            let mut fused = op.clone();
            fused.fused = MatMulFused {
                float: true,
                mult: true,
                bias: true,
            };
            let got = run(
                &fused,
                tvec![a_t.clone(), tensor0(a_zp), tensor0(mult), bias_t.clone()],
            );
            let got = got
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            for (i, (g, s)) in got.iter().zip(&want).enumerate() {
                let expect = *s as f32 * mult + bias[i % n];
                assert_eq!(g.to_bits(), expect.to_bits(), "{what} at {i}");
            }
        }
    }
}

/// B of another rank, or a zero point of another length than one or N, is left to tract.
#[test]
fn matmul_integer_refuses_what_it_does_not_cover() {
    let b3 = Arc::new(Tensor::zero::<u8>(&[2, 3, 4]).unwrap());
    assert!(QMatMul::new(b3, &tensor0(0u8), Path::Portable)
        .unwrap()
        .is_none());
    let b = Arc::new(Tensor::zero::<u8>(&[3, 4]).unwrap());
    let zp3 = Tensor::zero::<u8>(&[3]).unwrap();
    assert!(QMatMul::new(b.clone(), &zp3, Path::Portable)
        .unwrap()
        .is_none());
    let zp4 = Tensor::zero::<u8>(&[4]).unwrap();
    assert!(QMatMul::new(b, &zp4, Path::Portable).unwrap().is_some());
}
