//! Convolution and pooling over images, NCHW, as PyTorch defines them.
//!
//! `conv2d(x, w)` takes `x: [N, C, H, W]` and `w: [O, C/groups, kH, kW]` (OIHW) and is a
//! cross-correlation (no kernel flip). It is bilinear, and its two transposes are ops of their
//! own so that every derivative stays in the family: with `T(x, w, y) = ⟨y, conv2d(x, w)⟩`,
//! - `conv2d(x, w)` is ∂T/∂y,
//! - `conv2d_transpose(y, w)` is ∂T/∂x (the transposed convolution: each output spreads back
//!   over the taps that read it; it names the input's spatial size, which a stride leaves
//!   ambiguous),
//! - `conv2d_correlate(x, y)` is ∂T/∂w (the correlation of input and output; it names the
//!   kernel size).
//!
//! Each of the three is bilinear, and transposing it in one operand gives another of the three.
//!
//! `max_pool2d(x)` takes each window's maximum (the first on ties; NaN counts as the maximum;
//! padding never wins). Its derivative goes through two ops linear in their first operand, in
//! which `x` only says where each window's maximum is: `max_pool2d_select(t, x)` reads `t` at
//! the argmaxes of `x` (the tangent), `max_pool2d_scatter(c, x)` adds each `c` at its window's
//! argmax (the cotangent). `x` being held fixed, it is a primal value: in a Gauss-Newton
//! product it is a residual, and the product stays linear. Average pooling is a depthwise
//! convolution with a constant filter (a DSL composite).
//!
//! Only the batch axis may be symbolic; channels, spatial sizes and kernels are fixed.
//!
//! IR text: a window is written `[stride_h, stride_w], [top, bottom, left, right],
//! [dilation_h, dilation_w]`:
//! `conv2d[[1, 1], [0, 0, 0, 0], [1, 1], groups]`, `conv2d_transpose[…, groups, [H, W]]`,
//! `conv2d_correlate[…, groups, [kH, kW]]`, `max_pool2d[[kH, kW], [1, 1], [0, 0, 0, 0], [1, 1]]`
//! (the kernel first, then the window), and the same for `max_pool2d_select` and
//! `max_pool2d_scatter`.

use super::{
    Built, F64Bits, Facts, Family, ParamReader, ShapeError, Work, add_optional, check_arity,
    common_dtype, numel, operands, shape_err,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Dim, Shape, TensorType};
use crate::ir::tensor::Element;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, IxDyn, s};
use std::fmt;

/// Where a sliding window reads, per spatial axis (H, W): its stride, the zeros padded before
/// and after the input, and the spacing of its taps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub stride: [usize; 2],
    /// `[[top, bottom], [left, right]]`.
    pub padding: [[usize; 2]; 2],
    pub dilation: [usize; 2],
}

impl Window {
    /// Stride 1, no padding, no dilation.
    pub fn unit() -> Window {
        Window {
            stride: [1, 1],
            padding: [[0, 0], [0, 0]],
            dilation: [1, 1],
        }
    }

