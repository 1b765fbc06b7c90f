//! What the trainers of every task share around a step: device-side step results, top-1
//! counts, cross-entropy in the logits' precision, switching gradient recording, and matrices
//! read back to the host.

use tch::{Device, Kind, Tensor};

/// Device-side results of a step; read them with [`StepTensors::host`] only when needed.
#[derive(Debug)]
pub struct StepTensors {
    /// Mean loss of the batch (cross-entropy, plus the regulariser for alpha steps).
    pub loss: Tensor,
    /// Number of correct top-1 predictions.
    pub correct: Tensor,
    /// Batch size.
    pub count: usize,
}

impl StepTensors {
    /// (loss, correct) on the host: one synchronisation.
    pub fn host(&self) -> (f64, f64) {
        let both = Tensor::stack(
            &[
                self.loss.detach().to_kind(Kind::Double),
                self.correct.to_kind(Kind::Double),
            ],
            0,
        )
        .to_device(Device::Cpu);
        (both.double_value(&[0]), both.double_value(&[1]))
    }
}

/// Toggles gradient recording of leaf tensors in place.
pub fn set_requires_grad(params: &[(String, Tensor)], requires_grad: bool) {
    for (_, param) in params {
        let _ = param.set_requires_grad(requires_grad);
    }
}

/// Number of rows whose arg-max equals the label.
pub fn accuracy_count(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits
        .detach()
        .argmax(-1, false)
        .eq_tensor(labels)
        .sum(Kind::Int64)
}

/// Copies a 2-d float tensor to host rows.
pub fn to_rows(matrix: &Tensor) -> Vec<Vec<f32>> {
    let matrix = matrix
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let size = matrix.size();
    let numel = matrix.numel();
    let mut flat = vec![0f32; numel];
    // The copy cannot fail: the matrix is a contiguous float32 host tensor by construction.
    matrix.copy_data(&mut flat, numel);
    flat.chunks(size[1] as usize).map(<[f32]>::to_vec).collect()
}
