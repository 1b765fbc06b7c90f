//! Every key of the search configuration with its type, range and a one-line description: the
//! one table that validation checks values against, `prime config keys` lists, and `prime
//! config show` writes as comments. Defaults are not repeated here; they come from
//! [`SearchConfig::default`](super::SearchConfig). The evaluation and recurrent configs have
//! their tables beside this one (`eval_keys`, `rnn_keys`), built from the same kinds of key.

use crate::limits;
use crate::methods::METHOD_NAMES;
use std::fmt;
use std::ops::RangeInclusive;

/// What a config's `method` may say besides a preset name: settings that follow no preset.
pub const CUSTOM_METHOD: &str = "custom";

/// One dotted key of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Dotted name, as a TOML table path and as `--set` takes it (`schedule.h0`).
    pub name: &'static str,
    /// What the value means, on one line.
    pub doc: &'static str,
    /// The values it may take.
    pub range: KeyRange,
}

/// The values a key may take.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyRange {
    /// An integer in the range.
    Count(RangeInclusive<u64>),
    /// An integer in the range, or the key left out.
    OptionalCount(RangeInclusive<u64>),
    /// A finite real number between the bounds.
    Real(RealRange),
    /// One of these words.
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Flag,
    /// A non-negative TOML integer (below 2^63).
    Seed,
    /// A method preset name or `custom`.
    Method,
    /// The format version; only this one.
    Version(u32),
    /// Text of this many characters.
    Text(RangeInclusive<u64>),
    /// A list that the genotype's own checks validate; the text says what it holds.
    Genes(&'static str),
}

/// The range of a real-valued key: finite, above (or at) `low`, below (or at) `high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealRange {
    /// Lower bound.
    pub low: f64,
    /// Whether `low` itself is allowed.
    pub low_inclusive: bool,
    /// Upper bound; infinity for none.
    pub high: f64,
    /// Whether `high` itself is allowed.
    pub high_inclusive: bool,
}

impl RealRange {
    /// Finite and above 0.
    pub const POSITIVE: RealRange = RealRange::new(0.0, false, f64::INFINITY, false);
    /// Finite and at least 0.
    pub const NON_NEGATIVE: RealRange = RealRange::new(0.0, true, f64::INFINITY, false);
    /// In [0, 1).
    pub const UNIT_FRACTION: RealRange = RealRange::new(0.0, true, 1.0, false);

    /// The range from `low` to `high`, each bound included or not.
    pub const fn new(low: f64, low_inclusive: bool, high: f64, high_inclusive: bool) -> Self {
        RealRange {
            low,
            low_inclusive,
            high,
            high_inclusive,
        }
    }

    /// The closed range of `limits` (`limits::RHO`).
    pub const fn closed(range: RangeInclusive<f64>) -> Self {
        RealRange::new(*range.start(), true, *range.end(), true)
    }

    /// Whether `value` lies in the range (NaN and infinities never do).
    pub fn contains(&self, value: f64) -> bool {
        let above = if self.low_inclusive {
            value >= self.low
        } else {
            value > self.low
        };
        let below = if self.high_inclusive {
            value <= self.high
        } else {
            value < self.high
        };
        value.is_finite() && above && below
    }
}

impl fmt::Display for RealRange {
    /// `0 <= x < 1`, `a finite number > 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let low = if self.low_inclusive { "<=" } else { "<" };
        let high = if self.high_inclusive { "<=" } else { "<" };
        if self.high.is_infinite() {
            let low = if self.low_inclusive { ">=" } else { ">" };
            write!(f, "a finite number {low} {}", self.low)
        } else {
            write!(f, "{} {low} x {high} {}", self.low, self.high)
        }
    }
}

impl KeyRange {
    /// The type of the value, as TOML calls it.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyRange::Count(_) | KeyRange::OptionalCount(_) | KeyRange::Seed => "integer",
            KeyRange::Version(_) => "integer",
            KeyRange::Real(_) => "float",
            KeyRange::Choice(_) | KeyRange::Method => "string",
            KeyRange::Flag => "bool",
            KeyRange::Text(_) => "string",
            KeyRange::Genes(_) => "array",
        }
    }
}

