//! The scalar functions the activations are made of: fast f32 exp, sigmoid and tanh (and
//! their slice loops, which every kernel set compiles), and the exact generic ones.

use super::Float;

/// `e^x` for f32 in plain arithmetic (vectorizes): n = round(x·log2 e), r = x − n·ln 2 in
/// two parts (Cody–Waite), e^r by Cephes' degree-6 polynomial, 2^n through the exponent
/// bits. About 1 ulp; saturates to e^-87.3 and e^88 outside that range, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.336_54, 88.0);
    let z = x * std::f32::consts::LOG2_E + MAGIC;
    let n = z - MAGIC;
    let ni = (z.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * 0.693_359_4;
    let r = r - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    #[allow(clippy::excessive_precision)] // the fitted coefficient, kept as fitted
    {
        p = p * r + 5.000_000_1e-1;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `1 / (1 + e^-x)` for f32 with [`exp_f32`].
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `tanh x` for f32: the odd 13/6 rational approximation of Eigen and MLAS, clamped at
/// ±7.905 where tanh rounds to ±1. Odd in x, so small arguments keep their relative
/// accuracy. NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 + -8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_7e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

#[inline(always)]
pub(super) fn sigmoid_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = sigmoid_f32(*x);
    }
}

#[inline(always)]
pub(super) fn tanh_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = tanh_f32(*x);
    }
}

/// One batch row of an LSTM step after its product, for `n` units whose activations are the
/// defaults (sigmoid, tanh, tanh) without clip: the gate pre-activations i, o, f, c start
/// `hp` apart at `gates` (blocks padded to whole panels, so each may be read in whole chunks
/// of 16 past `n`); Ct-1, the peepholes (or null) and the outputs hold `n` values.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct LstmRow {
    pub gates: *const f32,
    pub hp: usize,
    pub c_prev: *const f32,
    /// Pi, Po, Pf at these units, or null.
    pub peep: [*const f32; 3],
    pub c_next: *mut f32,
    pub h_next: *mut f32,
    pub n: usize,
    pub input_forget: bool,
}

/// Chunk of units the fused LSTM row works on: a fixed length, so the loops compile to
/// whole vectors on every kernel set.
const CHUNK: usize = 16;

/// `n ≤ CHUNK` values from `p` (zeros after them); a whole chunk as one fixed-size copy (a
/// variable-length copy would be a library call per vector's worth of work).
#[inline(always)]
unsafe fn load_chunk(p: *const f32, n: usize) -> [f32; CHUNK] {
    if n == CHUNK {
        return *(p as *const [f32; CHUNK]);
    }
    let mut v = [0.0; CHUNK];
    for (i, x) in v.iter_mut().enumerate().take(n) {
        *x = *p.add(i);
    }
    v
}

/// The first `n ≤ CHUNK` values of `v` to `p`.
#[inline(always)]
unsafe fn store_chunk(v: &[f32; CHUNK], p: *mut f32, n: usize) {
    if n == CHUNK {
        *(p as *mut [f32; CHUNK]) = *v;
        return;
    }
    for (i, &x) in v.iter().enumerate().take(n) {
        *p.add(i) = x;
    }
}

/// The LSTM step's pointwise part for one row, fused per chunk of units: the same
/// operations in the same order as the cell's general path (so the same bits), without
/// its passes over each gate and their tails.
///
/// # Safety
/// The pointers of `r` hold what [`LstmRow`] says.
#[inline(always)]
pub(super) unsafe fn lstm_row_f32(r: &LstmRow) {
    match (!r.peep[0].is_null(), r.input_forget) {
        (false, false) => lstm_row_as::<false, false>(r),
        (false, true) => lstm_row_as::<false, true>(r),
        (true, false) => lstm_row_as::<true, false>(r),
        (true, true) => lstm_row_as::<true, true>(r),
    }
}

/// [`lstm_row_f32`] with peepholes and `input_forget` as constants, so that the loop over a
/// chunk has no branch and compiles to whole vectors.
#[inline(always)]
unsafe fn lstm_row_as<const PEEP: bool, const COUPLED: bool>(r: &LstmRow) {
    let mut u = 0;
    while u < r.n {
        let m = CHUNK.min(r.n - u);
        let g = r.gates.add(u);
        let mut gi = *(g as *const [f32; CHUNK]);
        let mut go = *(g.add(r.hp) as *const [f32; CHUNK]);
        let mut gf = *(g.add(2 * r.hp) as *const [f32; CHUNK]);
        let mut gc = *(g.add(3 * r.hp) as *const [f32; CHUNK]);
        let cp = load_chunk(r.c_prev.add(u), m);
        let mut po = [0.0; CHUNK];
        if PEEP {
            let pi = load_chunk(r.peep[0].add(u), m);
            let pf = load_chunk(r.peep[2].add(u), m);
            po = load_chunk(r.peep[1].add(u), m);
            for j in 0..CHUNK {
                gi[j] += pi[j] * cp[j];
                gf[j] += pf[j] * cp[j];
            }
        }
        let mut c = [0.0f32; CHUNK];
        for j in 0..CHUNK {
            gi[j] = sigmoid_f32(gi[j]);
            gc[j] = tanh_f32(gc[j]);
        }
        if COUPLED {
            for j in 0..CHUNK {
                c[j] = (1.0 - gi[j]) * cp[j] + gi[j] * gc[j];
            }
        } else {
            for j in 0..CHUNK {
                gf[j] = sigmoid_f32(gf[j]);
                c[j] = gf[j] * cp[j] + gi[j] * gc[j];
            }
        }
        if PEEP {
            for j in 0..CHUNK {
                go[j] += po[j] * c[j];
            }
        }
        let mut h = [0.0f32; CHUNK];
        for j in 0..CHUNK {
            h[j] = sigmoid_f32(go[j]) * tanh_f32(c[j]);
        }
        store_chunk(&c, r.c_next.add(u), m);
        store_chunk(&h, r.h_next.add(u), m);
        u += CHUNK;
    }
}

/// `1 / (1 + e^-x)`, written so that neither tail overflows.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `ln(1 + e^x)` without overflow for large x: `max(x, 0) + ln(1 + e^-|x|)`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// `x / (1 + |x|)`.
#[inline]
pub fn softsign<T: Float>(x: T) -> T {
    x / (T::one() + x.abs())
}

/// `alpha · (e^x - 1)` below zero, x above.
#[inline]
pub fn elu<T: Float>(x: T, alpha: T) -> T {
    if x >= T::zero() {
        x
    } else {
        alpha * x.exp_m1()
    }
}
