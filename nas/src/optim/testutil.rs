//! Shared fixtures of the optimizer tests: the inputs behind the PyTorch reference values,
//! bit-level comparisons and the save/restore round trip.

use tch::{Kind, Tensor};

use super::{zero_grad, Optimizer};

/// Length of the first reference parameter: more than two AVX-512 vectors of float32, so both
/// the vectorised loop and the scalar tail of the CPU kernels are exercised.
const LONG: usize = 35;

/// A float32 leaf tensor that requires a gradient.
fn leaf(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values)
        .reshape(shape)
        .set_requires_grad(true)
}

/// The reference parameters: `a` (35 values), `b` (2x3) and `c` (2 values, never given a
/// gradient). All values are exact in float32.
pub(crate) fn reference_params() -> Vec<(String, Tensor)> {
    let a: Vec<f32> = (0..LONG)
        .map(|i| ((i * 37) % 101) as f32 / 32.0 - 50.0 / 32.0)
        .collect();
    let b: Vec<f32> = (0..6)
        .map(|i| ((i * 11) % 13) as f32 / 8.0 - 6.0 / 8.0)
        .collect();
    vec![
        ("a".to_string(), leaf(&a, &[LONG as i64])),
        ("b".to_string(), leaf(&b, &[2, 3])),
        ("c".to_string(), leaf(&[0.75, -1.5], &[2])),
    ]
}

/// The reference gradients of `a` and `b` at `step` (exact in float32).
pub(crate) fn reference_grads(step: usize) -> (Tensor, Tensor) {
    let a: Vec<f32> = (0..LONG)
        .map(|i| ((i * 53 + step * 17) % 97) as f32 / 16.0 - 3.0)
        .collect();
    let b: Vec<f32> = (0..6)
        .map(|i| ((i * 7 + step * 5) % 11) as f32 / 4.0 - 1.25)
        .collect();
    (
        Tensor::from_slice(&a),
        Tensor::from_slice(&b).reshape([2, 3]),
    )
}

/// Sets the gradients of `a` and `b` to `grads` exactly (through the backward pass of
/// `sum(a * ga) + sum(b * gb)` on zeroed gradients); `c` keeps no gradient.
pub(crate) fn set_grads(params: &[(String, Tensor)], grads: &(Tensor, Tensor)) {
    zero_grad(params.iter().map(|(_, tensor)| tensor)).unwrap();
    let loss =
        (&params[0].1 * &grads.0).sum(Kind::Float) + (&params[1].1 * &grads.1).sum(Kind::Float);
    loss.backward();
}

/// The bit patterns of a float32 tensor, in row-major order.
pub(crate) fn bits(tensor: &Tensor) -> Vec<u32> {
    let values = Vec::<f32>::try_from(tensor.detach().flatten(0, -1)).unwrap();
    values.into_iter().map(f32::to_bits).collect()
}

/// The bit patterns of `a` followed by those of `b`.
pub(crate) fn bits_ab(params: &[(String, Tensor)]) -> Vec<u32> {
    let mut all = bits(&params[0].1);
    all.extend(bits(&params[1].1));
    all
}

/// Asserts that `actual` holds PyTorch's float32 bits `expected`. They were recorded from
/// PyTorch at a vectorized CPU kernel level (AVX2 and AVX-512 agree on them), and our
/// optimizers run the same libtorch kernels, so they match bitwise there (the test command
/// pins AVX2). Under `ATEN_CPU_CAPABILITY=default` libtorch's scalar kernels round some
/// elements differently (PyTorch itself computes those other bits there) and a few steps at
/// a large learning rate amplify that to a few tens of units in the last place: there a
/// relative error of 1e-5 is allowed.
pub(crate) fn assert_pytorch_bits(actual: &[u32], expected: &[u32]) {
    let scalar_kernels = std::env::var("ATEN_CPU_CAPABILITY").is_ok_and(|level| level == "default");
    if !scalar_kernels {
        assert_eq!(actual, expected);
        return;
    }
    assert_eq!(actual.len(), expected.len());
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (f32::from_bits(*a), f32::from_bits(*e));
        assert!(
            (a - e).abs() <= 1e-5 * e.abs(),
            "element {index}: {a} vs PyTorch's {e}"
        );
    }
}

/// Runs the reference gradients through `optimizer` with one learning rate per step.
pub(crate) fn run_reference<O: Optimizer>(optimizer: &mut O, lrs: &[f64], first_step: usize) {
    let params: Vec<(String, Tensor)> = optimizer
        .parameters()
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
        .collect();
    for (offset, &lr) in lrs.iter().enumerate() {
        set_grads(&params, &reference_grads(first_step + offset));
        optimizer.step(lr).unwrap();
    }
}

/// Checks that `split` steps, a save, a restore into a fresh optimizer over restored
/// parameters and the remaining steps give bitwise the same parameters and state as a
/// straight run.
pub(crate) fn assert_round_trip_exact<O: Optimizer>(
    make: impl Fn(Vec<(String, Tensor)>) -> O,
    lrs: &[f64],
    split: usize,
) {
    let mut straight = make(reference_params());
    run_reference(&mut straight, lrs, 0);

    let mut first = make(reference_params());
    run_reference(&mut first, &lrs[..split], 0);
    let saved_state = first.state().unwrap();
    let restored_params: Vec<(String, Tensor)> = first
        .parameters()
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.detach().copy().set_requires_grad(true)))
        .collect();
    drop(first);
    let mut resumed = make(restored_params);
    resumed.load_state(&saved_state).unwrap();
    run_reference(&mut resumed, &lrs[split..], split);

    for ((name, a), (_, b)) in straight.parameters().iter().zip(resumed.parameters()) {
        assert!(a.equal(b), "parameter {name} differs after the round trip");
    }
    let straight_state = straight.state().unwrap();
    let resumed_state = resumed.state().unwrap();
    assert_eq!(straight_state.len(), resumed_state.len());
    for ((name_a, a), (name_b, b)) in straight_state.iter().zip(&resumed_state) {
        assert_eq!(name_a, name_b);
        assert!(
            a.equal(b),
            "state entry {name_a} differs after the round trip"
        );
    }
}
