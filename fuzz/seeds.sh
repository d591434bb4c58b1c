#!/usr/bin/env bash
# Writes the fuzzers' seed corpus into fuzz/seeds/<target>/: the models in ir/ and the test
# suite's model snippets for `dsl`; inputs, parameters, `eval` results and checkpoints written by
# the release CLI for `safetensors`; checkpoints of every optimizer for `checkpoint` (a sine_mlp
# run on the sine dataset with batch 100 and seed 0, as fuzz_targets/checkpoint.rs expects);
# small IDX files, plain and gzipped, and CIFAR-10 records for `idx`. Needs `cargo build --release`
# first.
set -euo pipefail
cd "$(dirname "$0")/.."
sgn=target/release/sgn
seeds=fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{dsl,safetensors,checkpoint,idx}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp ir/*.sgn "$seeds/dsl/"
python3 - "$seeds" "$work" <<'PY'
import gzip, json, struct, sys
seeds, work = sys.argv[1], sys.argv[2]

# Model snippets in the style of tests/dsl_lowering.rs and tests/dsl_errors.rs: every kind of
# statement, keyword arguments, lists, fns, composites and losses.
models = {
    "ops": "model t\ninput x: f64[B, 4]\ntarget y: f64[B, 4]\nparam p: f64[4] = normal(0.1)\n"
           "fn f(a, b) = exp(a) * b - log(1 + square(a))\n"
           "h = f(x, p) / sqrt(abs(x) + 1)\nm = mean(h, axis=1, keepdims=true)\n"
           "s = softmax(h - m, axis=1)\noutput z = relu(s) + softplus(h) - pow(sigmoid(h), 2) + maximum(h, x)\n"
           "loss mse(z, y)\n",
    "shapes": "model t\ninput x: f32[B, 6]\ntarget y: f32[B, 3]\nparam w: f32[6, 3] = uniform(-1, 1)\n"
              "r = reshape(x, [B, 2, 3])\nc = concat([sum(r, axis=1), x @ w], axis=1)\n"
              "t = transpose(x)\nh = c @ w + max(x, axis=1, keepdims=true)\n"
              "output z = tanh(h)\nloss softmax_cross_entropy(z, y)\n",
    "binary": "model t\ninput x: f32[B, 1]\ntarget y: f32[B, 1]\nparam w: f32[1, 1] = constant(0.5)\n"
              "param b: f32[1]\noutput z = x @ w + b\nloss sigmoid_cross_entropy(z, y)\n",
    "error": "model m\ninput x: f32[B, 4]\ntarget y: f32[B, 2]\nparam w: f32[4, 2]\nparam b: f32[2]\n"
             "output z = x @ ww + b\nloss mse(z, yy)\n",
}
for name, text in models.items():
    open(f"{seeds}/dsl/{name}.sgn", "w").write(text)

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, values) in tensors.items():
        raw = struct.pack("<%d%s" % (len(values), "f" if dtype == "F32" else "d"), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data

# The fuzzing model of fuzz_targets/safetensors.rs: x f32[B, 4], y f32[B, 2], w, b, s.
batch = {"x": ("F32", [3, 4], [i / 7 for i in range(12)]), "y": ("F32", [3, 2], [1, 0, 0, 1, 1, 0])}
params = {"w": ("F32", [4, 2], [0.5] * 8), "b": ("F32", [2], [0, 1]), "s": ("F64", [3, 2, 1], [1.5] * 6)}
open(f"{seeds}/safetensors/batch.safetensors", "wb").write(safetensors(batch))
open(f"{seeds}/safetensors/params.safetensors", "wb").write(safetensors(params, {"note": "seed"}))
open(f"{seeds}/safetensors/empty.safetensors", "wb").write(safetensors({}))
# For `sgn eval` below: a batch of the sine model.
sine = {"x": ("F32", [4, 1], [0.1, 0.2, 0.3, 0.4]), "y": ("F32", [4, 1], [0.5, 0.6, 0.7, 0.8])}
open(f"{work}/sine_batch.safetensors", "wb").write(safetensors(sine))

def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
images = idx([3, 2, 2], range(12))
labels = idx([3], [7, 2, 1])
for name, raw in {"images": images, "labels": labels, "empty": idx([0, 28, 28], [])}.items():
    open(f"{seeds}/idx/{name}-ubyte", "wb").write(raw)
    open(f"{seeds}/idx/{name}-ubyte.gz", "wb").write(gzip.compress(raw))
# Two CIFAR-10 records (a label byte, 3072 pixel bytes each): the target parses its input as
# those too.
records = b"".join(bytes([label]) + bytes((label * 7 + i) % 256 for i in range(3072)) for label in (3, 9))
open(f"{seeds}/idx/cifar-records.bin", "wb").write(records)
PY

for optimizer in sgn sgd adam; do
  "$sgn" train ir/sine_mlp.sgn --dataset sine --optimizer "$optimizer" --batch 100 --epochs 1 \
    --seed 0 --save "$seeds/checkpoint/$optimizer.safetensors" > /dev/null 2>&1
done
cp "$seeds/checkpoint/sgn.safetensors" "$seeds/safetensors/checkpoint.safetensors"
"$sgn" eval ir/sine_mlp.sgn --inputs "$work/sine_batch.safetensors" \
  --out "$seeds/safetensors/eval.safetensors" > /dev/null
echo "seeds: $(find "$seeds" -type f | wc -l) files in $seeds"
