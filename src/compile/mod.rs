//! A compiled model: its derived graphs behind a small, named-tensor API.

use crate::autodiff::{Derivatives, DerivedGraphs, GraphName, Signature, Slot, derive};
use crate::codegen::{
    Backend, BackendKind, JitOptions, Pool, compile_backends, host_has_bf16_products,
};
use crate::ir::memory::{copy_bytes, ensure_available};
use crate::ir::store::{TensorMap, check_type, checked_named};
use crate::ir::text::graph_sha256;
use crate::ir::{Bindings, DType, Tensor};
use crate::rewrite::{
    RewriteOptions, RewriteReport, TableModel, optimization_table, optimize_derived,
};
use crate::{Error, Model, Result};
use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

mod flat;
pub use flat::{GvOperator, ParamLayout};

/// Options for [`Model::compile`].
///
/// The defaults (f32 as declared, simplified graphs, the JIT on every core) are for training;
/// checking derivatives wants f64, and a small model one thread:
///
/// ```
/// use sgn::codegen::BackendKind;
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
/// use sgn::{CompileOptions, Model};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = ones\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let options = CompileOptions::default().with_dtype(DType::F64).with_threads(1);
/// assert_eq!((options.backend, options.optimize), (BackendKind::Jit, true));
/// let compiled = model.compile(&options)?;
///
/// // Parameters and batches are given in the compiled element type.
/// let f32_params = init_params(&model.params, 0)?;
/// let params: TensorMap = (f32_params.iter())
///     .map(|(name, t)| (name, t.clone().cast(DType::F64)))
///     .collect();
/// let mut batch = TensorMap::new();
/// batch.insert("x", Tensor::from_f64(DType::F64, &[1, 2], vec![1.0, 2.0]).expect("2 values"));
/// batch.insert("y", Tensor::from_f64(DType::F64, &[1, 1], vec![0.5]).expect("1 value"));
/// let (loss, grad) = compiled.loss_and_grad(&params, &batch)?;
/// assert_eq!(loss, 6.25); // (1 + 2 − 0.5)²
/// assert_eq!(grad.get("w").expect("w's gradient").dtype(), DType::F64);
/// let err = compiled.loss(&f32_params, &batch).unwrap_err();
/// let expected = "tensor 'w' in 'parameters' is f32 but the model declares f64[2, 1]";
/// assert_eq!(err.to_string(), expected);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Run every tensor in this element type instead of the declared ones (f64 for checks).
    pub dtype: Option<DType>,
    /// Simplify the derived graphs with equality saturation (on by default).
    pub optimize: bool,
    /// Limits and cost model of the simplification.
    pub rewrite: RewriteOptions,
    /// What runs the graphs: the Cranelift JIT (default) or the reference interpreter.
    pub backend: BackendKind,
    /// How the JIT compiles: threads per call (0, the default, means one per core), when to
    /// split work across them, which GEMM kernels, FMA.
    pub jit: JitOptions,
    /// The precision of the curvature products `G v` that CG runs (the gv-apply graph).
    pub curvature: Curvature,
}

/// The precision of the curvature products `G v` (the gv-apply graph, run once per CG
/// iteration). CG only needs a good approximation of `G v`, and SGN checks each step against the
/// true loss, so the products may run on bf16 operands.
///
/// Asked for where it cannot run, bf16 curvature falls back to the model's precision, and the
/// compiled model says why:
///
/// ```
/// use sgn::ir::DType;
/// use sgn::{CompileOptions, Curvature, Model};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1]\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let bf16 = CompileOptions::default().with_curvature(Curvature::Bf16);
/// let f64_model = model.compile(&bf16.clone().with_dtype(DType::F64))?;
/// assert_eq!(f64_model.curvature(), Curvature::Full);
/// assert_eq!(
///     f64_model.curvature_notice(),
///     Some("bf16 curvature not used: the model is f64; bf16 curvature is for f32 models")
/// );
/// // An f32 model gets it on a CPU with AVX512-BF16.
/// let f32_model = model.compile(&bf16)?;
/// if sgn::codegen::host_has_bf16_products() {
///     assert_eq!((f32_model.curvature(), f32_model.curvature_notice()), (Curvature::Bf16, None));
/// } else {
///     assert_eq!(f32_model.curvature(), Curvature::Full);
///     assert!(f32_model.curvature_notice().is_some());
/// }
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Curvature {
    /// In the model's own element type, like every other graph.
    #[default]
    Full,
    /// The matrix products on bf16 operands with f32 sums (AVX512-BF16, or AMX tiles where the
    /// CPU has them); everything else in
    /// f32. Falls back to [`Curvature::Full`] where it cannot run: a host without AVX512-BF16,
    /// an f64 model, the interpreter ([`CompiledModel::curvature_notice`] says why).
    Bf16,
}

