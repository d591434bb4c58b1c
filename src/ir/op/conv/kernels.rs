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
mod direct;

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
