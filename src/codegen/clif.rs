//! Code generation: a scheduled [`Program`] becomes native functions, emitted as CLIF and
//! compiled by Cranelift.
//!
//! The program runs as `entry(buffers, sizes, thread, threads, barrier)`: `buffers` holds a base
//! pointer per buffer, `sizes` the value of each symbolic size slot, and every thread of a call
//! runs it with its own `thread` index (see [`super::runtime`]). Steps run in order, with a
//! barrier between two steps where a thread could otherwise touch memory another is using; each
//! step is a function of its own, shared by the steps equal to it up to their buffers (see
//! [`compile`]).
//!
//! A kernel's loop nest walks its domain with one pointer per access, advanced per axis. The
//! innermost axis runs as an `F32X4`/`F64X2` loop (unrolled four times with four accumulators
//! when it is reduced) followed by a scalar tail, when every access moving along it is
//! contiguous; otherwise as a scalar loop. Values that do not change along the inner axes are
//! computed once, in the loop where they do change. Reductions over the inner axis accumulate in
//! registers; others accumulate in the output, which each thread first fills with the identity
//! over its own part.

use super::ParallelMin;
use super::math::Lanes;
use super::runtime::{SpinBarrier, sgn_barrier, sgn_gemm};
use super::schedule::{
    Access, BufferId, Expr, ExprId, Gemm, Kernel, PARTS, Program, ReduceKind, Step,
};
use super::sizes::{Size, SizeSlots};
use crate::ir::DType;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, FuncRef, InstBuilder, MemFlagsData, Signature, UserFuncName, Value, types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa::OwnedTargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use std::collections::HashMap;
use std::sync::Mutex;

/// The generated function: buffer pointers, size slots, thread index, thread count, barrier.
pub type EntryFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *const SpinBarrier);

/// Vector iterations per unrolled step of a reduced inner loop (one accumulator each).
const REDUCTION_UNROLL: usize = 4;

/// Points of a reduced inner loop summed apart before joining the total (a multiple of every
/// unrolled step).
const REDUCTION_BLOCK: i64 = 256;

/// A program compiled to native code. Dropping it frees the code.
pub struct Compiled {
    /// Behind a mutex only so that `Compiled` is `Sync`; it is touched again only to free it.
    module: Mutex<Option<JITModule>>,
    pub entry: EntryFn,
    pub slots: SizeSlots,
    /// What `entry` runs (it holds the table's address).
    _steps: Box<StepTable>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        let module = self.module.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(module) = module.take() {
            // SAFETY: the code is only reachable through `self.entry`, which dies with `self`;
            // callers hold `self` borrowed while running it.
            unsafe { module.free_memory() };
        }
    }
}

/// True if the host has fused multiply-add (and Cranelift will use it).
pub fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn host_isa() -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &str, value: &str| {
        flags
            .set(name, value)
            .map_err(|e| format!("cranelift setting {name}={value}: {e}"))
    };
    set(&mut flags, "opt_level", "speed")?;
    // The CLIF verifier costs as much as the rest of compilation; debug builds (and the fuzz
    // targets) keep it, release builds trust the emitter, which the test suite checks against
    // the interpreter.
    let verify = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    set(&mut flags, "enable_verifier", verify)?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    let isa = cranelift_native::builder().map_err(|e| format!("host not supported: {e}"))?;
    isa.finish(settings::Flags::new(flags))
        .map_err(|e| format!("cannot configure the host ISA: {e}"))
}

/// What [`compile`] is told beyond the program (see [`super::JitOptions`]).
pub struct Settings {
    /// Emit fused multiply-adds (the host must have them).
    pub fma: bool,
    /// Run GEMMs that fit the narrow kernels in them (the host must have AVX-512).
    pub narrow_gemm: bool,
    /// Sizes below which kernels and GEMMs run on one thread.
    pub parallel_min: ParallelMin,
}

