//! Syntax errors of the command language, and their rustc-style rendering:
//!
//! ```text
//! error: unknown command `sned`
//!  --> tests/echo.wsp:3:1
//!   |
//! 3 | sned send "hi"
//!   | ^^^^
//!   |
//!   = hint: did you mean `send`?
//! ```
//!
//! The text is built once; colour is only added when asked, so the same words go plain
//! into JUnit reports and coloured to a terminal.

use std::fmt;

use super::ast::Span;

/// The kinds of syntax error, for callers (and tests) that need to tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A line starts with a word that is no command.
    UnknownCommand,
    /// A command lacks a required argument.
    MissingArgument,
    /// Something follows where the line should end, or a word is not one of the choices.
    UnexpectedArgument,
    /// Not a humane duration (`500ms`, `2s`).
    BadDuration,
    /// Invalid JSON.
    BadJson,
    /// Invalid RFC 9535 JSON path.
    BadJsonPath,
    /// Invalid regex.
    BadRegex,
    /// A close code a client may not send, or that is not a number.
    BadCloseCode,
    /// Not an HTTP status (100–599).
    BadStatus,
    /// Invalid hex or base64 data.
    BadBinary,
    /// A `header` option that is not `Name: value`.
    BadHeader,
    /// A connection or capture name that is not an identifier.
    BadName,
    /// A malformed `${…}`.
    BadVariable,
    /// A `"` string without its closing `"`.
    UnterminatedString,
    /// A control-frame payload or close reason longer than the protocol allows.
    TooLong,
    /// A connect option (`auth`, `header`, …) that is not indented under a `connect`.
    OptionWithoutConnect,
    /// `@name` that no `connect NAME` above defines.
    UnknownConnection,
    /// A command that needs a connection, with no `connect` above it.
    NoConnection,
    /// A command of the interactive prompt (`quit`, `help`, `pretty`) in a script.
    ReplOnly,
    /// A script construct (`test`, connect options) at the prompt.
    ScriptOnly,
    /// A command in a place where it has no meaning (e.g. `expect connect-refused` that
    /// does not follow a `connect`, `@name` on a command without a connection).
    Misplaced,
}

/// One syntax error: what is wrong, where, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// What kind of error this is.
    pub kind: ErrorKind,
    /// The headline, e.g. "unknown command `sned`".
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// A short note printed after the carets.
    pub label: Option<String>,
    /// A suggestion printed as `= hint: …`.
    pub hint: Option<String>,
}

