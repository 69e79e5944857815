//! Integration tests: `serve` in front of Lambda functions, as on a real stage — the
//! default route with `--integration`, the `$connect` handler's subprotocol, the
//! per-endpoint invocation queue, and REQUEST authorizers. The functions are
//! [`InvokeApi`] stand-ins that, like the Lambda Runtime Interface Emulator, run one
//! invocation at a time.

use serde_json::{Value, json};
use wsprobe_serve::ServeEvent;

use crate::support::*;

/// The `Forbidden` frame API Gateway sends for a message no route takes.
fn is_forbidden_frame(frame: &str) -> bool {
    frame.starts_with(r#"{"message": "Forbidden", "connectionId":""#)
}

/// A function that answers every event with 200 and, for messages, the body it got.
async fn echo_lambda() -> InvokeApi {
    InvokeApi::start(|event: Value| async move {
        let body = event["body"].as_str().map(|b| format!("got:{b}"));
        LambdaReply::Return(json!({ "statusCode": 200, "body": body }))
    })
    .await
}

// 5. --default-route none with --integration.

#[tokio::test]
async fn default_route_none_with_an_integration_means_no_default_route() {
    let mut lambda = echo_lambda().await;
    let server = serve_flags(&[
        "--integration",
        &lambda.url,
        "--route",
        "sendmessage=lambda",
        "--route-response",
        "sendmessage",
        "--default-route",
        "none",
    ])
    .await;
    let mut events = server.events();
    let mut ws = connect(&server.ws_url()).await;
    assert_eq!(
        lambda.next_event().await["requestContext"]["routeKey"],
        "$connect"
    );
    for unmatched in [r#"{"action":"other"}"#, "not json"] {
        send_text(&mut ws, unmatched).await;
        let frame = next_text(&mut ws).await;
        assert!(is_forbidden_frame(&frame), "{frame}");
        let route_key = wait_event(&mut events, |event| match event {
            ServeEvent::Message { route_key, .. } => Some(route_key.clone()),
            _ => None,
        })
        .await;
        assert_eq!(route_key, None);
    }
    // The listed route still goes to the handler, and nothing unmatched ever did.
    send_text(&mut ws, r#"{"action":"sendmessage"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#"got:{"action":"sendmessage"}"#);
    assert_eq!(
        lambda.next_event().await["requestContext"]["routeKey"],
        "sendmessage"
    );
    assert!(lambda.try_next_event().is_none());
}

#[tokio::test]
async fn without_default_route_flag_the_integration_is_default() {
    let mut lambda = echo_lambda().await;
    let server = serve_flags(&["--integration", &lambda.url, "--route-response", "$default"]).await;
    let mut ws = connect(&server.ws_url()).await;
    lambda.next_event().await;
    send_text(&mut ws, "anything").await;
    assert_eq!(next_text(&mut ws).await, "got:anything");
    assert_eq!(
        lambda.next_event().await["requestContext"]["routeKey"],
        "$default"
    );
}

// 7. Limits.

#[tokio::test]
async fn a_url_over_4096_characters_gets_414_before_any_integration_runs() {
    let mut lambda = echo_lambda().await;
    let server = serve_flags(&["--integration", &lambda.url]).await;
    let base = format!("{}?pad=", server.ws_url());
    let with_length = |length: usize, fill: char| {
        let mut url = base.clone();
        url.extend(std::iter::repeat_n(fill, length - base.len()));
        url
    };
    let (status, body) = refused(&with_length(4097, 'x'), &[]).await;
    assert_eq!(status, 414);
    assert_eq!(body, r#"{"message":"Request-URI Too Long"}"#);
    // Exactly 4096 is fine; the handler's first event is this one's.
    let _ws = connect(&with_length(4096, 'y')).await;
    let event = lambda.next_event().await;
    assert!(
        event["queryStringParameters"]["pad"]
            .as_str()
            .is_some_and(|pad| pad.starts_with('y')),
        "{event}"
    );
    let response = http(
        server.addr(),
        "GET",
        &format!("/dev/@connections/{}", "z".repeat(4100)),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 414);
}

#[tokio::test]
async fn an_integration_timeout_outside_50ms_to_29s_is_a_usage_error() {
    for timeout in ["10ms", "60s"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--integration-timeout",
                timeout,
            ])
            .output()
            .expect("running wsprobe serve");
        assert_eq!(output.status.code(), Some(2), "{timeout}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("50ms to 29s"), "{stderr}");
    }
}

// 2. The $connect handler decides the subprotocol.

/// A `$connect` handler that picks `json` when the client offers it, answers with the
/// protocol named in the `X-Pick` header when there is one, and otherwise returns no
/// `Sec-WebSocket-Protocol` (the classic bug).
async fn subprotocol_lambda() -> InvokeApi {
    InvokeApi::start(|event: Value| async move {
        let headers = &event["headers"];
        let offered = headers["Sec-WebSocket-Protocol"]
            .as_str()
            .unwrap_or_default();
        let pick = match headers["X-Pick"].as_str() {
            Some(pick) => Some(pick.to_owned()),
            None => offered
                .split(',')
                .map(str::trim)
                .find(|p| *p == "json")
                .map(str::to_owned),
        };
        LambdaReply::Return(match pick {
            Some(pick) => json!({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": pick}}),
            None => json!({"statusCode": 200}),
        })
    })
    .await
}

/// Connects offering `offered` (if any) with extra headers; the handshake's chosen
/// protocol, or the client's error.
async fn handshake_protocol(
    url: &str,
    offered: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Option<String>, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    if let Some(offered) = offered {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", offered.parse().expect("a header"));
    }
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    let (_ws, response) =
        within("the handshake", tokio_tungstenite::connect_async(request)).await?;
    Ok(response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().expect("ASCII").to_owned()))
}

#[tokio::test]
async fn the_connect_handler_chooses_the_subprotocol() {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
    let lambda = subprotocol_lambda().await;
    let server = serve_flags(&["--integration", &lambda.url]).await;
    let url = server.ws_url();

    // The handler's choice, not the first offer.
    let chosen = handshake_protocol(&url, Some("chat, json"), &[]).await;
    assert_eq!(chosen.expect("connected").as_deref(), Some("json"));
    // Nothing offered, nothing chosen.
    let chosen = handshake_protocol(&url, None, &[]).await;
    assert_eq!(chosen.expect("connected"), None);

    // The handler forgot the header: no protocol in the 101, so a client that offered
    // one fails the connection (as Chrome does against API Gateway).
    let forgot = handshake_protocol(&url, Some("chat"), &[]).await;
    assert!(
        matches!(
            forgot,
            Err(Error::Protocol(
                ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol)
            ))
        ),
        "{forgot:?}"
    );
    // The handler named a protocol the client did not offer: it goes out as it is, and
    // the client fails the connection.
    let other = handshake_protocol(&url, Some("chat"), &[("X-Pick", "mqtt")]).await;
    assert!(
        matches!(
            other,
            Err(Error::Protocol(
                ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::InvalidSubProtocol)
            ))
        ),
        "{other:?}"
    );
}

#[tokio::test]
async fn without_a_connect_handler_the_first_offer_is_taken() {
    let lambda = echo_lambda().await;
    // A message route goes to the handler; $connect has none.
    let server = serve_flags(&["--route", &format!("send=lambda:{}", lambda.url)]).await;
    let chosen = handshake_protocol(&server.ws_url(), Some("chat, json"), &[]).await;
    assert_eq!(chosen.expect("connected").as_deref(), Some("chat"));
}

// 4. One invocation at a time per endpoint, queued.

/// A function whose MESSAGE invocations each wait for a permit of `gate` before
/// answering `reply:BODY`; other events answer 200 at once.
async fn gated_lambda(runtimes: usize, gate: std::sync::Arc<tokio::sync::Semaphore>) -> InvokeApi {
    InvokeApi::start_with_runtimes(runtimes, move |event: Value| {
        let gate = gate.clone();
        async move {
            if event["requestContext"]["eventType"] == "MESSAGE" {
                gate.acquire().await.expect("the gate stays open").forget();
                let body = event["body"].as_str().unwrap_or_default().to_owned();
                return LambdaReply::Return(
                    json!({"statusCode": 200, "body": format!("reply:{body}")}),
                );
            }
            LambdaReply::status(200)
        }
    })
    .await
}

/// Waits for `count` MESSAGE events: every message has been routed (and its invocation
/// queued or sent).
async fn routed(events: &mut tokio::sync::broadcast::Receiver<ServeEvent>, count: usize) {
    for _ in 0..count {
        wait_event(events, |event| {
            matches!(event, ServeEvent::Message { .. }).then_some(())
        })
        .await;
    }
}

/// Waits until `count` invocations wait in serve's queues.
async fn queued(server: &wsprobe_serve::RunningServer, count: usize) {
    within("invocations to queue", async {
        while server.state().queued_invocations() != count {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_one_at_a_time_runtime_answers_every_message_of_a_burst() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut lambda = gated_lambda(1, gate.clone()).await;
    let server = serve_flags(&["--integration", &lambda.url, "--route-response", "$default"]).await;
    let mut events = server.events();
    let mut ws = connect(&server.ws_url()).await;
    lambda.next_event().await;
    for n in 1..=3 {
        send_text(&mut ws, &format!("m{n}")).await;
    }
    // The first is running (held by the gate) while the other two wait in serve's queue
    // instead of reaching a busy runtime.
    assert_eq!(lambda.next_event().await["body"], "m1");
    routed(&mut events, 3).await;
    queued(&server, 2).await;
    gate.add_permits(3);
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(next_text(&mut ws).await);
    }
    assert_eq!(replies, ["reply:m1", "reply:m2", "reply:m3"]);
    assert_eq!(lambda.next_event().await["body"], "m2");
    assert_eq!(lambda.next_event().await["body"], "m3");
    assert_eq!(lambda.refused(), 0);
}

#[tokio::test]
async fn integration_concurrency_lets_that_many_run_at_once() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut lambda = gated_lambda(2, gate.clone()).await;
    let server = serve_flags(&[
        "--integration",
        &lambda.url,
        "--route-response",
        "$default",
        "--integration-concurrency",
        "2",
    ])
    .await;
    let mut ws = connect(&server.ws_url()).await;
    lambda.next_event().await;
    for n in 1..=3 {
        send_text(&mut ws, &format!("m{n}")).await;
    }
    // Two arrive while neither may answer yet: both are in flight at once.
    let mut first_two = [lambda.next_event().await, lambda.next_event().await];
    first_two.sort_by_key(|event| event["body"].as_str().map(str::to_owned));
    assert_eq!(first_two[0]["body"], "m1");
    assert_eq!(first_two[1]["body"], "m2");
    queued(&server, 1).await;
    gate.add_permits(3);
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(next_text(&mut ws).await);
    }
    replies.sort();
    assert_eq!(replies, ["reply:m1", "reply:m2", "reply:m3"]);
    assert_eq!(lambda.refused(), 0);
}

#[tokio::test]
async fn an_integration_concurrency_of_0_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--integration-concurrency",
            "0",
        ])
        .output()
        .expect("running wsprobe serve");
    assert_eq!(output.status.code(), Some(2));
}

