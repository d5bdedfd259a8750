//! Number and tensor formatting for people.

use rnn_run::{DatumType, Tensor};

/// `%g`-style: `sig` significant digits, trailing zeros trimmed, exponent for very small or
/// large magnitudes.
pub fn fmt_g(x: f64, sig: usize) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let sig = sig.max(1);
    let sci = format!("{:.*e}", sig - 1, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= sig as i32 {
        format!(
            "{}e{}{:02}",
            trim_zeros(mant),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        let decimals = (sig as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{x:.decimals$}"))
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Whether values of this type are integers (printed without a fraction).
pub fn is_integer(dt: DatumType) -> bool {
    dt.is_integer() || dt == DatumType::Bool
}

/// One value, as exactly as its element type holds it (shortest round-trip form).
pub fn fmt_exact(x: f64, dt: DatumType) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if is_integer(dt) && x.is_finite() {
        return format!("{}", x as i64);
    }
    match dt {
        DatumType::F16 | DatumType::F32 => format!("{:?}", x as f32),
        _ => format!("{x:?}"),
    }
}

/// One value for a summary: 6 significant digits, or the integer.
pub fn fmt_value(x: f64, dt: DatumType) -> String {
    if is_integer(dt) && x.is_finite() {
        format!("{}", x as i64)
    } else {
        fmt_g(x, 6)
    }
}

/// `[2, 0, 1]`.
pub fn fmt_index(index: &[usize]) -> String {
    format!(
        "[{}]",
        index
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Calls `f` with the tensor's values as f64, in C order, converted one at a time: no copy
/// of the tensor is made (a report on a large output used to hold two f64 copies of it).
/// `None` when the element type does not convert.
pub fn with_values_f64<R>(
    t: &Tensor,
    f: impl FnOnce(&mut dyn Iterator<Item = f64>) -> R,
) -> Option<R> {
    macro_rules! each {
        ($t:ty, $conv:expr) => {{
            let view = t.to_plain_array_view::<$t>().ok()?;
            let mut values = view.iter().map($conv);
            Some(f(&mut values))
        }};
    }
    match t.datum_type() {
        DatumType::F32 => each!(f32, |&v| v as f64),
        DatumType::F64 => each!(f64, |&v| v),
        DatumType::F16 => each!(tract_hir::internal::f16, |v| v.to_f64()),
        DatumType::I8 => each!(i8, |&v| v as f64),
        DatumType::I16 => each!(i16, |&v| v as f64),
        DatumType::I32 => each!(i32, |&v| v as f64),
        DatumType::I64 => each!(i64, |&v| v as f64),
        DatumType::U8 => each!(u8, |&v| v as f64),
        DatumType::U16 => each!(u16, |&v| v as f64),
        DatumType::U32 => each!(u32, |&v| v as f64),
        DatumType::U64 => each!(u64, |&v| v as f64),
        DatumType::Bool => each!(bool, |&v| if v { 1.0 } else { 0.0 }),
        _ => {
            let cast = t.cast_to::<f64>().ok()?;
            let view = cast.to_plain_array_view::<f64>().ok()?;
            let mut values = view.iter().copied();
            Some(f(&mut values))
        }
    }
}

/// Summary statistics of a tensor.
pub struct Stats {
    pub count: usize,
    pub nan: usize,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub first: Vec<f64>,
}

/// How many leading values summaries show.
pub const FIRST: usize = 6;

pub fn stats(values: &mut dyn Iterator<Item = f64>) -> Stats {
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut sum = 0.0;
    let mut n = 0usize;
    let mut nan = 0usize;
    let mut count = 0usize;
    let mut first = Vec::with_capacity(FIRST);
    for v in values {
        count += 1;
        if first.len() < FIRST {
            first.push(v);
        }
        if v.is_nan() {
            nan += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    Stats {
        count,
        nan,
        min: (n > 0).then_some(min),
        max: (n > 0).then_some(max),
        mean: (n > 0).then(|| sum / n as f64),
        first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format() {
        assert_eq!(fmt_g(0.0, 6), "0");
        assert_eq!(fmt_g(1.0, 6), "1");
        assert_eq!(fmt_g(-0.512345678, 6), "-0.512346");
        assert_eq!(fmt_g(123456.7, 6), "123457");
        assert_eq!(fmt_g(1234567.0, 6), "1.23457e+06");
        assert_eq!(fmt_g(0.0001, 6), "0.0001");
        assert_eq!(fmt_g(0.00001234, 6), "1.234e-05");
        assert_eq!(fmt_g(9.9999999, 6), "10");
        assert_eq!(fmt_g(f64::NAN, 6), "nan");
        assert_eq!(fmt_g(f64::NEG_INFINITY, 6), "-inf");
    }

    #[test]
    fn exact_format() {
        assert_eq!(fmt_exact(0.51234f32 as f64, DatumType::F32), "0.51234");
        assert_eq!(fmt_exact(3.0, DatumType::I64), "3");
        assert_eq!(fmt_exact(0.1, DatumType::F64), "0.1");
    }
}
