//! Every graph training needs, derived from a model's forward graph.
//!
//! All derivatives are built in one combined graph — primal, tangent and cotangent nodes side by
//! side, hash-consed, so shared work is shared — and then cut into the graphs below:
//!
//! - `J v`: push the directions `v` (one per parameter) forward to the output `z`;
//! - `∇_z L`: linearize the loss in `z` and transpose it with seed 1;
//! - `H_L u`: push `u` forward through `∇_z L` (forward over reverse: any loss expression works);
//! - `Jᵀ w`: transpose the linear map `v ↦ J v`;
//! - `G v = Jᵀ H_L J v`, which [`Derivatives::split`] cuts (after rewriting, when the model is
//!   optimized) into `gv-prepare` (everything not depending on `v`, run once per step) and
//!   `gv-apply` (linear in `v`, run once per CG iteration).

use super::split::{Cut, copy_nodes, extract, residuals};
use super::{AdError, jvp, transpose};
use crate::ir::{Arg, ArgRole, Graph, Leaf, NodeId, Op, TensorType};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

/// One parameter of a model: its name in the model and its type.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSlot {
    pub name: String,
    pub ty: TensorType,
}

/// What an argument of a derived graph stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An `input` or `target`: a batch tensor, by the argument's name.
    Data,
    /// Parameter number `.0` of the [`Signature`].
    Param(usize),
    /// The direction `v` of parameter number `.0`.
    Direction(usize),
    /// The cotangent `w` of `Jᵀ w`, shaped like the output.
    Cotangent,
    /// Output number `.0` of `gv-prepare`.
    Residual(usize),
}

/// The parameters of a model's derived graphs: the one place their identity is defined.
///
/// Every derived graph lists its parameter arguments, and its direction arguments, in this
/// order; the gradient outputs of `grad` (after the loss) and the outputs of `vjp`, `gv` and
/// `gv-apply` are per parameter, in this order too. Names such as `v.<p>` and `grad.<p>` are
/// only for people and files.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The network output's name (`z` in `output z = …`).
    pub output: String,
    /// The parameters, in declaration order.
    pub params: Vec<ParamSlot>,
}

impl Signature {
    /// What each argument of `graph`, one of the derived graphs, stands for.
    pub fn arg_slots(&self, graph: &Graph) -> Vec<Slot> {
        let mut seen = [0usize; 3];
        let mut next = |kind: usize| {
            seen[kind] += 1;
            seen[kind] - 1
        };
        graph
            .args()
            .iter()
            .map(|a| match a.role {
                ArgRole::Input | ArgRole::Target => Slot::Data,
                ArgRole::Param => Slot::Param(next(0)),
                ArgRole::Direction => Slot::Direction(next(1)),
                ArgRole::Cotangent => Slot::Cotangent,
                ArgRole::Residual => Slot::Residual(next(2)),
            })
            .collect()
    }
}

/// The graphs differentiation gives, before the Gauss-Newton product is split.
#[derive(Clone, Debug)]
pub struct Derivatives {
    pub signature: Signature,
    /// `(inputs, targets, params) → (z, loss)`.
    pub forward: Graph,
    /// `(inputs, targets, params) → (loss, grad.<p>…)`.
    pub grad: Graph,
    /// `(inputs, params, v.<p>…) → (z, jv)`.
    pub jvp: Graph,
    /// `(inputs, params, ct.<z>) → vjp.<p>…`: `Jᵀ w` for a cotangent `w` shaped like `z`.
    pub vjp: Graph,
    /// `(inputs, targets, params, v.<p>…) → gv.<p>…`: the one-shot product.
    pub gv: Graph,
}

impl Derivatives {
    /// The graphs with `gv` split at its residuals into `gv-prepare` and `gv-apply`, and
    /// `grad-prepare`, the gradient and gv-prepare fused.
    pub fn split(self) -> DerivedGraphs {
        let (gv_prepare, gv_apply) = split_gv(&self.gv);
        let grad_prepare = fuse("grad-prepare", &self.grad, &gv_prepare);
        DerivedGraphs {
            signature: self.signature,
            forward: self.forward,
            grad: self.grad,
            jvp: self.jvp,
            vjp: self.vjp,
            gv: self.gv,
            grad_prepare,
            gv_prepare,
            gv_apply,
        }
    }

