//! Names: lookup in scopes (with why a name is not visible), calls to `fn`s (inlined, memoized)
//! and builtins, binding a call's arguments to parameter names, and "did you mean" suggestions.

use super::builtins::{OPS, find_op};
use super::{Def, Lowerer, Scope, Site, Value};
use crate::dsl::parser::{Expr, Ident, closest};
use crate::ir::Diagnostic;
use crate::ir::graph::Span;

impl<'p> Lowerer<'p> {
    pub(super) fn lookup(
        &self,
        name: &str,
        span: Span,
        scope: &Scope,
    ) -> Result<Value, Diagnostic> {
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

    pub(super) fn call(
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
            let signature = spec.signature;
            let bound = self.bind(callee, signature.params, signature.required, args, kwargs)?;
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
    pub(super) fn bind<'e>(
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
}

/// " (did you mean 'x'?)" for a near miss, else " (known …: a, b, c)".
pub(super) fn suggestion(name: &str, known: &[&str], what: &str) -> String {
    match closest(name, known.iter().copied()) {
        Some(near) => format!("; did you mean '{near}'?"),
        None if known.is_empty() => String::new(),
        None => format!(" ({what}: {})", known.join(", ")),
    }
}
