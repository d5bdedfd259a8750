//! Unit tests of [`DepthwiseConv`] on every instruction set this CPU runs (AVX-512, AVX2)
//! against a plain float64 loop: random channel counts (one block of 8 or 16 and several,
//! partial ones), row lengths across groups of 8 and 16 columns, kernels, strides, dilations
//! and paddings, with and without a clamp; the sets against each other (the same bits); and
//! the cases it must leave to tract.

use super::*;
use tract_core::ops::cnn::{KernelFormat, PaddingSpec};

use crate::test_values::Rng;

struct Case {
    conv: Conv,
    /// `[n, c, h, w]` (a CHW input is the same with n = 1).
    shape: Vec<usize>,
    input: Tensor,
    /// `[c, kh, kw]`, whatever the kernel format the conv reads.
    w: Vec<f32>,
    kernel: Tensor,
    bias: Tensor,
    clamp: Clamp,
}

fn random_case(rng: &mut Rng) -> Case {
    loop {
        let rank = rng.range(1, 2);
        let has_n = rng.range(0, 2) > 0;
        let c = [1, 3, 15, 16, 17, 24, 40, 64][rng.range(0, 7)];
        let kernel: TVec<usize> = (0..rank).map(|_| rng.range(1, 5)).collect();
        let strides: TVec<usize> = (0..rank).map(|_| rng.range(1, 3)).collect();
        let dilations: TVec<usize> = (0..rank).map(|_| rng.range(1, 2)).collect();
        let before: TVec<usize> = (0..rank).map(|_| rng.range(0, 3)).collect();
        let after: TVec<usize> = (0..rank).map(|_| rng.range(0, 3)).collect();
        let padding = match rng.range(0, 3) {
            0 => PaddingSpec::Valid,
            1 => PaddingSpec::SameUpper,
            _ => PaddingSpec::Explicit(before, after),
        };
        let hw: Vec<usize> = (0..rank)
            .map(|r| rng.range(1, if r + 1 == rank { 70 } else { 12 }))
            .collect();
        let n = if has_n { rng.range(1, 2) } else { 1 };
        let mut xshape: Vec<usize> = if has_n { vec![n, c] } else { vec![c] };
        xshape.extend(&hw);
        let hwio = rng.range(0, 2) == 0;
        let kshape: Vec<usize> = if hwio {
            kernel.iter().copied().chain([c, 1]).collect()
        } else {
            [c, 1].into_iter().chain(kernel.iter().copied()).collect()
        };
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: if has_n {
                    DataFormat::NCHW
                } else {
                    DataFormat::CHW
                },
                kernel_shape: kernel.clone(),
                padding,
                dilations: Some(dilations),
                strides: Some(strides),
                input_channels: c,
                output_channels: c,
            },
            kernel_fmt: if hwio {
                KernelFormat::HWIO
            } else {
                KernelFormat::OIHW
            },
            group: c,
            q_params: None,
        };
        let out = conv.pool_spec.output_shape(&xshape).unwrap();
        if out.hw_dims().contains(&0) {
            continue;
        }
        let taps: usize = kernel.iter().product();
        let w = rng.values(c * taps);
        // The kernel tensor in its format: OIHW is [c][taps]; HWIO is [taps][c].
        let kdata: Vec<f32> = if hwio {
            (0..taps * c).map(|i| w[(i % c) * taps + i / c]).collect()
        } else {
            w.clone()
        };
        let x = rng.values(xshape.iter().product());
        let bias = if rng.range(0, 3) == 0 {
            tensor0(rng.values(1)[0])
        } else {
            tensor1(&rng.values(c))
        };
        let clamp = match rng.range(0, 3) {
            0 => Clamp {
                lo: Some(0.0),
                hi: Some(6.0),
            },
            1 => Clamp {
                lo: Some(-0.25),
                hi: None,
            },
            _ => Clamp::default(),
        };
        let mut shape = vec![n, c];
        shape.extend(std::iter::repeat_n(1, 2 - rank));
        shape.extend(&hw);
        return Case {
            conv,
            shape,
            input: tensor1(&x).into_shape(&xshape).unwrap(),
            w,
            kernel: tensor1(&kdata).into_shape(&kshape).unwrap(),
            bias,
            clamp,
        };
    }
}

