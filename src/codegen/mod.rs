//! The JIT backend: graphs compiled to native code with Cranelift.
//!
//! [`compile_graph`] turns any valid [`Graph`] into a [`JitGraph`], in four stages:
//! 1. `schedule`: elementwise ops, broadcasts and reductions are fused into loop nests (one
//!    pass over memory per group), matmuls become GEMM calls on strided operands (so transposes
//!    cost nothing) whose epilogues (bias, activation, derivative products) run in the fused loop
//!    that follows; GEMMs go through one `extern "C"` shim to the `gemm` crate, or for narrow
//!    right-hand sides (≤ 32 columns) to AVX-512 kernels of this crate (`narrow`);
//! 2. code generation (`clif`): one native function per graph, with SIMD loops, scalar tails,
//!    register accumulators and the polynomial math kernels of `math` (`exp`, `log`, …);
//! 3. a memory plan per binding of the symbolic dimensions (`plan`): temporaries share one arena
//!    by lifetime, planned once per distinct batch size and reused;
//! 4. threads (`runtime`): every thread runs the function on its own share of each step, so
//!    results are the same for any thread count.
//!
//! [`JitGraph::run`] has the contract of [`interp::run`]: arguments are checked by
//! [`interp::bind_dims`] at the boundary (wrong shapes are errors, never undefined behaviour),
//! outputs come back in the order of `graph.outputs()`. [`JitGraph::run_into`] writes into
//! caller-owned outputs, so repeated calls allocate nothing.
//!
//! ```
//! use sgn::codegen::{JitOptions, compile_graph};
//! use sgn::ir::{ArgRole, DType, Dim, Graph, Shape, Tensor, TensorType, UnaryOp};
//!
//! // total = sum(relu(x)) for x: f64[B, 2]
//! let mut graph = Graph::new("demo");
//! let x_type = TensorType::new(DType::F64, Shape(vec![Dim::sym("B"), Dim::fixed(2)]));
//! let x = graph.add_arg("x", ArgRole::Input, x_type);
//! let relu = graph.unary(UnaryOp::Relu, x)?;
//! let total = graph.sum(relu, &[0, 1])?;
//! graph.add_output("total", total);
//!
//! let jit = compile_graph(&graph, &JitOptions::default())?;
//! let x_value = Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, -2.0, 3.0, -4.0])
//!     .ok_or("4 values fill a 2×2 tensor")?;
//! let outputs = jit.run(&[x_value])?;
//! assert_eq!(outputs[0].scalar_value(), Some(4.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bf16;
mod clif;
mod error;
mod math;
mod narrow;
mod plan;
mod program;
mod roofline;
mod runtime;
mod schedule;
pub use schedule::MAX_FUSED_EXPRS;
mod sizes;

pub use clif::host_has_fma;
pub use roofline::{Roofline, roofline_graph};

