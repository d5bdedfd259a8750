//! The shapes and element types of a graph's inputs and outputs, as the library reports them
//! (shared by the model, its description and the front ends, so neither imports the other).

use std::fmt;

use tract_hir::internal::DatumType;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen at run time, by name (`batch`, `seq`, or an expression of them).
    Symbol(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// A graph input or output: name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoInfo {
    /// The name in the ONNX graph.
    pub name: String,
    /// Element type.
    pub dtype: DatumType,
    /// Shape; symbolic dimensions keep their names.
    pub shape: Vec<Dim>,
}

impl IoInfo {
    /// `[1, seq, 5]`.
    pub fn shape_string(&self) -> String {
        crate::error::shape_string(&self.shape)
    }

    /// The shape with every symbolic dimension set to `symbolic`, to make example inputs.
    pub fn shape_with(&self, symbolic: usize) -> Vec<usize> {
        self.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbol(_) => symbolic,
            })
            .collect()
    }

    /// `2 inputs (x, h0)`: how many `infos` there are, as `noun`s, and their names (`none`), for
    /// messages about a count of tensors that does not match.
    pub fn counted(infos: &[IoInfo], noun: &str) -> String {
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        format!(
            "{} {noun}{} ({})",
            infos.len(),
            if infos.len() == 1 { "" } else { "s" },
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    }
}

/// The numpy-style name of an element type (`float32`, `int64`, ...).
pub fn dtype_name(dt: DatumType) -> String {
    match dt {
        DatumType::F16 => "float16".into(),
        DatumType::F32 => "float32".into(),
        DatumType::F64 => "float64".into(),
        DatumType::I8 => "int8".into(),
        DatumType::I16 => "int16".into(),
        DatumType::I32 => "int32".into(),
        DatumType::I64 => "int64".into(),
        DatumType::U8 => "uint8".into(),
        DatumType::U16 => "uint16".into(),
        DatumType::U32 => "uint32".into(),
        DatumType::U64 => "uint64".into(),
        DatumType::Bool => "bool".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
