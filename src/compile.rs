//! A compiled model: its derived graphs behind a small, named-tensor API.

use crate::autodiff::{DerivedGraphs, GraphName, derive};
use crate::codegen::{Backend, BackendKind, JitOptions, compile_backend};
use crate::ir::store::{TensorMap, check_args};
use crate::ir::{Arg, ArgRole, Bindings, DType, Tensor};
use crate::rewrite::{RewriteOptions, RewriteReport, optimize_derived};
use crate::{Error, Model, Result};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// Options for [`Model::compile`].
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
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            dtype: None,
            optimize: true,
            rewrite: RewriteOptions::default(),
            backend: BackendKind::Jit,
            jit: JitOptions::default(),
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
    output: String,
    param_names: Vec<String>,
}

impl fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModel")
            .field("output", &self.output)
            .field("params", &self.param_names)
            .field("backend", &self.executables.first().map(|e| e.name()))
            .finish_non_exhaustive()
    }
}

/// Where each argument of a graph comes from, by role (see [`CompiledModel::arguments`]).
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
    /// Differentiates the model into every graph training needs (see [`CompiledModel`]).
    pub fn compile(&self, options: &CompileOptions) -> Result<CompiledModel> {
        let mut model = self.clone();
        if let Some(dtype) = options.dtype {
            model.graph = model.graph.with_dtype(dtype);
            for p in &mut model.params {
                p.ty.dtype = dtype;
            }
        }
        let derived = derive(&model).map_err(|error| Error::Differentiate {
            file: self.file.clone(),
            error,
        })?;
        let (graphs, rewrite_reports) = if options.optimize {
            optimize_derived(&derived, &options.rewrite)?
        } else {
            (derived, Vec::new())
        };
        let executables = GraphName::ALL
            .iter()
            .map(|&name| {
                compile_backend(graphs.get(name), options.backend, &options.jit).map(Arc::from)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CompiledModel {
            graphs,
            rewrite_reports,
            executables,
            output: self.output.clone(),
            param_names: self.params.iter().map(|p| p.name.clone()).collect(),
        })
    }
}

impl CompiledModel {
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
    /// [`GvOperator::apply`] runs only the linear part.
    pub fn gv_operator(&self, params: &TensorMap, batch: &TensorMap) -> Result<GvOperator<'_>> {
        let mut args = self.run(GraphName::GvPrepare, &Sources::batch(params, batch))?;
        let residual_count = args.len();
        let apply = self.graphs.get(GraphName::GvApply);
        debug_assert!(
            apply.args()[..residual_count]
                .iter()
                .all(|a| a.role == ArgRole::Residual)
        );
        // Zero directions until an `apply` fills the slots: parameter-shaped, so fixed.
        for arg in &apply.args()[residual_count..] {
            let shape = arg.ty.shape.eval(&Bindings::new()).map_err(|symbol| {
                Error::Eval(format!("direction {} has symbolic size {symbol}", arg.name))
            })?;
            args.push(Tensor::zeros(arg.ty.dtype, &shape));
        }
        let direction_slots = self
            .param_names
            .iter()
            .map(|name| {
                let slot = apply
                    .args()
                    .iter()
                    .position(|a| a.name == format!("v.{name}"));
                slot.ok_or_else(|| Error::Eval(format!("gv-apply has no direction for {name}")))
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(GvOperator {
            model: self,
            args: RefCell::new(args),
            residual_count,
            direction_slots,
            outputs: RefCell::new(Vec::new()),
        })
    }

    /// The parameters' names, in declaration order.
    pub fn param_names(&self) -> &[String] {
        &self.param_names
    }

    /// The name of the network output (as in the DSL).
    pub fn output_name(&self) -> &str {
        &self.output
    }

    fn per_param(&self, values: impl Iterator<Item = Tensor>) -> TensorMap {
        let mut map = TensorMap::new();
        for (name, value) in self.param_names.iter().zip(values) {
            map.insert(name.clone(), value);
        }
        map
    }

    /// The executable of one graph (to time it, or to run it on arguments in graph order).
    pub fn executable(&self, which: GraphName) -> &dyn Backend {
        self.executables[GraphName::ALL
            .iter()
            .position(|&g| g == which)
            .expect("every graph")]
        .as_ref()
    }

    fn run(&self, which: GraphName, sources: &Sources) -> Result<Vec<Tensor>> {
        let values = self.arguments(which, sources)?;
        self.executable(which).run(&values)
    }

    /// The arguments of graph `which`, in its order, taken from `sources` by role and checked
    /// against their declared types (for running an [`executable`](Self::executable) directly).
    pub fn arguments(&self, which: GraphName, sources: &Sources) -> Result<Vec<Tensor>> {
        let graph = self.graphs.get(which);
        let mut values = Vec::with_capacity(graph.args().len());
        let mut residuals = sources.residuals.unwrap_or(&[]).iter();
        for arg in graph.args() {
            let missing = || {
                Error::Eval(format!(
                    "graph '{}' needs argument '{}' ({})",
                    graph.name,
                    arg.name,
                    arg.role.name()
                ))
            };
            match arg.role {
                ArgRole::Param => values.extend(check_args(
                    sources.params.ok_or_else(missing)?,
                    &[arg],
                    "parameters",
                )?),
                ArgRole::Input | ArgRole::Target => values.extend(check_args(
                    sources.batch.ok_or_else(missing)?,
                    &[arg],
                    "batch",
                )?),
                ArgRole::Direction => {
                    values.push(direction(sources.directions.ok_or_else(missing)?, arg)?)
                }
                ArgRole::Cotangent => {
                    let w = sources.cotangent.ok_or_else(missing)?;
                    let mut map = TensorMap::new();
                    map.insert(arg.name.clone(), w.clone());
                    values.extend(check_args(&map, &[arg], "cotangent")?);
                }
                ArgRole::Residual => values.push(residuals.next().ok_or_else(missing)?.clone()),
            }
        }
        Ok(values)
    }
}

/// `G = Jᵀ H_L J` at fixed parameters and batch, ready to multiply many directions.
#[derive(Debug)]
pub struct GvOperator<'a> {
    model: &'a CompiledModel,
    /// gv-apply's arguments: the residuals (kept from prepare, never copied again), then one
    /// slot per direction, refilled by each `apply`.
    args: RefCell<Vec<Tensor>>,
    residual_count: usize,
    /// The slot in `args` of each parameter's direction, in parameter order.
    direction_slots: Vec<usize>,
    /// gv-apply's outputs, reused by [`GvOperator::apply_flat`] (empty before its first call).
    outputs: RefCell<Vec<Tensor>>,
}

