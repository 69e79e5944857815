//! Route selection and route behaviours: which route a text message goes to
//! (`$request.body.PATH`, `$default`, or none) and what each behaviour sends back.
//! Pure functions of the message, so they are unit-tested here.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// What a route does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteBehaviour {
    /// The sample app's `send`: the value of the message's `body` field, as JSON text, back
    /// to the sender.
    EchoBody,
    /// The whole frame back to the sender, unchanged.
    Echo,
    /// The value of the `body` field, as JSON text, to every connection of the stage.
    Broadcast,
    /// `{"connectionId":"…"}` back to the sender: how a test learns its own connection id
    /// (API Gateway tells only the backend), e.g. to push to itself through `@connections`.
    Whoami,
    /// The message goes to a Lambda integration (an index into
    /// [`crate::Integrations::endpoints`]) as a MESSAGE event.
    Lambda(usize),
}

impl RouteBehaviour {
    /// The names `--route NAME=BEHAVIOUR` accepts.
    pub const NAMES: &'static str = "echo-body, echo, broadcast, whoami, lambda, lambda:URL";

    /// The behaviour named `echo-body`, `echo`, `broadcast` or `whoami`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "echo-body" => Some(Self::EchoBody),
            "echo" => Some(Self::Echo),
            "broadcast" => Some(Self::Broadcast),
            "whoami" => Some(Self::Whoami),
            _ => None,
        }
    }
}

impl fmt::Display for RouteBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EchoBody => "echo-body",
            Self::Echo => "echo",
            Self::Broadcast => "broadcast",
            Self::Whoami => "whoami",
            Self::Lambda(_) => "lambda",
        })
    }
}

/// Route keys (exact, case-sensitive, as API Gateway matches them) and their behaviours.
/// The default table holds the sample app's `send` route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    routes: HashMap<String, RouteBehaviour>,
}

impl Default for RouteTable {
    fn default() -> Self {
        let mut routes = HashMap::new();
        routes.insert("send".to_owned(), RouteBehaviour::EchoBody);
        Self { routes }
    }
}

impl RouteTable {
    /// A table without the built-in `send` route.
    pub fn empty() -> Self {
        Self {
            routes: HashMap::new(),
        }
    }

    /// Adds or replaces a route.
    pub fn insert(&mut self, key: impl Into<String>, behaviour: RouteBehaviour) -> &mut Self {
        self.routes.insert(key.into(), behaviour);
        self
    }

    /// The table with one more route, for building a table in one expression:
    /// `RouteTable::default().with("chat", RouteBehaviour::Broadcast)`.
    pub fn with(mut self, key: impl Into<String>, behaviour: RouteBehaviour) -> Self {
        self.insert(key, behaviour);
        self
    }

    /// Removes a route (e.g. the built-in `send`).
    pub fn remove(&mut self, key: &str) -> Option<RouteBehaviour> {
        self.routes.remove(key)
    }

    /// The behaviour of route key `key` (exact match).
    pub fn get(&self, key: &str) -> Option<RouteBehaviour> {
        self.routes.get(key).copied()
    }

    /// Parses `NAME=BEHAVIOUR`. `$default=BEHAVIOUR` is allowed (it sets the default
    /// route); other names starting with `$` are reserved by API Gateway.
    pub fn parse_route(spec: &str) -> Result<(String, RouteBehaviour), String> {
        let Some((name, behaviour)) = spec.split_once('=') else {
            return Err(format!(
                "--route `{spec}` is not NAME=BEHAVIOUR; write e.g. `--route chat=broadcast` (behaviours: {})",
                RouteBehaviour::NAMES
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("--route `{spec}` has no route name"));
        }
        if name.starts_with('$') && name != "$default" {
            return Err(format!(
                "--route `{spec}`: route keys starting with `$` are reserved (only `$default` may be set)"
            ));
        }
        let behaviour = RouteBehaviour::parse(behaviour.trim()).ok_or_else(|| {
            format!(
                "--route `{spec}`: unknown behaviour `{}` (expected one of: {})",
                behaviour.trim(),
                RouteBehaviour::NAMES
            )
        })?;
        Ok((name.to_owned(), behaviour))
    }
}

/// A route selection expression, `$request.body.PATH` where PATH is a dotted path into
/// the JSON message (`$request.body.meta.route`). `${request.body.PATH}` is accepted too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionExpression {
    path: Vec<String>,
}

