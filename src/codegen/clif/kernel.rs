//! Kernel loop nests: a kernel's domain split over threads (or into fixed parts), the loops
//! over its axes with values hoisted to the loop where they change, and the inner axis as vector
//! loops (or, when short and fixed, straight-line code) with register accumulators and a scalar
//! tail.

use super::{Emitter, mem_flags};
use crate::codegen::math::Lanes;
use crate::codegen::program::{Access, Expr, ExprId, Kernel, PARTS, ReduceKind};
use crate::codegen::sizes::Size;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use rustc_hash::FxHashMap;

/// Vector iterations per unrolled step of a reduced inner loop (one accumulator each).
const REDUCTION_UNROLL: usize = 4;

/// Points of a reduced inner loop summed apart before joining the total (a multiple of every
/// unrolled step).
const REDUCTION_BLOCK: i64 = 256;

/// Inner extents of at most this many vectors (and tails of at most this many points), fixed
/// when compiled, are emitted without a loop.
const STRAIGHT_POINTS: u64 = 8;

/// At most this many register accumulators are carried across the outer loops of a kernel:
/// half of x86-64's 16 vector registers, the rest left to the loop body.
const CARRIED_ACCUMULATORS: usize = 8;

/// The per-kernel facts the loop emitters share.
struct KernelCtx<'k> {
    kernel: &'k Kernel,
    /// Every access: loads (in expression order), then stores, then reduction outputs.
    accesses: Vec<&'k Access>,
    load_access: FxHashMap<ExprId, usize>,
    store_access: Vec<usize>,
    reduction_access: Vec<usize>,
    /// Per access, per axis: the stride in bytes, or `None` if it is 0.
    strides: Vec<Vec<Option<Value>>>,
    /// Per expression: the outermost loop axis inside which it is constant, i.e. the innermost
    /// axis it varies along (−1: constant in the whole kernel).
    level: Vec<i32>,
    /// Loop ranges per axis.
    ranges: Vec<(Value, Value)>,
    /// Scalar values of expressions computed outside the inner loop.
    outer: Vec<Option<Value>>,
    /// True if the inner loop runs on vectors.
    vector: bool,
    /// Reductions over the inner axis, which accumulate in registers.
    inner_reduced: Vec<usize>,
    /// How the inner axis is emitted (`None` for a rank-0 kernel).
    plan: Option<InnerPlan>,
    /// Reductions over every outer axis but not the inner one, on a straight inner axis: one
    /// register accumulator per inner point, carried across the outer loops (rather than a
    /// load, combine and store per point, a chain through memory).
    carried: Vec<usize>,
    /// Per inner point (vectors, then tail scalars), per carried reduction: its accumulator.
    carried_accs: Vec<Vec<Variable>>,
}

/// How a kernel's inner axis is emitted.
#[derive(Clone, Copy)]
struct InnerPlan {
    /// Lanes per vector.
    width: i64,
    /// Vector iterations per unrolled step (one accumulator each); 1 if not unrolled.
    unroll: usize,
    /// Whether the axis runs on vectors.
    vectors: bool,
    /// Whether scalar points follow the vectors (all points, without vectors).
    tail: bool,
    /// Inner reductions summed in blocks of [`REDUCTION_BLOCK`] points.
    blocked: bool,
    /// The vectors as straight-line code of this many: a few points per row (20 columns: 5
    /// vectors) run without a loop's compare, branch and index per point, and with their points
    /// free to overlap.
    straight_vectors: Option<i64>,
    /// The scalar tail as straight-line code of this many points (10 columns: 2 after 2
    /// vectors).
    straight_tail: Option<i64>,
}

