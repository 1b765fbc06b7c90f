//! Figure 3: the FIMT, its EWMA and (under the FIMT schedule) the threshold over the search,
//! with the alpha steps. Every search tracks the FIMT; the title and the legend name the
//! schedule the run used.

use super::style::{okabe_ito, Dash, Marker};
use super::*;
use prime_core::config::ScheduleConfig;
use prime_core::config::ScheduleKind;

/// Figure 3: the FIMT, its EWMA and the threshold on a log axis, with the alpha steps.
#[derive(Debug)]
pub struct ScheduleFigure<'a> {
    /// The run's FIMT history.
    pub history: &'a FimtHistory,
    /// Clock range shown.
    pub from: f64,
    /// End of the clock range shown.
    pub to: f64,
    /// The run's schedule, if its config is known.
    pub schedule: Option<&'a ScheduleConfig>,
    /// Method name shown in the title, if known.
    pub method: Option<&'a str>,
    /// Image and text size.
    pub sizing: Sizing,
}

/// Main panel size of the schedule figure (at the default font size).
const SCHEDULE_PANEL: (u32, u32) = (1400, 620);
/// Height of the alpha-steps-per-epoch panel.
const HISTOGRAM_HEIGHT: u32 = 280;
/// Width of the legend column right of the panels.
const LEGEND_WIDTH: u32 = 290;
/// Left label area shared by both schedule panels, so their x axes line up.
const SCHEDULE_Y_LABELS: u32 = 90;
/// The smallest panel that holds its axes, title and ticks (at the default font size).
const MIN_PANEL: (u32, u32) = (300, 200);
/// Points of a schedule line at most before runs of points are summarised.
const SCHEDULE_BUCKETS: usize = 1200;
/// More alpha steps than this in the range are shown per epoch only, not one mark each.
const MAX_MARKS: usize = 300;

