#!/usr/bin/env python3
"""PyTorch reference timings for the SGN paper's Fashion-MNIST LeNet (issue 13, "Done when").

What it measures, in PyTorch (eager CPU; torch.compile/inductor too with --compile), f32, batch
1000 by default, for the net of ir/fashion_lenet.sgn:
  conv 6@5×5 → ReLU → maxpool 2 → conv 16@5×5 → ReLU → maxpool 2 → FC 120 → ReLU → FC 84 → ReLU
  → 10, stride 1, no padding, softmax cross-entropy (mean over the batch), with the model file's
  initialization (conv kernels and dense weights uniform in the same bounds, biases zero). Conv
  biases are passed to F.conv2d and dense weights are stored [out, in] for F.linear, as a
  PyTorch user writes them; the function computed is the same.
  forward    (z, loss) under torch.inference_mode()
  loss+grad  the faster of
                 autograd   loss(params, x, y).backward()          (params.requires_grad)
                 func       torch.func.grad_and_value(loss)(params, x, y)
  gv-apply   a Gauss-Newton-vector product G v = Jᵀ H_L J v with the network linearized once per
             step; only the apply is timed (the per-CG-iteration cost). The faster of
                 linearize  z, jvp_fn = torch.func.linearize(lambda p: net(p, x), params)
                            _, vjp_fn = torch.func.vjp(lambda p: net(p, x), params)
                            gv(v) = vjp_fn(hvp(jvp_fn(v)))
                            (jvp_fn replays the tangent graph with the primal part folded into
                            constants on its first call)
                 autograd   z = net(params, x) and g(u) = Jᵀ u built once with create_graph=True;
                            J v = d⟨g(u), v⟩/du (double backward), then Jᵀ by backward through z;
                            every residual stays in the retained autograd graphs
             where hvp(u) = (s ⊙ u − s ⟨s, u⟩) / B is the softmax cross-entropy Hessian in z,
             s = softmax(z) computed once per step. Also timed, not eligible as "gv-apply":
                 jvp        torch.func.jvp (forward recomputed on every call) then vjp_fn
  Before timing, every G v variant is checked (assert) on a batch of 3 in f64 against the
  explicit product Jᵀ H_L J v, with J from torch.autograd.functional.jacobian and H_L from
  torch.autograd.functional.hessian (double backward) of F.cross_entropy; at the timed batch the
  variants must agree with one another and the two gradients likewise.
  --compile adds torch.compile (inductor, needs a C++ compiler) rows: the compiled loss with
  .backward(), the compiled grad_and_value, the compiled forward, and each linearized G v apply
  traced by make_fx (the residuals become graph constants) and then compiled; each is checked
  against its eager counterpart.
Each figure is the median of --repeats runs (default 30) after 3 warm-up runs.
sgn's counterparts are the "forward", "grad" and "gv-apply" rows of `sgn bench --format json`.

Not a project dependency: install PyTorch in a virtualenv outside the repository, e.g.
    python3 -m venv /work/torchenv && /work/torchenv/bin/pip install torch
Run pinned, one core and two (--threads sets torch.set_num_threads):
    taskset -c 0   /work/torchenv/bin/python benches/torch_compare.py --threads 1 --compile --json
    taskset -c 0,1 /work/torchenv/bin/python benches/torch_compare.py --threads 2 --compile --json
and, in the same session, the sgn side:
    taskset -c 0   ./target/release/sgn bench ir/fashion_lenet.sgn --batch 1000 --threads 1 --format json
    taskset -c 0,1 ./target/release/sgn bench ir/fashion_lenet.sgn --batch 1000 --threads 2 --format json
"""
import argparse
import json
import os
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

# torch.func.linearize's constant folding warns about its own graph module on every call
warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")

MODEL = "fashion_lenet"
CLASSES = 10

# name -> (shape, uniform bound or None for zeros); mirrors ir/fashion_lenet.sgn
PARAMS = {
    "c1": ((6, 1, 5, 5), 0.2),
    "d1": ((6,), None),
    "c2": ((16, 6, 5, 5), 0.05),
    "d2": ((16,), None),
    "w3": ((120, 256), (6.0 / 266) ** 0.5),
    "b3": ((120,), None),
    "w4": ((84, 120), (6.0 / 130) ** 0.5),
    "b4": ((84,), None),
    "w5": ((CLASSES, 84), (6.0 / 94) ** 0.5),
    "b5": ((CLASSES,), None),
}


def init_params(gen):
    return {name: torch.zeros(shape) if bound is None
            else torch.empty(shape).uniform_(-bound, bound, generator=gen)
            for name, (shape, bound) in PARAMS.items()}


