//! How `wsprobe connect` shows what happens: sent (`>`) and received (`<`) lines in
//! distinct colours, control frames (`-P`), timestamps (`-t`), pretty JSON (`--pretty`),
//! API Gateway error frames highlighted with their ids, echo and expectation results,
//! and how the connection ended.
//!
//! Whatever the server chose (text frames, close reasons, error frames, the subprotocol)
//! is escaped by `wsprobe_core::text` before it is shown, so no server can drive the
//! terminal.
//!
//! Everything here is a pure function from what happened to the text to show, so it is
//! unit-tested without a terminal. Colour is applied last by [`Painter`], which is off when
//! `colored` is globally off (`NO_COLOR`, `--no-color`, not a terminal).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use colored::{Color, Colorize};
use serde_json::Value;

use wsprobe_core::message::{GatewayError, parse_gateway_error};
use wsprobe_core::session::{Ending, Frame};
use wsprobe_core::text::{Newlines, escape, one_line};

/// The display settings, changed at runtime by `/pretty`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DisplayOptions {
    /// `-P`: show ping, pong and close frames.
    pub(crate) show_control: bool,
    /// `-t`: prefix each line with the time of day (UTC).
    pub(crate) timestamps: bool,
    /// `--pretty` / `/pretty on`: pretty-print JSON messages.
    pub(crate) pretty: bool,
}

/// What kind of line is shown; decides its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    /// A frame we sent.
    Sent,
    /// A data frame we received.
    Received,
    /// A control frame (ping, pong, close), either way.
    Control,
    /// A check that passed, a normal close, a connection that opened.
    Good,
    /// A check that failed, an error frame, an abnormal close.
    Bad,
    /// Anything else worth a line: progress, hints.
    Info,
}

impl Tone {
    fn color(self) -> Color {
        match self {
            Tone::Sent => Color::Cyan,
            Tone::Received => Color::Green,
            Tone::Control => Color::Magenta,
            Tone::Good => Color::Green,
            Tone::Bad => Color::Red,
            Tone::Info => Color::Yellow,
        }
    }
}

/// Applies colour to finished text, or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Painter {
    enabled: bool,
}

impl Painter {
    /// Colours when `colored` is globally on (decided once by `init_color`).
    pub(crate) fn from_environment() -> Self {
        Self {
            enabled: colored::control::SHOULD_COLORIZE.should_colorize(),
        }
    }

    /// No colour at all.
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self { enabled: false }
    }

    /// `text` in the colour of `tone`; bold for failures so they stand out.
    pub(crate) fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        let coloured = text.color(tone.color());
        if tone == Tone::Bad {
            coloured.bold().to_string()
        } else {
            coloured.to_string()
        }
    }

    /// `text` dimmed (timestamps, ids), or as is without colour.
    pub(crate) fn dim(&self, text: &str) -> String {
        if self.enabled {
            text.dimmed().to_string()
        } else {
            text.to_owned()
        }
    }
}

/// `HH:MM:SS.mmm ` (UTC) for the moment `at`, or nothing without `-t`.
fn timestamp(options: &DisplayOptions, at: Instant, painter: &Painter) -> String {
    if !options.timestamps {
        return String::new();
    }
    let now = Instant::now();
    let wall = SystemTime::now()
        .checked_sub(now.saturating_duration_since(at))
        .unwrap_or_else(SystemTime::now);
    format!("{} ", painter.dim(&time_of_day(wall)))
}

/// `HH:MM:SS.mmm` in UTC.
pub(crate) fn time_of_day(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis_of_day = since_epoch.as_millis() % 86_400_000;
    let (hours, rest) = (millis_of_day / 3_600_000, millis_of_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}.{millis:03}")
}

/// The text of a message as shown: pretty-printed when asked and it is JSON (an object
/// or an array: a bare `"string"` or number reads best as sent), else as is.
pub(crate) fn message_text(text: &str, pretty: bool) -> String {
    if pretty {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(value) = serde_json::from_str::<Value>(text)
            && let Ok(pretty) = serde_json::to_string_pretty(&value)
        {
            return pretty;
        }
    }
    text.to_owned()
}

