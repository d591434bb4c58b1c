"""The coefficients of the JIT's `erf` (src/codegen/math.rs): weighted minimax polynomials by
the Remez exchange in 40-digit arithmetic, their coefficients then rounded to the target float
one at a time from the constant term up, the higher ones refitted after each rounding.

- ERF_SMALL_*: erf(x)/x − 1 as a polynomial in z = x² on [0, 1] (absolute error);
- LOG_ERFC_*: log erfc(t) as a polynomial in t − 2 on [1, 4] (f32) or [1, 6] (f64), where
  erf rounds to 1; weighted by erfc(t), so it is the absolute error of erf = 1 − erfc.

Run: python3 docs/erf_coefficients.py (needs mpmath; about three minutes of CPU time).
"""
from decimal import Decimal
import struct
import mpmath as mp

mp.mp.dps = 40


def remez(f, w, lo, hi, deg, var, fixed, grid):
    """Coefficients c of p(v) = Σ c_k v^k, v = var(x), minimizing max |w(x)·(p(var x) − f(x))|
    on [lo, hi] with c[:len(fixed)] = fixed; returns them and that maximum."""
    k0, free = len(fixed), deg + 1 - len(fixed)
    G = [mp.mpf(lo + hi) / 2 + mp.mpf(hi - lo) / 2 * mp.cos(mp.pi * k / (grid - 1)) for k in range(grid)]
    P = [[var(x) ** k for k in range(deg + 1)] for x in G]
    R = [f(x) - sum(c * p for c, p in zip(fixed, Pk)) for x, Pk in zip(G, P)]
    W = [w(x) for x in G]
    if free == 0:
        return fixed, max(abs(W[i] * R[i]) for i in range(grid))
    # Start from weighted least squares (the grid runs downwards: mpmath's QR needs a nonzero
    # first row).
    A, b = mp.matrix(grid, free), mp.matrix(grid, 1)
    for i in range(grid):
        for j in range(free):
            A[i, j] = W[i] * P[i][k0 + j]
        b[i] = W[i] * R[i]
    c, best = list(mp.qr_solve(A, b)[0]), None
    for _ in range(40):
        err = [W[i] * (mp.fsum(c[j] * P[i][k0 + j] for j in range(free)) - R[i]) for i in range(grid)]
        m = max(abs(e) for e in err)
        if best is None or m < best[1]:
            best = (fixed + c, m)
        # The largest error of each run of one sign, thinned to free + 1 alternating points.
        pts = []
        for i in range(grid):
            if pts and (err[i] >= 0) == (err[pts[-1]] >= 0):
                if abs(err[i]) > abs(err[pts[-1]]):
                    pts[-1] = i
            else:
                pts.append(i)
        while len(pts) > free + 1:
            pts.pop(0 if abs(err[pts[0]]) < abs(err[pts[-1]]) else -1)
        if len(pts) <= free or m - min(abs(err[i]) for i in pts) < m / 1000:
            break
        M, r = mp.matrix(free + 1, free + 1), mp.matrix(free + 1, 1)
        for row, i in enumerate(pts):
            for j in range(free):
                M[row, j] = P[i][k0 + j]
            M[row, free] = (-1) ** row / W[i]
            r[row] = R[i]
        s = mp.lu_solve(M, r)
        c = [s[j] for j in range(free)]
    return best


def rounded_fit(f, w, lo, hi, deg, var, bits, grid):
    fixed = []
    for k in range(deg + 1):
        c, _ = remez(f, w, lo, hi, deg, var, fixed, grid)
        with mp.workprec(bits):
            fixed.append(+c[k])
    return remez(f, w, lo, hi, deg, var, fixed, grid)


def literal(c, bits):
    """The shortest decimal that reads back as c, written like the other constants."""
    text = repr(float(c))
    if bits == 24:
        f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
        text = next(s for s in (f"{float(c):.{p}g}" for p in range(1, 10)) if f32(float(s)) == c)
    d = Decimal(text)
    power = d.adjusted() if abs(d) < Decimal("0.001") else 0
    whole, frac = format(d.scaleb(-power), "f").split(".")
    return whole + "." + "_".join(frac[i:i + 3] for i in range(0, len(frac), 3)) + (
        f"e{power}" if power else "")


def small(z):  # erf(x)/x − 1 with z = x²
    return 2 / mp.sqrt(mp.pi) - 1 if z == 0 else mp.erf(mp.sqrt(z)) / mp.sqrt(z) - 1


for name, bits, saturation, small_degree, log_erfc_degree in [
    ("F32", 24, 4, 6, 6),
    ("F64", 53, 6, 11, 17),
]:
    fits = [
        ("ERF_SMALL", rounded_fit(small, lambda z: 1, 0, 1, small_degree, lambda z: z, bits, 800)),
        ("LOG_ERFC", rounded_fit(lambda t: mp.log(mp.erfc(t)), mp.erfc, 1, saturation,
                                 log_erfc_degree, lambda t: t - 2, bits, 1200)),
    ]
    for prefix, (coeffs, error) in fits:
        print(f"// max weighted error {mp.nstr(error, 3)}")
        print(f"const {prefix}_{name}: [f64; {len(coeffs)}] = [")
        for c in coeffs:
            print(f"    {literal(c, bits)},")
        print("];")
