//! Discrete cell architectures (genotypes): JSON and reference-text forms, validation and the
//! built-in genotypes of the original DARTS repository (SPEC 2.2).

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

/// Names accepted by [`Genotype::builtin`] (case-insensitive); `DARTS` is `DARTS_V2`.
const BUILTIN_NAMES: [&str; 5] = ["DARTS_V1", "DARTS_V2", "DARTS", "NASNet", "AmoebaNet"];

/// A syntax error in the reference text form, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending character.
    pub line: usize,
    /// 1-based column (in characters) of the offending character.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

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
        let genes = |genes: &[Gene]| {
            let items: Vec<String> = genes
                .iter()
                .map(|gene| format!("('{}', {})", gene.op, gene.source))
                .collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
            genes(&self.normal),
            concat_text(&self.normal_concat),
            genes(&self.reduce),
            concat_text(&self.reduce_concat)
        )
    }

    /// Parses the reference text form (no validation; see [`Genotype::validate`]).
    ///
    /// Accepts keyword or positional arguments, `range(a, b)`, `range(b)` or lists for the
    /// concats, single or double quotes, any whitespace, `#` comments and trailing commas.
    pub fn from_reference_text(text: &str) -> Result<Genotype, ParseError> {
        TextParser::new(text).genotype()
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

fn concat_text(concat: &[usize]) -> String {
    let contiguous = concat.windows(2).all(|pair| pair[1] == pair[0] + 1);
    match (concat.first(), concat.last()) {
        (Some(first), Some(last)) if contiguous => format!("range({first}, {})", last + 1),
        _ => {
            let items: Vec<String> = concat.iter().map(usize::to_string).collect();
            format!("[{}]", items.join(", "))
        }
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

/// The four fields of the named tuple, in positional order.
const FIELDS: [&str; 4] = ["normal", "normal_concat", "reduce", "reduce_concat"];

/// A value of one field while parsing.
enum FieldValue {
    Genes(Vec<Gene>),
    Indices(Vec<usize>),
}

/// Recursive-descent parser over the characters of the reference text form.
struct TextParser<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> TextParser<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, position: 0 }
    }

    fn genotype(&mut self) -> Result<Genotype, ParseError> {
        self.skip_blank();
        let start = self.position;
        let name = self.identifier();
        if name != "Genotype" {
            return Err(self.expected_at(start, "`Genotype(`"));
        }
        self.expect('(')?;
        let mut values: [Option<FieldValue>; 4] = [None, None, None, None];
        let mut positional = 0;
        let mut seen_keyword = false;
        loop {
            self.skip_blank();
            if self.peek() == Some(')') {
                break;
            }
            let argument_start = self.position;
            let keyword = self.identifier();
            let field = if !keyword.is_empty() && self.peek_after_blank() == Some('=') {
                self.expect('=')?;
                seen_keyword = true;
                FIELDS
                    .iter()
                    .position(|&field| field == keyword)
                    .ok_or_else(|| {
                        self.error_at(
                            argument_start,
                            &format!(
                                "unknown field `{keyword}` (expected one of: {})",
                                FIELDS.join(", ")
                            ),
                        )
                    })?
            } else {
                self.position = argument_start;
                if seen_keyword {
                    return Err(self.expected_at(
                        argument_start,
                        "a keyword argument (`field=`) after keyword arguments",
                    ));
                }
                if positional == FIELDS.len() {
                    return Err(self.expected_at(argument_start, "`)` after four fields"));
                }
                positional += 1;
                positional - 1
            };
            if values[field].is_some() {
                return Err(self.error_at(
                    argument_start,
                    &format!("field `{}` given twice", FIELDS[field]),
                ));
            }
            values[field] = Some(if field % 2 == 0 {
                FieldValue::Genes(self.gene_list()?)
            } else {
                FieldValue::Indices(self.concat()?)
            });
            if !self.separator(')')? {
                break;
            }
        }
        let close = self.position;
        self.expect(')')?;
        self.skip_blank();
        if self.peek().is_some() {
            return Err(self.expected("end of input after the closing `)`"));
        }
        let [normal, normal_concat, reduce, reduce_concat] = values;
        let genes = |value: Option<FieldValue>, field: &str| match value {
            Some(FieldValue::Genes(genes)) => Ok(genes),
            _ => Err(self.error_at(close, &format!("missing field `{field}`"))),
        };
        let indices = |value: Option<FieldValue>, field: &str| match value {
            Some(FieldValue::Indices(indices)) => Ok(indices),
            _ => Err(self.error_at(close, &format!("missing field `{field}`"))),
        };
        Ok(Genotype {
            normal: genes(normal, FIELDS[0])?,
            normal_concat: indices(normal_concat, FIELDS[1])?,
            reduce: genes(reduce, FIELDS[2])?,
            reduce_concat: indices(reduce_concat, FIELDS[3])?,
        })
    }

    fn gene_list(&mut self) -> Result<Vec<Gene>, ParseError> {
        self.expect('[')?;
        let mut genes = Vec::new();
        loop {
            self.skip_blank();
            if self.peek() == Some(']') {
                break;
            }
            self.expect('(')?;
            let op = self.op_name()?;
            self.expect(',')?;
            let source = self.integer()?;
            self.skip_blank();
            if self.peek() == Some(',') {
                self.position += 1;
            }
            self.expect(')')?;
            genes.push(Gene::new(op, source));
            if !self.separator(']')? {
                break;
            }
        }
        self.expect(']')?;
        Ok(genes)
    }

    fn concat(&mut self) -> Result<Vec<usize>, ParseError> {
        self.skip_blank();
        if self.peek() == Some('[') {
            self.position += 1;
            let mut indices = Vec::new();
            loop {
                self.skip_blank();
                if self.peek() == Some(']') {
                    break;
                }
                indices.push(self.integer()?);
                if !self.separator(']')? {
                    break;
                }
            }
            self.expect(']')?;
            return Ok(indices);
        }
        let start = self.position;
        if self.identifier() != "range" {
            return Err(self.expected_at(start, "`range(` or `[`"));
        }
        self.expect('(')?;
        let first = self.integer()?;
        self.skip_blank();
        let (begin, end) = if self.peek() == Some(',') {
            self.position += 1;
            self.skip_blank();
            if self.peek() == Some(')') {
                (0, first)
            } else {
                let second = self.integer()?;
                self.skip_blank();
                if self.peek() == Some(',') {
                    self.position += 1;
                }
                (first, second)
            }
        } else {
            (0, first)
        };
        self.expect(')')?;
        Ok((begin..end).collect())
    }

    /// After an item: consumes a `,` and returns true, or returns false before `close`.
    fn separator(&mut self, close: char) -> Result<bool, ParseError> {
        self.skip_blank();
        match self.peek() {
            Some(',') => {
                self.position += 1;
                Ok(true)
            }
            Some(found) if found == close => Ok(false),
            _ => Err(self.expected(&format!("`,` or `{close}`"))),
        }
    }

    fn op_name(&mut self) -> Result<CnnOp, ParseError> {
        self.skip_blank();
        let start = self.position;
        let quote = match self.peek() {
            Some(quote @ ('\'' | '"')) => quote,
            _ => return Err(self.expected("a quoted operation name")),
        };
        self.position += 1;
        let content_start = self.position;
        let Some(length) = self.text[content_start..].find([quote, '\n']) else {
            return Err(self.error_at(start, "unterminated string"));
        };
        if !self.text[content_start + length..].starts_with(quote) {
            return Err(self.error_at(start, "unterminated string"));
        }
        let name = &self.text[content_start..content_start + length];
        self.position = content_start + length + 1;
        name.parse()
            .map_err(|error: crate::primitives::UnknownOpError| {
                self.error_at(start, &error.to_string())
            })
    }

    fn integer(&mut self) -> Result<usize, ParseError> {
        self.skip_blank();
        let start = self.position;
        let digits = self.text[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.text.len() - start);
        if digits == 0 {
            return Err(self.expected("a non-negative integer"));
        }
        let value = self.text[start..start + digits]
            .parse()
            .map_err(|_| self.error_at(start, "integer too large"))?;
        self.position = start + digits;
        Ok(value)
    }

    /// Consumes and returns an identifier (possibly empty) at the current position.
    fn identifier(&mut self) -> &'a str {
        self.skip_blank();
        let start = self.position;
        let length = self.text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.text.len() - start);
        self.position = start + length;
        &self.text[start..start + length]
    }

    fn expect(&mut self, wanted: char) -> Result<(), ParseError> {
        self.skip_blank();
        if self.peek() == Some(wanted) {
            self.position += wanted.len_utf8();
            Ok(())
        } else {
            Err(self.expected(&format!("`{wanted}`")))
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    fn peek_after_blank(&mut self) -> Option<char> {
        self.skip_blank();
        self.peek()
    }

    /// Skips whitespace and `#` comments.
    fn skip_blank(&mut self) {
        loop {
            let rest = &self.text[self.position..];
            let trimmed = rest.trim_start();
            self.position += rest.len() - trimmed.len();
            if trimmed.starts_with('#') {
                self.position += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    /// "expected ..., found ..." at the current position.
    fn expected(&self, what: &str) -> ParseError {
        self.expected_at(self.position, what)
    }

    /// "expected ..., found ..." at `position`, naming the character found there.
    fn expected_at(&self, position: usize, what: &str) -> ParseError {
        let found = match self.text[position..].chars().next() {
            Some(c) => format!("`{}`", c.escape_debug()),
            None => "end of input".to_string(),
        };
        self.error_at(position, &format!("expected {what}, found {found}"))
    }

    /// An error with `message` at byte `position`, converted to line and column.
    fn error_at(&self, position: usize, message: &str) -> ParseError {
        let before = &self.text[..position];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            line,
            column,
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn darts_v2_reference_text() -> &'static str {
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), \
         ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), \
         ('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), \
         ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), \
         ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], \
         reduce_concat=range(2, 6))"
    }

    #[test]
    fn writer_produces_the_reference_repr() {
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        assert_eq!(genotype.to_reference_text(), darts_v2_reference_text());
        assert_eq!(genotype.to_string(), darts_v2_reference_text());
    }

    #[test]
    fn non_contiguous_concat_is_written_as_a_list() {
        let text = Genotype::builtin("AmoebaNet").unwrap().to_reference_text();
        assert!(text.contains("normal_concat=range(4, 7)"), "{text}");
        assert!(text.contains("reduce_concat=[3, 4, 6]"), "{text}");
        assert!(text.contains("('conv_7x1_1x7', 0)"), "{text}");
    }

    #[test]
    fn every_builtin_is_valid_and_round_trips_through_text_and_json() {
        for name in Genotype::builtin_names() {
            let genotype = Genotype::builtin(name).unwrap();
            genotype.validate().unwrap();
            let text = genotype.to_reference_text();
            assert_eq!(
                Genotype::from_reference_text(&text).unwrap(),
                genotype,
                "{name}"
            );
            let json = genotype.to_json();
            assert_eq!(serde_json::from_str::<Genotype>(&json).unwrap(), genotype);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&json).unwrap(),
                serde_json::to_value(&genotype).unwrap()
            );
        }
    }

    #[test]
    fn builtins_match_the_original_repository() {
        let nasnet = Genotype::builtin("nasnet").unwrap();
        assert_eq!(nasnet.normal.len(), 10);
        assert_eq!(nasnet.normal_concat, [2, 3, 4, 5, 6]);
        assert_eq!(nasnet.reduce_concat, [4, 5, 6]);
        assert_eq!(nasnet.reduce[1], Gene::new(CnnOp::SepConv7x7, 0));
        assert_eq!(nasnet.reduce[6], Gene::new(CnnOp::SkipConnect, 3));
        let amoeba = Genotype::builtin("AMOEBANET").unwrap();
        assert_eq!(amoeba.normal_concat, [4, 5, 6]);
        assert_eq!(amoeba.reduce_concat, [3, 4, 6]);
        assert_eq!(amoeba.reduce[9], Gene::new(CnnOp::SepConv3x3, 5));
        let v1 = Genotype::builtin("darts_v1").unwrap();
        assert_eq!(v1.reduce[7], Gene::new(CnnOp::AvgPool3x3, 0));
        assert_eq!(
            Genotype::builtin("darts").unwrap(),
            Genotype::builtin("DARTS_V2").unwrap()
        );
        assert_ne!(v1, Genotype::builtin("DARTS_V2").unwrap());
    }

    #[test]
    fn unknown_builtin_lists_the_names() {
        let message = Genotype::builtin("ENAS").unwrap_err().to_string();
        assert!(message.contains("`ENAS`"), "{message}");
        for name in Genotype::builtin_names() {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn json_form_is_exact_and_round_trips() {
        let genotype = Genotype {
            normal: vec![
                Gene::new(CnnOp::SepConv3x3, 1),
                Gene::new(CnnOp::SkipConnect, 0),
            ],
            normal_concat: vec![2],
            reduce: vec![Gene::new(CnnOp::MaxPool3x3, 0), Gene::new(CnnOp::None, 1)],
            reduce_concat: vec![2],
        };
        let json = genotype.to_json();
        assert_eq!(
            json,
            r#"{"normal": [["sep_conv_3x3", 1], ["skip_connect", 0]], "normal_concat": [2], "reduce": [["max_pool_3x3", 0], ["none", 1]], "reduce_concat": [2]}"#
        );
        assert_eq!(serde_json::from_str::<Genotype>(&json).unwrap(), genotype);
        let error = serde_json::from_str::<Genotype>(&json.replace("none", "nothing"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`nothing`"), "{error}");
    }

    #[test]
    fn reader_accepts_lists_double_quotes_whitespace_comments_and_trailing_commas() {
        let text = "Genotype(\n  normal = [\n    (\"sep_conv_5x5\", 1),\n    ('sep_conv_3x3', 0,),\n  ],\
                    # a comment\n  normal_concat = [2,],\n  reduce = [('max_pool_3x3',0),(\"skip_connect\" , 1)],\n  \
                    reduce_concat = range( 2 , 3 ),\n)\n";
        let genotype = Genotype::from_reference_text(text).unwrap();
        assert_eq!(
            genotype.normal,
            [
                Gene::new(CnnOp::SepConv5x5, 1),
                Gene::new(CnnOp::SepConv3x3, 0)
            ]
        );
        assert_eq!(genotype.normal_concat, [2]);
        assert_eq!(genotype.reduce_concat, [2]);
        genotype.validate().unwrap();
    }

    #[test]
    fn reader_accepts_positional_fields_and_single_argument_range() {
        let text = "Genotype([('skip_connect', 0), ('skip_connect', 1)], range(2, 3), \
                    reduce=[('avg_pool_3x3', 1), ('sep_conv_7x7', 0)], reduce_concat=range(3))";
        let genotype: Genotype = text.parse().unwrap();
        assert_eq!(genotype.normal_concat, [2]);
        assert_eq!(genotype.reduce_concat, [0, 1, 2]);
        assert_eq!(genotype.reduce[1].op, CnnOp::SepConv7x7);
    }

    #[test]
    fn parser_errors_carry_line_column_and_expectation() {
        let text = "Genotype(normal=[('sep_conv_3x3', 1)\n   ('sep_conv_3x3', 0)], normal_concat=range(2, 3), reduce=[], reduce_concat=[])";
        let error = Genotype::from_reference_text(text).unwrap_err();
        assert_eq!((error.line, error.column), (2, 4));
        assert!(error.message.contains("expected `,` or `]`"), "{error}");
        assert!(
            error.to_string().starts_with("line 2, column 4: "),
            "{error}"
        );

        let error = Genotype::from_reference_text("Genotype(normal=[]").unwrap_err();
        assert_eq!((error.line, error.column), (1, 19));
        assert!(error.message.contains("end of input"), "{error}");

        let error = Genotype::from_reference_text("genotype()").unwrap_err();
        assert_eq!((error.line, error.column), (1, 1));
        assert!(error.message.contains("`Genotype(`"), "{error}");

        let error = Genotype::from_reference_text(
            "Genotype(normal=[], normal_concat=[], reduce=[], reduce_concat=[]) extra",
        )
        .unwrap_err();
        assert!(error.message.contains("end of input"), "{error}");
        assert_eq!(error.column, 68);
    }

    #[test]
    fn parser_names_an_unknown_op_at_its_position() {
        let text = "Genotype(normal=[\n  ('sep_conv_9x9', 1)], normal_concat=[], reduce=[], reduce_concat=[])";
        let error = Genotype::from_reference_text(text).unwrap_err();
        assert_eq!((error.line, error.column), (2, 4));
        assert!(error.message.contains("`sep_conv_9x9`"), "{error}");
        assert!(error.message.contains("dil_conv_5x5"), "{error}");
    }

    #[test]
    fn parser_reports_missing_unknown_and_repeated_fields() {
        let missing =
            Genotype::from_reference_text("Genotype(normal=[], normal_concat=[], reduce=[])")
                .unwrap_err();
        assert!(
            missing.message.contains("missing field `reduce_concat`"),
            "{missing}"
        );
        let unknown = Genotype::from_reference_text("Genotype(normals=[])").unwrap_err();
        assert!(
            unknown.message.contains("unknown field `normals`"),
            "{unknown}"
        );
        assert_eq!(unknown.column, 10);
        let twice = Genotype::from_reference_text("Genotype(normal=[], normal=[])").unwrap_err();
        assert!(twice.message.contains("given twice"), "{twice}");
        let unterminated =
            Genotype::from_reference_text("Genotype(normal=[('skip_connect, 0)])").unwrap_err();
        assert!(
            unterminated.message.contains("unterminated"),
            "{unterminated}"
        );
    }

    #[test]
    fn validation_rejects_bad_structure() {
        let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
        genotype.normal[2].source = 3;
        let error = genotype.validate().unwrap_err();
        assert!(
            matches!(
                error,
                ValidationError::SourceOutOfRange {
                    cell: "normal",
                    gene: 2,
                    source_state: 3,
                    node: 1,
                    max_source: 2,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("normal cell, gene 2"), "{error}");

        let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
        genotype.reduce.pop();
        assert!(matches!(
            genotype.validate(),
            Err(ValidationError::GeneCount {
                cell: "reduce",
                count: 7
            })
        ));

        let mut genotype = Genotype::builtin("DARTS_V2").unwrap();
        genotype.reduce_concat = vec![2, 6];
        assert!(matches!(
            genotype.validate(),
            Err(ValidationError::ConcatOutOfRange {
                cell: "reduce",
                index: 6,
                max: 5
            })
        ));
        genotype.reduce_concat = vec![3, 3];
        assert!(matches!(
            genotype.validate(),
            Err(ValidationError::DuplicateConcat { index: 3, .. })
        ));
        genotype.reduce_concat = vec![];
        assert!(matches!(
            genotype.validate(),
            Err(ValidationError::EmptyConcat { cell: "reduce" })
        ));
    }

    #[test]
    fn load_detects_the_format_and_names_the_file_in_errors() {
        let directory = tempfile::tempdir().unwrap();
        let genotype = Genotype::builtin("NASNet").unwrap();

        let json_path = directory.path().join("genotype.json");
        genotype.save_json(&json_path).unwrap();
        assert_eq!(Genotype::load(&json_path).unwrap(), genotype);

        let text_path = directory.path().join("genotype.txt");
        std::fs::write(&text_path, format!("{genotype}\n")).unwrap();
        assert_eq!(Genotype::load(&text_path).unwrap(), genotype);

        let bad_text = directory.path().join("bad.txt");
        std::fs::write(&bad_text, "Genotype(normal=[('conv_1x1', 0)])").unwrap();
        let message = Genotype::load(&bad_text).unwrap_err().to_string();
        assert!(
            message.contains("bad.txt") && message.contains("`conv_1x1`"),
            "{message}"
        );
        assert!(message.contains("line 1, column 19"), "{message}");

        let bad_json = directory.path().join("bad.json");
        std::fs::write(&bad_json, r#"{"normal": [["skip_connect"]]}"#).unwrap();
        let message = Genotype::load(&bad_json).unwrap_err().to_string();
        assert!(
            message.contains("bad.json") && message.contains("line 1"),
            "{message}"
        );

        let invalid = directory.path().join("invalid.json");
        let mut broken = genotype.clone();
        broken.normal_concat = vec![9];
        broken.save_json(&invalid).unwrap();
        let message = Genotype::load(&invalid).unwrap_err().to_string();
        assert!(
            message.contains("invalid.json") && message.contains("normal_concat contains 9"),
            "{message}"
        );

        let missing = directory.path().join("missing.txt");
        let message = Genotype::load(&missing).unwrap_err().to_string();
        assert!(message.contains("missing.txt"), "{message}");
    }

    #[test]
    fn state_labels_name_inputs_and_nodes() {
        assert_eq!(state_label(0), "c_{k-2}");
        assert_eq!(state_label(1), "c_{k-1}");
        assert_eq!(state_label(5), "node 3");
    }
}
