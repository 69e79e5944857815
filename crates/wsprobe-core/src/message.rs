//! Route-tagged messages and echo matching, shared by every job.
//!
//! API Gateway picks a route from a field of each JSON message (`$request.body.action` in
//! most stages), so "send to route `send` with body `Hello World!`" means sending
//! `{"action":"send","body":"Hello World!"}`. The sample echo app's `send` route echoes the
//! body field back; [`expected_echo`] says what to expect for an [`EchoPolicy`] and
//! [`echo_matches`] compares it with what arrived, as JSON. API Gateway's own error frames
//! (`{"message": "Forbidden", ...}`) are recognised by [`parse_gateway_error`], and
//! [`management_url`] gives a stage's `@connections` endpoint.

use serde_json::{Map, Value};
use url::Url;

use crate::command::{EchoPolicy, json_equal};
use crate::options::{DEFAULT_BODY_FIELD, DEFAULT_ROUTE_FIELD};

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

/// The one echo verdict: whether `received_text` is the echo `expected`. Equal as JSON
/// (key order, whitespace and `1` vs `1.0` do not matter); a reply that is not JSON at all
/// is compared as raw text with an expected string, so an app that echoes `Hello`
/// unquoted (a Lambda posting the body as is) still matches the body `"Hello"`. `expect
/// echo` in a script and at the prompt, and the prompt's background echo checks, all
/// decide with this function, so they cannot disagree about a frame.
pub fn echo_matches(expected: &Value, received_text: &str) -> bool {
    match serde_json::from_str::<Value>(received_text) {
        Ok(received) => json_equal(expected, &received),
        Err(_) => matches!(expected, Value::String(text) if text == received_text),
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
}
