//! Recurrent-cell genotypes for Penn Treebank (SPEC 7.4-7.6): the RNN primitives, genes,
//! validation, JSON and reference-text forms, and the built-in cells of the original DARTS
//! repository (`rnn/genotypes.py`).

use super::text::{self, ParseError, ReprForm};
use crate::primitives::Activation;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One candidate activation on a recurrent-cell edge (SPEC 7.3); serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RnnOp {
    /// `none`: contributes nothing (never selected by the projection).
    None,
    /// `tanh`.
    Tanh,
    /// `relu`.
    Relu,
    /// `sigmoid`.
    Sigmoid,
    /// `identity`: f(x) = x.
    Identity,
}

/// The softmax search list, in alpha column order (SPEC 7.4).
pub const RNN_SEARCH_PRIMITIVES: [RnnOp; 5] = [
    RnnOp::None,
    RnnOp::Tanh,
    RnnOp::Relu,
    RnnOp::Sigmoid,
    RnnOp::Identity,
];

/// The CRB search list: the softmax list without `none` (SPEC 7.4).
pub const RNN_CRB_PRIMITIVES: [RnnOp; 4] =
    [RnnOp::Tanh, RnnOp::Relu, RnnOp::Sigmoid, RnnOp::Identity];

/// Intermediate nodes of the searched recurrent cell (the reference's `STEPS`).
pub const RNN_STEPS: usize = 8;

/// Alpha rows of the searched cell: node i+1 has one edge from each of states 0..=i.
pub const RNN_EDGES: usize = RNN_STEPS * (RNN_STEPS + 1) / 2;

/// The searched primitive list of an alpha activation.
pub fn rnn_primitives(activation: Activation) -> &'static [RnnOp] {
    match activation {
        Activation::Softmax => &RNN_SEARCH_PRIMITIVES,
        Activation::Crb => &RNN_CRB_PRIMITIVES,
    }
}

impl RnnOp {
    /// Every operation.
    pub const ALL: [RnnOp; 5] = RNN_SEARCH_PRIMITIVES;

    /// The reference name, for example `relu`.
    pub fn name(self) -> &'static str {
        match self {
            RnnOp::None => "none",
            RnnOp::Tanh => "tanh",
            RnnOp::Relu => "relu",
            RnnOp::Sigmoid => "sigmoid",
            RnnOp::Identity => "identity",
        }
    }
}

impl fmt::Display for RnnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An RNN operation name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown recurrent operation `{name}` (valid: none, tanh, relu, sigmoid, identity)")]
pub struct UnknownRnnOpError {
    /// The name that was given.
    pub name: String,
}

impl FromStr for RnnOp {
    type Err = UnknownRnnOpError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        RnnOp::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| UnknownRnnOpError {
                name: name.to_string(),
            })
    }
}

impl Serialize for RnnOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for RnnOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One node of a recurrent cell: activation `op` applied along an edge from state `source`.
/// Serialised as a two-element array `["relu", 0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "(RnnOp, usize)", into = "(RnnOp, usize)")]
pub struct RnnGene {
    /// The activation.
    pub op: RnnOp,
    /// Index of the source state (0 = the initial state s0).
    pub source: usize,
}

impl RnnGene {
    /// A gene applying `op` to state `source`.
    pub fn new(op: RnnOp, source: usize) -> Self {
        Self { op, source }
    }
}

impl From<(RnnOp, usize)> for RnnGene {
    fn from((op, source): (RnnOp, usize)) -> Self {
        Self { op, source }
    }
}

impl From<RnnGene> for (RnnOp, usize) {
    fn from(gene: RnnGene) -> Self {
        (gene.op, gene.source)
    }
}

/// A recurrent cell: gene n-1 computes node n from an earlier state; the output is the mean
/// of the states in `concat`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnGenotype {
    /// One gene per node 1..=N.
    pub recurrent: Vec<RnnGene>,
    /// States averaged into the cell output (1..=N).
    pub concat: Vec<usize>,
}

/// The reference text form: `Genotype_rnn(recurrent=..., concat=...)`; DARTS wrote
/// `Genotype(...)`.
static REPR_FORM: ReprForm = ReprForm {
    names: &["Genotype_rnn", "Genotype"],
    cells: &[["recurrent", "concat"]],
};

