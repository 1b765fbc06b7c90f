use super::*;
use crate::config::{LayeredConfig, RegularizerKind, ScheduleKind};
use crate::genotype::RnnGenotype;
use crate::presets::method_config;
use crate::primitives::Activation;

#[test]
fn defaults_are_the_reference_scripts() {
    let search = RnnSearchConfig::from_toml("version = 1\n", "s.toml", &[]).unwrap();
    assert_eq!(search, RnnSearchConfig::default());
    assert_eq!((search.seed, search.network.nhid), (3, 300));
    assert_eq!(search.schedule.ewma, 1.0);
    assert_eq!(search.arch.beta1, 0.9);
    let eval = RnnEvalConfig::from_toml("version = 1\n", "e.toml", &[]).unwrap();
    assert_eq!(eval, RnnEvalConfig::default());
    assert_eq!((eval.seed, eval.epochs, eval.convergence), (1267, 1200, 20));
    assert_eq!((eval.network.nhid, eval.network.dropoute), (850, 0.1));
    let partial =
        RnnEvalConfig::from_toml("version = 1\n[network]\nnhid = 16\n", "p", &[]).unwrap();
    assert_eq!(partial.network.nhid, 16);
}

#[test]
fn overrides_and_errors_name_the_field() {
    let overrides: Vec<String> = ["data.bptt=7", "network.nhid=12", "data.limit=500"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = RnnSearchConfig::from_overrides(&overrides).unwrap();
    assert_eq!(
        (config.data.bptt, config.network.nhid, config.data.limit),
        (7, 12, Some(500))
    );
    let error = RnnSearchConfig::from_overrides(&["network.dropout=1.5".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("field `network.dropout`"), "{error}");
    let error = RnnEvalConfig::from_toml("version = 1\n[data]\nbpt = 3\n", "x.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("x.toml") && error.contains("bpt"), "{error}");
    let error = RnnEvalConfig::from_overrides(&["oops".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected key=value"), "{error}");
}

#[test]
fn numbers_out_of_range_and_unknown_methods_name_file_line_and_field() {
    let search_error = |text: &str| {
        RnnSearchConfig::from_toml(text, "s.toml", &[])
            .unwrap_err()
            .to_string()
    };
    let error = search_error("version = 1\nmethod = \"nosuch\"\n");
    assert!(
        error.contains("s.toml:2: field `method`: unknown method `nosuch`"),
        "{error}"
    );
    let error = search_error("version = 1\n[network]\nnhid = 100000\n");
    assert!(error.contains("s.toml:3: field `network.nhid`"), "{error}");
    let error = search_error("version = 1\n[data]\nbptt = 4294967295\n");
    assert!(error.contains("s.toml:3: field `data.bptt`"), "{error}");
    let error = search_error("version = 1\n[weights]\nar_alpha = -1.0\n");
    assert!(error.contains("field `weights.ar_alpha`"), "{error}");
    let error = search_error("version = 1\n[weights]\ngrad_clip = inf\n");
    assert!(error.contains("field `weights.grad_clip`"), "{error}");
    let eval_error = |text: &str| {
        RnnEvalConfig::from_toml(text, "e.toml", &[])
            .unwrap_err()
            .to_string()
    };
    let error = eval_error("version = 1\nepochs = 4294967295\n");
    assert!(error.contains("e.toml:2: field `epochs`"), "{error}");
    let error = eval_error("version = 1\n[weights]\nnonmono = 4294967295\n");
    assert!(
        error.contains("e.toml:3: field `weights.nonmono`"),
        "{error}"
    );
    let error = eval_error("version = 1\n[data]\ntest_batch_size = 0\n");
    assert!(
        error.contains("e.toml:3: field `data.test_batch_size`"),
        "{error}"
    );
    let error = eval_error("version = 1\n[weights]\nasgd_at_epoch = 10000\n");
    assert!(
        error.contains("e.toml:3: field `weights.asgd_at_epoch`"),
        "{error}"
    );
    let forced = RnnEvalConfig::from_toml(
        "version = 1\n",
        "e.toml",
        &["weights.asgd_at_epoch=3".into()],
    );
    assert_eq!(forced.unwrap().weights.asgd_at_epoch, Some(3));
}

#[test]
fn method_presets_map_onto_the_recurrent_search() {
    let prime = RnnSearchConfig::from_method(&method_config("darts-prime", &[]).unwrap()).unwrap();
    assert_eq!(prime.method, "darts-prime");
    assert_eq!(prime.schedule.kind, ScheduleKind::Fimt);
    assert_eq!((prime.schedule.ratio, prime.schedule.ewma), (10, 1.0));
    assert_eq!(
        (prime.regularizer.kind, prime.regularizer.rho),
        (RegularizerKind::Prox, 0.1)
    );
    let fixed = method_config("darts-prime", &["compat=fixed".to_string()]).unwrap();
    let fixed = RnnSearchConfig::from_method(&fixed).unwrap();
    assert_eq!((fixed.schedule.ewma, fixed.regularizer.rho), (0.2, 1.0));
    let crb = RnnSearchConfig::from_method(&method_config("crb", &[]).unwrap()).unwrap();
    assert_eq!(
        (crb.arch.activation, crb.arch.weight_decay),
        (Activation::Crb, 0.0)
    );
    let error = RnnSearchConfig::from_method(&method_config("admm", &[]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains("ADMM"), "{error}");
    let small = prime.with_overrides(&["epochs=2".to_string()]).unwrap();
    assert_eq!((small.epochs, small.method.as_str()), (2, "darts-prime"));
}

#[test]
fn configs_round_trip_and_bad_genotypes_are_rejected() {
    let eval = RnnEvalConfig::for_genotype(
        RnnGenotype::builtin("ENAS").unwrap(),
        "ENAS",
        &["epochs=3".to_string()],
    )
    .unwrap();
    assert_eq!(
        RnnEvalConfig::from_toml(&eval.to_toml().unwrap(), "x", &[]).unwrap(),
        eval
    );
    let mut bad = RnnEvalConfig::default();
    bad.genotype.concat = vec![0];
    let error = bad.validate("b").unwrap_err().to_string();
    assert!(error.contains("field `genotype`"), "{error}");
    let search = RnnSearchConfig::default();
    assert_eq!(
        RnnSearchConfig::from_toml(&search.to_toml().unwrap(), "y", &[]).unwrap(),
        search
    );
}

#[test]
fn the_search_config_text_is_unchanged_so_stored_runs_still_resume() {
    // Run directories hash config.toml: this text must stay byte for byte.
    let expected = "\
         version = 1\n\
         method = \"darts\"\n\
         seed = 3\n\
         compat = \"reference\"\n\
         epochs = 50\n\
         \n\
         [data]\n\
         batch_size = 256\n\
         eval_batch_size = 10\n\
         bptt = 35\n\
         \n\
         [network]\n\
         nhid = 300\n\
         dropout = 0.75\n\
         dropouth = 0.25\n\
         dropoutx = 0.75\n\
         dropouti = 0.2\n\
         dropoute = 0.0\n\
         \n\
         [weights]\n\
         lr = 20.0\n\
         weight_decay = 0.0000005\n\
         grad_clip = 0.25\n\
         ar_alpha = 0.0\n\
         tar_beta = 0.001\n\
         \n\
         [arch]\n\
         activation = \"softmax\"\n\
         lr = 0.003\n\
         beta1 = 0.9\n\
         beta2 = 0.999\n\
         eps = 0.00000001\n\
         weight_decay = 0.001\n\
         \n\
         [schedule]\n\
         kind = \"alternate\"\n\
         ratio = 1\n\
         h0 = 1.0\n\
         hi = 1.05\n\
         ewma = 1.0\n\
         \n\
         [regularizer]\n\
         kind = \"none\"\n\
         rho = 0.1\n\
         \n\
         [checkpoint]\n\
         every_epochs = 1\n\
";
    assert_eq!(RnnSearchConfig::default().to_toml().unwrap(), expected);
}

#[test]
fn a_partial_table_takes_the_recurrent_configs_own_defaults() {
    let search =
        RnnSearchConfig::from_toml("version = 1\n[schedule]\nratio = 4\n", "s.toml", &[]).unwrap();
    assert_eq!((search.schedule.ratio, search.schedule.ewma), (4, 1.0));
    let search = RnnSearchConfig::from_overrides(&["schedule.kind=fimt".to_string()]).unwrap();
    assert_eq!(search.schedule.ewma, 1.0);
    let eval =
        RnnEvalConfig::from_toml("version = 1\n[network]\nnhid = 16\n", "e.toml", &[]).unwrap();
    assert_eq!(
        eval.network,
        RnnNetworkConfig {
            nhid: 16,
            ..RnnNetworkConfig::evaluation()
        }
    );
}

#[test]
fn the_evaluation_read_back_interval_is_checked_and_written_only_when_set() {
    let config = RnnEvalConfig::default();
    assert_eq!(config.speed.read_back_every, 1);
    assert!(!config.to_toml().unwrap().contains("[speed]"));
    let batched = config
        .with_overrides(&["speed.read_back_every=50".to_string()])
        .unwrap();
    assert!(batched.to_toml().unwrap().contains("read_back_every = 50"));
    let error = config
        .with_overrides(&["speed.read_back_every=0".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("speed.read_back_every"), "{error}");
}

#[test]
fn the_search_read_back_interval_is_checked_and_written_only_when_set() {
    let config = RnnSearchConfig::default();
    assert_eq!(config.speed.read_back_every, 1);
    assert!(!config.to_toml().unwrap().contains("[speed]"));
    assert!(config
        .to_annotated_toml()
        .unwrap()
        .contains("[speed]\n# Weight steps whose records are read back"));
    let batched = config
        .with_overrides(&["speed.read_back_every=50".to_string()])
        .unwrap();
    assert!(batched
        .to_toml()
        .unwrap()
        .contains("[speed]\nread_back_every = 50"));
    let error = config
        .with_overrides(&["speed.read_back_every=10001".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("speed.read_back_every"), "{error}");
}

#[test]
fn the_key_tables_list_every_key_once_and_nothing_else() {
    use crate::config::key_checks::assert_lists_every_key;
    use crate::config::rnn_keys::{RNN_EVAL_KEYS, RNN_SEARCH_KEYS};
    let mut search = RnnSearchConfig::default();
    search.data.limit = Some(100);
    search.speed.read_back_every = 2;
    assert_lists_every_key(&search, RNN_SEARCH_KEYS);
    let mut eval = RnnEvalConfig::default();
    eval.weights.asgd_at_epoch = Some(3);
    eval.speed.read_back_every = 2;
    assert_lists_every_key(&eval, RNN_EVAL_KEYS);
}

#[test]
fn validation_enforces_exactly_the_listed_ranges() {
    use crate::config::key_checks::assert_ranges_enforced;
    use crate::config::rnn_keys::{RNN_EVAL_KEYS, RNN_SEARCH_KEYS};
    assert_ranges_enforced::<RnnSearchConfig>(RNN_SEARCH_KEYS, |_| Vec::new());
    assert_ranges_enforced::<RnnEvalConfig>(RNN_EVAL_KEYS, |_| Vec::new());
}

#[test]
fn the_annotated_forms_comment_every_key_and_read_back_unchanged() {
    use crate::config::key_checks::assert_annotated_reads_back;
    for name in crate::methods::METHOD_NAMES {
        let Ok(config) = RnnSearchConfig::from_method(&method_config(name, &[]).unwrap()) else {
            continue;
        };
        assert_annotated_reads_back(&config, &config.to_annotated_toml().unwrap());
    }
    let search = RnnSearchConfig::default().to_annotated_toml().unwrap();
    assert!(search.contains("# limit is unset. Use only the first N training tokens"));
    let mut eval = RnnEvalConfig::default();
    assert_annotated_reads_back(&eval, &eval.to_annotated_toml().unwrap());
    assert!(eval
        .to_annotated_toml()
        .unwrap()
        .contains("# asgd_at_epoch is unset."));
    eval.weights.asgd_at_epoch = Some(4);
    eval.genotype = RnnGenotype::builtin("ENAS").unwrap();
    let text = eval.to_annotated_toml().unwrap();
    assert_annotated_reads_back(&eval, &text);
    assert!(
        text.contains("# Activation and input state of each node"),
        "{text}"
    );
}
