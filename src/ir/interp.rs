//! The reference interpreter: evaluates a [`Graph`] on host tensors with `ndarray`.
//!
//! It is the oracle every later stage (differentiation, rewriting, the JIT) is tested against, so
//! it favours plain, numpy-like semantics over cleverness, while staying fast enough to run real
//! models: matrix products go through `ndarray`'s GEMM (`matrixmultiply`), elementwise ops are
//! single `mapv`/`Zip` passes with the op chosen once per node, and intermediate values are freed
//! after their last use.
//!
//! The kernels are the op families' own ([`Op::eval`], generic over the element type: one
//! definition for `f32` and `f64`, the same that constant folding evaluates); this module binds
//! the symbolic dimensions, walks the graph and dispatches each node once on its dtype. Every
//! value the interpreter produces is in standard (row-major, contiguous) layout, whatever the
//! layout of the arguments. The numerical conventions are the families' (see
//! [`crate::ir::op`]).

use super::graph::{Graph, Node, NodeId};
use super::memory;
use super::op::{Leaf, Op};
use super::shape::{Bindings, DType, DimError};
use super::tensor::{Element, Tensor};
use crate::ir::error::{Error, Result};
use ndarray::ArrayD;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Checks `args` against the graph's declared arguments and fixes its symbolic dimensions.
///
/// Checks the number of arguments, then each argument's dtype and rank against
/// `graph.args()[i].ty`. An axis declared as a bare symbol (`B`, coefficient 1) binds that
/// symbol to the argument's size there; every other axis (fixed sizes, monomials such as `2*B`)
/// is then checked against the bound sizes.
///
/// Errors name the argument, its declared type and what was given: [`Error::Tensor`] for an
/// argument of the wrong dtype, rank or size (`argument 'x' has shape [32, 783] but the model
/// declares f32[B, 784] …`), [`Error::Eval`] for a wrong number of arguments, a symbol given two
/// sizes (`symbol B is 32 from 'x' but 16 from 'y'`) or a symbol no argument fixes.
pub fn bind_dims<A: Borrow<Tensor>>(graph: &Graph, args: &[A]) -> Result<Bindings> {
    let declared = graph.args();
    if declared.len() != args.len() {
        let names: Vec<&str> = declared.iter().map(|a| a.name.as_str()).collect();
        return Err(Error::Eval(format!(
            "graph '{}' takes {} argument(s) ({}) but was given {}",
            graph.name,
            declared.len(),
            names.join(", "),
            args.len()
        )));
    }

    // Which argument first bound each symbol, for the inconsistency message.
    let mut bound_by: BTreeMap<Arc<str>, (usize, &str)> = BTreeMap::new();
    for (decl, value) in declared.iter().zip(args.iter().map(A::borrow)) {
        let ty = &decl.ty;
        if value.dtype() != ty.dtype {
            return Err(Error::Tensor(format!(
                "argument '{}' has dtype {} but the model declares {ty}",
                decl.name,
                value.dtype()
            )));
        }
        if value.shape().len() != ty.shape.rank() {
            return Err(Error::Tensor(format!(
                "argument '{}' has shape {:?} (rank {}) but the model declares {ty} (rank {})",
                decl.name,
                value.shape(),
                value.shape().len(),
                ty.shape.rank()
            )));
        }
        for (dim, &size) in ty.shape.dims().iter().zip(value.shape()) {
            let Some(symbol) = dim.bare_symbol() else {
                continue;
            };
            match bound_by.get(symbol) {
                Some(&(earlier, earlier_arg)) if earlier != size => {
                    return Err(Error::Eval(format!(
                        "symbol {symbol} is {earlier} from '{earlier_arg}' but {size} from '{}'",
                        decl.name
                    )));
                }
                Some(_) => {}
                None => {
                    bound_by.insert(symbol.clone(), (size, decl.name.as_str()));
                }
            }
        }
    }
    let bindings: Bindings = bound_by
        .into_iter()
        .map(|(symbol, (size, _))| (symbol, size))
        .collect();

    for (decl, value) in declared.iter().zip(args.iter().map(A::borrow)) {
        let ty = &decl.ty;
        for (axis, (dim, &size)) in ty.shape.dims().iter().zip(value.shape()).enumerate() {
            let expected = dim.eval(&bindings).map_err(|e| match e {
                DimError::Unbound(symbol) => Error::Eval(format!(
                    "argument '{}' is declared {ty}, but no argument fixes symbol {symbol} \
                     (an axis declared exactly {symbol} binds it)",
                    decl.name
                )),
                DimError::Overflow => Error::Memory(format!(
                    "argument '{}' is declared {ty}: with {} axis {axis} ({dim}) does not fit \
                     in 64 bits",
                    decl.name,
                    show_bindings(&bindings)
                )),
            })?;
            if expected != size {
                let wanted = if dim.as_fixed().is_some() {
                    expected.to_string()
                } else {
                    format!("{dim} = {expected}")
                };
                return Err(Error::Tensor(format!(
                    "argument '{}' has shape {:?} but the model declares {ty} (axis {axis} must be {wanted})",
                    decl.name,
                    value.shape()
                )));
            }
        }
    }
    Ok(bindings)
}

