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
//! padding never wins). Its derivative goes through three ops: `max_pool2d_argmax(x)` says where
//! each window's maximum is (its index `row·W + col` in its channel's plane, as PyTorch's
//! `return_indices`, a float holding an integer), and two ops linear in their first operand read
//! it: `max_pool2d_select(t, a)` reads `t` there (the tangent), `max_pool2d_scatter(c, a)` adds
//! each `c` there (the cotangent). The argmax depends on the primal only: in a Gauss-Newton product it is a residual
//! computed once per step, and the product stays linear and free of searches. Average pooling is
//! a depthwise convolution with a constant filter (a DSL composite).
//!
//! Only the batch axis may be symbolic; channels, spatial sizes and kernels are fixed.
//!
//! IR text: a window is written `[stride_h, stride_w], [top, bottom, left, right],
//! [dilation_h, dilation_w]`:
//! `conv2d[[1, 1], [0, 0, 0, 0], [1, 1], groups]`, `conv2d_transpose[…, groups, [H, W]]`,
//! `conv2d_correlate[…, groups, [kH, kW]]`, `max_pool2d[[kH, kW], [1, 1], [0, 0, 0, 0], [1, 1]]`
//! (the kernel first, then the window), the same for `max_pool2d_argmax` and
//! `max_pool2d_select`, and `max_pool2d_scatter[…, [H, W]]` naming the input's spatial size.

mod kernels;
mod window;

pub use kernels::{Extent, ImageKernel};
pub use window::Window;

use super::{
    Built, F64Bits, Facts, Family, ParamReader, ShapeError, Work, add_optional, check_arity,
    common_dtype, numel, shape_err,
};
use crate::ir::error::Result;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::shape::{Bindings, Dim, Shape, TensorType};
use crate::ir::tensor::Element;
use ndarray::ArrayD;
use std::fmt;
use window::{ConvGeometry, PoolGeometry, read_ints};

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
    /// `x: [N, C, H, W] → [N, C, H', W']`, where each window's maximum is in its plane
    /// (`row·W + col`).
    MaxPool2dArgmax { kernel: [usize; 2], window: Window },
    /// `(t: [N, C, H, W], a: [N, C, H', W']) → [N, C, H', W']`: `t` at each window's `a`.
    MaxPool2dSelect { kernel: [usize; 2], window: Window },
    /// `(c, a: [N, C, H', W']) → [N, C, H, W]` of spatial size `input`: each `c` added at its
    /// window's `a`.
    MaxPool2dScatter {
        kernel: [usize; 2],
        window: Window,
        input: [usize; 2],
    },
}

