//! The language model shared by search and evaluation (SPEC 7.2): tied embedding/decoder,
//! embedding dropout, locked dropout around one recurrent cell, log-softmax over the vocabulary.

use super::cell::{FixedCell, SearchCell};
use super::corpus::get_batch;
use super::dropout::{apply, DropoutMasks};
use super::INIT_RANGE;
use prime_core::genotype::{rnn_primitives, RnnGenotype, RNN_EDGES};
use prime_core::primitives::Activation;
use tch::{nn, Device, Kind, Tensor};

/// The recurrent cell with, for the search cell, its architecture parameters.
#[derive(Debug)]
pub enum ModelCell {
    /// The search cell and its raw alphas (36, P), kept outside the variable store.
    Search {
        /// The cell.
        cell: SearchCell,
        /// Raw alphas (a leaf tensor with gradients).
        alphas: Tensor,
        /// How the alphas are activated.
        activation: Activation,
    },
    /// A genotype's cell.
    Fixed(FixedCell),
}

/// What one forward call produced.
#[derive(Debug)]
pub struct ModelOutput {
    /// Log-probabilities, (T * B, V), time-major rows.
    pub log_probs: Tensor,
    /// The last hidden state (1, B, nhid).
    pub hidden: Tensor,
    /// The cell outputs before the output dropout (T, B, nhid), for TAR.
    pub raw_output: Tensor,
    /// The cell outputs after the output dropout (T, B, nhid), for AR.
    pub dropped_output: Tensor,
}

/// The RNN language model.
#[derive(Debug)]
pub struct RnnModel {
    /// Embedding E (V, nhid), also the decoder weight.
    pub encoder: Tensor,
    /// Decoder bias (V).
    pub decoder_bias: Tensor,
    /// The recurrent cell.
    pub cell: ModelCell,
    /// Vocabulary size.
    pub vocab: i64,
    /// Embedding and hidden width.
    pub nhid: i64,
}

impl RnnModel {
    /// The search model: E, the cell, then alphas, each drawn from the current torch generator
    /// (call it under [`crate::torch_rng::seeded`]). Softmax alphas are 1e-3 N(0, 1), CRB
    /// alphas 1/4 + 1e-4 N(0, 1) (SPEC 7.4).
    pub fn search(path: &nn::Path, vocab: i64, nhid: i64, activation: Activation) -> Self {
        let (encoder, decoder_bias) = embedding(path, vocab, nhid);
        let cell = SearchCell::new(&path.sub("cell"), nhid, activation);
        redraw(&encoder);
        let columns = rnn_primitives(activation).len() as i64;
        let noise = Tensor::randn([RNN_EDGES as i64, columns], (Kind::Float, path.device()));
        let alphas = match activation {
            Activation::Softmax => noise * 1e-3,
            Activation::Crb => noise * 1e-4 + 1.0 / columns as f64,
        }
        .set_requires_grad(true);
        Self {
            encoder,
            decoder_bias,
            cell: ModelCell::Search {
                cell,
                alphas,
                activation,
            },
            vocab,
            nhid,
        }
    }

    /// The evaluation model of `genotype` (no BatchNorm), drawn from the current generator.
    pub fn fixed(path: &nn::Path, vocab: i64, nhid: i64, genotype: &RnnGenotype) -> Self {
        let (encoder, decoder_bias) = embedding(path, vocab, nhid);
        let cell = FixedCell::new(&path.sub("cell"), nhid, genotype);
        redraw(&encoder);
        Self {
            encoder,
            decoder_bias,
            cell: ModelCell::Fixed(cell),
            vocab,
            nhid,
        }
    }

    /// The raw alphas of a search model.
    pub fn alphas(&self) -> Option<&Tensor> {
        match &self.cell {
            ModelCell::Search { alphas, .. } => Some(alphas),
            ModelCell::Fixed(_) => None,
        }
    }

    /// act(alphas) of a search model: row softmax or clamp to [0, 1].
    pub fn activated_alphas(&self) -> Option<Tensor> {
        match &self.cell {
            ModelCell::Search {
                alphas, activation, ..
            } => Some(activate(alphas, *activation)),
            ModelCell::Fixed(_) => None,
        }
    }

    /// Zeros (1, B, nhid).
    pub fn init_hidden(&self, batch: i64) -> Tensor {
        Tensor::zeros([1, batch, self.nhid], (Kind::Float, self.encoder.device()))
    }

    /// Forward of `input` (T, B) token ids from `hidden`; `masks` given = training mode (dropout,
    /// BatchNorm batch statistics), none = evaluation mode.
    pub fn forward(
        &self,
        input: &Tensor,
        hidden: &Tensor,
        masks: Option<&DropoutMasks>,
    ) -> ModelOutput {
        let training = masks.is_some();
        let table = match masks.and_then(|masks| masks.word.as_ref()) {
            Some(word) => &self.encoder * word,
            None => self.encoder.shallow_clone(),
        };
        let embedded = Tensor::embedding(&table, input, -1, false, false);
        let embedded = apply(&embedded, masks.and_then(|m| m.embedding.as_ref()));
        let (raw_output, hidden) = match &self.cell {
            ModelCell::Search {
                cell,
                alphas,
                activation,
            } => {
                let weights = activate(alphas, *activation);
                cell.forward(&embedded, hidden, &weights, masks, training)
            }
            ModelCell::Fixed(cell) => cell.forward(&embedded, hidden, masks),
        };
        let dropped_output = apply(&raw_output, masks.and_then(|m| m.output.as_ref()));
        let logits = dropped_output
            .reshape([-1, self.nhid])
            .linear(&self.encoder, Some(&self.decoder_bias));
        ModelOutput {
            log_probs: logits.log_softmax(-1, Kind::Float),
            hidden,
            raw_output,
            dropped_output,
        }
    }
}

