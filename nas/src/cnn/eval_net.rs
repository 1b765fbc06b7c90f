//! The evaluation network NetworkCIFAR (SPEC 6.2-6.5): cells built from a genotype with
//! affine batch norm, drop path on every non-identity op output, and an auxiliary head on the
//! output of cell 2·layers/3.

use super::layers::{BatchNorm, Conv, ConvSpec, Linear};
use super::ops::{Network, Op, Preprocess, ReluConvBn};
use prime_core::genotype::{Gene, Genotype, ValidationError};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::cell::Cell;
use tch::{nn, Device, Tensor};

/// Width factor of the stem (3·C channels).
pub(crate) const STEM_MULTIPLIER: i64 = 3;
/// Channels of the auxiliary head's 1x1 convolution.
const AUX_HIDDEN: i64 = 128;
/// Channels of the auxiliary head's 2x2 convolution.
const AUX_FEATURES: i64 = 768;
/// Variables whose name contains this belong to the auxiliary head; the paper's parameter
/// counts exclude them (SPEC 6.7).
pub const AUXILIARY_MARKER: &str = "auxiliary";

/// Shape of an evaluation network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalNetShape {
    /// Initial channels C (36 in the paper).
    pub channels: i64,
    /// Number of classes.
    pub classes: i64,
    /// Number of cells (20 in the paper); reductions at layers/3 and 2·layers/3.
    pub layers: i64,
    /// Whether the auxiliary head exists.
    pub auxiliary: bool,
}

impl EvalNetShape {
    /// The paper's evaluation network for `classes` classes: C 36, 20 cells, auxiliary head.
    pub fn paper(classes: i64) -> Self {
        Self {
            channels: 36,
            classes,
            layers: 20,
            auxiliary: true,
        }
    }

    /// Whether cell `index` is a reduction cell.
    pub fn is_reduction(&self, index: i64) -> bool {
        index == self.layers / 3 || index == 2 * self.layers / 3
    }

    /// The cell whose output feeds the auxiliary head.
    pub fn auxiliary_cell(&self) -> i64 {
        2 * self.layers / 3
    }
}

/// Why a network cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EvalNetError {
    /// The genotype is malformed.
    #[error("genotype: {0}")]
    Genotype(#[from] ValidationError),
    /// The shape is unusable.
    #[error("network shape: {0}")]
    Shape(String),
}

/// Drop path (SPEC 6.4) of one tensor: sample b is kept when `keep[b]` is 1 and zeroed when
/// it is 0; kept samples are scaled by 1/(1 - prob), so the expectation is unchanged.
pub fn drop_path(xs: &Tensor, prob: f64, keep: &Tensor) -> Tensor {
    let mask = keep.view([-1, 1, 1, 1]).to_kind(xs.kind());
    (xs / (1.0 - prob)) * mask
}

/// The drop-path masks of one training step: for every drop-path site of the network (each
/// non-identity op of each cell, in forward order), an independent Bernoulli(1 - prob) keep
/// flag per sample.
///
/// The flags are drawn on the host from a generator keyed by the caller (for example by seed
/// and step) rather than from libtorch's global generator, so they do not depend on other
/// threads using that generator, and a resumed run redraws exactly the same masks.
#[derive(Debug)]
pub struct DropPathMasks {
    prob: f64,
    masks: Vec<Tensor>,
    next: Cell<usize>,
}

impl DropPathMasks {
    /// Draws `sites` x `batch` keep flags for drop probability `prob` from a generator seeded
    /// with `key`, as one tensor moved to `device` once.
    pub fn sample(prob: f64, sites: usize, batch: i64, key: u64, device: Device) -> Self {
        let mut rng = Pcg64::seed_from_u64(key);
        let keep = 1.0 - prob;
        let flags: Vec<f32> = (0..sites * batch as usize)
            .map(|_| f32::from(u8::from(rng.gen::<f64>() < keep)))
            .collect();
        let masks = if flags.is_empty() {
            Vec::new()
        } else {
            Tensor::from_slice(&flags)
                .view([sites as i64, batch])
                .to_device(device)
                .unbind(0)
        };
        Self {
            prob,
            masks,
            next: Cell::new(0),
        }
    }

