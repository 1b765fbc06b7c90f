//! `prime config`: the fully resolved configuration of a search or an evaluation, CNN or
//! recurrent, with a comment per key, and the list of every key with its type, default and
//! range (both from the key tables that validation uses, `prime_core::config::keys`,
//! `eval_keys` and `rnn_keys`).

use crate::config_choice::SearchConfigArgs;
use clap::{Args, Subcommand};
use prime_core::config::eval_keys::EVAL_KEYS;
use prime_core::config::keys::{Key, SEARCH_KEYS};
use prime_core::config::rnn_keys::{RNN_EVAL_KEYS, RNN_SEARCH_KEYS};
use prime_core::config::SearchConfig;
use prime_core::dataset::Dataset;
use prime_core::eval_config::EvalConfig;
use prime_core::rnn_config::{RnnEvalConfig, RnnSearchConfig};
use prime_nas::eval::resolve_genotype;
use prime_nas::rnn::eval::resolve_rnn_genotype;

/// `prime config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration as TOML, one comment per key: a search's (`prime
    /// search --config FILE` reads it back) or with --eval an evaluation's (`prime eval
    /// --config FILE`); --dataset ptb for the recurrent ones.
    Show(ShowArgs),
    /// List every key of a configuration with its type, default and range.
    Keys(KeysArgs),
}

/// Arguments of `prime config show`: those `prime search` takes to choose its config, or with
/// --eval those of `prime eval`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    config: SearchConfigArgs,
    /// The evaluation (retraining) configuration instead of the search's.
    #[arg(long, conflicts_with = "method")]
    eval: bool,
    /// With --eval: the genotype to retrain, as `prime eval --genotype` takes it; default: the
    /// config file's, or DARTS_V2.
    #[arg(long, value_name = "NAME|FILE|RUN_DIR", requires = "eval")]
    genotype: Option<String>,
}

/// Arguments of `prime config keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Dataset: cifar10 or cifar100 (the CNN configs, the default) or ptb (the recurrent ones).
    #[arg(long)]
    dataset: Option<String>,
    /// The keys of the evaluation configuration instead of the search's.
    #[arg(long)]
    eval: bool,
}

/// Which of the four configurations: CNN or recurrent, search or evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigKind {
    Search,
    RecurrentSearch,
    Evaluation,
    RecurrentEvaluation,
}

impl ConfigKind {
    /// The kind that `--dataset` and `--eval` choose.
    fn of(dataset: Option<&str>, eval: bool) -> anyhow::Result<Self> {
        let dataset: Option<Dataset> = dataset
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let recurrent = dataset == Some(Dataset::Ptb);
        Ok(match (recurrent, eval) {
            (false, false) => ConfigKind::Search,
            (true, false) => ConfigKind::RecurrentSearch,
            (false, true) => ConfigKind::Evaluation,
            (true, true) => ConfigKind::RecurrentEvaluation,
        })
    }

    /// What the config is called in the header of `config show`.
    fn title(self) -> &'static str {
        match self {
            ConfigKind::Search => "search configuration",
            ConfigKind::RecurrentSearch => "recurrent (Penn Treebank) search configuration",
            ConfigKind::Evaluation => "evaluation configuration",
            ConfigKind::RecurrentEvaluation => "recurrent (Penn Treebank) evaluation configuration",
        }
    }

    /// The command that runs the config.
    fn command(self) -> &'static str {
        match self {
            ConfigKind::Search | ConfigKind::RecurrentSearch => "prime search",
            ConfigKind::Evaluation | ConfigKind::RecurrentEvaluation => "prime eval",
        }
    }

    /// Its key table.
    fn keys(self) -> &'static [Key] {
        match self {
            ConfigKind::Search => SEARCH_KEYS,
            ConfigKind::RecurrentSearch => RNN_SEARCH_KEYS,
            ConfigKind::Evaluation => EVAL_KEYS,
            ConfigKind::RecurrentEvaluation => RNN_EVAL_KEYS,
        }
    }

    /// Its defaults as a TOML table.
    fn defaults(self) -> anyhow::Result<toml::Table> {
        Ok(match self {
            ConfigKind::Search => toml::Table::try_from(SearchConfig::default())?,
            ConfigKind::RecurrentSearch => toml::Table::try_from(RnnSearchConfig::default())?,
            ConfigKind::Evaluation => toml::Table::try_from(EvalConfig::default())?,
            ConfigKind::RecurrentEvaluation => toml::Table::try_from(RnnEvalConfig::default())?,
        })
    }
}

/// Runs `prime config ...`.
pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show(args) => show(args),
        ConfigCommand::Keys(args) => keys(args),
    }
}

/// The annotated TOML of the config `args` choose.
fn annotated(kind: ConfigKind, args: &ShowArgs) -> anyhow::Result<String> {
    let choice = &args.config;
    Ok(match kind {
        ConfigKind::Search => choice.search_config()?.to_annotated_toml()?,
        ConfigKind::RecurrentSearch => choice.recurrent_search_config()?.to_annotated_toml()?,
        ConfigKind::Evaluation => {
            let genotype = args.genotype.as_deref().map(resolve_genotype).transpose()?;
            choice
                .source
                .eval_config(None, genotype)?
                .to_annotated_toml()?
        }
        ConfigKind::RecurrentEvaluation => {
            let genotype = args
                .genotype
                .as_deref()
                .map(resolve_rnn_genotype)
                .transpose()?;
            choice
                .source
                .recurrent_eval_config(None, genotype)?
                .to_annotated_toml()?
        }
    })
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let kind = ConfigKind::of(args.config.source.dataset.as_deref(), args.eval)?;
    let text = annotated(kind, &args)?;
    let origin = match (&args.config.source.config, &args.config.method) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(method)) => format!("the {method} preset"),
        (None, None) if kind == ConfigKind::Search || kind == ConfigKind::RecurrentSearch => {
            "the darts preset".to_string()
        }
        (None, None) => "the defaults".to_string(),
    };
    println!(
        "# The {} of {origin}{}, as `{}` runs it.",
        kind.title(),
        if args.config.source.overrides.is_empty() {
            ""
        } else {
            " with the --set overrides"
        },
        kind.command()
    );
    print!("{text}");
    Ok(())
}

fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let kind = ConfigKind::of(args.dataset.as_deref(), args.eval)?;
    let defaults = kind.defaults()?;
    let rows: Vec<[String; 5]> = kind
        .keys()
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

/// Longest default the key list prints whole; a longer list (a genotype's cells) is shown as
/// its length, and `config show` prints it in full.
const LONGEST_LISTED_DEFAULT: usize = 24;

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
    match value {
        None => "unset".to_string(),
        Some(value) => {
            let text = value.to_string();
            match value {
                toml::Value::Array(items) if text.chars().count() > LONGEST_LISTED_DEFAULT => {
                    format!("[{} items]", items.len())
                }
                _ => text,
            }
        }
    }
}
