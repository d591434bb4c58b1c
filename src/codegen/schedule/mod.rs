//! Scheduling: a graph becomes a list of steps — fused loop nests and GEMM calls — over buffers.
//!
//! Every value is one of three things while the graph is walked in topological order:
//! - *uniform*: computed from constants and dimension sizes only (`1/B`, a broadcast 0); it is
//!   recomputed, hoisted out of the loops, in every kernel that uses it;
//! - *fused*: an elementwise value inside a kernel whose loop domain is the value's shape; it
//!   is stored to memory only if something outside the kernel needs it;
//! - *stored*: a strided [`View`] of a buffer (an argument, a GEMM result, a reduction, a
//!   materialized fused value). Broadcasts, transposes, slices and most reshapes only change the
//!   view, so they cost nothing.
//!
//! An elementwise node joins the latest kernel holding one of its operands when its other
//! operands are ready before that kernel runs, and while that kernel has fewer than
//! [`MAX_FUSED_EXPRS`] expressions; a reduction joins the kernel that computes its
//! operand (accumulating as the loop goes); everything else starts a new kernel. GEMMs read their
//! operands as strided matrices, so transposes, including MatMul's own flags, cost nothing.
//! Finally each kernel's loop axes are collapsed where every access is contiguous across them, so
//! most kernels become one or two loops.
mod conv;

use super::program::{
    Access, Buffer, BufferId, BufferKind, Expr, ExprId, Gemm, ImageStep, Kernel, MatAccess,
    NonEmpty, PARTS, Program, Reduction, Side, Step,
};
use super::sizes::Size;
use crate::ir::{
    ArgRole, BinaryOp, DType, Dim, Elementwise, Graph, Layout, Leaf, NodeId, Op, Reduce,
    ReduceKind, Shape,
};
use rustc_hash::FxHashMap;

/// The most expressions an elementwise node joins a kernel at: past it, the node starts a new
/// kernel and its operand goes through memory. Cranelift's register allocator takes time that
/// grows faster than linearly with a function's live values, so one kernel fusing a chain of
/// hundreds of transcendental ops compiled for seconds; real networks' kernels stay far below.
pub const MAX_FUSED_EXPRS: usize = 64;

/// A strided window onto a buffer, in elements.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub buffer: BufferId,
    pub offset: Size,
    pub shape: Vec<Dim>,
    pub strides: Vec<Size>,
}

impl View {
    /// The whole of `buffer` as a row-major array of `shape`.
    fn contiguous(buffer: BufferId, shape: &[Dim]) -> View {
        View {
            buffer,
            offset: Size::default(),
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
        }
    }

    fn is_contiguous(&self) -> bool {
        self.offset.is_zero() && self.is_row_major()
    }

    /// True if the elements are in row-major order from the offset on (the strides of size-1
    /// axes do not matter).
    fn is_row_major(&self) -> bool {
        let expected = row_major_strides(&self.shape);
        (0..self.shape.len()).all(|i| self.shape[i].is_one() || self.strides[i] == expected[i])
    }

    /// numpy `broadcast_to`: new leading axes and stretched size-1 axes get stride 0.
    fn broadcast(&self, shape: &[Dim]) -> View {
        let lead = shape.len() - self.shape.len();
        let strides = (0..shape.len())
            .map(|i| {
                if i < lead || (self.shape[i - lead].is_one() && !shape[i].is_one()) {
                    Size::default()
                } else {
                    self.strides[i - lead].clone()
                }
            })
            .collect();
        View {
            shape: shape.to_vec(),
            strides,
            ..self.clone()
        }
    }

    fn transpose(&self, perm: &[usize]) -> View {
        View {
            shape: perm.iter().map(|&p| self.shape[p].clone()).collect(),
            strides: perm.iter().map(|&p| self.strides[p].clone()).collect(),
            ..self.clone()
        }
    }

