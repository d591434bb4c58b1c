//! The graph IR: a typed, shaped SSA dataflow graph.
//!
//! Nodes live in an arena in creation order, which is a topological order: a node's operands
//! always have smaller ids. Creating a node that already exists (same op, same operands) returns
//! the existing id (hash-consing), so common subexpressions are shared from the start.

use super::op::{BinaryOp, Leaf, Op, ShapeError, UnaryOp};
use super::shape::{DType, Dim, Shape, TensorType};
use hashbrown::HashTable;
use rustc_hash::FxHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Index of a node in its graph's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// A position in a model source file (1-based line and column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

/// What a graph argument stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgRole {
    /// A data input (`input x: …`).
    Input,
    /// A target used only by the loss (`target y: …`).
    Target,
    /// A trainable parameter (`param w: …`).
    Param,
    /// A tangent direction: one per parameter for `J v` and `G v`, or per value being
    /// differentiated against.
    Direction,
    /// A cotangent seeded into a reverse (transposed) pass.
    Cotangent,
    /// A value computed by a preparing graph and read by the graph that uses it (the
    /// v-independent part of a Gauss-Newton product).
    Residual,
}

impl ArgRole {
    pub fn name(self) -> &'static str {
        match self {
            ArgRole::Input => "input",
            ArgRole::Target => "target",
            ArgRole::Param => "param",
            ArgRole::Direction => "direction",
            ArgRole::Cotangent => "cotangent",
            ArgRole::Residual => "residual",
        }
    }

    /// Every role.
    pub const ALL: [ArgRole; 6] = [
        ArgRole::Input,
        ArgRole::Target,
        ArgRole::Param,
        ArgRole::Direction,
        ArgRole::Cotangent,
        ArgRole::Residual,
    ];

    pub fn from_name(name: &str) -> Option<ArgRole> {
        ArgRole::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A named, typed graph argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub role: ArgRole,
    pub ty: TensorType,
    /// The node that reads this argument.
    pub node: NodeId,
}

/// One operation applied to earlier nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub ty: TensorType,
}

/// A named result of a graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub node: NodeId,
}

/// A typed, shaped SSA graph with named arguments and named outputs.
#[derive(Debug, Default)]
pub struct Graph {
    pub name: String,
    args: Vec<Arg>,
    nodes: Vec<Node>,
    outputs: Vec<Output>,
    /// Where in the model source each node came from, when it came from source.
    origins: Vec<Option<Span>>,
    /// A name a reader can follow (the DSL value a node computes, or what was derived from
    /// one), where there is one.
    labels: Vec<Option<Arc<str>>>,
    /// Hash-consing table of the first `interned_upto` nodes (all but arguments), keyed by op,
    /// inputs and dtype (the dtype only keeps f32 and f64 constants apart) through the nodes
    /// themselves. It follows from the nodes, so a copy starts without it and builds it when a
    /// node is added (most copies never are).
    interned: HashTable<NodeId>,
    interned_upto: usize,
    /// Span given to nodes created from now on.
    current_span: Option<Span>,
}

/// The hash-consing key of a node.
fn intern_hash(op: &Op, inputs: &[NodeId], dtype: DType) -> u64 {
    let mut hasher = FxHasher::default();
    (op, inputs, dtype).hash(&mut hasher);
    hasher.finish()
}

impl Node {
    /// The hash of this node's hash-consing key.
    fn intern_hash(&self) -> u64 {
        intern_hash(&self.op, &self.inputs, self.ty.dtype)
    }

    /// True if this node has the hash-consing key `(op, inputs, dtype)`.
    fn same_key(&self, op: &Op, inputs: &[NodeId], dtype: DType) -> bool {
        self.op == *op && self.inputs == inputs && self.ty.dtype == dtype
    }
}

impl Clone for Graph {
    fn clone(&self) -> Graph {
        Graph {
            name: self.name.clone(),
            args: self.args.clone(),
            nodes: self.nodes.clone(),
            outputs: self.outputs.clone(),
            origins: self.origins.clone(),
            labels: self.labels.clone(),
            interned: HashTable::new(),
            interned_upto: 0,
            current_span: self.current_span,
        }
    }
}

