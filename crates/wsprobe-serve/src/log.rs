//! Log lines and events: one line per event (CONNECT, MESSAGE, DISCONNECT, MANAGE,
//! REJECT, INTEGRATION), plain like an access log or one JSON object per line, and the
//! same event as a [`ServeEvent`] for observers (tests, other jobs).
//!
//! Events carry no secret: header values reach observers only through
//! [`ServeEvent::Connected`]'s `headers` (for tests that check what a client sent), and no
//! log line contains a header value or a message body.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One access-log-like line per event.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}
use wsprobe_core::secret::Secret;

/// Something that happened on the server, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeEvent {
    /// Accepting a connection failed for a reason that is not the client's (out of file
    /// descriptors, most often): logged once per burst, that is at the first failure after
    /// an accept that worked, so a server refusing everyone says why without flooding.
    AcceptFailed {
        /// What failed, and what to do about it.
        reason: String,
    },
    /// A handshake succeeded (`$connect`).
    Connected {
        connection_id: String,
        request_id: String,
        source_ip: IpAddr,
        user_agent: Option<String>,
        /// The handshake headers as received (names lower-case), secrets included: for
        /// tests that check what a client sent. Never logged.
        headers: Vec<(String, String)>,
        /// How long the handshake took to answer.
        duration: Duration,
    },
    /// A request was refused before any connection existed.
    Rejected {
        request_id: String,
        /// The HTTP status answered (400, 401, 403, 426, 431, …).
        status: u16,
        /// Why, in words; never a secret.
        reason: String,
        source_ip: Option<IpAddr>,
        duration: Duration,
    },
    /// The `$connect` authorizer decided (or was not called: an identity source was
    /// missing).
    Authorized {
        /// The handshake's request id (also in the authorizer's event).
        request_id: String,
        connection_id: String,
        /// `allow`, `deny`, `unauthorized`, `error`, or `missing-identity`.
        outcome: String,
        /// The handshake's status when refused (401, 403, 500).
        status: Option<u16>,
        /// Why, in words (never a secret or an identity value).
        reason: Option<String>,
        /// The `principalId` of an Allow.
        principal_id: Option<String>,
        /// How long the authorizer took (zero when it was not called).
        duration: Duration,
    },
    /// A text message arrived and was routed.
    Message {
        connection_id: String,
        request_id: String,
        /// The selected route key (`$default` for the default route); `None` when no route
        /// matched and the client got the `Forbidden` frame.
        route_key: Option<String>,
        /// Size of the message in bytes.
        bytes: usize,
        duration: Duration,
    },
    /// A connection ended (`$disconnect`).
    Disconnected {
        connection_id: String,
        request_id: String,
        /// The close code: the client's, the server's when it closed, 1005 for a close
        /// frame without a code, 1006 when the client vanished without one.
        code: u16,
        reason: String,
        /// How long the connection lived.
        duration: Duration,
    },
    /// A Lambda integration was invoked (`--integration`, `--route NAME=lambda:URL`).
    Integration {
        connection_id: String,
        /// The request id of the event sent (also in the event itself).
        request_id: String,
        /// The route key of the event: `$connect`, `$disconnect`, a route or `$default`.
        route_key: String,
        /// The proxy response's `statusCode`, if it had one.
        status_code: Option<u16>,
        /// Why the invocation failed, if it did (never a body).
        error: Option<String>,
        /// How long the invocation took.
        duration: Duration,
    },
    /// An `@connections` call was answered.
    Managed {
        request_id: String,
        /// `POST`, `GET` or `DELETE` (or whatever else was sent).
        method: String,
        connection_id: String,
        status: u16,
        /// Why the call was refused (403, 400, 413), in words; never a secret.
        reason: Option<String>,
        duration: Duration,
    },
}