/// Binary data as shown at the prompt: the size and the first bytes in hex.
pub(crate) fn binary_text(data: &[u8]) -> String {
    const SHOWN: usize = 32;
    let hex: Vec<String> = data
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if data.len() > SHOWN { " …" } else { "" };
    format!("[binary, {} bytes] {}{more}", data.len(), hex.join(" "))
}

/// Binary data as one pipe-friendly line, in the form `/binary` reads back.
pub(crate) fn binary_line(data: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "base64:{}",
        base64::engine::general_purpose::STANDARD.encode(data)
    )
}

/// `marker text` with continuation lines of a multi-line text indented under the first.
fn prefixed(marker: &str, text: &str) -> String {
    let indent = " ".repeat(marker.chars().count() + 1);
    let mut out = String::with_capacity(text.len() + marker.len() + 1);
    for (index, line) in text.lines().enumerate() {
        if index == 0 {
            out.push_str(marker);
            out.push(' ');
        } else {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    if text.is_empty() {
        out.push_str(marker);
    }
    out
}

/// The line for a frame we sent: `> {"action":"send",…}`, `> [binary, 3 bytes] …`,
/// `> ping`, `> close 1000 bye`.
pub(crate) fn sent_line(
    frame: &wsprobe_core::session::Outgoing,
    at: Instant,
    options: &DisplayOptions,
    painter: &Painter,
) -> String {
    use wsprobe_core::session::Outgoing;
    let (tone, body) = match frame {
        Outgoing::Text(text) => (Tone::Sent, message_text(text, options.pretty)),
        Outgoing::Binary(data) => (Tone::Sent, binary_text(data)),
        Outgoing::Ping(data) if data.is_empty() => (Tone::Control, "ping".to_owned()),
        Outgoing::Ping(data) => (Tone::Control, format!("ping {}", lossy(data))),
        Outgoing::Pong(data) if data.is_empty() => (Tone::Control, "pong".to_owned()),
        Outgoing::Pong(data) => (Tone::Control, format!("pong {}", lossy(data))),
        Outgoing::Close(None) => (Tone::Control, "close".to_owned()),
        Outgoing::Close(Some((code, reason))) if reason.is_empty() => {
            (Tone::Control, format!("close {code}"))
        }
        Outgoing::Close(Some((code, reason))) => (Tone::Control, format!("close {code} {reason}")),
    };
    format!(
        "{}{}",
        timestamp(options, at, painter),
        painter.paint(tone, &prefixed(">", &body))
    )
}

/// The line for a frame that arrived, or `None` when it is not shown (a control frame
/// without `-P`; the ending, which [`ending_line`] reports).
pub(crate) fn received_line(
    frame: &Frame,
    at: Instant,
    options: &DisplayOptions,
    painter: &Painter,
) -> Option<String> {
    let (tone, body) = match frame {
        Frame::Text(text) => match parse_gateway_error(text) {
            Some(error) => (Tone::Bad, gateway_error_text(&error)),
            None => (
                Tone::Received,
                escape(&message_text(text, options.pretty), Newlines::Keep).into_owned(),
            ),
        },
        Frame::Binary(data) => (Tone::Received, binary_text(data)),
        Frame::Ping(data) if options.show_control => (Tone::Control, control("ping", data)),
        Frame::Pong(data) if options.show_control => (Tone::Control, control("pong", data)),
        Frame::Close { code, reason } if options.show_control => {
            (Tone::Control, close_text(*code, reason))
        }
        _ => return None,
    };
    Some(format!(
        "{}{}",
        timestamp(options, at, painter),
        painter.paint(tone, &prefixed("<", &body))
    ))
}

fn control(kind: &str, data: &[u8]) -> String {
    if data.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} {}", lossy(data))
    }
}

