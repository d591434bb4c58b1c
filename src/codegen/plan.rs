//! The memory plan of a program for one binding of its symbols: every temporary buffer gets an
//! offset in one arena, and buffers whose lifetimes (in steps) do not overlap share memory.

use super::program::{BufferKind, Program};
use super::sizes::SizeSlots;
use crate::ir::Bindings;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

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
    let mut offsets = vec![0; program.buffers.len()];
    let arena_bytes = pack(&mut temps, &mut offsets);
    let eval = |s: &super::sizes::Size| s.eval(bindings).unwrap_or(0);
    Ok(Plan {
        sizes,
        offsets,
        arena_bytes,
        flops: program.flops(&eval),
    })
}

/// A temporary to place: (first step, last step, bytes, buffer id).
type Temp = (usize, usize, usize, usize);

/// Places `temps` first-fit in order of their first step, so that buffers alive at the same time
/// never overlap, writing each offset to `offsets[id]`; returns the bytes the arena needs.
/// Buffers are freed as their lifetimes end (a heap by last step), so placing costs a walk over
/// the free ranges, not over every buffer placed before.
fn pack(temps: &mut [Temp], offsets: &mut [usize]) -> usize {
    // Earliest first; at equal start, largest first (packs tighter).
    temps.sort_by_key(|&(first, _, bytes, id)| (first, Reverse(bytes), id));
    let mut arena = FirstFit::default();
    // Placed buffers still alive, soonest to die first: (last step, offset, bytes).
    let mut alive: BinaryHeap<Reverse<(usize, usize, usize)>> = BinaryHeap::new();
    let mut arena_bytes = 0;
    for &(first, last, bytes, id) in temps.iter() {
        while let Some(&Reverse((until, offset, size))) = alive.peek() {
            if until >= first {
                break;
            }
            alive.pop();
            arena.free(offset, size);
        }
        // An empty buffer is never read or written: it takes no range of the arena.
        if bytes == 0 {
            offsets[id] = 0;
            continue;
        }
        // No room below 2^64 bytes: the arena saturates, and the memory check refuses it.
        let Some(offset) = arena.allocate(bytes) else {
            return usize::MAX;
        };
        offsets[id] = offset;
        alive.push(Reverse((last, offset, bytes)));
        arena_bytes = arena_bytes.max(offset + bytes);
    }
    arena_bytes
}

/// First-fit placement in an unbounded arena: the free space as disjoint, coalesced ranges by
/// start (the last one reaching to the end of the address space), so that placing a buffer costs
/// a walk over the holes below it rather than over every buffer alive.
struct FirstFit {
    /// Free ranges: start → end.
    free: BTreeMap<usize, usize>,
}

impl Default for FirstFit {
    fn default() -> FirstFit {
        FirstFit {
            free: BTreeMap::from([(0, usize::MAX)]),
        }
    }
}

impl FirstFit {
    /// The lowest offset where `bytes` fit, now taken; `None` if they fit nowhere below the end
    /// of the address space.
    fn allocate(&mut self, bytes: usize) -> Option<usize> {
        let (&start, &end) = self
            .free
            .iter()
            .find(|&(&start, &end)| end - start >= bytes)?;
        self.free.remove(&start);
        if start + bytes < end {
            self.free.insert(start + bytes, end);
        }
        Some(start)
    }

