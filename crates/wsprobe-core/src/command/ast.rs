//! The syntax tree of the command language: what a script or a REPL line says, with the
//! source position of every part so that runtime failures can point at the script.
//!
//! Values that may hold `${NAME}` are [`Template`]s (resolved at run time); JSON paths and
//! regexes are compiled at parse time, so a bad one is a syntax error, not a test failure.

use std::fmt;
use std::time::Duration;

use serde_json_path::JsonPath;

pub use crate::options::EchoPolicy;

use super::error::{Diagnostic, render_diagnostic};
use super::template::{JsonTemplate, ResolveError, Template, Variables};

/// A position in the source: 1-based line and column (counted in characters), and the
/// length of the spanned text in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column of the first character, in characters (not bytes).
    pub column: usize,
    /// Length in characters; 0 only for an empty value at the end of a line.
    pub len: usize,
}

impl Span {
    /// A span of `len` characters at `line`:`column`.
    pub fn new(line: usize, column: usize, len: usize) -> Self {
        Self { line, column, len }
    }

    /// The span from the start of `self` to the end of `other` (on the same line).
    pub fn to(self, other: Span) -> Span {
        let end = other.column + other.len;
        Span {
            line: self.line,
            column: self.column,
            len: end.saturating_sub(self.column),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// `value`, written at `span`.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

/// A whole script file, parsed.
///
/// Commands before the first `test` line form an implicit test named after the file, so
/// a file without any `test` line is one test case; an empty preamble adds no test.
#[derive(Clone, Debug)]
pub struct Script {
    /// The file name as given to [`parse_script`](super::parse_script), for messages.
    pub file_name: String,
    /// The test cases, in file order.
    pub tests: Vec<Test>,
    /// The source text, for showing lines in messages.
    pub(crate) source: String,
}

impl Script {
    /// The text of a 1-based line of the source (empty past the end).
    pub fn source_line(&self, line: usize) -> &str {
        self.source
            .lines()
            .nth(line.wrapping_sub(1))
            .unwrap_or_default()
    }

    /// Renders a message about a place in this script rustc-style (`--> file:line:col`,
    /// the line, carets), e.g. a failed expectation or an undefined variable.
    pub fn render(&self, diagnostic: &Diagnostic, color: bool) -> String {
        render_diagnostic(
            diagnostic,
            self.source_line(diagnostic.span.line),
            Some(&self.file_name),
            color,
        )
    }

    /// Every statement of the file, in order, across tests.
    pub fn statements(&self) -> impl Iterator<Item = &Statement> {
        self.tests.iter().flat_map(|test| test.statements.iter())
    }

    /// The `${NAME}`s that `vars` does not define and no `capture` above them sets, as
    /// errors that point at them — for a check before anything connects.
    pub fn undefined_variables(&self, vars: &dyn Variables) -> Vec<ResolveError> {
        let mut captured: Vec<&str> = Vec::new();
        let mut undefined = Vec::new();
        for statement in self.statements() {
            for (name, span) in statement.variables() {
                if !captured.contains(&name) && vars.get(name).is_none() {
                    undefined.push(ResolveError::UndefinedVariable {
                        name: name.to_owned(),
                        span,
                    });
                }
            }
            if let Command::Capture(capture) = &statement.command {
                captured.push(&capture.name.value);
            }
        }
        undefined
    }
}

/// One test case: a `test "name"` line and the commands after it, up to the next `test`.
#[derive(Clone, Debug)]
pub struct Test {
    /// The test's name (for an implicit test: the file name without directory and extension).
    pub name: String,
    /// The `test` line (for an implicit test: the span of its first command).
    pub span: Span,
    /// True for the commands before the first `test` line.
    pub implicit: bool,
    /// The commands, in order.
    pub statements: Vec<Statement>,
}

/// One command line: an optional `@name` target and the command.
#[derive(Clone, Debug)]
pub struct Statement {
    /// `@name`: the connection this command acts on. `None`: the connection opened by the
    /// most recent `connect` (in a script), or the REPL's connection.
    pub target: Option<Spanned<String>>,
    /// What to do.
    pub command: Command,
    /// The command keyword (`send`, `expect`, …) — where messages about the line point.
    pub keyword: Span,
    /// The whole line, from `@name` or the keyword to its last argument (no comment).
    pub span: Span,
}

impl Statement {
    /// A line typed without a leading `/`: a text frame sent as typed, with no `${…}`
    /// read in it.
    pub fn text_as_typed(text: String) -> Statement {
        let span = Span::new(1, 1, text.chars().count());
        Statement {
            target: None,
            command: Command::Text(Template::literal(text, span)),
            keyword: span,
            span,
        }
    }

    /// Every `${NAME}` the statement uses, in source order, with its span.
    pub fn variables(&self) -> Vec<(&str, Span)> {
        let mut templates: Vec<&Template> = Vec::new();
        match &self.command {
            Command::Connect(connect) => {
                templates.extend(&connect.url);
                for option in &connect.options {
                    templates.extend(match &option.value {
                        ConnectOption::Auth(secret) | ConnectOption::ApiKey(secret) => {
                            Some(&secret.0)
                        }
                        ConnectOption::Header { value, .. }
                        | ConnectOption::Subprotocol(value)
                        | ConnectOption::Origin(value) => Some(value),
                        ConnectOption::Reconnect { .. } => None,
                    });
                }
            }
            Command::Send { route, payload } => {
                templates.push(route);
                templates.extend(payload.as_ref().map(Payload::template));
            }
            Command::Post {
                connection_id,
                payload,
            } => {
                templates.push(connection_id);
                templates.extend(payload.as_ref().map(Payload::template));
            }
            Command::Get { connection_id } | Command::Delete { connection_id } => {
                templates.push(connection_id)
            }
            Command::Text(text) => templates.push(text),
            Command::Ping(data) | Command::Pong(data) => templates.extend(data),
            Command::Close { reason, .. } => templates.extend(reason),
            Command::KeepAlive(KeepAliveCommand::Every { text, .. }) => templates.extend(text),
            Command::Expect(expect) => match &expect.expectation {
                Expectation::Message(matcher) | Expectation::Response(matcher) => {
                    templates.extend(matcher.value.template())
                }
                Expectation::Nothing | Expectation::Status(_) => {}
            },
            Command::Binary(_)
            | Command::Capture(_)
            | Command::Sleep(_)
            | Command::KeepAlive(_)
            | Command::Echo(_)
            | Command::Pretty(_)
            | Command::Help(_)
            | Command::Quit => {}
        }
        templates
            .into_iter()
            .flat_map(|template| template.variables())
            .collect()
    }
}

/// One command. Durations, codes, paths and regexes are checked at parse time.
#[derive(Clone, Debug)]
pub enum Command {
    /// `connect [NAME] [URL]` and its indented options.
    Connect(Connect),
    /// `send ROUTE [PAYLOAD]`: a route-tagged JSON message.
    Send {
        /// The route, put in the route field (`--route-field`, default `action`).
        route: Template,
        /// The body: JSON (an object is merged into the message) or text (a JSON string).
        payload: Option<Payload>,
    },
    /// `text TEXT`: a text frame with the rest of the line, verbatim (may be empty).
    Text(Template),
    /// `binary HEX` or `binary base64:DATA`: a binary frame (may be empty).
    Binary(Vec<u8>),
    /// `ping [DATA]`: a ping frame with the rest of the line as its payload.
    Ping(Option<Template>),
    /// `pong [DATA]`: an unsolicited pong frame (a heartbeat), as wscat's `/pong`.
    Pong(Option<Template>),
    /// `close [CODE [REASON]]`: start the closing handshake (code 1000 when omitted).
    Close {
        /// The close code, checked to be one a client may send.
        code: Option<Spanned<u16>>,
        /// The reason: the rest of the line after the code (at most 123 bytes).
        reason: Option<Template>,
    },
    /// `expect …`: wait for a message, or check the last management call.
    Expect(Expect),
    /// `capture NAME = json PATH | regex REGEX`: wait for a message that has the value and
    /// store it as `${NAME}`.
    Capture(Capture),
    /// `sleep DUR` (alias `wait DUR`): pause.
    Sleep(Spanned<Duration>),
    /// `post CONNECTION_ID [PAYLOAD]`: send a message through the `@connections` API.
    Post {
        /// The connection to post to.
        connection_id: Template,
        /// The message (as for `send`: JSON, or text sent as is).
        payload: Option<Payload>,
    },
    /// `get CONNECTION_ID`: read a connection's details through the `@connections` API.
    Get {
        /// The connection to read.
        connection_id: Template,
    },
    /// `delete CONNECTION_ID`: disconnect a client through the `@connections` API.
    Delete {
        /// The connection to close.
        connection_id: Template,
    },
    /// `keepalive DUR [TEXT]`, `keepalive off`, or `keepalive` alone: keep the connection
    /// alive, stop, or tell how many keepalives went out and were answered.
    KeepAlive(KeepAliveCommand),
    /// `echo body|full|off`: what the echo of a route-tagged send looks like from now on.
    Echo(Spanned<EchoPolicy>),
    /// `pretty on|off` (REPL only): pretty-print JSON messages.
    Pretty(bool),
    /// `help [COMMAND]` (REPL only).
    Help(Option<Spanned<String>>),
    /// `quit` (alias `exit`; REPL only).
    Quit,
}

impl Command {
    /// Whether the command acts on a connection — and so may take `@name`, and needs a
    /// `connect` above it in a script: `send`, `text`, `binary`, `ping`, `close`,
    /// `keepalive`, `capture`, and `expect` of a message or of `nothing`.
    pub fn uses_connection(&self) -> bool {
        match self {
            Command::Send { .. }
            | Command::Text(_)
            | Command::Binary(_)
            | Command::Ping(_)
            | Command::Pong(_)
            | Command::Close { .. }
            | Command::KeepAlive(_)
            | Command::Capture(_) => true,
            Command::Expect(expect) => matches!(
                expect.expectation,
                Expectation::Message(_) | Expectation::Nothing
            ),
            _ => false,
        }
    }

    /// The keyword that starts this command (`wait` is reported as `sleep`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::Connect(_) => "connect",
            Command::Send { .. } => "send",
            Command::Text(_) => "text",
            Command::Binary(_) => "binary",
            Command::Ping(_) => "ping",
            Command::Pong(_) => "pong",
            Command::Close { .. } => "close",
            Command::Expect(_) => "expect",
            Command::Capture(_) => "capture",
            Command::Sleep(_) => "sleep",
            Command::KeepAlive(_) => "keepalive",
            Command::Post { .. } => "post",
            Command::Get { .. } => "get",
            Command::Delete { .. } => "delete",
            Command::Echo(_) => "echo",
            Command::Pretty(_) => "pretty",
            Command::Help(_) => "help",
            Command::Quit => "quit",
        }
    }
}

/// `connect [NAME] [URL]` with its options.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The connection's name, for `@name` (`None`: unnamed).
    pub name: Option<Spanned<String>>,
    /// The URL (`None`: the `--url` of `wsprobe run`).
    pub url: Option<Template>,
    /// Indented option lines below the `connect`, in order.
    pub options: Vec<Spanned<ConnectOption>>,
    /// Set when the next line is `expect connect-refused [STATUS]`: the handshake must be
    /// refused (with that HTTP status, if given), and succeeding is the failure.
    pub expect_refused: Option<ExpectRefused>,
}

