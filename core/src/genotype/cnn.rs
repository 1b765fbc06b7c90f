//! Convolutional cell genotypes (a normal and a reduction cell): JSON and reference-text
//! forms, validation and the built-in genotypes of the original DARTS repository (SPEC 2.2).

use super::text::{self, ParseError, ReprForm};
use crate::primitives::CnnOp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One chosen edge of a cell: an operation applied to a source state.
///
/// Source 0 is the cell input c_{k-2}, source 1 is c_{k-1}, source j >= 2 is intermediate
/// node j - 2. Serialised as a two-element array `["sep_conv_3x3", 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(CnnOp, usize)", into = "(CnnOp, usize)")]
pub struct Gene {
    /// The operation on the edge.
    pub op: CnnOp,
    /// Index of the source state.
    pub source: usize,
}

impl Gene {
    /// A gene applying `op` to state `source`.
    pub fn new(op: CnnOp, source: usize) -> Self {
        Self { op, source }
    }
}

impl From<(CnnOp, usize)> for Gene {
    fn from((op, source): (CnnOp, usize)) -> Self {
        Self { op, source }
    }
}

impl From<Gene> for (CnnOp, usize) {
    fn from(gene: Gene) -> Self {
        (gene.op, gene.source)
    }
}

/// A normal and a reduction cell, two genes per intermediate node, strongest edge first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genotype {
    /// Genes of the normal cell: genes 2i and 2i+1 are the inputs of node i.
    pub normal: Vec<Gene>,
    /// State indices concatenated to form the normal cell's output.
    pub normal_concat: Vec<usize>,
    /// Genes of the reduction cell.
    pub reduce: Vec<Gene>,
    /// State indices concatenated to form the reduction cell's output.
    pub reduce_concat: Vec<usize>,
}

/// The reference text form: `Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`.
static REPR_FORM: ReprForm = ReprForm {
    names: &["Genotype"],
    cells: &[["normal", "normal_concat"], ["reduce", "reduce_concat"]],
};

/// Names accepted by [`Genotype::builtin`] (case-insensitive); `DARTS` is `DARTS_V2`.
const BUILTIN_NAMES: [&str; 5] = ["DARTS_V1", "DARTS_V2", "DARTS", "NASNet", "AmoebaNet"];

/// A structural defect of a genotype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A cell has no genes or an odd number of them.
    #[error("{cell} cell has {count} genes; expected a positive even number (two per node)")]
    GeneCount {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// Number of genes found.
        count: usize,
    },
    /// A gene reads from a state that does not exist yet.
    #[error(
        "{cell} cell, gene {gene} ({op}, {source_state}): node {node} may only read states 0..={max_source}"
    )]
    SourceOutOfRange {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// 0-based gene index.
        gene: usize,
        /// The gene's operation.
        op: CnnOp,
        /// The gene's source state.
        source_state: usize,
        /// The node the gene feeds.
        node: usize,
        /// Largest valid source for that node.
        max_source: usize,
    },
    /// The concat list is empty.
    #[error("{cell}_concat is empty")]
    EmptyConcat {
        /// `normal` or `reduce`.
        cell: &'static str,
    },
    /// A concat index is not an intermediate node of the cell.
    #[error("{cell}_concat contains {index}; intermediate states of this cell are 2..={max}")]
    ConcatOutOfRange {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// The offending index.
        index: usize,
        /// Largest valid index.
        max: usize,
    },
    /// A concat index appears twice.
    #[error("{cell}_concat contains {index} twice")]
    DuplicateConcat {
        /// `normal` or `reduce`.
        cell: &'static str,
        /// The repeated index.
        index: usize,
    },
}

/// Errors of loading, saving and looking up genotypes.
#[derive(Debug, thiserror::Error)]
pub enum GenotypeError {
    /// The file could not be read.
    #[error("cannot read genotype file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write genotype file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file looks like JSON but is not a valid genotype.
    #[error("genotype file {}: invalid JSON genotype: {reason}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error, with line and column.
        reason: serde_json::Error,
    },
    /// The file is in the reference text form but does not parse.
    #[error("genotype file {}: {reason}", path.display())]
    Text {
        /// The file.
        path: PathBuf,
        /// The syntax error.
        reason: ParseError,
    },
    /// The file parses but the genotype is malformed.
    #[error("genotype file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The structural defect.
        reason: ValidationError,
    },
    /// No built-in genotype has this name.
    #[error("unknown built-in genotype `{name}` (known: {})", BUILTIN_NAMES.join(", "))]
    UnknownBuiltin {
        /// The name that was given.
        name: String,
    },
}

