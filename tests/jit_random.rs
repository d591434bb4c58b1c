//! The JIT against the interpreter on randomly generated graphs of the primitive ops: random
//! shapes (size 1, odd sizes that leave SIMD tails, a symbolic batch), broadcasting corner cases
//! (new leading axes, stretched size-1 axes, scalars), views (transpose, reshape, slice,
//! concat), reductions over random axes, and matmuls with transpose flags. Every case runs on 1,
//! 2 and 3 threads with every split threshold at zero (bit-identical results required); f64
//! cases are judged against the interpreter, f32 cases against the f32 and the f64 interpreter
//! (see [`Verdict`]), and the sweep counts how many cases each judgement decided.

use crate::common;

use common::bits;
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sgn::codegen::{JitOptions, ParallelMin, compile_graph};
use sgn::ir::tensor::{Floor, relative_error};
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp, interp,
};
use std::collections::BTreeMap;

/// Sizes of fixed axes: 1 (broadcastable), odd sizes below and above the vector widths, and 33:
/// the most f32 vectors an inner axis is emitted without a loop for, plus a scalar tail.
const SIZES: [u64; 8] = [1, 2, 3, 4, 5, 7, 9, 33];

struct Builder {
    rng: ChaCha8Rng,
    /// Whether axes other than the first may be the batch (not for large batches, whose
    /// powers would not fit in memory).
    more_batch_axes: bool,
    graph: Graph,
    dtype: DType,
    nodes: Vec<NodeId>,
}

impl Builder {
    fn shape(&self, id: NodeId) -> Shape {
        self.graph.ty(id).shape.clone()
    }

    fn pick(&mut self) -> NodeId {
        let i = self.rng.random_range(0..self.nodes.len());
        self.nodes[i]
    }

    fn random_dim(&mut self) -> Dim {
        if self.more_batch_axes && self.rng.random_bool(0.25) {
            Dim::sym("B")
        } else {
            Dim::fixed(SIZES[self.rng.random_range(0..SIZES.len())])
        }
    }

    fn arg(&mut self, shape: Shape) -> NodeId {
        let name = format!("a{}", self.graph.args().len());
        let id = self
            .graph
            .add_arg(name, ArgRole::Input, TensorType::new(self.dtype, shape));
        self.nodes.push(id);
        id
    }

    /// A shape that broadcasts to `shape`: some leading axes dropped, some axes set to 1.
    fn broadcastable_to(&mut self, shape: &Shape) -> Shape {
        let drop = self.rng.random_range(0..=shape.rank());
        Shape(
            shape.0[drop..]
                .iter()
                .map(|d| {
                    if self.rng.random_bool(0.3) {
                        Dim::fixed(1)
                    } else {
                        d.clone()
                    }
                })
                .collect(),
        )
    }

