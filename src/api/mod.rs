//! The HTTP API: Action dispatch, validation of each Action's Data, auth, request ids.

pub mod describe;
pub mod error;
pub mod routes;
pub mod start;
