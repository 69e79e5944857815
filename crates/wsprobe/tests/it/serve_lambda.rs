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