/// The looks of the schedule figure's series (Okabe–Ito colours; the threshold dashed, so
/// it stays apart from the EWMA in greyscale).
const FIMT_LOOK: LineLook = LineLook {
    colour: okabe_ito::SKY_BLUE,
    width: 1,
    dash: Dash::Solid,
    marker: Marker::None,
};
const EWMA_LOOK: LineLook = LineLook {
    colour: okabe_ito::BLUE,
    width: 3,
    dash: Dash::Solid,
    marker: Marker::None,
};
const THRESHOLD_LOOK: LineLook = LineLook {
    colour: okabe_ito::VERMILLION,
    width: 3,
    dash: Dash::Dashed,
    marker: Marker::None,
};
const MARK_LOOK: LineLook = LineLook {
    colour: RGBColor(90, 90, 90),
    width: 1,
    dash: Dash::Solid,
    marker: Marker::None,
};

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

    /// Whether the run used the FIMT schedule (from its config; without one, whether it
    /// recorded thresholds).
    fn is_fimt(&self) -> bool {
        match self.schedule {
            Some(schedule) => schedule.kind == ScheduleKind::Fimt,
            None => !self.history.threshold.is_empty(),
        }
    }

    /// The name of the run's schedule.
    fn schedule_name(&self) -> String {
        match self.schedule {
            Some(schedule) => match schedule.kind {
                ScheduleKind::Fimt => "FIMT schedule".to_string(),
                ScheduleKind::Alternate => "Alternating schedule".to_string(),
                ScheduleKind::Constant => format!("CS-{} schedule", schedule.ratio),
            },
            None if self.is_fimt() => "FIMT schedule".to_string(),
            None => "Schedule".to_string(),
        }
    }

    /// The figure's title: the schedule, the range and its alpha steps, the method.
    pub fn title(&self) -> String {
        let method = self
            .method
            .map(|method| format!(" — {method}"))
            .unwrap_or_default();
        format!(
            "{}, epochs {} to {}: {} alpha steps{method}",
            self.schedule_name(),
            tick(self.from, 3),
            tick(self.to, 3),
            self.marks().len()
        )
    }

    /// The legend: the FIMT and its EWMA always, the threshold only under the FIMT schedule,
    /// the alpha-step marks when there are any.
    pub fn legend(&self) -> Vec<LegendEntry> {
        let lambda = self
            .schedule
            .map(|schedule| format!(" (λ = {})", schedule.ewma))
            .unwrap_or_default();
        let entry = |label: String, look: LineLook| LegendEntry {
            label,
            look,
            vertical: false,
        };
        let mut entries = vec![
            entry("FIMT".to_string(), FIMT_LOOK),
            entry(format!("FIMT EWMA{lambda}"), EWMA_LOOK),
        ];
        if self.is_fimt() && !self.in_range(&self.history.threshold).is_empty() {
            entries.push(entry("threshold h".to_string(), THRESHOLD_LOOK));
        }
        let marks = self.marks().len();
        if marks > 0 && marks <= MAX_MARKS {
            entries.push(LegendEntry {
                label: "alpha step".to_string(),
                look: MARK_LOOK,
                vertical: true,
            });
        }
        entries
    }

    /// Ticks of the clock axis shared by both panels.
    fn clock_ticks(&self) -> Ticks {
        Ticks::linear(self.from, self.to, 10, 0.0)
    }

    fn draw_main<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let sizing = self.sizing;
        let fimt = self.in_range(&self.history.fimt);
        let ewma = self.in_range(&self.history.ewma);
        let threshold = if self.is_fimt() {
            self.in_range(&self.history.threshold)
        } else {
            Series::new()
        };
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
        let x_ticks = self.clock_ticks();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(30)
            .x_label_area_size(sizing.pixels(56))
            .y_label_area_size(sizing.pixels(SCHEDULE_Y_LABELS))
            .build_cartesian_2d(
                x_ticks.axis(self.from, self.to),
                (low..high)
                    .log_scale()
                    .with_key_points(log_ticks(low, high)),
            )
            .map_err(failed)?;
        let x_format = |value: &f64| x_ticks.label(*value);
        let y_format = |value: &f64| log_tick(*value);
        chart
            .configure_mesh()
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, sizing.text(15.0)))
            .axis_desc_style((FONT, sizing.text(17.0)))
            .x_desc(x_desc)
            .y_desc("FIMT (log scale)")
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(failed)?;
        let marks = self.marks();
        if !marks.is_empty() && marks.len() <= MAX_MARKS {
            let mark_style = MARK_LOOK.colour.mix(0.6).stroke_width(MARK_LOOK.width);
            chart
                .draw_series(
                    marks.iter().map(|clock| {
                        PathElement::new(vec![(*clock, low), (*clock, high)], mark_style)
                    }),
                )
                .map_err(failed)?;
        }
        let (fimt, ewma, threshold) = if per_bucket > 1 {
            let buckets = summarise(&fimt, per_bucket);
            let mut band: Vec<(f64, f64)> = buckets.iter().map(|b| (b.clock, b.low)).collect();
            band.extend(buckets.iter().rev().map(|b| (b.clock, b.high)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band,
                    FIMT_LOOK.colour.mix(0.3).filled(),
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
        // Raw FIMT is a thin line as in the paper; its bucket means stand out from the band.
        let fimt_look = LineLook {
            width: if per_bucket > 1 { 2 } else { 1 },
            ..FIMT_LOOK
        };
        for (points, look) in [
            (fimt, fimt_look),
            (ewma, EWMA_LOOK),
            (threshold, THRESHOLD_LOOK),
        ] {
            draw_line(&mut chart, &points, look, 0, 0.0, sizing)?;
        }
        Ok(())
    }

    fn draw_histogram<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        counts: &[(u32, usize)],
    ) -> anyhow::Result<()> {
        let sizing = self.sizing;
        let highest = counts.iter().map(|(_, count)| *count).max().unwrap_or(0);
        let y_ticks = Ticks::counts(highest);
        let y_max = y_ticks.values.last().copied().unwrap_or(1.0);
        let x_ticks = self.clock_ticks();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(30)
            .caption("alpha steps per epoch", (FONT, sizing.text(19.0)))
            .x_label_area_size(sizing.pixels(56))
            .y_label_area_size(sizing.pixels(SCHEDULE_Y_LABELS))
            .build_cartesian_2d(x_ticks.axis(self.from, self.to), y_ticks.axis(0.0, y_max))
            .map_err(failed)?;
        let x_format = |value: &f64| x_ticks.label(*value);
        let y_format = |value: &f64| y_ticks.label(*value);
        chart
            .configure_mesh()
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, sizing.text(15.0)))
            .axis_desc_style((FONT, sizing.text(17.0)))
            .x_desc("epoch")
            .y_desc("alpha steps")
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(failed)?;
        let bar = EWMA_LOOK.colour.mix(0.7).filled();
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

    /// The natural size: the main panel, the histogram when there is one, the title band
    /// and the legend column.
    fn natural_size(&self) -> (u32, u32) {
        let sizing = self.sizing;
        let histogram = if self.per_epoch().is_some() {
            HISTOGRAM_HEIGHT
        } else {
            0
        };
        (
            SCHEDULE_PANEL.0 + sizing.pixels(LEGEND_WIDTH),
            SCHEDULE_PANEL.1 + histogram + sizing.pixels(TITLE_HEIGHT),
        )
    }

    /// Heights of the main panel and the histogram (0 without one) in a figure of `height`.
    fn panel_heights(&self, height: u32) -> (u32, u32) {
        let body = height.saturating_sub(self.sizing.pixels(TITLE_HEIGHT));
        if self.per_epoch().is_none() {
            return (body, 0);
        }
        let main = u64::from(body) * u64::from(SCHEDULE_PANEL.1)
            / u64::from(SCHEDULE_PANEL.1 + HISTOGRAM_HEIGHT);
        (main as u32, body - main as u32)
    }
}

