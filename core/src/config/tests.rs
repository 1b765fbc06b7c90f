use super::*;

#[test]
fn minimal_file_gets_the_paper_defaults() {
    let config = SearchConfig::from_toml("version = 1\n", "t.toml", &[]).unwrap();
    assert_eq!(config, SearchConfig::default());
    assert_eq!(config.data.batch_size, 64);
    assert_eq!(config.weights.lr_min, 0.001);
}

#[test]
fn overrides_set_nested_values_with_types() {
    let overrides = vec![
        "data.batch_size=16".to_string(),
        "arch.activation=crb".to_string(),
        "seed = 101".to_string(),
        "data.dataset=\"cifar100\"".to_string(),
    ];
    let config = SearchConfig::from_toml("version = 1\n", "t.toml", &overrides).unwrap();
    assert_eq!(config.data.batch_size, 16);
    assert_eq!(config.arch.activation, Activation::Crb);
    assert_eq!(config.seed, 101);
    assert_eq!(config.data.dataset, ImageDataset::Cifar100);
}

#[test]
fn unknown_keys_and_bad_values_name_the_place() {
    let error = SearchConfig::from_toml("version = 1\n[data]\nbatchsize = 3\n", "a.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("a.toml"), "{error}");
    assert!(error.contains("batchsize"), "{error}");
    assert!(error.contains("line 3"), "{error}");
    let error =
        SearchConfig::from_toml("version = 1\n[data]\ntrain_portion = 1.5\n", "b.toml", &[])
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("b.toml:3: field `data.train_portion`"),
        "{error}"
    );
    let error = SearchConfig::from_toml("version = 2\n", "c.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("field `version`"), "{error}");
    let error = SearchConfig::from_toml("version = 1\n", "d.toml", &["nokey".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected key=value"), "{error}");
}

fn error_of(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
    SearchConfig::from_toml(text, "t.toml", &overrides)
        .unwrap_err()
        .to_string()
}

#[test]
fn numbers_out_of_range_name_file_line_and_field() {
    let cases = [
        (
            "epochs = 4294967295",
            "t.toml:2: field `epochs`: must be between 1 and 10000",
        ),
        (
            "[data]\nbatch_size = 4294967295",
            "t.toml:3: field `data.batch_size`",
        ),
        (
            "[data]\nprefetch = 100000",
            "t.toml:3: field `data.prefetch`",
        ),
        (
            "[network]\ninit_channels = 4096",
            "t.toml:3: field `network.init_channels`",
        ),
        (
            "[network]\nlayers = 4294967295",
            "t.toml:3: field `network.layers`",
        ),
        ("[network]\nsteps = 1000", "t.toml:3: field `network.steps`"),
        (
            "[weights]\ngrad_clip = inf",
            "t.toml:3: field `weights.grad_clip`",
        ),
        (
            "[weights]\nlr = 0.1\nlr_min = 0.5",
            "t.toml:4: field `weights.lr_min`",
        ),
        ("[arch]\nbeta2 = 1.0", "t.toml:3: field `arch.beta2`"),
        (
            "[arch]\nweight_decay = -1.0",
            "t.toml:3: field `arch.weight_decay`",
        ),
        (
            "[schedule]\nratio = 4294967295",
            "t.toml:3: field `schedule.ratio`",
        ),
        (
            "[regularizer]\nrho = nan",
            "t.toml:3: field `regularizer.rho`",
        ),
        (
            "[checkpoint]\nevery_epochs = 99999",
            "t.toml:3: field `checkpoint.every_epochs`",
        ),
        (
            "[speed]\nread_back_every = 0",
            "t.toml:3: field `speed.read_back_every`",
        ),
    ];
    for (body, expected) in cases {
        let error = error_of(&format!("version = 1\n{body}\n"), &[]);
        assert!(error.contains(expected), "{body}: {error}");
    }
    // A value set by `--set` has no line in the file.
    let error = error_of("version = 1\nepochs = 3\n", &["epochs=0"]);
    assert!(
        error.starts_with("t.toml (with --set overrides): field `epochs`"),
        "{error}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_field() {
    let error = error_of("version = 1\n[data]\nbatch_size = -1\n", &[]);
    assert!(error.contains("field `data.batch_size`"), "{error}");
    assert!(error.contains("line 3"), "{error}");
    let error = error_of("version = 1\nepochs = 4294967296\n", &[]);
    assert!(error.contains("t.toml: field `epochs`"), "{error}");
}

#[test]
fn the_method_is_a_preset_name_or_custom() {
    let error = error_of("version = 1\nmethod = \"nosuch\"\n", &[]);
    assert!(
        error.contains("t.toml:2: field `method`: unknown method `nosuch`"),
        "{error}"
    );
    assert!(
        error.contains("darts-prime") && error.contains("`custom`"),
        "{error}"
    );
    let custom = SearchConfig::from_toml("version = 1\nmethod = \"custom\"\n", "c", &[]);
    assert_eq!(custom.unwrap().method, CUSTOM_METHOD);
}

#[test]
fn dynamic_split_uses_the_schedule_ratio() {
    let mut config = SearchConfig::default();
    config.data.dynamic_split = true;
    config.schedule.ratio = 10;
    let split = (config.weight_portion() * 50_000.0).floor() as usize;
    assert_eq!(split, 45_454);
}

#[test]
fn config_round_trips_through_toml() {
    let mut config = SearchConfig::default();
    config.data.limit = Some(500);
    let text = config.to_toml().unwrap();
    assert_eq!(SearchConfig::from_toml(&text, "x", &[]).unwrap(), config);
}

#[test]
fn a_file_states_its_version_itself() {
    let error = error_of("epochs = 3\n", &[]);
    assert!(
        error.contains("t.toml") && error.contains("missing field `version`"),
        "{error}"
    );
    let error = error_of("epochs = 3\n", &["seed=4"]);
    assert!(error.contains("missing field `version`"), "{error}");
}

#[test]
fn search_precision_is_float32_unless_set_and_only_a_set_value_writes_the_speed_table() {
    let config = SearchConfig::default();
    assert_eq!(config.speed.search_precision, SearchPrecision::Float32);
    assert!(!config.to_toml().unwrap().contains("[speed]"));
    let bf16 = SearchConfig::from_overrides(&["speed.search_precision=bf16".to_string()]).unwrap();
    assert_eq!(bf16.speed.search_precision, SearchPrecision::Bf16);
    let text = bf16.to_toml().unwrap();
    assert!(text.contains("[speed]\n") && text.contains("search_precision = \"bf16\""));
    assert_eq!(SearchConfig::from_toml(&text, "x", &[]).unwrap(), bf16);
    let error = error_of("version = 1\n[speed]\nsearch_precision = \"fp8\"\n", &[]);
    assert!(
        error.contains("t.toml") && error.contains("speed.search_precision"),
        "{error}"
    );
    assert!(
        error.contains("float32") && error.contains("bf16"),
        "{error}"
    );
}