use crate::ir::memory;
use crate::ir::{Bindings, DType, Graph, Tensor, interp};
pub use bf16::PackCache;
pub use error::{Error, Result};
use plan::Plan;
use program::{BufferKind, Program};
pub use runtime::Pool;
pub(crate) use runtime::split_mut;
use runtime::{Kernels, SpinBarrier};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Options for [`compile_graph`].
///
/// ```
/// use sgn::codegen::{JitOptions, compile_graph};
/// use sgn::ir::{ArgRole, BinaryOp, DType, Graph, Shape, Tensor, TensorType};
///
/// let options = JitOptions::default().with_threads(2);
/// assert_eq!(options.thread_count(), 2);
/// assert!(!options.bf16_products); // off unless asked for
///
/// // y = x · x, elementwise
/// let mut g = Graph::new("square");
/// let x = g.add_arg("x", ArgRole::Input, TensorType::new(DType::F32, Shape::fixed(&[4])));
/// let y = g.binary(BinaryOp::Mul, x, x)?;
/// g.add_output("y", y);
/// let jit = compile_graph(&g, &options)?;
/// assert_eq!(jit.threads(), 2);
/// let x = Tensor::from_f64(DType::F32, &[4], vec![1.0, -2.0, 3.0, 0.5]).expect("4 values");
/// assert_eq!(jit.run(&[x])?[0].to_f64_vec(), [1.0, 4.0, 9.0, 0.25]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct JitOptions {
    /// Threads that run each call, at most [`MAX_THREADS`]; 0 means one per available core.
    pub threads: usize,
    /// Sizes below which work stays on one thread.
    pub parallel_min: ParallelMin,
    /// Which kernels run the matrix products.
    pub gemm: GemmKernels,
    /// Fused multiply-add in the generated loops and approximations (by default where the host
    /// has it; compiling with it on a host without it is an error). The GEMM kernels choose
    /// their own instructions.
    pub fma: bool,
    /// Run the matrix products of an f32 graph on bf16 operands with f32 sums (AVX512-BF16's
    /// dot products, or AMX tiles where the CPU has them and Linux grants them,
    /// [`bf16_products_unit`]): half the bytes and twice the multiply-adds per instruction, for products
    /// that only need to approximate, such as CG's `G v`. Products with at most 32 rows,
    /// columns or inner length, where packing would cost more than it saves, stay f32 (in the
    /// narrow kernels where they fit). Off by default; compiling with it fails on a host without AVX512-BF16
    /// ([`host_has_bf16_products`]) and for f64 graphs.
    pub bf16_products: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            threads: 0,
            parallel_min: ParallelMin::default(),
            gemm: GemmKernels::Auto,
            fma: host_has_fma(),
            bf16_products: false,
        }
    }
}

/// The most threads one compiled graph may run on (graphs of one thread count share their
/// threads), within what an OS gives a process.
pub const MAX_THREADS: usize = 256;

impl JitOptions {
    /// The thread count these options give on this machine (one per core for 0, at most
    /// [`MAX_THREADS`] then).
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
            n => n,
        }
    }

    /// These options with `threads` threads per call.
    pub fn with_threads(mut self, threads: usize) -> JitOptions {
        self.threads = threads;
        self
    }
}

/// The sizes below which work runs on one thread, because waking the others would cost more
/// than they save. [`ParallelMin::NONE`] splits everything, so that tests take the split paths
/// (and check that results do not depend on the thread count) on small inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParallelMin {
    /// Floating-point operations of a whole call (see [`JitGraph::flops`]).
    pub call_flops: f64,
    /// Points of a fused loop nest.
    pub kernel_points: i64,
    /// Multiply-adds of one matrix product: smaller products run whole on one thread, larger
    /// ones in parts fixed by their shape (so that results do not depend on the thread count).
    pub gemm_multiply_adds: i64,
}

impl ParallelMin {
    /// Every call, kernel and product split across the threads.
    pub const NONE: ParallelMin = ParallelMin {
        call_flops: 0.0,
        kernel_points: 0,
        gemm_multiply_adds: 0,
    };
}

impl Default for ParallelMin {
    fn default() -> ParallelMin {
        ParallelMin {
            call_flops: 2.0e5,
            kernel_points: 1 << 12,
            gemm_multiply_adds: 1 << 16,
        }
    }
}

/// Which kernels run the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GemmKernels {
    /// The narrow kernels where they apply (a right-hand side of at most 32 contiguous columns,
    /// or at most 32×32 in any layout) and the host has AVX-512, the `gemm` crate for the rest.
    #[default]
    Auto,
    /// The narrow kernels wherever they apply; compiling fails on a host without AVX-512.
    Narrow,
    /// The `gemm` crate for every product.
    General,
}