    /// Makes `b` the shape of `a` by a broadcast, if it can.
    fn align(&mut self, a: NodeId, b: NodeId) -> Option<NodeId> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa == sb {
            return Some(b);
        }
        sb.broadcasts_to(&sa)
            .then(|| self.graph.broadcast(b, &sa).ok())
            .flatten()
    }

    /// Adds one random op on existing nodes (or nothing, if the pick does not fit).
    fn step(&mut self) {
        if let Some(id) = self.try_step() {
            self.nodes.push(id);
        }
    }

    fn try_step(&mut self) -> Option<NodeId> {
        let x = self.pick();
        let shape = self.shape(x);
        let rank = shape.rank();
        match self.rng.random_range(0..13) {
            0 | 1 => {
                let op = UnaryOp::ALL[self.rng.random_range(0..UnaryOp::ALL.len())];
                self.graph.unary(op, x).ok()
            }
            2 => {
                let c = [2.0, 3.0, -1.0, 0.5, 1.5, -2.0][self.rng.random_range(0..6)];
                self.graph.apply(Op::pow(c), &[x]).ok()
            }
            3..=5 => {
                let op = BinaryOp::ALL[self.rng.random_range(0..BinaryOp::ALL.len())];
                let y = if self.rng.random_bool(0.2) {
                    let c = self.rng.random_range(-2.0..2.0);
                    Some(self.graph.constant(c, self.dtype))
                } else {
                    Some(self.pick())
                };
                let y = y.and_then(|y| self.align(x, y));
                match y {
                    Some(y) if self.rng.random_bool(0.5) => self.graph.binary(op, x, y).ok(),
                    Some(y) => self.graph.binary(op, y, x).ok(),
                    None => None,
                }
            }
            6 => {
                // Broadcast to a larger shape: a new leading axis, or a stretched size-1 axis.
                let mut dims = shape.0.clone();
                if let Some(i) = dims.iter().position(|d| d.is_one()) {
                    dims[i] = self.random_dim();
                } else {
                    dims.insert(0, self.random_dim());
                }
                self.graph.broadcast(x, &Shape(dims)).ok()
            }
            7 if rank > 0 => {
                let axes: Vec<usize> = (0..rank).filter(|_| self.rng.random_bool(0.5)).collect();
                if self.rng.random_bool(0.5) {
                    self.graph.sum(x, &axes).ok()
                } else if axes.is_empty() {
                    None
                } else {
                    self.graph.apply(Op::reduce_max(axes), &[x]).ok()
                }
            }
            8 if rank > 1 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                for i in (1..rank).rev() {
                    perm.swap(i, self.rng.random_range(0..=i));
                }
                self.graph.transpose(x, &perm).ok()
            }
            9 if rank > 0 => {
                // Merge two neighbouring axes, or split off a size-1 axis.
                let mut dims = shape.0.clone();
                if rank > 1 && self.rng.random_bool(0.6) {
                    let i = self.rng.random_range(0..rank - 1);
                    let merged = dims[i].mul(&dims[i + 1]);
                    dims.splice(i..i + 2, [merged]);
                } else {
                    let i = self.rng.random_range(0..=rank);
                    dims.insert(i, Dim::fixed(1));
                }
                self.graph.reshape(x, &Shape(dims)).ok()
            }
            10 if rank > 0 => {
                let axis = self.rng.random_range(0..rank);
                let len = shape.0[axis].as_fixed()?;
                let start = self.rng.random_range(0..len);
                let end = self.rng.random_range(start + 1..=len);
                self.graph
                    .apply(Op::slice(axis, Dim::fixed(start), Dim::fixed(end)), &[x])
                    .ok()
            }
            11 if rank > 0 => {
                let axis = self.rng.random_range(0..rank);
                let y = self.pick();
                let y = if self.shape(y) == shape { y } else { x };
                self.graph.apply(Op::concat(axis), &[x, y]).ok()
            }
            12 if rank == 2 => {
                // x as op(a) with a random transpose flag, times a new argument.
                let transpose_a = self.rng.random_bool(0.5);
                let transpose_b = self.rng.random_bool(0.5);
                let a = if transpose_a {
                    self.graph.transpose(x, &[1, 0]).ok()?
                } else {
                    x
                };
                let k = self.shape(a).0[1].clone();
                let n = self.random_dim();
                let b_shape = if transpose_b { vec![n, k] } else { vec![k, n] };
                let b = self.arg(Shape(b_shape));
                self.graph
                    .apply(Op::matmul(transpose_a, transpose_b), &[a, b])
                    .ok()
            }
            _ => self.graph.apply(Op::stop_gradient(), &[x]).ok(),
        }
    }
}

/// A random graph and its arguments, from `seed`.
fn random_case(seed: u64) -> (Graph, Vec<Tensor>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dtype = if rng.random_bool(0.5) {
        DType::F64
    } else {
        DType::F32
    };
    let batch = [1usize, 3, 4, 9, 17, 257][rng.random_range(0..6)];
    let mut b = Builder {
        rng,
        more_batch_axes: batch < 100,
        graph: Graph::new(format!("random{seed}")),
        dtype,
        nodes: Vec::new(),
    };
    // The main argument fixes the batch symbol (its first axis is B).
    let rank = b.rng.random_range(1..=3);
    let mut dims = vec![Dim::sym("B")];
    for _ in 1..rank {
        dims.push(b.random_dim());
    }
    let main = Shape(dims);
    b.arg(main.clone());
    for _ in 0..b.rng.random_range(0..3) {
        let s = b.broadcastable_to(&main);
        b.arg(s);
    }
    for _ in 0..b.rng.random_range(1..16) {
        b.step();
    }
    let outputs = b.rng.random_range(1..4);
    for k in 0..outputs {
        let id = b.pick();
        b.graph.add_output(format!("out{k}"), id);
    }
    let mut args = Vec::new();
    for (k, arg) in b.graph.args().iter().enumerate() {
        let shape = arg.ty.shape.eval(&[("B".into(), batch)].into()).unwrap();
        let n: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((k as u64 + 1) * 0x9e37_79b9));
        let values = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
        args.push(Tensor::from_f64(dtype, &shape, values).unwrap());
    }
    (b.graph, args)
}