impl GvOperator<'_> {
    /// `G v`, one tensor per parameter.
    pub fn apply(&self, v: &TensorMap) -> Result<TensorMap> {
        let graph = self.model.graphs.get(GraphName::GvApply);
        let mut args = self.args.borrow_mut();
        let directions = &graph.args()[self.residual_count..];
        for (slot, arg) in args[self.residual_count..].iter_mut().zip(directions) {
            *slot = direction(v, arg)?;
        }
        let out = self.model.executable(GraphName::GvApply).run(&args)?;
        Ok(self.model.per_param(out.into_iter()))
    }

    /// `G v` on flat vectors: `v` and the result hold the parameters in
    /// [`CompiledModel::param_names`] order, each row-major (the layout of
    /// [`ParamLayout`](crate::optim::ParamLayout)); the result replaces the contents of `gv`.
    /// The direction and output tensors, and `gv`'s capacity, are reused, so repeated calls
    /// (CG iterations) allocate nothing.
    pub fn apply_flat(&self, v: &[f64], gv: &mut Vec<f64>) -> Result<()> {
        let mut args = self.args.borrow_mut();
        let mut offset = 0;
        for &slot in &self.direction_slots {
            let n = args[slot].len();
            let part = v
                .get(offset..offset + n)
                .ok_or_else(|| flat_length_error(v.len()))?;
            args[slot].assign_f64(part);
            offset += n;
        }
        if offset != v.len() {
            return Err(flat_length_error(v.len()));
        }
        let executable = self.model.executable(GraphName::GvApply);
        let mut outputs = self.outputs.borrow_mut();
        if outputs.is_empty() {
            *outputs = executable.run(&args)?;
        } else {
            executable.run_into(&args, &mut outputs)?;
        }
        gv.clear();
        outputs.iter().for_each(|t| t.extend_f64(gv));
        Ok(())
    }
}

fn flat_length_error(len: usize) -> Error {
    Error::Tensor(format!(
        "a flat direction of {len} values does not match the parameters"
    ))
}

/// The tensor of direction `v` for argument `v.<param>`, checked against its type.
fn direction(v: &TensorMap, arg: &Arg) -> Result<Tensor> {
    let mut renamed = arg.clone();
    renamed.name = arg.name.strip_prefix("v.").unwrap_or(&arg.name).to_string();
    let mut checked = check_args(v, &[&renamed], "direction")?;
    Ok(checked.pop().expect("one argument checked"))
}

fn scalar(t: &Tensor) -> f64 {
    t.scalar_value().expect("the loss is a scalar")
}
