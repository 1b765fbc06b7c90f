//! The cuDNN settings this process chose, so that a run's manifest can record the values set
//! rather than guess them: libtorch offers setters but no getters for them.

use std::sync::atomic::{AtomicU8, Ordering};
use tch::Device;

/// No setting made yet.
const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

/// The benchmark mode last set through [`set_benchmark`].
static BENCHMARK: AtomicU8 = AtomicU8::new(UNSET);

/// cuDNN's deterministic mode as this build runs it: libtorch's default (off). tch exposes no
/// setter, so nothing here changes it; with benchmark mode off, convolutions still pick their
/// algorithms by heuristics alone, the same on the same GPU and build.
pub const DETERMINISTIC: bool = false;

/// Sets cuDNN's benchmark mode for runs on `device`; a no-op on the CPU, where there is no
/// cuDNN. Benchmark mode times the convolution algorithms at each new shape and keeps the
/// fastest: faster steps, not bitwise reproducible between runs.
pub fn set_benchmark(device: Device, on: bool) {
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(on);
        BENCHMARK.store(if on { ON } else { OFF }, Ordering::Relaxed);
    }
}

/// The benchmark mode this process set, `None` before any CUDA run set one (libtorch's
/// default then applies: off).
pub fn benchmark() -> Option<bool> {
    match BENCHMARK.load(Ordering::Relaxed) {
        ON => Some(true),
        OFF => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_sets_nothing() {
        set_benchmark(Device::Cpu, true);
        assert_eq!(benchmark(), None);
    }
}
