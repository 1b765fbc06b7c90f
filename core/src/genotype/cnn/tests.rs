use super::*;

fn darts_v2_reference_text() -> &'static str {
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), \
         ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), \
         ('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), \
         ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), \
         ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], \
         reduce_concat=range(2, 6))"
}

#[test]
fn writer_produces_the_reference_repr() {
    let genotype = Genotype::builtin("DARTS_V2").unwrap();
    assert_eq!(genotype.to_reference_text(), darts_v2_reference_text());
    assert_eq!(genotype.to_string(), darts_v2_reference_text());
}

#[test]
fn non_contiguous_concat_is_written_as_a_list() {
    let text = Genotype::builtin("AmoebaNet").unwrap().to_reference_text();
    assert!(text.contains("normal_concat=range(4, 7)"), "{text}");
    assert!(text.contains("reduce_concat=[3, 4, 6]"), "{text}");
    assert!(text.contains("('conv_7x1_1x7', 0)"), "{text}");
}

#[test]
fn every_builtin_is_valid_and_round_trips_through_text_and_json() {
    for name in Genotype::builtin_names() {
        let genotype = Genotype::builtin(name).unwrap();
        genotype.validate().unwrap();
        let text = genotype.to_reference_text();
        assert_eq!(
            Genotype::from_reference_text(&text).unwrap(),
            genotype,
            "{name}"
        );
        let json = genotype.to_json();
        assert_eq!(serde_json::from_str::<Genotype>(&json).unwrap(), genotype);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::to_value(&genotype).unwrap()
        );
    }
}

#[test]
fn builtins_match_the_original_repository() {
    let nasnet = Genotype::builtin("nasnet").unwrap();
    assert_eq!(nasnet.normal.len(), 10);
    assert_eq!(nasnet.normal_concat, [2, 3, 4, 5, 6]);
    assert_eq!(nasnet.reduce_concat, [4, 5, 6]);
    assert_eq!(nasnet.reduce[1], Gene::new(CnnOp::SepConv7x7, 0));
    assert_eq!(nasnet.reduce[6], Gene::new(CnnOp::SkipConnect, 3));
    let amoeba = Genotype::builtin("AMOEBANET").unwrap();
    assert_eq!(amoeba.normal_concat, [4, 5, 6]);
    assert_eq!(amoeba.reduce_concat, [3, 4, 6]);
    assert_eq!(amoeba.reduce[9], Gene::new(CnnOp::SepConv3x3, 5));
    let v1 = Genotype::builtin("darts_v1").unwrap();
    assert_eq!(v1.reduce[7], Gene::new(CnnOp::AvgPool3x3, 0));
    assert_eq!(
        Genotype::builtin("darts").unwrap(),
        Genotype::builtin("DARTS_V2").unwrap()
    );
    assert_ne!(v1, Genotype::builtin("DARTS_V2").unwrap());
}

