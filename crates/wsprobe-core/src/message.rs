//! Route-tagged messages and echo matching, shared by every job.
//!
//! API Gateway picks a route from a field of each JSON message (`$request.body.action` in
//! most stages), so "send to route `send` with body `Hello World!`" means sending
//! `{"action":"send","body":"Hello World!"}`. The sample echo app's `send` route echoes the
//! body field back; [`expected_echo`] says what to expect for an [`EchoPolicy`] and
//! [`echo_matches`] compares it with what arrived, as JSON. API Gateway's own error frames
//! (`{"message": "Forbidden", ...}`) are recognised by [`parse_gateway_error`], and
//! [`management_url`] gives a stage's `@connections` endpoint. [`EchoTracker`] follows
//! echo checks in the background for a front-end that prints every message as it arrives.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use url::Url;

use crate::options::{DEFAULT_BODY_FIELD, DEFAULT_ROUTE_FIELD, EchoPolicy};

/// Which JSON fields carry the route and the payload of a route-tagged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFields {
    /// The field the route selection expression reads (`--route-field`, default `action`).
    pub route_field: String,
    /// The field that carries the payload (`--body-field`, default `body`).
    pub body_field: String,
}

impl Default for RouteFields {
    /// `action` and `body`: API Gateway's usual selection expression and the sample app.
    fn default() -> Self {
        Self {
            route_field: DEFAULT_ROUTE_FIELD.into(),
            body_field: DEFAULT_BODY_FIELD.into(),
        }
    }
}

/// Reads a payload as typed: JSON if it is JSON (`"Hello"`, `42`, `{"a":1}`), otherwise
/// the text itself as a JSON string (`Hello World` → `"Hello World"`).
pub fn parse_payload(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Builds the route-tagged message for `route` and an optional `payload`:
///
/// - no payload (or an empty one): `{"action":"ROUTE"}`;
/// - a JSON object: its fields are merged into the message, after the route field
///   (`{"data":"hi"}` → `{"action":"ROUTE","data":"hi"}`); the route given wins over a
///   route field inside the object;
/// - any other JSON value becomes the body (`42` → `{"action":"ROUTE","body":42}`);
/// - text that is not JSON becomes a string body (`Hello` → `"body":"Hello"`).
pub fn route_tagged(route: &str, payload: Option<&str>, fields: &RouteFields) -> Value {
    let mut message = Map::new();
    message.insert(fields.route_field.clone(), Value::String(route.to_owned()));
    match payload
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_payload)
    {
        None => {}
        Some(Value::Object(object)) => {
            for (key, value) in object {
                if key != fields.route_field {
                    message.insert(key, value);
                }
            }
        }
        Some(body) => {
            message.insert(fields.body_field.clone(), body);
        }
    }
    Value::Object(message)
}

/// [`route_tagged`], serialized compactly, ready to send as a text frame.
pub fn route_tagged_text(route: &str, payload: Option<&str>, fields: &RouteFields) -> String {
    route_tagged(route, payload, fields).to_string()
}

/// What the echo of `sent` should look like: with [`EchoPolicy::Body`] the value of the
/// body field (`None` when the message has no body field, as nothing sensible can be
/// echoed), with [`EchoPolicy::Full`] the whole message, with [`EchoPolicy::Off`] nothing.
pub fn expected_echo(sent: &Value, policy: EchoPolicy, fields: &RouteFields) -> Option<Value> {
    match policy {
        EchoPolicy::Body => sent.get(&fields.body_field).cloned(),
        EchoPolicy::Full => Some(sent.clone()),
        EchoPolicy::Off => None,
    }
}

/// Whether `received_text` is the echo `expected`: equal as JSON (key order, whitespace
/// and `1` vs `1.0` do not matter). A reply that is not JSON at all is compared as raw
/// text with an expected string, so an app that echoes `Hello` unquoted still matches
/// the body `"Hello"`.
pub fn echo_matches(expected: &Value, received_text: &str) -> bool {
    match serde_json::from_str::<Value>(received_text) {
        Ok(received) => json_equal(expected, &received),
        Err(_) => matches!(expected, Value::String(text) if text == received_text),
    }
}

/// JSON equality that ignores object key order and compares numbers by value.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| json_equal(value, other)))
        }
        (x, y) => x == y,
    }
}

/// An error frame from API Gateway itself (not from the app), e.g. `{"message":
/// "Forbidden", "connectionId":"…", "requestId":"…"}` for a message no route matches, or
/// `Internal server error` when an integration fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayError {
    /// `Forbidden`, `Internal server error`, `Bad request body`, …
    pub message: String,
    /// The connection the frame was sent to.
    pub connection_id: String,
    /// The gateway's request id (`messageId` in validation errors).
    pub request_id: String,
}

