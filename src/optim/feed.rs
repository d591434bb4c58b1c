//! How a dataset's examples become a model's batches: the feature rows gathered on the model's
//! threads and shaped as its input, and the evaluation of a split in chunks of them.

use crate::codegen::{Pool, split_mut};
use crate::compile::CompiledModel;
use crate::data::{Dataset, Split, input_and_target};
use crate::ir::store::TensorMap;
use crate::ir::{Arg, DType, Tensor};
use crate::{Error, Result};
use ndarray::{Array2, Axis};

/// How a dataset's examples become a model's batches: the model's one input (the features) and
/// one target, their element type, and the shape one example's features take as the input.
pub(super) struct Feed {
    input_name: String,
    target_name: String,
    dtype: DType,
    example_shape: Vec<usize>,
}

impl Feed {
    /// Checks that `model` can take `dataset`: one input and one target; the input as
    /// [`input_example_shape`] allows; targets `[B, T]`.
    pub(super) fn new(model: &CompiledModel, dataset: &Dataset) -> Result<Feed> {
        let (input, target) = input_and_target(&model.graphs.forward)?;
        let example_shape = input_example_shape(input, dataset)?;
        check_width(target, dataset.train.targets.ncols(), "targets")?;
        let (input_name, target_name, dtype) =
            (input.name.clone(), target.name.clone(), input.ty.dtype);
        Ok(Feed {
            input_name,
            target_name,
            dtype,
            example_shape,
        })
    }

    /// The batch of these feature and target rows, the features shaped as the model's input
    /// (a view of the same row-major numbers, not a copy) and both cast to its element type.
    pub(super) fn batch(&self, features: Array2<f32>, targets: Array2<f32>) -> TensorMap {
        let mut shape = vec![features.nrows()];
        shape.extend(&self.example_shape);
        // A dataset built in column-major order (a library caller's) is copied to row-major.
        let features = match features.is_standard_layout() {
            true => features,
            false => features.as_standard_layout().into_owned(),
        };
        let features = features
            .into_shape_with_order(shape)
            .expect("the example shape holds each row's features (checked by Feed::new)");
        let mut batch = TensorMap::new();
        batch.insert(
            self.input_name.clone(),
            Tensor::F32(features).cast(self.dtype),
        );
        batch.insert(
            self.target_name.clone(),
            Tensor::F32(targets.into_dyn()).cast(self.dtype),
        );
        batch
    }
}

/// Mean loss of `model` at `params` over `split` (a split of `dataset`), run in chunks of
/// `chunk` examples (the losses are means over their chunk, so chunks are weighted by size),
/// and for a classification dataset the fraction of examples whose largest output is the label.
///
/// Errors: a model that cannot take the dataset (see [`Trainer::new`](super::Trainer::new)), a
/// dataset whose parts disagree ([`Dataset::check`]) or a split of other widths, a `chunk` of 0,
/// and the model's own errors.
pub fn evaluate(
    model: &CompiledModel,
    params: &TensorMap,
    dataset: &Dataset,
    split: &Split,
    chunk: usize,
) -> Result<(f64, Option<f64>)> {
    if chunk == 0 {
        return Err(Error::Eval(
            "evaluation needs chunks of at least one example".to_string(),
        ));
    }
    if split.is_empty() {
        return Err(Error::Eval(format!(
            "{}: the split to evaluate has no examples",
            dataset.name
        )));
    }
    dataset.check()?;
    if split.features.nrows() != split.targets.nrows()
        || split.features.ncols() != dataset.train.features.ncols()
        || split.targets.ncols() != dataset.train.targets.ncols()
    {
        return Err(Error::Data(format!(
            "the split to evaluate ({:?} features, {:?} targets) does not fit {} ({} features \
             and {} targets an example)",
            split.features.dim(),
            split.targets.dim(),
            dataset.name,
            dataset.train.features.ncols(),
            dataset.train.targets.ncols()
        )));
    }
    let feed = Feed::new(model, dataset)?;
    // Accuracy needs one output per class: an output of another shape (a custom loss's) has
    // only the loss.
    let forward = &model.graphs.forward;
    let scores = |classes: usize| {
        let output = &forward.ty(forward.outputs()[0].node).shape;
        output.rank() == 2 && output.dims()[1].as_fixed() == Some(classes as u64)
    };
    let labels = dataset
        .num_classes
        .filter(|&classes| scores(classes))
        .map(|_| split.class_labels());
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let n = split.len();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows = ndarray::s![start..end, ..];
        let batch = feed.batch(
            split.features.slice(rows).to_owned(),
            split.targets.slice(rows).to_owned(),
        );
        let (z, loss) = model.forward(params, &batch)?;
        loss_sum += loss * (end - start) as f64;
        if let Some(labels) = &labels {
            let z = z.to_f64();
            let classes = z.shape()[1];
            let flat = z.as_slice().expect("outputs are contiguous");
            for (row, label) in flat.chunks(classes).zip(&labels[start..end]) {
                let predicted = row
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 { (i, v) } else { best }
                    })
                    .0;
                correct += usize::from(predicted == *label);
            }
        }
        start = end;
    }
    let accuracy = labels.map(|_| correct as f64 / n as f64);
    Ok((loss_sum / n as f64, accuracy))
}

