//! Generated tonic/prost code for the `fleet.v1` wire contract
//! (`proto/fleet/v1/fleet.proto`), and conversions between it and
//! the domain types of `fleet-core`.
//!
//! - [`v1`]: the generated messages, clients and servers.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
//! - [`listing`]: `ListAgentsResponse`, by hand: a node's answer may carry rows it keeps
//!   encoded ([`listing::AgentCopy`]).
//! - [`convert`]: `From`/`TryFrom` impls between `fleet_core` records, health
//!   reports, host statuses and events and their wire messages, with
//!   [`convert::ConvertError`] for wire events that lack a kind or payload.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("fleet.v1");
    pub use crate::listing::ListAgentsResponse;
}

/// The encoded `FileDescriptorSet` of fleet.v1, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fleet_descriptor.bin"));

pub mod convert;
pub mod listing;