impl Curvature {
    /// The curvature that runs when `self` is asked for a gv-apply graph of `dtype` on
    /// `backend`, and why, if that is not `self`.
    fn resolve(self, backend: BackendKind, dtype: DType) -> (Curvature, Option<String>) {
        let why_not = match self {
            Curvature::Full => None,
            Curvature::Bf16 if backend != BackendKind::Jit => {
                Some("the interpreter runs it in the model's precision".to_string())
            }
            Curvature::Bf16 if dtype != DType::F32 => Some(format!(
                "the model is {dtype}; bf16 curvature is for f32 models"
            )),
            Curvature::Bf16 if !host_has_bf16_products() => {
                Some("this CPU has no AVX512-BF16; running it in f32".to_string())
            }
            Curvature::Bf16 => None,
        };
        match why_not {
            Some(why) => (
                Curvature::Full,
                Some(format!("bf16 curvature not used: {why}")),
            ),
            None => (self, None),
        }
    }
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            dtype: None,
            optimize: true,
            rewrite: RewriteOptions::default(),
            backend: BackendKind::Jit,
            jit: JitOptions::default(),
            curvature: Curvature::Full,
        }
    }
}

impl CompileOptions {
    /// These options with every tensor in `dtype`.
    pub fn with_dtype(mut self, dtype: DType) -> CompileOptions {
        self.dtype = Some(dtype);
        self
    }

    /// These options with another backend.
    pub fn with_backend(mut self, backend: BackendKind) -> CompileOptions {
        self.backend = backend;
        self
    }

    /// These options with `threads` JIT threads per call (0: one per core).
    pub fn with_threads(mut self, threads: usize) -> CompileOptions {
        self.jit.threads = threads;
        self
    }

    /// These options with curvature products in another precision.
    pub fn with_curvature(mut self, curvature: Curvature) -> CompileOptions {
        self.curvature = curvature;
        self
    }

    /// These options with graph simplification on or off.
    pub fn with_optimize(mut self, optimize: bool) -> CompileOptions {
        self.optimize = optimize;
        self
    }
}