    /// Returns `[offset, offset + bytes)`, merging it with the free ranges it touches.
    fn free(&mut self, offset: usize, bytes: usize) {
        let (mut start, mut end) = (offset, offset + bytes);
        if let Some((&before, &before_end)) = self.free.range(..start).next_back()
            && before_end == start
        {
            self.free.remove(&before);
            start = before;
        }
        if let Some(after_end) = self.free.remove(&end) {
            end = after_end;
        }
        self.free.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first-fit packing as it was before the free list: for every buffer, a scan of all the
    /// buffers still alive, sorted by offset, for the lowest gap it fits in.
    fn pack_by_scanning(temps: &mut [Temp], offsets: &mut [usize]) -> usize {
        temps.sort_by_key(|&(first, _, bytes, id)| (first, Reverse(bytes), id));
        let mut active: Vec<(usize, usize, usize)> = Vec::new();
        let mut arena_bytes = 0;
        for &(first, last, bytes, id) in temps.iter() {
            active.retain(|&(_, _, until)| until >= first);
            active.sort_unstable();
            let mut offset = 0;
            for &(start, end, _) in &active {
                if offset + bytes <= start {
                    break;
                }
                offset = offset.max(end);
            }
            offsets[id] = offset;
            active.push((offset, offset + bytes, last));
            arena_bytes = arena_bytes.max(offset + bytes);
        }
        arena_bytes
    }

    /// Temporaries with random lifetimes in 40 steps and sizes of 0 to 8 cache lines.
    fn temps() -> impl Strategy<Value = Vec<Temp>> {
        prop::collection::vec((0usize..40, 0usize..12, 0usize..=8), 0..60).prop_map(|spans| {
            spans
                .into_iter()
                .enumerate()
                .map(|(id, (first, length, lines))| (first, first + length, lines * ALIGN, id))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn buffers_alive_together_never_overlap(mut temps in temps()) {
            let mut offsets = vec![usize::MAX; temps.len()];
            let arena_bytes = pack(&mut temps, &mut offsets);
            for &(first, last, bytes, id) in &temps {
                let (start, end) = (offsets[id], offsets[id] + bytes);
                prop_assert!(end <= arena_bytes, "buffer {id} ends past the arena");
                prop_assert_eq!(start % ALIGN, 0);
                for &(other_first, other_last, other_bytes, other) in &temps {
                    let together = first <= other_last && other_first <= last;
                    let other_start = offsets[other];
                    let overlap = bytes > 0
                        && other_bytes > 0
                        && start < other_start + other_bytes
                        && other_start < end;
                    prop_assert!(
                        other == id || !together || !overlap,
                        "buffers {id} and {other} are alive together in the same bytes"
                    );
                }
            }
        }

        #[test]
        fn packs_exactly_as_the_scan_it_replaces(temps in temps()) {
            let (mut by_free_list, mut by_scan) = (temps.clone(), temps.clone());
            let mut offsets = vec![0; temps.len()];
            let mut offsets_by_scan = vec![0; temps.len()];
            prop_assert_eq!(
                pack(&mut by_free_list, &mut offsets),
                pack_by_scanning(&mut by_scan, &mut offsets_by_scan)
            );
            prop_assert_eq!(offsets, offsets_by_scan);
        }
    }

    #[test]
    fn a_freed_hole_is_reused_and_merged_with_its_neighbours() {
        let mut arena = FirstFit::default();
        let mut allocate = |bytes| arena.allocate(bytes).expect("room in the arena");
        let (a, b, c) = (allocate(64), allocate(128), allocate(64));
        assert_eq!((a, b, c), (0, 64, 192));
        arena.free(b, 128);
        assert_eq!(arena.allocate(64), Some(64), "the hole left by b");
        arena.free(64, 64);
        arena.free(a, 64);
        arena.free(c, 64);
        assert_eq!(
            arena.free,
            BTreeMap::from([(0, usize::MAX)]),
            "everything freed is one range again"
        );
    }

    #[test]
    fn buffers_past_the_address_space_saturate_the_arena() {
        let mut offsets = vec![0; 3];
        let mut temps = [
            (0, 1, 1 << 62, 0),
            (0, 1, 1 << 62, 1),
            (0, 1, usize::MAX, 2),
        ];
        assert_eq!(pack(&mut temps, &mut offsets), usize::MAX);
        let mut temps = [(0, 1, usize::MAX / 2, 0), (0, 1, usize::MAX / 2 + 2, 1)];
        assert_eq!(pack(&mut temps, &mut offsets), usize::MAX);
    }
}
