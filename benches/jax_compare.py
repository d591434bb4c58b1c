#!/usr/bin/env python3
"""JAX reference timings for the sgn benchmark models (the "Targets from peers" of ISSUE6).

What it measures, in JAX (jit, XLA CPU), f32, batch 1000 by default, for the same nets as
  ir/mlp_tanh_800.sgn  784-800-800-10, tanh,           softmax cross-entropy (mean over batch)
  ir/mnist_mlp.sgn     784-20-20-20-10, sigmoid,       softmax cross-entropy (mean over batch)
with glorot-uniform weights and zero biases:
  loss+grad  jax.jit(jax.value_and_grad(loss))(params, x, y)
  sgn-step   one whole SGN step jitted as one function: loss+grad, linearize, 10 CG iterations
             (jax.scipy.sparse.linalg.cg with no early stop), the loss at the trial point; sgn's
             counterpart is the "sgn-step" row of `sgn bench` (also 10 CG iterations, no line
             search)
  gv-apply   a linearize-once Gauss-Newton-vector product G v = Jᵀ H_L J v, the best a JAX
             user can do: once per step
                 z, f_jvp = jax.linearize(lambda p: net(p, x), params)
                 f_vjp    = jax.linear_transpose(f_jvp, params)
             then the jitted apply  gv(v) = f_vjp(hvp_loss(z, f_jvp(v))), where hvp_loss is the
             loss Hessian-vector product in z (jax.jvp of jax.grad of the loss). Only the apply
             is timed: it is the per-CG-iteration cost. The linearization residuals are passed
             to the jitted apply as arguments, not baked into the executable as constants.
Each figure is the median of --repeats runs (default 30) after warm-up, with block_until_ready.
sgn's counterparts are the "grad" and "gv-apply" rows of `sgn bench --format json`.

Not a project dependency: install JAX in a virtualenv outside the repository, e.g.
    python3 -m venv /work/jaxenv && /work/jaxenv/bin/pip install jax
Run pinned, one core and two (XLA sizes its thread pool from the CPU affinity mask):
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 /work/jaxenv/bin/python benches/jax_compare.py
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=true taskset -c 0,1 /work/jaxenv/bin/python benches/jax_compare.py
and, in the same session, the sgn side:
    taskset -c 0   ./target/release/sgn bench ir/mlp_tanh_800.sgn --batch 1000 --threads 1 --format json
    taskset -c 0,1 ./target/release/sgn bench ir/mlp_tanh_800.sgn --batch 1000 --threads 2 --format json
    (and the same for ir/mnist_mlp.sgn)
"""
import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

# name -> (layer widths, activation); mirrors ir/mlp_tanh_800.sgn and ir/mnist_mlp.sgn
MODELS = {
    "mlp_tanh_800": ([784, 800, 800, 10], jnp.tanh),
    "mnist_mlp": ([784, 20, 20, 20, 10], jax.nn.sigmoid),
}


# CG iterations of the timed SGN step by default: `sgn bench`'s (src/cli/bench.rs,
# STEP_CG_ITERS); --cg-iters 3 times the SGN(3) step of the paper's MNIST runs.
SGN_STEP_CG_ITERS = 10


def init_params(key, widths):
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        key, sub = jax.random.split(key)
        lim = (6.0 / (fan_in + fan_out)) ** 0.5  # glorot_uniform
        w = jax.random.uniform(sub, (fan_in, fan_out), jnp.float32, -lim, lim)
        params.append((w, jnp.zeros((fan_out,), jnp.float32)))
    return params


def make_net(act):
    def net(params, x):  # dense layers, activation on all but the output layer
        h = x
        for w, b in params[:-1]:
            h = act(h @ w + b)
        w, b = params[-1]
        return h @ w + b

    return net