/// `expect connect-refused [STATUS]`, attached to the `connect` it follows.
#[derive(Clone, Debug)]
pub struct ExpectRefused {
    /// The HTTP status the refusal must have (`None`: any refusal).
    pub status: Option<Spanned<u16>>,
    /// The `expect connect-refused …` line.
    pub span: Span,
}

/// An indented option line under `connect`.
#[derive(Clone, Debug)]
pub enum ConnectOption {
    /// `auth VALUE`: the `Authorization` header (a secret: redacted when printed).
    Auth(SecretTemplate),
    /// `api-key VALUE`: the `X-API-Key` header (a secret: redacted when printed).
    ApiKey(SecretTemplate),
    /// `header Name: value`: an extra handshake header.
    Header {
        /// The header name (no variables).
        name: String,
        /// The value.
        value: Template,
    },
    /// `subprotocol NAME`: a `Sec-WebSocket-Protocol` to offer (repeatable).
    Subprotocol(Template),
    /// `origin URL`: the `Origin` header.
    Origin(Template),
    /// `reconnect [always] [max N]`: reopen the connection when the server ends it with
    /// 1001 or 1006 (`always`: however it ends), at most N consecutive failed attempts.
    Reconnect {
        /// Reconnect whatever the close code.
        always: bool,
        /// `max N`: consecutive failed attempts before giving up (`None`: the default).
        max: Option<Spanned<u32>>,
    },
}

