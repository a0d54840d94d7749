//! Benchmark analysis of pagecast recordings, outside the service library: frame timing (the
//! clock page's painted time, decoded from the video) and A/V sync (the flash-and-beep page).
//!
//! This crate runs no programs. For each measurement it says what to ask ffprobe and ffmpeg for
//! (their arguments) and reads what they answer (text, raw frames, raw samples); `pagecast
//! analyze` runs them through pagecast's process core and hands the output here. Everything in
//! it is therefore a pure function, unit-tested without a video.

#![warn(missing_docs, rust_2018_idioms)]

pub mod av_sync;
pub mod decode;
pub mod frame_clock;
