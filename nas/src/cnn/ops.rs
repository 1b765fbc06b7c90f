//! The ten CNN operations of the DARTS search space (SPEC 1.2) and their building blocks.

use super::layers::{BatchNorm, Conv, ConvSpec};
use prime_core::primitives::CnnOp;
use tch::{nn, Tensor};

/// ReLU -> 1x1 conv -> BN: the cell preprocessing layer.
#[derive(Debug)]
pub struct ReluConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ReluConvBn {
    /// Builds ReLUConvBN(c_in, c_out, 1, 1, 0, affine).
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, affine: bool) -> Self {
        Self {
            conv: Conv::new(path / "conv", c_in, c_out, ConvSpec::square(1, 1, 0, 1)),
            bn: BatchNorm::new(path / "bn", c_out, affine),
        }
    }

    /// Applies the block.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.conv.forward(&xs.relu()), train)
    }
}

/// Which network an op is built for: the search network's batch norms have no affine
/// parameters and follow its pooling ops too (SPEC 3.1); the evaluation network's are affine
/// and pooling has none (SPEC 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The search network (mixed ops over every primitive).
    Search,
    /// The evaluation network (one op per gene).
    Evaluation,
}

impl Network {
    /// Whether batch norms carry affine parameters.
    pub fn affine(self) -> bool {
        self == Network::Evaluation
    }
}

/// The preprocessing of a cell's first input: a factorized reduction after a reduction cell
/// (halving the older input's resolution), else ReLU, 1x1 conv, BN.
#[derive(Debug)]
pub enum Preprocess {
    /// After a reduction cell.
    Reduce(FactorizedReduce),
    /// After a normal cell (or the stem).
    Plain(ReluConvBn),
}

impl Preprocess {
    /// Builds the layer mapping `c_in` to `c_out` channels; `reduction_prev` when the input
    /// comes from before a reduction cell.
    pub fn new(
        path: &nn::Path,
        [c_in, c_out]: [i64; 2],
        reduction_prev: bool,
        network: Network,
    ) -> Self {
        let affine = network.affine();
        if reduction_prev {
            Preprocess::Reduce(FactorizedReduce::new(path, c_in, c_out, affine))
        } else {
            Preprocess::Plain(ReluConvBn::new(path, c_in, c_out, affine))
        }
    }

    /// Applies the layer.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Preprocess::Reduce(op) => op.forward_t(xs, train),
            Preprocess::Plain(op) => op.forward_t(xs, train),
        }
    }
}

/// ReLU -> depthwise k x k conv (stride, dilation) -> pointwise 1x1 conv -> BN.
#[derive(Debug)]
pub struct DilConv {
    depthwise: Conv,
    pointwise: Conv,
    bn: BatchNorm,
}

impl DilConv {
    /// Builds DilConv(c_in, c_out, k, stride, pad, dilation, affine).
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, depthwise: ConvSpec, affine: bool) -> Self {
        Self {
            depthwise: Conv::new(path / "depthwise", c_in, c_in, depthwise.grouped(c_in)),
            pointwise: Conv::new(
                path / "pointwise",
                c_in,
                c_out,
                ConvSpec::square(1, 1, 0, 1),
            ),
            bn: BatchNorm::new(path / "bn", c_out, affine),
        }
    }

    /// Applies the block.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.pointwise.forward(&self.depthwise.forward(&xs.relu()));
        self.bn.forward_t(&ys, train)
    }
}

/// Two DilConv blocks with dilation 1; only the first carries the stride.
#[derive(Debug)]
pub struct SepConv {
    first: DilConv,
    second: DilConv,
}

impl SepConv {
    /// Builds SepConv(c, c, k, stride, k/2, affine).
    pub fn new(path: &nn::Path, c: i64, k: i64, stride: i64, affine: bool) -> Self {
        let pad = k / 2;
        Self {
            first: DilConv::new(
                &(path / "first"),
                c,
                c,
                ConvSpec::square(k, stride, pad, 1),
                affine,
            ),
            second: DilConv::new(
                &(path / "second"),
                c,
                c,
                ConvSpec::square(k, 1, pad, 1),
                affine,
            ),
        }
    }

    /// Applies the block.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.second
            .forward_t(&self.first.forward_t(xs, train), train)
    }
}

/// ReLU, then two stride-2 1x1 convs on the input and on the input shifted by one pixel,
/// concatenated along channels, then BN: halves H and W.
#[derive(Debug)]
pub struct FactorizedReduce {
    even: Conv,
    odd: Conv,
    bn: BatchNorm,
}

impl FactorizedReduce {
    /// Builds FactorizedReduce(c_in, c_out, affine); `c_out` must be even.
    pub fn new(path: &nn::Path, c_in: i64, c_out: i64, affine: bool) -> Self {
        let spec = ConvSpec::square(1, 2, 0, 1);
        Self {
            even: Conv::new(path / "even", c_in, c_out / 2, spec),
            odd: Conv::new(path / "odd", c_in, c_out / 2, spec),
            bn: BatchNorm::new(path / "bn", c_out, affine),
        }
    }

    /// Applies the block.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = xs.relu();
        let shifted = xs
            .narrow(2, 1, xs.size()[2] - 1)
            .narrow(3, 1, xs.size()[3] - 1);
        let ys = Tensor::cat(&[self.even.forward(&xs), self.odd.forward(&shifted)], 1);
        self.bn.forward_t(&ys, train)
    }
}

/// ReLU -> 1x7 conv (stride (1, s)) -> 7x1 conv (stride (s, 1)) -> BN.
#[derive(Debug)]
pub struct Conv7x1And1x7 {
    row: Conv,
    column: Conv,
    bn: BatchNorm,
}