/// Recognises an API Gateway error frame: a JSON object with exactly a string `message`,
/// a string `connectionId` and a string `requestId` (or `messageId`). App messages that
/// happen to have a `message` field are not mistaken for one.
pub fn parse_gateway_error(text: &str) -> Option<GatewayError> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    if object.len() != 3 {
        return None;
    }
    let field = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(GatewayError {
        message: field("message")?,
        connection_id: field("connectionId")?,
        request_id: field("requestId").or_else(|| field("messageId"))?,
    })
}

/// The `@connections` management endpoint of the stage `ws_url` belongs to:
/// `wss://host/dev/chat?x=1` → `https://host/dev/@connections` (`ws` → `http`). The stage
/// is the first path segment; a URL without one gives `http://host/@connections`.
pub fn management_url(ws_url: &Url) -> Url {
    let scheme = match ws_url.scheme() {
        "wss" | "https" => "https",
        _ => "http",
    };
    let host_and_port = &ws_url[url::Position::BeforeHost..url::Position::AfterPort];
    let stage = ws_url
        .path_segments()
        .and_then(|mut segments| segments.find(|s| !s.is_empty()))
        .map(|stage| format!("/{stage}"))
        .unwrap_or_default();
    let text = format!("{scheme}://{host_and_port}{stage}/@connections");
    // Host, port and segment come from a URL that parsed, so the result parses too.
    Url::parse(&text).expect("a URL rebuilt from a valid URL's parts is valid")
}

/// One echo check's result, from [`EchoTracker`].
#[derive(Clone, Debug, PartialEq)]
pub enum EchoOutcome {
    /// The echo arrived.
    Matched {
        /// The id [`EchoTracker::expect`] returned.
        id: u64,
        /// The echo expected (and received).
        expected: Value,
        /// From the send to the echo's arrival.
        latency: Duration,
    },
    /// Something else came back instead: an API Gateway error frame (at once), or by the
    /// deadline only messages that were not the echo (the first of them is `actual`).
    Mismatched {
        /// The id [`EchoTracker::expect`] returned.
        id: u64,
        /// The echo expected.
        expected: Value,
        /// What arrived instead.
        actual: String,
    },
    /// Nothing at all arrived before the deadline.
    TimedOut {
        /// The id [`EchoTracker::expect`] returned.
        id: u64,
        /// The echo expected.
        expected: Value,
        /// How long it waited.
        after: Duration,
    },
}

impl EchoOutcome {
    /// The id of the check this outcome ends.
    pub fn id(&self) -> u64 {
        match self {
            EchoOutcome::Matched { id, .. }
            | EchoOutcome::Mismatched { id, .. }
            | EchoOutcome::TimedOut { id, .. } => *id,
        }
    }
}

#[derive(Debug)]
struct PendingEcho {
    id: u64,
    expected: Value,
    sent_at: Instant,
    within: Duration,
    /// The first text that arrived after the send and was not this echo.
    first_other: Option<String>,
}

/// Echo checks in flight, in the order they were sent. A front-end that prints every
/// message as it arrives (the REPL) feeds each text message to [`EchoTracker::observe`]
/// and calls [`EchoTracker::expire`] when [`EchoTracker::next_deadline`] passes; each
/// check ends exactly once, as an [`EchoOutcome`].
///
/// A message that is the echo of several pending sends (the same text sent twice) ends
/// the oldest. Messages that are not an echo (broadcasts, other traffic) end nothing by
/// themselves; they are remembered as the "actual" of a check that times out. An API
/// Gateway error frame ends the oldest pending check at once, as a mismatch.
#[derive(Debug, Default)]
pub struct EchoTracker {
    pending: VecDeque<PendingEcho>,
    next_id: u64,
}

