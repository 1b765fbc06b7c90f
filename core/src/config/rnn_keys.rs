//! Every key of the recurrent (Penn Treebank) search and evaluation configurations
//! ([`RnnSearchConfig`](crate::rnn_config::RnnSearchConfig),
//! [`RnnEvalConfig`](crate::rnn_config::RnnEvalConfig)): the tables their validation reads
//! ranges from, `prime config keys --dataset ptb [--eval]` lists and `prime config show`
//! writes as comments. Keys that mean the same as in the CNN search (the alpha optimizer, the
//! schedule) are the search's own entries.

use super::eval_keys::LABEL;
use super::keys::{
    choice, count, genes, optional_count, real, Key, RealRange, ARCH_ACTIVATION, ARCH_BETA1,
    ARCH_BETA2, ARCH_EPS, ARCH_LR, ARCH_WEIGHT_DECAY, CHECKPOINT_EVERY_EPOCHS, COMPAT, EPOCHS,
    METHOD, SCHEDULE_EWMA, SCHEDULE_H0, SCHEDULE_HI, SCHEDULE_KIND, SCHEDULE_RATIO, SEED,
    SPEED_READ_BACK_EVERY, VERSION,
};
use crate::limits;

/// `speed.read_back_every` of the recurrent evaluation.
pub const RNN_EVAL_READ_BACK_EVERY: Key = count(
    "speed.read_back_every",
    limits::READ_BACK_EVERY,
    "Training steps whose losses are read back from the device together (GPU speed; same records).",
);
/// `data.batch_size` of the recurrent search.
pub const RNN_SEARCH_BATCH_SIZE: Key = count(
    "data.batch_size",
    limits::BATCH_SIZE,
    "Token columns of the weight and the alpha batches.",
);
/// `data.batch_size` of the recurrent evaluation.
pub const RNN_EVAL_BATCH_SIZE: Key = count(
    "data.batch_size",
    limits::BATCH_SIZE,
    "Token columns of the training batches.",
);
/// `data.eval_batch_size`.
pub const RNN_EVAL_BATCH_SIZE_VALID: Key = count(
    "data.eval_batch_size",
    limits::BATCH_SIZE,
    "Token columns of the per-epoch validation pass.",
);
/// `data.test_batch_size`.
pub const RNN_TEST_BATCH_SIZE: Key = count(
    "data.test_batch_size",
    limits::BATCH_SIZE,
    "Token columns of the final test pass.",
);
/// `data.bptt`.
pub const RNN_BPTT: Key = count(
    "data.bptt",
    limits::BPTT,
    "Base sequence length of truncated backpropagation through time.",
);
/// `data.limit` of both recurrent configs.
pub const RNN_DATA_LIMIT: Key = optional_count(
    "data.limit",
    limits::TRAIN_TOKENS,
    "Use only the first N training tokens (small runs); unset uses all.",
);
/// `network.nhid`.
pub const RNN_NHID: Key = count(
    "network.nhid",
    limits::WIDTH,
    "Width of the embedding and of the recurrent cell.",
);
/// `network.dropout`.
pub const RNN_DROPOUT: Key = real(
    "network.dropout",
    RealRange::UNIT_FRACTION,
    "Locked dropout on the cell's outputs.",
);
/// `network.dropouth`.
pub const RNN_DROPOUTH: Key = real(
    "network.dropouth",
    RealRange::UNIT_FRACTION,
    "Variational dropout on the hidden state inside the cell.",
);
/// `network.dropoutx`.
pub const RNN_DROPOUTX: Key = real(
    "network.dropoutx",
    RealRange::UNIT_FRACTION,
    "Variational dropout on the input inside the cell.",
);
/// `network.dropouti`.
pub const RNN_DROPOUTI: Key = real(
    "network.dropouti",
    RealRange::UNIT_FRACTION,
    "Locked dropout on the embeddings.",
);
/// `network.dropoute`.
pub const RNN_DROPOUTE: Key = real(
    "network.dropoute",
    RealRange::UNIT_FRACTION,
    "Embedding (word) dropout.",
);
/// `weights.lr` of both recurrent configs.
pub const RNN_WEIGHTS_LR: Key = real(
    "weights.lr",
    RealRange::POSITIVE,
    "Learning rate of the weights' SGD, scaled by each batch's sequence length / bptt.",
);
/// `weights.weight_decay` of both recurrent configs.
pub const RNN_WEIGHTS_WEIGHT_DECAY: Key = real(
    "weights.weight_decay",
    RealRange::NON_NEGATIVE,
    "L2 weight decay of the network weights.",
);
/// `weights.grad_clip` of both recurrent configs.
pub const RNN_WEIGHTS_GRAD_CLIP: Key = real(
    "weights.grad_clip",
    RealRange::POSITIVE,
    "Global gradient-norm clip of the weight step.",
);
/// `weights.ar_alpha`.
pub const RNN_AR_ALPHA: Key = real(
    "weights.ar_alpha",
    RealRange::NON_NEGATIVE,
    "Activation regularisation (AR) coefficient on the dropped outputs.",
);
/// `weights.tar_beta`.
pub const RNN_TAR_BETA: Key = real(
    "weights.tar_beta",
    RealRange::NON_NEGATIVE,
    "Temporal activation regularisation (TAR) coefficient on the raw outputs.",
);
/// `weights.nonmono`.
pub const RNN_NONMONO: Key = count(
    "weights.nonmono",
    limits::NONMONO,
    "NT-ASGD: switch to averaged SGD when validation has not improved on this many epochs before.",
);
/// `weights.seq_len_std`.
pub const RNN_SEQ_LEN_STD: Key = real(
    "weights.seq_len_std",
    RealRange::NON_NEGATIVE,
    "Standard deviation of the sequence-length jitter around bptt.",
);
/// `weights.asgd_at_epoch`.
pub const RNN_ASGD_AT_EPOCH: Key = optional_count(
    "weights.asgd_at_epoch",
    limits::EPOCH_INDEX,
    "Switch to averaged SGD after this 0-based epoch at the latest; unset: only NT-ASGD's trigger.",
);
/// `regularizer.kind` of the recurrent search.
pub const RNN_REGULARIZER_KIND: Key = choice(
    "regularizer.kind",
    &["none", "prox"],
    "Alpha regularizer: none or proximity (the reference has no recurrent ADMM).",
);
/// `regularizer.rho` of the recurrent search.
pub const RNN_REGULARIZER_RHO: Key = real(
    "regularizer.rho",
    RealRange::closed(limits::RHO),
    "Coefficient rho of the proximity term.",
);
/// `convergence`.
pub const RNN_CONVERGENCE: Key = count(
    "convergence",
    limits::CONVERGENCE,
    "Stop after this many epochs without a new best validation loss (0: never).",
);
/// `genotype.recurrent`.
pub const GENOTYPE_RECURRENT: Key = genes(
    "genotype.recurrent",
    "[activation, input] pairs, one per node",
    "Activation and input state of each node of the recurrent cell.",
);
/// `genotype.concat`.
pub const GENOTYPE_CONCAT: Key = genes(
    "genotype.concat",
    "state indices",
    "States averaged into the recurrent cell's output.",
);

