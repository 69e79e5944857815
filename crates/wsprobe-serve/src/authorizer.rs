//! `$connect` Lambda REQUEST authorizers (`serve --authorizer URL --identity-source …`), as
//! API Gateway runs them (`shared/spec/apigw-websocket.md` §3, §4): every identity source
//! must be present and non-empty, or the handshake gets 401 without a call; the
//! authorizer gets a `REQUEST` event; a thrown `Unauthorized` is 401, a Deny or a policy
//! that does not cover the `$connect` ARN is 403, anything else that goes wrong is 500;
//! an Allow lets the handshake go on, and its `principalId` and `context` ride along on
//! every later event of the connection as `requestContext.authorizer`.
//!
//! Pure functions of the request and the answer, so they are unit-tested here; `app.rs`
//! does the invoking.

use std::fmt;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::lambda::{API_ID, Answer, InvokeError};

/// The largest authorizer result API Gateway accepts (8 KB).
const MAX_RESULT: usize = 8 * 1024;

/// The account id in the `methodArn`: there is no account locally.
const ACCOUNT: &str = "000000000000";

/// The region in the `methodArn`: there is no region locally.
const REGION: &str = "local";

/// A `$connect` REQUEST authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorizer {
    /// Its endpoint, an index into `Integrations::endpoints` (so it shares that
    /// endpoint's invocation queue).
    pub endpoint: usize,
    /// What must be in the request before the authorizer is called; never empty.
    pub identity_sources: Vec<IdentitySource>,
}

/// Where an identity comes from, in API Gateway's syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.NAME` (case-insensitive, as HTTP header names are).
    Header(String),
    /// `route.request.querystring.NAME`.
    QueryString(String),
}

impl IdentitySource {
    /// API Gateway's (and the CDK's) default: `route.request.header.Authorization`.
    pub fn default_sources() -> Vec<Self> {
        vec![Self::Header("Authorization".to_owned())]
    }

    /// Parses a comma-separated list (`route.request.header.Auth,
    /// route.request.querystring.token`); the error says what is expected.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let sources = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if sources.is_empty() {
            return Err(format!(
                "--identity-source `{text}` names no source; write e.g. \
                 `route.request.header.Authorization`"
            ));
        }
        Ok(sources)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let named = |rest: &str| {
            (!rest.is_empty() && !rest.contains(char::is_whitespace)).then(|| rest.to_owned())
        };
        if let Some(name) = text.strip_prefix("route.request.header.").and_then(named) {
            return Ok(Self::Header(name));
        }
        if let Some(name) = text
            .strip_prefix("route.request.querystring.")
            .and_then(named)
        {
            return Ok(Self::QueryString(name));
        }
        Err(format!(
            "identity source `{text}` is not `route.request.header.NAME` or \
             `route.request.querystring.NAME` (stage variables and context values are not \
             available locally)"
        ))
    }

    /// Whether the request carries this source with a non-empty value.
    fn present(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        match self {
            Self::Header(name) => headers
                .get_all(name.as_str())
                .iter()
                .any(|value| !value.as_bytes().trim_ascii().is_empty()),
            Self::QueryString(name) => query.is_some_and(|query| {
                url::form_urlencoded::parse(query.as_bytes())
                    .any(|(key, value)| key == name.as_str() && !value.is_empty())
            }),
        }
    }
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "route.request.header.{name}"),
            Self::QueryString(name) => write!(f, "route.request.querystring.{name}"),
        }
    }
}

/// The first identity source the request lacks (missing or empty), if any.
pub fn missing_source<'a>(
    sources: &'a [IdentitySource],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<&'a IdentitySource> {
    sources
        .iter()
        .find(|source| !source.present(headers, query))
}

/// The ARN the policy must allow: `arn:aws:execute-api:local:000000000000:local/{stage}/$connect`.
pub fn method_arn(stage: &str) -> String {
    format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{stage}/$connect")
}