impl EchoTracker {
    /// No checks in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a check: `expected` should arrive within `within` of `sent_at`. Returns the
    /// check's id, which its outcome carries. Take `sent_at` just *before* sending: on
    /// loopback the echo can be read before the send call returns, and a message read
    /// before `sent_at` is never taken for its echo.
    pub fn expect(&mut self, expected: Value, sent_at: Instant, within: Duration) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(PendingEcho {
            id,
            expected,
            sent_at,
            within,
            first_other: None,
        });
        id
    }

    /// A text message arrived at `at`: ends the oldest check it is the echo of, or, for a
    /// gateway error frame, the oldest check of all.
    pub fn observe(&mut self, text: &str, at: Instant) -> Option<EchoOutcome> {
        let position = self
            .pending
            .iter()
            .position(|check| at >= check.sent_at && echo_matches(&check.expected, text));
        if let Some(check) = position.and_then(|index| self.pending.remove(index)) {
            return Some(EchoOutcome::Matched {
                id: check.id,
                expected: check.expected,
                latency: at.saturating_duration_since(check.sent_at),
            });
        }
        if parse_gateway_error(text).is_some() {
            let check = self.pending.pop_front()?;
            return Some(EchoOutcome::Mismatched {
                id: check.id,
                expected: check.expected,
                actual: text.to_owned(),
            });
        }
        for check in &mut self.pending {
            if check.first_other.is_none() && at >= check.sent_at {
                check.first_other = Some(text.to_owned());
            }
        }
        None
    }

    /// Ends every check whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<EchoOutcome> {
        let mut ended = Vec::new();
        self.pending.retain_mut(|check| {
            if now < check.sent_at + check.within {
                return true;
            }
            ended.push(Self::unanswered(check));
            false
        });
        ended
    }

    /// Ends every check: the connection closed, nothing more can arrive.
    pub fn abandon(&mut self) -> Vec<EchoOutcome> {
        self.pending
            .drain(..)
            .map(|mut check| Self::unanswered(&mut check))
            .collect()
    }

    /// When the earliest pending check runs out, for a timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|check| check.sent_at + check.within)
            .min()
    }

    /// How many checks are in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no check is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn unanswered(check: &mut PendingEcho) -> EchoOutcome {
        let expected = std::mem::take(&mut check.expected);
        match check.first_other.take() {
            Some(actual) => EchoOutcome::Mismatched {
                id: check.id,
                expected,
                actual,
            },
            None => EchoOutcome::TimedOut {
                id: check.id,
                expected,
                after: check.within,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> RouteFields {
        RouteFields::default()
    }

    #[test]
    fn the_blog_round_trip() {
        let sent = route_tagged("send", Some("\"Hello World!\""), &fields());
        assert_eq!(
            sent.to_string(),
            r#"{"action":"send","body":"Hello World!"}"#
        );
        let expected = expected_echo(&sent, EchoPolicy::Body, &fields()).unwrap();
        assert!(echo_matches(&expected, "\"Hello World!\""));
        assert!(echo_matches(&expected, "Hello World!"));
        assert!(!echo_matches(&expected, "\"Hello World\""));
    }

    #[test]
    fn payload_kinds() {
        let f = fields();
        assert_eq!(route_tagged("ping", None, &f), json!({"action": "ping"}));
        assert_eq!(
            route_tagged("ping", Some("  "), &f),
            json!({"action": "ping"})
        );
        assert_eq!(
            route_tagged("send", Some("Hello World!"), &f),
            json!({"action": "send", "body": "Hello World!"})
        );
        assert_eq!(
            route_tagged("send", Some("42"), &f),
            json!({"action": "send", "body": 42})
        );
        assert_eq!(
            route_tagged("send", Some("[1, 2]"), &f),
            json!({"action": "send", "body": [1, 2]})
        );
        assert_eq!(
            route_tagged_text("sendmessage", Some(r#"{"data": "hi", "action": "x"}"#), &f),
            r#"{"action":"sendmessage","data":"hi"}"#
        );
    }

    #[test]
    fn custom_fields() {
        let f = RouteFields {
            route_field: "message".into(),
            body_field: "data".into(),
        };
        let sent = route_tagged("send", Some("hi"), &f);
        assert_eq!(sent.to_string(), r#"{"message":"send","data":"hi"}"#);
        assert_eq!(
            expected_echo(&sent, EchoPolicy::Body, &f),
            Some(json!("hi"))
        );
    }

    #[test]
    fn echo_policies() {
        let f = fields();
        let sent = route_tagged("send", Some(r#"{"body": {"a": 1}}"#), &f);
        assert_eq!(
            expected_echo(&sent, EchoPolicy::Body, &f),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            expected_echo(&sent, EchoPolicy::Full, &f),
            Some(sent.clone())
        );
        assert_eq!(expected_echo(&sent, EchoPolicy::Off, &f), None);
        let no_body = route_tagged("ping", None, &f);
        assert_eq!(expected_echo(&no_body, EchoPolicy::Body, &f), None);
    }

    #[test]
    fn echoes_compare_as_json() {
        let expected = json!({"action": "send", "body": {"n": 1, "list": [1.0, "x"]}});
        assert!(echo_matches(
            &expected,
            r#" { "body": {"list": [1, "x"], "n": 1.0}, "action": "send" } "#
        ));
        assert!(!echo_matches(&expected, r#"{"action": "send"}"#));
        assert!(!echo_matches(
            &expected,
            r#"{"action": "send", "body": {"n": 2, "list": [1, "x"]}}"#
        ));
        assert!(!echo_matches(&json!(42), "\"42\""));
        assert!(!echo_matches(&json!("42"), "42"));
        assert!(!echo_matches(&json!({"a": 1}), "not json"));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn gateway_errors() {
        let frame = r#"{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", "requestId":"XDmGEE2RoE0FRdQ="}"#;
        assert_eq!(
            parse_gateway_error(frame),
            Some(GatewayError {
                message: "Forbidden".into(),
                connection_id: "XDmENcnwIE0CFEQ=".into(),
                request_id: "XDmGEE2RoE0FRdQ=".into(),
            })
        );
        let validation =
            r#"{"message" : "Bad request body", "connectionId": "c=", "messageId": "m="}"#;
        assert_eq!(
            parse_gateway_error(validation).map(|e| e.request_id),
            Some("m=".into())
        );
        assert_eq!(parse_gateway_error(r#"{"message": "hi"}"#), None);
        assert_eq!(
            parse_gateway_error(r#"{"message": "hi", "connectionId": "c", "data": 1}"#),
            None
        );
        assert_eq!(parse_gateway_error("Forbidden"), None);
        assert_eq!(parse_gateway_error(r#"["message"]"#), None);
    }

    #[test]
    fn management_urls() {
        let cases = [
            (
                "ws://127.0.0.1:8080/dev",
                "http://127.0.0.1:8080/dev/@connections",
            ),
            (
                "wss://abc.execute-api.eu-west-1.amazonaws.com/prod/chat?x=1",
                "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections",
            ),
            ("ws://[::1]:9000/dev/", "http://[::1]:9000/dev/@connections"),
            ("ws://localhost/", "http://localhost/@connections"),
            (
                "wss://user:pw@h:443/st%20age",
                "https://h/st%20age/@connections",
            ),
        ];
        for (ws, expected) in cases {
            let url = Url::parse(ws).unwrap();
            assert_eq!(management_url(&url).as_str(), expected, "{ws}");
        }
    }
    #[test]
    fn echo_tracker_matches_in_order_and_reports_each_check_once() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tracker = EchoTracker::new();
        let first = tracker.expect(json!("hi"), start, ms(100));
        let second = tracker.expect(json!("hi"), start + ms(1), ms(100));
        let third = tracker.expect(json!({"n": 3}), start + ms(2), ms(100));
        assert_eq!(tracker.len(), 3);
        assert_eq!(tracker.next_deadline(), Some(start + ms(100)));

        // Traffic that is no echo ends nothing.
        assert_eq!(tracker.observe("broadcast", start + ms(3)), None);
        // The same echo twice ends the two sends in order.
        assert_eq!(
            tracker.observe("\"hi\"", start + ms(5)),
            Some(EchoOutcome::Matched {
                id: first,
                expected: json!("hi"),
                latency: ms(5)
            })
        );
        assert_eq!(
            tracker.observe("hi", start + ms(6)).map(|o| o.id()),
            Some(second)
        );
        // The third never comes: it ends with the first other message as "actual".
        assert!(tracker.expire(start + ms(50)).is_empty());
        assert_eq!(
            tracker.expire(start + ms(102)),
            vec![EchoOutcome::Mismatched {
                id: third,
                expected: json!({"n": 3}),
                actual: "broadcast".into()
            }]
        );
        assert!(tracker.is_empty());
        assert_eq!(tracker.next_deadline(), None);
    }

    #[test]
    fn echo_tracker_timeouts_gateway_errors_and_closing() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tracker = EchoTracker::new();
        let lonely = tracker.expect(json!("x"), start, ms(10));
        assert_eq!(
            tracker.expire(start + ms(10)),
            vec![EchoOutcome::TimedOut {
                id: lonely,
                expected: json!("x"),
                after: ms(10)
            }]
        );
        let refused = tracker.expect(json!("y"), start, ms(10));
        let forbidden = r#"{"message": "Forbidden", "connectionId":"c=", "requestId":"r="}"#;
        assert_eq!(
            tracker.observe(forbidden, start + ms(1)),
            Some(EchoOutcome::Mismatched {
                id: refused,
                expected: json!("y"),
                actual: forbidden.into()
            })
        );
        let orphan = tracker.expect(json!("z"), start, ms(10));
        assert_eq!(
            tracker
                .abandon()
                .iter()
                .map(EchoOutcome::id)
                .collect::<Vec<_>>(),
            [orphan]
        );
        // A message that arrived before a send cannot be its echo.
        let later = tracker.expect(json!("w"), start + ms(5), ms(10));
        assert_eq!(tracker.observe("w", start + ms(4)), None);
        assert_eq!(
            tracker.observe("w", start + ms(6)).map(|o| o.id()),
            Some(later)
        );
    }
}
