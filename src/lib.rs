//! sgn: train neural networks with the stochastic generalized Gauss-Newton method through a
//! symbolic computation-graph compiler.
//!
//! The pipeline, one module per stage: [`ir`] (the graph IR, the reference interpreter), [`dsl`]
//! (the model language, lowered into the IR) and [`model`] on top of it, then differentiation,
//! rewriting, code generation and optimizers in later modules. [`Model`] is the entry point of
//! the library API.
//!
//! A model from a string, trained with SGN on arrays in memory, its parameters read back
//! (`examples/arrays.rs` is a longer version):
//!
//! ```
//! use ndarray::Array2;
//! use sgn::data::{Dataset, one_hot};
//! use sgn::optim::{Sgn, SgnOptions, StopRule, TrainOptions, Trainer};
//! use sgn::{CompileOptions, Model};
//!
//! # fn main() -> sgn::Result<()> {
//! let model = Model::parse(
//!     "model xor\ninput x: f32[B, 2]\ntarget y: f32[B, 2]\n\
//!      param w1: f32[2, 8] = glorot_uniform\nparam b1: f32[8] = zeros\n\
//!      param w2: f32[8, 2] = glorot_uniform\nparam b2: f32[2] = zeros\n\
//!      output z = tanh(x @ w1 + b1) @ w2 + b2\nloss softmax_cross_entropy(z, y)\n",
//! )?;
//! let compiled = model.compile(&CompileOptions::default())?;
//! // The four corners of the square, class 1 where the signs differ.
//! let x = Array2::from_shape_fn((64, 2), |(i, j)| if (i >> j) & 1 == 1 { 1.0 } else { -1.0 });
//! let y = one_hot(x.rows().into_iter().map(|p| usize::from(p[0] != p[1])), 2);
//! let data = Dataset::from_arrays(&x, &y, &x, &y)?;
//! let options = TrainOptions {
//!     batch_size: 16,
//!     stop: StopRule { epochs: Some(30), time_limit: None },
//!     ..TrainOptions::default()
//! };
//! let params = sgn::ir::store::init_params(&model.params, 0)?;
//! let sgn = Box::new(Sgn::new(SgnOptions::default()));
//! let mut trainer = Trainer::new(&compiled, &data, &params, sgn, options)?;
//! trainer.run(&mut |_| {})?;
//! assert_eq!(trainer.test_metrics(&data.test)?.1, Some(1.0));
//! let w1 = trainer.params().get("w1").expect("a parameter").shape().to_vec();
//! assert_eq!(w1, [2, 8]);
//! # Ok(())
//! # }
//! ```

pub mod autodiff;
pub mod codegen;
pub mod compile;
pub mod data;
pub mod dsl;
pub mod error;
pub mod ir;
pub mod model;
pub mod optim;
pub mod rewrite;

pub use compile::{CompileOptions, CompiledModel, Curvature, GvOperator, ModelIdentity, Sources};
pub use error::{Error, Result};
pub use model::Model;
pub mod cli;