impl GemmKernels {
    /// Whether products that fit the narrow kernels run in them on this host; an error for
    /// [`GemmKernels::Narrow`] on a host that cannot run them.
    fn use_narrow(self) -> Result<bool> {
        match self {
            GemmKernels::Auto => Ok(narrow::available()),
            GemmKernels::General => Ok(false),
            GemmKernels::Narrow if narrow::available() => Ok(true),
            GemmKernels::Narrow => Err(Error::Jit(
                "GemmKernels::Narrow: the narrow GEMM kernels need AVX-512F, which this host \
                 does not have"
                    .into(),
            )),
        }
    }
}

/// True if this host can run matrix products on bf16 operands ([`JitOptions::bf16_products`]).
pub fn host_has_bf16_products() -> bool {
    bf16::available()
}

/// Runs `executable` on `args` into `outputs`, allocated if empty, with `kept` for its packed
/// operands ([`Backend::run_into_keeping`]): as CG runs gv-apply, call after call.
pub fn run_keeping(
    executable: &dyn Backend,
    args: &[&Tensor],
    outputs: &mut Vec<Tensor>,
    kept: &PackCache,
) -> Result<()> {
    if outputs.is_empty() {
        *outputs = executable.output_tensors(&interp::bind_dims(executable.graph(), args)?)?;
    }
    executable.run_into_keeping(args, outputs, kept)
}

/// What runs the bf16 products on this host: AMX tiles, or AVX512-BF16's dot products and why
/// not the tiles (decided once per process: CPU, OS permission, and a check of one product).
pub fn bf16_products_unit() -> String {
    match bf16::amx::status() {
        Ok(()) => "AMX tiles".to_string(),
        Err(why) => format!("AVX512-BF16 (not AMX: {why})"),
    }
}

/// True if this host can run the narrow GEMM kernels ([`GemmKernels::Narrow`]).
pub fn host_has_narrow_kernels() -> bool {
    narrow::available()
}

