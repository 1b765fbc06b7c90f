//! `prime plot`: the paper's figures from a search run directory, as SVG and PNG.
//!
//! `plot alphas` draws Figure 1 (the activated alpha of every op on every edge over training,
//! one panel per edge, one figure per cell type); `plot schedule` draws Figure 3 (the FIMT, its
//! EWMA and, under the FIMT schedule, the threshold on a log axis, with a mark at every alpha
//! step); `plot cell` draws a genotype's cells (normal and reduction, or the recurrent cell).

pub mod cell;
pub mod figures;
pub mod raster;
pub mod run_dir;

use anyhow::{bail, Context};
use cell::CellFigure;
use clap::{Args, Subcommand, ValueEnum};
use figures::{save, AlphaFigure, Figure, ImageFormat, ScheduleFigure, Sizing};
use prime_core::genotype::diagram::CellDiagram;
use std::path::{Path, PathBuf};

/// Subcommands of `prime plot`.
#[derive(Debug, Subcommand)]
pub enum PlotCommand {
    /// Figure 1: activated alpha of every op on every edge over training, for both cell types
    /// (writes alphas_normal.* and alphas_reduce.*).
    Alphas(AlphasArgs),
    /// Figure 3: FIMT, its EWMA and (FIMT schedule) the threshold on a log axis, with the
    /// alpha steps (writes schedule.*).
    Schedule(ScheduleArgs),
    /// A genotype's cells as diagrams: the normal and reduction cells of a CIFAR genotype
    /// (writes STEM_normal.* and STEM_reduce.*) or the recurrent cell of a Penn Treebank one
    /// (writes STEM_recurrent.*).
    Cell(CellArgs),
}

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatChoice {
    /// SVG only.
    Svg,
    /// PNG only.
    Png,
    /// SVG and PNG.
    Both,
}

impl FormatChoice {
    fn formats(self) -> &'static [ImageFormat] {
        match self {
            FormatChoice::Svg => &[ImageFormat::Svg],
            FormatChoice::Png => &[ImageFormat::Png],
            FormatChoice::Both => &[ImageFormat::Svg, ImageFormat::Png],
        }
    }
}

/// Options shared by the figures.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Directory of the figures (default: RUN_DIR/figures).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Image format.
    #[arg(long, value_enum, default_value = "both")]
    format: FormatChoice,
    /// Image width in pixels, 400 to 8000 (default: what the panels need).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(400..=8000))]
    width: Option<u32>,
    /// Image height in pixels, 300 to 8000 (default: what the panels need).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(300..=8000))]
    height: Option<u32>,
    /// Tick-label font size in pixels, 8 to 40; titles, labels, legends and panels scale
    /// with it.
    #[arg(long, value_name = "PX", default_value_t = figures::DEFAULT_FONT_SIZE,
          value_parser = clap::value_parser!(u32).range(8..=40))]
    font_size: u32,
}

impl OutputArgs {
    fn sizing(&self) -> Sizing {
        Sizing {
            width: self.width,
            height: self.height,
            font_size: self.font_size,
        }
    }
}

