//! Frame-timing benchmark analysis: decoding the clock page's painted time from recorded video.
pub mod decode;
pub mod frame_clock;
