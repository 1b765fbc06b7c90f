//! Cell diagrams: a genotype's cells as pictures, laid out on a fixed plan and written as SVG.
//!
//! A cell's shape is fixed (two inputs, intermediate nodes in order, one output), so the layout
//! is fixed too: every state sits on one horizontal line in data-flow order and every edge is an
//! arc from its source to its target, labelled at its apex with its operation. The two inputs of
//! an intermediate node take opposite sides of the line (the strongest above), so two edges
//! between the same pair of states never overlap, and arcs of different spans have different
//! heights, so their labels do not collide. The geometry lives here, next to the genotypes, so
//! that the command line (SVG and PNG) and the coordinator's dashboard (SVG) draw the same
//! picture; the SVG writer needs no dependency.

use super::{Gene, Genotype, RnnGenotype};
use std::fmt::Write;

/// Horizontal distance between two neighbouring states, in pixels (fits a 12-letter label).
const STATE_SPACING: f64 = 130.0;
/// Apex height of an arc spanning one state, in pixels.
const ARC_BASE_HEIGHT: f64 = 30.0;
/// Extra apex height per state spanned: enough for a label (about 16 px) between stacked arcs.
const ARC_HEIGHT_PER_SPAN: f64 = 30.0;
/// Extra apex height per state spanned by a plain connection: it has no label to keep clear,
/// so it stays flat.
const PLAIN_ARC_HEIGHT_PER_SPAN: f64 = 9.0;
/// Margin around the drawing, in pixels.
const MARGIN: f64 = 24.0;
/// Height of the title line, in pixels.
const TITLE_HEIGHT: f64 = 28.0;
/// Font size of edge labels, in pixels.
pub const LABEL_FONT_SIZE: f64 = 13.0;
/// Font size of state names, in pixels.
pub const NODE_FONT_SIZE: f64 = 16.0;
/// Font size of the title, in pixels.
pub const TITLE_FONT_SIZE: f64 = 16.0;
/// Average advance of a label character at [`LABEL_FONT_SIZE`] (DejaVu Sans), for label boxes.
const LABEL_CHAR_WIDTH: f64 = 7.6;
/// Length of an arrowhead, in pixels.
const ARROW_LENGTH: f64 = 9.0;

/// A state name with an optional subscript: `c` with `k-2` reads c_{k-2}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateName {
    /// The main text.
    pub text: String,
    /// The subscript, if any.
    pub subscript: Option<String>,
}

impl StateName {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            subscript: None,
        }
    }

    fn subscripted(text: &str, subscript: &str) -> Self {
        Self {
            text: text.to_string(),
            subscript: Some(subscript.to_string()),
        }
    }

    /// The name as plain text, subscript in TeX form: `c_{k-2}`.
    pub fn to_tex(&self) -> String {
        match &self.subscript {
            Some(subscript) => format!("{}_{{{subscript}}}", self.text),
            None => self.text.clone(),
        }
    }
}

/// What a state of a cell is; it sets the state's colour and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// An input of the cell.
    Input,
    /// An intermediate node.
    Intermediate,
    /// The cell's output.
    Output,
}

impl StateKind {
    /// Fill colour (the DARTS pictures' palette).
    pub fn fill(self) -> (u8, u8, u8) {
        match self {
            StateKind::Input => (0xb4, 0xee, 0xb4),
            StateKind::Intermediate => (0xad, 0xd8, 0xe6),
            StateKind::Output => (0xee, 0xe8, 0xaa),
        }
    }

    /// Half width and half height of the state's ellipse, in pixels.
    pub fn radii(self) -> (f64, f64) {
        match self {
            StateKind::Intermediate => (19.0, 19.0),
            StateKind::Input | StateKind::Output => (32.0, 20.0),
        }
    }
}

/// One state of a diagram at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagramState {
    /// The name written inside.
    pub name: StateName,
    /// What it is.
    pub kind: StateKind,
    /// Centre, in pixels from the top left.
    pub centre: (f64, f64),
}

/// Which side of the line of states an arc takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Above the line.
    Above,
    /// Below the line.
    Below,
}

/// One edge: an operation (labelled) or a plain connection (an input of the recurrent cell's
/// first state, or a state concatenated into the output).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagramEdge {
    /// Index of the source state in [`CellDiagram::states`].
    pub from: usize,
    /// Index of the target state.
    pub to: usize,
    /// The operation's name; `None` for a plain connection.
    pub operation: Option<String>,
    /// Side of the arc.
    pub side: Side,
}

/// An arc as a quadratic Bézier curve, with where its label and arrowhead go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arc {
    /// Start point (on the source state's ellipse).
    pub start: (f64, f64),
    /// Control point.
    pub control: (f64, f64),
    /// End point (on the target state's ellipse).
    pub end: (f64, f64),
}