/// A model with its loss, gradient, `J v`, `Jᵀ w` and Gauss-Newton graphs.
///
/// Parameters are a [`TensorMap`] named as in the DSL; a batch is a map holding every `input` and
/// `target`; directions `v` are maps with one tensor per parameter, named like the parameters.
///
/// ```
/// use sgn::{Model, CompileOptions};
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
///
/// let model = Model::parse(
///     "model line\ninput x: f64[B, 2]\ntarget y: f64[B, 1]\nparam w: f64[2, 1] = ones\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// let params = init_params(&model.params, 0)?;
/// let mut batch = TensorMap::new();
/// batch.insert("x", Tensor::from_f64(DType::F64, &[1, 2], vec![1.0, 2.0]).unwrap());
/// batch.insert("y", Tensor::from_f64(DType::F64, &[1, 1], vec![0.0]).unwrap());
/// // z = 1 + 2 = 3, loss = 9, dL/dw = 2·3·x = [6, 12].
/// let (loss, grad) = compiled.loss_and_grad(&params, &batch)?;
/// assert_eq!(loss, 9.0);
/// assert_eq!(grad.get("w").unwrap().to_f64_vec(), vec![6.0, 12.0]);
/// // G v for v = w: Jᵀ (2/N) J v = 2·xᵀx·v = [6, 12] as well (the model is linear).
/// let gv = compiled.gv_operator(&params, &batch)?.apply(&params)?;
/// assert_eq!(gv.get("w").unwrap().to_f64_vec(), vec![6.0, 12.0]);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone)]
pub struct CompiledModel {
    pub graphs: DerivedGraphs,
    /// What the simplification did to each graph (empty when it was off).
    pub rewrite_reports: Vec<(&'static str, RewriteReport)>,
    /// One executable per graph, in [`GraphName::ALL`] order.
    executables: Vec<Arc<dyn Backend>>,
    /// What each argument of each graph stands for, in [`GraphName::ALL`] order.
    slots: Vec<Vec<Slot>>,
    /// The parameters as one flat vector.
    layout: ParamLayout,
    /// The precision gv-apply runs in, and why it is not the one asked for, if it is not.
    curvature: (Curvature, Option<String>),
    /// The graphs' threads, which also run the vector work between their calls.
    pool: Arc<Pool>,
    /// Which model this is, for checkpoints to tell models apart.
    identity: ModelIdentity,
}

/// What tells one model from another: its name and the [`graph_sha256`] of its graph (in the
/// element type it was compiled in). A checkpoint records it, so a run resumes only into the
/// model it trained.
///
/// ```
/// use sgn::{CompileOptions, Model};
///
/// let source = "model m\ninput x: f32[B, 2]\ntarget y: f32[B, 2]\nparam w: f32[2, 2]\n\
///               output z = tanh(x @ w)\nloss mse(z, y)\n";
/// let compiled = Model::parse(source)?.compile(&CompileOptions::default())?;
/// assert_eq!(compiled.identity().name, "m");
/// assert!(compiled.identity().to_string().starts_with("model 'm' (graph sha256 "));
/// # Ok::<(), sgn::Error>(())
/// ```
///
/// [`graph_sha256`]: crate::ir::text::graph_sha256
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    pub name: String,
    pub graph_sha256: String,
}

impl fmt::Display for ModelIdentity {
    /// The name and the digest's first 12 hex digits, as git shortens commits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.graph_sha256.get(..12).unwrap_or(&self.graph_sha256);
        write!(f, "model '{}' (graph sha256 {short}…)", self.name)
    }
}

impl fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModel")
            .field("output", &self.graphs.signature.output)
            .field("params", &self.graphs.signature.params)
            .field("backend", &self.executables.first().map(|e| e.name()))
            .field("curvature", &self.curvature.0)
            .finish_non_exhaustive()
    }
}

/// Where each argument of a graph comes from, by role (see [`CompiledModel::arguments`]).
///
/// Running the derived graphs one by one, as `sgn bench` times them:
///
/// ```
/// use sgn::autodiff::GraphName;
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
/// use sgn::{CompileOptions, Model, Sources};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1] = ones\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// let params = init_params(&model.params, 0)?;
/// let mut batch = TensorMap::new();
/// let x = vec![1.0, 2.0, 3.0, 4.0];
/// batch.insert("x", Tensor::from_f64(DType::F32, &[2, 2], x).expect("2×2 values"));
/// batch.insert("y", Tensor::from_f64(DType::F32, &[2, 1], vec![0.0, 0.0]).expect("2 values"));
///
/// // forward: (inputs, targets, params) → (z, loss)
/// let sources = Sources::batch(&params, &batch);
/// let args = compiled.arguments(GraphName::Forward, &sources)?;
/// let out = compiled.executable(GraphName::Forward).run(&args)?;
/// assert_eq!(out[0].to_f64_vec(), [3.0, 7.0]);
/// assert_eq!(out[1].to_f64_vec(), [compiled.loss(&params, &batch)?]); // (9 + 49) / 2
///
/// // jvp needs a direction too: v = w, and since z is linear in w, J w = z.
/// let err = compiled.arguments(GraphName::Jvp, &sources).unwrap_err();
/// assert_eq!(err.to_string(), "graph 'jvp' needs argument 'v.w' (direction)");
/// let sources = Sources { directions: Some(&params), ..sources };
/// let args = compiled.arguments(GraphName::Jvp, &sources)?;
/// let out = compiled.executable(GraphName::Jvp).run(&args)?;
/// assert_eq!(out[1].to_f64_vec(), [3.0, 7.0]);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Copy, Default)]
pub struct Sources<'a> {
    /// Parameters, named as in the model.
    pub params: Option<&'a TensorMap>,
    /// Every `input` and `target`, by name.
    pub batch: Option<&'a TensorMap>,
    /// A direction `v`, one tensor per parameter, named like the parameters.
    pub directions: Option<&'a TensorMap>,
    /// A cotangent shaped like the output.
    pub cotangent: Option<&'a Tensor>,
    /// The outputs of `gv-prepare`, in order.
    pub residuals: Option<&'a [Tensor]>,
}