/// Something that evaluates a graph: the reference interpreter or the JIT.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `"interpreter"` or `"jit"`.
    fn name(&self) -> &'static str;

    /// The graph this backend evaluates.
    fn graph(&self) -> &Graph;

    /// Evaluates the graph with the contract of [`interp::run`].
    fn run(&self, args: &[Tensor]) -> Result<Vec<Tensor>>;

    /// Evaluates the graph into `outputs`, which must have the outputs' dtypes and shapes (as
    /// returned by [`Backend::run`] for these arguments) in standard layout.
    fn run_into(&self, args: &[Tensor], outputs: &mut [Tensor]) -> Result<()>;

    /// [`Backend::run`] on borrowed arguments (a batch read by several graphs is not copied).
    fn run_borrowed(&self, args: &[&Tensor]) -> Result<Vec<Tensor>>;

    /// [`Backend::run_into`] on borrowed arguments.
    fn run_into_borrowed(&self, args: &[&Tensor], outputs: &mut [Tensor]) -> Result<()>;

    /// [`Backend::run_into_borrowed`] with the packings of the bf16 products' fixed operands
    /// kept in `kept` between calls (the caller vouches for the arguments, see [`PackCache`]);
    /// backends without packed products ignore it.
    fn run_into_keeping(
        &self,
        args: &[&Tensor],
        outputs: &mut [Tensor],
        _kept: &PackCache,
    ) -> Result<()> {
        self.run_into_borrowed(args, outputs)
    }

    /// Zero tensors shaped like the outputs under `bindings` (see [`interp::bind_dims`]), to
    /// pass to [`Backend::run_into`].
    /// Errors: an output past the memory available (all of them counted before any is made).
    fn output_tensors(&self, bindings: &Bindings) -> Result<Vec<Tensor>> {
        let graph = self.graph();
        let shapes = graph
            .outputs()
            .iter()
            .map(|o| {
                Ok((
                    graph.ty(o.node).dtype,
                    output_shape(graph, o.node, bindings)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = shapes.iter().try_fold(0u64, |sum, (dtype, shape)| {
            sum.checked_add(memory::tensor_bytes(*dtype, shape)?)
        });
        memory::ensure_available(bytes, || format!("the outputs of graph '{}'", graph.name))?;
        Ok(shapes
            .iter()
            .map(|(dtype, shape)| Tensor::zeros(*dtype, shape))
            .collect())
    }
}

/// Which backend to compile a graph for.
///
/// The interpreter is the reference the JIT is checked against: a model compiled for each
/// computes the same loss, up to the rounding of the JIT's own `tanh`.
///
/// ```
/// use sgn::autodiff::GraphName;
/// use sgn::codegen::BackendKind;
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
/// use sgn::{CompileOptions, Model};
///
/// assert_eq!(BackendKind::from_name("interp"), Some(BackendKind::Interpreter));
/// assert_eq!(BackendKind::default().name(), "jit");
/// assert_eq!(BackendKind::from_name("gpu"), None);
///
/// let model = Model::parse(
///     "model m\ninput x: f64[B, 2]\ntarget y: f64[B, 1]\nparam w: f64[2, 1] = glorot_uniform\n\
///      output z = tanh(x @ w)\nloss mse(z, y)\n",
/// )?;
/// let params = init_params(&model.params, 1)?;
/// let mut batch = TensorMap::new();
/// let x = vec![0.3, -1.2, 2.0, 0.7];
/// batch.insert("x", Tensor::from_f64(DType::F64, &[2, 2], x).expect("2×2 values"));
/// batch.insert("y", Tensor::from_f64(DType::F64, &[2, 1], vec![0.5, -0.5]).expect("2 values"));
/// let mut losses = Vec::new();
/// for (backend, name) in [(BackendKind::Interpreter, "interpreter"), (BackendKind::Jit, "jit")] {
///     let compiled = model.compile(&CompileOptions::default().with_backend(backend))?;
///     assert_eq!(compiled.executable(GraphName::Forward).name(), name);
///     losses.push(compiled.loss(&params, &batch)?);
/// }
/// assert!((losses[0] - losses[1]).abs() <= 1e-14 * losses[0], "{losses:?}");
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The reference interpreter ([`interp::run`]).
    Interpreter,
    /// Native code ([`compile_graph`]).
    #[default]
    Jit,
}

impl BackendKind {
    /// The CLI spelling: `interp` or `jit`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Interpreter => "interp",
            BackendKind::Jit => "jit",
        }
    }

    /// Parses `interp` / `jit`.
    pub fn from_name(name: &str) -> Option<BackendKind> {
        match name {
            "interp" | "interpreter" => Some(BackendKind::Interpreter),
            "jit" => Some(BackendKind::Jit),
            _ => None,
        }
    }
}

/// Prepares `graph` for evaluation by the backend `kind`.
pub fn compile_backend(
    graph: &Graph,
    kind: BackendKind,
    options: &JitOptions,
) -> Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Interpreter => Box::new(Interpreter {
            graph: graph.clone(),
        }),
        BackendKind::Jit => Box::new(compile_graph(graph, options)?),
    })
}

/// Prepares every graph of `graphs` for the backend `kind` with its options, like
/// [`compile_backend`], several at once on a machine with several cores: the graphs are
/// independent, and compiling them is most of a deep model's compile time. The results are in
/// the order of `graphs`.
///
/// ```
/// use sgn::codegen::{BackendKind, JitOptions, compile_backends};
/// use sgn::ir::{ArgRole, DType, Graph, Shape, Tensor, TensorType, UnaryOp};
///
/// let mut graphs = Vec::new();
/// for op in [UnaryOp::Tanh, UnaryOp::Exp] {
///     let mut g = Graph::new("one_op");
///     let x = g.add_arg("x", ArgRole::Input, TensorType::new(DType::F64, Shape::fixed(&[2])));
///     let y = g.unary(op, x)?;
///     g.add_output("y", y);
///     graphs.push(g);
/// }
/// let options = JitOptions::default();
/// let graphs: Vec<(&Graph, &JitOptions)> = graphs.iter().map(|g| (g, &options)).collect();
/// let compiled = compile_backends(&graphs, BackendKind::Jit)?;
/// let x = Tensor::from_f64(DType::F64, &[2], vec![0.0, 1.0]).expect("two values");
/// let y = compiled[1].run(&[x])?[0].to_f64_vec(); // exp(x), by the JIT's polynomial
/// assert!((y[0] - 1.0).abs() < 1e-14 && (y[1] - 1f64.exp()).abs() < 1e-14);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The first error [`compile_backend`] gives, in the order of `graphs`.
pub fn compile_backends(
    graphs: &[(&Graph, &JitOptions)],
    kind: BackendKind,
) -> Result<Vec<Box<dyn Backend>>> {
    crate::ir::parallel::map(
        graphs,
        |(g, _)| g.nodes().len(),
        |(g, options)| compile_backend(g, kind, options),
    )
    .into_iter()
    .collect()
}

