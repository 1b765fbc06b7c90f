//! The reproducibility manifest of a run directory (`manifest.json`): what the run was built
//! from, what it ran on, and what it read. Resuming is bitwise only on the same kernels: the
//! same torch build, CPU kernel level, intra-op thread count, device, GPU model and cuDNN. A
//! resume on other kernels is recorded here (and in the log and metrics) and continues.

use crate::build_info;
use crate::checkpoint::annotate;
use crate::error::RunError;
use crate::hardware::{cpu_model, GpuInventory, KernelLevel};
use prime_core::gpu::TorchBuild;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

/// The manifest's file name in the run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The machine and kernels a run (or a resumed part of it) executed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The libtorch build.
    pub torch: TorchBuild,
    /// The CPU's model name.
    pub cpu_model: String,
    /// libtorch's CPU kernel level (`default`, `avx2`, `avx512`).
    pub cpu_kernel_level: String,
    /// libtorch's intra-op threads.
    pub threads: i32,
    /// The device tensors lived on (`cpu`, `cuda:N`).
    pub device: String,
    /// The GPU's model name, for CUDA runs (when NVML reports it).
    pub gpu_model: Option<String>,
    /// The NVIDIA driver version, for CUDA runs.
    pub gpu_driver: Option<String>,
    /// The cuDNN version libtorch loaded, for CUDA runs.
    pub cudnn_version: Option<i64>,
    /// Whether cuDNN is enabled (libtorch's `user_enabled_cudnn`), for CUDA runs.
    pub cudnn_enabled: Option<bool>,
    /// cuDNN's benchmark mode as the run set it, for CUDA runs (absent when nothing set it:
    /// libtorch's default, off).
    pub cudnn_benchmark: Option<bool>,
    /// cuDNN's deterministic mode, for CUDA runs ([`crate::cudnn::DETERMINISTIC`]).
    pub cudnn_deterministic: Option<bool>,
    /// Data-parallel ranks (one per device; `device` is rank 0's). Absent in manifests
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
    /// The back-end of the data-parallel ranks' collectives (`cpu`, `nccl 2.28.9`); absent
    /// on one device and in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collectives: Option<String>,
}

impl Machine {
    /// This process on `device`, rank 0 of `ranks` data-parallel ranks (1 on one device).
    pub fn current(device: Device, ranks: usize) -> Self {
        let (device_name, gpu) = match device {
            Device::Cuda(index) => {
                let gpu = GpuInventory::open()
                    .snapshot()
                    .into_iter()
                    .find(|gpu| gpu.index as usize == index);
                (format!("cuda:{index}"), gpu)
            }
            other => (format!("{other:?}").to_ascii_lowercase(), None),
        };
        let cuda = matches!(device, Device::Cuda(_));
        Self {
            torch: build_info::torch_build(),
            cpu_model: cpu_model(),
            cpu_kernel_level: KernelLevel::current().name().to_string(),
            threads: tch::get_num_threads(),
            device: device_name,
            gpu_model: gpu.as_ref().map(|gpu| gpu.name.clone()),
            gpu_driver: gpu.map(|gpu| gpu.driver_version),
            cudnn_version: cuda.then(tch::utils::version_cudnn),
            cudnn_enabled: cuda.then(tch::Cuda::user_enabled_cudnn),
            cudnn_benchmark: crate::cudnn::benchmark().filter(|_| cuda),
            cudnn_deterministic: cuda.then_some(crate::cudnn::DETERMINISTIC),
            ranks: Some(ranks),
            collectives: None,
        }
    }

