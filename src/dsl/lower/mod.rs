//! Lowering: parsed statements → a [`Graph`] of primitive ops and the declared parameters.
//!
//! Every DSL operation becomes primitives here (see docs/DSL.md for each lowering): numpy
//! broadcasting becomes explicit [`broadcast`](crate::ir::Layout::Broadcast) nodes, `mean`
//! becomes a sum scaled by the element count (a [`dim_size`](crate::ir::Leaf::DimSize) when the
//! count is symbolic), softmax and the losses become their numerically stable forms, and `fn`s
//! are inlined. Numeric literals are folded and take the element type of the tensor they meet.
//!
//! Nodes are labelled with the names a reader knows them by: each declaration, `NAME = expr` and
//! `output NAME = expr` with NAME (a node keeps the first label it gets), the loss with `loss`,
//! and the key values of composites as `softmax(z)`, `log_softmax(z)`, `logsumexp(z)`, …
//!
//! The model's structure is checked too: one `model`, `output` and `loss`, at least one param,
//! no duplicate names, a scalar loss that depends on the params only through the output.
//!
//! This file holds the entry point, the lowerer's state and the statement-level checks; the
//! rest is by concern:
//! - `scope.rs`: names, scopes, calls, `fn` inlining, argument binding, suggestions;
//! - `expr.rs`: expressions, folding of numbers, elementwise arithmetic with broadcasting, `@`;
//! - `builtins.rs`: the table of builtin operations and the dispatch to their lowerings;
//! - `composites.rs`: reductions (`mean`, keepdims), softmax, log_softmax, logsumexp, the losses;
//! - `layout.rs`: reshape, transpose, concat;
//! - `conv.rs`: conv2d, max_pool2d, avg_pool2d, flatten;
//! - `args.rs`: literal arguments (dimensions, integers, axes, flags) and the size limit;
//! - `init.rs`: initializer syntax (`= normal(0.01)`).

mod args;
mod builtins;
mod composites;
mod conv;
mod expr;
mod init;
mod layout;
mod scope;

use super::parser::{Expr, ExprKind, Ident, Statement, StatementKind};
use crate::ir::Diagnostic;
use crate::ir::graph::{ArgRole, Graph, NodeId, Span};
use crate::ir::init::{Init, ParamSpec};
use crate::ir::op::ShapeError;
use crate::ir::shape::{Shape, TensorType};
use builtins::find_op;
use rustc_hash::FxHashMap;

/// The largest element count (fixed factors only) a tensor may have; larger shapes are errors,
/// which also keeps all dimension arithmetic far from `u64` overflow.
pub const MAX_ELEMENTS: u64 = 1 << 48;

/// A lowered model: its graph and parameter declarations, from which `Model` is built.
#[derive(Clone, Debug)]
pub struct Lowered {
    /// The name in the `model` statement.
    pub name: String,
    /// The declarations as arguments, in source order; outputs: the network output, then `loss`.
    pub graph: Graph,
    /// The name of the network output (`z` in `output z = …`).
    pub output: String,
    pub params: Vec<ParamSpec>,
}

