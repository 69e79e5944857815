//! Lambda integrations: `serve --integration URL` and `--route NAME=lambda[:URL]` hand
//! each event to the user's own handler as an API Gateway Lambda proxy event (the shapes
//! of `shared/spec/apigw-websocket.md` §4), POSTed to a Lambda-runtime-compatible endpoint
//! such as the Lambda Runtime Interface Emulator's
//! `http://127.0.0.1:9000/2015-03-31/functions/function/invocations`.
//!
//! What comes back decides what the client sees: on `$connect` the proxy response's
//! `statusCode` (2xx accepts the handshake, any other status refuses it with that status,
//! an error or timeout gives 502); on a route with a route response (`--route-response
//! NAME`) its `body` is sent to the caller; a failed or timed-out invocation sends
//! API Gateway's `Internal server error` frame. `$disconnect` results are ignored.
//!
//! The events' `domainName` is the `Host` the client connected to (`127.0.0.1:PORT`), so a
//! handler that builds its callback endpoint as `https://{domainName}/{stage}` reaches this
//! server's `@connections` API when it serves TLS (`--tls-self-signed`); the CONNECT
//! event's `X-Forwarded-Proto` says which scheme (`http` or `https`) this server speaks.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use url::Url;

/// API Gateway's largest integration timeout, and the default of `--integration-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(29);

/// The Lambda integrations of a server: where each event goes, and which routes answer.
#[derive(Clone, Debug)]
pub struct Integrations {
    /// Every integration endpoint; [`crate::RouteBehaviour::Lambda`] holds an index here.
    pub endpoints: Vec<Url>,
    /// The integration of `$connect`, if any (an index into `endpoints`).
    pub connect: Option<usize>,
    /// The integration of `$disconnect`, if any.
    pub disconnect: Option<usize>,
    /// Route keys with a route response: their integration's `body` goes back to the
    /// caller (`--route-response NAME`, repeatable; `$default` allowed).
    pub route_responses: BTreeSet<String>,
    /// How long an invocation may take before it counts as failed, counted from when it
    /// is sent (time in the queue does not count).
    pub timeout: Duration,
    /// How many invocations may be in flight at once per endpoint
    /// (`--integration-concurrency`); the others wait in the endpoint's queue. 1 by
    /// default: one Lambda runtime (the Runtime Interface Emulator, a container) handles
    /// one invocation at a time.
    pub concurrency: usize,
}

/// How many invocations may wait for one endpoint; more fail at once, as a throttled
/// Lambda does (`Internal server error`, 502 on `$connect`).
pub const QUEUE_BOUND: usize = 1024;

/// One integration endpoint at run time: its URL and its queue. Invocations wait for a
/// free slot in arrival order (the semaphore is fair), at most [`QUEUE_BOUND`] of them.
#[derive(Debug)]
pub struct Invoker {
    url: Url,
    slots: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    bound: usize,
}

/// Counts an invocation out of the queue when it leaves it, sent or dropped.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Invoker {
    /// An endpoint with `concurrency` slots (at least one) and a queue of `bound`.
    pub fn new(url: Url, concurrency: usize, bound: usize) -> Self {
        Self {
            url,
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            bound,
        }
    }

    /// Sends `event` to the endpoint once a slot is free; `timeout` starts when it is
    /// sent.
    pub async fn send(&self, event: &Value, timeout: Duration) -> Result<Answer, InvokeError> {
        use std::sync::atomic::Ordering;
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.bound {
            return Err(InvokeError::Throttled {
                url: self.url.to_string(),
                waiting: self.bound,
            });
        }
        // The semaphore is never closed; if it were, invoking without a slot is harmless.
        let _slot = self.slots.acquire().await.ok();
        drop(waiting);
        send(&self.url, event, timeout).await
    }

    /// How many invocations wait for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Default for Integrations {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect: None,
            disconnect: None,
            route_responses: BTreeSet::new(),
            timeout: DEFAULT_TIMEOUT,
            concurrency: 1,
        }
    }
}

impl Integrations {
    /// Adds an endpoint (or finds it, when already there) and returns its index.
    pub fn endpoint(&mut self, url: Url) -> usize {
        match self.endpoints.iter().position(|known| *known == url) {
            Some(index) => index,
            None => {
                self.endpoints.push(url);
                self.endpoints.len() - 1
            }
        }
    }

    /// Parses an integration URL: `http://` or `https://` with a host.
    pub fn parse_url(text: &str) -> Result<Url, String> {
        let url = Url::parse(text.trim()).map_err(|e| {
            format!(
                "`{text}` is not an integration URL ({e}); write e.g. \
                 http://127.0.0.1:9000/2015-03-31/functions/function/invocations"
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "`{text}` is not an integration URL: write http://HOST:PORT/PATH"
            ));
        }
        Ok(url)
    }
}

