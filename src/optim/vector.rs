//! The dense-vector passes the optimizers need, on flat parameter vectors, split over the
//! threads of the model's pool.
//!
//! Sums are reproducible and do not depend on the thread count: a vector is cut into blocks of
//! [`BLOCK`] elements at fixed places, each block is summed alone in eight interleaved partial
//! sums (so that the compiler vectorizes it), and the block sums are added in order; threads take
//! whole runs of blocks.

use crate::codegen::{Pool, split_mut};
use crate::ir::Element;
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
/// // p and its product q = A p in pieces of f32 (as a model's parameter tensors hold them).
/// let (p, q): ([&[f32]; 2], [&[f32]; 2]) = ([&[1.0], &[1.0, 1.0]], [&[1.0], &[2.0, 2.0]]);
/// // x ← x + ½p, r ← r − ½(q + 0·p), returning r·r
/// assert_eq!(vectors.cg_update(&mut x, &mut r, 0.5, 0.0, &p, &q), 2.25);
/// let p = [1.0, 1.0, 1.0];
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

    /// `p ← y + beta·p` (CG's next search direction; `beta = 0` sets `p ← y`, whatever `p` held),
    /// with `p` in pieces, rounded to their element type.
    pub fn set_direction<T: Real>(&self, p: &mut [&mut [T]], beta: f64, y: &[f64]) {
        let (blocks, parts) = self.blocks(p.iter().map(|p| p.len()), y.len());
        let work = grouped(carve(p, &blocks), &parts).into_iter().zip(parts);
        self.pool.map_parts(work.collect(), |(p, part)| {
            for (p, block) in p.into_iter().zip(&blocks[part]) {
                direction_block(p, beta, &y[block.flat.clone()]);
            }
        });
    }

    /// `pᵀ(q + shift·p)`: the curvature along `p` of the product `q = A p` with a diagonal shift
    /// (SGN's damping), both in pieces of the same lengths.
    pub fn shifted_dot<T: Real>(&self, p: &[&[T]], q: &[&[T]], shift: f64) -> f64 {
        let n = matching_pieces(p, q);
        let (blocks, parts) = self.blocks(p.iter().map(|p| p.len()), n);
        total(self.pool.map_parts(parts, |part| {
            blocks[part]
                .iter()
                .map(|b| {
                    let (p, q) = (&p[b.piece][b.range.clone()], &q[b.piece][b.range.clone()]);
                    shifted_dot_block(p, q, shift)
                })
                .collect()
        }))
    }

    /// CG's update in one pass over memory: `x ← x + alpha·p` and `r ← r − alpha·(q + shift·p)`,
    /// returning the new `r·r`; `p` and its product `q = A p` in pieces of the same lengths.
    pub fn cg_update<T: Real>(
        &self,
        x: &mut [f64],
        r: &mut [f64],
        alpha: f64,
        shift: f64,
        p: &[&[T]],
        q: &[&[T]],
    ) -> f64 {
        let n = matching_pieces(p, q);
        assert!(x.len() == n && r.len() == n, "CG vectors of one length");
        let (blocks, parts) = self.blocks(p.iter().map(|p| p.len()), x.len());
        let flat: Vec<Range<usize>> = parts
            .iter()
            .map(|part| flat_span(&blocks[part.clone()]))
            .collect();
        let work = split_mut(x, &flat)
            .into_iter()
            .zip(split_mut(r, &flat))
            .zip(parts.into_iter().zip(flat.iter().map(|span| span.start)));
        total(
            self.pool
                .map_parts(work.collect(), |((x, r), (part, first))| {
                    blocks[part]
                        .iter()
                        .map(|b| {
                            let local = b.flat.start - first..b.flat.end - first;
                            let (x, r) = (&mut x[local.clone()], &mut r[local]);
                            let (p, q) =
                                (&p[b.piece][b.range.clone()], &q[b.piece][b.range.clone()]);
                            cg_update_block(x, r, alpha, shift, p, q)
                        })
                        .collect()
                }),
        )
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

    /// The blocks of a vector held in pieces of `lens` elements ([`Block`]), and the threads'
    /// runs of them; checks that the pieces hold `n` elements in all.
    fn blocks(
        &self,
        lens: impl Iterator<Item = usize>,
        n: usize,
    ) -> (Vec<Block>, Vec<Range<usize>>) {
        let mut flat = 0;
        let blocks: Vec<Block> = lens
            .enumerate()
            .flat_map(|(piece, len)| {
                (0..len)
                    .step_by(BLOCK)
                    .map(move |start| (piece, start..(start + BLOCK).min(len)))
            })
            .map(|(piece, range)| {
                flat += range.len();
                Block {
                    piece,
                    flat: flat - range.len()..flat,
                    range,
                }
            })
            .collect();
        assert_eq!(flat, n, "vectors of one length");
        // As many threads as a flat vector of n elements gets, each from the first block at
        // or after its flat part's start: small vectors stay on one thread.
        let first_block_from = |at: usize| blocks.partition_point(|b| b.flat.start < at);
        let parts = (self.parts(n).iter())
            .map(|part| first_block_from(part.start)..first_block_from(part.end))
            .collect();
        (blocks, parts)
    }
}