/// Lowers parsed `statements` of `source` (named `file` in errors).
///
/// ```
/// use sgn::dsl::{lower::lower, parser::parse};
///
/// let source = "\
///     model m
///     input x: f32[B, 3]
///     target y: f32[B, 2]
///     param w: f32[3, 2]
///     h = x @ w
///     output z = softmax(h)
///     loss mse(z, y)
/// ";
/// let statements = parse("m.sgn", source)?;
/// let lowered = lower(&statements, "m.sgn", source)?;
/// assert_eq!((lowered.name.as_str(), lowered.output.as_str()), ("m", "z"));
/// let graph = &lowered.graph;
/// let z = graph.output("z").expect("the network output");
/// assert_eq!(graph.ty(z).to_string(), "f32[B, 2]");
/// // The node keeps the first label it was given: the composite's, then `z`.
/// assert_eq!(graph.label(z), Some("softmax(h)"));
/// assert_eq!(graph.label(graph.node(z).inputs[0]), Some("exp(h - max(h))"));
///
/// let bad = source.replace("softmax(h)", "softmax(h, axis=2)");
/// let err = lower(&parse("m.sgn", &bad)?, "m.sgn", &bad).unwrap_err();
/// assert_eq!(
///     err.to_string().lines().next(),
///     Some(
///         "m.sgn:6:32: error: axis 2 is out of range for shape [B, 2]; \
///          expected an axis from -2 to 1"
///     )
/// );
/// # Ok::<(), sgn::ir::Diagnostic>(())
/// ```
pub fn lower<'p>(
    statements: &'p [Statement],
    file: &'p str,
    source: &'p str,
) -> Result<Lowered, Diagnostic> {
    let mut lowerer = Lowerer {
        file,
        source,
        graph: Graph::new(""),
        sites: FxHashMap::default(),
        defs: FxHashMap::default(),
        fns: Vec::new(),
        inlined: FxHashMap::default(),
        depth: 0,
    };
    let model = lowerer.check_structure(statements)?;
    lowerer.graph.name = model.name.clone();
    let params = lowerer.declare(statements)?;
    let mut output: Option<(&Ident, NodeId)> = None;
    let mut loss: Option<(Span, NodeId)> = None;
    for (index, statement) in statements.iter().enumerate() {
        let top = Scope {
            locals: Vec::new(),
            before: index,
            inlining: None,
        };
        match &statement.kind {
            StatementKind::Model { .. } | StatementKind::Declare { .. } => {}
            StatementKind::Fn { name, params, body } => {
                lowerer
                    .defs
                    .insert(&name.name, (Def::Fn(lowerer.fns.len()), index));
                lowerer.fns.push(FnDef {
                    name,
                    params,
                    body,
                    statement: index,
                });
            }
            StatementKind::Let { name, value } => {
                let value = lowerer.expr(value, &top)?;
                if let Value::Tensor(node) = value {
                    lowerer.graph.set_label(node, &name.name);
                }
                lowerer.defs.insert(&name.name, (Def::Value(value), index));
            }
            StatementKind::Output { name, value } => {
                let Value::Tensor(node) = lowerer.expr(value, &top)? else {
                    return Err(lowerer.error(
                        value.span,
                        format!("the output '{}' is a constant; it must be a tensor computed from params", name.name),
                    ));
                };
                lowerer.check_output(name, node)?;
                lowerer.graph.set_label(node, &name.name);
                lowerer
                    .defs
                    .insert(&name.name, (Def::Value(Value::Tensor(node)), index));
                output = Some((name, node));
            }
            StatementKind::Loss { value } => {
                let Value::Tensor(node) = lowerer.expr(value, &top)? else {
                    return Err(lowerer.error(
                        statement.span,
                        "the loss is a constant; it must be computed from the output",
                    ));
                };
                lowerer.graph.set_label(node, "loss");
                loss = Some((statement.span, node));
            }
        }
    }
    let (output_name, output_node) = output.expect("check_structure found the output statement");
    let (loss_span, loss_node) = loss.expect("check_structure found the loss statement");
    lowerer.check_loss(loss_span, loss_node, output_name, output_node)?;
    let mut graph = lowerer.graph;
    graph.set_span(None);
    graph.add_output(output_name.name.clone(), output_node);
    graph.add_output("loss", loss_node);
    Ok(Lowered {
        name: model.name.clone(),
        graph: graph.pruned(),
        output: output_name.name.clone(),
        params,
    })
}

/// The value of an expression: a tensor in the graph, or a number not yet given a type.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Tensor(NodeId),
    Number(f64),
}

/// A [`Value`] as a hash key (the number by its bits), for memoizing inlined calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ValueKey {
    Tensor(NodeId),
    Number(u64),
}

impl Value {
    fn key(self) -> ValueKey {
        match self {
            Value::Tensor(id) => ValueKey::Tensor(id),
            Value::Number(x) => ValueKey::Number(x.to_bits()),
        }
    }
}

/// What a defined name stands for.
#[derive(Clone, Copy, Debug)]
enum Def {
    /// An `input`, `target` or `param`: visible from every statement.
    Arg(NodeId),
    /// A `NAME = expr` or `output NAME = expr`.
    Value(Value),
    /// A `fn`, by index into `Lowerer::fns`.
    Fn(usize),
}

#[derive(Clone, Copy)]
struct FnDef<'p> {
    name: &'p Ident,
    params: &'p [Ident],
    body: &'p Expr,
    statement: usize,
}

/// Where a name is defined (from the first pass over the statements).
#[derive(Clone, Copy)]
struct Site {
    span: Span,
    statement: usize,
}

/// The names an expression can see: a fn's parameters (when inlining one) and every top-level
/// definition made before statement `before`.
struct Scope<'s> {
    locals: Vec<(&'s str, Value)>,
    before: usize,
    /// The fn whose body this is (index into `Lowerer::fns`), if any.
    inlining: Option<usize>,
}

struct Lowerer<'p> {
    file: &'p str,
    source: &'p str,
    graph: Graph,
    /// Every name the model defines and where (first pass), for "used before its definition".
    sites: FxHashMap<&'p str, Site>,
    /// Names defined so far, each with the index of its statement: declarations from the start,
    /// the rest as their statements are lowered.
    defs: FxHashMap<&'p str, (Def, usize)>,
    fns: Vec<FnDef<'p>>,
    /// Results of inlined calls by fn and argument values: inlining is pure, and a chain of fns
    /// that each call the previous one twice would otherwise take exponential time.
    inlined: FxHashMap<(usize, Vec<ValueKey>), Value>,
    /// Current expression nesting, counting inlined fn bodies.
    depth: u32,
}

