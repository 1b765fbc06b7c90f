//! The recurrent cells (SPEC 7.3-7.5): the search cell with 36 weighted edges and one shared
//! non-affine BatchNorm1d, and the fixed cell of a genotype.

use super::dropout::{apply, DropoutMasks};
use super::INIT_RANGE;
use prime_core::genotype::{rnn_primitives, RnnGenotype, RnnOp, RNN_STEPS};
use prime_core::primitives::Activation;
use tch::{nn, Tensor};

/// BatchNorm momentum and epsilon (PyTorch defaults, SPEC A.4).
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

/// The cell's matrices: W0 (ninp + nhid, 2 nhid) and one (nhid, 2 nhid) per node.
#[derive(Debug)]
struct CellMatrices {
    w0: Tensor,
    ws: Vec<Tensor>,
    nhid: i64,
}

impl CellMatrices {
    /// Draws W0 then W_1..W_nodes from uniform(-0.04, 0.04).
    fn new(path: &nn::Path, nhid: i64, nodes: usize) -> Self {
        let init = nn::Init::Uniform {
            lo: -INIT_RANGE,
            up: INIT_RANGE,
        };
        let w0 = path.var("w0", &[2 * nhid, 2 * nhid], init);
        let ws_path = path.sub("ws");
        let ws = (0..nodes)
            .map(|node| ws_path.var(&node.to_string(), &[nhid, 2 * nhid], init))
            .collect();
        Self { w0, ws, nhid }
    }

    /// s0 = h + sigmoid(c0) * (tanh(g0) - h) with [c0, g0] = [x * x_mask, h * h_mask] W0.
    fn initial_state(&self, x: &Tensor, h: &Tensor, masks: Option<&DropoutMasks>) -> Tensor {
        let xh = match masks {
            Some(masks) => Tensor::cat(
                &[apply(x, masks.x.as_ref()), apply(h, masks.h.as_ref())],
                -1,
            ),
            None => Tensor::cat(&[x, h], -1),
        };
        let parts = xh.mm(&self.w0).split(self.nhid, -1);
        let c0 = parts[0].sigmoid();
        let g0 = parts[1].tanh();
        h + c0 * (g0 - h)
    }

    /// (sigmoid(c), g) with [c, g] = (s * h_mask) W_node, for states s of shape (.., B, nhid).
    fn gates(
        &self,
        states: &Tensor,
        node: usize,
        masks: Option<&DropoutMasks>,
    ) -> (Tensor, Tensor) {
        let masked = match masks {
            Some(masks) => apply(states, masks.h.as_ref()),
            None => states.shallow_clone(),
        };
        let mut shape = states.size();
        let last = shape.len() - 1;
        shape[last] = 2 * self.nhid;
        let ch = masked
            .reshape([-1, self.nhid])
            .mm(&self.ws[node])
            .reshape(shape.as_slice());
        let parts = ch.split(self.nhid, -1);
        (parts[0].sigmoid(), parts[1].shallow_clone())
    }
}

/// f(x) of an edge activation; `none` has no edge update.
fn activate(op: RnnOp, x: &Tensor) -> Tensor {
    match op {
        RnnOp::Tanh => x.tanh(),
        RnnOp::Relu => x.relu(),
        RnnOp::Sigmoid => x.sigmoid(),
        RnnOp::Identity | RnnOp::None => x.shallow_clone(),
    }
}

/// The search cell (DARTSCellSearch): 8 nodes, node i+1 fed by every earlier state.
#[derive(Debug)]
pub struct SearchCell {
    matrices: CellMatrices,
    running_mean: Tensor,
    running_var: Tensor,
    primitives: &'static [RnnOp],
}

impl SearchCell {
    /// The cell's variables under `path`: `w0`, `ws.<node>`, `bn.running_mean`, `bn.running_var`.
    pub fn new(path: &nn::Path, nhid: i64, activation: Activation) -> Self {
        let matrices = CellMatrices::new(path, nhid, RNN_STEPS);
        let bn = path.sub("bn");
        Self {
            matrices,
            running_mean: bn.zeros_no_train("running_mean", &[nhid]),
            running_var: bn.ones_no_train("running_var", &[nhid]),
            primitives: rnn_primitives(activation),
        }
    }

