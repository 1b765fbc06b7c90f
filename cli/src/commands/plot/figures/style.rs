//! How lines look: the colour-blind-safe palette, dash patterns and markers that keep every
//! series distinguishable in colour and in greyscale, and the legend box drawn beside a chart.

use super::{failed, Sizing, FONT};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use prime_core::primitives::CnnOp;

/// The Okabe–Ito palette (Okabe and Ito, "Color Universal Design", 2008): eight colours that
/// stay apart under the common colour-vision deficiencies.
pub mod okabe_ito {
    use plotters::style::RGBColor;

    /// Orange.
    pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
    /// Sky blue.
    pub const SKY_BLUE: RGBColor = RGBColor(86, 180, 233);
    /// Bluish green.
    pub const BLUISH_GREEN: RGBColor = RGBColor(0, 158, 115);
    /// Blue.
    pub const BLUE: RGBColor = RGBColor(0, 114, 178);
    /// Vermillion.
    pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
    /// Reddish purple.
    pub const REDDISH_PURPLE: RGBColor = RGBColor(204, 121, 167);
    /// Black.
    pub const BLACK: RGBColor = RGBColor(0, 0, 0);
    /// Grey, the palette's neutral for a series of least interest.
    pub const GREY: RGBColor = RGBColor(153, 153, 153);
}

/// The stroke pattern of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    /// A continuous line.
    Solid,
    /// Long dashes.
    Dashed,
    /// Short dots.
    Dotted,
}

impl Dash {
    /// Dash and gap lengths in pixels for a line `width` wide; `None` for a solid line.
    fn pattern(self, width: u32) -> Option<(u32, u32)> {
        match self {
            Dash::Solid => None,
            Dash::Dashed => Some((5 * width + 2, 2 * width + 2)),
            Dash::Dotted => Some((width + 1, 2 * width + 1)),
        }
    }
}

/// A marker drawn at a few points along a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// No marker.
    None,
    /// A filled circle.
    Circle,
    /// A filled triangle.
    Triangle,
    /// An open square.
    Square,
    /// A diagonal cross.
    Cross,
}

/// The look of one series: colour, width, stroke pattern and marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLook {
    /// Stroke colour.
    pub colour: RGBColor,
    /// Stroke width in pixels.
    pub width: u32,
    /// Stroke pattern.
    pub dash: Dash,
    /// Marker at a few points.
    pub marker: Marker,
}

/// The look of an op in the alpha figures: an Okabe–Ito colour each, and no two ops share
/// their stroke pattern and marker, so the figure also reads in greyscale.
pub fn op_look(op: CnnOp) -> LineLook {
    use okabe_ito::*;
    let (colour, dash, marker) = match op {
        CnnOp::None => (GREY, Dash::Dotted, Marker::None),
        CnnOp::MaxPool3x3 => (ORANGE, Dash::Dashed, Marker::Circle),
        CnnOp::AvgPool3x3 => (SKY_BLUE, Dash::Dashed, Marker::Triangle),
        CnnOp::SkipConnect => (REDDISH_PURPLE, Dash::Dotted, Marker::Square),
        CnnOp::SepConv3x3 => (BLUISH_GREEN, Dash::Solid, Marker::Circle),
        CnnOp::SepConv5x5 => (BLUE, Dash::Solid, Marker::Triangle),
        CnnOp::DilConv3x3 => (VERMILLION, Dash::Solid, Marker::Square),
        CnnOp::DilConv5x5 => (BLACK, Dash::Solid, Marker::Cross),
        CnnOp::SepConv7x7 => (GREY, Dash::Dashed, Marker::Cross),
        CnnOp::Conv7x1And1x7 => (GREY, Dash::Solid, Marker::Square),
    };
    LineLook {
        colour,
        width: 2,
        dash,
        marker,
    }
}

/// A chart over real numbers on both axes (the y axis may be logarithmic).
pub type Chart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;

/// Draws `points` on `chart` in `look`; markers at `markers` evenly spaced points, the first
/// `shift` (a fraction of the spacing) along, so that lines' markers do not sit on each other.
pub fn draw_line<DB, X, Y>(
    chart: &mut Chart<'_, DB, X, Y>,
    points: &[(f64, f64)],
    look: LineLook,
    markers: usize,
    shift: f64,
    sizing: Sizing,
) -> anyhow::Result<()>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = look.colour.stroke_width(look.width);
    match look.dash.pattern(look.width) {
        None => chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(failed)?,
        Some((dash, gap)) => chart
            .draw_series(DashedLineSeries::new(
                points.iter().copied(),
                dash,
                gap,
                style,
            ))
            .map_err(failed)?,
    };
    if look.marker == Marker::None || points.is_empty() || markers == 0 {
        return Ok(());
    }
    let area = chart.plotting_area();
    let spacing = points.len() as f64 / markers as f64;
    for index in 0..markers {
        let position = ((index as f64 + shift) * spacing) as usize;
        if let Some(point) = points.get(position) {
            // Markers are drawn in pixels of the whole image, where the point lands.
            let (x, y) = area.map_coordinate(point);
            let (left, top) = area.get_base_pixel();
            draw_marker(&area.strip_coord_spec(), (x - left, y - top), look, sizing)?;
        }
    }
    Ok(())
}