/// Compiles `program` to native code.
///
/// Every step becomes a function of its own, `step(buffers, sizes, thread, threads, ids)`, which
/// reaches its buffers as `buffers[ids[i]]` (`i` numbering the buffers it touches in order of
/// first access), so that steps equal up to their buffers — a kernel or GEMM per layer of a deep
/// model — share one compiled function. `entry` hands a table of the steps, each with its
/// function, its `ids` and whether a barrier comes first, to [`sgn_run_steps`], which calls them
/// in order. Cranelift thus compiles a few functions of bounded size, however long the program.
pub fn compile(program: &Program, name: &str, settings: &Settings) -> Result<Compiled, String> {
    let isa = host_isa()?;
    let ptr = isa.pointer_type();
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    builder.symbol("sgn_gemm", sgn_gemm as *const u8);
    builder.symbol("sgn_run_steps", sgn_run_steps as *const u8);
    let mut module = JITModule::new(builder);
    let err = |what: &str, e: &dyn std::fmt::Display| format!("JIT of graph '{name}': {what}: {e}");

    let mut entry_sig = module.make_signature();
    for ty in [ptr, ptr, types::I64, types::I64, ptr] {
        entry_sig.params.push(AbiParam::new(ty));
    }
    let step_sig = entry_sig.clone();
    let mut run_steps_sig = entry_sig.clone();
    run_steps_sig.params.insert(0, AbiParam::new(ptr));
    let mut gemm_sig = module.make_signature();
    gemm_sig.params.push(AbiParam::new(types::I64));
    for ty in [types::I64, types::I64, types::I64] {
        gemm_sig.params.push(AbiParam::new(ty));
    }
    for _ in 0..3 {
        gemm_sig.params.push(AbiParam::new(ptr));
        gemm_sig.params.push(AbiParam::new(types::I64));
        gemm_sig.params.push(AbiParam::new(types::I64));
    }
    // thread, threads, parallel_min, allow_narrow
    for _ in 0..4 {
        gemm_sig.params.push(AbiParam::new(types::I64));
    }

    let entry_id = module
        .declare_function("entry", Linkage::Local, &entry_sig)
        .map_err(|e| err("declare", &e))?;
    let gemm_id = module
        .declare_function("sgn_gemm", Linkage::Import, &gemm_sig)
        .map_err(|e| err("declare", &e))?;
    let run_steps_id = module
        .declare_function("sgn_run_steps", Linkage::Import, &run_steps_sig)
        .map_err(|e| err("declare", &e))?;

    let mut functions = Functions {
        module,
        settings,
        ctx: Context::new(),
        fctx: FunctionBuilderContext::new(),
        slots: SizeSlots::default(),
        dtype: program.dtype,
    };
    let define = |functions: &mut Functions,
                  id,
                  sig: &Signature,
                  body: &mut dyn FnMut(&mut Emitter, &[Value])| {
        functions
            .define(id, sig, body)
            .map_err(|e| err("compile", &e))
    };

    // One function per distinct step.
    let mut step_functions: HashMap<String, FuncId> = HashMap::new();
    let mut planned: Vec<(FuncId, Box<[i64]>)> = Vec::with_capacity(program.steps.len());
    for step in &program.steps {
        let (local, buffers) = with_local_buffers(step);
        let key = format!("{local:?}");
        let function = match step_functions.get(&key) {
            Some(&id) => id,
            None => {
                let id = functions
                    .module
                    .declare_anonymous_function(&step_sig)
                    .map_err(|e| err("declare", &e))?;
                define(&mut functions, id, &step_sig, &mut |e, _| match &local {
                    Step::Kernel(k) => e.kernel(k),
                    Step::Gemm(g) => {
                        let shim = e.import(gemm_id);
                        e.gemm(g, shim);
                    }
                })?;
                step_functions.insert(key, id);
                id
            }
        };
        planned.push((function, buffers));
    }

    // The table `entry` runs; its address is fixed before the functions it lists are.
    let mut steps = Box::new(StepTable::default());
    let table = std::ptr::from_ref::<StepTable>(&steps) as i64;
    define(&mut functions, entry_id, &entry_sig, &mut |e, params| {
        let run_steps = e.import(run_steps_id);
        let mut args = vec![e.b.ins().iconst(ptr, table)];
        args.extend_from_slice(params);
        e.b.ins().call(run_steps, &args);
    })?;

    let Functions {
        mut module, slots, ..
    } = functions;
    module.finalize_definitions().map_err(|e| err("link", &e))?;
    steps.steps = planned
        .into_iter()
        .zip(program.barriers())
        .map(|((function, buffers), barrier_before)| {
            let code = module.get_finalized_function(function);
            CompiledStep {
                // SAFETY: `code` was compiled from a function with exactly this signature.
                function: unsafe { std::mem::transmute::<*const u8, StepFn>(code) },
                buffers,
                barrier_before,
            }
        })
        .collect();
    let code = module.get_finalized_function(entry_id);
    // SAFETY: `code` was compiled from a function with exactly this signature.
    let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
    Ok(Compiled {
        module: Mutex::new(Some(module)),
        entry,
        slots,
        _steps: steps,
    })
}

