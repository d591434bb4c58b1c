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

use super::record::{Record, RecordKind};
use crate::{Error, Result};
use ab_glyph::FontRef;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use png_backend::PngBackend;
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Checks that `path` names a figure format [`plot`] draws (`.svg` or `.png`).
pub fn check_figure_path(path: &Path) -> Result<()> {
    is_svg(path).map(drop)
}

/// Whether a figure at `path` is SVG (else PNG), by its extension.
fn is_svg(path: &Path) -> Result<bool> {
    match extension(path).as_deref() {
        Some("svg") => Ok(true),
        Some("png") => Ok(false),
        _ => Err(unsupported(path, "plot format: use .svg or .png")),
    }
}

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
    /// interrupted: it is removed.
    pub fn append_to(path: impl AsRef<Path>) -> Result<LogWriter> {
        let path = path.as_ref();
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

// ---------------------------------------------------------------------------------------------
// Plots

/// Figure size in pixels (SVG user units).
const FIGURE_SIZE: (u32, u32) = (1200, 900);
const FONT: &str = "sans-serif";
/// Losses are drawn on a log scale when their positive values span more than this ratio.
const LOG_SCALE_SPAN: f64 = 100.0;
/// Values beyond this magnitude are not drawn, like non-finite ones: axis ranges around them
/// would overflow to infinity.
const DRAWABLE_MAGNITUDE: f64 = 1e300;

/// Plots one run's learning curves as a 2×2 figure, SVG or PNG by `path`'s extension:
/// (a) loss against epochs and (b) against wall time — the train loss of every step as a thin
/// line, the test loss of every evaluation as markers on a line; (c) test accuracy against epochs
/// and (d) against wall time. For a regression run (no record has a test accuracy), (c) and (d)
/// show the epoch-mean train loss beside the test loss on a log scale instead: without the step
/// noise, this is where a small final loss (say train mse ≤ 1e-3) can be read off.
///
/// The loss panels use a log scale when the losses span more than two decades. Non-finite values
/// (a rejected step's loss) are not drawn, nor are values beyond ±1e300 or non-positive values
/// on a log scale.
/// The file is written atomically: drawn to a temporary file beside it, then renamed.
pub fn plot(records: &[Record], title: &str, path: &Path) -> Result<()> {
    draw_figure(&[("", records)], Colouring::BySeries, title, path)
}

/// Like [`plot`], with several runs (a name and its records each) overlaid in the same panels:
/// one colour per run, the run's name in the legend. For comparing optimizers, e.g.
/// `[("SGN", &sgn_records), ("SGD", &sgd_records)]`.
pub fn plot_comparison(runs: &[(&str, &[Record])], title: &str, path: &Path) -> Result<()> {
    draw_figure(runs, Colouring::ByRun, title, path)
}

/// How series are coloured: one run's series each in its own colour, or one colour per run (its
/// name in the legend) when comparing runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Colouring {
    BySeries,
    ByRun,
}

/// What a series shows; it decides the label, the style and, for a single run, the colour.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quantity {
    StepTrainLoss,
    EpochTrainLoss,
    TestLoss,
    TestAccuracy,
}