def net(p, x):
    h = F.max_pool2d(F.relu(F.conv2d(x, p["c1"], p["d1"])), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["c2"], p["d2"])), 2)
    h = F.relu(F.linear(h.flatten(1), p["w3"], p["b3"]))
    h = F.relu(F.linear(h, p["w4"], p["b4"]))
    return F.linear(h, p["w5"], p["b5"])


def loss_fn(p, x, labels):  # softmax cross-entropy, mean over the batch
    return F.cross_entropy(net(p, x), labels)


def forward(p, x, labels):
    z = net(p, x)
    return z, F.cross_entropy(z, labels)


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def rel_err(got, want):
    """Largest over the parameters of max|got − want| / max|want| (dicts or same-order lists)."""
    if isinstance(want, dict):
        got, want = [got[k] for k in want], list(want.values())
    return max(float((g - w).abs().max() / (w.abs().max() + 1e-30))
               for g, w in zip(got, want))


def grad_variants(params, x, labels):
    """name -> () -> (loss, {name: grad}) for each eager loss+grad way."""
    leaves = {k: t.detach().clone().requires_grad_() for k, t in params.items()}

    def autograd():
        for t in leaves.values():
            t.grad = None
        loss = loss_fn(leaves, x, labels)
        loss.backward()
        return loss, {k: t.grad for k, t in leaves.items()}

    func_grad = torch.func.grad_and_value(loss_fn)

    def func():
        grads, loss = func_grad(params, x, labels)
        return loss, grads

    return {"autograd": autograd, "func": func}


def gv_variants(params, x, labels):
    """name -> (v as {name: tensor}) -> G v as {name: tensor}, all built at one linearization
    point; names in LINEARIZED are linearized once, the others redo the forward per call."""
    batch = x.shape[0]
    names = list(params)
    z, jvp_fn = torch.func.linearize(lambda p: net(p, x), params)
    _, vjp_fn = torch.func.vjp(lambda p: net(p, x), params)
    s = torch.softmax(z, dim=-1)

    def hvp(u):  # Hessian of mean softmax cross-entropy in z, times u
        su = s * u
        return (su - s * su.sum(dim=-1, keepdim=True)) / batch

    def linearize(v):
        return vjp_fn(hvp(jvp_fn(v)))[0]

    def jvp(v):
        _, jv = torch.func.jvp(lambda p: net(p, x), (params,), (v,))
        return vjp_fn(hvp(jv))[0]

    leaves = [params[k].detach().clone().requires_grad_() for k in names]
    z_graph = net(dict(zip(names, leaves)), x)
    u = torch.zeros_like(z_graph, requires_grad=True)
    jt_u = torch.autograd.grad(z_graph, leaves, u, create_graph=True)

    def autograd(v):
        jv, = torch.autograd.grad(jt_u, u, [v[k] for k in names], retain_graph=True)
        return dict(zip(names, torch.autograd.grad(z_graph, leaves, hvp(jv), retain_graph=True)))

    return {"linearize": linearize, "autograd": autograd, "jvp": jvp}


LINEARIZED = ("linearize", "autograd")


def explicit_gv(params, x, labels, v):
    """Jᵀ H_L J v from the explicit Jacobian of the net and the explicit Hessian of the loss."""
    names = list(params)
    flat = tuple(params[k] for k in names)
    z = net(params, x)
    jac = torch.autograd.functional.jacobian(lambda *ps: net(dict(zip(names, ps)), x), flat)
    jac = torch.cat([j.reshape(z.numel(), -1) for j in jac], dim=1)  # [B·10, #params]
    hess = torch.autograd.functional.hessian(lambda zz: F.cross_entropy(zz, labels), z)
    hess = hess.reshape(z.numel(), z.numel())
    gv = jac.T @ (hess @ (jac @ torch.cat([v[k].reshape(-1) for k in names])))
    return {k: part.reshape(t.shape)
            for k, t, part in zip(names, flat, torch.split(gv, [t.numel() for t in flat]))}


def random_like(params, gen):
    return {k: torch.randn(t.shape, generator=gen, dtype=t.dtype) for k, t in params.items()}


def check_gv_small(gen):
    """Every G v variant equals the explicit Jᵀ H_L J v on a batch of 3 (f64)."""
    params = {k: t.double() for k, t in init_params(gen).items()}
    x = torch.randn(3, 1, 28, 28, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (3,), generator=gen)
    v = random_like(params, gen)
    want = explicit_gv(params, x, labels, v)
    for name, gv in gv_variants(params, x, labels).items():
        err = rel_err(gv(v), want)
        assert err < 1e-10, f"G v ({name}) differs from the explicit Jᵀ H_L J v: rel err {err:.1e}"


