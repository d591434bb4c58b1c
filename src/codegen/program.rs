//! The JIT's program: what [`super::schedule`] makes of a graph and [`super::clif`] compiles — a
//! list of steps (fused loop nests and GEMM calls) over buffers, with the facts the planner and
//! the runtime need (lifetimes, barriers, FLOPs).

use super::sizes::Size;
pub use crate::ir::ReduceKind;
use crate::ir::op::{Extent, F64Bits, ImageKernel};
use crate::ir::{BinaryOp, DType, UnaryOp};
use std::fmt;

/// Index of a buffer in [`Program::buffers`].
pub type BufferId = usize;

/// Where a buffer's memory comes from at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// The graph's argument number `.0`, read in place.
    Arg(usize),
    /// The graph's output number `.0`, written in place.
    Output(usize),
    /// A temporary in the arena.
    Temp,
}

/// A dense array of elements.
#[derive(Clone, Debug)]
pub struct Buffer {
    pub kind: BufferKind,
    pub numel: Size,
}

/// How a kernel reaches a buffer: a base offset and one stride per loop axis, in elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub buffer: BufferId,
    pub offset: Size,
    pub strides: Vec<Size>,
}

/// Index of an expression in [`Kernel::exprs`].
pub type ExprId = usize;

/// One value per point of a kernel's domain. Constants are compared by their bits, so that
/// identical kernels are recognized (and compiled once) by hashing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    Load(Access),
    Const(F64Bits),
    /// A runtime size as a float.
    DimSize(Size),
    Unary(UnaryOp, ExprId),
    Pow(F64Bits, ExprId),
    Binary(BinaryOp, ExprId, ExprId),
}

/// An accumulation of `value` over the axes marked in `reduced` into `out`, whose strides are
/// zero on those axes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reduction {
    pub kind: ReduceKind,
    pub value: ExprId,
    pub out: Access,
    pub reduced: Vec<bool>,
    /// For a reduction over axis 0 of a kernel split into parts: `out` is part 0's slice of a
    /// buffer of partial results, and this many elements separate the slices of consecutive
    /// parts. `None`: `out` is the result itself.
    pub partial: Option<Size>,
}

/// A loop nest over `domain` computing `exprs` at every point, writing `stores` and
/// accumulating `reductions`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub domain: Vec<Size>,
    /// Topologically ordered: operands come first.
    pub exprs: Vec<Expr>,
    pub stores: Vec<(ExprId, Access)>,
    pub reductions: Vec<Reduction>,
    /// The axis whose range is divided among threads: one no reduction reduces, so that each
    /// output element belongs to one thread. `None`: one thread runs the whole kernel (unless
    /// `parts`).
    pub split: Option<usize>,
    /// Axis 0 is reduced and cut into [`PARTS`] fixed parts, shared out among threads; each part
    /// accumulates into its own slice of partial results, which the next step combines in part
    /// order — so results do not depend on the thread count.
    pub parts: bool,
}

/// Parts of a kernel reduced over its outer axis (see [`Kernel::parts`]).
pub const PARTS: u64 = 8;

impl Kernel {
    /// Every memory access of the kernel.
    pub fn accesses(&self) -> impl Iterator<Item = &Access> {
        self.exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Load(a) => Some(a),
                _ => None,
            })
            .chain(self.stores.iter().map(|(_, a)| a))
            .chain(self.reductions.iter().map(|r| &r.out))
    }

    pub(crate) fn accesses_mut(&mut self) -> impl Iterator<Item = &mut Access> {
        self.exprs
            .iter_mut()
            .filter_map(|e| match e {
                Expr::Load(a) => Some(a),
                _ => None,
            })
            .chain(self.stores.iter_mut().map(|(_, a)| a))
            .chain(self.reductions.iter_mut().map(|r| &mut r.out))
    }
}

/// A matrix operand: element `[i, j]` is at `offset + i·row_stride + j·col_stride`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatAccess {
    pub buffer: BufferId,
    pub offset: Size,
    pub row_stride: Size,
    pub col_stride: Size,
}

/// `c = a @ b` with `a` m×k, `b` k×n, `c` m×n.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gemm {
    pub m: Size,
    pub k: Size,
    pub n: Size,
    pub a: MatAccess,
    pub b: MatAccess,
    pub c: MatAccess,
    /// The operand that depends on no direction or cotangent argument while the other does:
    /// in gv-apply, the parameters, inputs and residuals side of each product, the same in
    /// every CG iteration of a step, so its packing may be kept between calls (a
    /// [`crate::codegen::PackCache`]).
    pub fixed: Option<Side>,
    /// Names this product's kept packing: its number (from 1) among the program's products
    /// with a `fixed` operand; 0 for the others, so that identical ones stay one compiled step.
    pub site: usize,
}