/// The shape one example's features take as the model's `input`: declared `[B, F]` for the
/// dataset's F features per example; for an image dataset also its image `[B, C, H, W]`; for
/// other data any shape of F elements (its features have no layout to contradict). Anything
/// else is an error naming the input, its declared type and the dataset's features.
fn input_example_shape(input: &Arg, dataset: &Dataset) -> Result<Vec<usize>> {
    let (name, ty) = (&input.name, &input.ty);
    let declared: Option<Vec<usize>> = ty.shape.dims()[1.min(ty.shape.rank())..]
        .iter()
        .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect();
    let width = dataset.train.features.ncols();
    let fits = |shape: &[usize]| match dataset.image {
        _ if shape == [width] => true,
        Some(image) => shape == image.shape(),
        None => shape.iter().product::<usize>() == width,
    };
    if let Some(shape) = declared.filter(|shape| ty.shape.rank() >= 2 && fits(shape)) {
        return Ok(shape);
    }
    let dtype = ty.dtype;
    let (what, layouts) = match dataset.image.map(|image| image.shape()) {
        Some([c, h, w]) => (
            format!(" ({}: {c}×{h}×{w} images)", dataset.name),
            format!("{dtype}[B, {width}] or {dtype}[B, {c}, {h}, {w}]"),
        ),
        None => (String::new(), format!("{dtype}[B, {width}]")),
    };
    Err(Error::Eval(format!(
        "the dataset's features have {width} columns{what} but the model declares '{name}' as \
         {ty}; declare it as {layouts}"
    )))
}

fn check_width(arg: &Arg, width: usize, what: &str) -> Result<()> {
    let ty = &arg.ty;
    let last = ty.shape.dims().last().and_then(|d| d.as_fixed());
    if ty.shape.rank() != 2 || last != Some(width as u64) {
        return Err(Error::Eval(format!(
            "the dataset's {what} have {width} columns but the model declares '{}' as {ty}",
            arg.name
        )));
    }
    Ok(())
}

/// Elements per block of a batch's gather: a part of it is worth another thread from two blocks on.
const GATHER_BLOCK: usize = 16384;

/// Rows a gather asks the memory for ahead of the one it copies: each row starts at an address
/// the hardware prefetchers cannot guess.
const GATHER_AHEAD: usize = 2;

/// Asks for `values`' cache lines, without waiting for them (nothing elsewhere than x86-64).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn prefetch(values: &[f32]) {
    // Every 16th element and the last: an address in each 64-byte line, also when the row does
    // not start on a line's edge.
    #[cfg(target_arch = "x86_64")]
    for address in
        (values.chunks(16).map(<[f32]>::as_ptr)).chain(values.last().map(std::ptr::from_ref))
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch of a valid address; SSE is part of x86-64's baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) };
    }
}

/// `source`'s rows `rows` in order, copied on `pool`'s threads: a mini-batch's rows lie far apart
/// in memory, so its gather waits on memory more than it computes, and two threads halve it.
pub(super) fn gather_rows(pool: &Pool, source: &Array2<f32>, rows: &[usize]) -> Array2<f32> {
    let width = source.ncols();
    let Some(source) = source.as_slice().filter(|_| width > 0) else {
        return source.select(Axis(0), rows);
    };
    // Not zeroed first: that pass would run on this thread alone.
    let mut out = Array2::uninit((rows.len(), width));
    let parts = pool.split(rows.len(), (GATHER_BLOCK / width).max(1));
    let elements: Vec<_> = parts
        .iter()
        .map(|p| p.start * width..p.end * width)
        .collect();
    let out_parts = split_mut(out.as_slice_mut().expect("a new array"), &elements);
    let work = out_parts
        .into_iter()
        .zip(parts.iter().map(|p| &rows[p.clone()]));
    let source_row = |row: usize| &source[row * width..(row + 1) * width];
    pool.map_parts(work.collect(), |(out, rows)| {
        for (k, out_row) in out.chunks_exact_mut(width).enumerate() {
            if let Some(&ahead) = rows.get(k + GATHER_AHEAD) {
                prefetch(source_row(ahead));
            }
            for (o, &s) in out_row.iter_mut().zip(source_row(rows[k])) {
                o.write(s);
            }
        }
    });
    // SAFETY: the parts cover all rows (`Pool::split` cuts `0..rows.len()` into consecutive
    // ranges) and each row of a part was written whole above.
    unsafe { out.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ShapeBuilder;

    #[test]
    fn gathered_rows_are_the_selected_rows_on_any_thread_count() {
        let source = Array2::from_shape_fn((300, 784), |(i, j)| (i * 1000 + j) as f32);
        // Out of order, repeated, first and last: enough rows for two parts of 20-row blocks.
        let rows: Vec<usize> = (0..250)
            .map(|i| (i * 37 + 11) % 300)
            .chain([0, 299, 5, 5])
            .collect();
        for threads in [1, 2, 3] {
            let pool = Pool::shared(threads).expect("threads start");
            assert_eq!(
                gather_rows(&pool, &source, &rows),
                source.select(Axis(0), &rows),
                "{threads} threads"
            );
        }
        let pool = Pool::shared(2).expect("threads start");
        // Other layouts and shapes fall back to ndarray's select.
        let mut column_major = Array2::zeros(source.dim().f());
        column_major.assign(&source);
        assert!(!column_major.is_standard_layout());
        assert_eq!(
            gather_rows(&pool, &column_major, &rows),
            source.select(Axis(0), &rows)
        );
        let empty = Array2::<f32>::zeros((4, 0));
        assert_eq!(gather_rows(&pool, &empty, &[3, 1]).dim(), (2, 0));
        assert_eq!(gather_rows(&pool, &source, &[]).dim(), (0, 784));
    }
}