impl ServeEvent {
    /// The connection the event is about, if any.
    pub fn connection_id(&self) -> Option<&str> {
        match self {
            Self::Connected { connection_id, .. }
            | Self::Message { connection_id, .. }
            | Self::Disconnected { connection_id, .. }
            | Self::Managed { connection_id, .. }
            | Self::Integration { connection_id, .. }
            | Self::Authorized { connection_id, .. } => Some(connection_id),
            Self::Rejected { .. } | Self::AcceptFailed { .. } => None,
        }
    }
}

/// Where log lines go.
#[derive(Clone, Debug, Default)]
pub enum LogSink {
    /// No log lines (the default for the library, and `--quiet`).
    #[default]
    Off,
    /// Standard output, one line per event (the CLI). A closed pipe is ignored.
    Stdout,
    /// Kept in memory, for tests: read them with [`LogCapture::lines`].
    Capture(LogCapture),
}

impl LogSink {
    /// A sink that captures lines, and the handle to read them.
    pub fn capture() -> (Self, LogCapture) {
        let capture = LogCapture::default();
        (Self::Capture(capture.clone()), capture)
    }

    pub fn is_off(&self) -> bool {
        matches!(self, Self::Off)
    }
}

/// Captured log lines, shared between the server and whoever reads them.
#[derive(Clone, Debug, Default)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<String>>>,
}

impl LogCapture {
    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }
}

/// Writes one event as one line to the sink, secrets redacted as a second line of
/// defence (no line should ever hold one).
pub fn write(sink: &LogSink, format: LogFormat, secrets: &[Secret], event: &ServeEvent) {
    if sink.is_off() {
        return;
    }
    let line = format_line(format, SystemTime::now(), event);
    let line = if secrets.is_empty() {
        line
    } else {
        wsprobe_core::secret::redact_all(&line, secrets)
    };
    match sink {
        LogSink::Off => {}
        LogSink::Stdout => {
            let mut stdout = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) must not stop the server.
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        LogSink::Capture(capture) => capture.push(line),
    }
}

/// A field of a log line.
enum Field<'a> {
    Text(&'a str),
    Owned(String),
    Number(u64),
    Missing,
}

