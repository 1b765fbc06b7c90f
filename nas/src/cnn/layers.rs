//! Convolution, batch-norm and linear layers initialised explicitly by PyTorch's default rule
//! (SPEC A.5): weights uniform in ±1/sqrt(fan_in), batch-norm gamma 1 and beta 0.
//!
//! An input of another floating kind than the weights (a bf16 search) meets the convolution
//! and linear weights cast to its kind on use, as autocast does: the cast is differentiable,
//! so the gradients reach the float32 weights in float32. Batch norm takes the reduced input
//! with its float32 parameters and statistics as it is.

use tch::nn::{self, BatchNormConfig, Init, Module, ModuleT};
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

/// A bias-free convolution (every convolution of the DARTS cells has no bias): its weight,
/// named `weight` under the layer's path as `nn::conv` names it, and its geometry.
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    spec: ConvSpec,
}

impl Conv {
    /// Builds the layer under `path`, weights uniform in ±1/sqrt((c_in/groups)·kh·kw).
    pub fn new(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> Self {
        let fan_in = (c_in / spec.groups) * spec.kernel[0] * spec.kernel[1];
        let shape = [c_out, c_in / spec.groups, spec.kernel[0], spec.kernel[1]];
        Self {
            weight: path.var("weight", &shape, default_uniform(fan_in)),
            spec,
        }
    }

    /// Applies the convolution, in the input's precision.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let spec = &self.spec;
        let convolve = |weight: &Tensor| {
            xs.conv2d(
                weight,
                None::<Tensor>,
                spec.stride,
                spec.padding,
                [spec.dilation, spec.dilation],
                spec.groups,
            )
        };
        if xs.kind() == self.weight.kind() {
            convolve(&self.weight)
        } else {
            convolve(&self.weight.to_kind(xs.kind()))
        }
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

    /// Applies the layer, in the input's precision.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        if kind == self.linear.ws.kind() {
            return self.linear.forward(xs);
        }
        let bias = self.linear.bs.as_ref().map(|bias| bias.to_kind(kind));
        xs.linear(&self.linear.ws.to_kind(kind), bias.as_ref())
    }
}
