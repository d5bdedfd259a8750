//! Unit tests of the packed convolution against a plain loop, on every set the CPU runs.

use super::*;
use tract_core::ops::cnn::{KernelFormat, PaddingSpec};

use crate::test_values::Rng;

struct Case {
    conv: Conv,
    input: Tensor,
    kernel: Tensor,
    bias: Tensor,
    clamp: Clamp,
}

/// A random convolution: one or two spatial axes, with or without a batch axis, any
/// kernel format, groups, kernel sizes, strides, dilations and padding, and a clamp.
fn random_case(rng: &mut Rng) -> Case {
    loop {
        let rank = rng.range(1, 2);
        let has_n = rng.range(0, 3) > 0;
        let group = [1, 1, 1, 2, 3][rng.range(0, 4)];
        let depthwise = group > 1 && rng.range(0, 2) == 0;
        let (cig, cog) = if depthwise {
            (1, 1)
        } else {
            (rng.range(1, 7), rng.range(1, 20))
        };
        let (cin, cout) = (cig * group, cog * group);
        let kernel: TVec<usize> = (0..rank).map(|_| rng.range(1, 5)).collect();
        let strides: TVec<usize> = (0..rank).map(|_| rng.range(1, 3)).collect();
        let dilations: TVec<usize> = (0..rank).map(|_| rng.range(1, 3)).collect();
        let before: TVec<usize> = (0..rank).map(|_| rng.range(0, 3)).collect();
        let after: TVec<usize> = (0..rank).map(|_| rng.range(0, 3)).collect();
        let padding = match rng.range(0, 4) {
            0 => PaddingSpec::Valid,
            1 => PaddingSpec::SameUpper,
            2 => PaddingSpec::SameLower,
            _ => PaddingSpec::Explicit(before, after),
        };
        let hw: Vec<usize> = (0..rank)
            .map(|_| rng.range(1, if rank == 1 { 70 } else { 24 }))
            .collect();
        let data_format = if has_n {
            DataFormat::NCHW
        } else {
            DataFormat::CHW
        };
        let n = if has_n { rng.range(1, 3) } else { 1 };
        let mut shape: Vec<usize> = if has_n { vec![n, cin] } else { vec![cin] };
        shape.extend(&hw);
        let kernel_fmt = [
            KernelFormat::OIHW,
            KernelFormat::OIHW,
            KernelFormat::HWIO,
            KernelFormat::OHWI,
        ][rng.range(0, 3)];
        let kshape: Vec<usize> = match kernel_fmt {
            KernelFormat::OIHW => [cout, cig]
                .into_iter()
                .chain(kernel.iter().copied())
                .collect(),
            KernelFormat::HWIO => kernel.iter().copied().chain([cin, cog]).collect(),
            KernelFormat::OHWI => std::iter::once(cog)
                .chain(kernel.iter().copied())
                .chain([cin])
                .collect(),
        };
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format,
                kernel_shape: kernel,
                padding,
                dilations: Some(dilations),
                strides: Some(strides),
                input_channels: cin,
                output_channels: cout,
            },
            kernel_fmt,
            group,
            q_params: None,
        };
        let out = conv.pool_spec.output_shape(&shape).unwrap();
        if out.hw_dims().contains(&0) || out.hw_dims().iter().product::<usize>() > 3000 {
            continue;
        }
        let bias = if rng.range(0, 3) == 0 {
            rng.tensor(&[])
        } else {
            rng.tensor(&[cout])
        };
        let clamp = match rng.range(0, 3) {
            0 => Clamp {
                lo: Some(0.0),
                hi: None,
            },
            1 => Clamp {
                lo: Some(-0.5),
                hi: Some(0.75),
            },
            2 => Clamp {
                lo: None,
                hi: Some(0.25),
            },
            _ => Clamp::default(),
        };
        return Case {
            conv,
            input: rng.tensor(&shape),
            kernel: rng.tensor(&kshape),
            bias,
            clamp,
        };
    }
}

/// The largest difference, relative to the value where it exceeds 1.
fn worst(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    let got = got.try_as_plain_ram().unwrap();
    let want = want.try_as_plain_ram().unwrap();
    got.as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(want.as_slice::<f32>().unwrap())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// tract's own convolution, then the clamp as tract's `Max` and `Min` compute it.
fn tract_conv(case: &Case) -> Tensor {
    let inputs = tvec!(
        case.input.clone().into_tvalue(),
        case.kernel.clone().into_tvalue(),
        case.bias.clone().into_tvalue()
    );
    let out = case
        .conv
        .eval(&EvalContext::out_of_plan(), inputs)
        .unwrap()
        .remove(0);
    let mut out = out.into_tensor();
    for x in out
        .try_as_plain_ram_mut()
        .unwrap()
        .as_slice_mut::<f32>()
        .unwrap()
    {
        if let Some(lo) = case.clamp.lo {
            *x = x.max(lo);
        }
        if let Some(hi) = case.clamp.hi {
            *x = x.min(hi);
        }
    }
    out
}

fn packed(case: &Case, isa: Isa) -> PackedConv {
    let fin = f32::fact(case.input.shape());
    let fk = TypedFact::try_from(case.kernel.clone()).unwrap();
    let fb = TypedFact::try_from(case.bias.clone()).unwrap();
    PackedConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa)
        .unwrap()
        .expect("covered")
        .with_clamp(case.clamp)
}