/// The ops a max-pooling's derivative goes through.
#[derive(Clone, Copy)]
enum PoolFace {
    Argmax,
    Select,
    Scatter,
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

impl Conv {
    /// The kernel and window of a pooling op.
    fn pool_params(&self) -> ([usize; 2], Window) {
        match *self {
            Conv::MaxPool2d { kernel, window }
            | Conv::MaxPool2dArgmax { kernel, window }
            | Conv::MaxPool2dSelect { kernel, window }
            | Conv::MaxPool2dScatter { kernel, window, .. } => (kernel, window),
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

    /// The argmax, select or scatter (for inputs of spatial size `input`) of this pooling op.
    fn pool_face(&self, face: PoolFace, input: [usize; 2]) -> Conv {
        let (kernel, window) = self.pool_params();
        match face {
            PoolFace::Argmax => Conv::MaxPool2dArgmax { kernel, window },
            PoolFace::Select => Conv::MaxPool2dSelect { kernel, window },
            PoolFace::Scatter => Conv::MaxPool2dScatter {
                kernel,
                window,
                input,
            },
        }
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
                let g = ConvGeometry::new(window, groups, x, w).map_err(fail)?;
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
                let g =
                    ConvGeometry::new(window, groups, [c, input[0], input[1]], w).map_err(fail)?;
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
                let g = ConvGeometry::new(window, groups, x, [o, cg, kernel[0], kernel[1]])
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

    /// The geometry of a pooling op on operand types `inputs`, with the batch dimension.
    fn pool_types(&self, inputs: &[&TensorType]) -> Result<(Dim, PoolGeometry), ShapeError> {
        let op = self.name();
        let (kernel, window) = self.pool_params();
        let (batch, image, shape) = match *self {
            Conv::MaxPool2dScatter { input, .. } => {
                let (batch, [c, ..]) = image_dims(op, "cotangent", inputs[0])?;
                (batch, [c, input[0], input[1]], format!("{:?}", input))
            }
            _ => {
                let (batch, image) = image_dims(op, "input", inputs[0])?;
                (batch, image, inputs[0].shape.to_string())
            }
        };
        let g = PoolGeometry::new(kernel, window, image)
            .map_err(|e| ShapeError(format!("{op} of {shape}: {e}")))?;
        Ok((batch, g))
    }

    /// `max_pool2d(x)`'s argmax and the select that reads its maxima there.
    pub fn argmax_faces(&self) -> Option<[Conv; 2]> {
        matches!(self, Conv::MaxPool2d { .. })
            .then(|| [PoolFace::Argmax, PoolFace::Select].map(|face| self.pool_face(face, [0, 0])))
    }

    /// The select of the same windows as this pooling op (`None` for a convolution).
    pub fn pool_select(&self) -> Option<Conv> {
        match self {
            Conv::MaxPool2d { .. }
            | Conv::MaxPool2dArgmax { .. }
            | Conv::MaxPool2dSelect { .. }
            | Conv::MaxPool2dScatter { .. } => Some(self.pool_face(PoolFace::Select, [0, 0])),
            Conv::Conv2d { .. } | Conv::Conv2dTranspose { .. } | Conv::Conv2dCorrelate { .. } => {
                None
            }
        }
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
            Conv::MaxPool2dArgmax { .. } => "max_pool2d_argmax",
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
            "max_pool2d_argmax",
            "max_pool2d_select",
            "max_pool2d_scatter",
        ]
    }

    fn parse(name: &str, params: &mut dyn ParamReader) -> Option<Result<Conv>> {
        let face = match name {
            "max_pool2d" => None,
            "max_pool2d_argmax" => Some(PoolFace::Argmax),
            "max_pool2d_select" => Some(PoolFace::Select),
            "max_pool2d_scatter" => Some(PoolFace::Scatter),
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
            let pool = Conv::MaxPool2d { kernel, window };
            let op = match face {
                None => pool,
                Some(PoolFace::Scatter) => {
                    params.expect(',', &format!("after the window of `{name}`"))?;
                    let input = read_ints::<2>(params, &format!("the input size of `{name}`"))?;
                    pool.pool_face(PoolFace::Scatter, input)
                }
                Some(face) => pool.pool_face(face, [0, 0]),
            };
            params.expect(']', &format!("after the parameters of `{name}`"))?;
            Ok(op)
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
            | Conv::MaxPool2dArgmax { kernel, window }
            | Conv::MaxPool2dSelect { kernel, window } => {
                write!(f, "[{}, {}], ", kernel[0], kernel[1])?;
                window.write(f)?;
            }
            Conv::MaxPool2dScatter {
                kernel,
                window,
                input,
            } => {
                write!(f, "[{}, {}], ", kernel[0], kernel[1])?;
                window.write(f)?;
                write!(f, ", [{}, {}]", input[0], input[1])?;
            }
        }
        f.write_char(']')
    }

    fn has_params(&self) -> bool {
        true
    }

    fn infer_type(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let arity = match self {
            Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. } => 1,
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
            | Conv::MaxPool2dArgmax { .. }
            | Conv::MaxPool2dSelect { .. }
            | Conv::MaxPool2dScatter { .. } => {
                let (batch, g) = self.pool_types(inputs)?;
                // The derivative's argmax holds an index into a plane, exact only up to the
                // element type's significand.
                let exact = 1u64 << dtype.mantissa_bits();
                if (g.input[0] as u64).saturating_mul(g.input[1] as u64) > exact {
                    return shape_err(format!(
                        "{} of {}: planes of {:?} have more than {exact} elements, beyond the \
                         indices {} holds exactly",
                        self.name(),
                        inputs[0].shape,
                        g.input,
                        dtype.name()
                    ));
                }
                let pooled = image_shape(&batch, [g.channels, g.output[0], g.output[1]]);
                let image = image_shape(&batch, [g.channels, g.input[0], g.input[1]]);
                // The operands after the first (the argmax; for a scatter, the first too) are
                // pooled.
                let first_pooled = matches!(self, Conv::MaxPool2dScatter { .. });
                for (i, operand) in inputs.iter().enumerate().skip(usize::from(!first_pooled)) {
                    if operand.shape != pooled {
                        return shape_err(format!(
                            "{} of {}: operand {} must have the pooled shape {pooled} (the \
                             windows of an input {image})",
                            self.name(),
                            inputs
                                .iter()
                                .map(|t| t.shape.to_string())
                                .collect::<Vec<_>>()
                                .join(" and "),
                            i + 1
                        ));
                    }
                }
                match self {
                    Conv::MaxPool2dScatter { .. } => image,
                    _ => pooled,
                }
            }
        };
        Ok(TensorType::new(dtype, shape))
    }

    fn eval<T: Element>(&self, xs: &[&ArrayD<T>], _: &Bindings) -> Result<ArrayD<T>, String> {
        kernels::eval(*self, xs)
    }

    /// Convolutions: the product rule, each term the same op. Max-pooling: the tangent at the
    /// argmax. The argmax: zero (it moves only where the maximum is tied, a set of measure zero).
    /// Select and scatter: linear in the first operand, the argmax held fixed.
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
                let face = |face| super::Op::Conv(self.pool_face(face, [0, 0]));
                let argmax = g.apply(face(PoolFace::Argmax), &[xs[0]])?;
                g.apply(
                    face(PoolFace::Select),
                    &[ts[0].expect("one operand"), argmax],
                )
                .map(Some)
            }
            Conv::MaxPool2dArgmax { .. } => Ok(None),
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
            Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. } => {
                Err("it has no transpose rule (only linear ops do)")
            }
            Conv::MaxPool2dSelect { .. } | Conv::MaxPool2dScatter { .. } => {
                if linear[1] {
                    Err("the argmax (where the maxima are) depends on the linear inputs")
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
            Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. } => {
                unreachable!("check_linear rejects max_pool2d and its argmax")
            }
            Conv::MaxPool2dSelect { .. } => {
                let (_, geometry) = self.pool_types(&[g.ty(a)])?;
                let scatter = self.pool_face(PoolFace::Scatter, geometry.input);
                out.push((a, g.apply(conv(scatter), &[ct, b])?));
            }
            Conv::MaxPool2dScatter { .. } => {
                let select = self.pool_face(PoolFace::Select, [0, 0]);
                out.push((a, g.apply(conv(select), &[ct, b])?));
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
            // The argmax compares every tap of each window (as max-pooling does); select and
            // scatter move one element per window, and a select reads only those of its `t`.
            _ => {
                let (kernel, _) = self.pool_params();
                let pooled = match self {
                    Conv::MaxPool2dScatter { .. } => &inputs[0].shape,
                    _ => &output.shape,
                };
                let windows = numel(pooled, batch);
                let (taps, bytes) = match self {
                    Conv::MaxPool2d { .. } | Conv::MaxPool2dArgmax { .. } => {
                        ((kernel[0] as u64).saturating_mul(kernel[1] as u64), bytes)
                    }
                    Conv::MaxPool2dSelect { .. } => {
                        let gathered = Work::streamed(&[output, inputs[1]], output, batch);
                        (1, gathered)
                    }
                    _ => (1, bytes),
                };
                Work {
                    elementwise_flops: windows.saturating_mul(taps),
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
            // The first tap inside the input wins a constant window, which padding moves.
            Conv::MaxPool2dArgmax { .. } => None,
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
