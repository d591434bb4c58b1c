//! Reverse mode (L-op) as the transpose of a linear graph.
//!
//! Only the linear ops have transpose rules ([`Op::transpose`](crate::ir::Op::transpose),
//! defined beside each op in its family): add, sub, neg, a product or quotient with one factor
//! that does not depend on the linear inputs, matmul with one such operand, the sum, and the
//! layout ops (broadcast ↔ sum, reshape, transpose, concat ↔ slice). A VJP is the transpose of
//! a JVP, so forward and reverse mode come from one rule set.

use super::AdError;
use crate::ir::{BinaryOp, Graph, NodeId, ShapeError};

/// Transposes the linear map from the nodes `inputs` to the outputs named in `seeds`
/// (each output paired with its cotangent node). Returns the cotangent of each input (`None` when
/// no output depends on it).
///
/// A node on a path from `inputs` to the outputs that is not linear in `inputs` (say `exp` of
/// one) is an error naming the op and its source position.
pub fn transpose(
    g: &mut Graph,
    inputs: &[NodeId],
    seeds: &[(NodeId, NodeId)],
) -> Result<Vec<Option<NodeId>>, AdError> {
    let len = g.nodes().len();
    let needed = g.ancestors(seeds.iter().map(|(o, _)| *o), |_| false);
    let depends = g.descendants(inputs, len);
    let linear: Vec<bool> = (0..len).map(|i| needed[i] && depends[i]).collect();
    let mut is_input = vec![false; len];
    for x in inputs {
        is_input[x.index()] = true;
    }
    let mut cotangent: Vec<Option<NodeId>> = vec![None; len];
    for &(out, ct) in seeds {
        if linear[out.index()] {
            accumulate(g, &mut cotangent, out, ct).map_err(|e| AdError::from_shape(g, out, e))?;
        }
    }
    let first = inputs.iter().map(|n| n.index()).min().unwrap_or(len);
    for i in (first..len).rev() {
        let id = NodeId(i as u32);
        let Some(ct) = cotangent[i] else { continue };
        if !linear[i] || is_input[i] {
            continue;
        }
        let node = g.node(id).clone();
        let is_linear: Vec<bool> = node.inputs.iter().map(|x| linear[x.index()]).collect();
        node.op
            .check_linear(&is_linear)
            .map_err(|reason| AdError::not_linear(g, id, reason))?;
        g.set_span(g.origin(id));
        let contributions = node
            .op
            .transpose(g, &node.inputs, &is_linear, ct)
            .map_err(|e| AdError::from_shape(g, id, e))?;
        for (x, ct_x) in contributions {
            accumulate(g, &mut cotangent, x, ct_x).map_err(|e| AdError::from_shape(g, id, e))?;
        }
    }
    g.set_span(None);
    Ok(inputs.iter().map(|x| cotangent[x.index()]).collect())
}

fn accumulate(
    g: &mut Graph,
    cotangent: &mut [Option<NodeId>],
    x: NodeId,
    ct: NodeId,
) -> Result<(), ShapeError> {
    let slot = &mut cotangent[x.index()];
    *slot = Some(match *slot {
        Some(prev) => g.binary(BinaryOp::Add, prev, ct)?,
        None => ct,
    });
    Ok(())
}
