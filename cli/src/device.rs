//! Parsing `--device` and `--threads`, and the machine arguments every training command takes.

use anyhow::{bail, Context};
use clap::Args;
use prime_nas::data::DownloadPolicy;
use prime_nas::hardware::{check_cuda_device, GpuInventory};
use std::path::PathBuf;
use tch::Device;

/// Where a training command finds its data and what it runs on (`prime search`, `prime eval`).
#[derive(Debug, Args)]
pub struct MachineArgs {
    /// Directory holding the dataset (or where to download it); default: `data`, or for
    /// --resume the directory the run started with.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Never download a missing dataset.
    #[arg(long)]
    pub no_download: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch intra-op threads.
    #[arg(long)]
    pub threads: Option<i32>,
    /// No progress bar (log epoch lines only).
    #[arg(long)]
    pub quiet: bool,
}

impl MachineArgs {
    /// Applies `--threads` and returns the checked `--device`.
    pub fn device(&self) -> anyhow::Result<Device> {
        apply_threads(self.threads)?;
        parse_device(&self.device)
    }

    /// The devices a run trains on: the ranks of `--devices LIST` when given (one each),
    /// else `--device` alone; applies `--threads` either way.
    pub fn devices(&self, list: &[String]) -> anyhow::Result<Vec<Device>> {
        let device = self.device()?;
        if list.is_empty() {
            return Ok(vec![device]);
        }
        list.iter()
            .map(|text| parse_device(text).context("--devices"))
            .collect()
    }

    /// Whether a missing dataset may be downloaded.
    pub fn download(&self) -> DownloadPolicy {
        if self.no_download {
            DownloadPolicy::Never
        } else {
            DownloadPolicy::IfMissing
        }
    }
}

/// What `--resume DIR` must be followed by to continue a run on the same devices: another
/// number of ranks would continue it, but not bitwise.
pub fn resume_devices_flag(list: &[String]) -> String {
    match list {
        [] | [_] => String::new(),
        _ => format!(" --devices {}", list.join(",")),
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`, checking that the GPU exists.
pub fn parse_device(text: &str) -> anyhow::Result<Device> {
    let text = text.trim().to_ascii_lowercase();
    let device = match text.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Device::Cuda(0),
        _ => {
            let index = text
                .strip_prefix("cuda:")
                .with_context(|| format!("device `{text}`: expected cpu, cuda or cuda:N"))?;
            let index: usize = index
                .parse()
                .with_context(|| format!("device `{text}`: `{index}` is not a GPU index"))?;
            Device::Cuda(index)
        }
    };
    let available = if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    };
    if let Device::Cuda(index) = device {
        if index >= available {
            bail!(
                "device `{text}`: this machine has {available} CUDA device(s) visible to libtorch"
            );
        }
        let gpus = GpuInventory::open().snapshot();
        check_cuda_device(index, &gpus).with_context(|| format!("device `{text}`"))?;
    }
    Ok(device)
}

/// Sets libtorch's intra-op thread count when given.
pub fn apply_threads(threads: Option<i32>) -> anyhow::Result<()> {
    if let Some(threads) = threads {
        if threads < 1 {
            bail!("--threads {threads}: expected at least 1");
        }
        tch::set_num_threads(threads);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        let error = parse_device("gpu0").unwrap_err().to_string();
        assert!(error.contains("expected cpu, cuda or cuda:N"), "{error}");
        let error = parse_device("cuda:x").unwrap_err().to_string();
        assert!(error.contains("not a GPU index"), "{error}");
        if !tch::Cuda::is_available() {
            let error = parse_device("cuda:0").unwrap_err().to_string();
            assert!(error.contains("0 CUDA device"), "{error}");
        }
    }

    #[test]
    fn devices_list_replaces_device_and_is_repeated_on_resume() {
        let machine = MachineArgs {
            data_dir: None,
            no_download: false,
            device: "cpu".into(),
            threads: None,
            quiet: true,
        };
        assert_eq!(machine.devices(&[]).unwrap(), [Device::Cpu]);
        let list = ["cpu".to_string(), "CPU".to_string()];
        assert_eq!(machine.devices(&list).unwrap(), [Device::Cpu, Device::Cpu]);
        let error = machine.devices(&["cpu".into(), "tpu".into()]).unwrap_err();
        assert!(
            format!("{error:#}").contains("--devices: device `tpu`"),
            "{error:#}"
        );
        assert_eq!(resume_devices_flag(&[]), "");
        assert_eq!(resume_devices_flag(&list[..1]), "");
        assert_eq!(resume_devices_flag(&list), " --devices cpu,CPU");
    }
}
