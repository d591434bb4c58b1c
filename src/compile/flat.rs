//! A compiled model's parameters as one flat vector: where each lives in it ([`ParamLayout`]),
//! and Gauss-Newton products on such vectors or in gv-apply's own direction tensors
//! ([`GvOperator`]), with the conversions between the two on the model's threads.

use super::CompiledModel;
use crate::autodiff::{GraphName, Signature};
use crate::codegen::{PackCache, Pool, run_keeping, split_mut};
use crate::ir::store::{TensorMap, checked_named};
use crate::ir::{Bindings, DType, Tensor};
use crate::{Error, Result};
use std::borrow::Cow;
use std::cell::RefCell;

/// Where each parameter lives in the flat vector: the model's declaration order, row-major.
///
/// ```
/// use sgn::ir::store::init_params;
/// use sgn::{CompileOptions, Model};
///
/// let model = Model::parse(
///     "model dense\ninput x: f32[B, 2]\ntarget y: f32[B, 3]\n\
///      param w: f32[2, 3] = ones\nparam b: f32[3] = zeros\n\
///      output z = x @ w + b\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// let layout = compiled.layout();
/// assert_eq!(layout.names().collect::<Vec<_>>(), ["w", "b"]);
/// assert_eq!(layout.len(), 2 * 3 + 3);
///
/// let mut flat = layout.flatten(&init_params(&model.params, 0)?)?;
/// assert_eq!(flat, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
/// flat[7] = 0.1; // b[1]
/// let params = layout.unflatten(&flat);
/// assert_eq!(params.get("b").expect("b").to_f64_vec(), [0.0, f64::from(0.1f32), 0.0]);
/// flat[8] = f64::NAN;
/// assert_eq!(layout.first_non_finite(&flat), Some("b"));
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    entries: Vec<LayoutEntry>,
    len: usize,
}

#[derive(Clone, Debug, PartialEq)]
struct LayoutEntry {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    offset: usize,
}

impl ParamLayout {
    /// The layout of the parameters of `signature`, in its order.
    ///
    /// # Errors
    /// A parameter whose shape is not fixed (the DSL only declares fixed ones).
    pub fn new(signature: &Signature) -> Result<ParamLayout> {
        let mut entries = Vec::with_capacity(signature.params.len());
        let mut offset = 0;
        for p in &signature.params {
            let shape = p.ty.shape.eval(&Bindings::new()).map_err(|e| {
                Error::Tensor(format!(
                    "parameter '{}' of type {}: {e} (parameters have fixed shapes)",
                    p.name, p.ty
                ))
            })?;
            let too_many = || {
                Error::Memory(format!(
                    "the parameters up to '{}' have more than 2^64 elements",
                    p.name
                ))
            };
            let len = (shape.iter())
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(too_many)?;
            entries.push(LayoutEntry {
                name: p.name.clone(),
                shape,
                dtype: p.ty.dtype,
                offset,
            });
            offset = offset.checked_add(len).ok_or_else(too_many)?;
        }
        Ok(ParamLayout {
            entries,
            len: offset,
        })
    }

    /// The parameters' names, in layout order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensors as one vector.
    pub fn flatten(&self, params: &TensorMap) -> Result<Vec<f64>> {
        self.flatten_on(
            params,
            &Pool::shared(1).expect("one thread starts no worker"),
        )
    }

    /// [`ParamLayout::flatten`], the conversions on `pool`'s threads.
    pub fn flatten_on(&self, params: &TensorMap, pool: &Pool) -> Result<Vec<f64>> {
        let mut flat = vec![0.0; self.len];
        for e in &self.entries {
            let t = self.checked(params, e)?;
            read_on(pool, t, &mut flat[e.offset..e.offset + t.len()]);
        }
        Ok(flat)
    }

    /// Overwrites the tensors of `params` (of this layout's names and shapes) with `flat`,
    /// converted on `pool`'s threads: [`ParamLayout::unflatten`] into existing tensors.
    pub fn assign(&self, flat: &[f64], params: &mut TensorMap, pool: &Pool) -> Result<()> {
        if flat.len() != self.len {
            return Err(flat_length_error(flat.len()));
        }
        for e in &self.entries {
            self.checked(params, e)?;
            let t = params.get_mut(&e.name).expect("checked above");
            let n = t.len();
            assign_on(pool, t, &flat[e.offset..e.offset + n]);
        }
        Ok(())
    }