    /// The graphs by their CLI names, in pipeline order.
    pub fn named(&self) -> [(&'static str, &Graph); 5] {
        [
            ("forward", &self.forward),
            ("grad", &self.grad),
            ("jvp", &self.jvp),
            ("vjp", &self.vjp),
            ("gv", &self.gv),
        ]
    }
}

/// Every graph training needs (see [`Signature`] for how they name the parameters).
///
/// ```
/// use sgn::Model;
/// use sgn::autodiff::{DerivedGraphs, GraphName};
///
/// let model = Model::parse(
///     "model dense\ninput x: f32[B, 2]\ntarget y: f32[B, 3]\n\
///      param w: f32[2, 3]\nparam b: f32[3]\noutput z = x @ w + b\nloss mse(z, y)\n",
/// )?;
/// let graphs: DerivedGraphs = model.derive()?.split();
/// let names: Vec<&str> = graphs.named().iter().map(|(name, _)| *name).collect();
/// assert_eq!(
///     names,
///     ["forward", "grad", "jvp", "vjp", "gv", "gv-prepare", "gv-apply", "grad-prepare"]
/// );
/// let outputs = |which| -> Vec<String> {
///     graphs.get(which).outputs().iter().map(|o| o.name.clone()).collect()
/// };
/// assert_eq!(outputs(GraphName::Grad), ["loss", "grad.w", "grad.b"]);
/// assert_eq!(outputs(GraphName::GvApply), ["gv.w", "gv.b"]); // G v, per parameter
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DerivedGraphs {
    pub signature: Signature,
    /// `(inputs, targets, params) → (z, loss)`.
    pub forward: Graph,
    /// `(inputs, targets, params) → (loss, grad.<p>…)`.
    pub grad: Graph,
    /// `(inputs, params, v.<p>…) → (z, jv)`.
    pub jvp: Graph,
    /// `(inputs, params, ct.<z>) → vjp.<p>…`: `Jᵀ w` for a cotangent `w` shaped like `z`.
    pub vjp: Graph,
    /// `(inputs, targets, params, v.<p>…) → gv.<p>…`: the one-shot product.
    pub gv: Graph,
    /// (inputs, targets, params) → residuals: the v-independent part of `G v`.
    pub gv_prepare: Graph,
    /// `(residuals (inputs and targets among them, read from the batch), inputs or targets
    /// that only fix a size it uses, v.<p>…) → gv.<p>…`: linear in `v`, no nonlinear primal op.
    pub gv_apply: Graph,
    /// `grad` and `gv-prepare` in one graph, for an SGN step, which needs both at the same
    /// point: `(inputs, targets, params) → (loss, grad.<p>…, residuals…)`, the forward pass
    /// they share computed once.
    pub grad_prepare: Graph,
}

/// `first` and `second`, graphs of the same arguments, as one graph with the outputs of both
/// (`second`'s renamed where `first` has the name): `second`'s nodes are copied into `first`'s,
/// where hash-consing merges what they share.
///
/// # Panics
/// If `second` has an argument `first` lacks.
fn fuse(name: &str, first: &Graph, second: &Graph) -> Graph {
    let mut out = first.clone();
    out.name = name.to_string();
    let mut map: FxHashMap<NodeId, NodeId> = FxHashMap::default();
    for arg in second.args() {
        let same = first
            .args()
            .iter()
            .find(|a| a.name == arg.name && a.role == arg.role)
            .unwrap_or_else(|| panic!("'{}' lacks argument '{}'", first.name, arg.name));
        map.insert(arg.node, same.node);
    }
    copy_nodes(second, &mut out, &mut map, |_| true);
    for output in second.outputs() {
        let mut output_name = output.name.clone();
        while out.output(&output_name).is_some() {
            output_name.push('\'');
        }
        out.add_output(output_name, map[&output.node]);
    }
    out
}

/// The derived graphs by name, in pipeline order.
///
/// ```
/// use sgn::autodiff::GraphName;
///
/// assert_eq!(GraphName::from_name("gv-apply"), Some(GraphName::GvApply));
/// assert_eq!(GraphName::GradPrepare.name(), "grad-prepare");
/// assert_eq!(GraphName::from_name("gv_apply"), None); // the CLI spelling only
/// for (i, which) in GraphName::ALL.into_iter().enumerate() {
///     assert_eq!(which.index(), i);
///     assert_eq!(GraphName::from_name(which.name()), Some(which));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GraphName {
    Forward,
    Grad,
    Jvp,
    Vjp,
    Gv,
    GvPrepare,
    GvApply,
    GradPrepare,
}