/// Draws `look`'s marker at pixel `at` of `area`.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    look: LineLook,
    sizing: Sizing,
) -> anyhow::Result<()> {
    let size = sizing.pixels(4) as i32;
    let filled = look.colour.filled();
    let stroke = look.colour.stroke_width(2);
    match look.marker {
        Marker::None => Ok(()),
        Marker::Circle => area.draw(&Circle::new(at, size, filled)).map_err(failed),
        Marker::Triangle => area
            .draw(&(EmptyElement::at(at) + TriangleMarker::new((0, 0), size + 1, filled)))
            .map_err(failed),
        Marker::Square => area
            .draw(&(EmptyElement::at(at) + Rectangle::new([(-size, -size), (size, size)], stroke)))
            .map_err(failed),
        Marker::Cross => area
            .draw(&(EmptyElement::at(at) + Cross::new((0, 0), size, stroke)))
            .map_err(failed),
    }
}

/// One entry of a legend.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    /// The text.
    pub label: String,
    /// The line sample; `vertical` draws it upright (for marks across the chart).
    pub look: LineLook,
    /// Draw the sample as a short vertical stroke.
    pub vertical: bool,
}

/// Draws a framed legend, vertically centred in `area` (a column beside the charts).
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: Option<&str>,
    entries: &[LegendEntry],
    sizing: Sizing,
) -> anyhow::Result<()> {
    let line_height = sizing.pixels(27) as i32;
    let title_height = if title.is_some() { line_height + 8 } else { 0 };
    let (width, height) = area.dim_in_pixel();
    let box_height = 20 + title_height + line_height * entries.len() as i32;
    let top = ((height as i32 - box_height) / 2).max(0);
    let left = sizing.pixels(12) as i32;
    let sample = sizing.pixels(48) as i32;
    area.draw(&Rectangle::new(
        [(left, top), (width as i32 - 8, top + box_height)],
        BLACK.mix(0.35).stroke_width(1),
    ))
    .map_err(failed)?;
    let text_style = |size: f64| {
        (FONT, size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center))
    };
    if let Some(title) = title {
        area.draw_text(
            title,
            &(FONT, sizing.text(17.0))
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
            (left + 12, top + 10 + line_height / 2),
        )
        .map_err(failed)?;
    }
    for (index, entry) in entries.iter().enumerate() {
        let y = top + 10 + title_height + line_height * index as i32 + line_height / 2;
        let x = left + 12;
        let look = entry.look;
        let style = look.colour.stroke_width(look.width.max(2));
        if entry.vertical {
            let half = line_height / 2 - 3;
            area.draw(&PathElement::new(
                vec![(x + sample / 2, y - half), (x + sample / 2, y + half)],
                style,
            ))
            .map_err(failed)?;
        } else {
            match look.dash.pattern(look.width) {
                None => area
                    .draw(&PathElement::new(vec![(x, y), (x + sample, y)], style))
                    .map_err(failed)?,
                Some((dash, gap)) => {
                    let mut start = x;
                    while start < x + sample {
                        let end = (start + dash as i32).min(x + sample);
                        area.draw(&PathElement::new(vec![(start, y), (end, y)], style))
                            .map_err(failed)?;
                        start = end + gap as i32;
                    }
                }
            }
            draw_marker(area, (x + sample / 2, y), look, sizing)?;
        }
        area.draw_text(
            &entry.label,
            &text_style(sizing.text(16.0)),
            (x + sample + 12, y),
        )
        .map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::primitives::{CRB_PRIMITIVES, SEARCH_PRIMITIVES};

    #[test]
    fn every_op_has_its_own_colour_and_its_own_greyscale_look() {
        for ops in [&SEARCH_PRIMITIVES[..], &CRB_PRIMITIVES[..]] {
            for (index, first) in ops.iter().enumerate() {
                for second in &ops[index + 1..] {
                    let (a, b) = (op_look(*first), op_look(*second));
                    assert_ne!(a.colour, b.colour, "{first:?} and {second:?}");
                    assert_ne!(
                        (a.dash, a.marker),
                        (b.dash, b.marker),
                        "{first:?} and {second:?} look alike in greyscale"
                    );
                }
            }
        }
    }

    #[test]
    fn dashes_grow_with_the_line_width() {
        assert_eq!(Dash::Solid.pattern(2), None);
        assert_eq!(Dash::Dashed.pattern(2), Some((12, 6)));
        assert_eq!(Dash::Dotted.pattern(2), Some((3, 5)));
    }
}