impl fmt::Display for KeyRange {
    /// The values the key admits, as `prime config keys` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRange::Count(range) => write!(f, "{}..={}", range.start(), range.end()),
            KeyRange::OptionalCount(range) => {
                write!(f, "{}..={}, or unset", range.start(), range.end())
            }
            KeyRange::Real(range) => write!(f, "{range}"),
            KeyRange::Choice(words) => write!(f, "{}", words.join(" | ")),
            KeyRange::Flag => write!(f, "true | false"),
            KeyRange::Seed => write!(f, "0..={}", i64::MAX),
            KeyRange::Method => write!(f, "{} | {CUSTOM_METHOD}", METHOD_NAMES.join(" | ")),
            KeyRange::Version(version) => write!(f, "{version}"),
            KeyRange::Text(range) => {
                write!(f, "{}..={} characters", range.start(), range.end())
            }
            KeyRange::Genes(what) => write!(f, "{what}"),
        }
    }
}

/// A key whose value is an integer in `range`.
pub(crate) const fn count(
    name: &'static str,
    range: RangeInclusive<u64>,
    doc: &'static str,
) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::Count(range),
    }
}

/// A key whose value is a finite real in `range`.
pub(crate) const fn real(name: &'static str, range: RealRange, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::Real(range),
    }
}

/// A key whose value is one of `words`.
pub(crate) const fn choice(
    name: &'static str,
    words: &'static [&'static str],
    doc: &'static str,
) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::Choice(words),
    }
}

/// A boolean key.
pub(crate) const fn flag(name: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::Flag,
    }
}

/// A key whose value is an integer in `range`, or left out.
pub(crate) const fn optional_count(
    name: &'static str,
    range: RangeInclusive<u64>,
    doc: &'static str,
) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::OptionalCount(range),
    }
}

/// A key whose value is a list of genes or states that the genotype's checks validate.
pub(crate) const fn genes(name: &'static str, what: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        range: KeyRange::Genes(what),
    }
}

