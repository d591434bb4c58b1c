//! The JIT against the interpreter on randomly generated graphs of the primitive ops: random
//! shapes (size 1, odd sizes that leave SIMD tails, a symbolic batch), broadcasting corner cases
//! (new leading axes, stretched size-1 axes, scalars), views (transpose, reshape, slice,
//! concat), reductions over random axes, and matmuls with transpose flags.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sgn::codegen::{JitOptions, compile_graph};
use sgn::ir::op::F64Bits;
use sgn::ir::{
    ArgRole, BinaryOp, DType, Dim, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp, interp,
};

/// Sizes of fixed axes: 1 (broadcastable), odd sizes below and above the vector widths.
const SIZES: [u64; 7] = [1, 2, 3, 4, 5, 7, 9];

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
                self.graph.apply(Op::Pow(F64Bits::new(c)), &[x]).ok()
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
                    self.graph.apply(Op::ReduceMax { axes }, &[x]).ok()
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
                    .apply(
                        Op::Slice {
                            axis,
                            start: Dim::fixed(start),
                            end: Dim::fixed(end),
                        },
                        &[x],
                    )
                    .ok()
            }
            11 if rank > 0 => {
                let axis = self.rng.random_range(0..rank);
                let y = self.pick();
                let y = if self.shape(y) == shape { y } else { x };
                self.graph.apply(Op::Concat { axis }, &[x, y]).ok()
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
                    .apply(
                        Op::MatMul {
                            transpose_a,
                            transpose_b,
                        },
                        &[a, b],
                    )
                    .ok()
            }
            _ => self.graph.apply(Op::StopGradient, &[x]).ok(),
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

/// f64 graphs: the JIT within 1e-12 (relative to each output's largest magnitude) of the
/// interpreter. f32 graphs: within 1e-5 of it, or — where the graph amplifies rounding (a sum
/// that cancels, then its reciprocal) so that summation order alone moves the result — no
/// further from the f64 interpreter's result than ten times the f32 interpreter is.
fn check(seed: u64) -> Result<(), TestCaseError> {
    let (graph, args) = random_case(seed);
    let expected = interp::run(&graph, &args).unwrap();
    let threads = 1 + (seed % 3) as usize;
    let jit = compile_graph(&graph, &JitOptions::default().with_threads(threads))
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", sgn::ir::text::print_graph(&graph))))?;
    let got = jit.run(&args).unwrap();
    let dtype = args[0].dtype();
    let exact = match dtype {
        DType::F64 => None,
        DType::F32 => {
            let args64: Vec<Tensor> = args.iter().map(|a| a.clone().cast(DType::F64)).collect();
            Some(interp::run(&graph.with_dtype(DType::F64), &args64).unwrap())
        }
    };
    for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
        prop_assert_eq!(g.shape(), e.shape());
        let diff = g.max_rel_diff(e);
        let ok = match &exact {
            None => diff <= 1e-12,
            Some(exact) => {
                let reference = exact[k].clone().cast(DType::F32);
                diff <= 1e-5 || g.max_rel_diff(&reference) <= 10.0 * e.max_rel_diff(&reference)
            }
        };
        prop_assert!(
            ok,
            "seed {seed} output {k}: rel diff {diff:e}\n{}\n{}\njit {:?}\ninterp {:?}",
            sgn::ir::text::print_graph(&graph),
            jit.schedule_text(),
            g.to_f64_vec(),
            e.to_f64_vec()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn jit_equals_the_interpreter_on_random_graphs(seed in any::<u64>()) {
        check(seed)?;
    }
}