/// Names accepted by [`RnnGenotype::builtin`] (case-insensitive); `DARTS` is `DARTS_V2`.
const BUILTIN_NAMES: [&str; 4] = ["DARTS_V1", "DARTS_V2", "DARTS", "ENAS"];

/// A structural defect of a recurrent genotype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RnnValidationError {
    /// No genes.
    #[error("the recurrent cell has no genes")]
    Empty,
    /// A gene uses `none`, which has no edge update.
    #[error("gene {gene} uses `none`, which a fixed cell cannot apply")]
    NoneOp {
        /// 0-based gene index.
        gene: usize,
    },
    /// A gene reads a state that does not exist yet.
    #[error("gene {gene} ({op}, {source_state}): node {node} may only read states 0..={max}")]
    SourceOutOfRange {
        /// 0-based gene index.
        gene: usize,
        /// The gene's operation.
        op: RnnOp,
        /// The gene's source.
        source_state: usize,
        /// The node the gene computes (1-based).
        node: usize,
        /// Largest valid source.
        max: usize,
    },
    /// The concat list is empty.
    #[error("concat is empty")]
    EmptyConcat,
    /// A concat index is not a node of the cell.
    #[error("concat contains {index}; the nodes of this cell are 1..={max}")]
    ConcatOutOfRange {
        /// The offending index.
        index: usize,
        /// Largest valid index.
        max: usize,
    },
    /// A concat index appears twice.
    #[error("concat contains {index} twice")]
    DuplicateConcat {
        /// The repeated index.
        index: usize,
    },
}

/// Errors of loading, saving and looking up recurrent genotypes.
#[derive(Debug, thiserror::Error)]
pub enum RnnGenotypeError {
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
    /// The file looks like JSON but is not a valid recurrent genotype.
    #[error("genotype file {}: invalid JSON recurrent genotype: {reason}", path.display())]
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
        reason: RnnValidationError,
    },
    /// No built-in recurrent genotype has this name.
    #[error("unknown built-in recurrent genotype `{name}` (known: {})", BUILTIN_NAMES.join(", "))]
    UnknownBuiltin {
        /// The name that was given.
        name: String,
    },
}

