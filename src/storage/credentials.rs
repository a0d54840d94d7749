//! Storage credentials, found where every S3 tool looks: the `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) environment variables, else the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`) under the
//! profile `AWS_PROFILE` (default `default`). Keys never appear in logs or errors.

use std::path::PathBuf;

use crate::config::Secret;

/// An access key pair.
#[derive(Debug, Clone)]
pub struct StorageCredentials {
    /// Access key id (not secret, but not logged either).
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
}

/// Loads the credentials from the environment or the shared file; `Err` says where it looked.
pub fn load() -> Result<StorageCredentials, String> {
    load_from(|name| std::env::var(name).ok())
}

/// [`load`] over any variable lookup (tests).
pub fn load_from(var: impl Fn(&str) -> Option<String>) -> Result<StorageCredentials, String> {
    let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let (Some(id), Some(secret)) = (
        non_empty("AWS_ACCESS_KEY_ID"),
        non_empty("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(StorageCredentials {
            access_key_id: Secret::from(id),
            secret_access_key: Secret::from(secret),
            session_token: non_empty("AWS_SESSION_TOKEN").map(Secret::from),
        });
    }
    let file = non_empty("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
    let profile = non_empty("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let missing = "no storage credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                   put them in the shared credentials file";
    let Some(file) = file else {
        return Err(missing.into());
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing.into()),
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    };
    parse_profile(&text, &profile).ok_or_else(|| {
        format!(
            "{} has no aws_access_key_id and aws_secret_access_key under [{profile}]",
            file.display()
        )
    })
}

/// The keys of `[profile]` in an INI credentials file.
fn parse_profile(text: &str, profile: &str) -> Option<StorageCredentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(StorageCredentials {
        access_key_id: Secret::from(id?),
        secret_access_key: Secret::from(secret?),
        session_token: token.map(Secret::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_variables_come_first() {
        let c = load_from(vars(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", "T"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id.expose(), "AK");
        assert_eq!(c.secret_access_key.expose(), "SK");
        assert_eq!(c.session_token.as_ref().unwrap().expose(), "T");
        assert!(!format!("{c:?}").contains("SK"));
    }

    #[test]
    fn the_shared_file_profile_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n\
             [rec]\n# comment\naws_access_key_id=A2\naws_secret_access_key=S2\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let c = load_from(vars(&[("AWS_SHARED_CREDENTIALS_FILE", &path)])).unwrap();
        assert_eq!(c.access_key_id.expose(), "A1");
        let c = load_from(vars(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "rec"),
        ]))
        .unwrap();
        assert_eq!(c.secret_access_key.expose(), "S2");
        let e = load_from(vars(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "none"),
        ]))
        .unwrap_err();
        assert!(e.contains("[none]"), "{e}");
    }

    #[test]
    fn nothing_configured_says_what_to_set() {
        let e = load_from(vars(&[("HOME", "/nonexistent")])).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
