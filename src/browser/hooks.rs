//! The page-side controls: `window.startRecord()`, `pauseRecord()`, `resumeRecord()`,
//! `refreshPage()` and `stopRecord()`.
//!
//! One CDP binding (`__pagecastHook`) carries every call to pagecast; a script registered to run
//! before any page script on every new document defines the five functions on top of it, so the
//! controls exist again after every navigation or reload.

use serde::Deserialize;

/// Name of the CDP binding the page-side functions call.
pub const BINDING_NAME: &str = "__pagecastHook";

/// One of the page-side controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageHook {
    /// `window.startRecord()`
    Start,
    /// `window.pauseRecord()`
    Pause,
    /// `window.resumeRecord()`
    Resume,
    /// `window.refreshPage()`
    Refresh,
    /// `window.stopRecord()`
    Stop,
}

/// A call of a page-side control, with the page's clock at the moment of the call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageHookCall {
    /// Which control.
    pub hook: PageHook,
    /// The page's `Date.now()` at the call, in seconds since the epoch, if it sent a sane one.
    pub page_time: Option<f64>,
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    ts: Option<f64>,
}

impl PageHookCall {
    /// Parses a binding payload; `None` for anything that is not one of ours.
    pub fn parse(payload: &str) -> Option<Self> {
        let p: Payload = serde_json::from_str(payload).ok()?;
        let hook = match p.action.as_str() {
            "start" => PageHook::Start,
            "pause" => PageHook::Pause,
            "resume" => PageHook::Resume,
            "refresh" => PageHook::Refresh,
            "stop" => PageHook::Stop,
            _ => return None,
        };
        let page_time =
            p.ts.filter(|t| t.is_finite() && *t > 0.0)
                .map(|ms| ms / 1000.0);
        Some(Self { hook, page_time })
    }
}

/// The script that defines the page-side controls; runs before any page script.
pub fn bootstrap_script() -> String {
    format!(
        r#"(() => {{
  const binding = "{BINDING_NAME}";
  const call = (action) => {{
    const fn = window[binding];
    if (typeof fn === "function") {{ fn(JSON.stringify({{ action, ts: Date.now() }})); }}
  }};
  const controls = {{ startRecord: "start", pauseRecord: "pause", resumeRecord: "resume",
                      refreshPage: "refresh", stopRecord: "stop" }};
  for (const [name, action] of Object.entries(controls)) {{
    Object.defineProperty(window, name, {{ value: () => call(action), writable: true, configurable: true }});
  }}
}})();"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_payloads() {
        let c = PageHookCall::parse(r#"{"action":"pause","ts":1700000000123}"#).unwrap();
        assert_eq!(c.hook, PageHook::Pause);
        assert!((c.page_time.unwrap() - 1_700_000_000.123).abs() < 1e-6);
        assert_eq!(
            PageHookCall::parse(r#"{"action":"stop"}"#)
                .unwrap()
                .page_time,
            None
        );
        assert_eq!(PageHookCall::parse(r#"{"action":"explode"}"#), None);
        assert_eq!(PageHookCall::parse("not json"), None);
        assert_eq!(
            PageHookCall::parse(r#"{"action":"start","ts":-5}"#)
                .unwrap()
                .page_time,
            None
        );
    }

    #[test]
    fn script_defines_every_control() {
        let s = bootstrap_script();
        for name in [
            "startRecord",
            "pauseRecord",
            "resumeRecord",
            "refreshPage",
            "stopRecord",
        ] {
            assert!(s.contains(name), "{name}");
        }
        assert!(s.contains(BINDING_NAME));
    }
}