    fn slice(&self, axis: usize, start: &Dim, len: &Dim) -> View {
        let mut shape = self.shape.clone();
        shape[axis] = len.clone();
        View {
            offset: self.offset.add(&self.strides[axis].mul_dim(start)),
            shape,
            ..self.clone()
        }
    }

    /// The same elements in row-major order as `shape`, without copying, when the strides allow
    /// it (numpy's no-copy reshape): axes are matched in groups of equal element counts, and
    /// each group of old axes must be contiguous.
    fn reshape(&self, shape: &[Dim]) -> Option<View> {
        let old: Vec<(Dim, Size)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(d, _)| !d.is_one())
            .map(|(d, s)| (d.clone(), s.clone()))
            .collect();
        let new_axes: Vec<usize> = (0..shape.len()).filter(|&i| !shape[i].is_one()).collect();
        let mut strides = vec![Size::default(); shape.len()];
        let (mut oi, mut ni) = (0, 0);
        while oi < old.len() && ni < new_axes.len() {
            let (mut oj, mut nj) = (oi + 1, ni + 1);
            let mut old_count = old[oi].0.clone();
            let mut new_count = shape[new_axes[ni]].clone();
            while old_count != new_count {
                if old_count.div_exact(&new_count).is_some() && nj < new_axes.len() {
                    new_count = new_count.mul(&shape[new_axes[nj]]);
                    nj += 1;
                } else if new_count.div_exact(&old_count).is_some() && oj < old.len() {
                    old_count = old_count.mul(&old[oj].0);
                    oj += 1;
                } else {
                    return None;
                }
            }
            for k in oi..oj - 1 {
                if old[k].1 != old[k + 1].1.mul_dim(&old[k + 1].0) {
                    return None;
                }
            }
            let mut stride = old[oj - 1].1.clone();
            for k in (ni..nj).rev() {
                strides[new_axes[k]] = stride.clone();
                stride = stride.mul_dim(&shape[new_axes[k]]);
            }
            oi = oj;
            ni = nj;
        }
        if oi != old.len() || ni != new_axes.len() {
            return None;
        }
        Some(View {
            shape: shape.to_vec(),
            strides,
            ..self.clone()
        })
    }

    /// How a kernel whose domain is this view's shape reaches it.
    fn access(&self) -> Access {
        Access {
            buffer: self.buffer,
            offset: self.offset.clone(),
            strides: self.strides.clone(),
        }
    }
}

/// Row-major strides of `shape`, in elements.
fn row_major_strides(shape: &[Dim]) -> Vec<Size> {
    let mut strides = vec![Size::default(); shape.len()];
    let mut stride = Size::fixed(1);
    for i in (0..shape.len()).rev() {
        strides[i] = stride.clone();
        stride = stride.mul_dim(&shape[i]);
    }
    strides
}

/// What a node's value is during scheduling (see the module documentation).
#[derive(Clone, Debug)]
enum Val {
    Uniform,
    Fused { step: usize, expr: ExprId },
    Stored(View),
}

/// A kernel while it is being built: its domain is still a shape.
struct KernelBuilder {
    domain: Vec<Dim>,
    kernel: Kernel,
    /// Expressions already built in this kernel, per graph node.
    exprs_of: FxHashMap<NodeId, ExprId>,
}

enum StepBuilder {
    Kernel(KernelBuilder),
    Gemm(Gemm),
    /// An image step, and for a result summed over the images ([`Extent::Whole`](crate::ir::op::Extent::Whole)), the sum of
    /// its parts that follows it: (partial sums buffer, elements per part, result buffer).
    Image(ImageStep, Option<(BufferId, Size, BufferId)>),
}

struct Scheduler<'g> {
    graph: &'g Graph,
    /// Per node: whether it depends on a direction or cotangent argument.
    varies: Vec<bool>,
    /// Products lowered so far with an operand to keep ([`Gemm::fixed`]), numbered from 1.
    kept_sites: usize,
    buffers: Vec<Buffer>,
    /// The last step that writes each buffer (`None`: written before the program runs).
    written_by: Vec<Option<usize>>,
    steps: Vec<StepBuilder>,
    vals: Vec<Option<Val>>,
    materialized: FxHashMap<NodeId, View>,
    nonempty: Vec<NonEmpty>,
}

