//! How long optimizing every derived graph of each `ir/` model takes (the bound: ≤ 1 s
//! per model, in release): `cargo bench --bench rewrite`.

use criterion::{Criterion, criterion_group, criterion_main};
use sgn::Model;
use sgn::rewrite::{RewriteOptions, optimize};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn optimize_every_graph(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("ir/ exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sgn"))
        .collect();
    files.sort();
    let options = RewriteOptions::default();
    let mut group = c.benchmark_group("optimize all graphs");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for file in files {
        let model = Model::from_file(&file).expect("the shipped models parse");
        let graphs = model.derive().expect("the shipped models differentiate");
        group.bench_function(&model.name, |b| {
            b.iter(|| {
                for (_, graph) in graphs.named() {
                    black_box(optimize(graph, &options).expect("optimizes"));
                }
            })
        });
    }
    group.finish();
}

// No HTML plots: criterion's plotters backend needs a system font that CI machines lack (it
// panicked after the first benchmark); the figures we report are in the text output.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = optimize_every_graph
}
criterion_main!(benches);