impl GraphName {
    pub const ALL: [GraphName; 8] = [
        GraphName::Forward,
        GraphName::Grad,
        GraphName::Jvp,
        GraphName::Vjp,
        GraphName::Gv,
        GraphName::GvPrepare,
        GraphName::GvApply,
        GraphName::GradPrepare,
    ];

    /// The position in [`GraphName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The CLI spelling (`gv-apply`, …).
    pub fn name(self) -> &'static str {
        match self {
            GraphName::Forward => "forward",
            GraphName::Grad => "grad",
            GraphName::Jvp => "jvp",
            GraphName::Vjp => "vjp",
            GraphName::Gv => "gv",
            GraphName::GvPrepare => "gv-prepare",
            GraphName::GvApply => "gv-apply",
            GraphName::GradPrepare => "grad-prepare",
        }
    }

    pub fn from_name(name: &str) -> Option<GraphName> {
        GraphName::ALL.into_iter().find(|g| g.name() == name)
    }
}

impl DerivedGraphs {
    /// One graph by name.
    pub fn get(&self, which: GraphName) -> &Graph {
        match which {
            GraphName::Forward => &self.forward,
            GraphName::Grad => &self.grad,
            GraphName::Jvp => &self.jvp,
            GraphName::Vjp => &self.vjp,
            GraphName::Gv => &self.gv,
            GraphName::GvPrepare => &self.gv_prepare,
            GraphName::GvApply => &self.gv_apply,
            GraphName::GradPrepare => &self.grad_prepare,
        }
    }

