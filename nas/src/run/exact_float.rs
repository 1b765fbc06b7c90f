//! Floats of checkpoint state stored as their shortest round-trip decimal strings, which read
//! back to the same bits (serde_json's number parser may not): for `#[serde(with = ...)]`.

use serde::{de::Error, Deserialize, Deserializer, Serializer};

/// Writes the float as a string.
pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

/// Reads the float back from its string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map_err(|_| D::Error::custom(format!("`{text}` is not a number")))
}
/// An optional f64 as its shortest round-trip decimal string, or null.
pub mod optional {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the float as a string, or null.
    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&value.to_string()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads the float back from its string, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                text.parse()
                    .map_err(|_| D::Error::custom(format!("`{text}` is not a number")))
            })
            .transpose()
    }
}