    /// What differs from `earlier` in the kernels the floats depend on, as `what old -> new`;
    /// empty when a resume continues bitwise. The CPU kernel level reads plainly
    /// (`avx512 -> avx2`); a CPU model alone does not change the kernels. Another number of
    /// data-parallel ranks counts too: each rank's share of a batch is normalised on its own
    /// and the gradients are summed in another order (unknown in older manifests: no
    /// difference); so does another back-end of the ranks' collectives (another order of
    /// summation).
    pub fn kernel_differences(&self, earlier: &Machine) -> Vec<String> {
        let mut differences = Vec::new();
        if self.cpu_kernel_level != earlier.cpu_kernel_level {
            differences.push(format!(
                "{} -> {}",
                earlier.cpu_kernel_level, self.cpu_kernel_level
            ));
        }
        let mut compare = |what: &str, old: String, new: String| {
            if old != new {
                differences.push(format!("{what} {old} -> {new}"));
            }
        };
        compare(
            "torch",
            format!("{} ({})", earlier.torch.version, earlier.torch.variant),
            format!("{} ({})", self.torch.version, self.torch.variant),
        );
        compare(
            "threads",
            earlier.threads.to_string(),
            self.threads.to_string(),
        );
        compare("device", earlier.device.clone(), self.device.clone());
        if let (Some(old), Some(new)) = (earlier.ranks, self.ranks) {
            compare("data-parallel ranks", old.to_string(), new.to_string());
        }
        if let (Some(old), Some(new)) = (&earlier.collectives, &self.collectives) {
            compare("collectives", old.clone(), new.clone());
        }
        let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".to_string());
        compare("GPU", text(&earlier.gpu_model), text(&self.gpu_model));
        let number =
            |value: Option<i64>| value.map_or_else(|| "none".to_string(), |v| v.to_string());
        compare(
            "cuDNN",
            number(earlier.cudnn_version),
            number(self.cudnn_version),
        );
        let flag =
            |value: Option<bool>| value.map_or_else(|| "unset".to_string(), |v| v.to_string());
        compare(
            "cuDNN benchmark",
            flag(earlier.cudnn_benchmark),
            flag(self.cudnn_benchmark),
        );
        differences
    }
}

/// One resume of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The epoch the run resumed at.
    pub epoch: u32,
    /// Weight steps done before the resume.
    pub global_step: u64,
    /// The machine it resumed on.
    pub machine: Machine,
    /// The notice when the kernels changed ("resumed on different kernels: ...; not bitwise").
    pub notice: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunManifest {
    /// The project version.
    pub project_version: String,
    /// The git commit of the build, or "unknown".
    pub git_commit: String,
    /// The machine the run started on.
    pub machine: Machine,
    /// The run's seed.
    pub seed: u64,
    /// sha256 of the resolved config (`config.toml`).
    pub config_sha256: String,
    /// sha256 of every data file read, by role (as `data.json` records them).
    pub data_files: BTreeMap<String, String>,
    /// The arithmetic of the network's passes (`float32`, `bf16`, `fp16`); part of the config,
    /// so a resume cannot change it. Absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// Every resume, in order.
    #[serde(default)]
    pub resumes: Vec<Resume>,
}

impl RunManifest {
    /// The manifest of a run starting now on `machine`.
    pub fn new(
        machine: Machine,
        seed: u64,
        config_sha256: &str,
        data_files: BTreeMap<String, String>,
        precision: &str,
    ) -> Self {
        Self {
            project_version: build_info::VERSION.to_string(),
            git_commit: build_info::GIT_COMMIT.to_string(),
            machine,
            seed,
            config_sha256: config_sha256.to_string(),
            data_files,
            precision: Some(precision.to_string()),
            resumes: Vec::new(),
        }
    }

