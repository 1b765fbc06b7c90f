use super::*;

#[test]
fn builtins_are_valid_and_match_the_darts_file() {
    for name in RnnGenotype::builtin_names() {
        RnnGenotype::builtin(name).unwrap().validate().unwrap();
    }
    let v2 = RnnGenotype::builtin("DARTS_V2").unwrap();
    assert_eq!(
        v2.to_reference_text(),
        "Genotype_rnn(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), \
             ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))"
    );
    assert_eq!(RnnGenotype::builtin("darts").unwrap(), v2);
    let enas = RnnGenotype::builtin("enas").unwrap();
    assert_eq!(enas.recurrent.len(), 11);
    assert!(enas
        .to_reference_text()
        .ends_with("concat=[2, 5, 6, 9, 10, 11])"));
    assert!(RnnGenotype::builtin("nasnet").is_err());
}

#[test]
fn text_and_json_round_trip() {
    for name in ["DARTS_V1", "ENAS"] {
        let genotype = RnnGenotype::builtin(name).unwrap();
        let text = genotype.to_reference_text();
        assert_eq!(text.parse::<RnnGenotype>().unwrap(), genotype);
        let back: RnnGenotype = serde_json::from_str(&genotype.to_json()).unwrap();
        assert_eq!(back, genotype);
    }
}

#[test]
fn darts_spelling_and_positional_arguments_parse() {
    let text = "Genotype(\n  recurrent = [\n    ('tanh', 0),\n    (\"relu\", 1), # c\n  ],\n  \
                    concat = [2, 1],\n)";
    let genotype: RnnGenotype = text.parse().unwrap();
    assert_eq!(genotype.recurrent[1], RnnGene::new(RnnOp::Relu, 1));
    assert_eq!(genotype.concat, vec![2, 1]);
    let positional: RnnGenotype = "Genotype_rnn([('identity', 0)], range(2))".parse().unwrap();
    assert_eq!(positional.concat, vec![0, 1]);
}

#[test]
fn bad_text_and_bad_cells_are_explained() {
    let error = "Genotype_rnn(recurrent=[('relu', 0)], concat=range(1, 2)"
        .parse::<RnnGenotype>()
        .unwrap_err();
    assert!(error.message.contains("expected"), "{error}");
    let error = "Genotype_rnn(recurrent=[('gelu', 0)], concat=[1])"
        .parse::<RnnGenotype>()
        .unwrap_err();
    assert!(error.to_string().contains("gelu"), "{error}");
    assert_eq!(error.column, 26);
    let bad = RnnGenotype {
        recurrent: vec![RnnGene::new(RnnOp::Relu, 0), RnnGene::new(RnnOp::Tanh, 2)],
        concat: vec![1, 2],
    };
    assert!(matches!(
        bad.validate(),
        Err(RnnValidationError::SourceOutOfRange { node: 2, .. })
    ));
    let bad = RnnGenotype {
        recurrent: vec![RnnGene::new(RnnOp::Relu, 0)],
        concat: vec![0],
    };
    assert!(bad.validate().is_err());
}

#[test]
fn files_load_in_either_form() {
    let dir = tempfile::tempdir().unwrap();
    let genotype = RnnGenotype::builtin("DARTS_V1").unwrap();
    let json = dir.path().join("g.json");
    genotype.save_json(&json).unwrap();
    assert_eq!(RnnGenotype::load(&json).unwrap(), genotype);
    let text = dir.path().join("genotype.txt");
    std::fs::write(&text, genotype.to_reference_text()).unwrap();
    assert_eq!(RnnGenotype::load(&text).unwrap(), genotype);
    std::fs::write(&text, "Genotype_rnn(recurrent=[('relu', 1)], concat=[1])").unwrap();
    let error = RnnGenotype::load(&text).unwrap_err().to_string();
    assert!(error.contains("genotype.txt"), "{error}");
}

#[test]
fn field_errors_name_the_recurrent_fields() {
    let error = "Genotype_rnn(recurrents=[])"
        .parse::<RnnGenotype>()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1, column 14: unknown field `recurrents` (expected recurrent or concat)"
    );
    let error = "Genotype_rnn([('identity', 0)], range(2), [])"
        .parse::<RnnGenotype>()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1, column 43: expected `)` after two fields, found `[`"
    );
    let error = "Genotype_rnn(recurrent=[])"
        .parse::<RnnGenotype>()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1, column 26: missing field `concat`"
    );
}
