//! What the recorder settings do: each one, given as its flag, reaches the place that applies it
//! (the encoder's command line, the capture settings). End-to-end tests are not needed for these.

use clap::Parser;

use super::RecorderConfig;
use crate::media::encoder::encoder_args;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    rec: RecorderConfig,
}

fn rec(args: &[&str]) -> Result<RecorderConfig, clap::Error> {
    Cli::try_parse_from(std::iter::once("pagecast").chain(args.iter().copied())).map(|c| c.rec)
}

fn encoder_command(r: &RecorderConfig) -> String {
    encoder_args(&r.encoder(), 1280, 720, 30, std::path::Path::new("/w"), 0).join(" ")
}

#[test]
fn x264_preset_and_crf_reach_the_encoder() {
    let defaults = encoder_command(&rec(&[]).unwrap());
    assert!(
        defaults.contains("-c:v libx264 -preset veryfast -rc-lookahead 5 -crf 23 "),
        "{defaults}"
    );
    let r = rec(&["--preset", "slow", "--crf", "30"]).unwrap();
    let command = encoder_command(&r);
    assert!(
        command.contains("-c:v libx264 -preset slow -crf 30 "),
        "{command}"
    );
    assert!(rec(&["--preset", "fastest-ever"]).is_err(), "not a preset");
    assert!(rec(&["--crf", "52"]).is_err(), "CRF is 0-51");
}

#[test]
fn jpeg_quality_reaches_the_capture() {
    assert_eq!(
        rec(&[]).unwrap().capture().jpeg_quality,
        crate::recording::DEFAULT_JPEG_QUALITY
    );
    assert_eq!(
        rec(&["--jpeg-quality", "55"])
            .unwrap()
            .capture()
            .jpeg_quality,
        55
    );
    assert!(rec(&["--jpeg-quality", "0"]).is_err());
    assert!(rec(&["--jpeg-quality", "101"]).is_err());
}

#[test]
fn the_hang_timeout_reaches_the_watchdog_and_zero_turns_it_off() {
    let secs = |args: &[&str]| rec(args).unwrap().capture().hang_timeout;
    assert_eq!(secs(&[]), Some(std::time::Duration::from_secs(10)));
    assert_eq!(
        secs(&["--hang-timeout", "3"]),
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(secs(&["--hang-timeout", "0"]), None);
}

#[test]
fn the_navigation_timeout_defaults_to_the_source_products_60_s() {
    assert_eq!(rec(&[]).unwrap().navigation_timeout, 60);
    assert_eq!(
        rec(&["--navigation-timeout", "7"])
            .unwrap()
            .navigation_timeout,
        7
    );
}