/// Schedules `graph` (which must be well typed, as the graph builder guarantees).
pub fn schedule(graph: &Graph) -> Program {
    let dtype = graph
        .args()
        .first()
        .map(|a| a.ty.dtype)
        .or_else(|| graph.nodes().first().map(|n| n.ty.dtype))
        .unwrap_or(DType::F32);
    let varying: Vec<NodeId> = (graph.args().iter())
        .filter(|a| matches!(a.role, ArgRole::Direction | ArgRole::Cotangent))
        .map(|a| a.node)
        .collect();
    let mut s = Scheduler {
        graph,
        varies: graph.descendants(&varying, graph.nodes().len()),
        kept_sites: 0,
        buffers: Vec::new(),
        written_by: Vec::new(),
        steps: Vec::new(),
        vals: vec![None; graph.nodes().len()],
        materialized: FxHashMap::default(),
        nonempty: Vec::new(),
    };
    let live = graph.ancestors(graph.outputs().iter().map(|o| o.node), |_| false);
    for id in graph.ids() {
        if live[id.index()] {
            let val = s.lower(id);
            s.vals[id.index()] = Some(val);
        }
    }
    for k in 0..graph.outputs().len() {
        s.lower_output(k);
    }
    let mut buffers = s.buffers;
    let mut steps = Vec::with_capacity(s.steps.len());
    for step in s.steps {
        match step {
            StepBuilder::Kernel(k) => {
                let mut kernel = finish_kernel(k);
                let combines = split_into_parts(&mut kernel, &mut buffers);
                steps.push(Step::Kernel(kernel));
                steps.extend(combines.into_iter().map(Step::Kernel));
            }
            StepBuilder::Gemm(g) => steps.push(Step::Gemm(g)),
            StepBuilder::Image(i, combine) => {
                steps.push(Step::Image(i));
                if let Some((partials, n, out)) = combine {
                    let out = Access {
                        buffer: out,
                        offset: Size::default(),
                        strides: Vec::new(),
                    };
                    steps.push(Step::Kernel(sum_of_parts(
                        ReduceKind::Sum,
                        partials,
                        n,
                        out,
                    )));
                }
            }
        }
    }
    Program {
        dtype,
        buffers,
        steps,
        nonempty: s.nonempty,
    }
}

