//! `sgn data fetch NAME`: download and verify a dataset into the cache.

use crate::data::{self, DatasetName};
use crate::{Error, Result};
use std::path::PathBuf;

/// The arguments of `sgn data fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// mnist, fashion-mnist or boston (sine is generated, nothing to fetch; cifar10 cannot be
    /// fetched, its files are only verified).
    name: DatasetName,
    /// Where datasets are cached (default: $SGN_DATA_DIR, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(args: &FetchArgs) -> Result<()> {
    let dir = data::resolve_data_dir(args.data_dir.as_deref());
    let fetched = data::fetch(args.name, &dir, |reason| {
        eprintln!(
            "fetching {} into {} ({reason}) ...",
            args.name,
            dir.display()
        );
    })?;
    if fetched.files.is_empty() {
        return Err(Error::Data(format!(
            "{} is generated, there is nothing to fetch",
            args.name
        )));
    }
    let how = if fetched.downloaded {
        "fetched and verified"
    } else if args.name == DatasetName::Cifar10 {
        "present, verified (sizes, labels, class counts)"
    } else {
        "already cached, verified"
    };
    println!("{}: {how}", args.name);
    for f in &fetched.files {
        println!("  {}", f.display());
    }
    Ok(())
}