impl<'p> Lowerer<'p> {
    fn error(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, self.source, span, message)
    }

    /// Adds nodes with `build`, recording `span` as their origin and placing a shape-rule
    /// failure there.
    fn build<T>(
        &mut self,
        span: Span,
        build: impl FnOnce(&mut Graph) -> Result<T, ShapeError>,
    ) -> Result<T, Diagnostic> {
        self.graph.set_span(Some(span));
        build(&mut self.graph).map_err(|e| self.error(span, e.0))
    }

    fn ty(&self, node: NodeId) -> TensorType {
        self.graph.ty(node).clone()
    }

    /// `model` first and once, one `output`, one `loss`, a param, distinct names, fns that do
    /// not shadow ops. Returns the model's name.
    fn check_structure(&mut self, statements: &'p [Statement]) -> Result<&'p Ident, Diagnostic> {
        let Some(first) = statements.first() else {
            return Err(self.error(
                Span { line: 1, col: 1 },
                "expected 'model NAME' as the first statement, found an empty file",
            ));
        };
        let StatementKind::Model { name: model } = &first.kind else {
            return Err(self.error(
                first.span,
                format!(
                    "expected 'model NAME' as the first statement, found {}",
                    describe_statement(&first.kind)
                ),
            ));
        };
        let mut output: Option<&Ident> = None;
        let mut loss: Option<Span> = None;
        let mut has_param = false;
        for (index, statement) in statements.iter().enumerate().skip(1) {
            let defined = match &statement.kind {
                StatementKind::Model { .. } => {
                    return Err(self.error(
                        statement.span,
                        format!(
                            "a second 'model' statement; the model is already named '{}' at line {}",
                            model.name, model.span.line
                        ),
                    ));
                }
                StatementKind::Declare { role, name, .. } => {
                    has_param |= *role == ArgRole::Param;
                    name
                }
                StatementKind::Fn { name, params, .. } => {
                    self.check_fn(name, params)?;
                    name
                }
                StatementKind::Let { name, .. } => name,
                StatementKind::Output { name, .. } => {
                    if let Some(first) = output {
                        return Err(self.error(
                            statement.span,
                            format!(
                                "a second 'output' statement; the output '{}' is defined at line {} \
                                 (a model has exactly one output)",
                                first.name, first.span.line
                            ),
                        ));
                    }
                    output = Some(name);
                    name
                }
                StatementKind::Loss { .. } => {
                    if let Some(first) = loss {
                        return Err(self.error(
                            statement.span,
                            format!(
                                "a second 'loss' statement; the loss is defined at line {} \
                                 (a model has exactly one loss)",
                                first.line
                            ),
                        ));
                    }
                    loss = Some(statement.span);
                    continue;
                }
            };
            if let Some(site) = self.sites.get(defined.name.as_str()) {
                return Err(self.error(
                    defined.span,
                    format!(
                        "'{}' is already defined at line {}; every name is defined once",
                        defined.name, site.span.line
                    ),
                ));
            }
            self.sites.insert(
                &defined.name,
                Site {
                    span: defined.span,
                    statement: index,
                },
            );
        }
        let missing = if !has_param {
            Some("no param; expected at least one `param NAME: TYPE` line (the weights to train)")
        } else if output.is_none() {
            Some("no output; expected one `output NAME = expr` line (the network output)")
        } else if loss.is_none() {
            Some("no loss; expected one `loss expr` line (a scalar)")
        } else {
            None
        };
        if let Some(missing) = missing {
            return Err(self.error(model.span, format!("model '{}' has {missing}", model.name)));
        }
        Ok(model)
    }

    /// A fn does not shadow a builtin and names its parameters apart.
    fn check_fn(&self, name: &Ident, params: &[Ident]) -> Result<(), Diagnostic> {
        if find_op(&name.name).is_some() {
            return Err(self.error(
                name.span,
                format!(
                    "fn '{}' would shadow the built-in op '{}'; choose another name",
                    name.name, name.name
                ),
            ));
        }
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(self.error(
                    p.span,
                    format!("fn '{}' has two parameters named '{}'", name.name, p.name),
                ));
            }
        }
        Ok(())
    }

    /// Adds every `input`, `target` and `param` as a graph argument, in source order.
    fn declare(&mut self, statements: &'p [Statement]) -> Result<Vec<ParamSpec>, Diagnostic> {
        let mut params = Vec::new();
        for (index, statement) in statements.iter().enumerate() {
            let StatementKind::Declare {
                role,
                name,
                ty,
                init,
            } = &statement.kind
            else {
                continue;
            };
            let mut dims = Vec::with_capacity(ty.dims.len());
            for written in &ty.dims {
                let dim = self
                    .dim(written, false)?
                    .expect("-1 is rejected outside reshape");
                if *role == ArgRole::Param && dim.as_fixed().is_none() {
                    return Err(self.error(
                        written.span,
                        format!(
                            "param '{}' needs a fixed shape, but its dimension {dim} is symbolic \
                             (a parameter's size cannot depend on the batch)",
                            name.name
                        ),
                    ));
                }
                dims.push(dim);
            }
            let shape = Shape(dims);
            self.check_size(ty.span, &shape)?;
            let tensor_type = TensorType::new(ty.dtype, shape);
            self.graph.set_span(Some(name.span));
            let node = self
                .graph
                .add_arg(name.name.clone(), *role, tensor_type.clone());
            self.graph.set_label(node, &name.name);
            self.defs.insert(&name.name, (Def::Arg(node), index));
            if *role == ArgRole::Param {
                let init = match init {
                    Some(init) => self.init(init, ty.dtype)?,
                    None => Init::default_for_rank(tensor_type.shape.rank()),
                };
                params.push(ParamSpec {
                    name: name.name.clone(),
                    ty: tensor_type,
                    init,
                });
            }
        }
        Ok(params)
    }

    /// The output depends on a param and on no target.
    fn check_output(&self, name: &Ident, node: NodeId) -> Result<(), Diagnostic> {
        let reached = self.graph.ancestors([node], |_| false);
        let reached_arg = |role| {
            self.graph
                .args()
                .iter()
                .find(|a| a.role == role && reached.get(a.node.index()) == Some(&true))
        };
        if let Some(target) = reached_arg(ArgRole::Target) {
            return Err(self.error(
                name.span,
                format!(
                    "the output '{}' depends on the target '{}'; targets may be used only by the loss",
                    name.name, target.name
                ),
            ));
        }
        if reached_arg(ArgRole::Param).is_none() {
            return Err(self.error(
                name.span,
                format!(
                    "the output '{}' does not depend on any param; there is nothing to train",
                    name.name
                ),
            ));
        }
        Ok(())
    }

    /// The loss is a scalar that depends on the output, and on params only through it.
    fn check_loss(
        &self,
        span: Span,
        loss: NodeId,
        output: &Ident,
        output_node: NodeId,
    ) -> Result<(), Diagnostic> {
        let ty = self.graph.ty(loss);
        if ty.shape.rank() != 0 {
            return Err(self.error(
                span,
                format!("the loss must be a scalar, found {ty}; reduce it with sum(…) or mean(…)"),
            ));
        }
        let reached = self.graph.ancestors([loss], |id| id == output_node);
        if reached.get(output_node.index()) != Some(&true) {
            return Err(self.error(
                span,
                format!(
                    "the loss does not depend on the output '{}'; it must be computed from the output (and targets)",
                    output.name
                ),
            ));
        }
        let direct = self.graph.args().iter().find(|a| {
            a.role == ArgRole::Param
                && a.node != output_node
                && reached.get(a.node.index()) == Some(&true)
        });
        if let Some(param) = direct {
            return Err(self.error(
                span,
                format!(
                    "the loss uses the param '{}' directly, not only through the output '{}'; \
                     the Gauss-Newton split needs a loss computed from the output and targets alone",
                    param.name, output.name
                ),
            ));
        }
        Ok(())
    }
}

/// How an expression is named in errors.
fn describe(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Int(n) => format!("the number {n}"),
        ExprKind::Float(x) => format!("the number {x}"),
        ExprKind::Bool(b) => format!("'{b}'"),
        ExprKind::Str(text) => format!("the string {text:?}"),
        ExprKind::Name(name) => format!("the name '{name}'"),
        ExprKind::List(_) => "a list".to_string(),
        ExprKind::Neg(_) | ExprKind::Binary { .. } => "an arithmetic expression".to_string(),
        ExprKind::Call { callee, .. } => format!("a call to '{}'", callee.name),
    }
}

fn describe_statement(kind: &StatementKind) -> String {
    match kind {
        StatementKind::Model { .. } => "a model statement".to_string(),
        StatementKind::Declare { role, name, .. } => format!("the {} '{}'", role.name(), name.name),
        StatementKind::Fn { name, .. } => format!("fn '{}'", name.name),
        StatementKind::Let { name, .. } => format!("the definition of '{}'", name.name),
        StatementKind::Output { name, .. } => format!("the output '{}'", name.name),
        StatementKind::Loss { .. } => "the loss".to_string(),
    }
}
