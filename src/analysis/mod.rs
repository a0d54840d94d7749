//! Benchmark analysis of recordings: frame timing (the clock page's painted time decoded from the
//! video) and A/V sync (the flash-and-beep page).
pub mod av_sync;
pub mod decode;
pub mod frame_clock;
