//! Load and plan time against graph size: chains of Identity nodes (x → Identity → … → y,
//! float32 `[1]`), 12,500, 25,000 and 100,000 nodes by default, or of another unary op
//! (`-- --op Neg`: a chain tract must type node by node, where Identity nodes are removed
//! before tract sees them). Each round loads the model
//! from bytes (`Model::from_bytes`: protobuf decoding, our checks, tract's parse, typing and
//! our graph passes) and plans it for one input (`Model::prepare`: specialization, tract's
//! optimization, our passes again); the median of the rounds is printed, with time per node.
//!
//! `cargo bench --bench load` (`-- 1000 5000` for other sizes, `-- --rounds 5`,
//! `-- --write DIR` to also write each model as `DIR/<op>_chain_<n>.onnx` for timing the
//! command line or another runtime on the same files).

use std::time::Instant;

use rnn_run::{Model, Tensor};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

#[path = "../tests/common/proto.rs"]
mod proto;
use proto::{model_bytes, value_info, Dim};

/// `x → op → t1 → op → … → y`: `n` nodes, float32 `[1]` throughout.
fn chain(op: &str, n: usize) -> Vec<u8> {
    let name = |i: usize| match i {
        0 => "x".to_string(),
        i if i == n => "y".to_string(),
        i => format!("t{i}"),
    };
    let node = (0..n)
        .map(|i| pb::NodeProto {
            name: format!("{}_{i}", op.to_lowercase()),
            input: vec![name(i)],
            output: vec![name(i + 1)],
            op_type: op.into(),
            ..Default::default()
        })
        .collect();
    let float = |n: &str| value_info(n, DataType::Float, Some(&[Dim::N(1)]));
    let graph = pb::GraphProto {
        node,
        input: vec![float("x")],
        output: vec![float("y")],
        ..Default::default()
    };
    model_bytes(graph, 17)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut sizes = vec![];
    let mut rounds = 3;
    let mut write = None;
    let mut op = "Identity".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .expect("--rounds N")
            }
            "--op" => op = args.next().expect("--op Identity|Neg|Relu|..."),
            "--write" => write = Some(std::path::PathBuf::from(args.next().expect("--write DIR"))),
            n => sizes.push(n.parse::<usize>().expect("a node count")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![12_500, 25_000, 100_000];
    }
    println!("{op} chains");
    println!("nodes      load ms   plan ms   total ms   µs/node   (median of {rounds})");
    for n in sizes {
        let bytes = chain(&op, n);
        if let Some(dir) = &write {
            let file = format!("{}_chain_{n}.onnx", op.to_lowercase());
            std::fs::write(dir.join(file), &bytes).unwrap();
        }
        let x = Tensor::from(ndarray::arr1(&[0.5f32]));
        let (mut load, mut plan) = (vec![], vec![]);
        for _ in 0..rounds {
            let start = Instant::now();
            let model = Model::from_bytes(&bytes).unwrap();
            load.push(start.elapsed().as_secs_f64() * 1e3);
            let start = Instant::now();
            model.prepare(std::slice::from_ref(&x)).unwrap();
            plan.push(start.elapsed().as_secs_f64() * 1e3);
            let y = model.run(vec![x.clone()]).unwrap();
            if op == "Identity" || (op == "Neg" && n % 2 == 0) {
                assert_eq!(y[0], x, "the chain computes y = x");
            }
        }
        let (load, plan) = (median(&mut load), median(&mut plan));
        println!(
            "{n:>7}  {load:>9.0} {plan:>9.0} {:>10.0} {:>9.1}",
            load + plan,
            (load + plan) * 1e3 / n as f64
        );
    }
}