fn close_text(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        format!("close {code}")
    } else {
        format!("close {code} {}", one_line(reason))
    }
}

fn lossy(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text)
            if matches!(
                escape(text, Newlines::Escape),
                std::borrow::Cow::Borrowed(_)
            ) =>
        {
            text.to_owned()
        }
        _ => data.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `gateway error: Forbidden (connectionId …, requestId …)`: API Gateway answered
/// instead of the app (no route matched, the integration failed, …).
pub(crate) fn gateway_error_text(error: &GatewayError) -> String {
    format!(
        "gateway error: {} (connectionId {}, requestId {})",
        one_line(&error.message),
        one_line(&error.connection_id),
        one_line(&error.request_id)
    )
}

/// Whether a close code means the connection ended normally: 1000 (normal), 1001
/// (going away: idle timeout, server shutdown) and 1005 (a close frame without a code).
/// Every other code (1006 dropped, 1011 server error, 1008, 1009, 4xxx, …) is abnormal.
pub(crate) fn is_normal_close(code: u16) -> bool {
    matches!(code, 1000 | 1001 | 1005)
}

/// How the connection ended, as one line: `connection closed by the server: 1000 bye`.
/// `we_closed` tells whether the close was our `/close` (then it is never an error).
pub(crate) fn ending_line(ending: &Ending, we_closed: bool, painter: &Painter) -> String {
    let (tone, text) = match ending {
        Ending::Closed { code, reason } => {
            let who = if we_closed {
                "connection closed"
            } else {
                "connection closed by the server"
            };
            let detail = if reason.is_empty() {
                format!("{code}")
            } else {
                format!("{code} {}", one_line(reason))
            };
            let tone = if we_closed || is_normal_close(*code) {
                Tone::Info
            } else {
                Tone::Bad
            };
            (tone, format!("{who}: {detail}"))
        }
        Ending::Dropped { reason } => (
            Tone::Bad,
            format!(
                "connection dropped without a close frame (1006): {}",
                one_line(reason)
            ),
        ),
    };
    painter.paint(tone, &text)
}

pub(crate) use wsprobe_core::values::short_duration;

/// A step of a reconnect, for stderr (the prompt and `run` alike):
/// `reconnecting after 1001 Going away (attempt 2, 0.43 s)…`, `reconnect attempt 2 failed:
/// …`, `reconnected in 260 ms (handshake 2.1 ms)`.
pub(crate) fn reconnect_line(event: &wsprobe_core::reconnect::ReconnectEvent) -> (Tone, String) {
    use wsprobe_core::reconnect::ReconnectEvent;
    match event {
        ReconnectEvent::Waiting {
            attempt,
            cause,
            delay,
        } => {
            let cause = match cause {
                Ending::Closed { code, reason } if reason.is_empty() => format!("{code}"),
                Ending::Closed { code, reason } => format!("{code} {}", one_line(reason)),
                Ending::Dropped { reason } => format!("1006 ({})", one_line(reason)),
            };
            (
                Tone::Info,
                format!(
                    "reconnecting after {cause} (attempt {attempt}, {:.2} s)…",
                    delay.as_secs_f64()
                ),
            )
        }
        ReconnectEvent::Failed { attempt, error } => (
            Tone::Bad,
            format!("reconnect attempt {attempt} failed: {}", one_line(error)),
        ),
        ReconnectEvent::Reconnected {
            took, connect_time, ..
        } => (
            Tone::Good,
            format!(
                "reconnected in {} (handshake {})",
                short_duration(*took),
                short_duration(*connect_time)
            ),
        ),
    }
}