    /// The output's spatial size for an input of spatial size `input` and a kernel of `kernel`
    /// taps, or why the window does not fit (PyTorch's floor rule: a ragged border is dropped).
    pub fn output_size(&self, input: [usize; 2], kernel: [usize; 2]) -> Result<[usize; 2], String> {
        let mut out = [0; 2];
        for axis in 0..2 {
            let (stride, dilation) = (self.stride[axis], self.dilation[axis]);
            if stride == 0 || dilation == 0 || kernel[axis] == 0 {
                return Err(format!(
                    "stride {:?}, dilation {:?} and kernel {kernel:?} must be at least 1",
                    self.stride, self.dilation
                ));
            }
            let [before, after] = self.padding[axis];
            let span = (kernel[axis] - 1)
                .checked_mul(dilation)
                .and_then(|n| n.checked_add(1));
            let padded = input[axis]
                .checked_add(before)
                .and_then(|n| n.checked_add(after));
            match (span, padded) {
                (Some(span), Some(padded)) if span <= padded => {
                    out[axis] = (padded - span) / stride + 1
                }
                _ => {
                    return Err(format!(
                        "a kernel of {kernel:?} taps with dilation {:?} does not fit in the \
                         input {input:?} padded by {:?}",
                        self.dilation, self.padding
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The kernel's extent along `axis`: `dilation·(k − 1) + 1`.
    fn span(&self, kernel: [usize; 2], axis: usize) -> usize {
        self.dilation[axis] * (kernel[axis] - 1) + 1
    }

    fn read(params: &mut dyn ParamReader, op: &str) -> Result<Window> {
        let stride = read_ints::<2>(params, &format!("the stride of `{op}`"))?;
        params.expect(',', &format!("after the stride of `{op}`"))?;
        let [top, bottom, left, right] = read_ints::<4>(params, &format!("the padding of `{op}`"))?;
        params.expect(',', &format!("after the padding of `{op}`"))?;
        let dilation = read_ints::<2>(params, &format!("the dilation of `{op}`"))?;
        Ok(Window {
            stride,
            padding: [[top, bottom], [left, right]],
            dilation,
        })
    }

    fn write(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let [[top, bottom], [left, right]] = self.padding;
        let ([sh, sw], [dh, dw]) = (self.stride, self.dilation);
        write!(
            f,
            "[{sh}, {sw}], [{top}, {bottom}, {left}, {right}], [{dh}, {dw}]"
        )
    }
}

/// `[a, b, …]` of exactly `N` integers.
fn read_ints<const N: usize>(params: &mut dyn ParamReader, what: &str) -> Result<[usize; N]> {
    params.expect('[', &format!("before {what}"))?;
    let mut out = [0; N];
    for (i, slot) in out.iter_mut().enumerate() {
        if i > 0 {
            params.expect(',', &format!("in {what} ({N} integers)"))?;
        }
        *slot = params.integer(what)?;
    }
    params.expect(']', &format!("after {what} ({N} integers)"))?;
    Ok(out)
}

/// The convolution and pooling ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// `(x: [N, C, H, W], w: [O, C/groups, kH, kW]) → y: [N, O, H', W']`.
    Conv2d { window: Window, groups: usize },
    /// `(y, w) → x` of spatial size `input`: the transpose of `conv2d` in `x`.
    Conv2dTranspose {
        window: Window,
        groups: usize,
        input: [usize; 2],
    },
    /// `(x, y) → w` of spatial size `kernel`: the transpose of `conv2d` in `w`.
    Conv2dCorrelate {
        window: Window,
        groups: usize,
        kernel: [usize; 2],
    },
    /// `x: [N, C, H, W] → [N, C, H', W']`, each window's maximum.
    MaxPool2d { kernel: [usize; 2], window: Window },
    /// `(t, x) → [N, C, H', W']`: `t` (shaped as `x`) at each window's argmax of `x`.
    MaxPool2dSelect { kernel: [usize; 2], window: Window },
    /// `(c: [N, C, H', W'], x) → x`'s shape: each `c` added at its window's argmax of `x`.
    MaxPool2dScatter { kernel: [usize; 2], window: Window },
}

/// The sizes of one convolution, all three of its faces: input `[n, c, h, w]`, filter
/// `[o, c/groups, kh, kw]`, output `[n, o, oh, ow]`.
#[derive(Clone, Copy, Debug)]
struct ConvGeometry {
    batch: usize,
    channels: usize,
    input: [usize; 2],
    out_channels: usize,
    kernel: [usize; 2],
    output: [usize; 2],
    groups: usize,
    window: Window,
}

/// The sizes of one pooling: input `[n, c, h, w]`, output `[n, c, oh, ow]`.
#[derive(Clone, Copy, Debug)]
struct PoolGeometry {
    batch: usize,
    channels: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    window: Window,
}

/// The four sizes of a rank-4 array, or an error naming `what`.
fn dims4<T>(x: &ArrayD<T>, what: &str) -> Result<[usize; 4], String> {
    x.shape()
        .try_into()
        .map_err(|_| format!("{what} must have rank 4, got shape {:?}", x.shape()))
}

/// `[C, H, W]` of a `[N, C, H, W]` type (fixed sizes), with its batch dimension.
fn image_dims(op: &str, what: &str, t: &TensorType) -> Result<(Dim, [usize; 3]), ShapeError> {
    let d = t.shape.dims();
    let fixed = |i: usize| {
        d.get(i)
            .and_then(Dim::as_fixed)
            .and_then(|n| usize::try_from(n).ok())
    };
    match (d.len(), fixed(1), fixed(2), fixed(3)) {
        (4, Some(c), Some(h), Some(w)) => Ok((d[0].clone(), [c, h, w])),
        (4, ..) => shape_err(format!(
            "{op} needs fixed channel and spatial sizes of its {what}, got {}",
            t.shape
        )),
        _ => shape_err(format!(
            "{op} needs a rank-4 {what} [N, C, H, W], got {}",
            t.shape
        )),
    }
}

/// The fixed sizes of a rank-4 filter type `[O, C/groups, kH, kW]`.
fn filter_dims(op: &str, t: &TensorType) -> Result<[usize; 4], ShapeError> {
    let d = t.shape.dims();
    let fixed: Option<Vec<usize>> = d
        .iter()
        .map(|x| x.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect();
    match fixed.map(<[usize; 4]>::try_from) {
        Some(Ok(dims)) => Ok(dims),
        _ => shape_err(format!(
            "{op} needs a rank-4 filter [O, C/groups, kH, kW] of fixed sizes, got {}",
            t.shape
        )),
    }
}

fn image_shape(batch: &Dim, [c, h, w]: [usize; 3]) -> Shape {
    Shape(vec![
        batch.clone(),
        Dim::fixed(c as u64),
        Dim::fixed(h as u64),
        Dim::fixed(w as u64),
    ])
}

impl ConvGeometry {
    /// The geometry of `conv2d(x, w)` for `x: [batch, C, H, W]` and `w: [O, Cg, kH, kW]`, or
    /// why they do not make one.
    fn new(
        window: Window,
        groups: usize,
        batch: usize,
        [c, h, w]: [usize; 3],
        [o, cg, kh, kw]: [usize; 4],
    ) -> Result<ConvGeometry, String> {
        if groups == 0 {
            return Err("groups must be at least 1".into());
        }
        if c % groups != 0 || o % groups != 0 {
            return Err(format!(
                "{c} input and {o} output channels are not both divisible by groups = {groups}"
            ));
        }
        if cg != c / groups {
            return Err(format!(
                "the filter has {cg} input channels, but the input has {c} channels in \
                 {groups} group(s), {} each",
                c / groups
            ));
        }
        let output = window.output_size([h, w], [kh, kw])?;
        Ok(ConvGeometry {
            batch,
            channels: c,
            input: [h, w],
            out_channels: o,
            kernel: [kh, kw],
            output,
            groups,
            window,
        })
    }

    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    fn group_out_channels(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the unfolded input of one group: `C/groups · kH · kW`.
    fn patch_len(&self) -> usize {
        self.group_channels() * self.kernel[0] * self.kernel[1]
    }

    fn output_len(&self) -> usize {
        self.output[0] * self.output[1]
    }

    fn input_len(&self) -> usize {
        self.input[0] * self.input[1]
    }

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
    fn new(
        kernel: [usize; 2],
        window: Window,
        [n, c, h, w]: [usize; 4],
    ) -> Result<PoolGeometry, String> {
        let output = window.output_size([h, w], kernel)?;
        for axis in 0..2 {
            let half = window.span(kernel, axis) / 2;
            if window.padding[axis].iter().any(|&p| p > half) {
                return Err(format!(
                    "padding {:?} is more than half the kernel's extent (kernel {kernel:?}, \
                     dilation {:?})",
                    window.padding, window.dilation
                ));
            }
        }
        Ok(PoolGeometry {
            batch: n,
            channels: c,
            input: [h, w],
            kernel,
            output,
            window,
        })
    }

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

impl Conv {
    /// The kernel and window of a pooling op.
    fn pool_params(&self) -> ([usize; 2], Window) {
        match *self {
            Conv::MaxPool2d { kernel, window }
            | Conv::MaxPool2dSelect { kernel, window }
            | Conv::MaxPool2dScatter { kernel, window } => (kernel, window),
            _ => unreachable!("a pooling op"),
        }
    }

    /// The three faces of one convolution: `(conv2d, transpose, correlate)` for input size
    /// `input` and kernel `kernel`.
    fn faces(window: Window, groups: usize, input: [usize; 2], kernel: [usize; 2]) -> [Conv; 3] {
        [
            Conv::Conv2d { window, groups },
            Conv::Conv2dTranspose {
                window,
                groups,
                input,
            },
            Conv::Conv2dCorrelate {
                window,
                groups,
                kernel,
            },
        ]
    }

    /// The same-shaped pooling op in the role `make` gives it.
    fn pool(&self, make: fn([usize; 2], Window) -> Conv) -> Conv {
        let (kernel, window) = self.pool_params();
        make(kernel, window)
    }

    fn select(kernel: [usize; 2], window: Window) -> Conv {
        Conv::MaxPool2dSelect { kernel, window }
    }

    fn scatter(kernel: [usize; 2], window: Window) -> Conv {
        Conv::MaxPool2dScatter { kernel, window }
    }

    /// The geometry of a convolution op on operand types `inputs`, and the type of the
    /// operand (index) standing for each face: `(geometry, batch, [x, w, y] shapes)`.
    fn conv_types(&self, inputs: &[&TensorType]) -> Result<(Dim, ConvGeometry), ShapeError> {
        let op = self.name();
        let fail = |e: String| {
            let shapes: Vec<String> = inputs.iter().map(|t| t.shape.to_string()).collect();
            ShapeError(format!("{op} of {}: {e}", shapes.join(" and ")))
        };
        match *self {
            Conv::Conv2d { window, groups } => {
                let (batch, x) = image_dims(op, "input", inputs[0])?;
                let w = filter_dims(op, inputs[1])?;
                let g = ConvGeometry::new(window, groups, 0, x, w).map_err(fail)?;
                Ok((batch, g))
            }
            Conv::Conv2dTranspose {
                window,
                groups,
                input,
            } => {
                let (batch, [o, oh, ow]) = image_dims(op, "cotangent", inputs[0])?;
                let w = filter_dims(op, inputs[1])?;
                let c = w[1]
                    .checked_mul(groups)
                    .ok_or_else(|| fail("too many channels".into()))?;
                let g = ConvGeometry::new(window, groups, 0, [c, input[0], input[1]], w)
                    .map_err(fail)?;
                if [g.out_channels, g.output[0], g.output[1]] != [o, oh, ow] {
                    return Err(fail(format!(
                        "the output of this convolution is [{}, {}, {}] per image, not \
                         [{o}, {oh}, {ow}]",
                        g.out_channels, g.output[0], g.output[1]
                    )));
                }
                Ok((batch, g))
            }
            Conv::Conv2dCorrelate {
                window,
                groups,
                kernel,
            } => {
                let (batch, x) = image_dims(op, "input", inputs[0])?;
                let (batch_y, [o, oh, ow]) = image_dims(op, "output", inputs[1])?;
                if batch != batch_y {
                    return Err(fail("the batch sizes differ".into()));
                }
                let cg = x[0].checked_div(groups).unwrap_or(0);
                let g = ConvGeometry::new(window, groups, 0, x, [o, cg, kernel[0], kernel[1]])
                    .map_err(fail)?;
                if g.output != [oh, ow] {
                    return Err(fail(format!(
                        "the output of this convolution is {:?}, not [{oh}, {ow}]",
                        g.output
                    )));
                }
                Ok((batch, g))
            }
            _ => unreachable!("a convolution op"),
        }
    }

    /// The geometry of a pooling op on operand types `inputs` and the input's type.
    fn pool_types(&self, inputs: &[&TensorType]) -> Result<(Dim, PoolGeometry), ShapeError> {
        let op = self.name();
        let x = inputs[inputs.len() - 1];
        let (batch, [c, h, w]) = image_dims(op, "input", x)?;
        let (kernel, window) = self.pool_params();
        let g = PoolGeometry::new(kernel, window, [1, c, h, w])
            .map_err(|e| ShapeError(format!("{op} of {}: {e}", x.shape)))?;
        Ok((batch, g))
    }

    /// The FLOPs of one convolution face: `2 · |y| · C/groups · kH · kW`.
    fn conv_flops(g: &ConvGeometry, batch: u64) -> u64 {
        [
            batch,
            g.out_channels as u64,
            g.output_len() as u64,
            g.patch_len() as u64,
            2,
        ]
        .iter()
        .fold(1u64, |n, &k| n.saturating_mul(k))
    }
}

impl Family for Conv {
    fn name(&self) -> &'static str {
        match self {
            Conv::Conv2d { .. } => "conv2d",
            Conv::Conv2dTranspose { .. } => "conv2d_transpose",
            Conv::Conv2dCorrelate { .. } => "conv2d_correlate",
            Conv::MaxPool2d { .. } => "max_pool2d",
            Conv::MaxPool2dSelect { .. } => "max_pool2d_select",
            Conv::MaxPool2dScatter { .. } => "max_pool2d_scatter",
        }
    }

    fn names() -> Vec<&'static str> {
        vec![
            "conv2d",
            "conv2d_transpose",
            "conv2d_correlate",
            "max_pool2d",
            "max_pool2d_select",
            "max_pool2d_scatter",
        ]
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Conv>> {
        let pool: fn([usize; 2], Window) -> Conv = match name {
            "max_pool2d" => |kernel, window| Conv::MaxPool2d { kernel, window },
            "max_pool2d_select" => Conv::select,
            "max_pool2d_scatter" => Conv::scatter,
            "conv2d" | "conv2d_transpose" | "conv2d_correlate" => {
                return Some((|| {
                    params.expect('[', &format!("before the window of `{name}`"))?;
                    let window = Window::read(params, name)?;
                    params.expect(',', &format!("before the groups of `{name}`"))?;
                    let groups = params.integer("the groups")?;
                    let op = if name == "conv2d" {
                        Conv::Conv2d { window, groups }
                    } else {
                        params.expect(',', &format!("after the groups of `{name}`"))?;
                        let size = read_ints::<2>(params, &format!("the size of `{name}`"))?;
                        let [_, transposed, correlate] = Conv::faces(window, groups, size, size);
                        if name == "conv2d_transpose" {
                            transposed
                        } else {
                            correlate
                        }
                    };
                    params.expect(']', &format!("after the parameters of `{name}`"))?;
                    Ok(op)
                })());
            }
            _ => return None,
        };
        Some((|| {
            params.expect('[', &format!("before the kernel of `{name}`"))?;
            let kernel = read_ints::<2>(params, &format!("the kernel of `{name}`"))?;
            params.expect(',', &format!("after the kernel of `{name}`"))?;
            let window = Window::read(params, name)?;
            params.expect(']', &format!("after the window of `{name}`"))?;
            Ok(pool(kernel, window))
        })())
    }

    fn write_params(&self, f: &mut dyn fmt::Write, _: &dyn Fn(usize) -> String) -> fmt::Result {
        f.write_char('[')?;
        match self {
            Conv::Conv2d { window, groups } => {
                window.write(f)?;
                write!(f, ", {groups}")?;
            }
            Conv::Conv2dTranspose {
                window,
                groups,
                input: size,
            }
            | Conv::Conv2dCorrelate {
                window,
                groups,
                kernel: size,
            } => {
                window.write(f)?;
                write!(f, ", {groups}, [{}, {}]", size[0], size[1])?;
            }
            Conv::MaxPool2d { kernel, window }
            | Conv::MaxPool2dSelect { kernel, window }
            | Conv::MaxPool2dScatter { kernel, window } => {
                write!(f, "[{}, {}], ", kernel[0], kernel[1])?;
                window.write(f)?;
            }
        }
        f.write_char(']')
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let arity = match self {
            Conv::MaxPool2d { .. } => 1,
            _ => 2,
        };
        check_arity(self.name(), inputs.len(), arity)?;
        let dtype = common_dtype(self.name(), inputs)?;
        let shape = match self {
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                let (batch, g) = self.conv_types(inputs)?;
                match self {
                    Conv::Conv2d { .. } => {
                        image_shape(&batch, [g.out_channels, g.output[0], g.output[1]])
                    }
                    Conv::Conv2dTranspose { .. } => {
                        image_shape(&batch, [g.channels, g.input[0], g.input[1]])
                    }
                    _ => Shape::fixed(&[
                        g.out_channels as u64,
                        g.group_channels() as u64,
                        g.kernel[0] as u64,
                        g.kernel[1] as u64,
                    ]),
                }
            }
            Conv::MaxPool2d { .. }
            | Conv::MaxPool2dSelect { .. }
            | Conv::MaxPool2dScatter { .. } => {
                let (batch, g) = self.pool_types(inputs)?;
                let x = &inputs[arity - 1].shape;
                let pooled = image_shape(&batch, [g.channels, g.output[0], g.output[1]]);
                let (operand, expected) = match self {
                    Conv::MaxPool2d { .. } => (x, x),
                    Conv::MaxPool2dSelect { .. } => (&inputs[0].shape, x),
                    _ => (&inputs[0].shape, &pooled),
                };
                if operand != expected {
                    return shape_err(format!(
                        "{} of {operand} and {x}: the first operand must have shape {expected}",
                        self.name()
                    ));
                }
                match self {
                    Conv::MaxPool2dScatter { .. } => x.clone(),
                    _ => pooled,
                }
            }
        };
        Ok(TensorType::new(dtype, shape))
    }

    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], _: &Bindings) -> Result<ArrayD<T>, String> {
        match *self {
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
                let g = ConvGeometry::new(
                    window,
                    groups,
                    n,
                    [c, h, wd],
                    [o, cg, kernel[0], kernel[1]],
                )?;
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
                let [first, _] = match self {
                    Conv::MaxPool2d { .. } => {
                        operands::<_, 1>(xs)?;
                        return Ok(gather(x));
                    }
                    _ => operands(xs)?,
                };
                let expected = match self {
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
                if let Conv::MaxPool2dSelect { .. } = self {
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

    /// Convolutions: the product rule, each term the same op. Max-pooling: the tangent at the
    /// argmax. Select and scatter: linear in the first operand, constant in the second (the
    /// argmax moves only where the maximum is tied, a set of measure zero).
    fn jvp(&self, g: &mut Graph, _: NodeId, xs: &[NodeId], ts: &[Option<NodeId>]) -> Built {
        let op = super::Op::Conv(*self);
        match self {
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                let left = ts[0]
                    .map(|t| g.apply(op.clone(), &[t, xs[1]]))
                    .transpose()?;
                let right = ts[1]
                    .map(|t| g.apply(op.clone(), &[xs[0], t]))
                    .transpose()?;
                add_optional(g, left, right)
            }
            Conv::MaxPool2d { .. } => {
                let select = super::Op::Conv(self.pool(Conv::select));
                g.apply(select, &[ts[0].expect("one operand"), xs[0]])
                    .map(Some)
            }
            Conv::MaxPool2dSelect { .. } | Conv::MaxPool2dScatter { .. } => {
                ts[0].map(|t| g.apply(op, &[t, xs[1]])).transpose()
            }
        }
    }

    fn check_linear(&self, linear: &[bool]) -> Result<(), &'static str> {
        match self {
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                if linear.iter().all(|&l| l) {
                    Err("both operands of a convolution depend on the linear inputs")
                } else {
                    Ok(())
                }
            }
            Conv::MaxPool2d { .. } => Err("it has no transpose rule (only linear ops do)"),
            Conv::MaxPool2dSelect { .. } | Conv::MaxPool2dScatter { .. } => {
                if linear[1] {
                    Err("the pooled input (where the maxima are) depends on the linear inputs")
                } else {
                    Ok(())
                }
            }
        }
    }

    fn transpose(
        &self,
        g: &mut Graph,
        xs: &[NodeId],
        linear: &[bool],
        ct: NodeId,
    ) -> Result<Vec<(NodeId, NodeId)>, ShapeError> {
        let (a, b) = (xs[0], xs[1]);
        let conv = |op: Conv| super::Op::Conv(op);
        let mut out = Vec::with_capacity(1);
        match *self {
            Conv::Conv2d { window, groups }
            | Conv::Conv2dTranspose { window, groups, .. }
            | Conv::Conv2dCorrelate { window, groups, .. } => {
                // The face each operand and the result stand for: x, w or y of
                // T(x, w, y) = ⟨y, conv2d(x, w)⟩; the cotangent of an operand is the face that
                // computes it from the other operand and the result's cotangent.
                let (_, geometry) = self.conv_types(&[g.ty(a), g.ty(b)])?;
                let [forward, transposed, correlate] =
                    Conv::faces(window, groups, geometry.input, geometry.kernel);
                let (x_of, w_of) = match self {
                    // y = conv2d(x, w)
                    Conv::Conv2d { .. } => ((transposed, [ct, b]), (correlate, [a, ct])),
                    // x = conv2d_transpose(y, w)
                    Conv::Conv2dTranspose { .. } => ((forward, [ct, b]), (correlate, [ct, a])),
                    // w = conv2d_correlate(x, y)
                    _ => ((transposed, [b, ct]), (forward, [a, ct])),
                };
                if linear[0] {
                    out.push((a, g.apply(conv(x_of.0), &x_of.1)?));
                }
                if linear[1] {
                    out.push((b, g.apply(conv(w_of.0), &w_of.1)?));
                }
            }
            Conv::MaxPool2d { .. } => unreachable!("check_linear rejects max_pool2d"),
            Conv::MaxPool2dSelect { .. } => {
                out.push((a, g.apply(conv(self.pool(Conv::scatter)), &[ct, b])?));
            }
            Conv::MaxPool2dScatter { .. } => {
                out.push((a, g.apply(conv(self.pool(Conv::select)), &[ct, b])?));
            }
        }
        Ok(out)
    }

    fn work(&self, inputs: &[&TensorType], output: &TensorType, batch: u64) -> Work {
        let bytes = Work::streamed(inputs, output, batch);
        match self {
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                let Ok((n, g)) = self.conv_types(inputs) else {
                    return Work::default();
                };
                let n = super::dim_size(&n, batch);
                Work {
                    matmul_flops: Conv::conv_flops(&g, n),
                    bytes,
                    ..Work::default()
                }
            }
            // One comparison per tap of each window (select and scatter find the argmax again).
            _ => {
                let (kernel, _) = self.pool_params();
                let taps = (kernel[0] as u64).saturating_mul(kernel[1] as u64);
                let pooled = match self {
                    Conv::MaxPool2dScatter { .. } => &inputs[0].shape,
                    _ => &output.shape,
                };
                Work {
                    elementwise_flops: numel(pooled, batch).saturating_mul(taps),
                    bytes,
                    ..Work::default()
                }
            }
        }
    }

    fn fold(&self, inputs: &[&Facts], _: &TensorType) -> Option<f64> {
        let zero = Some(F64Bits::new(0.0));
        match self {
            // A convolution with a zero operand is zero (for finite values).
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                inputs.iter().any(|f| f.constant == zero).then_some(0.0)
            }
            // Every window holds at least one input element, and padding never wins.
            Conv::MaxPool2d { .. } | Conv::MaxPool2dSelect { .. } => {
                Some(inputs[0].constant?.get())
            }
            Conv::MaxPool2dScatter { .. } => (inputs[0].constant == zero).then_some(0.0),
        }
    }

    fn is_positive(&self, inputs: &[&Facts]) -> bool {
        match self {
            Conv::MaxPool2d { .. } | Conv::MaxPool2dSelect { .. } => inputs[0].positive,
            _ => false,
        }
    }
}