#[test]
fn unknown_builtin_lists_the_names() {
    let message = Genotype::builtin("ENAS").unwrap_err().to_string();
    assert!(message.contains("`ENAS`"), "{message}");
    for name in Genotype::builtin_names() {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn json_form_is_exact_and_round_trips() {
    let genotype = Genotype {
        normal: vec![
            Gene::new(CnnOp::SepConv3x3, 1),
            Gene::new(CnnOp::SkipConnect, 0),
        ],
        normal_concat: vec![2],
        reduce: vec![Gene::new(CnnOp::MaxPool3x3, 0), Gene::new(CnnOp::None, 1)],
        reduce_concat: vec![2],
    };
    let json = genotype.to_json();
    assert_eq!(
        json,
        r#"{"normal": [["sep_conv_3x3", 1], ["skip_connect", 0]], "normal_concat": [2], "reduce": [["max_pool_3x3", 0], ["none", 1]], "reduce_concat": [2]}"#
    );
    assert_eq!(serde_json::from_str::<Genotype>(&json).unwrap(), genotype);
    let error = serde_json::from_str::<Genotype>(&json.replace("none", "nothing"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("`nothing`"), "{error}");
}

#[test]
fn reader_accepts_lists_double_quotes_whitespace_comments_and_trailing_commas() {
    let text = "Genotype(\n  normal = [\n    (\"sep_conv_5x5\", 1),\n    ('sep_conv_3x3', 0,),\n  ],\
                    # a comment\n  normal_concat = [2,],\n  reduce = [('max_pool_3x3',0),(\"skip_connect\" , 1)],\n  \
                    reduce_concat = range( 2 , 3 ),\n)\n";
    let genotype = Genotype::from_reference_text(text).unwrap();
    assert_eq!(
        genotype.normal,
        [
            Gene::new(CnnOp::SepConv5x5, 1),
            Gene::new(CnnOp::SepConv3x3, 0)
        ]
    );
    assert_eq!(genotype.normal_concat, [2]);
    assert_eq!(genotype.reduce_concat, [2]);
    genotype.validate().unwrap();
}

#[test]
fn reader_accepts_positional_fields_and_single_argument_range() {
    let text = "Genotype([('skip_connect', 0), ('skip_connect', 1)], range(2, 3), \
                    reduce=[('avg_pool_3x3', 1), ('sep_conv_7x7', 0)], reduce_concat=range(3))";
    let genotype: Genotype = text.parse().unwrap();
    assert_eq!(genotype.normal_concat, [2]);
    assert_eq!(genotype.reduce_concat, [0, 1, 2]);
    assert_eq!(genotype.reduce[1].op, CnnOp::SepConv7x7);
}

#[test]
fn parser_errors_carry_line_column_and_expectation() {
    let text = "Genotype(normal=[('sep_conv_3x3', 1)\n   ('sep_conv_3x3', 0)], normal_concat=range(2, 3), reduce=[], reduce_concat=[])";
    let error = Genotype::from_reference_text(text).unwrap_err();
    assert_eq!((error.line, error.column), (2, 4));
    assert!(error.message.contains("expected `,` or `]`"), "{error}");
    assert!(
        error.to_string().starts_with("line 2, column 4: "),
        "{error}"
    );

    let error = Genotype::from_reference_text("Genotype(normal=[]").unwrap_err();
    assert_eq!((error.line, error.column), (1, 19));
    assert!(error.message.contains("end of input"), "{error}");

    let error = Genotype::from_reference_text("genotype()").unwrap_err();
    assert_eq!((error.line, error.column), (1, 1));
    assert!(error.message.contains("`Genotype(`"), "{error}");

    let error = Genotype::from_reference_text(
        "Genotype(normal=[], normal_concat=[], reduce=[], reduce_concat=[]) extra",
    )
    .unwrap_err();
    assert!(error.message.contains("end of input"), "{error}");
    assert_eq!(error.column, 68);
}

#[test]
fn parser_names_an_unknown_op_at_its_position() {
    let text =
        "Genotype(normal=[\n  ('sep_conv_9x9', 1)], normal_concat=[], reduce=[], reduce_concat=[])";
    let error = Genotype::from_reference_text(text).unwrap_err();
    assert_eq!((error.line, error.column), (2, 4));
    assert!(error.message.contains("`sep_conv_9x9`"), "{error}");
    assert!(error.message.contains("dil_conv_5x5"), "{error}");
}

#[test]
fn parser_reports_missing_unknown_and_repeated_fields() {
    let missing = Genotype::from_reference_text("Genotype(normal=[], normal_concat=[], reduce=[])")
        .unwrap_err();
    assert!(
        missing.message.contains("missing field `reduce_concat`"),
        "{missing}"
    );
    let unknown = Genotype::from_reference_text("Genotype(normals=[])").unwrap_err();
    assert!(
        unknown.message.contains("unknown field `normals`"),
        "{unknown}"
    );
    assert_eq!(unknown.column, 10);
    let twice = Genotype::from_reference_text("Genotype(normal=[], normal=[])").unwrap_err();
    assert!(twice.message.contains("given twice"), "{twice}");
    let unterminated =
        Genotype::from_reference_text("Genotype(normal=[('skip_connect, 0)])").unwrap_err();
    assert!(
        unterminated.message.contains("unterminated"),
        "{unterminated}"
    );
}

#[test]
fn validation_rejects_bad_structure() {
    let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
    genotype.normal[2].source = 3;
    let error = genotype.validate().unwrap_err();
    assert!(
        matches!(
            error,
            ValidationError::SourceOutOfRange {
                cell: "normal",
                gene: 2,
                source_state: 3,
                node: 1,
                max_source: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("normal cell, gene 2"), "{error}");

    let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
    genotype.reduce.pop();
    assert!(matches!(
        genotype.validate(),
        Err(ValidationError::GeneCount {
            cell: "reduce",
            count: 7
        })
    ));

    let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
    genotype.reduce_concat = vec![2, 6];
    assert!(matches!(
        genotype.validate(),
        Err(ValidationError::ConcatOutOfRange {
            cell: "reduce",
            index: 6,
            max: 5
        })
    ));
    genotype.reduce_concat = vec![3, 3];
    assert!(matches!(
        genotype.validate(),
        Err(ValidationError::DuplicateConcat { index: 3, .. })
    ));
    genotype.reduce_concat = vec![];
    assert!(matches!(
        genotype.validate(),
        Err(ValidationError::EmptyConcat { cell: "reduce" })
    ));
}

#[test]
fn load_detects_the_format_and_names_the_file_in_errors() {
    let directory = tempfile::tempdir().unwrap();
    let genotype = Genotype::builtin("NASNet").unwrap();

    let json_path = directory.path().join("genotype.json");
    genotype.save_json(&json_path).unwrap();
    assert_eq!(Genotype::load(&json_path).unwrap(), genotype);

    let text_path = directory.path().join("genotype.txt");
    std::fs::write(&text_path, format!("{genotype}\n")).unwrap();
    assert_eq!(Genotype::load(&text_path).unwrap(), genotype);

    let bad_text = directory.path().join("bad.txt");
    std::fs::write(&bad_text, "Genotype(normal=[('conv_1x1', 0)])").unwrap();
    let message = Genotype::load(&bad_text).unwrap_err().to_string();
    assert!(
        message.contains("bad.txt") && message.contains("`conv_1x1`"),
        "{message}"
    );
    assert!(message.contains("line 1, column 19"), "{message}");

    let bad_json = directory.path().join("bad.json");
    std::fs::write(&bad_json, r#"{"normal": [["skip_connect"]]}"#).unwrap();
    let message = Genotype::load(&bad_json).unwrap_err().to_string();
    assert!(
        message.contains("bad.json") && message.contains("line 1"),
        "{message}"
    );

    let invalid = directory.path().join("invalid.json");
    let mut broken = genotype.clone();
    broken.normal_concat = vec![9];
    broken.save_json(&invalid).unwrap();
    let message = Genotype::load(&invalid).unwrap_err().to_string();
    assert!(
        message.contains("invalid.json") && message.contains("normal_concat contains 9"),
        "{message}"
    );

    let missing = directory.path().join("missing.txt");
    let message = Genotype::load(&missing).unwrap_err().to_string();
    assert!(message.contains("missing.txt"), "{message}");
}

#[test]
fn state_labels_name_inputs_and_nodes() {
    assert_eq!(state_label(0), "c_{k-2}");
    assert_eq!(state_label(1), "c_{k-1}");
    assert_eq!(state_label(5), "node 3");
}
