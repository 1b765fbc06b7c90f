//! The paper's figures drawn with plotters on any back-end: the activated-alpha grids of
//! Figure 1 ([`alpha`]) and the schedule of Figure 3 ([`schedule`]); here what they share:
//! output formats, sizes, fonts, labels and ticks ([`style`]: colours, lines, legends).

mod alpha;
mod schedule;
pub mod style;

pub use alpha::AlphaFigure;
pub use schedule::ScheduleFigure;

use super::raster::RasterBackend;
use super::run_dir::{
    decimate, edge_row, summarise, AlphaHistory, CellHistory, FimtHistory, Series,
};
use anyhow::{anyhow, bail};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use prime_core::primitives::CnnOp;
use std::path::Path;
use std::sync::OnceLock;
use style::{draw_legend, draw_line, op_look, LegendEntry, LineLook};

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

/// The tick-label font size the figures are laid out for; every text, label area and
/// marker scales with `--font-size` against it.
pub const DEFAULT_FONT_SIZE: u32 = 15;

/// The size of a figure and of its text: a fixed width or height replaces the one the
/// figure picks for its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Image width in pixels, if fixed.
    pub width: Option<u32>,
    /// Image height in pixels, if fixed.
    pub height: Option<u32>,
    /// Tick-label font size in pixels.
    pub font_size: u32,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            width: None,
            height: None,
            font_size: DEFAULT_FONT_SIZE,
        }
    }
}

impl Sizing {
    /// A text size laid out for the default font size, scaled to the chosen one.
    pub fn text(&self, default: f64) -> f64 {
        default * f64::from(self.font_size) / f64::from(DEFAULT_FONT_SIZE)
    }

    /// A length in pixels that holds text (a label area, a legend line), scaled likewise.
    pub fn pixels(&self, default: u32) -> u32 {
        (self.text(f64::from(default))).round() as u32
    }

    /// The image size: the fixed dimensions, else the figure's own.
    pub fn resolve(&self, natural: (u32, u32)) -> (u32, u32) {
        (
            self.width.unwrap_or(natural.0),
            self.height.unwrap_or(natural.1),
        )
    }
}

/// A figure that can draw itself on any plotters back-end.
pub trait Figure {
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Checks that the figure's content fits its size; the error names the option to change.
    fn check_size(&self) -> anyhow::Result<()>;
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

/// The label of source `source` of a cell: the two cell inputs c_{k-2} and c_{k-1}, written
/// with Unicode subscripts, then the nodes.
pub fn source_label(source: usize) -> String {
    match source {
        0 => "c\u{2096}\u{208B}\u{2082}".to_string(),
        1 => "c\u{2096}\u{208B}\u{2081}".to_string(),
        node => format!("node {}", node - 2),
    }
}

/// The label of the panel of the edge from `source` into `node`.
pub fn edge_label(node: usize, source: usize) -> String {
    format!("{} → node {node}", source_label(source))
}

/// Evenly spaced ticks of a linear axis and the decimal places their labels need.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    /// Tick positions, ascending.
    pub values: Vec<f64>,
    /// Decimal places that write every tick exactly, so no two labels agree.
    pub decimals: usize,
}