/// The reference interpreter as a [`Backend`].
#[derive(Clone, Debug)]
pub struct Interpreter {
    graph: Graph,
}

impl Interpreter {
    pub fn new(graph: &Graph) -> Interpreter {
        Interpreter {
            graph: graph.clone(),
        }
    }
}

impl Backend for Interpreter {
    fn name(&self) -> &'static str {
        "interpreter"
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn run(&self, args: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(interp::run(&self.graph, args)?)
    }

    fn run_into(&self, args: &[Tensor], outputs: &mut [Tensor]) -> Result<()> {
        self.interpret_into(args, outputs)
    }

    fn run_borrowed(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        Ok(interp::run_borrowed(&self.graph, args)?)
    }

    fn run_into_borrowed(&self, args: &[&Tensor], outputs: &mut [Tensor]) -> Result<()> {
        self.interpret_into(args, outputs)
    }
}

impl Interpreter {
    fn interpret_into<A: Borrow<Tensor>>(&self, args: &[A], outputs: &mut [Tensor]) -> Result<()> {
        let bindings = interp::bind_dims(&self.graph, args)?;
        check_outputs(&self.graph, &bindings, outputs)?;
        for (slot, value) in outputs
            .iter_mut()
            .zip(interp::run_borrowed(&self.graph, args)?)
        {
            *slot = value;
        }
        Ok(())
    }
}

/// A graph compiled to native code, ready to run many times.
pub struct JitGraph {
    graph: Graph,
    program: Program,
    /// Calls with fewer floating-point operations run on the calling thread alone.
    parallel_min_flops: f64,
    /// Shared with the other graphs of this thread count; `Pool::run` returns only when every
    /// thread is done, so no worker runs `code` after a call.
    pool: Arc<Pool>,
    code: clif::Compiled,
    barrier: SpinBarrier,
    /// For calls that run on the calling thread only.
    solo_barrier: SpinBarrier,
    state: Mutex<RunState>,
    /// Unique in the process: names this graph's entries in a [`PackCache`].
    id: u64,
    /// What its products run on.
    kernels: Kernels,
}

impl std::fmt::Debug for JitGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitGraph")
            .field("graph", &self.graph.name)
            .field("steps", &self.program.steps.len())
            .field("threads", &self.pool.threads())
            .finish_non_exhaustive()
    }
}