/// How the outputs of one case were judged; see [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// An f64 graph: every output within [`F64_TOLERANCE`] of the interpreter.
    F64Interpreter,
    /// An f32 graph: every element within [`F32_TOLERANCE`] of the f32 interpreter.
    F32Interpreter,
    /// An f32 graph with an element that is not, but that is within [`F32_TOLERANCE`] of the
    /// f64 interpreter's result: the JIT rounded better than the f32 interpreter.
    Exact,
    /// An f32 graph with an element that is within [`F32_TOLERANCE`] of the f64 result only
    /// relative to the output's largest value: rounding of a sum that cancels, which is relative
    /// to the terms summed, not to the result.
    ExactAtScale,
    /// An f32 graph with an element where both f32 results are far from the f64 result (the
    /// graph amplifies rounding, e.g. a sum that cancels, then its reciprocal): there the JIT
    /// must be no further from the f64 result than [`ILL_CONDITIONED_FACTOR`] times the f32
    /// interpreter.
    IllConditioned,
}

const F64_TOLERANCE: f64 = 1e-12;
const F32_TOLERANCE: f64 = 1e-5;
const ILL_CONDITIONED_FACTOR: f64 = 10.0;
/// Relative errors are measured against at least this fraction of an output's largest value,
/// so that a value which cancels to nearly zero is not judged by its own magnitude. Measured
/// over 20 000 seeds: the largest f64 error was 1.3e-13 with this floor (4.9e-13 with none),
/// and no f32 case needed more than the judgements of [`Verdict`].
const F64_FLOOR: Floor = Floor::OfLargest(1e-6);
const F32_FLOOR: Floor = Floor::OfLargest(1e-3);

