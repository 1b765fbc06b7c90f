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
