//! The dense-vector passes the optimizers need, on flat parameter vectors, split over the
//! threads of the model's pool.
//!
//! Sums are reproducible and do not depend on the thread count: a vector is cut into blocks of
//! [`BLOCK`] elements at fixed places, each block is summed alone in eight interleaved partial
//! sums (so that the compiler vectorizes it), and the block sums are added in order; threads take
//! whole runs of blocks.

use crate::codegen::{Pool, split_mut};
use std::ops::Range;
use std::sync::Arc;

/// Elements per block of a sum (128 KiB of f64): vectors up to this long are summed exactly as
/// one pass of eight partial sums would, longer ones in parts the threads can share.
pub const BLOCK: usize = 1 << 14;

/// The vector passes, on the threads of one pool.
///
/// # Example
/// ```
/// use sgn::optim::vector::Vectors;
/// let vectors = Vectors::new(sgn::codegen::Pool::shared(2)?);
/// let (mut x, mut r) = (vec![0.0; 3], vec![1.0, 2.0, 2.0]);
/// let (p, q) = ([1.0, 1.0, 1.0], [1.0, 2.0, 2.0]);
/// // x ← x + ½p, r ← r − ½q, returning r·r
/// assert_eq!(vectors.cg_update(&mut x, &mut r, 0.5, &p, &q), 2.25);
/// assert_eq!(vectors.dot(&x, &p), 1.5);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Vectors {
    pool: Arc<Pool>,
}

impl Vectors {
    /// Passes on `pool`'s threads.
    pub fn new(pool: Arc<Pool>) -> Vectors {
        Vectors { pool }
    }

    /// Passes on the calling thread alone.
    pub fn serial() -> Vectors {
        let pool = Pool::shared(1).expect("a pool of one thread starts no worker");
        Vectors { pool }
    }

    /// `Σ aᵢ bᵢ`.
    pub fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len(), "dot of vectors of one length");
        let parts = self.parts(a.len());
        total(self.pool.map_parts(parts, |part| {
            let (a, b) = (&a[part.clone()], &b[part]);
            block_sums(a.len(), |i| dot_block(&a[i.clone()], &b[i]))
        }))
    }

    /// `q ← q + shift·p` (a diagonal shift of a product `q = A p`), returning the new `p·q`:
    /// one pass where there were two.
    pub fn shift_dot(&self, q: &mut [f64], shift: f64, p: &[f64]) -> f64 {
        assert_eq!(q.len(), p.len(), "vectors of one length");
        let parts = self.parts(q.len());
        let work = split_mut(q, &parts).into_iter().zip(parts);
        total(self.pool.map_parts(work.collect(), |(q, part)| {
            let p = &p[part];
            block_sums(q.len(), |i| {
                shift_dot_block(&mut q[i.clone()], shift, &p[i])
            })
        }))
    }

    /// `x ← x + alpha·p` and `r ← r − alpha·q` in one pass over memory (CG's update), returning
    /// the new `r·r`.
    pub fn cg_update(&self, x: &mut [f64], r: &mut [f64], alpha: f64, p: &[f64], q: &[f64]) -> f64 {
        let n = x.len();
        assert!(
            r.len() == n && p.len() == n && q.len() == n,
            "CG vectors of one length"
        );
        let parts = self.parts(n);
        let work = split_mut(x, &parts)
            .into_iter()
            .zip(split_mut(r, &parts))
            .zip(parts);
        total(self.pool.map_parts(work.collect(), |((x, r), part)| {
            let (p, q) = (&p[part.clone()], &q[part]);
            block_sums(x.len(), |i| {
                let (p, q) = (&p[i.clone()], &q[i.clone()]);
                cg_update_block(&mut x[i.clone()], &mut r[i], alpha, p, q)
            })
        }))
    }

    /// `p ← y + beta·p` (CG's next search direction).
    pub fn scale_add(&self, p: &mut [f64], beta: f64, y: &[f64]) {
        assert_eq!(p.len(), y.len(), "vectors of one length");
        let parts = self.parts(p.len());
        let work = split_mut(p, &parts).into_iter().zip(parts);
        self.pool.map_parts(work.collect(), |(p, part)| {
            for (p, y) in p.iter_mut().zip(&y[part]) {
                *p = y + beta * *p;
            }
        });
    }

    /// `a + alpha·b` as a new vector.
    pub fn added(&self, a: &[f64], alpha: f64, b: &[f64]) -> Vec<f64> {
        assert_eq!(a.len(), b.len(), "vectors of one length");
        self.mapped(a, b, |a, b| a + alpha * b)
    }

    /// `alpha·a` as a new vector (`alpha = 1`: a copy).
    pub fn scaled(&self, a: &[f64], alpha: f64) -> Vec<f64> {
        self.mapped(a, a, |a, _| alpha * a)
    }

    /// True if every element is finite.
    pub fn all_finite(&self, a: &[f64]) -> bool {
        let parts = self.parts(a.len());
        (self
            .pool
            .map_parts(parts, |part| a[part].iter().all(|x| x.is_finite())))
        .into_iter()
        .all(|finite| finite)
    }

    /// `f(aᵢ, bᵢ)` for every `i`, as a new vector (written by the threads that compute it, so
    /// that its pages are first touched in parallel too).
    fn mapped(&self, a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64 + Sync) -> Vec<f64> {
        let mut out = vec![0.0; a.len()];
        let parts = self.parts(a.len());
        let work = split_mut(&mut out, &parts).into_iter().zip(parts);
        self.pool.map_parts(work.collect(), |(out, part)| {
            let (a, b) = (&a[part.clone()], &b[part]);
            for ((out, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *out = f(a, b);
            }
        });
        out
    }

    /// The threads' ranges of a vector of `n` elements: runs of whole blocks.
    fn parts(&self, n: usize) -> Vec<Range<usize>> {
        self.pool.split(n, BLOCK)
    }
}

