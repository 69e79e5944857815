//! Escaping of text from the network before it is shown on a terminal: the one place that
//! decides what a server may put on the user's screen.
//!
//! A text frame, a close reason, a handshake body or a header value is the server's to
//! choose. Printed raw, `\x1b]0;…\x07` sets the window title, `\x1b[2J` clears the screen,
//! `\x1b]52;c;…` writes the clipboard on many terminals, `\x1b[6n` makes the terminal type
//! its answer into the prompt, and `\u{202e}` (right-to-left override) makes text read
//! backwards. [`escape`] shows such characters as visible escapes instead: C0 and C1
//! controls and DEL as `\xNN` (`\n`, `\r` and `\t` by name), bidirectional controls as
//! `\u{NNNN}`. Everything else, Unicode included, is shown as is.
//!
//! Every printer of network-originated text uses it; only pipe mode, writing messages to a
//! stdout that is not a terminal, passes their bytes on raw, since there they are data.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a newline in the text stays a line break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newlines {
    /// Escaped as `\n`: the text must stay on one line (a close reason, a header value, a
    /// failure detail).
    Escape,
    /// Kept: a multi-line message is shown on several lines (the front-end indents them).
    Keep,
}

/// `text` with every control character and bidirectional control escaped visibly; borrowed
/// when there is nothing to escape.
pub fn escape(text: &str, newlines: Newlines) -> Cow<'_, str> {
    let needs = |c: char| needs_escape(c) && !(c == '\n' && newlines == Newlines::Keep);
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs(c) {
            shown.push(c);
            continue;
        }
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if (c as u32) < 0x100 => {
                let _ = write!(shown, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(shown, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(shown)
}

/// `text` escaped for one line ([`Newlines::Escape`]), as a `String`: for `format!`.
pub fn one_line(text: &str) -> String {
    escape(text, Newlines::Escape).into_owned()
}

/// C0 controls (tab included), DEL, C1 controls, and the Unicode bidirectional controls
/// (embeddings, overrides, isolates and marks) that reorder what follows them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_as_escapes() {
        assert_eq!(
            one_line("\x1b]0;pwned\x07title\x1b[2J"),
            "\\x1b]0;pwned\\x07title\\x1b[2J"
        );
        assert_eq!(one_line("a\r\nb\tc\x7f\u{9b}"), "a\\r\\nb\\tc\\x7f\\x9b");
        assert_eq!(
            one_line("evil\u{202e}txt.exe\u{2066}"),
            "evil\\u{202e}txt.exe\\u{2066}"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["hello", r#"{"a":"\u001b"}"#, "héllo wörld ✓ 日本", ""] {
            assert!(matches!(escape(text, Newlines::Escape), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn newlines_kept_only_when_asked() {
        assert_eq!(escape("a\nb\x1b", Newlines::Keep), "a\nb\\x1b");
        assert_eq!(escape("a\nb", Newlines::Escape), "a\\nb");
        assert_eq!(escape("a\r\nb", Newlines::Keep), "a\\r\nb");
    }
}