    /// The drop probability.
    pub fn prob(&self) -> f64 {
        self.prob
    }

    /// The masks of the samples `rows` only (a data-parallel rank's shard of the batch the
    /// masks were drawn for), so that the ranks together drop what one device would.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        Self {
            prob: self.prob,
            masks: self
                .masks
                .iter()
                .map(|mask| mask.narrow(0, rows.start as i64, rows.len() as i64))
                .collect(),
            next: Cell::new(0),
        }
    }

    /// Applies the next site's mask to `xs`; past the last site (a caller error) the tensor
    /// passes unchanged.
    fn apply(&self, xs: Tensor) -> Tensor {
        let index = self.next.get();
        self.next.set(index + 1);
        match self.masks.get(index) {
            Some(keep) => drop_path(&xs, self.prob, keep),
            None => xs,
        }
    }
}

/// An evaluation cell (SPEC 6.3): each node sums two ops of earlier states chosen by the
/// genotype; the output concatenates the genotype's concat states.
#[derive(Debug)]
pub struct EvalCell {
    preprocess0: Preprocess,
    preprocess1: ReluConvBn,
    ops: Vec<Op>,
    sources: Vec<usize>,
    concat: Vec<usize>,
}

impl EvalCell {
    fn new(
        path: &nn::Path,
        genes: &[Gene],
        concat: &[usize],
        channels: CellChannels,
        reduction: bool,
        reduction_prev: bool,
    ) -> Self {
        let CellChannels {
            prev_prev,
            prev,
            current,
        } = channels;
        let preprocess0 = Preprocess::new(
            &(path / "preprocess0"),
            [prev_prev, current],
            reduction_prev,
            Network::Evaluation,
        );
        let preprocess1 = ReluConvBn::new(&(path / "preprocess1"), prev, current, true);
        let ops = genes
            .iter()
            .enumerate()
            .map(|(index, gene)| {
                let stride = if reduction && gene.source < 2 { 2 } else { 1 };
                Op::new(
                    &(path / "ops" / index),
                    gene.op,
                    current,
                    stride,
                    Network::Evaluation,
                )
            })
            .collect();
        Self {
            preprocess0,
            preprocess1,
            ops,
            sources: genes.iter().map(|gene| gene.source).collect(),
            concat: concat.to_vec(),
        }
    }

    /// Drop-path sites of the cell: its non-identity ops.
    pub fn drop_path_sites(&self) -> usize {
        self.ops.iter().filter(|op| !op.is_identity()).count()
    }

    /// The cell output; in training with drop path every non-identity op output goes through
    /// it, each taking the next mask of `drop`.
    pub fn forward_t(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        train: bool,
        drop: Option<&DropPathMasks>,
    ) -> Tensor {
        let mut states = vec![
            self.preprocess0.forward_t(s0, train),
            self.preprocess1.forward_t(s1, train),
        ];
        let drop = drop.filter(|masks| train && masks.prob() > 0.0);
        for (ops, sources) in self.ops.chunks(2).zip(self.sources.chunks(2)) {
            let mut node: Option<Tensor> = None;
            for (op, &source) in ops.iter().zip(sources) {
                let mut ys = op.forward_t(&states[source], train);
                if let Some(masks) = drop.filter(|_| !op.is_identity()) {
                    ys = masks.apply(ys);
                }
                node = Some(match node {
                    None => ys,
                    Some(sum) => sum + ys,
                });
            }
            if let Some(node) = node {
                states.push(node);
            }
        }
        let outputs: Vec<&Tensor> = self.concat.iter().map(|&index| &states[index]).collect();
        Tensor::cat(&outputs, 1)
    }
}

/// Channel counts of a cell's two inputs and of its ops.
#[derive(Debug, Clone, Copy)]
struct CellChannels {
    prev_prev: i64,
    prev: i64,
    current: i64,
}

