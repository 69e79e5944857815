//! `connect --record FILE.wsp`: the prompt session, saved as a script that `wsprobe run`
//! replays.
//!
//! The driver tells the [`Recorder`] about each line it starts on the engine (prompt-only
//! commands — `/help`, `/pretty`, `/quit` — never start, and lines that do not parse
//! never run, so neither is recorded), how it went, and every frame that arrives. When the
//! session ends, however it ends, [`Recorder::write`] renders the script
//! ([`Recording::render`], pure) and writes it whole through [`ReportFile`]:
//!
//! - a header comment: when, against what (the URL redacted), how to replay;
//! - `connect ${WS_URL}` with the connection's options, credentials as variables
//!   (`${WSPROBE_AUTH}`, `${WSPROBE_API_KEY}`, `${WSPROBE_HEADER_NAME}`), never values;
//! - each line as the script command it is (`/send …` → `send …`, a plain line → `text …`);
//!   a line that failed at the prompt is kept as a comment;
//! - after each send, an `expect` per message that arrived before the next send
//!   ([`expectation`]): `expect echo` for the echo of a `send`, `json-subset` with the stable
//!   fields of a JSON message that carries volatile ones ([`stable`]), `text` otherwise; the
//!   pong of a `ping`, the close answering a `close` or ending the session. When the user
//!   typed their own `/expect` or `/capture` after a send, that send gets no generated
//!   expectation: theirs check the answer (and two would race for the same message).
//!
//! Memory stays bounded: a step keeps at most [`MAX_FRAMES_PER_STEP`] messages, and a
//! message longer than [`MAX_EXACT`] bytes is kept only as "something arrived"
//! (`expect any`).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::Value;
use url::Url;
use wsprobe_core::command::engine::{Done, Fault};
use wsprobe_core::command::{Command, EchoPolicy, ReplInput, parse_repl_line};
use wsprobe_core::message::{RouteFields, echo_matches};
use wsprobe_core::options::{ConnectOptions, DEFAULT_RECONNECT_MAX};
use wsprobe_core::reconnect::ReconnectWhen;
use wsprobe_core::report_file::ReportFile;
use wsprobe_core::secret::{REDACTED, header_looks_secret};
use wsprobe_core::session::{Frame, Outgoing};

/// At most this many messages are kept (and expected) per send.
pub(crate) const MAX_FRAMES_PER_STEP: usize = 32;
/// A message longer than this (text bytes, binary bytes) is expected as `any`.
pub(crate) const MAX_EXACT: usize = 16 * 1024;

/// The variable a recorded `auth` option reads (the one `--auth` reads too).
const AUTH_VAR: &str = "WSPROBE_AUTH";
/// The variable a recorded `api-key` option reads (the one `--api-key` reads too).
const API_KEY_VAR: &str = "WSPROBE_API_KEY";

/// The session being recorded. Cheap to clone: the driver and `connect` share it.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    file: Arc<Mutex<Option<ReportFile>>>,
    recording: Arc<Mutex<Recording>>,
}

/// What was recorded: everything [`Recording::render`] needs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recording {
    /// When the session started, RFC 3339.
    pub(crate) started: String,
    /// The recording's file name, for the replay hint.
    pub(crate) file_name: String,
    /// The URL, redacted.
    pub(crate) url: String,
    /// The `connect` block's option lines, credentials as variables.
    pub(crate) options: Vec<String>,
    /// Header comment lines about flags a script cannot carry (`--sigv4`, `--route-field`).
    pub(crate) notes: Vec<String>,
    /// The echo policy at the start, when not the default.
    pub(crate) echo: Option<EchoPolicy>,
    /// `--keepalive` as the script's `keepalive` line, run right after the `connect`.
    pub(crate) keepalive: Option<String>,
    /// Known secret values and the `${VAR}` each stands for (longest first).
    pub(crate) secrets: Vec<(String, String)>,
    /// The variables the replay needs, in the order of the options.
    pub(crate) vars: Vec<String>,
    /// The lines run, in order.
    pub(crate) steps: Vec<Step>,
    /// Set when the session is over: frames after it (the answer to our closing) are not
    /// part of the recording.
    pub(crate) stopped: bool,
}