/// `sum(block)` for each block of a part of `len` elements (ranges local to the part, which
/// starts on a block edge).
fn block_sums(len: usize, mut sum: impl FnMut(Range<usize>) -> f64) -> Vec<f64> {
    (0..len)
        .step_by(BLOCK)
        .map(|start| sum(start..(start + BLOCK).min(len)))
        .collect()
}

/// The block sums of every part, added in order.
fn total(parts: Vec<Vec<f64>>) -> f64 {
    parts.iter().flatten().sum()
}

fn dot_block(a: &[f64], b: &[f64]) -> f64 {
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

fn shift_dot_block(q: &mut [f64], shift: f64, p: &[f64]) -> f64 {
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

fn cg_update_block(x: &mut [f64], r: &mut [f64], alpha: f64, p: &[f64], q: &[f64]) -> f64 {
    let n = x.len();
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

/// `Σ aᵢ bᵢ` on the calling thread (as [`Vectors::dot`] sums), for tests.
#[cfg(test)]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    Vectors::serial().dot(a, b)
}

/// True if every element is finite.
pub fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wavy(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 31 + seed * 17) % 13) as f64 / 7.0 - 0.9)
            .collect()
    }

    #[test]
    fn fused_updates_equal_separate_passes_bit_for_bit() {
        let vectors = Vectors::new(Pool::shared(2).expect("threads start"));
        for n in [0, 1, 7, 8, 9, 23, 64, BLOCK + 9, 5 * BLOCK + 3] {
            let (p, q, alpha, shift) = (wavy(n, 1), wavy(n, 2), 0.37, 0.25);
            let (mut x, mut r) = (wavy(n, 3), wavy(n, 4));
            let rr = vectors.cg_update(&mut x, &mut r, alpha, &p, &q);
            let x_expected: Vec<f64> = wavy(n, 3)
                .iter()
                .zip(&p)
                .map(|(x, p)| x + alpha * p)
                .collect();
            let r_expected: Vec<f64> = wavy(n, 4)
                .iter()
                .zip(&q)
                .map(|(r, q)| r - alpha * q)
                .collect();
            assert_eq!(x, x_expected, "n = {n}");
            assert_eq!(r, r_expected, "n = {n}");
            assert_eq!(
                rr.to_bits(),
                vectors.dot(&r_expected, &r_expected).to_bits(),
                "n = {n}"
            );
            let mut shifted = q.clone();
            let pq = vectors.shift_dot(&mut shifted, shift, &p);
            let q_expected: Vec<f64> = q.iter().zip(&p).map(|(q, p)| q + shift * p).collect();
            assert_eq!(shifted, q_expected, "n = {n}");
            assert_eq!(
                pq.to_bits(),
                vectors.dot(&p, &q_expected).to_bits(),
                "n = {n}"
            );
            let mut next = p.clone();
            vectors.scale_add(&mut next, 0.5, &q);
            let next_expected: Vec<f64> = q.iter().zip(&p).map(|(q, p)| q + 0.5 * p).collect();
            assert_eq!(next, next_expected, "n = {n}");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        // Sizes around the block edges, one the two threads split unevenly, one split in three.
        for n in [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 6 * BLOCK + 1] {
            let run = |threads: usize| {
                let vectors = Vectors::new(Pool::shared(threads).expect("threads start"));
                let (p, y) = (wavy(n, 1), wavy(n, 2));
                let (mut x, mut r, mut q, mut s) = (wavy(n, 3), wavy(n, 4), wavy(n, 5), wavy(n, 6));
                let sums = [
                    vectors.dot(&p, &y),
                    vectors.shift_dot(&mut q, 0.25, &p),
                    vectors.cg_update(&mut x, &mut r, 0.37, &p, &q),
                ];
                vectors.scale_add(&mut s, 0.5, &y);
                let (sum, scaled) = (vectors.added(&p, -0.75, &y), vectors.scaled(&y, 3.0));
                assert!(vectors.all_finite(&sum));
                let mut poisoned = sum.clone();
                poisoned[n - 1] = f64::NAN;
                assert!(!vectors.all_finite(&poisoned));
                (sums.map(f64::to_bits), [x, r, q, s, sum, scaled])
            };
            let one = run(1);
            assert_eq!(run(2), one, "n = {n}");
            assert_eq!(run(3), one, "n = {n}");
            // And the blocked sums are sums: against a plain f64 loop, to rounding.
            let (p, y) = (wavy(n, 1), wavy(n, 2));
            let plain: f64 = p.iter().zip(&y).map(|(a, b)| a * b).sum();
            let blocked = f64::from_bits(one.0[0]);
            assert!((blocked - plain).abs() <= 1e-12 * n as f64, "n = {n}");
            let expected: Vec<f64> = p.iter().zip(&y).map(|(p, y)| p - 0.75 * y).collect();
            assert_eq!(one.1[4], expected, "n = {n}");
            assert_eq!(
                one.1[5],
                y.iter().map(|y| 3.0 * y).collect::<Vec<_>>(),
                "n = {n}"
            );
        }
    }
}
