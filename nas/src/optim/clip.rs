//! Global gradient-norm clipping (SPEC A.3, PyTorch's `clip_grad_norm_`) and the sum of
//! squared gradients behind the FIMT (SPEC 4.3).
//!
//! Both return 0-d tensors on the gradients' device and never read a value back themselves, so
//! a caller decides when (and whether) to pay for the host synchronisation ([`read_scalar`]).

use tch::{Device, Kind, Tensor};

use super::OptimError;

/// Added to the total norm before dividing, as PyTorch does.
const CLIP_EPSILON: f64 = 1e-6;

/// The defined gradients of `params`.
fn defined_grads<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
) -> Result<Vec<Tensor>, OptimError> {
    let mut grads = Vec::new();
    for param in params {
        let grad = param.f_grad()?;
        if grad.defined() {
            grads.push(grad);
        }
    }
    Ok(grads)
}

/// A 0-d float32 zero on the CPU, the result for a list without gradients.
fn zero_scalar() -> Result<Tensor, OptimError> {
    Ok(Tensor::f_scalar_tensor(0.0, (Kind::Float, Device::Cpu))?)
}

/// Scales the gradients of `params` in place so that their global L2 norm is at most
/// `max_norm`, and returns the norm before clipping as a 0-d tensor. Parameters without a
/// gradient are skipped. As PyTorch: total = ||(||g_1||, ..., ||g_n||)||, then every gradient
/// is multiplied by min(max_norm / (total + 1e-6), 1).
pub fn clip_grad_norm<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
    max_norm: f64,
) -> Result<Tensor, OptimError> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(OptimError::InvalidHyperparameter {
            name: "max_norm",
            value: max_norm,
            requirement: "must be >= 0",
        });
    }
    tch::no_grad(|| {
        let grads = defined_grads(params)?;
        let Some(first) = grads.first() else {
            return zero_scalar();
        };
        let device = first.device();
        let norms = grads
            .iter()
            .map(|grad| Ok(grad.f_norm()?.f_to_device(device)?))
            .collect::<Result<Vec<Tensor>, OptimError>>()?;
        let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
        // clip_coef = max_norm / (total_norm + 1e-6), which Python evaluates as
        // (total_norm + 1e-6).reciprocal() * max_norm; then clamp(max=1.0).
        let coefficient = total
            .f_add_scalar(CLIP_EPSILON)?
            .f_reciprocal()?
            .f_mul_scalar(max_norm)?
            .f_clamp_max(1.0)?;
        for mut grad in grads {
            let _ = grad.f_mul_(&coefficient)?;
        }
        Ok(total)
    })
}

/// The sum over `params` of the sum of squared gradient entries (the trace of the empirical
/// Fisher), accumulated in float32 one parameter at a time in the given order, as a 0-d tensor.
/// Parameters without a gradient contribute 0.
pub fn grad_squared_sum<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
) -> Result<Tensor, OptimError> {
    tch::no_grad(|| {
        let mut total: Option<Tensor> = None;
        for grad in defined_grads(params)? {
            let squares = grad.f_square()?.f_sum(Kind::Float)?;
            match total.as_mut() {
                Some(total) => {
                    let _ = total.f_add_(&squares)?;
                }
                None => total = Some(squares),
            }
        }
        match total {
            Some(total) => Ok(total),
            None => zero_scalar(),
        }
    })
}

