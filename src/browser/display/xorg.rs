//! The Xorg server with its `dummy` video driver, configured for one recording: a screen of the
//! recording's size whose one mode refreshes at the recording's frame rate.
//!
//! Why not Xvfb alone: Chromium on X11 paints at the refresh rate of the display's RandR mode,
//! and Xvfb's mode has no pixel clock (Chromium then assumes 60 Hz) and takes no new modes. A
//! 30 fps recording of a 60 Hz page thus paid for twice the paints it keeps. With the dummy
//! driver the mode is ours: Chromium paints (and runs `requestAnimationFrame`) once per video
//! frame. Measured on the bench page, Chromium's CPU fell from 3.8 to 2.1 s per 20 s
//! (docs/benchmarks/notebook.md, *An X server at the video's frame rate*).

/// The dummy driver's pixel clock range (its log: "Clock range: 11.00 to 300.00 MHz").
const MIN_CLOCK_KHZ: u64 = 12_000;
const MAX_CLOCK_KHZ: u64 = 300_000;
/// Totals are rounded to these multiples so that `htotal * vtotal * refresh` is a whole number
/// of kHz: the mode then refreshes at exactly the asked rate, not 29.99 Hz.
const H_STEP: u32 = 40;
const V_STEP: u32 = 25;
/// Below this a display would make a page's `requestAnimationFrame` crawl; slower recordings
/// (snapshot tasks at 5 fps) get a whole multiple of their rate at or above it.
const MIN_REFRESH: u32 = 24;

/// The display's refresh rate for a recording at `fps`: the frame rate itself, or its smallest
/// whole multiple of at least 24 Hz, so that paints stay in step with the frames.
pub(crate) fn refresh_for(fps: u32) -> u32 {
    let fps = fps.max(1);
    fps * MIN_REFRESH.div_ceil(fps).max(1)
}

/// One video mode's timings (pixels and lines) and pixel clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) htotal: u32,
    pub(crate) vtotal: u32,
    pub(crate) clock_khz: u64,
}

impl Mode {
    /// The mode for a `width`×`height` screen refreshing `refresh` times a second, or why the
    /// dummy driver would refuse it.
    pub(crate) fn new(width: u32, height: u32, refresh: u32) -> Result<Mode, String> {
        if width == 0 || height == 0 || refresh == 0 {
            return Err(format!("no mode for {width}x{height} at {refresh} Hz"));
        }
        // Blanking as short as the rounding allows: the pixel clock is capped, and a virtual
        // screen has no beam to return. (Never the 160-pixel blank with a 32-pixel sync of CVT
        // reduced blanking, which Xorg drops: "monitor doesn't support reduced blanking".)
        let mut htotal = (width + 3).next_multiple_of(H_STEP);
        let vtotal = (height + 3).next_multiple_of(V_STEP);
        let lines_per_s = u64::from(vtotal) * u64::from(refresh);
        // Small screens: widen the blanking until the clock reaches the driver's minimum.
        let min_htotal = MIN_CLOCK_KHZ * 1000 / lines_per_s + 1;
        if u64::from(htotal) < min_htotal {
            htotal = u32::try_from(min_htotal)
                .map_err(|_| format!("no mode for {width}x{height} at {refresh} Hz"))?
                .next_multiple_of(H_STEP);
        }
        let clock_khz = u64::from(htotal) * lines_per_s / 1000;
        if clock_khz > MAX_CLOCK_KHZ {
            return Err(format!(
                "{width}x{height} at {refresh} Hz needs a {} MHz pixel clock, above the dummy driver's 300",
                clock_khz / 1000
            ));
        }
        Ok(Mode {
            width,
            height,
            htotal,
            vtotal,
            clock_khz,
        })
    }

    /// The refresh rate the mode gives (what Chromium reads from RandR).
    pub(crate) fn refresh(&self) -> f64 {
        self.clock_khz as f64 * 1000.0 / (f64::from(self.htotal) * f64::from(self.vtotal))
    }

