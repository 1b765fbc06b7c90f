//! The DARTS search network (SPEC 1.3-1.7): mixed ops on every edge, cells sharing two
//! architecture tensors kept outside the variable store.

use super::layers::{BatchNorm, Conv, ConvSpec, Linear};
use super::ops::{zeros_for, Network, Op, Preprocess, ReluConvBn};
use crate::train_step::to_rows;
use prime_core::config::SearchPrecision;
use prime_core::primitives::{Activation, CnnOp};
use tch::{nn, Device, Kind, Tensor};

/// Shape of a search network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchNetShape {
    /// Initial channels C (16 in the paper).
    pub channels: i64,
    /// Number of classes.
    pub classes: i64,
    /// Number of cells (8 in the paper); reductions at layers/3 and 2·layers/3.
    pub layers: i64,
    /// Intermediate nodes per cell (4).
    pub steps: usize,
    /// How many of the last states are concatenated into the cell output (4).
    pub multiplier: usize,
    /// Stem width factor (3).
    pub stem_multiplier: i64,
    /// Activation of the architecture parameters.
    pub activation: Activation,
}

impl SearchNetShape {
    /// The paper's search network for `classes` classes with softmax activation.
    pub fn paper(classes: i64) -> Self {
        Self {
            channels: 16,
            classes,
            layers: 8,
            steps: 4,
            multiplier: 4,
            stem_multiplier: 3,
            activation: Activation::Softmax,
        }
    }

    /// Number of edges (alpha rows) of one cell: steps·(steps+3)/2.
    pub fn edges(&self) -> usize {
        self.steps * (self.steps + 3) / 2
    }

    /// Whether cell `index` is a reduction cell.
    pub fn is_reduction(&self, index: i64) -> bool {
        index == self.layers / 3 || index == 2 * self.layers / 3
    }
}

/// Row of the alpha matrix for the edge from source `source` into node `node`.
pub fn edge_row(node: usize, source: usize) -> usize {
    node * (node + 3) / 2 + source
}

/// One search edge: every op of the primitive list except `none`, which contributes exactly
/// zero to the sum and is therefore never executed.
#[derive(Debug)]
pub struct MixedOp {
    stride: i64,
    ops: Vec<(usize, Op)>,
}

impl MixedOp {
    fn new(path: &nn::Path, primitives: &[CnnOp], c: i64, stride: i64) -> Self {
        let ops = primitives
            .iter()
            .enumerate()
            .filter(|(_, op)| **op != CnnOp::None)
            .map(|(column, op)| {
                (
                    column,
                    Op::new(&(path / column), *op, c, stride, Network::Search),
                )
            })
            .collect();
        Self { stride, ops }
    }

    /// Σ_k w[k]·op_k(x) over the ops whose column is active; zeros if none is.
    fn forward_t(
        &self,
        xs: &Tensor,
        weights: &[Tensor],
        active: Option<&[bool]>,
        train: bool,
    ) -> Tensor {
        let mut sum: Option<Tensor> = None;
        for (column, op) in &self.ops {
            if active.is_some_and(|active| !active[*column]) {
                continue;
            }
            let ys = op.forward_t(xs, train);
            sum = Some(match sum {
                None => ys * &weights[*column],
                Some(acc) => acc.addcmul(&ys, &weights[*column]),
            });
        }
        sum.unwrap_or_else(|| zeros_for(xs, self.stride))
    }
}

/// A search cell: two preprocessed inputs, `steps` nodes summing mixed ops of all earlier
/// states, output = concatenation of the last `multiplier` states.
#[derive(Debug)]
pub struct SearchCell {
    reduction: bool,
    steps: usize,
    multiplier: usize,
    preprocess0: Preprocess,
    preprocess1: ReluConvBn,
    edges: Vec<MixedOp>,
    state_bns: Vec<BatchNorm>,
}

