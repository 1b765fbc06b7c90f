//! Range checks shared by every config: each failure names the config's origin and the dotted
//! field, and the checks that more than one config needs (Adam, the alpha schedule, the
//! method name) are written once.

use super::error::ConfigError;
use super::keys::{self, Key, KeyRange, CUSTOM_METHOD};
use super::load::CONFIG_VERSION;
use crate::limits;
use crate::methods::{is_method, METHOD_NAMES};
use std::fmt::Display;
use std::ops::RangeInclusive;

/// Range checks of one config: each failure names the config's origin and the field.
pub(crate) struct Checker<'a> {
    origin: &'a str,
}

impl<'a> Checker<'a> {
    /// Checks for the config read from `origin`.
    pub(crate) fn new(origin: &'a str) -> Self {
        Checker { origin }
    }

    /// `Err` naming `field` unless `ok`.
    pub(crate) fn ensure(&self, field: &str, ok: bool, message: &str) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::invalid(self.origin, field, message))
        }
    }

    /// `Err` naming `key` unless the integer `value` lies in the key's range.
    pub(crate) fn integer<T>(&self, key: &Key, value: T) -> Result<(), ConfigError>
    where
        T: TryInto<u64> + Display + Copy,
    {
        match &key.range {
            KeyRange::Count(range) | KeyRange::OptionalCount(range) => {
                self.count(key.name, value, range)
            }
            other => Err(ConfigError::invalid(
                self.origin,
                key.name,
                format!("expected {other}, got the integer {value}"),
            )),
        }
    }

    /// `Err` naming `key` unless the real `value` lies in the key's range.
    pub(crate) fn number(&self, key: &Key, value: f64) -> Result<(), ConfigError> {
        match &key.range {
            KeyRange::Real(range) => self.ensure(
                key.name,
                range.contains(value),
                &format!("expected {range}, got {value}"),
            ),
            other => Err(ConfigError::invalid(
                self.origin,
                key.name,
                format!("expected {other}, got the number {value}"),
            )),
        }
    }

    /// `Err` naming `key` unless `value` has as many characters as the key's range admits.
    pub(crate) fn text(&self, key: &Key, value: &str) -> Result<(), ConfigError> {
        match &key.range {
            KeyRange::Text(range) => {
                let length = value.chars().count();
                self.ensure(
                    key.name,
                    range.contains(&(length as u64)),
                    &format!("expected {}, got {length}", key.range),
                )
            }
            other => Err(ConfigError::invalid(
                self.origin,
                key.name,
                format!("expected {other}, got the text `{value}`"),
            )),
        }
    }

    /// `Err` unless `version` is the one format version this build reads.
    pub(crate) fn version(&self, version: u32) -> Result<(), ConfigError> {
        self.ensure(
            keys::VERSION.name,
            version == CONFIG_VERSION,
            "expected 1 (the only config version this build reads)",
        )
    }

    /// `Err` naming `field` unless the integer `value` lies in `range`.
    pub(crate) fn count<T>(
        &self,
        field: &str,
        value: T,
        range: &RangeInclusive<u64>,
    ) -> Result<(), ConfigError>
    where
        T: TryInto<u64> + Display + Copy,
    {
        limits::check_count(value, range)
            .map_err(|message| ConfigError::invalid(self.origin, field, message))
    }

    /// `Err` unless `method` names a preset or is `custom`: the name labels results, run
    /// directories and figures, so a misspelt or invented one would mislabel them.
    pub(crate) fn method(&self, method: &str) -> Result<(), ConfigError> {
        let known = is_method(method) || method == CUSTOM_METHOD;
        self.ensure(
            keys::METHOD.name,
            known,
            &format!(
                "unknown method `{method}`: expected one of {}, or `{CUSTOM_METHOD}` for \
                 settings that follow no preset",
                METHOD_NAMES.join(", ")
            ),
        )
    }
}

/// The alpha optimizer's Adam settings, checked alike by the CNN and the recurrent search.
pub(crate) struct AdamSettings {
    pub(crate) lr: f64,
    pub(crate) beta1: f64,
    pub(crate) beta2: f64,
    pub(crate) eps: f64,
    pub(crate) weight_decay: f64,
}

impl AdamSettings {
    /// Checks each setting against the range of its `arch` key.
    pub(crate) fn validate(&self, check: &Checker<'_>) -> Result<(), ConfigError> {
        check.number(&keys::ARCH_LR, self.lr)?;
        check.number(&keys::ARCH_BETA1, self.beta1)?;
        check.number(&keys::ARCH_BETA2, self.beta2)?;
        check.number(&keys::ARCH_EPS, self.eps)?;
        check.number(&keys::ARCH_WEIGHT_DECAY, self.weight_decay)
    }
}

/// Checks the image-data settings the CNN search and evaluation share: the optional image
/// limit (with the config's own key), the cutout length and the prefetch depth.
pub(crate) fn check_image_data(
    check: &Checker<'_>,
    (limit_key, limit): (&Key, Option<usize>),
    cutout_length: usize,
    prefetch: usize,
) -> Result<(), ConfigError> {
    if let Some(limit) = limit {
        check.integer(limit_key, limit)?;
    }
    check.integer(&keys::DATA_CUTOUT_LENGTH, cutout_length)?;
    check.integer(&keys::DATA_PREFETCH, prefetch)
}

/// Checks the width and depth the CNN search and evaluation networks share.
pub(crate) fn check_cnn_size(
    check: &Checker<'_>,
    init_channels: i64,
    layers: i64,
) -> Result<(), ConfigError> {
    check.integer(&keys::NETWORK_INIT_CHANNELS, init_channels)?;
    check.ensure(
        keys::NETWORK_INIT_CHANNELS.name,
        init_channels % 2 == 0,
        "expected an even number (factorized reductions halve channels)",
    )?;
    check.integer(&keys::NETWORK_LAYERS, layers)
}
