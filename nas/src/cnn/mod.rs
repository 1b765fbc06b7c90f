//! CNN search space: layers, operations, search and evaluation networks.

pub mod eval_cost;
pub mod eval_net;
pub mod layers;
pub mod ops;
pub mod search_net;