/// Height of the title band at the default font size.
const TITLE_HEIGHT: u32 = 50;

impl Figure for ScheduleFigure<'_> {
    fn size(&self) -> (u32, u32) {
        self.sizing.resolve(self.natural_size())
    }

    fn check_size(&self) -> anyhow::Result<()> {
        let (width, height) = self.size();
        let sizing = self.sizing;
        let chart_width = width.saturating_sub(sizing.pixels(LEGEND_WIDTH));
        let minimum = (sizing.pixels(MIN_PANEL.0), sizing.pixels(MIN_PANEL.1));
        if chart_width < minimum.0 {
            bail!(
                "--width {width} leaves {chart_width} px for the chart beside the legend; at \
                 --font-size {} it needs {} px (use --width {} or more, or a smaller --font-size)",
                sizing.font_size,
                minimum.0,
                minimum.0 + sizing.pixels(LEGEND_WIDTH)
            );
        }
        let (main, histogram) = self.panel_heights(height);
        let smallest = if histogram > 0 {
            main.min(histogram)
        } else {
            main
        };
        if smallest < minimum.1 {
            // The histogram is the smaller panel; it takes its share of the height.
            let body = if histogram > 0 {
                (minimum.1 * (SCHEDULE_PANEL.1 + HISTOGRAM_HEIGHT)).div_ceil(HISTOGRAM_HEIGHT)
            } else {
                minimum.1
            };
            bail!(
                "--height {height} leaves {smallest} px for a panel; at --font-size {} a panel \
                 needs {} px (use --height {} or more, or a smaller --font-size)",
                sizing.font_size,
                minimum.1,
                body + sizing.pixels(TITLE_HEIGHT)
            );
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let sizing = self.sizing;
        let (width, height) = root.dim_in_pixel();
        let title_height = sizing.pixels(TITLE_HEIGHT);
        let (title, body) = root.split_vertically(title_height);
        title
            .draw_text(
                &self.title(),
                &(FONT, sizing.text(24.0))
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
                (width as i32 / 2, title_height as i32 / 2 + 4),
            )
            .map_err(failed)?;
        // The legend sits in its own column, beside the data, never over a line.
        let (charts, legend) = body.split_horizontally(width - sizing.pixels(LEGEND_WIDTH));
        draw_legend(&legend, None, &self.legend(), sizing)?;
        let (main_height, _) = self.panel_heights(height);
        match self.per_epoch() {
            Some(counts) => {
                let (main, lower) = charts.split_vertically(main_height);
                self.draw_main(&main)?;
                self.draw_histogram(&lower, &counts)
            }
            None => self.draw_main(&charts),
        }
    }
}