impl InnerPlan {
    fn new(k: &Kernel, vector: bool, inner_reduced: bool, width: u64) -> InnerPlan {
        let axis = k.domain.len() - 1;
        // Loops that would never run are left out when the extent is known.
        let whole = k.split != Some(axis) && !(k.parts && axis == 0);
        let fixed = k.domain[axis].as_fixed().filter(|_| whole);
        let reduction_unroll = if vector && inner_reduced {
            REDUCTION_UNROLL
        } else {
            1
        };
        let unroll = match fixed.is_none_or(|n| n >= width * reduction_unroll as u64) {
            true => reduction_unroll,
            false => 1,
        };
        let vectors = vector && fixed.is_none_or(|n| n >= width);
        let tail = fixed.is_none_or(|n| !vectors || n % width != 0);
        let blocked = inner_reduced && vectors && fixed.is_none_or(|n| n > REDUCTION_BLOCK as u64);
        let short = |count: u64| (count <= STRAIGHT_POINTS).then_some(count as i64);
        // (A blocked axis is never short: `!blocked` states the intent.)
        let straight_vectors = fixed
            .filter(|_| vectors && unroll == 1 && !blocked)
            .and_then(|n| short(n / width));
        let straight_tail = fixed
            .filter(|_| tail)
            .and_then(|n| short(if vectors { n % width } else { n }));
        InnerPlan {
            width: width as i64,
            unroll,
            vectors,
            tail,
            blocked,
            straight_vectors,
            straight_tail,
        }
    }

    /// The number of straight points (vectors, then tail scalars) of `lanes`, and the number of
    /// the first.
    fn straight(&self, lanes: Lanes) -> Option<(i64, usize)> {
        match lanes.vector {
            true => self.straight_vectors.map(|count| (count, 0)),
            false => (self.straight_tail)
                .map(|count| (count, self.straight_vectors.unwrap_or(0) as usize)),
        }
    }

    /// Whether straight point `point` is a vector (else a tail scalar).
    fn is_vector_point(&self, point: usize) -> bool {
        (point as i64) < self.straight_vectors.unwrap_or(0)
    }

    /// The inner index of straight point `point`.
    fn straight_index(&self, point: usize) -> i64 {
        let (vectors, point) = (self.straight_vectors.unwrap_or(0), point as i64);
        match point < vectors {
            true => point * self.width,
            false => vectors * self.width + point - vectors,
        }
    }

    /// The number of inner points (vectors, then tail scalars) when every one is emitted
    /// straight.
    fn straight_points(&self) -> Option<usize> {
        let vectors = match self.vectors {
            true => self.straight_vectors?,
            false => 0,
        };
        let tail = match self.tail {
            true => self.straight_tail?,
            false => 0,
        };
        Some((vectors + tail) as usize)
    }
}

impl Emitter<'_, '_> {
    pub(super) fn kernel(&mut self, k: &Kernel) {
        let done = self.b.create_block();
        let extents: Vec<Value> = k.domain.iter().map(|d| self.size(d)).collect();
        if k.parts {
            let (first, last) = self.part_range(&extents, done);
            let (l, part) = self.begin_loop(first, last, 1);
            // Rows of part p: [p·E/PARTS, (p+1)·E/PARTS).
            let e0 = extents[0];
            let lo = self.b.ins().imul(part, e0);
            let lo = self.b.ins().udiv_imm_u(lo, PARTS as i64);
            let next = self.b.ins().iadd_imm_s(part, 1);
            let hi = self.b.ins().imul(next, e0);
            let hi = self.b.ins().udiv_imm_u(hi, PARTS as i64);
            let zero = self.b.ins().iconst(types::I64, 0);
            let mut ranges: Vec<(Value, Value)> = extents.iter().map(|&e| (zero, e)).collect();
            ranges[0] = (lo, hi);
            self.kernel_body(k, ranges, Some(part));
            self.end_loop(l);
        } else {
            let ranges = self.thread_ranges(k, &extents, done);
            self.kernel_body(k, ranges, None);
        }
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
        self.b.seal_block(done);
    }

