//! The paper's figures drawn with plotters on any back-end: the activated-alpha grids of
//! Figure 1 and the FIMT schedule of Figure 3.

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

/// Figure 1: the activated alpha of every op on every edge of one cell type over training.
#[derive(Debug)]
pub struct AlphaFigure<'a> {
    /// The run's alpha history.
    pub history: &'a AlphaHistory,
    /// `Normal` or `Reduction`.
    pub cell_name: &'a str,
    /// The cell's history.
    pub cell: &'a CellHistory,
    /// Draw the `none` op too.
    pub with_none: bool,
    /// Method name shown in the title, if known.
    pub method: Option<&'a str>,
}

/// Panel size of the alpha grids, in pixels.
const PANEL: (u32, u32) = (360, 250);
/// Height of the title band of a figure.
const TITLE_BAND: u32 = 60;

impl AlphaFigure<'_> {
    /// The alpha columns drawn, with their op.
    pub fn shown_ops(&self) -> Vec<(usize, CnnOp)> {
        self.history
            .ops
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, op)| self.with_none || *op != CnnOp::None)
            .collect()
    }

    fn columns(&self) -> usize {
        // Sources of the last node are c_{k-2}, c_{k-1} and every earlier node; a one-node
        // cell gets an extra column for the legend.
        (self.history.steps + 1).max(3)
    }

    /// The y range shared by every panel: the drawn values with a margin.
    fn y_range(&self) -> (f64, f64) {
        let ops = self.shown_ops();
        let (low, high) = self
            .cell
            .values
            .iter()
            .flat_map(|edge| ops.iter().flat_map(move |(column, _)| edge[*column].iter()))
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(low, high), value| {
                (low.min(*value), high.max(*value))
            });
        if !low.is_finite() {
            return (0.0, 1.0);
        }
        let (low, high) = (f64::from(low), f64::from(high));
        let middle = (low + high) / 2.0;
        let half = ((high - low) / 2.0).max(0.005) * 1.1;
        // Activated alpha lies in [0, 1]: the margin does not reach past those bounds.
        let bottom = if low >= 0.0 {
            (middle - half).max(0.0)
        } else {
            middle - half
        };
        let top = if high <= 1.0 {
            (middle + half).min(1.0)
        } else {
            middle + half
        };
        (bottom, top)
    }

    fn title(&self) -> String {
        let without = if self.with_none || !self.history.ops.contains(&CnnOp::None) {
            ""
        } else {
            ", without none"
        };
        let method = self
            .method
            .map(|method| format!(" — {method}"))
            .unwrap_or_default();
        format!(
            "{} cell: activated α ({}{without}) per edge over training{method}",
            self.cell_name,
            self.history.activation.name()
        )
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        node: usize,
        source: usize,
        (y_low, y_high): (f64, f64),
    ) -> anyhow::Result<()> {
        let x_max = self.history.clock.last().copied().unwrap_or(0.0).max(1e-9);
        let bottom = node + 1 == self.history.steps;
        let left = source == 0;
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .margin_right(16)
            .caption(edge_label(node, source), (FONT, 17))
            .x_label_area_size(if bottom { 44 } else { 26 })
            .y_label_area_size(if left { 58 } else { 42 })
            .build_cartesian_2d(0.0..x_max, y_low..y_high)
            .map_err(failed)?;
        let x_format = |value: &f64| tick(*value, decimals(x_max));
        let y_format = |value: &f64| tick(*value, span_decimals(y_high - y_low));
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(5)
            .y_labels(5)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 17))
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT);
        if bottom {
            mesh.x_desc("epoch");
        }
        if left {
            mesh.y_desc("α");
        }
        mesh.draw().map_err(failed)?;
        let row = &self.cell.values[edge_row(node, source)];
        for (column, op) in self.shown_ops() {
            let points: Series = self
                .history
                .clock
                .iter()
                .zip(&row[column])
                .map(|(clock, value)| (*clock, f64::from(*value)))
                .collect();
            let style = op_colour(op).stroke_width(2);
            chart
                .draw_series(LineSeries::new(decimate(&points, MAX_POINTS), style))
                .map_err(failed)?;
        }
        Ok(())
    }

    fn draw_legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let ops = self.shown_ops();
        let line_height = 26;
        let (width, height) = area.dim_in_pixel();
        let box_height = 40 + line_height * ops.len() as i32;
        let top = ((height as i32 - box_height) / 2).max(0);
        let left = 40;
        area.draw(&Rectangle::new(
            [(left, top), (width as i32 - 24, top + box_height)],
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(failed)?;
        area.draw_text(
            "operation",
            &(FONT, 17).into_font().style(FontStyle::Bold).color(&BLACK),
            (left + 14, top + 10),
        )
        .map_err(failed)?;
        for (index, (_, op)) in ops.iter().enumerate() {
            let y = top + 44 + line_height * index as i32;
            area.draw(&PathElement::new(
                vec![(left + 14, y), (left + 54, y)],
                op_colour(*op).stroke_width(4),
            ))
            .map_err(failed)?;
            area.draw_text(
                op.name(),
                &(FONT, 16)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
                (left + 66, y),
            )
            .map_err(failed)?;
        }
        Ok(())
    }
}

