//! CNN operation names, the searched primitive lists and the alpha activations (SPEC 1.1, 0.3).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One candidate operation on a CNN cell edge (SPEC 1.2); serialised as its reference name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CnnOp {
    /// `none`: the zero operation (never selected by the projection).
    None,
    /// `max_pool_3x3`.
    MaxPool3x3,
    /// `avg_pool_3x3`.
    AvgPool3x3,
    /// `skip_connect`: identity, or a factorized reduction at stride 2.
    SkipConnect,
    /// `sep_conv_3x3`.
    SepConv3x3,
    /// `sep_conv_5x5`.
    SepConv5x5,
    /// `dil_conv_3x3`.
    DilConv3x3,
    /// `dil_conv_5x5`.
    DilConv5x5,
    /// `sep_conv_7x7` (never searched; appears in hand-written genotypes).
    SepConv7x7,
    /// `conv_7x1_1x7` (never searched; appears in hand-written genotypes).
    Conv7x1And1x7,
}

/// The softmax search list `PRIMITIVES`, in alpha column order (SPEC 1.1).
pub const SEARCH_PRIMITIVES: [CnnOp; 8] = [
    CnnOp::None,
    CnnOp::MaxPool3x3,
    CnnOp::AvgPool3x3,
    CnnOp::SkipConnect,
    CnnOp::SepConv3x3,
    CnnOp::SepConv5x5,
    CnnOp::DilConv3x3,
    CnnOp::DilConv5x5,
];

/// The CRB search list `CRBPRIMITIVES`: the softmax list without `none` (SPEC 1.1).
pub const CRB_PRIMITIVES: [CnnOp; 7] = [
    CnnOp::MaxPool3x3,
    CnnOp::AvgPool3x3,
    CnnOp::SkipConnect,
    CnnOp::SepConv3x3,
    CnnOp::SepConv5x5,
    CnnOp::DilConv3x3,
    CnnOp::DilConv5x5,
];

impl CnnOp {
    /// Every operation of the op table: the eight searched ones, then the two hand-written-only.
    pub const ALL: [CnnOp; 10] = [
        CnnOp::None,
        CnnOp::MaxPool3x3,
        CnnOp::AvgPool3x3,
        CnnOp::SkipConnect,
        CnnOp::SepConv3x3,
        CnnOp::SepConv5x5,
        CnnOp::DilConv3x3,
        CnnOp::DilConv5x5,
        CnnOp::SepConv7x7,
        CnnOp::Conv7x1And1x7,
    ];

    /// The reference name, for example `sep_conv_3x3`.
    pub fn name(self) -> &'static str {
        match self {
            CnnOp::None => "none",
            CnnOp::MaxPool3x3 => "max_pool_3x3",
            CnnOp::AvgPool3x3 => "avg_pool_3x3",
            CnnOp::SkipConnect => "skip_connect",
            CnnOp::SepConv3x3 => "sep_conv_3x3",
            CnnOp::SepConv5x5 => "sep_conv_5x5",
            CnnOp::DilConv3x3 => "dil_conv_3x3",
            CnnOp::DilConv5x5 => "dil_conv_5x5",
            CnnOp::SepConv7x7 => "sep_conv_7x7",
            CnnOp::Conv7x1And1x7 => "conv_7x1_1x7",
        }
    }
}

/// An operation name that is not in the op table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation `{name}` (valid operations: {})", valid_op_names())]
pub struct UnknownOpError {
    /// The name that was given.
    pub name: String,
}

fn valid_op_names() -> String {
    CnnOp::ALL.map(CnnOp::name).join(", ")
}

impl FromStr for CnnOp {
    type Err = UnknownOpError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        CnnOp::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| UnknownOpError {
                name: name.to_string(),
            })
    }
}

impl fmt::Display for CnnOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CnnOp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for CnnOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The activation that turns raw alpha into edge weights (SPEC 0.3, 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Row-wise softmax over the 8 ops of [`SEARCH_PRIMITIVES`].
    Softmax,
    /// Unit-clipped ReLU, `clamp(alpha, 0, 1)`, over the 7 ops of [`CRB_PRIMITIVES`].
    Crb,
}

/// An activation name other than `softmax` or `crb`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation `{name}` (valid activations: softmax, crb)")]
pub struct UnknownActivationError {
    /// The name that was given.
    pub name: String,
}