    /// The graphs by their CLI names, in pipeline order.
    pub fn named(&self) -> [(&'static str, &Graph); 8] {
        GraphName::ALL.map(|g| (g.name(), self.get(g)))
    }
}

/// Differentiates `forward`, a model's graph whose outputs are the network output named
/// `output` and the scalar `loss`, with respect to its `param` arguments.
///
/// Errors: either output missing, or a loss that is not a scalar (a model always has both,
/// and a scalar loss; a graph built or read otherwise may not).
pub fn derive(forward: &Graph, output: &str) -> Result<Derivatives, AdError> {
    let mut g = forward.clone();
    let output_of = |name: &str| {
        g.output(name).ok_or_else(|| AdError {
            op: "out".to_string(),
            span: None,
            reason: format!(
                "graph '{}' has no output '{name}' (a model's graph has its network output and \
                 the scalar 'loss')",
                g.name
            ),
        })
    };
    let (z, loss) = (output_of(output)?, output_of("loss")?);
    if g.ty(loss).shape.rank() != 0 {
        let reason = format!("the loss must be a scalar, not {}", g.ty(loss));
        return Err(AdError::at(&g, loss, reason));
    }
    let model_args: Vec<Cut> = g.args().iter().map(Cut::of_arg).collect();
    let params: Vec<(String, NodeId, TensorType)> = g
        .args()
        .iter()
        .filter(|a| a.role == ArgRole::Param)
        .map(|a| (a.name.clone(), a.node, a.ty.clone()))
        .collect();
    let directions: Vec<Cut> = params
        .iter()
        .map(|(name, _, ty)| Cut {
            node: g.add_arg(format!("v.{name}"), ArgRole::Direction, ty.clone()),
            name: format!("v.{name}"),
            role: ArgRole::Direction,
        })
        .collect();
    let ct = Cut {
        node: g.add_arg(format!("ct.{output}"), ArgRole::Cotangent, g.ty(z).clone()),
        name: format!("ct.{output}"),
        role: ArgRole::Cotangent,
    };
    let seeds: Vec<(NodeId, NodeId)> = params
        .iter()
        .zip(&directions)
        .map(|(p, v)| (p.1, v.node))
        .collect();
    let d = differentiate(g, z, loss, &seeds, ct.node)?;

    let named = |prefix: &str, nodes: &[NodeId]| -> Vec<(String, NodeId)> {
        params
            .iter()
            .zip(nodes)
            .map(|((name, ..), &node)| (format!("{prefix}.{name}"), node))
            .collect()
    };
    let non_targets: Vec<Cut> = model_args
        .iter()
        .filter(|c| c.role != ArgRole::Target)
        .cloned()
        .collect();
    let with =
        |base: &[Cut], extra: &[Cut]| -> Vec<Cut> { base.iter().chain(extra).cloned().collect() };
    let mut grad_outputs = vec![("loss".to_string(), loss)];
    grad_outputs.extend(named("grad", &d.grad));
    Ok(Derivatives {
        signature: Signature {
            output: output.to_string(),
            params: params
                .iter()
                .map(|(name, _, ty)| ParamSlot {
                    name: name.clone(),
                    ty: ty.clone(),
                })
                .collect(),
        },
        forward: extract(
            &d.g,
            "forward",
            &model_args,
            &[(output.to_string(), z), ("loss".to_string(), loss)],
        ),
        grad: extract(&d.g, "grad", &model_args, &grad_outputs),
        jvp: extract(
            &d.g,
            "jvp",
            &with(&non_targets, &directions),
            &[(output.to_string(), z), ("jv".to_string(), d.jv)],
        ),
        vjp: extract(
            &d.g,
            "vjp",
            &with(&non_targets, &[ct]),
            &named("vjp", &d.vjp),
        ),
        gv: extract(
            &d.g,
            "gv",
            &with(&model_args, &directions),
            &named("gv", &d.gv),
        ),
    })
}

/// The combined graph with every derivative in it: `J v`, and per parameter the gradient, `G v`
/// and `Jᵀ w` (zeros where a parameter does not reach the output).
struct Combined {
    g: Graph,
    jv: NodeId,
    grad: Vec<NodeId>,
    gv: Vec<NodeId>,
    vjp: Vec<NodeId>,
}

/// Builds every derivative into `g`: `seeds` pairs each parameter with its direction `v`, `ct`
/// is the cotangent argument `w`.
fn differentiate(
    mut g: Graph,
    z: NodeId,
    loss: NodeId,
    seeds: &[(NodeId, NodeId)],
    ct: NodeId,
) -> Result<Combined, AdError> {
    let v: Vec<NodeId> = seeds.iter().map(|&(_, v)| v).collect();
    let z_ty = g.ty(z).clone();
    let loss_ty = g.ty(loss).clone();
    let shape = |g: &Graph, e| AdError::from_shape(g, z, e);

    // J v, and the loss tangent along v (for the gradient).
    let tangents = jvp(&mut g, seeds, &[z, loss])?;
    let jv = or_zeros(&mut g, tangents[z.index()], &z_ty).map_err(|e| shape(&g, e))?;
    let dloss = tangents[loss.index()];

    // Gradient: the transpose of v ↦ dL, seeded with 1.
    let one = g.full(1.0, &loss_ty).map_err(|e| shape(&g, e))?;
    let grad = match dloss {
        Some(dloss) => transpose(&mut g, &v, &[(dloss, one)])?,
        None => vec![None; v.len()],
    };

    // ∇_z L: linearize the loss in z, transpose with seed 1.
    let dz = g.add_arg("d.z", ArgRole::Direction, z_ty.clone());
    let dl_dz = jvp(&mut g, &[(z, dz)], &[loss])?[loss.index()];
    let grad_z = match dl_dz {
        Some(dl) => transpose(&mut g, &[dz], &[(dl, one)])?[0],
        None => None,
    };
    let grad_z = or_zeros(&mut g, grad_z, &z_ty).map_err(|e| shape(&g, e))?;

    // H_L (J v): forward over reverse, along u = J v.
    let hu = jvp(&mut g, &[(z, jv)], &[grad_z])?[grad_z.index()];
    let hu = or_zeros(&mut g, hu, &z_ty).map_err(|e| shape(&g, e))?;

    // Jᵀ (H_L J v), and Jᵀ w for the cotangent w.
    let gv = transpose(&mut g, &v, &[(jv, hu)])?;
    let vjp = transpose(&mut g, &v, &[(jv, ct)])?;

    let mut per_param = |values: Vec<Option<NodeId>>| -> Result<Vec<NodeId>, AdError> {
        seeds
            .iter()
            .zip(values)
            .map(|(&(param, _), value)| {
                let ty = g.ty(param).clone();
                or_zeros(&mut g, value, &ty).map_err(|e| shape(&g, e))
            })
            .collect()
    };
    let (grad, gv, vjp) = (per_param(grad)?, per_param(gv)?, per_param(vjp)?);
    Ok(Combined {
        g,
        jv,
        grad,
        gv,
        vjp,
    })
}

/// Splits a one-shot `gv` graph at its residuals into prepare and apply stages. A residual is
/// named after the value it holds: the argument (`x`, `w2`), the value's name (`h1`, `h1'`,
/// `softmax(z)`), else `r<k>`; a name taken by an earlier residual gets a `#<k>` suffix. A
/// residual that is an `input` or `target` stays one of gv-apply's arguments as it is, read
/// from the batch: prepare passing it through would copy the batch at every step. So does an
/// input or target that only fixes a size gv-apply uses (`dim_size B`, a `[B, 10]` broadcast of
/// a direction) when no other argument of gv-apply fixes it (simplification left `sᵀs` a
/// residual, and no batched one).
fn split_gv(gv: &Graph) -> (Graph, Graph) {
    let (directions, model_args): (Vec<Cut>, Vec<Cut>) = gv
        .args()
        .iter()
        .map(Cut::of_arg)
        .partition(|c| c.role == ArgRole::Direction);
    let v: Vec<NodeId> = directions.iter().map(|c| c.node).collect();
    let mut taken = rustc_hash::FxHashSet::default();
    let arg_at: rustc_hash::FxHashMap<NodeId, &Arg> =
        gv.args().iter().map(|a| (a.node, a)).collect();
    let residual_cuts: Vec<Cut> = residuals(gv, &v)
        .into_iter()
        .enumerate()
        .map(|(k, node)| {
            let argument = arg_at.get(&node);
            if let Some(data) =
                argument.filter(|a| matches!(a.role, ArgRole::Input | ArgRole::Target))
            {
                let first = taken.insert(data.name.clone());
                debug_assert!(first, "'{}' names a residual before its input", data.name);
                return Cut::of_arg(data);
            }
            let mut name = match (argument, gv.label(node)) {
                (Some(arg), _) => arg.name.clone(),
                (None, Some(label)) => label.to_string(),
                (None, None) => format!("r{k}"),
            };
            if !taken.insert(name.clone()) {
                name = format!("{name}#{k}");
                taken.insert(name.clone());
            }
            Cut {
                node,
                name,
                role: ArgRole::Residual,
            }
        })
        .collect();
    let residual_outputs: Vec<(String, NodeId)> = residual_cuts
        .iter()
        .filter(|c| c.role == ArgRole::Residual)
        .map(|c| (c.name.clone(), c.node))
        .collect();
    let prepare = extract(gv, "gv-prepare", &model_args, &residual_outputs);
    let outputs: Vec<(String, NodeId)> = gv
        .outputs()
        .iter()
        .map(|o| (o.name.clone(), o.node))
        .collect();
    let with_directions = |mut args: Vec<Cut>| {
        args.extend(directions.iter().cloned());
        args
    };
    let apply = extract(
        gv,
        "gv-apply",
        &with_directions(residual_cuts.clone()),
        &outputs,
    );
    let unbound = unbound_symbols(&apply);
    if unbound.is_empty() {
        return (prepare, apply);
    }
    let mut data_args = residual_cuts;
    for symbol in &unbound {
        let binds = |c: &&Cut| {
            let dims = gv.ty(c.node).shape.dims();
            matches!(c.role, ArgRole::Input | ArgRole::Target)
                && dims.iter().any(|d| d.bare_symbol() == Some(symbol))
        };
        // None when no input or target fixes the symbol either: then no graph of the model
        // runs, and binding its arguments says so.
        let binder = model_args.iter().find(binds);
        if let Some(binder) = binder.filter(|_| !data_args.iter().any(|a| binds(&a))) {
            data_args.push(binder.clone());
        }
    }
    (
        prepare,
        extract(gv, "gv-apply", &with_directions(data_args), &outputs),
    )
}

/// The symbols `g` uses (in its values' shapes and `dim_size` leaves) that none of its
/// arguments fixes when it runs.
fn unbound_symbols(g: &Graph) -> Vec<Arc<str>> {
    let bound: FxHashSet<&Arc<str>> = (g.args().iter())
        .flat_map(|a| a.ty.shape.dims().iter().filter_map(|d| d.bare_symbol()))
        .collect();
    let mut unbound: Vec<Arc<str>> = Vec::new();
    for id in g.ids() {
        let sizes = g.ty(id).shape.dims().iter();
        let size_leaf = match &g.node(id).op {
            Op::Leaf(Leaf::DimSize(dim)) => Some(dim),
            _ => None,
        };
        for symbol in sizes.chain(size_leaf).flat_map(|d| d.symbols()) {
            if !bound.contains(&symbol) && !unbound.contains(symbol) {
                unbound.push(symbol.clone());
            }
        }
    }
    unbound
}

/// `value`, or zeros of type `ty` for a symbolic zero.
fn or_zeros(
    g: &mut Graph,
    value: Option<NodeId>,
    ty: &TensorType,
) -> Result<NodeId, crate::ir::ShapeError> {
    match value {
        Some(v) => Ok(v),
        None => g.full(0.0, ty),
    }
}

#[cfg(test)]
mod tests {
    use super::split_gv;
    use crate::ir::{ArgRole, DType, Dim, Graph, Shape, Tensor, TensorType, interp};

