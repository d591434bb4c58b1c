//! Safetensors files as `--inputs`, `--params` and `--vector` read them: any bytes go through the
//! store's reader, then every tensor read is checked against a model's declared arguments.
//! Reading must end in tensors or an error naming the source; what was read must survive
//! writing and reading again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgn::Model;
use sgn::ir::store::{TensorMap, check_args};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A model with a symbolic batch, fixed widths and both dtypes.
static MODEL: LazyLock<Model> = LazyLock::new(|| {
    Model::parse(
        "model m\ninput x: f32[B, 4]\ntarget y: f32[B, 2]\nparam w: f32[4, 2]\n\
         param b: f32[2]\nparam s: f64[3, 2, 1]\noutput z = x @ w + b\nloss mse(z, y)\n",
    )
    .expect("the fuzzing model parses")
});

fuzz_target!(|data: &[u8]| {
    let Ok((map, metadata)) = TensorMap::from_bytes(data, "fuzz.safetensors") else {
        return;
    };
    let args: Vec<_> = MODEL.graph.args().iter().collect();
    let _ = check_args(&map, &args, "fuzz.safetensors");
    for arg in &args {
        let _ = check_args(&map, &[*arg], "fuzz.safetensors");
    }
    // What was read writes and reads back the same. (Compared without the metadata: the
    // safetensors crate writes it in hash order, so its bytes differ from write to write.)
    let no_metadata = BTreeMap::new();
    let bytes = map
        .to_bytes(&no_metadata)
        .expect("a map that was read can be written");
    let with_metadata = map.to_bytes(&metadata).expect("and with its metadata");
    let (again, metadata_again) =
        TensorMap::from_bytes(&with_metadata, "rewritten").expect("written bytes read back");
    assert_eq!(metadata_again, metadata);
    assert_eq!(
        again.to_bytes(&no_metadata).expect("writable"),
        bytes,
        "the tensors read back differ from those written"
    );
});