/// Evaluates `graph` on `args` (in the order of `graph.args()`) and returns its outputs in the
/// order of `graph.outputs()`.
///
/// The arguments are checked and the symbolic dimensions bound by [`bind_dims`] first. Only the
/// nodes the outputs depend on are evaluated, and each intermediate value is dropped after its
/// last use.
///
/// ```
/// use sgn::ir::interp::run;
/// use sgn::ir::{ArgRole, DType, Dim, Graph, Shape, Tensor, TensorType, UnaryOp};
///
/// // total = sum(relu(x)) for x: f64[B, 2]
/// let mut graph = Graph::new("demo");
/// let x_type = TensorType::new(DType::F64, Shape(vec![Dim::sym("B"), Dim::fixed(2)]));
/// let x = graph.add_arg("x", ArgRole::Input, x_type);
/// let relu = graph.unary(UnaryOp::Relu, x)?;
/// let total = graph.sum(relu, &[0, 1])?;
/// graph.add_output("total", total);
///
/// let x_value = Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, -2.0, 3.0, -4.0])
///     .ok_or("4 values fill a 2×2 tensor")?;
/// let outputs = run(&graph, &[x_value])?;
/// assert_eq!(outputs[0].shape(), &[] as &[usize]);
/// assert_eq!(outputs[0].scalar_value(), Some(4.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(graph: &Graph, args: &[Tensor]) -> Result<Vec<Tensor>> {
    run_borrowed(graph, args)
}

/// [`run`] on borrowed arguments (or owned ones: any `Borrow<Tensor>`).
pub(crate) fn run_borrowed<A: Borrow<Tensor>>(graph: &Graph, args: &[A]) -> Result<Vec<Tensor>> {
    let bindings = bind_dims(graph, args)?;
    let last_use = last_uses(graph);
    ensure_run_fits(graph, &bindings, peak_bytes(graph, &bindings, &last_use))?;

    let mut values: Vec<Option<Cow<'_, Tensor>>> = vec![None; graph.nodes().len()];
    for id in graph.ids() {
        let i = id.index();
        if last_use[i].is_none() {
            continue;
        }
        let node = graph.node(id);
        let value = match node.op {
            Op::Leaf(Leaf::Arg(index)) => {
                Cow::Borrowed(args.get(index).map(A::borrow).ok_or_else(|| {
                    node_error(id, node, format!("the graph has no argument {index}"))
                })?)
            }
            _ => {
                let inputs = node
                    .inputs
                    .iter()
                    .map(|x| {
                        values[x.index()].as_deref().expect(
                            "operands come earlier in the arena and live until their last use",
                        )
                    })
                    .collect::<Vec<&Tensor>>();
                let result = match node.ty.dtype {
                    DType::F32 => eval_node::<f32>(node, &inputs, &bindings),
                    DType::F64 => eval_node::<f64>(node, &inputs, &bindings),
                };
                Cow::Owned(result.map_err(|msg| node_error(id, node, msg))?)
            }
        };
        values[i] = Some(value);
        for x in &node.inputs {
            if last_use[x.index()] == Some(LastUse::Node(i)) {
                values[x.index()] = None;
            }
        }
    }

    let outputs = graph.outputs();
    let mut results = Vec::with_capacity(outputs.len());
    for (k, output) in outputs.iter().enumerate() {
        let slot = &mut values[output.node.index()];
        let needed_again = outputs[k + 1..].iter().any(|o| o.node == output.node);
        let value = if needed_again {
            slot.clone()
        } else {
            slot.take()
        };
        let value = value.expect("outputs are kept until the end");
        results.push(standard_layout(value.into_owned()));
    }
    Ok(results)
}

/// The most bytes the values of one [`run`] hold at once: each value from its evaluation to its
/// last use (arguments are borrowed, not counted); `None` if a value's shape is too large for
/// any array.
fn peak_bytes(graph: &Graph, bindings: &Bindings, last_use: &[Option<LastUse>]) -> Option<u64> {
    let owned =
        |i: usize| last_use[i].is_some() && !matches!(graph.nodes()[i].op, Op::Leaf(Leaf::Arg(_)));
    let bytes = (0..graph.nodes().len())
        .map(|i| match owned(i) {
            true => value_bytes(graph, NodeId(i as u32), bindings),
            false => Some(0),
        })
        .collect::<Option<Vec<u64>>>()?;
    let (mut held, mut peak) = (0u64, 0u64);
    for (i, node) in graph.nodes().iter().enumerate() {
        if !owned(i) {
            continue;
        }
        held = held.checked_add(bytes[i])?;
        peak = peak.max(held);
        for (k, x) in node.inputs.iter().enumerate() {
            let first_mention = !node.inputs[..k].contains(x);
            if first_mention && last_use[x.index()] == Some(LastUse::Node(i)) {
                held -= bytes[x.index()];
            }
        }
    }
    Some(peak)
}