/// A step's function: buffer pointers, size slots, thread index, thread count, and the indices
/// in the buffer pointers of the buffers it touches.
type StepFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *const i64);

/// A program's steps as `entry` runs them.
#[derive(Default)]
struct StepTable {
    steps: Vec<CompiledStep>,
}

struct CompiledStep {
    function: StepFn,
    /// The buffer (index in the buffer pointers) of each of the step's own buffer numbers.
    buffers: Box<[i64]>,
    /// Threads meet at the barrier before the step.
    barrier_before: bool,
}

/// Runs a program's steps in order: what the generated `entry` calls.
///
/// # Safety
/// `table` must point to the live [`StepTable`] of the compiled program; the other arguments are
/// `entry`'s, and must be valid for it.
unsafe extern "C" fn sgn_run_steps(
    table: *const StepTable,
    buffers: *const *mut u8,
    sizes: *const i64,
    thread: i64,
    threads: i64,
    barrier: *const SpinBarrier,
) {
    // SAFETY: as documented above; `Compiled` owns the table and outlives every call.
    let table = unsafe { &*table };
    for step in &table.steps {
        if step.barrier_before {
            // SAFETY: `barrier` is `entry`'s, live for the call.
            unsafe { sgn_barrier(barrier) };
        }
        // SAFETY: the function was compiled for these arguments and these buffer indices.
        unsafe { (step.function)(buffers, sizes, thread, threads, step.buffers.as_ptr()) };
    }
}

/// `step` with its buffers numbered in order of first access, and the buffer each number stands
/// for.
fn with_local_buffers(step: &Step) -> (Step, Box<[i64]>) {
    let mut local = step.clone();
    let mut buffers: Vec<i64> = Vec::new();
    let mut renumber = |buffer: &mut BufferId| {
        let global = *buffer as i64;
        *buffer = match buffers.iter().position(|&b| b == global) {
            Some(i) => i,
            None => {
                buffers.push(global);
                buffers.len() - 1
            }
        };
    };
    match &mut local {
        Step::Kernel(k) => k.accesses_mut().for_each(|a| renumber(&mut a.buffer)),
        Step::Gemm(g) => [&mut g.a, &mut g.b, &mut g.c]
            .into_iter()
            .for_each(|m| renumber(&mut m.buffer)),
    }
    (local, buffers.into_boxed_slice())
}

/// The module being filled and the state its function definitions share.
struct Functions<'a> {
    module: JITModule,
    settings: &'a Settings,
    ctx: Context,
    fctx: FunctionBuilderContext,
    /// Size slots, shared by every function (they all read the one `sizes` table).
    slots: SizeSlots,
    dtype: DType,
}