/// An element type the pieces of a vector may hold (f32, f64). A vector in pieces keeps its
/// elements in consecutive pieces of other storage, in that storage's type: a compiled model's
/// direction tensors, one per parameter, which CG fills in place rather than converting a flat
/// copy at every iteration.
pub trait Real: Element + Into<f64> {}

impl<T: Element + Into<f64>> Real for T {}

/// At most [`BLOCK`] consecutive elements of one piece of a vector held in pieces: sums are
/// formed per block, so a block never crosses a piece's end, and the threads take runs of
/// whole blocks (so the sums do not depend on the thread count).
struct Block {
    piece: usize,
    /// The block's range in its piece.
    range: Range<usize>,
    /// The block's range in the flat vector.
    flat: Range<usize>,
}

/// The flat range of a run of consecutive blocks.
fn flat_span(run: &[Block]) -> Range<usize> {
    match (run.first(), run.last()) {
        (Some(first), Some(last)) => first.flat.start..last.flat.end,
        _ => 0..0,
    }
}

/// The length of a vector held in pieces `p` and `q` alike; panics if they are cut otherwise.
fn matching_pieces<T>(p: &[&[T]], q: &[&[T]]) -> usize {
    assert!(
        p.len() == q.len() && p.iter().zip(q).all(|(p, q)| p.len() == q.len()),
        "vectors in pieces of the same lengths"
    );
    p.iter().map(|p| p.len()).sum()
}

/// Pieces cut into their blocks, in order.
fn carve<'a, T>(pieces: &'a mut [&mut [T]], blocks: &[Block]) -> Vec<&'a mut [T]> {
    let mut rests: Vec<&mut [T]> = pieces.iter_mut().map(|p| &mut **p).collect();
    blocks
        .iter()
        .map(|b| {
            let (head, tail) = std::mem::take(&mut rests[b.piece]).split_at_mut(b.range.len());
            rests[b.piece] = tail;
            head
        })
        .collect()
}

/// `items` (one per block) grouped into the threads' runs.
fn grouped<T>(items: Vec<T>, parts: &[Range<usize>]) -> Vec<Vec<T>> {
    let mut items = items.into_iter();
    parts
        .iter()
        .map(|part| items.by_ref().take(part.len()).collect())
        .collect()
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
    paired_sum(a, b, |a, b| a * b)
}

fn shifted_dot_block<T: Real>(p: &[T], q: &[T], shift: f64) -> f64 {
    paired_sum(p, q, |p, q| {
        let p: f64 = p.into();
        p * (q.into() + shift * p)
    })
}

// The kernels sum in eight interleaved partial sums over chunks of eight (so that the compiler
// vectorizes them and proves every index in bounds), then the tail.

/// `Σ term(a[i], b[i])` for slices of one length.
fn paired_sum<A: Copy, B: Copy>(a: &[A], b: &[B], term: impl Fn(A, B) -> f64) -> f64 {
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = (a8.remainder().iter().zip(b8.remainder()))
        .map(|(&a, &b)| term(a, b))
        .sum();
    let mut partial = [0.0; 8];
    for (a, b) in a8.zip(b8) {
        for k in 0..8 {
            partial[k] += term(a[k], b[k]);
        }
    }
    partial.iter().sum::<f64>() + tail
}

