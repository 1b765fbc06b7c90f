//! GPUs as a worker reports them, and whether a libtorch build can run one: the decision that
//! refuses a GPU at start-up (with the `scripts/setup.sh --torch ...` that fixes it) instead of
//! failing a trial with "no kernel image is available" an hour later.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest GPU name or driver version kept; NVML's own buffers are 96 and 80 bytes.
pub const MAX_GPU_TEXT: usize = 96;
/// The most GPUs one worker reports (an 8- or 16-GPU node, with room to spare).
pub const MAX_GPUS: usize = 64;

/// A CUDA compute capability, such as 7.0 (V100) or 9.0 (H100, H200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ComputeCapability {
    /// The major version (architecture generation).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl ComputeCapability {
    /// The capability of an architecture flag such as `sm_70`, `sm_90a` or `sm_120`; `None` for
    /// anything else (`compute_90` PTX entries included).
    pub fn from_arch_flag(flag: &str) -> Option<Self> {
        let digits: String = flag
            .strip_prefix("sm_")?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.len() < 2 || digits.len() > 3 {
            return None;
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One GPU of a worker: what it is, and its state at the last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// The GPU's index as `--gpu N` and CUDA name it.
    pub index: u32,
    /// Its model name, e.g. "NVIDIA H200".
    pub name: String,
    /// Its compute capability.
    pub capability: ComputeCapability,
    /// Memory in bytes.
    pub memory_total_bytes: u64,
    /// Free memory in bytes at the last report.
    pub memory_free_bytes: u64,
    /// The NVIDIA driver version.
    pub driver_version: String,
    /// GPU utilisation in percent at the last report (0 to 100).
    pub utilization_percent: u32,
    /// Temperature in degrees Celsius at the last report.
    pub temperature_celsius: u32,
}

/// The libtorch a binary was built against, as `scripts/setup.sh` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorchBuild {
    /// The build variant: `cu130`, `cu126`, `cpu`, `site` or `unknown`.
    pub variant: String,
    /// Its full version, e.g. `2.11.0+cu130`.
    pub version: String,
    /// The architecture flags it carries kernels for (`sm_75 sm_80 ...`); empty when unknown
    /// (a site libtorch) or for a CPU build.
    pub arch_list: Vec<String>,
}

/// What a worker reports about its hardware: the torch build it runs and its GPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerHardware {
    /// The torch build variant (`cu130`, `cu126`, `cpu`, `site`, `unknown`).
    pub torch_variant: String,
    /// The torch version, e.g. `2.11.0+cu130`.
    pub torch_version: String,
    /// Its GPUs (empty on a machine without the NVIDIA driver).
    pub gpus: Vec<GpuInfo>,
}

/// Why a GPU cannot run with this libtorch build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRefusal(pub String);

impl fmt::Display for GpuRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuRefusal {}

/// The capability below which only the cu126 build has kernels (Volta and older).
const CU130_LOWEST: ComputeCapability = ComputeCapability { major: 7, minor: 5 };

/// Whether `build` can run a GPU of `capability` named `gpu_name` (index `index`): it can when
/// its arch list holds an `sm_` flag of the same major version and no higher minor (CUDA binary
/// compatibility within an architecture). A build with an unknown arch list (a site libtorch) is
/// not refused here; the start-up kernel decides.
pub fn check_runnable(
    index: u32,
    gpu_name: &str,
    capability: ComputeCapability,
    build: &TorchBuild,
) -> Result<(), GpuRefusal> {
    if build.variant == "cpu" {
        return Err(GpuRefusal(format!(
            "GPU {index} ({gpu_name}, compute capability {capability}) cannot be used: this \
             binary was built against the CPU-only libtorch {}; run `scripts/setup.sh --torch {}` \
             and rebuild",
            build.version,
            fixing_variant(capability)
        )));
    }
    if build.arch_list.is_empty() {
        return Ok(());
    }
    let runnable = build
        .arch_list
        .iter()
        .filter_map(|flag| ComputeCapability::from_arch_flag(flag))
        .any(|arch| arch.major == capability.major && arch.minor <= capability.minor);
    if runnable {
        return Ok(());
    }
    Err(GpuRefusal(format!(
        "GPU {index} ({gpu_name}, compute capability {capability}) cannot run this libtorch: \
         the {} build ({}) carries kernels for {} only; run `scripts/setup.sh --torch {}` and \
         rebuild",
        build.variant,
        build.version,
        build.arch_list.join(" "),
        fixing_variant(capability)
    )))
}

/// The `setup.sh --torch` variant whose kernels cover `capability`.
fn fixing_variant(capability: ComputeCapability) -> &'static str {
    if capability < CU130_LOWEST {
        "cu126"
    } else {
        "cu130"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(variant: &str, arch: &str) -> TorchBuild {
        TorchBuild {
            variant: variant.to_string(),
            version: format!("2.11.0+{variant}"),
            arch_list: arch.split_whitespace().map(str::to_string).collect(),
        }
    }

    const CU130: &str = "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120";
    const CU126: &str = "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90";
    const V100: ComputeCapability = ComputeCapability { major: 7, minor: 0 };
    const H200: ComputeCapability = ComputeCapability { major: 9, minor: 0 };

    #[test]
    fn arch_flags_parse_to_capabilities() {
        let parse = ComputeCapability::from_arch_flag;
        assert_eq!(parse("sm_70"), Some(V100));
        assert_eq!(parse("sm_90a"), Some(H200));
        assert_eq!(
            parse("sm_120"),
            Some(ComputeCapability {
                major: 12,
                minor: 0
            })
        );
        assert_eq!(parse("compute_90"), None);
        assert_eq!(parse("sm_x"), None);
        assert_eq!(parse("sm_1234"), None);
    }

    #[test]
    fn a_v100_is_refused_by_cu130_with_the_fix() {
        let error = check_runnable(0, "Tesla V100-SXM2-16GB", V100, &build("cu130", CU130))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "GPU 0 (Tesla V100-SXM2-16GB, compute capability 7.0) cannot run this libtorch: the \
             cu130 build (2.11.0+cu130) carries kernels for sm_75 sm_80 sm_86 sm_90 sm_100 \
             sm_120 only; run `scripts/setup.sh --torch cu126` and rebuild"
        );
        assert!(check_runnable(0, "Tesla V100", V100, &build("cu126", CU126)).is_ok());
    }

    #[test]
    fn newer_minors_run_older_kernels_of_their_major_only() {
        let a10 = ComputeCapability { major: 8, minor: 6 };
        let l4 = ComputeCapability { major: 8, minor: 9 };
        assert!(check_runnable(1, "NVIDIA H200", H200, &build("cu130", CU130)).is_ok());
        assert!(check_runnable(1, "NVIDIA L4", l4, &build("cu130", CU130)).is_ok());
        assert!(check_runnable(1, "NVIDIA A10", a10, &build("cu126", CU126)).is_ok());
        let blackwell = ComputeCapability {
            major: 10,
            minor: 0,
        };
        let error = check_runnable(2, "NVIDIA B200", blackwell, &build("cu126", CU126))
            .unwrap_err()
            .to_string();
        assert!(error.contains("--torch cu130"), "{error}");
    }

    #[test]
    fn cpu_builds_are_refused_and_unknown_arch_lists_pass() {
        let error = check_runnable(0, "NVIDIA H200", H200, &build("cpu", ""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("CPU-only libtorch"), "{error}");
        assert!(error.contains("--torch cu130"), "{error}");
        assert!(check_runnable(0, "NVIDIA H200", H200, &build("site", "")).is_ok());
    }
}
