//! The Describe response: the task's wire view, rendered by [`crate::task::wire`].

pub use crate::task::wire::{add_snapshots, describe_json};
