//! Initializer syntax: `param w: f32[784, 20] = normal(0.01)` and the constant arithmetic its
//! arguments may use.

use super::scope::suggestion;
use super::{Lowerer, describe};
use crate::dsl::parser::{BinOp, Expr, ExprKind, Ident};
use crate::ir::Diagnostic;
use crate::ir::init::Init;
use crate::ir::op::BinaryOp;
use crate::ir::shape::DType;

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

/// How many standard deviations a normal draw can reach: the sampler (rand_distr's ziggurat on
/// 53-bit uniforms) stays within 13.7, so a std this many times below f32's largest value never
/// draws an infinity.
const NORMAL_REACH: f64 = 14.0;

impl<'p> Lowerer<'p> {
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

    /// The initializer of a param of element type `dtype`.
    pub(super) fn init(&self, expr: &Expr, dtype: DType) -> Result<Init, Diagnostic> {
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
        // The value, the bounds or the deviation, each as an f32 param holds it.
        for &value in &values {
            self.within(expr.span, value, dtype, "param")?;
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
            ("normal", [std])
                if dtype == DType::F32 && std * NORMAL_REACH > f64::from(f32::MAX) =>
            {
                return Err(self.error(
                    expr.span,
                    format!(
                        "normal({std:e}) would draw values past f32's range (at most {:e} in \
                         magnitude): its draws reach {NORMAL_REACH} standard deviations, so an f32 \
                         param's std is at most {:.2e}",
                        f32::MAX,
                        f64::from(f32::MAX) / NORMAL_REACH
                    ),
                ));
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
}