/// The auxiliary classifier AuxiliaryHeadCIFAR (SPEC 6.5), for an 8x8 input.
#[derive(Debug)]
pub struct AuxiliaryHead {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    classifier: Linear,
}

impl AuxiliaryHead {
    fn new(path: &nn::Path, channels: i64, classes: i64) -> Self {
        Self {
            conv1: Conv::new(
                path / "conv1",
                channels,
                AUX_HIDDEN,
                ConvSpec::square(1, 1, 0, 1),
            ),
            bn1: BatchNorm::new(path / "bn1", AUX_HIDDEN, true),
            conv2: Conv::new(
                path / "conv2",
                AUX_HIDDEN,
                AUX_FEATURES,
                ConvSpec::square(2, 1, 0, 1),
            ),
            bn2: BatchNorm::new(path / "bn2", AUX_FEATURES, true),
            classifier: Linear::new(path / "classifier", AUX_FEATURES, classes),
        }
    }

    /// ReLU, 5x5/3 average pooling (8x8 -> 2x2), 1x1 conv, BN, ReLU, 2x2 conv, BN, ReLU,
    /// linear classifier.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .relu()
            .avg_pool2d([5, 5], [3, 3], [0, 0], false, false, None);
        let ys = self.bn1.forward_t(&self.conv1.forward(&ys), train).relu();
        let ys = self.bn2.forward_t(&self.conv2.forward(&ys), train).relu();
        self.classifier.forward(&ys.flatten(1, -1))
    }
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct EvalOutput {
    /// Main logits (B, classes).
    pub logits: Tensor,
    /// Auxiliary logits, in training mode when the network has the head.
    pub aux_logits: Option<Tensor>,
}

/// NetworkCIFAR: stem, cells from a genotype, global average pooling and a linear classifier,
/// with the optional auxiliary head.
#[derive(Debug)]
pub struct EvalNetwork {
    shape: EvalNetShape,
    stem_conv: Conv,
    stem_bn: BatchNorm,
    cells: Vec<EvalCell>,
    auxiliary_head: Option<AuxiliaryHead>,
    classifier: Linear,
}

impl EvalNetwork {
    /// Builds the network in `vs`, drawing the weights from the global torch generator in the
    /// reference's creation order (stem, cells, auxiliary head, classifier).
    pub fn new(
        vs: &nn::VarStore,
        shape: EvalNetShape,
        genotype: &Genotype,
    ) -> Result<Self, EvalNetError> {
        genotype.validate()?;
        check_shape(&shape)?;
        let root = vs.root();
        let c_stem = STEM_MULTIPLIER * shape.channels;
        let stem_conv = Conv::new(
            &root / "stem" / "conv",
            3,
            c_stem,
            ConvSpec::square(3, 1, 1, 1),
        );
        let stem_bn = BatchNorm::new(&root / "stem" / "bn", c_stem, true);
        let mut channels = CellChannels {
            prev_prev: c_stem,
            prev: c_stem,
            current: shape.channels,
        };
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(shape.layers as usize);
        let mut auxiliary_channels = 0;
        for index in 0..shape.layers {
            let reduction = shape.is_reduction(index);
            if reduction {
                channels.current *= 2;
            }
            let (genes, concat) = cell_genes(genotype, reduction);
            cells.push(EvalCell::new(
                &(&root / "cells" / index),
                genes,
                concat,
                channels,
                reduction,
                reduction_prev,
            ));
            reduction_prev = reduction;
            channels.prev_prev = channels.prev;
            channels.prev = concat.len() as i64 * channels.current;
            if index == shape.auxiliary_cell() {
                auxiliary_channels = channels.prev;
            }
        }
        let auxiliary_head = shape.auxiliary.then(|| {
            AuxiliaryHead::new(
                &(&root / "auxiliary_head"),
                auxiliary_channels,
                shape.classes,
            )
        });
        let classifier = Linear::new(&root / "classifier", channels.prev, shape.classes);
        Ok(Self {
            shape,
            stem_conv,
            stem_bn,
            cells,
            auxiliary_head,
            classifier,
        })
    }

