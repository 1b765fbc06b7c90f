//! Deterministic draws from libtorch's global random generator.
//!
//! The generator is process-wide, so two runs initialising networks on different threads
//! (a worker with several device slots, or parallel tests) would interleave their draws.
//! Every seeded draw goes through [`seeded`], which holds a lock for its duration.

use std::sync::Mutex;

static GENERATOR_LOCK: Mutex<()> = Mutex::new(());

/// Runs `draw` with the global generator seeded with `seed`, excluding other seeded draws.
pub fn seeded<R>(seed: u64, draw: impl FnOnce() -> R) -> R {
    let _guard = GENERATOR_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed as i64);
    draw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// 50 small draws from the global generator, yielding the thread between them.
    fn interleavable_draws() -> Vec<f32> {
        (0..50)
            .flat_map(|_| {
                std::thread::yield_now();
                Vec::<f32>::try_from(Tensor::rand([4], (Kind::Float, Device::Cpu))).unwrap()
            })
            .collect()
    }

    #[test]
    fn seeded_draws_on_concurrent_threads_depend_on_the_seed_only() {
        let reference = seeded(5, interleavable_draws);
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let start = std::sync::Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    (0..20)
                        .map(|_| seeded(5, interleavable_draws))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for draws in thread.join().unwrap() {
                assert!(draws == reference, "another thread's draws interleaved");
            }
        }
    }
}