impl Scheduler<'_> {
    fn val(&self, id: NodeId) -> &Val {
        self.vals[id.index()]
            .as_ref()
            .expect("operands are lowered before their users")
    }

    fn shape(&self, id: NodeId) -> &Shape {
        &self.graph.ty(id).shape
    }

    fn new_buffer(&mut self, kind: BufferKind, numel: Size) -> BufferId {
        self.buffers.push(Buffer { kind, numel });
        self.written_by.push(None);
        self.buffers.len() - 1
    }

    fn new_temp(&mut self, shape: &[Dim]) -> View {
        let b = self.new_buffer(BufferKind::Temp, Size::product(shape));
        View::contiguous(b, shape)
    }

    fn new_kernel(&mut self, domain: &[Dim]) -> usize {
        self.steps.push(StepBuilder::Kernel(KernelBuilder {
            domain: domain.to_vec(),
            kernel: Kernel {
                domain: Vec::new(),
                exprs: Vec::new(),
                stores: Vec::new(),
                reductions: Vec::new(),
                split: None,
                parts: false,
            },
            exprs_of: FxHashMap::default(),
        }));
        self.steps.len() - 1
    }

    /// The last step, if it is a kernel over `domain` with room for more expressions.
    fn newest_kernel_with_room(&self, domain: &[Dim]) -> Option<usize> {
        let newest = self.steps.len().checked_sub(1)?;
        match &self.steps[newest] {
            StepBuilder::Kernel(k)
                if k.domain == domain && k.kernel.exprs.len() < MAX_FUSED_EXPRS =>
            {
                Some(newest)
            }
            _ => None,
        }
    }

    fn kernel(&mut self, step: usize) -> &mut KernelBuilder {
        match &mut self.steps[step] {
            StepBuilder::Kernel(k) => k,
            StepBuilder::Gemm(_) | StepBuilder::Image(..) => {
                unreachable!("step {step} is a kernel")
            }
        }
    }

    fn push_expr(&mut self, step: usize, expr: Expr) -> ExprId {
        let k = &mut self.kernel(step).kernel;
        if let Some(i) = k.exprs.iter().position(|e| *e == expr) {
            return i;
        }
        k.exprs.push(expr);
        k.exprs.len() - 1
    }

    fn add_store(&mut self, step: usize, expr: ExprId, view: &View) {
        self.written_by[view.buffer] = Some(step);
        let access = view.access();
        self.kernel(step).kernel.stores.push((expr, access));
    }

    /// True if `val` can be read by a kernel running as step `step`.
    fn ready_for(&self, val: &Val, step: usize) -> bool {
        match val {
            Val::Uniform => true,
            Val::Fused { step: s, .. } => *s <= step,
            Val::Stored(v) => self.written_by[v.buffer].is_none_or(|w| w < step),
        }
    }

    /// The expression for node `id` inside kernel `step`, whose domain is `id`'s shape (or any
    /// shape, for uniform values).
    fn operand_expr(&mut self, step: usize, id: NodeId) -> ExprId {
        if let Some(&e) = self.kernel(step).exprs_of.get(&id) {
            return e;
        }
        let e = match *self.val(id) {
            Val::Uniform => self.uniform_expr(step, id),
            Val::Fused { step: s, expr } if s == step => expr,
            Val::Fused { .. } | Val::Stored(_) => {
                let view = self.as_view(id);
                self.push_expr(step, Expr::Load(view.access()))
            }
        };
        self.kernel(step).exprs_of.insert(id, e);
        e
    }

    /// Rebuilds the uniform value of `id` inside kernel `step`.
    fn uniform_expr(&mut self, step: usize, id: NodeId) -> ExprId {
        if let Some(&e) = self.kernel(step).exprs_of.get(&id) {
            return e;
        }
        let node = self.graph.node(id);
        let expr = match &node.op {
            Op::Leaf(Leaf::Const(c)) => Expr::Const(*c),
            Op::Leaf(Leaf::DimSize(d)) => Expr::DimSize(Size::dim(d)),
            Op::Leaf(Leaf::Arg(_)) | Op::MatMul(_) => unreachable!("never uniform"),
            Op::Conv(_) => unreachable!("never uniform"),
            Op::Elementwise(e) => {
                let operands: Vec<ExprId> = node
                    .inputs
                    .iter()
                    .map(|&x| self.uniform_expr(step, x))
                    .collect();
                match elementwise_expr(e, &operands) {
                    Some(expr) => expr,
                    None => return self.alias_expr(step, id, operands[0]),
                }
            }
            Op::Reduce(Reduce {
                kind: ReduceKind::Sum,
                axes,
            }) => {
                let x = node.inputs[0];
                let count = reduced_count(self.shape(x), axes);
                let value = self.uniform_expr(step, x);
                let count = self.push_expr(step, Expr::DimSize(count));
                Expr::Binary(BinaryOp::Mul, value, count)
            }
            Op::Layout(Layout::Concat { .. }) => unreachable!("a concat is lowered to a buffer"),
            // A uniform value keeps its value through a maximum or a view.
            Op::Reduce(Reduce {
                kind: ReduceKind::Max,
                ..
            })
            | Op::Layout(_) => {
                let e = self.uniform_expr(step, node.inputs[0]);
                return self.alias_expr(step, id, e);
            }
        };
        let e = self.push_expr(step, expr);
        self.kernel(step).exprs_of.insert(id, e);
        e
    }

    /// Records that node `id` has the value of expression `e` in kernel `step`.
    fn alias_expr(&mut self, step: usize, id: NodeId, e: ExprId) -> ExprId {
        self.kernel(step).exprs_of.insert(id, e);
        e
    }

    /// The value of `id` in memory: its view, or a buffer it is written to (once).
    fn as_view(&mut self, id: NodeId) -> View {
        if let Some(v) = self.materialized.get(&id) {
            return v.clone();
        }
        let shape = self.shape(id).0.clone();
        let view = match self.val(id).clone() {
            Val::Stored(v) => return v,
            Val::Fused { step, expr } => {
                let view = self.new_temp(&shape);
                self.add_store(step, expr, &view);
                view
            }
            Val::Uniform => {
                let view = self.new_temp(&shape);
                let step = self.new_kernel(&shape);
                let e = self.uniform_expr(step, id);
                self.add_store(step, e, &view);
                view
            }
        };
        self.materialized.insert(id, view.clone());
        view
    }

    /// A copy of `view` in a new row-major buffer.
    fn copy_of(&mut self, view: &View) -> View {
        let out = self.new_temp(&view.shape);
        let step = self.new_kernel(&view.shape);
        let e = self.push_expr(step, Expr::Load(view.access()));
        self.add_store(step, e, &out);
        out
    }

    fn lower(&mut self, id: NodeId) -> Val {
        let graph = self.graph;
        let node = graph.node(id);
        let inputs = &node.inputs;
        let shape = &node.ty.shape.0;
        let x = inputs.first().copied();
        let operand_val = |s: &Self| s.val(x.expect("the op has an operand")).clone();
        match &node.op {
            Op::Leaf(Leaf::Arg(index)) => {
                let b = self.new_buffer(BufferKind::Arg(*index), Size::product(shape));
                Val::Stored(View::contiguous(b, shape))
            }
            Op::Leaf(Leaf::Const(_) | Leaf::DimSize(_)) => Val::Uniform,
            Op::Elementwise(Elementwise::StopGradient) => operand_val(self),
            Op::Elementwise(_) => self.lower_elementwise(id),
            Op::Reduce(r) => self.lower_reduction(id, r.kind, r.axes.clone()),
            Op::MatMul(m) => {
                self.lower_matmul(id, inputs[0], inputs[1], m.transpose_a, m.transpose_b)
            }
            Op::Layout(Layout::Concat { axis }) => self.lower_concat(inputs, *axis, shape),
            Op::Conv(op) => self.lower_image(id, *op),
            Op::Layout(layout) => {
                let x = x.expect("views have an operand");
                if matches!(self.val(x), Val::Uniform) {
                    return Val::Uniform;
                }
                let view = self.as_view(x);
                Val::Stored(match layout {
                    Layout::Broadcast { .. } => view.broadcast(shape),
                    Layout::Transpose { perm } => view.transpose(perm),
                    Layout::Slice { axis, start, .. } => view.slice(*axis, start, &shape[*axis]),
                    Layout::Reshape { .. } => match view.reshape(shape) {
                        Some(v) => v,
                        None => self
                            .copy_of(&view)
                            .reshape(shape)
                            .expect("a row-major array reshapes without copying"),
                    },
                    Layout::Concat { .. } => unreachable!("lowered above"),
                })
            }
        }
    }

    fn lower_elementwise(&mut self, id: NodeId) -> Val {
        let graph = self.graph;
        let node = graph.node(id);
        let inputs = &node.inputs;
        if inputs.iter().all(|&x| matches!(self.val(x), Val::Uniform)) {
            return Val::Uniform;
        }
        let latest = inputs
            .iter()
            .filter_map(|&x| match self.val(x) {
                Val::Fused { step, .. } => Some(*step),
                _ => None,
            })
            .max();
        let ready = |s: &Self, step: usize| inputs.iter().all(|&x| s.ready_for(s.val(x), step));
        let full = |s: &mut Self, step: usize| s.kernel(step).kernel.exprs.len() >= MAX_FUSED_EXPRS;
        let step = match latest {
            Some(step) if ready(self, step) && !full(self, step) => step,
            // Its operand's kernel is full: the kernel started after it (by a sibling, say) is
            // the next best place, before a kernel of its own.
            Some(step)
                if full(self, step)
                    && let Some(newest) = self.newest_kernel_with_room(&node.ty.shape.0)
                    && ready(self, newest) =>
            {
                newest
            }
            _ => self.new_kernel(&node.ty.shape.0),
        };
        let operands: Vec<ExprId> = inputs.iter().map(|&x| self.operand_expr(step, x)).collect();
        let Op::Elementwise(e) = &node.op else {
            unreachable!("elementwise ops only")
        };
        let expr = elementwise_expr(e, &operands).expect("stop_gradient is lowered as its operand");
        let expr = self.push_expr(step, expr);
        self.kernel(step).exprs_of.insert(id, expr);
        Val::Fused { step, expr }
    }

    fn lower_reduction(&mut self, id: NodeId, kind: ReduceKind, axes: Vec<usize>) -> Val {
        let x = self.graph.node(id).inputs[0];
        let in_shape = self.shape(x).0.clone();
        if kind == ReduceKind::Max {
            for &a in &axes {
                self.nonempty.push(NonEmpty {
                    size: Size::dim(&in_shape[a]),
                    message: format!(
                        "cannot evaluate {id} = reduce_max: axis {a} is empty, so it has no maximum"
                    ),
                });
            }
        }
        if axes.is_empty() {
            return self.val(x).clone();
        }
        let step = match self.val(x).clone() {
            Val::Uniform => return Val::Uniform,
            Val::Fused { step, .. } => step,
            Val::Stored(_) => self.new_kernel(&in_shape),
        };
        let value = self.operand_expr(step, x);
        let out_shape = self.shape(id).0.clone();
        let out = self.new_temp(&out_shape);
        let mut out_strides = out.strides.clone().into_iter();
        let reduced: Vec<bool> = (0..in_shape.len()).map(|i| axes.contains(&i)).collect();
        let strides = reduced
            .iter()
            .map(|&r| {
                if r {
                    Size::default()
                } else {
                    out_strides.next().expect("one output axis per kept axis")
                }
            })
            .collect();
        self.written_by[out.buffer] = Some(step);
        self.kernel(step).kernel.reductions.push(Reduction {
            kind,
            value,
            out: Access {
                buffer: out.buffer,
                offset: Size::default(),
                strides,
            },
            reduced,
            partial: None,
        });
        Val::Stored(out)
    }

    fn lower_matmul(&mut self, id: NodeId, a: NodeId, b: NodeId, ta: bool, tb: bool) -> Val {
        let matrix = |s: &mut Self, x: NodeId, transposed: bool| {
            let v = s.as_view(x);
            let (rows, cols) = (v.strides[0].clone(), v.strides[1].clone());
            let (row_stride, col_stride) = if transposed {
                (cols, rows)
            } else {
                (rows, cols)
            };
            let inner = if transposed { &v.shape[0] } else { &v.shape[1] };
            (
                MatAccess {
                    buffer: v.buffer,
                    offset: v.offset.clone(),
                    row_stride,
                    col_stride,
                },
                Size::dim(inner),
            )
        };
        // In gv-apply one operand of each product varies with the directions, the other not.
        let fixed = match (self.varies[a.index()], self.varies[b.index()]) {
            (false, true) => Some(Side::A),
            (true, false) => Some(Side::B),
            _ => None,
        };
        // Products with nothing kept share a site, so that identical ones stay one function.
        let site = match fixed {
            Some(_) => {
                self.kept_sites += 1;
                self.kept_sites
            }
            None => 0,
        };
        let (a, k) = matrix(self, a, ta);
        let (b, _) = matrix(self, b, tb);
        let shape = self.shape(id).0.clone();
        let c = self.new_temp(&shape);
        self.steps.push(StepBuilder::Gemm(Gemm {
            m: Size::dim(&shape[0]),
            k,
            n: Size::dim(&shape[1]),
            a,
            b,
            c: MatAccess {
                buffer: c.buffer,
                offset: Size::default(),
                row_stride: c.strides[0].clone(),
                col_stride: c.strides[1].clone(),
            },
            fixed,
            site,
        }));
        self.written_by[c.buffer] = Some(self.steps.len() - 1);
        Val::Stored(c)
    }

    /// Each operand is written into its slice of one buffer, by the kernel computing it when it
    /// is fused, else by a copy.
    fn lower_concat(&mut self, inputs: &[NodeId], axis: usize, shape: &[Dim]) -> Val {
        let out = self.new_temp(shape);
        let mut start = Dim::fixed(0);
        for &x in inputs {
            let len = self.shape(x).0[axis].clone();
            let part = out.slice(axis, &start, &len);
            let step = match self.val(x) {
                Val::Fused { step, .. } => *step,
                _ => self.new_kernel(&part.shape),
            };
            let e = self.operand_expr(step, x);
            self.add_store(step, e, &part);
            start =
                crate::ir::op::add_dims(&start, &len).expect("the shape rule added these sizes");
        }
        Val::Stored(out)
    }

    /// Makes output `k` land in the caller's output tensor.
    fn lower_output(&mut self, k: usize) {
        let id = self.graph.outputs()[k].node;
        let shape = self.shape(id).0.clone();
        let val = match self.materialized.get(&id) {
            Some(v) => Val::Stored(v.clone()),
            None => self.val(id).clone(),
        };
        if let Val::Stored(v) = &val {
            let buffer = &mut self.buffers[v.buffer];
            if v.is_contiguous() && buffer.kind == BufferKind::Temp && buffer.numel == v.numel() {
                // The producer writes straight into the output.
                buffer.kind = BufferKind::Output(k);
                return;
            }
        }
        let target = View::contiguous(
            self.new_buffer(BufferKind::Output(k), Size::product(&shape)),
            &shape,
        );
        let step = match val {
            Val::Fused { step, .. } => step,
            Val::Stored(_) | Val::Uniform => self.new_kernel(&shape),
        };
        let e = self.operand_expr(step, id);
        self.add_store(step, e, &target);
    }
}

