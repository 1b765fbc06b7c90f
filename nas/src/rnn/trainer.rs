//! Pieces of one training step shared by the recurrent search and evaluation: the loss with
//! AR/TAR, sequence-length draws, the NT-ASGD trigger, the learning-rate scaling.

use super::model::{nll, ModelOutput};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use tch::{Kind, Tensor};

/// Probability of the full base length in a sequence-length draw (else half of it).
const FULL_LENGTH_PROBABILITY: f64 = 0.95;
/// Shortest jittered evaluation-training sequence.
const MIN_SEQ_LEN: i64 = 5;
/// The jittered length is capped at bptt + this.
const MAX_EXTRA_SEQ_LEN: usize = 20;

/// Raw mean NLL and the training loss NLL + AR + TAR (SPEC 7.7 step 7): AR = alpha *
/// mean(dropped^2), TAR = beta * mean((r_{t+1} - r_t)^2) over the raw outputs (skipped for a
/// single time step, whose difference is empty).
pub fn training_loss(
    output: &ModelOutput,
    targets: &Tensor,
    ar_alpha: f64,
    tar_beta: f64,
) -> (Tensor, Tensor) {
    let raw = nll(output, targets);
    let mut terms = Vec::new();
    if ar_alpha > 0.0 {
        terms.push(output.dropped_output.square().mean(Kind::Float) * ar_alpha);
    }
    let steps = output.raw_output.size()[0];
    if tar_beta > 0.0 && steps > 1 {
        let later = output.raw_output.narrow(0, 1, steps - 1);
        let earlier = output.raw_output.narrow(0, 0, steps - 1);
        terms.push((later - earlier).square().mean(Kind::Float) * tar_beta);
    }
    let total = terms
        .into_iter()
        .fold(raw.shallow_clone(), |sum, term| sum + term);
    (raw, total)
}

/// The search's sequence length: `bptt` with probability 0.95, else int(bptt / 2) (SPEC 7.7
/// step 1), drawn from a generator seeded with `key`.
pub fn search_seq_len(key: u64, bptt: usize) -> usize {
    let mut rng = Pcg64::seed_from_u64(key);
    if rng.gen::<f64>() < FULL_LENGTH_PROBABILITY {
        bptt
    } else {
        (bptt as f64 / 2.0) as usize
    }
}

/// The evaluation's sequence length (SPEC 7.9): base = bptt (p 0.95) or bptt / 2;
/// max(5, int(Normal(base, std))), then at most bptt + 20.
pub fn eval_seq_len(key: u64, bptt: usize, std: f64) -> usize {
    let mut rng = Pcg64::seed_from_u64(key);
    let base = if rng.gen::<f64>() < FULL_LENGTH_PROBABILITY {
        bptt as f64
    } else {
        bptt as f64 / 2.0
    };
    // Box-Muller: one standard normal from two uniforms in (0, 1].
    let u1 = 1.0 - rng.gen::<f64>();
    let u2 = rng.gen::<f64>();
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let length = ((base + std * normal) as i64).max(MIN_SEQ_LEN) as usize;
    length.min(bptt + MAX_EXTRA_SEQ_LEN)
}

/// The learning rate of a batch of `seq_len` rows: lr * seq_len / bptt.
pub fn scaled_lr(lr: f64, seq_len: usize, bptt: usize) -> f64 {
    lr * seq_len as f64 / bptt as f64
}

/// exp(loss), capped at the largest finite float so that records stay valid JSON.
pub fn perplexity(loss: f64) -> f64 {
    loss.exp().min(f64::MAX)
}

/// NT-ASGD's trigger (SPEC 7.9): with `history` the validation losses of the earlier
/// SGD-phase epochs, switch when there are more than `nonmono` of them and `val` is worse than
/// the best of all but the last `nonmono`.
pub fn should_switch_to_asgd(history: &[f64], val: f64, nonmono: usize) -> bool {
    history.len() > nonmono
        && history[..history.len() - nonmono]
            .iter()
            .fold(f64::INFINITY, |best, &loss| best.min(loss))
            < val
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_asgd_switches_only_on_a_non_monotone_history() {
        // Five entries are not enough, whatever the value.
        assert!(!should_switch_to_asgd(&[5.0, 4.0, 3.0, 2.0, 1.0], 9.0, 5));
        // Six entries: compare with min of the first one only.
        let history = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5];
        assert!(!should_switch_to_asgd(&history, 4.5, 5));
        assert!(should_switch_to_asgd(&history, 5.5, 5));
        // A later, better value does not count while it is among the last five.
        let history = [5.0, 3.0, 4.0, 4.0, 4.0, 4.0, 1.0];
        assert!(should_switch_to_asgd(&history, 3.5, 5));
        assert!(!should_switch_to_asgd(&history, 2.5, 5));
    }

    #[test]
    fn sequence_lengths_follow_the_reference_distributions() {
        let lengths: Vec<usize> = (0..2000).map(|key| search_seq_len(key, 35)).collect();
        assert!(lengths.iter().all(|&l| l == 35 || l == 17));
        let short = lengths.iter().filter(|&&l| l == 17).count();
        assert!((50..150).contains(&short), "{short} short draws of 2000");
        let jittered: Vec<usize> = (0..2000).map(|key| eval_seq_len(key, 35, 5.0)).collect();
        assert!(jittered.iter().all(|&l| (5..=55).contains(&l)));
        let mean = jittered.iter().sum::<usize>() as f64 / 2000.0;
        // E = 0.95 * 35 + 0.05 * 17.5 minus about 0.5 for the truncation towards zero.
        assert!((33.0..34.5).contains(&mean), "mean {mean}");
        assert_eq!(search_seq_len(7, 35), search_seq_len(7, 35));
        assert_eq!(scaled_lr(20.0, 17, 35), 20.0 * 17.0 / 35.0);
    }
}
