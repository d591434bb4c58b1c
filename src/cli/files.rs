//! The files a command reads and writes, checked before it does any work: an output must not be
//! one of the command's inputs (nor another of its outputs), must not be a directory, and its
//! directory must accept new files — so that a mistyped path fails in a second, not after a
//! training run, and never replaces a model, a batch or a checkpoint the command reads. An
//! output written whole (through a temporary file renamed over its path) must be a regular file
//! or a new path: the rename would otherwise put a file in place of a device, a FIFO or a socket.
//! A streamed output (a log, row by row) may be any file that can be opened for writing, such as
//! `/dev/stdout` or a FIFO.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A path given to an option (`--out`, `--params`, or `MODEL` for a positional argument).
pub(super) type Named<'a> = (&'static str, &'a Path);

/// Checks the outputs `replaced` (written whole, by a rename) and `streamed` (written row by row
/// into the file as it is) against `inputs` and the file system; errors name the option and the
/// path. Nothing here opens a file: opening a FIFO would wait for its other end.
pub(super) fn check_outputs(
    inputs: &[Named],
    replaced: &[Named],
    streamed: &[Named],
) -> Result<()> {
    let outputs: Vec<(Named, bool)> = (streamed.iter().map(|&named| (named, false)))
        .chain(replaced.iter().map(|&named| (named, true)))
        .collect();
    for (k, &((option, path), replaces)) in outputs.iter().enumerate() {
        let refuse = |why: String| Err(Error::Eval(format!("{option} {}: {why}", path.display())));
        if let Some(&(input, _)) = inputs.iter().find(|(_, p)| same_file(p, path)) {
            return refuse(format!(
                "this is the {input} file, which the command reads; writing would replace it \
                 (choose another output path)"
            ));
        }
        if let Some(&((other, _), _)) = outputs[..k].iter().find(|((_, p), _)| same_file(p, path)) {
            return refuse(format!(
                "{other} writes this file too; give each output its own path"
            ));
        }
        if path.is_dir() {
            return refuse("this is a directory; give a file path".to_string());
        }
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if special && replaces {
            return refuse(
                "this is not a regular file (a device, FIFO or socket); the output is written \
                 beside it and renamed over this path, which would replace it (give a file path)"
                    .to_string(),
            );
        }
        // A device or FIFO that is there is written in place: its directory need not accept
        // new files (`--log /dev/stdout`).
        let dir = parent_dir(path);
        if !special && let Err(e) = probe(dir) {
            return refuse(format!("cannot create files in {}: {e}", dir.display()));
        }
    }
    Ok(())
}

/// Creates and removes an empty file in `dir`: whether the outputs can be written there, asked
/// of the file system itself (permissions, read-only mounts, a missing directory).
fn probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".sgn-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => std::fs::remove_file(&probe),
        // Left by an earlier process of the same id: the directory did accept it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// True if `a` and `b` are one file: the same device and inode when both exist (through links),
/// else the same path once their directories are resolved.
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    identity(a).is_some_and(|id| identity(b) == Some(id))
        || resolved(a).is_some_and(|r| resolved(b) == Some(r))
}

/// What makes `path` the file it is (its device and inode), from its metadata: the file is not
/// opened.
#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// What makes `path` the file it is, through a handle (the platform has no inode in its
/// metadata).
#[cfg(not(unix))]
fn identity(path: &Path) -> Option<same_file::Handle> {
    same_file::Handle::from_path(path).ok()
}

/// `path` with its directory made canonical (the file itself need not exist).
fn resolved(path: &Path) -> Option<PathBuf> {
    Some(
        parent_dir(path)
            .canonicalize()
            .ok()?
            .join(path.file_name()?),
    )
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_may_not_be_an_input_another_output_or_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.sgn");
        std::fs::write(&model, "model m").unwrap();
        let link = dir.path().join("hard-link.sgn");
        std::fs::hard_link(&model, &link).unwrap();
        let out = dir.path().join("out.safetensors");
        let refused = |inputs: &[Named], outputs: &[Named]| {
            check_outputs(inputs, outputs, &[]).unwrap_err().to_string()
        };
        let err = refused(&[("MODEL", &model)], &[("--out", &link)]);
        assert!(
            err.starts_with("--out ") && err.contains("the MODEL file"),
            "{err}"
        );
        let dotted = dir.path().join(".").join("out.safetensors");
        let err = refused(&[], &[("--log", &out), ("--plot", &dotted)]);
        assert!(err.contains("--log writes this file too"), "{err}");
        let err = refused(&[], &[("--save", dir.path())]);
        assert!(err.contains("is a directory"), "{err}");
        let missing = dir.path().join("no/such/dir/out.csv");
        let err = refused(&[], &[("--log", &missing)]);
        assert!(err.contains("cannot create files in"), "{err}");
        check_outputs(&[("MODEL", &model)], &[("--out", &out)], &[]).unwrap();
        assert!(!out.exists(), "checking writes nothing");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_may_take_a_log_but_no_output_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.csv");
        crate::ir::store::tests::make_fifo(&fifo);
        // Each check returns at once: none opens the FIFO.
        let err = check_outputs(&[], &[("--save", &fifo)], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--save") && err.contains("not a regular file"),
            "{err}"
        );
        check_outputs(&[], &[], &[("--log", &fifo)]).unwrap();
        let err = check_outputs(&[("--params", &fifo)], &[], &[("--log", &fifo)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("the --params file"), "{err}");
    }
}