    /// The network's shape.
    pub fn shape(&self) -> &EvalNetShape {
        &self.shape
    }

    /// Drop-path sites of the whole network, the rows [`DropPathMasks::sample`] needs.
    pub fn drop_path_sites(&self) -> usize {
        self.cells.iter().map(EvalCell::drop_path_sites).sum()
    }

    /// Logits, and in training mode the auxiliary logits; drop path applies in training only.
    pub fn forward_t(&self, xs: &Tensor, train: bool, drop: Option<&DropPathMasks>) -> EvalOutput {
        let stem = self.stem_bn.forward_t(&self.stem_conv.forward(xs), train);
        let (mut s0, mut s1) = (stem.shallow_clone(), stem);
        let mut aux_logits = None;
        for (index, cell) in self.cells.iter().enumerate() {
            let next = cell.forward_t(&s0, &s1, train, drop);
            s0 = s1;
            s1 = next;
            if train && index as i64 == self.shape.auxiliary_cell() {
                aux_logits = self
                    .auxiliary_head
                    .as_ref()
                    .map(|head| head.forward_t(&s1, train));
            }
        }
        let pooled = s1.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        EvalOutput {
            logits: self.classifier.forward(&pooled),
            aux_logits,
        }
    }
}

fn check_shape(shape: &EvalNetShape) -> Result<(), EvalNetError> {
    if shape.channels < 2 || shape.channels % 2 != 0 {
        return Err(EvalNetError::Shape(format!(
            "channels {} must be even and >= 2 (factorized reductions halve them)",
            shape.channels
        )));
    }
    if shape.layers < 3 {
        return Err(EvalNetError::Shape(format!(
            "{} layers: at least 3 are needed (two reduction cells and a normal one)",
            shape.layers
        )));
    }
    if shape.classes < 1 {
        return Err(EvalNetError::Shape(format!(
            "{} classes: at least 1 is needed",
            shape.classes
        )));
    }
    Ok(())
}

