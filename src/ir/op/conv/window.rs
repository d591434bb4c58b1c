//! Where a sliding window reads: the window/padding arithmetic of the shape rules and the
//! kernels, and the IR text of a window.

use super::super::ParamReader;
use crate::ir::error::Result;
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

    /// Along `axis` of an input of `n` elements: the outputs (of `outputs`) whose tap `tap`
    /// reads inside the input, and the input element the first of them reads.
    pub(super) fn outputs_reading_inside(
        &self,
        axis: usize,
        tap: usize,
        n: usize,
        outputs: usize,
    ) -> (std::ops::Range<usize>, usize) {
        let reach = tap * self.dilation[axis];
        self.inside(axis, reach, self.stride[axis], n, outputs)
    }

    /// Along `axis` of an input of `n` elements: the taps (of `taps`) of output `out` that read
    /// inside the input, and the input element the first of them reads.
    pub(super) fn taps_inside(
        &self,
        axis: usize,
        out: usize,
        n: usize,
        taps: usize,
    ) -> (std::ops::Range<usize>, usize) {
        let start = out * self.stride[axis];
        self.inside(axis, start, self.dilation[axis], n, taps)
    }

    /// The `t` in `0..count` for which `start + t·step` lands inside an input of `n` elements
    /// padded by `padding[axis]` (at `start + t·step − before`, in `0..n`), and the input
    /// element the first of them reads.
    fn inside(
        &self,
        axis: usize,
        start: usize,
        step: usize,
        n: usize,
        count: usize,
    ) -> (std::ops::Range<usize>, usize) {
        let before = self.padding[axis][0];
        let lo = before.saturating_sub(start).div_ceil(step);
        let hi = match (n + before).checked_sub(start + 1) {
            Some(last) => (last / step + 1).min(count),
            None => 0,
        };
        let lo = lo.min(hi);
        // With no tap inside, the first element read is moot: 0 keeps slices from it in bounds.
        let first = match lo < hi {
            true => (start + lo * step).saturating_sub(before),
            false => 0,
        };
        (lo..hi, first)
    }

    /// The kernel's extent along `axis`: `dilation·(k − 1) + 1`.
    fn span(&self, kernel: [usize; 2], axis: usize) -> usize {
        self.dilation[axis] * (kernel[axis] - 1) + 1
    }

    pub(super) fn read(params: &mut dyn ParamReader, op: &str) -> Result<Window> {
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

    pub(super) fn write(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        let [[top, bottom], [left, right]] = self.padding;
        let ([sh, sw], [dh, dw]) = (self.stride, self.dilation);
        write!(
            f,
            "[{sh}, {sw}], [{top}, {bottom}, {left}, {right}], [{dh}, {dw}]"
        )
    }
}

/// `[a, b, …]` of exactly `N` integers.
pub(super) fn read_ints<const N: usize>(
    params: &mut dyn ParamReader,
    what: &str,
) -> Result<[usize; N]> {
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

/// The sizes of one convolution, all three of its faces: input `[n, c, h, w]`, filter
/// `[o, c/groups, kh, kw]`, output `[n, o, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub(super) channels: usize,
    pub(super) input: [usize; 2],
    pub(super) out_channels: usize,
    pub(super) kernel: [usize; 2],
    pub(super) output: [usize; 2],
    pub(super) groups: usize,
    pub(super) window: Window,
}

/// The sizes of one pooling: input `[n, c, h, w]`, output `[n, c, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    pub(super) channels: usize,
    pub(super) input: [usize; 2],
    pub(super) kernel: [usize; 2],
    pub(super) output: [usize; 2],
    pub(super) window: Window,
}

impl ConvGeometry {
    /// The geometry of `conv2d(x, w)` for images `x: [C, H, W]` and `w: [O, Cg, kH, kW]`, or
    /// why they do not make one.
    pub(super) fn new(
        window: Window,
        groups: usize,
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
            channels: c,
            input: [h, w],
            out_channels: o,
            kernel: [kh, kw],
            output,
            groups,
            window,
        })
    }

    pub(super) fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    pub(super) fn group_out_channels(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the unfolded input of one group: `C/groups · kH · kW`.
    pub(super) fn patch_len(&self) -> usize {
        self.group_channels() * self.kernel[0] * self.kernel[1]
    }

    pub(super) fn output_len(&self) -> usize {
        self.output[0] * self.output[1]
    }

    pub(super) fn input_len(&self) -> usize {
        self.input[0] * self.input[1]
    }
}

impl PoolGeometry {
    pub(super) fn new(
        kernel: [usize; 2],
        window: Window,
        [c, h, w]: [usize; 3],
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
            channels: c,
            input: [h, w],
            kernel,
            output,
            window,
        })
    }
}