/// What every event of one connection shares.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    /// The connection id.
    pub connection_id: String,
    /// The `Host` the client connected to: the events' `domainName`.
    pub domain_name: String,
    /// The stage name.
    pub stage: String,
    /// When the connection was made (`connectedAt`, epoch ms).
    pub connected_at: SystemTime,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// What the `$connect` authorizer allowed with, flattened as API Gateway delivers it
    /// (`principalId`, `integrationLatency` and each key of its `context`): every event
    /// of the connection carries it as `requestContext.authorizer`.
    pub authorizer: Option<Map<String, Value>>,
}

/// The `apiId` of every event: there is no API id locally.
pub const API_ID: &str = "local";

/// The `requestContext` shared by every event type; `request_id` is also the
/// `extendedRequestId` (they are always equal).
fn request_context(
    context: &ConnectionContext,
    route_key: &str,
    event_type: &str,
    request_id: &str,
    now: SystemTime,
) -> Map<String, Value> {
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), context.source_ip.to_string().into());
    if let Some(agent) = &context.user_agent {
        identity.insert("userAgent".into(), agent.clone().into());
    }
    let mut fields = Map::new();
    fields.insert("routeKey".into(), route_key.into());
    fields.insert("eventType".into(), event_type.into());
    fields.insert("extendedRequestId".into(), request_id.into());
    fields.insert("requestTime".into(), clf_time(now).into());
    fields.insert("messageDirection".into(), "IN".into());
    fields.insert("stage".into(), context.stage.clone().into());
    fields.insert("connectedAt".into(), epoch_ms(context.connected_at).into());
    fields.insert("requestTimeEpoch".into(), epoch_ms(now).into());
    fields.insert("identity".into(), Value::Object(identity));
    if let Some(authorizer) = &context.authorizer {
        fields.insert("authorizer".into(), Value::Object(authorizer.clone()));
    }
    fields.insert("requestId".into(), request_id.into());
    fields.insert("domainName".into(), context.domain_name.clone().into());
    fields.insert("connectionId".into(), context.connection_id.clone().into());
    fields.insert("apiId".into(), API_ID.into());
    fields
}

/// The CONNECT event: the handshake's headers (without `Connection` and `Upgrade`, plus
/// the `X-Forwarded-*` and `X-Amzn-Trace-Id` headers API Gateway adds), their
/// multi-value twin, and the query maps when the URL has a query.
pub fn connect_event(
    context: &ConnectionContext,
    request_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    local_port: u16,
    secure: bool,
) -> Value {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    let mut add = |name: String, value: String| {
        single.insert(name.clone(), value.clone().into());
        match multi.get_mut(&name) {
            Some(Value::Array(values)) => values.push(value.into()),
            _ => {
                multi.insert(name, Value::Array(vec![value.into()]));
            }
        }
    };
    for (name, value) in headers {
        if matches!(name.as_str(), "connection" | "upgrade") {
            continue;
        }
        add(
            canonical_header_name(name.as_str()),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    add("X-Amzn-Trace-Id".into(), trace_id());
    add("X-Forwarded-For".into(), context.source_ip.to_string());
    add("X-Forwarded-Port".into(), local_port.to_string());
    let proto = if secure { "https" } else { "http" };
    add("X-Forwarded-Proto".into(), proto.into());

    let mut event = Map::new();
    event.insert("headers".into(), Value::Object(single));
    event.insert("multiValueHeaders".into(), Value::Object(multi));
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (name, value) = (name.into_owned(), value.into_owned());
            // The single-value map keeps the last value, as API Gateway does.
            single.insert(name.clone(), value.clone().into());
            match multi.get_mut(&name) {
                Some(Value::Array(values)) => values.push(value.into()),
                _ => {
                    multi.insert(name, Value::Array(vec![value.into()]));
                }
            }
        }
        event.insert("queryStringParameters".into(), Value::Object(single));
        event.insert(
            "multiValueQueryStringParameters".into(),
            Value::Object(multi),
        );
    }
    let now = SystemTime::now();
    event.insert(
        "requestContext".into(),
        Value::Object(request_context(
            context, "$connect", "CONNECT", request_id, now,
        )),
    );
    event.insert("isBase64Encoded".into(), false.into());
    Value::Object(event)
}

