//! The integration tests, one module per area, linked into one test binary: each separate
//! binary links the whole library again, which took most of CI's test build. Run one area with
//! `cargo test --release --test suite jit_models::`. The MPI tests (`tests/mpi.rs`) stay a binary
//! of their own, built only with `--features mpi`.

mod common;

mod autodiff_models;
mod autodiff_ops;
mod cli;
mod cli_hardening;
mod compare;
mod conv;
mod data;
mod dsl_errors;
mod dsl_fuzz;
mod dsl_lowering;
mod hardening;
mod interp_ops;
mod ir_text;
mod jit_boundary;
mod jit_gemm;
mod jit_math;
mod jit_models;
mod jit_random;
mod report;
mod reproduce;
mod rewrite_api;
mod rewrite_models;
mod rewrite_rules;
mod store;
mod train;
mod user_data;