/// One of a product's two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// `side` as the generated code passes it to `sgn_gemm`: 0 for none.
    pub fn code(side: Option<Side>) -> i64 {
        match side {
            None => 0,
            Some(Side::A) => 1,
            Some(Side::B) => 2,
        }
    }

    /// The side [`Side::code`] gave `code`.
    pub fn from_code(code: i64) -> Option<Side> {
        match code {
            1 => Some(Side::A),
            2 => Some(Side::B),
            _ => None,
        }
    }
}

/// A row-major array in a buffer, from `offset` on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dense {
    pub buffer: BufferId,
    pub offset: Size,
}

/// A convolution or pooling op run by its family's kernel ([`ImageKernel`]) on `images` whole
/// images; each thread takes a run of images. A result that is [`Extent::Whole`] (a filter's
/// gradient, summed over the images) is computed in [`PARTS`] parts fixed by the image count:
/// `out` holds one partial sum per part, one after the other, which the next step adds up in
/// part order — so results do not depend on the thread count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageStep {
    pub kernel: ImageKernel,
    pub images: Size,
    pub operands: Vec<Dense>,
    pub out: Dense,
}

/// One step of a program; steps run in order, separated by barriers when threads share them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Kernel(Kernel),
    Gemm(Gemm),
    Image(ImageStep),
}

impl Step {
    /// Every buffer the step touches, reads and writes alike, with repeats.
    pub(crate) fn buffers_mut(&mut self) -> Vec<&mut BufferId> {
        match self {
            Step::Kernel(k) => k.accesses_mut().map(|a| &mut a.buffer).collect(),
            Step::Gemm(g) => [&mut g.a, &mut g.b, &mut g.c]
                .into_iter()
                .map(|m| &mut m.buffer)
                .collect(),
            Step::Image(s) => s
                .operands
                .iter_mut()
                .chain([&mut s.out])
                .map(|d| &mut d.buffer)
                .collect(),
        }
    }
}

/// A size that must not be zero at run time, and what to say when it is.
#[derive(Clone, Debug)]
pub struct NonEmpty {
    pub size: Size,
    pub message: String,
}

/// A graph scheduled into steps over buffers.
#[derive(Clone, Debug)]
pub struct Program {
    pub dtype: DType,
    pub buffers: Vec<Buffer>,
    pub steps: Vec<Step>,
    /// Reduced extents of `reduce_max` nodes (an empty axis has no maximum).
    pub nonempty: Vec<NonEmpty>,
}

impl Program {
    /// For each buffer, the first step that writes it and the last that touches it (`None` for
    /// buffers no step touches).
    pub fn lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut life: Vec<Option<(usize, usize)>> = vec![None; self.buffers.len()];
        let mut touch = |buffer: BufferId, step: usize| {
            let entry = life[buffer].get_or_insert((step, step));
            entry.0 = entry.0.min(step);
            entry.1 = entry.1.max(step);
        };
        for i in 0..self.steps.len() {
            let (reads, writes) = self.step_buffers(i);
            reads.into_iter().chain(writes).for_each(|b| touch(b, i));
        }
        life
    }

    /// The buffers step `i` reads and writes.
    fn step_buffers(&self, i: usize) -> (Vec<BufferId>, Vec<BufferId>) {
        match &self.steps[i] {
            Step::Kernel(k) => {
                let reads = k
                    .exprs
                    .iter()
                    .filter_map(|e| match e {
                        Expr::Load(a) => Some(a.buffer),
                        _ => None,
                    })
                    .collect();
                let writes = k
                    .stores
                    .iter()
                    .map(|(_, a)| a.buffer)
                    .chain(k.reductions.iter().map(|r| r.out.buffer))
                    .collect();
                (reads, writes)
            }
            Step::Gemm(g) => (vec![g.a.buffer, g.b.buffer], vec![g.c.buffer]),
            Step::Image(s) => (
                s.operands.iter().map(|d| d.buffer).collect(),
                vec![s.out.buffer],
            ),
        }
    }

    /// For each step, whether threads must meet at a barrier before it: when it reads what
    /// another thread may still be writing, or writes what another may still be reading or
    /// writing. (Arena reuse needs none: see [`Program::arena_lifetimes`].)
    pub fn barriers(&self) -> Vec<bool> {
        // The barrier-free run (numbered from 1) in which each buffer was last read and last
        // written: a new run forgets the old one's accesses in O(1).
        let mut read_in = vec![0; self.buffers.len()];
        let mut written_in = vec![0; self.buffers.len()];
        let mut run = 1;
        let mut barriers = Vec::with_capacity(self.steps.len());
        for i in 0..self.steps.len() {
            let (reads, writes) = self.step_buffers(i);
            let needed = reads.iter().any(|&b| written_in[b] == run)
                || writes
                    .iter()
                    .any(|&b| written_in[b] == run || read_in[b] == run);
            if needed {
                run += 1;
            }
            barriers.push(needed);
            for b in reads {
                read_in[b] = run;
            }
            for b in writes {
                written_in[b] = run;
            }
        }
        barriers
    }

    /// Lifetimes for arena packing: [`Program::lifetimes`] with each end extended to the last
    /// step before the next barrier, so that two buffers share memory only when a barrier
    /// separates the last use of one from the first use of the other.
    pub fn arena_lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let barriers = self.barriers();
        // The last step of the barrier-free run containing each step.
        let mut run_end = vec![0; self.steps.len()];
        let mut end = self.steps.len().saturating_sub(1);
        for i in (0..self.steps.len()).rev() {
            run_end[i] = end;
            if barriers[i] && i > 0 {
                end = i - 1;
            }
        }
        self.lifetimes()
            .into_iter()
            .map(|life| life.map(|(first, last)| (first, run_end[last])))
            .collect()
    }

    /// Floating-point operations per call: 2mnk per GEMM, one per elementwise op and reduced
    /// element (transcendental functions count as one), under evaluated `sizes`.
    pub fn flops(&self, eval: &dyn Fn(&Size) -> u64) -> f64 {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Gemm(g) => 2.0 * eval(&g.m) as f64 * eval(&g.k) as f64 * eval(&g.n) as f64,
                Step::Image(s) => s.kernel.flops(eval(&s.images)),
                Step::Kernel(k) => {
                    let points: f64 = k.domain.iter().map(|d| eval(d) as f64).product();
                    let ops = k
                        .exprs
                        .iter()
                        .filter(|e| matches!(e, Expr::Unary(..) | Expr::Binary(..) | Expr::Pow(..)))
                        .count()
                        + k.reductions.len();
                    points * ops as f64
                }
            })
            .sum()
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.buffer)?;
        if !self.offset.is_zero() {
            write!(f, "+{}", self.offset)?;
        }
        let strides: Vec<String> = self.strides.iter().map(|s| s.to_string()).collect();
        write!(f, "[{}]", strides.join(", "))
    }
}