/// The convolution as the spec writes it, in float64, with the padding tract computes; the
/// output and, per value, the sum of its terms' magnitudes (what rounding scales with).
fn reference(case: &Case) -> (Vec<f64>, Vec<f64>) {
    let spec = &case.conv.pool_spec;
    let (_, g) = geometry(spec, case.conv.group, case.input.shape()).unwrap();
    let [n, c, h, w] = case.shape[..] else {
        unreachable!()
    };
    let x = case.input.try_as_plain_ram().unwrap();
    let x = x.as_slice::<f32>().unwrap();
    let b = case.bias.try_as_plain_ram().unwrap();
    let b = b.as_slice::<f32>().unwrap();
    let (mut out, mut scale) = (vec![], vec![]);
    for i in 0..n {
        for ch in 0..c {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let bias = b[if b.len() == 1 { 0 } else { ch }] as f64;
                    let (mut sum, mut mag) = (bias, bias.abs());
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let v = x[((i * c + ch) * h + iy as usize) * w + ix as usize] as f64;
                            let t = case.w[ch * g.kh * g.kw + ky * g.kw + kx] as f64 * v;
                            sum += t;
                            mag += t.abs();
                        }
                    }
                    if let Some(lo) = case.clamp.lo {
                        sum = sum.max(lo as f64);
                    }
                    if let Some(hi) = case.clamp.hi {
                        sum = sum.min(hi as f64);
                    }
                    out.push(sum);
                    scale.push(mag);
                }
            }
        }
    }
    (out, scale)
}

/// The depthwise kernels this CPU runs.
fn isas() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|isa| isa.available())
        .collect()
}

fn facts(case: &Case) -> [TypedFact; 3] {
    [
        f32::fact(case.input.shape()),
        TypedFact::try_from(case.kernel.clone()).unwrap(),
        TypedFact::try_from(case.bias.clone()).unwrap(),
    ]
}

#[test]
fn random_depthwise_convolutions_equal_the_reference() {
    let isas = isas();
    if isas.is_empty() {
        eprintln!("neither AVX-512 nor AVX2: depthwise convolutions stay tract's");
        return;
    }
    for isa in isas {
        random_cases_on(isa);
    }
}

/// The random cases on `isa`'s kernel against the reference.
fn random_cases_on(isa: Isa) {
    let (mut blocks, mut worst) = (0, 0f64);
    for seed in 0..1500 {
        let case = random_case(&mut Rng(seed));
        let [fin, fk, fb] = facts(&case);
        let op = DepthwiseConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa)
            .unwrap()
            .expect("covered")
            .with_clamp(case.clamp);
        let got = op.compute(&case.input).unwrap();
        let want_shape = case
            .conv
            .pool_spec
            .output_shape(case.input.shape())
            .unwrap();
        assert_eq!(got.shape(), &want_shape.shape[..], "seed {seed}");
        let (want, scale) = reference(&case);
        // A float32 sum of `terms` products, each rounded once (FMA): within terms · 2⁻²⁴ of
        // the terms' magnitudes.
        let terms = case.conv.pool_spec.kernel_shape.iter().product::<usize>() + 1;
        let bound = terms as f64 * f32::EPSILON as f64 / 2.0;
        let got = got.try_as_plain_ram().unwrap();
        let got = got.as_slice::<f32>().unwrap();
        assert_eq!(got.len(), want.len());
        for (j, ((&g, &r), &s)) in got.iter().zip(&want).zip(&scale).enumerate() {
            let d = (g as f64 - r).abs();
            assert!(
                d <= bound * s,
                "{isa:?}, seed {seed}, value {j}: {g} against {r} (scale {s})\n{:?}\ninput {:?}",
                case.conv,
                case.input.shape()
            );
            worst = worst.max(d / s.max(1e-30));
        }
        blocks += case.shape[1].div_ceil(isa.wb());
    }
    eprintln!(
        "{isa:?}: {blocks} blocks of channels, largest difference {worst:e} of the terms' scale"
    );
}