impl PartialEq for Graph {
    /// Structural equality: same name, arguments, nodes and outputs (origins are not compared).
    fn eq(&self, other: &Graph) -> bool {
        self.name == other.name
            && self.args == other.args
            && self.nodes == other.nodes
            && self.outputs == other.outputs
    }
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The node `id`.
    ///
    /// # Panics
    /// If `id` is not a node of this graph (as slice indexing does; ids come from the graph's
    /// own builders).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// The type of node `id`; panics as [`Graph::node`].
    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.nodes[id.index()].ty
    }

    /// Where `id` came from in the model source, if it did.
    pub fn origin(&self, id: NodeId) -> Option<Span> {
        self.origins[id.index()]
    }

    /// The name `id` goes by (`h1`, `h1'`, `softmax(z)`), if it has one.
    pub fn label(&self, id: NodeId) -> Option<&str> {
        self.labels[id.index()].as_deref()
    }

    /// Names `id`, unless it already has a name (a value keeps the first name it was given).
    pub fn set_label(&mut self, id: NodeId, label: &str) {
        self.labels[id.index()].get_or_insert_with(|| Arc::from(label));
    }

    /// The argument with this name.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.outputs.iter().find(|o| o.name == name).map(|o| o.node)
    }

    /// Node ids in arena (topological) order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// Sets the source position recorded on nodes created from now on.
    pub fn set_span(&mut self, span: Option<Span>) {
        self.current_span = span;
    }

    /// Adds an argument and the node that reads it. Names must be distinct.
    pub fn add_arg(&mut self, name: impl Into<String>, role: ArgRole, ty: TensorType) -> NodeId {
        let index = self.args.len();
        let node = self.push(Op::arg(index), Vec::new(), ty.clone());
        self.args.push(Arg {
            name: name.into(),
            role,
            ty,
            node,
        });
        node
    }

    /// Names a result of the graph.
    ///
    /// # Panics
    /// If `node` is not a node of this graph.
    pub fn add_output(&mut self, name: impl Into<String>, node: NodeId) {
        assert!(
            node.index() < self.nodes.len(),
            "output {node:?} is not a node of graph '{}'",
            self.name
        );
        self.outputs.push(Output {
            name: name.into(),
            node,
        });
    }

    /// A scalar constant.
    pub fn constant(&mut self, value: f64, dtype: DType) -> NodeId {
        self.intern(
            Op::constant(value),
            Vec::new(),
            TensorType::new(dtype, Shape::scalar()),
        )
    }

    /// The runtime size of `dim` as a scalar (a constant when the size is fixed).
    pub fn dim_size(&mut self, dim: &Dim, dtype: DType) -> NodeId {
        match dim.as_fixed() {
            Some(n) => self.constant(n as f64, dtype),
            None => self.intern(
                Op::dim_size(dim.clone()),
                Vec::new(),
                TensorType::new(dtype, Shape::scalar()),
            ),
        }
    }

    /// A constant filling `shape` (a broadcast scalar).
    pub fn full(&mut self, value: f64, ty: &TensorType) -> Result<NodeId, ShapeError> {
        let c = self.constant(value, ty.dtype);
        self.broadcast(c, &ty.shape)
    }

    /// Applies `op` to `inputs`, checking shapes; returns the existing node if there is one.
    /// An operand that is not a node of this graph is an error too.
    pub fn apply(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId, ShapeError> {
        if let Some(id) = inputs.iter().find(|id| id.index() >= self.nodes.len()) {
            return Err(ShapeError(format!(
                "{} of {id:?}: no such node in graph '{}' ({} nodes)",
                op.name(),
                self.name,
                self.nodes.len()
            )));
        }
        let types: Vec<&TensorType> = inputs.iter().map(|&i| self.ty(i)).collect();
        let ty = op.infer_type(&types)?;
        Ok(self.intern(op, inputs.to_vec(), ty))
    }

    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId, ShapeError> {
        self.apply(Op::unary(op), &[x])
    }

    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId, ShapeError> {
        self.apply(Op::binary(op), &[a, b])
    }

    /// `a @ b` for rank-2 operands.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId, ShapeError> {
        self.apply(Op::matmul(false, false), &[a, b])
    }

    /// Sum over `axes` (any order; duplicates rejected). No axes: `x` itself.
    pub fn sum(&mut self, x: NodeId, axes: &[usize]) -> Result<NodeId, ShapeError> {
        if axes.is_empty() {
            return Ok(x);
        }
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        self.apply(Op::sum(axes), &[x])
    }

    /// numpy `broadcast_to`; a no-op when the shape already matches.
    pub fn broadcast(&mut self, x: NodeId, shape: &Shape) -> Result<NodeId, ShapeError> {
        if &self.ty(x).shape == shape {
            return Ok(x);
        }
        self.apply(Op::broadcast(shape.clone()), &[x])
    }

    /// Reshape; a no-op when the shape already matches.
    pub fn reshape(&mut self, x: NodeId, shape: &Shape) -> Result<NodeId, ShapeError> {
        if &self.ty(x).shape == shape {
            return Ok(x);
        }
        self.apply(Op::reshape(shape.clone()), &[x])
    }

    /// Axis permutation; a no-op for the identity permutation.
    pub fn transpose(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId, ShapeError> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.ty(x).shape.rank() {
            return Ok(x);
        }
        self.apply(Op::transpose_axes(perm.to_vec()), &[x])
    }

    /// Keeps only the nodes the outputs need, renumbered in the same order. Arguments are kept
    /// (a graph's signature does not change when it ignores an argument).
    pub fn pruned(&self) -> Graph {
        let roots = self.args.iter().map(|a| a.node);
        let live = self.ancestors(roots.chain(self.outputs.iter().map(|o| o.node)), |_| false);
        let mut out = Graph::new(self.name.clone());
        let mut map: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let inputs = node
                .inputs
                .iter()
                .map(|x| map[x.index()].expect("operand is live"))
                .collect();
            out.current_span = self.origins[i];
            let copied = out.intern(node.op.clone(), inputs, node.ty.clone());
            if let Some(label) = self.label(NodeId(i as u32)) {
                out.set_label(copied, label);
            }
            map[i] = Some(copied);
        }
        out.current_span = None;
        out.args = self
            .args
            .iter()
            .map(|a| Arg {
                node: map[a.node.index()].expect("arguments are kept"),
                ..a.clone()
            })
            .collect();
        out.outputs = self
            .outputs
            .iter()
            .map(|o| Output {
                name: o.name.clone(),
                node: map[o.node.index()].expect("outputs are live"),
            })
            .collect();
        out
    }

    /// `marked[i]` is true when node `i` is one of `roots` or, transitively, an operand of one;
    /// the walk does not go past nodes where `stop` holds (they are marked, their operands are
    /// not unless reached otherwise). One backward sweep over the arena.
    pub fn ancestors(
        &self,
        roots: impl IntoIterator<Item = NodeId>,
        stop: impl Fn(NodeId) -> bool,
    ) -> Vec<bool> {
        let mut marked = vec![false; self.nodes.len()];
        for r in roots {
            marked[r.index()] = true;
        }
        for i in (0..marked.len()).rev() {
            if marked[i] && !stop(NodeId(i as u32)) {
                for x in &self.nodes[i].inputs {
                    marked[x.index()] = true;
                }
            }
        }
        marked
    }

    /// `marked[i]` (for the first `len` nodes) is true when node `i` is one of `roots` or
    /// depends on one. One forward sweep over the arena.
    pub fn descendants(&self, roots: &[NodeId], len: usize) -> Vec<bool> {
        let mut marked = vec![false; len];
        for r in roots {
            marked[r.index()] = true;
        }
        for (i, node) in self.nodes.iter().enumerate().take(len) {
            if !marked[i] && node.inputs.iter().any(|x| marked[x.index()]) {
                marked[i] = true;
            }
        }
        marked
    }

    /// Adds a node with a type computed elsewhere, unless an equal node exists.
    /// Used by readers that have already checked the type (the IR text parser, graph copies):
    /// crate-private, because the JIT trusts node types to size its buffers.
    pub(crate) fn intern(&mut self, op: Op, inputs: Vec<NodeId>, ty: TensorType) -> NodeId {
        if let Op::Leaf(Leaf::Arg(_)) = op {
            return self.push(op, inputs, ty);
        }
        let nodes = &self.nodes;
        let rehash = |id: &NodeId| nodes[id.index()].intern_hash();
        for (i, n) in nodes.iter().enumerate().skip(self.interned_upto) {
            if matches!(n.op, Op::Leaf(Leaf::Arg(_))) {
                continue;
            }
            let hash = n.intern_hash();
            let same = |id: &NodeId| nodes[id.index()].same_key(&n.op, &n.inputs, n.ty.dtype);
            if self.interned.find(hash, same).is_none() {
                self.interned.insert_unique(hash, NodeId(i as u32), rehash);
            }
        }
        self.interned_upto = nodes.len();
        let hash = intern_hash(&op, &inputs, ty.dtype);
        let same = |id: &NodeId| nodes[id.index()].same_key(&op, &inputs, ty.dtype);
        if let Some(&id) = self.interned.find(hash, same) {
            return id;
        }
        let id = self.push(op, inputs, ty);
        let nodes = &self.nodes;
        self.interned
            .insert_unique(hash, id, |id: &NodeId| nodes[id.index()].intern_hash());
        self.interned_upto = self.nodes.len();
        id
    }

    fn push(&mut self, op: Op, inputs: Vec<NodeId>, ty: TensorType) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node { op, inputs, ty });
        self.origins.push(self.current_span);
        self.labels.push(None);
        id
    }

    /// Registers an argument whose node already exists (used by graph readers, which check
    /// that the node reads it with its type).
    pub(crate) fn register_arg(&mut self, arg: Arg) {
        self.args.push(arg);
    }

    /// The same graph with every tensor converted to `dtype` (for f64 checks of f32 models).
    pub fn with_dtype(&self, dtype: DType) -> Graph {
        let mut g = self.clone();
        for a in &mut g.args {
            a.ty.dtype = dtype;
        }
        for n in &mut g.nodes {
            n.ty.dtype = dtype;
        }
        g
    }
}