    /// The shared BatchNorm1d(affine = false): batch statistics (updating the running ones) in
    /// training, running statistics otherwise.
    fn batch_norm(&self, x: &Tensor, training: bool) -> Tensor {
        x.batch_norm(
            None::<&Tensor>,
            None::<&Tensor>,
            Some(&self.running_mean),
            Some(&self.running_var),
            training,
            BN_MOMENTUM,
            BN_EPS,
            false,
        )
    }

    /// The cell over `inputs` (T, B, ninp) from `hidden` (1, B, nhid) with activated alpha
    /// `weights` (36, P) and the masks of a training forward (none in evaluation); returns the
    /// outputs (T, B, nhid) and the last hidden state (1, B, nhid).
    pub fn forward(
        &self,
        inputs: &Tensor,
        hidden: &Tensor,
        weights: &Tensor,
        masks: Option<&DropoutMasks>,
        training: bool,
    ) -> (Tensor, Tensor) {
        let (ops, columns): (Vec<RnnOp>, Vec<i64>) = self
            .primitives
            .iter()
            .enumerate()
            .filter(|(_, op)| **op != RnnOp::None)
            .map(|(column, op)| (*op, column as i64))
            .unzip();
        let columns = Tensor::from_slice(&columns).to_device(weights.device());
        // (K, 36): the weight of every non-`none` op on every edge.
        let op_weights = weights.index_select(1, &columns).tr();
        unroll(inputs, hidden, |x, h| {
            self.step(x, h, &ops, &op_weights, masks, training)
        })
    }

    /// One time step: returns the new hidden state (B, nhid). All ops of a node are evaluated
    /// at once: node = sum over ops k and sources j of P[k, j] (S_j + c_j (f_k(g_j) - S_j)),
    /// computed as sum_j a_j S_j + c_j (m_j - a_j S_j) with a_j = sum_k P[k, j] and
    /// m_j = sum_k P[k, j] f_k(g_j): the highway update runs once per source, not per op.
    fn step(
        &self,
        x: &Tensor,
        h: &Tensor,
        ops: &[RnnOp],
        op_weights: &Tensor,
        masks: Option<&DropoutMasks>,
        training: bool,
    ) -> Tensor {
        let s0 = self.batch_norm(&self.matrices.initial_state(x, h, masks), training);
        let mut states = s0.unsqueeze(0);
        let mut offset = 0;
        for node in 0..RNN_STEPS {
            let sources = node as i64 + 1;
            let (c, g) = self.matrices.gates(&states, node, masks);
            let activated: Vec<Tensor> = ops.iter().map(|&op| activate(op, &g)).collect();
            // (K, sources): P[k, j] of this node's edges.
            let weights = op_weights.narrow(1, offset, sources);
            // m_j = sum_k P[k, j] f_k(g_j), (sources, B, nhid).
            let mixed = (weights.reshape([ops.len() as i64, sources, 1, 1])
                * Tensor::stack(&activated, 0))
            .sum_dim_intlist(0, false, s0.kind());
            // a_j S_j with a_j = sum_k P[k, j].
            let kept = &states
                * weights
                    .sum_dim_intlist(0, false, s0.kind())
                    .reshape([sources, 1, 1]);
            let sum = (&kept + &c * (mixed - &kept)).sum_dim_intlist(0, false, s0.kind());
            let node_state = self.batch_norm(&sum, training);
            states = Tensor::cat(&[states, node_state.unsqueeze(0)], 0);
            offset += sources;
        }
        states
            .narrow(0, 1, RNN_STEPS as i64)
            .mean_dim(0, false, s0.kind())
    }
}

/// The evaluation cell (DARTSCell) of a genotype, without BatchNorm.
#[derive(Debug)]
pub struct FixedCell {
    matrices: CellMatrices,
    genotype: RnnGenotype,
}

impl FixedCell {
    /// The cell's variables under `path`: `w0` and one `ws.<n>` per gene.
    pub fn new(path: &nn::Path, nhid: i64, genotype: &RnnGenotype) -> Self {
        Self {
            matrices: CellMatrices::new(path, nhid, genotype.recurrent.len()),
            genotype: genotype.clone(),
        }
    }

