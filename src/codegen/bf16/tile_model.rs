//! A software model of the AMX tile instructions, for the tests on hosts without AMX, with two
//! ways in:
//!
//! - [`Emulated`], a [`TileUnit`] that restates which tiles, strides and corners
//!   [`Hardware`](super::amx::Hardware) uses, so the driver's addresses and padding are tested;
//! - [`emulating_tile_faults`], which runs `Hardware`'s own machine code: each tile instruction
//!   raises #UD (SIGILL) on a CPU without AMX, and the handler decodes it (VEX prefix, ModRM,
//!   SIB, as the SDM encodes them) from the faulting bytes and the saved registers, applies it
//!   to the model and steps over it. That tests what `Emulated` restates: the tile numbers the
//!   assembler encoded, the byte strides and addresses in the registers.
//!
//! The model: `ldtilecfg` shapes the tiles (palette 1) and zeroes them; `tileloadd` reads a
//! tile's configured rows and bytes and zeroes the rest; `tdpbf16ps` checks that the shapes
//! agree (the CPU raises #UD otherwise) and, for each row `m`, pair `k` and column `n`, adds
//! `a[m][k].lo·b[k][n].lo` then `a[m][k].hi·b[k][n].hi` to `c[m][n]` in f32 (the Intrinsics
//! Guide's order; the SDM sums the even and odd products apart and rounds subnormals to 0,
//! which the tests' tolerance covers). A tile used unconfigured panics (the CPU would fault).

use super::amx::{BLOCK, CONFIG, TILE, TileConfig, TileUnit, tile_span};
use std::cell::RefCell;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) use faults::emulating_tile_faults;

/// The eight tiles of palette 1: rows, 32-bit words per row, and 16 rows of 16 words each.
struct Tiles {
    rows: [usize; 8],
    words: [usize; 8],
    data: [[u32; TILE * TILE]; 8],
}

thread_local! {
    /// This thread's tiles while configured.
    static TILES: RefCell<Option<Tiles>> = const { RefCell::new(None) };
}

fn with_tiles<R>(f: impl FnOnce(&mut Tiles) -> R) -> R {
    TILES.with_borrow_mut(|tiles| f(tiles.as_mut().expect("tiles used unconfigured")))
}

/// `ldtilecfg`: configures (and zeroes) the tiles as `config` says; palette 0 releases them.
fn configure(config: &TileConfig) {
    if config.palette == 0 {
        return release();
    }
    assert!(
        config.palette == 1,
        "palette {} is not palette 1",
        config.palette
    );
    let mut tiles = Tiles {
        rows: [0; 8],
        words: [0; 8],
        data: [[0; TILE * TILE]; 8],
    };
    for t in 0..8 {
        let (rows, bytes) = (config.rows[t], config.bytes_per_row[t]);
        assert!(
            rows <= 16 && bytes <= 64 && bytes % 4 == 0,
            "tile {t}: {rows} × {bytes} bytes"
        );
        (tiles.rows[t], tiles.words[t]) = (usize::from(rows), usize::from(bytes) / 4);
    }
    TILES.set(Some(tiles));
}

/// `tilerelease`.
fn release() {
    TILES.set(None);
}

/// `tilezero`.
fn zero(t: usize) {
    with_tiles(|tiles| tiles.data[t].fill(0));
}

/// `tileloadd`: tile `t`'s rows from `start`, a row every `stride` bytes.
///
/// # Safety
/// Each configured row must be readable.
unsafe fn load(t: usize, start: *const u8, stride: isize) {
    with_tiles(|tiles| {
        let (rows, words) = (tiles.rows[t], tiles.words[t]);
        tiles.data[t].fill(0);
        for r in 0..rows {
            let row = start.wrapping_offset(r as isize * stride).cast::<u32>();
            for (j, word) in tiles.data[t][r * TILE..][..words].iter_mut().enumerate() {
                // SAFETY: as the caller guarantees.
                *word = unsafe { row.add(j).read_unaligned() };
            }
        }
    });
}