/// Both sets compute the same sums in the same order: the same bits (where both run).
#[test]
fn avx2_and_avx512_depthwise_give_the_same_bits() {
    if isas().len() < 2 {
        return;
    }
    for seed in 0..300 {
        let case = random_case(&mut Rng(seed));
        let [fin, fk, fb] = facts(&case);
        let out = |isa| {
            let op = DepthwiseConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa)
                .unwrap()
                .expect("covered")
                .with_clamp(case.clamp);
            let got = op.compute(&case.input).unwrap();
            let got = got.try_as_plain_ram().unwrap();
            let got = got.as_slice::<f32>().unwrap();
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(out(Isa::Avx512), out(Isa::Avx2), "seed {seed}");
    }
}

/// The CRNN bench model's layers: 3×3, pads 1, strides (2, 1) and (2, 2), 16 to 64 channels,
/// batch 2, with hard-swish's clamp bounds.
#[test]
fn crnn_shaped_layers_equal_the_reference() {
    for isa in isas() {
        crnn_shaped_layers_on(isa);
    }
}

fn crnn_shaped_layers_on(isa: Isa) {
    let mut rng = Rng(7);
    for (c, h, w, s) in [
        (16, 16, 80, [2, 1]),
        (24, 8, 80, [2, 2]),
        (40, 4, 40, [2, 1]),
    ] {
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
                dilations: None,
                strides: Some(s.iter().copied().collect()),
                input_channels: c,
                output_channels: c,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: c,
            q_params: None,
        };
        let w_ = rng.values(c * 9);
        let case = Case {
            conv,
            shape: vec![2, c, h, w],
            input: tensor1(&rng.values(2 * c * h * w))
                .into_shape(&[2, c, h, w])
                .unwrap(),
            kernel: tensor1(&w_).into_shape(&[c, 1, 3, 3]).unwrap(),
            w: w_,
            bias: tensor1(&rng.values(c)),
            clamp: Clamp {
                lo: Some(-3.0),
                hi: Some(3.0),
            },
        };
        let [fin, fk, fb] = facts(&case);
        let op = DepthwiseConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa)
            .unwrap()
            .unwrap()
            .with_clamp(case.clamp);
        let got = op.compute(&case.input).unwrap();
        let got = got.try_as_plain_ram().unwrap();
        let (want, scale) = reference(&case);
        for ((g, r), s) in got.as_slice::<f32>().unwrap().iter().zip(&want).zip(&scale) {
            let bound = 10.0 * f32::EPSILON as f64 / 2.0;
            assert!(
                (*g as f64 - r).abs() <= bound * s,
                "{isa:?}, {c} channels: {g} against {r}"
            );
        }
    }
}

/// What it must leave to tract: the portable set (and sets the CPU does not run), weights
/// not constant, groups of more than one channel, channels last.
#[test]
fn depthwise_leaves_what_it_does_not_cover() {
    let case = random_case(&mut Rng(3));
    let [fin, fk, fb] = facts(&case);
    for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
        let op = DepthwiseConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa).unwrap();
        assert_eq!(op.is_some(), isas().contains(&isa), "{isa:?}");
    }
    for isa in isas() {
        leaves_on(&case, isa);
    }
}

fn leaves_on(case: &Case, isa: Isa) {
    let [fin, fk, fb] = facts(case);
    let runtime = f32::fact(case.kernel.shape());
    let op = DepthwiseConv::from_conv(&case.conv, &[&fin, &runtime, &fb], isa).unwrap();
    assert!(op.is_none(), "weights at run time");
    let mut nhwc = case.conv.clone();
    nhwc.pool_spec.data_format = DataFormat::NHWC;
    let op = DepthwiseConv::from_conv(&nhwc, &[&fin, &fk, &fb], isa).unwrap();
    assert!(op.is_none(), "channels last");
    // Two input channels per group: not depthwise.
    let c = 4;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![3],
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: None,
            input_channels: c,
            output_channels: c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: c / 2,
        q_params: None,
    };
    let k = TypedFact::try_from(Tensor::zero::<f32>(&[c, 2, 3]).unwrap()).unwrap();
    let b = TypedFact::try_from(Tensor::zero::<f32>(&[c]).unwrap()).unwrap();
    let x = f32::fact([1, c, 10]);
    assert!(DepthwiseConv::from_conv(&conv, &[&x, &k, &b], isa)
        .unwrap()
        .is_none());
}