impl Figure for AlphaFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let columns = self.columns() as u32;
        let rows = self.history.steps as u32;
        (columns * PANEL.0 + 20, rows * PANEL.1 + TITLE_BAND + 10)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let (title, grid) = root.split_vertically(TITLE_BAND);
        let (width, _) = title.dim_in_pixel();
        title
            .draw_text(
                &self.title(),
                &(FONT, 24)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
                (width as i32 / 2, TITLE_BAND as i32 / 2),
            )
            .map_err(failed)?;
        let grid = grid.margin(0, 10, 10, 10);
        let cell = |row: usize, column: usize| {
            grid.clone().shrink(
                (column as u32 * PANEL.0, row as u32 * PANEL.1),
                (PANEL.0, PANEL.1),
            )
        };
        let y_range = self.y_range();
        for node in 0..self.history.steps {
            for source in 0..node + 2 {
                self.draw_panel(&cell(node, source), node, source, y_range)?;
            }
        }
        self.draw_legend(&cell(0, self.columns() - 1))
    }
}

/// Figure 3: the FIMT, its EWMA and the threshold on a log axis, with the alpha steps.
#[derive(Debug)]
pub struct ScheduleFigure<'a> {
    /// The run's FIMT history.
    pub history: &'a FimtHistory,
    /// Clock range shown.
    pub from: f64,
    /// End of the clock range shown.
    pub to: f64,
    /// EWMA coefficient, for the legend, if known.
    pub lambda: Option<f64>,
    /// Method name shown in the title, if known.
    pub method: Option<&'a str>,
}

/// Main panel size of the schedule figure.
const SCHEDULE_PANEL: (u32, u32) = (1400, 620);
/// Height of the alpha-steps-per-epoch panel.
const HISTOGRAM_HEIGHT: u32 = 280;
/// Left label area shared by both schedule panels, so their x axes line up.
const SCHEDULE_Y_LABELS: u32 = 90;
/// Points of a schedule line at most before runs of points are summarised.
const SCHEDULE_BUCKETS: usize = 1200;
/// More alpha steps than this in the range are shown per epoch only, not one mark each.
const MAX_MARKS: usize = 300;

/// Colours of the schedule figure.
const FIMT_COLOUR: RGBColor = RGBColor(120, 150, 190);
const EWMA_COLOUR: RGBColor = RGBColor(8, 74, 145);
const THRESHOLD_COLOUR: RGBColor = RGBColor(217, 72, 1);