impl Quantity {
    fn label(self) -> &'static str {
        match self {
            Quantity::StepTrainLoss => "train loss (per step)",
            Quantity::EpochTrainLoss => "train loss (epoch mean)",
            Quantity::TestLoss => "test loss",
            Quantity::TestAccuracy => "test accuracy",
        }
    }

    fn kind(self) -> RecordKind {
        match self {
            Quantity::StepTrainLoss => RecordKind::Step,
            _ => RecordKind::Eval,
        }
    }

    fn value(self, record: &Record) -> Option<f64> {
        match self {
            Quantity::StepTrainLoss | Quantity::EpochTrainLoss => record.train_loss,
            Quantity::TestLoss => record.test_loss,
            Quantity::TestAccuracy => record.test_accuracy.map(|a| 100.0 * a),
        }
    }

    fn style(self) -> SeriesStyle {
        match self {
            Quantity::StepTrainLoss => SeriesStyle::Thin,
            Quantity::EpochTrainLoss => SeriesStyle::HollowMarkers,
            Quantity::TestLoss | Quantity::TestAccuracy => SeriesStyle::FilledMarkers,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum XAxis {
    Epoch,
    WallTime,
}

impl XAxis {
    fn label(self) -> &'static str {
        match self {
            XAxis::Epoch => "epoch",
            XAxis::WallTime => "wall time (s)",
        }
    }

    fn value(self, record: &Record) -> f64 {
        match self {
            XAxis::Epoch => record.epoch,
            XAxis::WallTime => record.wall_time,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SeriesStyle {
    /// A thin translucent line: noisy per-step values.
    Thin,
    /// A line with filled circles: one point per evaluation.
    FilledMarkers,
    /// A line with hollow circles: a second per-evaluation series beside a filled one.
    HollowMarkers,
}

struct Series {
    label: String,
    color: RGBColor,
    style: SeriesStyle,
    points: Vec<(f64, f64)>,
}

/// How a panel's y axis is scaled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum YScale {
    Linear,
    Log,
    /// Log when the values span more than [`LOG_SCALE_SPAN`].
    Auto,
}

struct Panel {
    caption: String,
    x_axis: XAxis,
    y_label: &'static str,
    y_scale: YScale,
    legend_position: SeriesLabelPosition,
    series: Vec<Series>,
}

/// The tab10 palette: colours that are easy to tell apart.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn series(
    runs: &[(&str, &[Record])],
    colouring: Colouring,
    quantities: &[Quantity],
    x_axis: XAxis,
) -> Vec<Series> {
    let mut all = Vec::new();
    for (run_index, (name, records)) in runs.iter().enumerate() {
        for &quantity in quantities {
            let (label, color) = match colouring {
                Colouring::BySeries => {
                    let train =
                        matches!(quantity, Quantity::StepTrainLoss | Quantity::EpochTrainLoss);
                    (quantity.label().to_string(), PALETTE[usize::from(!train)])
                }
                Colouring::ByRun => (
                    format!("{name}: {}", quantity.label()),
                    PALETTE[run_index % PALETTE.len()],
                ),
            };
            let points = records
                .iter()
                .filter(|record| record.kind == quantity.kind())
                .filter_map(|record| Some((x_axis.value(record), quantity.value(record)?)))
                .filter(|(x, y)| x.abs() <= DRAWABLE_MAGNITUDE && y.abs() <= DRAWABLE_MAGNITUDE)
                .collect();
            all.push(Series {
                label,
                color,
                style: quantity.style(),
                points,
            });
        }
    }
    all
}

fn panels(runs: &[(&str, &[Record])], colouring: Colouring) -> Vec<Panel> {
    let classification = runs
        .iter()
        .any(|(_, records)| records.iter().any(|r| r.test_accuracy.is_some()));
    let mut panels = Vec::with_capacity(4);
    for (letter, x_axis) in [('a', XAxis::Epoch), ('b', XAxis::WallTime)] {
        panels.push(Panel {
            caption: format!("({letter}) loss against {}", x_axis.label()),
            x_axis,
            y_label: "loss",
            y_scale: YScale::Auto,
            legend_position: SeriesLabelPosition::UpperRight,
            series: series(
                runs,
                colouring,
                &[Quantity::StepTrainLoss, Quantity::TestLoss],
                x_axis,
            ),
        });
    }
    for (letter, x_axis) in [('c', XAxis::Epoch), ('d', XAxis::WallTime)] {
        panels.push(if classification {
            Panel {
                caption: format!("({letter}) test accuracy against {}", x_axis.label()),
                x_axis,
                y_label: "test accuracy (%)",
                y_scale: YScale::Linear,
                legend_position: SeriesLabelPosition::LowerRight,
                series: series(runs, colouring, &[Quantity::TestAccuracy], x_axis),
            }
        } else {
            Panel {
                caption: format!(
                    "({letter}) epoch-mean train and test loss against {}",
                    x_axis.label()
                ),
                x_axis,
                y_label: "loss",
                y_scale: YScale::Log,
                legend_position: SeriesLabelPosition::UpperRight,
                series: series(
                    runs,
                    colouring,
                    &[Quantity::EpochTrainLoss, Quantity::TestLoss],
                    x_axis,
                ),
            }
        });
    }
    panels
}

fn draw_figure(
    runs: &[(&str, &[Record])],
    colouring: Colouring,
    title: &str,
    path: &Path,
) -> Result<()> {
    let svg = is_svg(path)?;
    register_embedded_font();
    let panels = panels(runs, colouring);
    write_atomically(path, |temporary| {
        if svg {
            draw_panels(
                SVGBackend::new(temporary, FIGURE_SIZE).into_drawing_area(),
                title,
                &panels,
            )
        } else {
            draw_panels(
                PngBackend::new(temporary, FIGURE_SIZE).into_drawing_area(),
                title,
                &panels,
            )
        }
    })
}

/// The embedded DejaVu Sans, the only font the plots use.
fn embedded_font() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans::regular())
        .expect("the embedded DejaVu Sans is a valid TrueType font")
}