/// `version`.
pub const VERSION: Key = Key {
    name: "version",
    doc: "Format version of the file; this build reads 1 only.",
    range: KeyRange::Version(super::load::CONFIG_VERSION),
};
/// `method`.
pub const METHOD: Key = Key {
    name: "method",
    doc: "Method name for the record (labels run directories, results and figures).",
    range: KeyRange::Method,
};
/// `seed`.
pub const SEED: Key = Key {
    name: "seed",
    doc: "Random seed of weights, alphas, data order and augmentation.",
    range: KeyRange::Seed,
};
/// `compat`.
pub const COMPAT: Key = choice(
    "compat",
    &["reference", "fixed"],
    "Where the authors' code differs from the paper: reproduce it (reference) or not (fixed).",
);
/// `epochs`.
pub const EPOCHS: Key = count("epochs", limits::EPOCHS, "Search epochs.");
/// `data.dataset`.
pub const DATA_DATASET: Key = choice(
    "data.dataset",
    &["cifar10", "cifar100"],
    "Image dataset searched on (Penn Treebank runs use the recurrent search).",
);
/// `data.batch_size`.
pub const DATA_BATCH_SIZE: Key = count(
    "data.batch_size",
    limits::BATCH_SIZE,
    "Images per weight and per alpha minibatch.",
);
/// `data.train_portion`.
pub const DATA_TRAIN_PORTION: Key = real(
    "data.train_portion",
    RealRange::new(0.0, false, 1.0, false),
    "Fraction of training images for weight steps; the rest feed alpha steps.",
);
/// `data.dynamic_split`.
pub const DATA_DYNAMIC_SPLIT: Key = flag(
    "data.dynamic_split",
    "Split the images r/(r+1) with r = schedule.ratio instead of train_portion.",
);
/// `data.limit`.
pub const DATA_LIMIT: Key = Key {
    name: "data.limit",
    doc: "Use only the first N training images (small runs); unset uses all.",
    range: KeyRange::OptionalCount(limits::TRAIN_SAMPLES),
};
/// `data.cutout`.
pub const DATA_CUTOUT: Key = flag("data.cutout", "Cutout augmentation (off in the search).");
/// `data.cutout_length`.
pub const DATA_CUTOUT_LENGTH: Key = count(
    "data.cutout_length",
    limits::CUTOUT_LENGTH,
    "Side of the cutout square in pixels.",
);
/// `data.prefetch`.
pub const DATA_PREFETCH: Key = count(
    "data.prefetch",
    limits::PREFETCH,
    "Batches decoded ahead of the training thread, per stream.",
);
/// `network.init_channels`.
pub const NETWORK_INIT_CHANNELS: Key = count(
    "network.init_channels",
    limits::CNN_WIDTH,
    "Channels C of the first cell; must be even.",
);
/// `network.layers`.
pub const NETWORK_LAYERS: Key = count("network.layers", limits::CNN_LAYERS, "Number of cells.");
/// `network.steps`.
pub const NETWORK_STEPS: Key = count(
    "network.steps",
    limits::CELL_STEPS,
    "Intermediate nodes per cell.",
);
/// `network.multiplier`.
pub const NETWORK_MULTIPLIER: Key = count(
    "network.multiplier",
    limits::CELL_STEPS,
    "States concatenated into a cell's output; at most network.steps.",
);
/// `network.stem_multiplier`.
pub const NETWORK_STEM_MULTIPLIER: Key = count(
    "network.stem_multiplier",
    limits::STEM_MULTIPLIER,
    "Width factor of the stem convolution.",
);
/// `weights.lr`.
pub const WEIGHTS_LR: Key = real(
    "weights.lr",
    RealRange::POSITIVE,
    "Initial learning rate of the weights' SGD (cosine schedule).",
);
/// `weights.lr_min`.
pub const WEIGHTS_LR_MIN: Key = real(
    "weights.lr_min",
    RealRange::NON_NEGATIVE,
    "Final learning rate of the cosine schedule; at most weights.lr.",
);
/// `weights.lr_offset`.
pub const WEIGHTS_LR_OFFSET: Key = count(
    "weights.lr_offset",
    0..=1,
    "Epoch e trains with lr(e + offset): 1 as the authors' code, 0 as original DARTS.",
);
/// `weights.momentum`.
pub const WEIGHTS_MOMENTUM: Key = real(
    "weights.momentum",
    RealRange::UNIT_FRACTION,
    "SGD momentum.",
);
/// `weights.weight_decay`.
pub const WEIGHTS_WEIGHT_DECAY: Key = real(
    "weights.weight_decay",
    RealRange::NON_NEGATIVE,
    "L2 weight decay of the network weights.",
);
/// `weights.grad_clip`.
pub const WEIGHTS_GRAD_CLIP: Key = real(
    "weights.grad_clip",
    RealRange::POSITIVE,
    "Global gradient-norm clip of the weight step.",
);
/// `arch.activation`.
pub const ARCH_ACTIVATION: Key = choice(
    "arch.activation",
    &["softmax", "crb"],
    "Activation of alpha: softmax as DARTS, or the unit-clipped ReLU of the CRB methods.",
);
/// `arch.lr`.
pub const ARCH_LR: Key = real(
    "arch.lr",
    RealRange::POSITIVE,
    "Learning rate of the alphas' Adam (constant).",
);
/// `arch.beta1`.
pub const ARCH_BETA1: Key = real(
    "arch.beta1",
    RealRange::UNIT_FRACTION,
    "Adam beta1 of the alphas.",
);
/// `arch.beta2`.
pub const ARCH_BETA2: Key = real(
    "arch.beta2",
    RealRange::UNIT_FRACTION,
    "Adam beta2 of the alphas.",
);
/// `arch.eps`.
pub const ARCH_EPS: Key = real(
    "arch.eps",
    RealRange::POSITIVE,
    "Adam epsilon of the alphas.",
);
/// `arch.weight_decay`.
pub const ARCH_WEIGHT_DECAY: Key = real(
    "arch.weight_decay",
    RealRange::NON_NEGATIVE,
    "L2 weight decay of the alphas (the CRB methods use 0).",
);
/// `arch.order`.
pub const ARCH_ORDER: Key = choice(
    "arch.order",
    &["first", "second"],
    "Architecture gradient at the current weights (first) or DARTS's unrolled one (second).",
);
/// `arch.batch_policy`.
pub const ARCH_BATCH_POLICY: Key = choice(
    "arch.batch_policy",
    &["persistent", "random"],
    "Alpha batches from a per-epoch iterator (the authors' code) or drawn at random.",
);
/// `schedule.kind`.
pub const SCHEDULE_KIND: Key = choice(
    "schedule.kind",
    &["alternate", "constant", "fimt"],
    "When alpha steps happen: before every weight step, every ratio steps, or FIMT-triggered.",
);
/// `schedule.ratio`.
pub const SCHEDULE_RATIO: Key = count(
    "schedule.ratio",
    limits::SCHEDULE_RATIO,
    "r: weight steps per alpha step (the constant schedule's period, FIMT's ratio).",
);
/// `schedule.h0`.
pub const SCHEDULE_H0: Key = real(
    "schedule.h0",
    RealRange::POSITIVE,
    "FIMT: initial threshold h0.",
);
/// `schedule.hi`.
pub const SCHEDULE_HI: Key = real(
    "schedule.hi",
    RealRange::new(1.0, false, f64::INFINITY, false),
    "FIMT: threshold growth per iteration without an alpha step.",
);
/// `schedule.ewma`.
pub const SCHEDULE_EWMA: Key = real(
    "schedule.ewma",
    RealRange::new(0.0, false, 1.0, true),
    "FIMT: EWMA coefficient lambda of the Fisher trace.",
);
/// `regularizer.kind`.
pub const REGULARIZER_KIND: Key = choice(
    "regularizer.kind",
    &["none", "prox", "admm"],
    "Alpha regularizer: none, proximity (linearly growing rho) or ADMM.",
);
/// `regularizer.rho`.
pub const REGULARIZER_RHO: Key = real(
    "regularizer.rho",
    RealRange::closed(limits::RHO),
    "Coefficient rho of the proximity or ADMM term.",
);
/// `regularizer.admm_freq`.
pub const REGULARIZER_ADMM_FREQ: Key = count(
    "regularizer.admm_freq",
    limits::ADMM_FREQ,
    "ADMM: Z/U update every this many alpha steps.",
);
/// `regularizer.admm_discount`.
pub const REGULARIZER_ADMM_DISCOUNT: Key = real(
    "regularizer.admm_discount",
    RealRange::new(0.0, true, 1.0, true),
    "ADMM: discount lambda_u of U.",
);
/// `checkpoint.every_epochs`.
pub const CHECKPOINT_EVERY_EPOCHS: Key = count(
    "checkpoint.every_epochs",
    limits::CHECKPOINT_EVERY_EPOCHS,
    "Checkpoint every this many epochs (0: only at the end).",
);