/// The REQUEST event, made from the `$connect` event of the same request (its headers,
/// query maps and request context): plus `type`, `methodArn` and `stageVariables`, and
/// the `Connection`/`Upgrade` headers that API Gateway's authorizer example shows.
pub fn request_event(connect_event: &Value, method_arn: &str, headers: &HeaderMap) -> Value {
    let mut event = Map::new();
    event.insert("type".into(), "REQUEST".into());
    event.insert("methodArn".into(), method_arn.into());
    if let Value::Object(connect) = connect_event {
        for (key, value) in connect {
            if key != "isBase64Encoded" {
                event.insert(key.clone(), value.clone());
            }
        }
    }
    for (name, shown) in [("connection", "Connection"), ("upgrade", "Upgrade")] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            if let Some(Value::Object(single)) = event.get_mut("headers") {
                single.insert(shown.into(), value.into());
            }
            if let Some(Value::Object(multi)) = event.get_mut("multiValueHeaders") {
                multi.insert(shown.into(), Value::Array(vec![value.into()]));
            }
        }
    }
    event.insert("stageVariables".into(), Value::Object(Map::new()));
    Value::Object(event)
}

/// What the authorizer decided, and what the handshake gets.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Allowed: `requestContext.authorizer` of every later event.
    Allow(Map<String, Value>),
    /// It threw `Unauthorized`: 401.
    Unauthorized,
    /// A Deny, or no Allow that covers the ARN: 403, and why.
    Deny(String),
    /// Anything else (a crash, a timeout, a malformed result): 500, and why.
    Error(String),
}

impl Decision {
    /// The handshake's status when refused, and API Gateway's body for it.
    pub fn refusal(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::Allow(_) => None,
            Self::Unauthorized => Some((401, crate::auth::UNAUTHORIZED_BODY)),
            Self::Deny(_) => Some((403, crate::auth::FORBIDDEN_BODY)),
            Self::Error(_) => Some((500, r#"{"message":"Internal server error"}"#)),
        }
    }

    /// One word for the AUTHORIZE log line.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Unauthorized => "unauthorized",
            Self::Deny(_) => "deny",
            Self::Error(_) => "error",
        }
    }
}

