//! An `OrtSession` and its `OrtSessionOptions`: an rnn-run [`Model`], loaded with the options
//! ort's session builder set, run with inputs and outputs named as ort names them.

use std::path::Path;

use rnn_run::{LoadOptions, Model, Tensor};

use crate::error::{from_rnn_run, invalid_argument, Error};
use crate::value::TypeInfo;

/// What `SessionBuilder` sets that rnn-run acts on.
#[derive(Debug, Default, Clone)]
pub struct SessionOptions {
    /// `with_intra_threads(n)`: rnn-run's worker threads for the recurrent nodes. 0, ort's
    /// "default", leaves rnn-run's default (the calling thread only).
    pub intra_threads: usize,
}

pub struct Session {
    pub model: Model,
    pub inputs: Vec<TypeInfo>,
    pub outputs: Vec<TypeInfo>,
}

impl Session {
    pub fn from_file(path: &Path, options: &SessionOptions) -> Result<Session, Error> {
        Model::load_with(path, &load_options(options))
            .map(Session::new)
            .map_err(from_rnn_run)
    }

    pub fn from_bytes(bytes: &[u8], options: &SessionOptions) -> Result<Session, Error> {
        Model::from_bytes_with(bytes, &load_options(options))
            .map(Session::new)
            .map_err(|e| {
                // rnn-run's advice names its own API; an ort user has commit_from_file.
                let message = e.to_string();
                match message.split_once(": use Model::load") {
                    Some((what, _)) => Error::new(
                        ort_sys::OrtErrorCode::ORT_INVALID_GRAPH,
                        format!(
                            "{what}: load it with commit_from_file(path), which finds the \
                             data file next to the model"
                        ),
                    ),
                    None => from_rnn_run(e),
                }
            })
    }

    fn new(model: Model) -> Session {
        let info = |io: &rnn_run::IoInfo| TypeInfo::of_dims(io.dtype, &io.shape);
        Session {
            inputs: model.inputs().iter().map(info).collect(),
            outputs: model.outputs().iter().map(info).collect(),
            model,
        }
    }

    /// Runs the graph on inputs given by name (every graph input, in any order) and returns
    /// the outputs asked for, in the order asked.
    pub fn run(
        &self,
        inputs: Vec<(&str, &Tensor)>,
        output_names: &[&str],
    ) -> Result<Vec<Tensor>, Error> {
        let declared = self.model.inputs();
        let mut ordered: Vec<Option<Tensor>> = vec![None; declared.len()];
        for (name, tensor) in inputs {
            let ix = declared
                .iter()
                .position(|io| io.name == name)
                .ok_or_else(|| {
                    invalid_argument(format!(
                        "the model has no input '{name}': its inputs are {}",
                        names(declared)
                    ))
                })?;
            if ordered[ix].replace(tensor.clone()).is_some() {
                return Err(invalid_argument(format!("input '{name}' is given twice")));
            }
        }
        let ordered = ordered
            .into_iter()
            .zip(declared)
            .map(|(t, io)| {
                t.ok_or_else(|| {
                    invalid_argument(format!(
                        "input '{}' ({} {}) is not given: rnn-run runs a graph with every \
                         input given (its inputs are {})",
                        io.name,
                        rnn_run::dtype_name(io.dtype),
                        io.shape_string(),
                        names(declared)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = output_names
            .iter()
            .map(|name| {
                self.model
                    .outputs()
                    .iter()
                    .position(|io| io.name == *name)
                    .ok_or_else(|| {
                        invalid_argument(format!(
                            "the model has no output '{name}': its outputs are {}",
                            names(self.model.outputs())
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut outputs: Vec<Option<Tensor>> = self
            .model
            .run(ordered)
            .map_err(from_rnn_run)?
            .into_iter()
            .map(Some)
            .collect();
        // Each output moves out once; one asked for twice is copied.
        let mut result: Vec<Tensor> = Vec::with_capacity(wanted.len());
        for &ix in &wanted {
            let tensor = match outputs[ix].take() {
                Some(t) => t,
                None => result[wanted.iter().position(|&j| j == ix).unwrap()].clone(),
            };
            result.push(tensor);
        }
        Ok(result)
    }
}

fn load_options(options: &SessionOptions) -> LoadOptions {
    LoadOptions {
        threads: options.intra_threads,
        ..Default::default()
    }
}

/// `'input', 'state', 'sr'`.
fn names(ios: &[rnn_run::IoInfo]) -> String {
    let names: Vec<String> = ios.iter().map(|io| format!("'{}'", io.name)).collect();
    names.join(", ")
}