/// `tilestored`: tile `t`'s rows to `start`, a row every `stride` bytes.
///
/// # Safety
/// Each configured row must be writable.
unsafe fn store(t: usize, start: *mut u8, stride: isize) {
    with_tiles(|tiles| {
        let (rows, words) = (tiles.rows[t], tiles.words[t]);
        for r in 0..rows {
            let row = start.wrapping_offset(r as isize * stride).cast::<u32>();
            for (j, &word) in tiles.data[t][r * TILE..][..words].iter().enumerate() {
                // SAFETY: as the caller guarantees.
                unsafe { row.add(j).write_unaligned(word) };
            }
        }
    });
}

/// `tdpbf16ps`: `tile c += tile a · tile b`.
fn dot(c: usize, a: usize, b: usize) {
    with_tiles(|tiles| {
        let (m, n, k) = (tiles.rows[c], tiles.words[c], tiles.words[a]);
        assert!(
            tiles.rows[a] == m && tiles.rows[b] == k && tiles.words[b] == n,
            "tdpbf16ps shapes disagree"
        );
        let half = |x: u32, hi: bool| f32::from_bits(if hi { x & 0xffff_0000 } else { x << 16 });
        for i in 0..m {
            for p in 0..k {
                let x = tiles.data[a][i * TILE + p];
                for j in 0..n {
                    let y = tiles.data[b][p * TILE + j];
                    let sum = &mut tiles.data[c][i * TILE + j];
                    let mut s = f32::from_bits(*sum);
                    s += half(x, false) * half(y, false);
                    s += half(x, true) * half(y, true);
                    *sum = s.to_bits();
                }
            }
        }
    });
}

/// The tile unit of the model, on the tiles, strides and corners `Hardware` is meant to use;
/// a load outside its slice panics.
pub(super) enum Emulated {}

impl TileUnit for Emulated {
    unsafe fn begin() {
        configure(&CONFIG);
    }

    unsafe fn zero_sums() {
        (0..4).for_each(zero);
    }

    unsafe fn step(a: [&[u32]; 2], a_stride: usize, b: [&[u32]; 2]) {
        for (t, from, stride) in [
            (4, a[0], a_stride),
            (5, a[1], a_stride),
            (6, b[0], TILE),
            (7, b[1], TILE),
        ] {
            assert!(
                from.len() >= tile_span(stride),
                "tile {t} loads past its slice"
            );
            // SAFETY: 16 rows of 16 words, a row every `stride` words, inside `from`.
            unsafe { load(t, from.as_ptr().cast(), 4 * stride as isize) };
        }
        for (c, a, b) in [(0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)] {
            dot(c, a, b);
        }
    }

    unsafe fn store_sums(c: &mut [f32; BLOCK * BLOCK]) {
        for t in 0..4 {
            let corner = (t / 2) * TILE * BLOCK + (t % 2) * TILE;
            // SAFETY: 16 rows of 16 f32 from the tile's corner of the 32 × 32 block.
            unsafe { store(t, c[corner..].as_mut_ptr().cast(), 4 * BLOCK as isize) };
        }
    }

    unsafe fn end() {
        release();
    }
}

