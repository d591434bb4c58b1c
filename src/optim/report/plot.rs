//! Learning curves: a run's (or several runs') records drawn as a 2×2 figure, SVG or PNG.

mod png;

use super::{extension, unsupported};
use crate::Result;
use crate::ir::store::write_atomically;
use crate::optim::record::{Record, RecordKind};
use ab_glyph::FontRef;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use png::PngBackend;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Once;

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

/// Like [`plot_comparison`] for groups of runs (one group per optimizer, a run per seed): each
/// group's test curves (loss, and accuracy for a classification; else the epoch-mean train loss)
/// as the mean over its runs with a band from the lowest to the highest, against epochs and
/// training time. A run's value at `x` is that of its last evaluation at or before `x`; the
/// curves end where the group's shortest run ends.
pub fn plot_seeds(groups: &[(&str, Vec<&[Record]>)], title: &str, path: &Path) -> Result<()> {
    let classification = groups
        .iter()
        .flat_map(|(_, runs)| runs.iter())
        .any(|records| records.iter().any(|r| r.test_accuracy.is_some()));
    let quantities: &[Quantity] = if classification {
        &[Quantity::TestLoss, Quantity::TestAccuracy]
    } else {
        &[Quantity::TestLoss, Quantity::EpochTrainLoss]
    };
    let mut panels = Vec::with_capacity(4);
    for (row, &quantity) in quantities.iter().enumerate() {
        for (column, x_axis) in [XAxis::Epoch, XAxis::WallTime].into_iter().enumerate() {
            let accuracy = quantity == Quantity::TestAccuracy;
            panels.push(Panel {
                caption: format!(
                    "({}) {} against {}, mean and range over seeds",
                    ['a', 'b', 'c', 'd'][2 * row + column],
                    quantity.label(),
                    x_axis.label()
                ),
                x_axis,
                y_label: if accuracy {
                    "test accuracy (%)"
                } else {
                    "loss"
                },
                y_scale: if accuracy {
                    YScale::Linear
                } else {
                    YScale::Auto
                },
                legend_position: if accuracy {
                    SeriesLabelPosition::LowerRight
                } else {
                    SeriesLabelPosition::UpperRight
                },
                series: groups
                    .iter()
                    .enumerate()
                    .map(|(i, (name, runs))| {
                        seed_band(name, PALETTE[i % PALETTE.len()], runs, quantity, x_axis)
                    })
                    .collect(),
            });
        }
    }
    draw_panels_to(&panels, title, path)
}

/// Points on a grid where every run of `runs` can say its value.
const BAND_POINTS: usize = 200;

/// The mean of `runs`' `quantity` against `x_axis`, with the band of their lowest and highest.
fn seed_band(
    name: &str,
    color: RGBColor,
    runs: &[&[Record]],
    quantity: Quantity,
    x_axis: XAxis,
) -> Series {
    let curves: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|records| {
            records
                .iter()
                .filter(|r| r.kind == quantity.kind())
                .filter_map(|r| Some((x_axis.value(r), quantity.value(r)?)))
                .filter(|(x, y)| x.abs() <= DRAWABLE_MAGNITUDE && y.abs() <= DRAWABLE_MAGNITUDE)
                .collect()
        })
        .collect();
    let end = curves
        .iter()
        .map(|c| c.last().map_or(0.0, |p| p.0))
        .fold(f64::INFINITY, f64::min);
    let (mut band, mut points) = (Vec::new(), Vec::new());
    if end.is_finite() && end > 0.0 {
        for k in 0..=BAND_POINTS {
            let x = end * k as f64 / BAND_POINTS as f64;
            let values: Option<Vec<f64>> = curves
                .iter()
                .map(|c| c.iter().take_while(|p| p.0 <= x).last().map(|p| p.1))
                .collect();
            if let Some(values) = values {
                let (low, high) = min_max(values.iter().copied()).expect("at least one run");
                band.push((x, low, high));
                points.push((x, values.iter().sum::<f64>() / values.len() as f64));
            }
        }
    }
    Series {
        label: format!("{name}: {} ({} runs)", quantity.label(), runs.len()),
        color,
        style: SeriesStyle::Band,
        points,
        band,
    }
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
    /// A line over a shaded band (a mean over seeds and their range).
    Band,
}

struct Series {
    label: String,
    color: RGBColor,
    style: SeriesStyle,
    points: Vec<(f64, f64)>,
    /// The lowest and highest value at each point's x, drawn as a shaded band (several seeds).
    band: Vec<(f64, f64, f64)>,
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
                band: Vec::new(),
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
    draw_panels_to(&panels(runs, colouring), title, path)
}

/// Draws `panels` into the figure at `path`, SVG or PNG by its extension, atomically.
fn draw_panels_to(panels: &[Panel], title: &str, path: &Path) -> Result<()> {
    let svg = is_svg(path)?;
    register_embedded_font();
    Ok(write_atomically(path, |_, temporary| {
        let drawn = if svg {
            draw_panels(
                SVGBackend::new(temporary, FIGURE_SIZE).into_drawing_area(),
                title,
                panels,
            )
        } else {
            draw_panels(
                PngBackend::new(temporary, FIGURE_SIZE).into_drawing_area(),
                title,
                panels,
            )
        };
        drawn.map_err(|message| io::Error::other(format!("could not draw the plot: {message}")))
    })?)
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
        panel.series.iter().flat_map(|series| {
            let band = series.band.iter().flat_map(|&(_, low, high)| [low, high]);
            series.points.iter().map(|point| point.1).chain(band)
        })
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
            SeriesStyle::FilledMarkers | SeriesStyle::HollowMarkers | SeriesStyle::Band => {
                color.stroke_width(2)
            }
        };
        if series.style == SeriesStyle::Band {
            // The band's outline: the highs left to right, then the lows back.
            let outline: Vec<(f64, f64)> = (series.band.iter().map(|&(x, _, high)| (x, high)))
                .chain(series.band.iter().rev().map(|&(x, low, _)| (x, low)))
                .filter(|(_, y)| drawable(*y))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.2).filled(),
                )))
                .map_err(text_error)?;
        }
        let drawn = chart
            .draw_series(LineSeries::new(points.iter().copied(), line))
            .map_err(text_error)?;
        drawn.label(&series.label);
        match series.style {
            SeriesStyle::Thin | SeriesStyle::Band => {
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
