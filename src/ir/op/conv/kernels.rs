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

    /// Whether [`ConvGeometry::forward`] runs [`direct::forward`]: f32 on a host with AVX-512,
    /// one group, stride and dilation 1, no padding, output rows of 17 to 32 columns and short
    /// patches (LeNet's first layer: 1 channel, 5×5, rows of 24). There the unfold of each image
    /// and a product with k = 25 cost more than a direct pass: 6.1 against 2.7–3.5 ms for 1000
    /// images on one Zen 4 core.
    fn direct<T: Element>(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
                && self.groups == 1
                && self.window == super::Window::unit()
                && (17..=32).contains(&self.output[1])
                && self.patch_len() <= DIRECT_MAX_PATCH
                && std::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
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
    /// for a first layer's shape in f32 (see [`ConvGeometry::direct`]), without the unfold.
    fn forward<T: Element>(&self, x: &[T], w: &[T], y: &mut [T]) {
        if self.direct::<T>() {
            // SAFETY: `direct` holds only for T = f32 on hosts with AVX-512, so the casts keep
            // the element type and the kernel's instructions exist; the sizes are the geometry's.
            unsafe {
                let x = std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len());
                let w = std::slice::from_raw_parts(w.as_ptr().cast::<f32>(), w.len());
                let y = std::slice::from_raw_parts_mut(y.as_mut_ptr().cast::<f32>(), y.len());
                let images = x.chunks_exact(self.image_len());
                for (x, y) in images.zip(y.chunks_exact_mut(self.out_image_len())) {
                    direct::forward::<6>(self, x, w, y);
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
    /// `w_g += y_g · colsᵀ`.
    fn correlate<T: Element>(&self, x: &[T], y: &[T], w: &mut [T]) {
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

/// The longest patch (`C · kH · kW`) [`ConvGeometry::forward`] convolves directly: longer ones
/// give a product long enough for the GEMM to win.
const DIRECT_MAX_PATCH: usize = 64;

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

    /// `out = max_pool2d(x)`: each window's maximum.
    fn pool<T: Element>(&self, x: &[T], out: &mut [T]) {
        self.for_each_argmax(x, |window, at| out[window] = x[at]);
    }

    /// `out = max_pool2d_argmax(x)`: where each window's maximum is in its plane.
    fn argmax<T: Element>(&self, x: &[T], out: &mut [T]) {
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
        self.for_each_index(a, |window, at| {
            out[window] = at.map_or(T::zero(), |at| t[at]);
        });
    }

    /// `out = max_pool2d_scatter(c, a)`: each `c` added at its window's maximum `a`.
    fn scatter<T: Element>(&self, c: &[T], a: &[T], out: &mut [T]) {
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
    use super::ConvGeometry;
    use std::arch::x86_64::*;

    /// `y = conv2d(x, w)` for one image, stride and dilation 1, no padding, one group, an output
    /// row of 17..=32 columns: each output row of `OC` channels in `2·OC` accumulators while the
    /// taps run, `x`'s row segment loaded once per tap for all of them.
    ///
    /// # Safety
    /// The host must have AVX-512F, and `g` must meet [`ConvGeometry::direct`]'s conditions
    /// (then every masked load stays inside `x`'s row, as the output row and the filter span the
    /// input row exactly); `x`, `w` and `y` hold one image, the filter and one output image.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward<const OC: usize>(g: &ConvGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
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

    #[test]
    fn direct_forward_equals_the_unfold_and_product_in_f64() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        // Output rows of 17, 24 and 32 columns; 1 and 2 channels; 1, 6, 7 and 13 output
        // channels (not multiples of the kernel's 6); square and oblong filters.
        let cases = [
            ([1, 28, 28], [6, 1, 5, 5]),
            ([2, 20, 19], [7, 2, 3, 3]),
            ([1, 32, 36], [13, 1, 4, 5]),
            ([3, 9, 32], [1, 3, 2, 1]),
        ];
        for ([c, h, w], filter) in cases {
            let g = ConvGeometry::new(Window::unit(), 1, [c, h, w], filter).unwrap();
            assert!(g.direct::<f32>(), "{g:?}");
            assert!(!g.direct::<f64>());
            let images = 3;
            let x: Vec<f64> = (0..images * c * h * w)
                .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
                .collect();
            let k: Vec<f64> = (0..g.filter_len())
                .map(|i| ((i * 13) % 29) as f64 / 14.0 - 1.0)
                .collect();
            let mut expected = vec![0.0; images * g.out_image_len()];
            g.forward(&x, &k, &mut expected);
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let k32: Vec<f32> = k.iter().map(|&v| v as f32).collect();
            let mut direct = vec![f32::NAN; expected.len()];
            g.forward(&x32, &k32, &mut direct);
            for (i, (&d, &e)) in direct.iter().zip(&expected).enumerate() {
                // f32 operands rounded once, sums of at most 64 products of |x| ≤ 1, |k| ≤ 1.
                assert!(
                    (f64::from(d) - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "{g:?}, element {i}: {d} against {e}"
                );
            }
        }
    }
}