/// Tile instructions decoded from their machine code when they fault.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod faults {
    use super::{TileConfig, configure, dot, load, release, store, zero};
    use std::sync::Once;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A tile instruction as decoded from its bytes.
    #[derive(Debug, PartialEq)]
    enum Instruction {
        Configure(usize),
        Release,
        Zero(usize),
        Load {
            tile: usize,
            start: usize,
            stride: isize,
        },
        Store {
            tile: usize,
            start: usize,
            stride: isize,
        },
        Dot {
            c: usize,
            a: usize,
            b: usize,
        },
    }

    /// Decodes the tile instruction at `rip` from its `bytes` (VEX.128 map 0F38, W0) with
    /// `register` giving each general register's value by its number (rax 0 … r15 15): the
    /// instruction and its length, or `None` for any other instruction.
    fn decode(
        bytes: &[u8],
        rip: u64,
        register: impl Fn(usize) -> u64,
    ) -> Option<(Instruction, u64)> {
        let &[0xc4, vex1, vex2, opcode, modrm, ..] = bytes else {
            return None;
        };
        // R, X, B and vvvv are stored inverted.
        let extend = |bit: u8| usize::from(vex1 & bit == 0) << 3;
        let (r, x, b) = (extend(0x80), extend(0x40), extend(0x20));
        let (map, w, vvvv, l, pp) = (
            vex1 & 0x1f,
            vex2 >> 7,
            !vex2 >> 3 & 0xf,
            vex2 >> 2 & 1,
            vex2 & 3,
        );
        if map != 2 || w != 0 || l != 0 {
            return None;
        }
        let (mode, reg, rm) = (
            modrm >> 6,
            usize::from(modrm >> 3 & 7),
            usize::from(modrm & 7),
        );
        let tile_operands = |c: usize| (c < 8 && r == 0).then_some(c);
        // The memory operand: (start, stride as the index register scaled, length so far).
        let memory = || -> Option<(u64, i64, u64)> {
            let mut at = 5;
            let (base, stride) = if rm == 4 {
                let sib = *bytes.get(at)?;
                at += 1;
                let index = usize::from(sib >> 3 & 7) | x;
                let stride = if index == 4 {
                    0
                } else {
                    (register(index) << (sib >> 6)) as i64
                };
                let base = usize::from(sib & 7);
                let base = if base == 5 && mode == 0 {
                    None
                } else {
                    Some(base | b)
                };
                (base, stride)
            } else if rm == 5 && mode == 0 {
                (None, 0)
            } else {
                (Some(rm | b), 0)
            };
            let (displacement, bytes_of_it) = match (mode, base) {
                (1, _) => (i64::from(*bytes.get(at)? as i8), 1),
                (2, _) | (0, None) => {
                    let word = bytes.get(at..at + 4)?.try_into().ok()?;
                    (i64::from(i32::from_le_bytes(word)), 4)
                }
                _ => (0, 0),
            };
            let length = (at + bytes_of_it) as u64;
            let start = match base {
                Some(base) => register(base),
                // RIP-relative without SIB, else no base.
                None if rm == 5 => rip.wrapping_add(length),
                None => 0,
            };
            Some((start.wrapping_add_signed(displacement), stride, length))
        };
        let instruction = match (opcode, pp, mode == 3) {
            (0x49, 0, false) if reg == 0 => {
                let (start, _, length) = memory()?;
                return Some((Instruction::Configure(start as usize), length));
            }
            (0x49, 0, true) if modrm == 0xc0 && vvvv == 0 => Instruction::Release,
            (0x49, 3, true) if rm == 0 && vvvv == 0 => Instruction::Zero(tile_operands(reg)?),
            (0x4b, 1..=3, false) if rm == 4 => {
                let (start, stride, length) = memory()?;
                let (tile, start) = (tile_operands(reg)?, start as usize);
                let instruction = match pp {
                    2 => Instruction::Store {
                        tile,
                        start,
                        stride: stride as isize,
                    },
                    _ => Instruction::Load {
                        tile,
                        start,
                        stride: stride as isize,
                    },
                };
                return Some((instruction, length));
            }
            (0x5c, 2, true) => Instruction::Dot {
                c: tile_operands(reg)?,
                a: tile_operands(rm | b)?,
                b: tile_operands(usize::from(vvvv))?,
            },
            _ => return None,
        };
        Some((instruction, 5))
    }

    /// Tile instructions the handler has carried out.
    static FAULTS: AtomicUsize = AtomicUsize::new(0);

    /// Runs `f` with every tile instruction that raises SIGILL (on a CPU without AMX) decoded and
    /// carried out on the model; returns what `f` returns and how many it carried out. Any other
    /// illegal instruction still ends the process.
    pub(crate) fn emulating_tile_faults<R>(f: impl FnOnce() -> R) -> (R, usize) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: a handler that only touches the faulting thread's state and its context.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_illegal_instruction as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(
                    libc::sigaction(libc::SIGILL, &action, std::ptr::null_mut()),
                    0
                );
            }
        });
        let before = FAULTS.load(Ordering::SeqCst);
        let result = f();
        (result, FAULTS.load(Ordering::SeqCst) - before)
    }

    /// The general registers in the saved context, by their number in instruction encodings.
    const GREGS: [libc::c_int; 16] = [
        libc::REG_RAX,
        libc::REG_RCX,
        libc::REG_RDX,
        libc::REG_RBX,
        libc::REG_RSP,
        libc::REG_RBP,
        libc::REG_RSI,
        libc::REG_RDI,
        libc::REG_R8,
        libc::REG_R9,
        libc::REG_R10,
        libc::REG_R11,
        libc::REG_R12,
        libc::REG_R13,
        libc::REG_R14,
        libc::REG_R15,
    ];

    extern "C" fn on_illegal_instruction(
        _: libc::c_int,
        _: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes the interrupted context, and the faulting instruction's bytes
        // are mapped (executable code); reading 15 bytes stays within its page or the next.
        unsafe {
            let gregs = &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
            let rip = gregs[libc::REG_RIP as usize] as u64;
            let bytes = std::slice::from_raw_parts(rip as *const u8, 15);
            let register = |n: usize| gregs[GREGS[n] as usize] as u64;
            let Some((instruction, length)) = decode(bytes, rip, register) else {
                // Not ours: fault again without the handler.
                libc::signal(libc::SIGILL, libc::SIG_DFL);
                return;
            };
            match instruction {
                Instruction::Configure(at) => configure(&*(at as *const TileConfig)),
                Instruction::Release => release(),
                Instruction::Zero(t) => zero(t),
                Instruction::Load {
                    tile,
                    start,
                    stride,
                } => load(tile, start as *const u8, stride),
                Instruction::Store {
                    tile,
                    start,
                    stride,
                } => store(tile, start as *mut u8, stride),
                Instruction::Dot { c, a, b } => dot(c, a, b),
            }
            gregs[libc::REG_RIP as usize] = rip.wrapping_add(length) as i64;
        }
        FAULTS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn decodes_the_tile_instructions_as_gnu_as_encodes_them() {
        // Bytes from `as` (binutils 2.40) for the instruction on the right; registers are
        // their number times 0x100.
        let register = |n: usize| 0x100 * n as u64;
        let cases: [(&[u8], Instruction, &str); 8] = [
            (
                &[0xc4, 0xe2, 0x4a, 0x5c, 0xc4],
                Instruction::Dot { c: 0, a: 4, b: 6 },
                "tdpbf16ps tmm0,tmm4,tmm6",
            ),
            (
                &[0xc4, 0xe2, 0x42, 0x5c, 0xdd],
                Instruction::Dot { c: 3, a: 5, b: 7 },
                "tdpbf16ps tmm3,tmm5,tmm7",
            ),
            (
                &[0xc4, 0xe2, 0x78, 0x49, 0xc0],
                Instruction::Release,
                "tilerelease",
            ),
            (
                &[0xc4, 0xe2, 0x7b, 0x49, 0xd8],
                Instruction::Zero(3),
                "tilezero tmm3",
            ),
            (
                &[0xc4, 0xe2, 0x7b, 0x4b, 0x24, 0x08],
                Instruction::Load {
                    tile: 4,
                    start: 0,
                    stride: 0x100,
                },
                "tileloadd tmm4,[rax+rcx*1]",
            ),
            (
                &[0xc4, 0x82, 0x7a, 0x4b, 0x54, 0x08, 0x40],
                Instruction::Store {
                    tile: 2,
                    start: 0x840,
                    stride: 0x900,
                },
                "tilestored [r8+r9*1+0x40],tmm2",
            ),
            (
                &[0xc4, 0xe2, 0x78, 0x49, 0x07],
                Instruction::Configure(0x700),
                "ldtilecfg [rdi]",
            ),
            (
                &[0xc4, 0xa2, 0x79, 0x4b, 0x7c, 0x96, 0xf8],
                Instruction::Load {
                    tile: 7,
                    start: 0x5f8,
                    stride: 0x2800,
                },
                "tileloaddt1 tmm7,[rsi+r10*4-0x8]",
            ),
        ];
        for (bytes, instruction, text) in cases {
            let padded: Vec<u8> = bytes.iter().copied().chain([0x90; 15]).collect();
            let decoded = decode(&padded, 0, register);
            assert_eq!(decoded, Some((instruction, bytes.len() as u64)), "{text}");
        }
        // vfmadd231ps xmm0, xmm1, xmm2 (VEX map 0F38, not a tile instruction).
        assert_eq!(
            decode(
                &[0xc4, 0xe2, 0x71, 0xb8, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                0,
                register
            ),
            None
        );
    }
}
