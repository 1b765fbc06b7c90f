//! What the recurrent search and evaluation share: the language model's width and dropouts,
//! the SGD weight optimizer with its loss terms, and the checks of data limits and batches.

use crate::config::{finite_non_negative, finite_positive, unit_fraction, Checker, ConfigError};
use crate::limits;
use serde::{Deserialize, Serialize};

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
        check.count("network.nhid", self.nhid, &limits::WIDTH)?;
        let rates = [
            ("network.dropout", self.dropout),
            ("network.dropouth", self.dropouth),
            ("network.dropoutx", self.dropoutx),
            ("network.dropouti", self.dropouti),
            ("network.dropoute", self.dropoute),
        ];
        for (field, rate) in rates {
            check.ensure(field, unit_fraction(rate), "expected a rate 0 <= p < 1")?;
        }
        Ok(())
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
        check.ensure(
            "weights.lr",
            finite_positive(self.lr),
            "expected a finite number > 0",
        )?;
        let non_negative = [
            ("weights.weight_decay", self.weight_decay),
            ("weights.ar_alpha", self.ar_alpha),
            ("weights.tar_beta", self.tar_beta),
        ];
        for (field, value) in non_negative {
            check.ensure(
                field,
                finite_non_negative(value),
                "expected a finite number >= 0",
            )?;
        }
        check.ensure(
            "weights.grad_clip",
            finite_positive(self.grad_clip),
            "expected a finite number > 0",
        )
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
    check.count("epochs", epochs, &limits::EPOCHS)?;
    if let Some(limit) = limit {
        check.count("data.limit", limit, &limits::TRAIN_SAMPLES)?;
        check.ensure(
            "data.limit",
            limit >= 3,
            "expected at least 3 training tokens (or no limit)",
        )?;
    }
    Ok(())
}

/// Checks each batch size and the sequence length.
pub(super) fn check_batches(
    check: &Checker<'_>,
    batches: &[(&str, usize)],
    bptt: usize,
) -> Result<(), ConfigError> {
    for (field, size) in batches {
        check.count(field, *size, &limits::BATCH_SIZE)?;
    }
    check.count("data.bptt", bptt, &limits::BPTT)
}
