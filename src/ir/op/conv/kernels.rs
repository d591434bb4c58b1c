//! The family's kernels, shared by the interpreter and the JIT: convolution as im2col + GEMM per
//! image and group (its transposes: col2im, and a correlation GEMM), max-pooling by argmax.
//!
//! Each kernel works on a run of whole images in row-major `[n, C, H, W]` slices, so that the
//! JIT can give each thread its own images; an image's result never depends on the others'.

use super::window::{ConvGeometry, PoolGeometry};
use super::{Conv, ShapeError};
use crate::ir::shape::{Shape, TensorType};
use crate::ir::tensor::Element;
use ndarray::{ArrayD, IxDyn};

/// A convolution or pooling op with every size but the batch fixed: what runs on a run of images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageKernel {
    /// `conv2d(x, w)`.
    Forward(ConvGeometry),
    /// `conv2d_transpose(y, w)`.
    Transpose(ConvGeometry),
    /// `conv2d_correlate(x, y)`.
    Correlate(ConvGeometry),
    /// `max_pool2d(x)`.
    Pool(PoolGeometry),
    /// `max_pool2d_argmax(x)`.
    Argmax(PoolGeometry),
    /// `max_pool2d_select(t, a)`.
    Select(PoolGeometry),
    /// `max_pool2d_scatter(c, a)`.
    Scatter(PoolGeometry),
}

/// How much of an operand or result one call touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// This many elements per image.
    PerImage(usize),
    /// This many elements, whatever the number of images: a filter (for a correlation's result,
    /// the sum over the images).
    Whole(usize),
}

impl Conv {
    /// The kernel of this op on operands of types `inputs` (which must be well typed).
    pub fn image_kernel(&self, inputs: &[&TensorType]) -> Result<ImageKernel, ShapeError> {
        Ok(match self {
            Conv::Conv2d { .. } => ImageKernel::Forward(self.conv_types(inputs)?.1),
            Conv::Conv2dTranspose { .. } => ImageKernel::Transpose(self.conv_types(inputs)?.1),
            Conv::Conv2dCorrelate { .. } => ImageKernel::Correlate(self.conv_types(inputs)?.1),
            Conv::MaxPool2d { .. } => ImageKernel::Pool(self.pool_types(inputs)?.1),
            Conv::MaxPool2dArgmax { .. } => ImageKernel::Argmax(self.pool_types(inputs)?.1),
            Conv::MaxPool2dSelect { .. } => ImageKernel::Select(self.pool_types(inputs)?.1),
            Conv::MaxPool2dScatter { .. } => ImageKernel::Scatter(self.pool_types(inputs)?.1),
        })
    }
}

impl ImageKernel {
    /// What one call reads of each operand.
    pub fn operands(&self) -> Vec<Extent> {
        use Extent::{PerImage, Whole};
        match self {
            ImageKernel::Forward(g) => vec![PerImage(g.image_len()), Whole(g.filter_len())],
            ImageKernel::Transpose(g) => vec![PerImage(g.out_image_len()), Whole(g.filter_len())],
            ImageKernel::Correlate(g) => {
                vec![PerImage(g.image_len()), PerImage(g.out_image_len())]
            }
            ImageKernel::Pool(g) | ImageKernel::Argmax(g) => vec![PerImage(g.image_len())],
            ImageKernel::Select(g) => vec![PerImage(g.image_len()), PerImage(g.out_image_len())],
            ImageKernel::Scatter(g) => vec![PerImage(g.out_image_len()); 2],
        }
    }

    /// What one call writes.
    pub fn output(&self) -> Extent {
        match self {
            ImageKernel::Forward(g) => Extent::PerImage(g.out_image_len()),
            ImageKernel::Transpose(g) => Extent::PerImage(g.image_len()),
            ImageKernel::Correlate(g) => Extent::Whole(g.filter_len()),
            ImageKernel::Pool(g) | ImageKernel::Argmax(g) | ImageKernel::Select(g) => {
                Extent::PerImage(g.out_image_len())
            }
            ImageKernel::Scatter(g) => Extent::PerImage(g.image_len()),
        }
    }

    /// The op's name in the IR.
    pub fn name(&self) -> &'static str {
        match self {
            ImageKernel::Forward(_) => "conv2d",
            ImageKernel::Transpose(_) => "conv2d_transpose",
            ImageKernel::Correlate(_) => "conv2d_correlate",
            ImageKernel::Pool(_) => "max_pool2d",
            ImageKernel::Argmax(_) => "max_pool2d_argmax",
            ImageKernel::Select(_) => "max_pool2d_select",
            ImageKernel::Scatter(_) => "max_pool2d_scatter",
        }
    }

    /// Floating-point operations on `images` images: 2 per multiply-add of a convolution, one
    /// per tap compared in a window, one per element a select or scatter moves.
    pub fn flops(&self, images: u64) -> f64 {
        let per_image = match self {
            ImageKernel::Forward(g) | ImageKernel::Transpose(g) | ImageKernel::Correlate(g) => {
                2 * g.out_image_len() * g.patch_len()
            }
            ImageKernel::Pool(g) | ImageKernel::Argmax(g) => {
                g.out_image_len() * g.kernel[0] * g.kernel[1]
            }
            ImageKernel::Select(g) | ImageKernel::Scatter(g) => g.out_image_len(),
        };
        images as f64 * per_image as f64
    }

    /// Runs the op on whole images: `operands` and `out` hold the same images (sized as
    /// [`ImageKernel::operands`] and [`ImageKernel::output`] say), and `out` is overwritten.
    pub fn run<T: Element>(&self, operands: &[&[T]], out: &mut [T]) {
        match self {
            ImageKernel::Forward(g) => g.forward(operands[0], operands[1], out),
            ImageKernel::Transpose(g) => g.transpose(operands[0], operands[1], out),
            ImageKernel::Correlate(g) => g.correlate(operands[0], operands[1], out),
            ImageKernel::Pool(g) => g.pool(operands[0], out),
            ImageKernel::Argmax(g) => g.argmax(operands[0], out),
            ImageKernel::Select(g) => g.select(operands[0], operands[1], out),
            ImageKernel::Scatter(g) => g.scatter(operands[0], operands[1], out),
        }
    }
}

/// `op` evaluated on `xs`, or why the operands do not fit it.
pub(super) fn eval<T: Element>(op: Conv, xs: &[&ArrayD<T>]) -> Result<ArrayD<T>, String> {
    use crate::ir::op::Family;
    let types: Vec<TensorType> = xs
        .iter()
        .map(|x| {
            let dims: Vec<u64> = x.shape().iter().map(|&n| n as u64).collect();
            TensorType::new(T::DTYPE, Shape::fixed(&dims))
        })
        .collect();
    let types: Vec<&TensorType> = types.iter().collect();
    let output = op.infer_type(&types).map_err(|e| e.0)?;
    let kernel = op.image_kernel(&types).map_err(|e| e.0)?;
    let dims: Vec<usize> = output
        .shape
        .dims()
        .iter()
        .map(|d| d.as_fixed().expect("fixed operands give a fixed result") as usize)
        .collect();
    let operands: Vec<ArrayD<T>> = xs
        .iter()
        .map(|x| x.as_standard_layout().into_owned())
        .collect();
    let slices: Vec<&[T]> = operands
        .iter()
        .map(|x| x.as_slice().expect("standard layout"))
        .collect();
    let mut out = vec![T::zero(); dims.iter().product()];
    kernel.run(&slices, &mut out);
    Ok(ArrayD::from_shape_vec(IxDyn(&dims), out).expect("the type's size"))
}

