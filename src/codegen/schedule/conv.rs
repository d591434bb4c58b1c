//! Scheduling the convolution family: every op an image step run by the family's own kernels
//! (max-pooling too: its kernels beat a max-reduction over `[N, C, H', W', kH, kW]` compiled by
//! the JIT, 1.3 against ~14 ms for LeNet's two poolings of 1000 images on one Zen 4 core).

use super::{Scheduler, StepBuilder, Val};
use crate::codegen::program::{BufferKind, Dense, ImageStep, PARTS};
use crate::codegen::sizes::Size;
use crate::ir::op::{Conv, Extent};
use crate::ir::{NodeId, TensorType};

impl Scheduler<'_> {
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
}