fn cg_update_block<T: Real>(
    x: &mut [f64],
    r: &mut [f64],
    alpha: f64,
    shift: f64,
    p: &[T],
    q: &[T],
) -> f64 {
    let update = |x: &mut f64, r: &mut f64, p: T, q: T| {
        let p: f64 = p.into();
        *x += alpha * p;
        *r -= alpha * (q.into() + shift * p);
        *r * *r
    };
    let main = x.len() - x.len() % 8;
    let ((x, x_tail), (r, r_tail)) = (x.split_at_mut(main), r.split_at_mut(main));
    let ((p, p_tail), (q, q_tail)) = (p.split_at(main), q.split_at(main));
    let tail: f64 = (x_tail.iter_mut().zip(r_tail).zip(p_tail).zip(q_tail))
        .map(|(((x, r), &p), &q)| update(x, r, p, q))
        .sum();
    let mut partial = [0.0; 8];
    let chunks = (x.chunks_exact_mut(8).zip(r.chunks_exact_mut(8)))
        .zip(p.chunks_exact(8).zip(q.chunks_exact(8)));
    for ((x, r), (p, q)) in chunks {
        for k in 0..8 {
            partial[k] += update(&mut x[k], &mut r[k], p[k], q[k]);
        }
    }
    partial.iter().sum::<f64>() + tail
}

