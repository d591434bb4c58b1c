//! Exact conversions between graphs and e-graphs.
//!
//! Graphs go in node by node (leaves become [`ENode::Leaf`]s, every other node goes through
//! [`add_op`], every output is a root), several into one e-graph when they share nodes; a graph
//! comes back out from one chosen e-node per e-class, with the source graph's arguments and
//! outputs — names, roles, types and order — unchanged.

use super::analysis::{EGraph, TensorAnalysis, add_op, facts, ir_op};
use super::lang::ENode;
use crate::ir::{Graph, Leaf, NodeId, Op, Span, TensorType};
use egg::Id;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

/// Graphs loaded into one e-graph: what they share (the forward pass that every derivative graph
/// repeats) is loaded and rewritten once.
pub struct Loaded {
    pub egraph: EGraph,
    /// The class of each output of each graph: graph after graph, each in output order.
    pub roots: Vec<Id>,
    /// Where each graph's outputs start in `roots`, plus the end of the last graph's.
    graph_roots: Vec<usize>,
    /// For each graph, the e-graph argument (`Leaf::Arg(i)`) each of its arguments became: those
    /// of all graphs, an argument of the same name and type counted once.
    arg_index: Vec<Vec<usize>>,
    /// A source position and a name for classes that hold a node that had them, in the order
    /// the classes were loaded.
    origins: Vec<(Id, Origin)>,
}

/// Where a class's value came from: for error messages and for names a reader can follow.
#[derive(Clone, Default)]
struct Origin {
    span: Option<Span>,
    label: Option<Arc<str>>,
}

impl Loaded {
    /// Loads every node `graph`'s outputs need; rules that compare costs bind symbolic
    /// dimensions to `batch`. Its arguments keep their indices.
    pub fn new(graph: &Graph, batch: u64) -> Loaded {
        Loaded::together(&[graph], batch)
    }

    /// Loads every node the outputs of `graphs` need into one e-graph; the first graph's
    /// arguments keep their indices.
    pub fn together(graphs: &[&Graph], batch: u64) -> Loaded {
        // The types of the e-graph's arguments.
        let mut arg_types: Vec<TensorType> = Vec::new();
        // The e-graph's arguments of each name and type: a graph's n-th argument of that name
        // and type is the n-th of them (two arguments of one graph are never merged, even if a
        // hand-built graph gives them the same name).
        let mut of_key: FxHashMap<(&str, &TensorType), Vec<usize>> = FxHashMap::default();
        let arg_index: Vec<Vec<usize>> = graphs
            .iter()
            .map(|graph| {
                let mut seen: FxHashMap<(&str, &TensorType), usize> = FxHashMap::default();
                graph
                    .args()
                    .iter()
                    .map(|a| {
                        let key = (a.name.as_str(), &a.ty);
                        let nth = seen.entry(key).or_default();
                        let same = of_key.entry(key).or_default();
                        if *nth == same.len() {
                            arg_types.push(a.ty.clone());
                            same.push(arg_types.len() - 1);
                        }
                        *nth += 1;
                        same[*nth - 1]
                    })
                    .collect()
            })
            .collect();
        let analysis = TensorAnalysis {
            arg_types,
            batch,
            changed: Vec::new(),
        };
        let mut egraph = EGraph::new(analysis);
        let mut origins: Vec<(Id, Origin)> = Vec::new();
        let mut origin_of: FxHashMap<Id, usize> = FxHashMap::default();
        let mut roots = Vec::new();
        let mut graph_roots = vec![0];
        for (graph, arg_index) in graphs.iter().zip(&arg_index) {
            // Nodes no output needs are left out (arguments are kept, they cost nothing).
            let live = graph.ancestors(
                graph
                    .args()
                    .iter()
                    .map(|a| a.node)
                    .chain(graph.outputs().iter().map(|o| o.node)),
                |_| false,
            );
            let mut class_of: Vec<Option<Id>> = vec![None; graph.nodes().len()];
            for id in graph.ids().filter(|id| live[id.index()]) {
                let node = graph.node(id);
                let class = match &node.op {
                    Op::Leaf(Leaf::Arg(i)) => {
                        egraph.add(ENode::Leaf(Leaf::Arg(arg_index[*i]), node.ty.dtype))
                    }
                    Op::Leaf(leaf) => egraph.add(ENode::Leaf(leaf.clone(), node.ty.dtype)),
                    op => {
                        let operands: Vec<Id> = node
                            .inputs
                            .iter()
                            .map(|x| class_of[x.index()].expect("operands come first"))
                            .collect();
                        add_op(&mut egraph, op.clone(), &operands)
                            .expect("a graph's nodes type-check")
                    }
                };
                let at = *origin_of.entry(class).or_insert_with(|| {
                    origins.push((class, Origin::default()));
                    origins.len() - 1
                });
                let origin = &mut origins[at].1;
                origin.span = origin.span.or(graph.origin(id));
                if origin.label.is_none() {
                    origin.label = graph.label(id).map(Arc::from);
                }
                class_of[id.index()] = Some(class);
            }
            roots.extend(
                graph
                    .outputs()
                    .iter()
                    .map(|o| class_of[o.node.index()].expect("outputs are live")),
            );
            graph_roots.push(roots.len());
        }
        egraph.rebuild();
        Loaded {
            egraph,
            roots,
            graph_roots,
            arg_index,
            origins,
        }
    }

