//! Tasks: the status machine, the task record, and their Redis store (every transition one
//! atomic script; queues are Redis Streams with consumer groups; leases with fencing tokens).

pub(crate) mod model;
pub(crate) mod moves;
pub(crate) mod names;
pub(crate) mod prestart;
pub(crate) mod status;
pub mod store;
pub mod wire;

pub use model::*;
pub use status::{ActionEffect, Status, action_effect, can_transition};