    /// The parts `[first, last)` of a parted kernel this thread runs; jumps to `skip` if none.
    fn part_range(
        &mut self,
        extents: &[Value],
        skip: cranelift_codegen::ir::Block,
    ) -> (Value, Value) {
        let mut points = self.b.ins().iconst(types::I64, 1);
        for &e in extents {
            points = self.b.ins().imul(points, e);
        }
        let small = self.b.ins().icmp_imm_s(
            IntCC::SignedLessThan,
            points,
            self.parallel_min.kernel_points,
        );
        let parts = PARTS as i64;
        let first = self.b.ins().imul_imm_s(self.thread, parts);
        let first = self.b.ins().sdiv(first, self.threads);
        let next = self.b.ins().iadd_imm_s(self.thread, 1);
        let last = self.b.ins().imul_imm_s(next, parts);
        let last = self.b.ins().sdiv(last, self.threads);
        // Small kernels: thread 0 runs every part.
        let zero = self.b.ins().iconst(types::I64, 0);
        let all = self.b.ins().iconst(types::I64, parts);
        let is_first = self.b.ins().icmp_imm_s(IntCC::Equal, self.thread, 0);
        let small_first = self.b.ins().select(is_first, zero, all);
        let first = self.b.ins().select(small, small_first, first);
        let last = self.b.ins().select(small, all, last);
        let run = self.b.create_block();
        let empty = self
            .b
            .ins()
            .icmp(IntCC::SignedGreaterThanOrEqual, first, last);
        self.b.ins().brif(empty, skip, &[], run, &[]);
        self.b.switch_to_block(run);
        self.b.seal_block(run);
        (first, last)
    }

    /// A kernel's loop nest over `ranges`; `part` is the part being run of a parted kernel.
    fn kernel_body(&mut self, k: &Kernel, ranges: Vec<(Value, Value)>, part: Option<Value>) {
        let rank = k.domain.len();

        let mut accesses: Vec<&Access> = Vec::new();
        let mut load_access = FxHashMap::default();
        for (id, e) in k.exprs.iter().enumerate() {
            if let Expr::Load(a) = e {
                load_access.insert(id, accesses.len());
                accesses.push(a);
            }
        }
        let store_access: Vec<usize> = k
            .stores
            .iter()
            .map(|(_, a)| {
                accesses.push(a);
                accesses.len() - 1
            })
            .collect();
        let reduction_access: Vec<usize> = k
            .reductions
            .iter()
            .map(|r| {
                accesses.push(&r.out);
                accesses.len() - 1
            })
            .collect();
        let mut bases = Vec::with_capacity(accesses.len());
        let mut strides = Vec::with_capacity(accesses.len());
        for (i, a) in accesses.iter().enumerate() {
            let mut base = self.base_pointer(a.buffer, &a.offset);
            // A partial result: this part's slice.
            let partial = reduction_access
                .iter()
                .position(|&r| r == i)
                .and_then(|r| k.reductions[r].partial.as_ref());
            if let (Some(stride), Some(part)) = (partial, part) {
                let stride = self.size(stride);
                let offset = self.b.ins().imul(part, stride);
                let bytes = self.b.ins().imul_imm_s(offset, self.esize);
                base = self.b.ins().iadd(base, bytes);
            }
            bases.push(base);
            let per_axis = a
                .strides
                .iter()
                .map(|s| {
                    if s.is_zero() {
                        None
                    } else {
                        let s = self.size(s);
                        Some(self.b.ins().imul_imm_s(s, self.esize))
                    }
                })
                .collect();
            strides.push(per_axis);
        }

        let mut level = vec![-1i32; k.exprs.len()];
        for (id, e) in k.exprs.iter().enumerate() {
            level[id] = match e {
                Expr::Load(a) => (0..rank)
                    .rev()
                    .find(|&j| !a.strides[j].is_zero())
                    .map_or(-1, |j| j as i32),
                Expr::Const(_) | Expr::DimSize(_) => -1,
                Expr::Unary(_, x) | Expr::Pow(_, x) => level[*x],
                Expr::Binary(_, x, y) => level[*x].max(level[*y]),
            };
        }
        let inner = rank.checked_sub(1);
        let unit = Size::fixed(1);
        let vector = inner.is_some_and(|inner| {
            let moving_contiguous =
                |a: &Access| a.strides[inner].is_zero() || a.strides[inner] == unit;
            accesses.iter().all(|a| moving_contiguous(a))
        });
        let inner_reduced: Vec<usize> = match inner {
            Some(inner) => (0..k.reductions.len())
                .filter(|&r| k.reductions[r].reduced[inner])
                .collect(),
            None => Vec::new(),
        };
        let width = self.lanes(true).count() as u64;
        let plan = inner.map(|_| InnerPlan::new(k, vector, !inner_reduced.is_empty(), width));
        let points = plan.and_then(|p| p.straight_points()).unwrap_or(0);
        let carried: Vec<usize> = (0..k.reductions.len())
            .filter(|&r| {
                let reduced = &k.reductions[r].reduced;
                rank >= 2
                    && points > 0
                    && reduced[..rank - 1].iter().all(|&x| x)
                    && !reduced[rank - 1]
            })
            .take(CARRIED_ACCUMULATORS / points.max(1))
            .collect();
        let mut ctx = KernelCtx {
            kernel: k,
            accesses,
            load_access,
            store_access,
            reduction_access,
            strides,
            level,
            ranges,
            outer: vec![None; k.exprs.len()],
            vector,
            inner_reduced,
            plan,
            carried,
            carried_accs: Vec::new(),
        };
        ctx.carried_accs = self.carried_accumulators(&ctx, points);

        // A carried reduction's output needs no fill: it reduces axis 0, so it is a parted
        // kernel's fresh buffer of partial results that only it writes, and the stores after
        // the nest cover this part's whole slice (the identity for a part without rows).
        for r in 0..k.reductions.len() {
            if self.needs_init(&ctx, r) && !ctx.carried.contains(&r) {
                let base = bases[ctx.reduction_access[r]];
                self.fill_identity(&ctx, r, base);
            }
        }
        self.level_values(&mut ctx, -1, &bases);
        match rank {
            0 => {
                for (s, (e, _)) in k.stores.iter().enumerate() {
                    let v = ctx.outer[*e].expect("rank-0 values are computed up front");
                    let p = bases[ctx.store_access[s]];
                    self.b.ins().store(mem_flags(), v, p, 0);
                }
            }
            _ => {
                self.nest(&mut ctx, 0, &bases);
                self.store_carried(&ctx, &bases);
            }
        }
    }

