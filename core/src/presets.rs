//! Names of the method presets in `configs/methods/` (one per method row of the paper).

/// Every method preset, in the order of the paper's Tables 1 and S1.
pub const METHOD_NAMES: [&str; 11] = [
    "darts",
    "cs10",
    "fimt",
    "pr",
    "darts-prime",
    "crb",
    "fimt-crb",
    "prime-crb",
    "admm",
    "admm-fimt",
    "admm-fimt-crb",
];

/// Whether `name` is a method preset.
pub fn is_method(name: &str) -> bool {
    METHOD_NAMES.contains(&name)
}