/// What a `keepalive` line does.
#[derive(Clone, Debug)]
pub enum KeepAliveCommand {
    /// `keepalive`: tell the counts.
    Show,
    /// `keepalive off`: stop.
    Off,
    /// `keepalive DUR [TEXT]`: a ping (or the text frame) after every DUR without sending.
    Every {
        /// How long the connection may stay silent.
        every: Spanned<Duration>,
        /// The text frame to send instead of a ping (rest of the line).
        text: Option<Template>,
    },
}

/// A template that holds a secret (an `auth` or `api-key` value): `Debug` shows no text.
#[derive(Clone)]
pub struct SecretTemplate(pub Template);

impl fmt::Debug for SecretTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

/// The payload of `send` and `post`.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A JSON value (starts with `{`, `[` or `"`, or the whole rest of the line is JSON).
    Json(JsonTemplate),
    /// Anything else: the rest of the line, verbatim, sent as a JSON string body.
    Text(Template),
}

impl Payload {
    /// Where the payload was written.
    pub fn span(&self) -> Span {
        self.template().span
    }

    /// The payload's value with variables filled in: JSON as JSON, text as a JSON string.
    pub fn resolve(&self, vars: &dyn Variables) -> Result<serde_json::Value, ResolveError> {
        match self {
            Payload::Json(json) => json.resolve(vars),
            Payload::Text(text) => text.resolve(vars).map(serde_json::Value::String),
        }
    }

