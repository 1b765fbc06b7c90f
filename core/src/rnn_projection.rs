//! The projection Pi_S of activated recurrent alphas onto one gene per node (SPEC 7.6, prime's
//! `model_search_rnn.py` `_parse` after commit `4175f11`).

use crate::rnn_genotype::{RnnGene, RnnGenotype, RnnOp};

/// The projection of a recurrent alpha matrix: the genotype and the binary matrix z.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnProjection {
    /// One gene per node, concat = 1..=nodes.
    pub genotype: RnnGenotype,
    /// Same shape as the input, 1 at every chosen (edge, op) and 0 elsewhere.
    pub z: Vec<Vec<f32>>,
}

/// Why a recurrent weight matrix cannot be projected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RnnProjectionError {
    /// The row count is not steps * (steps + 1) / 2 for any positive number of steps.
    #[error(
        "{rows} rows is not an edge count steps*(steps+1)/2 for any steps >= 1 (1, 3, 6, ..., 36)"
    )]
    RowCount {
        /// Rows found.
        rows: usize,
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
    /// Every primitive is `none`.
    #[error("the primitive list has no operation other than `none`")]
    NoSelectableOp,
}

/// Nodes of a searched cell with `rows` edges, if `rows` is steps*(steps+1)/2.
pub fn rnn_steps_for_rows(rows: usize) -> Option<usize> {
    (1..)
        .map(|steps: usize| (steps, steps * (steps + 1) / 2))
        .take_while(|&(_, edges)| edges <= rows)
        .find(|&(_, edges)| edges == rows)
        .map(|(steps, _)| steps)
}

/// Projects activated recurrent weights (edges x primitives) onto one gene per node.
///
/// For node i+1 (rows offset..=offset+i, offset = i(i+1)/2) each source j scores the largest
/// non-`none` entry of its row; the best source wins under a stable descending sort (ties go to
/// the lowest j), with the first strictly largest non-`none` op of its row.
pub fn project_rnn(
    activated: &[Vec<f32>],
    primitives: &[RnnOp],
) -> Result<RnnProjection, RnnProjectionError> {
    let steps = rnn_steps_for_rows(activated.len()).ok_or(RnnProjectionError::RowCount {
        rows: activated.len(),
    })?;
    for (row, values) in activated.iter().enumerate() {
        if values.len() != primitives.len() {
            return Err(RnnProjectionError::ColumnCount {
                row,
                found: values.len(),
                expected: primitives.len(),
            });
        }
        if let Some((column, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(RnnProjectionError::NonFinite { row, column, value });
        }
    }
    let selectable: Vec<usize> = (0..primitives.len())
        .filter(|&column| primitives[column] != RnnOp::None)
        .collect();
    let Some((&first, rest)) = selectable.split_first() else {
        return Err(RnnProjectionError::NoSelectableOp);
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
    let mut recurrent = Vec::with_capacity(steps);
    let mut z: Vec<Vec<f32>> = activated.iter().map(|row| vec![0.0; row.len()]).collect();
    for node in 0..steps {
        let offset = node * (node + 1) / 2;
        let mut sources: Vec<(usize, f32)> = (0..=node)
            .map(|source| {
                let row = &activated[offset + source];
                (source, row[best_op(row)])
            })
            .collect();
        // Stable sort; `partial_cmp` so that -0.0 ties with 0.0 as in Python.
        sources.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let source = sources[0].0;
        let row = offset + source;
        let column = best_op(&activated[row]);
        recurrent.push(RnnGene::new(primitives[column], source));
        z[row][column] = 1.0;
    }
    Ok(RnnProjection {
        genotype: RnnGenotype {
            recurrent,
            concat: (1..=steps).collect(),
        },
        z,
    })
}

/// ||a - z||_F of two equally shaped matrices, accumulated in f64.
pub fn frobenius_distance_rows(a: &[Vec<f32>], z: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(z)
        .flat_map(|(a, z)| a.iter().zip(z))
        .map(|(a, z)| (f64::from(*a) - f64::from(*z)).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rnn_genotype::{RNN_CRB_PRIMITIVES, RNN_EDGES, RNN_SEARCH_PRIMITIVES};

    #[test]
    fn spec_worked_example() {
        // Node 1: one row; node 2: two rows (SPEC 7.6).
        let rows = vec![
            vec![0.1, 0.2, 0.4, 0.2, 0.1],
            vec![0.3, 0.1, 0.1, 0.1, 0.4],
            vec![0.2, 0.3, 0.2, 0.2, 0.1],
        ];
        let projection = project_rnn(&rows, &RNN_SEARCH_PRIMITIVES).unwrap();
        assert_eq!(
            projection.genotype.recurrent,
            vec![
                RnnGene::new(RnnOp::Relu, 0),
                RnnGene::new(RnnOp::Identity, 0)
            ]
        );
        assert_eq!(projection.genotype.concat, vec![1, 2]);
        assert_eq!(projection.z[0], vec![0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(projection.z[1], vec![0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(projection.z[2], vec![0.0; 5]);
    }

    #[test]
    fn full_cell_has_eight_genes_and_ties_go_to_the_lowest_index() {
        let uniform = vec![vec![0.25_f32; 4]; RNN_EDGES];
        let projection = project_rnn(&uniform, &RNN_CRB_PRIMITIVES).unwrap();
        assert_eq!(projection.genotype.recurrent.len(), 8);
        assert!(projection
            .genotype
            .recurrent
            .iter()
            .all(|gene| *gene == RnnGene::new(RnnOp::Tanh, 0)));
        assert_eq!(projection.genotype.concat, (1..9).collect::<Vec<_>>());
        let ones: f32 = projection.z.iter().flatten().sum();
        assert_eq!(ones, 8.0);
        projection.genotype.validate().unwrap();
    }

    #[test]
    fn the_none_column_is_never_chosen_and_bad_shapes_are_errors() {
        let rows = vec![vec![0.9, 0.01, 0.02, 0.03, 0.04]];
        let projection = project_rnn(&rows, &RNN_SEARCH_PRIMITIVES).unwrap();
        assert_eq!(projection.genotype.recurrent[0].op, RnnOp::Identity);
        assert!(matches!(
            project_rnn(&[vec![0.0; 5], vec![0.0; 5]], &RNN_SEARCH_PRIMITIVES),
            Err(RnnProjectionError::RowCount { rows: 2 })
        ));
        assert!(matches!(
            project_rnn(&[vec![f32::NAN; 5]], &RNN_SEARCH_PRIMITIVES),
            Err(RnnProjectionError::NonFinite { .. })
        ));
        let distance = frobenius_distance_rows(&rows, &projection.z);
        assert!((distance - (0.81f64 + 0.0001 + 0.0004 + 0.0009 + 0.9216).sqrt()).abs() < 1e-6);
    }
}