/// One line run at the prompt.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// The script command (`send send "hi"`, `text hello`).
    pub(crate) command: String,
    pub(crate) kind: StepKind,
    pub(crate) outcome: Outcome,
    /// The messages that arrived while this was the latest send.
    pub(crate) arrived: Vec<Arrived>,
    /// Messages beyond [`MAX_FRAMES_PER_STEP`].
    pub(crate) more: usize,
    /// Whether its echo has arrived (and is among `arrived`).
    pub(crate) echo_seen: bool,
}

/// What kind of line a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// A frame goes out (`send`, `text`, `binary`, `ping`, `pong`, `close`).
    Send,
    /// `expect` or `capture`: the user checks the answer themselves.
    Check,
    /// Anything else (`wait`, `echo`, `post`, …).
    Other,
}

/// How a step went.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Still running when the session ended.
    Pending,
    /// It did what it says. For a send: the frame, and the echo a route-tagged send expects.
    Done {
        sent: Option<Outgoing>,
        echo: Option<Value>,
    },
    /// It failed: why, in one line.
    Failed(String),
}

/// A message that arrived, as the recording keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arrived {
    Text(String),
    Binary(Vec<u8>),
    /// Too long to expect exactly.
    Large,
    Pong,
    Close(u16),
    Dropped(String),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Recorder {
    /// Claims `path` (a path that cannot be written is an error before anything connects)
    /// and notes what the session connects to and with which options.
    pub(crate) fn create(
        path: &Path,
        url: &Url,
        options: &ConnectOptions,
    ) -> std::io::Result<Self> {
        let file = ReportFile::create(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(Some(file))),
            recording: Arc::new(Mutex::new(Recording {
                file_name: path.file_name().map_or_else(
                    || "FILE.wsp".to_owned(),
                    |name| name.to_string_lossy().into_owned(),
                ),
                ..Recording::new(url, options)
            })),
        })
    }

    /// The driver starts `line` on the engine.
    pub(crate) fn start(&self, line: &str) {
        let mut recording = lock(&self.recording);
        if recording.stopped {
            return;
        }
        if let Some((command, kind)) = script_command(line) {
            recording.steps.push(Step {
                command,
                kind,
                outcome: Outcome::Pending,
                arrived: Vec::new(),
                more: 0,
                echo_seen: false,
            });
        }
    }

    /// The line started last has finished with `result`.
    pub(crate) fn done(&self, result: &Result<Done, Fault>) {
        let mut recording = lock(&self.recording);
        let Some(step) = recording
            .steps
            .iter_mut()
            .rev()
            .find(|step| step.outcome == Outcome::Pending)
        else {
            return;
        };
        step.outcome = match result {
            Ok(Done::Sent { frame, echo, .. }) => Outcome::Done {
                sent: Some(frame.clone()),
                echo: echo.clone(),
            },
            Ok(_) => Outcome::Done {
                sent: None,
                echo: None,
            },
            Err(Fault::Resolve(error)) => Outcome::Failed(error.to_string()),
            Err(Fault::Failed(failed)) => Outcome::Failed(failed.message.clone()),
        };
    }

    /// A frame arrived: it belongs to the latest send.
    pub(crate) fn arrived(&self, frame: &Frame) {
        let mut recording = lock(&self.recording);
        if recording.stopped {
            return;
        }
        let kept = match frame {
            Frame::Text(text) if text.len() > MAX_EXACT => Arrived::Large,
            Frame::Binary(bytes) if bytes.len() > MAX_EXACT => Arrived::Large,
            Frame::Text(text) => Arrived::Text(text.clone()),
            Frame::Binary(bytes) => Arrived::Binary(bytes.clone()),
            Frame::Pong(_) => Arrived::Pong,
            Frame::Ping(_) => return,
            Frame::Close { code, .. } => Arrived::Close(*code),
            Frame::Dropped { reason } => Arrived::Dropped(reason.clone()),
        };
        // The echo of a send goes with it even when later lines ran before it arrived
        // (lines given with -x run at once); anything else goes with the latest send.
        let echo_of = match frame {
            Frame::Text(text) => recording.steps.iter().position(|step| {
                !step.echo_seen
                    && matches!(&step.outcome, Outcome::Done { echo: Some(expected), .. }
                        if echo_matches(expected, text))
            }),
            _ => None,
        };
        let step = match echo_of {
            Some(index) => {
                let step = &mut recording.steps[index];
                step.echo_seen = true;
                step
            }
            None => {
                let Some(step) = recording
                    .steps
                    .iter_mut()
                    .rev()
                    .find(|step| step.kind == StepKind::Send)
                else {
                    return;
                };
                step
            }
        };
        if step.arrived.len() < MAX_FRAMES_PER_STEP || frame.is_ending() {
            step.arrived.push(kept);
        } else {
            step.more += 1;
        }
    }

    /// The session is over: what arrives from now on (the answer to our closing) is not
    /// part of it.
    pub(crate) fn stop(&self) {
        lock(&self.recording).stopped = true;
    }

    /// Writes the script, whole; a second call does nothing.
    pub(crate) fn write(&self) -> std::io::Result<()> {
        let Some(file) = lock(&self.file).take() else {
            return Ok(());
        };
        let text = lock(&self.recording).render();
        file.write(text.as_bytes())
    }

    /// The path being recorded to (for messages), if not written yet.
    pub(crate) fn path(&self) -> Option<std::path::PathBuf> {
        lock(&self.file).as_ref().map(|file| file.path().to_owned())
    }
}

