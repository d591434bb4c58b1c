//! The bf16 products on AMX tiles (Sapphire Rapids and later): eight tile registers of 16 rows
//! × 64 bytes, and `tdpbf16ps`, which adds a 16 × 32 bf16 tile times a 32 × 16 one to a 16 × 16
//! f32 tile — 8192 multiply-adds an instruction, against 32 for `vdpbf16ps`.
//!
//! The operands are packed as for the AVX512-BF16 kernel (bf16 pairs along `k`, rounded to
//! nearest), `b` in panels of 16 columns and `a` row by row (an A tile's row is 16 pairs of one
//! row of `a`), with `k` padded to whole tiles by zero pairs. A block of 2 × 2 tiles of `c`
//! (32 × 32) stays in four tile registers while `k` runs, two tiles of `a` and two of `b` loaded
//! per step. Each element sums its pairs in the same order whatever the block or the thread's
//! share of `c`, so results do not depend on the thread count.
//!
//! The tile instructions are behind [`TileUnit`]: [`Hardware`] runs them. The tests run the
//! same driver on a software model of the instructions (shapes as configured, bounds checked),
//! and, on CPUs without AMX, `Hardware`'s own machine code, each tile instruction decoded from
//! its bytes and registers when it faults and carried out on the model (`tile_model.rs`): the
//! driver's addresses and padding, and `Hardware`'s tile numbers, byte strides and store
//! corners as assembled, are tested on any x86-64 Linux host with AVX512-BF16. Where the CPU
//! has AMX, a product is checked against the AVX512-BF16 kernel before the tiles are used
//! ([`available`]); the tiles run only where that agrees, the CPU has them and Linux grants
//! their state.

use super::kernel::{pack, store_rows};
use super::{Kept, Operand, Output, PACKED, Tile, packed_block};
use std::sync::OnceLock;

/// Rows of a tile; also the pairs of `k` in a row of an A tile and the rows of a B tile.
pub(super) const TILE: usize = 16;
/// Rows (and columns) of `c` in a block of 2 × 2 tiles.
pub(super) const BLOCK: usize = 2 * TILE;
/// Pairs of `k` per packed block: a strip of 32 rows of `a` is then 32 KiB (L1), a panel pair
/// of `b` as much.
pub(super) const KC_PAIRS: usize = 256;
/// Rows of `a` per packed block.
pub(super) const MC: usize = 256;
/// Columns of `b` per packed block: 1 MiB of pairs at most, within the L2 cache of the CPUs
/// with AMX (2 MiB), and wide enough that a hidden layer's `a` is packed once.
pub(super) const NC: usize = 1024;

/// The tile instructions the kernel uses, on fixed registers: tiles 0-3 hold the 2 × 2 block of
/// sums, 4-5 two tiles of `a`, 6-7 two tiles of `b`; every tile is 16 rows × 64 bytes.
///
/// # Safety
/// Every method must run between [`TileUnit::begin`] and [`TileUnit::end`] on one thread.
pub trait TileUnit {
    /// Configures the eight tiles (and zeroes them).
    unsafe fn begin();
    /// Zeroes the four sums.
    unsafe fn zero_sums();
    /// Loads rows of `a[t]` (16 rows of 16 pairs, a row every `a_stride` pairs) and of `b[t]`
    /// (16 rows of 16 pairs, one after the other), and adds the four products to the sums.
    unsafe fn step(a: [&[u32]; 2], a_stride: usize, b: [&[u32]; 2]);
    /// Stores the sums into a 32 × 32 block, row-major.
    unsafe fn store_sums(c: &mut [f32; BLOCK * BLOCK]);
    /// Releases the tile state.
    unsafe fn end();
}

/// The u32 a tile of 16 rows, a row every `stride` u32, spans.
pub(super) fn tile_span(stride: usize) -> usize {
    (TILE - 1) * stride + TILE
}

/// The host's AMX tiles, through `asm!` (no stable intrinsics).
pub enum Hardware {}

