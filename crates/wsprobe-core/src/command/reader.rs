//! A cursor over one source line: reads words, quoted strings, JSON paths, regexes and
//! the verbatim rest of the line, and turns byte offsets into 1-based character columns.
//!
//! Lexical rules (the docs repeat them): arguments are separated by spaces or tabs; a `#`
//! at the start of an argument begins a comment; a `"…"` string uses JSON escapes.
//! Free-text arguments (`auth`, a text payload, a close reason, …) take the rest of the
//! line, comments included, unless they start with `#`; `text` takes it all verbatim.

use super::ast::Span;
use super::error::{ErrorKind, SyntaxError};

/// A word, quoted string or other argument read from a line, with its span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The value (a quoted string already unescaped).
    pub text: String,
    /// Where it was written, quotes included.
    pub span: Span,
    /// Whether it was written as a `"…"` string.
    pub quoted: bool,
}

/// A cursor over one line: the text, the byte position, and the 1-based line number.
pub(crate) struct LineReader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> LineReader<'a> {
    #[cfg(test)]
    pub fn new(text: &'a str, line: usize) -> Self {
        Self { text, pos: 0, line }
    }

    /// Starts reading at byte `pos` (used to skip a REPL line's leading `/`).
    pub fn starting_at(text: &'a str, line: usize, pos: usize) -> Self {
        Self { text, pos, line }
    }

    /// The whole line.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The byte offset of the cursor.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The unread part of the line.
    pub fn remaining(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// Moves the cursor `bytes` forward (not past the end).
    pub fn advance(&mut self, bytes: usize) {
        self.pos = (self.pos + bytes).min(self.text.len());
    }

    /// The 1-based character column of byte offset `byte`.
    pub fn column_at(&self, byte: usize) -> usize {
        self.text[..byte.min(self.text.len())].chars().count() + 1
    }

    /// The span of bytes `start..end`.
    pub fn span(&self, start: usize, end: usize) -> Span {
        Span::new(
            self.line,
            self.column_at(start),
            self.text[start..end.max(start)].chars().count(),
        )
    }

    /// A one-character span just after the last argument: where a missing one belongs.
    pub fn end_span(&self) -> Span {
        let end = self.text[..self.pos].trim_end().len();
        Span::new(self.line, self.column_at(end), 1)
    }

    /// The byte offset where the line's content ends: before a trailing comment that
    /// starts at or after the current position, and before trailing whitespace.
    fn content_end(&self) -> usize {
        let mut probe = LineReader::starting_at(self.text, self.line, self.pos);
        let mut end = self.pos;
        loop {
            probe.skip_spaces();
            if probe.at_end() {
                return end;
            }
            let start = probe.pos;
            if probe.remaining().starts_with('"') {
                match find_closing_quote(probe.remaining()) {
                    Some(close) => probe.pos += close + 1,
                    None => return self.text.trim_end().len(),
                }
            } else {
                probe.pos += word_len(probe.remaining());
            }
            if probe.pos == start {
                return end;
            }
            end = probe.pos;
        }
    }

    /// Skips spaces and tabs.
    pub fn skip_spaces(&mut self) {
        let rest = self.remaining();
        let trimmed = rest.trim_start_matches([' ', '\t']);
        self.pos += rest.len() - trimmed.len();
    }

    /// True when nothing but spaces and a comment is left.
    pub fn at_end(&self) -> bool {
        let rest = self.remaining().trim_start_matches([' ', '\t']);
        rest.is_empty() || rest.starts_with('#')
    }

    /// The next bare word, without consuming it.
    pub fn peek_word(&self) -> Option<&'a str> {
        if self.at_end() {
            return None;
        }
        let rest = self.remaining().trim_start_matches([' ', '\t']);
        Some(&rest[..word_len(rest)])
    }

    /// Reads a bare word: everything up to the next space or tab.
    pub fn word(&mut self) -> Option<(&'a str, Span)> {
        self.skip_spaces();
        if self.at_end() {
            return None;
        }
        let start = self.pos;
        let len = word_len(self.remaining());
        self.pos += len;
        Some((&self.text[start..self.pos], self.span(start, self.pos)))
    }

    /// Reads a `"…"` string or a bare word.
    pub fn token(&mut self) -> Result<Option<Token>, SyntaxError> {
        self.skip_spaces();
        if self.at_end() {
            return Ok(None);
        }
        if self.remaining().starts_with('"') {
            return self.quoted().map(Some);
        }
        Ok(self.word().map(|(text, span)| Token {
            text: text.to_owned(),
            span,
            quoted: false,
        }))
    }

    /// Reads a `"…"` string with JSON escapes. The reader is at the opening quote.
    pub fn quoted(&mut self) -> Result<Token, SyntaxError> {
        let start = self.pos;
        let rest = self.remaining();
        let Some(close) = find_closing_quote(rest) else {
            let end = self.text.trim_end().len();
            return Err(SyntaxError::new(
                ErrorKind::UnterminatedString,
                "unterminated string",
                self.span(start, end.max(start + 1)),
            )
            .with_label("no closing `\"` on this line"));
        };
        let raw = &rest[..=close];
        let text: String = serde_json::from_str(raw).map_err(|error| {
            SyntaxError::new(
                ErrorKind::BadJson,
                format!(
                    "invalid string: {}",
                    super::template::json_error_message(&error)
                ),
                self.span(start, start + raw.len()),
            )
            .with_hint("strings use JSON escapes: `\\\"`, `\\\\`, `\\n`, `\\u00e9`")
        })?;
        self.pos += raw.len();
        Ok(Token {
            text,
            span: self.span(start, self.pos),
            quoted: true,
        })
    }

    /// Reads a JSON path: up to the next space outside brackets, parentheses and quotes
    /// (so `$[?@.name == 'x']` is one path).
    pub fn path_token(&mut self) -> Option<(&'a str, Span)> {
        self.skip_spaces();
        if self.at_end() {
            return None;
        }
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut end = self.text.len();
        for (offset, c) in self.remaining().char_indices() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' => depth = depth.saturating_sub(1),
                ' ' | '\t' if depth == 0 => {
                    end = start + offset;
                    break;
                }
                _ => {}
            }
        }
        self.pos = end;
        Some((&self.text[start..end], self.span(start, end)))
    }

    /// Reads a regex: `/…/` (verbatim, `\/` for a slash), `"…"` (JSON escapes) or a bare
    /// word (verbatim).
    pub fn regex_token(&mut self) -> Result<Option<Token>, SyntaxError> {
        self.skip_spaces();
        if self.at_end() {
            return Ok(None);
        }
        let rest = self.remaining();
        if !rest.starts_with('/') {
            return self.token();
        }
        let start = self.pos;
        let mut escaped = false;
        for (offset, c) in rest.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '/' {
                let body = &rest[1..offset];
                self.pos += offset + 1;
                return Ok(Some(Token {
                    text: body.replace("\\/", "/"),
                    span: self.span(start, self.pos),
                    quoted: true,
                }));
            }
        }
        let end = self.text.trim_end().len();
        Err(SyntaxError::new(
            ErrorKind::UnterminatedString,
            "unterminated regex",
            self.span(start, end.max(start + 1)),
        )
        .with_label("no closing `/` on this line"))
    }

    /// The rest of the line, verbatim, after the one space or tab that separates it from
    /// the command word. Returns the text and the byte offset where it starts.
    pub fn rest_verbatim(&mut self) -> (&'a str, usize) {
        if self.remaining().starts_with([' ', '\t']) {
            self.pos += 1;
        }
        let start = self.pos;
        self.pos = self.text.len();
        (&self.text[start..], start)
    }

    /// Free text: from the next non-space character to the end of the line, without
    /// trailing spaces, comments included — unless it starts with `#` (a comment) or
    /// nothing is left. Returns the text and the byte offset where it starts.
    pub fn rest_free_text(&mut self) -> Option<(&'a str, usize)> {
        self.skip_spaces();
        if self.at_end() {
            return None;
        }
        let start = self.pos;
        self.pos = self.text.len();
        Some((self.text[start..].trim_end(), start))
    }

    /// Fails unless only spaces and a comment are left.
    pub fn expect_end(&mut self, after: &str) -> Result<(), SyntaxError> {
        self.skip_spaces();
        if self.at_end() {
            return Ok(());
        }
        let start = self.pos;
        let end = self.content_end();
        let extra = &self.text[start..end];
        Err(SyntaxError::new(
            ErrorKind::UnexpectedArgument,
            format!("unexpected `{extra}` after {after}"),
            self.span(start, end),
        ))
    }
}