pub(crate) fn cell_genes(genotype: &Genotype, reduction: bool) -> (&[Gene], &[usize]) {
    if reduction {
        (&genotype.reduce, &genotype.reduce_concat)
    } else {
        (&genotype.normal, &genotype.normal_concat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cnn::eval_cost::ParameterCounts;
    use tch::Kind;

    fn masks(prob: f64, net: &EvalNetwork, batch: i64, key: u64) -> DropPathMasks {
        DropPathMasks::sample(prob, net.drop_path_sites(), batch, key, Device::Cpu)
    }

    fn tiny(classes: i64, auxiliary: bool) -> EvalNetShape {
        EvalNetShape {
            channels: 4,
            classes,
            layers: 3,
            auxiliary,
        }
    }

    #[test]
    fn every_builtin_builds_and_gives_logits_with_and_without_the_auxiliary_head() {
        tch::set_num_threads(1);
        for name in ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"] {
            tch::manual_seed(0);
            let genotype = Genotype::builtin(name).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let net = EvalNetwork::new(&vs, tiny(10, true), &genotype).unwrap();
            let xs = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let drop = masks(0.2, &net, 2, 1);
            let train = net.forward_t(&xs, true, Some(&drop));
            assert_eq!(
                drop.next.get(),
                net.drop_path_sites(),
                "{name}: every mask used"
            );
            assert_eq!(train.logits.size(), vec![2, 10], "{name}");
            assert_eq!(train.aux_logits.unwrap().size(), vec![2, 10], "{name}");
            let eval = net.forward_t(&xs, false, Some(&masks(0.2, &net, 2, 1)));
            assert_eq!(eval.logits.size(), vec![2, 10], "{name}");
            assert!(eval.aux_logits.is_none(), "{name}");
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        let net = EvalNetwork::new(&vs, tiny(100, false), &genotype).unwrap();
        let xs = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let train = net.forward_t(&xs, true, None);
        assert_eq!(train.logits.size(), vec![3, 100]);
        assert!(train.aux_logits.is_none());
        assert_eq!(ParameterCounts::of(&vs).auxiliary, 0);
    }

    #[test]
    fn drop_path_keeps_the_expectation() {
        tch::set_num_threads(1);
        let samples = 40_000;
        let drop = DropPathMasks::sample(0.3, 2, samples, 17, Device::Cpu);
        let xs = Tensor::full([samples, 2, 1, 1], 3.0, (Kind::Float, Device::Cpu));
        let first = drop.apply(xs.shallow_clone());
        let second = drop.apply(xs.shallow_clone());
        assert!(drop.apply(xs.shallow_clone()).equal(&xs), "no third site");
        for ys in [&first, &second] {
            let mean = ys.mean(Kind::Double).double_value(&[]);
            // Each sample is 3/0.7 with probability 0.7, else 0: mean 3, standard error
            // 3·sqrt(0.3/0.7)/sqrt(n) ≈ 0.0098; five standard errors.
            assert!((mean - 3.0).abs() < 0.05, "mean {mean}");
            let dropped = ys
                .select(1, 0)
                .eq(0.0)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
            assert!((dropped - 0.3).abs() < 0.012, "dropped fraction {dropped}");
            let channels_agree = ys.select(1, 0).eq_tensor(&ys.select(1, 1)).all();
            assert!(channels_agree.int64_value(&[]) == 1, "one mask per sample");
        }
        assert!(!first.equal(&second), "sites draw independent masks");
        let again = DropPathMasks::sample(0.3, 2, samples, 17, Device::Cpu);
        assert!(
            again.apply(xs.shallow_clone()).equal(&first),
            "the key fixes the masks"
        );
    }

    #[test]
    fn drop_path_is_off_in_eval_mode_and_skips_identities() {
        tch::set_num_threads(1);
        tch::manual_seed(3);
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EvalNetwork::new(&vs, tiny(10, true), &genotype).unwrap();
        // DARTS_V2: 6 non-identity ops per normal cell, 5 per reduction cell.
        assert_eq!(net.drop_path_sites(), 6 + 5 + 5);
        let xs = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let plain = net.forward_t(&xs, false, None).logits;
        let with_drop = net
            .forward_t(&xs, false, Some(&masks(0.9, &net, 4, 2)))
            .logits;
        assert!(plain.equal(&with_drop), "eval mode ignores drop path");

        let identities = Genotype::from_reference_text(
            "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], \
             reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
        )
        .unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EvalNetwork::new(&vs, tiny(10, false), &identities).unwrap();
        assert_eq!(net.drop_path_sites(), 4);
        let s = Tensor::randn([8, 12, 8, 8], (Kind::Float, Device::Cpu));
        let normal = &net.cells[0];
        let drop = DropPathMasks::sample(0.9, 2, 8, 4, Device::Cpu);
        let a = normal.forward_t(&s, &s, true, None);
        let b = normal.forward_t(&s, &s, true, Some(&drop));
        assert!(a.equal(&b), "identity ops never drop");
        assert_eq!(drop.next.get(), 0);
        let reduce = &net.cells[1];
        let s0 = Tensor::randn([8, 12, 8, 8], (Kind::Float, Device::Cpu));
        let s1 = Tensor::randn([8, 4, 8, 8], (Kind::Float, Device::Cpu));
        let a = reduce.forward_t(&s0, &s1, true, None);
        let b = reduce.forward_t(&s0, &s1, true, Some(&drop));
        assert!(!a.equal(&b), "pooling ops do drop");
        assert_eq!(drop.next.get(), 2);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let genotype = Genotype::builtin("DARTS_V2").unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let mut shape = tiny(10, true);
        shape.channels = 5;
        let error = EvalNetwork::new(&vs, shape, &genotype).unwrap_err();
        assert!(error.to_string().contains("even"), "{error}");
        let mut broken = genotype.clone();
        broken.reduce_concat = vec![9];
        let error = EvalNetwork::new(&vs, tiny(10, true), &broken).unwrap_err();
        assert!(error.to_string().contains("reduce_concat"), "{error}");
    }
}
