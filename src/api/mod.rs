//! The HTTP API: Action dispatch, validation of each Action's Data, auth, request ids, signed
//! result URLs and the server that runs it all.

pub mod action;
pub mod compat;
pub mod error;
pub(crate) mod files;
pub mod guard;
pub mod layers;
pub mod routes;
pub mod server;
pub mod settings;
pub mod signing_key;
pub mod start;
