//! `prime plot` end to end: the real binary draws the paper's figures from small run
//! directories written here in the formats of a search run (config.toml, metrics.jsonl,
//! alphas.jsonl).

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

/// The softmax primitives in alpha column order, with their figure colours.
const SOFTMAX_OPS: [(&str, &str); 8] = [
    ("none", "#404040"),
    ("max_pool_3x3", "#F3701B"),
    ("avg_pool_3x3", "#FDC38D"),
    ("skip_connect", "#959595"),
    ("sep_conv_3x3", "#B7D4EA"),
    ("sep_conv_5x5", "#6AAED6"),
    ("dil_conv_3x3", "#2E7EBC"),
    ("dil_conv_5x5", "#084A91"),
];

/// Iterations per epoch of the fabricated runs.
const STEPS_PER_EPOCH: u64 = 40;

/// A fabricated run: `epochs` epochs, `rows` edges per cell, `activation` softmax or crb,
/// with FIMT values (and an alpha step every 11th iteration) when `fimt` is set.
struct Run {
    dir: tempfile::TempDir,
    alpha_steps: Vec<f64>,
}

impl Run {
    fn write(epochs: u64, rows: usize, activation: &str, fimt: bool) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let schedule = if fimt { "fimt" } else { "alternate" };
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "version = 1\nmethod = \"custom\"\nepochs = {epochs}\n\n[arch]\n\
                 activation = \"{activation}\"\n\n[schedule]\nkind = \"{schedule}\"\n\
                 ratio = 10\newma = 0.2\n"
            ),
        )
        .unwrap();
        let ops = if activation == "crb" { 7 } else { 8 };
        let mut metrics = String::new();
        let mut alphas = vec![alpha_line(0, 0.0, rows, ops)];
        let mut alpha_steps = Vec::new();
        let mut threshold = 1.0f64;
        let mut ewma = -1.0f64;
        let mut step = 0;
        for epoch in 0..epochs {
            for index in 0..STEPS_PER_EPOCH {
                step += 1;
                let clock = epoch as f64 + (index + 1) as f64 / STEPS_PER_EPOCH as f64;
                let mut values = "\"lr\":0.025,\"loss\":1.5,\"acc\":40.0".to_string();
                if fimt {
                    let value = 20.0 * (-clock).exp() + 1.0 + 0.3 * ((step as f64) * 1.7).sin();
                    ewma = if ewma < 0.0 {
                        value
                    } else {
                        0.2 * value + 0.8 * ewma
                    };
                    values.push_str(&format!(
                        ",\"threshold\":{threshold},\"fimt\":{value},\"fimt_ewma\":{ewma}"
                    ));
                    threshold *= 1.05;
                }
                if step % 11 == 0 {
                    values.push_str(",\"alpha_step\":1.0,\"alpha_loss\":1.2");
                    alpha_steps.push(clock);
                }
                metrics.push_str(&format!(
                    "{{\"kind\":\"step\",\"epoch\":{epoch},\"step\":{step},\"clock\":{clock},\
                     \"values\":{{{values}}}}}\n"
                ));
                alphas.push(alpha_line(step, clock, rows, ops));
            }
            metrics.push_str(&format!(
                "{{\"kind\":\"epoch\",\"epoch\":{epoch},\"step\":{step},\"clock\":{},\
                 \"values\":{{\"valid_acc\":45.0}}}}\n",
                epoch + 1
            ));
        }
        metrics.push_str(&format!(
            "{{\"kind\":\"final\",\"epoch\":{epochs},\"step\":{step},\"clock\":{epochs},\
             \"values\":{{\"valid_acc\":50.0}}}}\n"
        ));
        std::fs::write(dir.path().join("metrics.jsonl"), metrics).unwrap();
        std::fs::write(dir.path().join("alphas.jsonl"), alphas.join("\n") + "\n").unwrap();
        Run { dir, alpha_steps }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn figures(&self) -> PathBuf {
        self.dir.path().join("figures")
    }
}

