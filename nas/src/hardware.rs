//! The machine a run executes on: the CPU model and the kernel level libtorch picks for it, and
//! the GPUs NVML reports. NVML is loaded at run time: without the NVIDIA driver there are no
//! GPUs, not an error.

use crate::build_info::torch_build;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use prime_core::gpu::{
    check_runnable, ComputeCapability, GpuInfo, GpuRefusal, MAX_GPUS, MAX_GPU_TEXT,
};
use tch::{Device, Kind, Tensor};

/// The CPU kernel levels of libtorch on x86-64, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelLevel {
    /// Scalar kernels (`ATEN_CPU_CAPABILITY=default`, or a CPU without AVX2).
    Default,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, BW, VL, DQ).
    Avx512,
}

impl KernelLevel {
    /// The name `ATEN_CPU_CAPABILITY` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The highest level this CPU supports.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq");
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx512 {
                return Self::Avx512;
            }
            if avx2 {
                return Self::Avx2;
            }
        }
        Self::Default
    }

    /// The level libtorch runs at: `requested` (`ATEN_CPU_CAPABILITY`) when the CPU supports
    /// it, else the detected one, as libtorch's dispatcher decides.
    pub fn effective(requested: Option<&str>, detected: Self) -> Self {
        let requested = match requested.map(|text| text.trim().to_ascii_lowercase()) {
            Some(text) if text == "default" => Self::Default,
            Some(text) if text == "avx2" => Self::Avx2,
            Some(text) if text == "avx512" => Self::Avx512,
            _ => return detected,
        };
        if requested <= detected {
            requested
        } else {
            detected
        }
    }

    /// The level of this process.
    pub fn current() -> Self {
        Self::effective(
            std::env::var("ATEN_CPU_CAPABILITY").ok().as_deref(),
            Self::detected(),
        )
    }
}

/// The CPU's model name from `/proc/cpuinfo`, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| model_name(&text))
        .unwrap_or_else(|| "unknown".to_string())
}

fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| clip(value.trim()))
    })
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_GPU_TEXT).collect()
}

/// The GPUs of this machine through NVML; empty where NVML cannot be loaded (no driver).
pub struct GpuInventory {
    nvml: Option<Nvml>,
}

impl std::fmt::Debug for GpuInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuInventory")
            .field("nvml", &self.nvml.is_some())
            .finish()
    }
}

impl GpuInventory {
    /// Loads NVML when the driver provides it.
    pub fn open() -> Self {
        let nvml = match Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(error) => {
                tracing::debug!("NVML not available, no GPUs reported: {error}");
                None
            }
        };
        Self { nvml }
    }

    /// Every GPU with its current free memory, utilisation and temperature. A GPU NVML cannot
    /// describe is left out with a warning.
    pub fn snapshot(&self) -> Vec<GpuInfo> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let driver = nvml
            .sys_driver_version()
            .map(|text| clip(&text))
            .unwrap_or_else(|_| "unknown".to_string());
        let count = nvml.device_count().unwrap_or(0).min(MAX_GPUS as u32);
        (0..count)
            .filter_map(|index| match describe(nvml, index, &driver) {
                Ok(info) => Some(info),
                Err(error) => {
                    tracing::warn!("GPU {index}: NVML cannot describe it: {error}");
                    None
                }
            })
            .collect()
    }
}

fn describe(
    nvml: &Nvml,
    index: u32,
    driver: &str,
) -> Result<GpuInfo, nvml_wrapper::error::NvmlError> {
    let device = nvml.device_by_index(index)?;
    let capability = device.cuda_compute_capability()?;
    let memory = device.memory_info()?;
    Ok(GpuInfo {
        index,
        name: clip(&device.name()?),
        capability: ComputeCapability {
            major: u32::try_from(capability.major).unwrap_or(0),
            minor: u32::try_from(capability.minor).unwrap_or(0),
        },
        memory_total_bytes: memory.total,
        memory_free_bytes: memory.free,
        driver_version: driver.to_string(),
        utilization_percent: device
            .utilization_rates()
            .map(|rates| rates.gpu.min(100))
            .unwrap_or(0),
        temperature_celsius: device.temperature(TemperatureSensor::Gpu).unwrap_or(0),
    })
}