    /// The tensor of `entry` in `params`, if there and of its shape.
    fn checked<'a>(&self, params: &'a TensorMap, entry: &LayoutEntry) -> Result<&'a Tensor> {
        let t = params
            .get(&entry.name)
            .ok_or_else(|| Error::Tensor(format!("no tensor '{}'", entry.name)))?;
        if t.shape() != entry.shape.as_slice() {
            return Err(Error::Tensor(format!(
                "tensor '{}' has shape {:?}, expected {:?}",
                entry.name,
                t.shape(),
                entry.shape
            )));
        }
        Ok(t)
    }

    /// The name of the first parameter whose part of `flat` holds a NaN or an infinity.
    pub fn first_non_finite(&self, flat: &[f64]) -> Option<&str> {
        self.entries.iter().find_map(|e| {
            let n: usize = e.shape.iter().product();
            let part = flat.get(e.offset..e.offset + n)?;
            (!part.iter().all(|x| x.is_finite())).then_some(e.name.as_str())
        })
    }

    /// Rounds every entry to its parameter's element type (f32 parameters hold f32 values), so
    /// that the parameters saved in a checkpoint are exactly the ones trained with.
    ///
    /// # Panics
    /// If `flat` is shorter than [`ParamLayout::len`] (a vector of another layout).
    pub fn round_to_dtypes(&self, flat: &mut [f64]) {
        for e in self.entries.iter().filter(|e| e.dtype == DType::F32) {
            let n: usize = e.shape.iter().product();
            for x in &mut flat[e.offset..e.offset + n] {
                *x = f64::from(*x as f32);
            }
        }
    }

    /// The vector as named tensors of the parameters' shapes and element types.
    ///
    /// # Panics
    /// If `flat`'s length is not [`ParamLayout::len`] (a vector of another layout; [`assign`]
    /// is the checked way to fill tensors from a vector of unknown origin).
    ///
    /// [`assign`]: ParamLayout::assign
    pub fn unflatten(&self, flat: &[f64]) -> TensorMap {
        assert_eq!(flat.len(), self.len, "a flat vector of this layout");
        let mut map = TensorMap::new();
        for e in &self.entries {
            let n: usize = e.shape.iter().product();
            let values = &flat[e.offset..e.offset + n];
            let shape = ndarray::IxDyn(&e.shape);
            let t = match e.dtype {
                DType::F32 => Tensor::F32(
                    ndarray::ArrayD::from_shape_vec(
                        shape,
                        values.iter().map(|&v| v as f32).collect(),
                    )
                    .expect("length matches the shape"),
                ),
                DType::F64 => Tensor::F64(
                    ndarray::ArrayD::from_shape_vec(shape, values.to_vec())
                        .expect("length matches the shape"),
                ),
            };
            map.insert(e.name.clone(), t);
        }
        map
    }
}

/// `G = Jᵀ H_L J` at fixed parameters and batch, ready to multiply many directions.
///
/// For a linear model `z = X w` under the mean squared error over N examples, `J = X` and
/// `H_L = (2/N)·I`, so `G = (2/N)·XᵀX`; its columns are the products with the unit vectors:
///
/// ```
/// use sgn::ir::store::{TensorMap, init_params};
/// use sgn::ir::{DType, Tensor};
/// use sgn::{CompileOptions, Model};
///
/// let model = Model::parse(
///     "model line\ninput x: f32[B, 2]\ntarget y: f32[B, 1]\nparam w: f32[2, 1]\n\
///      output z = x @ w\nloss mse(z, y)\n",
/// )?;
/// let compiled = model.compile(&CompileOptions::default())?;
/// let params = init_params(&model.params, 0)?;
/// let mut batch = TensorMap::new();
/// let x = vec![1.0, 2.0, 3.0, 4.0];
/// batch.insert("x", Tensor::from_f64(DType::F32, &[2, 2], x).expect("2×2 values"));
/// batch.insert("y", Tensor::from_f64(DType::F32, &[2, 1], vec![1.0, -1.0]).expect("2 values"));
///
/// let g = compiled.gv_operator(&params, &batch)?; // the v-independent work, once
/// let mut column = Vec::new();
/// g.apply_flat(&[1.0, 0.0], &mut column)?;
/// assert_eq!(column, [10.0, 14.0]); // XᵀX = [[10, 14], [14, 20]], 2/N = 1
/// g.apply_flat(&[0.0, 1.0], &mut column)?;
/// assert_eq!(column, [14.0, 20.0]);
///
/// // The same products on named tensors, one per parameter.
/// let v: TensorMap = [("w", Tensor::from_f64(DType::F32, &[2, 1], vec![1.0, 1.0]).expect("2"))]
///     .into_iter()
///     .collect();
/// assert_eq!(g.apply(&v)?.get("w").expect("G v for w").to_f64_vec(), [24.0, 34.0]);
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Debug)]
pub struct GvOperator<'a> {
    model: &'a CompiledModel,
    /// gv-apply's arguments: the residuals (kept from prepare, never copied again), the batch's
    /// tensors it reads (borrowed, read where they are), and one slot per direction (owned),
    /// refilled by each `apply`.
    args: RefCell<Vec<Cow<'a, Tensor>>>,
    /// The slot in `args` of each parameter's direction, in parameter order.
    direction_slots: Vec<usize>,
    /// gv-apply's outputs, reused by [`GvOperator::apply_in_place`] (empty before its first
    /// call).
    outputs: RefCell<Vec<Tensor>>,
    /// The packed bf16 operands of gv-apply's products that do not change with the directions:
    /// the arguments they come from are held here, unchanged, for the operator's life.
    kept: PackCache,
}

