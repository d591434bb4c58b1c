//! Cutting graphs out of a larger one: extraction by arguments and outputs, and the residuals
//! at which `derive.rs` splits a Gauss-Newton product into a v-independent prepare stage and a
//! linear apply stage.

use crate::ir::{Arg, ArgRole, Graph, Leaf, NodeId, Op};
use rustc_hash::FxHashMap;

/// An argument of an extracted graph: the node of the source graph it stands for.
#[derive(Clone, Debug)]
pub struct Cut {
    pub node: NodeId,
    pub name: String,
    pub role: ArgRole,
}

impl Cut {
    /// The cut that keeps an argument of the source graph as it is.
    pub fn of_arg(arg: &Arg) -> Cut {
        Cut {
            node: arg.node,
            name: arg.name.clone(),
            role: arg.role,
        }
    }
}

/// A new graph computing `outputs` of `g` from the nodes `args` (which become its arguments, in
/// that order; any node can be cut, not only `g`'s arguments). Only what the outputs need is
/// copied.
///
/// # Panics
/// If an output needs an argument of `g` that is not among `args`: the callers in this module
/// tree choose the cuts, so that is a bug, not a user error.
pub fn extract(g: &Graph, name: &str, args: &[Cut], outputs: &[(String, NodeId)]) -> Graph {
    let mut out = Graph::new(name);
    let mut map: FxHashMap<NodeId, NodeId> = FxHashMap::default();
    for cut in args {
        out.set_span(g.origin(cut.node));
        let id = out.add_arg(cut.name.clone(), cut.role, g.ty(cut.node).clone());
        map.insert(cut.node, id);
    }
    let roots: Vec<NodeId> = outputs.iter().map(|(_, n)| *n).collect();
    let needed = g.ancestors(roots, |id| map.contains_key(&id));
    copy_nodes(g, &mut out, &mut map, |id| {
        let needed = needed[id.index()];
        assert!(
            !needed || !matches!(g.node(id).op, Op::Leaf(Leaf::Arg(_))),
            "graph '{name}' needs argument '{}' that was not given",
            g.args()
                .iter()
                .find(|a| a.node == id)
                .map_or("?", |a: &Arg| a.name.as_str())
        );
        needed
    });
    for (name, node) in outputs {
        out.add_output(name.clone(), map[node]);
    }
    out
}

/// Copies the nodes of `g` that `select` keeps (and `map` does not already place), in order,
/// into `out`: each input through `map`, which must hold where `g`'s other nodes they read are
/// in `out` (its arguments, say), with its source span and label; hash-consing merges a copy
/// with an equal node `out` already has. `map` gains every copied node.
pub(super) fn copy_nodes(
    g: &Graph,
    out: &mut Graph,
    map: &mut FxHashMap<NodeId, NodeId>,
    mut select: impl FnMut(NodeId) -> bool,
) {
    for id in g.ids() {
        if map.contains_key(&id) || !select(id) {
            continue;
        }
        let node = g.node(id);
        let inputs = node.inputs.iter().map(|x| map[x]).collect();
        out.set_span(g.origin(id));
        let copied = out.intern(node.op.clone(), inputs, node.ty.clone());
        if let Some(label) = g.label(id) {
            out.set_label(copied, label);
        }
        map.insert(id, copied);
    }
    out.set_span(None);
}

/// The residuals of a graph that is linear in the arguments `linear_args`: the values that do not
/// depend on them but are read by nodes that do. Values computed from constants alone are not
/// residuals (the linear stage recomputes them for free). In node order.
pub fn residuals(g: &Graph, linear_args: &[NodeId]) -> Vec<NodeId> {
    let len = g.nodes().len();
    let linear = g.descendants(linear_args, len);
    let all_args: Vec<NodeId> = g.args().iter().map(|a| a.node).collect();
    let from_args = g.descendants(&all_args, len);
    let roots: Vec<NodeId> = g.outputs().iter().map(|o| o.node).collect();
    let live = g.ancestors(roots, |_| false);
    let mut is_residual = vec![false; len];
    for (i, node) in g.nodes().iter().enumerate() {
        if live[i] && linear[i] {
            for x in &node.inputs {
                if !linear[x.index()] && from_args[x.index()] {
                    is_residual[x.index()] = true;
                }
            }
        }
    }
    (0..len)
        .filter(|&i| is_residual[i])
        .map(|i| NodeId(i as u32))
        .collect()
}
