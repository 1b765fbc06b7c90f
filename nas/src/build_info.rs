//! What this binary was built from and against: the project version, the git commit, and the
//! libtorch variant `scripts/setup.sh` recorded (embedded by the build script).

use prime_core::gpu::TorchBuild;

/// The project version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from, or "unknown" (a source archive).
pub const GIT_COMMIT: &str = env!("PRIME_GIT_COMMIT");
/// The torch build variant (`cu130`, `cu126`, `cpu`, `site`) or "unknown".
const TORCH_VARIANT: &str = env!("PRIME_TORCH_VARIANT");
/// The torch version, e.g. `2.11.0+cu130`, or "unknown".
const TORCH_VERSION: &str = env!("PRIME_TORCH_VERSION");
/// The CUDA architectures of the torch build, space-separated; empty when unknown.
const TORCH_ARCH_LIST: &str = env!("PRIME_TORCH_ARCH_LIST");

/// The libtorch this binary links.
pub fn torch_build() -> TorchBuild {
    TorchBuild {
        variant: TORCH_VARIANT.to_string(),
        version: TORCH_VERSION.to_string(),
        arch_list: TORCH_ARCH_LIST
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    }
}

/// The `--version` text of the binaries: version, commit and torch build.
pub fn version_text() -> String {
    let commit = GIT_COMMIT.get(..12).unwrap_or(GIT_COMMIT);
    format!("{VERSION} (commit {commit}, torch {TORCH_VERSION}, variant {TORCH_VARIANT})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_names_the_torch_variant() {
        let text = version_text();
        assert!(text.starts_with(VERSION), "{text}");
        assert!(text.contains(&format!("variant {TORCH_VARIANT}")), "{text}");
        let build = torch_build();
        assert!(!build.variant.is_empty());
        assert!(build.arch_list.iter().all(|flag| !flag.contains(' ')));
    }
}