    /// The manifest of `run_dir`; `None` when it has none (a run of an older version).
    pub fn read(run_dir: &Path) -> Result<Option<Self>, RunError> {
        let path = run_dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(RunError::Io(annotate(&path, error))),
        };
        serde_json::from_str(&text).map(Some).map_err(|error| {
            RunError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            ))
        })
    }

    /// Writes the manifest into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> Result<(), RunError> {
        super::files::write_json(&run_dir.join(MANIFEST_FILE), self)
    }

    /// The machine of the latest part of the run: the last resume's, else the start's.
    pub fn latest_machine(&self) -> &Machine {
        self.resumes
            .last()
            .map_or(&self.machine, |resume| &resume.machine)
    }

    /// Records a resume at (`epoch`, `global_step`) on `machine` and returns its notice when
    /// the kernels changed since the latest part of the run.
    pub fn record_resume(
        &mut self,
        epoch: u32,
        global_step: u64,
        machine: Machine,
    ) -> Option<String> {
        let differences = machine.kernel_differences(self.latest_machine());
        let notice = (!differences.is_empty()).then(|| {
            format!(
                "resumed on different kernels: {}; not bitwise",
                differences.join(", ")
            )
        });
        self.resumes.push(Resume {
            epoch,
            global_step,
            machine,
            notice: notice.clone(),
        });
        notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(level: &str) -> Machine {
        Machine {
            torch: TorchBuild {
                variant: "cu130".to_string(),
                version: "2.11.0+cu130".to_string(),
                arch_list: vec!["sm_90".to_string()],
            },
            cpu_model: "AMD EPYC".to_string(),
            cpu_kernel_level: level.to_string(),
            threads: 1,
            device: "cpu".to_string(),
            gpu_model: None,
            gpu_driver: None,
            cudnn_version: None,
            cudnn_enabled: None,
            cudnn_benchmark: None,
            cudnn_deterministic: None,
            ranks: Some(1),
            collectives: None,
        }
    }

    #[test]
    fn a_resume_on_the_same_kernels_has_no_notice() {
        let mut manifest = RunManifest::new(machine("avx2"), 7, "abc", BTreeMap::new(), "float32");
        let mut other_cpu = machine("avx2");
        other_cpu.cpu_model = "Intel Xeon".to_string();
        assert_eq!(manifest.record_resume(1, 10, other_cpu), None);
        assert_eq!(manifest.resumes.len(), 1);
    }

    #[test]
    fn a_resume_on_other_kernels_says_what_changed() {
        let mut manifest =
            RunManifest::new(machine("avx512"), 7, "abc", BTreeMap::new(), "float32");
        let notice = manifest.record_resume(2, 20, machine("avx2"));
        assert_eq!(
            notice.as_deref(),
            Some("resumed on different kernels: avx512 -> avx2; not bitwise")
        );
        let mut gpu = machine("avx2");
        gpu.device = "cuda:0".to_string();
        gpu.gpu_model = Some("NVIDIA H200".to_string());
        gpu.threads = 4;
        let notice = manifest.record_resume(3, 30, gpu).unwrap();
        assert_eq!(
            notice,
            "resumed on different kernels: threads 1 -> 4, device cpu -> cuda:0, GPU none -> \
             NVIDIA H200; not bitwise"
        );
        assert_eq!(manifest.latest_machine().device, "cuda:0");
        let mut benchmarked = manifest.latest_machine().clone();
        benchmarked.cudnn_benchmark = Some(true);
        benchmarked.cudnn_deterministic = Some(false);
        let notice = manifest.record_resume(4, 40, benchmarked).unwrap();
        assert_eq!(
            notice,
            "resumed on different kernels: cuDNN benchmark unset -> true; not bitwise"
        );
        let mut two_ranks = manifest.latest_machine().clone();
        two_ranks.ranks = Some(2);
        let notice = manifest.record_resume(5, 50, two_ranks).unwrap();
        assert_eq!(
            notice,
            "resumed on different kernels: data-parallel ranks 1 -> 2; not bitwise"
        );
        let mut over_cpu = manifest.latest_machine().clone();
        over_cpu.collectives = Some("cpu".to_string());
        assert_eq!(
            manifest.record_resume(5, 52, over_cpu),
            None,
            "unknown before"
        );
        let mut over_nccl = manifest.latest_machine().clone();
        over_nccl.collectives = Some("nccl 2.28.9".to_string());
        let notice = manifest.record_resume(5, 55, over_nccl).unwrap();
        assert_eq!(
            notice,
            "resumed on different kernels: collectives cpu -> nccl 2.28.9; not bitwise"
        );
        // A manifest written before the ranks were recorded: no difference to report.
        manifest.resumes.push(Resume {
            epoch: 6,
            global_step: 60,
            machine: Machine {
                ranks: None,
                ..machine("avx2")
            },
            notice: None,
        });
        let four_ranks = Machine {
            ranks: Some(4),
            ..machine("avx2")
        };
        assert_eq!(manifest.record_resume(7, 70, four_ranks), None);
    }

    #[test]
    fn a_manifest_written_before_the_cudnn_settings_reads_back() {
        let mut value = serde_json::to_value(machine("avx2")).unwrap();
        let object = value.as_object_mut().unwrap();
        object.remove("cudnn_benchmark");
        object.remove("cudnn_deterministic");
        object.remove("ranks");
        let back: Machine = serde_json::from_value(value).unwrap();
        assert_eq!(
            back,
            Machine {
                ranks: None,
                ..machine("avx2")
            }
        );
    }

    #[test]
    fn the_manifest_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunManifest::read(dir.path()).unwrap(), None);
        let files = BTreeMap::from([("train".to_string(), "00ff".to_string())]);
        let manifest =
            RunManifest::new(Machine::current(Device::Cpu, 1), 101, "abc", files, "bf16");
        manifest.write(dir.path()).unwrap();
        let back = RunManifest::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.machine.device, "cpu");
        assert_eq!(back.precision.as_deref(), Some("bf16"));
        let mut older = serde_json::to_value(&manifest).unwrap();
        older.as_object_mut().unwrap().remove("precision");
        let older: RunManifest = serde_json::from_value(older).unwrap();
        assert_eq!(older.precision, None);
        assert!(["default", "avx2", "avx512"].contains(&back.machine.cpu_kernel_level.as_str()));
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        let error = RunManifest::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains(MANIFEST_FILE), "{error}");
    }
}
