//! Finding the project's fontconfig file (which adds `fonts/`, including the bundled CJK font).

use std::path::{Path, PathBuf};

const RELATIVE: &str = "fontconfig/fonts.conf";

/// Where to look, in order: an explicit setting, then beside the installed binary
/// (`<prefix>/share/pagecast/` or a source checkout above `target/<profile>/`), then the
/// current directory, then the source tree this binary was built from.
pub(crate) fn find_fontconfig(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        // fontconfig reads a relative FONTCONFIG_FILE against its own system directory
        // (/etc/fonts), not the current one: a relative setting would silently lose the fonts.
        return Some(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join("share/pagecast").join(RELATIVE));
            candidates.push(dir.join(RELATIVE));
        }
    }
    candidates.push(PathBuf::from(RELATIVE));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(RELATIVE));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_relative_setting_becomes_absolute() {
        let found = super::find_fontconfig(Some(std::path::Path::new("fontconfig/fonts.conf")))
            .expect("an explicit setting is used as given");
        assert!(found.is_absolute(), "{}", found.display());
        assert_eq!(
            found,
            std::env::current_dir()
                .unwrap()
                .join("fontconfig/fonts.conf")
        );
    }

    #[test]
    fn the_source_tree_config_is_found() {
        let found = super::find_fontconfig(None).expect("fontconfig/fonts.conf in the source tree");
        assert!(found.ends_with("fontconfig/fonts.conf"));
        assert!(
            found
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("fonts/PagecastSansCJK-Regular.otf")
                .is_file()
        );
    }
}