    /// Per inner point, per carried reduction: a register accumulator holding its identity.
    fn carried_accumulators(&mut self, ctx: &KernelCtx, points: usize) -> Vec<Vec<Variable>> {
        let (Some(plan), false) = (ctx.plan, ctx.carried.is_empty()) else {
            return Vec::new();
        };
        (0..points)
            .map(|point| {
                let lanes = self.lanes(plan.is_vector_point(point));
                (ctx.carried.iter())
                    .map(|&r| self.accumulator(lanes, ctx.kernel.reductions[r].kind))
                    .collect()
            })
            .collect()
    }

    /// Stores the carried accumulators at their inner points.
    fn store_carried(&mut self, ctx: &KernelCtx, bases: &[Value]) {
        let Some(plan) = ctx.plan else {
            return;
        };
        let axis = ctx.kernel.domain.len() - 1;
        for (point, accs) in ctx.carried_accs.iter().enumerate() {
            let index = plan.straight_index(point);
            for (&r, &acc) in ctx.carried.iter().zip(accs) {
                let access = ctx.reduction_access[r];
                let mut p = bases[access];
                if let Some(stride) = ctx.strides[access][axis] {
                    let offset = self.b.ins().imul_imm_s(stride, index);
                    p = self.b.ins().iadd(p, offset);
                }
                let v = self.b.use_var(acc);
                self.b.ins().store(mem_flags(), v, p, 0);
            }
        }
    }

