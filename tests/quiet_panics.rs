//! A panic inside tract, caught by the library, is an error and prints nothing: the host
//! program's stderr stays its own. Its own test binary, because it sets the process's panic
//! hook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rnn_run::{Error, Model, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[test]
fn caught_panics_print_nothing_and_name_the_node() {
    // The host's hook, counting what reaches it.
    let printed = Arc::new(AtomicUsize::new(0));
    let counter = printed.clone();
    std::panic::set_hook(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));

    // An index past the embedding table: refused before tract slices out of range, naming
    // the Gather and the input the index comes from.
    let dir = fixture("matrix/embed_lstm_linear_legacy_op17");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let tokens = rnn_run::npy::read_npy(dir.join("input_0.npy")).unwrap();
    let mut values = tokens.to_plain_array_view::<i64>().unwrap().to_owned();
    values[[1, 1]] = 1_000_000;
    let bad = Tensor::from(values);
    match model.run(vec![bad]) {
        Err(Error::Run(m)) => {
            assert!(
                m.contains("(Gather) reads index 1000000") && m.contains("from input '"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Models on which tract itself panics: errors, and the hook sees nothing.
    for name in ["gather_75", "onnx_tensor_193", "slice_86", "smallvec_1513"] {
        let bytes = std::fs::read(fixture(&format!("robustness/tract_panic_{name}.onnx"))).unwrap();
        let outcome = Model::from_bytes(&bytes).and_then(|model| {
            let symbolic = 1 + bytes.len() % 3;
            let inputs = model
                .inputs()
                .iter()
                .map(|i| Tensor::zero_dt(i.dtype, &i.shape_with(symbolic)).unwrap())
                .collect();
            model.run(inputs)
        });
        let err = outcome.expect_err(name).to_string();
        assert!(err.contains("tract failed"), "{name}: {err}");
    }
    assert_eq!(
        printed.load(Ordering::SeqCst),
        0,
        "a caught panic reached the hook"
    );

    // The host's own panics still reach its hook.
    let _ = std::panic::catch_unwind(|| panic!("the host's own"));
    assert_eq!(printed.load(Ordering::SeqCst), 1);
}
