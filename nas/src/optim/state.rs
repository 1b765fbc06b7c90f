//! Naming, validation and copying of optimizer state entries (`<parameter>.<entry>`).

use tch::{Device, Kind, Tensor};

use super::params::ParamList;
use super::OptimError;

/// What one per-parameter state entry holds.
#[derive(Clone, Copy)]
pub(crate) enum EntryKind {
    /// A tensor of the parameter's shape and kind (momentum buffer, moments, running average).
    LikeParameter,
    /// A 0-d Int64 step counter.
    Count,
    /// A 0-d Float scalar (ASGD's eta and mu, kept in float32 as PyTorch does).
    Scalar32,
}

/// One per-parameter state entry of an optimizer: its name suffix and what it holds.
#[derive(Clone, Copy)]
pub(crate) struct EntrySpec {
    pub(crate) suffix: &'static str,
    pub(crate) kind: EntryKind,
}

/// The stable name of a state entry.
pub(crate) fn entry_name(param: &str, suffix: &str) -> String {
    format!("{param}.{suffix}")
}

/// A deep copy of a state tensor, detached from autograd, for `state()`.
pub(crate) fn export(tensor: &Tensor) -> Result<Tensor, OptimError> {
    Ok(tensor.f_detach_copy()?)
}

/// A 0-d Int64 tensor holding a step count.
pub(crate) fn count_tensor(count: u64) -> Result<Tensor, OptimError> {
    let value = i64::try_from(count).map_err(|_| OptimError::InvalidStateValue {
        name: "step".to_string(),
        value: count as f64,
    })?;
    Ok(Tensor::f_scalar_tensor(value, (Kind::Int64, Device::Cpu))?)
}

/// A 0-d Float tensor holding a float32 scalar.
pub(crate) fn scalar32_tensor(value: f32) -> Result<Tensor, OptimError> {
    Ok(Tensor::f_scalar_tensor(
        f64::from(value),
        (Kind::Float, Device::Cpu),
    )?)
}

/// Reads a validated `Count` entry.
pub(crate) fn read_count(name: &str, tensor: &Tensor) -> Result<u64, OptimError> {
    let value = tensor.f_int64_value(&[])?;
    u64::try_from(value).map_err(|_| OptimError::InvalidStateValue {
        name: name.to_string(),
        value: value as f64,
    })
}

/// Reads a validated `Scalar32` entry, which must be finite.
pub(crate) fn read_scalar32(name: &str, tensor: &Tensor) -> Result<f32, OptimError> {
    let value = tensor.f_double_value(&[])?;
    if value.is_finite() {
        // The entry is a Float tensor, so the conversion is exact.
        Ok(value as f32)
    } else {
        Err(OptimError::InvalidStateValue {
            name: name.to_string(),
            value,
        })
    }
}

/// Validated state entries of one parameter, in the order of the optimizer's specs; tensors
/// are fresh copies on the parameter's device.
pub(crate) type ParamEntries = Vec<Tensor>;

/// Groups `entries` by parameter, checks that every parameter mentioned has all of `specs`
/// with the right shape and kind, and copies them onto the parameter's device. The result has
/// one slot per parameter, `None` for parameters without state.
pub(crate) fn parse_entries(
    params: &ParamList,
    specs: &[EntrySpec],
    entries: &[(String, Tensor)],
) -> Result<Vec<Option<ParamEntries>>, OptimError> {
    let mut found: Vec<Vec<Option<&Tensor>>> =
        vec![vec![None; specs.len()]; params.as_slice().len()];
    for (name, tensor) in entries {
        let (position, spec_index) = locate(params, specs, name)
            .ok_or_else(|| OptimError::UnknownStateEntry(name.clone()))?;
        let slot = &mut found[position][spec_index];
        if slot.is_some() {
            return Err(OptimError::DuplicateStateEntry(name.clone()));
        }
        *slot = Some(tensor);
    }
    let mut parsed = Vec::with_capacity(found.len());
    for ((param_name, param), slots) in params.as_slice().iter().zip(found) {
        if slots.iter().all(Option::is_none) {
            parsed.push(None);
            continue;
        }
        let mut tensors = Vec::with_capacity(specs.len());
        for (spec, slot) in specs.iter().zip(slots) {
            let name = entry_name(param_name, spec.suffix);
            let tensor = slot.ok_or_else(|| OptimError::MissingStateEntry(name.clone()))?;
            check_entry(&name, spec.kind, tensor, param)?;
            let copied = match spec.kind {
                EntryKind::LikeParameter => tensor.f_to_device(param.device())?.f_detach_copy()?,
                EntryKind::Count | EntryKind::Scalar32 => tensor.f_detach_copy()?,
            };
            tensors.push(copied);
        }
        parsed.push(Some(tensors));
    }
    Ok(parsed)
}

/// The parameter position and spec index an entry name refers to. The suffixes of every
/// optimizer are chosen so that at most one of them ends a given name.
fn locate(params: &ParamList, specs: &[EntrySpec], name: &str) -> Option<(usize, usize)> {
    specs.iter().enumerate().find_map(|(spec_index, spec)| {
        let param = name.strip_suffix(spec.suffix)?.strip_suffix('.')?;
        params.find(param).map(|position| (position, spec_index))
    })
}

