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

/// With `autotests = false` (Cargo.toml), a test file that is not a module here is never built.
#[test]
fn every_test_file_is_a_module_of_the_suite_or_mpi() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let suite = include_str!("suite.rs");
    for entry in std::fs::read_dir(&dir).expect("tests/ is readable") {
        let path = entry.expect("a directory entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        if is_rust && !["suite", "mpi"].contains(&stem) {
            let declared = format!("\nmod {stem};\n");
            assert!(
                suite.contains(&declared),
                "tests/{stem}.rs is not a module of tests/suite.rs"
            );
        }
    }
}
