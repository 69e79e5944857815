//! What a script run produced, as plain data: the runner fills it in, and every report
//! (text, JUnit, JSON) is a pure function of it.

use std::time::Duration;

use colored::Colorize;

use wsprobe_core::command::{Diagnostic, Span, render_diagnostic};

use super::vars::Secrets;

/// At most this many received messages are listed under a failure.
pub(crate) const SHOWN_MESSAGES: usize = 5;
/// A received message is cut after this many characters in a failure.
pub(crate) const SHOWN_CHARS: usize = 200;

/// Every file of a run, in the order given.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScriptResult {
    /// One entry per file that ran (with `--fail-fast`, files after a failure are missing).
    pub(crate) files: Vec<FileResult>,
    /// The whole run, wall clock.
    pub(crate) duration: Duration,
    /// The signal that cut the run short (`SIGINT`, `SIGTERM`, `SIGHUP`), if one did: the
    /// tests that finished are reported, the rest did not run.
    pub(crate) interrupted_by: Option<&'static str>,
}

/// One script file's tests.
#[derive(Clone, Debug)]
pub(crate) struct FileResult {
    /// The file name as given on the command line.
    pub(crate) file: String,
    /// The tests that ran, in file order.
    pub(crate) tests: Vec<TestResult>,
    /// The file's run, wall clock.
    pub(crate) duration: Duration,
}

/// One `test` block (or the implicit test of the commands before the first `test`).
#[derive(Clone, Debug)]
pub(crate) struct TestResult {
    /// The test's name.
    pub name: String,
    /// The line of its `test` (for an implicit test: of its first command).
    pub(crate) line: usize,
    /// How long it took, connects and closes included.
    pub(crate) duration: Duration,
    /// Why it failed; `None` when it passed.
    pub(crate) failure: Option<Failure>,
}

impl TestResult {
    /// Whether every command of the test passed.
    pub(crate) fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// What kind of failure ended a test; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// An expectation or capture did not hold (exit 1).
    Expectation,
    /// A `connect` that should have succeeded did not (exit 3 if no other kind failed).
    Connect,
    /// A command could not run: sending on a closed connection, a variable that turned
    /// out undefined, a management call without an answer (exit 1).
    Error,
}

impl FailureKind {
    /// `expectation`, `connect` or `error` (the JSON report's `kind`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureKind::Expectation => "expectation",
            FailureKind::Connect => "connect",
            FailureKind::Error => "error",
        }
    }
}

/// Why a test failed, with the place in the script and what was received.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    /// Which kind of failure.
    pub(crate) kind: FailureKind,
    /// The headline, e.g. `expectation failed: json $.message == "Forbidden"`.
    pub(crate) message: String,
    /// The script file.
    pub(crate) file: String,
    /// The failing command (line, column, length).
    pub(crate) span: Span,
    /// The text of the failing line (secret-bearing options are masked when rendered).
    pub(crate) source_line: String,
    /// A short note after the carets, e.g. `nothing matched within 2s`.
    pub(crate) label: Option<String>,
    /// What was expected, with variables filled in (`None` for non-expectations).
    pub(crate) expected: Option<String>,
    /// The connection the messages were received on (`alice`, or `the connection of line 3`).
    pub connection: Option<String>,
    /// The unconsumed messages on that connection when the wait gave up, oldest first, at
    /// most [`SHOWN_MESSAGES`], each cut at [`SHOWN_CHARS`]; `None` when the failure is
    /// not about waiting for a message.
    pub(crate) received: Option<Vec<String>>,
    /// How many more messages were received than are listed.
    pub(crate) received_more: usize,
    /// A suggestion.
    pub(crate) hint: Option<String>,
}

