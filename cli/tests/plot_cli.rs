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

/// The softmax primitives in alpha column order, with their figure colours (Okabe–Ito).
const SOFTMAX_OPS: [(&str, &str); 8] = [
    ("none", "#999999"),
    ("max_pool_3x3", "#E69F00"),
    ("avg_pool_3x3", "#56B4E9"),
    ("skip_connect", "#CC79A7"),
    ("sep_conv_3x3", "#009E73"),
    ("sep_conv_5x5", "#0072B2"),
    ("dil_conv_3x3", "#D55E00"),
    ("dil_conv_5x5", "#000000"),
];

/// Iterations per epoch of the fabricated runs.
const STEPS_PER_EPOCH: u64 = 40;

/// The schedule of a fabricated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// FIMT values, their EWMA and the threshold, as a FIMT-scheduled search records them.
    Fimt,
    /// The FIMT and its EWMA without a threshold, as every other search records them.
    Constant,
    /// No FIMT values at all (not a search's metrics).
    NoFimt,
}

/// A fabricated run: `epochs` epochs, `rows` edges per cell, `activation` softmax or crb,
/// an alpha step every 11th iteration.
struct Run {
    dir: tempfile::TempDir,
    alpha_steps: Vec<f64>,
}

impl Run {
    fn write(epochs: u64, rows: usize, activation: &str, schedule: Schedule) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let fimt = schedule != Schedule::NoFimt;
        let schedule = match schedule {
            Schedule::Fimt => "fimt",
            Schedule::Constant => "constant",
            Schedule::NoFimt => "alternate",
        };
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "version = 1\nmethod = \"custom\"\nepochs = {epochs}\n\n[arch]\n\
                 activation = \"{activation}\"\n\n[schedule]\nkind = \"{schedule}\"\n\
                 ratio = 11\newma = 0.2\n"
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
                    values.push_str(&format!(",\"fimt\":{value},\"fimt_ewma\":{ewma}"));
                    if schedule == "fimt" {
                        values.push_str(&format!(",\"threshold\":{threshold}"));
                        threshold *= 1.05;
                    }
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

/// Elements stroked or filled in `colour` (lines, dashes, markers).
fn uses_of_colour(lines: &[String], colour: &str) -> usize {
    let stroke = format!("stroke=\"{colour}\"");
    let fill = format!("fill=\"{colour}\"");
    count_lines(lines, |line| {
        !line.starts_with("<text") && (line.contains(&stroke) || line.contains(&fill))
    })
}

/// The value of attribute `name` in an SVG element line.
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

/// The tick labels of every axis, in drawing order: runs of numeric texts that share their
/// anchor and their position across the axis (x for a y axis, y for an x axis).
fn axes(lines: &[String]) -> Vec<Vec<String>> {
    axes_with_direction(lines)
        .into_iter()
        .map(|(_, labels)| labels)
        .collect()
}

/// The tick labels of every y axis (right-aligned labels), in drawing order.
fn y_axes(lines: &[String]) -> Vec<Vec<String>> {
    axes_with_direction(lines)
        .into_iter()
        .filter(|(vertical, _)| *vertical)
        .map(|(_, labels)| labels)
        .collect()
}

/// [`axes`] with whether each is a y axis.
fn axes_with_direction(lines: &[String]) -> Vec<(bool, Vec<String>)> {
    let mut axes: Vec<(bool, Vec<String>)> = Vec::new();
    let mut current_key = None;
    for pair in lines.windows(2) {
        let (element, content) = (&pair[0], &pair[1]);
        if !element.starts_with("<text") || content.parse::<f64>().is_err() {
            continue;
        }
        let anchor = attribute(element, "text-anchor").unwrap_or("start");
        let across = if anchor == "end" { "x" } else { "y" };
        let key = (
            anchor.to_string(),
            attribute(element, across).map(str::to_string),
        );
        if current_key.as_ref() != Some(&key) {
            axes.push((anchor == "end", Vec::new()));
            current_key = Some(key);
        }
        axes.last_mut().unwrap().1.push(content.clone());
    }
    axes
}

fn assert_tick_labels_unique(lines: &[String]) {
    let axes = axes(lines);
    assert!(axes.len() >= 2, "{axes:?}");
    for labels in &axes {
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            labels.len(),
            "repeated tick labels {labels:?}"
        );
    }
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

/// The size of a PNG from its header.
fn png_size(file: &Path) -> (u32, u32) {
    let bytes = std::fs::read(file).unwrap();
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
fn alphas_draws_every_edge_of_both_cells_without_none() {
    let run = Run::write(3, 14, "softmax", Schedule::Fimt);
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
        // Subscripts, not TeX source.
        assert_eq!(count_lines(&lines, |line| line.contains("c_{")), 0);
        for (source, node) in [("cₖ₋₂", 0), ("cₖ₋₁", 3), ("node 2", 3)] {
            let label = format!("{source} → node {node}");
            assert_eq!(count_lines(&lines, |line| line == label), 1, "{label}");
        }
        for (op, colour) in &SOFTMAX_OPS[1..] {
            assert_eq!(count_lines(&lines, |line| line == *op), 1, "legend {op}");
            assert!(uses_of_colour(&lines, colour) >= 15, "series of {op}");
        }
        assert_eq!(count_lines(&lines, |line| line == "none"), 0);
        assert_eq!(uses_of_colour(&lines, SOFTMAX_OPS[0].1), 0);
        assert_tick_labels_unique(&lines);
        // The values spread far from uniform: the y axes follow them, not a fixed 0.12-0.13.
        let y_labels: Vec<f64> = axes(&lines)
            .iter()
            .flatten()
            .filter_map(|label| label.parse().ok())
            .collect();
        assert!(y_labels.iter().any(|value| *value > 0.2), "{y_labels:?}");
        assert!(
            y_labels.iter().any(|value| *value > 0.0 && *value < 0.1),
            "{y_labels:?}"
        );
    }
}

#[test]
fn alphas_with_none_draws_all_eight_ops_into_the_chosen_folder() {
    let run = Run::write(2, 14, "softmax", Schedule::NoFimt);
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
        assert!(uses_of_colour(&lines, colour) >= 15, "series of {op}");
    }
    assert!(out_dir.join("alphas_reduce.svg").exists());
}

