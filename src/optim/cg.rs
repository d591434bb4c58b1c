//! Truncated, optionally preconditioned conjugate gradient on `(G + ρI) d = −g`.

use super::vector::Vectors;
use crate::Result;

/// Options of [`solve`]. Defaults: at most 10 iterations, relative residual tolerance 1e-10
/// (in practice the iteration cap ends the solve), no bound on the largest residual entry.
///
/// There is no "keep the best iterate" option: every CG step lowers the quadratic model by
/// `½·α·rᵀy > 0`, so the last iterate is always the best by the model.
///
/// A 3×3 SPD system: CG solves it exactly in 3 iterations (up to rounding), and stops at
/// whichever rule holds first.
///
/// ```
/// use sgn::optim::cg::{CgOptions, CgStop, FlatOperator, solve};
/// use sgn::optim::vector::Vectors;
///
/// let a = [[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]];
/// let times_a = |v: &[f64]| -> Vec<f64> {
///     a.iter().map(|row| row.iter().zip(v).map(|(a, v)| a * v).sum()).collect()
/// };
/// let b = [1.0, 2.0, 3.0];
/// let vectors = Vectors::serial();
/// let mut operator = FlatOperator::new(
///     |v: &[f64], out: &mut Vec<f64>| {
///         *out = times_a(v);
///         Ok(())
///     },
///     Vectors::serial(),
/// );
///
/// // Up to 10 iterations, until ‖r‖ ≤ 1e-10·‖b‖ (the defaults).
/// let exact = solve(&mut operator, 0.0, &b, None, None, &CgOptions::default(), &vectors)?;
/// assert_eq!(exact.stop, CgStop::Converged);
/// assert!(exact.iterations <= 4, "{} iterations", exact.iterations);
/// let residual: Vec<f64> = times_a(&exact.x).iter().zip(&b).map(|(ax, b)| ax - b).collect();
/// assert!(residual.iter().all(|r| r.abs() < 1e-9), "{residual:?}");
///
/// // Truncated: one iteration, a step along the residual that lowers the quadratic model.
/// let one = CgOptions { max_iters: 1, ..CgOptions::default() };
/// let rough = solve(&mut operator, 0.0, &b, None, None, &one, &vectors)?;
/// assert_eq!((rough.stop, rough.iterations), (CgStop::MaxIterations, 1));
/// assert!(exact.model_value < rough.model_value && rough.model_value < 0.0);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CgOptions {
    /// Maximum number of iterations (products with `G`).
    pub max_iters: usize,
    /// Stop when ‖r‖ ≤ tolerance · ‖b‖.
    pub tolerance: f64,
    /// Also stop when every residual entry is this small: ‖r‖∞ ≤ bound (the SGN paper's rule,
    /// with 1e-6).
    pub residual_max: Option<f64>,
}

impl Default for CgOptions {
    fn default() -> CgOptions {
        CgOptions {
            max_iters: 10,
            tolerance: 1e-10,
            residual_max: None,
        }
    }
}

/// What a solve produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CgResult {
    /// The solution estimate.
    pub x: Vec<f64>,
    /// The quadratic model at `x`: `q(x) = ½ xᵀAx − bᵀx`.
    pub model_value: f64,
    /// `xᵀ A x` (the curvature along `x`, damping included).
    pub curvature: f64,
    /// Products with `A` performed.
    pub iterations: usize,
    /// Why it stopped.
    pub stop: CgStop,
}

/// Why a CG solve stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgStop {
    MaxIterations,
    Converged,
    /// A search direction with `pᵀAp ≤ 0`: `A` is not positive definite along it.
    NegativeCurvature,
}

/// The matrix CG solves with, holding CG's search direction `p` and its last product: where the
/// direction lives (a flat f64 vector, or a compiled model's own direction tensors in their
/// precision) is the operator's business, so CG's passes never convert between the two.
pub trait CgOperator {
    /// `p ← y + beta·p`; with `beta = 0`, `p ← y` whatever `p` held.
    fn set_direction(&mut self, beta: f64, y: &[f64]) -> Result<()>;
    /// `q ← A p`, returning the curvature `pᵀ(q + shift·p)` (the shift is SGN's damping ρ,
    /// added in this pass rather than in one of its own).
    fn apply(&mut self, shift: f64) -> Result<f64>;
    /// `x ← x + alpha·p` and `r ← r − alpha·(q + shift·p)` with the last `apply`'s product and
    /// shift, returning the new `rᵀr`.
    fn update(&mut self, x: &mut [f64], r: &mut [f64], alpha: f64) -> f64;
}

