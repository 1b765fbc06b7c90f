//! `prime config`: the fully resolved search configuration with a comment per key, and the
//! list of every key with its type, default and range (both from the key table that
//! validation uses, `prime_core::config::keys`).

use super::search::{resolved_config, ConfigSource};
use anyhow::bail;
use clap::{Args, Subcommand};
use prime_core::config::keys::SEARCH_KEYS;
use prime_core::config::SearchConfig;
use prime_core::dataset::Dataset;
use std::path::PathBuf;

/// `prime config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved search configuration as TOML, one comment per key; `prime search
    /// --config FILE` reads the output back.
    Show(ShowArgs),
    /// List every key of the search configuration with its type, default and range.
    Keys,
}

/// Arguments of `prime config show`: the same as `prime search` takes to choose its config.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Config file to resolve instead of a method preset.
    #[arg(long, value_name = "FILE", conflicts_with = "method")]
    config: Option<PathBuf>,
    /// Method preset (darts, cs10, fimt, pr, darts-prime, crb, ...); default darts.
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// Dataset: cifar10 or cifar100.
    #[arg(long)]
    dataset: Option<String>,
    /// Seed; shorthand for --set seed=N.
    #[arg(long)]
    seed: Option<u64>,
    /// Override a config value (dotted key, see `prime config keys`). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Runs `prime config ...`.
pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show(args) => show(args),
        ConfigCommand::Keys => keys(),
    }
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    if args.dataset.as_deref().and_then(|name| name.parse().ok()) == Some(Dataset::Ptb) {
        bail!(
            "config show resolves the CIFAR search configuration; the Penn Treebank search \
             (--dataset ptb) has its own keys, written to config.toml in its run directory"
        );
    }
    let source = ConfigSource {
        config: args.config,
        method: args.method,
        dataset: args.dataset,
        seed: args.seed,
        overrides: args.overrides,
    };
    let config = resolved_config(&source)?;
    let origin = match &source.config {
        Some(path) => path.display().to_string(),
        None => format!("the {} preset", config.method),
    };
    println!(
        "# The search configuration of {origin}{}, as `prime search` runs it.",
        if source.overrides.is_empty() {
            ""
        } else {
            " with the --set overrides"
        }
    );
    print!("{}", config.to_annotated_toml()?);
    Ok(())
}

fn keys() -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(SearchConfig::default())?;
    let rows: Vec<[String; 5]> = SEARCH_KEYS
        .iter()
        .map(|key| {
            [
                key.name.to_string(),
                key.range.type_name().to_string(),
                default_of(&defaults, key.name),
                key.range.to_string(),
                key.doc.to_string(),
            ]
        })
        .collect();
    let header = ["KEY", "TYPE", "DEFAULT", "RANGE", "MEANING"].map(String::from);
    let mut widths = header.clone().map(|title| title.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

/// The default of dotted `name` in `defaults`, as TOML writes it; `unset` for an option the
/// defaults leave out.
fn default_of(defaults: &toml::Table, name: &str) -> String {
    let mut parts = name.split('.');
    let mut value = parts.next().and_then(|first| defaults.get(first));
    for part in parts {
        value = value
            .and_then(toml::Value::as_table)
            .and_then(|table| table.get(part));
    }
    value.map_or_else(|| "unset".to_string(), toml::Value::to_string)
}