    /// The `Modeline` line of xorg.conf, named `pagecast`.
    fn modeline(&self) -> String {
        let (w, h) = (self.width, self.height);
        format!(
            "Modeline \"pagecast\" {}.{:03} {w} {} {} {} {h} {} {} {}",
            self.clock_khz / 1000,
            self.clock_khz % 1000,
            w + 1,
            w + 2,
            self.htotal,
            h + 1,
            h + 2,
            self.vtotal
        )
    }
}

/// The whole xorg.conf: the dummy driver with video memory for one screen, a monitor that
/// accepts the mode, no input devices (pages get input over DevTools) and no GLX (Chromium runs
/// without a GPU; GLX maps a software renderer into the server).
pub(crate) fn config(mode: &Mode) -> String {
    // 4 bytes a pixel, and a margin.
    let video_ram_kib = (u64::from(mode.width) * u64::from(mode.height) * 4).div_ceil(1024) + 1024;
    format!(
        r#"Section "ServerFlags"
  Option "AutoAddDevices" "false"
  Option "AutoEnableDevices" "false"
  Option "DontVTSwitch" "true"
EndSection
Section "Module"
  Disable "glx"
EndSection
Section "Device"
  Identifier "pagecast-device"
  Driver "dummy"
  VideoRam {video_ram_kib}
EndSection
Section "Monitor"
  Identifier "pagecast-monitor"
  HorizSync 0.1-10000.0
  VertRefresh 1.0-1000.0
  {modeline}
EndSection
Section "Screen"
  Identifier "pagecast-screen"
  Device "pagecast-device"
  Monitor "pagecast-monitor"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Modes "pagecast"
    Virtual {w} {h}
  EndSubSection
EndSection
"#,
        modeline = mode.modeline(),
        w = mode.width,
        h = mode.height,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_refreshes_at_the_frame_rate_or_a_multiple_of_it() {
        assert_eq!(refresh_for(30), 30);
        assert_eq!(refresh_for(60), 60);
        assert_eq!(refresh_for(25), 25);
        assert_eq!(refresh_for(24), 24);
        // Snapshot tasks and slow recordings: a multiple, at least 24 Hz.
        assert_eq!(refresh_for(5), 25);
        assert_eq!(refresh_for(1), 24);
        assert_eq!(refresh_for(15), 30);
        assert_eq!(refresh_for(7), 28);
    }

    #[test]
    fn modes_refresh_at_exactly_the_asked_rate() {
        for (w, h) in [
            (1281, 721),
            (1921, 1081),
            (17, 17),
            (2561, 1441),
            (641, 361),
        ] {
            for refresh in [24, 25, 28, 30, 60] {
                let mode = Mode::new(w, h, refresh).unwrap();
                assert_eq!(
                    mode.refresh(),
                    f64::from(refresh),
                    "{w}x{h}@{refresh}: {mode:?}"
                );
                assert!(
                    (MIN_CLOCK_KHZ..=MAX_CLOCK_KHZ).contains(&mode.clock_khz),
                    "{mode:?}"
                );
                assert!(mode.htotal >= w + 3 && mode.vtotal >= h + 3, "{mode:?}");
            }
        }
    }

    #[test]
    fn the_largest_recording_fits_the_driver_and_larger_is_refused() {
        // MAX_DIMENSION is 2560; the screen is one pixel larger each way. A square of that size
        // fits at 30 Hz, not at 60 (its pixels alone need 393 MHz): such a recording falls
        // back to Xvfb.
        assert!(Mode::new(2561, 1441, 60).is_ok());
        assert!(Mode::new(2561, 2561, 30).is_ok());
        let err = Mode::new(2561, 2561, 60).unwrap_err();
        assert!(err.contains("pixel clock"), "{err}");
    }

    #[test]
    fn the_config_names_the_mode_and_the_screen_size() {
        let mode = Mode::new(1281, 721, 30).unwrap();
        let conf = config(&mode);
        assert!(
            conf.contains("Modeline \"pagecast\" 28.710 1281 1282 1283 1320 721 722 723 725"),
            "{conf}"
        );
        assert!(conf.contains("Virtual 1281 721"), "{conf}");
        assert!(conf.contains("Driver \"dummy\""), "{conf}");
        assert!(conf.contains("Disable \"glx\""), "{conf}");
    }
}