/// act(alpha): softmax over each row, or clamp to [0, 1] (CRB).
pub fn activate(alphas: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Softmax => alphas.softmax(-1, Kind::Float),
        Activation::Crb => alphas.clamp(0.0, 1.0),
    }
}

/// E uniform(-0.04, 0.04) and a zero decoder bias.
fn embedding(path: &nn::Path, vocab: i64, nhid: i64) -> (Tensor, Tensor) {
    let init = nn::Init::Uniform {
        lo: -INIT_RANGE,
        up: INIT_RANGE,
    };
    let encoder = path.sub("encoder").var("weight", &[vocab, nhid], init);
    let bias = path
        .sub("decoder")
        .var("bias", &[vocab], nn::Init::Const(0.0));
    (encoder, bias)
}

/// The reference initialises the tied weight through both of its names; the second draw is
/// the one kept (SPEC 7.2).
fn redraw(encoder: &Tensor) {
    tch::no_grad(|| {
        let _ = encoder.shallow_clone().uniform_(-INIT_RANGE, INIT_RANGE);
    });
}

/// Mean NLL of a forward's log-probabilities against time-major targets.
pub fn nll(output: &ModelOutput, targets: &Tensor) -> Tensor {
    output.log_probs.nll_loss(targets)
}

/// evaluate(data, B) of SPEC 7.9: evaluation mode, zero hidden, chunks of `bptt` rows; the
/// sum of chunk-mean NLL times chunk length, divided by the number of rows (SPEC B18).
pub fn evaluate(model: &RnnModel, data: &Tensor, bptt: usize) -> f64 {
    tch::no_grad(|| {
        let rows = data.size()[0] as usize;
        let mut hidden = model.init_hidden(data.size()[1]);
        let mut total = Tensor::zeros([], (Kind::Double, data.device()));
        let mut i = 0;
        while i + 1 < rows {
            let (input, targets) = get_batch(data, i, bptt);
            let length = input.size()[0] as f64;
            let output = model.forward(&input, &hidden, None);
            total += nll(&output, &targets).to_kind(Kind::Double) * length;
            hidden = output.hidden;
            i += bptt;
        }
        total.to(Device::Cpu).double_value(&[]) / rows as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torch_rng;

    #[test]
    fn parameter_counts_match_the_spec() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        torch_rng::seeded(1, || {
            RnnModel::search(&vs.root(), 10_000, 300, Activation::Softmax)
        });
        assert_eq!(crate::optim::parameter_count(&vs), 4_810_000);
        let vs = nn::VarStore::new(Device::Cpu);
        let genotype = RnnGenotype::builtin("DARTS_V2").unwrap();
        torch_rng::seeded(1, || RnnModel::fixed(&vs.root(), 10_000, 850, &genotype));
        assert_eq!(crate::optim::parameter_count(&vs), 22_960_000);
    }

    #[test]
    fn forward_shapes_and_gradients_reach_alphas_and_weights() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = torch_rng::seeded(2, || RnnModel::search(&vs.root(), 20, 8, Activation::Crb));
        let alphas = model.alphas().unwrap();
        assert_eq!(alphas.size(), vec![36, 4]);
        let input = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([3, 2]);
        let targets = Tensor::from_slice(&[2i64, 3, 4, 5, 6, 7]);
        let rates = super::super::dropout::DropoutRates {
            output: 0.5,
            hidden: 0.2,
            input: 0.5,
            embedding: 0.2,
            word: 0.1,
        };
        let masks = DropoutMasks::draw(3, &rates, 20, 2, 8, Device::Cpu);
        let output = model.forward(&input, &model.init_hidden(2), Some(&masks));
        assert_eq!(output.log_probs.size(), vec![6, 20]);
        assert_eq!(output.hidden.size(), vec![1, 2, 8]);
        assert_eq!(output.raw_output.size(), vec![3, 2, 8]);
        nll(&output, &targets).backward();
        for tensor in [alphas, &model.encoder, &model.decoder_bias] {
            let grad = tensor.grad();
            assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
        for (name, variable) in vs.trainable_variables().iter().enumerate() {
            assert!(variable.grad().defined(), "variable {name} has no gradient");
        }
        let fixed_vs = nn::VarStore::new(Device::Cpu);
        let enas = RnnGenotype::builtin("ENAS").unwrap();
        let fixed = torch_rng::seeded(2, || RnnModel::fixed(&fixed_vs.root(), 20, 8, &enas));
        let loss = evaluate(
            &fixed,
            &Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8]).view([4, 2]),
            2,
        );
        assert!(loss.is_finite() && loss > 0.0);
        assert_eq!(
            crate::optim::parameter_count(&fixed_vs),
            20 * 8 + 20 + 16 * 16 + 11 * 8 * 16
        );
    }
}