/// The script command for a line typed at the prompt, and its kind; `None` for an empty
/// line (a line that does not parse never runs).
fn script_command(line: &str) -> Option<(String, StepKind)> {
    match parse_repl_line(line).ok()? {
        ReplInput::Empty => None,
        // Sent as typed at the prompt; in a script `${` would be a variable.
        ReplInput::Text(text) => Some((
            format!("text {}", text.replace("${", "$${")),
            StepKind::Send,
        )),
        ReplInput::Command(statement) => {
            let kind = match statement.command {
                Command::Send { .. }
                | Command::Text(_)
                | Command::Binary(_)
                | Command::Ping(_)
                | Command::Pong(_)
                | Command::Close { .. } => StepKind::Send,
                Command::Expect(_) | Command::Capture(_) => StepKind::Check,
                _ => StepKind::Other,
            };
            let command = line.trim().strip_prefix('/').unwrap_or(line).trim_start();
            Some((command.to_owned(), kind))
        }
    }
}

impl Recording {
    fn new(url: &Url, options: &ConnectOptions) -> Self {
        let mut lines = Vec::new();
        let mut secrets = Vec::new();
        let mut notes = Vec::new();
        if let Some(auth) = &options.auth {
            lines.push(format!("auth ${{{AUTH_VAR}}}"));
            secrets.push((auth.expose().to_owned(), format!("${{{AUTH_VAR}}}")));
            // The token alone (`Bearer xyz` → `xyz`) has no variable: it is redacted.
            if let Some((_scheme, token)) = auth.expose().trim().split_once(' ') {
                secrets.push((token.trim().to_owned(), REDACTED.to_owned()));
            }
        }
        if let Some(key) = &options.api_key {
            lines.push(format!("api-key ${{{API_KEY_VAR}}}"));
            secrets.push((key.expose().to_owned(), format!("${{{API_KEY_VAR}}}")));
        }
        for header in &options.headers {
            if header_looks_secret(&header.name) {
                let var = header_var(&header.name);
                lines.push(format!("header {}: ${{{var}}}", header.name));
                secrets.push((header.value.clone(), format!("${{{var}}}")));
            } else {
                lines.push(format!("header {}: {}", header.name, header.value));
            }
        }
        for protocol in &options.subprotocols {
            lines.push(format!("subprotocol {protocol}"));
        }
        if let Some(origin) = &options.origin {
            lines.push(format!("origin {origin}"));
        }
        if options.signing.is_some() {
            notes.push("The handshake was signed with SigV4: replay with the same --sigv4 or --sigv4-query flag and AWS credentials.".to_owned());
        }
        if let Some(policy) = &options.session.reconnect {
            let mut line = "reconnect".to_owned();
            if policy.when == ReconnectWhen::Always {
                line.push_str(" always");
            }
            if policy.max_attempts != DEFAULT_RECONNECT_MAX {
                line.push_str(&format!(" max {}", policy.max_attempts));
            }
            lines.push(line);
        }
        let keepalive = options.session.keepalive.as_ref().map(|keepalive| {
            let every = keepalive.every.as_millis();
            let mut line = if every % 1000 == 0 {
                format!("keepalive {}s", every / 1000)
            } else {
                format!("keepalive {every}ms")
            };
            if let Some(text) = &keepalive.message {
                line.push(' ');
                line.push_str(text);
            }
            line
        });
        if !options.session.on_connect.is_empty() {
            let flags: Vec<String> = options
                .session
                .on_connect
                .iter()
                .map(|line| format!("--on-connect '{line}'"))
                .collect();
            notes.push(format!(
                "Recorded with {}: replay with the same flags (what they sent and received is not in the script).",
                flags.join(" ")
            ));
        }
        if options.fields != RouteFields::default() {
            notes.push(format!(
                "Recorded with --route-field {} --body-field {}: replay with the same flags.",
                options.fields.route_field, options.fields.body_field
            ));
        }
        let vars = secrets
            .iter()
            .filter_map(|(_, var)| var.strip_prefix("${")?.strip_suffix('}').map(str::to_owned))
            .collect();
        // Longest first, so a value that contains another is replaced whole; values too
        // short to be real secrets would replace half of every line.
        secrets.retain(|(value, _)| value.len() >= 4);
        secrets.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        Self {
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            file_name: "FILE.wsp".to_owned(),
            url: wsprobe_core::client::redacted_url(url),
            options: lines,
            notes,
            echo: (options.echo != EchoPolicy::default()).then_some(options.echo),
            keepalive,
            secrets,
            vars,
            steps: Vec::new(),
            stopped: false,
        }
    }

