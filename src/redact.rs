//! What must not leave the server in a log line or a message: URL credentials and query values
//! (pages and callbacks are often addressed with a token in the query, or `user:password@`),
//! and absolute paths of the server's directories.
//!
//! - [`url`]: one URL as it may be shown (every URL field of a log line goes through it);
//! - [`text`]: the URLs found in running text (error chains of HTTP clients and browsers quote
//!   the URL they failed on), each through [`url`];
//! - [`message`]: [`text`] and [`paths`], for every error message a task keeps (Describe's
//!   `Result.ErrorMessage`, `Callback.LastError`, and so the callback body): the store runs it
//!   when it writes them.

/// What replaces each query value.
const HIDDEN: &str = "***";

/// `raw` as it may be logged or shown: without user info (`user:password@`), each query value
/// replaced by `***` (a query part without `=` is a value), without fragment. Not a URL: a
/// placeholder, since it may hold anything.
pub(crate) fn url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw.trim()) else {
        return "<not a URL>".to_string();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if let Some(query) = u.query().map(str::to_owned) {
        let hidden: Vec<String> = query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((key, _)) => format!("{key}={HIDDEN}"),
                None => HIDDEN.to_string(),
            })
            .collect();
        u.set_query((!hidden.is_empty()).then(|| hidden.join("&")).as_deref());
    }
    u.set_fragment(None);
    u.to_string()
}

/// `text` with every absolute URL in it (`scheme://...`) shown as [`url`] shows it.
pub(crate) fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in url_spans(text) {
        out.push_str(&text[at..start]);
        out.push_str(&url(&text[start..end]));
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Characters after which a `/` starts a path (rather than continuing a word, a number or a
/// URL's authority).
const PATH_OPENERS: &[char] = &['(', '[', '{', '"', '\'', '`', '=', ',', ';', ':', '<'];
/// Characters that end a path in running text.
const PATH_CLOSERS: &[char] = &['"', '\'', '`', ')', ']', '}', '>', ',', ';'];

/// `text` with every absolute path cut to its last component (`/srv/work/<id>/seg_000003.ts` →
/// `…/seg_000003.ts`): the name says which file, the directories stay private. A `/` inside a
/// word, a number (`1/2`) or a URL (`https://host/path`) is left alone.
pub(crate) fn paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in url_spans(text) {
        out.push_str(&paths_outside_urls(&text[at..start]));
        out.push_str(&text[start..end]);
        at = end;
    }
    out.push_str(&paths_outside_urls(&text[at..]));
    out
}

fn paths_outside_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let starts_path = c == '/'
            && prev.is_none_or(|p| p.is_whitespace() || PATH_OPENERS.contains(&p))
            && rest[1..]
                .chars()
                .next()
                .is_some_and(|n| n.is_alphanumeric() || matches!(n, '.' | '_' | '-' | '~'));
        if !starts_path {
            out.push(c);
            prev = Some(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = path_end(rest);
        let path = &rest[..end];
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        out.push('…');
        out.push('/');
        out.push_str(last);
        prev = path.chars().last();
        rest = &rest[end..];
    }
    out
}

/// Byte ranges of the absolute URLs (`scheme://...`) in `text`, in order. A URL ends at
/// whitespace, a quote or a closing bracket; punctuation that ends a sentence is not part of it.
fn url_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        // The scheme: a letter, then letters, digits, `+`, `-`, `.`, right before `://`.
        let start = text[..sep]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map(|(i, _)| i)
            .unwrap_or(sep);
        let start = text[start..sep]
            .char_indices()
            .find(|(_, c)| c.is_ascii_alphabetic())
            .map_or(sep, |(i, _)| start + i);
        let after = sep + 3;
        let mut end = text[after..]
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || URL_CLOSERS.contains(c))
            .map_or(text.len(), |(i, _)| after + i);
        while end > after && text[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
            end -= 1;
        }
        if start < sep {
            spans.push((start, end));
        }
        from = end.max(after);
    }
    spans
}

/// Characters that end a URL in running text.
const URL_CLOSERS: &[char] = &['"', '\'', '`', '<', '>', ')', ']', '}'];

/// Where a path starting `s` ends: at whitespace, a closing character, or a `:` that ends it
/// (followed by a space or the end, as in `/x/y: No such file`).
fn path_end(s: &str) -> usize {
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() || PATH_CLOSERS.contains(&c) {
            return i;
        }
        if c == ':' && chars.peek().is_none_or(|(_, n)| n.is_whitespace()) {
            return i;
        }
    }
    s.len()
}

/// A message as it may be kept and shown: URLs redacted ([`text`]), absolute paths cut
/// ([`paths`]).
pub(crate) fn message(message: &str) -> String {
    paths(&text(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_keep_only_their_last_component() {
        assert_eq!(
            paths("reading /tmp/pagecast-work/6f1c/seg_000003.ts: No such file or directory"),
            "reading …/seg_000003.ts: No such file or directory"
        );
        assert_eq!(
            paths("the files are kept in /srv/pagecast/work/6f1c.deliver/"),
            "the files are kept in …/6f1c.deliver"
        );
        assert_eq!(
            paths("concatf:/tmp/w/parts-000000.txt: Invalid data (\"/tmp/x y/z.ts\")"),
            "concatf:…/parts-000000.txt: Invalid data (\"…/x y/z.ts\")"
        );
        assert_eq!(paths("/abs at the start"), "…/abs at the start");
        assert_eq!(paths("录 /数据/目录/文件.mp4"), "录 …/文件.mp4");
    }

    #[test]
    fn urls_lose_user_info_query_values_and_fragment() {
        assert_eq!(
            url("https://user:secret@class.example/room/1?token=SECRET&role=rec#frag"),
            "https://class.example/room/1?token=***&role=***"
        );
        assert_eq!(url("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080/a");
        assert_eq!(url("http://h/cb?SECRET"), "http://h/cb?***");
        assert_eq!(
            url("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://10.0.0.1:6379/2"
        );
        assert_eq!(
            url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=***&pass=***"
        );
        assert_eq!(url("not a url :s3cret"), "<not a URL>");
    }

    #[test]
    fn urls_in_running_text_are_redacted() {
        let chain = "error sending request for url (http://127.0.0.1:9/cb?sig=SECRET): \
                     client error (Connect): tcp connect error: Connection refused";
        assert_eq!(
            text(chain),
            "error sending request for url (http://127.0.0.1:9/cb?sig=***): client error \
             (Connect): tcp connect error: Connection refused"
        );
        assert_eq!(
            message(
                "could not load https://u:p@h.example/?token=SECRET: net::ERR_FAILED at /srv/x/y"
            ),
            "could not load https://h.example/?token=***: net::ERR_FAILED at …/y"
        );
    }

    #[test]
    fn urls_are_found_in_running_text() {
        let text = "error sending request for url (http://u:p@h:1/cb?sig=S). See https://x.org/a, then \"ftp://f/g\"";
        let spans: Vec<&str> = url_spans(text)
            .into_iter()
            .map(|(a, b)| &text[a..b])
            .collect();
        assert_eq!(
            spans,
            ["http://u:p@h:1/cb?sig=S", "https://x.org/a", "ftp://f/g"]
        );
        assert!(url_spans("no url: ://x and 1://y").is_empty());
    }

    #[test]
    fn other_slashes_stay() {
        for kept in [
            "https://host.example/a/b?x=/y",
            "ratio 1/2 and a/b relative",
            "a / b",
            "http://127.0.0.1:9000/results/t/1.mp4",
            "file:///etc/passwd",
            "",
        ] {
            assert_eq!(paths(kept), kept);
        }
    }
}
