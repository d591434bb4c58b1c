//! [`Collective`] on MPI (the `mpi` feature): the processes `mpiexec` started, MPI's own sums
//! (`MPI_Allreduce`, which for a fixed number of processes adds in a fixed order) and broadcasts.
//! Only the calling thread talks to MPI; the graphs' worker threads never do.

use super::collective::Collective;
use crate::{Error, Result};
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::cell::RefCell;

/// The processes of an MPI run. Dropping it finalizes MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    /// The receive buffer of the sums (rsmpi has no in-place reduction): one buffer, grown to
    /// the largest sum, so that a CG iteration allocates nothing.
    scratch: RefCell<Vec<f64>>,
    // Last, so that the communicator is released before MPI is finalized.
    _universe: Universe,
}

impl Mpi {
    /// Joins the MPI run this process belongs to (started by `mpiexec`; a process started alone
    /// is a run of one).
    ///
    /// Errors: MPI already initialized in this process, or without the thread support that
    /// worker threads beside MPI need.
    pub fn init() -> Result<Mpi> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Eval("MPI was initialized already in this process".into()))?;
        if threading < Threading::Funneled {
            return Err(Error::Eval(format!(
                "the MPI library gives thread support {threading:?}; sgn's worker threads beside \
                 MPI need at least Funneled"
            )));
        }
        Ok(Mpi {
            world: universe.world(),
            scratch: RefCell::new(Vec::new()),
            _universe: universe,
        })
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        usize::try_from(self.world.rank()).expect("MPI ranks are not negative")
    }

    fn size(&self) -> usize {
        usize::try_from(self.world.size()).expect("MPI sizes are positive")
    }

    fn sum(&self, values: &mut [f64]) -> Result<()> {
        let mut scratch = self.scratch.borrow_mut();
        scratch.resize(values.len(), 0.0);
        self.world
            .all_reduce_into(&*values, &mut scratch[..], SystemOperation::sum());
        values.copy_from_slice(&scratch);
        Ok(())
    }

    fn broadcast(&self, values: &mut [f64]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn local_size(&self) -> usize {
        let shared = self.world.split_shared(self.world.rank());
        usize::try_from(shared.size()).expect("MPI sizes are positive")
    }

    fn stop_all(&self) {
        self.world.abort(1)
    }
}