impl Functions<'_> {
    /// Defines function `id` with `signature`: `body` emits its instructions (given the entry
    /// block's parameters: buffer table, sizes, thread, threads, …), then it returns.
    fn define(
        &mut self,
        id: FuncId,
        signature: &Signature,
        body: &mut dyn FnMut(&mut Emitter, &[Value]),
    ) -> Result<(), String> {
        self.ctx.func.signature = signature.clone();
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let block = b.create_block();
            b.append_block_params_for_function_params(block);
            b.switch_to_block(block);
            b.seal_block(block);
            let params = b.block_params(block).to_vec();
            let mut e = Emitter {
                b,
                module: &mut self.module,
                dtype: self.dtype,
                fma: self.settings.fma,
                narrow_gemm: self.settings.narrow_gemm,
                parallel_min: self.settings.parallel_min,
                esize: self.dtype.size_bytes() as i64,
                buffers: params[0],
                sizes: params[1],
                thread: params[2],
                threads: params[3],
                buffer_ids: params[4],
                slots: &mut self.slots,
            };
            body(&mut e, &params);
            e.b.ins().return_(&[]);
            e.b.finalize(e.module.target_config());
        }
        let defined = self.module.define_function(id, &mut self.ctx);
        self.module.clear_context(&mut self.ctx);
        defined.map_err(|e| format!("{e:?}"))
    }
}

/// A loop being emitted: `for i in start..end step` with `i` in `var`.
struct Loop {
    var: Variable,
    header: cranelift_codegen::ir::Block,
    exit: cranelift_codegen::ir::Block,
    step: i64,
}

struct Emitter<'f, 's> {
    b: FunctionBuilder<'f>,
    module: &'s mut JITModule,
    dtype: DType,
    fma: bool,
    narrow_gemm: bool,
    parallel_min: ParallelMin,
    esize: i64,
    /// A base pointer per buffer of the program.
    buffers: Value,
    sizes: Value,
    thread: Value,
    threads: Value,
    /// In a step's function: the index in `buffers` of each of the step's own buffer numbers.
    buffer_ids: Value,
    slots: &'s mut SizeSlots,
}

/// The per-kernel facts the loop emitters share.
struct KernelCtx<'k> {
    kernel: &'k Kernel,
    /// Every access: loads (in expression order), then stores, then reduction outputs.
    accesses: Vec<&'k Access>,
    load_access: HashMap<ExprId, usize>,
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
}

impl Emitter<'_, '_> {
    fn lanes(&self, vector: bool) -> Lanes {
        Lanes {
            dtype: self.dtype,
            vector,
            fma: self.fma,
        }
    }

    /// A runtime size: a constant, or a load from its slot.
    fn size(&mut self, s: &Size) -> Value {
        match s.as_fixed() {
            Some(n) => self.b.ins().iconst(types::I64, n as i64),
            None => {
                let slot = self.slots.slot(s);
                let flags = MemFlagsData::trusted().with_readonly();
                self.b
                    .ins()
                    .load(types::I64, flags, self.sizes, (slot * 8) as i32)
            }
        }
    }

    /// `buffers[buffer_ids[buffer]] + offset·esize`, for the step's own buffer number `buffer`.
    fn base_pointer(&mut self, buffer: usize, offset: &Size) -> Value {
        let flags = MemFlagsData::trusted().with_readonly();
        let index = self
            .b
            .ins()
            .load(types::I64, flags, self.buffer_ids, (buffer * 8) as i32);
        let at = self.b.ins().ishl_imm_u(index, 3);
        let at = self.b.ins().iadd(self.buffers, at);
        let base = self.b.ins().load(types::I64, flags, at, 0);
        if offset.is_zero() {
            return base;
        }
        let offset = self.size(offset);
        let bytes = self.b.ins().imul_imm_s(offset, self.esize);
        self.b.ins().iadd(base, bytes)
    }

