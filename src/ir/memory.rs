//! Memory checks before large allocations.
//!
//! Sizes that come from a model, a file or an option (a parameter's shape, a batch bound to a
//! symbolic dimension, `--batch`) are turned into bytes with checked arithmetic and compared with
//! what the machine can still give before anything is allocated: too large is an
//! [`Error::Memory`] that says what needed the memory and how much, never an aborted process or
//! a wrapped-around size.
//!
//! ```
//! use sgn::ir::DType;
//! use sgn::ir::memory::{ensure_available, tensor_bytes};
//!
//! assert_eq!(tensor_bytes(DType::F32, &[3, 4]), Some(48));
//! assert_eq!(tensor_bytes(DType::F64, &[1 << 62, 4]), None); // past 2^63 bytes
//! let err = ensure_available(tensor_bytes(DType::F32, &[1 << 40, 8]), || {
//!     "tensor 'x' f32[1099511627776, 8]".to_string()
//! })
//! .unwrap_err();
//! assert!(err.to_string().starts_with("tensor 'x' f32[1099511627776, 8] needs 32768.0 GiB"));
//! ```

use super::{DType, Tensor};
use crate::ir::error::{Error, Result};
use std::path::Path;

/// Allocations below this many bytes are not checked: reading the kernel's memory counters costs
/// more than such an allocation risks.
const CHECKED_FROM: u64 = 64 << 20;

/// Bytes of a copy of `tensors` (`None` past `u64`), for [`ensure_available`] before copying.
pub fn copy_bytes<'t>(tensors: impl IntoIterator<Item = &'t Tensor>) -> Option<u64> {
    tensors.into_iter().try_fold(0u64, |n, t| {
        n.checked_add(tensor_bytes(t.dtype(), t.shape())?)
    })
}

/// Bytes of a tensor of `shape` in `dtype`, or `None` for a shape no array can have: more than
/// `isize::MAX` bytes, or (for an empty tensor) non-empty axes of more than `isize::MAX`
/// elements, which arrays cannot index even when another axis is empty.
pub fn tensor_bytes(dtype: DType, shape: &[usize]) -> Option<u64> {
    let limit = isize::MAX as u64;
    let elements = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .filter(|&n| n <= limit)?;
    if shape.contains(&0) {
        return Some(0);
    }
    elements
        .checked_mul(dtype.size_bytes() as u64)
        .filter(|&bytes| bytes <= limit)
}

/// Checks that `bytes` more bytes can be allocated (`None` stands for a size past what memory
/// can address, as [`tensor_bytes`] returns).
///
/// Errors ([`Error::Memory`]): a size past what memory can address (`isize::MAX` bytes), or one
/// larger than [`available_bytes`]; the message starts with `what()`.
pub fn ensure_available(bytes: Option<u64>, what: impl FnOnce() -> String) -> Result<()> {
    let Some(bytes) = bytes else {
        return Err(Error::Memory(format!("{} {TOO_LARGE}", what())));
    };
    if bytes < CHECKED_FROM {
        return Ok(());
    }
    let available = available_bytes();
    if bytes > isize::MAX as u64 || available.is_some_and(|a| bytes > a) {
        let has = available.map_or(String::new(), |a| {
            format!(", but {} of memory is available", gib(a))
        });
        return Err(Error::Memory(format!(
            "{} needs {}{has}",
            what(),
            gib(bytes)
        )));
    }
    Ok(())
}

/// What the errors say of a size past what memory can address.
pub const TOO_LARGE: &str = "needs more than memory can address (2^63 bytes)";

/// `bytes` in GiB with one decimal, as the errors print it.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Bytes this process can still allocate: the kernel's estimate of available memory plus free
/// swap (`/proc/meminfo`), or less when the process's cgroup has a lower limit. `None` where
/// neither is known (not Linux), in which case only overflow is checked.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.as_deref()?.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kib.checked_mul(1024)
    };
    let system = field("MemAvailable:").map(|m| m.saturating_add(field("SwapFree:").unwrap_or(0)));
    match (system, cgroup_headroom()) {
        (Some(s), Some(c)) => Some(s.min(c)),
        (s, c) => s.or(c),
    }
}

/// The limit of this process's memory cgroup minus what the cgroup already uses (v2:
/// `memory.max` − `memory.current`; v1: `memory.limit_in_bytes` − `memory.usage_in_bytes`).
/// Inside a container the cgroup's own directory is usually mounted as the root, so that is
/// tried too.
fn cgroup_headroom() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let number = |dir: &Path, file: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let (root, limit, usage) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max", "memory.current"),
            c if c.split(',').any(|c| c == "memory") => (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            ),
            _ => continue,
        };
        let own = Path::new(root).join(path.trim_start_matches('/'));
        for dir in [own.as_path(), Path::new(root)] {
            // "max" (v2) does not parse: no limit.
            if let (Some(limit), Some(usage)) = (number(dir, limit), number(dir, usage)) {
                return Some(limit.saturating_sub(usage));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_overflow_into_errors_and_small_ones_pass() {
        assert_eq!(tensor_bytes(DType::F64, &[]), Some(8));
        assert_eq!(tensor_bytes(DType::F32, &[1 << 40, 0]), Some(0));
        assert_eq!(tensor_bytes(DType::F32, &[1 << 62, 0]), Some(0));
        assert_eq!(
            tensor_bytes(DType::F32, &[1 << 63, 0]),
            None,
            "no array has 2^63 rows"
        );
        assert_eq!(tensor_bytes(DType::F32, &[1 << 61]), None, "2^63 bytes");
        assert_eq!(tensor_bytes(DType::F32, &[usize::MAX, 2]), None);
        assert!(ensure_available(Some(1 << 20), || unreachable!()).is_ok());
        let err = ensure_available(None, || "x".to_string()).unwrap_err();
        assert_eq!(err.to_string(), format!("x {TOO_LARGE}"));
        let err = ensure_available(Some(u64::MAX), || "y".to_string()).unwrap_err();
        assert!(
            err.to_string().starts_with("y needs 17179869184.0 GiB"),
            "{err}"
        );
    }

    #[test]
    fn available_memory_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            let available = available_bytes().expect("/proc/meminfo is readable");
            assert!(available > 0);
        }
    }
}
