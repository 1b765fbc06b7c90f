//! One module per `prime` subcommand.

pub mod bench;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod data;
pub mod eval;
pub mod genotype;
pub mod plot;
pub mod ptb;
pub mod schedule;
pub mod search;
pub mod token;