impl<'a> GvOperator<'a> {
    /// The operator of `model` whose gv-apply reads `args` (residuals, the batch's tensors, and
    /// zero directions in `direction_slots`, one per parameter in parameter order).
    pub(super) fn new(
        model: &'a CompiledModel,
        args: Vec<Cow<'a, Tensor>>,
        direction_slots: Vec<usize>,
    ) -> GvOperator<'a> {
        GvOperator {
            model,
            args: RefCell::new(args),
            direction_slots,
            outputs: RefCell::new(Vec::new()),
            kept: PackCache::new(),
        }
    }

    /// Runs gv-apply on `args` into `outputs` (allocated if empty), keeping its packed operands.
    fn run(&self, args: &[&Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        let executable = self.model.executable(GraphName::GvApply);
        Ok(run_keeping(executable, args, outputs, &self.kept)?)
    }

    /// `G v`, one tensor per parameter.
    pub fn apply(&self, v: &TensorMap) -> Result<TensorMap> {
        let graph = self.model.graphs.get(GraphName::GvApply);
        let mut args = self.args.borrow_mut();
        for (param, &slot) in self
            .model
            .signature()
            .params
            .iter()
            .zip(&self.direction_slots)
        {
            let direction = checked_named(v, &param.name, &graph.args()[slot].ty, "direction")?;
            // Into the slot's own dense tensor, which `with_directions`' passes read as one
            // slice (the caller's may be laid out otherwise); a slot a pass replaced with a
            // tensor of another type is made anew.
            match (args[slot].to_mut(), direction) {
                (Tensor::F32(slot), Tensor::F32(d)) if slot.shape() == d.shape() => slot.assign(d),
                (Tensor::F64(slot), Tensor::F64(d)) if slot.shape() == d.shape() => slot.assign(d),
                (slot, d) => *slot = d.to_standard_layout(),
            }
        }
        let args: Vec<&Tensor> = args.iter().map(|arg| &**arg).collect();
        let mut out = Vec::new();
        self.run(&args, &mut out)?;
        Ok(self.model.per_param(out.into_iter()))
    }

    /// `G v` on flat vectors in the model's [`ParamLayout`]; the result replaces the contents
    /// of `gv`.
    /// The direction and output tensors, and `gv`'s capacity, are reused, so repeated calls
    /// (CG iterations) allocate no tensors; the conversions to and from the graph's element type
    /// run on the graph's threads.
    pub fn apply_flat(&self, v: &[f64], gv: &mut Vec<f64>) -> Result<()> {
        let pool = self.model.pool();
        self.with_directions(|directions, _| {
            let mut offset = 0;
            for direction in directions.iter_mut() {
                let n = direction.len();
                let part = v
                    .get(offset..offset + n)
                    .ok_or_else(|| flat_length_error(v.len()))?;
                assign_on(pool, direction, part);
                offset += n;
            }
            if offset == v.len() {
                Ok(())
            } else {
                Err(flat_length_error(v.len()))
            }
        })?;
        self.apply_in_place()?;
        self.with_directions(|_, products| {
            gv.resize(products.iter().map(Tensor::len).sum(), 0.0);
            let mut rest = gv.as_mut_slice();
            for t in products {
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(t.len());
                rest = tail;
                read_on(pool, t, out);
            }
        });
        Ok(())
    }

    /// Runs `pass` on the directions gv-apply multiplies (one dense tensor per parameter, in
    /// parameter order, written in place: what the next [`GvOperator::apply_in_place`]
    /// multiplies) and the products of its last run (none before the first; [`GvOperator::apply`]
    /// and [`GvOperator::apply_flat`] also overwrite the directions, and only the latter leaves
    /// its products here).
    ///
    /// # Panics
    /// If `pass` calls another method of this operator (its tensors are borrowed meanwhile).
    pub fn with_directions<R>(&self, pass: impl FnOnce(&mut [&mut Tensor], &[Tensor]) -> R) -> R {
        let mut args = self.args.borrow_mut();
        let mut by_slot: Vec<Option<&mut Cow<Tensor>>> = args.iter_mut().map(Some).collect();
        let mut directions: Vec<&mut Tensor> = self
            .direction_slots
            .iter()
            .map(|&slot| {
                by_slot[slot]
                    .take()
                    .expect("one slot per parameter")
                    .to_mut()
            })
            .collect();
        pass(&mut directions, &self.outputs.borrow())
    }

    /// The products `G d` of the directions `d` as they stand (see
    /// [`GvOperator::with_directions`]): reused output tensors, so repeated calls allocate no
    /// tensors.
    pub fn apply_in_place(&self) -> Result<()> {
        let args = self.args.borrow();
        let args: Vec<&Tensor> = args.iter().map(|arg| &**arg).collect();
        self.run(&args, &mut self.outputs.borrow_mut())
    }

    /// How many blocks of gv-apply's direction-free operands this operator has packed
    /// ([`PackCache::packings`]): after its first product, none more.
    pub fn packings(&self) -> usize {
        self.kept.packings()
    }

    /// The one element type of every direction and product, if they share one.
    pub fn dtype(&self) -> Option<DType> {
        let graph = self.model.graphs.get(GraphName::GvApply);
        let args = self.args.borrow();
        let mut dtypes = (self.direction_slots.iter().map(|&slot| args[slot].dtype()))
            .chain(graph.outputs().iter().map(|out| graph.ty(out.node).dtype));
        let first = dtypes.next()?;
        dtypes.all(|d| d == first).then_some(first)
    }
}