impl Arc {
    /// The point at parameter `t` in 0..=1.
    pub fn point(&self, t: f64) -> (f64, f64) {
        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
        (
            a * self.start.0 + b * self.control.0 + c * self.end.0,
            a * self.start.1 + b * self.control.1 + c * self.end.1,
        )
    }

    /// The apex, where the label is centred.
    pub fn apex(&self) -> (f64, f64) {
        self.point(0.5)
    }

    /// The arrowhead's triangle: tip, then the two back corners.
    pub fn arrowhead(&self) -> [(f64, f64); 3] {
        let (dx, dy) = (self.end.0 - self.control.0, self.end.1 - self.control.1);
        let length = dx.hypot(dy).max(f64::EPSILON);
        let (ux, uy) = (dx / length, dy / length);
        let back = (
            self.end.0 - ux * ARROW_LENGTH,
            self.end.1 - uy * ARROW_LENGTH,
        );
        let half_width = ARROW_LENGTH * 0.45;
        [
            self.end,
            (back.0 - uy * half_width, back.1 + ux * half_width),
            (back.0 + uy * half_width, back.1 - ux * half_width),
        ]
    }
}

/// A cell laid out: its states on a line, its edges as arcs.
#[derive(Debug, Clone, PartialEq)]
pub struct CellDiagram {
    /// The title drawn at the top, for example `Normal cell`.
    pub title: String,
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
    /// The states, left to right.
    pub states: Vec<DiagramState>,
    /// The edges.
    pub edges: Vec<DiagramEdge>,
    /// The y coordinate of the line of states.
    baseline: f64,
}

/// The apex height of the arc of `edge`.
fn arc_height(edge: &DiagramEdge) -> f64 {
    let per_span = if edge.operation.is_some() {
        ARC_HEIGHT_PER_SPAN
    } else {
        PLAIN_ARC_HEIGHT_PER_SPAN
    };
    ARC_BASE_HEIGHT + per_span * edge.to.abs_diff(edge.from) as f64
}

impl CellDiagram {
    /// The normal cell of a convolutional genotype.
    pub fn normal(genotype: &Genotype) -> Self {
        Self::convolutional("Normal cell", &genotype.normal, &genotype.normal_concat)
    }

    /// The reduction cell of a convolutional genotype.
    pub fn reduction(genotype: &Genotype) -> Self {
        Self::convolutional("Reduction cell", &genotype.reduce, &genotype.reduce_concat)
    }

    /// The recurrent cell: x_t and h_{t-1} make state 0, gene n-1 computes state n from an
    /// earlier state, and the output h_t averages the states of `concat`.
    pub fn recurrent(genotype: &RnnGenotype) -> Self {
        let nodes = genotype.recurrent.len();
        let mut names = vec![
            (StateName::subscripted("x", "t"), StateKind::Input),
            (StateName::subscripted("h", "t-1"), StateKind::Input),
        ];
        names.extend(
            (0..=nodes).map(|node| (StateName::plain(node.to_string()), StateKind::Intermediate)),
        );
        names.push((StateName::subscripted("h", "t"), StateKind::Output));
        // State n of the genotype is at position n + 2.
        let output = names.len() - 1;
        let mut edges = vec![plain_edge(0, 2, Side::Below), plain_edge(1, 2, Side::Below)];
        edges.extend(
            genotype
                .recurrent
                .iter()
                .enumerate()
                .map(|(index, gene)| DiagramEdge {
                    from: gene.source + 2,
                    to: index + 3,
                    operation: Some(gene.op.name().to_string()),
                    side: Side::Above,
                }),
        );
        edges.extend(
            genotype
                .concat
                .iter()
                .map(|&state| plain_edge(state + 2, output, Side::Below)),
        );
        Self::place("Recurrent cell", names, edges)
    }

    fn convolutional(title: &str, genes: &[Gene], concat: &[usize]) -> Self {
        let nodes = genes.len() / 2;
        let mut names = vec![
            (StateName::subscripted("c", "k-2"), StateKind::Input),
            (StateName::subscripted("c", "k-1"), StateKind::Input),
        ];
        names.extend(
            (0..nodes).map(|node| (StateName::plain(node.to_string()), StateKind::Intermediate)),
        );
        names.push((StateName::subscripted("c", "k"), StateKind::Output));
        let output = names.len() - 1;
        let mut edges: Vec<DiagramEdge> = genes
            .iter()
            .enumerate()
            .map(|(index, gene)| DiagramEdge {
                from: gene.source,
                to: index / 2 + 2,
                operation: Some(gene.op.name().to_string()),
                side: if index % 2 == 0 {
                    Side::Above
                } else {
                    Side::Below
                },
            })
            .collect();
        edges.extend(
            concat
                .iter()
                .map(|&state| plain_edge(state, output, Side::Below)),
        );
        Self::place(title, names, edges)
    }

