//! The cost of an evaluation network: its parameter counts by the paper's convention and
//! the multiply-accumulates of one inference (SPEC 6.7), counted from the shape and genotype.

use super::eval_net::{cell_genes, EvalNetShape, AUXILIARY_MARKER, STEM_MULTIPLIER};
use prime_core::genotype::Genotype;
use prime_core::primitives::CnnOp;
use tch::nn;

/// Trainable parameters of an evaluation network, split by the paper's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCounts {
    /// Everything except the auxiliary head ("Params (M)" · 1e6, SPEC 6.7).
    pub network: i64,
    /// The auxiliary head.
    pub auxiliary: i64,
}

impl ParameterCounts {
    /// Counts the trainable variables of `vs` (BN running statistics excluded).
    pub fn of(vs: &nn::VarStore) -> Self {
        let mut counts = Self {
            network: 0,
            auxiliary: 0,
        };
        for (name, tensor) in vs.variables() {
            if !tensor.requires_grad() {
                continue;
            }
            let count = tensor.numel() as i64;
            if name.contains(AUXILIARY_MARKER) {
                counts.auxiliary += count;
            } else {
                counts.network += count;
            }
        }
        counts
    }

    /// The network's parameters in millions, the unit of the paper's tables.
    pub fn millions(&self) -> f64 {
        self.network as f64 / 1e6
    }
}

/// Multiply-accumulates of one inference on an `image_side` x `image_side` image: every
/// convolution and the classifier; batch norm, pooling, additions and the auxiliary head
/// (absent at inference) are not counted.
pub fn multiply_accumulates(shape: &EvalNetShape, genotype: &Genotype, image_side: i64) -> i64 {
    let c_stem = STEM_MULTIPLIER * shape.channels;
    let mut side = image_side;
    let mut total = 3 * c_stem * 9 * side * side;
    let (mut c_prev_prev, mut c_prev, mut c) = (c_stem, c_stem, shape.channels);
    for index in 0..shape.layers {
        let reduction = shape.is_reduction(index);
        if reduction {
            c *= 2;
        }
        // Both preprocessing layers output the cell's input resolution `side`; after a
        // reduction the factorized one reads twice that, with half the outputs per branch.
        total += c_prev_prev * c * side * side + c_prev * c * side * side;
        let out_side = if reduction { ceil_div(side, 2) } else { side };
        let (genes, concat) = cell_genes(genotype, reduction);
        for gene in genes {
            let stride = if reduction && gene.source < 2 { 2 } else { 1 };
            let in_side = if gene.source < 2 { side } else { out_side };
            total += op_macs(gene.op, c, stride, in_side);
        }
        c_prev_prev = c_prev;
        c_prev = concat.len() as i64 * c;
        side = out_side;
    }
    total + c_prev * shape.classes
}

/// Multiply-accumulates of one op on `c` channels reading an `in_side`-square input.
fn op_macs(op: CnnOp, c: i64, stride: i64, in_side: i64) -> i64 {
    let out = ceil_div(in_side, stride);
    let pixels = out * out;
    let depthwise_pointwise = |k: i64| c * k * k * pixels + c * c * pixels;
    match op {
        CnnOp::None | CnnOp::MaxPool3x3 | CnnOp::AvgPool3x3 => 0,
        CnnOp::SkipConnect if stride == 1 => 0,
        CnnOp::SkipConnect => c * c * pixels,
        CnnOp::SepConv3x3 => 2 * depthwise_pointwise(3),
        CnnOp::SepConv5x5 => 2 * depthwise_pointwise(5),
        CnnOp::SepConv7x7 => 2 * depthwise_pointwise(7),
        CnnOp::DilConv3x3 => depthwise_pointwise(3),
        CnnOp::DilConv5x5 => depthwise_pointwise(5),
        // 1x7 with stride (1, s) gives in_side x out; 7x1 with stride (s, 1) gives out x out.
        CnnOp::Conv7x1And1x7 => c * c * 7 * in_side * out + c * c * 7 * pixels,
    }
}

fn ceil_div(n: i64, d: i64) -> i64 {
    (n + d - 1) / d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cnn::eval_net::EvalNetwork;
    use tch::Device;

    fn tiny(classes: i64, auxiliary: bool) -> EvalNetShape {
        EvalNetShape {
            channels: 4,
            classes,
            layers: 3,
            auxiliary,
        }
    }

    fn counts(name: &str, classes: i64) -> ParameterCounts {
        let vs = nn::VarStore::new(Device::Cpu);
        let genotype = Genotype::builtin(name).unwrap();
        EvalNetwork::new(&vs, EvalNetShape::paper(classes), &genotype).unwrap();
        ParameterCounts::of(&vs)
    }

    #[test]
    fn paper_networks_have_the_reference_parameter_counts() {
        tch::set_num_threads(1);
        let darts_v2 = counts("DARTS_V2", 10);
        assert_eq!(
            darts_v2,
            ParameterCounts {
                network: 3_349_342,
                auxiliary: 476_426
            }
        );
        assert!((darts_v2.millions() - 3.349342).abs() < 1e-12);
        assert_eq!(
            counts("DARTS_V2", 100),
            ParameterCounts {
                network: 3_401_272,
                auxiliary: 545_636
            }
        );
        assert_eq!(counts("DARTS_V1", 10).network, 3_169_414);
        assert_eq!(counts("DARTS_V1", 100).network, 3_221_344);
    }

    #[test]
    fn multiply_accumulates_by_hand_for_a_parameter_free_genotype() {
        // Pools and identities only: the stem, the preprocessing and the classifier remain.
        let genotype = Genotype::from_reference_text(
            "Genotype(normal=[('skip_connect', 0), ('avg_pool_3x3', 1)], normal_concat=[2], \
             reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])",
        )
        .unwrap();
        let shape = tiny(10, true);
        // stem 3 -> 12 at 32x32; cell 0 normal (C 4) at 32: (12 + 12)·4·32²; cell 1 reduce
        // (C 8) reads 32x32 inputs: (12 + 4)·8·32²; cell 2 reduce (C 16) at 16: FR(4 -> 16)
        // and 1x1 (8 -> 16) at 16², outputs 16 channels; classifier 16 -> 10.
        let expected = 3 * 12 * 9 * 1024
            + (12 + 12) * 4 * 1024
            + (12 + 4) * 8 * 1024
            + (4 + 8) * 16 * 256
            + 16 * 10;
        assert_eq!(multiply_accumulates(&shape, &genotype, 32), expected);
    }

    #[test]
    fn paper_networks_match_an_independent_pytorch_count() {
        // Forward hooks on every Conv2d/Linear of an eager PyTorch NetworkCIFAR, and its
        // parameters excluding the auxiliary head.
        tch::set_num_threads(1);
        let shape = EvalNetShape::paper(10);
        for (name, macs, params) in [
            ("DARTS_V2", 528_359_040, 3_349_342),
            ("NASNet", 603_452_448, 3_830_950),
            ("AmoebaNet", 488_931_552, 3_145_078),
        ] {
            let genotype = Genotype::builtin(name).unwrap();
            assert_eq!(multiply_accumulates(&shape, &genotype, 32), macs, "{name}");
            assert_eq!(counts(name, 10).network, params, "{name}");
        }
    }
}