/// Reads a one-element tensor (such as the result of [`clip_grad_norm`] or
/// [`grad_squared_sum`]) as `f64`; on a GPU this waits for the device.
pub fn read_scalar(tensor: &Tensor) -> Result<f64, OptimError> {
    Ok(tensor.f_double_value(&[])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::{bits, bits_ab, reference_grads, reference_params, set_grads};

    /// Parameters with gradients [3, 4] and [12] (global norm 13) and one without gradient.
    fn hand_params() -> Vec<Tensor> {
        let a = Tensor::from_slice(&[1.0f32, 1.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let unused = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let loss = (&a * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float) + &b * 12.0;
        loss.sum(Kind::Float).backward();
        vec![a, b, unused]
    }

    fn grad_values(params: &[Tensor]) -> Vec<f32> {
        let mut values = Vec::<f32>::try_from(params[0].grad()).unwrap();
        values.extend(Vec::<f32>::try_from(params[1].grad()).unwrap());
        values
    }

    #[test]
    fn below_the_threshold_gradients_are_unchanged() {
        tch::set_num_threads(1);
        let params = hand_params();
        // total = sqrt(3^2 + 4^2 + 12^2) = 13; coef = 26 / (13 + 1e-6) > 1 is clamped to 1.
        let norm = clip_grad_norm(&params, 26.0).unwrap();
        assert_eq!(read_scalar(&norm).unwrap(), 13.0);
        assert_eq!(grad_values(&params), [3.0, 4.0, 12.0]);
        assert!(!params[2].grad().defined());
    }

    #[test]
    fn above_the_threshold_gradients_are_scaled_to_max_norm() {
        tch::set_num_threads(1);
        let params = hand_params();
        // coef = 6.5 / (13 + 1e-6) = 0.49999996: gradients become about [1.5, 2, 6].
        let norm = clip_grad_norm(&params, 6.5).unwrap();
        assert_eq!(read_scalar(&norm).unwrap(), 13.0);
        for (found, expected) in grad_values(&params).iter().zip([1.5f32, 2.0, 6.0]) {
            assert!((found - expected).abs() < 1e-6, "{found} vs {expected}");
        }
    }

    #[test]
    fn no_gradients_give_zero_norm() {
        let unused = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let norm = clip_grad_norm([&unused], 5.0).unwrap();
        assert_eq!(read_scalar(&norm).unwrap(), 0.0);
        assert_eq!(
            read_scalar(&grad_squared_sum([&unused]).unwrap()).unwrap(),
            0.0
        );
        assert!(matches!(
            clip_grad_norm([&unused], -1.0),
            Err(OptimError::InvalidHyperparameter {
                name: "max_norm",
                ..
            })
        ));
    }

    /// clip_grad_norm_(params, 1.0) on 0.3 times the reference gradients of step 0.
    const CLIP_1: [u32; 41] = [
        0xbe8f82c6, 0x3cef2f4a, 0xbe693483, 0x3da76de8, 0xbe336378, 0x3e0987fe, 0xbdfb24db,
        0x3e3f5908, 0xbd8f82c6, 0x3e752a12, 0xbc8f82c6, 0xbe8c8562, 0x3d0f82c6, 0xbe6339ba,
        0x3db36378, 0xbe2d68b0, 0x3e0f82c6, 0xbdef2f4a, 0x3e4553d1, 0xbd838d36, 0x3e7b24db,
        0xbc3f5908, 0xbe8987fe, 0x3d276de8, 0xbe5d3ef2, 0x3dbf5908, 0xbe276de8, 0x3e157d8f,
        0xbde339ba, 0x3e4b4e99, 0xbd6f2f4a, 0x3e808fd2, 0xbbbf5908, 0xbe868a9a, 0x3d3f5908,
        0xbdef2f4a, 0x3d3f5908, 0xbd3f5908, 0x3def2f4a, 0x3cbf5908, 0xbd8f82c6,
    ];

    /// The norm PyTorch returns for 0.3 times the reference gradients of step 0 (3.2109065).
    const REFERENCE_NORM: u32 = 0x404d7f7e;

    #[test]
    fn clipping_is_bitwise_pytorch() {
        tch::set_num_threads(1);
        let params = reference_params();
        let (ga, gb) = reference_grads(0);
        let grads = (ga * 0.3, gb * 0.3);
        set_grads(&params, &grads);
        let norm = clip_grad_norm(params.iter().map(|(_, tensor)| tensor), 100.0).unwrap();
        assert_eq!(bits(&norm), [REFERENCE_NORM]);
        let unchanged: Vec<(String, Tensor)> = params
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.grad()))
            .collect();
        let mut expected = bits(&grads.0);
        expected.extend(bits(&grads.1));
        assert_eq!(bits_ab(&unchanged), expected);

        set_grads(&params, &grads);
        let norm = clip_grad_norm(params.iter().map(|(_, tensor)| tensor), 1.0).unwrap();
        assert_eq!(bits(&norm), [REFERENCE_NORM]);
        let clipped: Vec<(String, Tensor)> = params
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.grad()))
            .collect();
        assert_eq!(bits_ab(&clipped), CLIP_1);
    }

    #[test]
    fn grad_squared_sum_matches_hand_arithmetic_and_pytorch() {
        tch::set_num_threads(1);
        // 3^2 + 4^2 + 12^2 = 169; the parameter without gradient counts 0.
        let params = hand_params();
        let total = grad_squared_sum(&params).unwrap();
        assert_eq!(total.kind(), Kind::Float);
        assert_eq!(read_scalar(&total).unwrap(), 169.0);

        // PyTorch: fi = 0; fi = fi + (g ** 2).sum() over the reference gradients times 0.3
        // gives 10.309921 (0x4124f570).
        let params = reference_params();
        let (ga, gb) = reference_grads(0);
        set_grads(&params, &(ga * 0.3, gb * 0.3));
        let total = grad_squared_sum(params.iter().map(|(_, tensor)| tensor)).unwrap();
        assert_eq!(bits(&total), [0x4124f570]);
    }
}
