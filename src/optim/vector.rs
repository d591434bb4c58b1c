//! The few dense-vector operations the optimizers need, on flat parameter vectors.

/// `Σ aᵢ bᵢ`, in eight interleaved partial sums (so the compiler can vectorize it; the order is
/// fixed, so the result is reproducible).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot of vectors of one length");
    let mut partial = [0.0; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            partial[k] += x[k] * y[k];
        }
    }
    partial.iter().sum::<f64>() + tail
}

/// `q ← q + shift·p` (a diagonal shift of a product `q = A p`), returning the new `p·q`, summed
/// as [`dot`] sums: one pass where there were two.
pub fn shift_dot(q: &mut [f64], shift: f64, p: &[f64]) -> f64 {
    assert_eq!(q.len(), p.len(), "vectors of one length");
    let main = q.len() - q.len() % 8;
    let mut partial = [0.0; 8];
    for (q, p) in q[..main].chunks_exact_mut(8).zip(p[..main].chunks_exact(8)) {
        for k in 0..8 {
            q[k] += shift * p[k];
            partial[k] += p[k] * q[k];
        }
    }
    let mut tail = 0.0;
    for (q, p) in q[main..].iter_mut().zip(&p[main..]) {
        *q += shift * p;
        tail += p * *q;
    }
    partial.iter().sum::<f64>() + tail
}

/// `x ← x + alpha·p` and `r ← r − alpha·q` in one pass over memory (CG's update; the vectors
/// are as long as the model has parameters), returning the new `r·r`, summed as [`dot`] sums.
pub fn cg_update(x: &mut [f64], r: &mut [f64], alpha: f64, p: &[f64], q: &[f64]) -> f64 {
    let n = x.len();
    assert!(
        r.len() == n && p.len() == n && q.len() == n,
        "CG vectors of one length"
    );
    let main = n - n % 8;
    let mut partial = [0.0; 8];
    let chunks = x[..main]
        .chunks_exact_mut(8)
        .zip(r[..main].chunks_exact_mut(8))
        .zip(p[..main].chunks_exact(8).zip(q[..main].chunks_exact(8)));
    for ((x, r), (p, q)) in chunks {
        for k in 0..8 {
            x[k] += alpha * p[k];
            r[k] -= alpha * q[k];
            partial[k] += r[k] * r[k];
        }
    }
    let mut tail = 0.0;
    for i in main..n {
        x[i] += alpha * p[i];
        r[i] -= alpha * q[i];
        tail += r[i] * r[i];
    }
    partial.iter().sum::<f64>() + tail
}

/// `a + alpha·b` as a new vector.
pub fn added(a: &[f64], alpha: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + alpha * b).collect()
}

/// True if every element is finite.
pub fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_updates_equal_separate_passes_bit_for_bit() {
        for n in [0, 1, 7, 8, 9, 23, 64] {
            let v = |seed: usize| -> Vec<f64> {
                (0..n)
                    .map(|i| ((i * 31 + seed * 17) % 13) as f64 / 7.0 - 0.9)
                    .collect()
            };
            let (p, q, alpha) = (v(1), v(2), 0.37);
            let (mut x, mut r) = (v(3), v(4));
            let rr = cg_update(&mut x, &mut r, alpha, &p, &q);
            let x_expected: Vec<f64> = v(3).iter().zip(&p).map(|(x, p)| x + alpha * p).collect();
            let r_expected: Vec<f64> = v(4).iter().zip(&q).map(|(r, q)| r - alpha * q).collect();
            assert_eq!(x, x_expected, "n = {n}");
            assert_eq!(r, r_expected, "n = {n}");
            assert_eq!(
                rr.to_bits(),
                dot(&r_expected, &r_expected).to_bits(),
                "n = {n}"
            );
        }
    }
}