/// Reads the authorizer's answer; `latency_ms` becomes `integrationLatency`.
pub fn decide(answer: Result<Answer, InvokeError>, method_arn: &str, latency_ms: u64) -> Decision {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return Decision::Error(error.to_string()),
    };
    if answer.payload.len() > MAX_RESULT {
        return Decision::Error(format!(
            "the authorizer's result is {} bytes, over API Gateway's 8 KB",
            answer.payload.len()
        ));
    }
    let Ok(value) = serde_json::from_slice::<Value>(&answer.payload) else {
        return Decision::Error("the authorizer's result is not JSON".to_owned());
    };
    let error_message = value.get("errorMessage").and_then(Value::as_str);
    if answer.function_error || (error_message.is_some() && value.get("policyDocument").is_none()) {
        // Only this exact message means "no entry" (API Gateway's convention).
        return match error_message {
            Some("Unauthorized") => Decision::Unauthorized,
            Some(message) => Decision::Error(format!("the authorizer failed: {message}")),
            None => Decision::Error("the authorizer failed".to_owned()),
        };
    }
    let Some(result) = value.as_object() else {
        return Decision::Error("the authorizer's result is not a JSON object".to_owned());
    };
    let principal = match result.get("principalId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Decision::Error("the authorizer's result has no principalId".to_owned()),
    };
    let Some(statements) = result
        .get("policyDocument")
        .and_then(|document| document.get("Statement"))
    else {
        return Decision::Error("the authorizer's result has no policyDocument".to_owned());
    };
    let statements: Vec<&Value> = match statements {
        Value::Array(list) => list.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return Decision::Error("the policy's Statement is not a list".to_owned()),
    };
    let mut allowed = false;
    for statement in statements {
        if !(covers(statement.get("Action"), "execute-api:Invoke")
            && covers(statement.get("Resource"), method_arn))
        {
            continue;
        }
        match statement.get("Effect").and_then(Value::as_str) {
            Some(effect) if effect.eq_ignore_ascii_case("deny") => {
                return Decision::Deny("the policy denies $connect".to_owned());
            }
            Some(effect) if effect.eq_ignore_ascii_case("allow") => allowed = true,
            _ => {}
        }
    }
    if !allowed {
        return Decision::Deny(format!("no Allow statement covers {method_arn}"));
    }
    let mut authorizer = Map::new();
    authorizer.insert("principalId".into(), principal.into());
    authorizer.insert("integrationLatency".into(), latency_ms.into());
    match result.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(context)) => {
            for (key, value) in context {
                match value {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                        authorizer.insert(key.clone(), value.clone());
                    }
                    // API Gateway accepts only flat values; anything else fails the call.
                    _ => {
                        return Decision::Error(format!(
                            "the authorizer's context value `{key}` is not a string, number or boolean"
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Decision::Error("the authorizer's context is not an object".to_owned());
        }
    }
    Decision::Allow(authorizer)
}

/// Whether a policy's `Action` or `Resource` (a string or a list) matches `target`.
fn covers(field: Option<&Value>, target: &str) -> bool {
    let matches = |pattern: &Value| pattern.as_str().is_some_and(|p| glob(p, target));
    match field {
        Some(Value::Array(patterns)) => patterns.iter().any(matches),
        Some(pattern) => matches(pattern),
        None => false,
    }
}

/// IAM's wildcard match: `*` is any run of characters (`/` and `:` included), `?` is one
/// character; the rest matches exactly. So `…/dev/*/*` does not cover `…/dev/$connect`,
/// which has no second `/`, as on AWS.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and how much of the text it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:local:000000000000:local/dev/$connect";

    fn answer(value: Value) -> Result<Answer, InvokeError> {
        Ok(Answer {
            payload: value.to_string().into_bytes(),
            function_error: false,
        })
    }

    fn policy(effect: &str, resource: Value) -> Value {
        json!({
            "principalId": "user-1",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]
            },
            "context": {"role": "admin", "level": 3, "beta": true}
        })
    }

    #[test]
    fn identity_sources_parse() {
        assert_eq!(
            IdentitySource::parse_list(
                "route.request.header.Auth, route.request.querystring.token"
            )
            .unwrap(),
            [
                IdentitySource::Header("Auth".into()),
                IdentitySource::QueryString("token".into())
            ]
        );
        for bad in [
            "",
            ",",
            "Authorization",
            "route.request.header.",
            "stageVariables.x",
            "context.x",
            "route.request.body.x",
        ] {
            assert!(IdentitySource::parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_source_must_be_present_and_non_empty() {
        let sources =
            IdentitySource::parse_list("route.request.header.Auth,route.request.querystring.token")
                .unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            missing_source(&sources, &headers, Some("token=t")),
            Some(&sources[0])
        );
        headers.insert("auth", "  ".parse().unwrap());
        assert_eq!(
            missing_source(&sources, &headers, Some("token=t")),
            Some(&sources[0])
        );
        headers.insert("auth", "x".parse().unwrap());
        assert_eq!(missing_source(&sources, &headers, Some("token=t")), None);
        assert_eq!(
            missing_source(&sources, &headers, Some("token=")),
            Some(&sources[1])
        );
        assert_eq!(missing_source(&sources, &headers, None), Some(&sources[1]));
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        for (pattern, matches) in [
            (ARN, true),
            ("*", true),
            ("arn:aws:execute-api:*:*:*/dev/$connect", true),
            ("arn:aws:execute-api:local:000000000000:local/*", true),
            ("arn:aws:execute-api:local:000000000000:local/dev/*", true),
            (
                "arn:aws:execute-api:local:000000000000:local/dev/*/*",
                false,
            ),
            ("arn:aws:execute-api:local:000000000000:local/prod/*", false),
            (
                "arn:aws:execute-api:local:000000000000:local/dev/$connec?",
                true,
            ),
            (
                "arn:aws:execute-api:local:000000000000:local/dev/$CONNECT",
                false,
            ),
        ] {
            assert_eq!(glob(pattern, ARN), matches, "{pattern}");
        }
    }

    #[test]
    fn an_allow_carries_principal_latency_and_context() {
        let decision = decide(answer(policy("Allow", json!(ARN))), ARN, 7);
        assert_eq!(
            decision,
            Decision::Allow(
                json!({"principalId": "user-1", "integrationLatency": 7, "role": "admin", "level": 3, "beta": true})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        let listed = decide(
            answer(policy("Allow", json!(["arn:x", "arn:aws:*"]))),
            ARN,
            0,
        );
        assert!(matches!(listed, Decision::Allow(_)), "{listed:?}");
    }

    #[test]
    fn denials_errors_and_unauthorized() {
        let status = |answer| decide(answer, ARN, 0).refusal().map(|(status, _)| status);
        assert_eq!(status(answer(policy("Deny", json!(ARN)))), Some(403));
        assert_eq!(
            status(answer(policy(
                "Allow",
                json!("arn:aws:execute-api:local:000000000000:local/dev/*/*")
            ))),
            Some(403)
        );
        let mut both = policy("Allow", json!("*"));
        both["policyDocument"]["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Action": "execute-api:*", "Effect": "Deny", "Resource": ARN}));
        assert_eq!(status(answer(both)), Some(403));
        let thrown = |message: &str| {
            Ok(Answer {
                payload: json!({"errorMessage": message, "errorType": "Error"})
                    .to_string()
                    .into_bytes(),
                function_error: true,
            })
        };
        assert_eq!(status(thrown("Unauthorized")), Some(401));
        assert_eq!(status(thrown("unauthorized")), Some(500));
        assert_eq!(status(thrown("boom")), Some(500));
        assert_eq!(
            status(Err(InvokeError::Timeout {
                url: "u".into(),
                after: std::time::Duration::from_secs(1)
            })),
            Some(500)
        );
        let mut nested = policy("Allow", json!(ARN));
        nested["context"] = json!({"list": [1]});
        assert_eq!(status(answer(nested)), Some(500));
        let mut anonymous = policy("Allow", json!(ARN));
        anonymous.as_object_mut().unwrap().remove("principalId");
        assert_eq!(status(answer(anonymous)), Some(500));
        assert_eq!(status(answer(json!({"principalId": "p"}))), Some(500));
        let mut large = policy("Allow", json!(ARN));
        large["context"]["pad"] = json!("x".repeat(9000));
        assert_eq!(status(answer(large)), Some(500));
    }

    #[test]
    fn the_request_event_is_the_connect_event_plus_type_and_arn() {
        let connect = json!({
            "headers": {"Host": "h", "Authorization": "Bearer t"},
            "multiValueHeaders": {"Host": ["h"], "Authorization": ["Bearer t"]},
            "queryStringParameters": {"token": "q"},
            "requestContext": {"routeKey": "$connect", "eventType": "CONNECT"},
            "isBase64Encoded": false
        });
        let mut headers = HeaderMap::new();
        headers.insert("connection", "Upgrade".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        let event = request_event(&connect, ARN, &headers);
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["methodArn"], ARN);
        assert_eq!(event["headers"]["Authorization"], "Bearer t");
        assert_eq!(event["headers"]["Upgrade"], "websocket");
        assert_eq!(event["multiValueHeaders"]["Connection"], json!(["Upgrade"]));
        assert_eq!(event["queryStringParameters"]["token"], "q");
        assert_eq!(event["requestContext"]["eventType"], "CONNECT");
        assert_eq!(event["stageVariables"], json!({}));
        assert!(event.get("isBase64Encoded").is_none());
        assert_eq!(method_arn("dev"), ARN);
    }
}
