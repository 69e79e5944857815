//! The router: `/{stage}` (and `/{stage}/`) takes WebSocket upgrades, `@connections`
//! paths go to the management API, every other path gets 403 `{"message":"Forbidden"}`.
//! The upgrade is done here by hand (not with axum's extractor) so the connection task
//! gets the raw TCP stream: it must choose its own close codes on limit breaches and
//! linger after a close so the client reads the close frame.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use base64::Engine;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::auth::{self, FORBIDDEN_BODY};
use crate::authorizer::{self, Authorizer, Decision};
use crate::registry::{ConnectionHandle, ConnectionInfo, OUTBOUND_QUEUE};
use crate::server::PeerAddr;
use crate::{ServeConfig, ServeEvent, ServerState, connection, lambda, management};

/// Builds the router of a server and its state. Serve the router with the accept loop of
/// [`crate::serve`] / [`crate::spawn`]; it also works under `axum::serve`.
pub fn app(config: ServeConfig) -> (Router, ServerState) {
    let state = ServerState::new(config);
    let router = Router::new().fallback(handle).with_state(state.clone());
    (router, state)
}

/// What a request path addresses.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `/{stage}` or `/{stage}/`: the WebSocket endpoint.
    Stage,
    /// `/{stage}/@connections/{id}` or `/@connections/{id}`, percent-decoded.
    Connection(String),
    /// Anything else.
    Other,
}

fn target(path: &str, stage: &str) -> Target {
    let decoded: Vec<String> = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [first] | [first, ""] if *first == stage => Target::Stage,
        [first, "@connections", id] if *first == stage && !id.is_empty() => {
            Target::Connection((*id).to_owned())
        }
        // serverless-offline's form, without the stage [U].
        ["@connections", id] if !id.is_empty() => Target::Connection((*id).to_owned()),
        _ => Target::Other,
    }
}

async fn handle(State(state): State<ServerState>, request: Request) -> Response {
    let started = Instant::now();
    let peer = peer_ip(&request);
    // API Gateway's URL limit, checked before anything else looks at the request (so no
    // authorizer or integration runs for it).
    if url_length(&request, state.config().tls.is_some()) > MAX_URL_LENGTH {
        return reject(
            &state,
            414,
            r#"{"message":"Request-URI Too Long"}"#,
            "URL longer than 4096 characters",
            peer,
            started,
        );
    }
    match target(request.uri().path(), &state.config().stage) {
        Target::Stage => handshake(state, request, peer, started).await,
        Target::Connection(id) => management::handle(state, request, id, started).await,
        Target::Other => reject(&state, 403, FORBIDDEN_BODY, "no such path", peer, started),
    }
}

/// The longest URL API Gateway accepts, in characters.
const MAX_URL_LENGTH: usize = 4096;

/// The length of the URL the client used: `wss://` (or `ws://`…), the `Host`, the path
/// and the query.
fn url_length(request: &Request, secure: bool) -> usize {
    let scheme = if secure { "wss://" } else { "ws://" };
    let host = request
        .headers()
        .get(header::HOST)
        .map_or(0, |host| host.len());
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    scheme.len() + host + target
}

fn peer_ip(request: &Request) -> IpAddr {
    if let Some(PeerAddr(addr)) = request.extensions().get::<PeerAddr>() {
        return addr.ip();
    }
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip())
}

/// Answers a refused request and logs it.
fn reject(
    state: &ServerState,
    status: u16,
    body: &'static str,
    reason: &str,
    peer: IpAddr,
    started: Instant,
) -> Response {
    let request_id = state.next_id();
    let mut response = json_response(status, body);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    state.emit(ServeEvent::Rejected {
        request_id,
        status,
        reason: reason.to_owned(),
        source_ip: Some(peer),
        duration: started.elapsed(),
    });
    response
}