#[test]
fn alphas_of_a_small_crb_cell_has_one_panel_per_edge() {
    // Two intermediate nodes: five edges (2 into node 0, 3 into node 1), seven CRB ops.
    let run = Run::write(1, 5, "crb", Schedule::NoFimt);
    let out = prime(&["plot", "alphas", path(run.path()), "--format", "png"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_png(&run.figures().join("alphas_normal.png"));
    assert!(!run.figures().join("alphas_normal.svg").exists());
    let out = prime(&[
        "plot",
        "alphas",
        path(run.path()),
        "--format",
        "svg",
        "--shared-y",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = svg_lines(&run.figures().join("alphas_reduce.svg"));
    assert_eq!(count_lines(&lines, |line| line.contains("→ node")), 5);
    assert_eq!(count_lines(&lines, |line| line == "node 0 → node 1"), 1);
    assert!(lines.iter().any(|line| line.contains("(crb)")));
    for (op, colour) in &SOFTMAX_OPS[1..] {
        assert!(uses_of_colour(&lines, colour) >= 6, "series of {op}");
    }
    // One range for every panel: every y axis has the same labels.
    let y_axes = y_axes(&lines);
    assert_eq!(y_axes.len(), 5, "{y_axes:?}");
    assert!(
        y_axes.windows(2).all(|pair| pair[0] == pair[1]),
        "{y_axes:?}"
    );
}

#[test]
fn schedule_draws_fimt_ewma_threshold_and_alpha_steps() {
    let run = Run::write(3, 14, "softmax", Schedule::Fimt);
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
    assert_tick_labels_unique(&lines);
    // The lower panel counts whole alpha steps: 0, 1, 2, ... once each.
    let lower = lines
        .iter()
        .position(|line| line == "alpha steps per epoch")
        .unwrap();
    let counts = axes(&lines[lower..])
        .into_iter()
        .find(|labels| labels.first().map(String::as_str) == Some("0"))
        .unwrap();
    assert!(
        counts.iter().all(|label| label.parse::<u32>().is_ok()),
        "{counts:?}"
    );
}

#[test]
fn schedule_of_a_run_under_another_schedule_is_titled_after_it() {
    let run = Run::write(2, 14, "softmax", Schedule::Constant);
    let out = prime(&["plot", "schedule", path(run.path()), "--format", "svg"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = svg_lines(&run.figures().join("schedule.svg"));
    let title = format!(
        "CS-11 schedule, epochs 0 to 2: {} alpha steps — custom",
        run.alpha_steps.len()
    );
    assert_eq!(count_lines(&lines, |line| line == title), 1, "{title}");
    assert_eq!(
        count_lines(&lines, |line| line.contains("FIMT schedule")),
        0
    );
    for legend in ["FIMT", "FIMT EWMA (λ = 0.2)", "alpha step"] {
        assert_eq!(count_lines(&lines, |line| line == legend), 1, "{legend}");
    }
    assert_eq!(count_lines(&lines, |line| line.contains("threshold")), 0);
    assert_tick_labels_unique(&lines);
}

#[test]
fn schedule_over_the_first_epoch_marks_its_alpha_steps() {
    let run = Run::write(3, 14, "softmax", Schedule::Fimt);
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
    let run = Run::write(2, 14, "softmax", Schedule::NoFimt);
    let out = prime(&["plot", "schedule", path(run.path())]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no fimt values in metrics.jsonl"),
        "{stderr}"
    );
    assert!(!run.figures().join("schedule.svg").exists());
}

#[test]
fn width_height_and_font_size_set_the_image() {
    let run = Run::write(2, 14, "softmax", Schedule::Fimt);
    let out = prime(&[
        "plot",
        "schedule",
        path(run.path()),
        "--format",
        "png",
        "--width",
        "1000",
        "--height",
        "700",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(png_size(&run.figures().join("schedule.png")), (1000, 700));
    let out = prime(&[
        "plot",
        "alphas",
        path(run.path()),
        "--format",
        "svg",
        "--font-size",
        "20",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let large = std::fs::read_to_string(run.figures().join("alphas_normal.svg")).unwrap();
    let out = prime(&[
        "plot",
        "alphas",
        path(run.path()),
        "--format",
        "svg",
        "--font-size",
        "10",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let small = std::fs::read_to_string(run.figures().join("alphas_normal.svg")).unwrap();
    let width = |svg: &str| -> u32 {
        attribute(svg.lines().next().unwrap(), "width")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        width(&large) > width(&small),
        "the panels grow with the font"
    );
}

#[test]
fn sizes_out_of_range_or_too_small_are_refused_with_the_fix() {
    let run = Run::write(2, 14, "softmax", Schedule::Fimt);
    for (flag, value, expected) in [
        ("--width", "100", "400..=8000"),
        ("--height", "9000", "300..=8000"),
        ("--font-size", "3", "8..=40"),
        ("--font-size", "big", "invalid digit"),
    ] {
        let out = prime(&["plot", "alphas", path(run.path()), flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(expected),
            "{stderr}"
        );
    }
    let out = prime(&["plot", "alphas", path(run.path()), "--width", "600"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--width 600 leaves") && stderr.contains("use --width 870 or more"),
        "{stderr}"
    );
    let out = prime(&[
        "plot",
        "schedule",
        path(run.path()),
        "--height",
        "300",
        "--font-size",
        "30",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--height 300 leaves"), "{stderr}");
    assert!(!run.figures().exists());
}
#[test]
fn bad_inputs_are_named() {
    let run = Run::write(2, 14, "softmax", Schedule::Fimt);
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