/// Formats an event: `TIME EVENT key=value … duration=1.234ms`, or a JSON object with
/// the same keys and `durationMs`.
pub fn format_line(format: LogFormat, time: SystemTime, event: &ServeEvent) -> String {
    let (name, fields, duration): (&str, Vec<(&str, Field<'_>)>, Duration) = match event {
        ServeEvent::AcceptFailed { reason } => (
            "ACCEPT_FAILED",
            vec![("reason", Field::Text(reason))],
            Duration::ZERO,
        ),
        ServeEvent::Connected {
            connection_id,
            request_id,
            source_ip,
            user_agent,
            duration,
            ..
        } => (
            "CONNECT",
            vec![
                ("requestId", Field::Text(request_id)),
                ("connectionId", Field::Text(connection_id)),
                ("status", Field::Number(101)),
                ("sourceIp", Field::Owned(source_ip.to_string())),
                (
                    "userAgent",
                    user_agent.as_deref().map_or(Field::Missing, Field::Text),
                ),
            ],
            *duration,
        ),
        ServeEvent::Rejected {
            request_id,
            status,
            reason,
            source_ip,
            duration,
        } => (
            "REJECT",
            vec![
                ("requestId", Field::Text(request_id)),
                ("status", Field::Number(u64::from(*status))),
                ("reason", Field::Text(reason)),
                (
                    "sourceIp",
                    source_ip.map_or(Field::Missing, |ip| Field::Owned(ip.to_string())),
                ),
            ],
            *duration,
        ),
        ServeEvent::Authorized {
            request_id,
            connection_id,
            outcome,
            status,
            reason,
            principal_id,
            duration,
        } => (
            "AUTHORIZE",
            vec![
                ("requestId", Field::Text(request_id)),
                ("connectionId", Field::Text(connection_id)),
                ("outcome", Field::Text(outcome)),
                (
                    "status",
                    status.map_or(Field::Missing, |s| Field::Number(u64::from(s))),
                ),
                (
                    "principalId",
                    principal_id.as_deref().map_or(Field::Missing, Field::Text),
                ),
                (
                    "reason",
                    reason.as_deref().map_or(Field::Missing, Field::Text),
                ),
            ],
            *duration,
        ),
        ServeEvent::Message {
            connection_id,
            request_id,
            route_key,
            bytes,
            duration,
        } => (
            "MESSAGE",
            vec![
                ("requestId", Field::Text(request_id)),
                ("connectionId", Field::Text(connection_id)),
                (
                    "routeKey",
                    route_key.as_deref().map_or(Field::Missing, Field::Text),
                ),
                ("bytes", Field::Number(*bytes as u64)),
            ],
            *duration,
        ),
        ServeEvent::Disconnected {
            connection_id,
            request_id,
            code,
            reason,
            duration,
        } => (
            "DISCONNECT",
            vec![
                ("requestId", Field::Text(request_id)),
                ("connectionId", Field::Text(connection_id)),
                ("code", Field::Number(u64::from(*code))),
                ("reason", Field::Text(reason)),
            ],
            *duration,
        ),
        ServeEvent::Integration {
            connection_id,
            request_id,
            route_key,
            status_code,
            error,
            duration,
        } => (
            "INTEGRATION",
            vec![
                ("requestId", Field::Text(request_id)),
                ("connectionId", Field::Text(connection_id)),
                ("routeKey", Field::Text(route_key)),
                (
                    "statusCode",
                    status_code.map_or(Field::Missing, |s| Field::Number(u64::from(s))),
                ),
                (
                    "error",
                    error.as_deref().map_or(Field::Missing, Field::Text),
                ),
            ],
            *duration,
        ),
        ServeEvent::Managed {
            request_id,
            method,
            connection_id,
            status,
            reason,
            duration,
        } => (
            "MANAGE",
            vec![
                ("requestId", Field::Text(request_id)),
                ("method", Field::Text(method)),
                ("connectionId", Field::Text(connection_id)),
                ("status", Field::Number(u64::from(*status))),
                (
                    "reason",
                    reason.as_deref().map_or(Field::Missing, Field::Text),
                ),
            ],
            *duration,
        ),
    };
    let time = humantime::format_rfc3339_millis(time).to_string();
    let millis = duration.as_secs_f64() * 1000.0;
    let mut line = String::with_capacity(160);
    match format {
        LogFormat::Plain => {
            let _ = write!(line, "{time} {name}");
            for (key, value) in &fields {
                match value {
                    Field::Text(text) => {
                        let _ = write!(line, " {key}={}", plain_value(text));
                    }
                    Field::Owned(text) => {
                        let _ = write!(line, " {key}={}", plain_value(text));
                    }
                    Field::Number(n) => {
                        let _ = write!(line, " {key}={n}");
                    }
                    Field::Missing => {
                        let _ = write!(line, " {key}=-");
                    }
                }
            }
            let _ = write!(line, " duration={millis:.3}ms");
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), time.into());
            object.insert("event".into(), name.into());
            for (key, value) in fields {
                let value = match value {
                    Field::Text(text) => serde_json::Value::from(text),
                    Field::Owned(text) => serde_json::Value::from(text),
                    Field::Number(n) => serde_json::Value::from(n),
                    Field::Missing => serde_json::Value::Null,
                };
                object.insert(key.into(), value);
            }
            object.insert(
                "durationMs".into(),
                serde_json::Value::from((millis * 1000.0).round() / 1000.0),
            );
            line.push_str(&serde_json::Value::Object(object).to_string());
        }
    }
    line
}

