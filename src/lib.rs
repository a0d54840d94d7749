//! pagecast records web pages as video: Chromium paints the page on a private X display, its
//! pictures (captured from the display by default, or Chromium's screencast frames) are paced to
//! a constant frame rate and encoded by ffmpeg into MP4 or HLS, with the page's sound.
//!
//! Layers, each depending only on the ones below it (docs/architecture.md draws them;
//! tests/module_order.rs checks them):
//! - [`api`] (the HTTP Action API) and [`pipeline`] (the worker's stages), side by side;
//! - [`ops`] (health, readiness, doctor), then [`config`] (the settings);
//! - [`task`]: the status machine, the record, its moves, its wire view and its Redis store;
//! - [`delivery`] (result files, result store, signed URLs), then [`storage`];
//! - [`recording`]: the engine (one page → recorded segments);
//! - adapters: [`media`] and [`browser`], then [`audio`], then [`process`] (the one subprocess
//!   core);
//! - leaves: [`clock`], [`command`] (the control verbs), `workdir` (the work directory's
//!   layout), [`error`] (the table of stable error codes), [`secret`], [`metrics`], [`redact`],
//!   [`url_guard`], [`tls`], [`fonts`].
//!
//! Benchmark analysis (`pagecast analyze`) is not part of the library: it is the
//! `pagecast-analysis` crate of the workspace (crates/pagecast-analysis).

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod api;
pub(crate) mod audio;
pub(crate) mod browser;
pub(crate) mod clock;
pub mod command;
pub mod config;
pub mod delivery;
pub(crate) mod egress;
pub mod error;
pub(crate) mod fonts;
pub(crate) mod log_limit;
pub mod media;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod process;
pub mod recording;
pub(crate) mod redact;
pub(crate) mod runtime_dir;
pub(crate) mod secret;
pub mod storage;
pub mod task;
pub mod tls;
pub mod url_guard;
pub(crate) mod workdir;
