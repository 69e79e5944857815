//! Route selection and route behaviours: which route a text message goes to
//! (a route selection expression, `$default`, or none) and what each behaviour sends back.
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

/// A route selection expression as API Gateway takes it: `$request.body.PATH`,
/// `${request.body.PATH}`, or several such variables with static text around them
/// (`${request.body.kind}-${request.body.op}`). PATH is a JSONPath into the message:
/// names joined by dots, and `[N]` array indexes (`$request.body.meta.route`,
/// `${request.body.items[0].kind}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionExpression {
    /// The expression as written, for messages and `Display`.
    text: String,
    parts: Vec<Part>,
}

/// A piece of an expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Static text, as written.
    Text(String),
    /// `$request.body.PATH`: the value at PATH.
    Body(Vec<Step>),
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl Default for SelectionExpression {
    fn default() -> Self {
        Self {
            text: "$request.body.action".to_owned(),
            parts: vec![Part::Body(vec![Step::Key("action".to_owned())])],
        }
    }
}

impl fmt::Display for SelectionExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const BODY_VARIABLE: &str = "request.body.";

impl SelectionExpression {
    /// Parses an expression; the error says what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let bad = |why: &str| {
            format!(
                "route selection expression `{text}` {why}; write e.g. `$request.body.action` \
                 or `${{request.body.kind}}-${{request.body.op}}`"
            )
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = trimmed;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (path, remainder) = if let Some(braced) = after.strip_prefix('{') {
                let close = braced
                    .find('}')
                    .ok_or_else(|| bad("has a `${` without `}`"))?;
                let inner = &braced[..close];
                let path = inner
                    .strip_prefix(BODY_VARIABLE)
                    .ok_or_else(|| bad("uses a variable other than `request.body.PATH`"))?;
                (
                    parse_path(path).map_err(|why| bad(&why))?,
                    &braced[close + 1..],
                )
            } else {
                let path = after
                    .strip_prefix(BODY_VARIABLE)
                    .ok_or_else(|| bad("uses a variable other than `$request.body.PATH`"))?;
                // Unbraced, the path runs as far as names, dots and `[N]` go (a `-` ends
                // it, so `$request.body.kind-$request.body.op` works); static text that
                // starts with `.` or `[` needs the braced form, so a typo such as `a..b`
                // is an error rather than a path and some text.
                let name_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
                let bytes = path.as_bytes();
                let mut end = 0;
                while end < bytes.len() {
                    let c = bytes[end];
                    let dot_then_name =
                        c == b'.' && bytes.get(end + 1).is_some_and(|&n| name_char(n));
                    if name_char(c) || dot_then_name {
                        end += 1;
                    } else if c == b'[' {
                        match path[end..].find(']') {
                            Some(close) => end += close + 1,
                            None => break,
                        }
                    } else {
                        break;
                    }
                }
                if matches!(bytes.get(end), Some(b'.' | b'[')) {
                    return Err(bad(
                        "has a path that does not end cleanly (use `${request.body.PATH}` before static text)",
                    ));
                }
                (
                    parse_path(&path[..end]).map_err(|why| bad(&why))?,
                    &path[end..],
                )
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Body(path));
            rest = remainder;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if !parts.iter().any(|part| matches!(part, Part::Body(_))) {
            return Err(bad("has no `$request.body.PATH` variable"));
        }
        Ok(Self {
            text: trimmed.to_owned(),
            parts,
        })
    }

    /// The route key of a parsed JSON message, as API Gateway evaluates it: each variable
    /// becomes its value — strings as they are, numbers and booleans as written, objects
    /// and arrays as JSON text, `""` when the path is not found or holds `null` — and the
    /// static text stays. `None` when the result is empty (no route key can be).
    pub fn evaluate(&self, message: &Value) -> Option<String> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => key.push_str(text),
                Part::Body(path) => match lookup(message, path) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => key.push_str(s),
                    Some(other) => key.push_str(&other.to_string()),
                },
            }
        }
        (!key.is_empty()).then_some(key)
    }
}

/// Parses `a.b[0].c`; the error says which part is wrong.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for segment in path.split('.') {
        let (name, mut indexes) = match segment.find('[') {
            Some(open) => (&segment[..open], &segment[open..]),
            None => (segment, ""),
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(format!(
                "has an empty or invalid path segment `{segment}` in `{path}`"
            ));
        }
        steps.push(Step::Key(name.to_owned()));
        while !indexes.is_empty() {
            let index = indexes
                .strip_prefix('[')
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(number, rest)| Some((number.parse::<usize>().ok()?, rest)));
            let Some((index, rest)) = index else {
                return Err(format!("has an invalid array index in `{segment}`"));
            };
            steps.push(Step::Index(index));
            indexes = rest;
        }
    }
    Ok(steps)
}

/// The value at `path` in `message`, if there is one.
fn lookup<'a>(message: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(message, |value, step| match step {
        Step::Key(key) => value.as_object()?.get(key),
        Step::Index(index) => value.as_array()?.get(*index),
    })
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
        assert_eq!(
            expr("${request.body.a.b}").to_string(),
            "${request.body.a.b}"
        );
        assert_eq!(expr("${request.body.a.b}"), {
            let mut same = expr("$request.body.a.b");
            same.text = "${request.body.a.b}".into();
            same
        });
        for bad in [
            "",
            "action",
            "static text",
            "$request.body",
            "$request.body.",
            "$request.body.a..b",
            "$request.body.a.",
            "$request.body.a[",
            "$request.header.x",
            "${request.header.x}",
            "${request.body.a",
            "${request.body.}",
            "${request.body.a b}",
            "${request.body.a[x]}",
            "$context.routeKey",
        ] {
            assert!(SelectionExpression::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn several_variables_and_static_text() {
        let message =
            json!({"kind": "chat", "op": "post", "n": 5, "items": [{"k": "x"}], "o": {"a": [1]}});
        let key = |text: &str| expr(text).evaluate(&message);
        assert_eq!(
            key("${request.body.kind}-${request.body.op}").as_deref(),
            Some("chat-post")
        );
        assert_eq!(
            key("$request.body.kind-$request.body.op").as_deref(),
            Some("chat-post")
        );
        assert_eq!(key("v1:${request.body.kind}").as_deref(), Some("v1:chat"));
        assert_eq!(key("${request.body.kind}.").as_deref(), Some("chat."));
        assert_eq!(key("${request.body.items[0].k}").as_deref(), Some("x"));
        assert_eq!(key("$request.body.items[0].k!").as_deref(), Some("x!"));
        assert_eq!(
            key("${request.body.n}${request.body.o}").as_deref(),
            Some("5{\"a\":[1]}")
        );
        // A path not found is "": the static text and the other variables remain.
        assert_eq!(
            key("${request.body.kind}-${request.body.missing}").as_deref(),
            Some("chat-")
        );
        assert_eq!(key("${request.body.missing}"), None);
        assert_eq!(key("${request.body.items[3]}"), None);
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