impl<'a> Sources<'a> {
    /// Parameters and a batch: what the forward, gradient and prepare graphs read.
    pub fn batch(params: &'a TensorMap, batch: &'a TensorMap) -> Sources<'a> {
        Sources {
            params: Some(params),
            batch: Some(batch),
            ..Sources::default()
        }
    }
}

impl Model {
    /// The model's derivatives, before any rewriting (see [`derive()`](crate::autodiff::derive())).
    pub fn derive(&self) -> Result<Derivatives> {
        derive(&self.graph, &self.output).map_err(|error| Error::Differentiate {
            file: self.file.clone(),
            error,
        })
    }

    /// Differentiates the model into every graph training needs (see [`CompiledModel`]).
    pub fn compile(&self, options: &CompileOptions) -> Result<CompiledModel> {
        let mut model = self.clone();
        if let Some(dtype) = options.dtype {
            model.graph = model.graph.with_dtype(dtype);
            for p in &mut model.params {
                p.ty.dtype = dtype;
            }
        }
        let identity = ModelIdentity {
            name: model.name.clone(),
            graph_sha256: graph_sha256(&model.graph),
        };
        let derived = model.derive()?;
        let (derived, rewrite_reports) = if options.optimize {
            optimize_derived(&derived, &options.rewrite)?
        } else {
            (derived, Vec::new())
        };
        let graphs = derived.split();
        let apply = graphs.get(GraphName::GvApply);
        let dtype = apply.args().first().map_or(DType::F32, |a| a.ty.dtype);
        let curvature = options.curvature.resolve(options.backend, dtype);
        let curvature_jit = JitOptions {
            bf16_products: curvature.0 == Curvature::Bf16,
            ..options.jit.clone()
        };
        let jit_options = |name| match name {
            GraphName::GvApply => &curvature_jit,
            _ => &options.jit,
        };
        let executables = compile_backends(
            &GraphName::ALL.map(|name| (graphs.get(name), jit_options(name))),
            options.backend,
        )?
        .into_iter()
        .map(Arc::from)
        .collect();
        let slots = GraphName::ALL
            .iter()
            .map(|&name| graphs.signature.arg_slots(graphs.get(name)))
            .collect();
        let threads = match options.backend {
            BackendKind::Jit => options.jit.thread_count(),
            BackendKind::Interpreter => 1,
        };
        // The JIT's graphs already hold this pool: it is shared, not started again.
        let pool = Pool::shared(threads).map_err(|e| {
            crate::codegen::Error::Jit(format!("cannot start {threads} threads: {e}"))
        })?;
        Ok(CompiledModel {
            layout: ParamLayout::new(&graphs.signature)?,
            graphs,
            rewrite_reports,
            executables,
            slots,
            curvature,
            pool,
            identity,
        })
    }
}