/// What calls reuse: plans per binding, the arena, the buffer-pointer table.
#[derive(Default)]
struct RunState {
    plans: HashMap<Vec<usize>, Arc<Plan>>,
    /// The plan of the latest call, found without building a key.
    last: Option<(Bindings, Arc<Plan>)>,
    /// 64-byte aligned storage for the temporaries.
    arena: Vec<CacheLine>,
    /// Buffer base addresses of the current call.
    pointers: Vec<usize>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

/// Compiles `graph` (any valid graph, optimized or not) to native code.
pub fn compile_graph(graph: &Graph, options: &JitOptions) -> Result<JitGraph> {
    let dtypes: Vec<DType> = graph.nodes().iter().map(|n| n.ty.dtype).collect();
    if dtypes.windows(2).any(|w| w[0] != w[1]) {
        return Err(Error::eval(format!(
            "graph '{}' mixes f32 and f64 values; the JIT compiles graphs of one element type",
            graph.name
        )));
    }
    if options.fma && !host_has_fma() {
        return Err(Error::Jit(
            "JitOptions::fma: fused multiply-add was asked for, but this host does not have it"
                .into(),
        ));
    }
    let kernels = if options.bf16_products {
        if !bf16::available() {
            return Err(Error::Jit(
                "JitOptions::bf16_products: bf16 products need AVX512-BF16, which this host does \
                 not have"
                    .into(),
            ));
        }
        if dtypes.first() == Some(&DType::F64) {
            return Err(Error::Jit(format!(
                "JitOptions::bf16_products: graph '{}' is f64; bf16 products are for f32 graphs",
                graph.name
            )));
        }
        // Decided here (the tiles' self-check included), not on a worker in the first product.
        let _ = bf16::amx::status();
        Kernels::Bf16
    } else if options.gemm.use_narrow()? {
        Kernels::Narrow
    } else {
        Kernels::General
    };
    let settings = clif::Settings {
        fma: options.fma,
        kernels,
        parallel_min: options.parallel_min,
    };
    let threads = options.thread_count();
    if threads > MAX_THREADS {
        return Err(Error::Jit(format!(
            "{threads} threads asked for graph '{}'; the most is {MAX_THREADS}",
            graph.name
        )));
    }
    let pool = Pool::shared(threads).map_err(|e| {
        Error::Jit(format!(
            "cannot start {threads} threads for graph '{}': {e}; ask for fewer threads",
            graph.name
        ))
    })?;
    let program = schedule::schedule(graph);
    let code = clif::compile(&program, &graph.name, &settings).map_err(Error::Jit)?;
    Ok(JitGraph {
        graph: graph.clone(),
        program,
        parallel_min_flops: options.parallel_min.call_flops,
        pool,
        code,
        barrier: SpinBarrier::new(threads),
        solo_barrier: SpinBarrier::new(1),
        state: Mutex::new(RunState::default()),
        id: NEXT_GRAPH_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        kernels,
    })
}

/// The id of the next compiled graph ([`JitGraph`]'s `id`).
static NEXT_GRAPH_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Checks that `outputs` can receive the graph's outputs under `bindings`.
fn check_outputs(graph: &Graph, bindings: &Bindings, outputs: &[Tensor]) -> Result<()> {
    let declared = graph.outputs();
    if outputs.len() != declared.len() {
        return Err(Error::eval(format!(
            "graph '{}' has {} output(s) but {} output tensor(s) were given",
            graph.name,
            declared.len(),
            outputs.len()
        )));
    }
    for (o, tensor) in declared.iter().zip(outputs) {
        let ty = graph.ty(o.node);
        let dims = ty.shape.dims();
        // Compared axis by axis first: a call that fits allocates nothing here.
        let fits = tensor.dtype() == ty.dtype
            && tensor.shape().len() == dims.len()
            && dims
                .iter()
                .zip(tensor.shape())
                .all(|(d, &n)| d.eval(bindings) == Ok(n));
        if !fits {
            let shape = output_shape(graph, o.node, bindings)?;
            return Err(Error::tensor(format!(
                "output '{}' is {ty} = {}{shape:?}, but the tensor given for it is {}{:?}",
                o.name,
                ty.dtype,
                tensor.dtype(),
                tensor.shape()
            )));
        }
        if !tensor.is_standard_layout() {
            return Err(Error::tensor(format!(
                "the tensor given for output '{}' is not in standard (row-major, contiguous) layout",
                o.name
            )));
        }
    }
    Ok(())
}

fn output_shape(graph: &Graph, node: crate::ir::NodeId, bindings: &Bindings) -> Result<Vec<usize>> {
    graph.ty(node).shape.eval(bindings).map_err(|e| {
        Error::eval(format!(
            "graph '{}': output type {}: {e}",
            graph.name,
            graph.ty(node)
        ))
    })
}

fn data_pointer(t: &Tensor) -> usize {
    match t {
        Tensor::F32(a) => a.as_ptr() as usize,
        Tensor::F64(a) => a.as_ptr() as usize,
    }
}

fn data_pointer_mut(t: &mut Tensor) -> usize {
    match t {
        Tensor::F32(a) => a.as_mut_ptr() as usize,
        Tensor::F64(a) => a.as_mut_ptr() as usize,
    }
}

impl JitGraph {
    /// The graph this was compiled from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The schedule: buffers, then one entry per step (fused kernels with their expressions,
    /// stores and reductions; GEMMs with their strided operands).
    pub fn schedule_text(&self) -> String {
        self.program.to_string()
    }