    /// Known secret values replaced by their variables.
    fn hide(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, var) in &self.secrets {
            out = out.replace(value, var);
        }
        out
    }

    /// The script.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "# Recorded by `wsprobe connect --record` on {}\n# against {}\n",
            self.started,
            self.hide(&self.url)
        ));
        let mut replay = format!("# Replay: wsprobe run {} --url URL", self.file_name);
        if !self.vars.is_empty() {
            replay.push_str(&format!(" (with {} set)", self.vars.join(", ")));
        }
        out.push_str(&replay);
        out.push('\n');
        for note in &self.notes {
            out.push_str(&format!("# {}\n", self.hide(note)));
        }
        out.push_str("\nconnect ${WS_URL}\n");
        for option in &self.options {
            out.push_str(&format!("  {option}\n"));
        }
        if let Some(keepalive) = &self.keepalive {
            out.push_str(&format!("{}\n", self.hide(keepalive)));
        }
        if let Some(echo) = self.echo {
            out.push_str(&format!("echo {}\n", echo_word(echo)));
        }
        for (index, step) in self.steps.iter().enumerate() {
            let command = self.hide(&step.command);
            match &step.outcome {
                Outcome::Failed(why) => {
                    let why = wsprobe_core::text::one_line(&self.hide(why));
                    out.push_str(&format!("# failed at the prompt ({why}): {command}\n"));
                    continue;
                }
                Outcome::Pending => {
                    out.push_str(&format!("# did not finish at the prompt: {command}\n"));
                    continue;
                }
                Outcome::Done { .. } => out.push_str(&format!("{command}\n")),
            }
            if step.kind != StepKind::Send {
                continue;
            }
            let checked_by_user = self.steps[index + 1..]
                .iter()
                .take_while(|later| later.kind != StepKind::Send)
                .any(|later| later.kind == StepKind::Check);
            if checked_by_user {
                continue;
            }
            for line in self.expectations(step) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// The expectations of one send, in the order the messages arrived.
    fn expectations(&self, step: &Step) -> Vec<String> {
        let Outcome::Done { sent, echo } = &step.outcome else {
            return Vec::new();
        };
        // The echo is the first text message the one echo verdict accepts.
        let mut echo_at = echo.as_ref().and_then(|expected| {
            step.arrived
                .iter()
                .position(|a| matches!(a, Arrived::Text(text) if echo_matches(expected, text)))
        });
        let pinged = matches!(sent, Some(Outgoing::Ping(_)));
        let mut lines = Vec::new();
        for (index, arrived) in step.arrived.iter().enumerate() {
            let line = match arrived {
                _ if echo_at == Some(index) => {
                    echo_at = None;
                    "expect echo".to_owned()
                }
                Arrived::Text(text) => format!("expect {}", self.hide(&expectation(text))),
                Arrived::Binary(bytes) => format!("expect binary {}", hex(bytes)),
                Arrived::Large => "expect any".to_owned(),
                Arrived::Pong if pinged => "expect pong".to_owned(),
                Arrived::Pong => continue,
                Arrived::Close(code) => format!("expect closed {code}"),
                Arrived::Dropped(reason) => format!(
                    "# the connection dropped: {}",
                    wsprobe_core::text::one_line(reason)
                ),
            };
            lines.push(line);
        }
        if step.more > 0 {
            lines.push(format!("# … and {} more messages, not recorded", step.more));
        }
        lines
    }
}