impl SearchCell {
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: &nn::Path,
        shape: &SearchNetShape,
        c_prev_prev: i64,
        c_prev: i64,
        c: i64,
        reduction: bool,
        reduction_prev: bool,
    ) -> Self {
        let preprocess0 = Preprocess::new(
            &(path / "preprocess0"),
            [c_prev_prev, c],
            reduction_prev,
            Network::Search,
        );
        let preprocess1 = ReluConvBn::new(&(path / "preprocess1"), c_prev, c, false);
        let primitives = shape.activation.primitives();
        let mut edges = Vec::with_capacity(shape.edges());
        for node in 0..shape.steps {
            for source in 0..node + 2 {
                let stride = if reduction && source < 2 { 2 } else { 1 };
                let edge_path = path / "edges" / edge_row(node, source);
                edges.push(MixedOp::new(&edge_path, primitives, c, stride));
            }
        }
        let state_bns = if shape.activation == Activation::Crb {
            (0..shape.steps)
                .map(|node| BatchNorm::new(path / "state_bns" / node, c, false))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            reduction,
            steps: shape.steps,
            multiplier: shape.multiplier,
            preprocess0,
            preprocess1,
            edges,
            state_bns,
        }
    }

    fn forward_t(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        weights: &[Vec<Tensor>],
        active: Option<&[Vec<bool>]>,
        train: bool,
    ) -> Tensor {
        let mut states = vec![
            self.preprocess0.forward_t(s0, train),
            self.preprocess1.forward_t(s1, train),
        ];
        for node in 0..self.steps {
            let mut sum: Option<Tensor> = None;
            for (source, state) in states.iter().enumerate() {
                let row = edge_row(node, source);
                let edge_active = active.map(|active| active[row].as_slice());
                let ys = self.edges[row].forward_t(state, &weights[row], edge_active, train);
                sum = Some(match sum {
                    None => ys,
                    Some(acc) => acc + ys,
                });
            }
            let mut node_state = sum.expect("every node has at least two inputs");
            if let Some(bn) = self.state_bns.get(node) {
                node_state = bn.forward_t(&node_state, train);
            }
            states.push(node_state);
        }
        Tensor::cat(&states[states.len() - self.multiplier..], 1)
    }
}

/// The two architecture tensors (normal, reduce), leaf tensors with gradients, outside the
/// variable store, with the CRB pruning masks.
#[derive(Debug)]
pub struct ArchParams {
    /// Activation applied before use.
    pub activation: Activation,
    /// Raw alpha of the normal cells, (edges, ops).
    pub normal: Tensor,
    /// Raw alpha of the reduction cells, (edges, ops).
    pub reduce: Tensor,
    /// Mask of the normal alpha (ones unless pruned by CRB).
    pub normal_mask: Tensor,
    /// Mask of the reduce alpha.
    pub reduce_mask: Tensor,
}

impl ArchParams {
    /// Draws alpha from the global torch generator (SPEC 1.6): softmax 1e-3·N(0,1);
    /// CRB 1/P + 1e-4·N(0,1). Normal first, then reduce.
    pub fn initial(edges: usize, activation: Activation, device: Device) -> Self {
        let ops = activation.primitives().len() as i64;
        let draw = || {
            let noise = Tensor::randn([edges as i64, ops], (Kind::Float, Device::Cpu));
            let values = match activation {
                Activation::Softmax => noise * 1e-3,
                Activation::Crb => noise * 1e-4 + 1.0 / ops as f64,
            };
            values.to_device(device).set_requires_grad(true)
        };
        let normal = draw();
        let reduce = draw();
        let mask = || Tensor::ones([edges as i64, ops], (Kind::Float, device));
        Self {
            activation,
            normal,
            reduce,
            normal_mask: mask(),
            reduce_mask: mask(),
        }
    }

