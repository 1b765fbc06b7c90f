//! Discrete cell architectures (genotypes): the convolutional cells of the CIFAR searches, the
//! recurrent cell of the Penn Treebank search, their reference text form (one reader for
//! both) and the projection of activated alphas onto them.

mod cnn;
pub mod diagram;
pub mod projection;
mod rnn;
mod text;

pub use cnn::{state_label, Gene, Genotype, GenotypeError, ValidationError};
pub use rnn::{
    rnn_primitives, RnnGene, RnnGenotype, RnnGenotypeError, RnnOp, RnnValidationError,
    UnknownRnnOpError, RNN_CRB_PRIMITIVES, RNN_EDGES, RNN_SEARCH_PRIMITIVES, RNN_STEPS,
};
pub use text::ParseError;
