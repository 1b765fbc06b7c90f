//! The projection Pi_S of activated alpha onto discrete cells (SPEC 2, the reference `_parse`).

use crate::genotype::{Gene, Genotype};
use crate::primitives::CnnOp;

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

/// Why a weight matrix cannot be projected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    /// The row count is not steps * (steps + 3) / 2 for any positive number of steps.
    #[error(
        "{rows} rows is not an edge count steps*(steps+3)/2 for any steps >= 1 (2, 5, 9, 14, 20, ...)"
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

/// Number of intermediate nodes of a cell with `rows` edges, if `rows` is a valid edge count.
pub fn steps_for_rows(rows: usize) -> Option<usize> {
    (1..)
        .map(|steps: usize| (steps, steps * (steps + 3) / 2))
        .take_while(|&(_, edges)| edges <= rows)
        .find(|&(_, edges)| edges == rows)
        .map(|(steps, _)| steps)
}

/// Projects one cell's activated weights (edges x primitives) onto two genes per node.
///
/// Sources of node i are ranked by their strongest non-`none` weight with a stable descending
/// sort (ties keep ascending source order); the top two are kept, strongest first, each with
/// the first strictly largest non-`none` op.
pub fn project_cell(
    activated: &[Vec<f32>],
    primitives: &[CnnOp],
) -> Result<CellProjection, ProjectionError> {
    let steps = steps_for_rows(activated.len()).ok_or(ProjectionError::RowCount {
        rows: activated.len(),
    })?;
    for (row, values) in activated.iter().enumerate() {
        if values.len() != primitives.len() {
            return Err(ProjectionError::ColumnCount {
                row,
                found: values.len(),
                expected: primitives.len(),
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
    let selectable: Vec<usize> = (0..primitives.len())
        .filter(|&column| primitives[column] != CnnOp::None)
        .collect();
    if selectable.is_empty() {
        return Err(ProjectionError::NoSelectableOp);
    }
    let best_op = |row: &[f32]| {
        let mut best = selectable[0];
        for &column in &selectable[1..] {
            if row[column] > row[best] {
                best = column;
            }
        }
        best
    };

    let mut genes = Vec::with_capacity(2 * steps);
    let mut z: Vec<Vec<f32>> = activated.iter().map(|row| vec![0.0; row.len()]).collect();
    for node in 0..steps {
        let offset = node * (node + 3) / 2;
        let mut sources: Vec<(usize, f32)> = (0..node + 2)
            .map(|source| {
                let row = &activated[offset + source];
                (source, row[best_op(row)])
            })
            .collect();
        // Stable sort; `partial_cmp` (not `total_cmp`) so that -0.0 ties with 0.0 as in Python.
        sources.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        for &(source, _) in &sources[..2] {
            let row = offset + source;
            let column = best_op(&activated[row]);
            genes.push(Gene::new(primitives[column], source));
            z[row][column] = 1.0;
        }
    }
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
mod tests {
    use super::*;
    use crate::primitives::{Activation, CRB_PRIMITIVES, SEARCH_PRIMITIVES};
    use CnnOp::{DilConv3x3, MaxPool3x3, SepConv3x3, SepConv5x5, SkipConnect};

    /// The activated matrix of SPEC 2.3 (columns in `SEARCH_PRIMITIVES` order).
    fn worked_example() -> Vec<Vec<f32>> {
        [
            [0.30, 0.05, 0.05, 0.10, 0.20, 0.10, 0.10, 0.10],
            [0.10, 0.05, 0.05, 0.25, 0.25, 0.10, 0.10, 0.10],
            [0.40, 0.10, 0.10, 0.10, 0.10, 0.10, 0.05, 0.05],
            [0.05, 0.05, 0.05, 0.05, 0.15, 0.35, 0.15, 0.15],
            [0.65, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
            [0.125; 8],
            [0.05, 0.05, 0.05, 0.05, 0.30, 0.20, 0.20, 0.10],
            [0.05, 0.05, 0.05, 0.05, 0.10, 0.10, 0.30, 0.30],
            [0.20, 0.10, 0.10, 0.10, 0.15, 0.15, 0.10, 0.10],
            [0.15, 0.10, 0.10, 0.10, 0.15, 0.15, 0.15, 0.10],
            [0.30, 0.10, 0.10, 0.15, 0.10, 0.10, 0.10, 0.05],
            [0.10, 0.05, 0.05, 0.50, 0.10, 0.10, 0.05, 0.05],
            [0.16, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12],
            [0.10, 0.05, 0.05, 0.10, 0.40, 0.10, 0.10, 0.10],
        ]
        .iter()
        .map(|row| row.to_vec())
        .collect()
    }

    fn worked_example_genes() -> Vec<Gene> {
        [
            (SkipConnect, 1),
            (SepConv3x3, 0),
            (SepConv5x5, 1),
            (MaxPool3x3, 0),
            (SepConv3x3, 1),
            (DilConv3x3, 2),
            (SkipConnect, 2),
            (SepConv3x3, 4),
        ]
        .into_iter()
        .map(Gene::from)
        .collect()
    }

    fn ones(z: &[Vec<f32>]) -> Vec<(usize, usize)> {
        let mut ones = Vec::new();
        for (row, values) in z.iter().enumerate() {
            for (column, &value) in values.iter().enumerate() {
                if value == 1.0 {
                    ones.push((row, column));
                } else {
                    assert_eq!(value, 0.0);
                }
            }
        }
        ones
    }

    #[test]
    fn worked_example_gives_the_spec_genes_z_and_distance() {
        let a = worked_example();
        let projection = project_cell(&a, &SEARCH_PRIMITIVES).unwrap();
        assert_eq!(projection.genes, worked_example_genes());
        assert_eq!(
            ones(&projection.z),
            [
                (0, 4),
                (1, 3),
                (2, 1),
                (3, 5),
                (6, 4),
                (7, 6),
                (11, 3),
                (13, 4)
            ]
        );
        let distance = frobenius_distance(&a, &projection.z);
        assert!((distance - 2.4467121).abs() < 1e-6, "{distance}");
    }

    #[test]
    fn worked_example_survives_softmax_of_its_logarithm() {
        let raw: Vec<Vec<f32>> = worked_example()
            .iter()
            .map(|row| row.iter().map(|value| value.ln()).collect())
            .collect();
        let activated: Vec<Vec<f32>> = raw
            .iter()
            .map(|row| Activation::Softmax.apply_row(row))
            .collect();
        let projection = project_cell(&activated, &SEARCH_PRIMITIVES).unwrap();
        assert_eq!(projection.genes, worked_example_genes());
    }

    #[test]
    fn uniform_softmax_and_crb_distances_match_the_spec() {
        let softmax = vec![vec![0.125_f32; 8]; 14];
        let projection = project_cell(&softmax, &SEARCH_PRIMITIVES).unwrap();
        let distance = frobenius_distance(&softmax, &projection.z);
        assert!((distance - 2.7838822).abs() < 1e-6, "{distance}");
        // All ties: sources 0 then 1, op = first non-`none` column.
        for pair in projection.genes.chunks(2) {
            assert_eq!(pair, [Gene::new(MaxPool3x3, 0), Gene::new(MaxPool3x3, 1)]);
        }

        let crb = vec![vec![1.0_f32 / 7.0; 7]; 14];
        let projection = project_cell(&crb, &CRB_PRIMITIVES).unwrap();
        let distance = frobenius_distance(&crb, &projection.z);
        assert!((distance - 2.7774603).abs() < 1e-6, "{distance}");
        assert_eq!(ones(&projection.z).len(), 8);
        assert!(projection.genes.iter().all(|gene| gene.op == MaxPool3x3));
    }

    #[test]
    fn ties_keep_source_order_and_the_first_op() {
        // Node 0 only (2 rows): source 1 is stronger; its two equal maxima pick the first.
        let a = vec![vec![0.9, 0.2, 0.1, 0.1], vec![0.0, 0.1, 0.4, 0.4]];
        let ops = [CnnOp::None, MaxPool3x3, SepConv3x3, SepConv5x5];
        let projection = project_cell(&a, &ops).unwrap();
        assert_eq!(
            projection.genes,
            [Gene::new(SepConv3x3, 1), Gene::new(MaxPool3x3, 0)]
        );
        // Exact tie between sources: ascending source order, and -0.0 ties with 0.0.
        let a = vec![vec![-0.0, 0.0], vec![0.0, -0.0]];
        let projection = project_cell(&a, &[MaxPool3x3, SkipConnect]).unwrap();
        assert_eq!(
            projection.genes,
            [Gene::new(MaxPool3x3, 0), Gene::new(MaxPool3x3, 1)]
        );
    }

    #[test]
    fn none_never_counts_for_ranking_or_choice() {
        // Node 1 (rows 2..5): source 0 has a huge `none`, source 2 the best real op.
        let mut a = vec![vec![0.25_f32; 4]; 5];
        a[2] = vec![0.97, 0.01, 0.01, 0.01];
        a[3] = vec![0.4, 0.2, 0.2, 0.2];
        a[4] = vec![0.1, 0.1, 0.1, 0.7];
        let ops = [CnnOp::None, MaxPool3x3, SkipConnect, SepConv3x3];
        let projection = project_cell(&a, &ops).unwrap();
        assert_eq!(
            &projection.genes[2..],
            [Gene::new(SepConv3x3, 2), Gene::new(MaxPool3x3, 1)]
        );
    }

    #[test]
    fn derive_genotype_builds_both_cells_and_the_concat() {
        let normal = worked_example();
        let reduce = vec![vec![0.125_f32; 8]; 14];
        let (genotype, z_normal, z_reduce) =
            derive_genotype(&normal, &reduce, &SEARCH_PRIMITIVES).unwrap();
        assert_eq!(genotype.normal, worked_example_genes());
        assert_eq!(genotype.normal_concat, [2, 3, 4, 5]);
        assert_eq!(genotype.reduce_concat, [2, 3, 4, 5]);
        assert_eq!(genotype.reduce[7], Gene::new(MaxPool3x3, 1));
        assert_eq!(ones(&z_normal).len(), 8);
        assert_eq!(ones(&z_reduce).len(), 8);
        genotype.validate().unwrap();

        let small = vec![vec![0.5_f32; 2]; 5];
        let (genotype, _, _) = derive_genotype(&small, &small, &[SkipConnect, SepConv3x3]).unwrap();
        assert_eq!(genotype.normal_concat, [2, 3]);
        genotype.validate().unwrap();
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        let mut a = worked_example();
        a.pop();
        assert_eq!(
            project_cell(&a, &SEARCH_PRIMITIVES),
            Err(ProjectionError::RowCount { rows: 13 })
        );
        assert_eq!(
            project_cell(&[], &SEARCH_PRIMITIVES),
            Err(ProjectionError::RowCount { rows: 0 })
        );
        let mut a = worked_example();
        a[3].pop();
        assert_eq!(
            project_cell(&a, &SEARCH_PRIMITIVES),
            Err(ProjectionError::ColumnCount {
                row: 3,
                found: 7,
                expected: 8
            })
        );
        let a = vec![vec![0.5_f32]; 2];
        assert_eq!(
            project_cell(&a, &[CnnOp::None]),
            Err(ProjectionError::NoSelectableOp)
        );
    }

    #[test]
    fn nan_is_an_error_naming_its_position() {
        let mut a = worked_example();
        a[9][5] = f32::NAN;
        let error = project_cell(&a, &SEARCH_PRIMITIVES).unwrap_err();
        assert!(matches!(
            error,
            ProjectionError::NonFinite {
                row: 9,
                column: 5,
                ..
            }
        ));
        let error = derive_genotype(&worked_example(), &a, &SEARCH_PRIMITIVES).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("reduce cell: row 9, column 5"),
            "{message}"
        );
        let mut a = worked_example();
        a[0][0] = f32::INFINITY;
        assert!(project_cell(&a, &SEARCH_PRIMITIVES).is_err());
    }

    #[test]
    fn steps_are_recovered_from_row_counts() {
        let found: Vec<_> = [0, 1, 2, 5, 9, 13, 14, 20]
            .map(steps_for_rows)
            .into_iter()
            .collect();
        assert_eq!(
            found,
            [
                None,
                None,
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(4),
                Some(5)
            ]
        );
    }

    #[test]
    fn frobenius_distance_pads_mismatched_shapes_with_zeros() {
        let a = vec![vec![3.0_f32, 0.0], vec![0.0, 4.0]];
        assert_eq!(frobenius_distance(&a, &[vec![3.0]]), 4.0);
        assert_eq!(frobenius_distance(&[], &a), 5.0);
    }
}