/// A plain-format value: as it is when it is a simple token, JSON-quoted when it is empty
/// or holds spaces, quotes, `=` or control characters.
fn plain_value(text: &str) -> String {
    let simple = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\');
    if simple {
        text.to_owned()
    } else {
        serde_json::Value::from(text).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_731_324_924_553)
    }

    #[test]
    fn plain_lines_read_like_an_access_log() {
        let event = ServeEvent::Disconnected {
            connection_id: "QrStUvWxYzAbCdE=".into(),
            request_id: "VwXyZaBcDeFgHiJ=".into(),
            code: 1001,
            reason: "Going away".into(),
            duration: Duration::from_micros(1500),
        };
        assert_eq!(
            format_line(LogFormat::Plain, at(), &event),
            "2024-11-11T11:35:24.553Z DISCONNECT requestId=VwXyZaBcDeFgHiJ= connectionId=QrStUvWxYzAbCdE= code=1001 reason=\"Going away\" duration=1.500ms"
        );
    }

    #[test]
    fn integration_lines_say_what_the_handler_did() {
        let failed = ServeEvent::Integration {
            connection_id: "QrStUvWxYzAbCdE=".into(),
            request_id: "FgHiJkLmNoPqRsT=".into(),
            route_key: "send".into(),
            status_code: None,
            error: Some("the handler failed: boom".into()),
            duration: Duration::from_millis(3),
        };
        assert_eq!(
            format_line(LogFormat::Plain, at(), &failed),
            "2024-11-11T11:35:24.553Z INTEGRATION requestId=FgHiJkLmNoPqRsT= connectionId=QrStUvWxYzAbCdE= routeKey=send statusCode=- error=\"the handler failed: boom\" duration=3.000ms"
        );
        let answered = ServeEvent::Integration {
            connection_id: "QrStUvWxYzAbCdE=".into(),
            request_id: "FgHiJkLmNoPqRsT=".into(),
            route_key: "$connect".into(),
            status_code: Some(401),
            error: None,
            duration: Duration::from_millis(3),
        };
        let line = format_line(LogFormat::Json, at(), &answered);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "INTEGRATION");
        assert_eq!(value["statusCode"], 401);
        assert_eq!(value["error"], serde_json::Value::Null);
    }

    #[test]
    fn json_lines_are_objects() {
        let event = ServeEvent::Message {
            connection_id: "QrStUvWxYzAbCdE=".into(),
            request_id: "FgHiJkLmNoPqRsT=".into(),
            route_key: None,
            bytes: 12,
            duration: Duration::from_micros(250),
        };
        let line = format_line(LogFormat::Json, at(), &event);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "MESSAGE");
        assert_eq!(value["time"], "2024-11-11T11:35:24.553Z");
        assert_eq!(value["routeKey"], serde_json::Value::Null);
        assert_eq!(value["bytes"], 12);
        assert_eq!(value["durationMs"], 0.25);
    }

    #[test]
    fn connect_lines_never_show_headers() {
        let event = ServeEvent::Connected {
            connection_id: "c".into(),
            request_id: "r".into(),
            source_ip: [127, 0, 0, 1].into(),
            user_agent: None,
            headers: vec![("authorization".into(), "Bearer hunter2".into())],
            duration: Duration::ZERO,
        };
        for format in [LogFormat::Plain, LogFormat::Json] {
            let line = format_line(format, at(), &event);
            assert!(!line.contains("hunter2"), "{line}");
            assert!(line.contains("CONNECT"), "{line}");
        }
    }

    #[test]
    fn capture_keeps_lines_and_redacts() {
        let (sink, capture) = LogSink::capture();
        let event = ServeEvent::Rejected {
            request_id: "r".into(),
            status: 401,
            reason: "token s3cret-token".into(),
            source_ip: None,
            duration: Duration::ZERO,
        };
        write(
            &sink,
            LogFormat::Plain,
            &[Secret::new("s3cret-token")],
            &event,
        );
        let lines = capture.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("<redacted>"), "{}", lines[0]);
        assert!(!lines[0].contains("s3cret"), "{}", lines[0]);
    }
}
