//! `prime plot cell` end to end: the real binary draws the built-in genotypes' cells, a
//! genotype file's and a run directory's, as SVG and PNG.

use prime_core::genotype::{Genotype, RnnGenotype};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prime(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime"))
        .args(args)
        .output()
        .expect("the prime binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// The pictures of a run are kept under the target directory so that they can be looked at.
fn output_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plot_cell")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height of a PNG file, from its header.
fn png_size(file: &Path) -> (u32, u32) {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        file.display()
    );
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Runs `prime plot cell` and checks the files it names: an SVG holding every label (the
/// operation of each gene as an edge label) and a non-trivial PNG.
fn plot_and_check(args: &[&str], cells: &[(&str, Vec<&str>)], stem: &Path) {
    let out = prime(args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
    let mut expected = Vec::new();
    for (cell, operations) in cells {
        let svg_path = PathBuf::from(format!("{}_{cell}.svg", stem.display()));
        let png_path = PathBuf::from(format!("{}_{cell}.png", stem.display()));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        for operation in operations {
            let label = format!(">{operation}</text>");
            assert_eq!(
                svg.matches(&label).count(),
                operations
                    .iter()
                    .filter(|other| *other == operation)
                    .count(),
                "{}: edges labelled {operation}",
                svg_path.display()
            );
        }
        let (width, height) = png_size(&png_path);
        assert!(width > 400 && height > 150, "{width}x{height}");
        expected.extend([svg_path, png_path]);
    }
    assert_eq!(listed, expected);
}

#[test]
fn the_four_builtin_convolutional_genotypes_are_drawn_with_every_operation() {
    let dir = output_dir("cnn");
    for name in ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"] {
        let genotype = Genotype::builtin(name).unwrap();
        let stem = dir.join(name);
        let names = |genes: &[prime_core::genotype::Gene]| {
            genes.iter().map(|gene| gene.op.name()).collect::<Vec<_>>()
        };
        plot_and_check(
            &["plot", "cell", name, "--out", path(&stem)],
            &[
                ("normal", names(&genotype.normal)),
                ("reduce", names(&genotype.reduce)),
            ],
            &stem,
        );
        let svg = std::fs::read_to_string(format!("{}_normal.svg", stem.display())).unwrap();
        for input in ["k-2", "k-1"] {
            assert!(
                svg.contains(&format!(">{input}</tspan>")),
                "{name}: c_{{{input}}}"
            );
        }
    }
}

#[test]
fn the_recurrent_builtins_are_drawn_with_every_operation() {
    let dir = output_dir("rnn");
    for name in ["DARTS_V1", "DARTS_V2", "ENAS"] {
        let genotype = RnnGenotype::builtin(name).unwrap();
        let stem = dir.join(name);
        let operations = genotype
            .recurrent
            .iter()
            .map(|gene| gene.op.name())
            .collect();
        plot_and_check(
            &["plot", "cell", name, "--rnn", "--out", path(&stem)],
            &[("recurrent", operations)],
            &stem,
        );
    }
}

#[test]
fn genotype_files_and_run_directories_are_read_and_the_kind_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("search-run");
    std::fs::create_dir(&run).unwrap();
    let amoeba = Genotype::builtin("AmoebaNet").unwrap();
    std::fs::write(run.join("genotype.txt"), amoeba.to_reference_text()).unwrap();
    let out = prime(&["plot", "cell", path(&run), "--format", "svg"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(run.join("figures/cell_reduce.svg")).unwrap();
    assert!(svg.contains(">conv_7x1_1x7</text>"), "{svg}");

    let file = dir.path().join("enas.json");
    RnnGenotype::builtin("ENAS")
        .unwrap()
        .save_json(&file)
        .unwrap();
    let stem = dir.path().join("enas");
    let out = prime(&[
        "plot",
        "cell",
        path(&file),
        "--out",
        path(&stem),
        "--format",
        "png",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(png_size(&dir.path().join("enas_recurrent.png")).0 > 1000);
    assert!(!dir.path().join("enas_recurrent.svg").exists());
}

#[test]
fn an_unknown_genotype_names_both_kinds() {
    let out = prime(&["plot", "cell", "no-such-cell"]);
    assert!(!out.status.success());
    let message = text(&out.stderr);
    assert!(message.contains("nor a recurrent one"), "{message}");
    assert!(message.contains("AmoebaNet"), "{message}");
}