impl View {
    fn numel(&self) -> Size {
        Size::product(&self.shape)
    }
}

/// True for ops the JIT lowers to strides over their operand's memory, without a kernel.
pub(super) fn is_view(op: &Op) -> bool {
    match op {
        Op::Elementwise(e) => *e == Elementwise::StopGradient,
        Op::Layout(layout) => layout.is_view(),
        Op::Leaf(_) | Op::MatMul(_) | Op::Reduce(_) | Op::Conv(_) => false,
    }
}

/// The kernel expression of an elementwise op on its operands' expressions; `None` for
/// `stop_gradient`, which is its operand.
fn elementwise_expr(op: &Elementwise, operands: &[ExprId]) -> Option<Expr> {
    Some(match op {
        Elementwise::Unary(u) => Expr::Unary(*u, operands[0]),
        Elementwise::Pow(c) => Expr::Pow(*c, operands[0]),
        Elementwise::Binary(b) => Expr::Binary(*b, operands[0], operands[1]),
        Elementwise::StopGradient => return None,
    })
}

/// The number of elements a reduction over `axes` of `shape` combines.
fn reduced_count(shape: &Shape, axes: &[usize]) -> Size {
    let dims: Vec<Dim> = axes.iter().map(|&a| shape.0[a].clone()).collect();
    Size::product(&dims)
}

