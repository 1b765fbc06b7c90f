//! The projection Pi_S of activated alphas onto discrete cells: two genes per node for the
//! convolutional cells (SPEC 2, the reference `_parse`) and one per node for the recurrent
//! cell (SPEC 7.6, prime's `model_search_rnn.py` `_parse` after commit `4175f11`). Both rank a
//! node's sources by their strongest non-`none` weight and share one error type.

use super::cnn::{Gene, Genotype};
use super::rnn::{RnnGene, RnnGenotype, RnnOp};
use crate::primitives::CnnOp;
use std::fmt;

/// A host-side weight matrix, one row per edge and one column per primitive.
pub type Matrix = Vec<Vec<f32>>;

/// The projection of one cell type: the chosen genes and the binary matrix z = Pi_S(A).
#[derive(Debug, Clone, PartialEq)]
pub struct CellProjection {
    /// Two genes per node, the stronger edge first (not sorted by source).
    pub genes: Vec<Gene>,
    /// Same shape as the input, 1 at every chosen (edge, op) and 0 elsewhere.
    pub z: Matrix,
}

/// The projection of a recurrent alpha matrix: the genotype and the binary matrix z.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnProjection {
    /// One gene per node, concat = 1..=nodes.
    pub genotype: RnnGenotype,
    /// Same shape as the input, 1 at every chosen (edge, op) and 0 elsewhere.
    pub z: Matrix,
}

/// Which states a cell's nodes read, one alpha row per (node, source) edge in node order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeLayout {
    /// Node i of a convolutional cell reads c_{k-2}, c_{k-1} and nodes 0..i: i + 2 edges.
    Convolutional,
    /// Node i + 1 of the recurrent cell reads states 0..=i: i + 1 edges.
    Recurrent,
}

impl EdgeLayout {
    /// Number of edges of node `node` (0-based).
    fn sources(self, node: usize) -> usize {
        match self {
            EdgeLayout::Convolutional => node + 2,
            EdgeLayout::Recurrent => node + 1,
        }
    }

    /// Number of edges of a cell with `steps` nodes, which is also the first row of node
    /// `steps`.
    pub fn edges(self, steps: usize) -> usize {
        match self {
            EdgeLayout::Convolutional => steps * (steps + 3) / 2,
            EdgeLayout::Recurrent => steps * (steps + 1) / 2,
        }
    }

    /// Number of nodes of a cell with `rows` edges, if `rows` is a valid edge count.
    pub fn steps_for_rows(self, rows: usize) -> Option<usize> {
        (1..)
            .map(|steps: usize| (steps, self.edges(steps)))
            .take_while(|&(_, edges)| edges <= rows)
            .find(|&(_, edges)| edges == rows)
            .map(|(steps, _)| steps)
    }
}

impl fmt::Display for EdgeLayout {
    /// The valid edge counts, as a row-count error states them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EdgeLayout::Convolutional => {
                "steps*(steps+3)/2 for any steps >= 1 (2, 5, 9, 14, 20, ...)"
            }
            EdgeLayout::Recurrent => "steps*(steps+1)/2 for any steps >= 1 (1, 3, 6, ..., 36)",
        })
    }
}

/// Why a weight matrix cannot be projected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    /// The row count is not the edge count of any positive number of nodes.
    #[error("{rows} rows is not an edge count {layout}")]
    RowCount {
        /// Rows found.
        rows: usize,
        /// The cell's edge layout.
        layout: EdgeLayout,
    },
    /// A row does not have one entry per primitive.
    #[error("row {row} has {found} columns, expected {expected} (one per primitive)")]
    ColumnCount {
        /// 0-based row.
        row: usize,
        /// Columns found.
        found: usize,
        /// Number of primitives.
        expected: usize,
    },
    /// An entry is NaN or infinite.
    #[error("row {row}, column {column} is not a finite number ({value})")]
    NonFinite {
        /// 0-based row.
        row: usize,
        /// 0-based column.
        column: usize,
        /// The offending value.
        value: f32,
    },
    /// Every primitive is `none`, so no operation can be chosen.
    #[error("the primitive list has no operation other than `none`")]
    NoSelectableOp,
    /// The error concerns one cell type of a genotype.
    #[error("{cell} cell: {reason}")]
    InCell {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// The underlying error.
        reason: Box<ProjectionError>,
    },
}

/// One chosen edge: the source state and the primitive column.
struct ChosenEdge {
    source: usize,
    column: usize,
}