/// The byte length of the bare word at the start of `text`.
fn word_len(text: &str) -> usize {
    text.find([' ', '\t']).unwrap_or(text.len())
}

/// The byte offset of the `"` that closes the string opening at the start of `text`.
fn find_closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (offset, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(offset);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_columns_count_characters() {
        let mut r = LineReader::new("  é send  x", 4);
        assert_eq!(r.word(), Some(("é", Span::new(4, 3, 1))));
        assert_eq!(r.word(), Some(("send", Span::new(4, 5, 4))));
        assert_eq!(r.word(), Some(("x", Span::new(4, 11, 1))));
        assert_eq!(r.word(), None);
    }

    #[test]
    fn comments_start_at_an_argument() {
        let mut r = LineReader::new("ping a#b # comment", 1);
        assert_eq!(r.word().map(|w| w.0), Some("ping"));
        assert_eq!(r.word().map(|w| w.0), Some("a#b"));
        assert!(r.at_end());
        assert!(r.expect_end("x").is_ok());
    }

    #[test]
    fn quoted_strings_unescape() {
        let mut r = LineReader::new(r#"test "a \"b\" é" # c"#, 1);
        r.word();
        let token = r.token().unwrap().unwrap();
        assert_eq!(token.text, "a \"b\" é");
        assert_eq!(token.span, Span::new(1, 6, 11));
        assert!(token.quoted);
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let mut r = LineReader::new(r#"test "abc  "#, 2);
        r.word();
        let error = r.token().unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnterminatedString);
        assert_eq!(error.span, Span::new(2, 6, 4));
    }

    #[test]
    fn paths_keep_filters_with_spaces() {
        let mut r = LineReader::new("$[?@.a == 'x y'].b == 1", 1);
        assert_eq!(r.path_token().map(|p| p.0), Some("$[?@.a == 'x y'].b"));
        assert_eq!(r.word().map(|w| w.0), Some("=="));
    }

    #[test]
    fn regexes_in_three_forms() {
        let mut r = LineReader::new(r#"/a b\/c/ "\\d+" ^x$"#, 1);
        assert_eq!(r.regex_token().unwrap().unwrap().text, "a b/c");
        assert_eq!(r.regex_token().unwrap().unwrap().text, "\\d+");
        assert_eq!(r.regex_token().unwrap().unwrap().text, "^x$");
        let mut r = LineReader::new("/open", 1);
        assert_eq!(
            r.regex_token().unwrap_err().kind,
            ErrorKind::UnterminatedString
        );
    }

    #[test]
    fn rest_verbatim_keeps_spaces_and_hashes() {
        let mut r = LineReader::new("text  a # b ", 1);
        r.word();
        assert_eq!(r.rest_verbatim(), (" a # b ", 5));
    }

    #[test]
    fn free_text_runs_to_the_end_unless_it_is_a_comment() {
        let mut r = LineReader::new("ping  a # b  ", 1);
        r.word();
        assert_eq!(r.rest_free_text(), Some(("a # b", 6)));
        let mut r = LineReader::new("ping  # b", 1);
        r.word();
        assert_eq!(r.rest_free_text(), None);
    }

    #[test]
    fn unexpected_trailing_argument() {
        let mut r = LineReader::new("quit now please # bye", 1);
        r.word();
        let error = r.expect_end("`quit`").unwrap_err();
        assert_eq!(error.message, "unexpected `now please` after `quit`");
        assert_eq!(error.span, Span::new(1, 6, 10));
    }

    #[test]
    fn end_span_points_after_the_last_argument() {
        let mut r = LineReader::new("send   # c", 1);
        r.word();
        assert_eq!(r.end_span(), Span::new(1, 5, 1));
    }
}
