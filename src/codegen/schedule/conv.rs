//! Scheduling the convolution family: max-pooling as a fused max-reduction over window taps,
//! the other ops as image steps run by the family's own kernels.

use super::{Scheduler, StepBuilder, Val, View};
use crate::codegen::program::{Access, BufferKind, Dense, Expr, ImageStep, PARTS, Reduction};
use crate::codegen::sizes::Size;
use crate::ir::op::{Conv, Extent, F64Bits, Window};
use crate::ir::{Dim, NodeId, ReduceKind, TensorType};

impl Scheduler<'_> {
    /// `max_pool2d` as a max-reduction over each window's taps: one kernel over
    /// `[N, C, H', W', kH, kW]` reading the input at affine offsets. A padded window reads a
    /// copy of the input framed by −∞, which never wins (the shape rule leaves every window a
    /// tap inside the input).
    pub(super) fn lower_max_pool(&mut self, id: NodeId, kernel: [usize; 2], window: Window) -> Val {
        let x = self.graph.node(id).inputs[0];
        let mut input = self.as_view(x);
        if window.padding != [[0, 0], [0, 0]] {
            input = self.padded_copy(&input, window.padding, f64::NEG_INFINITY);
        }
        let out_shape = self.shape(id).0.clone();
        let taps = kernel.map(|k| Dim::fixed(k as u64));
        let mut domain = out_shape.clone();
        domain.extend(taps);
        let step = self.new_kernel(&domain);
        let fixed = |n: usize| Dim::fixed(n as u64);
        let s = &input.strides;
        let strides = vec![
            s[0].clone(),
            s[1].clone(),
            s[2].mul_dim(&fixed(window.stride[0])),
            s[3].mul_dim(&fixed(window.stride[1])),
            s[2].mul_dim(&fixed(window.dilation[0])),
            s[3].mul_dim(&fixed(window.dilation[1])),
        ];
        let value = self.push_expr(
            step,
            Expr::Load(Access {
                buffer: input.buffer,
                offset: input.offset.clone(),
                strides,
            }),
        );
        let out = self.new_temp(&out_shape);
        let mut out_strides = out.strides.clone();
        out_strides.extend([Size::default(), Size::default()]);
        self.written_by[out.buffer] = Some(step);
        self.kernel(step).kernel.reductions.push(Reduction {
            kind: ReduceKind::Max,
            value,
            out: Access {
                buffer: out.buffer,
                offset: Size::default(),
                strides: out_strides,
            },
            reduced: vec![false, false, false, false, true, true],
            partial: None,
        });
        Val::Stored(out)
    }

    /// A convolution or pooling op as a call of its family's kernel on row-major operands; a
    /// result summed over the images is summed per part, then over the parts in order.
    pub(super) fn lower_image(&mut self, id: NodeId, op: Conv) -> Val {
        let inputs = self.graph.node(id).inputs.clone();
        let types: Vec<&TensorType> = inputs.iter().map(|&x| self.graph.ty(x)).collect();
        let kernel = op
            .image_kernel(&types)
            .expect("the graph builder checked the operands");
        let images = Size::dim(&self.shape(inputs[0]).0[0]);
        let operands = inputs
            .iter()
            .map(|&x| {
                let view = self.as_view(x);
                let view = if view.is_row_major() {
                    view
                } else {
                    self.copy_of(&view)
                };
                Dense {
                    buffer: view.buffer,
                    offset: view.offset,
                }
            })
            .collect();
        let shape = self.shape(id).0.clone();
        let out = self.new_temp(&shape);
        let target = match kernel.output() {
            Extent::PerImage(_) => out.buffer,
            Extent::Whole(len) => self.new_buffer(
                BufferKind::Temp,
                Size::fixed(PARTS).mul(&Size::fixed(len as u64)),
            ),
        };
        let combine = match kernel.output() {
            Extent::PerImage(_) => None,
            Extent::Whole(len) => Some((target, Size::fixed(len as u64), out.buffer)),
        };
        self.steps.push(StepBuilder::Image(
            ImageStep {
                kernel,
                images,
                operands,
                out: Dense {
                    buffer: target,
                    offset: Size::default(),
                },
            },
            combine,
        ));
        // The sum of the parts runs right after the image step.
        self.written_by[target] = Some(self.steps.len() - 1);
        self.written_by[out.buffer] = Some(self.steps.len() - 1);
        Val::Stored(out)
    }

    /// A row-major copy of the `[N, C, H, W]` view `x` framed by `padding` (`[[top, bottom],
    /// [left, right]]`) elements of value `frame`.
    fn padded_copy(&mut self, x: &View, padding: [[usize; 2]; 2], frame: f64) -> View {
        let mut shape = x.shape.clone();
        for (axis, [before, after]) in [(2, padding[0]), (3, padding[1])] {
            let size = shape[axis]
                .as_fixed()
                .expect("pooling has fixed spatial sizes");
            shape[axis] = Dim::fixed(size + (before + after) as u64);
        }
        let out = self.new_temp(&shape);
        let fill = self.new_kernel(&shape);
        let e = self.push_expr(fill, Expr::Const(F64Bits::new(frame)));
        self.add_store(fill, e, &out);
        let [[top, _], [left, _]] = padding;
        let interior = out.slice(2, &Dim::fixed(top as u64), &x.shape[2]).slice(
            3,
            &Dim::fixed(left as u64),
            &x.shape[3],
        );
        let copy = self.new_kernel(&x.shape);
        let e = self.push_expr(copy, Expr::Load(x.access()));
        self.add_store(copy, e, &interior);
        out
    }
}
