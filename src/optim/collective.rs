//! Data-parallel training: the processes of a run each hold a shard of every mini-batch, and
//! the few sums SGN needs cross them. The loss, the gradient and every `G v` are means over the
//! batch's examples (as every built-in loss is; a loss that is not a mean over the batch, a sum
//! say, would come out rescaled), so each process weighs its shard's by the shard's share of the
//! batch and a sum over the processes gives the whole batch's: one sum for the loss and gradient, one per CG
//! iteration, one per line-search trial. Every process then takes the same step, so the
//! parameters never diverge.
//!
//! [`Collective`] is what the driver needs of the processes; [`SingleProcess`] is the run of
//! one process (no communication at all), and with the `mpi` feature `mpi::Mpi` runs on MPI.

use super::Objective;
use crate::Result;
use std::ops::Range;

/// The processes of a data-parallel run, as the training driver sees them.
pub trait Collective {
    /// This process's index, 0 for the first.
    fn rank(&self) -> usize;
    /// How many processes run.
    fn size(&self) -> usize;
    /// Replaces `values`, on every process, by their elementwise sum over the processes. For a
    /// fixed number of processes the sum is taken in a fixed order, so runs repeat bit for bit.
    fn sum(&self, values: &mut [f64]) -> Result<()>;
    /// Replaces `values`, on every process, by the first process's.
    fn broadcast(&self, values: &mut [f64]) -> Result<()>;
    /// How many of the processes run on this machine (they share its cores).
    fn local_size(&self) -> usize {
        1
    }
    /// Stops every process of the run, this one having failed (it has said why); a run of one
    /// process has nothing to stop.
    fn stop_all(&self) {}
}

/// A run of one process: sums and broadcasts leave the values as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn sum(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// The rows of a batch of `rows` examples that process `rank` of `size` holds: contiguous, in
/// order, the sizes differing by at most one, so that the processes together hold the batch a
/// single process would, example for example.
///
/// ```
/// use sgn::optim::collective::shard;
///
/// assert_eq!([0, 1, 2].map(|rank| shard(10, rank, 3)), [0..3, 3..6, 6..10]);
/// ```
pub fn shard(rows: usize, rank: usize, size: usize) -> Range<usize> {
    let at = |rank: usize| rows * rank / size.max(1);
    at(rank)..at(rank + 1)
}

/// An objective on this process's shard of a batch, made the whole batch's by sums over the
/// processes: each shard's mean is weighed by `weight`, its share of the batch's examples.
pub struct Sharded<'c, O> {
    inner: O,
    collective: &'c dyn Collective,
    weight: f64,
}

impl<'c, O: Objective> Sharded<'c, O> {
    /// `inner` on a shard of `shard_rows` of a batch's `batch_rows` examples.
    pub fn new(
        inner: O,
        collective: &'c dyn Collective,
        shard_rows: usize,
        batch_rows: usize,
    ) -> Sharded<'c, O> {
        Sharded {
            inner,
            collective,
            weight: shard_rows as f64 / batch_rows as f64,
        }
    }

    /// `values` weighed by the shard's share, then summed over the processes.
    fn summed(&self, values: &mut [f64]) -> Result<()> {
        values.iter_mut().for_each(|v| *v *= self.weight);
        self.collective.sum(values)
    }

    /// A shard's loss and gradient summed over the processes in one sum: the loss rides at the
    /// end of the gradient.
    fn summed_loss_and_grad(&self, (loss, mut grad): (f64, Vec<f64>)) -> Result<(f64, Vec<f64>)> {
        grad.push(loss);
        self.summed(&mut grad)?;
        let loss = grad.pop().expect("the loss was pushed");
        Ok((loss, grad))
    }
}

impl<O: Objective> Objective for Sharded<'_, O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        let mut loss = [self.inner.loss(theta)?];
        self.summed(&mut loss)?;
        Ok(loss[0])
    }

    fn loss_and_grad(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let shard = self.inner.loss_and_grad(theta)?;
        self.summed_loss_and_grad(shard)
    }

    fn prepare_gv(&mut self, theta: &[f64]) -> Result<()> {
        self.inner.prepare_gv(theta)
    }

    fn loss_grad_and_prepare_gv(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let shard = self.inner.loss_grad_and_prepare_gv(theta)?;
        self.summed_loss_and_grad(shard)
    }

    fn gv(&mut self, v: &[f64], out: &mut Vec<f64>) -> Result<()> {
        self.inner.gv(v, out)?;
        self.summed(out)
    }

    fn vectors(&self) -> super::vector::Vectors {
        self.inner.vectors()
    }

    // No `cg_operator` of `inner`'s: CG must multiply by the products summed over the processes
    // (`gv` above), so it keeps the default, on flat vectors.
}