    /// The range of each axis this thread runs; jumps to `skip` if it runs nothing.
    fn thread_ranges(
        &mut self,
        k: &Kernel,
        extents: &[Value],
        skip: cranelift_codegen::ir::Block,
    ) -> Vec<(Value, Value)> {
        let zero = self.b.ins().iconst(types::I64, 0);
        let mut ranges: Vec<(Value, Value)> = extents.iter().map(|&e| (zero, e)).collect();
        let run = self.b.create_block();
        match k.split {
            None => {
                let first = self.b.ins().icmp_imm_s(IntCC::Equal, self.thread, 0);
                self.b.ins().brif(first, run, &[], skip, &[]);
            }
            Some(axis) => {
                let mut points = self.b.ins().iconst(types::I64, 1);
                for &e in extents {
                    points = self.b.ins().imul(points, e);
                }
                let min = self.parallel_min.kernel_points;
                let small = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, points, min);
                let extent = extents[axis];
                // per = ceil(extent / threads), a whole number of vectors on the inner axis.
                let t_minus_1 = self.b.ins().iadd_imm_s(self.threads, -1);
                let sum = self.b.ins().iadd(extent, t_minus_1);
                let mut per = self.b.ins().sdiv(sum, self.threads);
                if axis + 1 == extents.len() {
                    let lanes = self.lanes(true).count() as i64;
                    per = self.b.ins().iadd_imm_s(per, lanes - 1);
                    per = self.b.ins().band_imm_s(per, -lanes);
                }
                let start = self.b.ins().imul(self.thread, per);
                let start = self.b.ins().smin(start, extent);
                let end = self.b.ins().iadd(start, per);
                let end = self.b.ins().smin(end, extent);
                // Small kernels: thread 0 runs everything, the others nothing.
                let is_first = self.b.ins().icmp_imm_s(IntCC::Equal, self.thread, 0);
                let small_start = self.b.ins().select(is_first, zero, extent);
                let start = self.b.ins().select(small, small_start, start);
                let end = self.b.ins().select(small, extent, end);
                ranges[axis] = (start, end);
                let empty = self
                    .b
                    .ins()
                    .icmp(IntCC::SignedGreaterThanOrEqual, start, end);
                self.b.ins().brif(empty, skip, &[], run, &[]);
            }
        }
        self.b.switch_to_block(run);
        self.b.seal_block(run);
        ranges
    }

    /// True if reduction `r` accumulates into its output across loop iterations that are not
    /// all in one inner loop, so the output must start at the identity.
    fn needs_init(&self, ctx: &KernelCtx, r: usize) -> bool {
        let reduced = &ctx.kernel.reductions[r].reduced;
        let rank = reduced.len();
        if ctx.inner_reduced.contains(&r) {
            reduced[..rank - 1].iter().any(|&x| x)
        } else {
            reduced.iter().any(|&x| x)
        }
    }

    /// Writes the identity of reduction `r` over this thread's part of its output.
    fn fill_identity(&mut self, ctx: &KernelCtx, r: usize, base: Value) {
        let reduction = &ctx.kernel.reductions[r];
        let access = ctx.reduction_access[r];
        let mut loops = Vec::new();
        let mut p = base;
        for (j, &reduced) in reduction.reduced.iter().enumerate() {
            if reduced {
                continue;
            }
            let (start, end) = ctx.ranges[j];
            let (l, i) = self.begin_loop(start, end, 1);
            if let Some(stride) = ctx.strides[access][j] {
                let offset = self.b.ins().imul(i, stride);
                p = self.b.ins().iadd(p, offset);
            }
            loops.push(l);
        }
        let v = self
            .lanes(false)
            .constant(&mut self.b, identity(reduction.kind));
        self.b.ins().store(mem_flags(), v, p, 0);
        for l in loops.into_iter().rev() {
            self.end_loop(l);
        }
    }

    /// Computes (as scalars) the expressions that first vary at loop `level`, with `pointers`
    /// the access pointers at that level.
    fn level_values(&mut self, ctx: &mut KernelCtx, level: i32, pointers: &[Value]) {
        let lanes = self.lanes(false);
        for id in 0..ctx.kernel.exprs.len() {
            if ctx.level[id] != level {
                continue;
            }
            let v = match &ctx.kernel.exprs[id] {
                Expr::Load(_) => {
                    let p = pointers[ctx.load_access[&id]];
                    self.b.ins().load(lanes.float(), mem_flags(), p, 0)
                }
                Expr::Const(c) => lanes.constant(&mut self.b, c.get()),
                Expr::DimSize(s) => {
                    let n = self.size(s);
                    self.b.ins().fcvt_from_sint(lanes.float(), n)
                }
                Expr::Unary(op, x) => {
                    let x = ctx.outer[*x].expect("operands come first");
                    lanes.unary(&mut self.b, *op, x)
                }
                Expr::Pow(c, x) => {
                    let x = ctx.outer[*x].expect("operands come first");
                    lanes.pow(&mut self.b, x, c.get())
                }
                Expr::Binary(op, x, y) => {
                    let x = ctx.outer[*x].expect("operands come first");
                    let y = ctx.outer[*y].expect("operands come first");
                    lanes.binary(&mut self.b, *op, x, y)
                }
            };
            ctx.outer[id] = Some(v);
        }
    }

    /// Emits loop `axis` and everything inside it; `pointers` are the access pointers of the
    /// enclosing level.
    fn nest(&mut self, ctx: &mut KernelCtx, axis: usize, pointers: &[Value]) {
        let rank = ctx.kernel.domain.len();
        if axis + 1 == rank {
            self.inner_loops(ctx, pointers);
            return;
        }
        let (start, end) = ctx.ranges[axis];
        let (l, i) = self.begin_loop(start, end, 1);
        let here: Vec<Value> = (0..ctx.accesses.len())
            .map(|a| match ctx.strides[a][axis] {
                Some(stride) => {
                    let offset = self.b.ins().imul(i, stride);
                    self.b.ins().iadd(pointers[a], offset)
                }
                None => pointers[a],
            })
            .collect();
        self.level_values(ctx, axis as i32, &here);
        self.nest(ctx, axis + 1, &here);
        // Values of this level are not valid after the loop.
        for id in 0..ctx.kernel.exprs.len() {
            if ctx.level[id] >= axis as i32 {
                ctx.outer[id] = None;
            }
        }
        self.end_loop(l);
    }

    /// The innermost axis: vector loops (unrolled when reducing) or straight-line vectors, a
    /// scalar tail, then the register accumulators written out.
    fn inner_loops(&mut self, ctx: &mut KernelCtx, pointers: &[Value]) {
        let kernel = ctx.kernel;
        let axis = kernel.domain.len() - 1;
        let (start, end) = ctx.ranges[axis];
        let scalar = self.lanes(false);
        let vector = self.lanes(true);
        let width = vector.count() as u64;
        let plan = ctx.plan.expect("a kernel with an inner axis has a plan");
        let InnerPlan {
            unroll,
            vectors,
            tail,
            blocked,
            ..
        } = plan;
        // Per inner-reduced reduction: `unroll` vector accumulators, a scalar one for the tail,
        // and the combined totals of finished blocks.
        let kinds: Vec<ReduceKind> = (ctx.inner_reduced.iter())
            .map(|&r| kernel.reductions[r].kind)
            .collect();
        let vector_accs: Vec<Vec<Variable>> = match ctx.vector {
            true => (kinds.iter())
                .map(|&kind| {
                    (0..unroll)
                        .map(|_| self.accumulator(vector, kind))
                        .collect()
                })
                .collect(),
            false => Vec::new(),
        };
        let scalar_accs: Vec<Variable> = kinds
            .iter()
            .map(|&kind| self.accumulator(scalar, kind))
            .collect();
        let block_totals: Vec<Variable> = kinds
            .iter()
            .map(|&kind| self.accumulator(scalar, kind))
            .collect();
        let index = self.b.declare_var(types::I64);
        self.b.def_var(index, start);
        if vectors {
            let width = width as i64;
            // Blocks of REDUCTION_BLOCK points, each summed on its own, then added up: rounding
            // errors grow with the block length and the block count, not the axis length.
            let blocks = blocked.then(|| {
                let header = self.b.create_block();
                let body = self.b.create_block();
                let exit = self.b.create_block();
                self.b.ins().jump(header, &[]);
                self.b.switch_to_block(header);
                let i = self.b.use_var(index);
                let next = self.b.ins().iadd_imm_s(i, width);
                let more = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
                self.b.ins().brif(more, body, &[], exit, &[]);
                self.b.switch_to_block(body);
                self.b.seal_block(body);
                let i = self.b.use_var(index);
                let block_end = self.b.ins().iadd_imm_s(i, REDUCTION_BLOCK);
                let block_end = self.b.ins().smin(block_end, end);
                for (accs, &kind) in vector_accs.iter().zip(&kinds) {
                    for &acc in accs {
                        let v = vector.constant(&mut self.b, identity(kind));
                        self.b.def_var(acc, v);
                    }
                }
                (header, exit, block_end)
            });
            let block_end = blocks.map_or(end, |(_, _, e)| e);
            if unroll > 1 {
                let (l, i) = self.begin_loop_with(index, block_end, width * unroll as i64);
                for u in 0..unroll {
                    let at = self.b.ins().iadd_imm_s(i, width * u as i64);
                    let accs: Vec<Variable> = vector_accs.iter().map(|a| a[u]).collect();
                    self.body(ctx, vector, at, pointers, &accs, None);
                }
                self.end_loop(l);
            }
            let accs: Vec<Variable> = vector_accs.iter().map(|a| a[0]).collect();
            match plan.straight(vector) {
                Some(points) => self.straight(ctx, vector, index, points, pointers, &accs),
                None => {
                    let (l, i) = self.begin_loop_with(index, block_end, width);
                    self.body(ctx, vector, i, pointers, &accs, None);
                    self.end_loop(l);
                }
            }
            // Fold the vector accumulators into the totals: per block, or once.
            for ((accs, &total), &kind) in vector_accs.iter().zip(&block_totals).zip(&kinds) {
                self.fold_into(total, accs, vector, kind);
            }
            if let Some((header, exit, _)) = blocks {
                self.b.ins().jump(header, &[]);
                self.b.seal_block(header);
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
        }
        if tail {
            match plan.straight(scalar) {
                Some(points) => self.straight(ctx, scalar, index, points, pointers, &scalar_accs),
                None => {
                    let (l, i) = self.begin_loop_with(index, end, 1);
                    self.body(ctx, scalar, i, pointers, &scalar_accs, None);
                    self.end_loop(l);
                }
            }
        }

        for (k, (&r, &kind)) in ctx.inner_reduced.iter().zip(&kinds).enumerate() {
            let blocks = self.b.use_var(block_totals[k]);
            let tail = self.b.use_var(scalar_accs[k]);
            let mut total = combine(&mut self.b, kind, blocks, tail);
            let p = pointers[ctx.reduction_access[r]];
            if self.needs_init(ctx, r) {
                let old = self.b.ins().load(scalar.float(), mem_flags(), p, 0);
                total = combine(&mut self.b, kind, old, total);
            }
            self.b.ins().store(mem_flags(), total, p, 0);
        }
    }

    /// `(count, first)` straight points of `lanes` (see [`InnerPlan::straight`]) from the
    /// index in `index`, the index advanced past them.
    fn straight(
        &mut self,
        ctx: &KernelCtx,
        lanes: Lanes,
        index: Variable,
        (count, first): (i64, usize),
        pointers: &[Value],
        accs: &[Variable],
    ) {
        let step = lanes.count() as i64;
        let i = self.b.use_var(index);
        for u in 0..count {
            let at = self.b.ins().iadd_imm_s(i, step * u);
            self.body(ctx, lanes, at, pointers, accs, Some(first + u as usize));
        }
        let next = self.b.ins().iadd_imm_s(i, step * count);
        self.b.def_var(index, next);
    }

    /// A register accumulator of `lanes`, holding the identity of `kind`.
    fn accumulator(&mut self, lanes: Lanes, kind: ReduceKind) -> Variable {
        let var = self.b.declare_var(lanes.float());
        let v = lanes.constant(&mut self.b, identity(kind));
        self.b.def_var(var, v);
        var
    }

    /// `total ← total ⊕ (the lanes of all of accs, combined)`, in a fixed order.
    fn fold_into(&mut self, total: Variable, accs: &[Variable], vector: Lanes, kind: ReduceKind) {
        let mut v = self.b.use_var(accs[0]);
        for &acc in &accs[1..] {
            let w = self.b.use_var(acc);
            v = combine(&mut self.b, kind, v, w);
        }
        let mut block = self.b.ins().extractlane(v, 0);
        for lane in 1..vector.count() {
            let x = self.b.ins().extractlane(v, lane as u8);
            block = combine(&mut self.b, kind, block, x);
        }
        let sum = self.b.use_var(total);
        let sum = combine(&mut self.b, kind, sum, block);
        self.b.def_var(total, sum);
    }

    /// One point (or one vector of points) of the inner loop at index `i`; `point` numbers a
    /// straight point, whose carried accumulators it updates.
    fn body(
        &mut self,
        ctx: &KernelCtx,
        lanes: Lanes,
        i: Value,
        pointers: &[Value],
        accs: &[Variable],
        point: Option<usize>,
    ) {
        let kernel = ctx.kernel;
        let axis = kernel.domain.len() - 1;
        let mut values: Vec<Option<Value>> = vec![None; kernel.exprs.len()];
        let address = |e: &mut Self, access: usize| match ctx.strides[access][axis] {
            Some(stride) => {
                let offset = e.b.ins().imul(i, stride);
                e.b.ins().iadd(pointers[access], offset)
            }
            None => pointers[access],
        };
        for id in 0..kernel.exprs.len() {
            if ctx.level[id] < axis as i32 {
                continue;
            }
            let v = match &kernel.exprs[id] {
                Expr::Load(_) => {
                    let p = address(self, ctx.load_access[&id]);
                    self.b.ins().load(lanes.float(), mem_flags(), p, 0)
                }
                Expr::Const(_) | Expr::DimSize(_) => unreachable!("constant in the whole kernel"),
                Expr::Unary(op, x) => {
                    let x = self.operand(ctx, lanes, &values, *x);
                    lanes.unary(&mut self.b, *op, x)
                }
                Expr::Pow(c, x) => {
                    let x = self.operand(ctx, lanes, &values, *x);
                    lanes.pow(&mut self.b, x, c.get())
                }
                Expr::Binary(op, x, y) => {
                    let x = self.operand(ctx, lanes, &values, *x);
                    let y = self.operand(ctx, lanes, &values, *y);
                    lanes.binary(&mut self.b, *op, x, y)
                }
            };
            values[id] = Some(v);
        }
        for (s, (e, _)) in kernel.stores.iter().enumerate() {
            let v = self.operand(ctx, lanes, &values, *e);
            let p = address(self, ctx.store_access[s]);
            self.b.ins().store(mem_flags(), v, p, 0);
        }
        for (r, reduction) in kernel.reductions.iter().enumerate() {
            let v = self.operand(ctx, lanes, &values, reduction.value);
            let kind = reduction.kind;
            let register = match ctx.inner_reduced.iter().position(|&k| k == r) {
                Some(k) => Some(accs[k]),
                None => (ctx.carried.iter().position(|&c| c == r)).map(|c| {
                    let point = point.expect("carried reductions run on straight points only");
                    ctx.carried_accs[point][c]
                }),
            };
            match register {
                Some(acc) => {
                    let old = self.b.use_var(acc);
                    let new = combine(&mut self.b, kind, old, v);
                    self.b.def_var(acc, new);
                }
                None => {
                    let p = address(self, ctx.reduction_access[r]);
                    let old = self.b.ins().load(lanes.float(), mem_flags(), p, 0);
                    let new = combine(&mut self.b, kind, old, v);
                    self.b.ins().store(mem_flags(), new, p, 0);
                }
            }
        }
    }

    /// The value of expression `id` in the inner loop: computed there, or hoisted and splat.
    fn operand(
        &mut self,
        ctx: &KernelCtx,
        lanes: Lanes,
        values: &[Option<Value>],
        id: ExprId,
    ) -> Value {
        match values[id] {
            Some(v) => v,
            None => {
                let scalar = ctx.outer[id].expect("hoisted values are computed before the loop");
                lanes.splat(&mut self.b, scalar)
            }
        }
    }
}

/// The value a reduction starts from.
fn identity(kind: ReduceKind) -> f64 {
    match kind {
        ReduceKind::Sum => 0.0,
        ReduceKind::Max => f64::NEG_INFINITY,
    }
}

/// Two partial results of a reduction, combined.
fn combine(b: &mut FunctionBuilder, kind: ReduceKind, x: Value, y: Value) -> Value {
    match kind {
        ReduceKind::Sum => b.ins().fadd(x, y),
        ReduceKind::Max => b.ins().fmax(x, y),
    }
}