    /// Threads each call runs on.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Evaluates the graph: outputs in the order of `graph.outputs()`, like [`interp::run`].
    pub fn run<A: Borrow<Tensor>>(&self, args: &[A]) -> Result<Vec<Tensor>> {
        let bindings = interp::bind_dims(&self.graph, args)?;
        // Planned first: a run too large for memory is refused before its outputs exist.
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.plan_for(&mut state, &bindings)?;
        }
        let mut outputs = self.output_tensors(&bindings)?;
        self.run_bound(args, &bindings, &mut outputs, None)?;
        Ok(outputs)
    }

    /// Zero tensors shaped like the outputs under `bindings`, for [`JitGraph::run_into`].
    pub fn output_tensors(&self, bindings: &Bindings) -> Result<Vec<Tensor>> {
        Backend::output_tensors(self, bindings)
    }

    /// Evaluates the graph into `outputs` (dtypes and shapes of the outputs, standard layout),
    /// allocating nothing once a batch size has been seen.
    pub fn run_into<A: Borrow<Tensor>>(&self, args: &[A], outputs: &mut [Tensor]) -> Result<()> {
        let bindings = interp::bind_dims(&self.graph, args)?;
        self.run_bound(args, &bindings, outputs, None)
    }

    /// Floating-point operations of one call under `bindings` (2mnk per GEMM, one per
    /// elementwise op or reduced element).
    pub fn flops(&self, bindings: &Bindings) -> Result<f64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.plan_for(&mut state, bindings)?.flops)
    }

    /// The threads a call planned as `plan` runs on: one for calls too small to share out.
    fn threads_for(&self, plan: &Plan) -> usize {
        match plan.flops < self.parallel_min_flops {
            true => 1,
            false => self.pool.threads(),
        }
    }

    fn plan_for(&self, state: &mut RunState, bindings: &Bindings) -> Result<Arc<Plan>> {
        if let Some((last, plan)) = &state.last
            && last == bindings
        {
            return Ok(plan.clone());
        }
        let key: Vec<usize> = bindings.values().copied().collect();
        if let Some(p) = state.plans.get(&key) {
            let p = p.clone();
            state.last = Some((bindings.clone(), p.clone()));
            return Ok(p);
        }
        let plan = plan::plan(&self.program, &self.code.slots, bindings)
            .map_err(|msg| Error::eval(format!("graph '{}': {msg}", self.graph.name)))?;
        let outputs = self.graph.outputs().iter().try_fold(0u64, |total, o| {
            let shape = output_shape(&self.graph, o.node, bindings).ok()?;
            total.checked_add(memory::tensor_bytes(self.graph.ty(o.node).dtype, &shape)?)
        });
        // A bf16 graph's calls may keep their fixed operands' packings (`run_keeping`).
        let kept = match self.kernels {
            Kernels::Bf16 => {
                runtime::kept_bytes_bound(&self.program, bindings, self.threads_for(&plan) as u64)
            }
            Kernels::Narrow | Kernels::General => Some(0),
        };
        let needed = outputs
            .and_then(|o| o.checked_add(plan.arena_bytes as u64))
            .and_then(|o| o.checked_add(kept?));
        interp::ensure_run_fits(&self.graph, bindings, needed)?;
        let plan = Arc::new(plan);
        state.plans.insert(key, plan.clone());
        state.last = Some((bindings.clone(), plan.clone()));
        Ok(plan)
    }

    fn run_bound<A: Borrow<Tensor>>(
        &self,
        args: &[A],
        bindings: &Bindings,
        outputs: &mut [Tensor],
        kept: Option<&PackCache>,
    ) -> Result<()> {
        check_outputs(&self.graph, bindings, outputs)?;
        // The generated code reads arguments as row-major arrays: copies of any that are not
        // (none, and no allocation, in the usual case).
        let copies: Vec<Tensor> = if args.iter().all(|t| t.borrow().is_standard_layout()) {
            Vec::new()
        } else {
            args.iter()
                .map(|t| t.borrow().to_standard_layout())
                .collect()
        };
        let arg = |i: usize| copies.get(i).unwrap_or_else(|| args[i].borrow());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let plan = self.plan_for(&mut state, bindings)?;
        let lines = plan.arena_bytes.div_ceil(64);
        if state.arena.len() < lines {
            state.arena.resize(lines, CacheLine([0; 64]));
        }
        let arena = state.arena.as_mut_ptr() as usize;
        let mut pointers = std::mem::take(&mut state.pointers);
        pointers.clear();
        for (id, buffer) in self.program.buffers.iter().enumerate() {
            pointers.push(match buffer.kind {
                BufferKind::Arg(i) => data_pointer(arg(i)),
                BufferKind::Output(k) => data_pointer_mut(&mut outputs[k]),
                BufferKind::Temp => arena + plan.offsets[id],
            });
        }
        let entry = self.code.entry;
        let buffers = pointers.as_ptr() as *const *mut u8;
        let sizes = plan.sizes.as_ptr();
        let id = self.id;
        // SAFETY: the arguments were checked against the graph's declared types by
        // `bind_dims`, the outputs by `check_outputs`, and the plan sized every temporary for
        // these bindings; the generated code touches only those buffers, within those sizes.
        let call = |thread: usize, threads: usize, barrier: &SpinBarrier| unsafe {
            runtime::with_pack_cache(kept, id, || {
                entry(buffers, sizes, thread as i64, threads as i64, barrier)
            })
        };
        if self.threads_for(&plan) == 1 {
            call(0, 1, &self.solo_barrier);
        } else {
            let threads = self.pool.threads();
            let pointers_addr = buffers as usize;
            let sizes_addr = sizes as usize;
            let barrier = &self.barrier;
            self.pool.run(&|thread| {
                runtime::with_pack_cache(kept, id, || unsafe {
                    // SAFETY: as above; every thread runs its own share of each step.
                    entry(
                        pointers_addr as *const *mut u8,
                        sizes_addr as *const i64,
                        thread as i64,
                        threads as i64,
                        barrier,
                    )
                })
            });
        }
        state.pointers = pointers;
        Ok(())
    }
}

impl Backend for JitGraph {
    fn name(&self) -> &'static str {
        "jit"
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn run(&self, args: &[Tensor]) -> Result<Vec<Tensor>> {
        JitGraph::run(self, args)
    }

    fn run_into(&self, args: &[Tensor], outputs: &mut [Tensor]) -> Result<()> {
        JitGraph::run_into(self, args, outputs)
    }

    fn run_borrowed(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        JitGraph::run(self, args)
    }

    fn run_into_borrowed(&self, args: &[&Tensor], outputs: &mut [Tensor]) -> Result<()> {
        JitGraph::run_into(self, args, outputs)
    }

    fn run_into_keeping(
        &self,
        args: &[&Tensor],
        outputs: &mut [Tensor],
        kept: &PackCache,
    ) -> Result<()> {
        let bindings = interp::bind_dims(&self.graph, args)?;
        self.run_bound(args, &bindings, outputs, Some(kept))
    }
}
