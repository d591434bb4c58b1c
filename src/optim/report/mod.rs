//! Training logs and learning curves: the [`Record`]s of a run written as CSV or JSON lines, read
//! back, and plotted as loss and accuracy against epochs and against wall time.
//!
//! Floats are written in Rust's shortest round-trip form (`{:?}`), so a log reads back bit for
//! bit; a non-finite value is `NaN`, `inf` or `-inf` (in JSON, where numbers cannot be non-finite,
//! the strings `"NaN"`, `"inf"`, `"-inf"`). A field that does not apply to a row is an empty CSV
//! cell or a JSON `null`.
//!
//! Plots are SVG or PNG, by the file's extension. PNG text is drawn with the DejaVu Sans font
//! compiled into the binary, so plotting needs no system font.

mod plot;

pub use plot::{check_figure_path, plot, plot_comparison, plot_seeds};

use super::record::{Record, RecordKind};
use crate::{Error, Result};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The log's columns (CSV header) and JSON keys, in order.
pub use super::record::RECORD_FIELDS as LOG_COLUMNS;

/// A log file's format, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Csv,
    JsonLines,
}

impl LogFormat {
    fn of(path: &Path) -> Result<LogFormat> {
        match extension(path).as_deref() {
            Some("csv") => Ok(LogFormat::Csv),
            Some("jsonl" | "json") => Ok(LogFormat::JsonLines),
            _ => Err(unsupported(path, "log format: use .csv, .jsonl or .json")),
        }
    }
}

/// Checks that `path` names a log format [`LogWriter`] writes (`.csv`, `.jsonl` or `.json`).
pub fn check_log_path(path: &Path) -> Result<()> {
    LogFormat::of(path).map(drop)
}

/// `path`'s extension in lower case.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

fn unsupported(path: &Path, what: &str) -> Error {
    Error::io(
        path,
        io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported {what}")),
    )
}

/// Writes a training log one row at a time. Each row goes to the file with a single write as soon
/// as it is given, so a crashed process loses at most the row it was writing (this does not sync
/// to disk: a power loss may lose more).
///
/// ```
/// use sgn::optim::report::{LOG_COLUMNS, LogWriter, read_log};
/// use sgn::optim::{Record, RecordKind};
///
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let path = dir.path().join("run.csv");
/// let step = Record {
///     kind: RecordKind::Step,
///     epoch: 0.5,
///     iteration: 1,
///     wall_time: 0.25,
///     train_loss: Some(0.693),
///     test_loss: None,
///     test_accuracy: None,
///     rho: Some(1e-4),
///     cg_iters: Some(10),
///     step_size: Some(1.0),
/// };
/// let eval = Record {
///     kind: RecordKind::Eval,
///     epoch: 1.0,
///     iteration: 2,
///     test_loss: Some(0.5),
///     test_accuracy: Some(0.875),
///     rho: None,
///     cg_iters: None,
///     step_size: None,
///     ..step.clone()
/// };
/// let mut log = LogWriter::create(&path)?;
/// log.write(&step)?;
/// log.write(&eval)?;
///
/// let text = std::fs::read_to_string(&path).expect("the log");
/// let lines: Vec<&str> = text.lines().collect();
/// assert_eq!(lines[0], LOG_COLUMNS.join(","));
/// assert_eq!(lines[1], "step,0.5,1,0.25,0.693,,,0.0001,10,1.0");
/// assert_eq!(read_log(&path)?, [step, eval]); // floats read back bit for bit
/// # Ok::<(), sgn::Error>(())
/// ```
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    format: LogFormat,
}

impl LogWriter {
    /// Creates (or truncates) the log at `path`: CSV for `.csv`, JSON lines for `.jsonl` or
    /// `.json`. A CSV log starts with its header.
    pub fn create(path: impl AsRef<Path>) -> Result<LogWriter> {
        let path = path.as_ref();
        let format = LogFormat::of(path)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut writer = LogWriter {
            file,
            path: path.to_path_buf(),
            format,
        };
        writer.write_header()?;
        Ok(writer)
    }