// 1. REQUEST authorizers.

/// An authorizer that decides by the `Authorization` header: `Bearer allow` (and
/// `Bearer allow-q` for query-string tests) is allowed with a context, `Bearer deny` gets
/// a Deny, `Bearer wide` an Allow on `…/dev/*/*` (which does not cover `$connect`),
/// `Bearer unauthorized` throws `Unauthorized`, `Bearer boom` throws something else,
/// `Bearer slow` never answers.
async fn authorizer_lambda() -> InvokeApi {
    InvokeApi::start(|event: Value| async move {
        let arn = event["methodArn"].as_str().unwrap_or_default().to_owned();
        let token = event["headers"]["Authorization"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let policy = |effect: &str, resource: &str| {
            json!({
                "principalId": "user-42",
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]
                },
                "context": {"role": "admin", "tenant": 7, "beta": true}
            })
        };
        match token.as_str() {
            "Bearer allow" => LambdaReply::Return(policy("Allow", &arn)),
            "Bearer deny" => LambdaReply::Return(policy("Deny", &arn)),
            "Bearer wide" => {
                let wide = arn.replace("/$connect", "/*/*");
                LambdaReply::Return(policy("Allow", &wide))
            }
            "Bearer unauthorized" => LambdaReply::throw("Unauthorized"),
            "Bearer slow" => LambdaReply::Hang,
            _ => LambdaReply::throw("boom"),
        }
    })
    .await
}

