//! `sgn plot LOG… --out FIG`: overlay the curves of several training logs.

use super::files::{self, Named};
use super::options;
use crate::optim::Record;
use crate::optim::report::{plot_comparison, read_log};
use crate::{Error, Result};
use std::path::PathBuf;

/// The arguments of `sgn plot`.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Training logs written by `sgn train --log` (.csv or .jsonl).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// One legend label per log (default: the file names).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The figure's title.
    #[arg(long, default_value = "training curves")]
    title: String,
    /// Where to write the figure (.svg or .png).
    #[arg(long, value_parser = options::figure_path)]
    out: PathBuf,
}

pub fn run(args: &PlotArgs) -> Result<()> {
    let logs: Vec<Named> = args.logs.iter().map(|p| ("LOG", p.as_path())).collect();
    files::check_outputs(&logs, &[("--out", &args.out)], &[])?;
    if !args.labels.is_empty() && args.labels.len() != args.logs.len() {
        return Err(Error::Data(format!(
            "{} labels for {} logs",
            args.labels.len(),
            args.logs.len()
        )));
    }
    let mut runs = Vec::with_capacity(args.logs.len());
    for (i, path) in args.logs.iter().enumerate() {
        let label = args.labels.get(i).cloned().unwrap_or_else(|| {
            path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        });
        runs.push((label, read_log(path)?));
    }
    let borrowed: Vec<(&str, &[Record])> = runs
        .iter()
        .map(|(l, r)| (l.as_str(), r.as_slice()))
        .collect();
    plot_comparison(&borrowed, &args.title, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