impl Default for SelectionExpression {
    fn default() -> Self {
        Self {
            path: vec!["action".to_owned()],
        }
    }
}

impl fmt::Display for SelectionExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$request.body.{}", self.path.join("."))
    }
}

impl SelectionExpression {
    /// Parses `$request.body.PATH` or `${request.body.PATH}`; the error says what is
    /// expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let inner = match trimmed
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(braced) => format!("${braced}"),
            None => trimmed.to_owned(),
        };
        let path = inner.strip_prefix("$request.body.").ok_or_else(|| {
            format!(
                "route selection expression `{text}` is not `$request.body.PATH`; write e.g. `$request.body.action`"
            )
        })?;
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || "{}[]$".contains(c)))
        {
            return Err(format!(
                "route selection expression `{text}` has an empty or invalid path segment; write e.g. `$request.body.meta.route`"
            ));
        }
        Ok(Self { path: segments })
    }

    /// The route key of a parsed JSON message: strings as they are, numbers and booleans
    /// as written, objects and arrays as JSON text (API Gateway stringifies them). `None`
    /// when the path does not exist or holds `null`.
    pub fn evaluate(&self, message: &Value) -> Option<String> {
        let mut value = message;
        for segment in &self.path {
            value = value.as_object()?.get(segment)?;
        }
        match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Where a text message goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// A route key of the table matched.
    Route {
        key: String,
        behaviour: RouteBehaviour,
    },
    /// Nothing matched, and `$default` is configured.
    Default(RouteBehaviour),
    /// Nothing matched and there is no `$default`: the gateway's `Forbidden` frame.
    NoRoute,
}

impl Selection {
    /// The route key as API Gateway would report it, if a route was selected.
    pub fn route_key(&self) -> Option<&str> {
        match self {
            Self::Route { key, .. } => Some(key),
            Self::Default(_) => Some("$default"),
            Self::NoRoute => None,
        }
    }
}

/// Selects the route of a text message, as API Gateway does: non-JSON and unmatched
/// messages go to `$default` when it exists. `parsed` is the message parsed as JSON, if it
/// is JSON.
pub fn select(
    parsed: Option<&Value>,
    expression: &SelectionExpression,
    routes: &RouteTable,
    default_route: Option<RouteBehaviour>,
) -> Selection {
    let matched = parsed
        .and_then(|message| expression.evaluate(message))
        .and_then(|key| routes.get(&key).map(|behaviour| (key, behaviour)));
    match (matched, default_route) {
        (Some((key, behaviour)), _) => Selection::Route { key, behaviour },
        (None, Some(behaviour)) => Selection::Default(behaviour),
        (None, None) => Selection::NoRoute,
    }
}

/// The JSON text of the message's `body` field, as the sample app's `send` Lambda posts
/// it back (`JSON.stringify(body)`); `None` when the message is not a JSON object with a
/// `body`.
pub fn body_as_json(parsed: Option<&Value>) -> Option<String> {
    parsed?.as_object()?.get("body").map(Value::to_string)
}

