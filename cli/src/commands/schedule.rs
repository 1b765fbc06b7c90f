//! `prime schedule replay`: the alpha steps the FIMT schedule takes on a given FIMT sequence,
//! under the authors' loop order (SPEC 4.3-4.4), to tune the schedule without training.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use prime_core::config::{Compat, ScheduleConfig, ScheduleKind};
use prime_nas::search::schedule::replay;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Subcommands of `prime schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Read one FIMT value per line and print `{"alpha_steps": [...]}`: the 0-based iterations
    /// at which an alpha step fires.
    Replay(ReplayArgs),
}

/// `--compat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatChoice {
    /// As the authors' code: h grows in iteration 0, before any FIMT is known.
    Reference,
    /// h stays at h0 until the first real test.
    Fixed,
}

impl From<CompatChoice> for Compat {
    fn from(choice: CompatChoice) -> Self {
        match choice {
            CompatChoice::Reference => Compat::Reference,
            CompatChoice::Fixed => Compat::Fixed,
        }
    }
}

/// Arguments of `prime schedule replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// File with one FIMT value per iteration and line (blank lines are skipped); `-` reads
    /// standard input.
    #[arg(long, value_name = "FILE")]
    fimt: PathBuf,
    /// Initial threshold h0.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    h0: f64,
    /// Threshold growth h_i per iteration without an alpha step (> 1).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.05,
        allow_negative_numbers = true
    )]
    hi: f64,
    /// r: intended weight steps per alpha step; an alpha step divides h by h_i^r.
    #[arg(long, value_name = "R", default_value_t = 10)]
    ratio: u32,
    /// EWMA coefficient lambda, in (0, 1].
    #[arg(
        long,
        value_name = "L",
        default_value_t = 0.2,
        allow_negative_numbers = true
    )]
    ewma: f64,
    /// `reference` (the authors' code) or `fixed` (no threshold growth before the first FIMT).
    #[arg(long, value_enum, default_value = "reference")]
    compat: CompatChoice,
}

/// Runs `prime schedule`.
pub fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Replay(args) => {
            let config = schedule_config(&args)?;
            let fimt = read_fimt(&args.fimt)?;
            let steps = replay(&config, args.compat.into(), &fimt);
            println!("{}", serde_json::json!({ "alpha_steps": steps }));
            Ok(())
        }
    }
}

/// The FIMT schedule of the flags, each range checked.
fn schedule_config(args: &ReplayArgs) -> anyhow::Result<ScheduleConfig> {
    if !(args.h0.is_finite() && args.h0 > 0.0) {
        bail!("--h0 must be a finite number > 0 (got {})", args.h0);
    }
    if !(args.hi.is_finite() && args.hi > 1.0) {
        bail!("--hi must be a finite number > 1 (got {})", args.hi);
    }
    if args.ratio == 0 {
        bail!("--ratio must be at least 1 (got 0)");
    }
    if !(args.ewma > 0.0 && args.ewma <= 1.0) {
        bail!("--ewma must be in (0, 1] (got {})", args.ewma);
    }
    Ok(ScheduleConfig {
        kind: ScheduleKind::Fimt,
        ratio: args.ratio,
        h0: args.h0,
        hi: args.hi,
        ewma: args.ewma,
    })
}

/// Reads one FIMT value per non-blank line; errors name the file and the line.
fn read_fimt(path: &Path) -> anyhow::Result<Vec<f64>> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read FIMT values from standard input")?;
        ("standard input".to_string(), text)
    } else {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the FIMT file {name}"))?;
        (name, text)
    };
    parse_fimt(&text, &name)
}

fn parse_fimt(text: &str, name: &str) -> anyhow::Result<Vec<f64>> {
    let mut values = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let value: f64 = line
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: line {number}: `{line}` is not a number"))?;
        if !(value.is_finite() && value >= 0.0) {
            bail!("{name}: line {number}: FIMT must be a finite number >= 0 (got `{line}`)");
        }
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_names_bad_lines() {
        assert_eq!(
            parse_fimt("1\n\n 2.5 \n3e1\n", "f").unwrap(),
            [1.0, 2.5, 30.0]
        );
        let error = parse_fimt("1\nx\n", "f").unwrap_err().to_string();
        assert_eq!(error, "f: line 2: `x` is not a number");
        let error = parse_fimt("nan\n", "f").unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(parse_fimt("-1\n", "f").is_err());
    }
}