    /// The cell over `inputs` (T, B, ninp) from `hidden` (1, B, nhid) with the masks of a
    /// training forward (none in evaluation); returns the outputs and the last hidden state.
    pub fn forward(
        &self,
        inputs: &Tensor,
        hidden: &Tensor,
        masks: Option<&DropoutMasks>,
    ) -> (Tensor, Tensor) {
        unroll(inputs, hidden, |x, h| self.step(x, h, masks))
    }

    fn step(&self, x: &Tensor, h: &Tensor, masks: Option<&DropoutMasks>) -> Tensor {
        let mut states = vec![self.matrices.initial_state(x, h, masks)];
        for (node, gene) in self.genotype.recurrent.iter().enumerate() {
            let previous = &states[gene.source];
            let (c, g) = self.matrices.gates(previous, node, masks);
            let state = previous + c * (activate(gene.op, &g) - previous);
            states.push(state);
        }
        let chosen: Vec<&Tensor> = self.genotype.concat.iter().map(|&i| &states[i]).collect();
        let kind = states[0].kind();
        Tensor::stack(&chosen, -1).mean_dim(-1, false, kind)
    }
}

/// Runs `step(x_t, h)` over the T steps of `inputs` (T, B, ninp) from `hidden` (1, B, nhid);
/// returns the outputs (T, B, nhid) and the last hidden state (1, B, nhid).
fn unroll(
    inputs: &Tensor,
    hidden: &Tensor,
    step: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> (Tensor, Tensor) {
    let steps = inputs.size()[0];
    let mut h = hidden.get(0);
    let mut outputs = Vec::with_capacity(steps as usize);
    for t in 0..steps {
        h = step(&inputs.get(t), &h);
        outputs.push(h.shallow_clone());
    }
    let last = h.unsqueeze(0);
    (Tensor::stack(&outputs, 0), last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prime_core::genotype::RNN_EDGES;
    use tch::{Device, Kind};

    /// The reference's per-op loop for one time step, in evaluation mode.
    fn per_op_step(cell: &SearchCell, x: &Tensor, h: &Tensor, weights: &Tensor) -> Tensor {
        let s0 = cell.batch_norm(&cell.matrices.initial_state(x, h, None), false);
        let mut states = s0.unsqueeze(0);
        let mut offset = 0;
        for node in 0..RNN_STEPS {
            let (c, g) = cell.matrices.gates(&states, node, None);
            let rows = weights.narrow(0, offset, node as i64 + 1);
            let mut sum = s0.zeros_like();
            for (column, &op) in cell.primitives.iter().enumerate() {
                if op == RnnOp::None {
                    continue;
                }
                let unweighted = &states + &c * (activate(op, &g) - &states);
                let weight = rows.select(1, column as i64).reshape([-1, 1, 1]);
                sum += (weight * unweighted).sum_dim_intlist(0, false, Kind::Double);
            }
            states = Tensor::cat(&[states, cell.batch_norm(&sum, false).unsqueeze(0)], 0);
            offset += node as i64 + 1;
        }
        states
            .narrow(0, 1, RNN_STEPS as i64)
            .mean_dim(0, false, Kind::Double)
    }

    #[test]
    fn vectorised_search_step_equals_the_per_op_loop() {
        tch::set_num_threads(1);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let cell =
            crate::torch_rng::seeded(4, || SearchCell::new(&vs.root(), 6, Activation::Softmax));
        vs.double();
        let options = (Kind::Double, Device::Cpu);
        let weights = Tensor::randn([RNN_EDGES as i64, 5], options).softmax(-1, Kind::Double);
        let x = Tensor::randn([1, 3, 6], options);
        let h = Tensor::randn([1, 3, 6], options);
        let (output, last) = cell.forward(&x, &h, &weights, None, false);
        let expected = per_op_step(&cell, &x.get(0), &h.get(0), &weights);
        assert!(output.get(0).allclose(&expected, 1e-12, 1e-12, false));
        assert!(last.get(0).allclose(&expected, 1e-12, 1e-12, false));
        assert_eq!(output.size(), vec![1, 3, 6]);
    }
}