/// One alpha-history line: every edge's values drift apart from uniform with the clock.
fn alpha_line(step: u64, clock: f64, rows: usize, ops: usize) -> String {
    let cell = |offset: usize| -> String {
        let rows: Vec<String> = (0..rows)
            .map(|edge| {
                let raw: Vec<f64> = (0..ops)
                    .map(|op| (((edge + offset) * 7 + op * 3) % 11) as f64 / 10.0 - 0.5)
                    .map(|direction| direction * clock / 4.0)
                    .collect();
                let values: Vec<String> = if ops == 8 {
                    let total: f64 = raw.iter().map(|value| value.exp()).sum();
                    raw.iter()
                        .map(|value| (value.exp() / total).to_string())
                        .collect()
                } else {
                    raw.iter()
                        .map(|value| (0.5 + value).clamp(0.0, 1.0).to_string())
                        .collect()
                };
                format!("[{}]", values.join(","))
            })
            .collect();
        format!("[{}]", rows.join(","))
    };
    format!(
        "{{\"step\":{step},\"clock\":{clock},\"normal\":{},\"reduce\":{}}}",
        cell(0),
        cell(3)
    )
}

/// The text lines of an SVG (plotters writes each text on its own line).
fn svg_lines(file: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(file).unwrap();
    assert!(svg.starts_with("<svg"), "{} is not an SVG", file.display());
    svg.lines().map(str::to_string).collect()
}

fn count_lines(lines: &[String], predicate: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|line| predicate(line)).count()
}

/// Polylines stroked in `colour`: one per panel plus the legend swatch.
fn lines_in_colour(lines: &[String], colour: &str) -> usize {
    let stroke = format!("stroke=\"{colour}\"");
    count_lines(lines, |line| {
        line.starts_with("<polyline") && line.contains(&stroke)
    })
}

fn assert_png(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        file.display()
    );
    assert!(bytes.len() > 10_000, "{} is nearly empty", file.display());
}