/// Fixes a kernel's domain: drops size-1 axes, merges neighbouring axes every access walks
/// contiguously, and picks the axis threads split.
fn finish_kernel(k: KernelBuilder) -> Kernel {
    let mut kernel = k.kernel;
    kernel.domain = k.domain.iter().map(Size::dim).collect();
    // Size-1 axes: the index is always 0, so strides there do not matter.
    let keep: Vec<bool> = k.domain.iter().map(|d| !d.is_one()).collect();
    retain_axes(&mut kernel, &keep);
    let mut axis = 0;
    while axis + 1 < kernel.domain.len() {
        let inner = kernel.domain[axis + 1].clone();
        let contiguous = kernel
            .accesses()
            .all(|a| a.strides[axis] == a.strides[axis + 1].mul(&inner))
            && kernel
                .reductions
                .iter()
                .all(|r| r.reduced[axis] == r.reduced[axis + 1]);
        if contiguous {
            kernel.domain[axis] = kernel.domain[axis].mul(&inner);
            let mut keep = vec![true; kernel.domain.len()];
            keep[axis + 1] = false;
            // The merged axis walks with the inner axis's stride.
            for a in kernel.accesses_mut() {
                a.strides[axis] = a.strides[axis + 1].clone();
            }
            retain_axes(&mut kernel, &keep);
        } else {
            axis += 1;
        }
    }
    // A reduction over size-1 axes only is a copy.
    let (copies, reductions): (Vec<Reduction>, Vec<Reduction>) =
        std::mem::take(&mut kernel.reductions)
            .into_iter()
            .partition(|r| r.reduced.iter().all(|&x| !x));
    kernel.reductions = reductions;
    kernel
        .stores
        .extend(copies.into_iter().map(|r| (r.value, r.out)));
    kernel.split =
        (0..kernel.domain.len()).find(|&i| kernel.reductions.iter().all(|r| !r.reduced[i]));
    kernel
}

