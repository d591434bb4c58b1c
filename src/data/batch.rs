//! Shuffled mini-batches: each epoch visits the examples in its own permutation, drawn from a
//! ChaCha8 stream keyed by (seed, epoch), so any batch of any epoch can be recomputed — which is
//! what resuming from a checkpoint needs.

use super::{Split, data_error, seeded_rng, shuffled_indices};
use crate::Result;
use ndarray::{Array2, Axis};

/// Separates the batch order's stream from the other seeded streams of the data module.
const BATCH_STREAM: &[u8; 8] = b"batches\0";

/// How to cut a split into mini-batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Examples per batch.
    pub batch_size: usize,
    /// The seed of the epoch permutations.
    pub seed: u64,
    /// Whether an epoch ends with the smaller batch of the examples left over (`true`) or drops
    /// them (`false`, the default for training: they are in other epochs' full batches, and every
    /// step then sees the same batch size).
    pub keep_partial: bool,
}

impl BatchOptions {
    /// Batches of `batch_size` examples shuffled by `seed`, dropping the partial last batch.
    pub fn new(batch_size: usize, seed: u64) -> BatchOptions {
        BatchOptions {
            batch_size,
            seed,
            keep_partial: false,
        }
    }

    /// The number of batches in an epoch of `examples` examples.
    pub fn batches_per_epoch(&self, examples: usize) -> usize {
        if self.batch_size == 0 {
            return 0;
        }
        if self.keep_partial {
            examples.div_ceil(self.batch_size)
        } else {
            examples / self.batch_size
        }
    }
}

/// The order in which epoch `epoch` visits `examples` examples under `seed`: a uniformly random
/// permutation of `0..examples`, the same for the same arguments.
pub fn epoch_permutation(examples: usize, seed: u64, epoch: u64) -> Vec<usize> {
    shuffled_indices(examples, &mut seeded_rng(seed, epoch, BATCH_STREAM))
}

/// The mini-batches of one epoch of a split, as owned `(features, targets)` pairs, in the
/// epoch's permutation (see [`epoch_permutation`]).
///
/// ```
/// use sgn::data::{BatchOptions, Batches, Split};
/// use ndarray::Array2;
///
/// # fn main() -> sgn::Result<()> {
/// let split = Split {
///     features: Array2::from_shape_fn((10, 2), |(i, j)| (2 * i + j) as f32),
///     targets: Array2::from_shape_fn((10, 1), |(i, _)| i as f32),
/// };
/// let options = BatchOptions::new(4, 7);
/// let epoch: Vec<_> = Batches::new(&split, options, 0)?.collect();
/// assert_eq!(epoch.len(), 2); // the 2 examples left over are dropped
///
/// // Resuming at batch 1 of epoch 0 gives the rest of that epoch.
/// let rest: Vec<_> = Batches::resume(&split, options, 0, 1)?.collect();
/// assert_eq!(rest, epoch[1..]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    split: &'a Split,
    options: BatchOptions,
    epoch: u64,
    order: Vec<usize>,
    position: usize,
    count: usize,
}

impl<'a> Batches<'a> {
    /// The batches of epoch `epoch` of `split`, from the first.
    ///
    /// Errors: a batch size of 0, or (dropping the partial batch) one larger than the split, which
    /// would leave the epoch without a batch.
    pub fn new(split: &'a Split, options: BatchOptions, epoch: u64) -> Result<Batches<'a>> {
        Batches::resume(split, options, epoch, 0)
    }

    /// The batches of epoch `epoch` of `split` from batch `position` on (0-based): what is left
    /// of the epoch after `position` batches, exactly as an uninterrupted epoch continues.
    /// `position` may equal the number of batches per epoch (nothing is left).
    pub fn resume(
        split: &'a Split,
        options: BatchOptions,
        epoch: u64,
        position: usize,
    ) -> Result<Batches<'a>> {
        let examples = split.len();
        if split.targets.nrows() != examples {
            return Err(data_error(format!(
                "cannot batch a split of {examples} feature rows and {} target rows",
                split.targets.nrows()
            )));
        }
        if examples == 0 {
            return Err(data_error(
                "cannot batch a split without examples".to_string(),
            ));
        }
        if options.batch_size == 0 {
            return Err(data_error("the batch size must be at least 1".to_string()));
        }
        let count = options.batches_per_epoch(examples);
        if count == 0 {
            return Err(data_error(format!(
                "a batch size of {} leaves no full batch in {examples} examples; use at most \
                 {examples} or keep the partial batch",
                options.batch_size
            )));
        }
        if position > count {
            return Err(data_error(format!(
                "cannot resume at batch {position} of an epoch of {count} batches"
            )));
        }
        Ok(Batches {
            split,
            options,
            epoch,
            order: epoch_permutation(examples, options.seed, epoch),
            position,
            count,
        })
    }

    /// The epoch these batches belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The index of the next batch within the epoch: how many have been taken, counting those
    /// skipped by [`Batches::resume`]. Resuming at this position continues from here.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The number of batches in the whole epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.count
    }

    /// The example indices of the next batch, in order, moving past it: for callers that gather
    /// the rows themselves (the trainer does, on the graphs' threads).
    pub fn next_rows(&mut self) -> Option<&[usize]> {
        if self.position == self.count {
            return None;
        }
        let start = self.position * self.options.batch_size;
        let end = (start + self.options.batch_size).min(self.order.len());
        self.position += 1;
        Some(&self.order[start..end])
    }
}

impl Iterator for Batches<'_> {
    type Item = (Array2<f32>, Array2<f32>);

    fn next(&mut self) -> Option<Self::Item> {
        let split = self.split;
        let rows = self.next_rows()?;
        Some((
            split.features.select(Axis(0), rows),
            split.targets.select(Axis(0), rows),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.position;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
