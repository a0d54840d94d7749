//! pagecast records web pages as video: headless Chromium paints the page, its screencast frames
//! are paced to a constant frame rate and encoded by ffmpeg into MP4 or HLS.
//!
//! Layers, each depending only on the ones below it:
//! - [`recording`]: the engine (one page → recorded segments), driven by the CLI and, later, the
//!   task pipeline;
//! - adapters: [`browser`] (Chromium over CDP), [`media`] (ffmpeg/ffprobe), [`audio`] (the page's
//!   sound through PulseAudio), [`process`] (the one subprocess core);
//! - [`error`]: the table of stable error codes.
//!
//! Benchmark analysis (`pagecast analyze`) is not part of the library: it is the
//! `pagecast-analysis` crate of the workspace (crates/pagecast-analysis).

#![warn(missing_docs, rust_2018_idioms)]

pub mod api;
pub mod audio;
pub mod browser;
pub mod clock;
pub mod command;
pub mod config;
pub mod error;
pub mod fonts;
pub(crate) mod log_limit;
pub mod media;
pub mod ops;
pub mod pipeline;
pub mod process;
pub mod recording;
pub mod redact;
pub(crate) mod runtime_dir;
pub mod storage;
pub mod task;
pub mod tls;
pub mod url_guard;
pub(crate) mod workdir;