/// Arguments of `prime plot alphas`.
#[derive(Debug, Args)]
pub struct AlphasArgs {
    /// A search run directory (with alphas.jsonl and config.toml).
    run_dir: PathBuf,
    /// Also draw the `none` op (the paper leaves it out).
    #[arg(long)]
    with_none: bool,
    /// One y range for every panel (default: each panel's own range around its data).
    #[arg(long)]
    shared_y: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `prime plot schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// A search run directory (with metrics.jsonl; every search records the FIMT).
    run_dir: PathBuf,
    /// Start of the clock range shown, in epochs (default: 0).
    #[arg(long, value_name = "EPOCHS", allow_negative_numbers = true)]
    from: Option<f64>,
    /// End of the clock range shown, in epochs (default: the end of the run); the paper's
    /// figure is `--from 0 --to 1`.
    #[arg(long, value_name = "EPOCHS", allow_negative_numbers = true)]
    to: Option<f64>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `prime plot cell`.
#[derive(Debug, Args)]
pub struct CellArgs {
    /// A built-in name (DARTS_V1, DARTS_V2, NASNet, AmoebaNet; with --rnn DARTS_V1, DARTS_V2,
    /// ENAS), a genotype file (JSON or reference text) or a search run directory.
    #[arg(value_name = "NAME|FILE|RUN_DIR")]
    genotype: String,
    /// Read a recurrent (Penn Treebank) genotype; without it a genotype that is not a
    /// convolutional one is tried as a recurrent one.
    #[arg(long)]
    rnn: bool,
    /// Path stem of the files (default: RUN_DIR/figures/cell for a run directory, otherwise
    /// cell_NAME in the current directory).
    #[arg(long, value_name = "STEM")]
    out: Option<PathBuf>,
    /// Image format.
    #[arg(long, value_enum, default_value = "both")]
    format: FormatChoice,
}

/// Runs `prime plot`.
pub fn run(command: PlotCommand) -> anyhow::Result<()> {
    let written = match command {
        PlotCommand::Alphas(args) => plot_alphas(&args)?,
        PlotCommand::Schedule(args) => plot_schedule(&args)?,
        PlotCommand::Cell(args) => plot_cell(&args)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn check_run_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("run directory {} does not exist", dir.display());
    }
    Ok(())
}

fn write_all<F: Figure>(
    figure: &F,
    output: &OutputArgs,
    run_dir: &Path,
    stem: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    figure.check_size()?;
    let dir = output
        .out
        .clone()
        .unwrap_or_else(|| run_dir.join("figures"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the figure directory {}", dir.display()))?;
    let mut written = Vec::new();
    for format in output.format.formats() {
        let path = dir.join(format!("{stem}.{}", format.extension()));
        save(figure, &path, *format)?;
        written.push(path);
    }
    Ok(written)
}

fn plot_alphas(args: &AlphasArgs) -> anyhow::Result<Vec<PathBuf>> {
    check_run_dir(&args.run_dir)?;
    let config = run_dir::read_config(&args.run_dir)?;
    let history = run_dir::read_alpha_history(&args.run_dir)?;
    let method = config.as_ref().map(|config| config.method.as_str());
    let mut written = Vec::new();
    for (cell_name, cell, stem) in [
        ("Normal", &history.normal, "alphas_normal"),
        ("Reduction", &history.reduce, "alphas_reduce"),
    ] {
        let figure = AlphaFigure {
            history: &history,
            cell_name,
            cell,
            with_none: args.with_none,
            method,
            shared_y: args.shared_y,
            sizing: args.output.sizing(),
        };
        written.extend(write_all(&figure, &args.output, &args.run_dir, stem)?);
    }
    Ok(written)
}

fn plot_schedule(args: &ScheduleArgs) -> anyhow::Result<Vec<PathBuf>> {
    check_run_dir(&args.run_dir)?;
    for (flag, value) in [("--from", args.from), ("--to", args.to)] {
        if value.is_some_and(|value| !(value.is_finite() && value >= 0.0)) {
            bail!("{flag} must be a finite number of epochs >= 0");
        }
    }
    let config = run_dir::read_config(&args.run_dir)?;
    let history = run_dir::read_fimt_history(&args.run_dir)?;
    let last = history.last_clock();
    let from = args.from.unwrap_or(0.0);
    let to = args.to.unwrap_or(last);
    if from >= to {
        bail!("--from ({from}) must be below --to ({to})");
    }
    if from >= last {
        bail!("--from {from} is past the end of the run (its last step is at epoch {last:.3})");
    }
    let figure = ScheduleFigure {
        history: &history,
        from,
        to,
        schedule: config.as_ref().map(|config| &config.schedule),
        method: config.as_ref().map(|config| config.method.as_str()),
        sizing: args.output.sizing(),
    };
    write_all(&figure, &args.output, &args.run_dir, "schedule")
}

/// The cells a `prime plot cell` argument names, with the label of the default file stem.
fn resolve_cells(args: &CellArgs) -> anyhow::Result<(Vec<(&'static str, CellDiagram)>, String)> {
    let recurrent = |argument: &str| -> anyhow::Result<_> {
        let (genotype, label) = prime_nas::rnn::resolve_rnn_genotype(argument)?;
        Ok((
            vec![("recurrent", CellDiagram::recurrent(&genotype))],
            label,
        ))
    };
    if args.rnn {
        return recurrent(&args.genotype);
    }
    match prime_nas::eval::resolve_genotype(&args.genotype) {
        Ok((genotype, label)) => Ok((
            vec![
                ("normal", CellDiagram::normal(&genotype)),
                ("reduce", CellDiagram::reduction(&genotype)),
            ],
            label,
        )),
        Err(convolutional) => recurrent(&args.genotype).map_err(|_| {
            anyhow::Error::new(convolutional)
                .context("not a convolutional genotype, nor a recurrent one (see --rnn)")
        }),
    }
}

fn plot_cell(args: &CellArgs) -> anyhow::Result<Vec<PathBuf>> {
    let (cells, label) = resolve_cells(args)?;
    let stem = match &args.out {
        Some(stem) => stem.clone(),
        None if Path::new(&args.genotype).is_dir() => {
            Path::new(&args.genotype).join("figures").join("cell")
        }
        None => PathBuf::from(format!("cell_{label}")),
    };
    if let Some(dir) = stem.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the figure directory {}", dir.display()))?;
    }
    let mut written = Vec::new();
    for (suffix, diagram) in &cells {
        for format in args.format.formats() {
            let mut name = stem.as_os_str().to_owned();
            name.push(format!("_{suffix}.{}", format.extension()));
            let path = PathBuf::from(name);
            match format {
                ImageFormat::Svg => std::fs::write(&path, diagram.to_svg())
                    .with_context(|| format!("cannot write {}", path.display()))?,
                ImageFormat::Png => save(&CellFigure { diagram }, &path, *format)?,
            }
            written.push(path);
        }
    }
    Ok(written)
}