/// A [`CgOperator`] on flat f64 vectors: `apply(v, out)` writes `A v` into `out` (resizing it;
/// the same buffer comes back every iteration, so a large solve allocates nothing per
/// iteration).
pub struct FlatOperator<F> {
    apply: F,
    vectors: Vectors,
    p: Vec<f64>,
    q: Vec<f64>,
    shift: f64,
}

impl<F: FnMut(&[f64], &mut Vec<f64>) -> Result<()>> FlatOperator<F> {
    /// The products of `apply`, CG's passes on `vectors`' threads.
    pub fn new(apply: F, vectors: Vectors) -> FlatOperator<F> {
        FlatOperator {
            apply,
            vectors,
            p: Vec::new(),
            q: Vec::new(),
            shift: 0.0,
        }
    }
}

impl<F: FnMut(&[f64], &mut Vec<f64>) -> Result<()>> CgOperator for FlatOperator<F> {
    fn set_direction(&mut self, beta: f64, y: &[f64]) -> Result<()> {
        self.p.resize(y.len(), 0.0);
        self.vectors.set_direction(&mut [&mut self.p[..]], beta, y);
        Ok(())
    }

    fn apply(&mut self, shift: f64) -> Result<f64> {
        (self.apply)(&self.p, &mut self.q)?;
        self.shift = shift;
        Ok(self
            .vectors
            .shifted_dot(&[&self.p[..]], &[&self.q[..]], shift))
    }

    fn update(&mut self, x: &mut [f64], r: &mut [f64], alpha: f64) -> f64 {
        let (p, q) = (&[&self.p[..]], &[&self.q[..]]);
        self.vectors.cg_update(x, r, alpha, self.shift, p, q)
    }
}