    /// The payload as written, as a template.
    pub fn template(&self) -> &Template {
        match self {
            Payload::Json(json) => &json.template,
            Payload::Text(text) => text,
        }
    }
}

/// `expect [next] WHAT [within DUR]`.
#[derive(Clone, Debug)]
pub struct Expect {
    /// `next`: only the next unconsumed message may match (no scan).
    pub next: bool,
    /// What is expected.
    pub expectation: Expectation,
    /// `within DUR` (`None`: the default, `--timeout`).
    pub within: Option<Spanned<Duration>>,
}

impl Expect {
    /// How long to wait: `within`, or `default` (`--timeout`).
    pub fn timeout(&self, default: Duration) -> Duration {
        self.within.as_ref().map_or(default, |within| within.value)
    }
}

/// What an `expect` line checks.
#[derive(Clone, Debug)]
pub enum Expectation {
    /// A message that satisfies the matcher.
    Message(Spanned<Matcher>),
    /// `nothing`: no unconsumed text or binary message is waiting, and none arrives
    /// within the wait.
    Nothing,
    /// `status CODE`: the HTTP status of the last `post`/`get`/`delete`.
    Status(Spanned<u16>),
    /// `response MATCHER`: the body of the last `post`/`get`/`delete`, matched as if it
    /// were a text message.
    Response(Spanned<Matcher>),
}

/// What a message must be for an `expect` to accept it.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// `echo`: the echo of the last route-tagged send, under the echo policy.
    Echo,
    /// `any`: any text or binary message.
    Any,
    /// `json VALUE`: a text message whose JSON equals VALUE (semantic equality).
    Json(JsonTemplate),
    /// `json-subset OBJECT`: a text message whose JSON contains VALUE (see the docs).
    JsonSubset(JsonTemplate),
    /// `json PATH PREDICATE`: a text message whose JSON, queried with PATH, satisfies it.
    JsonPath {
        /// The compiled path.
        path: JsonPathExpr,
        /// What the selected value must satisfy.
        predicate: Predicate,
    },
    /// `text …`: a text message.
    Text(TextPredicate),
    /// `binary HEX|base64:DATA`: a binary message with exactly these bytes.
    Binary(Vec<u8>),
    /// `pong [DATA]`: a pong frame (with this payload, if given).
    Pong(Option<Template>),
    /// `closed [CODE]`: a close frame (with this code, if given).
    Closed(Option<Spanned<u16>>),
}