impl CompiledModel {
    /// The threads the graphs run on (one with the interpreter), which also run the optimizers'
    /// vector passes between the graphs' calls.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Which model this is (see [`ModelIdentity`]).
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The loss on a batch.
    pub fn loss(&self, params: &TensorMap, batch: &TensorMap) -> Result<f64> {
        let out = self.run(GraphName::Forward, &Sources::batch(params, batch))?;
        Ok(scalar(&out[1]))
    }

    /// The network output and the loss on a batch.
    pub fn forward(&self, params: &TensorMap, batch: &TensorMap) -> Result<(Tensor, f64)> {
        let mut out = self.run(GraphName::Forward, &Sources::batch(params, batch))?;
        let loss = scalar(&out[1]);
        Ok((out.swap_remove(0), loss))
    }

    /// The loss and its gradient, one tensor per parameter.
    pub fn loss_and_grad(&self, params: &TensorMap, batch: &TensorMap) -> Result<(f64, TensorMap)> {
        let out = self.run(GraphName::Grad, &Sources::batch(params, batch))?;
        let loss = scalar(&out[0]);
        Ok((loss, self.per_param(out.into_iter().skip(1))))
    }

    /// The network output `z` and `J v`, its derivative along the direction `v`.
    pub fn jvp(
        &self,
        params: &TensorMap,
        batch: &TensorMap,
        v: &TensorMap,
    ) -> Result<(Tensor, Tensor)> {
        let mut out = self.run(
            GraphName::Jvp,
            &Sources {
                directions: Some(v),
                ..Sources::batch(params, batch)
            },
        )?;
        let jv = out.pop().expect("jvp has two outputs");
        Ok((out.pop().expect("jvp has two outputs"), jv))
    }

    /// `Jᵀ w` for a cotangent `w` shaped like the output.
    pub fn vjp(&self, params: &TensorMap, batch: &TensorMap, w: &Tensor) -> Result<TensorMap> {
        let out = self.run(
            GraphName::Vjp,
            &Sources {
                cotangent: Some(w),
                ..Sources::batch(params, batch)
            },
        )?;
        Ok(self.per_param(out.into_iter()))
    }

    /// `G v` in one shot (prepare and apply together).
    pub fn gv(&self, params: &TensorMap, batch: &TensorMap, v: &TensorMap) -> Result<TensorMap> {
        let out = self.run(
            GraphName::Gv,
            &Sources {
                directions: Some(v),
                ..Sources::batch(params, batch)
            },
        )?;
        Ok(self.per_param(out.into_iter()))
    }