    fn begin_loop(&mut self, start: Value, end: Value, step: i64) -> (Loop, Value) {
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, start);
        self.begin_loop_with(var, end, step)
    }

    /// A loop continuing the index in `var`: runs while `i + step ≤ end`.
    fn begin_loop_with(&mut self, var: Variable, end: Value, step: i64) -> (Loop, Value) {
        let header = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let cond = if step == 1 {
            self.b.ins().icmp(IntCC::SignedLessThan, i, end)
        } else {
            let next = self.b.ins().iadd_imm_s(i, step);
            self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end)
        };
        self.b.ins().brif(cond, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        self.b.seal_block(body);
        let i = self.b.use_var(var);
        (
            Loop {
                var,
                header,
                exit,
                step,
            },
            i,
        )
    }

    fn end_loop(&mut self, l: Loop) {
        let i = self.b.use_var(l.var);
        let next = self.b.ins().iadd_imm_s(i, l.step);
        self.b.def_var(l.var, next);
        self.b.ins().jump(l.header, &[]);
        self.b.seal_block(l.header);
        self.b.switch_to_block(l.exit);
        self.b.seal_block(l.exit);
    }

    /// A function of the module, callable from the one being emitted.
    fn import(&mut self, function: FuncId) -> FuncRef {
        self.module.declare_func_in_func(function, self.b.func)
    }

    fn gemm(&mut self, g: &Gemm, shim: FuncRef) {
        let is_f64 = self
            .b
            .ins()
            .iconst(types::I64, i64::from(self.dtype == DType::F64));
        let mut args = vec![is_f64, self.size(&g.m), self.size(&g.k), self.size(&g.n)];
        for mat in [&g.a, &g.b, &g.c] {
            let p = self.base_pointer(mat.buffer, &mat.offset);
            args.push(p);
            args.push(self.size(&mat.row_stride));
            args.push(self.size(&mat.col_stride));
        }
        args.push(self.thread);
        args.push(self.threads);
        let parallel_min = self.parallel_min.gemm_multiply_adds;
        args.push(self.b.ins().iconst(types::I64, parallel_min));
        args.push(self.b.ins().iconst(types::I64, i64::from(self.narrow_gemm)));
        self.b.ins().call(shim, &args);
    }

    fn kernel(&mut self, k: &Kernel) {
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
        let mut load_access = HashMap::new();
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
        };

        for r in 0..k.reductions.len() {
            if self.needs_init(&ctx, r) {
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
            _ => self.nest(&mut ctx, 0, &bases),
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
        let identity = match reduction.kind {
            ReduceKind::Sum => 0.0,
            ReduceKind::Max => f64::NEG_INFINITY,
        };
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
        let v = self.lanes(false).constant(&mut self.b, identity);
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
                Expr::Const(c) => lanes.constant(&mut self.b, *c),
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
                    lanes.pow(&mut self.b, x, *c)
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

    /// The innermost axis: vector loops (unrolled when reducing), a scalar tail, then the
    /// register accumulators written out.
    fn inner_loops(&mut self, ctx: &mut KernelCtx, pointers: &[Value]) {
        let kernel = ctx.kernel;
        let axis = kernel.domain.len() - 1;
        let (start, end) = ctx.ranges[axis];
        let scalar = self.lanes(false);
        let vector = self.lanes(true);
        let identity = |kind: ReduceKind| match kind {
            ReduceKind::Sum => 0.0,
            ReduceKind::Max => f64::NEG_INFINITY,
        };
        // The inner extent, when it is a constant this thread runs whole: loops that would
        // never run are left out.
        let whole = kernel.split != Some(axis) && !(kernel.parts && axis == 0);
        let fixed = kernel.domain[axis].as_fixed().filter(|_| whole);
        let width = vector.count() as u64;
        let unroll = if ctx.vector && !ctx.inner_reduced.is_empty() {
            REDUCTION_UNROLL
        } else {
            1
        };
        let unrolled = unroll > 1 && fixed.is_none_or(|n| n >= width * unroll as u64);
        let vectors = ctx.vector && fixed.is_none_or(|n| n >= width);
        let tail = fixed.is_none_or(|n| !vectors || n % width != 0);
        let blocked = !ctx.inner_reduced.is_empty()
            && vectors
            && fixed.is_none_or(|n| n > REDUCTION_BLOCK as u64);
        // Accumulators: per inner-reduced reduction, `unroll` vectors and one scalar.
        let mut vector_accs: Vec<Vec<Variable>> = Vec::new();
        let mut scalar_accs: Vec<Variable> = Vec::new();
        for &r in &ctx.inner_reduced {
            let id = identity(kernel.reductions[r].kind);
            if ctx.vector {
                let accs = (0..unroll)
                    .map(|_| {
                        let var = self.b.declare_var(vector.float());
                        let v = vector.constant(&mut self.b, id);
                        self.b.def_var(var, v);
                        var
                    })
                    .collect();
                vector_accs.push(accs);
            }
            let var = self.b.declare_var(scalar.float());
            let v = scalar.constant(&mut self.b, id);
            self.b.def_var(var, v);
            scalar_accs.push(var);
        }

        let combine = |b: &mut FunctionBuilder, kind: ReduceKind, x: Value, y: Value| match kind {
            ReduceKind::Sum => b.ins().fadd(x, y),
            ReduceKind::Max => b.ins().fmax(x, y),
        };
        // Per inner-reduced reduction: the combined totals of finished blocks.
        let block_totals: Vec<Variable> = ctx
            .inner_reduced
            .iter()
            .map(|&r| {
                let var = self.b.declare_var(scalar.float());
                let v = scalar.constant(&mut self.b, identity(kernel.reductions[r].kind));
                self.b.def_var(var, v);
                var
            })
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
                for (k, &r) in ctx.inner_reduced.iter().enumerate() {
                    let id = identity(kernel.reductions[r].kind);
                    for &acc in &vector_accs[k] {
                        let v = vector.constant(&mut self.b, id);
                        self.b.def_var(acc, v);
                    }
                }
                (header, exit, block_end)
            });
            let block_end = blocks.map_or(end, |(_, _, e)| e);
            if unrolled {
                let (l, i) = self.begin_loop_with(index, block_end, width * unroll as i64);
                for u in 0..unroll {
                    let at = self.b.ins().iadd_imm_s(i, width * u as i64);
                    let accs: Vec<Variable> = vector_accs.iter().map(|a| a[u]).collect();
                    self.body(ctx, vector, at, pointers, &accs);
                }
                self.end_loop(l);
            }
            let (l, i) = self.begin_loop_with(index, block_end, width);
            let accs: Vec<Variable> = vector_accs.iter().map(|a| a[0]).collect();
            self.body(ctx, vector, i, pointers, &accs);
            self.end_loop(l);
            // Fold the vector accumulators into the totals: per block, or once.
            for (k, &r) in ctx.inner_reduced.iter().enumerate() {
                let kind = kernel.reductions[r].kind;
                let mut v = self.b.use_var(vector_accs[k][0]);
                for &acc in &vector_accs[k][1..] {
                    let w = self.b.use_var(acc);
                    v = combine(&mut self.b, kind, v, w);
                }
                let mut block = self.b.ins().extractlane(v, 0);
                for lane in 1..vector.count() {
                    let x = self.b.ins().extractlane(v, lane as u8);
                    block = combine(&mut self.b, kind, block, x);
                }
                let total = self.b.use_var(block_totals[k]);
                let total = combine(&mut self.b, kind, total, block);
                self.b.def_var(block_totals[k], total);
            }
            if let Some((header, exit, _)) = blocks {
                self.b.ins().jump(header, &[]);
                self.b.seal_block(header);
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
        }
        if tail {
            let (l, i) = self.begin_loop_with(index, end, 1);
            self.body(ctx, scalar, i, pointers, &scalar_accs);
            self.end_loop(l);
        }

        for (k, &r) in ctx.inner_reduced.iter().enumerate() {
            let kind = kernel.reductions[r].kind;
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

    /// One point (or one vector of points) of the inner loop at index `i`.
    fn body(
        &mut self,
        ctx: &KernelCtx,
        lanes: Lanes,
        i: Value,
        pointers: &[Value],
        accs: &[Variable],
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
                    lanes.pow(&mut self.b, x, *c)
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
            let combined = |b: &mut FunctionBuilder, x: Value| match reduction.kind {
                ReduceKind::Sum => b.ins().fadd(x, v),
                ReduceKind::Max => b.ins().fmax(x, v),
            };
            match ctx.inner_reduced.iter().position(|&k| k == r) {
                Some(k) => {
                    let acc = self.b.use_var(accs[k]);
                    let acc = combined(&mut self.b, acc);
                    self.b.def_var(accs[k], acc);
                }
                None => {
                    let p = address(self, ctx.reduction_access[r]);
                    let old = self.b.ins().load(lanes.float(), mem_flags(), p, 0);
                    let new = combined(&mut self.b, old);
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

/// Flags of every data access: unaligned, never trapping (addresses come from the plan).
fn mem_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}