/// The configuration `ldtilecfg` reads: palette 1, tiles 0-7 of 16 rows × 64 bytes.
#[repr(C, align(64))]
pub(super) struct TileConfig {
    pub(super) palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    pub(super) bytes_per_row: [u16; 16],
    pub(super) rows: [u8; 16],
}

// The layout `ldtilecfg` reads: 64 bytes, the row sizes at byte 16, the row counts at 48.
const _: () = assert!(
    size_of::<TileConfig>() == 64
        && std::mem::offset_of!(TileConfig, bytes_per_row) == 16
        && std::mem::offset_of!(TileConfig, rows) == 48
);

pub(super) const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

#[cfg(target_arch = "x86_64")]
impl TileUnit for Hardware {
    unsafe fn begin() {
        // SAFETY: the caller runs this only where the CPU has the tiles and Linux granted them
        // (`status`, before its self-check).
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        }
    }

    unsafe fn zero_sums() {
        // SAFETY: the tiles are configured.
        unsafe {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            );
        }
    }

    unsafe fn step(a: [&[u32]; 2], a_stride: usize, b: [&[u32]; 2]) {
        let span = tile_span(a_stride);
        assert!(a.iter().all(|a| a.len() >= span) && b.iter().all(|b| b.len() >= TILE * TILE));
        // SAFETY: the tiles are configured; each load reads 16 rows of 64 bytes inside its slice
        // (checked above).
        unsafe {
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {a_stride}*1]",
                "tileloadd tmm5, [{a1} + {a_stride}*1]",
                "tileloadd tmm6, [{b0} + {b_stride}*1]",
                "tileloadd tmm7, [{b1} + {b_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a[0].as_ptr(),
                a1 = in(reg) a[1].as_ptr(),
                b0 = in(reg) b[0].as_ptr(),
                b1 = in(reg) b[1].as_ptr(),
                a_stride = in(reg) a_stride * 4,
                b_stride = in(reg) TILE * 4,
                options(nostack, readonly)
            );
        }
    }

    unsafe fn store_sums(c: &mut [f32; BLOCK * BLOCK]) {
        let at = c.as_mut_ptr();
        // SAFETY: the tiles are configured; each store writes 16 rows of 16 f32 inside `c`.
        unsafe {
            std::arch::asm!(
                "tilestored [{c0} + {stride}*1], tmm0",
                "tilestored [{c1} + {stride}*1], tmm1",
                "tilestored [{c2} + {stride}*1], tmm2",
                "tilestored [{c3} + {stride}*1], tmm3",
                c0 = in(reg) at,
                c1 = in(reg) at.add(TILE),
                c2 = in(reg) at.add(TILE * BLOCK),
                c3 = in(reg) at.add(TILE * BLOCK + TILE),
                stride = in(reg) BLOCK * 4,
                options(nostack)
            );
        }
    }

    unsafe fn end() {
        // SAFETY: releasing the tile state is always allowed once it was configured.
        unsafe { std::arch::asm!("tilerelease", options(nostack)) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl TileUnit for Hardware {
    unsafe fn begin() {
        unreachable!("AMX tiles are x86-64 only")
    }
    unsafe fn zero_sums() {}
    unsafe fn step(_: [&[u32]; 2], _: usize, _: [&[u32]; 2]) {}
    unsafe fn store_sums(_: &mut [f32; BLOCK * BLOCK]) {}
    unsafe fn end() {}
}

/// Whether the products run on AMX: `Ok` if they do, else why not. Decided once per process.
pub fn status() -> &'static Result<(), String> {
    static STATUS: OnceLock<Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        host_has_tiles()?;
        request_tile_state()?;
        agrees_with_avx512_bf16()
    })
}

/// True if the products run on AMX tiles ([`status`]).
pub fn available() -> bool {
    status().is_ok()
}

