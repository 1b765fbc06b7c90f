use super::*;
use crate::genotype::{RNN_CRB_PRIMITIVES, RNN_EDGES, RNN_SEARCH_PRIMITIVES};
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
        Err(ProjectionError::RowCount {
            rows: 13,
            layout: EdgeLayout::Convolutional
        })
    );
    assert_eq!(
        project_cell(&[], &SEARCH_PRIMITIVES),
        Err(ProjectionError::RowCount {
            rows: 0,
            layout: EdgeLayout::Convolutional
        })
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
        .map(|rows| EdgeLayout::Convolutional.steps_for_rows(rows))
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

// The recurrent projection.

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
        Err(ProjectionError::RowCount {
            rows: 2,
            layout: EdgeLayout::Recurrent
        })
    ));
    assert!(matches!(
        project_rnn(&[vec![f32::NAN; 5]], &RNN_SEARCH_PRIMITIVES),
        Err(ProjectionError::NonFinite { .. })
    ));
    let distance = frobenius_distance(&rows, &projection.z);
    assert!((distance - (0.81f64 + 0.0001 + 0.0004 + 0.0009 + 0.9216).sqrt()).abs() < 1e-6);
}

#[test]
fn row_count_errors_state_the_valid_counts_of_their_layout() {
    let convolutional = project_cell(&[vec![0.5; 8]], &SEARCH_PRIMITIVES).unwrap_err();
    assert_eq!(
        convolutional.to_string(),
        "1 rows is not an edge count steps*(steps+3)/2 for any steps >= 1 (2, 5, 9, 14, 20, ...)"
    );
    let recurrent = project_rnn(&vec![vec![0.5; 5]; 2], &RNN_SEARCH_PRIMITIVES).unwrap_err();
    assert_eq!(
        recurrent.to_string(),
        "2 rows is not an edge count steps*(steps+1)/2 for any steps >= 1 (1, 3, 6, ..., 36)"
    );
}