    fn place(title: &str, names: Vec<(StateName, StateKind)>, edges: Vec<DiagramEdge>) -> Self {
        let highest = |side: Side| {
            edges
                .iter()
                .filter(|edge| edge.side == side)
                .map(arc_height)
                .fold(0.0, f64::max)
        };
        let (above, below) = (highest(Side::Above), highest(Side::Below));
        // The labels of the highest arcs stick out half a line beyond the apex.
        let baseline = MARGIN + TITLE_HEIGHT + above + LABEL_FONT_SIZE;
        let height = baseline + below + LABEL_FONT_SIZE + MARGIN;
        let (input_radius, _) = StateKind::Input.radii();
        let first = MARGIN + input_radius;
        let states: Vec<DiagramState> = names
            .into_iter()
            .enumerate()
            .map(|(position, (name, kind))| DiagramState {
                name,
                kind,
                centre: (first + STATE_SPACING * position as f64, baseline),
            })
            .collect();
        let width = first * 2.0 + STATE_SPACING * (states.len().saturating_sub(1)) as f64;
        Self {
            title: title.to_string(),
            width,
            height,
            states,
            edges,
            baseline,
        }
    }

    /// The arc of `edge`: it leaves the source's ellipse and enters the target's on the side
    /// of the line the edge takes.
    pub fn arc(&self, edge: &DiagramEdge) -> Arc {
        let source = &self.states[edge.from];
        let target = &self.states[edge.to];
        let sign = match edge.side {
            Side::Above => -1.0,
            Side::Below => 1.0,
        };
        let height = arc_height(edge);
        let on_ellipse = |state: &DiagramState, toward: f64| {
            // The point of the ellipse 60 degrees from the line, on the edge's side.
            let (rx, ry) = state.kind.radii();
            let angle = 60f64.to_radians();
            (
                state.centre.0 + toward * rx * angle.cos(),
                state.centre.1 + sign * ry * angle.sin(),
            )
        };
        let start = on_ellipse(source, 1.0);
        let end = on_ellipse(target, -1.0);
        // The apex of a quadratic curve is halfway to its control point.
        let control = (
            (start.0 + end.0) / 2.0,
            self.baseline + sign * 2.0 * height - (start.1 + end.1 - 2.0 * self.baseline) / 2.0,
        );
        Arc {
            start,
            control,
            end,
        }
    }

    /// Width of the box behind an edge label, in pixels.
    pub fn label_width(label: &str) -> f64 {
        label.chars().count() as f64 * LABEL_CHAR_WIDTH + 8.0
    }

    /// The diagram as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let mut svg = String::new();
        let (width, height) = (self.width.ceil(), self.height.ceil());
        // Writing to a String cannot fail.
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="cell-diagram" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, sans-serif">"#
        );
        let _ = write!(
            svg,
            r#"<rect width="{width}" height="{height}" fill="white"/><text x="{MARGIN}" y="{}" font-size="{TITLE_FONT_SIZE}" font-weight="bold">{}</text>"#,
            MARGIN + TITLE_FONT_SIZE,
            escape(&self.title)
        );
        for edge in &self.edges {
            self.write_edge(&mut svg, edge);
        }
        for state in &self.states {
            write_state(&mut svg, state);
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn write_edge(&self, svg: &mut String, edge: &DiagramEdge) {
        let arc = self.arc(edge);
        let colour = if edge.operation.is_some() {
            "#333333"
        } else {
            "#9a9a9a"
        };
        let _ = write!(
            svg,
            r#"<path d="M{:.1},{:.1} Q{:.1},{:.1} {:.1},{:.1}" fill="none" stroke="{colour}" stroke-width="1.4"/>"#,
            arc.start.0, arc.start.1, arc.control.0, arc.control.1, arc.end.0, arc.end.1
        );
        let [tip, left, right] = arc.arrowhead();
        let _ = write!(
            svg,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{colour}"/>"#,
            tip.0, tip.1, left.0, left.1, right.0, right.1
        );
        if let Some(operation) = &edge.operation {
            let (x, y) = arc.apex();
            let box_width = Self::label_width(operation);
            let _ = write!(
                svg,
                r#"<g class="edge-label"><rect x="{:.1}" y="{:.1}" width="{box_width:.1}" height="{:.1}" rx="3" fill="white" fill-opacity="0.9"/><text x="{x:.1}" y="{:.1}" font-size="{LABEL_FONT_SIZE}" text-anchor="middle">{}</text></g>"#,
                x - box_width / 2.0,
                y - LABEL_FONT_SIZE * 0.75,
                LABEL_FONT_SIZE * 1.5,
                y + LABEL_FONT_SIZE * 0.35,
                escape(operation)
            );
        }
    }
}

