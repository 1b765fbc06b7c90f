//! Which back-end connects the ranks of a data-parallel run: NCCL when every rank has a GPU
//! of its own and NCCL loads, else the CPU back-end (values through host memory), unless
//! the user chose one (`PRIME_COLLECTIVES`, or a benchmark's `--collectives`).

use super::cpu::CpuCommunicator;
use super::nccl::{self, NcclCommunicator};
use super::{CommError, Communicator};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tch::Device;

/// The environment variable that chooses the back-end of every data-parallel run of a
/// process (a worker's trials, `prime eval --devices`): `auto`, `nccl` or `cpu`.
pub const ENV: &str = "PRIME_COLLECTIVES";

/// The back-end a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collectives {
    /// NCCL where it can run (distinct GPUs, the library loads), else the CPU back-end.
    #[default]
    Auto,
    /// NCCL, or the run fails with the reason it cannot.
    Nccl,
    /// The CPU back-end, on any devices.
    Cpu,
}

impl FromStr for Collectives {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "nccl" => Ok(Self::Nccl),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!(
                "unknown collectives back-end {other:?}: expected auto, nccl or cpu"
            )),
        }
    }
}

impl fmt::Display for Collectives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Nccl => "nccl",
            Self::Cpu => "cpu",
        })
    }
}

impl Collectives {
    /// The choice `PRIME_COLLECTIVES` makes (`auto` when it is unset).
    pub fn from_env() -> Result<Self, CommError> {
        match std::env::var(ENV) {
            Err(_) => Ok(Self::Auto),
            Ok(text) => text.trim().parse().map_err(|reason| CommError::Backend {
                reason: format!("{ENV}: {reason}"),
            }),
        }
    }
}

/// The ranks of a new group, rank r for `devices[r]`, and a line naming the back-end.
pub struct Connected {
    /// One communicator per rank, in rank order.
    pub ranks: Vec<Box<dyn Communicator>>,
    /// The back-end, for the run's log: `NCCL 2.28.9 (linked by libtorch)`, `CPU ...`.
    pub description: String,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("ranks", &self.ranks.len())
            .field("description", &self.description)
            .finish()
    }
}

/// Connects one rank per device of `devices` with the back-end `choice` leads to;
/// collectives wait at most `timeout` for the other ranks.
pub fn connect(
    devices: &[Device],
    timeout: Duration,
    choice: Collectives,
) -> Result<Connected, CommError> {
    let cpu = |description: String| Connected {
        ranks: CpuCommunicator::group(devices.len(), timeout)
            .into_iter()
            .map(|rank| Box::new(rank) as Box<dyn Communicator>)
            .collect(),
        description,
    };
    let through_host = "CPU back-end (through host memory)";
    if choice == Collectives::Cpu {
        return Ok(cpu(through_host.into()));
    }
    let gpus: Option<Vec<usize>> = devices
        .iter()
        .map(|device| match device {
            Device::Cuda(index) => Some(*index),
            _ => None,
        })
        .collect();
    let nccl = match gpus {
        None => Err(CommError::Backend {
            reason: format!("NCCL runs between GPUs, not on {devices:?}"),
        }),
        Some(gpus) => NcclCommunicator::group(&gpus, timeout).and_then(|ranks| {
            let (version, source) = nccl::version()?;
            Ok(Connected {
                ranks: ranks
                    .into_iter()
                    .map(|rank| Box::new(rank) as Box<dyn Communicator>)
                    .collect(),
                description: format!("NCCL {version} ({source})"),
            })
        }),
    };
    match (nccl, choice) {
        (Ok(connected), _) => Ok(connected),
        (Err(error), Collectives::Nccl) => Err(error),
        (Err(_), _) if gpus_absent(devices) => Ok(cpu(through_host.into())),
        (Err(error), _) => {
            tracing::warn!("{error}; the ranks reduce through host memory instead");
            Ok(cpu(format!("{through_host}; NCCL unavailable: {error}")))
        }
    }
}

/// Whether some device of `devices` is not a GPU (NCCL is then not expected).
fn gpus_absent(devices: &[Device]) -> bool {
    devices.iter().any(|device| !device.is_cuda())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn the_choice_parses_and_an_unknown_one_names_the_expected_values() {
        for choice in [Collectives::Auto, Collectives::Nccl, Collectives::Cpu] {
            assert_eq!(choice.to_string().parse::<Collectives>(), Ok(choice));
        }
        assert_eq!(
            "gloo".parse::<Collectives>(),
            Err("unknown collectives back-end \"gloo\": expected auto, nccl or cpu".into())
        );
    }

    #[test]
    fn cpu_devices_connect_through_host_memory_unless_nccl_is_demanded() {
        let devices = [Device::Cpu, Device::Cpu];
        for choice in [Collectives::Auto, Collectives::Cpu] {
            let connected = connect(&devices, TIMEOUT, choice).unwrap();
            assert_eq!(connected.ranks.len(), 2);
            assert_eq!(connected.description, "CPU back-end (through host memory)");
            let ranks: Vec<_> = connected.ranks.iter().map(|rank| rank.rank()).collect();
            assert_eq!(ranks, vec![0, 1]);
        }
        let error = connect(&devices, TIMEOUT, Collectives::Nccl).unwrap_err();
        assert!(
            error.to_string().contains("NCCL runs between GPUs"),
            "{error}"
        );
    }

    #[test]
    fn gpus_without_nccl_fall_back_to_the_cpu_back_end_and_say_why() {
        if tch::Cuda::device_count() > 0 {
            return; // the GPU tier checks NCCL itself
        }
        let devices = [Device::Cuda(0), Device::Cuda(1)];
        let connected = connect(&devices, TIMEOUT, Collectives::Auto).unwrap();
        assert_eq!(connected.ranks.len(), 2);
        assert!(
            connected.description.contains(
                "NCCL unavailable: the collectives' back-end failed: NCCL cannot use cuda:0"
            ),
            "{}",
            connected.description
        );
        let error = connect(&devices, TIMEOUT, Collectives::Nccl).unwrap_err();
        assert!(error.to_string().contains("sees 0 CUDA device"), "{error}");
    }
}
