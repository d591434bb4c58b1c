//! The interpreter's kernels: convolution as im2col + GEMM per group (and its two
//! transposes, col2im and a correlation GEMM), max-pooling by argmax.

use super::super::operands;
use super::Conv;
use super::window::{ConvGeometry, PoolGeometry};
use crate::ir::tensor::Element;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn, s};

/// `op` evaluated on `xs`, or why the operands do not fit it.
pub(super) fn eval<T: Element>(op: Conv, xs: &[&ArrayD<T>]) -> Result<ArrayD<T>, String> {
    match op {
        Conv::Conv2d { window, groups } => {
            let [x, w] = operands(xs)?;
            let [n, c, h, wd] = dims4(x, "the input")?;
            let wdims = dims4(w, "the filter")?;
            let g = ConvGeometry::new(window, groups, n, [c, h, wd], wdims)?;
            let x = x.as_standard_layout();
            let w = matrix(w, g.out_channels);
            Ok(g.forward(x.as_slice().expect("standard layout"), w.view()))
        }
        Conv::Conv2dTranspose {
            window,
            groups,
            input,
        } => {
            let [y, w] = operands(xs)?;
            let [n, o, oh, ow] = dims4(y, "the cotangent")?;
            let wdims = dims4(w, "the filter")?;
            let c = wdims[1] * groups;
            let g = ConvGeometry::new(window, groups, n, [c, input[0], input[1]], wdims)?;
            if [g.out_channels, g.output[0], g.output[1]] != [o, oh, ow] {
                return Err(format!(
                    "the cotangent of shape {:?} does not fit the convolution",
                    y.shape()
                ));
            }
            let y = matrix(y, n * o);
            let w = matrix(w, o);
            Ok(g.transpose(y.view(), w.view()))
        }
        Conv::Conv2dCorrelate {
            window,
            groups,
            kernel,
        } => {
            let [x, y] = operands(xs)?;
            let [n, c, h, wd] = dims4(x, "the input")?;
            let [ny, o, oh, ow] = dims4(y, "the output")?;
            let cg = c / groups.max(1);
            let g =
                ConvGeometry::new(window, groups, n, [c, h, wd], [o, cg, kernel[0], kernel[1]])?;
            if ny != n || g.output != [oh, ow] {
                return Err(format!(
                    "the output of shape {:?} does not fit the convolution",
                    y.shape()
                ));
            }
            let x = x.as_standard_layout();
            let y = matrix(y, n * o);
            Ok(g.correlate(x.as_slice().expect("standard layout"), y.view()))
        }
        Conv::MaxPool2d { kernel, window }
        | Conv::MaxPool2dSelect { kernel, window }
        | Conv::MaxPool2dScatter { kernel, window } => {
            let x = *xs.last().ok_or("has no operands")?;
            let dims = dims4(x, "the input")?;
            let g = PoolGeometry::new(kernel, window, dims)?;
            let x = x.as_standard_layout();
            let x = x.as_slice().expect("standard layout");
            let argmaxes = g.argmaxes(x);
            let pooled = g.output_shape();
            let gather = |t: &[T]| {
                let values = argmaxes.iter().map(|&i| t[i]).collect();
                ArrayD::from_shape_vec(IxDyn(&pooled), values).expect("one per window")
            };
            let [first, _] = match op {
                Conv::MaxPool2d { .. } => {
                    operands::<_, 1>(xs)?;
                    return Ok(gather(x));
                }
                _ => operands(xs)?,
            };
            let expected = match op {
                Conv::MaxPool2dSelect { .. } => &dims[..],
                _ => &pooled[..],
            };
            if first.shape() != expected {
                return Err(format!(
                    "the first operand's shape {:?} is not {expected:?}",
                    first.shape()
                ));
            }
            let first = first.as_standard_layout();
            let first = first.as_slice().expect("standard layout");
            if let Conv::MaxPool2dSelect { .. } = op {
                return Ok(gather(first));
            }
            let mut out = vec![T::zero(); x.len()];
            for (&at, &v) in argmaxes.iter().zip(first) {
                out[at] = out[at] + v;
            }
            Ok(ArrayD::from_shape_vec(IxDyn(&dims), out).expect("x's size"))
        }
    }
}