/// API Gateway's error frame, byte for byte: a space after `"message":`, none after the
/// ids. `message` is `Forbidden` (no route) or `Internal server error` (the route failed).
pub fn gateway_error_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    format!(
        "{{\"message\": \"{message}\", \"connectionId\":\"{connection_id}\", \"requestId\":\"{request_id}\"}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expr(text: &str) -> SelectionExpression {
        SelectionExpression::parse(text).unwrap()
    }

    #[test]
    fn expressions_parse_and_print() {
        assert_eq!(
            expr("$request.body.action").to_string(),
            "$request.body.action"
        );
        assert_eq!(expr("${request.body.a.b}").to_string(), "$request.body.a.b");
        for bad in [
            "",
            "action",
            "$request.body",
            "$request.body.",
            "$request.body.a..b",
            "$request.header.x",
            "$request.body.a b",
        ] {
            assert!(SelectionExpression::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn evaluation_follows_nested_paths_and_stringifies() {
        let message = json!({"action": "send", "meta": {"route": "chat", "n": 5, "o": {"x": 1}}, "nul": null});
        assert_eq!(
            expr("$request.body.action").evaluate(&message).as_deref(),
            Some("send")
        );
        assert_eq!(
            expr("$request.body.meta.route")
                .evaluate(&message)
                .as_deref(),
            Some("chat")
        );
        assert_eq!(
            expr("$request.body.meta.n").evaluate(&message).as_deref(),
            Some("5")
        );
        assert_eq!(
            expr("$request.body.meta.o").evaluate(&message).as_deref(),
            Some("{\"x\":1}")
        );
        assert_eq!(expr("$request.body.nul").evaluate(&message), None);
        assert_eq!(expr("$request.body.missing").evaluate(&message), None);
        assert_eq!(expr("$request.body.action.deeper").evaluate(&message), None);
        assert_eq!(expr("$request.body.action").evaluate(&json!("send")), None);
    }

    #[test]
    fn selection_falls_back_to_default_then_to_no_route() {
        let routes = RouteTable::default();
        let action = SelectionExpression::default();
        let send = json!({"action": "send", "body": 1});
        let other = json!({"action": "other"});
        assert_eq!(
            select(Some(&send), &action, &routes, None),
            Selection::Route {
                key: "send".into(),
                behaviour: RouteBehaviour::EchoBody
            }
        );
        assert_eq!(
            select(Some(&other), &action, &routes, None),
            Selection::NoRoute
        );
        assert_eq!(select(None, &action, &routes, None), Selection::NoRoute);
        assert_eq!(
            select(None, &action, &routes, Some(RouteBehaviour::Echo)),
            Selection::Default(RouteBehaviour::Echo)
        );
        // Route keys match exactly, case included.
        let upper = json!({"action": "SEND"});
        assert_eq!(
            select(Some(&upper), &action, &routes, None),
            Selection::NoRoute
        );
    }

    #[test]
    fn body_is_json_encoded() {
        assert_eq!(
            body_as_json(Some(&json!({"action": "send", "body": "Hello World!"}))).as_deref(),
            Some("\"Hello World!\"")
        );
        assert_eq!(
            body_as_json(Some(&json!({"body": {"a": [1, 2]}}))).as_deref(),
            Some("{\"a\":[1,2]}")
        );
        assert_eq!(body_as_json(Some(&json!({"action": "send"}))), None);
        assert_eq!(body_as_json(None), None);
    }

    #[test]
    fn tables_build_in_one_expression() {
        let table = RouteTable::empty().with("chat", RouteBehaviour::Broadcast);
        assert_eq!(table.get("chat"), Some(RouteBehaviour::Broadcast));
        assert_eq!(table.get("send"), None);
        assert_eq!(
            RouteTable::default().get("send"),
            Some(RouteBehaviour::EchoBody)
        );
    }

    #[test]
    fn route_specs_parse() {
        assert_eq!(
            RouteTable::parse_route("chat=broadcast").unwrap(),
            ("chat".to_owned(), RouteBehaviour::Broadcast)
        );
        assert_eq!(
            RouteTable::parse_route("$default=echo").unwrap(),
            ("$default".to_owned(), RouteBehaviour::Echo)
        );
        assert!(RouteTable::parse_route("chat").is_err());
        assert!(RouteTable::parse_route("=echo").is_err());
        assert!(RouteTable::parse_route("$disconnect=echo").is_err());
        assert!(RouteTable::parse_route("chat=yell").is_err());
    }

    #[test]
    fn error_frame_has_the_gateway_layout() {
        assert_eq!(
            gateway_error_frame("Forbidden", "XDmENcnwIE0CFEQ=", "XDmGEE2RoE0FRdQ="),
            r#"{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", "requestId":"XDmGEE2RoE0FRdQ="}"#
        );
    }
}
