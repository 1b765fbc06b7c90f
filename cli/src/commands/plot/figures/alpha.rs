//! Figure 1: the activated alphas of every edge over the search, one panel per edge.

use super::*;

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
    /// One y range for every panel instead of one per panel.
    pub shared_y: bool,
    /// Image and text size.
    pub sizing: Sizing,
}

/// Panel size of the alpha grids at the default font size, in pixels.
const PANEL: (u32, u32) = (360, 250);
/// The smallest panel (at the default font size) that still holds its axes and caption.
const MIN_PANEL: (u32, u32) = (170, 120);
/// Height of the title band of a figure at the default font size.
const TITLE_BAND: u32 = 60;
/// Space around the grid of panels: left and right, and below.
const GRID_MARGIN: u32 = 10;
/// Markers per line in a panel.
const MARKERS: usize = 5;
/// Padding above and below the data in a panel, as a fraction of the data's span.
const Y_PADDING: f64 = 0.08;
/// The smallest y span shown, relative to the values: alphas that have not moved (a run
/// without alpha steps) still get a readable axis around their value.
const MIN_RELATIVE_SPAN: f64 = 1e-3;

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

    /// The drawn values of edge row `row`.
    fn row_values(&self, row: usize) -> impl Iterator<Item = f64> + '_ {
        let edge = &self.cell.values[row];
        self.shown_ops()
            .into_iter()
            .flat_map(move |(column, _)| edge[column].iter().map(|value| f64::from(*value)))
    }

    /// The y range of the panel of edge row `row` (of every panel with `shared_y`): the
    /// drawn values with padding, not reaching past [0, 1] where the values do not.
    pub fn y_range(&self, row: usize) -> (f64, f64) {
        let values: Vec<f64> = if self.shared_y {
            (0..self.cell.values.len())
                .flat_map(|row| self.row_values(row).collect::<Vec<_>>())
                .collect()
        } else {
            self.row_values(row).collect()
        };
        padded_range(&values)
    }

    /// Rows and columns of panels.
    fn grid(&self) -> (u32, u32) {
        (self.history.steps as u32, self.columns() as u32)
    }

    /// The size of one panel: the image size shared out, or the default panel.
    fn panel(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        let (width, height) = self.size();
        (
            (width.saturating_sub(2 * GRID_MARGIN)) / columns,
            (height.saturating_sub(self.sizing.pixels(TITLE_BAND) + GRID_MARGIN)) / rows,
        )
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
    ) -> anyhow::Result<()> {
        let sizing = self.sizing;
        let x_max = self.history.clock.last().copied().unwrap_or(0.0).max(1e-9);
        let (y_low, y_high) = self.y_range(edge_row(node, source));
        let bottom = node + 1 == self.history.steps;
        let left = source == 0;
        let x_ticks = Ticks::linear(0.0, x_max, 5, 0.0);
        let y_ticks = Ticks::linear(y_low, y_high, 5, 0.0);
        let y_label_width = y_ticks
            .values
            .iter()
            .map(|value| y_ticks.label(*value).len())
            .max()
            .unwrap_or(1) as u32;
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .margin_right(16)
            .caption(edge_label(node, source), (FONT, sizing.text(17.0)))
            .x_label_area_size(sizing.pixels(if bottom { 44 } else { 26 }))
            .y_label_area_size(sizing.pixels(9 * y_label_width + if left { 30 } else { 14 }))
            .build_cartesian_2d(x_ticks.axis(0.0, x_max), y_ticks.axis(y_low, y_high))
            .map_err(failed)?;
        let x_format = |value: &f64| x_ticks.label(*value);
        let y_format = |value: &f64| y_ticks.label(*value);
        let mut mesh = chart.configure_mesh();
        mesh.x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, sizing.text(13.0)))
            .axis_desc_style((FONT, sizing.text(17.0)))
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
        let ops = self.shown_ops();
        for (index, (column, op)) in ops.iter().enumerate() {
            let points: Series = self
                .history
                .clock
                .iter()
                .zip(&row[*column])
                .map(|(clock, value)| (*clock, f64::from(*value)))
                .collect();
            // Each op's markers sit at its own offset, so they do not cover each other.
            let shift = (index as f64 + 0.5) / ops.len() as f64;
            draw_line(
                &mut chart,
                &decimate(&points, MAX_POINTS),
                op_look(*op),
                MARKERS,
                shift,
                sizing,
            )?;
        }
        Ok(())
    }

    fn draw_legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let entries: Vec<LegendEntry> = self
            .shown_ops()
            .iter()
            .map(|(_, op)| LegendEntry {
                label: op.name().to_string(),
                look: op_look(*op),
                vertical: false,
            })
            .collect();
        draw_legend(area, Some("operation"), &entries, self.sizing)
    }
}