/// If `kernel` reduces its outer axis, cuts that axis into parts: each reduction over it
/// accumulates per part into a new buffer of partial results, and one returned kernel per such
/// reduction (run next) sums those in part order into the real output.
fn split_into_parts(kernel: &mut Kernel, buffers: &mut Vec<Buffer>) -> Vec<Kernel> {
    if !kernel.reductions.iter().any(|r| r.reduced[0]) {
        return Vec::new();
    }
    kernel.parts = true;
    kernel.split = None;
    let parts = Size::fixed(PARTS);
    let mut combines = Vec::new();
    for r in kernel.reductions.iter_mut().filter(|r| r.reduced[0]) {
        let out_numel = buffers[r.out.buffer].numel.clone();
        buffers.push(Buffer {
            kind: BufferKind::Temp,
            numel: parts.mul(&out_numel),
        });
        let partials = buffers.len() - 1;
        let strides = r.out.strides.clone();
        let out = std::mem::replace(
            &mut r.out,
            Access {
                buffer: partials,
                offset: Size::default(),
                strides,
            },
        );
        r.partial = Some(out_numel.clone());
        combines.push(sum_of_parts(r.kind, partials, out_numel, out));
    }
    combines
}

/// The kernel that combines [`PARTS`] partial results of `n` elements each, stored one after the
/// other in buffer `partials`, into the `n` contiguous elements at `out` (whose strides are
/// ignored): a reduction over the parts, in part order, as `[PARTS, n]`.
fn sum_of_parts(kind: ReduceKind, partials: BufferId, n: Size, out: Access) -> Kernel {
    let parts = Size::fixed(PARTS);
    Kernel {
        domain: vec![parts, n.clone()],
        exprs: vec![Expr::Load(Access {
            buffer: partials,
            offset: Size::default(),
            strides: vec![n, Size::fixed(1)],
        })],
        stores: Vec::new(),
        reductions: vec![Reduction {
            kind,
            value: 0,
            out: Access {
                buffer: out.buffer,
                offset: out.offset,
                strides: vec![Size::default(), Size::fixed(1)],
            },
            reduced: vec![true, false],
            partial: None,
        }],
        split: Some(1),
        parts: false,
    }
}

fn retain_axes(kernel: &mut Kernel, keep: &[bool]) {
    let filter = |v: &mut Vec<Size>| {
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    };
    filter(&mut kernel.domain);
    for a in kernel.accesses_mut() {
        filter(&mut a.strides);
    }
    for r in &mut kernel.reductions {
        let mut i = 0;
        r.reduced.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}
