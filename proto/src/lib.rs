//! Wire protocol of darts-prime: the generated tonic/prost code of `proto/prime.proto`, the
//! protocol version, and conversions between wire messages and `prime-core` types.

pub mod archive;
pub mod auth;
pub mod client;
pub mod convert;
pub mod paging;
pub mod results;
pub mod verify;
pub mod version;

/// The generated messages, client and server of package `prime.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("prime.v1");
}

pub use version::{check_protocol, with_protocol, PROTOCOL_HEADER, PROTOCOL_VERSION};
