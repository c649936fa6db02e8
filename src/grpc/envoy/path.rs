//! The tenant a request path names, read the way the application behind Envoy may read it.
//!
//! Servers disagree on paths: one decodes `%61` to `a`, folds case, resolves `..`, drops a
//! `;v=1` parameter or merges `//`, another does not. A tenant read from the raw text would
//! let `/tenants/%61cme/` past a check that the application then routes to `acme`. So the path
//! is normalised as the most generous reader would, and a tenant named under any of these
//! readings is the tenant named:
//!
//! 1. query and fragment dropped; the rest split on `/`;
//! 2. each segment percent-decoded (again while it still holds an escape, so `%2561` is `a`
//!    too), its `;` parameters dropped (Tomcat's `..;` is `..`);
//! 3. empty and `.` segments dropped, `..` removing the one before it (RFC 3986 §5.2.4 on
//!    segments, with `//` merged);
//! 4. case folded.
//!
//! A path it cannot read one way only is refused: a `%` that starts no escape, an escaped `/`
//! or `\` (one segment or two?), a literal `\`, bytes that are not UTF-8, control characters.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Rounds of decoding a segment may need (`%252561` takes three) before it is taken for an
/// attempt to outlast the reader rather than a name.
const MAX_DECODE_ROUNDS: usize = 3;

/// The segment of a normalised path under which the next one names a tenant.
const TENANTS_SEGMENT: &str = "tenants";

/// Why a path cannot be read one way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadPath {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// Decoded bytes that are not UTF-8.
    NotUtf8,
    /// A `/` or `\` hidden in an escape, or a literal `\`: where segments end is in doubt.
    AmbiguousSeparator,
    /// A control character (NUL, a line break...) in a segment.
    ControlCharacter,
    /// Still escaped after [`MAX_DECODE_ROUNDS`] rounds of decoding.
    TooDeeplyEncoded,
}

/// `{key}` of a path `/tenants/{key}` or `/tenants/{key}/...` once normalised, lowercased;
/// `None` when the path names no tenant.
pub(super) fn tenant_of_path(path: &str) -> Result<Option<String>, BadPath> {
    let segments = normalise(path)?;
    Ok(match segments.as_slice() {
        [first, key, ..] if first == TENANTS_SEGMENT => Some(key.clone()),
        _ => None,
    })
}

/// The path's segments after the steps in the module docs.
fn normalise(path: &str) -> Result<Vec<String>, BadPath> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.contains('\\') {
        return Err(BadPath::AmbiguousSeparator);
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let decoded = decode(raw)?;
        let name = decoded.split(';').next().unwrap_or_default();
        match name {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name.to_lowercase()),
        }
    }
    Ok(segments)
}

/// One segment, percent-decoded until no escape is left.
fn decode(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    check_escapes(raw)?;
    let mut text = Cow::Borrowed(raw);
    for _ in 0..MAX_DECODE_ROUNDS {
        if !has_escape(&text) {
            return check_decoded(text);
        }
        let decoded = percent_decode_str(&text)
            .decode_utf8()
            .map_err(|_| BadPath::NotUtf8)?
            .into_owned();
        if decoded.contains(['/', '\\']) {
            return Err(BadPath::AmbiguousSeparator);
        }
        text = Cow::Owned(decoded);
    }
    if has_escape(&text) {
        return Err(BadPath::TooDeeplyEncoded);
    }
    check_decoded(text)
}

fn check_decoded(text: Cow<'_, str>) -> Result<Cow<'_, str>, BadPath> {
    if text.chars().any(char::is_control) {
        return Err(BadPath::ControlCharacter);
    }
    Ok(text)
}

/// Every `%` of the raw text starts an escape. `percent_decode` keeps a stray `%` as it is,
/// while another reader may refuse the path or guess: neither is one reading.
fn check_escapes(raw: &str) -> Result<(), BadPath> {
    let bytes = raw.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'%' && !is_escape(&bytes[at..]) {
            return Err(BadPath::BadEscape);
        }
    }
    Ok(())
}

/// Whether `text` still holds an escape a further decoding would turn into something else.
fn has_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|at| is_escape(&bytes[at..]))
}

/// Whether `bytes` starts with `%` and two hex digits.
fn is_escape(bytes: &[u8]) -> bool {
    matches!(bytes, [b'%', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(path: &str) -> Option<String> {
        tenant_of_path(path).unwrap_or_else(|e| panic!("{path}: {e:?}"))
    }

    #[test]
    fn paths_name_a_tenant_under_tenants() {
        assert_eq!(tenant("/tenants/acme/orders?x=1").as_deref(), Some("acme"));
        assert_eq!(tenant("/tenants/acme").as_deref(), Some("acme"));
        assert_eq!(
            tenant("/tenants/acme?x=/tenants/b").as_deref(),
            Some("acme")
        );
        assert_eq!(tenant("/tenants/"), None);
        assert_eq!(tenant("/tenants"), None);
        assert_eq!(tenant("/v1/tenants/acme"), None);
        assert_eq!(tenant("/orders"), None);
        assert_eq!(tenant(""), None);
    }

    #[test]
    fn every_spelling_of_a_tenant_path_names_the_tenant() {
        for path in [
            "/tenants/%61cme/x",
            "/tenants/%2561cme/x",
            "/tenants/ACME/x",
            "/TENANTS/Acme/x",
            "/tenants/globex/../acme/x",
            "/tenants/globex/%2e%2e/acme/x",
            "/tenants/globex/..;/acme/x",
            "/x/../tenants/acme",
            "/../tenants/acme",
            "/tenants/./acme/",
            "/tenants/acme;v=1/x",
            "/tenants;v=1/acme%3Bv=1/x",
            "//tenants//acme/x",
            "tenants/acme",
        ] {
            assert_eq!(tenant(path).as_deref(), Some("acme"), "{path}");
        }
        assert_eq!(tenant("/tenants/acme/../x"), Some("x".to_owned()));
    }

    #[test]
    fn paths_with_more_than_one_reading_are_refused() {
        for (path, why) in [
            ("/tenants/%zz/x", BadPath::BadEscape),
            ("/tenants/acme%/x", BadPath::BadEscape),
            ("/tenants/acme%2", BadPath::BadEscape),
            ("/tenants/%c3%28/x", BadPath::NotUtf8),
            ("/tenants%2facme/x", BadPath::AmbiguousSeparator),
            ("/tenants/x%252facme", BadPath::AmbiguousSeparator),
            ("/tenants%5cacme/x", BadPath::AmbiguousSeparator),
            ("/tenants\\acme/x", BadPath::AmbiguousSeparator),
            ("/tenants/acme%00/x", BadPath::ControlCharacter),
            ("/tenants/%0aacme", BadPath::ControlCharacter),
            ("/tenants/%25252561cme", BadPath::TooDeeplyEncoded),
        ] {
            assert_eq!(tenant_of_path(path), Err(why), "{path}");
        }
    }

    #[test]
    fn a_decoded_percent_that_starts_no_escape_is_kept() {
        assert_eq!(tenant("/tenants/100%25/x").as_deref(), Some("100%"));
        assert_eq!(tenant("/files/50%25off").as_deref(), None);
    }
}
