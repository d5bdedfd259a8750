//! Reading tensors as `ndarray` arrays with rnn-run's own error type.
//!
//! [`Model::run`](crate::Model::run) returns tract's [`Tensor`]s. [`TensorExt`] reads one as
//! an [`ndarray::ArrayViewD`] (borrowed) or an [`ndarray::ArrayD`] (owned) of a Rust element
//! type, and says which element type it holds when that is not the one asked for, as an
//! [`Error::ElementType`]; so `?` works in a function returning [`crate::Result`]:
//!
//! ```
//! use rnn_run::{Model, Tensor, TensorExt};
//!
//! fn main() -> Result<(), rnn_run::Error> {
//!     let model = Model::load("fixtures/tutorial/lstm_legacy/model.onnx")?;
//!     let x = Tensor::from(ndarray::Array3::<f32>::zeros((1, 3, 5)));
//!     let h0 = Tensor::from(ndarray::Array3::<f32>::zeros((2, 3, 6)));
//!     let outputs = model.run(vec![x, h0.clone(), h0])?;
//!     let y: ndarray::ArrayViewD<f32> = outputs[0].array_view()?;
//!     assert_eq!(y.shape(), [1, 3, 6]);
//!     let h_n = outputs[1].to_array::<f32>()?.into_dimensionality::<ndarray::Ix3>().unwrap();
//!     assert_eq!(h_n.dim(), (2, 3, 6));
//!     // Asking for another element type is an error naming both.
//!     let err = outputs[0].array_view::<f64>().unwrap_err();
//!     assert!(err.to_string().contains("expected a tensor of float64 (f64), found float32 (f32)"));
//!     Ok(())
//! }
//! ```
//!
//! Inputs go the other way without naming a tensor type: [`inputs!`](crate::inputs) turns
//! owned arrays of any element types into what [`Model::run`](crate::Model::run) takes
//! (`model.run(inputs![x, state, sr])`, an `f32` array beside an `i64` one).
//!
//! The arrays are `ndarray` 0.17's, the version tract uses: depend on `ndarray = "0.17"`.
//! (tract's own `Tensor::to_plain_array_view` does the same with tract's error type; the
//! method here is not called `view` because `Tensor` has an inherent `view` of its own.)

use ndarray::{ArrayD, ArrayViewD};

/// The inputs of one [`Model::run`](crate::Model::run) (a `Vec` of tensors), from owned
/// `ndarray` arrays (or tensors) of any element types, in graph input order: `inputs![x,
/// state, sr]` with `x` an `Array2<f32>` and `sr` an `Array0<i64>`.
///
/// ```
/// use rnn_run::{inputs, Model, TensorExt};
/// use ndarray::{Array, Array3};
///
/// # fn main() -> rnn_run::Result<()> {
/// let model = Model::load("fixtures/tutorial/lstm_legacy/model.onnx")?;
/// let x = Array::from_elem((4, 1, 5), 0.5f32);
/// let h0 = Array3::<f32>::zeros((2, 1, 6));
/// let outputs = model.run(inputs![x, h0.clone(), h0])?;
/// assert_eq!(outputs[0].array_view::<f32>()?.shape(), [4, 1, 6]);
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! inputs {
    ($($input:expr),* $(,)?) => {
        ::std::vec![$($crate::Tensor::from($input)),*]
    };
}
use tract_hir::internal::{f16, Datum, DatumType, Tensor};

use crate::error::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// An element type a tensor can be read as: `f32`, `f64`, `f16` (tract's `half::f16`), `i8`,
/// `i16`, `i32`, `i64`, `u8`, `u16`, `u32`, `u64` and `bool`.
pub trait Element: Datum + sealed::Sealed {
    /// The Rust name, for messages (`"f32"`).
    const RUST_NAME: &'static str;
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const RUST_NAME: &'static str = stringify!($t);
        }
    )*};
}
element!(f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, bool);

/// The Rust type a tensor of `dt` reads as, when there is one.
fn rust_name(dt: DatumType) -> Option<&'static str> {
    Some(match dt {
        DatumType::F16 => "f16",
        DatumType::F32 => "f32",
        DatumType::F64 => "f64",
        DatumType::I8 => "i8",
        DatumType::I16 => "i16",
        DatumType::I32 => "i32",
        DatumType::I64 => "i64",
        DatumType::U8 => "u8",
        DatumType::U16 => "u16",
        DatumType::U32 => "u32",
        DatumType::U64 => "u64",
        DatumType::Bool => "bool",
        _ => return None,
    })
}

/// `float32 (f32)`.
fn describe(dt: DatumType) -> String {
    let name = crate::model::dtype_name(dt);
    match rust_name(dt) {
        Some(rust) => format!("{name} ({rust})"),
        None => name.to_string(),
    }
}

/// Reading a [`Tensor`] as an `ndarray` array of `T`, with [`Error::ElementType`] when it holds
/// another element type. See the [module documentation](self).
pub trait TensorExt {
    /// A borrowed view of the tensor's elements, any rank (`ArrayViewD`; turn it into a fixed
    /// rank with `into_dimensionality`).
    fn array_view<T: Element>(&self) -> Result<ArrayViewD<'_, T>>;

    /// An owned copy of the tensor's elements, any rank.
    fn to_array<T: Element>(&self) -> Result<ArrayD<T>>;
}

impl TensorExt for Tensor {
    fn array_view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let found = self.datum_type();
        if found != T::datum_type() {
            return Err(Error::ElementType {
                expected: describe(T::datum_type()),
                found: describe(found),
                hint: match rust_name(found) {
                    Some(rust) => format!("read it as {rust}"),
                    None => "it has no Rust element type rnn-run reads".into(),
                },
            });
        }
        self.to_plain_array_view::<T>()
            .map_err(|e| Error::Run(format!("cannot view the tensor's elements: {e}")))
    }

    fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        self.array_view::<T>().map(|v| v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_and_copies_of_each_type() {
        let t = Tensor::from(ndarray::arr2(&[[1i64, 2], [3, 4]]));
        let v = t.array_view::<i64>().unwrap();
        assert_eq!(v.shape(), [2, 2]);
        assert_eq!(v[[1, 0]], 3);
        assert_eq!(t.to_array::<i64>().unwrap(), v.to_owned());
        let b = Tensor::from(ndarray::arr1(&[true, false]));
        assert_eq!(
            b.to_array::<bool>().unwrap().as_slice(),
            Some(&[true, false][..])
        );
        let h = Tensor::from(ndarray::arr0(f16::from_f32(0.5)));
        assert_eq!(h.array_view::<f16>().unwrap()[[]], f16::from_f32(0.5));
    }

    #[test]
    fn wrong_element_type_names_both() {
        let t = Tensor::from(ndarray::arr1(&[1.0f64, 2.0]));
        let err = t.array_view::<f32>().unwrap_err();
        match &err {
            Error::ElementType {
                expected, found, ..
            } => {
                assert_eq!(expected, "float32 (f32)");
                assert_eq!(found, "float64 (f64)");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "expected a tensor of float32 (f32), found float64 (f64): read it as f64"
        );
        assert!(matches!(
            t.to_array::<i64>(),
            Err(Error::ElementType { .. })
        ));
    }
}