/// The distance of `x` from the f64 result `exact`: 0 for the same non-finite value, infinite
/// for a non-finite value against another or a finite one.
fn distance(x: f64, exact: f64) -> f64 {
    if x.is_finite() && exact.is_finite() {
        (x - exact).abs()
    } else if x == exact || (x.is_nan() && exact.is_nan()) {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Judges one f32 output element by element: `jit` and `interp` computed in f32, `exact` by the
/// interpreter in f64. The verdict is the loosest judgement any element needed.
fn judge_f32(jit: &Tensor, interp: &Tensor, exact: &Tensor) -> Result<Verdict, String> {
    let against_interp = jit.compare(interp, F32_FLOOR);
    if against_interp.within(F32_TOLERANCE) {
        return Ok(Verdict::F32Interpreter);
    }
    let against_exact = jit.compare(exact, F32_FLOOR);
    let at_scale = jit.compare(exact, Floor::OfLargest(1.0));
    let (j, i, e) = (jit.to_f64_vec(), interp.to_f64_vec(), exact.to_f64_vec());
    let mut verdict = Verdict::F32Interpreter;
    for (k, ((&j, &i), &e)) in j.iter().zip(&i).zip(&e).enumerate() {
        // The f64 result as f32 would hold it (an overflow becomes the infinity f32 gives).
        let rounded = e as f32 as f64;
        let element_verdict = if relative_error(j, i, against_interp.floor) <= F32_TOLERANCE {
            Verdict::F32Interpreter
        } else if relative_error(j, rounded, against_exact.floor) <= F32_TOLERANCE {
            Verdict::Exact
        } else if relative_error(j, rounded, at_scale.floor) <= F32_TOLERANCE {
            Verdict::ExactAtScale
        } else if distance(j, e) <= ILL_CONDITIONED_FACTOR * distance(i, e) {
            Verdict::IllConditioned
        } else {
            return Err(format!(
                "element {k}: jit {j:e}, f32 interpreter {i:e}, f64 interpreter {e:e}\n\
                 against the f32 interpreter: {against_interp}\n\
                 against the f64 interpreter: {against_exact}"
            ));
        };
        verdict = verdict.max(element_verdict);
    }
    Ok(verdict)
}

/// Runs case `seed`: the JIT on 1, 2 and 3 threads with every split threshold at zero gives
/// bit-identical results, which are then judged against the interpreter (the worst verdict of
/// the outputs is returned).
fn check(seed: u64) -> Result<Verdict, String> {
    let (graph, args) = random_case(seed);
    let context = |what: &str| {
        format!(
            "seed {seed}: {what}\n{}",
            sgn::ir::text::print_graph(&graph)
        )
    };
    let expected = interp::run(&graph, &args).unwrap();
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let options = JitOptions {
            parallel_min: ParallelMin::NONE,
            ..JitOptions::default().with_threads(threads)
        };
        let jit = compile_graph(&graph, &options).map_err(|e| context(&e.to_string()))?;
        results.push((jit.run(&args).unwrap(), jit.schedule_text()));
    }
    let (got, schedule) = &results[0];
    for (threads, (other, _)) in [2, 3].iter().zip(&results[1..]) {
        for (k, (a, b)) in got.iter().zip(other).enumerate() {
            if bits(a) != bits(b) {
                return Err(context(&format!(
                    "output {k} differs between 1 and {threads} threads: {}\n{schedule}",
                    b.compare(a, Floor::Absolute(0.0))
                )));
            }
        }
    }
    let exact = match args[0].dtype() {
        DType::F64 => None,
        DType::F32 => {
            let args64: Vec<Tensor> = args.iter().map(|a| a.clone().cast(DType::F64)).collect();
            Some(interp::run(&graph.with_dtype(DType::F64), &args64).unwrap())
        }
    };
    let mut verdict = Verdict::F64Interpreter;
    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
        let judged = match &exact {
            None => {
                let comparison = g.compare(e, F64_FLOOR);
                match comparison.within(F64_TOLERANCE) {
                    true => Ok(Verdict::F64Interpreter),
                    false => Err(comparison.to_string()),
                }
            }
            Some(exact) => judge_f32(g, e, &exact[k]),
        };
        let judged = judged.map_err(|why| context(&format!("output {k}: {why}\n{schedule}")))?;
        verdict = verdict.max(judged);
    }
    Ok(verdict)
}

/// Cases of the fixed sweep.
const SWEEP: u64 = 500;

#[test]
fn jit_equals_the_interpreter_on_a_sweep_of_random_graphs() {
    let mut counts: BTreeMap<Verdict, usize> = BTreeMap::new();
    for seed in 0..SWEEP {
        let verdict = check(seed).unwrap_or_else(|e| panic!("{e}"));
        *counts.entry(verdict).or_default() += 1;
    }
    println!("verdicts over {SWEEP} random graphs: {counts:?}");
    let count = |v: Verdict| counts.get(&v).copied().unwrap_or(0);
    // About half the cases are f64, and most f32 cases match the f32 interpreter outright; the
    // looser judgements must stay the exception, or the sweep would test little.
    assert!(
        count(Verdict::F64Interpreter) >= SWEEP as usize / 3,
        "{counts:?}"
    );
    assert!(
        count(Verdict::F32Interpreter) >= SWEEP as usize / 3,
        "{counts:?}"
    );
    assert!(
        count(Verdict::Exact) + count(Verdict::ExactAtScale) + count(Verdict::IllConditioned)
            <= SWEEP as usize / 20,
        "{counts:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Fresh seeds on every run (failures are kept in `jit_random.proptest-regressions`).
    #[test]
    fn jit_equals_the_interpreter_on_random_graphs(seed in any::<u64>()) {
        check(seed).map_err(TestCaseError::fail)?;
    }
}
