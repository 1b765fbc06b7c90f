//! The named parameter list shared by the optimizers, cached 0-d scalar tensors, and helpers
//! to collect parameters from a `VarStore` and to zero gradients.

use std::collections::HashMap;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::OptimError;

/// The ordered, validated named parameters of one optimizer.
pub(crate) struct ParamList {
    params: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl ParamList {
    /// Checks that every parameter is defined and has a unique, non-empty name.
    pub(crate) fn new(params: Vec<(String, Tensor)>) -> Result<Self, OptimError> {
        let mut index = HashMap::with_capacity(params.len());
        for (position, (name, tensor)) in params.iter().enumerate() {
            if name.is_empty() {
                return Err(OptimError::EmptyParameterName);
            }
            if !tensor.defined() {
                return Err(OptimError::UndefinedParameter(name.clone()));
            }
            if index.insert(name.clone(), position).is_some() {
                return Err(OptimError::DuplicateParameter(name.clone()));
            }
        }
        Ok(Self { params, index })
    }

    /// The parameters in construction order.
    pub(crate) fn as_slice(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The position of the parameter called `name`.
    pub(crate) fn position(&self, name: &str) -> Result<usize, OptimError> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| OptimError::UnknownParameter(name.to_string()))
    }

    /// The position of the parameter called `name`, if there is one.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// How many distinct scalars a cache keeps (an optimizer uses at most three per device and
/// kind within one step; older learning rates are evicted first).
const SCALAR_CACHE_CAPACITY: usize = 8;

/// 0-d tensors holding scalar factors, made once per (device, kind, value) and reused, so that
/// a step creates no tensor for an unchanged learning rate and never copies host data to a
/// device.
#[derive(Default)]
pub(crate) struct ScalarCache {
    entries: Vec<CachedScalar>,
}

/// One cached scalar.
struct CachedScalar {
    device: Device,
    kind: Kind,
    bits: u64,
    tensor: Tensor,
}

impl ScalarCache {
    /// A 0-d tensor holding `value` with the kind and device of `like`.
    pub(crate) fn get(&mut self, value: f64, like: &Tensor) -> Result<Tensor, OptimError> {
        let device = like.device();
        let kind = like.f_kind()?;
        let bits = value.to_bits();
        if let Some(entry) = self
            .entries
            .iter()
            .find(|entry| entry.device == device && entry.kind == kind && entry.bits == bits)
        {
            return Ok(entry.tensor.shallow_clone());
        }
        let tensor = Tensor::f_scalar_tensor(value, (kind, device))?;
        if self.entries.len() == SCALAR_CACHE_CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(CachedScalar {
            device,
            kind,
            bits,
            tensor: tensor.shallow_clone(),
        });
        Ok(tensor)
    }
}

/// The trainable variables of `var_store` (those that require a gradient; BatchNorm running
/// statistics do not) with their names, sorted by name.
pub fn trainable_parameters(var_store: &VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = var_store
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad())
        .collect();
    params.sort_by(|(a, _), (b, _)| a.cmp(b));
    params
}

/// The variables of `var_store` that are not trained (batch-norm running statistics),
/// sorted by name, so that every data-parallel rank lists them in the same order.
pub fn untrained_variables(var_store: &VarStore) -> Vec<Tensor> {
    let mut buffers: Vec<(String, Tensor)> = var_store
        .variables()
        .into_iter()
        .filter(|(_, tensor)| !tensor.requires_grad())
        .collect();
    buffers.sort_by(|(a, _), (b, _)| a.cmp(b));
    buffers.into_iter().map(|(_, tensor)| tensor).collect()
}

/// Number of trainable scalars in `var_store` (the parameter counts of SPEC 3.1 and 7.3).
pub fn parameter_count(var_store: &VarStore) -> i64 {
    var_store
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64
}

/// Second handles on named tensors (sharing storage), for a list an optimizer or a
/// checkpoint keeps beside the owner's.
pub fn shallow_copies(named: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
        .collect()
}

/// Zeroes, in place, the gradient of every tensor that has one (tch cannot reset a gradient
/// to undefined, so a zeroed gradient stays defined and the optimizers keep updating it,
/// as PyTorch's `zero_grad(set_to_none=False)` does).
pub fn zero_grad<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<(), OptimError> {
    for param in params {
        let mut grad = param.f_grad()?;
        if grad.defined() {
            let _ = grad.f_detach_()?;
            let _ = grad.f_zero_()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    #[test]
    fn param_list_rejects_duplicates_empty_names_and_undefined_tensors() {
        let a = Tensor::from_slice(&[1.0f32]);
        let duplicate = ParamList::new(vec![
            ("w".to_string(), a.shallow_clone()),
            ("w".to_string(), a.shallow_clone()),
        ]);
        assert!(matches!(duplicate, Err(OptimError::DuplicateParameter(name)) if name == "w"));
        let empty = ParamList::new(vec![(String::new(), a.shallow_clone())]);
        assert!(matches!(empty, Err(OptimError::EmptyParameterName)));
        let undefined = ParamList::new(vec![("u".to_string(), Tensor::new())]);
        assert!(matches!(undefined, Err(OptimError::UndefinedParameter(name)) if name == "u"));
        let list = ParamList::new(vec![("w".to_string(), a)]).unwrap();
        assert_eq!(list.position("w").unwrap(), 0);
        assert!(
            matches!(list.position("v"), Err(OptimError::UnknownParameter(name)) if name == "v")
        );
    }

    #[test]
    fn trainable_parameters_are_sorted_and_skip_non_trainable_variables() {
        let var_store = VarStore::new(Device::Cpu);
        let root = var_store.root();
        let _b = root.zeros("b", &[2]);
        let _a = root.zeros("a", &[3]);
        let _running = root.zeros_no_train("running_mean", &[3]);
        let _conv = nn::linear(&root / "fc", 2, 2, Default::default());
        let names: Vec<String> = trainable_parameters(&var_store)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a", "b", "fc.bias", "fc.weight"]);
    }

    #[test]
    fn zero_grad_zeroes_defined_gradients_and_leaves_undefined_ones() {
        let with_grad = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let without_grad = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        (&with_grad * &with_grad).sum(Kind::Float).backward();
        zero_grad([&with_grad, &without_grad]).unwrap();
        assert!(with_grad.grad().equal(&Tensor::from_slice(&[0.0f32, 0.0])));
        assert!(!without_grad.grad().defined());
    }

    #[test]
    fn scalar_cache_reuses_tensors_for_equal_values() {
        let like = Tensor::from_slice(&[1.0f32]);
        let mut cache = ScalarCache::default();
        let first = cache.get(0.1, &like).unwrap();
        let again = cache.get(0.1, &like).unwrap();
        assert_eq!(first.data_ptr(), again.data_ptr());
        assert_eq!(first.kind(), Kind::Float);
        assert_eq!(first.size(), Vec::<i64>::new());
        assert_eq!(first.double_value(&[]), f64::from(0.1f32));
        for step in 0..20 {
            let _ = cache.get(f64::from(step), &like).unwrap();
        }
        assert_eq!(cache.entries.len(), SCALAR_CACHE_CAPACITY);
    }
}