    /// The named architecture tensors, in a fixed order (normal, reduce).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        vec![
            ("alphas_normal".to_string(), self.normal.shallow_clone()),
            ("alphas_reduce".to_string(), self.reduce.shallow_clone()),
        ]
    }

    /// CRB progressive pruning (SPEC 5.5): wherever alpha <= 0 the mask becomes 0 for good;
    /// then alpha <- alpha * mask.
    pub fn apply_masks(&mut self) {
        tch::no_grad(|| {
            for (alpha, mask) in [
                (&self.normal, &self.normal_mask),
                (&self.reduce, &self.reduce_mask),
            ] {
                let pruned = alpha.le(0.0);
                let _ = mask.shallow_clone().masked_fill_(&pruned, 0.0);
                let _ = alpha.shallow_clone().f_mul_(mask);
            }
        });
    }

    /// Number of pruned (masked) ops of the normal and the reduce cells.
    pub fn pruned_counts(&self) -> (i64, i64) {
        let count = |mask: &Tensor| mask.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        (count(&self.normal_mask), count(&self.reduce_mask))
    }

    /// act(alpha), differentiable.
    pub fn activate(&self, raw: &Tensor) -> Tensor {
        match self.activation {
            Activation::Softmax => raw.softmax(-1, raw.kind()),
            Activation::Crb => raw.clamp(0.0, 1.0),
        }
    }

    /// act(alpha) of the normal and reduction cells, detached, on the alphas' device.
    pub fn activated(&self) -> [Tensor; 2] {
        tch::no_grad(|| [self.activate(&self.normal), self.activate(&self.reduce)])
    }

    /// act(alpha) of both cell types as host matrices (for projection and logging).
    pub fn activated_rows(&self) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        tch::no_grad(|| {
            (
                to_rows(&self.activate(&self.normal)),
                to_rows(&self.activate(&self.reduce)),
            )
        })
    }
}

/// Per edge, per op column: whether the op runs.
type ActiveOps = Vec<Vec<bool>>;

/// The reduced kind the passes compute in under `precision`; `None`: the input's own kind.
pub fn reduced_kind(precision: SearchPrecision) -> Option<Kind> {
    match precision {
        SearchPrecision::Float32 => None,
        SearchPrecision::Bf16 => Some(Kind::BFloat16),
    }
}

/// The search network: stem, cells, global pooling and classifier; alphas outside the store.
#[derive(Debug)]
pub struct SearchNetwork {
    shape: SearchNetShape,
    /// The reduced kind of the passes' arithmetic; `None`: the input's kind (float32).
    reduced_kind: Option<Kind>,
    stem_conv: Conv,
    stem_bn: BatchNorm,
    cells: Vec<SearchCell>,
    classifier: Linear,
    /// The architecture parameters.
    pub arch: ArchParams,
}

impl SearchNetwork {
    /// Builds the network in `vs` (weights drawn from the global torch generator in creation
    /// order, then the alphas).
    pub fn new(vs: &nn::VarStore, shape: SearchNetShape) -> Self {
        let root = vs.root();
        let c_stem = shape.stem_multiplier * shape.channels;
        let stem_conv = Conv::new(
            &root / "stem" / "conv",
            3,
            c_stem,
            ConvSpec::square(3, 1, 1, 1),
        );
        let stem_bn = BatchNorm::new(&root / "stem" / "bn", c_stem, true);
        let (mut c_prev_prev, mut c_prev, mut c) = (c_stem, c_stem, shape.channels);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(shape.layers as usize);
        for index in 0..shape.layers {
            let reduction = shape.is_reduction(index);
            if reduction {
                c *= 2;
            }
            let path = &root / "cells" / index;
            cells.push(SearchCell::new(
                &path,
                &shape,
                c_prev_prev,
                c_prev,
                c,
                reduction,
                reduction_prev,
            ));
            reduction_prev = reduction;
            c_prev_prev = c_prev;
            c_prev = shape.multiplier as i64 * c;
        }
        let classifier = Linear::new(&root / "classifier", c_prev, shape.classes);
        let arch = ArchParams::initial(shape.edges(), shape.activation, vs.device());
        Self {
            shape,
            reduced_kind: None,
            stem_conv,
            stem_bn,
            cells,
            classifier,
            arch,
        }
    }

    /// The network's shape.
    pub fn shape(&self) -> &SearchNetShape {
        &self.shape
    }

    /// Sets the arithmetic of the passes: under bf16 the input, the activations, the
    /// convolution and linear weights (cast on use) and the activated alphas are bfloat16,
    /// while the alphas themselves, the weights and batch norm stay float32 and receive
    /// float32 gradients.
    pub fn set_precision(&mut self, precision: SearchPrecision) {
        self.reduced_kind = reduced_kind(precision);
    }