impl RnnGenotype {
    /// Names accepted by [`RnnGenotype::builtin`].
    pub fn builtin_names() -> &'static [&'static str] {
        &BUILTIN_NAMES
    }

    /// A cell of the original DARTS repository (`rnn/genotypes.py`), by case-insensitive name.
    pub fn builtin(name: &str) -> Result<RnnGenotype, RnnGenotypeError> {
        use RnnOp::{Identity as Id, Relu, Sigmoid as Sig, Tanh};
        let genes = |list: &[(RnnOp, usize)]| list.iter().copied().map(RnnGene::from).collect();
        let genotype = match name.to_ascii_lowercase().as_str() {
            "darts_v1" => RnnGenotype {
                recurrent: genes(&[
                    (Relu, 0),
                    (Relu, 1),
                    (Tanh, 2),
                    (Relu, 3),
                    (Relu, 4),
                    (Id, 1),
                    (Relu, 5),
                    (Relu, 1),
                ]),
                concat: (1..9).collect(),
            },
            "darts_v2" | "darts" => RnnGenotype {
                recurrent: genes(&[
                    (Sig, 0),
                    (Relu, 1),
                    (Relu, 1),
                    (Id, 1),
                    (Tanh, 2),
                    (Sig, 5),
                    (Tanh, 3),
                    (Relu, 5),
                ]),
                concat: (1..9).collect(),
            },
            "enas" => RnnGenotype {
                recurrent: genes(&[
                    (Tanh, 0),
                    (Tanh, 1),
                    (Relu, 1),
                    (Tanh, 3),
                    (Tanh, 3),
                    (Relu, 3),
                    (Relu, 4),
                    (Relu, 7),
                    (Relu, 8),
                    (Relu, 8),
                    (Relu, 8),
                ]),
                concat: vec![2, 5, 6, 9, 10, 11],
            },
            _ => {
                return Err(RnnGenotypeError::UnknownBuiltin {
                    name: name.to_string(),
                })
            }
        };
        Ok(genotype)
    }

    /// Checks: at least one gene, no `none`, node n reads a state 0..n-1, concat non-empty
    /// with distinct nodes 1..=N.
    pub fn validate(&self) -> Result<(), RnnValidationError> {
        if self.recurrent.is_empty() {
            return Err(RnnValidationError::Empty);
        }
        for (gene, entry) in self.recurrent.iter().enumerate() {
            if entry.op == RnnOp::None {
                return Err(RnnValidationError::NoneOp { gene });
            }
            let node = gene + 1;
            if entry.source >= node {
                return Err(RnnValidationError::SourceOutOfRange {
                    gene,
                    op: entry.op,
                    source_state: entry.source,
                    node,
                    max: node - 1,
                });
            }
        }
        if self.concat.is_empty() {
            return Err(RnnValidationError::EmptyConcat);
        }
        let max = self.recurrent.len();
        for (position, &index) in self.concat.iter().enumerate() {
            if !(1..=max).contains(&index) {
                return Err(RnnValidationError::ConcatOutOfRange { index, max });
            }
            if self.concat[..position].contains(&index) {
                return Err(RnnValidationError::DuplicateConcat { index });
            }
        }
        Ok(())
    }

    /// Reads and validates a genotype file, JSON (first character `{`) or reference text.
    pub fn load(path: impl AsRef<Path>) -> Result<RnnGenotype, RnnGenotypeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RnnGenotypeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let genotype = if text.trim_start().starts_with('{') {
            serde_json::from_str::<RnnGenotype>(&text).map_err(|reason| RnnGenotypeError::Json {
                path: path.to_path_buf(),
                reason,
            })?
        } else {
            RnnGenotype::from_reference_text(&text).map_err(|reason| RnnGenotypeError::Text {
                path: path.to_path_buf(),
                reason,
            })?
        };
        genotype
            .validate()
            .map_err(|reason| RnnGenotypeError::Invalid {
                path: path.to_path_buf(),
                reason,
            })?;
        Ok(genotype)
    }

    /// Writes the one-line JSON form followed by a newline.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<(), RnnGenotypeError> {
        let path = path.as_ref();
        std::fs::write(path, format!("{}\n", self.to_json())).map_err(|source| {
            RnnGenotypeError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The one-line JSON form: `{"recurrent": [["relu", 0], ...], "concat": [1, 2, ...]}`.
    pub fn to_json(&self) -> String {
        let genes: Vec<String> = self
            .recurrent
            .iter()
            .map(|gene| format!("[\"{}\", {}]", gene.op, gene.source))
            .collect();
        let concat: Vec<String> = self.concat.iter().map(usize::to_string).collect();
        format!(
            "{{\"recurrent\": [{}], \"concat\": [{}]}}",
            genes.join(", "),
            concat.join(", ")
        )
    }

    /// The reference text form of prime's named tuple:
    /// `Genotype_rnn(recurrent=[('relu', 0), ...], concat=range(1, 9))`; a concat of
    /// consecutive nodes is written as `range(a, b)`, any other as a list.
    pub fn to_reference_text(&self) -> String {
        format!(
            "Genotype_rnn(recurrent={}, concat={})",
            text::write_genes(self.recurrent.iter().map(|gene| (gene.op, gene.source))),
            text::write_concat(&self.concat)
        )
    }

    /// Parses the reference text form, `Genotype_rnn(...)` or DARTS's `Genotype(...)`, with
    /// keyword or positional arguments, `range(a, b)`, `range(b)` or a list for the concat,
    /// either quote, any whitespace, `#` comments and trailing commas (no validation).
    pub fn from_reference_text(text: &str) -> Result<RnnGenotype, ParseError> {
        let mut fields = text::parse::<RnnOp>(text, &REPR_FORM)?;
        Ok(RnnGenotype {
            recurrent: fields.genes(0)?.into_iter().map(RnnGene::from).collect(),
            concat: fields.concat(0)?,
        })
    }
}

impl FromStr for RnnGenotype {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RnnGenotype::from_reference_text(text)
    }
}

impl fmt::Display for RnnGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_reference_text())
    }
}

#[cfg(test)]
mod tests;
