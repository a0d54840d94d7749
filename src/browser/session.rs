//! One browser with one page, attached over CDP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::{EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, EventScreencastFrame, NavigateParams, ReloadParams,
    ScreencastFrameAckParams, StartScreencastFormat, StartScreencastParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::listeners::EventStream;
use chromiumoxide::{Browser, Page};
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;

use super::BrowserError;
use super::hooks::{BINDING_NAME, HookOutcome, HookReply, bootstrap_script, settle_expression};
use super::launch::{BrowserSettings, ChromiumProcess};

/// Screencast parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScreencastSettings {
    /// JPEG quality 0..=100.
    pub(crate) jpeg_quality: u8,
    /// Deliver every n-th painted frame.
    pub(crate) every_nth_frame: u32,
    /// Largest frame size delivered.
    pub(crate) max_width: u32,
    /// Largest frame size delivered.
    pub(crate) max_height: u32,
}

fn screencast_params(s: ScreencastSettings) -> StartScreencastParams {
    StartScreencastParams::builder()
        .format(StartScreencastFormat::Jpeg)
        .quality(i64::from(s.jpeg_quality))
        .every_nth_frame(i64::from(s.every_nth_frame.max(1)))
        .max_width(i64::from(s.max_width))
        .max_height(i64::from(s.max_height))
        .build()
}

/// A running Chromium with one page. Dropping it kills the browser.
pub(crate) struct BrowserSession {
    // Field order matters for drop: CDP objects first, the process last.
    page: Page,
    browser: Browser,
    handler: JoinHandle<()>,
    /// Answers the page's JavaScript dialogs (see `lockdown`).
    dialogs: Option<JoinHandle<()>>,
    process: ChromiumProcess,
}

impl BrowserSession {
    /// Launches Chromium with a fresh profile in `profile_dir` and opens a blank page sized
    /// exactly to the settings' viewport.
    pub(crate) async fn open(
        settings: &BrowserSettings,
        profile_dir: &Path,
    ) -> Result<Self, BrowserError> {
        let mut process = ChromiumProcess::launch(settings, profile_dir).await?;
        let config = HandlerConfig {
            // A TLS error on the recorded page must fail the task, not be waved through.
            ignore_https_errors: false,
            viewport: Some(Viewport {
                width: settings.width,
                height: settings.height,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: settings.width >= settings.height,
                has_touch: false,
            }),
            request_timeout: Duration::from_secs(30),
            ..HandlerConfig::default()
        };
        let attach = async {
            let (browser, mut handler) =
                Browser::connect_with_config(process.ws_url().to_string(), config).await?;
            let handler = tokio::spawn(async move {
                while let Some(event) = handler.next().await {
                    if event.is_err() {
                        break;
                    }
                }
            });
            let page = browser.new_page("about:blank").await?;
            close_other_tabs(&browser, &page).await;
            Ok::<_, chromiumoxide::error::CdpError>((browser, handler, page))
        };
        match tokio::time::timeout(settings.launch_timeout, attach).await {
            Ok(Ok((browser, handler, page))) => {
                let mut session = Self {
                    page,
                    browser,
                    handler,
                    dialogs: None,
                    process,
                };
                session.dialogs =
                    Some(super::lockdown::apply(&session.browser, &session.page).await?);
                Ok(session)
            }
            Ok(Err(e)) => {
                let tail = process.stderr_tail();
                process.kill().await;
                Err(BrowserError::Launch {
                    reason: format!("could not attach over DevTools: {e}"),
                    tail,
                })
            }
            Err(_) => {
                let tail = process.stderr_tail();
                process.kill().await;
                Err(BrowserError::Launch {
                    reason: "attaching over DevTools timed out".into(),
                    tail,
                })
            }
        }
    }

    /// Installs the page-side controls for every document from now on and returns the stream of
    /// their calls. Call before navigating.
    pub(crate) async fn install_hooks(
        &self,
    ) -> Result<EventStream<EventBindingCalled>, BrowserError> {
        let calls = self.page.event_listener::<EventBindingCalled>().await?;
        self.page
            .execute(AddBindingParams::new(BINDING_NAME))
            .await?;
        self.page
            .execute(AddScriptToEvaluateOnNewDocumentParams::new(
                bootstrap_script(),
            ))
            .await?;
        self.page
            .execute(AddScriptToEvaluateOnNewDocumentParams::new(
                super::lockdown::SCRIPT,
            ))
            .await?;
        Ok(calls)
    }

