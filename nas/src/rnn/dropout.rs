//! The language model's dropout masks (SPEC 7.2, 7.3): embedding (word) dropout, locked
//! dropout on the embeddings and on the cell outputs, and the cell's variational x/h masks.
//!
//! All masks of one forward call are drawn together from the torch generator seeded with a
//! key derived from (seed, epoch, step, stream) (see [`super::draw_key`]), so a resumed run
//! draws exactly the masks of the straight run without any generator state in checkpoints.

use crate::torch_rng;
use prime_core::rnn_config::RnnNetworkConfig;
use tch::{Device, Kind, Tensor};

/// Dropout rates of the language model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutRates {
    /// Locked dropout on the cell outputs (`dropout`).
    pub output: f64,
    /// Variational dropout on the hidden state in the cell (`dropouth`).
    pub hidden: f64,
    /// Variational dropout on the input in the cell (`dropoutx`).
    pub input: f64,
    /// Locked dropout on the embeddings (`dropouti`).
    pub embedding: f64,
    /// Embedding-row (word) dropout (`dropoute`).
    pub word: f64,
}

impl From<&RnnNetworkConfig> for DropoutRates {
    fn from(config: &RnnNetworkConfig) -> Self {
        Self {
            output: config.dropout,
            hidden: config.dropouth,
            input: config.dropoutx,
            embedding: config.dropouti,
            word: config.dropoute,
        }
    }
}

/// The masks of one training forward call; a mask is absent when its rate is 0. Every kept
/// entry is 1 / keep, every dropped entry 0.
#[derive(Debug)]
pub struct DropoutMasks {
    /// (V, 1): one keep flag per vocabulary row.
    pub word: Option<Tensor>,
    /// (1, B, ninp): locked over time, on the embeddings.
    pub embedding: Option<Tensor>,
    /// (B, ninp): the cell's input mask.
    pub x: Option<Tensor>,
    /// (B, nhid): the cell's hidden-state mask.
    pub h: Option<Tensor>,
    /// (1, B, nhid): locked over time, on the cell outputs.
    pub output: Option<Tensor>,
}

impl DropoutMasks {
    /// Draws the masks of a forward call over `batch` columns with the generator seeded by `key`.
    pub fn draw(
        key: u64,
        rates: &DropoutRates,
        vocab: i64,
        batch: i64,
        nhid: i64,
        device: Device,
    ) -> Self {
        torch_rng::seeded(key, || Self {
            word: mask(&[vocab, 1], rates.word, device),
            embedding: mask(&[1, batch, nhid], rates.embedding, device),
            x: mask(&[batch, nhid], rates.input, device),
            h: mask(&[batch, nhid], rates.hidden, device),
            output: mask(&[1, batch, nhid], rates.output, device),
        })
    }
}

/// A Bernoulli(1 - rate) / (1 - rate) mask, or none for rate 0.
fn mask(shape: &[i64], rate: f64, device: Device) -> Option<Tensor> {
    if rate == 0.0 {
        return None;
    }
    let keep = 1.0 - rate;
    Some(Tensor::empty(shape, (Kind::Float, device)).bernoulli_float_(keep) / keep)
}

/// `tensor * mask` when there is a mask.
pub fn apply(tensor: &Tensor, mask: Option<&Tensor>) -> Tensor {
    match mask {
        Some(mask) => tensor * mask,
        None => tensor.shallow_clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> DropoutRates {
        DropoutRates {
            output: 0.5,
            hidden: 0.25,
            input: 0.75,
            embedding: 0.2,
            word: 0.0,
        }
    }

    #[test]
    fn masks_have_the_spec_shapes_values_and_depend_on_the_key_only() {
        tch::set_num_threads(1);
        let a = DropoutMasks::draw(9, &rates(), 30, 4, 6, Device::Cpu);
        let b = DropoutMasks::draw(9, &rates(), 30, 4, 6, Device::Cpu);
        let c = DropoutMasks::draw(10, &rates(), 30, 4, 6, Device::Cpu);
        assert!(a.word.is_none());
        let output = a.output.as_ref().unwrap();
        assert_eq!(output.size(), vec![1, 4, 6]);
        assert_eq!(a.x.as_ref().unwrap().size(), vec![4, 6]);
        assert!(output.equal(b.output.as_ref().unwrap()));
        assert!(!a.x.as_ref().unwrap().equal(c.x.as_ref().unwrap()));
        let values: Vec<f32> = Vec::try_from(output.reshape([-1])).unwrap();
        assert!(values.iter().all(|v| *v == 0.0 || *v == 2.0));
        let x: Vec<f32> = Vec::try_from(a.x.as_ref().unwrap().reshape([-1])).unwrap();
        assert!(x.iter().all(|v| *v == 0.0 || *v == 4.0));
    }
}