fn isas() -> Vec<Isa> {
    let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .filter(|i| i.available())
        .collect();
    eprintln!("kernels tested on this CPU: {isas:?}");
    isas
}

#[test]
fn random_convolutions_equal_tracts() {
    let cases: u64 = std::env::var("RNN_RUN_CONV_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let isas = isas();
    let mut worst_seen = 0f32;
    for seed in 0..cases {
        let case = random_case(&mut Rng(seed));
        let want = tract_conv(&case);
        for &isa in &isas {
            let got = packed(&case, isa).compute(&case.input).unwrap();
            let w = worst(&got, &want);
            assert!(
                w <= 1e-5,
                "seed {seed}, {isa:?}: difference {w:e}\n{:?}\ninput {:?} kernel {:?} bias {:?} clamp {:?}",
                case.conv,
                case.input.shape(),
                case.kernel.shape(),
                case.bias.shape(),
                case.clamp
            );
            worst_seen = worst_seen.max(w);
        }
    }
    eprintln!("{cases} random convolutions: largest relative difference {worst_seen:e}");
}

/// Empty images (a batch of 0, a width of 0 inside padding) compute what tract does.
#[test]
fn empty_inputs() {
    for (shape, pads) in [
        ([0, 2, 5, 5], [1, 1]),
        ([1, 2, 3, 0], [0, 2]),
        ([2, 2, 0, 4], [0, 0]),
    ] {
        let mut rng = Rng(shape.iter().sum::<usize>() as u64);
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(1, 1),
                padding: PaddingSpec::Explicit(tvec!(0, pads[0]), tvec!(0, pads[1])),
                dilations: None,
                strides: None,
                input_channels: 2,
                output_channels: 3,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let case = Case {
            conv,
            input: rng.tensor(&shape),
            kernel: rng.tensor(&[3, 2, 1, 1]),
            bias: rng.tensor(&[3]),
            clamp: Clamp::default(),
        };
        let want = tract_conv(&case);
        for isa in isas() {
            let got = packed(&case, isa).compute(&case.input).unwrap();
            assert_eq!(worst(&got, &want), 0.0, "{shape:?} {isa:?}");
        }
    }
}

/// A 3×3 convolution at stride 1, padding 1, `cin` → `cout` channels over one `h × w` image,
/// then a ReLU: a captcha conv stack's layer.
fn relu_3x3(rng: &mut Rng, cin: usize, cout: usize, h: usize, w: usize) -> Case {
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(3, 3),
            padding: PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)),
            dilations: None,
            strides: None,
            input_channels: cin,
            output_channels: cout,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    };
    Case {
        conv,
        input: rng.tensor(&[1, cin, h, w]),
        kernel: rng.tensor(&[cout, cin, 3, 3]),
        bias: rng.tensor(&[cout]),
        clamp: Clamp {
            lo: Some(0.0),
            hi: None,
        },
    }
}

/// 3×3 convolutions at stride 1 with padding 1 over rows wider than a panel, as in a captcha
/// model's conv stack (one input channel, then many): most panels lie inside the image and
/// take the unmasked loads of the AVX-512 direct tile, the ones at the edges masked loads.
#[test]
fn wide_rows_at_stride_one_equal_tracts() {
    for (cin, cout, h, w) in [(1, 32, 9, 70), (24, 40, 6, 50), (5, 16, 4, 33)] {
        let case = relu_3x3(&mut Rng((cin * 1000 + cout) as u64), cin, cout, h, w);
        let want = tract_conv(&case);
        for isa in isas() {
            let got = packed(&case, isa).compute(&case.input).unwrap();
            let w = worst(&got, &want);
            assert!(
                w <= 1e-5,
                "{cin}→{cout} on {h}×{w}, {isa:?}: difference {w:e}"
            );
        }
    }
}

