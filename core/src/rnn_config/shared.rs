//! What the recurrent search and evaluation share: the language model's width and dropouts,
//! the SGD weight optimizer with its loss terms, the speed options, and the checks of data
//! limits and batches.

use crate::config::keys::{Key, EPOCHS};
use crate::config::rnn_keys::{
    RNN_AR_ALPHA, RNN_BPTT, RNN_DATA_LIMIT, RNN_DROPOUT, RNN_DROPOUTE, RNN_DROPOUTH, RNN_DROPOUTI,
    RNN_DROPOUTX, RNN_NHID, RNN_TAR_BETA, RNN_WEIGHTS_GRAD_CLIP, RNN_WEIGHTS_LR,
    RNN_WEIGHTS_WEIGHT_DECAY,
};
use crate::config::{Checker, ConfigError};
use serde::{Deserialize, Serialize};

/// GPU speed options of a recurrent search or evaluation; none changes a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnSpeedConfig {
    /// Training steps whose values (losses, step records, the search's alphas) are read back
    /// from the device together, 1..=10,000: one synchronisation per this many steps instead
    /// of one or more per step.
    pub read_back_every: u32,
}

impl Default for RnnSpeedConfig {
    fn default() -> Self {
        Self { read_back_every: 1 }
    }
}

impl RnnSpeedConfig {
    /// Whether every value is the default (then `config.toml` leaves the table out, so runs
    /// written before it existed keep their config hash and still resume).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Width and dropouts of the language model (emsize = nhid = nhidlast).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnNetworkConfig {
    /// Embedding and hidden width, 1..=2,048.
    pub nhid: i64,
    /// Dropout rates below, each in [0, 1). Locked dropout on the cell outputs.
    pub dropout: f64,
    /// Variational dropout on the hidden state inside the cell.
    pub dropouth: f64,
    /// Variational dropout on the input inside the cell.
    pub dropoutx: f64,
    /// Locked dropout on the embeddings.
    pub dropouti: f64,
    /// Embedding (word) dropout.
    pub dropoute: f64,
}

impl RnnNetworkConfig {
    /// The search model of SPEC 7.7 (300-d, no embedding dropout).
    pub fn search() -> Self {
        Self {
            nhid: 300,
            dropout: 0.75,
            dropouth: 0.25,
            dropoutx: 0.75,
            dropouti: 0.2,
            dropoute: 0.0,
        }
    }

    /// The evaluation model of SPEC 7.9 (850-d, embedding dropout 0.1).
    pub fn evaluation() -> Self {
        Self {
            nhid: 850,
            dropoute: 0.1,
            ..Self::search()
        }
    }

    pub(super) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.integer(&RNN_NHID, self.nhid)?;
        check.number(&RNN_DROPOUT, self.dropout)?;
        check.number(&RNN_DROPOUTH, self.dropouth)?;
        check.number(&RNN_DROPOUTX, self.dropoutx)?;
        check.number(&RNN_DROPOUTI, self.dropouti)?;
        check.number(&RNN_DROPOUTE, self.dropoute)
    }
}

impl Default for RnnNetworkConfig {
    fn default() -> Self {
        Self::search()
    }
}

/// The weight optimizer (SGD, constant LR scaled by seq_len / bptt) and the loss terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RnnWeightsConfig {
    /// Learning rate; finite, > 0.
    pub lr: f64,
    /// L2 weight decay; finite, >= 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip; finite, > 0.
    pub grad_clip: f64,
    /// Activation regularisation (AR) coefficient on the dropped outputs; finite, >= 0.
    pub ar_alpha: f64,
    /// Temporal activation regularisation (TAR) coefficient on the raw outputs; finite, >= 0.
    pub tar_beta: f64,
}

impl Default for RnnWeightsConfig {
    fn default() -> Self {
        Self {
            lr: 20.0,
            weight_decay: 5e-7,
            grad_clip: 0.25,
            ar_alpha: 0.0,
            tar_beta: 1e-3,
        }
    }
}

impl RnnWeightsConfig {
    pub(super) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.number(&RNN_WEIGHTS_LR, self.lr)?;
        check.number(&RNN_WEIGHTS_WEIGHT_DECAY, self.weight_decay)?;
        check.number(&RNN_WEIGHTS_GRAD_CLIP, self.grad_clip)?;
        check.number(&RNN_AR_ALPHA, self.ar_alpha)?;
        check.number(&RNN_TAR_BETA, self.tar_beta)
    }
}

/// Checks the format version, the epoch count and the token limit.
pub(super) fn check_common(
    check: &Checker<'_>,
    version: u32,
    epochs: u32,
    limit: Option<usize>,
) -> Result<(), ConfigError> {
    check.version(version)?;
    check.integer(&EPOCHS, epochs)?;
    if let Some(limit) = limit {
        check.integer(&RNN_DATA_LIMIT, limit)?;
    }
    Ok(())
}

/// Checks each batch size (with its config's key) and the sequence length.
pub(super) fn check_batches(
    check: &Checker<'_>,
    batches: &[(&Key, usize)],
    bptt: usize,
) -> Result<(), ConfigError> {
    for (key, size) in batches {
        check.integer(key, *size)?;
    }
    check.integer(&RNN_BPTT, bptt)
}