    /// Opens the log at `path` to continue a resumed run, keeping its rows; creates it if it does
    /// not exist. The existing rows must be a valid log of the same format (for CSV, the same
    /// header), else this is an error. A last row without a line end is the row a crash
    /// interrupted: it is removed. A path that is no regular file (a FIFO, `/dev/stdout`) gets a
    /// new log, as [`LogWriter::create`] writes it.
    pub fn append_to(path: impl AsRef<Path>) -> Result<LogWriter> {
        let path = path.as_ref();
        // A FIFO or a device (`/dev/stdout`) keeps no rows, and reading one would wait: the
        // resumed run streams into it as a new log.
        if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return LogWriter::create(path);
        }
        let format = LogFormat::of(path)?;
        let io_error = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_error)?;
        let complete = text.rfind('\n').map_or(0, |end| end + 1);
        parse_log(&text[..complete], format, path)?;
        if complete < text.len() {
            file.set_len(complete as u64).map_err(io_error)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_error)?;
        let mut writer = LogWriter {
            file,
            path: path.to_path_buf(),
            format,
        };
        if complete == 0 {
            writer.write_header()?;
        }
        Ok(writer)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let row = match self.format {
            LogFormat::Csv => csv_row(record),
            LogFormat::JsonLines => json_row(record),
        };
        self.write_line(&row)
    }

    fn write_header(&mut self) -> Result<()> {
        match self.format {
            LogFormat::Csv => self.write_line(&LOG_COLUMNS.join(",")),
            LogFormat::JsonLines => Ok(()),
        }
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let line = format!("{line}\n");
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// One value of a row, before formatting.
enum Cell {
    Text(&'static str),
    Float(f64),
    Integer(u64),
    Empty,
}

/// The cells of `record`, in [`LOG_COLUMNS`] order.
fn cells(record: &Record) -> [Cell; 10] {
    let float = |value: Option<f64>| value.map_or(Cell::Empty, Cell::Float);
    [
        Cell::Text(record.kind.name()),
        Cell::Float(record.epoch),
        Cell::Integer(record.iteration),
        Cell::Float(record.wall_time),
        float(record.train_loss),
        float(record.test_loss),
        float(record.test_accuracy),
        float(record.rho),
        record
            .cg_iters
            .map_or(Cell::Empty, |iters| Cell::Integer(iters as u64)),
        float(record.step_size),
    ]
}

fn csv_row(record: &Record) -> String {
    let cells = cells(record).map(|cell| match cell {
        Cell::Text(text) => text.to_string(),
        Cell::Float(x) => format!("{x:?}"),
        Cell::Integer(n) => n.to_string(),
        Cell::Empty => String::new(),
    });
    cells.join(",")
}

fn json_row(record: &Record) -> String {
    let fields: Vec<String> = LOG_COLUMNS
        .iter()
        .zip(cells(record))
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Text(text) => format!("\"{text}\""),
                Cell::Float(x) if x.is_finite() => format!("{x:?}"),
                Cell::Float(x) => format!("\"{x:?}\""),
                Cell::Integer(n) => n.to_string(),
                Cell::Empty => "null".to_string(),
            };
            format!("\"{name}\":{value}")
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Reads a log written by [`LogWriter`] (CSV or JSON lines, by extension). A malformed row is an
/// [`Error::Data`] naming the file and line.
pub fn read_log(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let format = LogFormat::of(path)?;
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_log(&text, format, path)
}

fn parse_log(text: &str, format: LogFormat, path: &Path) -> Result<Vec<Record>> {
    let at_line = |number: usize, message: String| {
        Error::Data(format!("{}:{number}: {message}", path.display()))
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut records = Vec::with_capacity(lines.len());
    for (index, raw_line) in lines.iter().enumerate() {
        let number = index + 1;
        let Some(line) = raw_line.strip_suffix('\n') else {
            return Err(at_line(
                number,
                "incomplete last row (no line end): the run was interrupted while writing it"
                    .to_string(),
            ));
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if format == LogFormat::Csv && number == 1 {
            let expected = LOG_COLUMNS.join(",");
            if line != expected {
                return Err(at_line(
                    number,
                    format!("header is '{line}', expected '{expected}'"),
                ));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = match format {
            LogFormat::Csv => parse_csv_row(line),
            LogFormat::JsonLines => parse_json_row(line),
        };
        records.push(record.map_err(|message| at_line(number, message))?);
    }
    Ok(records)
}

fn parse_csv_row(line: &str) -> Result<Record, String> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != LOG_COLUMNS.len() {
        return Err(format!(
            "expected {} fields, found {}",
            LOG_COLUMNS.len(),
            fields.len()
        ));
    }
    let values = fields
        .iter()
        .map(|field| (!field.is_empty()).then_some(RawValue::Csv(field)))
        .collect();
    record_from_row(&Row { values })
}

fn parse_json_row(line: &str) -> Result<Record, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("expected a JSON object".to_string());
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !LOG_COLUMNS.contains(&key.as_str()))
    {
        return Err(format!("unknown field '{unknown}'"));
    }
    let values = LOG_COLUMNS
        .iter()
        .map(|name| {
            object
                .get(*name)
                .filter(|v| !v.is_null())
                .map(RawValue::Json)
        })
        .collect();
    record_from_row(&Row { values })
}

/// A non-empty value of a row, as read.
enum RawValue<'a> {
    Csv(&'a str),
    Json(&'a Value),
}

impl RawValue<'_> {
    fn float(&self) -> Result<f64, String> {
        match self {
            RawValue::Csv(text) => text
                .parse()
                .map_err(|_| format!("'{text}' is not a number")),
            RawValue::Json(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| format!("{n} is not representable as a float")),
            RawValue::Json(Value::String(text)) => match text.parse::<f64>() {
                Ok(x) if !x.is_finite() => Ok(x),
                _ => Err(format!(
                    "expected a number (or \"NaN\", \"inf\", \"-inf\"), found the string \"{text}\""
                )),
            },
            RawValue::Json(other) => Err(format!("expected a number, found {other}")),
        }
    }

    fn integer(&self) -> Result<u64, String> {
        match self {
            RawValue::Csv(text) => text
                .parse()
                .map_err(|_| format!("'{text}' is not a non-negative integer")),
            RawValue::Json(value) => value
                .as_u64()
                .ok_or_else(|| format!("expected a non-negative integer, found {value}")),
        }
    }

    fn text(&self) -> Result<&str, String> {
        match self {
            RawValue::Csv(text) => Ok(text),
            RawValue::Json(value) => value
                .as_str()
                .ok_or_else(|| format!("expected a string, found {value}")),
        }
    }
}

/// The values of one row, in [`LOG_COLUMNS`] order (`None`: empty or absent).
struct Row<'a> {
    values: Vec<Option<RawValue<'a>>>,
}

impl<'a> Row<'a> {
    fn optional<T>(
        &self,
        column: &str,
        convert: impl Fn(&RawValue<'a>) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        let index = LOG_COLUMNS
            .iter()
            .position(|name| *name == column)
            .expect("columns are looked up by their names in LOG_COLUMNS");
        self.values[index]
            .as_ref()
            .map(|value| convert(value).map_err(|message| format!("field '{column}': {message}")))
            .transpose()
    }

    fn required<T>(
        &self,
        column: &str,
        convert: impl Fn(&RawValue<'a>) -> Result<T, String>,
    ) -> Result<T, String> {
        self.optional(column, convert)?
            .ok_or_else(|| format!("field '{column}' is missing or empty"))
    }
}

fn record_from_row(row: &Row) -> Result<Record, String> {
    let kind_name = row.required("kind", |v| v.text().map(str::to_string))?;
    let kind = [RecordKind::Step, RecordKind::Eval]
        .into_iter()
        .find(|kind| kind.name() == kind_name)
        .ok_or_else(|| {
            format!("field 'kind': unknown record kind '{kind_name}' (expected step or eval)")
        })?;
    let cg_iters = row
        .optional("cg_iters", RawValue::integer)?
        .map(|iters| {
            usize::try_from(iters).map_err(|_| format!("field 'cg_iters': {iters} is too large"))
        })
        .transpose()?;
    Ok(Record {
        kind,
        epoch: row.required("epoch", RawValue::float)?,
        iteration: row.required("iteration", RawValue::integer)?,
        wall_time: row.required("wall_time", RawValue::float)?,
        train_loss: row.optional("train_loss", RawValue::float)?,
        test_loss: row.optional("test_loss", RawValue::float)?,
        test_accuracy: row.optional("test_accuracy", RawValue::float)?,
        rho: row.optional("rho", RawValue::float)?,
        cg_iters,
        step_size: row.optional("step_size", RawValue::float)?,
    })
}