/// A random convolution for a fused 2×2 pooling: NCHW, few input channels (the row tiles'
/// case) or more, mostly stride 1 without dilation, any padding, sides odd and even, and
/// clamps with low bounds of +0 and above (pooled in registers), −0, below 0, or none.
fn random_pooled_case(rng: &mut Rng) -> Case {
    loop {
        let group = [1, 1, 1, 2][rng.range(0, 3)];
        let cig = [1, 1, 2, 3, 5][rng.range(0, 4)];
        let (cin, cout) = (cig * group, rng.range(1, 20) * group);
        let kernel: TVec<usize> = (0..2).map(|_| rng.range(1, 5)).collect();
        let odd = rng.range(0, 4) == 0;
        let strides: TVec<usize> = (0..2)
            .map(|_| if odd { rng.range(1, 2) } else { 1 })
            .collect();
        let dilations: TVec<usize> = (0..2)
            .map(|_| if odd { rng.range(1, 2) } else { 1 })
            .collect();
        let before: TVec<usize> = (0..2).map(|_| rng.range(0, 2)).collect();
        let after: TVec<usize> = (0..2).map(|_| rng.range(0, 2)).collect();
        let (h, w) = (rng.range(1, 24), rng.range(1, 60));
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: kernel,
                padding: PaddingSpec::Explicit(before, after),
                dilations: Some(dilations),
                strides: Some(strides),
                input_channels: cin,
                output_channels: cout,
            },
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        let shape = [rng.range(1, 2), cin, h, w];
        let Ok(out) = conv.pool_spec.output_shape(&shape) else {
            continue;
        };
        if out.hw_dims().contains(&0) {
            continue;
        }
        let lo = [
            Some(0.0),
            Some(0.0),
            Some(0.125),
            Some(-0.0),
            Some(-0.5),
            None,
        ][rng.range(0, 5)];
        let hi = [None, None, Some(0.5)][rng.range(0, 2)];
        let mut kshape = vec![cout, cig];
        kshape.extend(conv.pool_spec.kernel_shape.iter());
        return Case {
            input: rng.tensor(&shape),
            kernel: rng.tensor(&kshape),
            bias: rng.tensor(&[cout]),
            clamp: Clamp { lo, hi },
            conv,
        };
    }
}

/// A fused 2×2 max pooling gives, on every set, the bits of [`MaxPool2x2`] on the unfused
/// convolution's output (row tiles and pixel tiles alike), and tract's convolution pooled
/// within rounding.
///
/// [`MaxPool2x2`]: crate::passes::maxpool::MaxPool2x2
#[test]
fn pooled_convolutions_equal_pooling_after() {
    let isas = isas();
    let mut by_rows = 0;
    for seed in 0..300 {
        let case = random_pooled_case(&mut Rng(1_000_000 + seed));
        let want = crate::passes::maxpool::max_pool_2x2(&tract_conv(&case)).unwrap();
        for &isa in &isas {
            let op = packed(&case, isa);
            let pooled = op.with_pool().expect("NCHW, two spatial axes");
            let got = pooled.compute(&case.input).unwrap();
            let unfused = op.compute(&case.input).unwrap();
            let after = crate::passes::maxpool::max_pool_2x2(&unfused).unwrap();
            let bits = |t: &Tensor| {
                let t = t.try_as_plain_ram().unwrap();
                let v: Vec<u32> = t
                    .as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                v
            };
            let what = format!(
                "seed {seed}, {isa:?}: {:?}\ninput {:?} clamp {:?}",
                case.conv,
                case.input.shape(),
                case.clamp
            );
            assert_eq!(got.shape(), want.shape(), "{what}");
            assert!(bits(&got) == bits(&after), "{what}: not MaxPool2x2's bits");
            let w = worst(&got, &want);
            assert!(w <= 1e-5, "{what}: difference {w:e}");
            let shape = case.input.shape();
            let geo = Geo {
                c: shape[1] / case.conv.group,
                h: shape[2],
                w: shape[3],
                oh: 0,
                ow: 0,
                kh: case.conv.pool_spec.kernel_shape[0],
                kw: case.conv.pool_spec.kernel_shape[1],
                sh: case.conv.pool_spec.strides()[0],
                sw: case.conv.pool_spec.strides()[1],
                dh: case.conv.pool_spec.dilations()[0],
                dw: case.conv.pool_spec.dilations()[1],
                pt: 0,
                pl: 0,
            };
            by_rows += pooled.by_rows(&geo) as usize;
        }
    }
    eprintln!("{by_rows} of the pooled cases on row tiles");
    assert!(by_rows >= 100, "only {by_rows} pooled cases on row tiles");
}

/// The captcha model's first layer (one channel, 64 × 200, 32 channels, ReLU, pooled) and
/// sides that leave a last odd row and column, on row tiles.
#[test]
fn first_layer_pooled_on_row_tiles() {
    for (cin, cout, h, w) in [(1, 32, 64, 200), (1, 20, 9, 37), (3, 16, 7, 35)] {
        let case = relu_3x3(&mut Rng((cin * 7000 + h * w) as u64), cin, cout, h, w);
        let want = crate::passes::maxpool::max_pool_2x2(&tract_conv(&case)).unwrap();
        for isa in isas() {
            let op = packed(&case, isa);
            let pooled = op.with_pool().unwrap();
            let got = pooled.compute(&case.input).unwrap();
            let after =
                crate::passes::maxpool::max_pool_2x2(&op.compute(&case.input).unwrap()).unwrap();
            assert_eq!(worst(&got, &after), 0.0, "{cin}→{cout} on {h}×{w}, {isa:?}");
            let w = worst(&got, &want);
            assert!(
                w <= 1e-5,
                "{cin}→{cout} on {h}×{w}, {isa:?}: difference {w:e}"
            );
        }
    }
}