/// A MESSAGE event: the text frame as `body`; `messageId` only here.
pub fn message_event(
    context: &ConnectionContext,
    route_key: &str,
    request_id: &str,
    message_id: &str,
    body: &str,
) -> Value {
    let mut request = request_context(context, route_key, "MESSAGE", request_id, SystemTime::now());
    request.insert("messageId".into(), message_id.into());
    json!({
        "requestContext": Value::Object(request),
        "body": body,
        "isBase64Encoded": false,
    })
}

/// The DISCONNECT event: API Gateway's fixed, odd header set, and the close code and
/// reason.
pub fn disconnect_event(
    context: &ConnectionContext,
    request_id: &str,
    code: u16,
    reason: &str,
) -> Value {
    let mut request = request_context(
        context,
        "$disconnect",
        "DISCONNECT",
        request_id,
        SystemTime::now(),
    );
    request.insert("disconnectStatusCode".into(), code.into());
    request.insert("disconnectReason".into(), reason.into());
    let host = context.domain_name.as_str();
    json!({
        "headers": {
            "Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": "",
        },
        "multiValueHeaders": {
            "Host": [host], "x-api-key": [""], "X-Forwarded-For": [""], "x-restapi": [""],
        },
        "requestContext": Value::Object(request),
        "isBase64Encoded": false,
    })
}

/// What a handler answered, as a Lambda proxy response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyResponse {
    /// `statusCode`, if the response has one.
    pub status_code: Option<u16>,
    /// `headers` with string values.
    pub headers: Vec<(String, String)>,
    /// `body`, if it is a non-empty string.
    pub body: Option<String>,
}

/// Why an invocation failed: the client sees `Internal server error` (502 on `$connect`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The endpoint could not be reached or did not answer HTTP.
    #[error("the integration at {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    /// No answer within the integration timeout.
    #[error("the integration at {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The endpoint answered with an HTTP error status.
    #[error("the integration at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The handler threw (the runtime reported a function error).
    #[error("the handler failed: {message}")]
    Function { message: String },
    /// The endpoint's queue is full (like a throttled Lambda).
    #[error("the integration at {url} has {waiting} invocations waiting already")]
    Throttled { url: String, waiting: usize },
    /// The answer is not a Lambda proxy response.
    #[error("malformed Lambda proxy response: {reason}")]
    Malformed { reason: String },
}

/// What a runtime answered to one invocation, before it is read as a proxy response or
/// an authorizer's policy.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The function's result (or the runtime's error object).
    pub payload: Vec<u8>,
    /// The runtime said the handler failed (`X-Amz-Function-Error`).
    pub function_error: bool,
}

/// POSTs `event` to `url` and returns what the runtime answered, within `timeout`.
pub async fn send(url: &Url, event: &Value, timeout: Duration) -> Result<Answer, InvokeError> {
    use axum::http::{HeaderValue, Method, header};
    use wsprobe_core::client::ConnectError;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let config = wsprobe_core::client::ClientConfig {
        connect_timeout: timeout,
        ..http_config().clone()
    };
    let body = event.to_string();
    let response = match wsprobe_core::client::http::request(
        Method::POST,
        url,
        headers,
        body,
        &config,
    )
    .await
    {
        Ok(response) => response,
        Err(ConnectError::Timeout { .. }) => {
            return Err(InvokeError::Timeout {
                url: url.to_string(),
                after: timeout,
            });
        }
        Err(other) => {
            return Err(InvokeError::Unreachable {
                url: url.to_string(),
                reason: other.to_string(),
            });
        }
    };
    if !response.is_success() {
        return Err(InvokeError::Status {
            url: url.to_string(),
            status: response.status,
        });
    }
    let function_error = response.headers.contains_key("x-amz-function-error");
    Ok(Answer {
        payload: response.body.to_vec(),
        function_error,
    })
}

/// The HTTP client configuration of every invocation: direct (no proxy), the platform's
/// roots for `https://` endpoints. Built once: loading the roots takes a moment.
fn http_config() -> &'static wsprobe_core::client::ClientConfig {
    static CONFIG: std::sync::OnceLock<wsprobe_core::client::ClientConfig> =
        std::sync::OnceLock::new();
    CONFIG.get_or_init(wsprobe_core::client::ClientConfig::default)
}