impl ConvGeometry {
    /// Elements of one input image: `C · H · W`.
    fn image_len(&self) -> usize {
        self.channels * self.input_len()
    }

    /// Elements of one output image: `O · oh · ow`.
    fn out_image_len(&self) -> usize {
        self.out_channels * self.output_len()
    }

    /// Elements of the filter: `O · C/groups · kH · kW`.
    fn filter_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    /// The runs of one group of one image's unfolded matrix `[C/groups · kH · kW, oh · ow]`
    /// that read inside the input: `(at, from, len)` says the `len` elements of the matrix from
    /// `at` on read the input from `from` on, `stride_w` apart (per row `(c, i, j)` and output
    /// row; the other elements read padding). Computed once per call, used for every image.
    fn tap_runs(&self) -> Vec<(usize, usize, usize)> {
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.output;
        let [h, w] = self.input;
        let win = &self.window;
        let mut runs = Vec::new();
        for c in 0..self.group_channels() {
            for i in 0..kh {
                let (ys, ih) = win.outputs_reading_inside(0, i, h, oh);
                for j in 0..kw {
                    let (xs, iw) = win.outputs_reading_inside(1, j, w, ow);
                    let row = ((c * kh + i) * kw + j) * oh * ow;
                    for (k, y) in ys.clone().enumerate() {
                        let from = (c * h + ih + k * win.stride[0]) * w + iw;
                        runs.push((row + y * ow + xs.start, from, xs.len()));
                    }
                }
            }
        }
        runs
    }

    /// The unfolded input (im2col) of the group whose channels are `x` (`C/groups · H · W`
    /// values), into `out` (`[C/groups · kH · kW, oh · ow]`, zero where the taps read padding).
    fn unfold<T: Element>(&self, runs: &[(usize, usize, usize)], x: &[T], out: &mut [T]) {
        if self.window.padding != [[0, 0], [0, 0]] {
            out.fill(T::zero());
        }
        let stride = self.window.stride[1];
        for &(at, from, len) in runs {
            let out = &mut out[at..at + len];
            if stride == 1 {
                copy_short(out, &x[from..from + len]);
            } else {
                let x = x[from..].iter().step_by(stride);
                out.iter_mut().zip(x).for_each(|(o, &x)| *o = x);
            }
        }
    }

    /// The transpose of [`ConvGeometry::unfold`]: adds each element of `cols` to the input
    /// position it was read from (col2im).
    fn fold_into<T: Element>(&self, runs: &[(usize, usize, usize)], cols: &[T], x: &mut [T]) {
        let stride = self.window.stride[1];
        for &(at, from, len) in runs {
            let cols = &cols[at..at + len];
            if stride == 1 {
                let x = &mut x[from..from + len];
                x.iter_mut().zip(cols).for_each(|(x, &c)| *x = *x + c);
            } else {
                let x = x[from..].iter_mut().step_by(stride);
                x.zip(cols).for_each(|(x, &c)| *x = *x + c);
            }
        }
    }

    /// Which of [`direct`]'s kernels run this geometry in f32 on this host, if any: they need
    /// AVX-512, one group, stride and dilation 1, no padding and patches of at most
    /// [`DIRECT_MAX_PATCH`] taps. There an unfold of each image and products as short as these
    /// cost more than a direct pass.
    fn direct<T: Element>(&self) -> Option<Direct> {
        #[cfg(target_arch = "x86_64")]
        {
            let fits = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
                && self.groups == 1
                && self.window == super::Window::unit()
                && self.patch_len() <= DIRECT_MAX_PATCH
                && std::is_x86_feature_detected!("avx512f");
            if !fits {
                None
            } else if self.out_channels.is_multiple_of(direct::LANES) {
                Some(Direct::Channels)
            } else if (17..=32).contains(&self.output[1]) && self.patch_len() <= 64 {
                Some(Direct::Rows)
            } else {
                None
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }

    /// The sizes of one group's product per image: its output channels, the unfolded input's
    /// rows (`C/groups · kH · kW`) and the output positions (`oh · ow`).
    fn group_product(&self) -> [usize; 3] {
        [
            self.group_out_channels(),
            self.patch_len(),
            self.output_len(),
        ]
    }

    /// The elements of group `g` within one input image.
    fn input_group(&self, g: usize) -> std::ops::Range<usize> {
        let len = self.group_channels() * self.input_len();
        g * len..(g + 1) * len
    }

    /// Rows of group `g` in a filter viewed as `[O, C/groups · kH · kW]`, or in an output image
    /// viewed as `[O, oh · ow]`.
    fn out_rows(&self, g: usize) -> std::ops::Range<usize> {
        g * self.group_out_channels()..(g + 1) * self.group_out_channels()
    }

    /// For each image of `x` and each group: the unfolded input in `cols`, and `f(image, g, cols)`.
    fn for_each_group<T: Element>(&self, x: &[T], mut f: impl FnMut(usize, usize, &[T])) {
        let mut cols = vec![T::zero(); self.patch_len() * self.output_len()];
        let runs = self.tap_runs();
        for (b, image) in x.chunks_exact(self.image_len()).enumerate() {
            for g in 0..self.groups {
                self.unfold(&runs, &image[self.input_group(g)], &mut cols);
                f(b, g, &cols);
            }
        }
    }

    /// Group `g`'s rows of the filter `[O, C/groups · kH · kW]`, or of an output image
    /// `[O, oh · ow]` (`row_len` elements per row).
    fn group_rows(&self, g: usize, row_len: usize) -> std::ops::Range<usize> {
        let rows = self.out_rows(g);
        rows.start * row_len..rows.end * row_len
    }

    /// `y = conv2d(x, w)` for the images of `x`: per image and group, `y_g = w_g · cols`; or,
    /// for the geometries of [`ConvGeometry::direct`], without the unfold.
    fn forward<T: Element>(&self, x: &[T], w: &[T], y: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(kind) = self.direct::<T>() {
            // SAFETY: `direct` answers only for T = f32 on hosts with AVX-512 and geometries its
            // kernels take; the slices are whole images and the filter of this geometry.
            unsafe {
                let (x, w, y) = (as_f32(x), as_f32(w), as_f32_mut(y));
                match kind {
                    Direct::Rows => {
                        let images = x.chunks_exact(self.image_len());
                        for (x, y) in images.zip(y.chunks_exact_mut(self.out_image_len())) {
                            direct::forward_rows::<6>(self, x, w, y);
                        }
                    }
                    Direct::Channels => direct::forward_channels(self, x, w, y),
                }
            }
            return;
        }
        let [og, p, l] = self.group_product();
        let image_len = self.out_image_len();
        self.for_each_group(x, |b, g, cols| {
            let out = &mut y[b * image_len..(b + 1) * image_len][self.group_rows(g, l)];
            let w = &w[self.group_rows(g, p)];
            matmul([og, p, l], (w, p, 1), (cols, l, 1), (out, l, 1), false);
        });
    }

    /// `x = conv2d_transpose(y, w)` for the images of `y`: per image and group,
    /// `cols = w_gᵀ · y_g`, folded back onto the input.
    fn transpose<T: Element>(&self, y: &[T], w: &[T], x: &mut [T]) {
        let [og, p, l] = self.group_product();
        x.fill(T::zero());
        let mut cols = vec![T::zero(); p * l];
        let runs = self.tap_runs();
        let images = y.chunks_exact(self.out_image_len());
        for (image, x) in images.zip(x.chunks_exact_mut(self.image_len())) {
            for g in 0..self.groups {
                let yg = &image[self.group_rows(g, l)];
                let wg = &w[self.group_rows(g, p)];
                matmul([p, og, l], (wg, 1, p), (yg, l, 1), (&mut cols, l, 1), false);
                self.fold_into(&runs, &cols, &mut x[self.input_group(g)]);
            }
        }
    }

    /// `w = conv2d_correlate(x, y)`: the sum over the images of `x` and `y` of
    /// `w_g += y_g · colsᵀ`; or, for the geometries of [`ConvGeometry::direct`], without the unfold.
    fn correlate<T: Element>(&self, x: &[T], y: &[T], w: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(kind) = self.direct::<T>() {
            // SAFETY: as in `forward`.
            unsafe {
                let (x, y, w) = (as_f32(x), as_f32(y), as_f32_mut(w));
                match self.patch_len() {
                    _ if kind == Direct::Rows => direct::correlate_rows::<3, 5>(self, x, y, w),
                    taps if taps.is_multiple_of(25) => {
                        direct::correlate_channels::<25>(self, x, y, w)
                    }
                    taps if taps.is_multiple_of(27) => {
                        direct::correlate_channels::<27>(self, x, y, w)
                    }
                    _ => direct::correlate_channels::<24>(self, x, y, w),
                }
            }
            return;
        }
        let [og, p, l] = self.group_product();
        w.fill(T::zero());
        let image_len = self.out_image_len();
        self.for_each_group(x, |b, g, cols| {
            let yg = &y[b * image_len..(b + 1) * image_len][self.group_rows(g, l)];
            let wg = &mut w[self.group_rows(g, p)];
            matmul([og, l, p], (yg, l, 1), (cols, 1, l), (wg, p, 1), true);
        });
    }
}

/// The longest patch (`C · kH · kW`) convolved directly: longer ones give a product long enough
/// for the GEMM to win.
const DIRECT_MAX_PATCH: usize = 256;

/// How [`direct`] runs a geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direct {
    /// A multiple of 16 output channels: each position's channels in one vector
    /// ([`direct::forward_channels`], [`direct::correlate_channels`]).
    Channels,
    /// Few output channels, output rows of 17 to 32 columns, patches of at most 64 taps (a first
    /// layer): each output row in two vectors ([`direct::forward_rows`],
    /// [`direct::correlate_rows`]).
    Rows,
}

/// `x` as f32.
///
/// # Safety
/// `T` must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn as_f32<T: Element>(x: &[T]) -> &[f32] {
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
}