impl Activation {
    /// The configuration name: `softmax` or `crb`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Softmax => "softmax",
            Activation::Crb => "crb",
        }
    }

    /// The primitive list searched under this activation, in alpha column order.
    pub fn primitives(self) -> &'static [CnnOp] {
        match self {
            Activation::Softmax => &SEARCH_PRIMITIVES,
            Activation::Crb => &CRB_PRIMITIVES,
        }
    }

    /// Activates one row of raw alpha on the host: a max-shifted softmax, or a clamp to [0, 1].
    pub fn apply_row(&self, raw: &[f32]) -> Vec<f32> {
        match self {
            Activation::Softmax => {
                let max = raw.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f64> = raw
                    .iter()
                    .map(|&value| (f64::from(value) - f64::from(max)).exp())
                    .collect();
                let sum: f64 = exps.iter().sum();
                exps.iter().map(|&e| (e / sum) as f32).collect()
            }
            Activation::Crb => raw.iter().map(|&value| value.clamp(0.0, 1.0)).collect(),
        }
    }
}

impl FromStr for Activation {
    type Err = UnknownActivationError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "softmax" => Ok(Activation::Softmax),
            "crb" => Ok(Activation::Crb),
            _ => Err(UnknownActivationError {
                name: name.to_string(),
            }),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str() {
        for op in CnnOp::ALL {
            assert_eq!(op.name().parse::<CnnOp>(), Ok(op));
            assert_eq!(op.to_string(), op.name());
        }
    }

    #[test]
    fn unknown_op_error_names_the_op_and_lists_the_valid_ones() {
        let error = "sep_conv_9x9".parse::<CnnOp>().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`sep_conv_9x9`"), "{message}");
        for op in CnnOp::ALL {
            assert!(message.contains(op.name()), "{message}");
        }
    }

    #[test]
    fn crb_list_is_the_search_list_without_none() {
        assert_eq!(SEARCH_PRIMITIVES[0], CnnOp::None);
        assert_eq!(&SEARCH_PRIMITIVES[1..], &CRB_PRIMITIVES[..]);
        assert_eq!(
            SEARCH_PRIMITIVES.map(CnnOp::name),
            [
                "none",
                "max_pool_3x3",
                "avg_pool_3x3",
                "skip_connect",
                "sep_conv_3x3",
                "sep_conv_5x5",
                "dil_conv_3x3",
                "dil_conv_5x5"
            ]
        );
    }

    #[test]
    fn ops_serialise_as_their_names() {
        let json = serde_json::to_string(&[CnnOp::Conv7x1And1x7, CnnOp::None]).unwrap();
        assert_eq!(json, r#"["conv_7x1_1x7","none"]"#);
        let ops: Vec<CnnOp> = serde_json::from_str(&json).unwrap();
        assert_eq!(ops, [CnnOp::Conv7x1And1x7, CnnOp::None]);
        let error = serde_json::from_str::<CnnOp>(r#""conv_3x3""#).unwrap_err();
        assert!(error.to_string().contains("`conv_3x3`"), "{error}");
    }

    #[test]
    fn activation_parses_serialises_and_lists_its_primitives() {
        assert_eq!("softmax".parse(), Ok(Activation::Softmax));
        assert_eq!("CRB".parse(), Ok(Activation::Crb));
        let error = "relu".parse::<Activation>().unwrap_err().to_string();
        assert!(
            error.contains("`relu`") && error.contains("softmax, crb"),
            "{error}"
        );
        assert_eq!(serde_json::to_string(&Activation::Crb).unwrap(), r#""crb""#);
        assert_eq!(
            serde_json::from_str::<Activation>(r#""softmax""#).unwrap(),
            Activation::Softmax
        );
        assert_eq!(Activation::Softmax.primitives(), &SEARCH_PRIMITIVES[..]);
        assert_eq!(Activation::Crb.primitives(), &CRB_PRIMITIVES[..]);
    }

    #[test]
    fn softmax_row_is_normalised_and_stable_for_large_inputs() {
        let row = Activation::Softmax.apply_row(&[0.0, 2.0_f32.ln(), 0.0, 0.0]);
        let expected = [0.2, 0.4, 0.2, 0.2];
        for (value, want) in row.iter().zip(expected) {
            assert!((value - want).abs() < 1e-7, "{row:?}");
        }
        let row = Activation::Softmax.apply_row(&[1000.0, 1000.0, -1000.0]);
        assert_eq!(row, [0.5, 0.5, 0.0]);
        assert!(Activation::Softmax.apply_row(&[]).is_empty());
    }

    #[test]
    fn crb_row_is_clamped_to_the_unit_interval() {
        let row = Activation::Crb.apply_row(&[-0.5, 0.25, 1.5, 0.0, 1.0]);
        assert_eq!(row, [0.0, 0.25, 1.0, 0.0, 1.0]);
    }
}