pub(super) fn json_response(status: u16, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Checks the upgrade request, authorizes it, asks the `$connect` integration (if any),
/// answers 101 and starts the connection task.
async fn handshake(
    state: ServerState,
    mut request: Request,
    peer: IpAddr,
    started: Instant,
) -> Response {
    let headers = request.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket") {
        return if request.method() == Method::GET {
            let mut response = reject(
                &state,
                426,
                r#"{"message":"Upgrade Required"}"#,
                "plain GET without an upgrade",
                peer,
                started,
            );
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            response
        } else {
            reject(&state, 403, FORBIDDEN_BODY, "not an upgrade", peer, started)
        };
    }
    let key = match check_upgrade(&request) {
        Ok(key) => key,
        Err(reason) => {
            return reject(
                &state,
                400,
                r#"{"message":"Bad Request"}"#,
                reason,
                peer,
                started,
            );
        }
    };
    if state.is_shutting_down() {
        return reject(
            &state,
            503,
            r#"{"message":"Service Unavailable"}"#,
            "shutting down",
            peer,
            started,
        );
    }
    let config = state.config();
    // API Gateway's order: IAM or the Lambda authorizer (a route has one of them), then
    // the API key, then the $connect integration (the sample app's token check, then the
    // user's handler).
    if !config.iam_keys.is_empty() {
        let verified = wsprobe_core::aws::verify::verify(
            request.method().as_str(),
            request.uri(),
            request.headers(),
            b"",
            &config.iam_keys,
            SystemTime::now(),
        );
        if let Err(rejection) = verified {
            return reject(
                &state,
                403,
                FORBIDDEN_BODY,
                rejection.reason(),
                peer,
                started,
            );
        }
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return reject(
            &state,
            500,
            r#"{"message":"Internal server error"}"#,
            "the HTTP server cannot upgrade this request",
            peer,
            started,
        );
    };
    // The head alone from here on: it may be held across the invocations' awaits (the
    // body is not `Sync`, and a handshake has none).
    let (parts, _) = request.into_parts();
    let headers = &parts.headers;
    let query = parts.uri.query();
    let secure = config.tls.is_some();

    let connection_id = state.next_id();
    let request_id = state.next_id();
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // With a $connect integration, its answer alone decides (below), as on API Gateway.
    // Without one there is no handler to choose, and browsers fail a handshake that
    // offers subprotocols and gets none back, so we pick the first [U].
    let mut subprotocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty()))
        .and_then(|p| HeaderValue::from_str(p).ok())
        .filter(|_| config.integrations.connect.is_none());
    let info = Arc::new(ConnectionInfo::new(peer, user_agent.clone()));
    let mut lambda_context =
        (!config.integrations.endpoints.is_empty()).then(|| lambda::ConnectionContext {
            connection_id: connection_id.clone(),
            domain_name: domain_name(headers),
            stage: config.stage.clone(),
            connected_at: info.connected_at,
            source_ip: peer,
            user_agent: user_agent.clone(),
            authorizer: None,
        });
    if let (Some(authorizer), Some(context)) = (&config.authorizer, lambda_context.as_mut()) {
        let call = AuthorizerCall {
            state: &state,
            authorizer,
            context,
            request_id: &request_id,
            parts: &parts,
            secure,
            peer,
            started,
        };
        match call.run().await {
            Ok(allowed) => context.authorizer = Some(allowed),
            Err(refused) => return refused,
        }
    }
    if let Err(refusal) = auth::authorize(headers, &config.api_keys, &config.tokens) {
        return reject(
            &state,
            refusal.status,
            refusal.body,
            refusal.reason,
            peer,
            started,
        );
    }
    let received_headers = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect::<Vec<_>>();
    let lambda_context = lambda_context.map(Arc::new);
    if let (Some(context), Some(index)) = (&lambda_context, config.integrations.connect) {
        let event = lambda::connect_event(
            context,
            &request_id,
            headers,
            query,
            local_port(headers, secure),
            secure,
        );
        match connect_integration(&state, context, index, event, &request_id).await {
            // The handler's header goes out as it is, even naming a protocol the client
            // did not offer (or when it offered none): API Gateway does not check it, and
            // the client then fails the connection (RFC 6455 §4.1), as it would there.
            // Forgetting the header fails a client that offered some, as it would there.
            ConnectDecision::Accept {
                subprotocol: chosen,
            } => subprotocol = chosen,
            ConnectDecision::Refuse { status, body } => {
                state.emit(ServeEvent::Rejected {
                    request_id,
                    status,
                    reason: format!("the $connect integration answered {status}"),
                    source_ip: Some(peer),
                    duration: started.elapsed(),
                });
                return refusal(status, body);
            }
            ConnectDecision::Fail => {
                state.emit(ServeEvent::Rejected {
                    request_id,
                    status: 502,
                    reason: "the $connect integration failed".to_owned(),
                    source_ip: Some(peer),
                    duration: started.elapsed(),
                });
                return json_response(502, r#"{"message": "Internal server error"}"#);
            }
        }
    }
    let (outbound, inbox) = mpsc::channel(OUTBOUND_QUEUE);
    let handle = ConnectionHandle {
        outbound,
        close: Arc::default(),
        info: info.clone(),
    };
    let close = handle.close.clone();
    // Registered before the 101 is sent, so an @connections call right after the
    // handshake finds the connection; what it posts waits in the queue.
    state.registry().insert(connection_id.clone(), handle);
    state.emit(ServeEvent::Connected {
        connection_id: connection_id.clone(),
        request_id,
        source_ip: peer,
        user_agent,
        headers: received_headers,
        duration: started.elapsed(),
    });
    let guard = state.track_task();
    let connection = connection::Connection {
        state,
        id: connection_id,
        info,
        inbox,
        close,
        lambda: lambda_context,
        _guard: guard,
    };
    tokio::spawn(connection::run(connection, on_upgrade));

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let response_headers = response.headers_mut();
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(subprotocol) = subprotocol {
        response_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, subprotocol);
    }
    response
}

