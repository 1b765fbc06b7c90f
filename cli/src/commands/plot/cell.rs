//! `prime plot cell`: a genotype's cells as pictures. The layout and the SVG come from
//! [`prime_core::genotype::diagram`] (the dashboard draws the same SVG); here the PNG, drawn
//! with plotters from the same geometry.

use super::figures::Figure;
use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use prime_core::genotype::diagram::{
    CellDiagram, DiagramState, LABEL_FONT_SIZE, NODE_FONT_SIZE, TITLE_FONT_SIZE,
};

/// The font family the figures register (DejaVu Sans, bundled).
const FONT: &str = "sans-serif";
/// Points per drawn arc.
const ARC_POINTS: usize = 48;
/// Points per drawn ellipse.
const ELLIPSE_POINTS: usize = 64;
/// Relative size of a subscript.
const SUBSCRIPT_SCALE: f64 = 0.72;

/// A cell diagram as a plotters figure.
pub struct CellFigure<'a> {
    /// The laid-out cell.
    pub diagram: &'a CellDiagram,
}

fn pixel((x, y): (f64, f64)) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

fn failed<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing the cell failed: {error}")
}

impl Figure for CellFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (
            self.diagram.width.ceil() as u32,
            self.diagram.height.ceil() as u32,
        )
    }

    /// The size comes from the layout itself, so the content always fits.
    fn check_size(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let diagram = self.diagram;
        let title = (FONT, TITLE_FONT_SIZE * 1.24)
            .into_font()
            .style(FontStyle::Bold)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Top));
        root.draw(&Text::new(diagram.title.clone(), (24, 22), title))
            .map_err(failed)?;
        for edge in &diagram.edges {
            let arc = diagram.arc(edge);
            let colour = if edge.operation.is_some() {
                RGBColor(0x33, 0x33, 0x33)
            } else {
                RGBColor(0x9a, 0x9a, 0x9a)
            };
            let points: Vec<(i32, i32)> = (0..=ARC_POINTS)
                .map(|step| pixel(arc.point(step as f64 / ARC_POINTS as f64)))
                .collect();
            root.draw(&PathElement::new(points, colour.stroke_width(2)))
                .map_err(failed)?;
            let head: Vec<(i32, i32)> = arc.arrowhead().into_iter().map(pixel).collect();
            root.draw(&Polygon::new(head, colour.filled()))
                .map_err(failed)?;
        }
        // Labels after every arc, so that no arc crosses a label.
        for edge in &diagram.edges {
            let Some(operation) = &edge.operation else {
                continue;
            };
            let (x, y) = diagram.arc(edge).apex();
            let half_width = CellDiagram::label_width(operation) / 2.0;
            let half_height = LABEL_FONT_SIZE * 0.75;
            root.draw(&Rectangle::new(
                [
                    pixel((x - half_width, y - half_height)),
                    pixel((x + half_width, y + half_height)),
                ],
                WHITE.mix(0.9).filled(),
            ))
            .map_err(failed)?;
            let font = (FONT, LABEL_FONT_SIZE * 1.24)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(operation.clone(), pixel((x, y)), font))
                .map_err(failed)?;
        }
        for state in &diagram.states {
            draw_state(root, state)?;
        }
        Ok(())
    }
}

fn draw_state<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    state: &DiagramState,
) -> anyhow::Result<()> {
    let (rx, ry) = state.kind.radii();
    let (cx, cy) = state.centre;
    let outline: Vec<(i32, i32)> = (0..=ELLIPSE_POINTS)
        .map(|step| {
            let angle = std::f64::consts::TAU * step as f64 / ELLIPSE_POINTS as f64;
            pixel((cx + rx * angle.cos(), cy + ry * angle.sin()))
        })
        .collect();
    let (r, g, b) = state.kind.fill();
    root.draw(&Polygon::new(outline.clone(), RGBColor(r, g, b).filled()))
        .map_err(failed)?;
    root.draw(&PathElement::new(
        outline,
        RGBColor(0x33, 0x33, 0x33).stroke_width(1),
    ))
    .map_err(failed)?;
    let main_font = (FONT, NODE_FONT_SIZE * 1.24).into_font().color(&BLACK);
    let sub_font = (FONT, NODE_FONT_SIZE * 1.24 * SUBSCRIPT_SCALE)
        .into_font()
        .color(&BLACK);
    let (main_width, _) = root
        .estimate_text_size(&state.name.text, &main_font)
        .map_err(failed)?;
    let sub_width = match &state.name.subscript {
        Some(subscript) => {
            root.estimate_text_size(subscript, &sub_font)
                .map_err(failed)?
                .0
        }
        None => 0,
    };
    let left = cx - f64::from(main_width + sub_width) / 2.0;
    let main = main_font.pos(Pos::new(HPos::Left, VPos::Center));
    root.draw(&Text::new(state.name.text.clone(), pixel((left, cy)), main))
        .map_err(failed)?;
    if let Some(subscript) = &state.name.subscript {
        let sub = sub_font.pos(Pos::new(HPos::Left, VPos::Center));
        let at = (
            left + f64::from(main_width) + 1.0,
            cy + NODE_FONT_SIZE * 0.35,
        );
        root.draw(&Text::new(subscript.clone(), pixel(at), sub))
            .map_err(failed)?;
    }
    Ok(())
}
