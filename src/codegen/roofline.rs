//! The GEMM roofline of a graph: its matrix products alone, on the same shapes, transposes and
//! operand layouts, run through the same GEMM and threads. `efficiency = roofline / graph time`
//! says how much of a graph's time goes to anything but its matmuls.

use super::{Error, Result};
use super::{JitGraph, JitOptions, compile_graph};
use crate::ir::memory;
use crate::ir::{ArgRole, Bindings, Graph, NodeId, Op, Tensor};
use std::collections::HashMap;

/// A graph of the live matmuls of `graph`: each operand becomes an argument typed like the
/// non-view node it reads (through broadcasts, reshapes, transposes and slices, which are
/// re-applied), and each product an output.
pub fn roofline_graph(graph: &Graph) -> Graph {
    let live = graph.ancestors(graph.outputs().iter().map(|o| o.node), |_| false);
    let mut out = Graph::new(format!("{}-matmuls", graph.name));
    let mut bases: HashMap<NodeId, NodeId> = HashMap::new();
    for id in graph.ids() {
        let node = graph.node(id);
        if !live[id.index()] || !matches!(node.op, Op::MatMul(_)) {
            continue;
        }
        let operands: Vec<NodeId> = node
            .inputs
            .iter()
            .map(|&x| copy_view_chain(graph, x, &mut out, &mut bases))
            .collect();
        let product = out
            .apply(node.op.clone(), &operands)
            .expect("the same op on operands of the same types");
        out.add_output(format!("m{}", id.0), product);
    }
    out
}

/// `x` in `out`: the views leading to it re-applied to an argument standing for the first
/// non-view node.
fn copy_view_chain(
    graph: &Graph,
    x: NodeId,
    out: &mut Graph,
    bases: &mut HashMap<NodeId, NodeId>,
) -> NodeId {
    let node = graph.node(x);
    if super::schedule::is_view(&node.op) {
        let inner = copy_view_chain(graph, node.inputs[0], out, bases);
        return out
            .apply(node.op.clone(), &[inner])
            .expect("the same view of an operand of the same type");
    }
    *bases.entry(x).or_insert_with(|| {
        let index = out.args().len();
        out.add_arg(format!("a{index}"), ArgRole::Input, node.ty.clone())
    })
}

/// The matmuls of a graph ([`roofline_graph`]) compiled with the same options, on ordinary
/// values (no denormals, no zeros a GEMM could skip), ready to be timed run by run, so that a
/// benchmark can interleave them with the graph itself.
pub struct Roofline {
    /// None when the graph has no matmuls: its roofline is 0.
    compiled: Option<(JitGraph, Vec<Tensor>, Vec<Tensor>)>,
}

impl Roofline {
    /// The roofline of `graph` under `bindings` of its symbolic dimensions.
    pub fn new(graph: &Graph, bindings: &Bindings, options: &JitOptions) -> Result<Roofline> {
        let matmuls = roofline_graph(graph);
        if matmuls.outputs().is_empty() {
            return Ok(Roofline { compiled: None });
        }
        let jit = compile_graph(&matmuls, options)?;
        let shapes = matmuls
            .args()
            .iter()
            .map(|arg| {
                arg.ty.shape.eval(bindings).map_err(|e| {
                    Error::eval(format!(
                        "roofline of graph '{}': {} with {bindings:?}: {e}",
                        graph.name, arg.ty
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = matmuls
            .args()
            .iter()
            .zip(&shapes)
            .try_fold(0u64, |n, (arg, shape)| {
                n.checked_add(memory::tensor_bytes(arg.ty.dtype, shape)?)
            });
        memory::ensure_available(bytes, || {
            format!("the operands of graph '{}''s matmuls alone", graph.name)
        })?;
        let mut args = Vec::with_capacity(shapes.len());
        for (arg, shape) in matmuls.args().iter().zip(shapes) {
            let n: usize = shape.iter().product();
            let values = (0..n).map(|i| 0.5 + (i % 7) as f64 * 0.1).collect();
            args.push(
                Tensor::from_f64(arg.ty.dtype, &shape, values).expect("length matches the shape"),
            );
        }
        let outputs = jit.run(&args)?;
        Ok(Roofline {
            compiled: Some((jit, args, outputs)),
        })
    }

    /// Runs the matmuls once.
    pub fn run(&mut self) -> Result<()> {
        match &mut self.compiled {
            Some((jit, args, outputs)) => jit.run_into(args, outputs),
            None => Ok(()),
        }
    }
}