impl SyntaxError {
    /// An error without label or hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>, span: Span) -> Self {
        Self {
            kind,
            message: message.into(),
            span,
            label: None,
            hint: None,
        }
    }

    /// Adds the `= hint:` line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a note after the carets.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Renders the error rustc-style, with `source_line` (the text of line `span.line`)
    /// and `file_name` in the `-->` line. `color` adds terminal colours.
    pub fn render(&self, source_line: &str, file_name: &str, color: bool) -> String {
        render_diagnostic(&self.diagnostic(), source_line, Some(file_name), color)
    }

    /// Renders the error for a line typed at the prompt: no file, no line number.
    pub fn render_line(&self, line: &str, color: bool) -> String {
        render_diagnostic(&self.diagnostic(), line, None, color)
    }

    fn diagnostic(&self) -> Diagnostic {
        Diagnostic {
            message: self.message.clone(),
            span: self.span,
            label: self.label.clone(),
            hint: self.hint.clone(),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Every syntax error of one script, with the source needed to render them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxErrors {
    /// The script's file name, as given to the parser.
    pub file_name: String,
    /// The errors, in source order.
    pub errors: Vec<SyntaxError>,
    source: String,
}

impl SyntaxErrors {
    /// The errors of `source`, sorted by position.
    pub(crate) fn new(file_name: &str, source: &str, mut errors: Vec<SyntaxError>) -> Self {
        errors.sort_by_key(|e| (e.span.line, e.span.column));
        Self {
            file_name: file_name.to_owned(),
            errors,
            source: source.to_owned(),
        }
    }

    /// Renders every error, rustc-style, separated by blank lines.
    pub fn render(&self, color: bool) -> String {
        let lines: Vec<&str> = self.source.lines().collect();
        self.errors
            .iter()
            .map(|error| {
                let line = lines.get(error.span.line.wrapping_sub(1)).unwrap_or(&"");
                error.render(line, &self.file_name, color)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Plain text (no colour) of every error.
impl fmt::Display for SyntaxErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for SyntaxErrors {}

/// `line` with the value of a secret-bearing connect option (`auth`, `api-key`, or a
/// `header` named `Authorization` or `X-API-Key`) masked with `*`, one per character so
/// that carets still line up. `${NAME}` references stay visible: they are not secrets.
/// Use it on any script line shown in a message.
pub fn mask_secrets(line: &str) -> String {
    let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
    let rest = &line[indent..];
    let keyword_len = rest.find([' ', '\t']).unwrap_or(rest.len());
    let value_start = match &rest[..keyword_len] {
        "auth" | "api-key" => indent + keyword_len,
        "header" => {
            let header = &rest[keyword_len..];
            let Some(colon) = header.find(':') else {
                return line.to_owned();
            };
            let name = header[..colon].trim();
            if !name.eq_ignore_ascii_case("authorization")
                && !name.eq_ignore_ascii_case("x-api-key")
            {
                return line.to_owned();
            }
            indent + keyword_len + colon + 1
        }
        _ => return line.to_owned(),
    };
    // The scheme of an Authorization value (`Bearer`, `Basic`) is not secret, and helps.
    let mut value_start = value_start;
    if !line[..value_start].trim_end().ends_with("api-key") {
        let value = &line[value_start..];
        let leading = value.len() - value.trim_start().len();
        let word_len = value[leading..]
            .find([' ', '\t'])
            .unwrap_or(value.len() - leading);
        let word = &value[leading..leading + word_len];
        if ["bearer", "basic", "digest", "token"].contains(&word.to_ascii_lowercase().as_str()) {
            value_start += leading + word_len;
        }
    }
    let (head, value) = line.split_at(value_start);
    let mut masked = String::from(head);
    let mut rest = value;
    while !rest.is_empty() {
        let reference_len = rest
            .strip_prefix("${")
            .and_then(|after| after.find('}'))
            .map(|close| close + 3);
        if let Some(len) = reference_len {
            masked.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        masked.push(if c == ' ' || c == '\t' { c } else { '*' });
        rest = &rest[c.len_utf8()..];
    }
    masked
}

/// A message about a place in a script, for anything that wants to point at a line the
/// way syntax errors do (the runner uses it for failed expectations and undefined
/// variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The headline after `error: `.
    pub message: String,
    /// What to underline.
    pub span: Span,
    /// A short note after the carets.
    pub label: Option<String>,
    /// A suggestion printed as `= hint: …`.
    pub hint: Option<String>,
}

/// The styles of a rendered diagnostic, as ANSI escapes: the caller decides whether to
/// colour (at the sink), so the language needs no terminal crate.
#[derive(Clone, Copy)]
enum Style {
    /// `error`, the carets and the label: bold red.
    Error,
    /// The message: bold.
    Emphasis,
    /// `-->` and the `|` gutter: bold blue.
    Gutter,
    /// `= hint:`: bold cyan.
    Hint,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Error => "1;31",
            Style::Emphasis => "1",
            Style::Gutter => "1;34",
            Style::Hint => "1;36",
        }
    }
}

/// Renders `diagnostic` rustc-style. `source_line` is the text of `span.line` (secrets
/// on it are masked, see [`mask_secrets`]); with
/// `file_name` a `--> file:line:col` line and the line number are shown, without (a REPL
/// line) neither is.
pub fn render_diagnostic(
    diagnostic: &Diagnostic,
    source_line: &str,
    file_name: Option<&str>,
    color: bool,
) -> String {
    let paint = |text: &str, style: Style| -> String {
        if color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_owned()
        }
    };
    let span = diagnostic.span;
    let number = match file_name {
        Some(_) => span.line.to_string(),
        None => String::new(),
    };
    let pad = " ".repeat(number.len());
    let gutter = paint(&format!("{pad} |"), Style::Gutter);

    let mut out = String::new();
    out.push_str(&paint("error", Style::Error));
    out.push_str(&paint(
        &format!(": {}", diagnostic.message),
        Style::Emphasis,
    ));
    out.push('\n');
    if let Some(file_name) = file_name {
        out.push_str(&format!(
            "{pad}{} {file_name}:{}:{}\n",
            paint("-->", Style::Gutter),
            span.line,
            span.column
        ));
        out.push_str(&gutter);
        out.push('\n');
    }
    // A tab is shown as one space so that the carets line up with the characters above.
    let shown_line = mask_secrets(source_line).replace('\t', " ");
    let number_gutter = paint(&format!("{number} |"), Style::Gutter);
    if shown_line.is_empty() {
        out.push_str(&number_gutter);
    } else {
        out.push_str(&format!("{number_gutter} {shown_line}"));
    }
    out.push('\n');
    let carets = "^".repeat(span.len.max(1));
    let mut caret_line = format!(
        "{gutter} {}{}",
        " ".repeat(span.column.saturating_sub(1)),
        paint(&carets, Style::Error)
    );
    if let Some(label) = &diagnostic.label {
        caret_line.push(' ');
        caret_line.push_str(&paint(label, Style::Error));
    }
    out.push_str(&caret_line);
    out.push('\n');
    if let Some(hint) = &diagnostic.hint {
        out.push_str(&gutter);
        out.push('\n');
        out.push_str(&format!("{pad} {} {hint}\n", paint("= hint:", Style::Hint)));
    }
    out
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    // One edit for short words, two for longer ones: more than that suggests nonsense.
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(&word, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let error = SyntaxError::new(
            ErrorKind::UnknownCommand,
            "unknown command `sned`",
            Span::new(3, 1, 4),
        )
        .with_hint("did you mean `send`?");
        assert_eq!(
            error.render("sned send \"hi\"", "tests/echo.wsp", false),
            "\
error: unknown command `sned`
 --> tests/echo.wsp:3:1
  |
3 | sned send \"hi\"
  | ^^^^
  |
  = hint: did you mean `send`?
"
        );
    }

    #[test]
    fn renders_a_label_and_wide_line_numbers() {
        let error = SyntaxError::new(
            ErrorKind::BadDuration,
            "invalid duration",
            Span::new(12, 8, 2),
        )
        .with_label("no unit");
        assert_eq!(
            error.render("\tsleep 10", "a.wsp", false),
            "\
error: invalid duration
  --> a.wsp:12:8
   |
12 |  sleep 10
   |        ^^ no unit
"
        );
    }

    #[test]
    fn renders_a_repl_line_without_file() {
        let error = SyntaxError::new(
            ErrorKind::MissingArgument,
            "missing route",
            Span::new(1, 6, 1),
        );
        assert_eq!(
            error.render_line("/send", false),
            "error: missing route\n | /send\n |      ^\n"
        );
    }

    #[test]
    fn colour_only_adds_escapes() {
        // Removing the escapes gives the plain text.
        let error = SyntaxError::new(ErrorKind::BadJson, "invalid JSON", Span::new(1, 1, 1))
            .with_hint("fix it");
        let coloured = error.render("{", "f", true);
        assert!(
            coloured.contains("\u{1b}[1;31merror\u{1b}[0m"),
            "{coloured:?}"
        );
        let stripped = regex::Regex::new("\u{1b}\\[[0-9;]*m")
            .unwrap()
            .replace_all(&coloured, "");
        assert_eq!(stripped, error.render("{", "f", false));
        assert!(!error.render("{", "f", false).contains('\u{1b}'));
    }

    #[test]
    fn secrets_are_masked_in_shown_lines() {
        assert_eq!(mask_secrets("  auth Bearer abc"), "  auth Bearer ***");
        assert_eq!(mask_secrets("auth abc def"), "auth *** ***");
        assert_eq!(mask_secrets("api-key k-${ENV}x"), "api-key **${ENV}*");
        assert_eq!(
            mask_secrets("\theader authorization: Basic xyz"),
            "\theader authorization: Basic ***"
        );
        assert_eq!(mask_secrets("header X-Trace: abc"), "header X-Trace: abc");
        assert_eq!(mask_secrets("send auth secret"), "send auth secret");
    }

    #[test]
    fn suggestions() {
        let commands = ["send", "text", "expect", "capture"];
        assert_eq!(did_you_mean("sned", commands), Some("send"));
        assert_eq!(did_you_mean("expcet", commands), Some("expect"));
        assert_eq!(did_you_mean("Send", commands), Some("send"));
        assert_eq!(did_you_mean("banana", commands), None);
    }
}