impl fmt::Display for Dense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.buffer)?;
        if !self.offset.is_zero() {
            write!(f, "+{}", self.offset)?;
        }
        Ok(())
    }
}

impl fmt::Display for Program {
    /// One line per buffer and per step, e.g. `kernel [B, 800] split 0: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.buffers.iter().enumerate() {
            writeln!(f, "b{i}: {:?} of {} elements", b.kind, b.numel)?;
        }
        let barriers = self.barriers();
        for (i, step) in self.steps.iter().enumerate() {
            if barriers[i] {
                writeln!(f, "-- barrier")?;
            }
            match step {
                Step::Gemm(g) => {
                    let mat = |m: &MatAccess| {
                        let off = if m.offset.is_zero() {
                            String::new()
                        } else {
                            format!("+{}", m.offset)
                        };
                        format!("b{}{off}[{}, {}]", m.buffer, m.row_stride, m.col_stride)
                    };
                    writeln!(
                        f,
                        "{i}: gemm {}x{}x{}: {} = {} @ {}",
                        g.m,
                        g.k,
                        g.n,
                        mat(&g.c),
                        mat(&g.a),
                        mat(&g.b)
                    )?;
                }
                Step::Image(s) => {
                    let operands: Vec<String> = s.operands.iter().map(|d| d.to_string()).collect();
                    let parts = match s.kernel.output() {
                        Extent::PerImage(_) => "",
                        Extent::Whole(_) => " in parts",
                    };
                    writeln!(
                        f,
                        "{i}: {} over {} images{parts}: {} = {}",
                        s.kernel.name(),
                        s.images,
                        s.out,
                        operands.join(", ")
                    )?;
                }
                Step::Kernel(k) => {
                    let domain: Vec<String> = k.domain.iter().map(|d| d.to_string()).collect();
                    let parts = if k.parts { " in parts" } else { "" };
                    writeln!(
                        f,
                        "{i}: kernel [{}] split {:?}{parts}",
                        domain.join(", "),
                        k.split
                    )?;
                    for (e, expr) in k.exprs.iter().enumerate() {
                        match expr {
                            Expr::Load(a) => writeln!(f, "    e{e} = load {a}")?,
                            Expr::Const(c) => writeln!(f, "    e{e} = {}", c.get())?,
                            Expr::DimSize(s) => writeln!(f, "    e{e} = size {s}")?,
                            Expr::Unary(op, x) => writeln!(f, "    e{e} = {} e{x}", op.name())?,
                            Expr::Pow(c, x) => writeln!(f, "    e{e} = pow[{}] e{x}", c.get())?,
                            Expr::Binary(op, x, y) => {
                                writeln!(f, "    e{e} = {} e{x}, e{y}", op.name())?
                            }
                        }
                    }
                    for (e, a) in &k.stores {
                        writeln!(f, "    store e{e} -> {a}")?;
                    }
                    for r in &k.reductions {
                        writeln!(
                            f,
                            "    {:?} e{} over {:?} -> {}",
                            r.kind, r.value, r.reduced, r.out
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}