    /// Prepares `G` at (params, batch): runs everything that does not depend on `v` once, so that
    /// [`GvOperator::apply`] runs only the linear part. The operator reads the batch's tensors
    /// where they are (the input `x` of a first layer, say), so it borrows the batch.
    pub fn gv_operator<'a>(
        &'a self,
        params: &TensorMap,
        batch: &'a TensorMap,
    ) -> Result<GvOperator<'a>> {
        let residuals = self.run(GraphName::GvPrepare, &Sources::batch(params, batch))?;
        self.gv_operator_of(residuals.into_iter(), batch)
    }

    /// [`CompiledModel::loss_and_grad`] and [`CompiledModel::gv_operator`] at the same point,
    /// from one graph that runs the forward pass they share once (what an SGN step needs).
    ///
    /// ```
    /// use sgn::{Model, CompileOptions};
    /// use sgn::ir::store::{TensorMap, init_params};
    /// use sgn::ir::{DType, Tensor};
    ///
    /// let model = Model::parse(
    ///     "model tiny\ninput x: f64[B, 2]\ntarget y: f64[B, 1]\n\
    ///      param w: f64[2, 1] = glorot_uniform\noutput z = tanh(x @ w)\nloss mse(z, y)\n",
    /// )?;
    /// let compiled = model.compile(&CompileOptions::default())?;
    /// let params = init_params(&model.params, 0)?;
    /// let mut batch = TensorMap::new();
    /// batch.insert("x", Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap());
    /// batch.insert("y", Tensor::from_f64(DType::F64, &[2, 1], vec![0.5, -0.5]).unwrap());
    /// let (loss, grad, gv) = compiled.loss_grad_and_gv_operator(&params, &batch)?;
    /// // The same numbers as the separate calls, bit for bit.
    /// let (loss_alone, grad_alone) = compiled.loss_and_grad(&params, &batch)?;
    /// assert_eq!(loss, loss_alone);
    /// assert_eq!(grad.get("w").unwrap().to_f64_vec(), grad_alone.get("w").unwrap().to_f64_vec());
    /// let gv_alone = compiled.gv_operator(&params, &batch)?.apply(&params)?;
    /// assert_eq!(
    ///     gv.apply(&params)?.get("w").unwrap().to_f64_vec(),
    ///     gv_alone.get("w").unwrap().to_f64_vec()
    /// );
    /// # Ok::<(), sgn::Error>(())
    /// ```
    pub fn loss_grad_and_gv_operator<'a>(
        &'a self,
        params: &TensorMap,
        batch: &'a TensorMap,
    ) -> Result<(f64, TensorMap, GvOperator<'a>)> {
        let mut out = self
            .run(GraphName::GradPrepare, &Sources::batch(params, batch))?
            .into_iter();
        let loss = scalar(&out.next().expect("grad-prepare's first output is the loss"));
        let grad = self.per_param(out.by_ref().take(self.signature().params.len()));
        Ok((loss, grad, self.gv_operator_of(out, batch)?))
    }

    /// The operator whose gv-apply reads `residuals`, gv-prepare's outputs in order, and the
    /// tensors of `batch` it takes as they are.
    fn gv_operator_of<'a>(
        &'a self,
        mut residuals: impl Iterator<Item = Tensor>,
        batch: &'a TensorMap,
    ) -> Result<GvOperator<'a>> {
        let apply = self.graphs.get(GraphName::GvApply);
        let mut direction_slots = vec![0; self.signature().params.len()];
        let mut args = Vec::with_capacity(apply.args().len());
        for (k, (arg, slot)) in apply
            .args()
            .iter()
            .zip(self.slots(GraphName::GvApply))
            .enumerate()
        {
            args.push(match *slot {
                Slot::Residual(_) => Cow::Owned(residuals.next().ok_or_else(|| {
                    Error::Eval(format!("gv-prepare gives no residual for '{}'", arg.name))
                })?),
                // Read in place at every CG iteration; a tensor in another layout is copied once
                // here, where the graph would copy it (and every other argument) at each call.
                Slot::Data => match checked_named(batch, &arg.name, &arg.ty, "batch")? {
                    t if t.is_standard_layout() => Cow::Borrowed(t),
                    t => Cow::Owned(t.to_standard_layout()),
                },
                // Zero directions until an `apply` fills the slots: parameter-shaped, so fixed.
                Slot::Direction(p) => {
                    direction_slots[p] = k;
                    let shape = arg.ty.shape.eval(&Bindings::new()).map_err(|symbol| {
                        Error::Eval(format!("direction {} has symbolic size {symbol}", arg.name))
                    })?;
                    Cow::Owned(Tensor::zeros(arg.ty.dtype, &shape))
                }
                Slot::Param(_) | Slot::Cotangent => {
                    unreachable!("gv-apply reads residuals, the batch and directions only")
                }
            });
        }
        Ok(GvOperator::new(self, args, direction_slots))
    }

    /// The precision the curvature products run in ([`CompileOptions::curvature`], or
    /// [`Curvature::Full`] where bf16 cannot run).
    pub fn curvature(&self) -> Curvature {
        self.curvature.0
    }

    /// Why the curvature asked for is not the one that runs, if it is not.
    pub fn curvature_notice(&self) -> Option<&str> {
        self.curvature.1.as_deref()
    }

    /// The model's parameters and output, as the graphs refer to them.
    pub fn signature(&self) -> &Signature {
        &self.graphs.signature
    }

    /// Where each parameter lives in the flat vectors of the optimizers and of
    /// [`GvOperator::apply_flat`].
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The name of the network output (as in the DSL).
    pub fn output_name(&self) -> &str {
        &self.signature().output
    }

    /// Per-parameter results (in parameter order) named after the parameters.
    fn per_param(&self, values: impl Iterator<Item = Tensor>) -> TensorMap {
        let mut map = TensorMap::new();
        for (param, value) in self.signature().params.iter().zip(values) {
            map.insert(param.name.clone(), value);
        }
        map
    }

    fn slots(&self, which: GraphName) -> &[Slot] {
        &self.slots[which.index()]
    }

    /// The executable of one graph (to time it, or to run it on arguments in graph order).
    pub fn executable(&self, which: GraphName) -> &dyn Backend {
        self.executables[which.index()].as_ref()
    }

    fn run(&self, which: GraphName, sources: &Sources) -> Result<Vec<Tensor>> {
        let values = self.argument_refs(which, sources)?;
        Ok(self.executable(which).run_borrowed(&values)?)
    }

    /// The arguments of graph `which`, in its order, taken from `sources` by role and checked
    /// against their declared types (for running an [`executable`](Self::executable) directly).
    pub fn arguments(&self, which: GraphName, sources: &Sources) -> Result<Vec<Tensor>> {
        let refs = self.argument_refs(which, sources)?;
        ensure_available(copy_bytes(refs.iter().copied()), || {
            format!("a copy of the arguments of '{}'", which.name())
        })?;
        Ok(refs.into_iter().cloned().collect())
    }

    /// [`CompiledModel::arguments`] borrowed from `sources`: a batch is not copied for each
    /// graph that reads it.
    fn argument_refs<'s>(
        &self,
        which: GraphName,
        sources: &Sources<'s>,
    ) -> Result<Vec<&'s Tensor>> {
        let graph = self.graphs.get(which);
        let params = &self.signature().params;
        let mut values = Vec::with_capacity(graph.args().len());
        let mut residuals = sources.residuals.unwrap_or(&[]).iter();
        for (arg, slot) in graph.args().iter().zip(self.slots(which)) {
            let missing = || {
                Error::Eval(format!(
                    "graph '{}' needs argument '{}' ({})",
                    graph.name,
                    arg.name,
                    arg.role.name()
                ))
            };
            let source = |map: Option<&'s TensorMap>, name: &str, what: &str| -> Result<_> {
                Ok(checked_named(
                    map.ok_or_else(missing)?,
                    name,
                    &arg.ty,
                    what,
                )?)
            };
            values.push(match *slot {
                Slot::Param(p) => source(sources.params, &params[p].name, "parameters")?,
                Slot::Data => source(sources.batch, &arg.name, "batch")?,
                Slot::Direction(p) => source(sources.directions, &params[p].name, "direction")?,
                Slot::Cotangent => {
                    let cotangent = sources.cotangent.ok_or_else(missing)?;
                    check_type(cotangent, &arg.name, &arg.ty, "cotangent")?;
                    cotangent
                }
                Slot::Residual(_) => residuals.next().ok_or_else(missing)?,
            });
        }
        Ok(values)
    }
}

/// The document `docs/OPTIMIZATION.md` (see [`optimization_table`]) for every `*.sgn` model in
/// `dir`, sorted by file name.
///
/// # Errors
/// A directory or model that cannot be read, a model that does not differentiate, or a failed
/// optimization.
pub fn optimization_doc(dir: &Path, options: &RewriteOptions) -> Result<String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "sgn"));
    files.sort();
    let models = files
        .iter()
        .map(|file| {
            let model = Model::from_file(file)?;
            let graphs = model.derive()?;
            let file = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok(TableModel {
                name: model.name,
                file,
                graphs,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(optimization_table(&models, options)?)
}

fn scalar(t: &Tensor) -> f64 {
    t.scalar_value().expect("the loss is a scalar")
}