/// The human-readable name of state `index` of a cell: `c_{k-2}`, `c_{k-1}`, `node 0`, ...
pub fn state_label(index: usize) -> String {
    match index {
        0 => "c_{k-2}".to_string(),
        1 => "c_{k-1}".to_string(),
        node => format!("node {}", node - 2),
    }
}

impl Genotype {
    /// Names accepted by [`Genotype::builtin`].
    pub fn builtin_names() -> &'static [&'static str] {
        &BUILTIN_NAMES
    }

    /// A genotype of the original DARTS repository (`cnn/genotypes.py`), by case-insensitive name.
    #[rustfmt::skip]
    pub fn builtin(name: &str) -> Result<Genotype, GenotypeError> {
        use CnnOp::{
            AvgPool3x3 as Avg, Conv7x1And1x7 as Conv7, DilConv3x3 as Dil3, MaxPool3x3 as Max,
            SepConv3x3 as Sep3, SepConv5x5 as Sep5, SepConv7x7 as Sep7, SkipConnect as Skip,
        };
        let genes = |list: &[(CnnOp, usize)]| list.iter().copied().map(Gene::from).collect();
        // One line per intermediate node.
        let genotype = match name.to_ascii_lowercase().as_str() {
            "darts_v1" => Genotype {
                normal: genes(&[
                    (Sep3, 1), (Sep3, 0),
                    (Skip, 0), (Sep3, 1),
                    (Skip, 0), (Sep3, 1),
                    (Sep3, 0), (Skip, 2),
                ]),
                normal_concat: vec![2, 3, 4, 5],
                reduce: genes(&[
                    (Max, 0), (Max, 1),
                    (Skip, 2), (Max, 0),
                    (Max, 0), (Skip, 2),
                    (Skip, 2), (Avg, 0),
                ]),
                reduce_concat: vec![2, 3, 4, 5],
            },
            "darts_v2" | "darts" => Genotype {
                normal: genes(&[
                    (Sep3, 0), (Sep3, 1),
                    (Sep3, 0), (Sep3, 1),
                    (Sep3, 1), (Skip, 0),
                    (Skip, 0), (Dil3, 2),
                ]),
                normal_concat: vec![2, 3, 4, 5],
                reduce: genes(&[
                    (Max, 0), (Max, 1),
                    (Skip, 2), (Max, 1),
                    (Max, 0), (Skip, 2),
                    (Skip, 2), (Max, 1),
                ]),
                reduce_concat: vec![2, 3, 4, 5],
            },
            "nasnet" => Genotype {
                normal: genes(&[
                    (Sep5, 1), (Sep3, 0),
                    (Sep5, 0), (Sep3, 0),
                    (Avg, 1), (Skip, 0),
                    (Avg, 0), (Avg, 0),
                    (Sep3, 1), (Skip, 1),
                ]),
                normal_concat: vec![2, 3, 4, 5, 6],
                reduce: genes(&[
                    (Sep5, 1), (Sep7, 0),
                    (Max, 1), (Sep7, 0),
                    (Avg, 1), (Sep5, 0),
                    (Skip, 3), (Avg, 2),
                    (Sep3, 2), (Max, 1),
                ]),
                reduce_concat: vec![4, 5, 6],
            },
            "amoebanet" => Genotype {
                normal: genes(&[
                    (Avg, 0), (Max, 1),
                    (Sep3, 0), (Sep5, 2),
                    (Sep3, 0), (Avg, 3),
                    (Sep3, 1), (Skip, 1),
                    (Skip, 0), (Avg, 1),
                ]),
                normal_concat: vec![4, 5, 6],
                reduce: genes(&[
                    (Avg, 0), (Sep3, 1),
                    (Max, 0), (Sep7, 2),
                    (Sep7, 0), (Avg, 1),
                    (Max, 0), (Max, 1),
                    (Conv7, 0), (Sep3, 5),
                ]),
                reduce_concat: vec![3, 4, 6],
            },
            _ => return Err(GenotypeError::UnknownBuiltin { name: name.to_string() }),
        };
        Ok(genotype)
    }

    /// Checks two genes per node, sources that exist before the node, and valid concat lists.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_cell("normal", &self.normal, &self.normal_concat)?;
        validate_cell("reduce", &self.reduce, &self.reduce_concat)
    }

    /// Reads and validates a genotype file, JSON (first character `{`) or reference text.
    pub fn load(path: impl AsRef<Path>) -> Result<Genotype, GenotypeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GenotypeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let genotype = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Genotype>(&text).map_err(|reason| GenotypeError::Json {
                path: path.to_path_buf(),
                reason,
            })?
        } else {
            Genotype::from_reference_text(&text).map_err(|reason| GenotypeError::Text {
                path: path.to_path_buf(),
                reason,
            })?
        };
        genotype
            .validate()
            .map_err(|reason| GenotypeError::Invalid {
                path: path.to_path_buf(),
                reason,
            })?;
        Ok(genotype)
    }

    /// Writes the one-line JSON form (see [`Genotype::to_json`]) followed by a newline.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<(), GenotypeError> {
        let path = path.as_ref();
        std::fs::write(path, format!("{}\n", self.to_json())).map_err(|source| {
            GenotypeError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The one-line JSON form: `{"normal": [["sep_conv_3x3", 1], ...], "normal_concat": [2, 3, 4, 5], ...}`.
    pub fn to_json(&self) -> String {
        let genes = |genes: &[Gene]| {
            let items: Vec<String> = genes
                .iter()
                .map(|gene| format!("[\"{}\", {}]", gene.op, gene.source))
                .collect();
            format!("[{}]", items.join(", "))
        };
        let indices = |indices: &[usize]| {
            let items: Vec<String> = indices.iter().map(usize::to_string).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            "{{\"normal\": {}, \"normal_concat\": {}, \"reduce\": {}, \"reduce_concat\": {}}}",
            genes(&self.normal),
            indices(&self.normal_concat),
            genes(&self.reduce),
            indices(&self.reduce_concat)
        )
    }

    /// The reference text form: the Python repr of the `Genotype` named tuple.
    ///
    /// A concat list of consecutive indices is written as `range(a, b)`, any other as a list.
    pub fn to_reference_text(&self) -> String {
        let genes =
            |genes: &[Gene]| text::write_genes(genes.iter().map(|gene| (gene.op, gene.source)));
        format!(
            "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
            genes(&self.normal),
            text::write_concat(&self.normal_concat),
            genes(&self.reduce),
            text::write_concat(&self.reduce_concat)
        )
    }

    /// Parses the reference text form (no validation; see [`Genotype::validate`]).
    ///
    /// Accepts keyword or positional arguments, `range(a, b)`, `range(b)` or lists for the
    /// concats, single or double quotes, any whitespace, `#` comments and trailing commas.
    pub fn from_reference_text(text: &str) -> Result<Genotype, ParseError> {
        let mut fields = text::parse::<CnnOp>(text, &REPR_FORM)?;
        let genes = |genes: Vec<(CnnOp, usize)>| genes.into_iter().map(Gene::from).collect();
        Ok(Genotype {
            normal: genes(fields.genes(0)?),
            normal_concat: fields.concat(0)?,
            reduce: genes(fields.genes(1)?),
            reduce_concat: fields.concat(1)?,
        })
    }
}

impl FromStr for Genotype {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Genotype::from_reference_text(text)
    }
}

impl fmt::Display for Genotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_reference_text())
    }
}

fn validate_cell(
    cell: &'static str,
    genes: &[Gene],
    concat: &[usize],
) -> Result<(), ValidationError> {
    if genes.is_empty() || genes.len() % 2 == 1 {
        return Err(ValidationError::GeneCount {
            cell,
            count: genes.len(),
        });
    }
    for (index, gene) in genes.iter().enumerate() {
        let node = index / 2;
        let max_source = node + 1;
        if gene.source > max_source {
            return Err(ValidationError::SourceOutOfRange {
                cell,
                gene: index,
                op: gene.op,
                source_state: gene.source,
                node,
                max_source,
            });
        }
    }
    if concat.is_empty() {
        return Err(ValidationError::EmptyConcat { cell });
    }
    let max = genes.len() / 2 + 1;
    for (position, &index) in concat.iter().enumerate() {
        if !(2..=max).contains(&index) {
            return Err(ValidationError::ConcatOutOfRange { cell, index, max });
        }
        if concat[..position].contains(&index) {
            return Err(ValidationError::DuplicateConcat { cell, index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