/// Keeps the `keep` strongest sources of every node, each with the first strictly largest
/// selectable op of its row, and marks them in z.
///
/// A source scores the largest selectable entry of its row; sources are ranked with a stable
/// descending sort, so ties keep ascending source order. `none_columns[c]` says whether
/// column c is `none`, which never counts for ranking or choice.
fn project(
    activated: &[Vec<f32>],
    layout: EdgeLayout,
    none_columns: &[bool],
    keep: usize,
) -> Result<(Vec<ChosenEdge>, Matrix), ProjectionError> {
    let steps = layout
        .steps_for_rows(activated.len())
        .ok_or(ProjectionError::RowCount {
            rows: activated.len(),
            layout,
        })?;
    for (row, values) in activated.iter().enumerate() {
        if values.len() != none_columns.len() {
            return Err(ProjectionError::ColumnCount {
                row,
                found: values.len(),
                expected: none_columns.len(),
            });
        }
        if let Some((column, &value)) = values
            .iter()
            .enumerate()
            .find(|(_, value)| !value.is_finite())
        {
            return Err(ProjectionError::NonFinite { row, column, value });
        }
    }
    let selectable: Vec<usize> = (0..none_columns.len())
        .filter(|&column| !none_columns[column])
        .collect();
    let Some((&first, rest)) = selectable.split_first() else {
        return Err(ProjectionError::NoSelectableOp);
    };
    let best_op = |row: &[f32]| {
        rest.iter().fold(first, |best, &column| {
            if row[column] > row[best] {
                column
            } else {
                best
            }
        })
    };

    let mut chosen = Vec::with_capacity(keep * steps);
    let mut z: Matrix = activated.iter().map(|row| vec![0.0; row.len()]).collect();
    for node in 0..steps {
        let offset = layout.edges(node);
        let mut sources: Vec<(usize, f32)> = (0..layout.sources(node))
            .map(|source| {
                let row = &activated[offset + source];
                (source, row[best_op(row)])
            })
            .collect();
        // Stable sort; `partial_cmp` (not `total_cmp`) so that -0.0 ties with 0.0 as in Python.
        sources.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        for &(source, _) in &sources[..keep] {
            let row = offset + source;
            let column = best_op(&activated[row]);
            chosen.push(ChosenEdge { source, column });
            z[row][column] = 1.0;
        }
    }
    Ok((chosen, z))
}

/// Projects one convolutional cell's activated weights (edges x primitives) onto two genes
/// per node, the stronger first.
pub fn project_cell(
    activated: &[Vec<f32>],
    primitives: &[CnnOp],
) -> Result<CellProjection, ProjectionError> {
    let none_columns: Vec<bool> = primitives.iter().map(|op| *op == CnnOp::None).collect();
    let (chosen, z) = project(activated, EdgeLayout::Convolutional, &none_columns, 2)?;
    let genes = chosen
        .iter()
        .map(|edge| Gene::new(primitives[edge.column], edge.source))
        .collect();
    Ok(CellProjection { genes, z })
}

/// Projects both cell types; returns the genotype (concat 2..=steps+1) and z for normal and reduce.
pub fn derive_genotype(
    normal: &[Vec<f32>],
    reduce: &[Vec<f32>],
    primitives: &[CnnOp],
) -> Result<(Genotype, Matrix, Matrix), ProjectionError> {
    let in_cell = |cell: &'static str| {
        move |reason| ProjectionError::InCell {
            cell,
            reason: Box::new(reason),
        }
    };
    let normal = project_cell(normal, primitives).map_err(in_cell("normal"))?;
    let reduce = project_cell(reduce, primitives).map_err(in_cell("reduce"))?;
    let concat = |genes: &[Gene]| (2..genes.len() / 2 + 2).collect();
    let genotype = Genotype {
        normal_concat: concat(&normal.genes),
        reduce_concat: concat(&reduce.genes),
        normal: normal.genes,
        reduce: reduce.genes,
    };
    Ok((genotype, normal.z, reduce.z))
}

/// Projects activated recurrent weights (edges x primitives) onto one gene per node, the
/// strongest source's; the concat is every node.
pub fn project_rnn(
    activated: &[Vec<f32>],
    primitives: &[RnnOp],
) -> Result<RnnProjection, ProjectionError> {
    let none_columns: Vec<bool> = primitives.iter().map(|op| *op == RnnOp::None).collect();
    let (chosen, z) = project(activated, EdgeLayout::Recurrent, &none_columns, 1)?;
    let recurrent: Vec<RnnGene> = chosen
        .iter()
        .map(|edge| RnnGene::new(primitives[edge.column], edge.source))
        .collect();
    Ok(RnnProjection {
        genotype: RnnGenotype {
            concat: (1..=recurrent.len()).collect(),
            recurrent,
        },
        z,
    })
}

/// The Frobenius norm ||a - z||_F, accumulated in f64; missing entries of the shorter count as 0.
pub fn frobenius_distance(a: &[Vec<f32>], z: &[Vec<f32>]) -> f64 {
    let rows = a.len().max(z.len());
    let mut sum = 0.0;
    for row in 0..rows {
        let a_row = a.get(row).map_or(&[][..], Vec::as_slice);
        let z_row = z.get(row).map_or(&[][..], Vec::as_slice);
        for column in 0..a_row.len().max(z_row.len()) {
            let a_value = a_row.get(column).copied().map_or(0.0, f64::from);
            let z_value = z_row.get(column).copied().map_or(0.0, f64::from);
            sum += (a_value - z_value).powi(2);
        }
    }
    sum.sqrt()
}

#[cfg(test)]
mod tests;