impl Ticks {
    /// About `target` ticks over `low..=high` at a step of 1, 2 or 5 times a power of ten, no
    /// finer than `finest`.
    pub fn linear(low: f64, high: f64, target: usize, finest: f64) -> Ticks {
        let span = (high - low).max(f64::MIN_POSITIVE);
        let raw = span / target.max(1) as f64;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|mantissa| mantissa * magnitude)
            .find(|step| *step >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * magnitude)
            .max(finest);
        // A step of d * 10^-k needs k decimal places (d is 1, 2 or 5); at most 9.
        let decimals = (-(step.log10() + 1e-9).floor()).clamp(0.0, 9.0) as usize;
        let first = (low / step - 1e-9).ceil() as i64;
        let last = (high / step + 1e-9).floor() as i64;
        Ticks {
            values: (first..=last).map(|index| index as f64 * step).collect(),
            decimals,
        }
    }

    /// Integer ticks from 0 to at least `highest` (a count axis), about five of them.
    pub fn counts(highest: usize) -> Ticks {
        let top = highest.max(1) as f64;
        let mut ticks = Ticks::linear(0.0, top, 5, 1.0);
        if let Some(last) = ticks.values.last().copied() {
            if last < top {
                ticks
                    .values
                    .push(last + ticks.values.get(1).copied().unwrap_or(1.0));
            }
        }
        ticks
    }

    /// The label of `value`.
    pub fn label(&self, value: f64) -> String {
        tick(value, self.decimals)
    }

    /// A linear axis over `low..high` with exactly these ticks.
    pub fn axis(&self, low: f64, high: f64) -> TickedAxis {
        TickedAxis {
            range: low..high,
            ticks: self.values.clone(),
        }
    }
}

/// A linear axis whose ticks are given (plotters would pick its own, with labels that can
/// repeat once rounded).
#[derive(Debug, Clone)]
pub struct TickedAxis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
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
    fn labels_name_sources_and_nodes_with_subscripts() {
        assert_eq!(edge_label(0, 0), "cₖ₋₂ → node 0");
        assert_eq!(edge_label(3, 1), "cₖ₋₁ → node 3");
        assert_eq!(edge_label(3, 4), "node 2 → node 3");
    }

    #[test]
    fn the_bundled_font_has_every_character_of_the_labels() {
        use ab_glyph::{Font, FontRef};
        let font = FontRef::try_from_slice(dejavu::sans::regular()).unwrap();
        let text = format!("{}{} α λ – −", edge_label(0, 0), edge_label(0, 1));
        for character in text.chars().filter(|c| !c.is_whitespace()) {
            assert_ne!(font.glyph_id(character).0, 0, "no glyph for {character:?}");
        }
    }

    #[test]
    fn linear_tick_labels_are_distinct_and_cover_the_range() {
        for (low, high) in [
            (0.0, 3.0),
            (0.0, 2.3),
            (0.0, 0.9),
            (0.1249, 0.1251),
            (0.0, 50.0),
            (2.5, 2.75),
            (0.0, 600.0),
        ] {
            let ticks = Ticks::linear(low, high, 5, 0.0);
            assert!(ticks.values.len() >= 3, "{low}..{high}: {ticks:?}");
            assert!(ticks
                .values
                .iter()
                .all(|v| *v >= low - 1e-12 && *v <= high + 1e-12));
            let labels: Vec<String> = ticks.values.iter().map(|v| ticks.label(*v)).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(unique, labels, "{low}..{high}");
        }
        assert_eq!(Ticks::linear(0.0, 3.0, 5, 0.0).values, [0.0, 1.0, 2.0, 3.0]);
        let ticks = Ticks::linear(0.0, 2.3, 5, 0.0);
        let labels: Vec<String> = ticks.values.iter().map(|v| ticks.label(*v)).collect();
        assert_eq!(labels, ["0", "0.5", "1", "1.5", "2"]);
    }

    #[test]
    fn count_ticks_are_whole_numbers_reaching_the_highest() {
        // The old axis of 0..2.3 labelled "0 0 1 2 2".
        let ticks = Ticks::counts(2);
        assert_eq!(ticks.values, [0.0, 1.0, 2.0]);
        let labels: Vec<String> = ticks.values.iter().map(|v| ticks.label(*v)).collect();
        assert_eq!(labels, ["0", "1", "2"]);
        assert_eq!(Ticks::counts(0).values, [0.0, 1.0]);
        let ticks = Ticks::counts(37);
        assert_eq!(ticks.values, [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(Ticks::counts(7).values.last(), Some(&8.0));
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
        assert_eq!(tick(0.25, 2), "0.25");
        assert_eq!(tick(0.30, 2), "0.3");
        assert_eq!(tick(-0.001, 2), "0");
    }
}
