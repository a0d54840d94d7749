//! The browser adapter: Debian's Chromium, launched and owned by pagecast, driven over CDP with
//! chromiumoxide. Knows nothing about tasks or encoding.

mod display;
mod hooks;
mod launch;
mod lockdown;
pub(crate) mod memory;
mod session;

pub(crate) use display::{DisplayServerChoice, DisplayServers, VirtualDisplay};
pub(crate) use hooks::{HookReply, PageHookCall};
pub(crate) use launch::{BrowserSettings, SandboxMode};
pub(crate) use session::{BrowserSession, ScreencastSettings};

use crate::error::{ErrorCode, HasErrorCode};
use crate::process::ProcessError;

/// Errors of the browser adapter.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The Chromium binary is missing or could not be spawned.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Chromium started but exited or never offered its DevTools endpoint.
    #[error("Chromium failed to start: {reason}{}", if .tail.is_empty() { String::new() } else { format!(" (Chromium said: {})", .tail) })]
    Launch {
        /// What went wrong.
        reason: String,
        /// Chromium's stderr tail.
        tail: String,
    },
    /// The virtual display (Xorg or Xvfb) for a headful browser could not start.
    #[error("the virtual display failed to start: {reason}{}", if .tail.is_empty() { String::new() } else { format!(" (the X server said: {})", .tail) })]
    Display {
        /// What went wrong.
        reason: String,
        /// The X server's stderr tail.
        tail: String,
    },
    /// A DevTools command failed.
    #[error("browser command failed: {0}")]
    Cdp(String),
    /// The page could not be loaded.
    #[error(
        "could not load {}: {}",
        crate::redact::url(url),
        crate::redact::text(reason)
    )]
    Navigation {
        /// The URL.
        url: String,
        /// Chromium's reason (e.g. net::ERR_NAME_NOT_RESOLVED) or the HTTP status.
        reason: String,
    },
}

impl HasErrorCode for BrowserError {
    fn code(&self) -> ErrorCode {
        match self {
            BrowserError::Navigation { .. } => ErrorCode::PageLoadFailed,
            BrowserError::Process(_)
            | BrowserError::Launch { .. }
            | BrowserError::Display { .. }
            | BrowserError::Cdp(_) => ErrorCode::BrowserFailed,
        }
    }
}

impl From<chromiumoxide::error::CdpError> for BrowserError {
    fn from(e: chromiumoxide::error::CdpError) -> Self {
        BrowserError::Cdp(e.to_string())
    }
}