/// One run of the `$connect` authorizer for a handshake.
struct AuthorizerCall<'a> {
    state: &'a ServerState,
    authorizer: &'a Authorizer,
    /// The connection's context so far (without `authorizer`).
    context: &'a lambda::ConnectionContext,
    request_id: &'a str,
    parts: &'a axum::http::request::Parts,
    secure: bool,
    peer: IpAddr,
    started: Instant,
}

impl AuthorizerCall<'_> {
    /// Checks the identity sources and invokes the authorizer: `Ok` with what every later
    /// event carries as `requestContext.authorizer`, or the refused handshake. Logged as
    /// an AUTHORIZE line either way.
    async fn run(self) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
        let headers = &self.parts.headers;
        let query = self.parts.uri.query();
        if let Some(missing) =
            authorizer::missing_source(&self.authorizer.identity_sources, headers, query)
        {
            let reason = format!("identity source {missing} is missing or empty");
            self.log(
                "missing-identity",
                Some(401),
                Some(reason.clone()),
                None,
                Duration::ZERO,
            );
            return Err(reject(
                self.state,
                401,
                auth::UNAUTHORIZED_BODY,
                &reason,
                self.peer,
                self.started,
            ));
        }
        let arn = authorizer::method_arn(&self.context.stage);
        let connect = lambda::connect_event(
            self.context,
            self.request_id,
            headers,
            query,
            local_port(headers, self.secure),
            self.secure,
        );
        let event = authorizer::request_event(&connect, &arn, headers);
        let called = Instant::now();
        let answer = self.state.send(self.authorizer.endpoint, &event).await;
        let latency = called.elapsed();
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let decision = authorizer::decide(answer, &arn, latency_ms);
        let refusal = decision.refusal();
        match decision {
            Decision::Allow(allowed) => {
                let principal = allowed
                    .get("principalId")
                    .and_then(|p| p.as_str())
                    .map(str::to_owned);
                self.log("allow", None, None, principal, latency);
                Ok(allowed)
            }
            refused => {
                let (status, body) =
                    refusal.unwrap_or((500, r#"{"message":"Internal server error"}"#));
                let reason = match &refused {
                    Decision::Deny(why) | Decision::Error(why) => why.clone(),
                    _ => "the authorizer threw Unauthorized".to_owned(),
                };
                self.log(
                    refused.outcome(),
                    Some(status),
                    Some(reason.clone()),
                    None,
                    latency,
                );
                Err(reject(
                    self.state,
                    status,
                    body,
                    &format!("authorizer: {reason}"),
                    self.peer,
                    self.started,
                ))
            }
        }
    }

    fn log(
        &self,
        outcome: &str,
        status: Option<u16>,
        reason: Option<String>,
        principal_id: Option<String>,
        duration: Duration,
    ) {
        self.state.emit(ServeEvent::Authorized {
            request_id: self.request_id.to_owned(),
            connection_id: self.context.connection_id.clone(),
            outcome: outcome.to_owned(),
            status,
            reason,
            principal_id,
            duration,
        });
    }
}