/// Makes the embedded font plotters' sans-serif font: plotters is built without system font
/// lookup and measures text with it to lay out the charts.
fn register_embedded_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| ())
            .expect("the embedded DejaVu Sans is a valid TrueType font");
    });
}

fn draw_panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> Result<(), String> {
    let text_error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(text_error)?;
    let body = root
        .margin(8, 4, 4, 4)
        .titled(title, (FONT, 24))
        .map_err(text_error)?;
    // Panels above each other share their x axis, so their curves line up.
    let x_range = |x_axis: XAxis| {
        let x_values = panels
            .iter()
            .filter(|panel| panel.x_axis == x_axis)
            .flat_map(|panel| &panel.series)
            .flat_map(|series| series.points.iter().map(|point| point.0));
        padded_range(x_values, 0.02)
    };
    for (area, panel) in body.split_evenly((2, 2)).iter().zip(panels) {
        draw_panel(area, panel, x_range(panel.x_axis))?;
    }
    root.present().map_err(text_error)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_range: Range<f64>,
) -> Result<(), String> {
    let y_values = || {
        panel
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.1))
    };
    let positive_range = min_max(y_values().filter(|y| *y > 0.0));
    let log = match panel.y_scale {
        YScale::Linear => false,
        YScale::Log => true,
        YScale::Auto => positive_range.is_some_and(|(low, high)| high / low > LOG_SCALE_SPAN),
    };
    if log {
        // Whole decades, at least one, widened by a hair so that rounding in plotters' tick
        // placement does not drop the end ticks.
        let (low, high) = positive_range.unwrap_or((0.1, 1.0));
        let low_decade = low.log10().floor().max(-DRAWABLE_MAGNITUDE.log10());
        let high_decade = high.log10().ceil().max(low_decade + 1.0);
        let y_range = 10f64.powf(low_decade) * (1.0 - 1e-9)..10f64.powf(high_decade) * (1.0 + 1e-9);
        let y_label = format!("{} (log scale)", panel.y_label);
        draw_chart(area, panel, &y_label, x_range, y_range.log_scale(), |y| {
            y > 0.0
        })
    } else {
        let y_range = padded_range(y_values(), 0.05);
        draw_chart(area, panel, panel.y_label, x_range, y_range, |_| true)
    }
}

/// The smallest and largest of `values`, if any.
fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((low, high)) => Some((low.min(v), high.max(v))),
    })
}

/// The range of `values` widened by `padding` of its width on each side; a sensible range when
/// there is no value or only one.
fn padded_range(values: impl Iterator<Item = f64>, padding: f64) -> Range<f64> {
    match min_max(values) {
        None => 0.0..1.0,
        Some((low, high)) if low == high => {
            let half = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
            low - half..high + half
        }
        Some((low, high)) => {
            let pad = (high - low) * padding;
            low - pad..high + pad
        }
    }
}

fn draw_chart<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    y_label: &str,
    x_range: Range<f64>,
    y_range: Y,
    drawable: impl Fn(f64) -> bool,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let text_error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 17))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_axis.label())
        .y_desc(y_label)
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 12))
        .x_label_formatter(&|x| tick_label(*x))
        .y_label_formatter(&|y| tick_label(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(text_error)?;

    let mut labelled = false;
    // Noisy per-step lines first, so the evaluation curves of every run stay on top.
    let thin_first = panel
        .series
        .iter()
        .filter(|series| series.style == SeriesStyle::Thin)
        .chain(
            panel
                .series
                .iter()
                .filter(|series| series.style != SeriesStyle::Thin),
        );
    for series in thin_first {
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(_, y)| drawable(*y))
            .collect();
        if points.is_empty() {
            continue;
        }
        labelled = true;
        let color = series.color;
        let line = match series.style {
            SeriesStyle::Thin => color.mix(0.45).stroke_width(1),
            SeriesStyle::FilledMarkers | SeriesStyle::HollowMarkers => color.stroke_width(2),
        };
        let drawn = chart
            .draw_series(LineSeries::new(points.iter().copied(), line))
            .map_err(text_error)?;
        drawn.label(&series.label);
        match series.style {
            SeriesStyle::Thin => {
                drawn.legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], line));
            }
            SeriesStyle::FilledMarkers | SeriesStyle::HollowMarkers => {
                let marker = if series.style == SeriesStyle::FilledMarkers {
                    color.filled()
                } else {
                    WHITE.filled()
                };
                drawn.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new([(0, 0), (20, 0)], line)
                        + Circle::new((10, 0), 4, marker)
                        + Circle::new((10, 0), 4, color.stroke_width(1))
                });
                chart
                    .draw_series(points.iter().map(|&point| {
                        EmptyElement::at(point)
                            + Circle::new((0, 0), 4, marker)
                            + Circle::new((0, 0), 4, color.stroke_width(1))
                    }))
                    .map_err(text_error)?;
            }
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(panel.legend_position.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(text_error)?;
    } else {
        let (width, height) = area.dim_in_pixel();
        area.draw_text(
            "no data",
            &TextStyle::from((FONT, 16))
                .color(&BLACK.mix(0.5))
                .pos(Pos::new(HPos::Center, VPos::Center)),
            (width as i32 / 2, height as i32 / 2),
        )
        .map_err(text_error)?;
    }
    Ok(())
}

