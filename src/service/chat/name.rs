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
}

impl NameError {
    /// The reason as a client is told it.
    pub const fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "name is empty",
            NameError::TooLong => "name is longer than 32 characters",
            NameError::ControlCharacter => "name contains a control character",
            NameError::EdgeWhitespace => "name begins or ends with white space",
            NameError::Reserved => "name is reserved",
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
/// no white space at either end, not the notice sender `*`.
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
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::EdgeWhitespace);
    }
    if name == NOTICE_NAME {
        return Err(NameError::Reserved);
    }
    Ok(())
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
    }
}