#[test]
fn alphas_draws_every_edge_of_both_cells_without_none() {
    let run = Run::write(3, 14, "softmax", true);
    let out = prime(&["plot", "alphas", path(run.path())]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let figures = run.figures();
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    for (stem, title) in [
        ("alphas_normal", "Normal cell"),
        ("alphas_reduce", "Reduction cell"),
    ] {
        let svg = figures.join(format!("{stem}.svg"));
        let png = figures.join(format!("{stem}.png"));
        assert!(listed.contains(&path(&svg).to_string()));
        assert!(listed.contains(&path(&png).to_string()));
        assert_png(&png);
        let lines = svg_lines(&svg);
        assert_eq!(count_lines(&lines, |line| line.starts_with(title)), 1);
        assert_eq!(count_lines(&lines, |line| line.contains("→ node")), 14);
        for (source, node) in [("c_{k-2}", 0), ("c_{k-1}", 3), ("node 2", 3)] {
            let label = format!("{source} → node {node}");
            assert_eq!(count_lines(&lines, |line| line == label), 1, "{label}");
        }
        for (op, colour) in &SOFTMAX_OPS[1..] {
            assert_eq!(count_lines(&lines, |line| line == *op), 1, "legend {op}");
            assert_eq!(lines_in_colour(&lines, colour), 15, "series of {op}");
        }
        assert_eq!(count_lines(&lines, |line| line == "none"), 0);
        assert_eq!(lines_in_colour(&lines, SOFTMAX_OPS[0].1), 0);
    }
}

#[test]
fn alphas_with_none_draws_all_eight_ops_into_the_chosen_folder() {
    let run = Run::write(2, 14, "softmax", false);
    let out_dir = run.path().join("elsewhere");
    let out = prime(&[
        "plot",
        "alphas",
        path(run.path()),
        "--with-none",
        "--format",
        "svg",
        "--out",
        path(&out_dir),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!run.figures().exists());
    assert!(!out_dir.join("alphas_normal.png").exists());
    let lines = svg_lines(&out_dir.join("alphas_normal.svg"));
    for (op, colour) in SOFTMAX_OPS {
        assert_eq!(count_lines(&lines, |line| line == op), 1, "legend {op}");
        assert_eq!(lines_in_colour(&lines, colour), 15, "series of {op}");
    }
    assert!(out_dir.join("alphas_reduce.svg").exists());
}

#[test]
fn alphas_of_a_small_crb_cell_has_one_panel_per_edge() {
    // Two intermediate nodes: five edges (2 into node 0, 3 into node 1), seven CRB ops.
    let run = Run::write(1, 5, "crb", false);
    let out = prime(&["plot", "alphas", path(run.path()), "--format", "png"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_png(&run.figures().join("alphas_normal.png"));
    assert!(!run.figures().join("alphas_normal.svg").exists());
    let out = prime(&["plot", "alphas", path(run.path()), "--format", "svg"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = svg_lines(&run.figures().join("alphas_reduce.svg"));
    assert_eq!(count_lines(&lines, |line| line.contains("→ node")), 5);
    assert_eq!(count_lines(&lines, |line| line == "node 0 → node 1"), 1);
    assert!(lines.iter().any(|line| line.contains("(crb)")));
    for (op, colour) in &SOFTMAX_OPS[1..] {
        assert_eq!(lines_in_colour(&lines, colour), 6, "series of {op}");
    }
}

#[test]
fn schedule_draws_fimt_ewma_threshold_and_alpha_steps() {
    let run = Run::write(3, 14, "softmax", true);
    let out = prime(&["plot", "schedule", path(run.path())]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_png(&run.figures().join("schedule.png"));
    let lines = svg_lines(&run.figures().join("schedule.svg"));
    let title = format!(
        "FIMT schedule, epochs 0 to 3: {} alpha steps — custom",
        run.alpha_steps.len()
    );
    assert_eq!(count_lines(&lines, |line| line == title), 1, "{title}");
    for legend in ["FIMT", "FIMT EWMA (λ = 0.2)", "threshold h", "alpha step"] {
        assert_eq!(
            count_lines(&lines, |line| line == legend),
            1,
            "legend {legend}"
        );
    }
    assert_eq!(
        count_lines(&lines, |line| line == "alpha steps per epoch"),
        1
    );
}

#[test]
fn schedule_over_the_first_epoch_marks_its_alpha_steps() {
    let run = Run::write(3, 14, "softmax", true);
    let out = prime(&[
        "plot",
        "schedule",
        path(run.path()),
        "--from",
        "0",
        "--to",
        "1",
        "--format",
        "svg",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!run.figures().join("schedule.png").exists());
    let lines = svg_lines(&run.figures().join("schedule.svg"));
    let first_epoch = run
        .alpha_steps
        .iter()
        .filter(|clock| **clock <= 1.0)
        .count();
    assert!(first_epoch > 0);
    let title = format!("FIMT schedule, epochs 0 to 1: {first_epoch} alpha steps — custom");
    assert_eq!(count_lines(&lines, |line| line == title), 1, "{title}");
    assert_eq!(
        count_lines(&lines, |line| line == "alpha steps per epoch"),
        0
    );
}

#[test]
fn schedule_of_a_run_without_fimt_says_so() {
    let run = Run::write(2, 14, "softmax", false);
    let out = prime(&["plot", "schedule", path(run.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("this run did not use the FIMT schedule; no fimt values in metrics.jsonl"),
        "{stderr}"
    );
    assert!(!run.figures().join("schedule.svg").exists());
}

#[test]
fn bad_inputs_are_named() {
    let run = Run::write(2, 14, "softmax", true);
    let missing = run.path().join("no-such-run");
    let out = prime(&["plot", "alphas", path(&missing)]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-run"));

    let out = prime(&[
        "plot",
        "schedule",
        path(run.path()),
        "--from",
        "2",
        "--to",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--from"),
        "{}",
        text(&out.stderr)
    );
    let out = prime(&["plot", "schedule", path(run.path()), "--from", "-1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--from"),
        "{}",
        text(&out.stderr)
    );

    let alphas = run.path().join("alphas.jsonl");
    let mut body = std::fs::read_to_string(&alphas).unwrap();
    body.push_str("{\"step\":99,\"clock\":9.0,\"normal\":[[0.5]],\"reduce\":[[0.5]]}\n");
    std::fs::write(&alphas, body).unwrap();
    let out = prime(&["plot", "alphas", path(run.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let last_line = 2 * STEPS_PER_EPOCH + 2;
    assert!(
        stderr.contains(&format!("alphas.jsonl: line {last_line}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("`normal` has 1 rows, expected 14"),
        "{stderr}"
    );
}