/// Bytes of node `id`'s value under `bindings`: `None` if no array can have its shape (see
/// [`memory::tensor_bytes`]), 0 if a symbol is unbound (evaluation reports that).
fn value_bytes(graph: &Graph, id: NodeId, bindings: &Bindings) -> Option<u64> {
    let ty = graph.ty(id);
    match ty.shape.eval(bindings) {
        Ok(shape) => memory::tensor_bytes(ty.dtype, &shape),
        Err(DimError::Unbound(_)) => Some(0),
        Err(DimError::Overflow) => None,
    }
}

/// Checks that a run of `graph` under `bindings` that allocates `bytes` (`None`: more than
/// memory can address) fits in memory. The error names the bindings and the graph's largest value, with
/// its type, shape and size.
pub(crate) fn ensure_run_fits(
    graph: &Graph,
    bindings: &Bindings,
    bytes: Option<u64>,
) -> Result<()> {
    memory::ensure_available(bytes, || {
        let largest = graph
            .ids()
            .max_by_key(|&id| value_bytes(graph, id, bindings).unwrap_or(u64::MAX))
            .map_or(String::new(), |id| {
                format!(
                    " (its largest value {})",
                    describe_value(graph, id, bindings)
                )
            });
        format!(
            "running graph '{}' with {}{largest}",
            graph.name,
            show_bindings(bindings)
        )
    })
}

/// `output 'z': f32[B, 1] = [1099511627776, 1], 4096.0 GiB` (an argument by its name, another
/// node as `%7 = sum`).
fn describe_value(graph: &Graph, id: NodeId, bindings: &Bindings) -> String {
    let node = graph.node(id);
    let name = match (graph.outputs().iter().find(|o| o.node == id), &node.op) {
        (Some(output), _) => format!("output '{}'", output.name),
        (None, Op::Leaf(Leaf::Arg(index))) => format!("argument '{}'", graph.args()[*index].name),
        (None, op) => format!("{id} = {}", op.name()),
    };
    let shape = match node.ty.shape.eval(bindings) {
        Ok(shape) => format!("{shape:?}"),
        Err(e) => e.to_string(),
    };
    let size = value_bytes(graph, id, bindings).map_or("past 2^63 bytes".to_string(), memory::gib);
    format!("{name}: {} = {shape}, {size}", node.ty)
}

/// `B = 32, T = 7`, for messages.
fn show_bindings(bindings: &Bindings) -> String {
    if bindings.is_empty() {
        return "no symbolic dimensions".to_string();
    }
    let each: Vec<String> = bindings.iter().map(|(s, n)| format!("{s} = {n}")).collect();
    each.join(", ")
}

/// When a live node's value can be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastUse {
    /// After the node with this index has been evaluated.
    Node(usize),
    /// Never during evaluation: the value is an output.
    Output,
}

/// For each node, when its value is last needed, or `None` for a node no output depends on.
fn last_uses(graph: &Graph) -> Vec<Option<LastUse>> {
    let mut last_use = vec![None; graph.nodes().len()];
    for output in graph.outputs() {
        last_use[output.node.index()] = Some(LastUse::Output);
    }
    // Consumers come after their operands, so the first live consumer met walking backwards is
    // the last one.
    for i in (0..graph.nodes().len()).rev() {
        if last_use[i].is_none() {
            continue;
        }
        for x in &graph.nodes()[i].inputs {
            last_use[x.index()].get_or_insert(LastUse::Node(i));
        }
    }
    last_use
}

fn node_error(id: NodeId, node: &Node, msg: String) -> Error {
    Error::Eval(format!("cannot evaluate {id} = {}: {msg}", node.op.name()))
}

/// Evaluates one non-argument node in element type `T`.
fn eval_node<T: Element>(
    node: &Node,
    inputs: &[&Tensor],
    bindings: &Bindings,
) -> std::result::Result<Tensor, String> {
    let xs = inputs
        .iter()
        .map(|t| {
            T::array(t).ok_or_else(|| {
                format!(
                    "an operand is {} but the node computes in {}",
                    t.dtype(),
                    T::DTYPE
                )
            })
        })
        .collect::<std::result::Result<Vec<&ArrayD<T>>, String>>()?;
    let result = node.op.eval(&xs, bindings)?;
    Ok(T::into_tensor(standard_layout_array(result)))
}

/// `a` in standard layout, copied only if it is not already.
fn standard_layout_array<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

fn standard_layout(t: Tensor) -> Tensor {
    match t {
        Tensor::F32(a) => Tensor::F32(standard_layout_array(a)),
        Tensor::F64(a) => Tensor::F64(standard_layout_array(a)),
    }
}