fn echo_word(policy: EchoPolicy) -> &'static str {
    match policy {
        EchoPolicy::Body => "body",
        EchoPolicy::Full => "full",
        EchoPolicy::Off => "off",
    }
}

/// `X-Session-Token` → `WSPROBE_HEADER_X_SESSION_TOKEN`.
fn header_var(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("WSPROBE_HEADER_{name}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The matcher (after `expect `) for a text message: `json-subset` of its stable fields
/// when it is a JSON object or array with volatile ones, `any` when nothing of it is
/// stable, `text "…"` otherwise. Variables' `${` is escaped.
pub(crate) fn expectation(text: &str) -> String {
    let escape = |s: String| s.replace("${", "$${");
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        match stable(&json) {
            Some(kept) if kept == json => {}
            Some(kept) if kept.is_object() => {
                return escape(format!("json-subset {kept}"));
            }
            _ => return "any".to_owned(),
        }
    }
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"));
    escape(format!("text {quoted}"))
}

/// The stable part of a JSON value: objects lose their volatile keys ([`key_is_volatile`])
/// and the members whose values are not stable; `None` for a volatile string
/// ([`value_is_volatile`]) and for an array with an unstable element (`json-subset`
/// compares arrays element by element, so an element cannot be left out).
pub(crate) fn stable(value: &Value) -> Option<Value> {
    match value {
        Value::Object(object) => {
            let kept = object
                .iter()
                .filter(|(key, _)| !key_is_volatile(key))
                .filter_map(|(key, value)| Some((key.clone(), stable(value)?)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Option<Vec<Value>> = items.iter().map(stable).collect();
            match kept {
                Some(kept) if kept == *items => Some(Value::Array(kept)),
                _ => None,
            }
        }
        Value::String(text) if value_is_volatile(text) => None,
        other => Some(other.clone()),
    }
}

/// Keys whose values change from one run to the next: ids (`id`, `connectionId`,
/// `requestId`, `*Id`, `*_id`), times (`*time*`, `*date*`, `ts`, `*At`, `*_at`, `epoch`)
/// and nonces.
pub(crate) fn key_is_volatile(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "id"
        || lower == "ts"
        || key.ends_with("Id")
        || key.ends_with("ID")
        || lower.ends_with("_id")
        || lower.ends_with("-id")
        || lower.contains("time")
        || lower.contains("date")
        || key.ends_with("At")
        || lower.ends_with("_at")
        || lower.contains("epoch")
        || lower.contains("nonce")
}

/// String values that look generated: ISO 8601 times (`2026-11-28T06:30:01Z`), UUIDs,
/// API Gateway style ids (base64 with padding: `L0SM9cOFvHcCIhw=`), long hex ids.
pub(crate) fn value_is_volatile(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let iso_time = bytes.len() >= 16
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && matches!(bytes[10], b'T' | b't' | b' ')
        && digits(11..13)
        && bytes[13] == b':';
    let uuid = bytes.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let trimmed = text.trim_end_matches('=');
    let padded = text.len() - trimmed.len();
    let base64_id = (1..=2).contains(&padded)
        && trimmed.len() >= 10
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '_' | '-'));
    let hex_id = text.len() >= 16
        && text.chars().all(|c| c.is_ascii_hexdigit())
        && text.chars().any(|c| c.is_ascii_digit());
    iso_time || uuid || base64_id || hex_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volatile_keys_and_values() {
        for key in [
            "id",
            "connectionId",
            "requestId",
            "user_id",
            "connectedAt",
            "created_at",
            "timestamp",
            "requestTime",
            "lastActiveAt",
            "date",
            "ts",
        ] {
            assert!(key_is_volatile(key), "{key}");
        }
        for key in [
            "message", "body", "action", "data", "count", "valid", "identity",
        ] {
            assert!(!key_is_volatile(key), "{key}");
        }
        for value in [
            "2026-11-28T06:30:01Z",
            "2026-11-28T06:30:01.123+01:00",
            "L0SM9cOFvHcCIhw=",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "0123456789abcdef0123",
        ] {
            assert!(value_is_volatile(value), "{value}");
        }
        for value in [
            "Hello World!",
            "Forbidden",
            "abc=",
            "2026",
            "deadbeef",
            "send",
        ] {
            assert!(!value_is_volatile(value), "{value}");
        }
    }

    #[test]
    fn expectations_keep_the_stable_fields() {
        assert_eq!(
            expectation(
                r#"{"message": "Forbidden", "connectionId":"L0SM9cOFvHcCIhw=", "requestId":"x"}"#
            ),
            r#"json-subset {"message":"Forbidden"}"#
        );
        // Nothing volatile: the text, exactly.
        assert_eq!(
            expectation(r#""Hello World!""#),
            r#"text "\"Hello World!\"""#
        );
        assert_eq!(expectation("plain words"), r#"text "plain words""#);
        // Everything volatile: any JSON object will do.
        assert_eq!(expectation(r#"{"connectionId":"abc"}"#), "json-subset {}");
        // Nested objects lose their volatile keys too; a volatile string drops its key.
        assert_eq!(
            expectation(r#"{"user":{"id":7,"name":"ann"},"seen":"2026-11-28T06:30:01Z"}"#),
            r#"json-subset {"user":{"name":"ann"}}"#
        );
        // An array cannot lose an element: a volatile one makes the message unknowable.
        assert_eq!(expectation(r#"["L0SM9cOFvHcCIhw="]"#), "any");
        assert_eq!(expectation(r#""L0SM9cOFvHcCIhw=""#), "any");
        // A literal `${` is escaped, not read as a variable on replay.
        assert_eq!(expectation("cost ${HOME}"), r#"text "cost $${HOME}""#);
        assert_eq!(stable(&json!([1, {"a": 2}])), Some(json!([1, {"a": 2}])));
    }

    fn options() -> ConnectOptions {
        ConnectOptions {
            auth: Some(wsprobe_core::secret::Secret::new("Bearer tok-123456")),
            api_key: Some(wsprobe_core::secret::Secret::new("key-123456")),
            headers: vec![
                wsprobe_core::values::Header {
                    name: "X-Session-Token".into(),
                    value: "sess-123456".into(),
                },
                wsprobe_core::values::Header {
                    name: "X-Trace".into(),
                    value: "abc".into(),
                },
            ],
            ..ConnectOptions::default()
        }
    }

    fn step(command: &str, kind: StepKind, outcome: Outcome, arrived: Vec<Arrived>) -> Step {
        Step {
            command: command.into(),
            kind,
            outcome,
            arrived,
            more: 0,
            echo_seen: false,
        }
    }

    fn sent(frame: Outgoing, echo: Option<Value>) -> Outcome {
        Outcome::Done {
            sent: Some(frame),
            echo,
        }
    }

    #[test]
    fn a_session_renders_as_a_script_with_credentials_as_variables() {
        let url = Url::parse("ws://127.0.0.1:9/dev?token=qq-123456").unwrap();
        let mut recording = Recording::new(&url, &options());
        recording.steps = vec![
            step(
                r#"send send "Hello World!""#,
                StepKind::Send,
                sent(
                    Outgoing::Text(r#"{"action":"send","body":"Hello World!"}"#.into()),
                    Some(json!("Hello World!")),
                ),
                vec![
                    Arrived::Text(r#"{"note":"first"}"#.into()),
                    Arrived::Text(r#""Hello World!""#.into()),
                ],
            ),
            step(
                "text my key is key-123456",
                StepKind::Send,
                sent(Outgoing::Text("my key is key-123456".into()), None),
                vec![Arrived::Binary(vec![1, 2]), Arrived::Pong],
            ),
            step(
                "ping",
                StepKind::Send,
                sent(Outgoing::Ping(Vec::new()), None),
                vec![Arrived::Pong],
            ),
            step(
                "send whoami",
                StepKind::Send,
                sent(Outgoing::Text("{}".into()), None),
                vec![Arrived::Text(
                    r#"{"connectionId":"L0SM9cOFvHcCIhw="}"#.into(),
                )],
            ),
            step(
                "capture me = json $.connectionId",
                StepKind::Check,
                Outcome::Done {
                    sent: None,
                    echo: None,
                },
                vec![],
            ),
            step(
                "expect json $.nope exists",
                StepKind::Check,
                Outcome::Failed("nothing matched within 5s".into()),
                vec![],
            ),
            step(
                "close 4000 bye",
                StepKind::Send,
                sent(Outgoing::Close(Some((4000, "bye".into()))), None),
                vec![Arrived::Close(4000)],
            ),
        ];
        let script = recording.render();
        let body = script.split_once("\n\n").unwrap().1;
        assert_eq!(
            body,
            "connect ${WS_URL}\n\
             \x20 auth ${WSPROBE_AUTH}\n\
             \x20 api-key ${WSPROBE_API_KEY}\n\
             \x20 header X-Session-Token: ${WSPROBE_HEADER_X_SESSION_TOKEN}\n\
             \x20 header X-Trace: abc\n\
             send send \"Hello World!\"\n\
             expect text \"{\\\"note\\\":\\\"first\\\"}\"\n\
             expect echo\n\
             text my key is ${WSPROBE_API_KEY}\n\
             expect binary 0102\n\
             ping\n\
             expect pong\n\
             send whoami\n\
             capture me = json $.connectionId\n\
             # failed at the prompt (nothing matched within 5s): expect json $.nope exists\n\
             close 4000 bye\n\
             expect closed 4000\n"
        );
        let header = script.split_once("\n\n").unwrap().0;
        assert!(header.starts_with("# Recorded by `wsprobe connect --record` on 20"));
        assert!(header.contains("# against ws://127.0.0.1:9/dev?token=<redacted>"));
        assert!(header.contains("WSPROBE_AUTH, WSPROBE_API_KEY"), "{header}");
        for secret in ["tok-123456", "key-123456", "sess-123456", "qq-123456"] {
            assert!(!script.contains(secret), "{secret} in\n{script}");
        }
        // What the run parser reads back.
        wsprobe_core::command::parse_script(&script, "recorded.wsp").unwrap();
    }

    #[test]
    fn session_flags_become_script_lines_or_a_note() {
        let mut options = options();
        options.session = wsprobe_core::options::SessionOptions {
            keepalive: Some(wsprobe_core::session::KeepAlive {
                every: std::time::Duration::from_millis(1500),
                message: Some(r#"{"action":"ping"}"#.into()),
            }),
            reconnect: Some(wsprobe_core::reconnect::ReconnectPolicy {
                when: ReconnectWhen::Always,
                max_attempts: 3,
            }),
            on_connect: vec!["/send auth key-123456".into()],
        };
        let url = Url::parse("ws://127.0.0.1:9/dev").unwrap();
        let script = Recording::new(&url, &options).render();
        assert!(script.contains("\n  reconnect always max 3\n"), "{script}");
        assert!(
            script.contains("\nkeepalive 1500ms {\"action\":\"ping\"}\n"),
            "{script}"
        );
        assert!(
            script.contains("# Recorded with --on-connect '/send auth ${WSPROBE_API_KEY}'"),
            "{script}"
        );
        assert!(!script.contains("key-123456"), "{script}");
        wsprobe_core::command::parse_script(&script, "recorded.wsp").unwrap();

        // The defaults are not spelled out: a bare `reconnect`, whole seconds.
        options.session.reconnect = Some(Default::default());
        options.session.keepalive = Some(wsprobe_core::session::KeepAlive {
            every: std::time::Duration::from_secs(300),
            message: None,
        });
        let script = Recording::new(&url, &options).render();
        assert!(script.contains("\n  reconnect\n"), "{script}");
        assert!(script.contains("\nkeepalive 300s\n"), "{script}");
    }
}
