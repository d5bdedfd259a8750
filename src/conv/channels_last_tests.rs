//! Unit tests of the channels-last convolution against a plain float64 loop, on every kernel
//! set this CPU runs, and of what it declines.

use super::*;
use tract_core::ops::cnn::{KernelFormat, PaddingSpec};

use crate::kernels::Isa as GemmIsa;
use crate::test_values::Rng;

struct Case {
    conv: Conv,
    input: Tensor,
    kernel: Tensor,
    bias: Tensor,
    clamp: Clamp,
}

/// A random covered convolution: batch 1 to 4 (or no batch axis), 1 to 40 channels, kernels
/// of 1 to 12 taps over widths from the kernel's (one output) to 40 more, 1 to 210 output
/// channels, any kernel format, a bias of `cout` values, a scalar, or zero (none in ONNX),
/// and a clamp or none.
fn random_case(rng: &mut Rng) -> Case {
    let has_n = rng.range(0, 4) > 0;
    let n = if has_n { rng.range(1, 4) } else { 1 };
    let c = [1, 2, 3, 8, 16, 32, 40, rng.range(1, 40)][rng.range(0, 7)];
    let k = rng.range(1, 12);
    let w = if rng.range(0, 3) == 0 {
        k
    } else {
        k + rng.range(0, 40)
    };
    let cout = [1, 5, 16, 17, 100, 150, 200, 210, rng.range(1, 210)][rng.range(0, 8)];
    let padding = match rng.range(0, 3) {
        0 => PaddingSpec::Valid,
        1 => PaddingSpec::Explicit(tvec!(0), tvec!(0)),
        _ if k == 1 => PaddingSpec::SameUpper,
        _ => PaddingSpec::Valid,
    };
    let kernel_fmt = [KernelFormat::OIHW, KernelFormat::HWIO, KernelFormat::OHWI][rng.range(0, 2)];
    let kshape: Vec<usize> = match kernel_fmt {
        KernelFormat::OIHW => vec![cout, c, k],
        KernelFormat::HWIO => vec![k, c, cout],
        KernelFormat::OHWI => vec![cout, k, c],
    };
    let shape: Vec<usize> = if has_n { vec![n, w, c] } else { vec![w, c] };
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: if has_n {
                DataFormat::NHWC
            } else {
                DataFormat::HWC
            },
            kernel_shape: tvec!(k),
            padding,
            dilations: None,
            strides: None,
            input_channels: c,
            output_channels: cout,
        },
        kernel_fmt,
        group: 1,
        q_params: None,
    };
    let bias = match rng.range(0, 3) {
        0 => tensor0(0f32),
        1 => rng.tensor(&[]),
        _ => rng.tensor(&[cout]),
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
        _ => Clamp::default(),
    };
    Case {
        conv,
        input: rng.tensor(&shape),
        kernel: rng.tensor(&kshape),
        bias,
        clamp,
    }
}

/// The kernel's weight for output channel `o`, input channel `i`, tap `t`.
fn weight(case: &Case, o: usize, i: usize, t: usize) -> f64 {
    let k = case.kernel.to_plain_array_view::<f32>().unwrap();
    (match case.conv.kernel_fmt {
        KernelFormat::OIHW => k[[o, i, t]],
        KernelFormat::HWIO => k[[t, i, o]],
        KernelFormat::OHWI => k[[o, t, i]],
    }) as f64
}

/// The convolution in float64 by its definition: `[n, w - k + 1, cout]` (or without `n`),
/// and for each value the sum of its terms' magnitudes (for the rounding allowed).
fn reference(case: &Case) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let spec = &case.conv.pool_spec;
    let has_n = spec.data_format.has_n();
    let s = case.input.shape();
    let (n, w, c) = if has_n {
        (s[0], s[1], s[2])
    } else {
        (1, s[0], s[1])
    };
    let (k, cout) = (spec.kernel_shape[0], spec.output_channels);
    let ow = w + 1 - k;
    let x = case.input.try_as_plain_ram().unwrap();
    let x = x.as_slice::<f32>().unwrap();
    let b = case.bias.try_as_plain_ram().unwrap();
    let b = b.as_slice::<f32>().unwrap();
    let (mut values, mut magnitudes) = (vec![], vec![]);
    for nn in 0..n {
        for p in 0..ow {
            for o in 0..cout {
                let bias = if b.len() == 1 { b[0] } else { b[o] } as f64;
                let (mut sum, mut mag) = (bias, bias.abs());
                for t in 0..k {
                    for i in 0..c {
                        let term = x[(nn * w + p + t) * c + i] as f64 * weight(case, o, i, t);
                        sum += term;
                        mag += term.abs();
                    }
                }
                if let Some(lo) = case.clamp.lo {
                    sum = sum.max(lo as f64);
                }
                if let Some(hi) = case.clamp.hi {
                    sum = sum.min(hi as f64);
                }
                values.push(sum);
                magnitudes.push(mag);
            }
        }
    }
    let shape = if has_n {
        vec![n, ow, cout]
    } else {
        vec![ow, cout]
    };
    (shape, values, magnitudes)
}