impl Matcher {
    /// The template of the value the matcher compares with, if it has one.
    pub fn template(&self) -> Option<&Template> {
        match self {
            Matcher::Json(json) | Matcher::JsonSubset(json) => Some(&json.template),
            Matcher::JsonPath {
                predicate: Predicate::Compare { value, .. } | Predicate::Contains(value),
                ..
            } => Some(&value.template),
            Matcher::Text(TextPredicate::Equals(text) | TextPredicate::Contains(text)) => {
                Some(text)
            }
            Matcher::Pong(data) => data.as_ref(),
            Matcher::Echo
            | Matcher::Any
            | Matcher::JsonPath { .. }
            | Matcher::Text(TextPredicate::Matches(_))
            | Matcher::Binary(_)
            | Matcher::Closed(_) => None,
        }
    }
}

/// A comparison on the values a JSON path selects.
#[derive(Clone, Debug)]
pub enum Predicate {
    /// `== != < > <= >= VALUE`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// The value on the right.
        value: JsonTemplate,
    },
    /// `contains VALUE`: a substring of a string, an element of an array, a key of an object.
    Contains(JsonTemplate),
    /// `matches REGEX`: a string the regex finds a match in.
    Matches(RegexExpr),
    /// `exists`: the path selects at least one value.
    Exists,
    /// `not exists`: the path selects nothing.
    NotExists,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CompareOp {
    /// The operator as written: `==`, `<=`, …
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Gt => ">",
            CompareOp::Le => "<=",
            CompareOp::Ge => ">=",
        }
    }
}

/// What `expect text` checks.
#[derive(Clone, Debug)]
pub enum TextPredicate {
    /// `text VALUE`: exactly this text.
    Equals(Template),
    /// `text contains VALUE`.
    Contains(Template),
    /// `text matches REGEX`.
    Matches(RegexExpr),
}

/// `capture NAME = SOURCE [within DUR]` (or `capture next …`).
#[derive(Clone, Debug)]
pub struct Capture {
    /// `next`: only the next unconsumed message may provide the value.
    pub next: bool,
    /// The variable to set.
    pub name: Spanned<String>,
    /// Where the value comes from.
    pub source: Spanned<CaptureSource>,
    /// `within DUR` (`None`: the default, `--timeout`).
    pub within: Option<Spanned<Duration>>,
}

impl Capture {
    /// How long to wait: `within`, or `default` (`--timeout`).
    pub fn timeout(&self, default: Duration) -> Duration {
        self.within.as_ref().map_or(default, |within| within.value)
    }
}

/// Where a capture takes its value from.
#[derive(Clone, Debug)]
pub enum CaptureSource {
    /// `json PATH`: the selected value (a string as is, anything else as JSON text).
    Json(JsonPathExpr),
    /// `regex REGEX`: the first capture group of a match in a text message (or the whole
    /// match if the regex has no group).
    Regex(RegexExpr),
}

/// An RFC 9535 JSON path, compiled, with its source text.
#[derive(Clone, Debug)]
pub struct JsonPathExpr {
    /// The path as written.
    pub source: String,
    /// The compiled path.
    pub path: JsonPath,
}

impl fmt::Display for JsonPathExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A compiled regex with its source text.
#[derive(Clone, Debug)]
pub struct RegexExpr {
    /// The regex as written (without `/…/` or quotes).
    pub source: String,
    /// The compiled regex.
    pub regex: regex::Regex,
}

impl fmt::Display for RegexExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written back in the form that reads the same whatever the regex holds.
        if self.source.is_empty() || self.source.chars().any(char::is_whitespace) {
            f.write_str(&format!("/{}/", self.source.replace('/', "\\/")))
        } else {
            f.write_str(&self.source)
        }
    }
}

/// What one line typed at the REPL prompt means.
#[derive(Clone, Debug)]
// One value per typed line, consumed at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ReplInput {
    /// An empty line: do nothing.
    Empty,
    /// A line without a leading `/` (or with `//`, one slash removed): send it as a text
    /// frame, as typed.
    Text(String),
    /// A `/command` line.
    Command(Statement),
}