/// Every key of the recurrent search configuration, in the order its TOML form writes them.
pub const RNN_SEARCH_KEYS: &[Key] = &[
    VERSION,
    METHOD,
    Key {
        doc: "Random seed of weights, alphas, dropout masks and sequence lengths.",
        ..SEED
    },
    COMPAT,
    EPOCHS,
    RNN_SEARCH_BATCH_SIZE,
    RNN_EVAL_BATCH_SIZE_VALID,
    RNN_BPTT,
    RNN_DATA_LIMIT,
    RNN_NHID,
    RNN_DROPOUT,
    RNN_DROPOUTH,
    RNN_DROPOUTX,
    RNN_DROPOUTI,
    RNN_DROPOUTE,
    RNN_WEIGHTS_LR,
    RNN_WEIGHTS_WEIGHT_DECAY,
    RNN_WEIGHTS_GRAD_CLIP,
    RNN_AR_ALPHA,
    RNN_TAR_BETA,
    ARCH_ACTIVATION,
    ARCH_LR,
    ARCH_BETA1,
    ARCH_BETA2,
    ARCH_EPS,
    ARCH_WEIGHT_DECAY,
    SCHEDULE_KIND,
    SCHEDULE_RATIO,
    SCHEDULE_H0,
    SCHEDULE_HI,
    SCHEDULE_EWMA,
    RNN_REGULARIZER_KIND,
    RNN_REGULARIZER_RHO,
    CHECKPOINT_EVERY_EPOCHS,
    SPEED_READ_BACK_EVERY,
];

/// Every key of the recurrent evaluation configuration, in the order its TOML form writes them.
pub const RNN_EVAL_KEYS: &[Key] = &[
    VERSION,
    LABEL,
    Key {
        doc: "Random seed of weights, dropout masks and sequence lengths.",
        ..SEED
    },
    Key {
        doc: "Most training epochs (convergence may stop the run earlier).",
        ..EPOCHS
    },
    RNN_CONVERGENCE,
    RNN_EVAL_BATCH_SIZE,
    RNN_EVAL_BATCH_SIZE_VALID,
    RNN_TEST_BATCH_SIZE,
    RNN_BPTT,
    RNN_DATA_LIMIT,
    RNN_NHID,
    RNN_DROPOUT,
    RNN_DROPOUTH,
    RNN_DROPOUTX,
    RNN_DROPOUTI,
    RNN_DROPOUTE,
    RNN_WEIGHTS_LR,
    RNN_WEIGHTS_WEIGHT_DECAY,
    RNN_WEIGHTS_GRAD_CLIP,
    RNN_AR_ALPHA,
    RNN_TAR_BETA,
    RNN_NONMONO,
    RNN_SEQ_LEN_STD,
    RNN_ASGD_AT_EPOCH,
    CHECKPOINT_EVERY_EPOCHS,
    RNN_EVAL_READ_BACK_EVERY,
    GENOTYPE_RECURRENT,
    GENOTYPE_CONCAT,
];
