//! The image builtins, as PyTorch spells them: `conv2d(x, w, stride, padding, dilation,
//! groups)`, `max_pool2d(x, kernel, stride, padding, dilation)`, `avg_pool2d(x, kernel, stride,
//! padding)` and `flatten(x)`. Sizes are an integer or a pair `[h, w]`; a conv's padding may
//! also be `"same"` or `"valid"` (quoted as in PyTorch, or bare). Average pooling is a depthwise convolution with the constant
//! filter `1/(kH·kW)` (zero padding counted, as PyTorch's default `count_include_pad`).

use super::builtins::Call;
use super::{Lowerer, Value, describe};
use crate::dsl::parser::{Expr, ExprKind};
use crate::ir::Diagnostic;
use crate::ir::graph::NodeId;
use crate::ir::op::{Conv, Op, Window};
use crate::ir::shape::{Dim, Shape, TensorType};

/// `conv2d(x, w, stride=1, padding=0, dilation=1, groups=1)`.
pub(super) fn conv2d(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.tensor_operand(call, 0, "the input of conv2d")?;
    let w = lowerer.tensor_operand(call, 1, "the filter of conv2d")?;
    let stride = lowerer.pair(call.args[2], 1, 1, "the stride")?;
    let dilation = lowerer.pair(call.args[4], 1, 1, "the dilation")?;
    let groups = match call.args[5] {
        None => 1,
        Some(expr) => lowerer.count(expr, 1, "groups")?,
    };
    let padding = match call.args[3] {
        Some(expr) if padding_word(expr) == Some("valid") => [[0, 0], [0, 0]],
        Some(expr) if padding_word(expr) == Some("same") => {
            if stride != [1, 1] {
                return Err(lowerer.error(
                    expr.span,
                    format!(
                        "padding=\"same\" needs stride 1 (as in PyTorch), found stride {stride:?}"
                    ),
                ));
            }
            // PyTorch's rule: the total d·(k − 1) split evenly, the odd one after.
            let kernel = lowerer.kernel_of(w);
            let mut padding = [[0, 0], [0, 0]];
            for axis in 0..2 {
                let total = dilation[axis] * kernel[axis].saturating_sub(1);
                padding[axis] = [total / 2, total - total / 2];
            }
            padding
        }
        Some(
            expr @ Expr {
                kind: ExprKind::Str(text),
                ..
            },
        ) => {
            return Err(lowerer.error(
                expr.span,
                format!(
                    "conv2d's padding is an integer, a pair [h, w], \"same\" or \"valid\", \
                     not {text:?}"
                ),
            ));
        }
        padding => {
            let [h, w] = lowerer.pair(padding, 0, 0, "the padding")?;
            [[h, h], [w, w]]
        }
    };
    let window = Window {
        stride,
        padding,
        dilation,
    };
    let op = Op::Conv(Conv::Conv2d { window, groups });
    Ok(Value::Tensor(
        lowerer.build(call.span, |g| g.apply(op, &[x, w]))?,
    ))
}

/// The word a padding argument spells, quoted (`"same"`, as in PyTorch) or bare (`same`).
fn padding_word(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Str(word) | ExprKind::Name(word) => Some(word),
        _ => None,
    }
}

/// `max_pool2d(x, kernel, stride=kernel, padding=0, dilation=1)`.
pub(super) fn max_pool2d(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.the_operand(call)?;
    let (kernel, window) = lowerer.pool_window(call, call.args[4])?;
    let op = Op::Conv(Conv::MaxPool2d { kernel, window });
    Ok(Value::Tensor(
        lowerer.build(call.span, |g| g.apply(op, &[x]))?,
    ))
}

/// `avg_pool2d(x, kernel, stride=kernel, padding=0)`: a convolution of each channel with the
/// constant filter `1/(kH·kW)`.
pub(super) fn avg_pool2d(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.the_operand(call)?;
    let (kernel, window) = lowerer.pool_window(call, None)?;
    let ty = lowerer.ty(x);
    let dims = ty.shape.dims();
    let channels = match (dims.len(), dims.get(1).and_then(Dim::as_fixed)) {
        (4, Some(c)) => c,
        _ => {
            return Err(lowerer.error(
                call.span,
                format!(
                    "avg_pool2d needs an input [N, C, H, W] with a fixed number of channels C, \
                     got {}",
                    ty.shape
                ),
            ));
        }
    };
    // Checked here so that the error names avg_pool2d, not the convolution it becomes.
    if let (Some(h), Some(w)) = (dims[2].as_fixed(), dims[3].as_fixed())
        && let Err(why) = window.output_size([h as usize, w as usize], kernel)
    {
        return Err(lowerer.error(call.span, format!("avg_pool2d of {}: {why}", ty.shape)));
    }
    let filter = TensorType::new(
        ty.dtype,
        Shape::fixed(&[channels, 1, kernel[0] as u64, kernel[1] as u64]),
    );
    let groups = channels as usize;
    let weight = 1.0 / (kernel[0] as f64 * kernel[1] as f64);
    let op = Op::Conv(Conv::Conv2d { window, groups });
    let pooled = lowerer.build(call.span, |g| {
        let w = g.full(weight, &filter)?;
        g.apply(op, &[x, w])
    })?;
    Ok(Value::Tensor(pooled))
}