    /// Logits (B, classes) in the input's kind, computed in the network's precision. `train`
    /// selects batch statistics in every BN (and updates them).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let normal = self.edge_weights(&self.arch.normal);
        let reduce = self.edge_weights(&self.arch.reduce);
        let (normal_active, reduce_active) = self.active_ops();
        let input_kind = xs.kind();
        let xs = self.reduced(xs);
        let stem = self.stem_bn.forward_t(&self.stem_conv.forward(&xs), train);
        let (mut s0, mut s1) = (stem.shallow_clone(), stem);
        for cell in &self.cells {
            let (weights, active) = if cell.reduction {
                (&reduce, reduce_active.as_deref())
            } else {
                (&normal, normal_active.as_deref())
            };
            let next = cell.forward_t(&s0, &s1, weights, active, train);
            s0 = s1;
            s1 = next;
        }
        let pooled = s1.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let logits = self.classifier.forward(&pooled);
        match self.reduced_kind {
            Some(_) => logits.to_kind(input_kind),
            None => logits,
        }
    }

    /// `xs` in the reduced kind of the passes, if any (a differentiable cast).
    fn reduced(&self, xs: &Tensor) -> Tensor {
        match self.reduced_kind {
            Some(kind) => xs.to_kind(kind),
            None => xs.shallow_clone(),
        }
    }

    /// act(alpha) in the network's precision, split into one scalar tensor per (edge, op).
    fn edge_weights(&self, raw: &Tensor) -> Vec<Vec<Tensor>> {
        let activated = self.reduced(&self.arch.activate(raw));
        activated
            .unbind(0)
            .iter()
            .map(|row| row.unbind(0))
            .collect()
    }

    /// Which ops run on each edge: all with softmax (its weights are positive); with CRB the
    /// ops whose clamped weight is > 0 (SPEC 1.3), read from the host.
    fn active_ops(&self) -> (Option<ActiveOps>, Option<ActiveOps>) {
        if self.arch.activation == Activation::Softmax {
            return (None, None);
        }
        let positive = |raw: &Tensor| {
            let rows = to_rows(raw);
            rows.iter()
                .map(|row| row.iter().map(|w| *w > 0.0).collect())
                .collect()
        };
        (
            Some(positive(&self.arch.normal)),
            Some(positive(&self.arch.reduce)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(activation: Activation) -> SearchNetShape {
        SearchNetShape {
            channels: 4,
            classes: 10,
            layers: 3,
            steps: 4,
            multiplier: 4,
            stem_multiplier: 3,
            activation,
        }
    }

    #[test]
    fn paper_network_has_the_reference_parameter_count() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = SearchNetwork::new(&vs, SearchNetShape::paper(10));
        assert_eq!(crate::optim::parameter_count(&vs), 1_930_618);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut shape = SearchNetShape::paper(100);
        shape.activation = Activation::Crb;
        let _net = SearchNetwork::new(&vs, shape);
        assert_eq!(crate::optim::parameter_count(&vs), 1_953_748);
    }

    #[test]
    fn forward_gives_logits_and_gradients_reach_alphas() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SearchNetwork::new(&vs, tiny(Activation::Softmax));
        let xs = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let logits = net.forward_t(&xs, true);
        assert_eq!(logits.size(), vec![2, 10]);
        logits.sum(Kind::Float).backward();
        assert!(net.arch.normal.grad().defined());
        assert!(
            net.arch
                .reduce
                .grad()
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
        assert_eq!(net.arch.normal.size(), vec![14, 8]);
    }

    #[test]
    fn crb_edge_with_every_op_pruned_yields_zeros_of_the_right_shape() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = SearchNetwork::new(&vs, tiny(Activation::Crb));
        tch::no_grad(|| {
            let _ = net.arch.normal.fill_(-1.0);
            let _ = net.arch.reduce.fill_(-1.0);
        });
        let xs = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let logits = net.forward_t(&xs, true);
        assert_eq!(logits.size(), vec![2, 10]);
        assert!(logits.isfinite().all().int64_value(&[]) == 1);
        let ys = net.cells[1].edges[0].forward_t(
            &Tensor::ones([2, 4, 8, 8], (Kind::Float, Device::Cpu)),
            &[],
            Some(&[false; 7]),
            true,
        );
        assert_eq!(ys.size(), vec![2, 4, 4, 4]);
        assert_eq!(ys.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// ||a - b|| / ||b||.
    fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
    }

    /// Logits and the gradients of the weights and alphas of `net` on `xs`.
    fn passes(vs: &nn::VarStore, net: &SearchNetwork, xs: &Tensor) -> (Tensor, Vec<Tensor>) {
        let mut parameters = vs.trainable_variables();
        parameters.push(net.arch.normal.shallow_clone());
        parameters.push(net.arch.reduce.shallow_clone());
        crate::optim::zero_grad(&parameters).unwrap();
        let logits = net.forward_t(xs, true);
        logits.square().mean(Kind::Float).backward();
        let gradients = parameters.iter().map(|p| p.grad().copy()).collect();
        (logits.detach(), gradients)
    }

    /// bf16 carries 8 significant bits (relative rounding 2^-9 per value): through the three
    /// cells of the tiny network the logits stay within a few percent of float32 (1.4e-2
    /// measured). The bound is loose on purpose; the point is that bf16 computes the same
    /// function, into float32 leaves.
    const BF16_BOUND: f64 = 5e-2;
    /// Cosine between the bf16 and float32 gradients (0.994 measured).
    const MIN_GRADIENT_COSINE: f64 = 0.98;

    /// Every tensor of `tensors` flattened into one vector.
    fn flat(tensors: &[Tensor]) -> Tensor {
        Tensor::cat(
            &tensors
                .iter()
                .map(|tensor| tensor.flatten(0, -1))
                .collect::<Vec<_>>(),
            0,
        )
    }

    /// a·b / (||a|| ||b||).
    fn cosine(a: &Tensor, b: &Tensor) -> f64 {
        (a * b).sum(Kind::Double).double_value(&[])
            / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
    }

    #[test]
    fn bf16_passes_stay_near_float32_and_keep_float32_alphas_and_weights() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = SearchNetwork::new(&vs, tiny(Activation::Softmax));
        let xs = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let (float32_logits, float32_gradients) = passes(&vs, &net, &xs);
        net.set_precision(SearchPrecision::Bf16);
        let (bf16_logits, bf16_gradients) = passes(&vs, &net, &xs);
        assert_eq!(bf16_logits.kind(), Kind::Float);
        let error = relative_error(&bf16_logits, &float32_logits);
        assert!(error > 0.0, "bf16 arithmetic must differ from float32");
        assert!(error < BF16_BOUND, "logits differ by {error:e}");
        for (index, gradient) in bf16_gradients.iter().enumerate() {
            assert_eq!(gradient.kind(), Kind::Float, "gradient {index}");
        }
        // Single gradients of weights feeding a batch norm cancel out to small values whose
        // relative error is large in bf16; the gradient as a whole, and the alphas', must
        // point the same way.
        let alphas = bf16_gradients.len() - 2;
        let whole = cosine(&flat(&bf16_gradients), &flat(&float32_gradients));
        assert!(whole > MIN_GRADIENT_COSINE, "gradient cosine {whole}");
        let alpha = cosine(
            &flat(&bf16_gradients[alphas..]),
            &flat(&float32_gradients[alphas..]),
        );
        assert!(alpha > MIN_GRADIENT_COSINE, "alpha gradient cosine {alpha}");
        for (name, variable) in vs.variables() {
            assert_eq!(variable.kind(), Kind::Float, "{name}");
        }
        assert_eq!(net.arch.normal.kind(), Kind::Float);
        assert_eq!(net.arch.reduce.kind(), Kind::Float);
    }

    #[test]
    fn edge_rows_follow_the_reference_order() {
        assert_eq!(edge_row(0, 0), 0);
        assert_eq!(edge_row(1, 2), 4);
        assert_eq!(edge_row(2, 0), 5);
        assert_eq!(edge_row(3, 4), 13);
    }
}
