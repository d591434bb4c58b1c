//! The cost model over whole graphs: each op's FLOPs and bytes come from its family
//! ([`Op::work`](crate::ir::Op::work)), with the symbolic dimensions bound to a batch size. The
//! same numbers drive extraction and the `--stats` report.

use crate::ir::op::Work;
use crate::ir::{Graph, TensorType};
use serde::Serialize;

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
        work.add(node.op.work(&inputs, &node.ty, batch as u64));
    }
    GraphStats {
        nodes: graph.nodes().len(),
        matmul_flops: work.matmul_flops,
        elementwise_flops: work.elementwise_flops,
        bytes: work.bytes,
    }
}
