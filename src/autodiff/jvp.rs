//! Forward mode (R-op): pushes tangents through a graph with each op's JVP rule
//! ([`Op::jvp`](crate::ir::Op::jvp), defined beside the op in its family).
//!
//! Tangent nodes are added to the same graph as the primal nodes they read, so a tangent can use
//! any primal value (activations, outputs) directly. A missing tangent (`None`) is a symbolic
//! zero: it is never materialized, and rules skip the terms it would contribute. The primal
//! factors a rule builds (σ'(a) = y(1 − y), say) are named after the value they differentiate:
//! `h1'` for `h1` — they are what a Gauss-Newton product keeps as residuals.

use super::AdError;
use crate::ir::{Graph, NodeId};

/// Pushes tangents forward from `seeds` (primal node → its tangent node) to every node that
/// `targets` depend on. Returns the tangent of each node that existed before the call (`None`
/// for a symbolic zero); nodes added by the call have no entry.
pub fn jvp(
    g: &mut Graph,
    seeds: &[(NodeId, NodeId)],
    targets: &[NodeId],
) -> Result<Vec<Option<NodeId>>, AdError> {
    let primal_len = g.nodes().len();
    let needed = g.ancestors(targets.iter().copied(), |_| false);
    let mut tangent: Vec<Option<NodeId>> = vec![None; primal_len];
    let mut seeded = vec![false; primal_len];
    // The seeds' tangents and the nodes this call adds that depend on them.
    let mut on_tangent = vec![false; primal_len];
    for &(node, t) in seeds {
        tangent[node.index()] = Some(t);
        seeded[node.index()] = true;
        on_tangent[t.index()] = true;
    }
    let first = seeds
        .iter()
        .map(|(n, _)| n.index())
        .min()
        .unwrap_or(primal_len);
    for i in first..primal_len {
        if !needed[i] || seeded[i] {
            continue;
        }
        let id = NodeId(i as u32);
        let node = g.node(id).clone();
        let operand_tangents: Vec<Option<NodeId>> =
            node.inputs.iter().map(|x| tangent[x.index()]).collect();
        if operand_tangents.iter().all(Option::is_none) {
            continue;
        }
        g.set_span(g.origin(id));
        let added_from = g.nodes().len();
        tangent[i] = node
            .op
            .jvp(g, id, &node.inputs, &operand_tangents)
            .map_err(|e| AdError::from_shape(g, id, e))?;
        let derivative_label = g.label(id).map(|label| format!("{label}'"));
        on_tangent.resize(g.nodes().len(), false);
        for added in added_from..g.nodes().len() {
            let added = NodeId(added as u32);
            on_tangent[added.index()] = g.node(added).inputs.iter().any(|x| on_tangent[x.index()]);
            if let (false, Some(label)) = (on_tangent[added.index()], &derivative_label) {
                g.set_label(added, label);
            }
        }
    }
    g.set_span(None);
    Ok(tangent)
}