/// `flatten(x)`: the first axis kept, the others joined.
pub(super) fn flatten(lowerer: &mut Lowerer<'_>, call: &Call<'_>) -> Result<Value, Diagnostic> {
    let x = lowerer.the_operand(call)?;
    let shape = lowerer.ty(x).shape;
    let Some((first, rest)) = shape.dims().split_first().filter(|(_, r)| !r.is_empty()) else {
        return Err(lowerer.error(
            call.span,
            format!("flatten needs a tensor of rank 2 or more, got shape {shape}"),
        ));
    };
    let joined = rest.iter().fold(Dim::fixed(1), |n, d| n.mul(d));
    let target = Shape(vec![first.clone(), joined]);
    Ok(Value::Tensor(
        lowerer.build(call.span, |g| g.reshape(x, &target))?,
    ))
}

impl<'p> Lowerer<'p> {
    /// An integer of at least `min` (`what` names it in errors).
    fn count(&self, expr: &Expr, min: usize, what: &str) -> Result<usize, Diagnostic> {
        let value = self.int(expr, what)?;
        usize::try_from(value)
            .ok()
            .filter(|&n| n >= min && n <= 1 << 32)
            .ok_or_else(|| {
                self.error(
                    expr.span,
                    format!("{what} must be an integer from {min} to 2^32, found {value}"),
                )
            })
    }

    /// An integer or a pair `[h, w]` of integers of at least `min`; `default` for both when
    /// absent.
    fn pair(
        &self,
        expr: Option<&Expr>,
        default: usize,
        min: usize,
        what: &str,
    ) -> Result<[usize; 2], Diagnostic> {
        let Some(expr) = expr else {
            return Ok([default; 2]);
        };
        match &expr.kind {
            ExprKind::List(items) if items.len() == 2 => Ok([
                self.count(&items[0], min, what)?,
                self.count(&items[1], min, what)?,
            ]),
            ExprKind::List(_) | ExprKind::Name(_) | ExprKind::Call { .. } => Err(self.error(
                expr.span,
                format!(
                    "{what} must be an integer or a pair [h, w] of integers, found {}",
                    describe(expr)
                ),
            )),
            _ => Ok([self.count(expr, min, what)?; 2]),
        }
    }

    /// `[kH, kW]` of a filter (zeros when it is not a rank-4 filter of fixed sizes: the shape
    /// rule then says what is wrong).
    fn kernel_of(&self, w: NodeId) -> [usize; 2] {
        let shape = self.ty(w).shape;
        let size = |i: usize| {
            shape
                .dims()
                .get(i)
                .and_then(Dim::as_fixed)
                .filter(|_| shape.rank() == 4)
                .map_or(0, |n| n as usize)
        };
        [size(2), size(3)]
    }

    /// The kernel and window of a pooling call `(x, kernel, stride, padding)`, with `dilation`
    /// where the op takes one. PyTorch's rule holds: padding at most half the kernel.
    fn pool_window(
        &self,
        call: &Call<'_>,
        dilation: Option<&Expr>,
    ) -> Result<([usize; 2], Window), Diagnostic> {
        let kernel = self.pair(call.args[1], 1, 1, "the kernel size")?;
        let stride = self.pair(call.args[2], 0, 1, "the stride")?;
        let stride = if call.args[2].is_some() {
            stride
        } else {
            kernel
        };
        let [ph, pw] = self.pair(call.args[3], 0, 0, "the padding")?;
        let dilation = self.pair(dilation, 1, 1, "the dilation")?;
        for (axis, p) in [ph, pw].into_iter().enumerate() {
            let extent = dilation[axis] * (kernel[axis] - 1) + 1;
            if p > extent / 2 {
                let span = call.args[3].map_or(call.span, |e| e.span);
                return Err(self.error(
                    span,
                    format!(
                        "{}: padding {p} is more than half the kernel's extent {extent} \
                         (as in PyTorch, a window must not lie mostly in the padding)",
                        call.name
                    ),
                ));
            }
        }
        Ok((
            kernel,
            Window {
                stride,
                padding: [[ph, ph], [pw, pw]],
                dilation,
            },
        ))
    }
}