/// Conversions are split in blocks of this many elements (see [`Pool::split`]).
const CONVERSION_BLOCK: usize = 1 << 14;

/// `tensor ← values`, converted to the tensor's element type on `pool`'s threads.
fn assign_on(pool: &Pool, tensor: &mut Tensor, values: &[f64]) {
    match tensor {
        Tensor::F32(a) if a.is_standard_layout() => {
            let a = a.as_slice_mut().expect("standard layout");
            in_parts(pool, a, values, |a, &v| *a = v as f32);
        }
        Tensor::F64(a) if a.is_standard_layout() => {
            let a = a.as_slice_mut().expect("standard layout");
            in_parts(pool, a, values, |a, &v| *a = v);
        }
        other => other.assign_f64(values),
    }
}

/// `out ← tensor`'s values as f64, converted on `pool`'s threads.
fn read_on(pool: &Pool, tensor: &Tensor, out: &mut [f64]) {
    match tensor {
        Tensor::F32(a) if a.is_standard_layout() => {
            let a = a.as_slice().expect("standard layout");
            in_parts(pool, out, a, |o, &a| *o = f64::from(a));
        }
        Tensor::F64(a) if a.is_standard_layout() => {
            let a = a.as_slice().expect("standard layout");
            in_parts(pool, out, a, |o, &a| *o = a);
        }
        other => out.copy_from_slice(&other.to_f64_vec()),
    }
}

/// `convert(d, s)` for every pair of `dst` and `src`, in equal parts on `pool`'s threads.
fn in_parts<D: Send, S: Sync>(
    pool: &Pool,
    dst: &mut [D],
    src: &[S],
    convert: impl Fn(&mut D, &S) + Sync,
) {
    assert_eq!(dst.len(), src.len(), "one value per element");
    let ranges = pool.split(dst.len(), CONVERSION_BLOCK);
    let parts = split_mut(dst, &ranges)
        .into_iter()
        .zip(ranges)
        .map(|(dst, range)| (dst, &src[range]))
        .collect();
    pool.map_parts(parts, |(dst, src)| {
        dst.iter_mut().zip(src).for_each(|(d, s)| convert(d, s))
    });
}

fn flat_length_error(len: usize) -> Error {
    Error::Tensor(format!(
        "a flat vector of {len} values does not match the parameters"
    ))
}
