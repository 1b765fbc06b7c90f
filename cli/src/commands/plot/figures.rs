//! The paper's figures drawn with plotters on any back-end: the activated-alpha grids of
//! Figure 1 ([`alpha`]) and the FIMT schedule of Figure 3 ([`schedule`]); here what they
//! share: output formats, fonts, colours, labels and ticks.

mod alpha;
mod schedule;

pub use alpha::AlphaFigure;
pub use schedule::ScheduleFigure;

use super::raster::RasterBackend;
use super::run_dir::{
    decimate, edge_row, summarise, AlphaHistory, CellHistory, FimtHistory, Series,
};
use anyhow::{anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use prime_core::primitives::CnnOp;
use std::path::Path;
use std::sync::OnceLock;

/// The font family every text of the figures uses (DejaVu Sans, bundled).
const FONT: &str = "sans-serif";
/// Points drawn per line at most; more are decimated (min and max per run of points).
const MAX_POINTS: usize = 2000;

/// An output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Scalable vector graphics.
    Svg,
    /// Portable network graphics.
    Png,
}

impl ImageFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Svg => "svg",
            ImageFormat::Png => "png",
        }
    }
}

/// A figure that can draw itself on any plotters back-end.
pub trait Figure {
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure on a white root area.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

/// Writes `figure` to `path` in `format`.
pub fn save<F: Figure>(figure: &F, path: &Path, format: ImageFormat) -> anyhow::Result<()> {
    register_fonts()?;
    let size = figure.size();
    let finish = |error: String| anyhow!("cannot write {}: {error}", path.display());
    match format {
        ImageFormat::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            paint(figure, &root)?;
            root.present().map_err(|error| finish(error.to_string()))
        }
        ImageFormat::Png => {
            let backend = RasterBackend::new(BitMapBackend::new(path, size))
                .ok_or_else(|| finish("the bundled font does not parse".to_string()))?;
            let root = backend.into_drawing_area();
            paint(figure, &root)?;
            root.present().map_err(|error| finish(error.to_string()))
        }
    }
}

fn paint<F: Figure, DB: DrawingBackend>(
    figure: &F,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(failed)?;
    figure.draw(root)
}

/// Registers the bundled DejaVu Sans as the figures' font (once per process); plotters lays
/// out the text of both back-ends with it.
fn register_fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if !registered {
        bail!("the bundled DejaVu Sans font does not parse");
    }
    Ok(())
}

fn failed<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing failed: {error}")
}

/// The colour of an op in the alpha figures (SPEC 8.1: greys for none and skip, oranges for
/// pools, blues for convolutions, as the matplotlib colormaps of the reference).
pub fn op_colour(op: CnnOp) -> RGBColor {
    match op {
        CnnOp::None => RGBColor(64, 64, 64),
        CnnOp::MaxPool3x3 => RGBColor(243, 112, 27),
        CnnOp::AvgPool3x3 => RGBColor(253, 195, 141),
        CnnOp::SkipConnect => RGBColor(149, 149, 149),
        CnnOp::SepConv3x3 => RGBColor(183, 212, 234),
        CnnOp::SepConv5x5 => RGBColor(106, 174, 214),
        CnnOp::DilConv3x3 => RGBColor(46, 126, 188),
        CnnOp::DilConv5x5 => RGBColor(8, 74, 145),
        CnnOp::SepConv7x7 | CnnOp::Conv7x1And1x7 => RGBColor(0, 0, 0),
    }
}

/// The label of source `source` of a cell: the two cell inputs, then the nodes.
pub fn source_label(source: usize) -> String {
    match source {
        0 => "c_{k-2}".to_string(),
        1 => "c_{k-1}".to_string(),
        node => format!("node {}", node - 2),
    }
}

/// The label of the panel of the edge from `source` into `node`.
pub fn edge_label(node: usize, source: usize) -> String {
    format!("{} → node {node}", source_label(source))
}

/// Decimal places of tick labels for an axis spanning `span`.
fn decimals(span: f64) -> usize {
    if span >= 10.0 {
        0
    } else if span >= 1.5 {
        1
    } else {
        2
    }
}

/// Decimal places that tell apart about five ticks over `span`.
fn span_decimals(span: f64) -> usize {
    (-(span / 5.0).log10()).ceil().clamp(0.0, 6.0) as usize
}

/// Ticks of a logarithmic axis from `low` to `high`: 1-2-3-5 per decade over short ranges,
/// 1-2-5 over a few decades, powers of ten (every other one past eight decades) beyond.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decades = (high / low).log10();
    let mantissas: &[f64] = if decades <= 1.5 {
        &[1.0, 2.0, 3.0, 5.0]
    } else if decades <= 4.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let every = if decades > 8.0 { 2 } else { 1 };
    let mut ticks = Vec::new();
    for exponent in (low.log10().floor() as i32)..=(high.log10().ceil() as i32) {
        if exponent.rem_euclid(every) != 0 {
            continue;
        }
        for mantissa in mantissas {
            let value = mantissa * 10f64.powi(exponent);
            if (low..=high).contains(&value) {
                ticks.push(value);
            }
        }
    }
    ticks
}

/// A tick label with at most `decimals` decimal places and no trailing zeros.
fn tick(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_string()
        } else {
            text.to_string()
        }
    } else {
        text
    }
}

/// A tick label of a logarithmic axis: plain numbers in [0.01, 10^4), else scientific.
fn log_tick(value: f64) -> String {
    if value != 0.0 && !(0.01..10_000.0).contains(&value.abs()) {
        return format!("{value:.0e}");
    }
    tick(value, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_sources_and_nodes() {
        assert_eq!(edge_label(0, 0), "c_{k-2} → node 0");
        assert_eq!(edge_label(3, 1), "c_{k-1} → node 3");
        assert_eq!(edge_label(3, 4), "node 2 → node 3");
    }

    #[test]
    fn log_ticks_are_short() {
        assert_eq!(log_tick(1.0), "1");
        assert_eq!(log_tick(0.5), "0.5");
        assert_eq!(log_tick(250.0), "250");
        assert_eq!(log_tick(1e5), "1e5");
        assert_eq!(log_tick(0.001), "1e-3");
        assert_eq!(tick(2.0, 1), "2");
        assert_eq!(log_ticks(0.7, 40.0), [1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(log_ticks(3.0, 9.0), [3.0, 5.0]);
        assert_eq!(log_ticks(1e-3, 1e7), [1e-2, 1.0, 1e2, 1e4, 1e6]);
        assert_eq!(span_decimals(0.35), 2);
        assert_eq!(span_decimals(30.0), 0);
        assert_eq!(tick(0.25, 2), "0.25");
        assert_eq!(tick(0.30, 2), "0.3");
        assert_eq!(tick(-0.001, 2), "0");
    }
}
