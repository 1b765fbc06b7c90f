//! The names of the paper's methods (the method rows of Tables 1 and S1), which label run
//! directories, results and figures. The presets that configure them are in
//! [`crate::presets`].

/// Every method preset name, in table order.
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
