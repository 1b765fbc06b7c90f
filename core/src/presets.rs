//! The method presets of `configs/methods/` (one per method row of the paper's Tables 1 and
//! S1), compiled into the binaries so that `--method NAME` works from any directory.

use crate::config::{ConfigError, LayeredConfig, SearchConfig};
pub use crate::methods::{is_method, METHOD_NAMES};

/// Every method preset, in the order of the paper's Tables 1 and S1, with its TOML text.
const PRESETS: [(&str, &str); 11] = [
    ("darts", include_str!("../../configs/methods/darts.toml")),
    ("cs10", include_str!("../../configs/methods/cs10.toml")),
    ("fimt", include_str!("../../configs/methods/fimt.toml")),
    ("pr", include_str!("../../configs/methods/pr.toml")),
    (
        "darts-prime",
        include_str!("../../configs/methods/darts-prime.toml"),
    ),
    ("crb", include_str!("../../configs/methods/crb.toml")),
    (
        "fimt-crb",
        include_str!("../../configs/methods/fimt-crb.toml"),
    ),
    (
        "prime-crb",
        include_str!("../../configs/methods/prime-crb.toml"),
    ),
    ("admm", include_str!("../../configs/methods/admm.toml")),
    (
        "admm-fimt",
        include_str!("../../configs/methods/admm-fimt.toml"),
    ),
    (
        "admm-fimt-crb",
        include_str!("../../configs/methods/admm-fimt-crb.toml"),
    ),
];

/// The TOML text of preset `name`.
pub fn method_text(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(preset, _)| *preset == name)
        .map(|(_, text)| *text)
}

/// The search config of preset `name` with `overrides` applied; an unknown name lists the
/// presets.
pub fn method_config(name: &str, overrides: &[String]) -> Result<SearchConfig, ConfigError> {
    let text = method_text(name).ok_or_else(|| {
        ConfigError::invalid(
            "--method",
            "method",
            format!(
                "unknown method preset `{name}`; expected one of {}",
                METHOD_NAMES.join(", ")
            ),
        )
    })?;
    SearchConfig::from_toml(text, &format!("configs/methods/{name}.toml"), overrides)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RegularizerKind, ScheduleKind};
    use crate::primitives::Activation;

    #[test]
    fn every_preset_parses_and_names_itself() {
        assert_eq!(PRESETS.map(|(name, _)| name), METHOD_NAMES);
        for name in METHOD_NAMES {
            let config = method_config(name, &[]).unwrap();
            assert_eq!(config.method, name);
        }
    }

    #[test]
    fn darts_prime_is_fimt_plus_prox_on_the_dynamic_split() {
        let config = method_config("darts-prime", &[]).unwrap();
        assert_eq!(config.schedule.kind, ScheduleKind::Fimt);
        assert_eq!(config.schedule.ratio, 10);
        assert_eq!(config.regularizer.kind, RegularizerKind::Prox);
        assert!(config.data.dynamic_split);
        let crb = method_config("prime-crb", &[]).unwrap();
        assert_eq!(crb.arch.activation, Activation::Crb);
        assert_eq!(crb.arch.weight_decay, 0.0);
    }

    #[test]
    fn unknown_preset_lists_the_names() {
        let error = method_config("dartz", &[]).unwrap_err().to_string();
        assert!(error.contains("unknown method preset `dartz`"), "{error}");
        assert!(error.contains("darts-prime"), "{error}");
    }
}