/// The start-up check of a `--gpu N` / `--device cuda:N`: the GPU must be one this libtorch
/// has kernels for (by its compute capability, when NVML describes it in `gpus`), visible to
/// libtorch, and run one tiny kernel. The refusal names the GPU, its capability, the build's
/// capabilities and the `scripts/setup.sh --torch ...` that fixes it.
pub fn check_cuda_device(index: usize, gpus: &[GpuInfo]) -> Result<(), GpuRefusal> {
    let build = torch_build();
    let gpu = gpus.iter().find(|gpu| gpu.index as usize == index);
    if let Some(gpu) = gpu {
        check_runnable(gpu.index, &gpu.name, gpu.capability, &build)?;
    }
    let visible = if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    };
    if index >= visible {
        return Err(GpuRefusal(format!(
            "GPU {index}: libtorch {} ({}) sees {visible} CUDA device(s) on this machine",
            build.version, build.variant
        )));
    }
    tiny_kernel(index).map_err(|error| {
        let described = gpu.map_or_else(String::new, |gpu| {
            format!(" ({}, compute capability {})", gpu.name, gpu.capability)
        });
        let arch = if build.arch_list.is_empty() {
            "an unrecorded list of architectures".to_string()
        } else {
            build.arch_list.join(" ")
        };
        GpuRefusal(format!(
            "GPU {index}{described}: a first kernel through libtorch failed ({error}); the {} \
             build ({}) carries kernels for {arch}; `scripts/setup.sh --torch cu126` (Volta and \
             older) or `--torch cu130` (compute capability 7.5 and newer) installs one that runs it",
            build.variant, build.version
        ))
    })
}

/// One small computation on `cuda:index`, read back to the host.
fn tiny_kernel(index: usize) -> Result<(), tch::TchError> {
    let device = Device::Cuda(index);
    let ones = Tensor::f_ones([64], (Kind::Float, device))?;
    let sum = ones.f_mul_scalar(2.0)?.f_sum(Kind::Float)?;
    let value = sum.f_to_device(Device::Cpu)?.f_double_value(&[])?;
    if value != 128.0 {
        return Err(tch::TchError::Kind(format!(
            "2 x 64 ones summed to {value}, not 128"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_level_is_the_request_capped_by_the_cpu() {
        use KernelLevel::*;
        assert_eq!(KernelLevel::effective(Some("avx2"), Avx512), Avx2);
        assert_eq!(KernelLevel::effective(Some("AVX512"), Avx2), Avx2);
        assert_eq!(KernelLevel::effective(Some("default"), Avx2), Default);
        assert_eq!(KernelLevel::effective(None, Avx512), Avx512);
        assert_eq!(KernelLevel::effective(Some("sse9"), Avx2), Avx2);
        assert_eq!(Avx512.name(), "avx512");
    }

    #[test]
    fn the_cpu_model_comes_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(model_name(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(model_name("processor : 0\n"), None);
    }

    #[test]
    fn a_gpu_the_build_cannot_run_is_refused_before_any_kernel() {
        let volta = GpuInfo {
            index: 0,
            name: "Tesla V100-SXM2-16GB".to_string(),
            capability: ComputeCapability { major: 7, minor: 0 },
            memory_total_bytes: 16 << 30,
            memory_free_bytes: 16 << 30,
            driver_version: "535.0".to_string(),
            utilization_percent: 0,
            temperature_celsius: 30,
        };
        let build = torch_build();
        let error = check_cuda_device(0, &[volta]).unwrap_err().to_string();
        let build_runs_volta =
            build.arch_list.is_empty() || build.arch_list.iter().any(|flag| flag == "sm_70");
        if !build_runs_volta {
            assert!(
                error.contains("GPU 0 (Tesla V100-SXM2-16GB, compute capability 7.0)"),
                "{error}"
            );
            assert!(error.contains("scripts/setup.sh --torch cu126"), "{error}");
        }
        if !tch::Cuda::is_available() {
            let error = check_cuda_device(3, &[]).unwrap_err().to_string();
            assert!(error.contains("sees 0 CUDA device"), "{error}");
        }
    }

    #[test]
    fn a_machine_without_the_driver_has_no_gpus() {
        let inventory = GpuInventory::open();
        let gpus = inventory.snapshot();
        if inventory.nvml.is_none() {
            assert!(gpus.is_empty());
        }
        assert!(gpus.iter().all(|gpu| gpu.name.len() <= MAX_GPU_TEXT));
    }
}