impl Failure {
    /// A failure of `kind` at `span` of `file`.
    pub(crate) fn new(
        kind: FailureKind,
        message: impl Into<String>,
        file: &str,
        span: Span,
        source_line: &str,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            file: file.to_owned(),
            span,
            source_line: source_line.to_owned(),
            label: None,
            expected: None,
            connection: None,
            received: None,
            received_more: 0,
            hint: None,
        }
    }

    /// Sets the note after the carets.
    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the hint.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets what was expected.
    pub(crate) fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Shows the answer of the management call an expectation checked.
    pub(crate) fn response(mut self, response: String) -> Self {
        self.received = Some(vec![cut(&response, SHOWN_CHARS)]);
        self.connection = None;
        self
    }

    /// Lists `messages` (already described, oldest first) as received on `connection`,
    /// keeping the first [`SHOWN_MESSAGES`], each cut at [`SHOWN_CHARS`].
    pub(crate) fn received(mut self, connection: &str, messages: Vec<String>) -> Self {
        self.received_more = messages.len().saturating_sub(SHOWN_MESSAGES);
        self.received = Some(
            messages
                .into_iter()
                .take(SHOWN_MESSAGES)
                .map(|message| cut(&message, SHOWN_CHARS))
                .collect(),
        );
        self.connection = Some(connection.to_owned());
        self
    }

    /// Renders the failure rustc-style, like a syntax error, followed by the received
    /// messages and the hint. `color: false` gives the plain text of the reports.
    pub(crate) fn render(&self, color: bool) -> String {
        let diagnostic = Diagnostic {
            message: self.message.clone(),
            span: self.span,
            label: self.label.clone(),
            hint: None,
        };
        let mut out = render_diagnostic(&diagnostic, &self.source_line, Some(&self.file), color);
        let pad = " ".repeat(self.span.line.to_string().len());
        let note = |text: &str| -> String {
            if color {
                text.cyan().bold().to_string()
            } else {
                text.to_owned()
            }
        };
        let gutter = if color {
            format!("{pad} |").blue().bold().to_string()
        } else {
            format!("{pad} |")
        };
        // `expected` is not repeated here: the headline already says it.
        let mut notes = Vec::new();
        if let Some(received) = &self.received {
            let on = self
                .connection
                .as_deref()
                .map(|name| format!(" on {name}"))
                .unwrap_or_default();
            if let ([only], None) = (received.as_slice(), &self.connection) {
                // A management call's answer: one response, no connection.
                notes.push(format!("{pad} {} {only}", note("= received:")));
            } else if received.is_empty() {
                notes.push(format!("{pad} {} nothing{on}", note("= received:")));
            } else {
                let total = received.len() + self.received_more;
                let plural = if total == 1 { "" } else { "s" };
                notes.push(format!(
                    "{pad} {} {total} message{plural}{on}, oldest first:",
                    note("= received:")
                ));
                for message in received {
                    notes.push(format!("{pad}     {message}"));
                }
                if self.received_more > 0 {
                    notes.push(format!("{pad}     … and {} more", self.received_more));
                }
            }
        }
        if let Some(hint) = &self.hint {
            notes.push(format!("{pad} {} {hint}", note("= hint:")));
        }
        if !notes.is_empty() {
            out.push_str(&gutter);
            out.push('\n');
            for line in notes {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// Replaces every known secret in the failure's texts.
    pub(crate) fn redact(&mut self, secrets: &Secrets) {
        if secrets.is_empty() {
            return;
        }
        let redact = |text: &mut String| *text = secrets.redact(text);
        redact(&mut self.message);
        redact(&mut self.source_line);
        for text in [
            &mut self.label,
            &mut self.expected,
            &mut self.hint,
            &mut self.connection,
        ]
        .into_iter()
        .flatten()
        {
            redact(text);
        }
        for message in self.received.iter_mut().flatten() {
            redact(message);
        }
    }
}

impl ScriptResult {
    /// Replaces every known secret in every text of the result (test names included).
    pub(crate) fn redact(&mut self, secrets: &Secrets) {
        for file in &mut self.files {
            for test in &mut file.tests {
                test.name = secrets.redact(&test.name);
                if let Some(failure) = &mut test.failure {
                    failure.redact(secrets);
                }
            }
        }
    }

    /// How many tests passed.
    pub(crate) fn passed(&self) -> usize {
        self.tests().filter(|test| test.passed()).count()
    }

    /// How many tests failed.
    pub(crate) fn failed(&self) -> usize {
        self.tests().filter(|test| !test.passed()).count()
    }

    /// Every test of every file.
    pub(crate) fn tests(&self) -> impl Iterator<Item = &TestResult> {
        self.files.iter().flat_map(|file| file.tests.iter())
    }
}

/// `text` cut to `max` characters, with `…` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure::new(
            FailureKind::Expectation,
            "expectation failed: json $.a == 1",
            "t.wsp",
            Span::new(3, 1, 6),
            "expect json $.a == 1 within 1s",
        )
        .label("nothing matched within 1s")
    }

    #[test]
    fn renders_like_a_syntax_error_with_the_received_messages() {
        let messages = (1..=7).map(|i| format!("text {i}")).collect();
        let rendered = failure().received("`alice`", messages).render(false);
        assert_eq!(
            rendered,
            "error: expectation failed: json $.a == 1
 --> t.wsp:3:1
  |
3 | expect json $.a == 1 within 1s
  | ^^^^^^ nothing matched within 1s
  |
  = received: 7 messages on `alice`, oldest first:
      text 1
      text 2
      text 3
      text 4
      text 5
      … and 2 more
"
        );
    }

    #[test]
    fn says_when_nothing_arrived_and_cuts_long_messages() {
        let rendered = failure().received("`alice`", vec![]).render(false);
        assert!(
            rendered.ends_with("  = received: nothing on `alice`\n"),
            "{rendered}"
        );
        let long = failure().received("x", vec!["y".repeat(500)]);
        let shown = &long.received.as_ref().unwrap()[0];
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn redaction_reaches_every_text() {
        let mut secrets = Secrets::new(true);
        secrets.add("hunter22");
        let mut failure = failure()
            .expected("text hunter22")
            .received("`a`", vec!["text hunter22".into()]);
        failure.redact(&secrets);
        let rendered = failure.render(false);
        assert!(!rendered.contains("hunter22"), "{rendered}");
        assert!(rendered.contains("<redacted>"));
    }
}