impl Conv7x1And1x7 {
    /// Builds the block for `c` channels and stride `stride`.
    pub fn new(path: &nn::Path, c: i64, stride: i64, affine: bool) -> Self {
        let row = ConvSpec {
            kernel: [1, 7],
            stride: [1, stride],
            padding: [0, 3],
            dilation: 1,
            groups: 1,
        };
        let column = ConvSpec {
            kernel: [7, 1],
            stride: [stride, 1],
            padding: [3, 0],
            dilation: 1,
            groups: 1,
        };
        Self {
            row: Conv::new(path / "row", c, c, row),
            column: Conv::new(path / "column", c, c, column),
            bn: BatchNorm::new(path / "bn", c, affine),
        }
    }

    /// Applies the block.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.column.forward(&self.row.forward(&xs.relu()));
        self.bn.forward_t(&ys, train)
    }
}

/// One operation of a cell edge.
#[derive(Debug)]
pub enum Op {
    /// `none`: zeros of the output shape.
    Zero {
        /// 1 or 2.
        stride: i64,
    },
    /// 3x3 max pooling (padding -inf), optionally followed by a non-affine BN (search only).
    MaxPool {
        /// 1 or 2.
        stride: i64,
        /// The search network's BN after pooling.
        bn: Option<BatchNorm>,
    },
    /// 3x3 average pooling without padded elements, optionally followed by a non-affine BN.
    AvgPool {
        /// 1 or 2.
        stride: i64,
        /// The search network's BN after pooling.
        bn: Option<BatchNorm>,
    },
    /// `skip_connect` at stride 1.
    Identity,
    /// `skip_connect` at stride 2.
    FactorizedReduce(Box<FactorizedReduce>),
    /// `sep_conv_kxk`.
    SepConv(Box<SepConv>),
    /// `dil_conv_kxk`.
    DilConv(Box<DilConv>),
    /// `conv_7x1_1x7`.
    Conv7x1And1x7(Box<Conv7x1And1x7>),
}

impl Op {
    /// Builds `op` for `c` channels at `stride`, as `network` has it.
    pub fn new(path: &nn::Path, op: CnnOp, c: i64, stride: i64, network: Network) -> Self {
        let affine = network.affine();
        let pool_bn = |path: &nn::Path| {
            (network == Network::Search).then(|| BatchNorm::new(path / "bn", c, false))
        };
        match op {
            CnnOp::None => Op::Zero { stride },
            CnnOp::MaxPool3x3 => Op::MaxPool {
                stride,
                bn: pool_bn(path),
            },
            CnnOp::AvgPool3x3 => Op::AvgPool {
                stride,
                bn: pool_bn(path),
            },
            CnnOp::SkipConnect if stride == 1 => Op::Identity,
            CnnOp::SkipConnect => {
                Op::FactorizedReduce(Box::new(FactorizedReduce::new(path, c, c, affine)))
            }
            CnnOp::SepConv3x3 => Op::SepConv(Box::new(SepConv::new(path, c, 3, stride, affine))),
            CnnOp::SepConv5x5 => Op::SepConv(Box::new(SepConv::new(path, c, 5, stride, affine))),
            CnnOp::SepConv7x7 => Op::SepConv(Box::new(SepConv::new(path, c, 7, stride, affine))),
            CnnOp::DilConv3x3 => Op::DilConv(Box::new(DilConv::new(
                path,
                c,
                c,
                ConvSpec::square(3, stride, 2, 2),
                affine,
            ))),
            CnnOp::DilConv5x5 => Op::DilConv(Box::new(DilConv::new(
                path,
                c,
                c,
                ConvSpec::square(5, stride, 4, 2),
                affine,
            ))),
            CnnOp::Conv7x1And1x7 => {
                Op::Conv7x1And1x7(Box::new(Conv7x1And1x7::new(path, c, stride, affine)))
            }
        }
    }

    /// Whether the op is the identity (no drop path is applied to it in evaluation cells).
    pub fn is_identity(&self) -> bool {
        matches!(self, Op::Identity)
    }

    /// Whether the op always outputs zeros.
    pub fn is_zero(&self) -> bool {
        matches!(self, Op::Zero { .. })
    }

    /// Applies the op; `train` selects batch statistics in BN.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Op::Zero { stride } => zeros_for(xs, *stride),
            Op::MaxPool { stride, bn } => {
                let ys = xs.max_pool2d([3, 3], [*stride, *stride], [1, 1], [1, 1], false);
                apply_optional_bn(ys, bn, train)
            }
            Op::AvgPool { stride, bn } => {
                let ys = xs.avg_pool2d([3, 3], [*stride, *stride], [1, 1], false, false, None);
                apply_optional_bn(ys, bn, train)
            }
            Op::Identity => xs.shallow_clone(),
            Op::FactorizedReduce(op) => op.forward_t(xs, train),
            Op::SepConv(op) => op.forward_t(xs, train),
            Op::DilConv(op) => op.forward_t(xs, train),
            Op::Conv7x1And1x7(op) => op.forward_t(xs, train),
        }
    }
}

fn apply_optional_bn(ys: Tensor, bn: &Option<BatchNorm>, train: bool) -> Tensor {
    match bn {
        Some(bn) => bn.forward_t(&ys, train),
        None => ys,
    }
}

/// Zeros of the shape an op of `stride` produces from `xs`: (B, C, ceil(H/s), ceil(W/s)).
pub fn zeros_for(xs: &Tensor, stride: i64) -> Tensor {
    let size = xs.size();
    let shrink = |n: i64| (n + stride - 1) / stride;
    Tensor::zeros(
        [size[0], size[1], shrink(size[2]), shrink(size[3])],
        (xs.kind(), xs.device()),
    )
}
