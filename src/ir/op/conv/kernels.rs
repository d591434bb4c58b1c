//! The family's kernels, shared by the interpreter and the JIT: convolution as im2col + GEMM per
//! image and group (its transposes: col2im, and a correlation GEMM), max-pooling by argmax.
//!
//! Each kernel works on a run of whole images in row-major `[n, C, H, W]` slices, so that the
//! JIT can give each thread its own images; an image's result never depends on the others'.

use super::window::{ConvGeometry, PoolGeometry};
use super::{Conv, ShapeError};
use crate::ir::shape::{Shape, TensorType};
use crate::ir::tensor::Element;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn, s};

/// A convolution or pooling op with every size but the batch fixed: what runs on a run of images.
#[derive(Clone, Copy, Debug)]
pub enum ImageKernel {
    /// `conv2d(x, w)`.
    Forward(ConvGeometry),
    /// `conv2d_transpose(y, w)`.
    Transpose(ConvGeometry),
    /// `conv2d_correlate(x, y)`.
    Correlate(ConvGeometry),
    /// `max_pool2d(x)`.
    Pool(PoolGeometry),
    /// `max_pool2d_select(t, x)`.
    Select(PoolGeometry),
    /// `max_pool2d_scatter(c, x)`.
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
            ImageKernel::Pool(g) => vec![PerImage(g.image_len())],
            ImageKernel::Select(g) => vec![PerImage(g.image_len()), PerImage(g.image_len())],
            ImageKernel::Scatter(g) => vec![PerImage(g.out_image_len()), PerImage(g.image_len())],
        }
    }

    /// What one call writes.
    pub fn output(&self) -> Extent {
        match self {
            ImageKernel::Forward(g) => Extent::PerImage(g.out_image_len()),
            ImageKernel::Transpose(g) => Extent::PerImage(g.image_len()),
            ImageKernel::Correlate(g) => Extent::Whole(g.filter_len()),
            ImageKernel::Pool(g) | ImageKernel::Select(g) => Extent::PerImage(g.out_image_len()),
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
            ImageKernel::Select(_) => "max_pool2d_select",
            ImageKernel::Scatter(_) => "max_pool2d_scatter",
        }
    }

    /// Floating-point operations on `images` images: 2 per multiply-add of a convolution, one
    /// per tap compared in a window.
    pub fn flops(&self, images: u64) -> f64 {
        let per_image = match self {
            ImageKernel::Forward(g) | ImageKernel::Transpose(g) | ImageKernel::Correlate(g) => {
                2 * g.out_image_len() * g.patch_len()
            }
            ImageKernel::Pool(g) | ImageKernel::Select(g) | ImageKernel::Scatter(g) => {
                g.out_image_len() * g.kernel[0] * g.kernel[1]
            }
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
            ImageKernel::Pool(g) => g.select(operands[0], operands[0], out),
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

    /// For each row `(c, i, j)` of the unfolded matrix `[C/groups · kH · kW, oh · ow]` of one
    /// group of one image and each output row `y` whose taps read inside the input:
    /// `f(at, from, len)`: the `len` elements of the matrix from `at` on read the input from
    /// `from` on, `stride_w` apart. (The other elements read padding.)
    fn for_each_tap_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.output;
        let [h, w] = self.input;
        let win = &self.window;
        for c in 0..self.group_channels() {
            for i in 0..kh {
                let (ys, ih) = win.outputs_reading_inside(0, i, h, oh);
                for j in 0..kw {
                    let (xs, iw) = win.outputs_reading_inside(1, j, w, ow);
                    let row = ((c * kh + i) * kw + j) * oh * ow;
                    for (k, y) in ys.clone().enumerate() {
                        let from = (c * h + ih + k * win.stride[0]) * w + iw;
                        f(row + y * ow + xs.start, from, xs.len());
                    }
                }
            }
        }
    }

    /// The unfolded input (im2col) of the group whose channels are `x` (`C/groups · H · W`
    /// values), into `cols` (`[C/groups · kH · kW, oh · ow]`, zero where the taps read padding).
    fn unfold<T: Element>(&self, x: &[T], cols: &mut Array2<T>) {
        if self.window.padding != [[0, 0], [0, 0]] {
            cols.fill(T::zero());
        }
        let out = cols.as_slice_mut().expect("a new row-major array");
        let stride = self.window.stride[1];
        self.for_each_tap_run(|at, from, len| {
            let out = &mut out[at..at + len];
            if stride == 1 {
                out.copy_from_slice(&x[from..from + len]);
            } else {
                let x = x[from..].iter().step_by(stride);
                out.iter_mut().zip(x).for_each(|(o, &x)| *o = x);
            }
        });
    }

    /// The transpose of [`ConvGeometry::unfold`]: adds each element of `cols` to the input
    /// position it was read from (col2im).
    fn fold_into<T: Element>(&self, cols: &Array2<T>, x: &mut [T]) {
        let cols = cols.as_slice().expect("a new row-major array");
        let stride = self.window.stride[1];
        self.for_each_tap_run(|at, from, len| {
            let x = x[from..].iter_mut().step_by(stride);
            x.zip(&cols[at..at + len]).for_each(|(x, &c)| *x = *x + c);
        });
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

    /// The filter as the matrix `[O, C/groups · kH · kW]`.
    fn filter_matrix<'a, T>(&self, w: &'a [T]) -> ArrayView2<'a, T> {
        ArrayView2::from_shape((self.out_channels, self.patch_len()), w).expect("the filter's size")
    }

    /// One output image as the matrix `[O, oh · ow]`.
    fn out_matrix<'a, T>(&self, y: &'a [T]) -> ArrayView2<'a, T> {
        ArrayView2::from_shape((self.out_channels, self.output_len()), y).expect("an image's size")
    }

    /// For each image of `x` and each group: the unfolded input in `cols`, and `f(image, g, cols)`.
    fn for_each_group<T: Element>(&self, x: &[T], mut f: impl FnMut(usize, usize, &Array2<T>)) {
        let mut cols = Array2::zeros((self.patch_len(), self.output_len()));
        for (b, image) in x.chunks_exact(self.image_len()).enumerate() {
            for g in 0..self.groups {
                self.unfold(&image[self.input_group(g)], &mut cols);
                f(b, g, &cols);
            }
        }
    }

    /// `y = conv2d(x, w)` for the images of `x`.
    fn forward<T: Element>(&self, x: &[T], w: &[T], y: &mut [T]) {
        let w = self.filter_matrix(w);
        let (image_len, out_len) = (self.out_image_len(), self.output_len());
        self.for_each_group(x, |b, g, cols| {
            let rows = self.out_rows(g);
            let at = b * image_len + rows.start * out_len;
            let out = &mut y[at..at + rows.len() * out_len];
            let mut out = ArrayViewMut2::from_shape((rows.len(), out_len), out).expect("sized");
            general_mat_mul(T::one(), &w.slice(s![rows, ..]), cols, T::zero(), &mut out);
        });
    }

    /// `x = conv2d_transpose(y, w)` for the images of `y`.
    fn transpose<T: Element>(&self, y: &[T], w: &[T], x: &mut [T]) {
        let w = self.filter_matrix(w);
        x.fill(T::zero());
        let mut cols = Array2::zeros((self.patch_len(), self.output_len()));
        let images = y.chunks_exact(self.out_image_len());
        for (image, x) in images.zip(x.chunks_exact_mut(self.image_len())) {
            let image = self.out_matrix(image);
            for g in 0..self.groups {
                let rows = self.out_rows(g);
                let wg = w.slice(s![rows.clone(), ..]);
                let yg = image.slice(s![rows, ..]);
                general_mat_mul(T::one(), &wg.t(), &yg, T::zero(), &mut cols);
                self.fold_into(&cols, &mut x[self.input_group(g)]);
            }
        }
    }

    /// `w = conv2d_correlate(x, y)`: the sum over the images of `x` and `y`.
    fn correlate<T: Element>(&self, x: &[T], y: &[T], w: &mut [T]) {
        w.fill(T::zero());
        let mut w =
            ArrayViewMut2::from_shape((self.out_channels, self.patch_len()), w).expect("sized");
        let image_len = self.out_image_len();
        self.for_each_group(x, |b, g, cols| {
            let image = self.out_matrix(&y[b * image_len..(b + 1) * image_len]);
            let rows = self.out_rows(g);
            let yg = image.slice(s![rows.clone(), ..]);
            let mut wg = w.slice_mut(s![rows, ..]);
            general_mat_mul(T::one(), &yg, &cols.t(), T::one(), &mut wg);
        });
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
        let [kh, kw] = self.kernel;
        let win = &self.window;
        let [dh, dw] = win.dilation;
        let mut window = 0;
        for base in (0..x.len()).step_by(h * w) {
            for y in 0..oh {
                let (is, ih) = win.taps_inside(0, y, h, kh);
                for xo in 0..ow {
                    let (js, iw) = win.taps_inside(1, xo, w, kw);
                    let mut best = base + ih * w + iw;
                    for i in 0..is.len() {
                        let row = base + (ih + i * dh) * w + iw;
                        for at in (row..).step_by(dw).take(js.len()) {
                            if x[at] > x[best] || (x[at].is_nan() && !x[best].is_nan()) {
                                best = at;
                            }
                        }
                    }
                    f(window, best);
                    window += 1;
                }
            }
        }
    }

    /// `out = max_pool2d_select(t, x)`: `t` at each window's argmax of `x`.
    fn select<T: Element>(&self, t: &[T], x: &[T], out: &mut [T]) {
        self.for_each_argmax(x, |window, at| out[window] = t[at]);
    }

    /// `out = max_pool2d_scatter(c, x)`: each `c` added at its window's argmax of `x`.
    fn scatter<T: Element>(&self, c: &[T], x: &[T], out: &mut [T]) {
        out.fill(T::zero());
        self.for_each_argmax(x, |window, at| out[at] = out[at] + c[window]);
    }
}
