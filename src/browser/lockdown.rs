//! What a recorded page may not do: download files, open file choosers, pop-ups or new windows,
//! ask for permissions, print (the preview would cover the page; printing is also off in the
//! profile, see `launch`), or stall itself behind a JavaScript dialog. Pages are untrusted input;
//! none of this has a place in a recording, and a dialog would freeze the page's main thread.

use chromiumoxide::cdp::browser_protocol::browser::{
    SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    DialogType, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
    SetInterceptFileChooserDialogParams,
};
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::BrowserError;

/// Chromium flags of the lockdown: new windows and permission prompts are refused.
pub(super) const FLAGS: &[&str] = &["--block-new-web-contents", "--deny-permission-prompts"];

/// Page script of the lockdown, run before any of the page's own: `window.open` opens nothing
/// and `window.print` prints nothing.
pub(super) const SCRIPT: &str = r#"(() => {
  Object.defineProperty(window, "open", { value: () => null, writable: false, configurable: false });
  Object.defineProperty(window, "print", { value: () => undefined, writable: false, configurable: false });
})();"#;

/// Denies downloads, swallows file choosers and answers every JavaScript dialog (`alert`,
/// `confirm`, `prompt` are dismissed; `beforeunload` is accepted, so reloads go through). The
/// returned task answers dialogs until it is aborted.
pub(super) async fn apply(browser: &Browser, page: &Page) -> Result<JoinHandle<()>, BrowserError> {
    let cdp = |e: chromiumoxide::error::CdpError| BrowserError::Cdp(e.to_string());
    browser
        .execute(SetDownloadBehaviorParams::new(
            SetDownloadBehaviorBehavior::Deny,
        ))
        .await
        .map_err(cdp)?;
    page.execute(SetInterceptFileChooserDialogParams::new(true))
        .await
        .map_err(cdp)?;
    let mut dialogs = page
        .event_listener::<EventJavascriptDialogOpening>()
        .await
        .map_err(cdp)?;
    let page = page.clone();
    Ok(tokio::spawn(async move {
        while let Some(dialog) = dialogs.next().await {
            let accept = matches!(dialog.r#type, DialogType::Beforeunload);
            tracing::debug!(kind = ?dialog.r#type, accept, "answering a JavaScript dialog");
            let _ = page
                .execute(HandleJavaScriptDialogParams::new(accept))
                .await;
        }
    }))
}
