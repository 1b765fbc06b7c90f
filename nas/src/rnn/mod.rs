//! The recurrent (Penn Treebank) half of the engine (SPEC section 7): corpus, language model,
//! search and evaluation loops.
//!
//! * [`run_rnn_search`] searches a recurrent cell (SPEC 7.7) with a
//!   [`prime_core::rnn_config::RnnSearchConfig`] (build one from a CNN method preset with
//!   `RnnSearchConfig::from_method`, then `with_overrides`); see [`search`] for its run
//!   directory.
//! * [`run_rnn_eval`] retrains a [`prime_core::genotype::RnnGenotype`] (SPEC 7.9) with a
//!   [`prime_core::rnn_config::RnnEvalConfig`]; [`resolve_rnn_genotype`] reads a genotype
//!   argument; see [`eval`] for its run directory.
//!
//! Both take the corpus folder as `RunOptions::data_dir` (`train.txt`, `valid.txt`,
//! `test.txt` or the `ptb.*.txt` names) and, with `DownloadPolicy::IfMissing`, fetch the
//! official archive ([`download`]). Every random draw (initialisation under the seed, dropout
//! masks and sequence lengths keyed by (seed, epoch, batch)) is reproducible, so a checkpointed
//! run resumes bitwise exactly.

pub mod cell;
pub mod corpus;
pub mod download;
pub mod dropout;
pub mod eval;
pub mod model;
mod nt_asgd;
mod pending;
pub mod search;
pub mod search_trainer;
pub mod trainer;

pub use eval::{resolve_rnn_genotype, run_rnn_eval, RnnEvalOutcome};
pub use search::{run_rnn_search, RnnSearchOutcome};

use crate::keyed::splitmix64;

/// Range of the uniform initialisation of every RNN tensor (the reference's INITRANGE).
pub const INIT_RANGE: f64 = 0.04;

/// The random stream a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum DrawStream {
    /// Dropout masks of a weight step.
    WeightMasks = 1,
    /// Dropout masks of an alpha step.
    AlphaMasks = 2,
    /// The sequence length of a training batch.
    SequenceLength = 3,
}

/// The key of the random draws of (epoch, in-epoch batch, stream) in a run with `seed`: every
/// draw is a pure function of it, so a resumed run repeats the straight run's draws.
pub fn draw_key(seed: u64, epoch: u32, batch: u64, stream: DrawStream) -> u64 {
    let mut key = splitmix64(seed ^ 0x726e_6e5f_6472_6177);
    for part in [u64::from(epoch), batch, stream as u64] {
        key = splitmix64(key ^ part);
    }
    key
}
