//! Genotypes as runs meet them: the `genotype.json` / `genotype.txt` pair of a run directory,
//! and the argument that names an evaluation's genotype (a run directory, a file or a
//! built-in), for CNN and recurrent genotypes alike.

use super::files::write_text;
use super::layout::{GENOTYPE_JSON, GENOTYPE_TEXT};
use crate::error::RunError;
use prime_core::genotype::Genotype;
use prime_core::genotype::RnnGenotype;
use std::fmt::Display;
use std::path::Path;

/// A genotype type that runs read and write.
pub trait RunGenotype: Sized {
    /// Names the kind in messages ("", "recurrent ").
    const KIND: &'static str;
    /// The one-line JSON form.
    fn json(&self) -> String;
    /// The reference's Python text form.
    fn reference_text(&self) -> String;
    /// Reads a JSON or reference-text genotype file.
    fn load(path: &Path) -> Result<Self, impl Display>;
    /// A built-in genotype by name (case-insensitive).
    fn builtin(name: &str) -> Option<Self>;
    /// The names of the built-ins, as they are spelled.
    fn builtin_names() -> &'static [&'static str];
}

impl RunGenotype for Genotype {
    const KIND: &'static str = "";

    fn json(&self) -> String {
        self.to_json()
    }

    fn reference_text(&self) -> String {
        self.to_reference_text()
    }

    fn load(path: &Path) -> Result<Self, impl Display> {
        Genotype::load(path)
    }

    fn builtin(name: &str) -> Option<Self> {
        Genotype::builtin(name).ok()
    }

    fn builtin_names() -> &'static [&'static str] {
        Genotype::builtin_names()
    }
}

impl RunGenotype for RnnGenotype {
    const KIND: &'static str = "recurrent ";

    fn json(&self) -> String {
        self.to_json()
    }

    fn reference_text(&self) -> String {
        self.to_reference_text()
    }

    fn load(path: &Path) -> Result<Self, impl Display> {
        RnnGenotype::load(path)
    }

    fn builtin(name: &str) -> Option<Self> {
        RnnGenotype::builtin(name).ok()
    }

    fn builtin_names() -> &'static [&'static str] {
        RnnGenotype::builtin_names()
    }
}

/// Writes `genotype.json` and `genotype.txt` into `run_dir`.
pub fn write_genotype(run_dir: &Path, genotype: &impl RunGenotype) -> Result<(), RunError> {
    write_text(&run_dir.join(GENOTYPE_JSON), &(genotype.json() + "\n"))?;
    write_text(
        &run_dir.join(GENOTYPE_TEXT),
        &(genotype.reference_text() + "\n"),
    )
}

/// Loads the genotype an argument names: a run directory (its `genotype.json`, else its
/// `genotype.txt`), a genotype file (JSON or reference text), or a built-in name. Returns the
/// genotype and a label for records (the directory or file stem, or the built-in's name).
pub fn resolve_genotype<G: RunGenotype>(argument: &str) -> Result<(G, String), RunError> {
    let path = Path::new(argument);
    let stem = |path: &Path| {
        path.file_stem()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| argument.to_string())
    };
    let load = |file: &Path| G::load(file).map_err(|error| RunError::Genotype(error.to_string()));
    if path.is_dir() {
        let file = [GENOTYPE_JSON, GENOTYPE_TEXT]
            .iter()
            .map(|name| path.join(name))
            .find(|file| file.is_file())
            .ok_or_else(|| {
                RunError::Genotype(format!(
                    "{}: no {GENOTYPE_JSON} or {GENOTYPE_TEXT} in this directory (is it a \
                     search run directory?)",
                    path.display()
                ))
            })?;
        return Ok((load(&file)?, stem(path)));
    }
    if path.is_file() {
        return Ok((load(path)?, stem(path)));
    }
    let genotype = G::builtin(argument).ok_or_else(|| {
        RunError::Genotype(format!(
            "`{argument}` is neither a run directory, a genotype file nor a built-in {}genotype \
             (built-ins: {})",
            G::KIND,
            G::builtin_names().join(", ")
        ))
    })?;
    let label = G::builtin_names()
        .iter()
        .find(|name| name.eq_ignore_ascii_case(argument))
        .map_or_else(|| argument.to_string(), |name| name.to_string());
    Ok((genotype, label))
}
