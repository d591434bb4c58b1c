//! The cost model: FLOPs and bytes moved by each op, over shapes with the symbolic dimensions
//! bound to a batch size.
//!
//! A matmul `[M, K] @ [K, N]` is `2·M·K·N` FLOPs; an elementwise op or a reduction is one FLOP
//! per element it reads; broadcasts, transposes, slices and concats move bytes without FLOPs;
//! reshapes and `stop_gradient` are views and cost nothing. Bytes are the operands read plus the
//! result written. The same numbers drive extraction and the `--stats` report.

use crate::ir::{Dim, Graph, Op, Shape, TensorType};
use serde::Serialize;

/// The work of one op or of a whole graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Work {
    pub matmul_flops: u64,
    pub elementwise_flops: u64,
    pub bytes: u64,
}

impl Work {
    /// FLOPs plus bytes: the extraction cost of this work.
    pub fn total(&self) -> f64 {
        self.matmul_flops as f64 + self.elementwise_flops as f64 + self.bytes as f64
    }

    fn add(&mut self, other: Work) {
        self.matmul_flops = self.matmul_flops.saturating_add(other.matmul_flops);
        self.elementwise_flops = self
            .elementwise_flops
            .saturating_add(other.elementwise_flops);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// A dimension's size with every symbol bound to `batch`.
pub fn dim_size(dim: &Dim, batch: u64) -> u64 {
    dim.symbols()
        .iter()
        .fold(dim.coeff(), |n, _| n.saturating_mul(batch))
}

/// A shape's element count with every symbol bound to `batch`.
pub fn numel(shape: &Shape, batch: u64) -> u64 {
    shape
        .dims()
        .iter()
        .fold(1u64, |n, d| n.saturating_mul(dim_size(d, batch)))
}

/// The work of `op` on operands of types `inputs` giving `output`, with symbols bound to `batch`.
pub fn op_work(op: &Op, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
    let elements = |t: &TensorType| numel(&t.shape, batch);
    let bytes = |t: &TensorType| elements(t).saturating_mul(t.dtype.size_bytes() as u64);
    let moved = inputs
        .iter()
        .fold(bytes(output), |n, t| n.saturating_add(bytes(t)));
    match op {
        Op::Arg(_) | Op::Const(_) | Op::DimSize(_) | Op::Reshape { .. } | Op::StopGradient => {
            Work::default()
        }
        Op::Unary(_) | Op::Pow(_) | Op::Binary(_) => Work {
            elementwise_flops: elements(output),
            bytes: moved,
            ..Work::default()
        },
        Op::Sum { .. } | Op::ReduceMax { .. } => Work {
            elementwise_flops: elements(inputs[0]),
            bytes: moved,
            ..Work::default()
        },
        Op::MatMul { transpose_a, .. } => {
            let a = inputs[0].shape.dims();
            let k = dim_size(if *transpose_a { &a[0] } else { &a[1] }, batch);
            Work {
                matmul_flops: elements(output).saturating_mul(k).saturating_mul(2),
                bytes: moved,
                ..Work::default()
            }
        }
        Op::Broadcast { .. } | Op::Transpose { .. } | Op::Concat { .. } | Op::Slice { .. } => {
            Work {
                bytes: moved,
                ..Work::default()
            }
        }
    }
}

/// Size and work of a graph: what `--stats` prints before and after optimization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    /// Nodes the outputs need, arguments included.
    pub nodes: usize,
    pub matmul_flops: u64,
    pub elementwise_flops: u64,
    pub bytes: u64,
}

/// The stats of `graph` with every symbolic dimension bound to `batch`. Only nodes the outputs
/// need count.
pub fn graph_stats(graph: &Graph, batch: usize) -> GraphStats {
    let graph = graph.pruned();
    let mut work = Work::default();
    for node in graph.nodes() {
        let inputs: Vec<&TensorType> = node.inputs.iter().map(|&x| graph.ty(x)).collect();
        work.add(op_work(&node.op, &inputs, &node.ty, batch as u64));
    }
    GraphStats {
        nodes: graph.nodes().len(),
        matmul_flops: work.matmul_flops,
        elementwise_flops: work.elementwise_flops,
        bytes: work.bytes,
    }
}