/// Solves `(A + shift·I) x = b` approximately with `operator`'s products, starting from `x0`
/// (`None`: from 0);
/// `precondition` (if any) holds the diagonal of the preconditioner `M` (CG then works on
/// `M⁻¹`-scaled residuals). The vector passes run on `vectors`' threads.
///
/// # Example
/// ```
/// use sgn::optim::cg::{CgOptions, FlatOperator, solve};
/// use sgn::optim::vector::Vectors;
///
/// // (A + 1·I) x = b with A = diag(1, 3): x = (1/2, 2/4).
/// let mut product = FlatOperator::new(
///     |v: &[f64], out: &mut Vec<f64>| {
///         *out = vec![v[0], 3.0 * v[1]];
///         Ok(())
///     },
///     Vectors::serial(),
/// );
/// let options = CgOptions::default();
/// let solved = solve(&mut product, 1.0, &[1.0, 2.0], None, None, &options, &Vectors::serial())?;
/// assert!((solved.x[0] - 0.5).abs() < 1e-12 && (solved.x[1] - 0.5).abs() < 1e-12);
/// # Ok::<(), sgn::Error>(())
/// ```
pub fn solve(
    operator: &mut dyn CgOperator,
    shift: f64,
    b: &[f64],
    x0: Option<Vec<f64>>,
    precondition: Option<&[f64]>,
    options: &CgOptions,
    vectors: &Vectors,
) -> Result<CgResult> {
    let dot = |a: &[f64], b: &[f64]| vectors.dot(a, b);
    let mut iterations = 0;
    // x = 0, r = b; a warm start x0 ≠ 0 is then one update along p = x0 with α = 1 (one
    // product): x = x0 and r = b − A x0.
    let mut x = vec![0.0; b.len()];
    let mut r = vectors.scaled(b, 1.0);
    let bb = dot(b, b);
    let (mut rr, mut model) = (bb, 0.0);
    if let Some(x0) = x0.filter(|x0| x0.iter().any(|&v| v != 0.0)) {
        operator.set_direction(0.0, &x0)?;
        operator.apply(shift)?;
        iterations += 1;
        rr = operator.update(&mut x, &mut r, 1.0);
        // With A x = b − r, the model is q(x) = ½xᵀAx − bᵀx = −½(bᵀx + rᵀx).
        model = -0.5 * (dot(b, &x) + dot(&r, &x));
    }
    // Each step lowers the model by ½·α·rᵀy, so it is tracked without further products.
    let b_norm = bb.sqrt();
    // y = M⁻¹ r, kept in one buffer (None without a preconditioner: y = r).
    let precondition_into = |r: &[f64], y: &mut [f64], m: &[f64]| {
        y.iter_mut()
            .zip(r)
            .zip(m)
            .for_each(|((y, r), m)| *y = r / m);
    };
    let mut y = precondition.map(|m| {
        let mut y = vec![0.0; r.len()];
        precondition_into(&r, &mut y, m);
        y
    });
    if iterations < options.max_iters {
        operator.set_direction(0.0, y.as_deref().unwrap_or(&r))?;
    }
    let mut ry = y.as_deref().map_or(rr, |y| dot(&r, y));
    let converged = |rr: f64, r: &[f64]| {
        rr.sqrt() <= options.tolerance * b_norm
            || options
                .residual_max
                .is_some_and(|bound| r.iter().all(|r| r.abs() <= bound))
    };
    let mut stop = CgStop::MaxIterations;
    while iterations < options.max_iters {
        if converged(rr, &r) {
            stop = CgStop::Converged;
            break;
        }
        let curvature = operator.apply(shift)?;
        iterations += 1;
        if curvature <= 0.0 || !curvature.is_finite() {
            stop = CgStop::NegativeCurvature;
            break;
        }
        let alpha = ry / curvature;
        rr = operator.update(&mut x, &mut r, alpha);
        model -= 0.5 * alpha * ry;
        if let (Some(y), Some(m)) = (y.as_deref_mut(), precondition) {
            precondition_into(&r, y, m);
        }
        let ry_next = y.as_deref().map_or(rr, |y| dot(&r, y));
        let beta = ry_next / ry;
        ry = ry_next;
        if iterations < options.max_iters {
            operator.set_direction(beta, y.as_deref().unwrap_or(&r))?;
        }
    }
    if stop == CgStop::MaxIterations && converged(rr, &r) {
        stop = CgStop::Converged;
    }
    // xᵀAx = xᵀ(b − r).
    let curvature = dot(&x, b) - dot(&x, &r);
    Ok(CgResult {
        x,
        model_value: model,
        curvature,
        iterations,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::vector::dot;

    /// A small SPD matrix: Lehmer matrix L[i][j] = min(i,j)/max(i,j) (1-based), plus a shift.
    fn lehmer(n: usize, shift: f64) -> Vec<Vec<f64>> {
        (1..=n)
            .map(|i| {
                (1..=n)
                    .map(|j| i.min(j) as f64 / i.max(j) as f64 + if i == j { shift } else { 0.0 })
                    .collect()
            })
            .collect()
    }

    fn matvec(a: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
        a.iter().map(|row| dot(row, v)).collect()
    }

    /// The products of the dense matrix `a`, on the calling thread.
    fn dense(a: &[Vec<f64>]) -> FlatOperator<impl FnMut(&[f64], &mut Vec<f64>) -> Result<()> + '_> {
        let apply = |v: &[f64], out: &mut Vec<f64>| {
            *out = matvec(a, v);
            Ok(())
        };
        FlatOperator::new(apply, Vectors::serial())
    }

    #[test]
    fn solves_spd_systems_to_tolerance() {
        for n in [1, 5, 20] {
            let a = lehmer(n, 0.1);
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin() + 0.5).collect();
            let options = CgOptions {
                max_iters: 10 * n,
                tolerance: 1e-12,
                residual_max: None,
            };
            let out = solve(
                &mut dense(&a),
                0.0,
                &b,
                None,
                None,
                &options,
                &Vectors::serial(),
            )
            .unwrap();
            let residual: Vec<f64> = matvec(&a, &out.x)
                .iter()
                .zip(&b)
                .map(|(ax, b)| ax - b)
                .collect();
            let rel = dot(&residual, &residual).sqrt() / dot(&b, &b).sqrt();
            assert!(rel <= 1e-11, "n = {n}: relative residual {rel:e}");
            assert_eq!(out.stop, CgStop::Converged);
            let expected_model = 0.5 * dot(&out.x, &matvec(&a, &out.x)) - dot(&b, &out.x);
            assert!((out.model_value - expected_model).abs() <= 1e-9 * expected_model.abs());
        }
    }

    #[test]
    fn a_diagonal_preconditioner_converges_in_one_step_on_a_diagonal_system() {
        let diag = [1.0, 10.0, 100.0, 1000.0];
        let a: Vec<Vec<f64>> = (0..4)
            .map(|i| (0..4).map(|j| if i == j { diag[i] } else { 0.0 }).collect())
            .collect();
        let b = [1.0, 2.0, 3.0, 4.0];
        let options = CgOptions {
            max_iters: 1,
            ..CgOptions::default()
        };
        let out = solve(
            &mut dense(&a),
            0.0,
            &b,
            None,
            Some(&diag),
            &options,
            &Vectors::serial(),
        )
        .unwrap();
        for i in 0..4 {
            assert!((out.x[i] - b[i] / diag[i]).abs() <= 1e-12);
        }
    }

    #[test]
    fn warm_start_from_the_solution_needs_no_iteration_beyond_the_residual() {
        let a = lehmer(6, 0.5);
        let b: Vec<f64> = (0..6).map(|i| i as f64 - 2.0).collect();
        let exact = solve(
            &mut dense(&a),
            0.0,
            &b,
            None,
            None,
            &CgOptions {
                max_iters: 60,
                tolerance: 1e-14,
                residual_max: None,
            },
            &Vectors::serial(),
        )
        .unwrap();
        let warm = solve(
            &mut dense(&a),
            0.0,
            &b,
            Some(exact.x.clone()),
            None,
            &CgOptions::default(),
            &Vectors::serial(),
        )
        .unwrap();
        assert_eq!(warm.iterations, 1, "only the residual product");
        assert_eq!(warm.stop, CgStop::Converged);
    }

    #[test]
    fn negative_curvature_stops_the_solve() {
        let a = vec![vec![1.0, 0.0], vec![0.0, -1.0]];
        let out = solve(
            &mut dense(&a),
            0.0,
            &[0.0, 1.0],
            None,
            None,
            &CgOptions::default(),
            &Vectors::serial(),
        )
        .unwrap();
        assert_eq!(out.stop, CgStop::NegativeCurvature);
        assert_eq!(out.x, vec![0.0, 0.0]);
    }

    #[test]
    fn stops_once_every_residual_entry_is_below_the_bound() {
        // The paper's rule: ‖r‖∞ ≤ 1e-6. The relative 2-norm rule alone runs to the cap.
        let a = lehmer(12, 0.3);
        let b: Vec<f64> = (0..12).map(|i| (i as f64).cos()).collect();
        let run = |residual_max| {
            let options = CgOptions {
                max_iters: 40,
                tolerance: 0.0,
                residual_max,
            };
            solve(
                &mut dense(&a),
                0.0,
                &b,
                None,
                None,
                &options,
                &Vectors::serial(),
            )
            .unwrap()
        };
        let bounded = run(Some(1e-6));
        assert_eq!(bounded.stop, CgStop::Converged);
        assert!(bounded.iterations < 40, "{} iterations", bounded.iterations);
        let ax = matvec(&a, &bounded.x);
        let worst = ax
            .iter()
            .zip(&b)
            .map(|(ax, b)| (b - ax).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6 * 1.0001, "‖r‖∞ = {worst:e}");
        // One iteration fewer leaves an entry above the bound.
        let before = CgOptions {
            max_iters: bounded.iterations - 1,
            tolerance: 0.0,
            residual_max: Some(1e-6),
        };
        let early = solve(
            &mut dense(&a),
            0.0,
            &b,
            None,
            None,
            &before,
            &Vectors::serial(),
        )
        .unwrap();
        assert_eq!(early.stop, CgStop::MaxIterations);
        assert!(run(None).iterations > bounded.iterations);
    }

    #[test]
    fn truncated_iterates_decrease_the_model() {
        let a = lehmer(30, 0.01);
        let b: Vec<f64> = (0..30).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let mut last = 0.0;
        for k in 1..8 {
            let options = CgOptions {
                max_iters: k,
                ..CgOptions::default()
            };
            let out = solve(
                &mut dense(&a),
                0.0,
                &b,
                None,
                None,
                &options,
                &Vectors::serial(),
            )
            .unwrap();
            assert!(
                out.model_value < last,
                "k = {k}: {} !< {last}",
                out.model_value
            );
            last = out.model_value;
        }
    }
}
