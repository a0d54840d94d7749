//! The page-side controls: `window.startRecord()`, `pauseRecord()`, `resumeRecord()`,
//! `refreshPage()` and `stopRecord()`.
//!
//! One CDP binding (`__pagecastHook`) carries every call to pagecast; a script registered to run
//! before any page script on every new document defines the five functions on top of it, so the
//! controls exist again after every navigation or reload, before the page's own scripts run.
//!
//! Each control returns a Promise, as the source product's did (its controls were exposed
//! functions, whose Promise settles when the action returns): it resolves once the action has
//! taken effect and rejects with an `Error` whose `code` is a stable error code (its message
//! starts with it) if the action cannot take effect. The source product's controls also took an
//! optional callback, called with no argument on success and with the error on failure; so do
//! these. Each call carries an id; pagecast answers it by calling `__pagecastSettle(id, code,
//! message)` in the page context that made the call (see [`settle_expression`]).

use serde::Deserialize;

use crate::command::{Command, Sender};

/// Name of the CDP binding the page-side functions call.
pub(super) const BINDING_NAME: &str = "__pagecastHook";
/// Name of the page function pagecast calls to settle a control's Promise.
pub(super) const SETTLE_NAME: &str = "__pagecastSettle";

/// A call of a page-side control, with the page's clock at the moment of the call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PageHookCall {
    /// Which control.
    pub(crate) hook: Command,
    /// The page's `Date.now()` at the call, in seconds since the epoch, if it sent a sane one.
    pub(crate) page_time: Option<f64>,
    /// The call's id, to settle its Promise with (absent in calls that expect no answer).
    pub(crate) id: Option<u64>,
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    ts: Option<f64>,
    id: Option<u64>,
}

impl PageHookCall {
    /// Parses a binding payload; `None` for anything that is not one of ours.
    pub(crate) fn parse(payload: &str) -> Option<Self> {
        let p: Payload = serde_json::from_str(payload).ok()?;
        let hook = Command::parse_from(Sender::Page, &p.action)?;
        let page_time =
            p.ts.filter(|t| t.is_finite() && *t > 0.0)
                .map(|ms| ms / 1000.0);
        Some(Self {
            hook,
            page_time,
            id: p.id,
        })
    }
}

/// Where to answer a control's call: the page context that made it, and the call's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HookReply {
    /// The calling page context (a reload replaces it; an answer to a gone context is lost).
    pub(crate) context: chromiumoxide::cdp::js_protocol::runtime::ExecutionContextId,
    /// The call's id.
    pub(crate) id: u64,
}

/// How a control's call ended: taken effect, or refused with a stable code and a message.
pub(crate) type HookOutcome = Result<(), (crate::error::ErrorCode, String)>;

/// The expression that settles call `id` in the page.
pub(super) fn settle_expression(id: u64, outcome: &HookOutcome) -> String {
    let (code, message) = match outcome {
        Ok(()) => ("null".to_string(), "null".to_string()),
        Err((code, message)) => (
            serde_json::Value::from(code.as_str()).to_string(),
            serde_json::Value::from(message.as_str()).to_string(),
        ),
    };
    format!(
        "(() => {{ const f = window.{SETTLE_NAME}; if (typeof f === \"function\") f({id}, {code}, \
         {message}); }})()"
    )
}

/// The script that defines the page-side controls; runs before any page script.
pub(super) fn bootstrap_script() -> String {
    format!(
        r#"(() => {{
  const binding = "{BINDING_NAME}";
  const pending = new Map();
  let next = 1;
  Object.defineProperty(window, "{SETTLE_NAME}", {{
    value: (id, code, message) => {{
      const p = pending.get(id);
      if (!p) {{ return; }}
      pending.delete(id);
      if (code === null || code === undefined) {{ p.resolve(); return; }}
      const error = new Error(code + ": " + message);
      error.code = code;
      p.reject(error);
    }},
    writable: false, configurable: false, enumerable: false,
  }});
  const call = (action, callback) => {{
    const id = next++;
    const promise = new Promise((resolve, reject) => {{
      const fn = window[binding];
      if (typeof fn !== "function") {{
        const error = new Error("InternalError: pagecast's page controls are not connected");
        error.code = "InternalError";
        reject(error);
        return;
      }}
      pending.set(id, {{ resolve, reject }});
      fn(JSON.stringify({{ action, ts: Date.now(), id }}));
    }});
    if (typeof callback === "function") {{
      promise.then(() => callback(), (error) => callback(error));
    }}
    return promise;
  }};
  const controls = {{ startRecord: "{start}", pauseRecord: "{pause}", resumeRecord: "{resume}",
                      refreshPage: "{refresh}", stopRecord: "{stop}" }};
  for (const [name, action] of Object.entries(controls)) {{
    Object.defineProperty(window, name, {{
      value: function (callback) {{ return call(action, callback); }},
      writable: true, configurable: true,
    }});
  }}
}})();"#,
        start = Command::Start.as_str(),
        pause = Command::Pause.as_str(),
        resume = Command::Resume.as_str(),
        refresh = Command::Refresh.as_str(),
        stop = Command::Stop.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_payloads() {
        let c = PageHookCall::parse(r#"{"action":"pause","ts":1700000000123,"id":7}"#).unwrap();
        assert_eq!(c.hook, Command::Pause);
        assert_eq!(c.id, Some(7));
        assert!((c.page_time.unwrap() - 1_700_000_000.123).abs() < 1e-6);
        let c = PageHookCall::parse(r#"{"action":"stop"}"#).unwrap();
        assert_eq!((c.page_time, c.id), (None, None));
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
        assert!(s.contains(SETTLE_NAME));
    }

    #[test]
    fn settle_expressions_quote_what_they_carry() {
        assert_eq!(
            settle_expression(3, &Ok(())),
            "(() => { const f = window.__pagecastSettle; if (typeof f === \"function\") f(3, \
             null, null); })()"
        );
        let e = settle_expression(
            4,
            &Err((
                crate::error::ErrorCode::InvalidState,
                "the recording is \"ending\"\n</script>".into(),
            )),
        );
        assert!(
            e.contains(r#"f(4, "InvalidState", "the recording is \"ending\"\n</script>")"#),
            "{e}"
        );
    }
}