/// `x` as f32, mutable.
///
/// # Safety
/// `T` must be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn as_f32_mut<T: Element>(x: &mut [T]) -> &mut [f32] {
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) }
}

/// `dst = src` for short runs (a row of an unfolded image): in blocks of a fixed size, the last
/// one overlapping the one before, which compile to a few vector moves where `copy_from_slice`
/// (or a loop of whole blocks, which the compiler turns back into one) would call `memmove`.
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    const BLOCK: usize = 8;
    let len = dst.len();
    let src = &src[..len];
    if len < BLOCK {
        dst.copy_from_slice(src);
        return;
    }
    let last = len - BLOCK;
    let mut at = 0;
    loop {
        let d: &mut [T; BLOCK] = (&mut dst[at..at + BLOCK]).try_into().expect("a block");
        *d = *<&[T; BLOCK]>::try_from(&src[at..at + BLOCK]).expect("a block");
        if at == last {
            break;
        }
        at = (at + BLOCK).min(last);
    }
}

/// `c = a · b` (or `c += a · b` if `accumulate`) for `[m, k, n]`, each matrix a slice with its
/// row and column strides, through the `gemm` crate on this thread. Its kernel and blocking
/// depend on the shape only, so an image's result does not depend on the other images.
fn matmul<T: Element>(
    [m, k, n]: [usize; 3],
    (a, rsa, csa): (&[T], usize, usize),
    (b, rsb, csb): (&[T], usize, usize),
    (c, rsc, csc): (&mut [T], usize, usize),
    accumulate: bool,
) {
    let fits = |len: usize, rows: usize, cols: usize, rs: usize, cs: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
    };
    assert!(
        fits(a.len(), m, k, rsa, csa)
            && fits(b.len(), k, n, rsb, csb)
            && fits(c.len(), m, n, rsc, csc),
        "matmul operands smaller than their shapes"
    );
    // SAFETY: the assertion keeps every element the strides reach inside its slice; `c` is
    // borrowed mutably, so it overlaps neither `a` nor `b`. `gemm` computes
    // dst = alpha·dst + beta·lhs·rhs (column strides first), reading dst only if asked.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            csc as isize,
            rsc as isize,
            accumulate,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

impl PoolGeometry {
    /// Elements of one input image: `C · H · W`.
    fn image_len(&self) -> usize {
        self.channels * self.input[0] * self.input[1]
    }

    /// Elements of one pooled image: `C · oh · ow`.
    fn out_image_len(&self) -> usize {
        self.channels * self.output[0] * self.output[1]
    }

    /// For each window of the images of `x`, in output order: `f(window, at)` with `at` the
    /// index into `x` of its first maximum, NaN counting as larger than any number. (The padding
    /// rule leaves every window at least one tap inside the input.)
    fn for_each_argmax<T: Element>(&self, x: &[T], mut f: impl FnMut(usize, usize)) {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        let win = &self.window;
        let [dh, dw] = win.dilation;
        // Per output row and column: how many taps read inside, and the first one's input index.
        let taps = |axis: usize, outputs: usize, n: usize| -> Vec<(usize, usize)> {
            (0..outputs)
                .map(|o| {
                    let (taps, first) = win.taps_inside(axis, o, n, self.kernel[axis]);
                    (taps.len(), first)
                })
                .collect()
        };
        let (rows, cols) = (taps(0, oh, h), taps(1, ow, w));
        let mut window = 0;
        for (p, plane) in x.chunks_exact(h * w).enumerate() {
            let base = p * h * w;
            for &(row_taps, ih) in &rows {
                for &(col_taps, iw) in &cols {
                    let mut best = ih * w + iw;
                    for i in 0..row_taps {
                        let row = (ih + i * dh) * w + iw;
                        for j in 0..col_taps {
                            let at = row + j * dw;
                            let (v, b) = (plane[at], plane[best]);
                            if v > b || (v.is_nan() && !b.is_nan()) {
                                best = at;
                            }
                        }
                    }
                    f(window, base + best);
                    window += 1;
                }
            }
        }
    }