/// Checks that an entry is defined and has the shape and kind its spec requires.
fn check_entry(
    name: &str,
    kind: EntryKind,
    tensor: &Tensor,
    param: &Tensor,
) -> Result<(), OptimError> {
    if !tensor.defined() {
        return Err(OptimError::UndefinedStateEntry(name.to_string()));
    }
    let (expected_shape, expected_kind) = match kind {
        EntryKind::LikeParameter => (param.size(), param.f_kind()?),
        EntryKind::Count => (Vec::new(), Kind::Int64),
        EntryKind::Scalar32 => (Vec::new(), Kind::Float),
    };
    let found_shape = tensor.size();
    if found_shape != expected_shape {
        return Err(OptimError::StateShapeMismatch {
            name: name.to_string(),
            expected: expected_shape,
            found: found_shape,
        });
    }
    let found_kind = tensor.f_kind()?;
    if found_kind != expected_kind {
        return Err(OptimError::StateKindMismatch {
            name: name.to_string(),
            expected: expected_kind,
            found: found_kind,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [EntrySpec; 2] = [
        EntrySpec {
            suffix: "exp_avg",
            kind: EntryKind::LikeParameter,
        },
        EntrySpec {
            suffix: "step",
            kind: EntryKind::Count,
        },
    ];

    fn params() -> ParamList {
        ParamList::new(vec![
            (
                "cell.0.weight".to_string(),
                Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            ),
            (
                "bias".to_string(),
                Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn entries_are_grouped_by_parameter_and_copied() {
        let exp_avg = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let entries = vec![
            ("cell.0.weight.step".to_string(), count_tensor(4).unwrap()),
            ("cell.0.weight.exp_avg".to_string(), exp_avg.shallow_clone()),
        ];
        let parsed = parse_entries(&params(), &SPECS, &entries).unwrap();
        let weight = parsed[0].as_ref().unwrap();
        assert!(weight[0].equal(&exp_avg));
        assert_ne!(weight[0].data_ptr(), exp_avg.data_ptr());
        assert_eq!(read_count("step", &weight[1]).unwrap(), 4);
        assert!(parsed[1].is_none());
    }

    #[test]
    fn bad_entries_are_named_in_the_error() {
        let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Float, Device::Cpu));
        let unknown = vec![("conv.exp_avg".to_string(), ones(&[3]))];
        let err = parse_entries(&params(), &SPECS, &unknown).err().unwrap();
        assert!(matches!(&err, OptimError::UnknownStateEntry(name) if name == "conv.exp_avg"));
        assert!(err.to_string().contains("conv.exp_avg"));

        let missing = vec![("bias.exp_avg".to_string(), ones(&[3]))];
        let err = parse_entries(&params(), &SPECS, &missing).err().unwrap();
        assert!(matches!(&err, OptimError::MissingStateEntry(name) if name == "bias.step"));

        let duplicate = vec![
            ("bias.exp_avg".to_string(), ones(&[3])),
            ("bias.exp_avg".to_string(), ones(&[3])),
        ];
        let err = parse_entries(&params(), &SPECS, &duplicate).err().unwrap();
        assert!(matches!(&err, OptimError::DuplicateStateEntry(name) if name == "bias.exp_avg"));

        let shape = vec![
            ("bias.exp_avg".to_string(), ones(&[4])),
            ("bias.step".to_string(), count_tensor(1).unwrap()),
        ];
        let err = parse_entries(&params(), &SPECS, &shape).err().unwrap();
        assert!(matches!(
            &err,
            OptimError::StateShapeMismatch { name, expected, found }
                if name == "bias.exp_avg" && expected == &[3] && found == &[4]
        ));
        assert!(err.to_string().contains("bias.exp_avg"));

        let kind = vec![
            ("bias.exp_avg".to_string(), ones(&[3])),
            ("bias.step".to_string(), Tensor::from(1.0f32).reshape([])),
        ];
        let err = parse_entries(&params(), &SPECS, &kind).err().unwrap();
        assert!(matches!(
            &err,
            OptimError::StateKindMismatch { name, expected: Kind::Int64, found: Kind::Float }
                if name == "bias.step"
        ));

        let undefined = vec![("bias.exp_avg".to_string(), Tensor::new())];
        let err = parse_entries(&params(), &SPECS, &undefined).err().unwrap();
        assert!(matches!(&err, OptimError::UndefinedStateEntry(name) if name == "bias.exp_avg"));
    }

    #[test]
    fn negative_counts_and_non_finite_scalars_are_rejected() {
        let negative = Tensor::from(-1i64).reshape([]);
        assert!(matches!(
            read_count("w.step", &negative),
            Err(OptimError::InvalidStateValue { name, .. }) if name == "w.step"
        ));
        let nan = scalar32_tensor(f32::NAN).unwrap();
        assert!(read_scalar32("w.eta", &nan).is_err());
        let eta = scalar32_tensor(0.1).unwrap();
        assert_eq!(read_scalar32("w.eta", &eta).unwrap(), 0.1f32);
    }
}