    /// The roots as canonical classes (after rewriting has merged some).
    pub fn canonical_roots(&self) -> Vec<Id> {
        self.roots.iter().map(|&r| self.egraph.find(r)).collect()
    }

    /// The canonical classes of graph `which`'s outputs (graphs numbered in loading order).
    pub fn graph_roots(&self, which: usize) -> Vec<Id> {
        self.roots[self.graph_roots[which]..self.graph_roots[which + 1]]
            .iter()
            .map(|&r| self.egraph.find(r))
            .collect()
    }

    /// Which of the e-graph's arguments loaded graph number `which` has: extraction for it may
    /// use only those.
    pub fn args_of(&self, which: usize) -> Vec<bool> {
        self.own_args(which).iter().map(Option::is_some).collect()
    }

    /// For each of the e-graph's arguments, the index of graph `which`'s argument it stands for,
    /// if it is one of them.
    fn own_args(&self, which: usize) -> Vec<Option<usize>> {
        let mut own = vec![None; self.egraph.analysis.arg_types.len()];
        for (i, &arg) in self.arg_index[which].iter().enumerate() {
            own[arg] = Some(i);
        }
        own
    }

    /// Rebuilds loaded graph number `which`, `source`, with its signature (arguments and
    /// outputs) from one e-node per class: `choice(class)`, which must be defined and acyclic on
    /// every class its roots reach, and use only `source`'s arguments.
    pub fn to_graph<'a>(
        &'a self,
        which: usize,
        source: &Graph,
        choice: impl Fn(Id) -> &'a ENode,
    ) -> Graph {
        let outputs: Vec<(String, Id)> = source
            .outputs()
            .iter()
            .zip(self.graph_roots(which))
            .map(|(o, root)| (o.name.clone(), root))
            .collect();
        self.build(which, source, &outputs, choice)
    }

    /// A graph with the arguments of `source`, loaded graph number `which`, computing the classes
    /// `outputs`, from one e-node per class: `choice(class)`, defined and acyclic on every class
    /// the outputs reach, and reading only `source`'s arguments.
    pub fn build<'a>(
        &'a self,
        which: usize,
        source: &Graph,
        outputs: &[(String, Id)],
        choice: impl Fn(Id) -> &'a ENode,
    ) -> Graph {
        let mut out = Graph::new(source.name.clone());
        let source_args: Vec<NodeId> = source
            .args()
            .iter()
            .map(|a| {
                out.set_span(source.origin(a.node));
                out.add_arg(a.name.clone(), a.role, a.ty.clone())
            })
            .collect();
        // The e-graph's arguments as `out`'s.
        let args: Vec<Option<NodeId>> = self
            .own_args(which)
            .into_iter()
            .map(|i| i.map(|i| source_args[i]))
            .collect();
        // In the order the graphs' nodes were loaded in, so that of the origins of merged classes
        // the earliest node's wins, run after run.
        let mut origins: FxHashMap<Id, Origin> = FxHashMap::default();
        for (class, origin) in &self.origins {
            let merged = origins.entry(self.egraph.find(*class)).or_default();
            merged.span = merged.span.or(origin.span);
            if merged.label.is_none() {
                merged.label.clone_from(&origin.label);
            }
        }
        let mut built: FxHashMap<Id, NodeId> = FxHashMap::default();
        let mut visiting: FxHashSet<Id> = FxHashSet::default();
        let roots: Vec<Id> = outputs.iter().map(|(_, r)| self.egraph.find(*r)).collect();
        // Post-order without recursion: a class is built once its operands are.
        enum Visit {
            Enter(Id),
            Build(Id, Op, Vec<Id>),
        }
        let mut stack: Vec<Visit> = roots.iter().rev().map(|&r| Visit::Enter(r)).collect();
        while let Some(visit) = stack.pop() {
            let (class, op, operands) = match visit {
                Visit::Enter(class) => {
                    if built.contains_key(&class) {
                        continue;
                    }
                    let (op, operands) =
                        ir_op(&self.egraph, choice(class)).expect("tensor classes are chosen");
                    let operands: Vec<Id> = operands.iter().map(|&x| self.egraph.find(x)).collect();
                    assert!(visiting.insert(class), "the chosen e-nodes form a cycle");
                    let unbuilt: Vec<Visit> = operands
                        .iter()
                        .filter(|x| !built.contains_key(x))
                        .map(|&x| Visit::Enter(x))
                        .collect();
                    stack.push(Visit::Build(class, op, operands));
                    stack.extend(unbuilt);
                    continue;
                }
                Visit::Build(class, op, operands) => (class, op, operands),
            };
            let origin = origins.get(&class).cloned().unwrap_or_default();
            out.set_span(origin.span);
            let ty = &facts(&self.egraph, class).ty;
            let id = match op {
                Op::Leaf(Leaf::Arg(i)) => {
                    args[i].expect("the extraction uses only the graph's arguments")
                }
                Op::Leaf(Leaf::Const(c)) => out.constant(c.get(), ty.dtype),
                Op::Leaf(Leaf::DimSize(d)) => out.dim_size(&d, ty.dtype),
                // The analysis typed the class with the op's own shape rule.
                op => out.intern(op, operands.iter().map(|x| built[x]).collect(), ty.clone()),
            };
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