def xent(z, y):  # softmax cross-entropy, mean over the batch
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1))


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(name, batch, repeats, cg_iters=SGN_STEP_CG_ITERS):
    widths, act = MODELS[name]
    net = make_net(act)
    kp, kx, ky, kv = jax.random.split(jax.random.PRNGKey(0), 4)
    params = init_params(kp, widths)
    x = jax.random.normal(kx, (batch, widths[0]), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, widths[-1]), widths[-1], dtype=jnp.float32)
    leaves, tree = jax.tree_util.tree_flatten(params)
    v = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, p.shape, p.dtype)
                                            for k, p in zip(jax.random.split(kv, len(leaves)), leaves)])

    # (a) loss + gradient
    loss = lambda p, x, y: xent(net(p, x), y)
    grad_fn = jax.jit(jax.value_and_grad(loss))
    grad_ms = median_ms(lambda: grad_fn(params, x, y), repeats)

    # (b) linearize once (per step), then time the Gv apply only
    z, f_jvp = jax.linearize(lambda p: net(p, x), params)
    f_vjp = jax.linear_transpose(f_jvp, params)
    hvp_loss = lambda z, u: jax.jvp(jax.grad(lambda zz: xent(zz, y)), (z,), (u,))[1]
    gv = lambda v: f_vjp(hvp_loss(z, f_jvp(v)))[0]
    # Hoist the linearization residuals (z, activations, ...) out as jit arguments: a plain
    # jax.jit(gv) would bake them into the executable as constants (~37 MB of HLO text here).
    closed = jax.make_jaxpr(gv)(v)
    out_tree = jax.tree_util.tree_structure(params)
    gv_fn = jax.jit(lambda consts, v: jax.tree_util.tree_unflatten(
        out_tree, jax.core.eval_jaxpr(closed.jaxpr, consts, *jax.tree_util.tree_leaves(v))))
    consts = list(closed.consts)
    gv_ms = median_ms(lambda: gv_fn(consts, v), repeats)

    # (c) one SGN step as `sgn bench` times it, jitted whole: loss + gradient, the network
    # linearized once, cg_iters CG iterations on (G + rho I) d = -g (no early stop),
    # the loss at theta + d (the Levenberg-Marquardt ratio's), the update.
    rho = 1e-4
    add = lambda a, b, s=1.0: jax.tree_util.tree_map(lambda u, w: u + s * w, a, b)

    @jax.jit
    def sgn_step_fn(params, x, y):
        value, g = jax.value_and_grad(loss)(params, x, y)
        z, f_jvp = jax.linearize(lambda p: net(p, x), params)
        f_vjp = jax.linear_transpose(f_jvp, params)
        hvp = lambda u: jax.jvp(jax.grad(lambda zz: xent(zz, y)), (z,), (u,))[1]
        damped_gv = lambda v: add(f_vjp(hvp(f_jvp(v)))[0], v, rho)
        b = jax.tree_util.tree_map(lambda t: -t, g)
        d, _ = jax.scipy.sparse.linalg.cg(damped_gv, b, tol=0.0, atol=0.0,
                                          maxiter=cg_iters)
        trial = add(params, d)
        return trial, value, loss(trial, x, y)

    # sanity: Gv agrees with a plain (unlinearized) Gauss-Newton product
    def gv_ref(v):
        zz, jv = jax.jvp(lambda p: net(p, x), (params,), (v,))
        _, vjp = jax.vjp(lambda p: net(p, x), params)
        return vjp(hvp_loss(zz, jv))[0]

    err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
              for a, b in zip(jax.tree_util.tree_leaves(gv_fn(consts, v)),
                              jax.tree_util.tree_leaves(jax.jit(gv_ref)(v))))
    step_ms = median_ms(lambda: sgn_step_fn(params, x, y), repeats)
    return {"model": name, "batch": batch, "loss_grad_ms": grad_ms, "gv_apply_ms": gv_ms,
            "gv_rel_err": err, "sgn_step_ms": step_ms, "cg_iters": cg_iters}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", action="store_true", help="print one JSON object per model too")
    ap.add_argument("--cg-iters", type=int, default=SGN_STEP_CG_ITERS,
                    help="CG iterations of the timed SGN step (default: sgn bench's 10)")
    a = ap.parse_args()

    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"cpus in affinity mask: {len(os.sched_getaffinity(0))}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'model':<14}{'batch':>6}{'loss+grad ms':>14}{'gv-apply ms':>13}{'sgn-step ms':>13}")
    for name in a.models:
        r = bench(name, a.batch, a.repeats, a.cg_iters)
        print(f"{name:<14}{r['batch']:>6}{r['loss_grad_ms']:>14.3f}{r['gv_apply_ms']:>13.3f}"
              f"{r['sgn_step_ms']:>13.3f}   (Gv rel err vs vjp∘jvp: {r['gv_rel_err']:.1e})")
        if a.json:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
