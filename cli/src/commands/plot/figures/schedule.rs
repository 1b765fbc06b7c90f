//! Figure 3: the FIMT, its EWMA and the threshold over the search, with the alpha steps.

use super::*;

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