/// What the `$connect` integration decided.
enum ConnectDecision {
    /// 2xx: connect, with the subprotocol the handler chose, if it chose one.
    Accept { subprotocol: Option<HeaderValue> },
    /// Another status: refuse the handshake with it (and the handler's body).
    Refuse { status: u16, body: Option<String> },
    /// The handler failed, timed out or answered something that is not a proxy response:
    /// 502.
    Fail,
}

/// Invokes the `$connect` integration with the CONNECT event and reads its decision.
async fn connect_integration(
    state: &ServerState,
    context: &lambda::ConnectionContext,
    index: usize,
    event: serde_json::Value,
    request_id: &str,
) -> ConnectDecision {
    let started = Instant::now();
    let outcome = state.invoke(index, &event).await;
    state.emit(ServeEvent::Integration {
        connection_id: context.connection_id.clone(),
        request_id: request_id.to_owned(),
        route_key: "$connect".to_owned(),
        status_code: outcome.as_ref().ok().and_then(|r| r.status_code),
        error: outcome.as_ref().err().map(ToString::to_string),
        duration: started.elapsed(),
    });
    match outcome {
        Ok(response) => match response.status_code {
            Some(200..=299) => ConnectDecision::Accept {
                subprotocol: response
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .and_then(|(_, value)| HeaderValue::from_str(value).ok()),
            },
            Some(status) if status >= 300 => ConnectDecision::Refuse {
                status,
                body: response.body,
            },
            // 1xx is no answer to a handshake.
            Some(_) => ConnectDecision::Fail,
            // A Lambda proxy response needs a status code [U].
            None => ConnectDecision::Fail,
        },
        Err(_) => ConnectDecision::Fail,
    }
}

/// The events' `domainName`: the `Host` the client connected to (so a handler's callback
/// reaches this server), else the loopback name.
fn domain_name(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|host| !host.is_empty())
        .unwrap_or("localhost")
        .to_owned()
}

/// The port the client connected to, from its `Host` header (the scheme's default when
/// the header has none).
fn local_port(headers: &HeaderMap, secure: bool) -> u16 {
    let default = if secure { 443 } else { 80 };
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

/// A handshake refused with the `$connect` integration's status and body.
fn refusal(status: u16, body: Option<String>) -> Response {
    let mut response = Response::new(Body::from(body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response
}

/// The checks of RFC 6455 §4.2.1 on a request that asks for a WebSocket upgrade; returns
/// the `Sec-WebSocket-Key`, or why the request is malformed.
fn check_upgrade(request: &Request) -> Result<HeaderValue, &'static str> {
    if request.method() != Method::GET {
        return Err("upgrade with a method other than GET");
    }
    if request.version() != Version::HTTP_11 {
        return Err("upgrade over a protocol other than HTTP/1.1");
    }
    let headers = request.headers();
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err("upgrade without `Connection: Upgrade`");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("missing or unsupported Sec-WebSocket-Version (13 expected)");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| "Sec-WebSocket-Key is not base64")?;
    if decoded.len() != 16 {
        return Err("Sec-WebSocket-Key is not 16 bytes");
    }
    Ok(key.clone())
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        assert_eq!(target("/dev", "dev"), Target::Stage);
        assert_eq!(target("/dev/", "dev"), Target::Stage);
        assert_eq!(target("/prod", "dev"), Target::Other);
        assert_eq!(target("/", "dev"), Target::Other);
        assert_eq!(target("/dev/x", "dev"), Target::Other);
        assert_eq!(target("/dev//", "dev"), Target::Other);
        assert_eq!(
            target("/dev/@connections/R0oXAdfD0kwCH6w=", "dev"),
            Target::Connection("R0oXAdfD0kwCH6w=".into())
        );
        assert_eq!(
            target("/dev/%40connections/R0oXAdfD0kwCH6w%3D", "dev"),
            Target::Connection("R0oXAdfD0kwCH6w=".into())
        );
        assert_eq!(
            target("/@connections/abc=", "dev"),
            Target::Connection("abc=".into())
        );
        assert_eq!(target("/dev/@connections/", "dev"), Target::Other);
        assert_eq!(target("/dev/@connections", "dev"), Target::Other);
    }
}
