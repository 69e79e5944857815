//! Integration tests: `serve` in front of Lambda functions, as on a real stage — the
//! default route with `--integration`, the `$connect` handler's subprotocol, the
//! per-endpoint invocation queue, and REQUEST authorizers. The functions are
//! [`InvokeApi`] stand-ins that, like the Lambda Runtime Interface Emulator, run one
//! invocation at a time.

use serde_json::{Value, json};
use wsprobe::serve::ServeEvent;

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
