//! One name per node, in every build.
//!
//! tract keeps ONNX node names as they are and checks that they are unique only in a debug
//! build (after compacting a graph): OpenVINO's Silero VAD export names 15 nodes `F0::anon`,
//! which a release build ran and a debug build refused. So the parsed graph's repeated names
//! get a suffix (`F0::anon (2)`, the second node of that name in file order), every node our
//! passes create is named with [`TypedModel::unique_name`], and [`check`] runs after each of
//! our passes, in every build: a pass that breaks the rule is a bug reported by its name.

use std::collections::HashSet;
use std::fmt;

use tract_hir::internal::*;

/// Our pass `pass` left two nodes named `name`.
#[derive(Debug)]
pub(crate) struct DuplicateName {
    pub pass: &'static str,
    pub name: String,
}

impl fmt::Display for DuplicateName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "rnn-run's graph pass '{}' left two nodes named '{}' (a bug in rnn-run: please \
             report it with the model)",
            self.pass, self.name
        )
    }
}

impl std::error::Error for DuplicateName {}

/// Renames the second and later nodes of each repeated name (`name (2)`, `name (3)`...,
/// skipping any already taken).
pub(crate) fn make_unique<F, O>(model: &mut Graph<F, O>)
where
    F: Fact + Clone + 'static,
    O: fmt::Debug + fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    let mut taken: HashSet<String> = model.nodes().iter().map(|n| n.name.clone()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    for node in model.nodes_mut() {
        if seen.insert(node.name.clone()) {
            continue;
        }
        let mut k = 2;
        let renamed = loop {
            let candidate = format!("{} ({k})", node.name);
            if !taken.contains(&candidate) {
                break candidate;
            }
            k += 1;
        };
        taken.insert(renamed.clone());
        seen.insert(renamed.clone());
        node.name = renamed;
    }
}

/// Fails with [`DuplicateName`] when two nodes of `model` share a name.
pub(crate) fn check<F, O>(model: &Graph<F, O>, pass: &'static str) -> TractResult<()>
where
    F: Fact + Clone + 'static,
    O: fmt::Debug + fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    let mut seen = HashSet::new();
    for node in model.nodes() {
        if !seen.insert(node.name.as_str()) {
            return Err(DuplicateName {
                pass,
                name: node.name.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Whether `e` is a [`DuplicateName`] (which no fallback may hide).
pub(crate) fn is_duplicate(e: &TractError) -> bool {
    e.downcast_ref::<DuplicateName>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::math::add;

    fn model_with_names(names: &[&str]) -> TypedModel {
        let mut model = TypedModel::default();
        let mut wire = model.add_source("x", f32::fact([1])).unwrap();
        for ix in 0..names.len() {
            wire = model
                .wire_node(format!("n{ix}"), add(), &[wire, wire])
                .unwrap()[0];
        }
        model.select_output_outlets(&[wire]).unwrap();
        // wire_node refuses a taken name; a parsed graph or a patch does not.
        for (node, name) in model.nodes_mut().iter_mut().skip(1).zip(names) {
            node.name = name.to_string();
        }
        model
    }

    #[test]
    fn repeated_names_get_a_suffix_and_the_check_passes() {
        let mut model = model_with_names(&["a", "a", "a (2)", "b", "a"]);
        let err = check(&model, "test").unwrap_err();
        assert!(
            err.to_string().contains("'test' left two nodes named 'a'"),
            "{err}"
        );
        make_unique(&mut model);
        let names: Vec<&str> = model.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["x", "a", "a (3)", "a (2)", "b", "a (4)"]);
        check(&model, "test").unwrap();
    }
}
