//! The files a command reads and writes, checked before it does any work: an output must not be
//! one of the command's inputs (nor another of its outputs), must not be a directory, and its
//! directory must accept new files — so that a mistyped path fails in a second, not after a
//! training run, and never replaces a model, a batch or a checkpoint the command reads.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A path given to an option (`--out`, `--params`, or `MODEL` for a positional argument).
pub(super) type Named<'a> = (&'static str, &'a Path);

/// Checks `outputs` against `inputs` and the file system; errors name the option and the path.
pub(super) fn check_outputs(inputs: &[Named], outputs: &[Named]) -> Result<()> {
    for (k, &(option, path)) in outputs.iter().enumerate() {
        let refuse = |why: String| Err(Error::Eval(format!("{option} {}: {why}", path.display())));
        if let Some(&(input, _)) = inputs.iter().find(|(_, p)| same_file(p, path)) {
            return refuse(format!(
                "this is the {input} file, which the command reads; writing would replace it \
                 (choose another output path)"
            ));
        }
        if let Some(&(other, _)) = outputs[..k].iter().find(|(_, p)| same_file(p, path)) {
            return refuse(format!(
                "{other} writes this file too; give each output its own path"
            ));
        }
        if path.is_dir() {
            return refuse("this is a directory; give a file path".to_string());
        }
        let dir = parent_dir(path);
        if let Err(e) = probe(dir) {
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
    same_file::is_same_file(a, b).unwrap_or(false)
        || resolved(a).is_some_and(|r| resolved(b) == Some(r))
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
            check_outputs(inputs, outputs).unwrap_err().to_string()
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
        check_outputs(&[("MODEL", &model)], &[("--out", &out)]).unwrap();
        assert!(!out.exists(), "checking writes nothing");
    }
}