/// A tick label: at most four significant digits, exponent notation for very large or small
/// values (1e-4 rather than 0.0001).
fn tick_label(value: f64) -> String {
    let rounded: f64 = format!("{value:.3e}")
        .parse()
        .expect("a float formatted with {:e} parses back");
    let magnitude = rounded.abs();
    if rounded != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        format!("{rounded:e}")
    } else {
        format!("{rounded}")
    }
}

/// Draws into a temporary file beside `path` (its name ends in the same extension, which the PNG
/// encoder goes by), then renames it to `path`; the temporary file is removed on failure.
fn write_atomically(path: &Path, draw: impl FnOnce(&Path) -> Result<(), String>) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("directory {} does not exist", dir.display()),
            ),
        ));
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| unsupported(path, "plot path: it names no file"))?
        .to_string_lossy();
    let extension = extension(path).unwrap_or_default();
    let temporary = TemporaryFile {
        path: dir.join(format!(
            ".{file_name}.{}-{}.tmp.{extension}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )),
    };
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary.path)
        .map_err(|e| Error::io(&temporary.path, e))?;
    draw(&temporary.path).map_err(|message| {
        Error::io(
            path,
            io::Error::other(format!("could not draw the plot: {message}")),
        )
    })?;
    fs::rename(&temporary.path, path).map_err(|e| Error::io(path, e))?;
    std::mem::forget(temporary);
    Ok(())
}

/// A file removed when dropped: a temporary file not yet renamed into place.
struct TemporaryFile {
    path: PathBuf,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // Best effort: the error that made us drop it is the one worth reporting.
        let _ = fs::remove_file(&self.path);
    }
}

/// The PNG backend, in a module of its own: the backend traits' methods (`stroke_width`) clash
/// with plotters' `Color` methods used for drawing above.
mod png_backend {
    use super::embedded_font;
    use ab_glyph::{Font, FontRef, Glyph, PxScale, ScaleFont, point};
    use plotters::prelude::{BitMapBackend, DrawingBackend};
    use plotters::style::text_anchor::{HPos, VPos};
    use plotters_backend::{
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    };
    use std::path::Path;

