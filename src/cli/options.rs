//! Parsers of the numeric and path options: a value out of its range is a usage error at parse
//! time that names the option and the range (`invalid value 'nan' for '--lr <LR>': must be a
//! finite number > 0`), before any file is read. Each option's `--help` states its range.

use crate::codegen::MAX_THREADS;
use crate::optim::report::{check_figure_path, check_log_path};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--threads`: 0 (one per core) to [`MAX_THREADS`].
pub(super) fn threads(text: &str) -> Result<usize, String> {
    whole_number(text, 0, MAX_THREADS as u64)
}

/// `--curvature`: f32 (the model's own precision) or bf16.
pub(super) fn curvature(text: &str) -> Result<crate::Curvature, String> {
    match text {
        "f32" => Ok(crate::Curvature::Full),
        "bf16" => Ok(crate::Curvature::Bf16),
        _ => Err(format!("unknown curvature '{text}': f32 or bf16")),
    }
}

/// A count of at least 1 (`--batch`, `--epochs`, `--cg-iters`, `--repeats`).
pub(super) fn at_least_one<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    whole_number(text, 1, u64::MAX)
}

/// Timed runs per graph (`bench --repeats`), 1 to a million: more would run for days on any
/// graph worth timing.
pub(super) fn repeats(text: &str) -> Result<usize, String> {
    whole_number(text, 1, 1_000_000)
}

/// A whole number in `min..=max` (no upper bound is stated when `max` is `u64::MAX`), as `T`.
fn whole_number<T: TryFrom<u64>>(text: &str, min: u64, max: u64) -> Result<T, String> {
    let range = if max == u64::MAX {
        format!("a whole number >= {min}")
    } else {
        format!("a whole number from {min} to {max}")
    };
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a whole number; must be {range}"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("must be {range}"));
    }
    T::try_from(n).map_err(|_| format!("too large for this machine; must be {range}"))
}

/// A finite number > 0 (`--lr`, `--rho0`, `--frequency`).
pub(super) fn positive(text: &str) -> Result<f64, String> {
    number_where(text, |x| x > 0.0, "a finite number > 0")
}

/// A number in (0, 1000] (`reproduce --budget-scale`): the paper's budgets times 1000 are
/// already days, and a time limit must fit a `Duration`.
pub(super) fn budget_scale(text: &str) -> Result<f64, String> {
    number_where(text, |x| x > 0.0 && x <= 1000.0, "a number in (0, 1000]")
}

/// A finite number in [0, 1] (`--warm-start`, `--precondition`).
pub(super) fn unit_interval(text: &str) -> Result<f64, String> {
    number_where(text, |x| (0.0..=1.0).contains(&x), "a number in [0, 1]")
}

/// A finite number in [0, 1) (`--momentum`).
pub(super) fn below_one(text: &str) -> Result<f64, String> {
    number_where(text, |x| (0.0..1.0).contains(&x), "a number in [0, 1)")
}

/// A number strictly between 0 and 1 (`--test-fraction`).
pub(super) fn open_fraction(text: &str) -> Result<f64, String> {
    number_where(text, |x| x > 0.0 && x < 1.0, "a number in (0, 1)")
}

/// A data file: `FILE.safetensors`, `FILE.csv` or `IMAGES,LABELS` (`--train`, `--test`).
pub(super) fn data_file(text: &str) -> Result<crate::data::DataFile, String> {
    text.parse().map_err(|e: crate::Error| e.to_string())
}

fn number_where(text: &str, valid: impl Fn(f64) -> bool, range: &str) -> Result<f64, String> {
    let x: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a number; must be {range}"))?;
    if x.is_finite() && valid(x) {
        Ok(x)
    } else {
        Err(format!("must be {range}"))
    }
}

/// A duration longer than zero (`--time-limit 25s`).
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than 0 (e.g. 25s, 2m)".to_string()),
        Err(e) => Err(format!("{e} (e.g. 25s, 2m)")),
    }
}

/// A figure path: `.svg` or `.png`.
pub(super) fn figure_path(text: &str) -> Result<PathBuf, String> {
    checked_path(text, check_figure_path)
}

/// A training log path: `.csv`, `.jsonl` or `.json`.
pub(super) fn log_path(text: &str) -> Result<PathBuf, String> {
    checked_path(text, check_log_path)
}

fn checked_path(text: &str, check: fn(&Path) -> crate::Result<()>) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    check(&path).map_err(|e| match e {
        crate::Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    })?;
    Ok(path)
}

/// `STEPS,ITERS` (`--cg-early`): the first STEPS steps (at least 1) run up to ITERS CG
/// iterations (at least 1).
pub(super) fn early_cg(text: &str) -> Result<crate::optim::EarlyCg, String> {
    let (steps, iters) = text
        .split_once(',')
        .ok_or_else(|| format!("'{text}' is not STEPS,ITERS (e.g. 10,10)"))?;
    let whole = |what: &str, s: &str| -> Result<u64, String> {
        match s.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{what} '{}' must be a whole number >= 1", s.trim())),
        }
    };
    let steps = whole("STEPS", steps)?;
    let max_iters = usize::try_from(whole("ITERS", iters)?)
        .map_err(|_| format!("ITERS '{}' is too large", iters.trim()))?;
    Ok(crate::optim::EarlyCg { steps, max_iters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_their_range_say_the_range() {
        assert_eq!(positive("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "-inf"] {
            assert_eq!(
                positive(bad),
                Err("must be a finite number > 0".to_string()),
                "{bad}"
            );
        }
        assert_eq!(
            positive("x").unwrap_err(),
            "not a number; must be a finite number > 0"
        );
        assert_eq!(unit_interval("1"), Ok(1.0));
        assert_eq!(unit_interval("0"), Ok(0.0));
        assert!(unit_interval("1.01").is_err() && unit_interval("-3").is_err());
        assert_eq!(below_one("0.9"), Ok(0.9));
        assert!(below_one("1").is_err() && below_one("-1").is_err());
        assert_eq!(open_fraction("0.25"), Ok(0.25));
        for bad in ["0", "1", "-0.1", "NaN"] {
            assert!(open_fraction(bad).unwrap_err().contains("(0, 1)"), "{bad}");
        }
        assert!(duration("0s").unwrap_err().contains("longer than 0"));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn counts_outside_their_range_say_the_range() {
        assert_eq!(at_least_one::<usize>("3"), Ok(3));
        assert_eq!(
            at_least_one::<u64>("0"),
            Err("must be a whole number >= 1".to_string())
        );
        assert!(
            at_least_one::<usize>("-1")
                .unwrap_err()
                .starts_with("not a whole number")
        );
        assert_eq!(repeats("1000000"), Ok(1_000_000));
        assert_eq!(
            repeats("1000001"),
            Err("must be a whole number from 1 to 1000000".to_string())
        );
        assert_eq!(threads("0"), Ok(0));
        assert_eq!(threads(&MAX_THREADS.to_string()), Ok(MAX_THREADS));
        let refused = threads(&(MAX_THREADS + 1).to_string()).unwrap_err();
        assert_eq!(
            refused,
            format!("must be a whole number from 0 to {MAX_THREADS}")
        );
    }

    #[test]
    fn paths_of_unknown_formats_are_refused() {
        assert!(figure_path("a.svg").is_ok() && figure_path("b.PNG").is_ok());
        assert!(figure_path("c.pdf").unwrap_err().contains(".svg or .png"));
        assert!(log_path("run.csv").is_ok() && log_path("run.jsonl").is_ok());
        assert!(log_path("run.txt").unwrap_err().contains(".csv"));
    }
}