    /// Whether `T` is f32 on a host with AVX-512 and the planes are small enough for f32 and
    /// i32 indices: then selects run as gathers, and pooling over 2×2 tiles (see
    /// [`direct::tiles_2x2`]) runs vectorized.
    fn vectorized<T: Element>(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
                && self.input[0] * self.input[1] < 1 << 24
                && std::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `out = max_pool2d(x)`: each window's maximum.
    fn pool<T: Element>(&self, x: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if self.vectorized::<T>() && direct::tiles_2x2(self) {
            // SAFETY: `vectorized` holds for T = f32 on hosts with AVX-512 only.
            unsafe { direct::pool_2x2::<false>(self, as_f32(x), as_f32_mut(out)) };
            return;
        }
        self.for_each_argmax(x, |window, at| out[window] = x[at]);
    }

    /// `out = max_pool2d_argmax(x)`: where each window's maximum is in its plane.
    fn argmax<T: Element>(&self, x: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if self.vectorized::<T>() && direct::tiles_2x2(self) {
            // SAFETY: as in `pool`.
            unsafe { direct::pool_2x2::<true>(self, as_f32(x), as_f32_mut(out)) };
            return;
        }
        let plane = self.input[0] * self.input[1];
        self.for_each_argmax(x, |window, at| {
            out[window] = T::from_f64((at % plane) as f64);
        });
    }

    /// For each window of the images of the argmax `a`: `f(window, at)` with `at` the index
    /// into the input images that `a` names, or `None` where `a` is no index of its plane.
    fn for_each_index<T: Element>(&self, a: &[T], mut f: impl FnMut(usize, Option<usize>)) {
        let plane = self.input[0] * self.input[1];
        let windows = self.output[0] * self.output[1];
        for (p, indices) in a.chunks_exact(windows).enumerate() {
            for (o, index) in indices.iter().enumerate() {
                let at = index.to_usize().filter(|&i| i < plane);
                f(p * windows + o, at.map(|i| p * plane + i));
            }
        }
    }

    /// `out = max_pool2d_select(t, a)`: `t` at each window's maximum `a`.
    fn select<T: Element>(&self, t: &[T], a: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if self.vectorized::<T>() {
            let (t, a, out) = unsafe { (as_f32(t), as_f32(a), as_f32_mut(out)) };
            // SAFETY: as in `pool`.
            unsafe {
                if direct::tiles_2x2(self) {
                    direct::select_2x2(self, t, a, out);
                } else {
                    direct::select(self, t, a, out);
                }
            }
            return;
        }
        self.for_each_index(a, |window, at| {
            out[window] = at.map_or(T::zero(), |at| t[at]);
        });
    }

    /// `out = max_pool2d_scatter(c, a)`: each `c` added at its window's maximum `a`.
    fn scatter<T: Element>(&self, c: &[T], a: &[T], out: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if self.vectorized::<T>() && direct::tiles_2x2(self) {
            // SAFETY: as in `pool`.
            unsafe { direct::scatter_2x2(self, as_f32(c), as_f32(a), as_f32_mut(out)) };
            return;
        }
        out.fill(T::zero());
        self.for_each_index(a, |window, at| {
            if let Some(at) = at {
                out[at] = out[at] + c[window];
            }
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod direct {
    //! Convolution of f32 images without unfolding them, for geometries with a unit window and
    //! one group (see [`ConvGeometry::direct`]); max-pooling over 2×2 tiles and its select and
    //! scatter, 16 windows at a time.

    use super::{ConvGeometry, PoolGeometry};
    use crate::ir::op::conv::Window;
    use std::arch::x86_64::*;

    /// f32 lanes of a vector.
    pub const LANES: usize = 16;

    /// Positions of a tile of [`forward_channels`]: one vector of each channel's row.
    const TILE: usize = LANES;

    /// The data cache a chunk of images of [`sum_over_images`] should fit in (Zen 4 and recent
    /// Intel cores have 32 or 48 KiB).
    const L1_BYTES: usize = 24 * 1024;

    /// For each output position `(r, col)`, the input element its first tap reads: `r · W +
    /// col`; and for each tap `(c, i, j)` how far its element is from there: `(c · H + i) · W +
    /// j`.
    fn offsets(g: &ConvGeometry) -> (Vec<usize>, Vec<usize>) {
        let ([h, w], [kh, kw], [oh, ow]) = (g.input, g.kernel, g.output);
        let positions = (0..oh).flat_map(|r| (0..ow).map(move |col| r * w + col));
        let taps = (0..g.channels)
            .flat_map(|c| (0..kh).flat_map(move |i| (0..kw).map(move |j| (c * h + i) * w + j)));
        (positions.collect(), taps.collect())
    }

    /// Lane `k` of the 16 values at `at`, `stride` apart: a column of a row-major matrix.
    ///
    /// # Safety
    /// AVX-512F; the 16 values must be readable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn column(at: *const f32, stride: usize) -> __m512 {
        let step = stride as i32;
        let index = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(step),
        );
        unsafe { _mm512_i32gather_ps::<4>(index, at.cast()) }
    }

    /// `y = conv2d(x, w)` for the images of `x`, a multiple of 16 output channels: for each 16
    /// of them and each tile of 16 positions, 16 accumulators (one per position, its channels
    /// in the lanes) while the taps run; each tap's 16 filter values are one load and each
    /// input value a broadcast. A tile's accumulators are turned into the output's rows at the
    /// end.
    ///
    /// # Safety
    /// The host must have AVX-512F, and `g` must be one [`ConvGeometry::direct`] gives
    /// [`super::Direct::Channels`]; `x` and `y` hold the same whole images, `w` the filter.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward_channels(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
        let (o, taps, positions) = (g.out_channels, g.patch_len(), g.output_len());
        let (position_at, tap_at) = offsets(g);
        // The filter as [tap, o]: a tap's channels side by side.
        let mut by_tap = vec![0.0; taps * o];
        for (oc, row) in w.chunks_exact(taps).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                by_tap[t * o + oc] = v;
            }
        }
        let mut tile = [0.0f32; TILE * LANES];
        let images = x.chunks_exact(g.image_len());
        for (x, y) in images.zip(y.chunks_exact_mut(g.out_image_len())) {
            for o0 in (0..o).step_by(LANES) {
                for p0 in (0..positions).step_by(TILE) {
                    let at: [usize; TILE] =
                        std::array::from_fn(|p| position_at[(p0 + p).min(positions - 1)]);
                    let mut acc = [_mm512_setzero_ps(); TILE];
                    for (t, &tap) in tap_at.iter().enumerate() {
                        let wv = unsafe { _mm512_loadu_ps(by_tap[t * o + o0..].as_ptr()) };
                        let x = &x[tap..];
                        for (acc, &at) in acc.iter_mut().zip(&at) {
                            // SAFETY: a position's tap reads inside its image.
                            let xv = _mm512_set1_ps(unsafe { *x.get_unchecked(at) });
                            *acc = _mm512_fmadd_ps(wv, xv, *acc);
                        }
                    }
                    for (p, &acc) in acc.iter().enumerate() {
                        unsafe { _mm512_storeu_ps(tile[p * LANES..].as_mut_ptr(), acc) };
                    }
                    let live = first_lanes(positions - p0);
                    for oo in 0..LANES {
                        let row = &mut y[(o0 + oo) * positions + p0..];
                        unsafe {
                            let channel = column(tile[oo..].as_ptr(), LANES);
                            _mm512_mask_storeu_ps(row.as_mut_ptr(), live, channel);
                        }
                    }
                }
            }
        }
    }