/// Reads a proxy response from what the runtime answered; `function_error` is true when
/// the runtime said the handler failed (`X-Amz-Function-Error`).
pub fn parse_response(payload: &[u8], function_error: bool) -> Result<ProxyResponse, InvokeError> {
    let malformed = |reason: &str| InvokeError::Malformed {
        reason: reason.to_owned(),
    };
    let trimmed = String::from_utf8_lossy(payload);
    let trimmed = trimmed.trim();
    let value: Value = if trimmed.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(trimmed).map_err(|_| malformed("the answer is not JSON"))?
    };
    // The runtime's error shape: `{"errorMessage": …, "errorType": …}`.
    let error_message = value
        .get("errorMessage")
        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned));
    if function_error || (error_message.is_some() && value.get("statusCode").is_none()) {
        return Err(InvokeError::Function {
            message: error_message
                .unwrap_or_else(|| "the runtime reported a function error".into()),
        });
    }
    let object = match value {
        // A handler that returns nothing: no status, no body.
        Value::Null => return Ok(ProxyResponse::default()),
        Value::Object(object) => object,
        _ => return Err(malformed("the answer is not a JSON object")),
    };
    let status_code = match object.get("statusCode") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| malformed("statusCode is not an HTTP status"))?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| malformed("statusCode is not an HTTP status"))?,
        ),
        Some(_) => return Err(malformed("statusCode is not a number")),
    };
    let headers = match object.get("headers") {
        Some(Value::Object(headers)) => headers
            .iter()
            .filter_map(|(name, value)| match value {
                Value::String(s) => Some((name.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => Some((name.clone(), value.to_string())),
                _ => None,
            })
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(malformed("headers is not an object")),
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(_) => return Err(malformed("body is not a string")),
    };
    Ok(ProxyResponse {
        status_code,
        headers,
        body,
    })
}

/// A header name as API Gateway shows it (`Sec-WebSocket-Key`, `Host`, `User-Agent`);
/// hyper hands names over in lower case, and HTTP/1.1 names are case-insensitive.
fn canonical_header_name(lower: &str) -> String {
    if let Some(rest) = lower.strip_prefix("sec-websocket-") {
        return format!("Sec-WebSocket-{}", title_case(rest));
    }
    if lower == "x-api-key" {
        return lower.to_owned();
    }
    title_case(lower)
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An `X-Amzn-Trace-Id` in X-Ray's format: `Root=1-{epoch seconds, hex}-{96 random bits}`.
fn trace_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random: [u8; 12] = rand::random();
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("Root=1-{seconds:08x}-{hex}")
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `requestTime` in the common log format API Gateway uses: `11/Nov/2024:11:35:24 +0000`.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `YYYY-MM-DDTHH:MM:SSZ`: fixed positions.
    let rfc = humantime::format_rfc3339_seconds(time).to_string();
    let month = rfc
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        rfc.get(8..10).unwrap_or("01"),
        rfc.get(0..4).unwrap_or("1970"),
        rfc.get(11..19).unwrap_or("00:00:00"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn context() -> ConnectionContext {
        ConnectionContext {
            connection_id: "QrStUvWxYzAbCdE=".into(),
            domain_name: "127.0.0.1:8080".into(),
            stage: "dev".into(),
            connected_at: UNIX_EPOCH + Duration::from_millis(1_731_324_924_553),
            source_ip: [127, 0, 0, 1].into(),
            user_agent: None,
            authorizer: None,
        }
    }

    #[test]
    fn the_request_time_is_in_common_log_format() {
        let time = UNIX_EPOCH + Duration::from_millis(1_731_324_924_553);
        assert_eq!(clf_time(time), "11/Nov/2024:11:35:24 +0000");
    }

    #[test]
    fn connect_events_carry_headers_and_query_maps() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert("connection", HeaderValue::from_static("Upgrade"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("sec-websocket-key", HeaderValue::from_static("a2V5"));
        headers.append("x-tag", HeaderValue::from_static("one"));
        headers.append("x-tag", HeaderValue::from_static("two"));
        let event = connect_event(
            &context(),
            "AbCdEfGhIjKlMnO=",
            &headers,
            Some("token=t1&x=1&x=2"),
            8080,
            false,
        );
        assert_eq!(event["headers"]["Host"], "127.0.0.1:8080");
        assert_eq!(event["headers"]["Sec-WebSocket-Key"], "a2V5");
        assert!(event["headers"].get("Connection").is_none());
        assert!(event["headers"].get("Upgrade").is_none());
        assert_eq!(event["headers"]["X-Forwarded-Proto"], "http");
        assert_eq!(event["headers"]["X-Forwarded-Port"], "8080");
        assert!(
            event["headers"]["X-Amzn-Trace-Id"]
                .as_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        assert_eq!(event["multiValueHeaders"]["X-Tag"], json!(["one", "two"]));
        assert_eq!(
            event["queryStringParameters"],
            json!({"token": "t1", "x": "2"})
        );
        assert_eq!(
            event["multiValueQueryStringParameters"]["x"],
            json!(["1", "2"])
        );
        let request = &event["requestContext"];
        assert_eq!(request["routeKey"], "$connect");
        assert_eq!(request["eventType"], "CONNECT");
        assert_eq!(request["requestId"], request["extendedRequestId"]);
        assert_eq!(request["connectedAt"], 1_731_324_924_553u64);
        assert_eq!(request["identity"], json!({"sourceIp": "127.0.0.1"}));
        assert!(request.get("messageId").is_none());
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("body").is_none());

        let without_query = connect_event(&context(), "r", &headers, None, 8080, true);
        assert!(without_query.get("queryStringParameters").is_none());
        assert!(
            without_query
                .get("multiValueQueryStringParameters")
                .is_none()
        );
        assert_eq!(without_query["headers"]["X-Forwarded-Proto"], "https");
    }

    #[test]
    fn message_and_disconnect_events() {
        let message = message_event(&context(), "send", "req=", "msg=", r#"{"action":"send"}"#);
        assert_eq!(message["body"], r#"{"action":"send"}"#);
        assert_eq!(message["requestContext"]["messageId"], "msg=");
        assert_eq!(message["requestContext"]["eventType"], "MESSAGE");
        assert!(message.get("headers").is_none());
        let disconnect = disconnect_event(
            &context(),
            "req=",
            1005,
            "Client-side close frame status not set",
        );
        assert_eq!(
            disconnect["headers"],
            json!({"Host": "127.0.0.1:8080", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""})
        );
        assert_eq!(disconnect["multiValueHeaders"]["x-restapi"], json!([""]));
        assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1005);
        assert!(disconnect["requestContext"].get("messageId").is_none());
    }

    #[test]
    fn proxy_responses_and_function_errors() {
        assert_eq!(
            parse_response(br#"{"statusCode": 200, "body": "hi", "headers": {"Sec-WebSocket-Protocol": "chat"}}"#, false),
            Ok(ProxyResponse {
                status_code: Some(200),
                headers: vec![("Sec-WebSocket-Protocol".into(), "chat".into())],
                body: Some("hi".into()),
            })
        );
        assert_eq!(parse_response(b"null", false), Ok(ProxyResponse::default()));
        assert_eq!(parse_response(b"", false), Ok(ProxyResponse::default()));
        assert_eq!(
            parse_response(br#"{"statusCode": "401"}"#, false)
                .unwrap()
                .status_code,
            Some(401)
        );
        assert!(matches!(
            parse_response(br#"{"errorMessage": "boom", "errorType": "Error"}"#, false),
            Err(InvokeError::Function { message }) if message == "boom"
        ));
        assert!(matches!(
            parse_response(b"{}", true),
            Err(InvokeError::Function { .. })
        ));
        for bad in [
            &b"not json"[..],
            b"[1]",
            br#"{"statusCode": 42}"#,
            br#"{"body": 5}"#,
        ] {
            assert!(
                matches!(
                    parse_response(bad, false),
                    Err(InvokeError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn invocations_wait_for_a_slot_and_a_full_queue_fails_at_once() {
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/x", listener.local_addr().unwrap())).unwrap();
        let invoker = Arc::new(Invoker::new(url, 1, 1));
        let call = |invoker: Arc<Invoker>| {
            tokio::spawn(async move { invoker.send(&json!({}), Duration::from_secs(29)).await })
        };
        let first = call(invoker.clone());
        // Accepted and never answered: the one slot stays taken.
        let (_held, _) = listener.accept().await.unwrap();
        let second = call(invoker.clone());
        tokio::time::timeout(Duration::from_secs(10), async {
            while invoker.waiting() < 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the second invocation queues");
        let third = invoker.send(&json!({}), Duration::from_secs(29)).await;
        assert!(
            matches!(third, Err(InvokeError::Throttled { waiting: 1, .. })),
            "{third:?}"
        );
        // Leaving the queue (here: dropped) counts out.
        second.abort();
        let _ = second.await;
        assert_eq!(invoker.waiting(), 0);
        first.abort();
    }

    #[test]
    fn integration_urls() {
        assert!(
            Integrations::parse_url(
                "http://127.0.0.1:9000/2015-03-31/functions/function/invocations"
            )
            .is_ok()
        );
        assert!(Integrations::parse_url("127.0.0.1:9000").is_err());
        assert!(Integrations::parse_url("ws://h/x").is_err());
        let mut integrations = Integrations::default();
        let a = integrations.endpoint(Url::parse("http://h/a").unwrap());
        let b = integrations.endpoint(Url::parse("http://h/b").unwrap());
        assert_eq!(integrations.endpoint(Url::parse("http://h/a").unwrap()), a);
        assert_ne!(a, b);
    }
}