impl ScheduleFigure<'_> {
    fn in_range(&self, series: &Series) -> Series {
        series
            .iter()
            .copied()
            .filter(|(clock, value)| {
                (self.from..=self.to).contains(clock) && *value > 0.0 && value.is_finite()
            })
            .collect()
    }

    fn marks(&self) -> Vec<f64> {
        self.history
            .alpha_steps
            .iter()
            .map(|(clock, _)| *clock)
            .filter(|clock| (self.from..=self.to).contains(clock))
            .collect()
    }

    /// Alpha steps per epoch for the epochs the range covers; `None` when the range spans at
    /// most two epochs and every alpha step gets its own mark.
    pub fn per_epoch(&self) -> Option<Vec<(u32, usize)>> {
        if self.to - self.from <= 2.0 && self.marks().len() <= MAX_MARKS {
            return None;
        }
        // Bars stop where the run does, however far `--to` reaches.
        let end = self.to.min(self.history.last_clock().ceil().max(1.0));
        let first = self.from.floor() as u32;
        let last = (end.ceil() as u32).max(first + 1);
        let mut counts: Vec<(u32, usize)> = (first..last).map(|epoch| (epoch, 0)).collect();
        for (clock, epoch) in &self.history.alpha_steps {
            if (self.from..=self.to).contains(clock) {
                if let Some(entry) = counts.iter_mut().find(|(e, _)| e == epoch) {
                    entry.1 += 1;
                }
            }
        }
        Some(counts)
    }

    fn title(&self) -> String {
        let method = self
            .method
            .map(|method| format!(" — {method}"))
            .unwrap_or_default();
        format!(
            "FIMT schedule, epochs {} to {}: {} alpha steps{method}",
            tick(self.from, 3),
            tick(self.to, 3),
            self.marks().len()
        )
    }

    fn draw_main<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let fimt = self.in_range(&self.history.fimt);
        let ewma = self.in_range(&self.history.ewma);
        let threshold = self.in_range(&self.history.threshold);
        let (low, high) = [&fimt, &ewma, &threshold]
            .iter()
            .flat_map(|series| series.iter().map(|point| point.1))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
                (low.min(value), high.max(value))
            });
        let (low, high) = if low.is_finite() {
            (low / 1.5, high * 1.5)
        } else {
            (0.1, 10.0)
        };
        let per_bucket = fimt.len().div_ceil(SCHEDULE_BUCKETS);
        let x_desc = if per_bucket > 1 {
            format!(
                "epoch   (lines: geometric mean of every {per_bucket} steps; band: FIMT min–max)"
            )
        } else {
            "epoch".to_string()
        };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(30)
            .caption(self.title(), (FONT, 24).into_font().style(FontStyle::Bold))
            .x_label_area_size(56)
            .y_label_area_size(SCHEDULE_Y_LABELS)
            .build_cartesian_2d(
                self.from..self.to,
                (low..high)
                    .log_scale()
                    .with_key_points(log_ticks(low, high)),
            )
            .map_err(failed)?;
        let x_format = |value: &f64| tick(*value, decimals(self.to - self.from));
        let y_format = |value: &f64| log_tick(*value);
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(8)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .x_desc(x_desc)
            .y_desc("FIMT (log scale)")
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(failed)?;
        let marks = self.marks();
        if !marks.is_empty() && marks.len() <= MAX_MARKS {
            let mark_style = BLACK.mix(0.6).stroke_width(1);
            chart
                .draw_series(
                    marks.iter().map(|clock| {
                        PathElement::new(vec![(*clock, low), (*clock, high)], mark_style)
                    }),
                )
                .map_err(failed)?
                .label("alpha step")
                .legend(|(x, y)| PathElement::new(vec![(x + 10, y - 8), (x + 10, y + 8)], BLACK));
        }
        let (fimt, ewma, threshold) = if per_bucket > 1 {
            let buckets = summarise(&fimt, per_bucket);
            let mut band: Vec<(f64, f64)> = buckets.iter().map(|b| (b.clock, b.low)).collect();
            band.extend(buckets.iter().rev().map(|b| (b.clock, b.high)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    FIMT_COLOUR.mix(0.3).filled(),
                )))
                .map_err(failed)?;
            let means = |series: &Series| -> Series {
                summarise(series, per_bucket)
                    .iter()
                    .map(|bucket| (bucket.clock, bucket.mean))
                    .collect()
            };
            (means(&fimt), means(&ewma), means(&threshold))
        } else {
            (fimt, ewma, threshold)
        };
        let lambda = self
            .lambda
            .map(|lambda| format!(" (λ = {lambda})"))
            .unwrap_or_default();
        // Raw FIMT is a thin line as in the paper; its bucket means stand out from the band.
        let fimt_width = if per_bucket > 1 { 2 } else { 1 };
        let series = [
            (fimt, "FIMT".to_string(), FIMT_COLOUR, fimt_width),
            (ewma, format!("FIMT EWMA{lambda}"), EWMA_COLOUR, 3),
            (threshold, "threshold h".to_string(), THRESHOLD_COLOUR, 3),
        ];
        for (points, label, colour, width) in series {
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(width)))
                .map_err(failed)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width.max(2)))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(12)
            .legend_area_size(28)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(failed)
    }

    fn draw_histogram<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        counts: &[(u32, usize)],
    ) -> anyhow::Result<()> {
        let highest = counts.iter().map(|(_, count)| *count).max().unwrap_or(0);
        let y_max = (highest as f64 * 1.15).max(1.0);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(30)
            .caption("alpha steps per epoch", (FONT, 19))
            .x_label_area_size(56)
            .y_label_area_size(SCHEDULE_Y_LABELS)
            .build_cartesian_2d(self.from..self.to, 0.0..y_max)
            .map_err(failed)?;
        let x_format = |value: &f64| tick(*value, decimals(self.to - self.from));
        let y_format = |value: &f64| tick(*value, 0);
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(5)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .x_desc("epoch")
            .y_desc("alpha steps")
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(failed)?;
        let bar = EWMA_COLOUR.mix(0.7).filled();
        let edge = WHITE.stroke_width(1);
        chart
            .draw_series(counts.iter().flat_map(|(epoch, count)| {
                let start = f64::from(*epoch).max(self.from);
                let end = (f64::from(*epoch) + 1.0).min(self.to);
                let corners = [(start, 0.0), (end, *count as f64)];
                [Rectangle::new(corners, bar), Rectangle::new(corners, edge)]
            }))
            .map_err(failed)?;
        Ok(())
    }
}

impl Figure for ScheduleFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let histogram = if self.per_epoch().is_some() {
            HISTOGRAM_HEIGHT
        } else {
            0
        };
        (SCHEDULE_PANEL.0, SCHEDULE_PANEL.1 + histogram)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        match self.per_epoch() {
            Some(counts) => {
                let (main, lower) = root.split_vertically(SCHEDULE_PANEL.1);
                self.draw_main(&main)?;
                self.draw_histogram(&lower, &counts)
            }
            None => self.draw_main(root),
        }
    }
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
