//! Lowering: parsed statements → a [`Graph`] of primitive ops and the declared parameters.
//!
//! Every DSL operation becomes primitives here (see docs/DSL.md for each lowering): numpy
//! broadcasting becomes explicit [`Op::Broadcast`] nodes, `mean` becomes a sum scaled by the
//! element count (a [`Op::DimSize`] when the count is symbolic), softmax and the losses become
//! their numerically stable forms, and `fn`s are inlined. Numeric literals are folded and take
//! the element type of the tensor they meet.
//!
//! The model's structure is checked too: one `model`, `output` and `loss`, at least one param,
//! no duplicate names, a scalar loss that depends on the params only through the output.

use super::parser::{BinOp, Expr, ExprKind, Ident, MAX_DEPTH, Statement, StatementKind, closest};
use crate::ir::Diagnostic;
use crate::ir::graph::{ArgRole, Graph, NodeId, Span};
use crate::ir::init::{Init, ParamSpec};
use crate::ir::op::{BinaryOp, Op, ShapeError, UnaryOp};
use crate::ir::shape::{Dim, Shape, TensorType};
use std::collections::HashMap;

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
pub fn lower<'p>(
    statements: &'p [Statement],
    file: &'p str,
    source: &'p str,
) -> Result<Lowered, Diagnostic> {
    let mut lowerer = Lowerer {
        file,
        source,
        graph: Graph::new(""),
        sites: HashMap::new(),
        defs: HashMap::new(),
        fns: Vec::new(),
        inlined: HashMap::new(),
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

#[derive(Clone, Copy, Debug)]
enum Reduction {
    Sum,
    Mean,
    Max,
}

#[derive(Clone, Copy, Debug)]
enum LossKind {
    SoftmaxCrossEntropy,
    Mse,
    SigmoidCrossEntropy,
}

/// The DSL's built-in operations.
#[derive(Clone, Copy, Debug)]
enum OpKind {
    Unary(UnaryOp),
    Square,
    Pow,
    Elementwise(BinaryOp),
    Reduce(Reduction),
    Reshape,
    Transpose,
    Concat,
    Softmax,
    LogSoftmax,
    LogSumExp,
    Loss(LossKind),
}

impl OpKind {
    /// How many leading arguments are operands: values lowered before the op applies (the
    /// other arguments, such as axes and shapes, are read from the syntax).
    fn operands(self) -> usize {
        match self {
            OpKind::Pow | OpKind::Elementwise(_) | OpKind::Loss(_) => 2,
            _ => 1,
        }
    }
}

/// A built-in operation's name, parameter names (keyword names too) and how many are required.
struct OpSpec {
    name: &'static str,
    kind: OpKind,
    params: &'static [&'static str],
    required: usize,
}

const fn op(
    name: &'static str,
    kind: OpKind,
    params: &'static [&'static str],
    required: usize,
) -> OpSpec {
    OpSpec {
        name,
        kind,
        params,
        required,
    }
}

const ONE: &[&str] = &["x"];
const TWO: &[&str] = &["x", "y"];
const REDUCE: &[&str] = &["x", "axis", "keepdims"];
const LOSS: &[&str] = &["z", "y"];

const OPS: [OpSpec; 25] = [
    op("neg", OpKind::Unary(UnaryOp::Neg), ONE, 1),
    op("exp", OpKind::Unary(UnaryOp::Exp), ONE, 1),
    op("log", OpKind::Unary(UnaryOp::Log), ONE, 1),
    op("tanh", OpKind::Unary(UnaryOp::Tanh), ONE, 1),
    op("sigmoid", OpKind::Unary(UnaryOp::Sigmoid), ONE, 1),
    op("relu", OpKind::Unary(UnaryOp::Relu), ONE, 1),
    op("softplus", OpKind::Unary(UnaryOp::Softplus), ONE, 1),
    op("sqrt", OpKind::Unary(UnaryOp::Sqrt), ONE, 1),
    op("abs", OpKind::Unary(UnaryOp::Abs), ONE, 1),
    op("square", OpKind::Square, ONE, 1),
    op("pow", OpKind::Pow, &["x", "c"], 2),
    op("maximum", OpKind::Elementwise(BinaryOp::Max), TWO, 2),
    op("minimum", OpKind::Elementwise(BinaryOp::Min), TWO, 2),
    op("sum", OpKind::Reduce(Reduction::Sum), REDUCE, 1),
    op("mean", OpKind::Reduce(Reduction::Mean), REDUCE, 1),
    op("max", OpKind::Reduce(Reduction::Max), REDUCE, 1),
    op("reshape", OpKind::Reshape, &["x", "shape"], 2),
    op("transpose", OpKind::Transpose, &["x", "perm"], 1),
    op("concat", OpKind::Concat, &["xs", "axis"], 1),
    op("softmax", OpKind::Softmax, &["x", "axis"], 1),
    op("log_softmax", OpKind::LogSoftmax, &["x", "axis"], 1),
    op("logsumexp", OpKind::LogSumExp, REDUCE, 1),
    op(
        "softmax_cross_entropy",
        OpKind::Loss(LossKind::SoftmaxCrossEntropy),
        LOSS,
        2,
    ),
    op("mse", OpKind::Loss(LossKind::Mse), LOSS, 2),
    op(
        "sigmoid_cross_entropy",
        OpKind::Loss(LossKind::SigmoidCrossEntropy),
        LOSS,
        2,
    ),
];

fn find_op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|op| op.name == name)
}

/// The initializers: name and argument names.
const INITS: [(&str, &[&str]); 9] = [
    ("zeros", &[]),
    ("ones", &[]),
    ("constant", &["c"]),
    ("normal", &["std"]),
    ("uniform", &["lo", "hi"]),
    ("glorot_uniform", &[]),
    ("glorot_normal", &[]),
    ("he_uniform", &[]),
    ("he_normal", &[]),
];

