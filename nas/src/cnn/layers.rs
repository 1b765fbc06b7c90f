//! Convolution, batch-norm and linear layers initialised explicitly by PyTorch's default rule
//! (SPEC A.5): weights uniform in ±1/sqrt(fan_in), batch-norm gamma 1 and beta 0.

use tch::nn::{self, BatchNormConfig, ConvConfigND, Init, Module, ModuleT};
use tch::Tensor;

/// PyTorch's default bound 1/sqrt(fan_in) for conv and linear weights (kaiming_uniform, a = √5).
fn default_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Geometry of a bias-free 2-d convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Kernel height and width.
    pub kernel: [i64; 2],
    /// Stride (rows, columns).
    pub stride: [i64; 2],
    /// Zero padding (rows, columns).
    pub padding: [i64; 2],
    /// Dilation, the same along both axes.
    pub dilation: i64,
    /// Channel groups (`c_in` for depthwise).
    pub groups: i64,
}

impl ConvSpec {
    /// A square kernel `k` with the given stride, padding and dilation, one group.
    pub fn square(k: i64, stride: i64, padding: i64, dilation: i64) -> Self {
        Self {
            kernel: [k, k],
            stride: [stride, stride],
            padding: [padding, padding],
            dilation,
            groups: 1,
        }
    }

    /// The same geometry with `groups` channel groups.
    pub fn grouped(mut self, groups: i64) -> Self {
        self.groups = groups;
        self
    }
}

/// A bias-free convolution (every convolution of the DARTS cells has no bias).
#[derive(Debug)]
pub struct Conv {
    conv: nn::Conv<[i64; 2]>,
}

impl Conv {
    /// Builds the layer under `path`, weights uniform in ±1/sqrt((c_in/groups)·kh·kw).
    pub fn new(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> Self {
        let fan_in = (c_in / spec.groups) * spec.kernel[0] * spec.kernel[1];
        let config = ConvConfigND::<[i64; 2]> {
            stride: spec.stride,
            padding: spec.padding,
            dilation: [spec.dilation, spec.dilation],
            groups: spec.groups,
            bias: false,
            ws_init: default_uniform(fan_in),
            bs_init: Init::Const(0.0),
            padding_mode: nn::PaddingMode::Zeros,
        };
        Self {
            conv: nn::conv(path, c_in, c_out, spec.kernel, config),
        }
    }

    /// Applies the convolution.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.conv.forward(xs)
    }
}

/// BatchNorm2d with eps 1e-5 and momentum 0.1; running statistics are non-trainable variables.
#[derive(Debug)]
pub struct BatchNorm {
    bn: nn::BatchNorm,
}

impl BatchNorm {
    /// Builds the layer; `affine` adds learnable gamma (1) and beta (0).
    pub fn new(path: nn::Path, channels: i64, affine: bool) -> Self {
        let config = BatchNormConfig {
            cudnn_enabled: true,
            eps: 1e-5,
            momentum: 0.1,
            affine,
            ws_init: Init::Const(1.0),
            bs_init: Init::Const(0.0),
        };
        Self {
            bn: nn::batch_norm2d(path, channels, config),
        }
    }

    /// Normalises with batch statistics (and updates the running ones) when `train`, else with
    /// the running statistics.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(xs, train)
    }
}

/// A fully connected layer with bias, both uniform in ±1/sqrt(in).
#[derive(Debug)]
pub struct Linear {
    linear: nn::Linear,
}

impl Linear {
    /// Builds the layer under `path`.
    pub fn new(path: nn::Path, c_in: i64, c_out: i64) -> Self {
        let config = nn::LinearConfig {
            ws_init: default_uniform(c_in),
            bs_init: Some(default_uniform(c_in)),
            bias: true,
        };
        Self {
            linear: nn::linear(path, c_in, c_out, config),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.linear.forward(xs)
    }
}