/// Whether the CPU has AMX-TILE and AMX-BF16 and the OS saves the tile state (XCR0 bits 17-18).
#[cfg(target_arch = "x86_64")]
pub(super) fn host_has_tiles() -> Result<(), String> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY (for the older compilers where these are unsafe): CPUID exists on every x86-64.
    #[allow(unused_unsafe)]
    let (max_leaf, osxsave, leaf7) = unsafe {
        let max_leaf = __cpuid(0).eax;
        let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
        (max_leaf, osxsave, __cpuid_count(7, 0).edx)
    };
    let (amx_bf16, amx_tile) = (leaf7 & (1 << 22) != 0, leaf7 & (1 << 24) != 0);
    if max_leaf < 7 || !amx_bf16 || !amx_tile {
        return Err("this CPU has no AMX-BF16 tiles".into());
    }
    // SAFETY: OSXSAVE says XGETBV is enabled.
    let xcr0 = if osxsave { unsafe { xcr0() } } else { 0 };
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return Err("the operating system does not save the AMX tile state".into());
    }
    Ok(())
}

/// XCR0, the state components the OS saves.
///
/// # Safety
/// XGETBV must be enabled (CPUID.1:ECX.OSXSAVE).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    // SAFETY: as the caller guarantees.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn host_has_tiles() -> Result<(), String> {
    Err("AMX tiles are x86-64 only".into())
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`):
/// without it the first tile instruction faults.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> Result<(), String> {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call on integers.
    let status = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if status != 0 {
        return Err(format!(
            "Linux refused the AMX tile state: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_state() -> Result<(), String> {
    Err("AMX tiles are used on Linux only".into())
}

/// Runs one ragged product on the tiles and on the AVX512-BF16 kernel: they sum the same bf16
/// products in f32, so they must agree to f32 rounding. Guards against a tile unit (or a
/// hypervisor) that does not behave as documented.
pub(super) fn agrees_with_avx512_bf16() -> Result<(), String> {
    if !super::available() {
        return Err("this CPU has no AVX512-BF16 for the packing".into());
    }
    let (m, k, n) = (45, 77, 38);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 29.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 53 % 89) as f32 - 44.0) / 31.0)
        .collect();
    let (mut tiles, mut vectors) = (vec![0f32; m * n], vec![0f32; m * n]);
    // `a` with its rows as lanes; `b` (row-major k × n) with its columns.
    let a = row_major(&a, k);
    let b = Operand {
        at: b.as_ptr(),
        lane_stride: 1,
        k_stride: n as isize,
    };
    // SAFETY: the host has AMX (checked by the caller) and AVX512-BF16; sizes as allocated.
    unsafe {
        gemm::<Hardware>([m, k, n], &a, &b, &mut tiles);
        let vectors = row_major_output(&mut vectors, n);
        super::gemm_on_vectors([m, k, n], &a, &b, &vectors, [None, None]);
    }
    let worst = tiles
        .iter()
        .zip(&vectors)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    if worst > 1e-3 {
        return Err(format!(
            "AMX tiles disagree with AVX512-BF16 by {worst} on a test product; not used"
        ));
    }
    Ok(())
}

/// `x` (rows of `width`) as an operand whose lanes are its rows.
fn row_major(x: &[f32], width: usize) -> Operand {
    Operand {
        at: x.as_ptr(),
        lane_stride: width as isize,
        k_stride: 1,
    }
}

/// `c = a @ b` on tiles of `U`, `[m, k, n]` with `k > 0`: `a` with rows of `c` as lanes, `b`
/// with columns; the fixed operand's blocks from its [`Kept`] entry, if given.
///
/// # Safety
/// The host must have AVX512-BF16 and `U`'s tiles; the operands and `c` must be valid for these
/// sizes, `c` not overlapping them.
pub(super) unsafe fn gemm_into<U: TileUnit>(
    [m, k, n]: [usize; 3],
    a: &Operand,
    b: &Operand,
    c: &Output,
    [mut kept_a, mut kept_b]: [Option<&mut Kept>; 2],
) {
    let mut sums = [0f32; BLOCK * BLOCK];
    let (k_blocks, row_blocks) = (k.div_ceil(2 * KC_PAIRS), m.div_ceil(MC));
    PACKED.with_borrow_mut(|(scratch_a, scratch_b)| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(TILE).next_multiple_of(2);
            for pc in (0..k).step_by(2 * KC_PAIRS) {
                let kc = (2 * KC_PAIRS).min(k - pc);
                let stride = kc.div_ceil(2).next_multiple_of(TILE);
                let index = jc / NC * k_blocks + pc / (2 * KC_PAIRS);
                let len = panels * stride * TILE;
                let packed_b = packed_block(kept_b.as_deref_mut(), scratch_b, index, len, |out| {
                    let (panels, padding) = out.split_at_mut(nc.div_ceil(TILE) * stride * TILE);
                    // SAFETY: the host has AVX512-BF16; the block is inside b.
                    unsafe { pack::<TILE>(b, jc..jc + nc, pc..pc + kc, stride, panels) };
                    // The even count's last panel, if any, is all padding.
                    padding.fill(0);
                });
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let index = pc / (2 * KC_PAIRS) * row_blocks + ic / MC;
                    let len = mc.next_multiple_of(BLOCK) * stride;
                    let packed_a =
                        packed_block(kept_a.as_deref_mut(), scratch_a, index, len, |out| {
                            let (rows, padding) = out.split_at_mut(mc * stride);
                            // SAFETY: as for b.
                            unsafe { pack::<1>(a, ic..ic + mc, pc..pc + kc, stride, rows) };
                            padding.fill(0);
                        });
                    // SAFETY: the caller guarantees the tiles.
                    unsafe { U::begin() };
                    for r0 in (0..mc).step_by(BLOCK) {
                        let strip = &packed_a[r0 * stride..];
                        for p0 in (0..panels).step_by(2) {
                            let panel = |p: usize| &packed_b[p * stride * TILE..];
                            // SAFETY: between begin and end; the slices are checked by `step`.
                            unsafe {
                                U::zero_sums();
                                for q in (0..stride).step_by(TILE) {
                                    U::step(
                                        [&strip[q..], &strip[TILE * stride + q..]],
                                        stride,
                                        [&panel(p0)[q * TILE..], &panel(p0 + 1)[q * TILE..]],
                                    );
                                }
                                U::store_sums(&mut sums);
                            }
                            let block = Tile {
                                at: c.at.wrapping_offset(
                                    (ic + r0) as isize * c.rs + (jc + p0 * TILE) as isize * c.cs,
                                ),
                                rs: c.rs,
                                cs: c.cs,
                                rows: BLOCK.min(mc - r0),
                                columns: BLOCK.min(nc - p0 * TILE),
                                accumulate: pc > 0,
                            };
                            // SAFETY: the host has AVX-512; the block's valid part is inside c.
                            unsafe { store_rows(&block, &sums, BLOCK) };
                        }
                    }
                    // SAFETY: after begin.
                    unsafe { U::end() };
                }
            }
        }
    });
}

/// `c` (rows of `width`) as an output.
fn row_major_output(c: &mut [f32], width: usize) -> Output {
    Output {
        at: c.as_mut_ptr(),
        rs: width as isize,
        cs: 1,
    }
}

/// `c = a @ b` for row-major `c` (`m × n`) on tiles of `U`.
///
/// # Safety
/// As for [`gemm_into`], with `c` holding `m·n` elements.
unsafe fn gemm<U: TileUnit>(size: [usize; 3], a: &Operand, b: &Operand, c: &mut [f32]) {
    assert_eq!(c.len(), size[0] * size[2]);
    // SAFETY: as the caller guarantees.
    unsafe { gemm_into::<U>(size, a, b, &row_major_output(c, size[2]), [None, None]) }
}