    fn ty(dims: Vec<Dim>) -> TensorType {
        TensorType::new(DType::F64, Shape(dims))
    }

    /// gv-apply fixes every size it uses from its own arguments: a batch size reaching it only
    /// through a broadcast of a direction (no `dim_size`, no batched residual), through a
    /// residual's `2*B` axis (which binds nothing), or two sizes of one input, bring in the
    /// input declaring them, once; gv-apply then runs from its own arguments.
    #[test]
    fn gv_apply_binds_every_size_it_uses() {
        let (b, t) = (Dim::sym("B"), Dim::sym("T"));
        for case in 0..3 {
            let mut g = Graph::new("gv");
            let x_dims = match case {
                0 => vec![b.clone(), Dim::fixed(4)],
                1 => vec![b.clone(), Dim::fixed(3)],
                _ => vec![b.clone(), t.clone()],
            };
            let x = g.add_arg("x", ArgRole::Input, ty(x_dims));
            let v = g.add_arg("v.w", ArgRole::Direction, ty(vec![Dim::fixed(3)]));
            let out = match case {
                // Σ over B of v broadcast to [B, 3]: B·v.
                0 => {
                    let wide = g
                        .broadcast(v, &Shape(vec![b.clone(), Dim::fixed(3)]))
                        .unwrap();
                    g.sum(wide, &[0]).unwrap()
                }
                // Σ over 2·B rows of x repeated twice (a residual with no bare B) times v.
                1 => {
                    let twice = g.apply(crate::ir::Op::concat(0), &[x, x]).unwrap();
                    let two_b = Shape(vec![b.mul(&Dim::fixed(2)), Dim::fixed(3)]);
                    let wide = g.broadcast(v, &two_b).unwrap();
                    let product = g.binary(crate::ir::BinaryOp::Mul, twice, wide).unwrap();
                    g.sum(product, &[0]).unwrap()
                }
                // Σ over B and T of v broadcast to [B, T, 3].
                _ => {
                    let shape = Shape(vec![b.clone(), t.clone(), Dim::fixed(3)]);
                    let wide = g.broadcast(v, &shape).unwrap();
                    g.sum(wide, &[0, 1]).unwrap()
                }
            };
            g.add_output("gv.w", out);
            let (_, apply) = split_gv(&g);
            let names: Vec<&str> = apply.args().iter().map(|a| a.name.as_str()).collect();
            assert_eq!(
                names.iter().filter(|&&n| n == "x").count(),
                1,
                "case {case}: {apply}"
            );
            let x_shape: &[usize] = match case {
                0 => &[5, 4],
                1 => &[5, 3],
                _ => &[5, 2],
            };
            let args: Vec<Tensor> = apply
                .args()
                .iter()
                .map(|a| {
                    let shape: Vec<usize> = match a.name.as_str() {
                        "x" => x_shape.to_vec(),
                        "v.w" => vec![3],
                        // The concatenated x of case 1, a residual.
                        _ => vec![10, 3],
                    };
                    let n = shape.iter().product();
                    Tensor::from_f64(DType::F64, &shape, vec![1.0; n]).unwrap()
                })
                .collect();
            let got = interp::run(&apply, &args).unwrap();
            let want = match case {
                0 => 5.0,
                _ => 10.0,
            };
            assert_eq!(got[0].to_f64_vec(), vec![want; 3], "case {case}: {apply}");
        }
    }
}