/// `speed.read_back_every`.
pub const SPEED_READ_BACK_EVERY: Key = count(
    "speed.read_back_every",
    limits::READ_BACK_EVERY,
    "Weight steps whose records are read back from the device together (GPU speed; same records).",
);
/// `speed.cudnn_benchmark`.
pub const SPEED_CUDNN_BENCHMARK: Key = flag(
    "speed.cudnn_benchmark",
    "Let cuDNN time its convolution algorithms and keep the fastest (CUDA; not bitwise repeatable).",
);
/// `speed.search_precision`.
pub const SPEED_SEARCH_PRECISION: Key = choice(
    "speed.search_precision",
    &["float32", "bf16"],
    "Arithmetic of the network's passes: float32, or bf16 with float32 alphas, master weights and optimizer states.",
);

/// Every key of the search configuration ([`SearchConfig`](super::SearchConfig)), in the
/// order the TOML form writes them.
pub const SEARCH_KEYS: &[Key] = &[
    VERSION,
    METHOD,
    SEED,
    COMPAT,
    EPOCHS,
    DATA_DATASET,
    DATA_BATCH_SIZE,
    DATA_TRAIN_PORTION,
    DATA_DYNAMIC_SPLIT,
    DATA_LIMIT,
    DATA_CUTOUT,
    DATA_CUTOUT_LENGTH,
    DATA_PREFETCH,
    NETWORK_INIT_CHANNELS,
    NETWORK_LAYERS,
    NETWORK_STEPS,
    NETWORK_MULTIPLIER,
    NETWORK_STEM_MULTIPLIER,
    WEIGHTS_LR,
    WEIGHTS_LR_MIN,
    WEIGHTS_LR_OFFSET,
    WEIGHTS_MOMENTUM,
    WEIGHTS_WEIGHT_DECAY,
    WEIGHTS_GRAD_CLIP,
    ARCH_ACTIVATION,
    ARCH_LR,
    ARCH_BETA1,
    ARCH_BETA2,
    ARCH_EPS,
    ARCH_WEIGHT_DECAY,
    ARCH_ORDER,
    ARCH_BATCH_POLICY,
    SCHEDULE_KIND,
    SCHEDULE_RATIO,
    SCHEDULE_H0,
    SCHEDULE_HI,
    SCHEDULE_EWMA,
    REGULARIZER_KIND,
    REGULARIZER_RHO,
    REGULARIZER_ADMM_FREQ,
    REGULARIZER_ADMM_DISCOUNT,
    CHECKPOINT_EVERY_EPOCHS,
    SPEED_READ_BACK_EVERY,
    SPEED_CUDNN_BENCHMARK,
    SPEED_SEARCH_PRECISION,
];

