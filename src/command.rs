//! The one verb set of a recording: Start, Pause, Resume, Refresh, Stop.
//!
//! The same [`Command`] is given by the HTTP API (and carried to the worker on the task's
//! control stream in Redis), by the page (`window.startRecord()` etc., see `browser::hooks`),
//! and by the owner of a recording (the CLI, the record job); the recording's events name it
//! too. [`Command::as_str`] is its stored form: the control stream's entries, the page hooks'
//! payloads and the recording's events all use it, so it must not change (running tasks and
//! workers of another version during a rolling upgrade read it). [`Command::wire_name`] is the
//! API's Action name. Who may give which command is [`Command::may_send`].

/// A command for a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Begin recording (ManualStart tasks; the page's `startRecord()` does the same).
    Start,
    /// Stop adding content; the browser keeps running.
    Pause,
    /// Continue right after the content before the pause.
    Resume,
    /// Reload the page; recording continues.
    Refresh,
    /// End the recording.
    Stop,
}

/// Who gives a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// The HTTP API, and the task's control stream it writes: a task's start is its creation,
    /// not a command, so never Start.
    Api,
    /// The page, through `window.*Record()` / `refreshPage()`.
    Page,
}

impl Command {
    /// Every command.
    pub(crate) const ALL: [Command; 5] = [
        Command::Start,
        Command::Pause,
        Command::Resume,
        Command::Refresh,
        Command::Stop,
    ];

    /// The stored form (control stream, page hooks, recording events).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Refresh => "refresh",
            Command::Stop => "stop",
        }
    }

    /// Parses the stored form.
    pub(crate) fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Parses the stored form of a command `sender` may give (`None` for any other).
    pub(crate) fn parse_from(sender: Sender, s: &str) -> Option<Command> {
        Command::parse(s).filter(|c| c.may_send(sender))
    }

    /// Whether `sender` may give this command.
    pub(crate) fn may_send(self, sender: Sender) -> bool {
        match sender {
            Sender::Api => self != Command::Start,
            Sender::Page => true,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_is_fixed_and_round_trips() {
        // The control stream in Redis and the page script carry these: they must not change.
        let stored: Vec<_> = Command::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(stored, ["start", "pause", "resume", "refresh", "stop"]);
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::from(c.as_str())
            );
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Command::parse("Pause"), None);
        assert_eq!(Command::parse("explode"), None);
        assert_eq!(Command::parse(""), None);
    }

    #[test]
    fn who_may_send_what() {
        for c in Command::ALL {
            assert!(c.may_send(Sender::Page), "{c}");
            assert_eq!(c.may_send(Sender::Api), c != Command::Start, "{c}");
        }
        // A "start" on the control stream is no command (the API never writes one).
        assert_eq!(Command::parse_from(Sender::Api, "start"), None);
        assert_eq!(
            Command::parse_from(Sender::Api, "stop"),
            Some(Command::Stop)
        );
        assert_eq!(
            Command::parse_from(Sender::Page, "start"),
            Some(Command::Start)
        );
    }
}