/// `{"principalId": "user-42", "integrationLatency": N, "role": "admin", …}`, flattened as
/// API Gateway delivers it.
fn assert_authorizer_context(event: &Value) {
    let authorizer = &event["requestContext"]["authorizer"];
    assert_eq!(authorizer["principalId"], "user-42", "{event}");
    assert!(authorizer["integrationLatency"].is_u64(), "{event}");
    assert_eq!(authorizer["role"], "admin", "{event}");
    assert_eq!(authorizer["tenant"], 7, "{event}");
    assert_eq!(authorizer["beta"], true, "{event}");
    assert_eq!(authorizer.as_object().map(|a| a.len()), Some(5), "{event}");
}

#[tokio::test]
async fn an_authorizer_refuses_with_api_gateway_s_statuses() {
    let (log, capture) = wsprobe_serve::LogSink::capture();
    let mut authorizer = authorizer_lambda().await;
    let mut config = serve_config(&[
        "--authorizer",
        &authorizer.url,
        "--integration-timeout",
        "200ms",
    ]);
    config.log = log;
    let server = spawn_server(config).await;
    let url = server.ws_url();

    // No identity: 401, and the authorizer is not called.
    let (status, body) = refused(&url, &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );
    let (status, _) = refused(&url, &[("Authorization", "")]).await;
    assert_eq!(status, 401);

    for (token, expected) in [
        (
            "Bearer unauthorized",
            (401, r#"{"message":"Unauthorized"}"#),
        ),
        ("Bearer deny", (403, r#"{"message":"Forbidden"}"#)),
        ("Bearer wide", (403, r#"{"message":"Forbidden"}"#)),
        (
            "Bearer boom",
            (500, r#"{"message":"Internal server error"}"#),
        ),
        (
            "Bearer slow",
            (500, r#"{"message":"Internal server error"}"#),
        ),
    ] {
        let (status, body) = refused(&url, &[("Authorization", token)]).await;
        assert_eq!((status, body.as_str()), expected, "{token}");
        let event = authorizer.next_event().await;
        // The first event the authorizer sees is this one: the refusals without an
        // identity never reached it.
        assert_eq!(event["headers"]["Authorization"], token);
    }
    let lines = capture.lines();
    let authorize: Vec<&String> = lines.iter().filter(|l| l.contains(" AUTHORIZE ")).collect();
    let outcomes: Vec<&str> = authorize
        .iter()
        .filter_map(|l| l.split(" outcome=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(
        outcomes,
        [
            "missing-identity",
            "missing-identity",
            "unauthorized",
            "deny",
            "deny",
            "error",
            "error"
        ],
        "{lines:#?}"
    );
    assert!(
        authorize[0].contains("route.request.header.Authorization"),
        "{}",
        authorize[0]
    );
    for line in &lines {
        for secret in ["Bearer deny", "Bearer boom", "Bearer wide"] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}

#[tokio::test]
async fn an_allowed_connection_carries_the_authorizer_context_on_every_event() {
    let mut authorizer = authorizer_lambda().await;
    let mut handler = echo_lambda().await;
    let server = serve_flags(&[
        "--authorizer",
        &authorizer.url,
        "--integration",
        &handler.url,
        "--route-response",
        "$default",
    ])
    .await;
    let mut events = server.events();
    let mut ws = connect_with(
        &format!("{}?room=7", server.ws_url()),
        &[("Authorization", "Bearer allow")],
    )
    .await;

    // The authorizer's REQUEST event.
    let request = authorizer.next_event().await;
    assert_eq!(request["type"], "REQUEST");
    assert_eq!(
        request["methodArn"],
        "arn:aws:execute-api:local:000000000000:local/dev/$connect"
    );
    assert_eq!(request["headers"]["Authorization"], "Bearer allow");
    assert_eq!(
        request["multiValueHeaders"]["Authorization"],
        json!(["Bearer allow"])
    );
    assert_eq!(request["queryStringParameters"], json!({"room": "7"}));
    assert_eq!(request["requestContext"]["routeKey"], "$connect");
    assert_eq!(request["requestContext"]["eventType"], "CONNECT");
    assert!(request["requestContext"].get("authorizer").is_none());

    // Then $connect, a message and $disconnect, each with the authorizer's context.
    let connect = handler.next_event().await;
    assert_eq!(connect["requestContext"]["routeKey"], "$connect");
    assert_eq!(
        connect["requestContext"]["requestId"],
        request["requestContext"]["requestId"]
    );
    assert_authorizer_context(&connect);
    send_text(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "got:hello");
    let message = handler.next_event().await;
    assert_eq!(message["requestContext"]["eventType"], "MESSAGE");
    assert_authorizer_context(&message);
    within("the close", futures_util::SinkExt::close(&mut ws))
        .await
        .expect("closing");
    let disconnect = handler.next_event().await;
    assert_eq!(disconnect["requestContext"]["eventType"], "DISCONNECT");
    assert_authorizer_context(&disconnect);

    let (outcome, principal) = wait_event(&mut events, |event| match event {
        ServeEvent::Authorized {
            outcome,
            principal_id,
            ..
        } => Some((outcome.clone(), principal_id.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (outcome.as_str(), principal.as_deref()),
        ("allow", Some("user-42"))
    );
}

#[tokio::test]
async fn query_string_identity_sources_are_all_required() {
    let mut authorizer = InvokeApi::start(|event: Value| async move {
        let arn = event["methodArn"].as_str().unwrap_or_default().to_owned();
        LambdaReply::Return(json!({
            "principalId": event["queryStringParameters"]["token"],
            "policyDocument": {"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}]}
        }))
    })
    .await;
    let server = serve_flags(&[
        "--authorizer",
        &authorizer.url,
        "--identity-source",
        "route.request.querystring.token,route.request.header.X-Tenant",
    ])
    .await;
    let url = server.ws_url();
    assert_eq!(refused(&format!("{url}?token=t1"), &[]).await.0, 401);
    assert_eq!(refused(&url, &[("X-Tenant", "a")]).await.0, 401);
    assert_eq!(
        refused(&format!("{url}?token="), &[("X-Tenant", "a")])
            .await
            .0,
        401
    );
    // Both present: allowed, and the sample app (no $connect integration) answers.
    let mut ws = connect_with(&format!("{url}?token=t1"), &[("X-Tenant", "a")]).await;
    assert_eq!(
        authorizer.next_event().await["queryStringParameters"]["token"],
        "t1"
    );
    send_text(&mut ws, r#"{"action":"send","body":"in"}"#).await;
    assert_eq!(next_text(&mut ws).await, r#""in""#);
}