def compiled_rows(params, x, labels, v, grad_want, gv_eager, repeats):
    """name -> ms for the torch.compile (inductor) forms, each checked against eager."""
    rows = {}
    z_want, loss_want = forward(params, x, labels)
    forward_c = torch.compile(forward)
    with torch.inference_mode():
        got = forward_c(params, x, labels)
        assert rel_err(got, (z_want, loss_want)) < 1e-4, "compiled forward differs from eager"
        rows["forward"] = median_ms(lambda: forward_c(params, x, labels), repeats)

    leaves = {k: t.detach().clone().requires_grad_() for k, t in params.items()}
    loss_c = torch.compile(loss_fn)

    def autograd():
        for t in leaves.values():
            t.grad = None
        loss_c(leaves, x, labels).backward()
        return {k: t.grad for k, t in leaves.items()}

    assert rel_err(autograd(), grad_want) < 1e-4, "compiled loss + backward differs from eager"
    rows["loss+grad autograd"] = median_ms(autograd, repeats)
    func_c = torch.compile(torch.func.grad_and_value(loss_fn))
    assert rel_err(func_c(params, x, labels)[0], grad_want) < 1e-4, \
        "compiled grad_and_value differs from eager"
    rows["loss+grad func"] = median_ms(lambda: func_c(params, x, labels), repeats)

    for name in LINEARIZED:
        # Called before tracing: linearize folds its constants on the first call, which make_fx
        # would otherwise trace into the graph (the forward redone on every apply).
        want = gv_eager[name](v)
        gv_c = torch.compile(make_fx(gv_eager[name])(v))
        assert rel_err(gv_c(v), want) < 1e-4, f"compiled G v ({name}) differs from eager"
        rows[f"gv-apply {name}"] = median_ms(lambda: gv_c(v), repeats)
    return rows


def bench(batch, repeats, compile_too):
    gen = torch.Generator().manual_seed(0)
    check_gv_small(gen)
    params = init_params(gen)
    x = torch.randn(batch, 1, 28, 28, generator=gen)
    labels = torch.randint(0, CLASSES, (batch,), generator=gen)
    v = random_like(params, gen)

    with torch.inference_mode():
        forward_ms = median_ms(lambda: forward(params, x, labels), repeats)

    grads = grad_variants(params, x, labels)
    grad_want = grads["func"]()[1]
    assert rel_err(grads["autograd"]()[1], grad_want) < 1e-4, "autograd and func grads differ"
    grad_ms = {name: median_ms(fn, repeats) for name, fn in grads.items()}

    gvs = gv_variants(params, x, labels)
    gv_want = gvs["jvp"](v)
    gv_err = max(rel_err(gv(v), gv_want) for gv in gvs.values())
    assert gv_err < 1e-4, f"G v variants disagree at batch {batch}: rel err {gv_err:.1e}"
    gv_ms = {name: median_ms(lambda: gv(v), repeats) for name, gv in gvs.items()}

    return {
        "model": MODEL, "batch": batch, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "forward_ms": forward_ms,
        "loss_grad_ms": min(grad_ms.values()),
        "gv_apply_ms": min(gv_ms[name] for name in LINEARIZED),
        "loss_grad_variants_ms": grad_ms,
        "gv_variants_ms": gv_ms,
        "gv_rel_err": gv_err,
        "compiled_ms": compiled_rows(params, x, labels, v, grad_want, gvs, repeats)
        if compile_too else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch.set_num_threads (default: the cpus in the affinity mask)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile (inductor) rows")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object too")
    a = ap.parse_args()
    if a.batch < 1 or a.repeats < 1 or a.threads < 1:
        ap.error("--batch, --repeats and --threads must be at least 1")
    torch.set_num_threads(a.threads)

    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"threads {torch.get_num_threads()}, "
          f"cpus in affinity mask: {len(os.sched_getaffinity(0))}")
    r = bench(a.batch, a.repeats, a.compile)
    rows = [("forward", r["forward_ms"])]
    rows += [(f"loss+grad {k}", ms) for k, ms in r["loss_grad_variants_ms"].items()]
    rows += [(f"gv-apply {k}" + ("" if k in LINEARIZED else " (forward redone)"), ms)
             for k, ms in r["gv_variants_ms"].items()]
    rows += [(f"compiled {k}", ms) for k, ms in (r["compiled_ms"] or {}).items()]
    print(f"{MODEL}, batch {a.batch}   (G v variants agree to rel err {r['gv_rel_err']:.1e})")
    for name, ms in rows:
        print(f"  {name:<38}{ms:>10.3f} ms")
    if a.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
