//! `sgn check MODEL`: parse, type-check and summarize a model.

use crate::ir::{ArgRole, Leaf, Op};
use crate::{Model, Result};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

pub fn run(path: &Path) -> Result<()> {
    let model = Model::from_file(path)?;
    print!("{}", summary(&model));
    Ok(())
}

/// The text `sgn check` prints.
fn summary(model: &Model) -> String {
    let g = &model.graph;
    let mut out = String::new();
    let _ = writeln!(out, "model {} ({}): ok", model.name, model.file);
    for (role, title) in [(ArgRole::Input, "inputs"), (ArgRole::Target, "targets")] {
        let _ = writeln!(out, "{title}:");
        for a in g.args().iter().filter(|a| a.role == role) {
            let _ = writeln!(out, "  {}: {}", a.name, a.ty);
        }
    }
    let _ = writeln!(out, "params:");
    // Each parameter has at most 2^48 elements (the DSL's limit), their sum may have more.
    let mut total = 0u128;
    for p in &model.params {
        let count = p.ty.shape.numel().as_fixed().unwrap_or(0);
        total += u128::from(count);
        let _ = writeln!(out, "  {}: {} = {} ({count})", p.name, p.ty, p.init);
    }
    let _ = writeln!(out, "  total: {total} parameters");
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    let live = g.pruned();
    for n in live.nodes() {
        if !matches!(n.op, Op::Leaf(Leaf::Arg(_))) {
            *ops.entry(n.op.name()).or_default() += 1;
        }
    }
    let listed: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "ops: {} nodes ({})",
        live.nodes().len(),
        listed.join(", ")
    );
    for o in g.outputs() {
        let role = if o.name == "loss" { "loss" } else { "output" };
        let _ = writeln!(out, "{role} {}: {}", o.name, g.ty(o.node));
    }
    out
}
