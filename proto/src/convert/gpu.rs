//! GPUs and the torch build a worker reports, between wire and core.

use super::ConvertError;
use crate::pb;
use prime_core::gpu::{ComputeCapability, GpuInfo, WorkerHardware, MAX_GPUS, MAX_GPU_TEXT};

/// The highest compute-capability major version accepted (12 is Blackwell; room to spare).
const MAX_CAPABILITY_MAJOR: u32 = 99;
/// The highest GPU temperature accepted, in degrees Celsius.
const MAX_TEMPERATURE: u32 = 200;

impl From<&GpuInfo> for pb::GpuInfo {
    fn from(gpu: &GpuInfo) -> Self {
        pb::GpuInfo {
            index: gpu.index,
            name: gpu.name.clone(),
            capability_major: gpu.capability.major,
            capability_minor: gpu.capability.minor,
            memory_total_bytes: gpu.memory_total_bytes,
            memory_free_bytes: gpu.memory_free_bytes,
            driver_version: gpu.driver_version.clone(),
            utilization_percent: gpu.utilization_percent,
            temperature_celsius: gpu.temperature_celsius,
        }
    }
}

fn invalid(field: &'static str, message: String) -> ConvertError {
    ConvertError { field, message }
}

impl TryFrom<pb::GpuInfo> for GpuInfo {
    type Error = ConvertError;

    fn try_from(gpu: pb::GpuInfo) -> Result<Self, Self::Error> {
        let text = |field: &'static str, value: String| {
            if value.chars().count() > MAX_GPU_TEXT {
                return Err(invalid(
                    field,
                    format!("GPU {}: longer than {MAX_GPU_TEXT} characters", gpu.index),
                ));
            }
            Ok(value)
        };
        if gpu.capability_major > MAX_CAPABILITY_MAJOR || gpu.capability_minor > 9 {
            return Err(invalid(
                "gpus.capability",
                format!(
                    "GPU {}: {}.{} is not a compute capability (major 0 to {MAX_CAPABILITY_MAJOR}, minor 0 to 9)",
                    gpu.index, gpu.capability_major, gpu.capability_minor
                ),
            ));
        }
        if gpu.memory_free_bytes > gpu.memory_total_bytes {
            return Err(invalid(
                "gpus.memory_free_bytes",
                format!("GPU {}: more free memory than total", gpu.index),
            ));
        }
        if gpu.utilization_percent > 100 || gpu.temperature_celsius > MAX_TEMPERATURE {
            return Err(invalid(
                "gpus.utilization_percent",
                format!(
                    "GPU {}: utilisation {}% (0 to 100) or temperature {} C (0 to {MAX_TEMPERATURE})",
                    gpu.index, gpu.utilization_percent, gpu.temperature_celsius
                ),
            ));
        }
        Ok(GpuInfo {
            index: gpu.index,
            name: text("gpus.name", gpu.name.clone())?,
            capability: ComputeCapability {
                major: gpu.capability_major,
                minor: gpu.capability_minor,
            },
            memory_total_bytes: gpu.memory_total_bytes,
            memory_free_bytes: gpu.memory_free_bytes,
            driver_version: text("gpus.driver_version", gpu.driver_version.clone())?,
            utilization_percent: gpu.utilization_percent,
            temperature_celsius: gpu.temperature_celsius,
        })
    }
}

/// The GPUs of a registration or heartbeat, at most [`MAX_GPUS`].
pub fn gpus_from_wire(gpus: Vec<pb::GpuInfo>) -> Result<Vec<GpuInfo>, ConvertError> {
    if gpus.len() > MAX_GPUS {
        return Err(invalid(
            "gpus",
            format!("{} GPUs reported, at most {MAX_GPUS} accepted", gpus.len()),
        ));
    }
    gpus.into_iter().map(GpuInfo::try_from).collect()
}

/// A registration's hardware: its GPUs and torch build (each text at most [`MAX_GPU_TEXT`]).
pub fn hardware_from_wire(
    gpus: Vec<pb::GpuInfo>,
    torch_variant: String,
    torch_version: String,
) -> Result<WorkerHardware, ConvertError> {
    for (field, value) in [
        ("torch_variant", &torch_variant),
        ("torch_version", &torch_version),
    ] {
        if value.chars().count() > MAX_GPU_TEXT {
            return Err(invalid(
                field,
                format!("longer than {MAX_GPU_TEXT} characters"),
            ));
        }
    }
    Ok(WorkerHardware {
        torch_variant,
        torch_version,
        gpus: gpus_from_wire(gpus)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> GpuInfo {
        GpuInfo {
            index: 0,
            name: "NVIDIA H200".to_string(),
            capability: ComputeCapability { major: 9, minor: 0 },
            memory_total_bytes: 150_000_000_000,
            memory_free_bytes: 149_000_000_000,
            driver_version: "580.65".to_string(),
            utilization_percent: 12,
            temperature_celsius: 40,
        }
    }

    #[test]
    fn gpus_round_trip_and_malformed_ones_name_their_field() {
        let wire = pb::GpuInfo::from(&h200());
        assert_eq!(GpuInfo::try_from(wire.clone()).unwrap(), h200());
        let hardware =
            hardware_from_wire(vec![wire.clone()], "cu130".into(), "2.11.0+cu130".into()).unwrap();
        assert_eq!(hardware.gpus, vec![h200()]);

        let mut hot = wire.clone();
        hot.utilization_percent = 101;
        let error = GpuInfo::try_from(hot).unwrap_err().to_string();
        assert!(error.contains("utilisation 101%"), "{error}");
        let mut leaky = wire.clone();
        leaky.memory_free_bytes = leaky.memory_total_bytes + 1;
        assert_eq!(
            GpuInfo::try_from(leaky).unwrap_err().field,
            "gpus.memory_free_bytes"
        );
        let mut long = wire.clone();
        long.name = "x".repeat(MAX_GPU_TEXT + 1);
        assert_eq!(GpuInfo::try_from(long).unwrap_err().field, "gpus.name");
        let many = vec![wire; MAX_GPUS + 1];
        assert_eq!(gpus_from_wire(many).unwrap_err().field, "gpus");
        let error = hardware_from_wire(Vec::new(), "x".repeat(200), String::new()).unwrap_err();
        assert_eq!(error.field, "torch_variant");
    }
}