/// The range of `values` with padding; a minimal span around values that barely move; the
/// padding does not reach below 0 or above 1 when the values do not.
pub fn padded_range(values: &[f64]) -> (f64, f64) {
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(*value), high.max(*value))
        });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let middle = (low + high) / 2.0;
    let minimum = (MIN_RELATIVE_SPAN * middle.abs()).max(1e-6);
    let half = ((high - low).max(minimum) / 2.0) * (1.0 + 2.0 * Y_PADDING);
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

impl Figure for AlphaFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        let panel = (self.sizing.pixels(PANEL.0), self.sizing.pixels(PANEL.1));
        self.sizing.resolve((
            columns * panel.0 + 2 * GRID_MARGIN,
            rows * panel.1 + self.sizing.pixels(TITLE_BAND) + GRID_MARGIN,
        ))
    }

    fn check_size(&self) -> anyhow::Result<()> {
        let (rows, columns) = self.grid();
        let (width, height) = self.panel();
        let minimum = (
            self.sizing.pixels(MIN_PANEL.0),
            self.sizing.pixels(MIN_PANEL.1),
        );
        if width < minimum.0 {
            bail!(
                "--width {} leaves {width} px per panel for {columns} columns; at --font-size {} \
                 a panel needs {} px (use --width {} or more, or a smaller --font-size)",
                self.size().0,
                self.sizing.font_size,
                minimum.0,
                columns * minimum.0 + 2 * GRID_MARGIN
            );
        }
        if height < minimum.1 {
            bail!(
                "--height {} leaves {height} px per panel for {rows} rows; at --font-size {} \
                 a panel needs {} px (use --height {} or more, or a smaller --font-size)",
                self.size().1,
                self.sizing.font_size,
                minimum.1,
                rows * minimum.1 + self.sizing.pixels(TITLE_BAND) + GRID_MARGIN
            );
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let title_band = self.sizing.pixels(TITLE_BAND);
        let (title, grid) = root.split_vertically(title_band);
        let (width, _) = title.dim_in_pixel();
        title
            .draw_text(
                &self.title(),
                &(FONT, self.sizing.text(24.0))
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
                (width as i32 / 2, title_band as i32 / 2),
            )
            .map_err(failed)?;
        let margin = GRID_MARGIN as i32;
        let grid = grid.margin(0, margin, margin, margin);
        let panel = self.panel();
        let cell = |row: usize, column: usize| {
            grid.clone().shrink(
                (column as u32 * panel.0, row as u32 * panel.1),
                (panel.0, panel.1),
            )
        };
        for node in 0..self.history.steps {
            for source in 0..node + 2 {
                self.draw_panel(&cell(node, source), node, source)?;
            }
        }
        // The last column is empty above the last row (node i has i + 2 panels): the legend
        // takes all of that space.
        let empty_rows = (self.history.steps as u32).saturating_sub(1).max(1);
        let legend = grid.clone().shrink(
            ((self.columns() as u32 - 1) * panel.0, 0),
            (panel.0, empty_rows * panel.1),
        );
        self.draw_legend(&legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_holds_the_data_with_padding() {
        let (low, high) = padded_range(&[0.12, 0.31, 0.2]);
        assert!(low < 0.12 && high > 0.31, "{low}..{high}");
        assert!(high - low < 0.25, "{low}..{high}");
        // The old figures showed 0.12 to 0.13 whatever the data.
        let (low, high) = padded_range(&[0.02, 0.6]);
        assert!(low < 0.02 && high > 0.6 && low >= 0.0, "{low}..{high}");
        let (low, high) = padded_range(&[0.0, 1.0]);
        assert_eq!((low, high), (0.0, 1.0));
        let (low, high) = padded_range(&[1.5, 2.5]);
        assert!(low < 1.5 && high > 2.5);
    }

    #[test]
    fn alphas_that_never_moved_get_a_narrow_axis_around_their_value() {
        let (low, high) = padded_range(&[0.125, 0.125]);
        assert!(low < 0.125 && high > 0.125);
        assert!(high - low < 0.001, "{low}..{high}");
        let ticks = Ticks::linear(low, high, 4, 0.0);
        assert!(ticks.values.len() >= 2, "{ticks:?}");
    }
}
