//! The table of stable error codes, shared by the HTTP API, task results and the CLI.
//!
//! Every failure pagecast reports carries one [`ErrorCode`]: a stable string a client can match
//! on, the HTTP status the API answers with, and whether the caller or pagecast is at fault.

use std::fmt;

/// Who caused an error: decides whether a retry can help and how it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input: the request, the URL or the recorded page. Retrying the same thing fails again.
    Client,
    /// A broken dependency or a bug on pagecast's side. May succeed later.
    System,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident => $status:expr, $fault:ident; )*) => {
        /// Stable error codes. The string form (`as_str`) is part of the wire contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl ErrorCode {
            /// Every code, in table order (used by docs and spec checks).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The wire string, e.g. `"InvalidParam"`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$name => stringify!($name), )* }
            }

            /// The HTTP status the API answers with for this code.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$name => $status, )* }
            }

            /// Whether the caller or pagecast is at fault.
            pub fn fault(self) -> Fault {
                match self { $( ErrorCode::$name => Fault::$fault, )* }
            }
        }
    };
}

error_codes! {
    /// A parameter has a wrong type, is out of range or malformed.
    InvalidParam => 400, Client;
    /// A required parameter is absent.
    MissingParam => 400, Client;
    /// The `Action` is not one pagecast knows.
    UnsupportedAction => 400, Client;
    /// The body is not valid JSON or not an object.
    MalformedRequest => 400, Client;
    /// No or wrong API token.
    Unauthorized => 401, Client;
    /// The request's `Origin` is not one of `PAGECAST_CORS_ORIGINS` (a cross-site request).
    OriginNotAllowed => 403, Client;
    /// A result URL (`/files/...`) is unsigned, expired, or its path or expiry was altered.
    InvalidSignature => 403, Client;
    /// The TaskID is unknown.
    TaskNotFound => 404, Client;
    /// No such endpoint, or no such result file.
    ResourceNotFound => 404, Client;
    /// The HTTP method is not served at this path.
    MethodNotAllowed => 405, Client;
    /// The request body did not arrive within `PAGECAST_BODY_READ_TIMEOUT`.
    RequestTimeout => 408, Client;
    /// The action is not allowed in the task's current status.
    InvalidState => 409, Client;
    /// `InvalidState` under the name web-record uses (`PAGECAST_COMPAT=web-record` only).
    InvalidStatus => 409, Client;
    /// The request body exceeds the configured limit.
    PayloadTooLarge => 413, Client;
    /// The request body is not declared `Content-Type: application/json`.
    UnsupportedMediaType => 415, Client;
    /// The `Range` asked for lies outside the file.
    RangeNotSatisfiable => 416, Client;
    /// Capacity or queue limits are reached; retry later.
    LimitExceeded => 429, Client;
    /// A dependency (Redis, storage) is unavailable; retry later.
    ServiceUnavailable => 503, System;
    /// A bug in pagecast.
    InternalError => 500, System;
    /// `Output` names an endpoint or bucket the server does not allow tasks to use.
    StorageNotAllowed => 400, Client;
    /// A task in progress will write where the new task's result would go.
    OutputInUse => 409, Client;
    /// `Output.Vod`: delivery to Tencent's VOD service is not available (use `Output.Cos` or
    /// `Output.S3`).
    UnsupportedOutput => 400, Client;
    /// Task result: the task was stopped (Stop, Cancel, or the page's `stopRecord()`) before its
    /// recording began; nothing was recorded.
    Canceled => 409, Client;
    /// The page could not be loaded (DNS, connection, TLS, HTTP error status, timeout).
    PageLoadFailed => 400, Client;
    /// A ManualStart page never called `window.startRecord()` before the start deadline.
    StartTimeout => 400, Client;
    /// The page's renderer crashed, or the page hung, more often than the restart budget allows.
    PageCrashed => 400, Client;
    /// The page used more memory than a recording may (`PAGECAST_PAGE_MEMORY_MB`); what was
    /// recorded until then is delivered.
    PageOutOfMemory => 400, Client;
    /// The browser could not be started or died (missing binary, launch failure).
    BrowserFailed => 500, System;
    /// Capturing or encoding the recording failed.
    RecordFailed => 500, System;
    /// The page's sound could not be captured (PulseAudio missing or not working).
    AudioFailed => 500, System;
    /// Turning the recorded media into the requested MP4/HLS failed.
    TranscodeFailed => 500, System;
    /// Uploading the result to storage failed.
    UploadFailed => 500, System;
    /// The callback receiver did not accept the result within the retry budget.
    CallbackFailed => 500, System;
    /// The work disk filled up: the recording was ended early so what it recorded could still
    /// be delivered (the result lists it).
    DiskFull => 500, System;
    /// The result lacks the start of the recording: the machine holding its earlier media was
    /// lost and the recording was continued on another one (the gap is in `Stats.Gaps`).
    RecordIncomplete => 500, System;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anything that can say which stable code it maps to.
pub trait HasErrorCode {
    /// The stable code of this error.
    fn code(&self) -> ErrorCode;
}

/// A setting that cannot work, found at start-up (before anything runs).
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting}: {why}")]
pub struct ConfigError {
    /// The environment variable (and flag) at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub why: String,
}

pub(crate) fn invalid(setting: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_statuses_match_fault() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let status = code.http_status();
            assert!((400..600).contains(&status), "{code}: {status}");
            if code.fault() == Fault::System {
                assert!(
                    status >= 500,
                    "{code} is a system fault but answers {status}"
                );
            }
        }
        assert_eq!(ErrorCode::InvalidParam.as_str(), "InvalidParam");
        assert_eq!(ErrorCode::TaskNotFound.http_status(), 404);
    }
}