    /// Events fired when the page's renderer crashes (the Inspector domain reports them).
    pub(crate) async fn crash_events(
        &self,
    ) -> Result<EventStream<EventTargetCrashed>, BrowserError> {
        let events = self.page.event_listener::<EventTargetCrashed>().await?;
        self.page
            .execute(chromiumoxide::cdp::browser_protocol::inspector::EnableParams::default())
            .await?;
        Ok(events)
    }

    /// Reopens `url` after a renderer crash (and restarts the screencast, if one is given) in the
    /// background; the handle finishes once the page is navigating again.
    pub(crate) fn recover(
        &self,
        url: &str,
        screencast: Option<ScreencastSettings>,
    ) -> tokio::task::JoinHandle<()> {
        let page = self.page.clone();
        let url = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = page.execute(NavigateParams::new(url)).await {
                tracing::warn!(error = %e, "reopening the page after a crash failed");
            }
            if let Some(s) = screencast {
                let _ = page.execute(screencast_params(s)).await;
            }
        })
    }

    /// Navigates to `url` and waits for it to load; a network error, a TLS error, an HTTP error
    /// status or the timeout is a [`BrowserError::Navigation`].
    pub(crate) async fn navigate(&self, url: &str, limit: Duration) -> Result<(), BrowserError> {
        let nav_error = |reason: String| BrowserError::Navigation {
            url: url.to_string(),
            reason,
        };
        let go = async {
            // The document's own response, told apart from its subresources and iframes by the
            // loader the navigation started: chromiumoxide's "navigation response" is whatever
            // request of the main frame finished last, so a broken image or a refused fetch
            // made a page that loaded fine count as failed.
            let mut responses = self.page.event_listener::<EventResponseReceived>().await?;
            let res = self.page.execute(NavigateParams::new(url)).await?;
            if let Some(err) = res.result.error_text.clone() {
                return Ok(Err(err));
            }
            let loader = res.result.loader_id.clone();
            self.page.wait_for_navigation_response().await?;
            // The response event comes before the load event that ended the wait, so it is
            // already queued.
            let mut status = None;
            while let Some(Some(ev)) = responses.next().now_or_never() {
                if ev.r#type == ResourceType::Document && Some(&ev.loader_id) == loader.as_ref() {
                    status = Some((ev.response.status, ev.response.status_text.clone()));
                }
            }
            Ok::<_, chromiumoxide::error::CdpError>(match status {
                Some((s, text)) if s >= 400 => match text.strip_prefix("pagecast: ") {
                    // The egress guard's answer: its reason says what was refused and why.
                    Some(why) => Err(format!(
                        "HTTP status {s} from pagecast's egress guard ({why})"
                    )),
                    None => Err(format!("HTTP status {s}")),
                },
                _ => Ok(()),
            })
        };
        match tokio::time::timeout(limit, go).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(nav_error(reason)),
            Ok(Err(e)) => Err(nav_error(e.to_string())),
            Err(_) => Err(nav_error(format!(
                "the page did not load within {} s",
                limit.as_secs()
            ))),
        }
    }

    /// Starts the screencast and returns the frame stream. Every frame must be acknowledged with
    /// [`BrowserSession::ack_frame_on`] or Chromium stops sending.
    pub(crate) async fn start_screencast(
        &self,
        s: ScreencastSettings,
    ) -> Result<EventStream<EventScreencastFrame>, BrowserError> {
        let frames = self.page.event_listener::<EventScreencastFrame>().await?;
        self.page.execute(screencast_params(s)).await?;
        Ok(frames)
    }

    /// Acknowledges a frame of `page`'s screencast without waiting for the round trip.
    pub(crate) fn ack_frame_on(page: &Page, session_id: i64) {
        let page = page.clone();
        tokio::spawn(async move {
            let _ = page
                .execute(ScreencastFrameAckParams::new(session_id))
                .await;
        });
    }

    /// Whether the page's main thread answers a trivial evaluation within `limit`. A closed
    /// connection answers (with an error) at once, so only a busy main thread reads as `false`.
    pub(crate) async fn responds_within(page: &Page, limit: Duration) -> bool {
        use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
        tokio::time::timeout(limit, page.execute(EvaluateParams::new("0")))
            .await
            .is_ok()
    }

    /// Crashes the page's renderer (handled off its main thread, so it works on a hung page);
    /// the crash event then reopens the page.
    pub(crate) fn crash_renderer(&self) {
        let page = self.page.clone();
        tokio::spawn(async move {
            use chromiumoxide::cdp::browser_protocol::page::CrashParams;
            if let Err(e) = page.execute(CrashParams::default()).await {
                tracing::debug!(error = %e, "Page.crash answered with an error (expected: the renderer is gone)");
            }
        });
    }

    /// Waits (at most `limit`) until the loaded page has been painted and presented: two
    /// animation frames after the load. A page that never paints just costs the wait.
    pub(crate) async fn wait_for_paint(&self, limit: Duration) {
        use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
        let Ok(params) = EvaluateParams::builder()
            .expression(
                "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(0))))",
            )
            .await_promise(true)
            .build()
        else {
            return;
        };
        let _ = tokio::time::timeout(limit, self.page.execute(params)).await;
    }

    /// Settles the Promise of a page control's call (in the page context that made it), without
    /// waiting. An answer to a context that is gone (the page reloaded) is lost, harmlessly.
    pub(crate) fn answer_hook(&self, reply: Option<HookReply>, outcome: HookOutcome) {
        let Some(reply) = reply else {
            return;
        };
        let page = self.page.clone();
        tokio::spawn(async move { settle(&page, reply, &outcome).await });
    }

    /// Settles a `refreshPage()` call (if there is one to answer), then reloads the page: its
    /// Promise resolves before the page goes away.
    pub(crate) fn answer_then_reload(&self, reply: Option<HookReply>) {
        let page = self.page.clone();
        tokio::spawn(async move {
            if let Some(reply) = reply {
                settle(&page, reply, &Ok(())).await;
            }
            let _ = page.execute(ReloadParams::default()).await;
        });
    }

    /// The page's current URL (after redirects).
    pub(crate) async fn current_url(&self) -> Option<String> {
        self.page.url().await.ok().flatten()
    }

    /// The browser's main process id, which is also its helpers' process group.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// How many of the browser's processes ran out of memory so far.
    pub(crate) fn memory_failures(&self) -> u64 {
        self.process.memory_failures()
    }

    /// A handle to the page (for evaluation in tests and tools).
    pub(crate) fn page(&self) -> Arc<Page> {
        Arc::new(self.page.clone())
    }

    /// Closes the browser: politely first, then by force; always reaps it.
    pub(crate) async fn close(mut self) {
        if let Some(d) = self.dialogs.take() {
            d.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.browser.close()).await;
        self.handler.abort();
        self.process.kill().await;
    }
}

async fn settle(page: &Page, reply: HookReply, outcome: &HookOutcome) {
    use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
    let Ok(params) = EvaluateParams::builder()
        .expression(settle_expression(reply.id, outcome))
        .context_id(reply.context)
        .build()
    else {
        return;
    };
    if let Err(e) = page.execute(params).await {
        tracing::debug!(error = %e, "answering a page control failed (the page may have reloaded)");
    }
}

/// Closes the tab Chromium opened at start: the recording uses its own, and the first one's
/// renderer would otherwise stay for the whole recording (about 65 MB of memory). Best effort.
async fn close_other_tabs(browser: &Browser, ours: &Page) {
    use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, GetTargetsParams};
    let Ok(targets) = browser.execute(GetTargetsParams::default()).await else {
        return;
    };
    for t in &targets.result.target_infos {
        if t.r#type == "page"
            && &t.target_id != ours.target_id()
            && let Err(e) = browser
                .execute(CloseTargetParams::new(t.target_id.clone()))
                .await
        {
            tracing::debug!(error = %e, "closing the start tab failed");
        }
    }
}
