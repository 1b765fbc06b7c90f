//! Where the worker's GPU reports come from: NVML on a real node, a fixed list in tests.

use prime_core::gpu::GpuInfo;
use prime_nas::hardware::GpuInventory;

/// The GPUs of this node with their current state, read at registration and every heartbeat.
pub trait GpuSource: Send + Sync + std::fmt::Debug {
    /// Every GPU now.
    fn snapshot(&self) -> Vec<GpuInfo>;
}

impl GpuSource for GpuInventory {
    fn snapshot(&self) -> Vec<GpuInfo> {
        GpuInventory::snapshot(self)
    }
}

/// A fixed list of GPUs (none for a CPU worker; a fake inventory in tests).
#[derive(Debug, Clone, Default)]
pub struct FixedGpus(pub Vec<GpuInfo>);

impl GpuSource for FixedGpus {
    fn snapshot(&self) -> Vec<GpuInfo> {
        self.0.clone()
    }
}