fn op(case: &Case, isa: GemmIsa) -> Option<ChannelsLastConv> {
    let fin = f32::fact(case.input.shape());
    let fk = TypedFact::try_from(case.kernel.clone()).unwrap();
    let fb = TypedFact::try_from(case.bias.clone()).unwrap();
    ChannelsLastConv::from_conv(&case.conv, &[&fin, &fk, &fb], isa)
        .unwrap()
        .map(|op| op.with_clamp(case.clamp))
}

#[test]
fn random_convolutions_equal_float64() {
    let isas = GemmIsa::available();
    eprintln!("kernels tested on this CPU: {isas:?}");
    let mut worst_seen = 0f64;
    for seed in 0..300 {
        let case = random_case(&mut Rng(7_000_000 + seed));
        let (shape, want, magnitudes) = reference(&case);
        for &isa in &isas {
            let what = format!(
                "seed {seed}, {isa:?}: {:?}\ninput {:?} kernel {:?} bias {:?} clamp {:?}",
                case.conv,
                case.input.shape(),
                case.kernel.shape(),
                case.bias.shape(),
                case.clamp
            );
            let got = op(&case, isa).expect(&what).compute(&case.input).unwrap();
            assert_eq!(got.shape(), &shape[..], "{what}");
            let got = got.try_as_plain_ram().unwrap();
            for (j, ((&g, &v), &m)) in got
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(&want)
                .zip(&magnitudes)
                .enumerate()
            {
                // f32 products and sums: a few ulp of the terms' magnitude.
                let d = (g as f64 - v).abs() / (m + 1e-3);
                assert!(d <= 1e-5, "{what}\nelement {j}: {g} against {v}");
                worst_seen = worst_seen.max(d);
            }
        }
    }
    eprintln!("largest difference relative to the terms' magnitude: {worst_seen:e}");
}

/// An empty batch computes an empty tensor.
#[test]
fn empty_batch() {
    let mut rng = Rng(5);
    let mut case = random_case(&mut rng);
    case.conv.pool_spec.data_format = DataFormat::NHWC;
    let (k, c) = (
        case.conv.pool_spec.kernel_shape[0],
        case.conv.pool_spec.input_channels,
    );
    case.input = rng.tensor(&[0, k + 3, c]);
    for isa in GemmIsa::available() {
        let got = op(&case, isa).unwrap().compute(&case.input).unwrap();
        assert_eq!(
            got.shape(),
            &[0, 4, case.conv.pool_spec.output_channels][..]
        );
    }
}

/// A change to a covered case.
type Change = Box<dyn Fn(&mut Case)>;

/// Padding, strides, dilations, groups or channels first: left to tract.
#[test]
fn declines_what_it_does_not_cover() {
    let base = || {
        let mut case = random_case(&mut Rng(3));
        case.conv.pool_spec.data_format = DataFormat::NHWC;
        case
    };
    let isa = GemmIsa::Portable;
    let case = base();
    assert!(op(&case, isa).is_some(), "the base case is covered");
    let k = case.conv.pool_spec.kernel_shape[0];
    let declined: Vec<(&str, Change)> = vec![
        (
            "padding",
            Box::new(|c| c.conv.pool_spec.padding = PaddingSpec::Explicit(tvec!(1), tvec!(0))),
        ),
        (
            "stride 2",
            Box::new(|c| c.conv.pool_spec.strides = Some(tvec!(2))),
        ),
        (
            "dilation 2",
            Box::new(|c| c.conv.pool_spec.dilations = Some(tvec!(2))),
        ),
        ("group 2", Box::new(|c| c.conv.group = 2)),
        (
            "channels first",
            Box::new(|c| c.conv.pool_spec.data_format = DataFormat::NCHW),
        ),
    ];
    for (what, change) in declined {
        let mut case = base();
        change(&mut case);
        assert!(op(&case, isa).is_none(), "{what} is left to tract");
    }
    if k > 1 {
        let mut case = base();
        case.conv.pool_spec.padding = PaddingSpec::SameUpper;
        assert!(op(&case, isa).is_none(), "same padding is left to tract");
    }
}