/// A duration as the user would write it: `5s`, `500ms`, `1m 30s`.
pub(crate) fn human_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsprobe_core::session::Outgoing;

    fn plain() -> Painter {
        Painter::plain()
    }

    #[test]
    fn sent_and_received_lines() {
        let options = DisplayOptions::default();
        let now = Instant::now();
        assert_eq!(
            sent_line(
                &Outgoing::Text(r#"{"action":"send"}"#.into()),
                now,
                &options,
                &plain()
            ),
            r#"> {"action":"send"}"#
        );
        assert_eq!(
            received_line(&Frame::Text("\"hi\"".into()), now, &options, &plain()),
            Some("< \"hi\"".into())
        );
        assert_eq!(
            sent_line(
                &Outgoing::Close(Some((1000, "bye".into()))),
                now,
                &options,
                &plain()
            ),
            "> close 1000 bye"
        );
    }

    #[test]
    fn control_frames_only_with_p() {
        let now = Instant::now();
        let hidden = DisplayOptions::default();
        let shown = DisplayOptions {
            show_control: true,
            ..hidden
        };
        let pong = Frame::Pong(b"abc".to_vec());
        assert_eq!(received_line(&pong, now, &hidden, &plain()), None);
        assert_eq!(
            received_line(&pong, now, &shown, &plain()),
            Some("< pong abc".into())
        );
        let close = Frame::Close {
            code: 1000,
            reason: "bye".into(),
        };
        assert_eq!(
            received_line(&close, now, &shown, &plain()),
            Some("< close 1000 bye".into())
        );
        assert_eq!(received_line(&close, now, &hidden, &plain()), None);
    }

    #[test]
    fn pretty_json_is_indented_under_the_marker() {
        let options = DisplayOptions {
            pretty: true,
            ..DisplayOptions::default()
        };
        let line = received_line(
            &Frame::Text(r#"{"a":1,"b":[true]}"#.into()),
            Instant::now(),
            &options,
            &plain(),
        )
        .unwrap();
        assert_eq!(
            line,
            "< {\n    \"a\": 1,\n    \"b\": [\n      true\n    ]\n  }"
        );
        // Not JSON, or a bare string: as is.
        assert_eq!(message_text("hello {", true), "hello {");
        assert_eq!(message_text("\"x\"", true), "\"x\"");
    }

    #[test]
    fn gateway_errors_are_highlighted_with_their_ids() {
        let frame = Frame::Text(
            r#"{"message": "Forbidden", "connectionId":"c1=", "requestId":"r1="}"#.into(),
        );
        let line =
            received_line(&frame, Instant::now(), &DisplayOptions::default(), &plain()).unwrap();
        assert_eq!(
            line,
            "< gateway error: Forbidden (connectionId c1=, requestId r1=)"
        );
    }

    #[test]
    fn timestamps_prefix_lines() {
        let options = DisplayOptions {
            timestamps: true,
            ..DisplayOptions::default()
        };
        let line =
            received_line(&Frame::Text("x".into()), Instant::now(), &options, &plain()).unwrap();
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "< x");
        assert_eq!(stamp.len(), "00:00:00.000".len(), "{stamp}");
        assert_eq!(
            time_of_day(UNIX_EPOCH + Duration::from_millis(3_723_004)),
            "01:02:03.004"
        );
    }

    #[test]
    fn binary_forms() {
        assert_eq!(binary_text(b"hi"), "[binary, 2 bytes] 68 69");
        assert_eq!(binary_line(b"hi"), "base64:aGk=");
        assert!(binary_text(&[0u8; 40]).ends_with(" …"));
    }

    #[test]
    fn endings() {
        let normal = Ending::Closed {
            code: 1000,
            reason: String::new(),
        };
        assert_eq!(
            ending_line(&normal, false, &plain()),
            "connection closed by the server: 1000"
        );
        let error = Ending::Closed {
            code: 1011,
            reason: "Internal error".into(),
        };
        assert_eq!(
            ending_line(&error, false, &plain()),
            "connection closed by the server: 1011 Internal error"
        );
        assert!(is_normal_close(1001));
        assert!(!is_normal_close(1011));
        assert!(!is_normal_close(4001));
        assert!(!is_normal_close(1006));
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
    }
}