struct Lowerer<'p> {
    file: &'p str,
    source: &'p str,
    graph: Graph,
    /// Every name the model defines and where (first pass), for "used before its definition".
    sites: HashMap<&'p str, Site>,
    /// Names defined so far, each with the index of its statement: declarations from the start,
    /// the rest as their statements are lowered.
    defs: HashMap<&'p str, (Def, usize)>,
    fns: Vec<FnDef<'p>>,
    /// Results of inlined calls by fn and argument values: inlining is pure, and a chain of fns
    /// that each call the previous one twice would otherwise take exponential time.
    inlined: HashMap<(usize, Vec<ValueKey>), Value>,
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

    // ----- statements -----

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
            self.defs.insert(&name.name, (Def::Arg(node), index));
            if *role == ArgRole::Param {
                let init = match init {
                    Some(init) => self.init(init)?,
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

    // ----- names -----

    fn lookup(&self, name: &str, span: Span, scope: &Scope) -> Result<Value, Diagnostic> {
        if let Some(&(_, value)) = scope.locals.iter().find(|(n, _)| *n == name) {
            return Ok(value);
        }
        match self.defs.get(name) {
            Some(&(Def::Arg(node), _)) => return Ok(Value::Tensor(node)),
            Some(&(Def::Value(value), index)) if index < scope.before => return Ok(value),
            Some(&(Def::Fn(_), _)) => {
                return Err(self.error(span, format!("'{name}' is a fn; call it as {name}(…)")));
            }
            _ => {}
        }
        if find_op(name).is_some() {
            return Err(self.error(
                span,
                format!("'{name}' is a built-in op; call it as {name}(…)"),
            ));
        }
        if let Some(site) = self.sites.get(name) {
            return Err(self.error(span, self.too_late(name, site, scope)));
        }
        let mut known: Vec<&str> = scope.locals.iter().map(|(n, _)| *n).collect();
        known.extend(self.defs.iter().filter_map(|(n, (def, index))| match def {
            Def::Arg(_) => Some(*n),
            Def::Value(_) => (*index < scope.before).then_some(*n),
            Def::Fn(_) => None,
        }));
        known.sort_unstable();
        Err(self.error(
            span,
            format!(
                "unknown name '{name}'{}",
                suggestion(name, &known, "known names")
            ),
        ))
    }

    /// Why a name defined at `site` is not visible in `scope`.
    fn too_late(&self, name: &str, site: &Site, scope: &Scope) -> String {
        match scope.inlining.map(|f| self.fns[f]) {
            Some(f) if site.statement == f.statement => {
                format!(
                    "fn '{name}' cannot call itself (fns are inlined, so recursion would not end)"
                )
            }
            Some(f) => format!(
                "'{name}' is defined at line {}, after fn '{}' (line {}); a fn body may use only its \
                 parameters, declarations and names defined before the fn",
                site.span.line, f.name.name, f.name.span.line
            ),
            None => format!(
                "'{name}' is used before its definition at line {}",
                site.span.line
            ),
        }
    }

    // ----- expressions -----

    fn expr(&mut self, expr: &Expr, scope: &Scope) -> Result<Value, Diagnostic> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(self.too_deep(expr))
        } else {
            self.expr_inner(expr, scope)
        };
        self.depth -= 1;
        result
    }

    fn too_deep(&self, expr: &Expr) -> Diagnostic {
        self.error(
            expr.span,
            format!(
                "expression nested too deeply once fns are inlined (more than {MAX_DEPTH} levels); \
                 split it into named steps"
            ),
        )
    }

    fn expr_inner(&mut self, expr: &Expr, scope: &Scope) -> Result<Value, Diagnostic> {
        match &expr.kind {
            ExprKind::Int(n) => Ok(Value::Number(*n as f64)),
            ExprKind::Float(x) => Ok(Value::Number(*x)),
            ExprKind::Name(name) => self.lookup(name, expr.span, scope),
            ExprKind::Bool(_) | ExprKind::List(_) => Err(self.misplaced(expr)),
            ExprKind::Neg(x) => {
                let x = self.expr(x, scope)?;
                self.unary(UnaryOp::Neg, x, expr.span)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.expr(lhs, scope)?;
                let b = self.expr(rhs, scope)?;
                match op {
                    BinOp::Add => self.elementwise(BinaryOp::Add, "'+'", a, b, expr.span),
                    BinOp::Sub => self.elementwise(BinaryOp::Sub, "'-'", a, b, expr.span),
                    BinOp::Mul => self.elementwise(BinaryOp::Mul, "'*'", a, b, expr.span),
                    BinOp::Div => self.elementwise(BinaryOp::Div, "'/'", a, b, expr.span),
                    BinOp::MatMul => self.matmul(a, b, expr.span),
                }
            }
            ExprKind::Call {
                callee,
                args,
                kwargs,
            } => self.call(callee, args, kwargs, scope),
        }
    }

    /// The error for a bool or list where a value is expected.
    fn misplaced(&self, expr: &Expr) -> Diagnostic {
        let message = match &expr.kind {
            ExprKind::Bool(b) => format!("'{b}' is a bool; bools are allowed only as keepdims=true/false"),
            _ => "a list is allowed only as an axis, a shape, a permutation or the operands of concat".to_string(),
        };
        self.error(expr.span, message)
    }

    fn call(
        &mut self,
        callee: &Ident,
        args: &[Expr],
        kwargs: &[(Ident, Expr)],
        scope: &Scope,
    ) -> Result<Value, Diagnostic> {
        if let Some(&(Def::Fn(index), _)) = self.defs.get(callee.name.as_str())
            && self.fns[index].statement < scope.before
        {
            return self.inline(index, callee, args, kwargs, scope);
        }
        if let Some(spec) = find_op(&callee.name) {
            let bound = self.bind(callee, spec.params, spec.required, args, kwargs)?;
            return self.builtin(spec, callee.span, &bound, scope);
        }
        Err(self.not_callable(callee, scope))
    }

    /// Why `callee` names neither a visible fn nor an op.
    fn not_callable(&self, callee: &Ident, scope: &Scope) -> Diagnostic {
        let name = callee.name.as_str();
        if let Some(&(Def::Fn(index), _)) = self.defs.get(name) {
            let site = Site {
                span: self.fns[index].name.span,
                statement: self.fns[index].statement,
            };
            return self.error(callee.span, self.too_late(name, &site, scope));
        }
        if scope.locals.iter().any(|(n, _)| *n == name) || self.defs.contains_key(name) {
            return self.error(callee.span, format!("'{name}' is a value, not a function"));
        }
        if let Some(site) = self.sites.get(name) {
            return self.error(callee.span, self.too_late(name, site, scope));
        }
        let mut known: Vec<&str> = OPS.iter().map(|op| op.name).collect();
        known.extend(
            self.fns
                .iter()
                .filter(|f| f.statement < scope.before)
                .map(|f| f.name.name.as_str()),
        );
        self.error(
            callee.span,
            format!(
                "unknown function '{name}'{}",
                suggestion(name, &known, "known functions")
            ),
        )
    }

    /// Matches a call's arguments to parameter names: positional ones first, then keywords.
    fn bind<'e>(
        &self,
        callee: &Ident,
        params: &[&str],
        required: usize,
        args: &'e [Expr],
        kwargs: &'e [(Ident, Expr)],
    ) -> Result<Vec<Option<&'e Expr>>, Diagnostic> {
        let signature = || {
            let shown: Vec<String> = params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i < required {
                        p.to_string()
                    } else {
                        format!("{p}=…")
                    }
                })
                .collect();
            format!("{}({})", callee.name, shown.join(", "))
        };
        if args.len() > params.len() {
            return Err(self.error(
                callee.span,
                format!(
                    "too many arguments to '{}': expected {}, found {} arguments",
                    callee.name,
                    signature(),
                    args.len() + kwargs.len()
                ),
            ));
        }
        let mut bound: Vec<Option<&Expr>> = vec![None; params.len()];
        for (slot, arg) in bound.iter_mut().zip(args) {
            *slot = Some(arg);
        }
        for (key, value) in kwargs {
            let Some(at) = params.iter().position(|p| *p == key.name) else {
                return Err(self.error(
                    key.span,
                    format!(
                        "'{}' has no argument named '{}'{}",
                        callee.name,
                        key.name,
                        suggestion(&key.name, params, "its arguments")
                    ),
                ));
            };
            if bound[at].replace(value).is_some() {
                return Err(self.error(
                    key.span,
                    format!(
                        "argument '{}' of '{}' is given twice",
                        key.name, callee.name
                    ),
                ));
            }
        }
        if let Some(missing) = (0..required).find(|&i| bound[i].is_none()) {
            return Err(self.error(
                callee.span,
                format!(
                    "missing argument '{}' in the call to '{}': expected {}",
                    params[missing],
                    callee.name,
                    signature()
                ),
            ));
        }
        Ok(bound)
    }

    /// A call to a user fn: its body lowered with the parameters bound to the argument values.
    fn inline(
        &mut self,
        index: usize,
        callee: &Ident,
        args: &[Expr],
        kwargs: &[(Ident, Expr)],
        scope: &Scope,
    ) -> Result<Value, Diagnostic> {
        let f = self.fns[index];
        let names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
        let bound = self.bind(callee, &names, names.len(), args, kwargs)?;
        let mut values = Vec::with_capacity(bound.len());
        for arg in bound {
            values.push(self.expr(arg.expect("every fn parameter is required"), scope)?);
        }
        let key = (index, values.iter().map(|v| v.key()).collect());
        if let Some(&value) = self.inlined.get(&key) {
            return Ok(value);
        }
        let body_scope = Scope {
            locals: names.into_iter().zip(values).collect(),
            before: f.statement,
            inlining: Some(index),
        };
        let value = self.expr(f.body, &body_scope).map_err(|inner| {
            self.error(
                callee.span,
                format!(
                    "in fn '{}' (line {}) called here, at {}:{}: {}",
                    f.name.name, f.name.span.line, inner.span.line, inner.span.col, inner.message
                ),
            )
        })?;
        self.inlined.insert(key, value);
        Ok(value)
    }

    /// A call to a built-in op: its operands (the arguments that are values) are lowered here,
    /// the rest (axes, shapes, flags) are read from the syntax by [`Self::apply_builtin`].
    fn builtin(
        &mut self,
        spec: &OpSpec,
        span: Span,
        args: &[Option<&Expr>],
        scope: &Scope,
    ) -> Result<Value, Diagnostic> {
        let list = args[0].expect("the first argument of every op is required");
        let operands: Vec<&Expr> = match (spec.kind, &list.kind) {
            (OpKind::Concat, ExprKind::List(items)) => items.iter().collect(),
            (OpKind::Concat, _) => return Err(self.concat_needs_list(list)),
            _ => args[..spec.kind.operands()]
                .iter()
                .map(|a| a.expect("operands are required arguments"))
                .collect(),
        };
        let mut values = Vec::with_capacity(operands.len());
        for operand in &operands {
            values.push(self.expr(operand, scope)?);
        }
        self.apply_builtin(spec, span, args, &operands, &values)
    }

    fn apply_builtin(
        &mut self,
        spec: &OpSpec,
        span: Span,
        args: &[Option<&Expr>],
        operands: &[&Expr],
        values: &[Value],
    ) -> Result<Value, Diagnostic> {
        let name = spec.name;
        let operand_of = format!("the operand of {name}");
        match spec.kind {
            OpKind::Unary(op) => self.unary(op, values[0], span),
            OpKind::Square => match values[0] {
                Value::Number(x) => self.folded(span, x * x),
                Value::Tensor(x) => Ok(Value::Tensor(
                    self.build(span, |g| g.binary(BinaryOp::Mul, x, x))?,
                )),
            },
            OpKind::Pow => {
                let Value::Number(c) = values[1] else {
                    return Err(self.error(
                        operands[1].span,
                        "the exponent of pow must be a constant number, found a tensor",
                    ));
                };
                match values[0] {
                    Value::Number(x) => self.folded(span, x.powf(c)),
                    Value::Tensor(x) => Ok(Value::Tensor(
                        self.build(span, |g| g.apply(Op::pow(c), &[x]))?,
                    )),
                }
            }
            OpKind::Elementwise(op) => {
                self.elementwise(op, &format!("'{name}'"), values[0], values[1], span)
            }
            OpKind::Reduce(reduction) => self.reduce(reduction, values[0], args[1], args[2], span),
            OpKind::Reshape => {
                let x = self.tensor_operand(values[0], operands[0], &operand_of)?;
                self.reshape(x, args[1].expect("reshape's shape is required"), span)
            }
            OpKind::Transpose => {
                let x = self.tensor_operand(values[0], operands[0], &operand_of)?;
                self.transpose(x, args[1], span)
            }
            OpKind::Concat => {
                let list = args[0].expect("concat's operands are required");
                let mut nodes = Vec::with_capacity(values.len());
                for (value, operand) in values.iter().zip(operands) {
                    nodes.push(self.tensor_operand(*value, operand, "each operand of concat")?);
                }
                self.concat(&nodes, operands, list.span, args[1], span)
            }
            OpKind::Softmax | OpKind::LogSoftmax | OpKind::LogSumExp => {
                let x = self.tensor_operand(values[0], operands[0], &operand_of)?;
                let shape = self.ty(x).shape;
                let axis = match args[1] {
                    Some(axis) => self.axis(axis, &shape)?,
                    None => self.normalize_axis(-1, span, &shape)?,
                };
                let node = match spec.kind {
                    OpKind::Softmax => self.softmax(x, axis, span)?,
                    OpKind::LogSoftmax => self.log_softmax(x, axis, span)?,
                    _ => {
                        let keepdims = self.flag(args[2], "keepdims")?;
                        self.logsumexp(x, axis, keepdims, span)?
                    }
                };
                Ok(Value::Tensor(node))
            }
            OpKind::Loss(kind) => {
                let z = self.tensor_operand(
                    values[0],
                    operands[0],
                    &format!("the first argument of {name} (the output)"),
                )?;
                let y = self.tensor_operand(
                    values[1],
                    operands[1],
                    &format!("the second argument of {name} (the target)"),
                )?;
                self.loss(kind, name, z, y, span).map(Value::Tensor)
            }
        }
    }

    /// The tensor an operand evaluated to; numbers are rejected (`what` names the operand).
    fn tensor_operand(
        &self,
        value: Value,
        operand: &Expr,
        what: &str,
    ) -> Result<NodeId, Diagnostic> {
        match value {
            Value::Tensor(node) => Ok(node),
            Value::Number(x) => Err(self.error(
                operand.span,
                format!("{what} must be a tensor, found the number {x}"),
            )),
        }
    }

    fn concat_needs_list(&self, found: &Expr) -> Diagnostic {
        self.error(
            found.span,
            format!(
                "concat takes a list of tensors, as in concat([a, b], axis=1), found {}",
                describe(found)
            ),
        )
    }

    // ----- elementwise ops and literals -----

    /// A folded constant, which must be finite.
    fn folded(&self, span: Span, value: f64) -> Result<Value, Diagnostic> {
        self.finite(span, value).map(Value::Number)
    }

    fn finite(&self, span: Span, value: f64) -> Result<f64, Diagnostic> {
        if !value.is_finite() {
            return Err(self.error(
                span,
                format!("this constant evaluates to {value}, not a finite number"),
            ));
        }
        Ok(value)
    }

    fn unary(&mut self, op: UnaryOp, x: Value, span: Span) -> Result<Value, Diagnostic> {
        match x {
            Value::Number(x) => self.folded(span, UnaryOp::eval(op, x)),
            Value::Tensor(x) => Ok(Value::Tensor(self.build(span, |g| g.unary(op, x))?)),
        }
    }

    /// `a op b` with numpy broadcasting made explicit; a number becomes a constant of the
    /// other operand's element type. `symbol` names the operator in errors.
    fn elementwise(
        &mut self,
        op: BinaryOp,
        symbol: &str,
        a: Value,
        b: Value,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let constant = |g: &mut Graph, x: f64, like: NodeId| Ok(g.constant(x, g.ty(like).dtype));
        let (a, b) = match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                return self.folded(span, BinaryOp::eval(op, x, y));
            }
            (Value::Number(x), Value::Tensor(b)) => (self.build(span, |g| constant(g, x, b))?, b),
            (Value::Tensor(a), Value::Number(y)) => (a, self.build(span, |g| constant(g, y, a))?),
            (Value::Tensor(a), Value::Tensor(b)) => (a, b),
        };
        let (ta, tb) = (self.ty(a), self.ty(b));
        self.same_dtype(symbol, &ta, &tb, span)?;
        let Some(shape) = ta.shape.broadcast(&tb.shape) else {
            return Err(self.error(
                span,
                format!(
                    "{symbol} cannot broadcast shapes {} and {} (numpy rules: aligned from the last \
                     axis, sizes must be equal or 1)",
                    ta.shape, tb.shape
                ),
            ));
        };
        self.check_size(span, &shape)?;
        let a = self.build(span, |g| g.broadcast(a, &shape))?;
        let b = self.build(span, |g| g.broadcast(b, &shape))?;
        Ok(Value::Tensor(self.build(span, |g| g.binary(op, a, b))?))
    }

    /// Operands of one element type (there is no implicit conversion); `symbol` names the op.
    fn same_dtype(
        &self,
        symbol: &str,
        a: &TensorType,
        b: &TensorType,
        span: Span,
    ) -> Result<(), Diagnostic> {
        if a.dtype == b.dtype {
            return Ok(());
        }
        Err(self.error(
            span,
            format!(
                "{symbol} mixes element types {} and {} ({a} and {b}); both operands must have one type",
                a.dtype, b.dtype
            ),
        ))
    }

    /// Elementwise on two tensors of one type and shape (no broadcasting).
    fn binary(
        &mut self,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        self.build(span, |g| g.binary(op, a, b))
    }

    /// `x @ w`: rank-2 by rank-2, or rank-N by rank-2 over the last axis of `x`.
    fn matmul(&mut self, a: Value, b: Value, span: Span) -> Result<Value, Diagnostic> {
        let (Value::Tensor(a), Value::Tensor(b)) = (a, b) else {
            return Err(self.error(span, "'@' multiplies tensors, found a number operand"));
        };
        let (ta, tb) = (self.ty(a), self.ty(b));
        self.same_dtype("'@'", &ta, &tb, span)?;
        let (sa, sb) = (ta.shape.dims(), tb.shape.dims());
        if sa.len() < 2 || sb.len() != 2 {
            return Err(self.error(
                span,
                format!(
                    "'@' multiplies a tensor of rank 2 or more by a rank-2 matrix, found {} @ {}",
                    ta.shape, tb.shape
                ),
            ));
        }
        let (lead, k) = sa.split_at(sa.len() - 1);
        if k[0] != sb[0] {
            return Err(self.error(
                span,
                format!(
                    "'@' needs the last axis of the left operand to equal the first axis of the right, \
                     found {} @ {} ({} vs {})",
                    ta.shape, tb.shape, k[0], sb[0]
                ),
            ));
        }
        let mut out_dims = lead.to_vec();
        out_dims.push(sb[1].clone());
        let out_shape = Shape(out_dims);
        self.check_size(span, &out_shape)?;
        if lead.len() == 1 {
            return Ok(Value::Tensor(self.build(span, |g| g.matmul(a, b))?));
        }
        let rows = Shape(lead.to_vec()).numel();
        let flat = self.build(span, |g| g.reshape(a, &Shape(vec![rows, k[0].clone()])))?;
        let product = self.build(span, |g| g.matmul(flat, b))?;
        Ok(Value::Tensor(
            self.build(span, |g| g.reshape(product, &out_shape))?,
        ))
    }

    // ----- reductions -----

    fn reduce(
        &mut self,
        reduction: Reduction,
        x: Value,
        axis: Option<&Expr>,
        keepdims: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let shape = match x {
            Value::Tensor(x) => self.ty(x).shape,
            Value::Number(_) => Shape::scalar(),
        };
        let axes = self.axes(axis, &shape)?;
        let keepdims = self.flag(keepdims, "keepdims")?;
        // A number is a scalar: its only valid reduction is over no axes, which is the number.
        let Value::Tensor(x) = x else { return Ok(x) };
        let reduced = match reduction {
            Reduction::Sum => self.build(span, |g| g.sum(x, &axes))?,
            Reduction::Max if axes.is_empty() => x,
            Reduction::Max => self.build(span, |g| g.apply(Op::reduce_max(axes.clone()), &[x]))?,
            Reduction::Mean => {
                let sum = self.build(span, |g| g.sum(x, &axes))?;
                let count = axes
                    .iter()
                    .fold(Dim::fixed(1), |n, &a| n.mul(&shape.dims()[a]));
                self.divide_by_count(sum, &count, span)?
            }
        };
        if keepdims {
            return Ok(Value::Tensor(self.keep_dims(reduced, &shape, &axes, span)?));
        }
        Ok(Value::Tensor(reduced))
    }

    /// `x / n` for the number of elements `n` an average runs over: a multiplication by the
    /// constant 1/n when n is fixed, a division by the runtime size when it is symbolic.
    fn divide_by_count(
        &mut self,
        x: NodeId,
        count: &Dim,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let ty = self.ty(x);
        let fixed = count.as_fixed();
        if fixed == Some(1) {
            return Ok(x);
        }
        let factor = self.build(span, |g| {
            let factor = match fixed {
                Some(n) => g.constant(1.0 / n as f64, ty.dtype),
                None => g.dim_size(count, ty.dtype),
            };
            g.broadcast(factor, &ty.shape)
        })?;
        let op = if fixed.is_some() {
            BinaryOp::Mul
        } else {
            BinaryOp::Div
        };
        self.binary(op, x, factor, span)
    }

    /// Reshapes a reduction result to `shape` with the reduced `axes` kept as size 1.
    fn keep_dims(
        &mut self,
        reduced: NodeId,
        shape: &Shape,
        axes: &[usize],
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let kept = shape.keepdims(axes);
        self.build(span, |g| g.reshape(reduced, &kept))
    }

    /// The shift `m = stop_gradient(max(x, axis))`, broadcast back over `x`, and `exp(x − m)`
    /// with its sum over `axis`: the pieces of the stable softmax family.
    fn shifted_exp(
        &mut self,
        x: NodeId,
        axis: usize,
        span: Span,
    ) -> Result<ShiftedExp, Diagnostic> {
        let shape = self.ty(x).shape;
        let max = self.build(span, |g| g.apply(Op::reduce_max(vec![axis]), &[x]))?;
        let shift = self.build(span, |g| g.apply(Op::stop_gradient(), &[max]))?;
        let spread = self.spread(shift, &shape, axis, span)?;
        let centered = self.binary(BinaryOp::Sub, x, spread, span)?;
        let exp = self.build(span, |g| g.unary(UnaryOp::Exp, centered))?;
        let sum = self.build(span, |g| g.sum(exp, &[axis]))?;
        Ok(ShiftedExp { shift, exp, sum })
    }

    /// A value reduced over `axis`, put back in `x`'s shape (keepdims, then broadcast).
    fn spread(
        &mut self,
        reduced: NodeId,
        shape: &Shape,
        axis: usize,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let kept = self.keep_dims(reduced, shape, &[axis], span)?;
        self.build(span, |g| g.broadcast(kept, shape))
    }

    fn logsumexp(
        &mut self,
        x: NodeId,
        axis: usize,
        keepdims: bool,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let parts = self.shifted_exp(x, axis, span)?;
        let log_sum = self.build(span, |g| g.unary(UnaryOp::Log, parts.sum))?;
        let lse = self.binary(BinaryOp::Add, parts.shift, log_sum, span)?;
        if keepdims {
            let shape = self.ty(x).shape;
            return self.keep_dims(lse, &shape, &[axis], span);
        }
        Ok(lse)
    }

    fn log_softmax(&mut self, x: NodeId, axis: usize, span: Span) -> Result<NodeId, Diagnostic> {
        let lse = self.logsumexp(x, axis, false, span)?;
        let shape = self.ty(x).shape;
        let lse = self.spread(lse, &shape, axis, span)?;
        self.binary(BinaryOp::Sub, x, lse, span)
    }

    fn softmax(&mut self, x: NodeId, axis: usize, span: Span) -> Result<NodeId, Diagnostic> {
        let parts = self.shifted_exp(x, axis, span)?;
        let shape = self.ty(x).shape;
        let total = self.spread(parts.sum, &shape, axis, span)?;
        self.binary(BinaryOp::Div, parts.exp, total, span)
    }

    fn loss(
        &mut self,
        kind: LossKind,
        name: &str,
        z: NodeId,
        y: NodeId,
        span: Span,
    ) -> Result<NodeId, Diagnostic> {
        let (tz, ty) = (self.ty(z), self.ty(y));
        if tz != ty {
            return Err(self.error(
                span,
                format!("{name} needs an output and a target of one type, found {tz} and {ty}"),
            ));
        }
        let all_axes: Vec<usize> = (0..tz.shape.rank()).collect();
        let (elementwise, count) = match kind {
            LossKind::SoftmaxCrossEntropy => {
                let Some((_classes, batch)) = tz.shape.dims().split_last() else {
                    return Err(self.error(
                        span,
                        format!("{name} needs tensors with a class axis (the last), found scalars"),
                    ));
                };
                let log_p = self.log_softmax(z, all_axes.len() - 1, span)?;
                let weighted = self.binary(BinaryOp::Mul, y, log_p, span)?;
                let total = self.build(span, |g| g.sum(weighted, &all_axes))?;
                let negated = self.build(span, |g| g.unary(UnaryOp::Neg, total))?;
                let count = Shape(batch.to_vec()).numel();
                return self.divide_by_count(negated, &count, span);
            }
            LossKind::Mse => {
                let diff = self.binary(BinaryOp::Sub, z, y, span)?;
                (
                    self.binary(BinaryOp::Mul, diff, diff, span)?,
                    tz.shape.numel(),
                )
            }
            LossKind::SigmoidCrossEntropy => {
                // softplus(z) − y·z is log(1 + e^z) − y·z: the logistic loss without overflow.
                let soft = self.build(span, |g| g.unary(UnaryOp::Softplus, z))?;
                let yz = self.binary(BinaryOp::Mul, y, z, span)?;
                (
                    self.binary(BinaryOp::Sub, soft, yz, span)?,
                    tz.shape.numel(),
                )
            }
        };
        let total = self.build(span, |g| g.sum(elementwise, &all_axes))?;
        self.divide_by_count(total, &count, span)
    }

    // ----- shape operations -----

    fn reshape(&mut self, x: NodeId, shape: &Expr, span: Span) -> Result<Value, Diagnostic> {
        let ExprKind::List(items) = &shape.kind else {
            return Err(self.error(
                shape.span,
                format!(
                    "reshape takes the new shape as a list, as in reshape(x, [B, 784]), found {}",
                    describe(shape)
                ),
            ));
        };
        let mut dims: Vec<Option<Dim>> = Vec::with_capacity(items.len());
        for item in items {
            let dim = self.dim(item, true)?;
            if dim.is_none() && dims.iter().any(Option::is_none) {
                return Err(self.error(item.span, "only one dimension of a reshape may be -1"));
            }
            dims.push(dim);
        }
        let known = Shape(dims.iter().flatten().cloned().collect());
        self.check_size(shape.span, &known)?;
        let from = self.ty(x);
        let elements = from.shape.numel();
        let inferred = if dims.iter().any(Option::is_none) {
            Some(elements.div_exact(&known.numel()).ok_or_else(|| {
                self.error(
                    shape.span,
                    format!(
                        "cannot infer the -1 in reshape: {from} has {elements} elements, which is not \
                         a multiple of {}",
                        known.numel()
                    ),
                )
            })?)
        } else {
            None
        };
        let target = Shape(
            dims.into_iter()
                .map(|d| {
                    d.unwrap_or_else(|| inferred.clone().expect("inferred when a -1 is present"))
                })
                .collect(),
        );
        if target.numel() != elements {
            return Err(self.error(
                span,
                format!(
                    "cannot reshape {from} ({elements} elements) to {target} ({} elements)",
                    target.numel()
                ),
            ));
        }
        Ok(Value::Tensor(self.build(span, |g| g.reshape(x, &target))?))
    }

    fn transpose(
        &mut self,
        x: NodeId,
        perm: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let shape = self.ty(x).shape;
        let rank = shape.rank();
        let perm = match perm {
            None => (0..rank).rev().collect(),
            Some(list) => {
                let ExprKind::List(items) = &list.kind else {
                    return Err(self.error(
                        list.span,
                        format!("transpose takes the permutation as a list, as in transpose(x, [1, 0]), found {}", describe(list)),
                    ));
                };
                let mut perm: Vec<usize> = Vec::with_capacity(items.len());
                for item in items {
                    let value = self.int(item, "an axis")?;
                    perm.push(self.normalize_axis(value, item.span, &shape)?);
                }
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..rank).collect::<Vec<_>>() {
                    return Err(self.error(
                        list.span,
                        format!("transpose needs a permutation of the {rank} axes of {shape}, found {perm:?}"),
                    ));
                }
                perm
            }
        };
        Ok(Value::Tensor(self.build(span, |g| g.transpose(x, &perm))?))
    }

    /// Concatenation of `nodes` (the values of `operands`, written in the list at `list`).
    fn concat(
        &mut self,
        nodes: &[NodeId],
        operands: &[&Expr],
        list: Span,
        axis: Option<&Expr>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let (Some(&first_node), Some(first_operand)) = (nodes.first(), operands.first()) else {
            return Err(self.error(
                list,
                "concat needs at least one tensor, found an empty list",
            ));
        };
        let first = self.ty(first_node);
        let axis = match axis {
            Some(axis) => self.axis(axis, &first.shape)?,
            None => self.normalize_axis(0, first_operand.span, &first.shape)?,
        };
        let mut total: u64 = 0;
        for (node, item) in nodes.iter().zip(operands) {
            let ty = self.ty(*node);
            if ty.dtype != first.dtype || ty.shape.rank() != first.shape.rank() {
                return Err(self.error(
                    item.span,
                    format!(
                        "concat needs tensors of one element type and rank, found {first} and {ty}"
                    ),
                ));
            }
            total = total.saturating_add(ty.shape.dims()[axis].coeff());
        }
        if total > MAX_ELEMENTS {
            return Err(self.error(
                span,
                format!("concat along axis {axis} is too large (more than 2^48 elements)"),
            ));
        }
        let node = self.build(span, |g| g.apply(Op::concat(axis), nodes))?;
        self.check_size(span, &self.ty(node).shape)?;
        Ok(Value::Tensor(node))
    }

    // ----- literal arguments -----

    /// A dimension: a positive integer, a symbolic name, a product of those, or (when `infer`)
    /// `-1`, returned as `None`.
    fn dim(&self, expr: &Expr, infer: bool) -> Result<Option<Dim>, Diagnostic> {
        match &expr.kind {
            ExprKind::Int(0) => {
                Err(self.error(expr.span, "a dimension must be at least 1, found 0"))
            }
            ExprKind::Int(n) => Ok(Some(Dim::fixed(*n))),
            ExprKind::Name(name) => Ok(Some(Dim::sym(name))),
            ExprKind::Neg(one) if infer && one.kind == ExprKind::Int(1) => Ok(None),
            ExprKind::Binary {
                op: BinOp::Mul,
                lhs,
                rhs,
            } => {
                let (Some(a), Some(b)) = (self.dim(lhs, false)?, self.dim(rhs, false)?) else {
                    unreachable!("-1 is rejected inside products")
                };
                if a.coeff()
                    .checked_mul(b.coeff())
                    .is_none_or(|n| n > MAX_ELEMENTS)
                {
                    return Err(
                        self.error(expr.span, "this dimension is too large (more than 2^48)")
                    );
                }
                Ok(Some(a.mul(&b)))
            }
            _ => Err(self.error(
                expr.span,
                format!(
                    "expected a dimension (a positive integer, a symbolic name such as B or a \
                     product such as 2*B{}), found {}",
                    if infer { ", or -1 to infer one" } else { "" },
                    describe(expr)
                ),
            )),
        }
    }

    /// An integer literal, possibly negative (`what` names it in errors).
    fn int(&self, expr: &Expr, what: &str) -> Result<i64, Diagnostic> {
        let (negative, digits) = match &expr.kind {
            ExprKind::Neg(inner) => (true, &**inner),
            _ => (false, expr),
        };
        match digits.kind {
            ExprKind::Int(n) => {
                let n = i64::try_from(n)
                    .map_err(|_| self.error(expr.span, format!("{what} {n} is too large")))?;
                Ok(if negative { -n } else { n })
            }
            _ => Err(self.error(
                expr.span,
                format!("expected {what} (an integer), found {}", describe(expr)),
            )),
        }
    }

    /// Axis `value` of `shape`, negative counting from the end.
    fn normalize_axis(&self, value: i64, span: Span, shape: &Shape) -> Result<usize, Diagnostic> {
        let rank = shape.rank() as i64;
        if rank == 0 {
            return Err(self.error(
                span,
                format!("axis {value} is out of range for a scalar (it has no axes)"),
            ));
        }
        if !(-rank..rank).contains(&value) {
            return Err(self.error(
                span,
                format!(
                    "axis {value} is out of range for shape {shape}; expected an axis from {} to {}",
                    -rank,
                    rank - 1
                ),
            ));
        }
        Ok(value.rem_euclid(rank) as usize)
    }

    /// One axis.
    fn axis(&self, expr: &Expr, shape: &Shape) -> Result<usize, Diagnostic> {
        let value = self.int(expr, "an axis")?;
        self.normalize_axis(value, expr.span, shape)
    }

    /// `axis=`: one axis or a list, distinct, sorted; all axes when absent.
    fn axes(&self, expr: Option<&Expr>, shape: &Shape) -> Result<Vec<usize>, Diagnostic> {
        let Some(expr) = expr else {
            return Ok((0..shape.rank()).collect());
        };
        let items = match &expr.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![expr],
        };
        let mut axes: Vec<usize> = Vec::with_capacity(items.len());
        for item in items {
            let axis = self.axis(item, shape)?;
            if axes.contains(&axis) {
                return Err(self.error(item.span, format!("axis {axis} is listed twice")));
            }
            axes.push(axis);
        }
        axes.sort_unstable();
        Ok(axes)
    }

    /// A `true`/`false` argument; false when absent.
    fn flag(&self, expr: Option<&Expr>, name: &str) -> Result<bool, Diagnostic> {
        match expr.map(|e| (&e.kind, e)) {
            None => Ok(false),
            Some((ExprKind::Bool(b), _)) => Ok(*b),
            Some((_, e)) => Err(self.error(
                e.span,
                format!(
                    "expected {name}=true or {name}=false, found {}",
                    describe(e)
                ),
            )),
        }
    }

    /// A constant number written with literals and arithmetic (initializer arguments).
    fn number(&self, expr: &Expr) -> Result<f64, Diagnostic> {
        let value = match &expr.kind {
            ExprKind::Int(n) => *n as f64,
            ExprKind::Float(x) => *x,
            ExprKind::Neg(x) => -self.number(x)?,
            ExprKind::Binary { op, lhs, rhs } if *op != BinOp::MatMul => {
                let (a, b) = (self.number(lhs)?, self.number(rhs)?);
                let op = match op {
                    BinOp::Add => BinaryOp::Add,
                    BinOp::Sub => BinaryOp::Sub,
                    BinOp::Mul => BinaryOp::Mul,
                    _ => BinaryOp::Div,
                };
                BinaryOp::eval(op, a, b)
            }
            _ => {
                return Err(self.error(
                    expr.span,
                    format!("expected a constant number, found {}", describe(expr)),
                ));
            }
        };
        self.finite(expr.span, value)
    }

    /// A param's initializer.
    fn init(&self, expr: &Expr) -> Result<Init, Diagnostic> {
        let empty: (&[Expr], &[(Ident, Expr)]) = (&[], &[]);
        let (name, span, (args, kwargs)) = match &expr.kind {
            ExprKind::Name(name) => (name.as_str(), expr.span, empty),
            ExprKind::Call {
                callee,
                args,
                kwargs,
            } => (
                callee.name.as_str(),
                callee.span,
                (args.as_slice(), kwargs.as_slice()),
            ),
            _ => {
                return Err(self.error(
                    expr.span,
                    format!(
                        "expected an initializer such as glorot_uniform or normal(0.01), found {}",
                        describe(expr)
                    ),
                ));
            }
        };
        let Some(&(_, params)) = INITS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = INITS.iter().map(|(n, _)| *n).collect();
            return Err(self.error(
                span,
                format!(
                    "unknown initializer '{name}'{}",
                    suggestion(name, &known, "known initializers")
                ),
            ));
        };
        let callee = Ident {
            name: name.to_string(),
            span,
        };
        let bound = self.bind(&callee, params, params.len(), args, kwargs)?;
        let mut values = Vec::with_capacity(bound.len());
        for arg in bound {
            values.push(self.number(arg.expect("every initializer argument is required"))?);
        }
        let init = match (name, values.as_slice()) {
            ("zeros", []) => Init::Zeros,
            ("ones", []) => Init::Ones,
            ("constant", [c]) => Init::Constant(*c),
            ("normal", [std]) if *std < 0.0 => {
                return Err(
                    self.error(expr.span, format!("normal(std) needs std ≥ 0, found {std}"))
                );
            }
            ("normal", [std]) => Init::Normal(*std),
            ("uniform", [lo, hi]) if lo > hi => {
                return Err(self.error(
                    expr.span,
                    format!("uniform(lo, hi) needs lo ≤ hi, found {lo} > {hi}"),
                ));
            }
            ("uniform", [lo, hi]) => Init::Uniform(*lo, *hi),
            ("glorot_uniform", []) => Init::GlorotUniform,
            ("glorot_normal", []) => Init::GlorotNormal,
            ("he_uniform", []) => Init::HeUniform,
            ("he_normal", []) => Init::HeNormal,
            _ => unreachable!("INITS and this match list the same initializers"),
        };
        Ok(init)
    }

    fn check_size(&self, span: Span, shape: &Shape) -> Result<(), Diagnostic> {
        let elements = shape
            .dims()
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(d.coeff()));
        if elements.is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(self.error(
                span,
                format!("a tensor of shape {shape} is too large (more than 2^48 elements)"),
            ));
        }
        Ok(())
    }
}

/// The pieces of a stable softmax over one axis.
struct ShiftedExp {
    /// `stop_gradient(max(x, axis))`, axis removed.
    shift: NodeId,
    /// `exp(x − shift)`, in `x`'s shape.
    exp: NodeId,
    /// `sum(exp, axis)`, axis removed.
    sum: NodeId,
}

/// " (did you mean 'x'?)" for a near miss, else " (known …: a, b, c)".
fn suggestion(name: &str, known: &[&str], what: &str) -> String {
    match closest(name, known.iter().copied()) {
        Some(near) => format!("; did you mean '{near}'?"),
        None if known.is_empty() => String::new(),
        None => format!(" ({what}: {})", known.join(", ")),
    }
}

/// How an expression is named in errors.
fn describe(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Int(n) => format!("the number {n}"),
        ExprKind::Float(x) => format!("the number {x}"),
        ExprKind::Bool(b) => format!("'{b}'"),
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
