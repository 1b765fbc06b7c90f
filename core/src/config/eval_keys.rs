//! Every key of the CIFAR evaluation configuration ([`EvalConfig`](crate::eval_config::EvalConfig)):
//! the table its validation reads ranges from, `prime config keys --eval` lists and `prime
//! config show --eval` writes as comments. Keys that mean the same as in the search (the
//! weight optimizer, the cell shape, the image pipeline) are the search's own entries.

use super::keys::{
    choice, count, flag, genes, optional_count, real, Key, KeyRange, RealRange,
    CHECKPOINT_EVERY_EPOCHS, DATA_CUTOUT_LENGTH, DATA_PREFETCH, EPOCHS, NETWORK_INIT_CHANNELS,
    NETWORK_LAYERS, SEED, VERSION, WEIGHTS_GRAD_CLIP, WEIGHTS_LR, WEIGHTS_LR_MIN,
    WEIGHTS_LR_OFFSET, WEIGHTS_MOMENTUM, WEIGHTS_WEIGHT_DECAY,
};
use crate::limits;

/// `label`, of both evaluations.
pub const LABEL: Key = Key {
    name: "label",
    doc: "Name of the evaluated genotype in records and reports.",
    range: KeyRange::Text(limits::LABEL_CHARS),
};
/// `report_every`.
pub const REPORT_EVERY: Key = count(
    "report_every",
    limits::REPORT_EVERY,
    "Training steps between step records (each one reads the device once).",
);
/// `data.dataset` of the evaluation.
pub const EVAL_DATA_DATASET: Key = choice(
    "data.dataset",
    &["cifar10", "cifar100"],
    "Image dataset retrained and tested on.",
);
/// `data.batch_size` of the evaluation.
pub const EVAL_DATA_BATCH_SIZE: Key = count(
    "data.batch_size",
    limits::BATCH_SIZE,
    "Images per training minibatch and per test batch.",
);
/// `data.limit` of the evaluation.
pub const EVAL_DATA_LIMIT: Key = optional_count(
    "data.limit",
    limits::TRAIN_SAMPLES,
    "Use only the first N training and N test images (small runs); unset uses all.",
);
/// `data.cutout` of the evaluation.
pub const EVAL_DATA_CUTOUT: Key = flag(
    "data.cutout",
    "Cutout augmentation of the training images (on in the paper's evaluation).",
);
/// `network.auxiliary`.
pub const NETWORK_AUXILIARY: Key = flag(
    "network.auxiliary",
    "Auxiliary classifier on the output of cell 2*layers/3.",
);
/// `network.auxiliary_weight`.
pub const NETWORK_AUXILIARY_WEIGHT: Key = real(
    "network.auxiliary_weight",
    RealRange::NON_NEGATIVE,
    "Weight of the auxiliary classifier's loss.",
);
/// `network.drop_path_prob`.
pub const NETWORK_DROP_PATH_PROB: Key = real(
    "network.drop_path_prob",
    RealRange::UNIT_FRACTION,
    "Final drop-path probability; epoch e drops with drop_path_prob * e / epochs.",
);
/// `speed.channels_last`.
pub const SPEED_CHANNELS_LAST: Key = flag(
    "speed.channels_last",
    "Keep activations and convolution weights channels-last (NHWC; GPU speed).",
);
/// `speed.autocast`.
pub const SPEED_AUTOCAST: Key = choice(
    "speed.autocast",
    &["off", "bf16", "fp16"],
    "Reduced-precision arithmetic: float32 (the reference's), bfloat16, or float16 with loss scaling.",
);
/// `speed.cudnn_benchmark` of the evaluation.
pub const EVAL_SPEED_CUDNN_BENCHMARK: Key = flag(
    "speed.cudnn_benchmark",
    "Let cuDNN time its convolution algorithms and keep the fastest (CUDA; not bitwise repeatable).",
);
/// `genotype.normal`.
pub const GENOTYPE_NORMAL: Key = genes(
    "genotype.normal",
    "[op, input] pairs, two per node",
    "Operations and inputs of the normal cell's nodes.",
);
/// `genotype.normal_concat`.
pub const GENOTYPE_NORMAL_CONCAT: Key = genes(
    "genotype.normal_concat",
    "state indices",
    "States concatenated into the normal cell's output.",
);
/// `genotype.reduce`.
pub const GENOTYPE_REDUCE: Key = genes(
    "genotype.reduce",
    "[op, input] pairs, two per node",
    "Operations and inputs of the reduction cell's nodes.",
);
/// `genotype.reduce_concat`.
pub const GENOTYPE_REDUCE_CONCAT: Key = genes(
    "genotype.reduce_concat",
    "state indices",
    "States concatenated into the reduction cell's output.",
);

/// Every key of the CIFAR evaluation configuration, in the order its TOML form writes them.
pub const EVAL_KEYS: &[Key] = &[
    VERSION,
    LABEL,
    Key {
        doc: "Random seed of weights, data order, augmentation and drop path.",
        ..SEED
    },
    Key {
        doc: "Training epochs.",
        ..EPOCHS
    },
    REPORT_EVERY,
    EVAL_DATA_DATASET,
    EVAL_DATA_BATCH_SIZE,
    EVAL_DATA_LIMIT,
    EVAL_DATA_CUTOUT,
    DATA_CUTOUT_LENGTH,
    DATA_PREFETCH,
    NETWORK_INIT_CHANNELS,
    NETWORK_LAYERS,
    NETWORK_AUXILIARY,
    NETWORK_AUXILIARY_WEIGHT,
    NETWORK_DROP_PATH_PROB,
    WEIGHTS_LR,
    WEIGHTS_LR_MIN,
    WEIGHTS_LR_OFFSET,
    WEIGHTS_MOMENTUM,
    WEIGHTS_WEIGHT_DECAY,
    WEIGHTS_GRAD_CLIP,
    SPEED_CHANNELS_LAST,
    SPEED_AUTOCAST,
    EVAL_SPEED_CUDNN_BENCHMARK,
    CHECKPOINT_EVERY_EPOCHS,
    GENOTYPE_NORMAL,
    GENOTYPE_NORMAL_CONCAT,
    GENOTYPE_REDUCE,
    GENOTYPE_REDUCE_CONCAT,
];
