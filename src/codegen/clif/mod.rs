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
//! when it is reduced over at least four vectors) followed by a scalar tail, when every access
//! moving along it is contiguous; otherwise as a scalar loop. An inner axis whose extent is known
//! when compiled and which each thread runs whole is straight-line code instead when short: at
//! most 8 vectors (under 4 when reduced), and a tail of at most 8 points. Values that do not
//! change along the inner axes are computed once, in the loop where they do change. Reductions
//! over the inner axis accumulate in registers; so do reductions over every outer axis of a
//! straight inner axis (one register per inner point, at most 8 a kernel, stored after the
//! nest); others accumulate in the output, which each thread first fills with the identity over
//! its own part.

mod kernel;

use super::ParallelMin;
use super::math::Lanes;
use super::program::{BufferId, Gemm, Program, Side, Step};
use super::runtime::{ImageCall, Kernels, SizeValue, SpinBarrier, sgn_barrier, sgn_gemm};
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
use rustc_hash::FxHashMap;
use std::sync::Mutex;

/// The generated function: buffer pointers, size slots, thread index, thread count, barrier.
pub type EntryFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *const SpinBarrier);

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
    /// The kernels GEMMs may run in (the host must have what they need).
    pub kernels: Kernels,
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
    let gemm_sig = gemm_signature(&module, ptr);

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

    // One function per distinct step; the family's kernels run convolutions and pooling.
    let mut step_functions: FxHashMap<Step, FuncId> = FxHashMap::default();
    let mut planned: Vec<(Planned, Box<[i64]>)> = Vec::with_capacity(program.steps.len());
    for step in &program.steps {
        let (local, buffers) = with_local_buffers(step);
        if let Step::Image(image) = &local {
            let mut value = |s: &Size| match s.as_fixed() {
                Some(n) => SizeValue::Fixed(n as i64),
                None => SizeValue::Slot(functions.slots.slot(s)),
            };
            let call = ImageCall {
                kernel: image.kernel,
                is_f64: program.dtype == DType::F64,
                images: value(&image.images),
                operands: image
                    .operands
                    .iter()
                    .map(|d| (d.buffer, value(&d.offset)))
                    .collect(),
                out: (image.out.buffer, value(&image.out.offset)),
            };
            planned.push((Planned::Image(Box::new(call)), buffers));
            continue;
        }
        let function = match step_functions.get(&local) {
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
                    Step::Image(_) => unreachable!("run by the family's kernel"),
                })?;
                step_functions.insert(local, id);
                id
            }
        };
        planned.push((Planned::Jit(function), buffers));
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
        .map(|((planned, buffers), barrier_before)| CompiledStep {
            code: match planned {
                Planned::Jit(function) => {
                    let code = module.get_finalized_function(function);
                    // SAFETY: `code` was compiled from a function with exactly this signature.
                    StepCode::Jit(unsafe { std::mem::transmute::<*const u8, StepFn>(code) })
                }
                Planned::Image(call) => StepCode::Image(call),
            },
            buffers,
            barrier_before,
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

/// The signature of [`sgn_gemm`]: is_f64, m, k, n, three (pointer, row stride, column stride)
/// matrices, thread, threads, parallel_min, kernels, site, fixed.
fn gemm_signature(module: &JITModule, ptr: types::Type) -> Signature {
    let mut sig = module.make_signature();
    let i64s = |sig: &mut Signature, n: usize| {
        (0..n).for_each(|_| sig.params.push(AbiParam::new(types::I64)));
    };
    i64s(&mut sig, 4);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(ptr));
        i64s(&mut sig, 2);
    }
    i64s(&mut sig, 6);
    sig
}

/// A step's function: buffer pointers, size slots, thread index, thread count, and the indices
/// in the buffer pointers of the buffers it touches.
type StepFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *const i64);

/// A program's steps as `entry` runs them.
#[derive(Default)]
struct StepTable {
    steps: Vec<CompiledStep>,
}

/// A step before linking: the function to be compiled, or the family's kernel to call.
enum Planned {
    Jit(FuncId),
    Image(Box<ImageCall>),
}

enum StepCode {
    Jit(StepFn),
    Image(Box<ImageCall>),
}

struct CompiledStep {
    code: StepCode,
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
        match &step.code {
            // SAFETY: the function was compiled for these arguments and these buffer indices.
            StepCode::Jit(function) => unsafe {
                function(buffers, sizes, thread, threads, step.buffers.as_ptr())
            },
            // SAFETY: the call was planned for these buffers and sizes.
            StepCode::Image(call) => unsafe {
                call.run(buffers, sizes, thread, threads, &step.buffers)
            },
        }
    }
}

/// `step` with its buffers numbered in order of first access, and the buffer each number stands
/// for.
fn with_local_buffers(step: &Step) -> (Step, Box<[i64]>) {
    let mut local = step.clone();
    let mut buffers: Vec<i64> = Vec::new();
    let renumber = |buffer: &mut BufferId| {
        let global = *buffer as i64;
        *buffer = match buffers.iter().position(|&b| b == global) {
            Some(i) => i,
            None => {
                buffers.push(global);
                buffers.len() - 1
            }
        };
    };
    local.buffers_mut().into_iter().for_each(renumber);
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
                kernels: self.settings.kernels,
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
    kernels: Kernels,
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
        args.push(self.b.ins().iconst(types::I64, self.kernels as i64));
        args.push(self.b.ins().iconst(types::I64, g.site as i64));
        args.push(self.b.ins().iconst(types::I64, Side::code(g.fixed)));
        self.b.ins().call(shim, &args);
    }
}

/// Flags of every data access: unaligned, never trapping (addresses come from the plan).
fn mem_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}
