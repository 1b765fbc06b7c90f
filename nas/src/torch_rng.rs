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
