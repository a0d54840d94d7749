//! Usage errors that name what the user actually set.
//!
//! clap reports a bad value as `invalid value '99' for '--crf <CRF>'` even when the value came
//! from `PAGECAST_X264_CRF` and no `--crf` was typed, which sends the user looking for a flag
//! they never gave. [`blame_env`] rewrites such an error to name the environment variable.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The environment variable behind a flag (`--crf` → `PAGECAST_X264_CRF`), searched through
/// every subcommand.
fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
    let here = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    here.or_else(|| cmd.get_subcommands().find_map(|s| env_of(s, long)))
}

/// Whether `--long` (as `--long value` or `--long=value`) is among the command-line words.
fn typed(argv: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    argv.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

/// The long name in clap's rendering of an argument (`--crf <CRF>` → `crf`).
fn long_name(rendered: &str) -> Option<&str> {
    rendered
        .strip_prefix("--")
        .map(|rest| rest.split([' ', '=']).next().unwrap_or(rest))
        .filter(|name| !name.is_empty())
}

/// The message for a bad value that came from the environment, naming the variable; `None`
/// when the error is of another kind or the value was typed on the command line.
pub(crate) fn blame_env(
    err: &clap::Error,
    cmd: &clap::Command,
    argv: &[OsString],
) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(rendered)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = long_name(rendered)?;
    if typed(argv, long) {
        return None;
    }
    let var = env_of(cmd, long)?;
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let named = first.replacen(
        &format!("'{rendered}'"),
        &format!("{var} (the environment variable of --{long})"),
        1,
    );
    Some(named.trim_start_matches("error: ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("pagecast").subcommand(
            Command::new("record").arg(
                Arg::new("crf")
                    .long("crf")
                    .env("PAGECAST_X264_CRF_TEST_ONLY")
                    .value_parser(clap::value_parser!(u8).range(0..=51)),
            ),
        )
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        let words = argv(&["pagecast", "record"]);
        // SAFETY: unit tests of this module are the only users of this variable.
        unsafe { std::env::set_var("PAGECAST_X264_CRF_TEST_ONLY", "99") };
        let err = cmd().try_get_matches_from(&words).unwrap_err();
        unsafe { std::env::remove_var("PAGECAST_X264_CRF_TEST_ONLY") };
        let msg = blame_env(&err, &cmd(), &words).expect("named");
        assert!(msg.contains("PAGECAST_X264_CRF_TEST_ONLY"), "{msg}");
        assert!(msg.contains("'99'"), "{msg}");
        assert!(!msg.contains("'--crf"), "{msg}");
    }

    #[test]
    fn a_bad_value_typed_on_the_command_line_keeps_clap_s_message() {
        for words in [
            argv(&["pagecast", "record", "--crf", "99"]),
            argv(&["pagecast", "record", "--crf=99"]),
        ] {
            let err = cmd().try_get_matches_from(&words).unwrap_err();
            assert_eq!(blame_env(&err, &cmd(), &words), None);
        }
    }

    #[test]
    fn long_names_are_read_from_clap_s_rendering() {
        assert_eq!(long_name("--crf <CRF>"), Some("crf"));
        assert_eq!(long_name("--capture=<CAPTURE>"), Some("capture"));
        assert_eq!(long_name("<URL>"), None);
    }
}
