//! Exact conversions between graphs and e-graphs.
//!
//! A graph goes in node by node (leaves become [`ENode::Leaf`]s, every other node goes through
//! [`add_op`], every output is a root); a graph comes back out from one chosen e-node per e-class, with the source graph's
//! arguments and outputs — names, roles, types and order — unchanged.

use super::analysis::{EGraph, TensorAnalysis, add_op, facts, ir_op};
use super::lang::ENode;
use crate::ir::{Graph, Leaf, NodeId, Op, Span};
use egg::Id;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A graph loaded into an e-graph.
pub struct Loaded {
    pub egraph: EGraph,
    /// The class of each graph output, in output order.
    pub roots: Vec<Id>,
    /// A source position and a name for classes that hold a node that had them.
    origins: HashMap<Id, Origin>,
}

/// Where a class's value came from: for error messages and for names a reader can follow.
#[derive(Clone, Default)]
struct Origin {
    span: Option<Span>,
    label: Option<Arc<str>>,
}

impl Loaded {
    /// Loads every node `graph`'s outputs need; rules that compare costs bind symbolic
    /// dimensions to `batch`.
    pub fn new(graph: &Graph, batch: u64) -> Loaded {
        let graph = graph.pruned();
        let analysis = TensorAnalysis {
            arg_types: graph.args().iter().map(|a| a.ty.clone()).collect(),
            batch,
            changed: Vec::new(),
        };
        let mut egraph = EGraph::new(analysis);
        let mut class_of: Vec<Id> = Vec::with_capacity(graph.nodes().len());
        let mut origins: HashMap<Id, Origin> = HashMap::new();
        for id in graph.ids() {
            let node = graph.node(id);
            let dtype = node.ty.dtype;
            let class = match &node.op {
                Op::Leaf(leaf) => egraph.add(ENode::Leaf(leaf.clone(), dtype)),
                op => {
                    let operands: Vec<Id> =
                        node.inputs.iter().map(|x| class_of[x.index()]).collect();
                    add_op(&mut egraph, op.clone(), &operands).expect("a graph's nodes type-check")
                }
            };
            let origin = origins.entry(class).or_default();
            origin.span = origin.span.or(graph.origin(id));
            if origin.label.is_none() {
                origin.label = graph.label(id).map(Arc::from);
            }
            class_of.push(class);
        }
        egraph.rebuild();
        let roots = graph
            .outputs()
            .iter()
            .map(|o| class_of[o.node.index()])
            .collect();
        Loaded {
            egraph,
            roots,
            origins,
        }
    }

    /// The roots as canonical classes (after rewriting has merged some).
    pub fn canonical_roots(&self) -> Vec<Id> {
        self.roots.iter().map(|&r| self.egraph.find(r)).collect()
    }

    /// Rebuilds a graph with `source`'s signature (arguments and outputs) from one e-node per
    /// class: `choice(class)`, which must be defined and acyclic on every class the roots reach.
    pub fn to_graph<'a>(&'a self, source: &Graph, choice: impl Fn(Id) -> &'a ENode) -> Graph {
        let outputs: Vec<(String, Id)> = source
            .outputs()
            .iter()
            .zip(self.canonical_roots())
            .map(|(o, root)| (o.name.clone(), root))
            .collect();
        self.build(source, &outputs, choice)
    }

    /// A graph with `source`'s arguments computing the classes `outputs`, from one e-node per
    /// class: `choice(class)`, defined and acyclic on every class the outputs reach.
    pub fn build<'a>(
        &'a self,
        source: &Graph,
        outputs: &[(String, Id)],
        choice: impl Fn(Id) -> &'a ENode,
    ) -> Graph {
        let mut out = Graph::new(source.name.clone());
        let args: Vec<NodeId> = source
            .args()
            .iter()
            .map(|a| {
                out.set_span(source.origin(a.node));
                out.add_arg(a.name.clone(), a.role, a.ty.clone())
            })
            .collect();
        // In class order (the order the graph's nodes were loaded in), so that of the origins of
        // merged classes the earliest node's wins, run after run.
        let mut loaded: Vec<(&Id, &Origin)> = self.origins.iter().collect();
        loaded.sort_by_key(|(class, _)| **class);
        let mut origins: HashMap<Id, Origin> = HashMap::new();
        for (&class, origin) in loaded {
            let merged = origins.entry(self.egraph.find(class)).or_default();
            merged.span = merged.span.or(origin.span);
            if merged.label.is_none() {
                merged.label.clone_from(&origin.label);
            }
        }
        let mut built: HashMap<Id, NodeId> = HashMap::new();
        let mut visiting: HashSet<Id> = HashSet::new();
        let roots: Vec<Id> = outputs.iter().map(|(_, r)| self.egraph.find(*r)).collect();
        // Post-order without recursion: a class is built once its operands are.
        let mut stack: Vec<(Id, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((class, operands_done)) = stack.pop() {
            if built.contains_key(&class) {
                continue;
            }
            let node = choice(class);
            let (op, operands) = ir_op(&self.egraph, node).expect("tensor classes are chosen");
            let operands: Vec<Id> = operands.iter().map(|&x| self.egraph.find(x)).collect();
            if !operands_done {
                assert!(visiting.insert(class), "the chosen e-nodes form a cycle");
                stack.push((class, true));
                stack.extend(
                    operands
                        .iter()
                        .filter(|x| !built.contains_key(x))
                        .map(|&x| (x, false)),
                );
                continue;
            }
            let origin = origins.get(&class).cloned().unwrap_or_default();
            out.set_span(origin.span);
            let dtype = facts(&self.egraph, class).ty.dtype;
            let id = match op {
                Op::Leaf(Leaf::Arg(i)) => args[i],
                Op::Leaf(Leaf::Const(c)) => out.constant(c.get(), dtype),
                Op::Leaf(Leaf::DimSize(d)) => out.dim_size(&d, dtype),
                op => {
                    let inputs: Vec<NodeId> = operands.iter().map(|x| built[x]).collect();
                    out.apply(op, &inputs)
                        .expect("the e-graph types every chosen node")
                }
            };
            debug_assert_eq!(out.ty(id), &facts(&self.egraph, class).ty);
            if let Some(label) = &origin.label {
                out.set_label(id, label);
            }
            built.insert(class, id);
        }
        out.set_span(None);
        for ((name, _), root) in outputs.iter().zip(&roots) {
            out.add_output(name.clone(), built[root]);
        }
        out
    }
}