/// The four sizes of a rank-4 array, or an error naming `what`.
fn dims4<T>(x: &ArrayD<T>, what: &str) -> Result<[usize; 4], String> {
    x.shape()
        .try_into()
        .map_err(|_| format!("{what} must have rank 4, got shape {:?}", x.shape()))
}

impl ConvGeometry {
    /// For each tap `(i, j)` and output position `(oh, ow)`: the input position it reads
    /// (`None` in the padding), as `f(row, col, input offset)` over the unfolded matrix
    /// `[C/groups · kH · kW, oh · ow]` of one group of one image.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.output;
        let [h, w] = self.input;
        let win = &self.window;
        for c in 0..self.group_channels() {
            for i in 0..kh {
                for j in 0..kw {
                    let row = (c * kh + i) * kw + j;
                    for y in 0..oh {
                        let ih = (y * win.stride[0] + i * win.dilation[0])
                            .checked_sub(win.padding[0][0])
                            .filter(|&ih| ih < h);
                        let Some(ih) = ih else { continue };
                        for x in 0..ow {
                            let iw = (x * win.stride[1] + j * win.dilation[1])
                                .checked_sub(win.padding[1][0])
                                .filter(|&iw| iw < w);
                            if let Some(iw) = iw {
                                f(row, y * ow + x, (c * h + ih) * w + iw);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The unfolded input (im2col) of the group whose channels are `x` (`C/groups · H · W`
    /// values), into `cols` (`[C/groups · kH · kW, oh · ow]`, zero where the taps read padding).
    fn unfold<T: Element>(&self, x: &[T], cols: &mut Array2<T>) {
        cols.fill(T::zero());
        let out = cols.as_slice_mut().expect("a new row-major array");
        let n = self.output_len();
        self.for_each_tap(|row, col, at| out[row * n + col] = x[at]);
    }

    /// The transpose of [`ConvGeometry::unfold`]: adds each element of `cols` to the input
    /// position it was read from (col2im).
    fn fold_into<T: Element>(&self, cols: &Array2<T>, x: &mut [T]) {
        let cols = cols.as_slice().expect("a new row-major array");
        let n = self.output_len();
        self.for_each_tap(|row, col, at| x[at] = x[at] + cols[row * n + col]);
    }

    /// Offset of group `g` of image `b` in a row-major `[N, C, H, W]` input.
    fn input_group(&self, b: usize, g: usize) -> std::ops::Range<usize> {
        let len = self.group_channels() * self.input_len();
        let start = (b * self.channels + g * self.group_channels()) * self.input_len();
        start..start + len
    }

    /// Rows of group `g` in a filter viewed as `[O, C/groups · kH · kW]`, or in an output viewed
    /// as `[O, oh · ow]`.
    fn out_rows(&self, g: usize) -> std::ops::Range<usize> {
        g * self.group_out_channels()..(g + 1) * self.group_out_channels()
    }

    /// For each image and group: the unfolded input in `cols`, and `f(b, g, cols)`.
    fn for_each_group<T: Element>(&self, x: &[T], mut f: impl FnMut(usize, usize, &Array2<T>)) {
        let mut cols = Array2::zeros((self.patch_len(), self.output_len()));
        for b in 0..self.batch {
            for g in 0..self.groups {
                self.unfold(&x[self.input_group(b, g)], &mut cols);
                f(b, g, &cols);
            }
        }
    }

    /// `y = conv2d(x, w)`.
    fn forward<T: Element>(&self, x: &[T], w: ArrayView2<T>) -> ArrayD<T> {
        let (o, n) = (self.out_channels, self.output_len());
        let mut y = Array2::zeros((self.batch * o, n));
        self.for_each_group(x, |b, g, cols| {
            let rows = self.out_rows(g);
            let mut out = y.slice_mut(s![b * o + rows.start..b * o + rows.end, ..]);
            general_mat_mul(T::one(), &w.slice(s![rows, ..]), cols, T::zero(), &mut out);
        });
        let [oh, ow] = self.output;
        y.into_shape_with_order(IxDyn(&[self.batch, o, oh, ow]))
            .expect("the sizes multiply up")
    }

    /// `x = conv2d_transpose(y, w)`.
    fn transpose<T: Element>(&self, y: ArrayView2<T>, w: ArrayView2<T>) -> ArrayD<T> {
        let o = self.out_channels;
        let mut x = vec![T::zero(); self.batch * self.channels * self.input_len()];
        let mut cols = Array2::zeros((self.patch_len(), self.output_len()));
        for b in 0..self.batch {
            for g in 0..self.groups {
                let rows = self.out_rows(g);
                let yg = y.slice(s![b * o + rows.start..b * o + rows.end, ..]);
                let wg = w.slice(s![rows, ..]);
                general_mat_mul(T::one(), &wg.t(), &yg, T::zero(), &mut cols);
                self.fold_into(&cols, &mut x[self.input_group(b, g)]);
            }
        }
        let [h, w] = self.input;
        ArrayD::from_shape_vec(IxDyn(&[self.batch, self.channels, h, w]), x)
            .expect("the sizes multiply up")
    }

    /// `w = conv2d_correlate(x, y)`.
    fn correlate<T: Element>(&self, x: &[T], y: ArrayView2<T>) -> ArrayD<T> {
        let o = self.out_channels;
        let mut w = Array2::zeros((o, self.patch_len()));
        self.for_each_group(x, |b, g, cols| {
            let rows = self.out_rows(g);
            let yg = y.slice(s![b * o + rows.start..b * o + rows.end, ..]);
            let mut wg: ArrayViewMut2<T> = w.slice_mut(s![rows, ..]);
            general_mat_mul(T::one(), &yg, &cols.t(), T::one(), &mut wg);
        });
        let [kh, kw] = self.kernel;
        w.into_shape_with_order(IxDyn(&[o, self.group_channels(), kh, kw]))
            .expect("the sizes multiply up")
    }
}

/// `x` as a row-major matrix of `rows` rows.
fn matrix<T: Element>(x: &ArrayD<T>, rows: usize) -> Array2<T> {
    let cols = x.len().checked_div(rows).unwrap_or(0);
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, cols))
        .expect("the caller checked the sizes")
}

impl PoolGeometry {
    /// The flat index into `x` of each window's maximum, in output order: the first maximum,
    /// NaN counting as larger than any number. (The padding rule leaves every window at least
    /// one tap inside the input.)
    fn argmaxes<T: Element>(&self, x: &[T]) -> Vec<usize> {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        let [kh, kw] = self.kernel;
        let win = &self.window;
        let taps = |o: usize, k: usize, axis: usize, n: usize| {
            (0..k).filter_map(move |i| {
                (o * win.stride[axis] + i * win.dilation[axis])
                    .checked_sub(win.padding[axis][0])
                    .filter(|&p| p < n)
            })
        };
        let planes = self.batch * self.channels;
        let mut out = Vec::with_capacity(planes * oh * ow);
        for plane in 0..planes {
            let base = plane * h * w;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut best: Option<usize> = None;
                    for ih in taps(y, kh, 0, h) {
                        for iw in taps(xo, kw, 1, w) {
                            let at = base + ih * w + iw;
                            let better = match best {
                                None => true,
                                Some(b) => x[at] > x[b] || (x[at].is_nan() && !x[b].is_nan()),
                            };
                            if better {
                                best = Some(at);
                            }
                        }
                    }
                    out.push(best.expect("every window has a tap inside the input"));
                }
            }
        }
        out
    }

    fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.output[0], self.output[1]]
    }
}