/// The search key called `name`.
pub fn search_key(name: &str) -> Option<&'static Key> {
    SEARCH_KEYS.iter().find(|key| key.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::key_checks::{
        assert_annotated_reads_back, assert_lists_every_key, assert_ranges_enforced,
    };
    use crate::config::{LayeredConfig, SearchConfig};
    use crate::presets;

    #[test]
    fn every_config_key_is_listed_once_and_every_listed_key_exists() {
        let mut config = SearchConfig::default();
        config.speed.read_back_every = 2;
        assert_lists_every_key(&config, SEARCH_KEYS);
    }

    /// Overrides that make room for `key`'s extremes (the multiplier is at most the steps).
    fn room_for(key: &Key) -> Vec<String> {
        match key.name {
            "network.multiplier" => vec!["network.steps=16".to_string()],
            "network.steps" => vec!["network.multiplier=1".to_string()],
            _ => Vec::new(),
        }
    }

    #[test]
    fn validation_enforces_exactly_the_listed_ranges() {
        assert_ranges_enforced::<SearchConfig>(SEARCH_KEYS, room_for);
    }

    #[test]
    fn the_annotated_form_comments_every_key_and_reads_back_unchanged() {
        for name in METHOD_NAMES {
            let config = presets::method_config(name, &["data.limit=64".to_string()]).unwrap();
            let text = config.to_annotated_toml().unwrap();
            assert_annotated_reads_back(&config, &text);
            assert!(text.contains("# Use only the first N training images"));
        }
        let unset = SearchConfig::default().to_annotated_toml().unwrap();
        assert!(unset.contains("# limit is unset. Use only the first N training images"));
        assert!(unset.contains("\n[speed]\n"));
        assert!(unset.contains("\nread_back_every = 1\n"));
        assert_eq!(
            SearchConfig::from_toml(&unset, "defaults", &[]).unwrap(),
            SearchConfig::default()
        );
    }

    #[test]
    fn ranges_read_as_people_write_them() {
        assert_eq!(
            RealRange::UNIT_FRACTION.to_string(),
            "0 <= x < 1".to_string()
        );
        assert_eq!(RealRange::POSITIVE.to_string(), "a finite number > 0");
        assert_eq!(EPOCHS.range.to_string(), "1..=10000");
        assert_eq!(DATA_LIMIT.range.to_string(), "1..=100000000, or unset");
        assert_eq!(COMPAT.range.to_string(), "reference | fixed");
        assert_eq!(
            KeyRange::Text(1..=255).to_string(),
            "1..=255 characters".to_string()
        );
    }
}
