//! What makes a name acceptable in the room.

use std::fmt;

/// The longest name, in characters (Unicode scalar values), not bytes.
pub const MAX_NAME_CHARS: usize = 32;

/// The name the text dialects' notices come from; no client may take it, so
/// no client can forge a notice.
pub const NOTICE_NAME: &str = "*";

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    ControlCharacter,
    /// Leading or trailing white space: names that look alike must be alike.
    EdgeWhitespace,
    Reserved,
    /// `]` ends the name in the line dialect's `[name] text`: a name with
    /// one could pass its owner's words off as another's.
    Bracket,
    /// Zero-width and bidirectional formatting characters, which make a
    /// name look like another or reorder the text shown after it.
    Invisible,
    /// A name that makes the text dialects' notices read as others, with
    /// the space a notice puts after it: one that begins as a notice does
    /// (`error: x` or `error:` joining would read as an error), holds the
    /// roster's separator `, ` (one name read as two), or ` joined on ` /
    /// ` left on ` (a leave read as a join).
    ReadsAsNotice,
    /// An HTTP request line (`GET / HTTP/1.1`): a browser, or a WebSocket
    /// client, at a listener of a text dialect, whose first line is taken
    /// for a name.
    HttpRequest,
}

/// What a name may not begin with: the text dialects' notices that are
/// not about a member.
const NOTICE_PREFIXES: [&str; 3] = ["error: ", "welcome ", "online ("];

/// What a name may not hold: the words of a join or leave on another node.
const NOTICE_INFIXES: [&str; 2] = [" joined on ", " left on "];

/// Nor the roster's separator. A name may end in a comma: `a,, b` still
/// splits into `a,` and `b`.
const ROSTER_SEPARATOR: &str = ", ";

impl NameError {
    /// The reason as a client is told it.
    pub const fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "name is empty",
            NameError::TooLong => "name is longer than 32 characters",
            NameError::ControlCharacter => "name contains a control character",
            NameError::EdgeWhitespace => "name begins or ends with white space",
            NameError::Reserved => "name is reserved",
            NameError::Bracket => "name contains ']'",
            NameError::Invisible => "name contains an invisible or text-direction character",
            NameError::ReadsAsNotice => {
                "name reads as a notice of the room: it may not begin with 'error: ', 'welcome ' or 'online (', nor contain ', ', ' joined on ' or ' left on '"
            }
            NameError::HttpRequest => {
                "name is an HTTP request: this listener speaks a chat dialect, not HTTP (browsers and WebSocket clients need a listener with dialect = \"websocket\")"
            }
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for NameError {}

/// Checks a name: 1 to [`MAX_NAME_CHARS`] characters, no control characters,
/// no `]`, no invisible or direction-changing characters, no white space at
/// either end, not the notice sender `*`, nothing that reads as a notice.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // Counting stops one past the limit: a long name costs no more than that.
    if name.chars().take(MAX_NAME_CHARS + 1).count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if name.contains(']') {
        return Err(NameError::Bracket);
    }
    if name.chars().any(is_invisible) {
        return Err(NameError::Invisible);
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::EdgeWhitespace);
    }
    if name == NOTICE_NAME {
        return Err(NameError::Reserved);
    }
    // A notice about a member puts a space after the name (`error: joined
    // (3 online)`, `a joined on left (2 online)`): the name is checked with
    // it. Any white space counts as a space: `error:\u{a0}x` reads the same.
    let spaced: String = name
        .chars()
        .chain([' '])
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let plain = &spaced[..spaced.len() - 1];
    if NOTICE_PREFIXES.iter().any(|p| spaced.starts_with(p))
        || NOTICE_INFIXES.iter().any(|i| spaced.contains(i))
        || plain.contains(ROSTER_SEPARATOR)
    {
        return Err(NameError::ReadsAsNotice);
    }
    if is_http_request_line(name) {
        return Err(NameError::HttpRequest);
    }
    Ok(())
}

/// `METHOD TARGET HTTP/x`: a method in capitals, then the target, then the
/// version.
fn is_http_request_line(name: &str) -> bool {
    let mut words = name.split(' ');
    matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && !target.is_empty()
                && version.starts_with("HTTP/")
    )
}

/// Zero-width characters, direction marks, embeddings, overrides and
/// isolates, the word joiner and invisible operators, and the byte order
/// mark (Unicode's format characters that matter for spoofing).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "Dian",
            "a",
            "Muhammad Rafi",
            "Rafi@host",
            "Đặng",
            "日本語",
            "a*b",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
        // 32 characters of 3 bytes each: the limit is on characters.
        assert_eq!(validate_name(&"語".repeat(32)), Ok(()));
        assert_eq!(validate_name(&"x".repeat(32)), Ok(()));
    }

    #[test]
    fn refuses_bad_names_with_their_reason() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate_name(&"語".repeat(33)), Err(NameError::TooLong));
        for name in [
            "a\nb",
            "a\tb",
            "\u{1b}[31m",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert_eq!(
                validate_name(name),
                Err(NameError::ControlCharacter),
                "{name:?}"
            );
        }
        for name in [" a", "a ", " ", "\u{3000}a"] {
            assert_eq!(
                validate_name(name),
                Err(NameError::EdgeWhitespace),
                "{name:?}"
            );
        }
        assert_eq!(validate_name("*"), Err(NameError::Reserved));
        // "[Rafi] hi] x" would read as Rafi saying "hi] x".
        for name in ["Rafi] hi", "]", "a]"] {
            assert_eq!(validate_name(name), Err(NameError::Bracket), "{name:?}");
        }
        for name in ["Ra\u{200B}fi", "\u{202E}ifaR", "a\u{2066}b", "\u{FEFF}Dian"] {
            assert_eq!(validate_name(name), Err(NameError::Invisible), "{name:?}");
        }
        assert_eq!(validate_name("[ok"), Ok(()));
        // "* error: x joined (3 online)" would read as an error; a roster
        // "* online (2): a, b, c" as three names; "* a joined on b left
        // (2 online)" as a join.
        // "* error: joined (3 online)" too, the name being "error:", and
        // "* M joined on left (2 online)", the name being "M joined on".
        for name in [
            "error: x",
            "error:",
            "welcome",
            "welcome back, 9 online;",
            "online (2): a",
            "a, b",
            "a joined on b",
            "a left on b",
            "M joined on",
            "M left on",
            "error:\u{a0}x",
            "a,\u{2003}b",
            "a\u{a0}joined on b",
        ] {
            assert_eq!(
                validate_name(name),
                Err(NameError::ReadsAsNotice),
                "{name:?}"
            );
        }
        // A roster "* online (2): a,, b" still splits into "a," and "b".
        for name in [
            "error:x",
            "welcomer",
            "a,b",
            "a,",
            "Dian,",
            "joined on",
            "Ayu joined",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
    }

    /// What a browser or a WebSocket client sends first is not a name.
    #[test]
    fn http_request_lines_are_not_names() {
        for name in ["GET / HTTP/1.1", "GET /ws HTTP/1.1", "POST /x?y=1 HTTP/1.0"] {
            assert_eq!(validate_name(name), Err(NameError::HttpRequest), "{name:?}");
        }
        for name in [
            "GET HTTP/1.1",
            "get / HTTP/1.1",
            "GET / http",
            "Ayu GET / HTTP/1.1",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
    }
}