    /// plotters' bitmap backend with its own text drawing: plotters' ab_glyph text rendering drops
    /// each glyph's left side bearing, which runs words together ("test loss" reads "testloss").
    /// Everything but text is the bitmap backend's.
    pub(super) struct PngBackend<'a> {
        bitmap: BitMapBackend<'a>,
        font: FontRef<'static>,
    }

    type PngError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

    impl<'a> PngBackend<'a> {
        pub(super) fn new(path: &'a Path, size: (u32, u32)) -> PngBackend<'a> {
            PngBackend {
                bitmap: BitMapBackend::new(path, size),
                font: embedded_font(),
            }
        }

        /// The glyphs of `text` on one line, the top of the line at y = 0, and the line's size.
        fn layout(&self, text: &str, size: f64) -> (Vec<Glyph>, (i32, i32)) {
            let font = self.font.as_scaled(PxScale::from(size as f32));
            let mut glyphs: Vec<Glyph> = Vec::with_capacity(text.len());
            let mut pen = 0.0;
            for c in text.chars() {
                let id = font.glyph_id(c);
                if let Some(previous) = glyphs.last() {
                    pen += font.kern(previous.id, id);
                }
                glyphs.push(id.with_scale_and_position(font.scale(), point(pen, font.ascent())));
                pen += font.h_advance(id);
            }
            let height = font.ascent() - font.descent();
            (glyphs, (pen.ceil() as i32, height.ceil() as i32))
        }
    }

    impl<'a> DrawingBackend for PngBackend<'a> {
        type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.bitmap.get_size()
        }

        fn ensure_prepared(&mut self) -> Result<(), PngError<'a>> {
            self.bitmap.ensure_prepared()
        }

        fn present(&mut self) -> Result<(), PngError<'a>> {
            self.bitmap.present()
        }

        fn draw_pixel(
            &mut self,
            point: BackendCoord,
            color: BackendColor,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.draw_pixel(point, color)
        }

        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.draw_line(from, to, style)
        }

        fn draw_rect<S: BackendStyle>(
            &mut self,
            upper_left: BackendCoord,
            bottom_right: BackendCoord,
            style: &S,
            fill: bool,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.draw_rect(upper_left, bottom_right, style, fill)
        }

        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.draw_path(path, style)
        }

        fn draw_circle<S: BackendStyle>(
            &mut self,
            center: BackendCoord,
            radius: u32,
            style: &S,
            fill: bool,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.draw_circle(center, radius, style, fill)
        }

        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vertices: I,
            style: &S,
        ) -> Result<(), PngError<'a>> {
            self.bitmap.fill_polygon(vertices, style)
        }

        fn blit_bitmap(
            &mut self,
            position: BackendCoord,
            size: (u32, u32),
            source: &[u8],
        ) -> Result<(), PngError<'a>> {
            self.bitmap.blit_bitmap(position, size, source)
        }

        fn estimate_text_size<S: BackendTextStyle>(
            &self,
            text: &str,
            style: &S,
        ) -> Result<(u32, u32), PngError<'a>> {
            let (_, (width, height)) = self.layout(text, style.size());
            Ok((width as u32, height as u32))
        }

        /// As plotters' default, anchored and transformed (rotated) the same way, with each glyph
        /// drawn at its own outline bounds.
        fn draw_text<S: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &S,
            position: BackendCoord,
        ) -> Result<(), PngError<'a>> {
            let color = style.color();
            if color.alpha == 0.0 {
                return Ok(());
            }
            let (glyphs, (width, height)) = self.layout(text, style.size());
            let dx = match style.anchor().h_pos {
                HPos::Left => 0,
                HPos::Right => -width,
                HPos::Center => -width / 2,
            };
            let dy = match style.anchor().v_pos {
                VPos::Top => 0,
                VPos::Center => -height / 2,
                VPos::Bottom => -height,
            };
            let transform = style.transform();
            let (canvas_width, canvas_height) = self.get_size();
            let mut coverage = Vec::new();
            for glyph in glyphs {
                let Some(outline) = self.font.outline_glyph(glyph) else {
                    continue; // a space
                };
                let bounds = outline.px_bounds();
                outline.draw(|x, y, alpha| {
                    let x = bounds.min.x as i32 + x as i32;
                    let y = bounds.min.y as i32 + y as i32;
                    coverage.push((x, y, alpha));
                });
            }
            for (x, y, alpha) in coverage {
                let (x, y) = transform.transform(x + dx, y + dy);
                let (x, y) = (position.0 + x, position.1 + y);
                if (0..canvas_width as i32).contains(&x) && (0..canvas_height as i32).contains(&y) {
                    let shade = BackendColor {
                        alpha: color.alpha * f64::from(alpha),
                        rgb: color.rgb,
                    };
                    self.bitmap.draw_pixel((x, y), shade)?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.1 + 0.2), "0.3");
        assert_eq!(tick_label(1500.0), "1500");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(1e-4), "1e-4");
        assert_eq!(tick_label(0.00030000000000000003), "3e-4");
        assert_eq!(tick_label(2.5e6), "2.5e6");
        assert_eq!(tick_label(-0.5), "-0.5");
    }

    #[test]
    fn padded_range_handles_empty_and_flat_data() {
        assert_eq!(padded_range(std::iter::empty(), 0.05), 0.0..1.0);
        assert_eq!(padded_range([2.0].into_iter(), 0.05), 1.8..2.2);
        assert_eq!(padded_range([0.0].into_iter(), 0.05), -1.0..1.0);
        assert_eq!(padded_range([0.0, 10.0].into_iter(), 0.1), -1.0..11.0);
    }
}
