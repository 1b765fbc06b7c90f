//! `prime genotype`: derive a genotype from raw alphas, show a genotype.

use anyhow::{bail, Context};
use clap::Subcommand;
use prime_core::genotype::projection::derive_genotype;
use prime_core::genotype::{state_label, Gene, Genotype};
use prime_core::primitives::Activation;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Subcommands of `prime genotype`.
#[derive(Debug, Subcommand)]
pub enum GenotypeCommand {
    /// Derive a genotype from raw alphas and print it as JSON on stdout.
    Derive {
        /// JSON file `{"normal": [[...], ...], "reduce": [[...], ...]}` of raw (not activated)
        /// alphas, one row per edge, columns in the primitive order of the activation.
        #[arg(long)]
        alphas: PathBuf,
        /// Activation applied row-wise before projecting: `softmax` (8 columns) or `crb` (7).
        #[arg(long, default_value = "softmax")]
        activation: Activation,
    },
    /// Print both cells of a genotype and its reference text form.
    Show {
        /// A search run directory (its genotype.json or genotype.txt), a genotype file (JSON
        /// or reference text) or a built-in name such as `DARTS_V2`.
        #[arg(value_name = "NAME|FILE|RUN_DIR")]
        genotype: String,
    },
    /// Print the evaluation network's parameters as JSON: `params` (auxiliary head excluded,
    /// the paper's "Params (M)" · 1e6), `aux_params`, `params_m` and `macs` per 32x32 image.
    Params {
        /// A built-in name, a genotype file, or a run directory holding genotype.json.
        #[arg(long, value_name = "NAME|FILE|RUN_DIR")]
        genotype: String,
        /// Number of classes (10 for CIFAR-10, 100 for CIFAR-100).
        #[arg(long, default_value_t = 10)]
        classes: i64,
        /// Initial channels C.
        #[arg(long, default_value_t = 36)]
        channels: i64,
        /// Number of cells.
        #[arg(long, default_value_t = 20)]
        layers: i64,
    },
}

/// Runs `prime genotype`.
pub fn run(command: GenotypeCommand) -> anyhow::Result<()> {
    match command {
        GenotypeCommand::Derive { alphas, activation } => {
            let genotype = derive_from_file(&alphas, activation)?;
            println!("{}", genotype.to_json());
            Ok(())
        }
        GenotypeCommand::Show { genotype } => {
            print!("{}", describe(&resolve(&genotype)?));
            Ok(())
        }
        GenotypeCommand::Params {
            genotype,
            classes,
            channels,
            layers,
        } => {
            let json = crate::commands::eval::params_json(&genotype, classes, channels, layers)?;
            println!("{json}");
            Ok(())
        }
    }
}

/// The raw alpha file of `prime genotype derive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlphas {
    normal: Vec<Vec<f32>>,
    reduce: Vec<Vec<f32>>,
}

fn derive_from_file(path: &Path, activation: Activation) -> anyhow::Result<Genotype> {
    let file = path.display();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read alphas file {file}"))?;
    let raw: RawAlphas = serde_json::from_str(&text).with_context(|| {
        format!(
            "alphas file {file}: expected JSON {{\"normal\": [[...], ...], \"reduce\": [[...], ...]}}"
        )
    })?;
    let columns = activation.primitives().len();
    let activate = |key: &str, rows: &[Vec<f32>]| -> anyhow::Result<Vec<Vec<f32>>> {
        for (row, values) in rows.iter().enumerate() {
            if values.len() != columns {
                bail!(
                    "alphas file {file}: `{key}` row {row} has {} values, expected {columns} \
                     (one per {activation} primitive)",
                    values.len()
                );
            }
            if let Some(column) = values.iter().position(|value| !value.is_finite()) {
                bail!(
                    "alphas file {file}: `{key}` row {row}, column {column} is not a finite \
                     number"
                );
            }
        }
        Ok(rows.iter().map(|row| activation.apply_row(row)).collect())
    };
    let normal = activate("normal", &raw.normal)?;
    let reduce = activate("reduce", &raw.reduce)?;
    let (genotype, _, _) = derive_genotype(&normal, &reduce, activation.primitives())
        .with_context(|| format!("alphas file {file}: cannot project the activated alphas"))?;
    Ok(genotype)
}

/// Loads the genotype `argument` names: a search run directory, a genotype file or a built-in
/// name, as `prime eval` and `prime genotype params` take it.
fn resolve(argument: &str) -> anyhow::Result<Genotype> {
    Ok(prime_nas::eval::resolve_genotype(argument)?.0)
}

/// The readable listing of both cells followed by the reference text form.
fn describe(genotype: &Genotype) -> String {
    let mut out = String::new();
    describe_cell(
        &mut out,
        "normal",
        &genotype.normal,
        &genotype.normal_concat,
    );
    describe_cell(
        &mut out,
        "reduce",
        &genotype.reduce,
        &genotype.reduce_concat,
    );
    out.push_str("reference:\n  ");
    out.push_str(&genotype.to_reference_text());
    out.push('\n');
    out
}

fn describe_cell(out: &mut String, cell: &str, genes: &[Gene], concat: &[usize]) {
    out.push_str(&format!("{cell} cell ({} nodes):\n", genes.len() / 2));
    for (node, pair) in genes.chunks(2).enumerate() {
        let inputs: Vec<String> = pair
            .iter()
            .map(|gene| format!("{}({})", gene.op, state_label(gene.source)))
            .collect();
        out.push_str(&format!("  node {node} = {}\n", inputs.join(" + ")));
    }
    let outputs: Vec<String> = concat.iter().map(|&index| state_label(index)).collect();
    out.push_str(&format!("  output = concat({})\n", outputs.join(", ")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_lists_nodes_inputs_and_concat() {
        let text = describe(&Genotype::builtin("DARTS_V2").unwrap());
        assert!(text.starts_with("normal cell (4 nodes):\n"), "{text}");
        assert!(
            text.contains("  node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})\n"),
            "{text}"
        );
        assert!(
            text.contains("  node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)\n"),
            "{text}"
        );
        assert!(
            text.contains("  output = concat(node 0, node 1, node 2, node 3)\n"),
            "{text}"
        );
        assert!(text.contains("reduce cell (4 nodes):\n"), "{text}");
        assert!(text.contains("normal_concat=range(2, 6)"), "{text}");
    }

    #[test]
    fn resolve_falls_back_to_builtins_and_lists_them() {
        assert_eq!(
            resolve("nasnet").unwrap(),
            Genotype::builtin("NASNet").unwrap()
        );
        let message = format!("{:#}", resolve("no-such-genotype").unwrap_err());
        assert!(message.contains("`no-such-genotype`"), "{message}");
        assert!(message.contains("AmoebaNet"), "{message}");
    }
}