    /// Per-block accumulators summed over the images of `x` and `y`, a few images at a time (as
    /// many as stay in the L1 cache, with `prepared` elements per image of `prepare`'s): for
    /// each chunk, `prepare(y, buffer)`, then for each block (`sums[block]` its accumulators)
    /// `add(block, sums, x, y, prepared)` for each image. The order of the sums depends on the
    /// images only.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn sum_over_images<A: Copy>(
        g: &ConvGeometry,
        x: &[f32],
        y: &[f32],
        sums: &mut [A],
        prepared: usize,
        mut prepare: impl FnMut(&[f32], &mut [f32]),
        mut add: impl FnMut(usize, &mut A, &[f32], &[f32], &[f32]),
    ) {
        let (image, out_image) = (g.image_len(), g.out_image_len());
        let chunk = (L1_BYTES / (4 * (image + out_image + prepared))).max(1);
        let mut buffer = vec![0.0; chunk * prepared];
        for (x, y) in x.chunks(chunk * image).zip(y.chunks(chunk * out_image)) {
            prepare(y, &mut buffer);
            for (block, sums) in sums.iter_mut().enumerate() {
                let mut acc = *sums;
                let images = x.chunks_exact(image).zip(y.chunks_exact(out_image));
                for (i, (x, y)) in images.enumerate() {
                    add(
                        block,
                        &mut acc,
                        x,
                        y,
                        &buffer[i * prepared..(i + 1) * prepared],
                    );
                }
                *sums = acc;
            }
        }
    }

    /// `w = conv2d_correlate(x, y)`, the sum over the images of `x` and `y`, a multiple of 16
    /// output channels: for each 16 of them and each block of `TB` taps, `TB` accumulators (one
    /// per tap, its channels in the lanes) while the positions of [`sum_over_images`]'s chunks
    /// run; each position's 16 cotangents are one load and each input value a broadcast.
    ///
    /// # Safety
    /// As [`forward_channels`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_channels<const TB: usize>(
        g: &ConvGeometry,
        x: &[f32],
        y: &[f32],
        w: &mut [f32],
    ) {
        let (o, taps, positions) = (g.out_channels, g.patch_len(), g.output_len());
        let (position_at, tap_at) = offsets(g);
        let t_blocks = taps.div_ceil(TB);
        let mut sums = vec![[_mm512_setzero_ps(); TB]; o / LANES * t_blocks];
        // A chunk's cotangents as [image, position, o]: a position's channels side by side.
        let transpose = |y: &[f32], by_position: &mut [f32]| {
            let images = y.chunks_exact(g.out_image_len());
            for (y, out) in images.zip(by_position.chunks_exact_mut(g.out_image_len())) {
                for (p, out) in out.chunks_exact_mut(o).enumerate() {
                    for (o0, out) in (0..o).step_by(LANES).zip(out.chunks_exact_mut(LANES)) {
                        unsafe {
                            let channels = column(y[o0 * positions + p..].as_ptr(), positions);
                            _mm512_storeu_ps(out.as_mut_ptr(), channels);
                        }
                    }
                }
            }
        };
        let add = |block: usize, acc: &mut [__m512; TB], x: &[f32], _: &[f32], ys: &[f32]| {
            let (o0, t0) = (block / t_blocks * LANES, block % t_blocks * TB);
            let taps_at: [usize; TB] = std::array::from_fn(|t| tap_at[(t0 + t).min(taps - 1)]);
            for (&at, ys) in position_at.iter().zip(ys.chunks_exact(o)) {
                let yv = unsafe { _mm512_loadu_ps(ys[o0..].as_ptr()) };
                let x = &x[at..];
                for (acc, &tap) in acc.iter_mut().zip(&taps_at) {
                    // SAFETY: a position's tap reads inside its image.
                    let xv = _mm512_set1_ps(unsafe { *x.get_unchecked(tap) });
                    *acc = _mm512_fmadd_ps(yv, xv, *acc);
                }
            }
        };
        sum_over_images(g, x, y, &mut sums, g.out_image_len(), transpose, add);
        let mut lanes = [0.0f32; LANES];
        for (block, sums) in sums.iter().enumerate() {
            let (o0, t0) = (block / t_blocks * LANES, block % t_blocks * TB);
            for (t, &sum) in sums.iter().enumerate().take(taps - t0) {
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
                for (oo, &v) in lanes.iter().enumerate() {
                    w[(o0 + oo) * taps + t0 + t] = v;
                }
            }
        }
    }

    /// Lanes `0..n` (at most 16).
    fn first_lanes(n: usize) -> __mmask16 {
        (((1u32 << n.min(LANES)) - 1) & 0xFFFF) as __mmask16
    }

    /// Whether a max-pooling's windows tile its planes in 2×2 blocks: kernel 2×2, stride 2, no
    /// padding or dilation (the CNNs' pooling; a ragged last row or column is left out).
    pub fn tiles_2x2(g: &PoolGeometry) -> bool {
        g.kernel == [2, 2]
            && g.window
                == (Window {
                    stride: [2, 2],
                    ..Window::unit()
                })
    }

    /// The four taps of windows `c0..c0 + n` (n ≤ 16) of output row `r` of a [`tiles_2x2`]
    /// plane `x` of rows of `w`, in the generic kernels' order: (0, 0), (0, 1), (1, 0), (1, 1).
    /// Each input row is loaded in two vectors and split into its even and odd columns.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn taps_2x2(x: &[f32], w: usize, r: usize, c0: usize, n: usize) -> [__m512; 4] {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let (lo, hi) = (
            first_lanes(2 * n),
            first_lanes((2 * n).saturating_sub(LANES)),
        );
        let row = |i: usize| {
            let at = x[(2 * r + i) * w + 2 * c0..].as_ptr();
            // SAFETY: the lanes loaded are the 2n inputs of the n windows, inside the plane.
            let (a, b) = unsafe {
                let a = _mm512_maskz_loadu_ps(lo, at);
                (a, _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)))
            };
            [
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            ]
        };
        let ([t00, t01], [t10, t11]) = (row(0), row(1));
        [t00, t01, t10, t11]
    }

    /// The plane index of the first tap of windows `c0..c0 + 16` of output row `r` (rows of
    /// `w`), and how far the other three taps are from it.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn first_tap_2x2(w: usize, r: usize, c0: usize) -> (__m512i, [i32; 4]) {
        let columns = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let first = _mm512_set1_epi32((2 * r * w + 2 * c0) as i32);
        let w = w as i32;
        (_mm512_add_epi32(first, columns), [0, 1, w, w + 1])
    }

    /// For [`tiles_2x2`] geometries: each window's maximum (`INDEX` false) or its index in its
    /// plane (`INDEX` true), the first on ties and NaN counting as the largest, as
    /// [`PoolGeometry::argmax`] says; 16 windows of an output row at a time.
    ///
    /// # Safety
    /// AVX-512F; `g` a [`tiles_2x2`] geometry, `x` and `out` the same whole planes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pool_2x2<const INDEX: bool>(g: &PoolGeometry, x: &[f32], out: &mut [f32]) {
        let ([h, w], [oh, ow]) = (g.input, g.output);
        for (x, out) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            for r in 0..oh {
                for c0 in (0..ow).step_by(LANES) {
                    let n = (ow - c0).min(LANES);
                    let taps = taps_2x2(x, w, r, c0, n);
                    let (first, offsets) = first_tap_2x2(w, r, c0);
                    let (mut best, mut at) = (taps[0], first);
                    for k in 1..4 {
                        let (v, offset) = (taps[k], offsets[k]);
                        let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
                            & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(best, best);
                        let take = larger | nan;
                        best = _mm512_mask_mov_ps(best, take, v);
                        let index = _mm512_add_epi32(first, _mm512_set1_epi32(offset));
                        at = _mm512_mask_mov_epi32(at, take, index);
                    }
                    let result = if INDEX { _mm512_cvtepi32_ps(at) } else { best };
                    let dst = out[r * ow + c0..].as_mut_ptr();
                    unsafe { _mm512_mask_storeu_ps(dst, first_lanes(n), result) };
                }
            }
        }
    }

    /// For windows `c0..` of output row `r` (rows of `w`) whose `index` is `inside` the plane:
    /// the lanes whose index is each of their window's four taps, and the lanes whose index is
    /// outside their own window (no argmax names one; the generic kernels' rule still holds).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn own_taps_2x2(
        index: __m512i,
        inside: __mmask16,
        w: usize,
        r: usize,
        c0: usize,
    ) -> ([__mmask16; 4], __mmask16) {
        let (first, offsets) = first_tap_2x2(w, r, c0);
        let offset = _mm512_sub_epi32(index, first);
        let taps =
            offsets.map(|t| _mm512_mask_cmpeq_epi32_mask(inside, offset, _mm512_set1_epi32(t)));
        (taps, inside & !(taps[0] | taps[1] | taps[2] | taps[3]))
    }

    /// Each plane's indices `a` of a vector of windows as i32, and the lanes whose index is one
    /// of the plane's (a NaN or out-of-range float converts to a negative integer).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn indices(a: *const f32, live: __mmask16, plane: usize) -> (__m512i, __mmask16) {
        let index = _mm512_cvttps_epi32(unsafe { _mm512_maskz_loadu_ps(live, a) });
        let inside = _mm512_mask_cmpge_epi32_mask(live, index, _mm512_setzero_si512())
            & _mm512_cmplt_epi32_mask(index, _mm512_set1_epi32(plane as i32));
        (index, inside)
    }

    /// `t`'s plane elements at `index` where `inside`, zero elsewhere.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn gather(t: &[f32], index: __m512i, inside: __mmask16) -> __m512 {
        let zero = _mm512_setzero_ps();
        unsafe { _mm512_mask_i32gather_ps::<4>(zero, inside, index, t.as_ptr().cast()) }
    }

    /// `out = max_pool2d_select(t, a)` for any geometry: a gather of 16 windows at a time.
    ///
    /// # Safety
    /// AVX-512F; planes of fewer than 2²⁴ elements; `t`, `a` and `out` the same whole planes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn select(g: &PoolGeometry, t: &[f32], a: &[f32], out: &mut [f32]) {
        let (plane, windows) = (g.input[0] * g.input[1], g.output[0] * g.output[1]);
        let planes = t.chunks_exact(plane).zip(a.chunks_exact(windows));
        for ((t, a), out) in planes.zip(out.chunks_exact_mut(windows)) {
            for w0 in (0..windows).step_by(LANES) {
                let live = first_lanes(windows - w0);
                unsafe {
                    let (index, inside) = indices(a[w0..].as_ptr(), live, plane);
                    let v = gather(t, index, inside);
                    _mm512_mask_storeu_ps(out[w0..].as_mut_ptr(), live, v);
                }
            }
        }
    }

    /// `out = max_pool2d_select(t, a)` for [`tiles_2x2`] geometries: each window's four taps
    /// loaded as [`pool_2x2`] does and the one `a` names kept (a gather only for indices outside
    /// their own window).
    ///
    /// # Safety
    /// As [`select`], and `g` a [`tiles_2x2`] geometry.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn select_2x2(g: &PoolGeometry, t: &[f32], a: &[f32], out: &mut [f32]) {
        let ([h, w], [oh, ow]) = (g.input, g.output);
        let planes = t.chunks_exact(h * w).zip(a.chunks_exact(oh * ow));
        for ((t, a), out) in planes.zip(out.chunks_exact_mut(oh * ow)) {
            for r in 0..oh {
                for c0 in (0..ow).step_by(LANES) {
                    let n = (ow - c0).min(LANES);
                    let at = r * ow + c0;
                    let (index, inside) =
                        unsafe { indices(a[at..].as_ptr(), first_lanes(n), h * w) };
                    let (own, foreign) = own_taps_2x2(index, inside, w, r, c0);
                    let mut v = _mm512_setzero_ps();
                    for (tap, own) in taps_2x2(t, w, r, c0, n).into_iter().zip(own) {
                        v = _mm512_mask_mov_ps(v, own, tap);
                    }
                    if foreign != 0 {
                        v = _mm512_mask_mov_ps(v, foreign, unsafe { gather(t, index, foreign) });
                    }
                    unsafe { _mm512_mask_storeu_ps(out[at..].as_mut_ptr(), first_lanes(n), v) };
                }
            }
        }
    }

    /// `out = max_pool2d_scatter(c, a)` for [`tiles_2x2`] geometries, written densely: each
    /// window's four outputs are its `c` where `a` names that tap, zero elsewhere, interleaved
    /// back into the plane's rows. An index outside its own window (no argmax gives one) is
    /// added afterwards, as the generic kernel would.
    ///
    /// # Safety
    /// As [`select`], and `g` a [`tiles_2x2`] geometry.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scatter_2x2(g: &PoolGeometry, c: &[f32], a: &[f32], out: &mut [f32]) {
        let ([h, w], [oh, ow]) = (g.input, g.output);
        let (plane, windows) = (h * w, oh * ow);
        if 2 * oh != h || 2 * ow != w {
            out.fill(0.0); // the ragged border no window reads
        }
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
        let planes = c.chunks_exact(windows).zip(a.chunks_exact(windows));
        for ((c, a), out) in planes.zip(out.chunks_exact_mut(plane)) {
            let mut foreign = false;
            for r in 0..oh {
                for c0 in (0..ow).step_by(LANES) {
                    let n = (ow - c0).min(LANES);
                    let live = first_lanes(n);
                    let at = r * ow + c0;
                    let (index, inside) = unsafe { indices(a[at..].as_ptr(), live, plane) };
                    // + 0 turns -0 into +0, as 0 + c does in the generic kernel.
                    let cv = _mm512_add_ps(
                        unsafe { _mm512_maskz_loadu_ps(live, c[at..].as_ptr()) },
                        _mm512_setzero_ps(),
                    );
                    let (tap, outside) = own_taps_2x2(index, inside, w, r, c0);
                    foreign |= outside != 0;
                    let [t00, t01, t10, t11] = tap.map(|k| _mm512_maskz_mov_ps(k, cv));
                    let (lo, hi) = (first_lanes(2 * n), first_lanes((2 * n).saturating_sub(16)));
                    for (i, [left, right]) in [[t00, t01], [t10, t11]].into_iter().enumerate() {
                        let dst = out[(2 * r + i) * w + 2 * c0..].as_mut_ptr();
                        unsafe {
                            _mm512_mask_storeu_ps(
                                dst,
                                lo,
                                _mm512_permutex2var_ps(left, low, right),
                            );
                            let v = _mm512_permutex2var_ps(left, high, right);
                            _mm512_mask_storeu_ps(dst.wrapping_add(LANES), hi, v);
                        }
                    }
                }
            }
            if foreign {
                add_foreign(g, c, a, out);
            }
        }
    }

    /// The indices of one plane's windows that name a tap outside their own window, added.
    fn add_foreign(g: &PoolGeometry, c: &[f32], a: &[f32], out: &mut [f32]) {
        let ([h, w], [_, ow]) = (g.input, g.output);
        for (window, (&c, &a)) in c.iter().zip(a).enumerate() {
            let (r, col) = (window / ow, window % ow);
            // As the vector conversion: truncation, and no index where it would not fit.
            let index = (a > -1.0 && a < (h * w) as f32).then_some(a as usize);
            if let Some(at) = index
                && (at / w / 2, at % w / 2) != (r, col)
            {
                out[at] += c;
            }
        }
    }

    /// `w = conv2d_correlate(x, y)` for [`super::Direct::Rows`] geometries, the sum over the
    /// images: for each block of `OB` output channels and `TB` taps, `OB · TB` accumulators
    /// while the output rows of [`sum_over_images`]'s chunks run, each row (16 + up to 16
    /// columns) in two vectors; each cotangent row loaded once for the `TB` taps and each
    /// input row once for the `OB` channels. The lanes are added at the end.
    ///
    /// # Safety
    /// As [`forward_rows`], with `x` and `y` the same whole images.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate_rows<const OB: usize, const TB: usize>(
        g: &ConvGeometry,
        x: &[f32],
        y: &[f32],
        w: &mut [f32],
    ) {
        let (o, taps, [oh, ow], width) = (g.out_channels, g.patch_len(), g.output, g.input[1]);
        let (_, tap_at) = offsets(g);
        let (lo, hi) = (first_lanes(ow), first_lanes(ow - LANES));
        let t_blocks = taps.div_ceil(TB);
        let mut sums = vec![[[_mm512_setzero_ps(); TB]; OB]; o.div_ceil(OB) * t_blocks];
        let add = |block: usize, acc: &mut [[__m512; TB]; OB], x: &[f32], y: &[f32], _: &[f32]| {
            let (o0, t0) = (block / t_blocks * OB, block % t_blocks * TB);
            let taps_at: [usize; TB] = std::array::from_fn(|t| tap_at[(t0 + t).min(taps - 1)]);
            let planes: [usize; OB] = std::array::from_fn(|oo| (o0 + oo).min(o - 1) * oh * ow);
            for r in 0..oh {
                // SAFETY: rows of `ow` columns of the cotangent; an output row's taps read
                // inside the input row (a unit window).
                let ys: [[__m512; 2]; OB] = std::array::from_fn(|oo| unsafe {
                    let at = y[planes[oo] + r * ow..].as_ptr();
                    [
                        _mm512_maskz_loadu_ps(lo, at),
                        _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)),
                    ]
                });
                let row = x[r * width..].as_ptr();
                for (t, &tap) in taps_at.iter().enumerate() {
                    let at = row.wrapping_add(tap);
                    let (x0, x1) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(lo, at),
                            _mm512_maskz_loadu_ps(hi, at.wrapping_add(LANES)),
                        )
                    };
                    for (acc, [y0, y1]) in acc.iter_mut().zip(&ys) {
                        acc[t] = _mm512_fmadd_ps(*y1, x1, _mm512_fmadd_ps(*y0, x0, acc[t]));
                    }
                }
            }
        };
        sum_over_images(g, x, y, &mut sums, 0, |_, _| {}, add);
        for (block, sums) in sums.iter().enumerate() {
            let (o0, t0) = (block / t_blocks * OB, block % t_blocks * TB);
            for (oo, sums) in sums.iter().enumerate().take(o - o0) {
                for (t, &sum) in sums.iter().enumerate().take(taps - t0) {
                    w[(o0 + oo) * taps + t0 + t] = _mm512_reduce_add_ps(sum);
                }
            }
        }
    }

    /// `y = conv2d(x, w)` for one image, stride and dilation 1, no padding, one group, an output
    /// row of 17..=32 columns: each output row of `OC` channels in `2·OC` accumulators while the
    /// taps run, `x`'s row segment loaded once per tap for all of them.
    ///
    /// # Safety
    /// The host must have AVX-512F, and `g` must be one [`ConvGeometry::direct`] gives
    /// [`super::Direct::Rows`] (then every masked load stays inside `x`'s row, as the output row
    /// and the filter span the input row exactly); `x`, `w` and `y` hold one image, the filter and one output image.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward_rows<const OC: usize>(
        g: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
    ) {
        let (c, [h, wd], o) = (g.channels, g.input, g.out_channels);
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let lo: __mmask16 = 0xFFFF;
        let hi: __mmask16 = ((1u32 << (ow - 16)) - 1) as __mmask16;
        let taps = c * kh * kw;
        let mut o0 = 0;
        while o0 < o {
            let live = (o - o0).min(OC);
            for r in 0..oh {
                let mut acc = [[_mm512_setzero_ps(); 2]; OC];
                for ci in 0..c {
                    for i in 0..kh {
                        let row = x[(ci * h + r + i) * wd..].as_ptr();
                        for j in 0..kw {
                            let a0 = unsafe { _mm512_maskz_loadu_ps(lo, row.add(j)) };
                            let a1 = unsafe { _mm512_maskz_loadu_ps(hi, row.add(j + 16)) };
                            let tap = (ci * kh + i) * kw + j;
                            for (oo, acc) in acc.iter_mut().enumerate() {
                                let oc = (o0 + oo).min(o - 1);
                                let wv = _mm512_set1_ps(w[oc * taps + tap]);
                                acc[0] = _mm512_fmadd_ps(a0, wv, acc[0]);
                                acc[1] = _mm512_fmadd_ps(a1, wv, acc[1]);
                            }
                        }
                    }
                }
                for (oo, acc) in acc.iter().enumerate().take(live) {
                    let out = y[((o0 + oo) * oh + r) * ow..].as_mut_ptr();
                    unsafe {
                        _mm512_mask_storeu_ps(out, lo, acc[0]);
                        _mm512_mask_storeu_ps(out.add(16), hi, acc[1]);
                    }
                }
            }
            o0 += OC;
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::ir::op::conv::Window;

    /// `f32` values of `len` elements in [-1, 1] (a pattern of `step`), and the same in f64.
    fn pattern(len: usize, step: usize) -> (Vec<f32>, Vec<f64>) {
        let v: Vec<f64> = (0..len)
            .map(|i| ((i * step) % 101) as f64 / 50.0 - 1.0)
            .collect();
        (v.iter().map(|&v| v as f32).collect(), v)
    }

    /// Whether f32 results of sums of `terms` products of values in [-1, 1] (rounded once to
    /// f32) match the f64 ones.
    fn close(direct: &[f32], expected: &[f64], terms: usize, what: &str) {
        assert_eq!(direct.len(), expected.len());
        for (i, (&d, &e)) in direct.iter().zip(expected).enumerate() {
            let tolerance = 2e-7 * terms as f64 * (1.0 + e.abs());
            assert!(
                (f64::from(d) - e).abs() <= tolerance,
                "{what}, element {i}: {d} against {e}"
            );
        }
    }

    #[test]
    fn direct_kernels_equal_the_unfold_and_product_in_f64() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        use Direct::{Channels, Rows};
        let cases = [
            // Rows: output rows of 17, 24 and 32 columns; 1 to 3 channels; 1, 6, 7 and 13 output
            // channels; square and oblong filters.
            ([1, 28, 28], [6, 1, 5, 5], Rows),
            ([2, 20, 19], [7, 2, 3, 3], Rows),
            ([1, 32, 36], [13, 1, 4, 5], Rows),
            ([3, 9, 32], [1, 3, 2, 1], Rows),
            // Channels: LeNet's second layer (150 taps, blocks of 25), the CIFAR net's first (27
            // taps), 12 taps (a block of 24 cut short), 42 and 5 positions (the last tile cut
            // short), 48 output channels.
            ([6, 12, 12], [16, 6, 5, 5], Channels),
            ([3, 32, 32], [32, 3, 3, 3], Channels),
            ([2, 9, 7], [16, 2, 3, 2], Channels),
            ([1, 5, 7], [48, 1, 5, 3], Channels),
        ];
        for ([c, h, w], filter, kind) in cases {
            let g = ConvGeometry::new(Window::unit(), 1, [c, h, w], filter).unwrap();
            assert_eq!(g.direct::<f32>(), Some(kind), "{g:?}");
            assert_eq!(g.direct::<f64>(), None);
            // 11 images: more than one chunk of the filter gradient's for the larger images.
            let images = 11;
            let (x32, x) = pattern(images * g.image_len(), 37);
            let (k32, k) = pattern(g.filter_len(), 13);
            let (y32, y) = pattern(images * g.out_image_len(), 7);
            let mut expected = vec![0.0; images * g.out_image_len()];
            g.forward(&x, &k, &mut expected);
            let mut direct = vec![f32::NAN; expected.len()];
            g.forward(&x32, &k32, &mut direct);
            close(&direct, &expected, g.patch_len(), &format!("forward {g:?}"));
            {
                let mut expected = vec![0.0; g.filter_len()];
                g.correlate(&x, &y, &mut expected);
                let mut direct = vec![f32::NAN; expected.len()];
                g.correlate(&x32, &y32, &mut direct);
                let terms = images * g.output_len();
                close(&direct, &expected, terms, &format!("correlate {g:?}"));
            }
        }
    }

    /// Whether the f32 results are the f64 ones, bit for bit (sign of zero included; NaN
    /// matching NaN).
    fn same(what: &str, f32s: &[f32], f64s: &[f64]) {
        assert_eq!(f32s.len(), f64s.len());
        for (i, (&d, &e)) in f32s.iter().zip(f64s).enumerate() {
            let equal = if e.is_nan() {
                d.is_nan()
            } else {
                d.to_bits() == (e as f32).to_bits()
            };
            assert!(equal, "{what}, element {i}: {d:?} against {e:?}");
        }
    }

    #[test]
    fn vectorized_pooling_equals_the_generic_kernels() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        let pairs = Window {
            stride: [2, 2],
            ..Window::unit()
        };
        // LeNet's two poolings, ragged borders (13 → 6; 37 → 18: two vectors a row), and 3×3
        // windows (not 2×2 tiles: the select is a plain gather, the rest generic).
        let cases = [
            ([6, 24, 24], [2, 2], true),
            ([16, 8, 8], [2, 2], true),
            ([2, 13, 13], [2, 2], true),
            ([1, 7, 37], [2, 2], true),
            ([3, 9, 9], [3, 3], false),
        ];
        for ([c, h, w], kernel, tiles) in cases {
            let g = PoolGeometry::new(kernel, pairs, [c, h, w]).unwrap();
            assert!(g.vectorized::<f32>() && !g.vectorized::<f64>());
            assert_eq!(direct::tiles_2x2(&g), tiles);
            let images = 3;
            let plane = (h * w) as f64;
            // Few distinct values (ties), NaNs and negative zeros; all exact in f32.
            let x: Vec<f64> = (0..images * g.image_len())
                .map(|i| match i % 23 {
                    5 => f64::NAN,
                    7 | 8 => -0.0,
                    k => ((k * 7) % 5) as f64 / 4.0 - 0.5,
                })
                .collect();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut pooled = vec![0.0; images * g.out_image_len()];
            let mut pooled32 = vec![0.0f32; pooled.len()];
            g.pool(&x, &mut pooled);
            g.pool(&x32, &mut pooled32);
            same(&format!("pool {g:?}"), &pooled32, &pooled);
            let mut a = vec![0.0; pooled.len()];
            let mut a32 = vec![0.0f32; pooled.len()];
            g.argmax(&x, &mut a);
            g.argmax(&x32, &mut a32);
            same(&format!("argmax {g:?}"), &a32, &a);
            // Indices no argmax gives: another window's, outside the plane, NaN, fractional.
            for (k, a) in a.iter_mut().enumerate() {
                *a = match k % 17 {
                    3 => (*a + 2.0 * w as f64) % plane,
                    6 => -3.0,
                    9 => plane + 5.0,
                    11 => f64::NAN,
                    13 => 1e10,
                    14 => *a + 0.75,
                    15 => -0.5,
                    _ => *a,
                };
            }
            let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
            let mut selected = vec![0.0; a.len()];
            let mut selected32 = vec![0.0f32; a.len()];
            g.select(&x, &a, &mut selected);
            g.select(&x32, &a32, &mut selected32);
            same(&format!("select {g:?}"), &selected32, &selected);
            let cot: Vec<f64> = (0..a.len())
                .map(|k| {
                    if k % 9 == 4 {
                        -0.0
                    } else {
                        (k % 13) as f64 / 4.0 - 1.5
                    }
                })
                .collect();
            let cot32: Vec<f32> = cot.iter().map(|&v| v as f32).collect();
            let mut scattered = vec![f64::NAN; x.len()];
            let mut scattered32 = vec![f32::NAN; x.len()];
            g.scatter(&cot, &a, &mut scattered);
            g.scatter(&cot32, &a32, &mut scattered32);
            same(&format!("scatter {g:?}"), &scattered32, &scattered);
        }
    }
}
