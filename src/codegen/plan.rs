//! The memory plan of a program for one binding of its symbols: every temporary buffer gets an
//! offset in one arena, and buffers whose lifetimes (in steps) do not overlap share memory.

use super::schedule::{BufferKind, Program};
use super::sizes::SizeSlots;
use crate::ir::Bindings;

/// Arena offsets are multiples of this many bytes (a cache line; more than any vector needs).
const ALIGN: usize = 64;

/// Everything a call needs that depends on the sizes bound to the symbols.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The value of each size slot the generated code reads.
    pub sizes: Vec<i64>,
    /// Byte offset of each temporary buffer in the arena (0 for other buffers).
    pub offsets: Vec<usize>,
    /// Bytes the arena needs.
    pub arena_bytes: usize,
    /// Floating-point operations per call (see [`Program::flops`]).
    pub flops: f64,
}

/// Plans `program` for `bindings`: evaluates its sizes, checks reductions that need a
/// non-empty axis, and packs the temporaries first-fit by lifetime (in barrier-free runs of
/// steps, so that threads never race on shared memory).
pub fn plan(program: &Program, slots: &SizeSlots, bindings: &Bindings) -> Result<Plan, String> {
    let sizes = slots.eval(bindings)?;
    for check in &program.nonempty {
        if check.size.eval(bindings)? == 0 {
            return Err(check.message.clone());
        }
    }
    let esize = program.dtype.size_bytes();
    let lifetimes = program.arena_lifetimes();
    let mut temps = Vec::new();
    for (id, buffer) in program.buffers.iter().enumerate() {
        if buffer.kind != BufferKind::Temp {
            continue;
        }
        let Some((first, last)) = lifetimes[id] else {
            continue;
        };
        // Sizes saturate: an arena of usize::MAX bytes is refused by the memory check that
        // comes before any allocation (`JitGraph::plan_for`), with the graph's largest value.
        let bytes = usize::try_from(buffer.numel.eval(bindings)?)
            .ok()
            .and_then(|n| n.checked_mul(esize))
            .and_then(|b| b.checked_next_multiple_of(ALIGN))
            .unwrap_or(usize::MAX);
        temps.push((first, last, bytes, id));
    }
    // Earliest first; at equal start, largest first (packs tighter).
    temps.sort_by_key(|&(first, _, bytes, id)| (first, std::cmp::Reverse(bytes), id));
    let mut offsets = vec![0; program.buffers.len()];
    // Placed buffers still alive: (offset, end, last step).
    let mut active: Vec<(usize, usize, usize)> = Vec::new();
    let mut arena_bytes = 0;
    for (first, last, bytes, id) in temps {
        active.retain(|&(_, _, until)| until >= first);
        active.sort_unstable();
        let mut offset: usize = 0;
        for &(start, end, _) in &active {
            if offset.saturating_add(bytes) <= start {
                break;
            }
            offset = offset.max(end);
        }
        offsets[id] = offset;
        let end = offset.saturating_add(bytes);
        active.push((offset, end, last));
        arena_bytes = arena_bytes.max(end);
    }
    let eval = |s: &super::sizes::Size| s.eval(bindings).unwrap_or(0);
    Ok(Plan {
        sizes,
        offsets,
        arena_bytes,
        flops: program.flops(&eval),
    })
}