fn direction_block<T: Real>(p: &mut [T], beta: f64, y: &[f64]) {
    if beta == 0.0 {
        // Not `y + 0·p`: p may hold anything before the first direction, NaN included.
        for (p, &y) in p.iter_mut().zip(y) {
            *p = T::from_f64(y);
        }
    } else {
        for (p, &y) in p.iter_mut().zip(y) {
            *p = T::from_f64(y + beta * (*p).into());
        }
    }
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

    /// `v` cut at `cuts` (ascending), each piece rounded to `T`.
    fn pieces<T: Real>(v: &[f64], cuts: &[usize]) -> Vec<Vec<T>> {
        let mut edges = vec![0];
        edges.extend(cuts.iter().map(|&c| c.min(v.len())));
        edges.push(v.len());
        edges
            .windows(2)
            .map(|e| v[e[0]..e[1]].iter().map(|&x| T::from_f64(x)).collect())
            .collect()
    }

    fn views<T>(pieces: &[Vec<T>]) -> Vec<&[T]> {
        pieces.iter().map(Vec::as_slice).collect()
    }

    fn flat<T: Real>(pieces: &[Vec<T>]) -> Vec<f64> {
        pieces.iter().flatten().map(|&x| x.into()).collect()
    }

    /// The three CG passes on pieces of `T` against plain loops over the flat vectors: the
    /// element updates exactly, the sums to rounding (and bit for bit in one piece, where the
    /// blocks are [`Vectors::dot`]'s).
    fn cg_passes_match_plain_loops<T: Real>() {
        let vectors = Vectors::new(Pool::shared(2).expect("threads start"));
        for n in [0, 1, 7, 8, 9, 23, 64, BLOCK + 9, 5 * BLOCK + 3] {
            for cuts in [vec![], vec![n / 3, n / 2], vec![1, 9, BLOCK + 1]] {
                let (alpha, shift) = (0.37, 0.25);
                let (p, q) = (
                    pieces::<T>(&wavy(n, 1), &cuts),
                    pieces::<T>(&wavy(n, 2), &cuts),
                );
                let (pf, qf) = (flat(&p), flat(&q));
                let (mut x, mut r) = (wavy(n, 3), wavy(n, 4));
                let rr = vectors.cg_update(&mut x, &mut r, alpha, shift, &views(&p), &views(&q));
                let shifted: Vec<f64> = qf.iter().zip(&pf).map(|(q, p)| q + shift * p).collect();
                let x_expected: Vec<f64> = wavy(n, 3)
                    .iter()
                    .zip(&pf)
                    .map(|(x, p)| x + alpha * p)
                    .collect();
                let r_expected: Vec<f64> = wavy(n, 4)
                    .iter()
                    .zip(&shifted)
                    .map(|(r, q)| r - alpha * q)
                    .collect();
                let context = format!("n = {n}, cuts {cuts:?}");
                assert_eq!(x, x_expected, "{context}");
                assert_eq!(r, r_expected, "{context}");
                let curvature = vectors.shifted_dot(&views(&p), &views(&q), shift);
                let plain = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
                let magnitude =
                    |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| (a * b).abs()).sum::<f64>();
                for (sum, a, b) in [(rr, &r_expected, &r_expected), (curvature, &pf, &shifted)] {
                    // Both sums round: each by at most n·ε of the terms' magnitudes.
                    let bound = 2.0 * n as f64 * f64::EPSILON * magnitude(a, b);
                    assert!((sum - plain(a, b)).abs() <= bound, "{context}");
                    if cuts.is_empty() {
                        assert_eq!(sum.to_bits(), vectors.dot(a, b).to_bits(), "{context}");
                    }
                }
                let y = wavy(n, 5);
                let mut next = p.clone();
                let mut next_views: Vec<&mut [T]> =
                    next.iter_mut().map(Vec::as_mut_slice).collect();
                vectors.set_direction(&mut next_views, 0.5, &y);
                let expected: Vec<f64> = y
                    .iter()
                    .zip(&pf)
                    .map(|(y, p)| T::from_f64(y + 0.5 * p).into())
                    .collect();
                assert_eq!(flat(&next), expected, "{context}");
                // β = 0 replaces p, even where it held NaN.
                let mut fresh = pieces::<T>(&vec![f64::NAN; n], &cuts);
                let mut fresh_views: Vec<&mut [T]> =
                    fresh.iter_mut().map(Vec::as_mut_slice).collect();
                vectors.set_direction(&mut fresh_views, 0.0, &y);
                let rounded: Vec<f64> = y.iter().map(|&y| T::from_f64(y).into()).collect();
                assert_eq!(flat(&fresh), rounded, "{context}");
            }
        }
    }

    #[test]
    fn cg_passes_in_f64_pieces_match_plain_loops() {
        cg_passes_match_plain_loops::<f64>();
    }

    #[test]
    fn cg_passes_in_f32_pieces_match_plain_loops() {
        cg_passes_match_plain_loops::<f32>();
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        // Sizes around the block edges, one the two threads split unevenly, one split in three;
        // the CG passes on the vector in one piece and cut inside and across blocks.
        for n in [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 6 * BLOCK + 1] {
            for cuts in [vec![], vec![5, BLOCK + 3, 2 * BLOCK + 1]] {
                let run = |threads: usize| {
                    let vectors = Vectors::new(Pool::shared(threads).expect("threads start"));
                    let (p, y) = (wavy(n, 1), wavy(n, 2));
                    let (p_pieces, q_pieces) = (pieces::<f32>(&p, &cuts), pieces::<f32>(&y, &cuts));
                    let mut s = pieces::<f32>(&wavy(n, 6), &cuts);
                    let (mut x, mut r) = (wavy(n, 3), wavy(n, 4));
                    let sums = [
                        vectors.dot(&p, &y),
                        vectors.shifted_dot(&views(&p_pieces), &views(&q_pieces), 0.25),
                        vectors.cg_update(
                            &mut x,
                            &mut r,
                            0.37,
                            0.25,
                            &views(&p_pieces),
                            &views(&q_pieces),
                        ),
                    ];
                    let mut s_views: Vec<&mut [f32]> =
                        s.iter_mut().map(Vec::as_mut_slice).collect();
                    vectors.set_direction(&mut s_views, 0.5, &y);
                    let (sum, scaled) = (vectors.added(&p, -0.75, &y), vectors.scaled(&y, 3.0));
                    assert!(vectors.all_finite(&sum));
                    let mut poisoned = sum.clone();
                    poisoned[n - 1] = f64::NAN;
                    assert!(!vectors.all_finite(&poisoned));
                    (sums.map(f64::to_bits), [x, r, flat(&s), sum, scaled])
                };
                let one = run(1);
                assert_eq!(run(2), one, "n = {n}, cuts {cuts:?}");
                assert_eq!(run(3), one, "n = {n}, cuts {cuts:?}");
                // And the blocked sums are sums: against a plain f64 loop, to rounding.
                let (p, y) = (wavy(n, 1), wavy(n, 2));
                let plain: f64 = p.iter().zip(&y).map(|(a, b)| a * b).sum();
                let blocked = f64::from_bits(one.0[0]);
                assert!((blocked - plain).abs() <= 1e-12 * n as f64, "n = {n}");
                let expected: Vec<f64> = p.iter().zip(&y).map(|(p, y)| p - 0.75 * y).collect();
                assert_eq!(one.1[3], expected, "n = {n}");
                assert_eq!(
                    one.1[4],
                    y.iter().map(|y| 3.0 * y).collect::<Vec<_>>(),
                    "n = {n}"
                );
            }
        }
    }
}