fn plain_edge(from: usize, to: usize, side: Side) -> DiagramEdge {
    DiagramEdge {
        from,
        to,
        operation: None,
        side,
    }
}

fn write_state(svg: &mut String, state: &DiagramState) {
    let (rx, ry) = state.kind.radii();
    let (r, g, b) = state.kind.fill();
    let (x, y) = state.centre;
    let _ = write!(
        svg,
        r##"<ellipse cx="{x:.1}" cy="{y:.1}" rx="{rx}" ry="{ry}" fill="#{r:02x}{g:02x}{b:02x}" stroke="#333333" stroke-width="1.2"/><text x="{x:.1}" y="{:.1}" font-size="{NODE_FONT_SIZE}" text-anchor="middle">{}"##,
        y + NODE_FONT_SIZE * 0.35,
        escape(&state.name.text)
    );
    if let Some(subscript) = &state.name.subscript {
        let _ = write!(
            svg,
            r#"<tspan font-size="{:.0}" dy="4">{}</tspan>"#,
            NODE_FONT_SIZE * 0.72,
            escape(subscript)
        );
    }
    svg.push_str("</text>");
}

/// Escapes text for SVG and HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gene_is_a_labelled_arc_and_every_concat_state_feeds_the_output() {
        for name in ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"] {
            let genotype = Genotype::builtin(name).unwrap();
            for (diagram, genes, concat) in [
                (
                    CellDiagram::normal(&genotype),
                    &genotype.normal,
                    &genotype.normal_concat,
                ),
                (
                    CellDiagram::reduction(&genotype),
                    &genotype.reduce,
                    &genotype.reduce_concat,
                ),
            ] {
                assert_eq!(diagram.states.len(), genes.len() / 2 + 3, "{name}");
                let labelled: Vec<&str> = diagram
                    .edges
                    .iter()
                    .filter_map(|edge| edge.operation.as_deref())
                    .collect();
                let expected: Vec<&str> = genes.iter().map(|gene| gene.op.name()).collect();
                assert_eq!(labelled, expected, "{name}");
                let output = diagram.states.len() - 1;
                let into_output: Vec<usize> = diagram
                    .edges
                    .iter()
                    .filter(|edge| edge.to == output)
                    .map(|edge| edge.from)
                    .collect();
                assert_eq!(&into_output, concat, "{name}");
            }
        }
    }

    #[test]
    fn the_two_inputs_of_a_node_take_opposite_sides() {
        let genotype = Genotype::builtin("NASNet").unwrap();
        let diagram = CellDiagram::normal(&genotype);
        // NASNet's node 3 reads avg_pool_3x3 of c_{k-2} twice.
        let arcs: Vec<Arc> = diagram
            .edges
            .iter()
            .filter(|edge| edge.to == 5 && edge.operation.is_some())
            .map(|edge| diagram.arc(edge))
            .collect();
        assert_eq!(arcs.len(), 2);
        assert!(arcs[0].apex().1 < diagram.baseline && arcs[1].apex().1 > diagram.baseline);
    }

    #[test]
    fn arcs_and_labels_stay_inside_the_picture() {
        let genotype = RnnGenotype::builtin("ENAS").unwrap();
        for diagram in [
            CellDiagram::recurrent(&genotype),
            CellDiagram::reduction(&Genotype::builtin("AmoebaNet").unwrap()),
        ] {
            for edge in &diagram.edges {
                let arc = diagram.arc(edge);
                let (x, y) = arc.apex();
                assert!(
                    y - LABEL_FONT_SIZE > MARGIN + TITLE_HEIGHT / 2.0,
                    "{edge:?}"
                );
                assert!(y + LABEL_FONT_SIZE < diagram.height, "{edge:?}");
                assert!(x > 0.0 && x < diagram.width, "{edge:?}");
            }
        }
    }

    #[test]
    fn the_recurrent_cell_names_its_inputs_and_output() {
        let genotype = RnnGenotype::builtin("DARTS_V2").unwrap();
        let diagram = CellDiagram::recurrent(&genotype);
        let names: Vec<String> = diagram
            .states
            .iter()
            .map(|state| state.name.to_tex())
            .collect();
        assert_eq!(names[..3], ["x_{t}", "h_{t-1}", "0"]);
        assert_eq!(names.last().unwrap(), "h_{t}");
        let svg = diagram.to_svg();
        for operation in ["sigmoid", "relu", "identity", "tanh"] {
            assert!(svg.contains(&format!(">{operation}</text>")), "{operation}");
        }
        assert!(
            svg.contains(r#"h<tspan font-size="12" dy="4">t-1</tspan>"#),
            "{svg}"
        );
    }

    #[test]
    fn svg_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
